/* The README's API example: detect objects in one raw bgr24 frame read from a file.
 *
 *     cc -std=c99 example.c -I PREFIX/include -L PREFIX/lib -llighthead -Wl,-rpath,PREFIX/lib -o example
 *     ./example BUNDLE FRAME.raw
 */
#include <lighthead.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: example BUNDLE FRAME.raw\n");
        return 2;
    }
    lh_error err;
    lh_options options = lh_options_default(); /* CPU, the engine's threads, fp32, every detection */
    options.threads = 1;
    lh_detector *det = lh_detector_create(argv[1], &options, &err);
    if (det == NULL) {
        fprintf(stderr, "%s: %s\n", lh_status_name(err.status), err.message);
        return 1;
    }
    int width, height;
    lh_detector_frame_size(det, &width, &height); /* the frame the bundle takes */
    size_t size = (size_t)width * height * 3;
    uint8_t *frame = malloc(size);
    FILE *file = fopen(argv[2], "rb");
    int ok = frame && file && fread(frame, 1, size, file) == size;
    if (file) fclose(file);

    lh_detections *dets = NULL;
    if (!ok) {
        fprintf(stderr, "can't read a %dx%d bgr24 frame from %s\n", width, height, argv[2]);
    } else if (lh_detect(det, frame, width, height, width * 3, &dets, &err) != LH_OK) {
        fprintf(stderr, "%s: %s\n", lh_status_name(err.status), err.message);
        ok = 0;
    } else {
        for (int i = 0; i < dets->count; i++) {
            const lh_detection *d = &dets->items[i];
            printf("%s %.3f [%.1f %.1f %.1f %.1f]\n", d->class_name, d->score, d->x1, d->y1, d->x2, d->y2);
        }
        lh_detections_free(dets);
    }
    free(frame);
    lh_detector_destroy(det);
    return ok ? 0 : 1;
}
