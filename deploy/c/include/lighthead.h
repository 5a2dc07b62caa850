/*
 * lighthead.h - run a lighthead-edge bundle from C, through OpenVINO's C API.
 *
 *     lh_error err;
 *     lh_options opt = lh_options_default();          // CPU, engine's threads, fp32, min score 0
 *     lh_detector *det = lh_detector_create("bundle/", &opt, &err);
 *     if (!det) { fprintf(stderr, "%s\n", err.message); return 1; }
 *     lh_detections *dets = NULL;
 *     if (lh_detect(det, bgr, width, height, width * 3, &dets, &err) == LH_OK) {
 *         for (int i = 0; i < dets->count; i++)
 *             printf("%s %.2f\n", dets->items[i].class_name, dets->items[i].score);
 *         lh_detections_free(dets);
 *     }
 *     lh_detector_destroy(det);
 *
 * The shape follows OpenVINO's own C API: every call returns a status (create returns NULL instead) and fills an
 * error record with a one-line message that says what to do; every create has its free; handles are opaque; there
 * is no global state. The library never aborts, exits or prints.
 *
 * A bundle is the folder `lighthead-edge export` writes. Before anything is loaded, every file its manifest lists is
 * checked (size and sha256), and the class names and input shape of the manifest are compared with the copies the
 * exporter embedded in the OpenVINO IR (covered by the IR's checksum). The graph does all the pre- and
 * post-processing: it takes a uint8 BGR frame of exactly the size the bundle was exported for
 * (lh_detector_frame_size; `export --frame-size WxH` makes a bundle for a camera's frame size) and gives the final
 * detections in that frame's pixels.
 *
 * Threads: one detector runs one frame at a time. Calls on different detectors may run in parallel; calls on the
 * same detector must not (serialise them, or create one detector per thread).
 */
#ifndef LIGHTHEAD_H
#define LIGHTHEAD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LH_API __attribute__((visibility("default"))) /* everything else is hidden (-fvisibility=hidden) */
#else
#define LH_API
#endif

#define LH_VERSION "0.1.0"

/** What went wrong; LH_OK is 0. */
typedef enum {
    LH_OK = 0,
    LH_ERR_INVALID_ARGUMENT = 1, /**< a NULL pointer, a bad option value, a stride below width * 3 */
    LH_ERR_BUNDLE = 2,           /**< missing, incomplete, tampered or unreadable bundle; no such precision */
    LH_ERR_FRAME_SIZE = 3,       /**< the frame is not the size the bundle's graph takes */
    LH_ERR_ENGINE = 4,           /**< OpenVINO failed: unknown device, can't compile, inference error */
    LH_ERR_NO_MEMORY = 5         /**< an allocation failed */
} lh_status;

#define LH_MESSAGE_SIZE 1024

/** The outcome of a call: its status and a one-line message (empty on success). */
typedef struct {
    lh_status status;
    char message[LH_MESSAGE_SIZE];
} lh_error;

/** How to load a bundle. Start from lh_options_default() and change what you need. */
typedef struct {
    const char *device;    /**< OpenVINO device name; NULL or "" means "CPU" */
    int threads;           /**< inference threads; 0 = the engine's default */
    const char *precision; /**< "fp32", "fp16" or "int8"; NULL = fp32 if the bundle has it, else its first IR */
    double min_score;      /**< detections scoring below this are left out (0 keeps all the graph gives) */
} lh_options;

/** One detection, in the frame's pixels. */
typedef struct {
    float x1, y1, x2, y2;   /**< box corners, clipped to the frame */
    float score;            /**< class probability */
    int label;              /**< 1..C; class_name is the bundle's class_names[label - 1] */
    const char *class_name; /**< stored inside the lh_detections: valid until lh_detections_free */
} lh_detection;

/** The detections of one frame, by decreasing score. One allocation: free it with lh_detections_free. */
typedef struct {
    int count;
    lh_detection *items;
} lh_detections;

typedef struct lh_detector lh_detector;

/** Defaults: device "CPU", threads 0 (engine's), precision NULL (fp32), min_score 0. */
LH_API lh_options lh_options_default(void);

/**
 * Load, verify and compile the bundle in `bundle_dir`. `options` may be NULL (defaults). Returns NULL on failure,
 * with `error` (may be NULL) filled in.
 */
LH_API lh_detector *lh_detector_create(const char *bundle_dir, const lh_options *options, lh_error *error);

/** Release a detector (NULL is fine). Detections it returned stay valid. */
LH_API void lh_detector_destroy(lh_detector *detector);

/**
 * Detect objects in one frame: `bgr` is height rows of width pixels, 3 bytes each (B, G, R), rows `stride` bytes
 * apart (stride >= width * 3). The frame must be exactly lh_detector_frame_size. With stride == width * 3 the
 * frame is handed to OpenVINO without a copy. On LH_OK `*out` holds the detections (free with
 * lh_detections_free); on failure `*out` is NULL and `error` (may be NULL) says why.
 */
LH_API lh_status lh_detect(lh_detector *detector, const uint8_t *bgr, int width, int height, int stride,
                           lh_detections **out, lh_error *error);

/** Release detections (NULL is fine). */
LH_API void lh_detections_free(lh_detections *detections);

/** The frame size the bundle's graph takes (its input.shape [1, H, W, 3]). */
LH_API void lh_detector_frame_size(const lh_detector *detector, int *width, int *height);

/** Number of classes C. */
LH_API int lh_detector_class_count(const lh_detector *detector);

/** Name of label 1..C, or NULL outside that range. Valid while the detector lives. */
LH_API const char *lh_detector_class_name(const lh_detector *detector, int label);

/** The precision of the artifact that was loaded: "fp32", "fp16" or "int8". */
LH_API const char *lh_detector_precision(const lh_detector *detector);

/** "LH_OK", "LH_ERR_BUNDLE", ... */
LH_API const char *lh_status_name(lh_status status);

/** The library's version, LH_VERSION. */
LH_API const char *lh_version(void);

#ifdef __cplusplus
}
#endif

#endif /* LIGHTHEAD_H */
