/* et_train — train an edgetrain model (.etm) on MNIST on the device: edgetrain's counterpart of
 * MindSpore Lite's net_runner. Load the model, read MNIST IDX files, train N steps with the
 * model's own training program (forward, backward, optimizer update), report loss, time and test
 * accuracy, checkpoint and save — all through the runtime API of et_runtime.h.
 *
 * Two kinds of model, told apart by the training program's label input: a classifier (integer
 * label [B]: the digit) and a segmenter (f32 label shaped like the image: the digit mask
 * pixel/255 > 0.5, as tests/families.py seg_target; evaluated by IoU instead of accuracy).
 *
 * Exit codes: 0 ok, 2 bad arguments, 3 a file cannot be read (data or model), 4 the model file is
 * corrupt or not usable here, 5 runtime error. Messages go to stderr, one line each.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgetrain/et_runtime.h"
#include "mnist_idx.h"

enum {
    EXIT_USAGE = 2,   /* bad arguments */
    EXIT_DATA = 3,    /* unreadable / missing file */
    EXIT_MODEL = 4,   /* corrupt or unusable model */
    EXIT_RUNTIME = 5, /* a runtime call failed */
};

static const char USAGE[] =
    "usage: et_train -f MODEL.etm -d MNIST_DIR [options]\n"
    "  -f, --model PATH           model to train (.etm exported by edgetrain)\n"
    "  -d, --data DIR             MNIST raw IDX files, in DIR or DIR/train + DIR/test\n"
    "  -e, --epochs N             train N epochs (default 1)\n"
    "  -i, --iterations N         train N steps instead (wraps around the training set)\n"
    "  -b, --batch N              batch size (default: the model's planned batch)\n"
    "  -t, --threads N            threads (default 1; 0 = all cores; at most 4 per core)\n"
    "      --max-memory BYTES     refuse a plan above BYTES (default: half the memory)\n"
    "  -p, --print-every N        print the loss every N steps (default 100)\n"
    "  -c, --checkpoint-every N   save SAVE_PATH.ckpt every N steps (default 0: never)\n"
    "  -s, --save PATH            trained model (default MODEL_trained.etm)\n"
    "  -r, --resume CKPT          continue from a checkpoint of this run (same -f/-i/-e)\n"
    "      --eval-only            only compute the test accuracy\n"
    "      --no-shuffle           sequential batches (the default)\n"
    "      --seed S               shuffled order each epoch (splitmix64 + Fisher-Yates)\n"
    "      --mean M --std S       normalisation x = (pixel/255 - M)/S (0.1307, 0.3081)\n"
    "      --limit N              use only the first N samples of each split\n"
    "      --test-limit N         use only the first N test samples (0: no evaluation)\n"
    "      --check-data           validate the MNIST files, print a summary and exit\n"
    "      --skip-nonfinite       skip (and count) a step whose loss or gradient is NaN/Inf\n"
    "                             instead of stopping; either way such a step changes nothing\n"
    "      --mask-threshold T     a mask model's output is digit where output > T (default 0:\n"
    "                             logits, as BCEWithLogitsLoss; 0.5 for sigmoid outputs)\n"
    "      --save-outputs PATH    write the eval output 'output' of every test sample to PATH\n"
    "                             (raw float32, native byte order, in test order)\n"
    "  -h, --help                 this text\n"
    "The model's label input decides the target: integer [B] is the digit (classification,\n"
    "test accuracy); f32 shaped like the image is the digit mask, 1 where pixel/255 > 0.5 else\n"
    "0 (segmentation, test IoU and pixel accuracy).\n";

typedef struct options {
    const char *model;
    const char *data_dir;
    const char *save_path;
    const char *resume;
    const char *save_outputs; /* eval outputs as raw f32, or NULL */
    long long epochs;     /* -1: not given */
    long long iterations; /* -1: not given */
    long long batch;      /* 0: the model's */
    long long threads;
    unsigned long long max_memory; /* 0: the runtime's default */
    long long print_every;
    long long checkpoint_every;
    long long limit;      /* -1: all */
    long long test_limit; /* -1: as limit */
    int eval_only;
    int shuffle;
    int check_data;
    int skip_nonfinite;
    unsigned long long seed;
    double mean, std;
    double mask_threshold; /* a mask model's output > this is digit */
} options;

/* ---- messages ----------------------------------------------------------------------------- */
static void verror(const char *fmt, va_list ap) {
    fputs("et_train: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(fmt, ap);
    va_end(ap);
    return code;
}

static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(fmt, ap);
    va_end(ap);
    fputs(USAGE, stderr);
    return EXIT_USAGE;
}

static const char *session_msg(const et_session *s) {
    const char *m = s ? et_session_error(s) : NULL;
    return m && *m ? m : "(no message)";
}

static int runtime_fail(const et_session *s, et_status st, const char *what) {
    return fail(EXIT_RUNTIME, "%s: %s [%s]", what, session_msg(s), et_status_str(st));
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- arguments ------------------------------------------------------------------------------ */
static int parse_int(const char *opt, const char *text, long long lo, long long hi,
                     long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return usage_error("%s expects an integer in [%lld, %lld], got '%s'", opt, lo, hi, text);
    *out = v;
    return 0;
}

static int parse_u64(const char *opt, const char *text, unsigned long long *out) {
    char *end;
    errno = 0;
    if (text[0] == '-') return usage_error("%s expects a non-negative integer, got '%s'", opt, text);
    unsigned long long v = strtoull(text, &end, 0);
    if (errno || end == text || *end)
        return usage_error("%s expects a non-negative integer, got '%s'", opt, text);
    *out = v;
    return 0;
}

static int parse_double(const char *opt, const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v))
        return usage_error("%s expects a finite number, got '%s'", opt, text);
    *out = v;
    return 0;
}

