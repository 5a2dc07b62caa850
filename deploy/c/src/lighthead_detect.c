/* lighthead_detect: raw bgr24 frames on stdin -> one JSON line per frame on stdout, the same records as
 * `lighthead-edge run --stdin-raw WxH --jsonl -` (runtime/outputs.py detections_record). Every frame is processed,
 * in order (the pipe's backpressure paces the writer); each line goes out whole in one write. Errors are one line on
 * stderr and an exit code (see usage()). */
#define _POSIX_C_SOURCE 200809L
#include "lighthead.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_TRUNCATED = 3, EXIT_BUNDLE = 5, EXIT_SOURCE = 6,
       EXIT_OUTPUT = 7 };
#define MAX_RAW_SIDE 16384
#define PROG "lighthead_detect"

static volatile sig_atomic_t stop_signal = 0;

typedef struct {
    const char *model, *raw_size, *device, *precision;
    int threads, width, height, summary;
    double min_score;
} settings;

typedef struct {
    char *data;
    size_t size, capacity;
    int failed; /* out of memory */
} text;

static void usage(FILE *out) {
    fprintf(out,
            "usage: " PROG " --model BUNDLE --stdin-raw WxH [--device CPU] [--threads N] [--precision fp32|fp16|int8]\n"
            "                        [--min-score S] [--summary]\n"
            "Reads raw bgr24 frames of WxH from stdin, writes one JSON line of detections per frame to stdout.\n"
            "  --model       bundle folder [default: $LIGHTHEAD_EDGE_BUNDLE]\n"
            "  --min-score   detections below it are not written (default 0.3, as lighthead-edge run)\n"
            "  --summary     one line on stderr at the end: frames and frames per second\n"
            "exit codes: 0 done (end of input, reader gone, SIGINT/SIGTERM), 1 inference failed, 2 bad option or\n"
            "frame size, 3 truncated last frame, 5 bad bundle, 6 stdin unusable, 7 can't write stdout\n");
}

static int fail(int code, const char *format, ...) {
    char line[1200];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    line[strcspn(line, "\r\n")] = '\0';
    fprintf(stderr, PROG ": error: %s\n", line);
    return code;
}

/* ------------------------------------------------------------------------------------------------ options */
/* "640x480" -> 640, 480 as runtime/sources.py parse_raw_size: 1..9 digits a side, spaces allowed around. */
static int parse_raw_size(const char *s, int *width, int *height) {
    static const char *const WANT = "--stdin-raw wants WIDTHxHEIGHT, e.g. 640x480, got '%s'";
    long long v[2] = {0, 0};
    const char *p = s;
    for (int i = 0; i < 2; i++) {
        p += strspn(p, " \t\n\r\f\v");
        size_t digits = strspn(p, "0123456789");
        if (digits == 0 || digits > 9) return fail(EXIT_USAGE, WANT, s);
        v[i] = strtoll(p, NULL, 10);
        p += digits + strspn(p + digits, " \t\n\r\f\v");
        if (i == 0 && *p != 'x' && *p != 'X') return fail(EXIT_USAGE, WANT, s);
        p += i == 0;
    }
    if (*p) return fail(EXIT_USAGE, WANT, s);
    if (v[0] < 1 || v[0] > MAX_RAW_SIDE || v[1] < 1 || v[1] > MAX_RAW_SIDE)
        return fail(EXIT_USAGE, "--stdin-raw size %lldx%lld is out of range (width and height 1..%d)", v[0], v[1],
                    MAX_RAW_SIDE);
    *width = (int)v[0];
    *height = (int)v[1];
    return EXIT_OK;
}

static int parse_number(const char *option, const char *value, double low, double high, int integer, double *out) {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end != '\0' || errno || !isfinite(v) || v < low || v > high || (integer && v != floor(v)))
        return fail(EXIT_USAGE, "%s wants %s %g..%g, got '%s'", option, integer ? "an integer" : "a number", low,
                    high, value);
    *out = v;
    return EXIT_OK;
}

