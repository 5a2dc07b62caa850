#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

lh_status lh_fail(lh_error *error, lh_status status, const char *format, ...) {
    if (error == NULL) return status;
    error->status = status;
    va_list args;
    va_start(args, format);
    vsnprintf(error->message, sizeof error->message, format, args);
    va_end(args);
    /* one line: an engine's multi-line text is cut at its first line break */
    error->message[strcspn(error->message, "\r\n")] = '\0';
    return status;
}

void lh_clear(lh_error *error) {
    if (error == NULL) return;
    error->status = LH_OK;
    error->message[0] = '\0';
}

const char *lh_status_name(lh_status status) {
    switch (status) {
        case LH_OK: return "LH_OK";
        case LH_ERR_INVALID_ARGUMENT: return "LH_ERR_INVALID_ARGUMENT";
        case LH_ERR_BUNDLE: return "LH_ERR_BUNDLE";
        case LH_ERR_FRAME_SIZE: return "LH_ERR_FRAME_SIZE";
        case LH_ERR_ENGINE: return "LH_ERR_ENGINE";
        case LH_ERR_NO_MEMORY: return "LH_ERR_NO_MEMORY";
    }
    return "LH_ERR_UNKNOWN";
}

const char *lh_version(void) { return LH_VERSION; }
