/* The detector: a verified bundle compiled by OpenVINO, one inference request, and the graph's four outputs turned
 * into lh_detections. Settings as in the Python backend (runtime/backends/openvino.py): PERFORMANCE_HINT LATENCY,
 * INFERENCE_NUM_THREADS when asked, and on CPU INFERENCE_PRECISION_HINT f32 so that a bundle gives the same
 * detections on every CPU (bf16-capable ones would otherwise compute float layers in bf16). */
#include "detector_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const LH_OUTPUT_NAMES[4] = {"boxes", "scores", "labels", "num_detections"};
static const ov_element_type_e OUTPUT_TYPES[4] = {F32, F32, I64, I64};

lh_status lh_engine_fail(lh_error *error, ov_status_e status, const char *what, const char *detail) {
    const char *message = ov_get_last_err_msg();
    const char *text = message && *message ? message : ov_get_error_info(status);
    /* OpenVINO prefixes "Exception from src/...cpp:123:" and a line break: the reason follows */
    const char *reason = text;
    if (strncmp(reason, "Exception from ", 15) == 0 && strchr(reason, '\n')) reason = strchr(reason, '\n') + 1;
    reason += strspn(reason, "\n [");
    lh_fail(error, LH_ERR_ENGINE, "%s%s: %s", what, detail ? detail : "", *reason ? reason : text);
    if (message) ov_free(message);
    return LH_ERR_ENGINE;
}

lh_options lh_options_default(void) {
    lh_options options = {.device = "CPU", .threads = 0, .precision = NULL, .min_score = 0.0};
    return options;
}

static lh_status check_options(const char *bundle_dir, const lh_options *o, lh_error *error) {
    if (bundle_dir == NULL || bundle_dir[0] == '\0')
        return lh_fail(error, LH_ERR_INVALID_ARGUMENT, "no bundle folder given; pass the folder that "
                                                       "`lighthead-edge export --out` wrote");
    if (o->threads < 0 || o->threads > 1024)
        return lh_fail(error, LH_ERR_INVALID_ARGUMENT, "threads is %d; give 1..1024, or 0 for the engine's default",
                       o->threads);
    if (!(o->min_score >= 0.0 && o->min_score <= 1.0))
        return lh_fail(error, LH_ERR_INVALID_ARGUMENT, "min_score is %g; give a number in 0..1", o->min_score);
    return LH_OK;
}

/* Compile for `device`; an unknown device is named with the ones this OpenVINO has. */
static lh_status compile(lh_detector *d, ov_model_t *model, const char *device, int threads, lh_error *error) {
    char threads_text[16];
    snprintf(threads_text, sizeof threads_text, "%d", threads);
    ov_property_t props[3] = {{ov_property_key_hint_performance_mode, "LATENCY"}};
    size_t count = 1;
    if (strcasecmp(device, "CPU") == 0)
        props[count++] = (ov_property_t){ov_property_key_hint_inference_precision, "f32"};
    if (threads > 0) props[count++] = (ov_property_t){ov_property_key_inference_num_threads, threads_text};
    ov_status_e status = ov_core_compile_model_props(d->core, model, device, count, props, &d->compiled);
    if (status == OK) return LH_OK;
    ov_available_devices_t devices = {0};
    char have[256] = "";
    if (ov_core_get_available_devices(d->core, &devices) == OK) {
        int found = 0;
        for (size_t i = 0; i < devices.size; i++) {
            size_t used = strlen(have);
            snprintf(have + used, sizeof have - used, "%s%s", used ? ", " : "", devices.devices[i]);
            found |= strcmp(devices.devices[i], device) == 0;
        }
        ov_available_devices_free(&devices);
        if (!found)
            return lh_fail(error, LH_ERR_ENGINE, "OpenVINO device '%s' not found; available: %s", device,
                           *have ? have : "none");
    }
    return lh_engine_fail(error, status, "OpenVINO can't compile the model for ", device);
}

static int static_dim(const ov_partial_shape_t *shape, int i, int64_t *value) {
    ov_dimension_t dim = shape->dims[i];
    if (dim.min != dim.max) return 0;
    *value = dim.min;
    return 1;
}