enum opt_id {
    OPT_MODEL, OPT_DATA, OPT_EPOCHS, OPT_ITERS, OPT_BATCH, OPT_THREADS, OPT_PRINT, OPT_CKPT,
    OPT_SAVE, OPT_RESUME, OPT_EVAL_ONLY, OPT_NO_SHUFFLE, OPT_SEED, OPT_MEAN, OPT_STD, OPT_LIMIT,
    OPT_TEST_LIMIT, OPT_CHECK_DATA, OPT_MAX_MEMORY, OPT_SKIP_NONFINITE, OPT_MASK_THRESHOLD,
    OPT_SAVE_OUTPUTS, OPT_HELP
};

static const struct {
    char short_name;
    const char *long_name;
    int has_arg;
    enum opt_id id;
} OPTS[] = {
    {'f', "model", 1, OPT_MODEL},          {'d', "data", 1, OPT_DATA},
    {'e', "epochs", 1, OPT_EPOCHS},        {'i', "iterations", 1, OPT_ITERS},
    {'b', "batch", 1, OPT_BATCH},          {'t', "threads", 1, OPT_THREADS},
    {'p', "print-every", 1, OPT_PRINT},    {'c', "checkpoint-every", 1, OPT_CKPT},
    {'s', "save", 1, OPT_SAVE},            {'r', "resume", 1, OPT_RESUME},
    {0, "eval-only", 0, OPT_EVAL_ONLY},    {0, "no-shuffle", 0, OPT_NO_SHUFFLE},
    {0, "seed", 1, OPT_SEED},              {0, "mean", 1, OPT_MEAN},
    {0, "std", 1, OPT_STD},                {0, "limit", 1, OPT_LIMIT},
    {0, "test-limit", 1, OPT_TEST_LIMIT},  {0, "check-data", 0, OPT_CHECK_DATA},
    {0, "max-memory", 1, OPT_MAX_MEMORY},  {0, "skip-nonfinite", 0, OPT_SKIP_NONFINITE},
    {0, "mask-threshold", 1, OPT_MASK_THRESHOLD}, {0, "save-outputs", 1, OPT_SAVE_OUTPUTS},
    {'h', "help", 0, OPT_HELP},
};
#define N_OPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

/* Returns 0 to go on, -1 after --help, or an exit code. */
static int parse_args(int argc, char **argv, options *o) {
    const long long BIG = 1000000000000LL;
    memset(o, 0, sizeof *o);
    o->epochs = -1;
    o->iterations = -1;
    o->threads = 1;
    o->print_every = 100;
    o->limit = -1;
    o->test_limit = -1;
    o->mean = 0.1307;
    o->std = 0.3081;
    int seen_seed = 0, seen_no_shuffle = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *inline_val = NULL;
        int k = -1;
        char name[64];
        if (arg[0] == '-' && arg[1] == '-' && arg[2]) {
            const char *eq = strchr(arg + 2, '=');
            size_t len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
            if (len >= sizeof name) return usage_error("unknown option '%s'", arg);
            memcpy(name, arg + 2, len);
            name[len] = 0;
            for (int j = 0; j < N_OPTS; j++)
                if (strcmp(OPTS[j].long_name, name) == 0) k = j;
            if (k < 0) return usage_error("unknown option '%s'", arg);
            if (eq) {
                if (!OPTS[k].has_arg) return usage_error("option --%s takes no value", name);
                inline_val = eq + 1;
            }
        } else if (arg[0] == '-' && arg[1] && !arg[2]) {
            for (int j = 0; j < N_OPTS; j++)
                if (OPTS[j].short_name == arg[1]) k = j;
            if (k < 0) return usage_error("unknown option '%s'", arg);
        } else {
            return usage_error("unexpected argument '%s'", arg);
        }
        const char *val = inline_val;
        if (OPTS[k].has_arg && !val) {
            if (i + 1 >= argc) return usage_error("option '%s' needs a value", arg);
            val = argv[++i];
        }
        int rc = 0;
        switch (OPTS[k].id) {
        case OPT_MODEL: o->model = val; break;
        case OPT_DATA: o->data_dir = val; break;
        case OPT_EPOCHS: rc = parse_int(arg, val, 0, 1000000, &o->epochs); break;
        case OPT_ITERS: rc = parse_int(arg, val, 0, BIG, &o->iterations); break;
        case OPT_BATCH: rc = parse_int(arg, val, 1, 1 << 20, &o->batch); break;
        case OPT_THREADS: rc = parse_int(arg, val, 0, 1024, &o->threads); break;
        case OPT_PRINT: rc = parse_int(arg, val, 1, BIG, &o->print_every); break;
        case OPT_CKPT: rc = parse_int(arg, val, 0, BIG, &o->checkpoint_every); break;
        case OPT_SAVE: o->save_path = val; break;
        case OPT_RESUME: o->resume = val; break;
        case OPT_EVAL_ONLY: o->eval_only = 1; break;
        case OPT_NO_SHUFFLE: o->shuffle = 0; seen_no_shuffle = 1; break;
        case OPT_SEED: rc = parse_u64(arg, val, &o->seed); o->shuffle = 1; seen_seed = 1; break;
        case OPT_MEAN: rc = parse_double(arg, val, &o->mean); break;
        case OPT_STD: rc = parse_double(arg, val, &o->std); break;
        case OPT_LIMIT: rc = parse_int(arg, val, 1, BIG, &o->limit); break;
        case OPT_TEST_LIMIT: rc = parse_int(arg, val, 0, BIG, &o->test_limit); break;
        case OPT_CHECK_DATA: o->check_data = 1; break;
        case OPT_MAX_MEMORY:
            rc = parse_u64(arg, val, &o->max_memory);
            if (!rc && o->max_memory == 0) rc = usage_error("%s expects a byte count >= 1", arg);
            break;
        case OPT_SKIP_NONFINITE: o->skip_nonfinite = 1; break;
        case OPT_MASK_THRESHOLD: rc = parse_double(arg, val, &o->mask_threshold); break;
        case OPT_SAVE_OUTPUTS: o->save_outputs = val; break;
        case OPT_HELP: fputs(USAGE, stdout); return -1;
        }
        if (rc) return rc;
        if (val && !*val && (OPTS[k].id == OPT_MODEL || OPTS[k].id == OPT_DATA ||
                             OPTS[k].id == OPT_SAVE || OPTS[k].id == OPT_RESUME ||
                             OPTS[k].id == OPT_SAVE_OUTPUTS))
            return usage_error("option '%s' needs a non-empty path", arg);
    }
    if (seen_seed && seen_no_shuffle) return usage_error("--seed and --no-shuffle exclude each other");
    if (o->epochs >= 0 && o->iterations >= 0) return usage_error("give -e or -i, not both");
    if (!o->data_dir) return usage_error("no MNIST folder given (-d)");
    if (!o->model && !o->check_data) return usage_error("no model given (-f)");
    if (o->std == 0.0) return usage_error("--std must be non-zero");
    if (o->eval_only && (o->resume || o->checkpoint_every || o->iterations >= 0 || o->epochs >= 0))
        return usage_error("--eval-only trains nothing: drop -e/-i/-c/-r");
    if (o->test_limit < 0) o->test_limit = o->limit;
    if (o->save_outputs && o->test_limit == 0)
        return usage_error("--save-outputs writes the test outputs: drop --test-limit 0");
    return 0;
}