static int parse_args(int argc, char **argv, settings *s) {
    static const struct option OPTIONS[] = {
        {"model", required_argument, 0, 'm'},     {"stdin-raw", required_argument, 0, 'r'},
        {"device", required_argument, 0, 'd'},    {"threads", required_argument, 0, 't'},
        {"precision", required_argument, 0, 'p'}, {"min-score", required_argument, 0, 's'},
        {"summary", no_argument, 0, 'S'},         {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0}};
    *s = (settings){.model = getenv("LIGHTHEAD_EDGE_BUNDLE"), .device = "CPU", .min_score = 0.3};
    opterr = 0;
    int c, code = EXIT_OK;
    double value;
    while (code == EXIT_OK && (c = getopt_long(argc, argv, ":", OPTIONS, NULL)) != -1) {
        switch (c) {
            case 'm': s->model = optarg; break;
            case 'r': s->raw_size = optarg; break;
            case 'd': s->device = optarg; break;
            case 'p':
                if (strcmp(optarg, "fp32") && strcmp(optarg, "fp16") && strcmp(optarg, "int8"))
                    code = fail(EXIT_USAGE, "--precision wants fp32, fp16 or int8, got '%s'", optarg);
                s->precision = optarg;
                break;
            case 't':
                if ((code = parse_number("--threads", optarg, 1, 1024, 1, &value)) == EXIT_OK) s->threads = (int)value;
                break;
            case 's': code = parse_number("--min-score", optarg, 0, 1, 0, &s->min_score); break;
            case 'S': s->summary = 1; break;
            case 'h': usage(stdout); return -1;
            case 'V': printf(PROG " %s\n", lh_version()); return -1;
            case ':': code = fail(EXIT_USAGE, "%s needs a value (see --help)", argv[optind - 1]); break;
            default: code = fail(EXIT_USAGE, "unknown option '%s' (see --help)", argv[optind - 1]); break;
        }
    }
    if (code != EXIT_OK) return code;
    if (optind < argc) return fail(EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (s->raw_size == NULL) return fail(EXIT_USAGE, "give --stdin-raw WxH, the size of the frames on stdin");
    if (s->model == NULL || !*s->model)
        return fail(EXIT_USAGE, "give --model BUNDLE (or set LIGHTHEAD_EDGE_BUNDLE)");
    return parse_raw_size(s->raw_size, &s->width, &s->height);
}

/* ---------------------------------------------------------------------------------------------------- JSON */
static void append(text *t, const char *data, size_t size) {
    if (t->failed) return;
    if (t->size + size + 1 > t->capacity) {
        size_t capacity = (t->size + size + 1) * 2;
        char *grown = realloc(t->data, capacity);
        if (grown == NULL) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->capacity = capacity;
    }
    memcpy(t->data + t->size, data, size);
    t->size += size;
    t->data[t->size] = '\0';
}

static void appendf(text *t, const char *format, ...) {
    char piece[128];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(piece, sizeof piece, format, args);
    va_end(args);
    append(t, piece, n < 0 ? 0 : (size_t)n < sizeof piece ? (size_t)n : sizeof piece - 1);
}

/* round(v, decimals) as Python's json writes it: trailing zeros cut, one decimal kept ("12.0", "0.25"). */
static void append_number(text *t, double v, int decimals) {
    if (isnan(v) || isinf(v)) {
        append(t, isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity", isnan(v) ? 3 : v > 0 ? 8 : 9);
        return;
    }
    char piece[64];
    int n = snprintf(piece, sizeof piece, "%.*f", decimals, v);
    while (n > 2 && piece[n - 1] == '0' && piece[n - 2] != '.') n--;
    append(t, piece, (size_t)n);
}

/* One UTF-8 code point at *p (advanced past it); U+FFFD for a malformed byte. */
static unsigned long next_code_point(const unsigned char **p) {
    const unsigned char *s = *p;
    int extra = s[0] >= 0xF0 && s[0] < 0xF5 ? 3 : s[0] >= 0xE0 ? 2 : s[0] >= 0xC2 && s[0] < 0xE0 ? 1 : -1;
    if (s[0] < 0x80 || extra < 0) {
        *p = s + 1;
        return s[0] < 0x80 ? s[0] : 0xFFFD;
    }
    unsigned long code = s[0] & (0x3F >> extra);
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *p = s + i;
            return 0xFFFD;
        }
        code = code << 6 | (s[i] & 0x3F);
    }
    *p = s + extra + 1;
    return code;
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii: \uXXXX beyond ASCII, surrogate pairs above BMP). */
static void append_string(text *t, const char *s) {
    append(t, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned long c = next_code_point(&p);
        const char *short_form = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                               : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (short_form) {
            append(t, short_form, 2);
        } else if (c >= 0x20 && c < 0x7F) {
            char ch = (char)c;
            append(t, &ch, 1);
        } else if (c < 0x10000) {
            appendf(t, "\\u%04lx", c);
        } else {
            c -= 0x10000;
            appendf(t, "\\u%04lx\\u%04lx", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
        }
    }
    append(t, "\"", 1);
}

static void format_record(text *t, long long index, double timestamp, int width, int height,
                          const lh_detections *dets) {
    t->size = 0;
    appendf(t, "{\"frame\":%lld,\"timestamp\":", index);
    append_number(t, timestamp, 6);
    appendf(t, ",\"width\":%d,\"height\":%d,\"detections\":[", width, height);
    for (int i = 0; i < dets->count; i++) {
        const lh_detection *d = &dets->items[i];
        const float box[4] = {d->x1, d->y1, d->x2, d->y2};
        append(t, i ? ",{\"box\":[" : "{\"box\":[", i ? 9 : 8);
        for (int k = 0; k < 4; k++) {
            if (k) append(t, ",", 1);
            append_number(t, box[k], 2);
        }
        append(t, "],\"score\":", 10);
        append_number(t, d->score, 4);
        appendf(t, ",\"label\":%d,\"class\":", d->label);
        append_string(t, d->class_name);
        append(t, "}", 1);
    }
    append(t, "]}\n", 3);
}

/* -------------------------------------------------------------------------------------------------- streams */
static void on_signal(int signum) { stop_signal = signum; }

static void install_signals(void) {
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESETHAND; /* no SA_RESTART: a blocked read returns; a second signal acts as usual */
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN); /* a reader gone is EPIPE from write(), ended quietly */
}