/* The graph takes [1, H, W, 3] uint8 of the manifest's input.shape (a dynamic H or W is fine). */
static lh_status check_input(lh_detector *d, lh_error *error) {
    ov_output_const_port_t *port = NULL;
    ov_partial_shape_t shape = {0};
    ov_element_type_e type = DYNAMIC;
    size_t inputs = 0;
    if (ov_compiled_model_inputs_size(d->compiled, &inputs) != OK || inputs != 1 ||
        ov_compiled_model_input(d->compiled, &port) != OK || ov_port_get_element_type(port, &type) != OK ||
        ov_port_get_partial_shape(port, &shape) != OK) {
        ov_output_const_port_free(port);
        return lh_fail(error, LH_ERR_BUNDLE, "bundle %s: %s does not have one image input; re-export the bundle",
                       d->bundle.root, d->bundle.xml_path);
    }
    int64_t h = -1, w = -1;
    int ok = shape.rank.min == 4 && shape.rank.max == 4 && type == U8;
    if (ok) {
        ok = (!static_dim(&shape, 1, &h) || h == d->bundle.height) &&
             (!static_dim(&shape, 2, &w) || w == d->bundle.width);
    }
    ov_partial_shape_free(&shape);
    ov_output_const_port_free(port);
    if (ok) return LH_OK;
    return lh_fail(error, LH_ERR_BUNDLE, "bundle %s: %s takes %lldx%lld %s images but the manifest says %dx%d uint8; "
                                         "re-export the bundle", d->bundle.root, d->bundle.xml_path, (long long)h,
                   (long long)w, type == U8 ? "uint8" : "non-uint8", d->bundle.height, d->bundle.width);
}

/* boxes f32 [1, D, 4], scores f32 [1, D], labels i64 [1, D], num_detections i64 [1]: the exporter's outputs. */
static lh_status check_outputs(lh_detector *d, lh_error *error) {
    for (int i = 0; i < 4; i++) {
        ov_output_const_port_t *port = NULL;
        ov_shape_t shape = {0};
        ov_element_type_e type = DYNAMIC;
        int ok = ov_compiled_model_output_by_name(d->compiled, LH_OUTPUT_NAMES[i], &port) == OK &&
                 ov_port_get_element_type(port, &type) == OK && type == OUTPUT_TYPES[i] &&
                 ov_const_port_get_shape(port, &shape) == OK;
        int64_t rank = shape.rank, *dims = shape.dims;
        if (ok && i == 0) {
            ok = rank == 3 && dims[0] == 1 && dims[2] == 4 && dims[1] > 0 && dims[1] < (1 << 24);
            d->rows = ok ? (int)dims[1] : 0;
        } else if (ok) {
            ok = i == 3 ? rank == 1 && dims[0] == 1 : rank == 2 && dims[0] == 1 && dims[1] == d->rows;
        }
        if (shape.dims) ov_shape_free(&shape);
        ov_output_const_port_free(port);
        if (!ok)
            return lh_fail(error, LH_ERR_BUNDLE, "bundle %s: %s has no output '%s' of the exporter's type and "
                                                 "shape; re-export the bundle", d->bundle.root, d->bundle.xml_path,
                           LH_OUTPUT_NAMES[i]);
    }
    return LH_OK;
}

static lh_status load(lh_detector *d, const lh_options *o, lh_error *error) {
    const char *device = o->device && o->device[0] ? o->device : "CPU";
    ov_model_t *model = NULL;
    ov_status_e status = ov_core_create(&d->core);
    if (status != OK) return lh_engine_fail(error, status, "OpenVINO can't start", NULL);
    status = ov_core_read_model(d->core, d->bundle.xml_path, d->bundle.bin_path, &model);
    if (status != OK) return lh_engine_fail(error, status, "OpenVINO can't read ", d->bundle.xml_path);
    lh_status result = compile(d, model, device, o->threads, error);
    ov_model_free(model); /* the compiled model keeps what it needs */
    if (result == LH_OK) result = check_input(d, error);
    if (result == LH_OK) result = check_outputs(d, error);
    if (result == LH_OK && (status = ov_compiled_model_create_infer_request(d->compiled, &d->request)) != OK)
        result = lh_engine_fail(error, status, "OpenVINO can't create an inference request", NULL);
    return result;
}

lh_detector *lh_detector_create(const char *bundle_dir, const lh_options *options, lh_error *error) {
    lh_options defaults = lh_options_default();
    const lh_options *o = options ? options : &defaults;
    lh_clear(error);
    if (check_options(bundle_dir, o, error) != LH_OK) return NULL;
    lh_detector *d = calloc(1, sizeof *d);
    if (d == NULL) {
        lh_fail(error, LH_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    d->min_score = o->min_score;
    if (lh_bundle_open(&d->bundle, bundle_dir, o->precision, error) != LH_OK || load(d, o, error) != LH_OK) {
        lh_detector_destroy(d);
        return NULL;
    }
    return d;
}

void lh_detector_destroy(lh_detector *d) {
    if (d == NULL) return;
    if (d->request) ov_infer_request_free(d->request);
    if (d->compiled) ov_compiled_model_free(d->compiled);
    if (d->core) ov_core_free(d->core);
    if (d->copy_tensor) ov_tensor_free(d->copy_tensor);
    free(d->copy);
    lh_bundle_close(&d->bundle);
    free(d);
}
