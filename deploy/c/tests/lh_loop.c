/* A test driver for leak checks (valgrind) and API smoke tests: `cycles` times create a detector, run `frames`
 * synthetic frames through it (every other one with padded rows, so both the zero-copy and the copying path run),
 * hit the error paths (a wrong frame size, a bad stride, a missing bundle), and destroy it.
 *
 *     lh_loop BUNDLE CYCLES FRAMES [PRECISION] [THREADS]
 *
 * Prints "cycles C frames F detections D" on success; on a failure the error on stderr and exit 1. */
#include "lighthead.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAD 16 /* bytes of padding after each row of a padded frame */

static void fill(uint8_t *frame, int width, int height, int stride, int index) {
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width * 3; x++) frame[(size_t)y * stride + x] = (uint8_t)(x * 3 + y * 5 + index * 7);
}

static int expect_error(lh_status got, lh_status want, const char *what) {
    if (got == want) return 0;
    fprintf(stderr, "lh_loop: %s gave %s, not %s\n", what, lh_status_name(got), lh_status_name(want));
    return 1;
}

static int error_paths(lh_detector *det, const uint8_t *frame, int width, int height) {
    lh_detections *dets = NULL;
    lh_error err;
    int bad = expect_error(lh_detect(det, frame, width + 1, height, (width + 1) * 3, &dets, &err), LH_ERR_FRAME_SIZE,
                           "a wrong frame size");
    bad |= expect_error(lh_detect(det, frame, width, height, width * 3 - 1, &dets, &err), LH_ERR_INVALID_ARGUMENT,
                        "a short stride");
    bad |= expect_error(lh_detect(det, NULL, width, height, width * 3, &dets, &err), LH_ERR_INVALID_ARGUMENT,
                        "a NULL frame");
    lh_detector *none = lh_detector_create("/nonexistent/bundle", NULL, &err);
    bad |= expect_error(none ? LH_OK : err.status, LH_ERR_BUNDLE, "a missing bundle");
    lh_detector_destroy(none);
    return bad || dets != NULL;
}

static int run_cycle(const char *bundle, const lh_options *options, int frames, long *detections) {
    lh_error err;
    lh_detector *det = lh_detector_create(bundle, options, &err);
    if (det == NULL) {
        fprintf(stderr, "lh_loop: %s: %s\n", lh_status_name(err.status), err.message);
        return 1;
    }
    int width, height, failed = 0;
    lh_detector_frame_size(det, &width, &height);
    int stride = width * 3 + PAD;
    uint8_t *frame = malloc((size_t)stride * height);
    for (int i = 0; frame && i < frames && !failed; i++) {
        int packed = i % 2 == 0;
        fill(frame, width, height, packed ? width * 3 : stride, i);
        lh_detections *dets = NULL;
        if (lh_detect(det, frame, width, height, packed ? width * 3 : stride, &dets, &err) != LH_OK) {
            fprintf(stderr, "lh_loop: frame %d: %s\n", i, err.message);
            failed = 1;
            break;
        }
        *detections += dets->count;
        for (int k = 0; k < dets->count; k++) {
            char number[16]; /* a label outside 1..C is named by its number */
            const char *name = lh_detector_class_name(det, dets->items[k].label);
            snprintf(number, sizeof number, "%d", dets->items[k].label);
            failed |= strcmp(dets->items[k].class_name, name ? name : number) != 0;
        }
        lh_detections_free(dets);
    }
    failed |= frame == NULL || error_paths(det, frame, width, height);
    free(frame);
    lh_detector_destroy(det);
    return failed;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: lh_loop BUNDLE CYCLES FRAMES [PRECISION] [THREADS]\n");
        return 2;
    }
    int cycles = atoi(argv[2]), frames = atoi(argv[3]);
    lh_options options = lh_options_default();
    options.precision = argc > 4 ? argv[4] : NULL;
    options.threads = argc > 5 ? atoi(argv[5]) : 0;
    long detections = 0;
    for (int c = 0; c < cycles; c++)
        if (run_cycle(argv[1], &options, frames, &detections) != 0) return 1;
    printf("cycles %d frames %d detections %ld\n", cycles, frames, detections);
    return 0;
}
