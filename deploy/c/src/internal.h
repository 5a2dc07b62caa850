/* What the library's source files share; nothing here is exported (-fvisibility=hidden). */
#ifndef LH_INTERNAL_H
#define LH_INTERNAL_H

#include "lighthead.h"

#include <stddef.h>

#if defined(__GNUC__)
#define LH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define LH_PRINTF(fmt, args)
#endif

/* Fill `error` (may be NULL) with `status` and a message; returns `status`. */
lh_status lh_fail(lh_error *error, lh_status status, const char *format, ...) LH_PRINTF(3, 4);
void lh_clear(lh_error *error);

/* What the runtime needs from a verified bundle. */
typedef struct {
    char *root;
    char **class_names; /* class_count names, UTF-8 */
    int class_count;
    int height, width;  /* input.shape [1, H, W, 3]: the frame the graph takes */
    char precision[8];  /* of the chosen OpenVINO artifact */
    char *xml_path;     /* root/artifact path */
    char *bin_path;     /* root/<the artifact's .bin>, or NULL (OpenVINO then looks beside the .xml) */
} lh_bundle;

/* Read root/manifest.json, pick the OpenVINO artifact of `precision` (NULL: fp32 if present, else the first), check
 * every listed file's size and sha256 and the metadata inside the IR. On failure returns LH_ERR_BUNDLE,
 * LH_ERR_INVALID_ARGUMENT (an unknown precision) or LH_ERR_NO_MEMORY, with `bundle` left empty. */
lh_status lh_bundle_open(lh_bundle *bundle, const char *root, const char *precision, lh_error *error);
void lh_bundle_close(lh_bundle *bundle);

/* Helpers of bundle.c, shared with metadata.c. */
char *lh_strdup(const char *text);
char *lh_join(const char *root, const char *name);
/* The whole regular file at `path` (at most `max` bytes), NUL-terminated; NULL with errno set on failure (EINVAL:
 * no regular file, or too big). */
char *lh_read_file(const char *path, size_t max, size_t *size);

/* Compare the class names and input shape of `manifest` (a cJSON object) with the `lighthead_edge` section of the
 * IR's rt_info in `xml` (NUL-terminated text); LH_ERR_BUNDLE naming `xml_name` when they differ or are absent. */
struct cJSON;
lh_status lh_check_ir_metadata(const struct cJSON *manifest, const char *xml, const char *xml_name, const char *root,
                               lh_error *error);

#endif
