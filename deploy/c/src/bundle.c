/* The bundle reader: manifest.json (cJSON), the schema entries the runtime reads, the OpenVINO artifact of a
 * precision, and every listed file's size and sha256, checked before anything is loaded. The messages are the
 * Python runtime's (lighthead_edge/runtime/bundle.py), so both say the same thing about the same bundle. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "sha256.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT_PREFIX "lighthead-edge/bundle/"
#define MANIFEST "manifest.json"
#define MAX_MANIFEST_BYTES (16 << 20)
#define MAX_XML_BYTES ((size_t)1 << 30)
#define CHUNK (1 << 20)

static const char *const PRECISIONS[] = {"fp32", "fp16", "int8"};

char *lh_strdup(const char *text) {
    size_t size = strlen(text) + 1;
    char *copy = malloc(size);
    if (copy) memcpy(copy, text, size);
    return copy;
}

char *lh_join(const char *root, const char *name) {
    size_t a = strlen(root), b = strlen(name);
    char *path = malloc(a + b + 2);
    if (path == NULL) return NULL;
    memcpy(path, root, a);
    path[a] = '/';
    memcpy(path + a + 1, name, b + 1);
    return path;
}

char *lh_read_file(const char *path, size_t max, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        errno = EINVAL;
        return NULL;
    }
    size_t want = (size_t)st.st_size, got = 0;
    if ((data = malloc(want + 1)) == NULL) errno = ENOMEM;
    while (data && got < want) {
        ssize_t n = read(fd, data + got, want - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            errno = n == 0 ? EIO : errno; /* 0: the file shrank while it was read */
            free(data);
            data = NULL;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (data) {
        data[got] = '\0';
        if (size) *size = got;
    }
    return data;
}

/* -------------------------------------------------------------------------------------------------- schema */
static int is_int(const cJSON *item, double low, double high) {
    return cJSON_IsNumber(item) && item->valuedouble >= low && item->valuedouble <= high &&
           floor(item->valuedouble) == item->valuedouble;
}

/* A file name inside the bundle: relative, no "..", not the bundle itself (bundle.py _is_name). */
static int is_name(const char *name) {
    if (name == NULL || name[0] == '\0' || strcmp(name, ".") == 0 || name[0] == '/' || name[0] == '\\') return 0;
    for (const char *part = name; *part;) {
        size_t len = strcspn(part, "/\\");
        if (len == 2 && part[0] == '.' && part[1] == '.') return 0;
        part += len;
        if (*part) part++;
    }
    return 1;
}

static const char *names_problem(const cJSON *names) {
    if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) == 0) return "class_names is not a list of non-empty names";
    const cJSON *name;
    cJSON_ArrayForEach(name, names) {
        if (!cJSON_IsString(name) || name->valuestring[strspn(name->valuestring, " \t\r\n\f\v")] == '\0')
            return "class_names is not a list of non-empty names";
    }
    return NULL;
}

