/* The detector's state, shared by detector.c (create/destroy) and detect.c (lh_detect). */
#ifndef LH_DETECTOR_IMPL_H
#define LH_DETECTOR_IMPL_H

#include "internal.h"

#include <openvino/c/openvino.h>

struct lh_detector {
    lh_bundle bundle;
    double min_score;
    int rows; /* D, the graph's fixed number of output rows */
    ov_core_t *core;
    ov_compiled_model_t *compiled;
    ov_infer_request_t *request;
    uint8_t *copy;           /* a packed frame, for frames whose rows are padded (made at the first one) */
    ov_tensor_t *copy_tensor; /* wraps copy */
};

/* The graph's outputs, by name: boxes f32 [1, D, 4], scores f32 [1, D], labels i64 [1, D], num_detections i64 [1]. */
extern const char *const LH_OUTPUT_NAMES[4];

/* LH_ERR_ENGINE, "<what><detail>: <OpenVINO's reason>" (its first line). */
lh_status lh_engine_fail(lh_error *error, ov_status_e status, const char *what, const char *detail);

#endif
