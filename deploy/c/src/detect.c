/* lh_detect: a frame in, the graph's fixed-size outputs out, the first num_detections rows kept as lh_detections
 * (one allocation holding the items and their class names, so they outlive the detector). */
#include "detector_impl.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    lh_detections head;
    lh_detection items[]; /* then the class names, NUL-terminated */
} detections_block;

typedef struct {
    const float *boxes, *scores;
    const int64_t *labels;
    int count; /* valid rows: num_detections, within 0..D */
} outputs;

/* The input tensor: the caller's memory itself when rows are packed, else the detector's packed copy. */
static lh_status input_tensor(lh_detector *d, const uint8_t *bgr, int stride, ov_tensor_t **tensor, lh_error *error) {
    int64_t dims[4] = {1, d->bundle.height, d->bundle.width, 3};
    size_t row = (size_t)d->bundle.width * 3;
    ov_shape_t shape;
    if (ov_shape_create(4, dims, &shape) != OK) return lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    ov_status_e status = OK;
    if ((size_t)stride == row) {
        /* OpenVINO only reads an input tensor: the const is cast away, never written through */
        status = ov_tensor_create_from_host_ptr(U8, shape, (void *)bgr, tensor);
    } else if (d->copy_tensor == NULL) {
        d->copy = malloc(row * (size_t)d->bundle.height);
        status = d->copy ? ov_tensor_create_from_host_ptr(U8, shape, d->copy, &d->copy_tensor) : NOT_ALLOCATED;
    }
    ov_shape_free(&shape);
    if (status == NOT_ALLOCATED) return lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    if (status != OK) return lh_engine_fail(error, status, "OpenVINO can't wrap the frame", NULL);
    if ((size_t)stride != row) {
        for (int y = 0; y < d->bundle.height; y++) memcpy(d->copy + (size_t)y * row, bgr + (size_t)y * stride, row);
        *tensor = d->copy_tensor;
    }
    return LH_OK;
}

static lh_status check_frame(const lh_detector *d, const uint8_t *bgr, int width, int height, int stride,
                             lh_detections **out, lh_error *error) {
    if (out) *out = NULL;
    if (d == NULL || bgr == NULL || out == NULL)
        return lh_fail(error, LH_ERR_INVALID_ARGUMENT, "lh_detect needs a detector, a frame and a place for the "
                                                       "detections (a NULL was passed)");
    if (width != d->bundle.width || height != d->bundle.height)
        return lh_fail(error, LH_ERR_FRAME_SIZE, "frame is %dx%d but the bundle takes %dx%d frames; export with "
                                                 "--frame-size %dx%d", width, height, d->bundle.width,
                       d->bundle.height, width, height);
    if (stride < 0 || (long long)stride < (long long)width * 3)
        return lh_fail(error, LH_ERR_INVALID_ARGUMENT, "stride %d is less than width * 3 = %lld bytes", stride,
                       (long long)width * 3);
    return LH_OK;
}

/* The outputs' data pointers; the tensors (handles of the request's own buffers) are freed by the caller. */
static lh_status read_outputs(lh_detector *d, ov_tensor_t *tensors[4], outputs *o, lh_error *error) {
    void *data[4] = {0};
    for (int i = 0; i < 4; i++) {
        ov_status_e status = ov_infer_request_get_tensor(d->request, LH_OUTPUT_NAMES[i], &tensors[i]);
        if (status == OK) status = ov_tensor_data(tensors[i], &data[i]);
        if (status != OK) return lh_engine_fail(error, status, "OpenVINO has no output ", LH_OUTPUT_NAMES[i]);
    }
    int64_t n = *(const int64_t *)data[3];
    o->boxes = data[0];
    o->scores = data[1];
    o->labels = data[2];
    o->count = n < 0 ? 0 : n > d->rows ? d->rows : (int)n;
    return LH_OK;
}

static float clip(float v, float high) { return v < 0.0f ? 0.0f : v > high ? high : v; /* NaN stays NaN */ }

static const char *class_name(const lh_detector *d, int64_t label, char number[24]) {
    if (label >= 1 && label <= d->bundle.class_count) return d->bundle.class_names[label - 1];
    snprintf(number, 24, "%lld", (long long)label); /* as the Python runtime writes an unknown label */
    return number;
}

/* Keep the rows scoring at least min_score, boxes clipped to the frame (as runtime/detector.py does). */
static lh_status collect(const lh_detector *d, const outputs *o, lh_detections **out, lh_error *error) {
    size_t names = 0;
    int kept = 0;
    char number[24];
    for (int i = 0; i < o->count; i++) {
        if (!((double)o->scores[i] >= d->min_score)) continue;
        names += strlen(class_name(d, o->labels[i], number)) + 1;
        kept++;
    }
    detections_block *block = malloc(sizeof *block + (size_t)kept * sizeof(lh_detection) + names);
    if (block == NULL) return lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
    char *pool = (char *)(block->items + kept);
    block->head.count = kept;
    block->head.items = block->items;
    float w = (float)d->bundle.width, h = (float)d->bundle.height;
    for (int i = 0, k = 0; i < o->count; i++) {
        if (!((double)o->scores[i] >= d->min_score)) continue;
        const float *box = o->boxes + 4 * (size_t)i;
        const char *name = class_name(d, o->labels[i], number);
        int64_t label = o->labels[i];
        size_t len = strlen(name) + 1;
        memcpy(pool, name, len);
        block->items[k++] = (lh_detection){clip(box[0], w), clip(box[1], h), clip(box[2], w), clip(box[3], h),
                                           o->scores[i], label < INT_MIN ? INT_MIN : label > INT_MAX ? INT_MAX
                                                                                                    : (int)label,
                                           pool};
        pool += len;
    }
    *out = &block->head;
    return LH_OK;
}

lh_status lh_detect(lh_detector *d, const uint8_t *bgr, int width, int height, int stride, lh_detections **out,
                    lh_error *error) {
    lh_clear(error);
    lh_status result = check_frame(d, bgr, width, height, stride, out, error);
    ov_tensor_t *input = NULL, *tensors[4] = {0};
    outputs o = {0};
    if (result == LH_OK) result = input_tensor(d, bgr, stride, &input, error);
    ov_status_e status = OK;
    if (result == LH_OK && (status = ov_infer_request_set_input_tensor(d->request, input)) == OK)
        status = ov_infer_request_infer(d->request);
    if (result == LH_OK && status != OK) result = lh_engine_fail(error, status, "OpenVINO inference failed", NULL);
    if (result == LH_OK) result = read_outputs(d, tensors, &o, error);
    if (result == LH_OK) result = collect(d, &o, out, error);
    for (int i = 0; i < 4; i++)
        if (tensors[i]) ov_tensor_free(tensors[i]);
    if (input && input != d->copy_tensor) ov_tensor_free(input);
    return result;
}

void lh_detections_free(lh_detections *detections) {
    free(detections); /* the head of a detections_block: one allocation */
}

void lh_detector_frame_size(const lh_detector *d, int *width, int *height) {
    if (width) *width = d ? d->bundle.width : 0;
    if (height) *height = d ? d->bundle.height : 0;
}

int lh_detector_class_count(const lh_detector *d) { return d ? d->bundle.class_count : 0; }

const char *lh_detector_class_name(const lh_detector *d, int label) {
    return d && label >= 1 && label <= d->bundle.class_count ? d->bundle.class_names[label - 1] : NULL;
}

const char *lh_detector_precision(const lh_detector *d) { return d ? d->bundle.precision : NULL; }