static const char *shape_problem(const cJSON *input) {
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(input, "shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 4) return "input.shape is not [1, H, W, 3]";
    const cJSON *d0 = cJSON_GetArrayItem(shape, 0), *d3 = cJSON_GetArrayItem(shape, 3);
    if (!is_int(d0, 1, 1) || !is_int(d3, 3, 3) || !is_int(cJSON_GetArrayItem(shape, 1), 1, 65536) ||
        !is_int(cJSON_GetArrayItem(shape, 2), 1, 65536))
        return "input.shape is not [1, H, W, 3] with positive H and W";
    return NULL;
}

static const char *files_problem(const cJSON *files) {
    const char *bad = "files is not a map of file names inside the bundle to their sha256 and bytes";
    if (!cJSON_IsObject(files)) return bad;
    const cJSON *record;
    cJSON_ArrayForEach(record, files) {
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(record, "sha256");
        if (!is_name(record->string) || !cJSON_IsObject(record) || !cJSON_IsString(sha) ||
            !is_int(cJSON_GetObjectItemCaseSensitive(record, "bytes"), 0, 9007199254740992.0))
            return bad;
    }
    return NULL;
}

static int is_word(const char *text, const char *const *choices, int count) {
    for (int i = 0; i < count; i++)
        if (strcmp(text, choices[i]) == 0) return 1;
    return 0;
}

static int is_one_of(const cJSON *item, const char *const *choices, int count) {
    return cJSON_IsString(item) && is_word(item->valuestring, choices, count);
}

/* bundle.py _artifact_problem: backend, precision and format known, files checksummed, path one of them. */
static const char *artifact_problem(const cJSON *entry, const cJSON *files) {
    static const char *const BACKENDS[] = {"onnxruntime", "openvino"};
    if (!cJSON_IsObject(entry)) return "an artifact entry is not an object";
    const cJSON *backend = cJSON_GetObjectItemCaseSensitive(entry, "backend");
    if (!is_one_of(backend, BACKENDS, 2) || !is_one_of(cJSON_GetObjectItemCaseSensitive(entry, "precision"),
                                                       PRECISIONS, 3))
        return "an artifact has an unknown backend or precision";
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(entry, "format");
    const char *want = strcmp(backend->valuestring, "openvino") == 0 ? "openvino-ir" : "onnx";
    if (!cJSON_IsString(format) || strcmp(format->valuestring, want) != 0) return "an artifact has a wrong format";
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(entry, "files"), *name;
    if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) == 0) return "an artifact's files are not a list";
    int path_listed = 0;
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(entry, "path");
    cJSON_ArrayForEach(name, names) {
        if (!cJSON_IsString(name) || !cJSON_GetObjectItemCaseSensitive(files, name->valuestring))
            return "an artifact's files are not all checksummed files";
        path_listed |= cJSON_IsString(path) && strcmp(path->valuestring, name->valuestring) == 0;
    }
    return path_listed ? NULL : "an artifact's path is not one of its checksummed files";
}

static const char *schema_problem(const cJSON *manifest) {
    const char *problem = names_problem(cJSON_GetObjectItemCaseSensitive(manifest, "class_names"));
    if (!problem) problem = shape_problem(cJSON_GetObjectItemCaseSensitive(manifest, "input"));
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(manifest, "files");
    if (!problem) problem = files_problem(files);
    const cJSON *artifacts = cJSON_GetObjectItemCaseSensitive(manifest, "artifacts"), *entry;
    if (!problem && (!cJSON_IsArray(artifacts) || cJSON_GetArraySize(artifacts) == 0))
        problem = "artifacts is not a non-empty list";
    if (problem) return problem;
    cJSON_ArrayForEach(entry, artifacts) {
        if ((problem = artifact_problem(entry, files)) != NULL) break;
    }
    return problem;
}

/* ------------------------------------------------------------------------------------------------ manifest */
static lh_status parse_manifest(const char *root, cJSON **out, lh_error *error) {
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
        return lh_fail(error, LH_ERR_BUNDLE, "bundle %s not found; pass the folder that `lighthead-edge export "
                                             "--out` wrote", root);
    char *path = lh_join(root, MANIFEST);
    if (path == NULL) return lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    lh_status status = LH_OK;
    char *text = lh_read_file(path, MAX_MANIFEST_BYTES, NULL);
    int read_errno = errno;
    cJSON *manifest = text ? cJSON_Parse(text) : NULL;
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(manifest, "format");
    static const char *const REQUIRED[] = {"class_names", "input", "preprocessing", "artifacts", "files"};
    if (text == NULL && (read_errno == ENOENT || read_errno == EINVAL)) {
        status = lh_fail(error, LH_ERR_BUNDLE, "%s has no %s: not a bundle, or an unfinished copy; re-export it",
                         root, MANIFEST);
    } else if (text == NULL) {
        status = lh_fail(error, LH_ERR_BUNDLE, "can't read %s: %s", path, strerror(read_errno));
    } else if (!cJSON_IsObject(manifest)) {
        status = lh_fail(error, LH_ERR_BUNDLE, "%s is corrupt (%s); re-export the bundle", path,
                         manifest ? "not a JSON object" : "not valid JSON");
    } else if (!cJSON_IsString(format) || strncmp(format->valuestring, FORMAT_PREFIX, strlen(FORMAT_PREFIX)) != 0) {
        status = lh_fail(error, LH_ERR_BUNDLE, "%s has format %s; this runtime reads %s* bundles", path,
                         cJSON_IsString(format) ? format->valuestring : "(none)", FORMAT_PREFIX);
    } else {
        for (size_t i = 0; i < sizeof REQUIRED / sizeof *REQUIRED && status == LH_OK; i++)
            if (!cJSON_HasObjectItem(manifest, REQUIRED[i]))
                status = lh_fail(error, LH_ERR_BUNDLE, "%s lacks %s; it was not written by lighthead-edge export",
                                 path, REQUIRED[i]);
        const char *problem = status == LH_OK ? schema_problem(manifest) : NULL;
        if (problem)
            status = lh_fail(error, LH_ERR_BUNDLE, "%s: %s; it was not written by lighthead-edge export, "
                                                   "re-export the bundle", path, problem);
    }
    free(text);
    free(path);
    if (status != LH_OK) {
        cJSON_Delete(manifest);
        manifest = NULL;
    }
    *out = manifest;
    return status;
}