/* Fill `frame` from stdin: its size on success, 0 at the end of input (or a stop signal), else the bytes got
 * (a truncated frame), or -1 with errno on a read error. */
static long long read_frame(unsigned char *frame, size_t size) {
    size_t got = 0;
    while (got < size && !stop_signal) {
        ssize_t n = read(STDIN_FILENO, frame + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += (size_t)n;
    }
    return stop_signal && got < size ? 0 : (long long)got;
}

/* Write a whole line. When a write fails after part of it (a full disk), a regular file is cut back to its last
 * complete line: the part written ends at the current offset. */
static int write_line(const text *t) {
    size_t done = 0;
    while (done < t->size) {
        ssize_t n = write(STDOUT_FILENO, t->data + done, t->size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int saved = errno;
            struct stat st;
            off_t end = lseek(STDOUT_FILENO, 0, SEEK_CUR);
            if (done && end >= (off_t)done && fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode) &&
                st.st_size == end)
                (void)!ftruncate(STDOUT_FILENO, end - (off_t)done);
            errno = saved;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static double now(int clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------------------------------- main */
static int exit_code_of(lh_status status) {
    switch (status) {
        case LH_ERR_BUNDLE: return EXIT_BUNDLE;
        case LH_ERR_INVALID_ARGUMENT:
        case LH_ERR_FRAME_SIZE:
        case LH_ERR_ENGINE: return EXIT_USAGE; /* an unknown device or a model it can't compile: a setting */
        default: return EXIT_FAILED;
    }
}

static int run(lh_detector *det, const settings *s) {
    size_t size = (size_t)s->width * (size_t)s->height * 3;
    unsigned char *frame = malloc(size);
    text line = {0};
    long long index = 0, got = 0;
    double start = 0.0;
    int code = frame ? EXIT_OK : fail(EXIT_FAILED, "out of memory for a %dx%d frame", s->width, s->height);
    while (code == EXIT_OK && (got = read_frame(frame, size)) == (long long)size) {
        double timestamp = now(CLOCK_REALTIME);
        if (index == 0) start = now(CLOCK_MONOTONIC);
        lh_detections *dets = NULL;
        lh_error err;
        if (lh_detect(det, frame, s->width, s->height, s->width * 3, &dets, &err) != LH_OK) {
            code = fail(EXIT_FAILED, "frame %lld: %s", index, err.message);
            break;
        }
        format_record(&line, index, timestamp, s->width, s->height, dets);
        lh_detections_free(dets);
        if (line.failed) {
            code = fail(EXIT_FAILED, "out of memory writing frame %lld", index);
        } else if (write_line(&line) != 0) {
            if (errno != EPIPE) /* EPIPE: the reader is gone, a quiet end */
                code = fail(EXIT_OUTPUT, "can't write to standard output: %s (its %lld complete lines are kept)",
                            strerror(errno), index);
            break;
        }
        index++;
    }
    if (code == EXIT_OK && got < 0) code = fail(EXIT_SOURCE, "can't read stdin: %s", strerror(errno));
    if (code == EXIT_OK && got > 0 && got < (long long)size)
        code = fail(EXIT_TRUNCATED, "truncated frame %lld: %lld of %zu bytes", index, got, size);
    if (s->summary && index > 0) {
        double seconds = now(CLOCK_MONOTONIC) - start;
        fprintf(stderr, "summary: %lld frames in %.3f s (%.2f fps)\n", index, seconds, index / seconds);
    }
    free(line.data);
    free(frame);
    return code;
}

int main(int argc, char **argv) {
    settings s;
    int code = parse_args(argc, argv, &s);
    if (code != EXIT_OK) return code < 0 ? EXIT_OK : code;
    if (isatty(STDIN_FILENO))
        return fail(EXIT_SOURCE, "--stdin-raw reads raw bgr24 frames from a pipe, but stdin is a terminal; e.g. "
                                 "ffmpeg -i IN -f rawvideo -pix_fmt bgr24 - | " PROG " --model BUNDLE --stdin-raw WxH");
    lh_options options = lh_options_default();
    options.device = s.device;
    options.threads = s.threads;
    options.precision = s.precision;
    options.min_score = s.min_score;
    lh_error err;
    lh_detector *det = lh_detector_create(s.model, &options, &err);
    if (det == NULL) return fail(exit_code_of(err.status), "%s", err.message);
    int width, height;
    lh_detector_frame_size(det, &width, &height);
    if (width != s.width || height != s.height) {
        code = fail(EXIT_USAGE, "frame is %dx%d but the bundle takes %dx%d frames; export with --frame-size %dx%d",
                    s.width, s.height, width, height, s.width, s.height);
    } else {
        install_signals();
        code = run(det, &s);
    }
    lh_detector_destroy(det);
    return code;
}