/* ---- model inputs ------------------------------------------------------------------------- */
typedef struct model_io {
    int data;          /* INPUT f32 tensor index */
    int label;         /* INPUT label tensor index (integer, or f32 mask), -1 if none */
    int mask;          /* 1: segmentation, the label is an f32 mask shaped like the image */
    const char *data_name, *label_name;
    int data_ndim;     /* 4: [B, 1, S, S]; 2: [B, 784] */
    int64_t side;      /* S (28, or 32 for LeNet-5) */
    int pad;           /* (S - 28) / 2 */
    int64_t batch;     /* planned batch */
    int loss;          /* train program output "loss" */
} model_io;

static const char *dtype_name(et_dtype t) {
    static const char *names[] = {"f32", "i32", "i64", "u8", "i8"};
    return (unsigned)t < ET_DTYPE_COUNT_ ? names[t] : "?";
}

static void shape_str(const et_tensor_info *ti, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ti->ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, d ? ",%lld" : "%lld",
                                 (long long)ti->shape[d]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* Find the f32 data input (the first f32 INPUT) and the label input of `kind`: an integer INPUT,
 * or a second f32 INPUT (a mask; its shape is checked by inspect_model). */
static int find_inputs(et_session *s, et_program_kind kind, int *data, int *label) {
    et_status st = et_session_set_program(s, kind);
    if (st != ET_OK) return runtime_fail(s, st, "selecting a program");
    *data = -1;
    *label = -1;
    int n = et_session_input_count(s);
    for (int i = 0; i < n; i++) {
        int t = et_session_input_tensor(s, i);
        et_tensor_info ti;
        if (t < 0 || et_session_tensor_info(s, t, &ti) != ET_OK)
            return fail(EXIT_MODEL, "program input %d has no valid tensor", i);
        if (ti.dtype == ET_F32 && *data < 0) {
            *data = t;
        } else if ((ti.dtype == ET_I32 || ti.dtype == ET_I64 || ti.dtype == ET_F32) &&
                   *label < 0) {
            *label = t;
        } else {
            return fail(EXIT_MODEL, "unexpected %s input '%s': et_train feeds one f32 image input "
                        "and one label input (integer class indices, or an f32 digit mask shaped "
                        "like the image)", dtype_name(ti.dtype), ti.name);
        }
    }
    if (*data < 0) return fail(EXIT_MODEL, "the model has no f32 image input");
    return 0;
}

static int find_output(et_session *s, const char *name) {
    int n = et_session_output_count(s);
    for (int i = 0; i < n; i++) {
        const char *o = et_session_output_name(s, i);
        if (o && strcmp(o, name) == 0) return et_session_output_tensor(s, i);
    }
    return -1;
}

static int same_shape(const et_tensor_info *a, const et_tensor_info *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* The label input: integer [B] (class indices), or f32 with the image's shape (digit mask).
 * image/image_shape: the image input's info and shape text. */
static int check_label(et_session *s, model_io *io, const et_tensor_info *image,
                       const char *image_shape) {
    et_tensor_info ti;
    char shape[96];
    if (et_session_tensor_info(s, io->label, &ti) != ET_OK)
        return fail(EXIT_MODEL, "cannot read the label input's shape");
    shape_str(&ti, shape, sizeof shape);
    if (ti.dtype == ET_F32) {
        if (!same_shape(&ti, image))
            return fail(EXIT_MODEL, "label input '%s' is f32 %s; et_train feeds an f32 label as "
                        "the digit mask, shaped like the image input %s (or integer class "
                        "indices [%lld])", ti.name, shape, image_shape, (long long)io->batch);
        io->mask = 1;
    } else if (ti.ndim != 1 || ti.shape[0] != io->batch) {
        return fail(EXIT_MODEL, "label input '%s' has shape %s; et_train feeds class indices "
                    "[%lld]", ti.name, shape, (long long)io->batch);
    }
    io->label_name = ti.name;
    return 0;
}

/* A model with no label input anywhere (an inference-only file, --eval-only): an eval output
 * shaped like the image makes it a segmenter, evaluated against the digit mask. */
static int mask_output(et_session *s, model_io *io, const et_tensor_info *image) {
    et_tensor_info ti;
    if (et_session_set_program(s, ET_PROGRAM_EVAL) != ET_OK ||
        et_session_tensor_info(s, find_output(s, "output"), &ti) != ET_OK)
        return fail(EXIT_MODEL, "cannot read the eval output's shape");
    io->mask = ti.dtype == ET_F32 && same_shape(&ti, image);
    return 0;
}

static int inspect_model(et_session *s, int eval_only, model_io *io) {
    int rc, data, label;
    memset(io, 0, sizeof *io);
    io->label = -1;
    io->loss = -1;
    if (!eval_only) {
        if (!et_session_has_program(s, ET_PROGRAM_TRAIN))
            return fail(EXIT_MODEL, "the model has no training program (inference-only file?); "
                        "only --eval-only works with it");
        if ((rc = find_inputs(s, ET_PROGRAM_TRAIN, &data, &label))) return rc;
        if (label < 0) return fail(EXIT_MODEL, "the training program has no label input");
        io->loss = find_output(s, "loss");
        if (io->loss < 0) return fail(EXIT_MODEL, "the training program has no output 'loss'");
        io->label = label;
    }
    int edata, elabel;
    if (!et_session_has_program(s, ET_PROGRAM_EVAL))
        return fail(EXIT_MODEL, "the model has no eval program");
    if ((rc = find_inputs(s, ET_PROGRAM_EVAL, &edata, &elabel))) return rc;
    if (!eval_only && edata != data)
        return fail(EXIT_MODEL, "the eval and training programs read different image inputs");
    if (eval_only) {
        /* Resizing must keep every program consistent: also resize the training program's label
         * input, if the model has one, even though the eval program may not read it. */
        data = edata;
        io->label = elabel;
        if (elabel < 0 && et_session_has_program(s, ET_PROGRAM_TRAIN)) {
            int tdata;
            if ((rc = find_inputs(s, ET_PROGRAM_TRAIN, &tdata, &label))) return rc;
            io->label = label;
        }
    }
    if (find_output(s, "output") < 0)
        return fail(EXIT_MODEL, "the eval program has no output 'output'");
    io->data = data;

    et_tensor_info ti;
    char shape[96];
    if (et_session_tensor_info(s, data, &ti) != ET_OK)
        return fail(EXIT_MODEL, "cannot read the image input's shape");
    shape_str(&ti, shape, sizeof shape);
    io->data_name = ti.name;
    io->data_ndim = ti.ndim;
    io->batch = ti.shape[0];
    if (ti.ndim == 4 && ti.shape[1] == 1 && ti.shape[2] == ti.shape[3] &&
        ti.shape[2] >= ET_MNIST_SIDE && (ti.shape[2] - ET_MNIST_SIDE) % 2 == 0 &&
        ti.shape[2] <= 4 * ET_MNIST_SIDE) {
        io->side = ti.shape[2];
        io->pad = (int)((ti.shape[2] - ET_MNIST_SIDE) / 2);
    } else if (ti.ndim == 2 && ti.shape[1] == ET_MNIST_PIXELS) {
        io->side = ET_MNIST_SIDE;
        io->pad = 0;
    } else {
        return fail(EXIT_MODEL, "image input '%s' has shape %s; et_train feeds MNIST as [B,1,S,S] "
                    "(S = 28 + 2*pad) or [B,784]", ti.name, shape);
    }
    if (io->batch < 1) return fail(EXIT_MODEL, "image input '%s' has batch %lld", ti.name,
                                   (long long)io->batch);
    if (io->label >= 0) return check_label(s, io, &ti, shape);
    return mask_output(s, io, &ti);
}

/* Re-plan for batch n (the image input and, if present, the label input: [n], or a mask shaped
 * like the image). */
static int resize_batch(et_session *s, const model_io *io, int64_t n) {
    int64_t dshape[4] = {n, 1, io->side, io->side};
    if (io->data_ndim == 2) dshape[1] = ET_MNIST_PIXELS;
    int64_t lshape[1] = {n};
    const char *names[2] = {io->data_name, io->label_name};
    int ndims[2] = {io->data_ndim, io->mask ? io->data_ndim : 1};
    const int64_t *shapes[2] = {dshape, io->mask ? dshape : lshape};
    et_status st = et_session_resize(s, io->label >= 0 ? 2 : 1, names, ndims, shapes);
    if (st != ET_OK) {
        char what[64];
        snprintf(what, sizeof what, "resizing to batch %lld", (long long)n);
        return runtime_fail(s, st, what);
    }
    return 0;
}

/* Feed the current program's inputs from a prepared batch of n samples: images x, and labels y
 * (classifier) or masks m (segmenter) if the program reads the label input. */
static int feed(et_session *s, const model_io *io, int64_t n, const float *x, const int32_t *y,
                const float *m) {
    int64_t dshape[4] = {n, 1, io->side, io->side};
    if (io->data_ndim == 2) dshape[1] = ET_MNIST_PIXELS;
    et_status st = et_session_set_input(s, io->data_name, ET_F32, x, io->data_ndim, dshape);
    if (st != ET_OK) return runtime_fail(s, st, "setting the image input");
    int ninp = et_session_input_count(s);
    for (int i = 0; i < ninp; i++) {
        if (et_session_input_tensor(s, i) != io->label) continue;
        int64_t lshape[1] = {n};
        if (io->mask)
            st = et_session_set_input(s, io->label_name, ET_F32, m, io->data_ndim, dshape);
        else
            st = et_session_set_input(s, io->label_name, ET_I32, y, 1, lshape);
        if (st != ET_OK) return runtime_fail(s, st, "setting the label input");
    }
    return 0;
}

/* ---- evaluation ---------------------------------------------------------------------------- */
typedef struct eval_buf {
    float *x, *m; /* a batch of images, and of digit masks (segmenters) */
    int32_t *y;
    int64_t *order;
    FILE *outputs; /* --save-outputs: each batch's output, or NULL */
} eval_buf;

/* Correct argmax predictions of a classifier's output [n, classes] (first maximum, as
 * numpy.argmax); -1 if the output has another shape. */
static int64_t count_correct(const et_tensor_info *ti, const float *scores, int64_t n,
                             const int32_t *y) {
    if (ti->dtype != ET_F32 || ti->ndim != 2 || ti->shape[0] != n || ti->shape[1] < 1) return -1;
    int64_t classes = ti->shape[1], correct = 0;
    for (int64_t b = 0; b < n; b++) {
        const float *row = scores + b * classes;
        int64_t best = 0;
        for (int64_t c = 1; c < classes; c++)
            if (row[c] > row[best]) best = c;
        correct += best == y[b];
    }
    return correct;
}

/* A segmenter's output (shaped like the image) against the masks m: adds the pixels predicted
 * digit (output > threshold) and in the mask (inter), in either (uni), and predicted right
 * (right). Returns -1 if the output has another shape. */
static int count_mask(const et_tensor_info *ti, const et_tensor_info *image, const float *out,
                      const float *m, double threshold, int64_t counts[3]) {
    if (ti->dtype != ET_F32 || !same_shape(ti, image)) return -1;
    int64_t size = 1;
    for (int d = 0; d < ti->ndim; d++) size *= ti->shape[d];
    for (int64_t k = 0; k < size; k++) {
        int pred = (double)out[k] > threshold, truth = m[k] > 0.5f;
        counts[0] += pred && truth;
        counts[1] += pred || truth;
        counts[2] += pred == truth;
    }
    return 0;
}

/* Append an f32 output tensor's values to f (--save-outputs); nonzero on a write error. */
static int write_outputs(FILE *f, const et_tensor_info *ti, const float *out) {
    size_t size = 1;
    if (ti->dtype != ET_F32) return errno = EINVAL, -1;
    for (int d = 0; d < ti->ndim; d++) size *= (size_t)ti->shape[d];
    return fwrite(out, sizeof *out, size, f) == size ? 0 : -1;
}

static int evaluate(et_session *s, const model_io *io, const et_mnist_split *test, int64_t batch,
                    const float *lut, double threshold, const eval_buf *buf) {
    et_status st = et_session_set_program(s, ET_PROGRAM_EVAL);
    if (st != ET_OK) return runtime_fail(s, st, "selecting the eval program");
    int out = find_output(s, "output");
    int64_t correct = 0, planned = batch, batches = 0, counts[3] = {0, 0, 0};
    double t0 = now_seconds();
    for (int64_t i = 0; i < test->count; i++) buf->order[i] = i;
    for (int64_t start = 0; start < test->count; start += batch) {
        int64_t n = test->count - start < batch ? test->count - start : batch;
        int rc;
        if (n != planned) {
            if ((rc = resize_batch(s, io, n))) return rc;
            planned = n;
        }
        et_mnist_fill_batch(test, buf->order + start, n, lut, io->pad, buf->x, buf->y);
        if (io->mask) et_mnist_fill_mask(test, buf->order + start, n, io->pad, buf->m);
        if ((rc = feed(s, io, n, buf->x, buf->y, buf->m))) return rc;
        if ((st = et_session_run(s)) != ET_OK) return runtime_fail(s, st, "running the eval program");
        et_tensor_info ti, image;
        const float *scores = (const float *)et_session_tensor_data(s, out);
        if (et_session_tensor_info(s, out, &ti) != ET_OK || !scores ||
            et_session_tensor_info(s, io->data, &image) != ET_OK)
            return fail(EXIT_MODEL, "cannot read the eval output 'output'");
        if (buf->outputs && write_outputs(buf->outputs, &ti, scores) != 0)
            return fail(EXIT_DATA, "--save-outputs: cannot write the eval outputs (%s)",
                        strerror(errno));
        if (io->mask) {
            if (count_mask(&ti, &image, scores, buf->m, threshold, counts) < 0)
                return fail(EXIT_MODEL, "eval output 'output' of a mask model is not f32 shaped "
                            "like the image");
        } else {
            int64_t c = count_correct(&ti, scores, n, buf->y);
            if (c < 0) return fail(EXIT_MODEL, "eval output 'output' is not f32 [batch, classes]");
            correct += c;
        }
        batches++;
    }
    double dt = now_seconds() - t0;
    if (!io->mask) {
        printf("accuracy = %.6f\n", test->count ? (double)correct / (double)test->count : 0.0);
    } else if (counts[1] > 0) { /* IoU of the digit pixels, pooled over the test set */
        int64_t pixels = test->count * io->side * io->side; /* [B,784] has side 28 */
        printf("iou = %.6f (digit pixels: output > %g against pixel/255 > 0.5)\n",
               (double)counts[0] / (double)counts[1], threshold);
        printf("pixel accuracy = %.6f\n", (double)counts[2] / (double)pixels);
    } else {
        printf("iou: undefined (no digit pixel in the test masks or the predictions)\n");
    }
    printf("eval time: %.3f s, %.3f ms/batch (%lld samples, batch %lld)\n", dt,
           batches ? 1e3 * dt / (double)batches : 0.0, (long long)test->count, (long long)batch);
    return 0;
}

/* ---- --check-data -------------------------------------------------------------------------- */
static int check_data(const options *o) {
    char err[ET_MNIST_ERR_MAX];
    et_mnist_split split[2];
    float lut[256];
    et_mnist_make_lut(o->mean, o->std, lut);
    for (int k = 0; k < 2; k++) {
        int64_t limit = k == 0 ? o->limit : o->test_limit;
        if (et_mnist_load(o->data_dir, k == 0, limit, &split[k], err, sizeof err) != 0) {
            if (k) et_mnist_free(&split[0]);
            return fail(EXIT_DATA, "%s", err);
        }
        double sum = 0.0;
        int64_t counts[10] = {0};
        for (int64_t i = 0; i < split[k].count; i++) {
            const uint8_t *img = split[k].images + (size_t)i * ET_MNIST_PIXELS;
            for (int p = 0; p < ET_MNIST_PIXELS; p++) sum += lut[img[p]];
            counts[split[k].labels[i]]++;
        }
        printf("%s: %lld images 28x28 (%s, %s)\n", k == 0 ? "train" : "test",
               (long long)split[k].count, split[k].images_path, split[k].labels_path);
        printf("%s: mean(x) = %.9f, labels per class:", k == 0 ? "train" : "test",
               split[k].count ? sum / ((double)split[k].count * ET_MNIST_PIXELS) : 0.0);
        for (int c = 0; c < 10; c++) printf(" %lld", (long long)counts[c]);
        printf("\n");
    }
    int64_t n = split[0].count;
    int64_t *order = (int64_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    if (!order) {
        et_mnist_free(&split[0]);
        et_mnist_free(&split[1]);
        return fail(EXIT_RUNTIME, "out of memory");
    }
    for (uint64_t e = 0; e < 2; e++) {
        et_mnist_epoch_order(order, n, o->shuffle, o->seed, e);
        printf("order epoch %llu:", (unsigned long long)e);
        for (int64_t i = 0; i < n && i < 8; i++) printf(" %lld", (long long)order[i]);
        printf("\n");
    }
    free(order);
    et_mnist_free(&split[0]);
    et_mnist_free(&split[1]);
    return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */
static int file_readable(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(EXIT_DATA, "%s: cannot open model file (%s)", path, strerror(errno));
    fclose(f);
    return 0;
}

static int load_session(const char *path, const options *o, et_session **s) {
    int rc = file_readable(path);
    if (rc) return rc;
    et_load_options lo = {(int)o->threads, o->max_memory};
    et_status st = et_session_load_file_ex(path, &lo, s);
    if (st != ET_OK) {
        const char *m = et_load_error();
        *s = NULL;
        return fail(st == ET_ERR_NOMEM || st == ET_ERR_LIMIT ? EXIT_RUNTIME : EXIT_MODEL, "%s: cannot load model: %s [%s]",
                    path, m && *m ? m : "(no message)", et_status_str(st));
    }
    return 0;
}

static int save(et_session *s, const char *path, const char *what) {
    et_status st = et_session_save_file(s, path);
    if (st != ET_OK) {
        char msg[64 + ET_MNIST_PATH_MAX];
        snprintf(msg, sizeof msg, "saving the %s to %s", what, path);
        return runtime_fail(s, st, msg);
    }
    return 0;
}

/* ---- the run: data, model, buffers, training, evaluation ----------------------------------- */
typedef struct run_ctx {
    et_session *s;
    et_mnist_split train, test;
    model_io io;
    uint64_t start_step; /* the model's step (with --resume, the checkpoint's may be later) */
    int64_t batch;
    float *x;
    int32_t *y;
    float *m; /* digit masks of a batch (segmenters only) */
    int64_t *order;
    float lut[256];
    char *default_save, *ckpt_path;
} run_ctx;

/* Files first: cheap checks before any heavy work. */
static int load_data(const options *o, run_ctx *r) {
    char err[ET_MNIST_ERR_MAX];
    int rc;
    if ((rc = file_readable(o->model))) return rc;
    if (o->resume && (rc = file_readable(o->resume))) return rc;
    if (!o->eval_only && et_mnist_load(o->data_dir, 1, o->limit, &r->train, err, sizeof err) != 0)
        return fail(EXIT_DATA, "%s", err);
    if (o->test_limit != 0 && et_mnist_load(o->data_dir, 0, o->test_limit, &r->test, err, sizeof err) != 0)
        return fail(EXIT_DATA, "%s", err);
    return 0;
}

/* The model; with --resume the checkpoint replaces it (the model only gives the step the run
 * started from, so steps and data order continue where the checkpoint left off). */
static int open_model(const options *o, run_ctx *r) {
    int rc;
    if ((rc = load_session(o->model, o, &r->s))) return rc;
    r->start_step = et_session_step(r->s);
    if (o->resume) {
        et_session_free(r->s);
        r->s = NULL;
        if ((rc = load_session(o->resume, o, &r->s))) return rc;
        if (et_session_step(r->s) < r->start_step)
            return fail(EXIT_USAGE, "%s is at step %llu, before %s (step %llu): not a checkpoint of this model",
                        o->resume, (unsigned long long)et_session_step(r->s), o->model,
                        (unsigned long long)r->start_step);
    }
    if ((rc = inspect_model(r->s, o->eval_only, &r->io))) return rc;
    if (o->skip_nonfinite) et_session_set_nonfinite_policy(r->s, ET_NONFINITE_SKIP);
    r->batch = o->batch > 0 ? o->batch : r->io.batch;
    if (r->batch != r->io.batch) return resize_batch(r->s, &r->io, r->batch);
    return 0;
}

/* One batch of images and labels, the sample order and the pixel table. */
static int alloc_buffers(const options *o, run_ctx *r) {
    size_t plane = (size_t)r->io.side * (size_t)r->io.side;
    int64_t norder = r->train.count > r->test.count ? r->train.count : r->test.count;
    r->x = (float *)malloc((size_t)r->batch * plane * sizeof *r->x);
    r->y = (int32_t *)malloc((size_t)r->batch * sizeof *r->y);
    r->order = (int64_t *)malloc((size_t)(norder > 0 ? norder : 1) * sizeof *r->order);
    if (r->io.mask) r->m = (float *)malloc((size_t)r->batch * plane * sizeof *r->m);
    if (!r->x || !r->y || !r->order || (r->io.mask && !r->m))
        return fail(EXIT_RUNTIME, "out of memory for a batch of %lld", (long long)r->batch);
    et_mnist_make_lut(o->mean, o->std, r->lut);
    return 0;
}

static void print_setup(const options *o, const run_ctx *r) {
    et_memory_info mem;
    if (et_session_memory_info(r->s, &mem) != ET_OK) memset(&mem, 0, sizeof mem);
    printf("model: %s%s%s (step %llu), input %s [%lld,1,%lld,%lld], threads %d, isa %s, "
           "openmp %s, memory %.2f MB\n", o->resume ? o->resume : o->model,
           o->resume ? " resuming " : "", o->resume ? o->model : "",
           (unsigned long long)et_session_step(r->s), r->io.data_name, (long long)r->batch,
           (long long)r->io.side, (long long)r->io.side, et_session_threads(r->s),
           et_isa_name(et_get_isa()), et_has_openmp() ? "yes" : "no",
           (double)mem.total_bytes / (1024.0 * 1024.0));
    printf("data: %s: %lld train, %lld test images\n", o->data_dir, (long long)r->train.count,
           (long long)r->test.count);
    if (r->io.mask && r->io.label_name)
        printf("target: input '%s' gets the digit mask (f32 shaped like the image): 1 where "
               "pixel/255 > 0.5, else 0\n", r->io.label_name);
    else if (r->io.mask)
        printf("target: the digit mask (no label input; the output is shaped like the image): 1 "
               "where pixel/255 > 0.5, else 0\n");
}

/* The trained model's path (-s, else MODEL.etm -> MODEL_trained.etm) and its checkpoint's. */
static int save_paths(const options *o, run_ctx *r, const char **save_path) {
    *save_path = o->save_path;
    if (!*save_path) {
        size_t len = strlen(o->model);
        const char *dot = strrchr(o->model, '.');
        const char *slash = strrchr(o->model, '/');
        if (!dot || (slash && dot < slash)) dot = o->model + len;
        r->default_save = (char *)malloc(len + 16);
        if (!r->default_save) return fail(EXIT_RUNTIME, "out of memory");
        memcpy(r->default_save, o->model, (size_t)(dot - o->model));
        strcpy(r->default_save + (dot - o->model), "_trained.etm");
        *save_path = r->default_save;
    }
    r->ckpt_path = (char *)malloc(strlen(*save_path) + 6);
    if (!r->ckpt_path) return fail(EXIT_RUNTIME, "out of memory");
    sprintf(r->ckpt_path, "%s.ckpt", *save_path);
    return 0;
}

/* Step k (0-based) of the run: feed batch i of the epoch, run, check and print the loss, and
 * checkpoint when due. */
static int train_step(const options *o, run_ctx *r, int64_t k, int64_t i, int64_t total) {
    const int64_t *order = r->order + i * r->batch;
    et_mnist_fill_batch(&r->train, order, r->batch, r->lut, r->io.pad, r->x, r->y);
    if (r->io.mask) et_mnist_fill_mask(&r->train, order, r->batch, r->io.pad, r->m);
    int rc = feed(r->s, &r->io, r->batch, r->x, r->y, r->m);
    if (rc) return rc;
    et_status st = et_session_run(r->s);
    if (st != ET_OK) {
        char what[96];
        snprintf(what, sizeof what, "training step %lld%s", (long long)(k + 1),
                 st == ET_ERR_NONFINITE ? " (--skip-nonfinite skips such batches)" : "");
        return runtime_fail(r->s, st, what);
    }
    const float *loss = (const float *)et_session_tensor_data(r->s, r->io.loss);
    float lv = loss ? loss[0] : NAN;
    if (et_session_last_step_skipped(r->s))
        printf("step %lld: skipped (non-finite loss or gradient; nothing changed)\n", (long long)(k + 1));
    else if (!isfinite(lv))
        return fail(EXIT_RUNTIME, "step %lld: loss is %f; training diverged (lower the learning rate?)",
                    (long long)(k + 1), lv);
    if (!et_session_last_step_skipped(r->s) && (k + 1) % o->print_every == 0)
        printf("step %lld: loss %.6f\n", (long long)(k + 1), lv);
    if (o->checkpoint_every > 0 && (k + 1) % o->checkpoint_every == 0 && k + 1 < total)
        return save(r->s, r->ckpt_path, "checkpoint");
    return 0;
}

/* Steps done_steps..total-1, a new sample order at each epoch; prints the time per step. */
static int train_loop(const options *o, run_ctx *r, int64_t per_epoch, int64_t done_steps, int64_t total) {
    et_status st = et_session_set_program(r->s, ET_PROGRAM_TRAIN);
    if (st != ET_OK) return runtime_fail(r->s, st, "selecting the training program");
    int64_t cur_epoch = -1, ran = 0;
    double t0 = now_seconds();
    for (int64_t k = done_steps; k < total; k++) {
        int64_t epoch = k / per_epoch;
        if (epoch != cur_epoch) {
            et_mnist_epoch_order(r->order, r->train.count, o->shuffle, o->seed, (uint64_t)epoch);
            cur_epoch = epoch;
        }
        int rc = train_step(o, r, k, k % per_epoch, total);
        if (rc) return rc;
        ran++;
    }
    double dt = now_seconds() - t0;
    printf("time: %.3f s, %.3f ms/step (%lld steps)\n", dt, ran ? 1e3 * dt / (double)ran : 0.0, (long long)ran);
    return 0;
}

/* Plan the steps (-i, else -e epochs; the last partial batch of an epoch is dropped), train,
 * save the trained model. */
static int train(const options *o, run_ctx *r) {
    int64_t per_epoch = r->train.count / r->batch;
    if (per_epoch < 1)
        return fail(EXIT_USAGE, "the training set has %lld samples, fewer than one batch of %lld",
                    (long long)r->train.count, (long long)r->batch);
    int64_t total = o->iterations >= 0 ? o->iterations : (o->epochs >= 0 ? o->epochs : 1) * per_epoch;
    /* steps here are batches; with gradient accumulation the session's step counts updates */
    int micro = 0;
    const int accum = et_session_accumulation(r->s, &micro);
    int64_t done_steps = (int64_t)(et_session_step(r->s) - r->start_step) * accum + micro;
    const char *save_path;
    int rc = save_paths(o, r, &save_path);
    if (rc) return rc;
    printf("training: %lld steps (%lld batches of %lld per epoch, %s order%s), %lld done\n", (long long)total,
           (long long)per_epoch, (long long)r->batch, o->shuffle ? "shuffled" : "sequential",
           o->shuffle ? " from --seed" : "", (long long)(done_steps < total ? done_steps : total));
    if (accum > 1) printf("gradient accumulation: one update per %d batches\n", accum);
    if ((rc = train_loop(o, r, per_epoch, done_steps, total))) return rc;
    if (et_session_skipped_steps(r->s))
        printf("skipped: %llu steps with a non-finite loss or gradient\n",
               (unsigned long long)et_session_skipped_steps(r->s));
    if ((rc = save(r->s, save_path, "trained model"))) return rc;
    printf("saved: %s\n", save_path);
    return 0;
}

static void run_free(run_ctx *r) {
    if (r->s) et_session_free(r->s);
    et_mnist_free(&r->train);
    et_mnist_free(&r->test);
    free(r->x);
    free(r->y);
    free(r->m);
    free(r->order);
    free(r->default_save);
    free(r->ckpt_path);
}

static int run(const options *o) {
    run_ctx r;
    memset(&r, 0, sizeof r);
    int rc = load_data(o, &r);
    if (!rc) rc = open_model(o, &r);
    if (!rc) rc = alloc_buffers(o, &r);
    if (!rc) print_setup(o, &r);
    if (!rc && !o->eval_only) rc = train(o, &r);
    if (!rc && r.test.count > 0) {
        eval_buf buf = {r.x, r.m, r.y, r.order, NULL};
        if (o->save_outputs && !(buf.outputs = fopen(o->save_outputs, "wb")))
            rc = fail(EXIT_DATA, "--save-outputs %s: cannot open for writing (%s)",
                      o->save_outputs, strerror(errno));
        if (!rc) rc = evaluate(r.s, &r.io, &r.test, r.batch, r.lut, o->mask_threshold, &buf);
        if (buf.outputs && fclose(buf.outputs) != 0 && !rc)
            rc = fail(EXIT_DATA, "--save-outputs %s: cannot write (%s)", o->save_outputs,
                      strerror(errno));
        if (!rc && buf.outputs) printf("outputs: %s\n", o->save_outputs);
    }
    fflush(stdout);
    run_free(&r);
    return rc;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) return 0; /* --help */
    if (rc) return rc;
    return o.check_data ? check_data(&o) : run(&o);
}