/* ------------------------------------------------------------------------------------------------ artifact */
static const cJSON *find_artifact(const cJSON *manifest, const char *precision) {
    const cJSON *entry, *first = NULL;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(manifest, "artifacts")) {
        const char *backend = cJSON_GetObjectItemCaseSensitive(entry, "backend")->valuestring;
        const char *have = cJSON_GetObjectItemCaseSensitive(entry, "precision")->valuestring;
        if (strcmp(backend, "openvino") != 0) continue;
        if (first == NULL) first = entry;
        if (strcmp(have, precision ? precision : "fp32") == 0) return entry;
    }
    return precision ? NULL : first;
}

static lh_status no_artifact(const char *root, const cJSON *manifest, const char *precision, lh_error *error) {
    char have[512] = "";
    const cJSON *entry;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(manifest, "artifacts")) {
        size_t used = strlen(have);
        snprintf(have + used, sizeof have - used, "%s%s/%s", used ? ", " : "",
                 cJSON_GetObjectItemCaseSensitive(entry, "backend")->valuestring,
                 cJSON_GetObjectItemCaseSensitive(entry, "precision")->valuestring);
    }
    return lh_fail(error, LH_ERR_BUNDLE, "bundle %s has no openvino%s%s artifact (it has: %s); export it with that "
                                         "format", root, precision ? "/" : "", precision ? precision : "", have);
}

/* The artifact's path and its .bin (the other file of an IR), joined to root. */
static lh_status artifact_paths(lh_bundle *bundle, const cJSON *entry) {
    const char *xml = cJSON_GetObjectItemCaseSensitive(entry, "path")->valuestring;
    const cJSON *name;
    bundle->xml_path = lh_join(bundle->root, xml);
    cJSON_ArrayForEach(name, cJSON_GetObjectItemCaseSensitive(entry, "files")) {
        size_t len = strlen(name->valuestring);
        if (strcmp(name->valuestring, xml) != 0 && len > 4 && strcmp(name->valuestring + len - 4, ".bin") == 0) {
            if ((bundle->bin_path = lh_join(bundle->root, name->valuestring)) == NULL) return LH_ERR_NO_MEMORY;
            break;
        }
    }
    return bundle->xml_path ? LH_OK : LH_ERR_NO_MEMORY;
}

/* ---------------------------------------------------------------------------------------------- checksums */
static lh_status verify_file(const char *root, const cJSON *record, char *buffer, lh_error *error) {
    const char *name = record->string;
    char *path = lh_join(root, name);
    if (path == NULL) return lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return lh_fail(error, LH_ERR_BUNDLE, "bundle %s is incomplete: %s is missing; re-export or re-copy it", root,
                       name);
    }
    double expected = cJSON_GetObjectItemCaseSensitive(record, "bytes")->valuedouble;
    if ((double)st.st_size != expected) {
        close(fd);
        return lh_fail(error, LH_ERR_BUNDLE, "bundle %s: %s is %lld bytes, %.0f expected (truncated or replaced); "
                                             "re-export or re-copy it", root, name, (long long)st.st_size, expected);
    }
    lh_sha256 sha;
    lh_sha256_init(&sha);
    ssize_t n;
    while ((n = read(fd, buffer, CHUNK)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        lh_sha256_update(&sha, buffer, (size_t)n);
    }
    close(fd);
    if (n < 0) return lh_fail(error, LH_ERR_BUNDLE, "bundle %s: can't read %s: %s", root, name, strerror(errno));
    char hex[65];
    lh_sha256_final_hex(&sha, hex);
    if (strcmp(hex, cJSON_GetObjectItemCaseSensitive(record, "sha256")->valuestring) != 0)
        return lh_fail(error, LH_ERR_BUNDLE, "bundle %s: %s was modified after export (sha256 mismatch); re-export "
                                             "it", root, name);
    return LH_OK;
}

