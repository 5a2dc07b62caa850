/* The metadata the exporter embedded in the OpenVINO IR, read from the .xml text (OpenVINO's C API has no rt_info
 * accessor): the model-level rt_info holds a section
 *
 *     <lighthead_edge>
 *         <class_names value="[&quot;cat&quot;, &quot;dog&quot;]" />
 *         <input value="{... &quot;shape&quot;: [1, 128, 128, 3]}" />
 *         ...
 *     </lighthead_edge>
 *
 * whose values are JSON, XML-escaped. The .xml is covered by the manifest's checksums, the manifest's own digest
 * (canonical Python JSON) is not reproduced here; comparing these two entries with the manifest's is what the Python
 * runtime does too, and it catches a manifest relabelled by hand. Inside an attribute value '<' is always escaped,
 * so the literal "<lighthead_edge>" can only be the element itself. */
#include "internal.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTION_OPEN "<lighthead_edge>"
#define SECTION_CLOSE "</lighthead_edge>"

/* The last "<lighthead_edge>...</lighthead_edge>" (the model's rt_info closes the file), as [begin, end). */
static int find_section(const char *xml, const char **begin, const char **end) {
    const char *found = NULL;
    for (const char *p = strstr(xml, SECTION_OPEN); p; p = strstr(p + 1, SECTION_OPEN)) found = p;
    if (found == NULL) return 0;
    *begin = found + strlen(SECTION_OPEN);
    *end = strstr(*begin, SECTION_CLOSE);
    return *end != NULL;
}

static void put_utf8(char **out, unsigned long code) {
    char *o = *out;
    if (code < 0x80) {
        *o++ = (char)code;
    } else if (code < 0x800) {
        *o++ = (char)(0xC0 | code >> 6);
        *o++ = (char)(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        *o++ = (char)(0xE0 | code >> 12);
        *o++ = (char)(0x80 | (code >> 6 & 0x3F));
        *o++ = (char)(0x80 | (code & 0x3F));
    } else {
        *o++ = (char)(0xF0 | code >> 18);
        *o++ = (char)(0x80 | (code >> 12 & 0x3F));
        *o++ = (char)(0x80 | (code >> 6 & 0x3F));
        *o++ = (char)(0x80 | (code & 0x3F));
    }
    *out = o;
}

static int digit_value(char c, int hex) {
    int lower = c | 32;
    if (c >= '0' && c <= '9') return c - '0';
    return hex && lower >= 'a' && lower <= 'f' ? lower - 'a' + 10 : -1;
}

/* A numeric character reference's code point ("&#65;" or "&#x41;", [p, semi]), or 0 when it is none. */
static unsigned long numeric_ref(const char *p, const char *semi) {
    int hex = p[2] == 'x' || p[2] == 'X';
    const char *digits = p + 2 + hex;
    if (p[1] != '#' || digits >= semi || semi - digits > 8) return 0;
    unsigned long code = 0;
    for (const char *d = digits; d < semi; d++) {
        int v = digit_value(*d, hex);
        if (v < 0) return 0;
        code = code * (hex ? 16 : 10) + (unsigned long)v;
    }
    return code <= 0x10FFFF ? code : 0;
}

/* [p, end) with XML's entities replaced; the result is never longer than the input. */
static char *unescape(const char *p, const char *end) {
    static const struct { const char *name; char c; } ENTITIES[] = {
        {"&quot;", '"'}, {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}};
    char *text = malloc((size_t)(end - p) + 1), *o = text;
    if (text == NULL) return NULL;
    while (p < end) {
        const char *semi = *p == '&' ? memchr(p, ';', (size_t)(end - p)) : NULL;
        if (semi == NULL) {
            *o++ = *p++;
            continue;
        }
        size_t len = (size_t)(semi - p) + 1, i = 0, n = sizeof ENTITIES / sizeof *ENTITIES;
        while (i < n && !(strlen(ENTITIES[i].name) == len && strncmp(p, ENTITIES[i].name, len) == 0)) i++;
        unsigned long code = i < n ? 0 : numeric_ref(p, semi);
        if (i < n) {
            *o++ = ENTITIES[i].c;
        } else if (code) {
            put_utf8(&o, code); /* a reference is at least as long as its UTF-8 */
        } else {
            *o++ = *p++; /* not an entity: kept as it is */
            continue;
        }
        p = semi + 1;
    }
    *o = '\0';
    return text;
}

/* The JSON value of <key value="..."/> inside the section, parsed; NULL when absent or not JSON. */
static cJSON *section_value(const char *begin, const char *end, const char *key) {
    size_t key_len = strlen(key);
    for (const char *p = begin; (p = strstr(p, "<")) != NULL && p < end; p++) {
        if (strncmp(p + 1, key, key_len) != 0 || p[1 + key_len] == '\0' || !strchr(" \t\r\n/>", p[1 + key_len]))
            continue;
        const char *tag_end = strchr(p, '>');
        const char *value = strstr(p, "value=");
        if (value == NULL || tag_end == NULL || value > tag_end) return NULL;
        char quote = value[6];
        const char *stop = (quote == '"' || quote == '\'') ? strchr(value + 7, quote) : NULL;
        if (stop == NULL || stop > tag_end) return NULL;
        char *text = unescape(value + 7, stop);
        cJSON *parsed = text ? cJSON_Parse(text) : NULL;
        free(text);
        return parsed;
    }
    return NULL;
}

static lh_status mismatch(const char *key, const cJSON *ours, const cJSON *theirs, const char *xml_name,
                          const char *root, lh_error *error) {
    char *a = cJSON_PrintUnformatted(ours), *b = theirs ? cJSON_PrintUnformatted(theirs) : NULL;
    lh_status status = lh_fail(error, LH_ERR_BUNDLE, "bundle %s: the manifest's %s %.200s differs from the one "
                                                     "inside %s (%.200s); the manifest was edited: re-export the "
                                                     "bundle", root, key, a ? a : "?", xml_name, b ? b : "none");
    free(a);
    free(b);
    return status;
}

lh_status lh_check_ir_metadata(const cJSON *manifest, const char *xml, const char *xml_name, const char *root,
                               lh_error *error) {
    const char *begin, *end;
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(manifest, "class_names");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(manifest, "input"), "shape");
    if (!find_section(xml, &begin, &end)) return mismatch("class_names", names, NULL, xml_name, root, error);
    cJSON *ir_names = section_value(begin, end, "class_names");
    cJSON *ir_input = section_value(begin, end, "input");
    const cJSON *ir_shape = cJSON_GetObjectItemCaseSensitive(ir_input, "shape");
    lh_status status = LH_OK;
    if (ir_names == NULL || !cJSON_Compare(names, ir_names, 1))
        status = mismatch("class_names", names, ir_names, xml_name, root, error);
    else if (ir_shape == NULL || !cJSON_Compare(shape, ir_shape, 1))
        status = mismatch("input.shape", shape, ir_shape, xml_name, root, error);
    cJSON_Delete(ir_names);
    cJSON_Delete(ir_input);
    return status;
}