static lh_status verify_files(const char *root, const cJSON *manifest, lh_error *error) {
    char *buffer = malloc(CHUNK);
    if (buffer == NULL) return lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    lh_status status = LH_OK;
    const cJSON *record;
    cJSON_ArrayForEach(record, cJSON_GetObjectItemCaseSensitive(manifest, "files")) {
        if ((status = verify_file(root, record, buffer, error)) != LH_OK) break;
    }
    free(buffer);
    return status;
}

/* ---------------------------------------------------------------------------------------------------- open */
static lh_status take_names(lh_bundle *bundle, const cJSON *manifest) {
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(manifest, "class_names"), *name;
    bundle->class_names = calloc((size_t)cJSON_GetArraySize(names), sizeof(char *));
    if (bundle->class_names == NULL) return LH_ERR_NO_MEMORY;
    cJSON_ArrayForEach(name, names) {
        if ((bundle->class_names[bundle->class_count] = lh_strdup(name->valuestring)) == NULL) return LH_ERR_NO_MEMORY;
        bundle->class_count++;
    }
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(manifest, "input"), "shape");
    bundle->height = (int)cJSON_GetArrayItem(shape, 1)->valuedouble;
    bundle->width = (int)cJSON_GetArrayItem(shape, 2)->valuedouble;
    return LH_OK;
}

static lh_status check_metadata(const lh_bundle *bundle, const cJSON *manifest, const cJSON *entry,
                                lh_error *error) {
    const char *xml_name = cJSON_GetObjectItemCaseSensitive(entry, "path")->valuestring;
    char *xml = lh_read_file(bundle->xml_path, MAX_XML_BYTES, NULL);
    if (xml == NULL)
        return lh_fail(error, LH_ERR_BUNDLE, "bundle %s: can't read %s: %s", bundle->root, xml_name, strerror(errno));
    lh_status status = lh_check_ir_metadata(manifest, xml, xml_name, bundle->root, error);
    free(xml);
    return status;
}

static lh_status open_verified(lh_bundle *bundle, const cJSON *manifest, const char *precision, lh_error *error) {
    const cJSON *entry = find_artifact(manifest, precision);
    if (entry == NULL) return no_artifact(bundle->root, manifest, precision, error);
    lh_status status = verify_files(bundle->root, manifest, error);
    if (status != LH_OK) return status;
    if (take_names(bundle, manifest) != LH_OK || artifact_paths(bundle, entry) != LH_OK)
        return lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    snprintf(bundle->precision, sizeof bundle->precision, "%s",
             cJSON_GetObjectItemCaseSensitive(entry, "precision")->valuestring);
    return check_metadata(bundle, manifest, entry, error);
}

lh_status lh_bundle_open(lh_bundle *bundle, const char *root, const char *precision, lh_error *error) {
    memset(bundle, 0, sizeof *bundle);
    if (precision && !is_word(precision, PRECISIONS, 3))
        return lh_fail(error, LH_ERR_INVALID_ARGUMENT, "unknown precision '%s'; choose one of fp32, fp16, int8",
                       precision);
    cJSON *manifest = NULL;
    lh_status status = parse_manifest(root, &manifest, error);
    if (status != LH_OK) return status;
    if ((bundle->root = lh_strdup(root)) == NULL)
        status = lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    else
        status = open_verified(bundle, manifest, precision, error);
    cJSON_Delete(manifest);
    if (status != LH_OK) lh_bundle_close(bundle);
    return status;
}

void lh_bundle_close(lh_bundle *bundle) {
    for (int i = 0; i < bundle->class_count; i++) free(bundle->class_names[i]);
    free(bundle->class_names);
    free(bundle->root);
    free(bundle->xml_path);
    free(bundle->bin_path);
    memset(bundle, 0, sizeof *bundle);
}
