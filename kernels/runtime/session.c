/* edgetrain — the session: the public API of et_runtime.h.
 *
 * A session owns the validated model (format.c), the persistent parameter,
 * gradient, optimizer and constant blocks, and the plan (plan.c) for the
 * current input shapes. Running a program walks its node list and calls each
 * op's kernel (ops.c) with pointers resolved at planning time; nothing is
 * allocated while running.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime_internal.h"

struct et_session {
    et_model model;
    et_persist persist;
    et_plan plan;
    et_plan_cache cache;     /* spare plans for other batch sizes (plan_cache.c) */
    et_guard guard;          /* non-finite check of TRAIN steps (guard.c) */
    void **ptr;              /* per tensor: data of the current program (NULL: unused) */
    int nthreads;
    uint64_t max_memory;     /* every plan is checked against it before allocation (limits.c) */
    et_program_kind program;
    uint64_t *prof;          /* per node: ns, calls (2 * n_nodes); NULL unless profiling was enabled */
    int profiling;
    uint64_t version;        /* bumped by every write of a stored tensor and every re-plan */
    et_eval_cache ecache;    /* the EVAL program's data derived from the weights (eval_cache.c) */
    int no_eval_cache;       /* EDGETRAIN_EVAL_CACHE=0 at load: compute it on every run */
    char err[ET_MSG_CAP];
};

static __thread char load_err[ET_MSG_CAP];

const char *et_load_error(void) { return load_err; }

const char *et_session_error(const et_session *s) { return s ? s->err : "no session"; }

static et_status session_fail(et_session *s, et_status st, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static et_status session_fail(et_session *s, et_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return st;
}

static int resolve_threads(int nthreads) { return nthreads > 0 ? nthreads : et_max_threads(); }

/* Data pointers of every tensor for the current program and plan. */
static void bind_pointers(et_session *s) {
    const et_model *m = &s->model;
    const size_t *act = s->plan.act_off[s->program];
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        et_tensor_kind k = m->tensors[i].kind;
        if (k == ET_KIND_INPUT) s->ptr[i] = s->plan.inputs + s->plan.input_off[i];
        else if (k == ET_KIND_ACT || (k == ET_KIND_GRAD && m->grads_in_arena))
            s->ptr[i] = act[i] == ET_NO_OFFSET ? NULL : s->plan.arena + act[i];
        else s->ptr[i] = s->persist.ptr[i];
    }
}

/* ======================================================================= */
/* Lifetime                                                                 */
/* ======================================================================= */
/* The file's activation shapes must be what the graph computes. */
static et_status check_act_shapes(const et_model *m, const et_plan *p, char *err, size_t cap) {
    char a[128], b[128];
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const et_tensor_def *t = &m->tensors[i];
        if (t->kind == ET_KIND_ACT && !et_shape_equal(&t->shape, &p->shape[i])) {
            et_msgf(err, cap, "tensor %u ('%s') is stored as %s, but the graph computes %s", i, t->name,
                    et_shape_str(&t->shape, a, sizeof a), et_shape_str(&p->shape[i], b, sizeof b));
            return ET_ERR_FORMAT;
        }
    }
    return ET_OK;
}

/* Called by the planner before it allocates: the file's shapes, then the memory limit. */
static et_status check_plan_at_load(const et_model *m, const et_plan *p, void *ctx, char *err, size_t cap) {
    const et_session *s = (const et_session *)ctx;
    et_status st = check_act_shapes(m, p, err, cap);
    return st != ET_OK ? st : et_plan_check_memory(m, p, p->ws_bytes, s->max_memory, err, cap);
}

/* Called by the planner before it allocates a re-plan: the memory limit. */
static et_status check_plan_limit(const et_model *m, const et_plan *p, void *ctx, char *err, size_t cap) {
    return et_plan_check_memory(m, p, p->ws_bytes, ((const et_session *)ctx)->max_memory, err, cap);
}

/* What the plans (current and cached) may hold together: the limit less the persistent blocks. */
static uint64_t plan_budget(const et_session *s) {
    uint64_t persist = et_persist_total_bytes(&s->model);
    return s->max_memory > persist ? s->max_memory - persist : 0;
}

static et_status plan_at_load(et_session *s) {
    const et_model *m = &s->model;
    et_tshape *base = (et_tshape *)et_calloc((size_t)m->n_tensors + 1, sizeof(et_tshape));
    if (!base) {
        et_msgf(load_err, sizeof load_err, "out of memory planning the model");
        return ET_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < m->n_tensors; i++) base[i] = m->tensors[i].shape;
    char msg[ET_MSG_CAP];
    et_status st = et_plan_build_checked(m, base, s->nthreads, check_plan_at_load, s, &s->plan, msg, sizeof msg);
    et_free(base);
    if (st == ET_ERR_SHAPE) st = ET_ERR_FORMAT; /* the file's own shapes do not fit its graph */
    if (st != ET_OK) et_msgf(load_err, sizeof load_err, "%s", msg);
    return st;
}

/* The quantization parameters an int8 node reads from stored tensors that no node writes
 * (the constants of an int8 file): zero points integers in range, scales and requantize
 * multipliers finite and > 0 (the int8 ops of docs/ops.md). Checked at load so that a bad file is
 * rejected with the node, the tensor and the value, not at its first run. A tensor some node
 * updates in place (the observer buffers of a QAT file) is state: a TRAIN or GRAD run may give
 * it any value, so the int8 kernels check it at each run instead; refusing it here would make
 * a file the session itself saved fail to load. */
typedef struct q_rule { int op, slot, kind, lo_attr; } q_rule; /* kind 0 scale(s), 1 zero point */
static const q_rule q_rules[] = {
    {ET_OP_QUANTIZE, 1, 0, -1},   {ET_OP_QUANTIZE, 2, 1, 0},   {ET_OP_DEQUANTIZE, 1, 0, -1},
    {ET_OP_DEQUANTIZE, 2, 1, -1}, {ET_OP_QPREP, 1, 0, -1},     {ET_OP_QPREP, 3, 0, -1},
    {ET_OP_QPREP, 4, 0, -1},      {ET_OP_QCONV2D, 3, 0, -1},   {ET_OP_QCONV2D, 4, 1, -1},
    {ET_OP_QCONV2D, 5, 1, 9},     {ET_OP_QLINEAR, 3, 0, -1},   {ET_OP_QLINEAR, 4, 1, -1},
    {ET_OP_QLINEAR, 5, 1, 0},     {ET_OP_QRELU, 1, 1, -1},
    {ET_OP_QADD, 1, 0, -1},       {ET_OP_QADD, 2, 1, -1},      {ET_OP_QADD, 4, 0, -1},
    {ET_OP_QADD, 5, 1, -1},       {ET_OP_QADD, 6, 0, -1},      {ET_OP_QADD, 7, 1, 0},
    {ET_OP_QCLAMP, 1, 0, -1},     {ET_OP_QCLAMP, 2, 1, 0},     {ET_OP_QGLOBAL_AVGPOOL, 1, 1, 0},
    {ET_OP_QCONV2D, 6, 0, -1},    {ET_OP_QLINEAR, 6, 0, -1},
};
/* 1 if op reads quantization parameters (has a row above): its ET_ERR_ARG is explained by them. */
static int reads_qparams(int op) {
    for (size_t r = 0; r < sizeof q_rules / sizeof q_rules[0]; r++)
        if (q_rules[r].op == op) return 1;
    return 0;
}
/* 1 if some node of the model updates tensor t in place. */
static int written_in_place(const et_model *m, int32_t t) {
    for (uint32_t ni = 0; ni < m->n_nodes; ni++) {
        const et_node_def *nd = &m->nodes[ni];
        const uint8_t mask = et_op_desc_get(nd->op)->mut_in_mask;
        for (int k = 0; k < nd->n_in; k++)
            if ((mask >> k) & 1u && nd->in[k] == t) return 1;
    }
    return 0;
}

/* The first bad quantization parameter node ni reads from a stored tensor (skipping those
 * written in place when skip_written): 1 and its description in msg, else 0. */
static int bad_qparam(const et_session *s, uint32_t ni, int skip_written, char *msg, size_t cap) {
    const et_model *m = &s->model;
    const et_node_def *nd = &m->nodes[ni];
    for (size_t r = 0; r < sizeof q_rules / sizeof q_rules[0]; r++) {
        const q_rule *q = &q_rules[r];
        const int32_t t = q->op == nd->op ? nd->in[q->slot] : -1;
        if (t < 0 || !et_kind_has_data(m->tensors[t].kind) || !s->ptr[t]) continue;
        if (skip_written && written_in_place(m, t)) continue;
        const float *v = (const float *)s->ptr[t];
        const int64_t n = et_shape_numel(&s->plan.shape[t]);
        const int64_t lo = q->lo_attr < 0 ? 0 : nd->iattr[q->lo_attr], hi = q->lo_attr < 0 ? 255 : nd->iattr[q->lo_attr + 1];
        for (int64_t i = 0; i < n; i++) {
            const int bad = q->kind == 0 ? !(isfinite(v[i]) && v[i] > 0.0f)
                                         : !(v[i] >= (float)lo && v[i] <= (float)hi && v[i] == nearbyintf(v[i]));
            if (!bad) continue;
            et_msgf(msg, cap, "node %u (%s in layer '%s'): input %d ('%s') holds %g at %lld; %s", ni,
                    et_op_name(nd->op), nd->layer, q->slot, m->tensors[t].name, (double)v[i], (long long)i,
                    q->kind == 0 ? "scales and requantize multipliers must be finite and > 0"
                                 : "a zero point must be an integer inside the quantization range");
            if (q->kind == 1)
                et_msgf(msg + strlen(msg), cap - strlen(msg), " %lld..%lld", (long long)lo, (long long)hi);
            return 1;
        }
    }
    return 0;
}

static et_status check_qparams(et_session *s) {
    for (uint32_t ni = 0; ni < s->model.n_nodes; ni++)
        if (bad_qparam(s, ni, 1, load_err, sizeof load_err)) return ET_ERR_FORMAT;
    return ET_OK;
}

/* Gradients in the activation arena (plan.c) unless EDGETRAIN_GRADS_IN_ARENA=0 at load. */
static int grads_in_arena_wanted(const et_model *m) {
    const char *env = getenv("EDGETRAIN_GRADS_IN_ARENA");
    return !(env && strcmp(env, "0") == 0) && et_grads_arena_ok(m);
}

et_status et_session_load_memory(const void *data, size_t size, int nthreads, et_session **out) {
    et_load_options opts = {nthreads, 0};
    return et_session_load_memory_ex(data, size, &opts, out);
}

et_status et_session_load_memory_ex(const void *data, size_t size, const et_load_options *opts, et_session **out) {
    load_err[0] = '\0';
    if (!opts) {
        et_msgf(load_err, sizeof load_err, "et_session_load_memory_ex: opts is NULL");
        return ET_ERR_ARG;
    }
    if (et_threads_check(opts->nthreads, load_err, sizeof load_err) != ET_OK) return ET_ERR_ARG;
    if (!out) {
        et_msgf(load_err, sizeof load_err, "et_session_load_memory: out is NULL");
        return ET_ERR_ARG;
    }
    *out = NULL;
    et_session *s = (et_session *)et_calloc(1, sizeof *s);
    if (!s) {
        et_msgf(load_err, sizeof load_err, "out of memory for a session");
        return ET_ERR_NOMEM;
    }
    s->nthreads = resolve_threads(opts->nthreads);
    s->max_memory = opts->max_memory ? opts->max_memory : et_default_max_memory();
    /* every check, the memory limit included, comes before the large allocations */
    et_status st = et_model_parse((const uint8_t *)data, size, &s->model, load_err, sizeof load_err);
    if (st == ET_OK) st = et_model_check_limits(&s->model, load_err, sizeof load_err);
    if (st == ET_OK) s->model.grads_in_arena = grads_in_arena_wanted(&s->model);
    const char *groups_env = getenv("EDGETRAIN_NODE_GROUPS"); /* 0: no concurrent groups (plan.c) */
    s->model.no_groups = groups_env && strcmp(groups_env, "0") == 0;
    const char *pairs_env = getenv("EDGETRAIN_SEGMENT_PAIRS"); /* 0: no channel-blocked pairs (plan.c) */
    s->model.no_pairs = pairs_env && strcmp(pairs_env, "0") == 0;
    if (st == ET_OK) st = plan_at_load(s);
    if (st == ET_OK) st = et_persist_build(&s->model, &s->persist, load_err, sizeof load_err);
    if (st == ET_OK) st = et_plan_cache_init(&s->cache, &s->model, &s->plan, load_err, sizeof load_err);
    if (st == ET_OK) st = et_guard_init(&s->guard, &s->model, load_err, sizeof load_err);
    s->model.data = NULL; /* the caller's bytes are not kept */
    if (st == ET_OK && !(s->ptr = (void **)et_calloc((size_t)s->model.n_tensors + 1, sizeof(void *)))) {
        et_msgf(load_err, sizeof load_err, "out of memory for a session");
        st = ET_ERR_NOMEM;
    }
    if (st != ET_OK) {
        et_session_free(s);
        return st;
    }
    s->program = et_session_has_program(s, ET_PROGRAM_TRAIN) ? ET_PROGRAM_TRAIN
                 : et_session_has_program(s, ET_PROGRAM_EVAL) ? ET_PROGRAM_EVAL : ET_PROGRAM_GRAD;
    bind_pointers(s);
    if ((st = check_qparams(s)) != ET_OK) {
        et_session_free(s);
        return st;
    }
    const char *prof_env = getenv("EDGETRAIN_PROFILE");
    if (prof_env && prof_env[0] && strcmp(prof_env, "0") != 0) et_session_set_profiling(s, 1);
    const char *cache_env = getenv("EDGETRAIN_EVAL_CACHE");
    s->no_eval_cache = cache_env && strcmp(cache_env, "0") == 0;
    *out = s;
    return ET_OK;
}

/* Reads a whole file into a new buffer. */
static et_status read_file(const char *path, uint8_t **buf, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        et_msgf(load_err, sizeof load_err, "cannot open '%s': %s", path, strerror(errno));
        return ET_ERR_IO;
    }
    struct stat sb;
    long n = -1;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        et_msgf(load_err, sizeof load_err, "cannot determine the size of '%s' (not a regular file?)", path);
        return ET_ERR_IO;
    }
    *buf = (uint8_t *)et_malloc((size_t)n);
    if (!*buf) {
        fclose(f);
        et_msgf(load_err, sizeof load_err, "out of memory reading '%s' (%ld bytes)", path, n);
        return ET_ERR_NOMEM;
    }
    size_t got = fread(*buf, 1, (size_t)n, f);
    int failed = ferror(f) || got != (size_t)n;
    fclose(f);
    if (failed) {
        et_free(*buf);
        *buf = NULL;
        et_msgf(load_err, sizeof load_err, "cannot read '%s' (%zu of %ld bytes)", path, got, n);
        return ET_ERR_IO;
    }
    *size = (size_t)n;
    return ET_OK;
}

et_status et_session_load_file(const char *path, int nthreads, et_session **out) {
    et_load_options opts = {nthreads, 0};
    return et_session_load_file_ex(path, &opts, out);
}

et_status et_session_load_file_ex(const char *path, const et_load_options *opts, et_session **out) {
    load_err[0] = '\0';
    if (!path || !out) {
        et_msgf(load_err, sizeof load_err, "et_session_load_file: path or out is NULL");
        return ET_ERR_ARG;
    }
    *out = NULL;
    uint8_t *buf = NULL;
    size_t size = 0;
    et_status st = read_file(path, &buf, &size);
    if (st != ET_OK) return st;
    st = et_session_load_memory_ex(buf, size, opts, out);
    et_free(buf);
    if (st != ET_OK) {
        char msg[ET_MSG_CAP];
        memcpy(msg, load_err, sizeof msg);
        et_msgf(load_err, sizeof load_err, "%s: %s", path, msg);
    }
    return st;
}

void et_session_free(et_session *s) {
    if (!s) return;
    et_plan_free(&s->plan);
    et_plan_cache_free(&s->cache);
    et_guard_free(&s->guard);
    et_persist_free(&s->persist);
    et_model_free(&s->model);
    et_eval_cache_free(&s->ecache);
    et_free(s->ptr);
    et_free(s->prof);
    et_free(s);
}

/* ======================================================================= */
/* Configuration                                                            */
/* ======================================================================= */
et_status et_session_set_threads(et_session *s, int nthreads) {
    if (!s) return ET_ERR_ARG;
    if (et_threads_check(nthreads, s->err, sizeof s->err) != ET_OK) return ET_ERR_ARG;
    int n = resolve_threads(nthreads);
    size_t ws = et_plan_workspace_bytes(&s->model, &s->plan, n);
    et_status st = et_plan_check_memory(&s->model, &s->plan, ws > s->plan.ws_bytes ? ws : s->plan.ws_bytes,
                                        s->max_memory, s->err, sizeof s->err);
    if (st == ET_OK) st = et_plan_set_threads(&s->model, &s->plan, n, s->err, sizeof s->err);
    if (st == ET_OK && n != s->nthreads) et_plan_cache_drop_spares(&s->cache); /* planned for the old count */
    if (st == ET_OK) s->nthreads = n;
    return st;
}

int et_session_threads(const et_session *s) { return s ? s->nthreads : 0; }

et_status et_session_set_max_memory(et_session *s, uint64_t max_memory) {
    if (!s) return ET_ERR_ARG;
    uint64_t limit = max_memory ? max_memory : et_default_max_memory();
    et_status st = et_plan_check_memory(&s->model, &s->plan, s->plan.ws_bytes, limit, s->err, sizeof s->err);
    if (st == ET_OK) s->max_memory = limit;
    if (st == ET_OK) et_eval_cache_release(&s->ecache); /* made again under the new limit */
    return st;
}

uint64_t et_session_max_memory(const et_session *s) { return s ? s->max_memory : 0; }

int et_session_has_program(const et_session *s, et_program_kind kind) {
    return s && (unsigned)kind < ET_PROGRAM_COUNT_ && s->model.programs[kind].present;
}

et_status et_session_set_program(et_session *s, et_program_kind kind) {
    if (!s) return ET_ERR_ARG;
    if ((unsigned)kind >= ET_PROGRAM_COUNT_) return session_fail(s, ET_ERR_ARG, "program kind %d unknown", (int)kind);
    if (!s->model.programs[kind].present)
        return session_fail(s, ET_ERR_STATE, "this model has no %s program%s", et_program_name(kind),
                            (s->model.flags & 1u) ? " (it is an inference-only file)" : "");
    s->program = kind;
    if (kind != ET_PROGRAM_EVAL) et_eval_cache_release(&s->ecache);
    bind_pointers(s);
    return ET_OK;
}

et_program_kind et_session_program(const et_session *s) { return s ? s->program : ET_PROGRAM_EVAL; }

/* Finds an INPUT tensor by name, with a message naming what is wrong. */
static et_status find_input(et_session *s, const char *name, int *index) {
    if (!name) return session_fail(s, ET_ERR_ARG, "input name is NULL");
    int i = et_session_find_tensor(s, name);
    if (i < 0) return session_fail(s, ET_ERR_NOT_FOUND, "no tensor named '%s' in this model", name);
    if (s->model.tensors[i].kind != ET_KIND_INPUT)
        return session_fail(s, ET_ERR_ARG, "tensor '%s' is a %s, not an input", name,
                            et_kind_name(s->model.tensors[i].kind));
    *index = i;
    return ET_OK;
}

static et_status check_new_shape(et_session *s, const char *name, int ndim, const int64_t *shape, et_tshape *t) {
    if (ndim < 0 || ndim > ET_MAX_DIMS || (ndim > 0 && !shape))
        return session_fail(s, ET_ERR_ARG, "input '%s': rank %d invalid (0..%d, shape required)", name, ndim,
                            ET_MAX_DIMS);
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || shape[d] > ET_MAX_DIM)
            return session_fail(s, ET_ERR_SHAPE, "input '%s': dim %d = %lld out of range 1..2^31", name, d,
                                (long long)shape[d]);
        t->dim[d] = shape[d];
    }
    for (int d = ndim; d < ET_MAX_DIMS; d++) t->dim[d] = 0;
    if (!et_shape_is_sane(t)) return session_fail(s, ET_ERR_SHAPE, "input '%s': more than 2^40 bytes", name);
    return ET_OK;
}

/* An explicit resize sets the shapes SaveToFile writes and may raise the batch limit. */
static void resized_explicitly(et_session *s) {
    const et_model *m = &s->model;
    memcpy(s->cache.home, s->plan.shape, (size_t)m->n_tensors * sizeof(et_tshape));
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        s->cache.stale[i] = 0;
        if (m->tensors[i].kind == ET_KIND_INPUT && s->plan.shape[i].ndim > 0 &&
            s->plan.shape[i].dim[0] > s->cache.batch_limit)
            s->cache.batch_limit = s->plan.shape[i].dim[0];
    }
}

et_status et_session_resize(et_session *s, int count, const char *const *names, const int *ndims,
                            const int64_t *const *shapes) {
    if (!s) return ET_ERR_ARG;
    if (count < 0 || (count > 0 && (!names || !ndims || !shapes)))
        return session_fail(s, ET_ERR_ARG, "et_session_resize: bad count or NULL arrays");
    const et_model *m = &s->model;
    et_tshape *base = (et_tshape *)et_calloc((size_t)m->n_tensors + 1, sizeof(et_tshape));
    if (!base) return session_fail(s, ET_ERR_NOMEM, "out of memory resizing");
    memcpy(base, s->plan.shape, (size_t)m->n_tensors * sizeof(et_tshape));
    et_status st = ET_OK;
    for (int k = 0; k < count && st == ET_OK; k++) {
        int i = -1;
        st = find_input(s, names[k], &i);
        if (st == ET_OK) st = check_new_shape(s, names[k], ndims[k], shapes[k], &base[i]);
    }
    if (st == ET_OK)
        st = et_plan_cache_use(&s->cache, m, base, s->nthreads, check_plan_limit, s, plan_budget(s), &s->plan, s->err,
                               sizeof s->err);
    et_free(base);
    if (st != ET_OK) return st;
    resized_explicitly(s);
    bind_pointers(s);
    s->version++; /* new shapes: the eval cache is laid out again */
    return ET_OK;
}

/* ======================================================================= */
/* Tensors                                                                  */
/* ======================================================================= */
int et_session_tensor_count(const et_session *s) { return s ? (int)s->model.n_tensors : 0; }

int et_session_find_tensor(const et_session *s, const char *name) {
    if (!s || !name || !name[0]) return -1;
    for (uint32_t i = 0; i < s->model.n_tensors; i++)
        if (strcmp(s->model.tensors[i].name, name) == 0) return (int)i;
    return -1;
}

et_status et_session_tensor_info(const et_session *s, int index, et_tensor_info *info) {
    if (!s || !info || index < 0 || (uint32_t)index >= s->model.n_tensors) return ET_ERR_ARG;
    const et_tensor_def *t = &s->model.tensors[index];
    const et_tshape *sh = &s->plan.shape[index];
    memset(info, 0, sizeof *info);
    info->name = t->name;
    info->dtype = sh->dtype;
    info->kind = t->kind;
    info->ndim = sh->ndim;
    for (int d = 0; d < sh->ndim; d++) info->shape[d] = sh->dim[d];
    info->trainable = (t->flags & ET_TFLAG_TRAINABLE) != 0;
    info->numel = et_shape_numel(sh);
    return ET_OK;
}

void *et_session_tensor_data(et_session *s, int index) {
    if (!s || index < 0 || (uint32_t)index >= s->model.n_tensors) return NULL;
    if (et_kind_has_data(s->model.tensors[index].kind)) s->version++; /* may be written through */
    return s->ptr[index];
}

const void *et_session_tensor_read(const et_session *s, int index) {
    if (!s || index < 0 || (uint32_t)index >= s->model.n_tensors) return NULL;
    return s->ptr[index];
}

/* Copies user labels into an i32 tensor; all are checked before any is written. */
static et_status copy_labels_i64(et_session *s, const char *name, const int64_t *src, int32_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (src[i] < INT32_MIN || src[i] > INT32_MAX)
            return session_fail(s, ET_ERR_LABEL, "input '%s': label %lld at position %lld does not fit int32", name,
                                (long long)src[i], (long long)i);
    for (int64_t i = 0; i < n; i++) dst[i] = (int32_t)src[i];
    return ET_OK;
}

/* A shape that differs from the planned one in dim 0 only is a new batch size:
 * every INPUT whose dim 0 is the old batch gets the new one and the session
 * switches to the plan for those shapes (a cached one allocates nothing). The
 * other inputs must be fed again before the next run (their data is in the
 * other plan). Other differences, or a batch above the limit, are errors. */
static et_status switch_batch(et_session *s, int i, int ndim, const int64_t *shape) {
    const et_model *m = &s->model;
    const et_tshape *planned = &s->plan.shape[i];
    const char *name = m->tensors[i].name;
    char a[128];
    int batch_only = ndim == planned->ndim && ndim > 0 && shape;
    for (int d = 1; batch_only && d < ndim; d++) batch_only = shape[d] == planned->dim[d];
    if (!batch_only)
        return session_fail(s, ET_ERR_SHAPE, "input '%s' is planned as %s; only the batch (dim 0) may change without "
                            "a resize", name, et_shape_str(planned, a, sizeof a));
    if (shape[0] < 1 || shape[0] > s->cache.batch_limit)
        return session_fail(s, ET_ERR_SHAPE, "input '%s': batch %lld is outside 1..%lld, the largest batch this "
                            "model accepts (max_batch at export; resize the session for a larger one)", name,
                            (long long)shape[0], (long long)s->cache.batch_limit);
    int64_t old = planned->dim[0];
    et_tshape *base = s->cache.scratch;
    memcpy(base, s->plan.shape, (size_t)m->n_tensors * sizeof(et_tshape));
    for (uint32_t t = 0; t < m->n_tensors; t++)
        if (m->tensors[t].kind == ET_KIND_INPUT && base[t].ndim > 0 && base[t].dim[0] == old) base[t].dim[0] = shape[0];
    et_status st = et_plan_cache_use(&s->cache, m, base, s->nthreads, check_plan_limit, s, plan_budget(s), &s->plan,
                                     s->err, sizeof s->err);
    if (st != ET_OK) return st;
    bind_pointers(s);
    s->version++;
    for (uint32_t t = 0; t < m->n_tensors; t++) s->cache.stale[t] = m->tensors[t].kind == ET_KIND_INPUT;
    return ET_OK;
}

et_status et_session_set_input(et_session *s, const char *name, et_dtype dtype, const void *data, int ndim,
                               const int64_t *shape) {
    if (!s) return ET_ERR_ARG;
    int i = -1;
    et_status st = find_input(s, name, &i);
    if (st != ET_OK) return st;
    if (!data) return session_fail(s, ET_ERR_ARG, "input '%s': data is NULL", name);
    const et_tshape *planned = &s->plan.shape[i];
    int same = ndim == planned->ndim && (ndim == 0 || shape);
    for (int d = 0; same && d < ndim; d++) same = shape[d] == planned->dim[d];
    if (!same) {
        st = switch_batch(s, i, ndim, shape);
        if (st != ET_OK) return st;
        planned = &s->plan.shape[i];
    }
    int64_t n = et_shape_numel(planned);
    if (dtype == planned->dtype) {
        memcpy(s->ptr[i], data, et_shape_bytes(planned));
        st = ET_OK;
    } else if (planned->dtype == ET_I32 && dtype == ET_I64) {
        st = copy_labels_i64(s, name, (const int64_t *)data, s->ptr[i], n);
    } else {
        st = session_fail(s, ET_ERR_DTYPE, "input '%s' holds %s; got %s data", name, et_dtype_name(planned->dtype),
                          et_dtype_name(dtype));
    }
    if (st == ET_OK) s->cache.stale[i] = 0;
    return st;
}

/* ======================================================================= */
/* Program inputs and outputs                                               */
/* ======================================================================= */
static const et_program_def *current(const et_session *s) { return &s->model.programs[s->program]; }

int et_session_input_count(const et_session *s) { return s ? (int)current(s)->n_inputs : 0; }

int et_session_input_tensor(const et_session *s, int i) {
    if (!s || i < 0 || (uint32_t)i >= current(s)->n_inputs) return -1;
    return (int)current(s)->inputs[i];
}

int et_session_output_count(const et_session *s) { return s ? (int)current(s)->n_outputs : 0; }

const char *et_session_output_name(const et_session *s, int i) {
    if (!s || i < 0 || (uint32_t)i >= current(s)->n_outputs) return NULL;
    return current(s)->outputs[i].name;
}

int et_session_output_tensor(const et_session *s, int i) {
    if (!s || i < 0 || (uint32_t)i >= current(s)->n_outputs) return -1;
    return (int)current(s)->outputs[i].tensor;
}

/* ======================================================================= */
/* Learning rate (the schedule is et_scheduled_lr, limits.c)                */
/* ======================================================================= */
/* double -> float without the undefined conversion of out-of-range values */
static float lr_as_float(double lr) {
    if (lr > FLT_MAX) return INFINITY;
    if (lr < -FLT_MAX) return -INFINITY;
    return (float)lr; /* NaN stays NaN */
}

float et_session_lr(const et_session *s) { return s ? lr_as_float(et_scheduled_lr(&s->model.state, s->model.state.step)) : 0.0f; }
float et_session_base_lr(const et_session *s) { return s ? s->model.state.base_lr : 0.0f; }

et_status et_session_set_lr(et_session *s, float lr) {
    if (!s) return ET_ERR_ARG;
    if (!isfinite(lr) || !(lr >= 0.0f))
        return session_fail(s, ET_ERR_ARG, "learning rate %g is not a finite number >= 0", (double)lr);
    et_train_state next = s->model.state;
    next.base_lr = lr;
    if (et_state_check(&next, s->err, sizeof s->err) != ET_OK) return ET_ERR_ARG;
    s->model.state.base_lr = lr;
    return ET_OK;
}

/* *field = v, for a counter of a session's state (field NULL when the session is NULL). */
static et_status set_counter(uint64_t *field, uint64_t v) {
    if (!field) return ET_ERR_ARG;
    *field = v;
    return ET_OK;
}

uint64_t et_session_step(const et_session *s) { return s ? s->model.state.step : 0; }
et_status et_session_set_step(et_session *s, uint64_t step) {
    return set_counter(s ? &s->model.state.step : NULL, step);
}
uint64_t et_session_epoch(const et_session *s) { return s ? s->model.state.epoch : 0; }
et_status et_session_set_epoch(et_session *s, uint64_t epoch) {
    return set_counter(s ? &s->model.state.epoch : NULL, epoch);
}
uint64_t et_session_seed(const et_session *s) { return s ? s->model.state.seed : 0; }
et_status et_session_set_seed(et_session *s, uint64_t seed) {
    et_status st = set_counter(s ? &s->model.state.seed : NULL, seed);
    if (st == ET_OK) s->model.state.rng_counter = 0;
    return st;
}

/* ======================================================================= */
/* Running                                                                  */
/* ======================================================================= */
/* The number of classes an i32 input of a failed node indexes: dim 1 of input 0 (logits
 * [N, C, ...]), or for the embedding ops the rows of the weight (input 0, [V, D]). */
static int64_t label_count(const et_node_def *nd, const et_node_io *io) {
    const int rows = nd->op == ET_OP_EMBEDDING || nd->op == ET_OP_EMBEDDING_BWD;
    return io->in[0]->ndim > 1 ? io->in[0]->dim[rows ? 0 : 1] : 0;
}

static et_status node_failed(et_session *s, uint32_t ni, const et_node_io *io, et_status st) {
    const et_node_def *nd = &s->model.nodes[ni];
    const char *op = et_op_name(nd->op);
    if (st == ET_ERR_LABEL) {
        for (int k = 0; k < nd->n_in; k++) {
            if (!io->in[k] || io->in[k]->dtype != ET_I32) continue;
            return session_fail(s, st, "node %u (%s in layer '%s'): label out of range: input %d ('%s') must hold "
                                "class indices in [0, %lld)", ni, op, nd->layer, k,
                                s->model.tensors[nd->in[k]].name, (long long)label_count(nd, io));
        }
    }
    if (st == ET_ERR_ARG && (nd->op == ET_OP_GATHER || nd->op == ET_OP_GATHER_BWD))
        return session_fail(s, st, "node %u (%s in layer '%s'): index out of range: the index (input 1%s%s) "
                            "must hold values in [0, size of the gathered dim)", ni, op, nd->layer,
                            s->model.tensors[nd->in[1]].name[0] ? ", " : "", s->model.tensors[nd->in[1]].name);
    char why[ET_MSG_CAP];
    if (st == ET_ERR_ARG && reads_qparams(nd->op) && bad_qparam(s, ni, 0, why, sizeof why))
        return session_fail(s, st, "%s", why);
    if (st == ET_ERR_ARG && reads_qparams(nd->op))
        return session_fail(s, st, "node %u (%s in layer '%s'): bad quantization parameters: zero points must be "
                            "integers inside the quantization range, scales and multipliers finite and > 0", ni, op,
                            nd->layer);
    return session_fail(s, st, "node %u (%s in layer '%s'): %s", ni, op, nd->layer, et_status_str(st));
}

/* Nodes without a workspace whose largest tensor has fewer elements than this run on one
 * thread: a pool hand-out costs more than it saves on them (LeNet's fc-sized activations,
 * losses, small updates), and far more when the cores are shared. Ops with a workspace (conv,
 * matmul) were planned for the session's thread count and keep it. The choice depends on
 * shapes and the thread count only, so results stay reproducible for a thread count. */
#define ET_SMALL_NODE_ELEMS 32768

static int node_threads(const et_op_desc *d, const et_node_io *io, int nthreads) {
    if (nthreads <= 1 || d->ws_bytes) return nthreads;
    int64_t big = 0;
    for (int j = 0; j < ET_NODE_MAX_IN; j++)
        if (io->in[j] && et_shape_numel(io->in[j]) > big) big = et_shape_numel(io->in[j]);
    for (int j = 0; j < ET_NODE_MAX_OUT; j++)
        if (io->out[j] && et_shape_numel(io->out[j]) > big) big = et_shape_numel(io->out[j]);
    return big < ET_SMALL_NODE_ELEMS ? 1 : nthreads;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The workspace of the current program's node at position k: its place in the arena
 * (plan.c), or the ws block. */
static void set_workspace(const et_session *s, uint32_t k, et_run_env *env) {
    const size_t *at = s->plan.ws_at[s->program];
    if (at && at[2 * k] != ET_NO_OFFSET) {
        env->ws = s->plan.arena + at[2 * k];
        env->ws_bytes = at[2 * k + 1];
    } else {
        env->ws = s->plan.ws;
        env->ws_bytes = s->plan.ws_bytes;
    }
}

/* Makes the eval cache current for the session's weight version and ISA (eval_cache.c): laid
 * out and filled when either changed; without room under the memory limit, or on any
 * failure, the program runs without it (computing per run, the same bits). */
static void eval_cache_update(et_session *s) {
    et_eval_cache *c = &s->ecache;
    const int isa = (int)et_get_isa();
    if (s->no_eval_cache || (c->valid && c->version == s->version && c->isa == isa)) return;
    c->valid = 0;
    const size_t bytes = et_eval_cache_layout(c, &s->model, s->plan.shape, s->ptr);
    char msg[ET_MSG_CAP];
    if (bytes == 0 || bytes == ET_NO_OFFSET ||
        et_plan_check_memory(&s->model, &s->plan, s->plan.ws_bytes + bytes, s->max_memory, msg, sizeof msg) !=
            ET_OK ||
        et_eval_cache_fill(c, &s->model, s->plan.shape, s->ptr, bytes, s->nthreads) != ET_OK)
        et_eval_cache_release(c); /* no entries until the next change */
    c->version = s->version;
    c->isa = isa;
    c->valid = 1;
}

/* The first failing node of a run whose nodes run on several threads (segments, groups). */
typedef struct run_failure {
    uint32_t k;   /* its node position (UINT32_MAX: none) */
    et_status st;
} run_failure;

static void failure_note(run_failure *f, uint32_t k, et_status st) {
    uint32_t seen = __atomic_load_n(&f->k, __ATOMIC_RELAXED);
    while (k < seen && !__atomic_compare_exchange_n(&f->k, &seen, k, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    if (k <= seen) __atomic_store_n(&f->st, st, __ATOMIC_RELAXED); /* the lowest failing node's */
}

/* After the threads joined: ET_OK, or the lowest failing node reported like run_nodes. */
static et_status failure_report(et_session *s, const run_failure *f) {
    if (f->k == UINT32_MAX) return ET_OK;
    const uint32_t ni = current(s)->nodes[f->k];
    et_node_io io;
    et_node_io_bind(&s->model, s->plan.shape, s->ptr, ni, &io);
    return node_failed(s, ni, &io, f->st);
}

/* One run of an image-first segment (et_segment, plan.c): chunk = image. */
typedef struct segment_run {
    et_session *s;
    const et_segment *g;
    const et_run_env *env;
    et_segment_slots sl;
    uint8_t *slots;
    int team;               /* threads taking images (profiled times are divided by it) */
    run_failure failed;
} segment_run;

/* Node ni of a segment run with io and env, its time (divided by the team) added to the profile. */
static et_status segment_node_run(const segment_run *r, uint32_t ni, const et_node_io *io, const et_run_env *env) {
    et_session *s = r->s;
    uint64_t t0 = s->profiling ? now_ns() : 0;
    et_status st = et_op_desc_get(s->model.nodes[ni].op)->run(io, env);
    if (s->profiling) __atomic_fetch_add(&s->prof[2 * ni], (now_ns() - t0) / (uint64_t)r->team, __ATOMIC_RELAXED);
    return st;
}

/* The channel-blocked pair at node positions k, k + 1 for image img, a block of channels at a
 * time (et_plan.seg_cb); env without cache entries (they hold whole-channel data). ET_OK, or
 * the failing node's status with *at its position. */
static et_status segment_pair(const segment_run *r, uint32_t k, int64_t img, uint8_t *slot, et_run_env *env,
                              uint32_t *at) {
    et_session *s = r->s;
    const et_program_def *pg = current(s);
    const int64_t cb = s->plan.seg_cb[k], oc = s->plan.shape[s->model.nodes[pg->nodes[k]].out[0]].dim[1];
    env->cache = NULL;
    env->cache_bytes = 0;
    for (int64_t c0 = 0; c0 < oc; c0 += cb) {
        et_node_def nd[2];
        et_tshape sh[2][ET_NODE_MAX_IN + ET_NODE_MAX_OUT];
        et_node_io io[2];
        et_segment_pair_bind(&s->model, &s->plan, s->ptr, r->g, k, img, c0, oc - c0 < cb ? oc - c0 : cb, slot, nd,
                             sh, io);
        for (uint32_t j = 0; j < 2; j++) {
            const et_status st = segment_node_run(r, pg->nodes[k + j], &io[j], env);
            if (st != ET_OK) {
                *at = k + j;
                return st;
            }
        }
    }
    return ET_OK;
}

/* Image img through every node of the segment, in the slot of thread tid. */
static void segment_image(void *ctx, int64_t img, int tid) {
    segment_run *r = (segment_run *)ctx;
    et_session *s = r->s;
    const et_program_def *pg = current(s);
    uint8_t *slot = r->slots + (size_t)tid * r->sl.slot_bytes;
    et_run_env env = *r->env;
    env.nthreads = r->sl.kthreads;
    env.ws = slot + r->sl.ws_off;
    env.ws_bytes = r->sl.slot_bytes - r->sl.ws_off;
    for (uint32_t k = r->g->from; k < r->g->to; k++) {
        if (__atomic_load_n(&r->failed.k, __ATOMIC_RELAXED) <= k) return;
        et_status st;
        uint32_t at = k;
        if (s->plan.seg_cb[k]) {
            st = segment_pair(r, k, img, slot, &env, &at);
            k++;
        } else {
            const uint32_t ni = pg->nodes[k];
            et_tshape img_shape[ET_NODE_MAX_IN + ET_NODE_MAX_OUT];
            et_node_io io;
            et_segment_io_bind(&s->model, &s->plan, s->ptr, r->g, ni, img, slot, img_shape, &io);
            env.cache = s->ecache.block ? et_eval_cache_entry(&s->ecache, ni, &env.cache_bytes) : NULL;
            st = segment_node_run(r, ni, &io, &env);
        }
        if (st != ET_OK) {
            failure_note(&r->failed, at, st);
            return;
        }
    }
}

/* Runs segment g: its images in parallel (or one by one with every thread in each kernel), then
 * reports the first failing node like run_nodes, with the whole batch's shapes. */
static et_status run_segment(et_session *s, const et_segment *g, uint32_t k, const et_run_env *env) {
    const size_t *at = s->plan.ws_at[ET_PROGRAM_EVAL];
    segment_run r = {s, g, env, {0}, NULL, 1, {UINT32_MAX, ET_OK}};
    et_segment_slots_get(&s->model, &s->plan, g, s->nthreads, &r.sl);
    r.slots = at[2 * k] != ET_NO_OFFSET ? s->plan.arena + at[2 * k] : s->plan.ws;
    if ((size_t)r.sl.slots * r.sl.slot_bytes > (at[2 * k] != ET_NO_OFFSET ? at[2 * k + 1] : s->plan.ws_bytes))
        return session_fail(s, ET_ERR_STATE, "segment at node position %u: workspace not planned", k);
    r.team = r.sl.slots < g->batch ? r.sl.slots : (int)g->batch;
    et_parallel_for(g->batch, r.sl.slots, segment_image, &r);
    const et_program_def *pg = current(s);
    if (s->profiling)
        for (uint32_t j = g->from; j < g->to; j++) s->prof[2 * pg->nodes[j] + 1]++;
    return failure_report(s, &r.failed);
}

/* Runs node ni with env as set, adding its time to the profile; the op's status. */
static et_status timed_run(et_session *s, uint32_t ni, const et_node_io *io, const et_run_env *env) {
    uint64_t t0 = s->profiling ? now_ns() : 0;
    et_status st = et_op_desc_get(s->model.nodes[ni].op)->run(io, env);
    if (s->profiling) {
        s->prof[2 * ni] += now_ns() - t0;
        s->prof[2 * ni + 1]++;
    }
    return st;
}

/* Runs the node at position k of the current program with the session's threads, in the
 * workspace env->ws. */
static et_status run_node(et_session *s, uint32_t k, et_run_env *env) {
    const uint32_t ni = current(s)->nodes[k];
    const et_op_desc *d = et_op_desc_get(s->model.nodes[ni].op);
    et_node_io io;
    et_node_io_bind(&s->model, s->plan.shape, s->ptr, ni, &io);
    const int cached = s->program == ET_PROGRAM_EVAL && s->ecache.block;
    env->cache = cached ? et_eval_cache_entry(&s->ecache, ni, &env->cache_bytes) : NULL;
    env->nthreads = node_threads(d, &io, s->nthreads);
    et_status st = timed_run(s, ni, &io, env);
    return st == ET_OK ? ET_OK : node_failed(s, ni, &io, st);
}

/* One run of a concurrent group's nodes (et_group_pos, plan.c): chunk i = node position from + i. */
typedef struct group_run {
    et_session *s;
    uint32_t from;
    const et_run_env *env;
    uint8_t *ws;            /* the group's workspace */
    run_failure failed;
} group_run;

static void group_node(void *ctx, int64_t i, int tid) {
    group_run *r = (group_run *)ctx;
    et_session *s = r->s;
    const uint32_t k = r->from + (uint32_t)i, ni = current(s)->nodes[k];
    const et_group_pos *g = &s->plan.grp[s->program][k];
    (void)tid;
    if (__atomic_load_n(&r->failed.k, __ATOMIC_RELAXED) < k) return; /* as a serial run would stop */
    et_node_io io;
    et_node_io_bind(&s->model, s->plan.shape, s->ptr, ni, &io);
    et_run_env env = *r->env;
    env.nthreads = 1;
    env.ws = r->ws + g->ws_off;
    env.ws_bytes = g->ws_bytes;
    env.cache = NULL;
    env.cache_bytes = 0;
    /* each node of the group is one chunk: its profile entries are this thread's alone */
    et_status st = timed_run(s, ni, &io, &env);
    if (st != ET_OK) failure_note(&r->failed, k, st);
}

/* Runs node positions [k, end) of a concurrent group side by side, then reports the first
 * failing node like run_nodes. While the cores look contended (other processes want them) a
 * worker preempted while it holds a whole node would stall the run for the rest of its time
 * slice, where a node split into chunks loses only a chunk: the nodes then run one after
 * another as outside groups, each on every thread (the group's workspace is planned for both). */
static et_status run_group(et_session *s, uint32_t k, uint32_t end, et_run_env *env) {
    const et_group_pos *g = &s->plan.grp[s->program][k];
    const size_t *at = s->plan.ws_at[s->program];
    const int in_arena = at[2 * g->from] != ET_NO_OFFSET;
    uint8_t *ws = in_arena ? s->plan.arena + at[2 * g->from] : s->plan.ws;
    const size_t ws_bytes = in_arena ? at[2 * g->from + 1] : s->plan.ws_bytes;
    if (et_group_ws_bytes(s->plan.grp[s->program], g->from) > ws_bytes)
        return session_fail(s, ET_ERR_STATE, "group at node position %u: workspace not planned", g->from);
    if (s->nthreads > 1 && et_pool_contended()) {
        for (uint32_t j = k; j < end; j++) {
            env->ws = ws;
            env->ws_bytes = ws_bytes;
            et_status st = run_node(s, j, env);
            if (st != ET_OK) return st;
        }
        return ET_OK;
    }
    group_run r = {s, k, env, ws, {UINT32_MAX, ET_OK}};
    et_parallel_for(end - k, s->nthreads, group_node, &r);
    return failure_report(s, &r.failed);
}

/* Runs nodes [from, to) of the current program. */
static et_status run_nodes(et_session *s, uint32_t from, uint32_t to, et_run_env *env) {
    const int eval = s->program == ET_PROGRAM_EVAL;
    const et_group_pos *grp = s->plan.grp[s->program];
    uint32_t next_seg = 0;
    for (uint32_t k = from; k < to; k++) {
        if (grp && grp[k].to) { /* [from, to) may cut it (the guard's stops): its part inside */
            const uint32_t end = grp[k].to < to ? grp[k].to : to;
            et_status st = run_group(s, k, end, env);
            if (st != ET_OK) return st;
            k = end - 1;
            continue;
        }
        while (eval && next_seg < s->plan.n_segs && s->plan.segs[next_seg].to <= k) next_seg++;
        if (eval && next_seg < s->plan.n_segs && s->plan.segs[next_seg].from <= k) {
            const et_segment *g = &s->plan.segs[next_seg];
            if (g->from != k || g->to > to) /* its internal tensors exist only inside a whole run */
                return session_fail(s, ET_ERR_STATE, "nodes [%u, %u) cut the segment [%u, %u)", from, to, g->from,
                                    g->to);
            et_status st = run_segment(s, g, k, env);
            if (st != ET_OK) return st;
            k = g->to - 1;
            continue;
        }
        set_workspace(s, k, env);
        et_status st = run_node(s, k, env);
        if (st != ET_OK) return st;
    }
    return ET_OK;
}

/* After an automatic batch change every input of the program must be fed again
 * (an input fed with another batch than the others ends here too). */
static et_status check_inputs_fed(et_session *s) {
    const et_program_def *pg = current(s);
    for (uint32_t k = 0; k < pg->n_inputs; k++) {
        uint32_t t = pg->inputs[k];
        if (s->cache.stale[t])
            return session_fail(s, ET_ERR_SHAPE, "input '%s' was not fed since the batch changed to %lld; feed every "
                                "input of the %s program with the same batch", s->model.tensors[t].name,
                                (long long)(s->plan.shape[t].ndim ? s->plan.shape[t].dim[0] : 0),
                                et_program_name(s->program));
    }
    return ET_OK;
}

/* The TRAIN step up to its first update node has run: on a non-finite loss or
 * gradient, undo the in-place buffer writes and stop (raise) or count (skip). */
static et_status guard_step(et_session *s, int *skip) {
    char msg[ET_MSG_CAP];
    et_status st = et_guard_check(&s->guard, &s->model, &s->persist, s->ptr, s->plan.shape, s->nthreads, msg,
                                  sizeof msg);
    if (st == ET_OK) return ET_OK;
    et_guard_restore(&s->guard, &s->model, s->ptr);
    if (s->guard.policy == ET_NONFINITE_SKIP) {
        s->guard.skipped++;
        *skip = 1;
        return ET_OK;
    }
    return session_fail(s, st, "step %llu: %s; the step was not applied (weights, optimizer state, BatchNorm "
                        "statistics and the step counter are unchanged)", (unsigned long long)s->model.state.step, msg);
}

/* The TRAIN program from `at` (after the guard's check): gradient accumulation stops the run
 * after accum_step while its counter is not 0 (*stop = 2); the clip norm computed after `at`
 * (with accumulation) is checked after its node like the guard's values (*stop = 1: skipped). */
static et_status run_step_tail(et_session *s, uint32_t at, et_run_env *env, int *stop) {
    const et_guard *g = &s->guard;
    uint32_t from = at;
    et_status st;
    *stop = 0;
    if (g->accum_count >= 0) {
        if (g->accum_after > from) {
            if ((st = run_nodes(s, from, g->accum_after, env)) != ET_OK) return st;
            from = g->accum_after;
        }
        if (*(const int32_t *)s->ptr[g->accum_count] != 0) {
            *stop = 2;
            return ET_OK;
        }
    }
    if (g->norm >= 0 && g->norm_after > from && g->policy != ET_NONFINITE_OFF) {
        if ((st = run_nodes(s, from, g->norm_after, env)) != ET_OK) return st;
        from = g->norm_after;
        char msg[ET_MSG_CAP];
        if (et_guard_check_norm(g, s->ptr, msg, sizeof msg) != ET_OK) {
            et_guard_restore(g, &s->model, s->ptr);
            if (g->policy == ET_NONFINITE_SKIP) {
                s->guard.skipped++;
                *stop = 1;
                return ET_OK;
            }
            return session_fail(s, ET_ERR_NONFINITE, "step %llu: %s; the accumulated update was dropped (weights, "
                                "optimizer state and the step counter are unchanged)",
                                (unsigned long long)s->model.state.step, msg);
        }
    }
    return run_nodes(s, from, current(s)->n_nodes, env);
}

et_status et_session_run(et_session *s) {
    if (!s) return ET_ERR_ARG;
    et_status st = check_inputs_fed(s);
    if (st != ET_OK) return st;
    const et_program_def *pg = current(s);
    et_train_state *state = &s->model.state;
    double lr = et_scheduled_lr(state, state->step);
    if (s->program == ET_PROGRAM_TRAIN && et_lr_check_step(lr, state->step, s->err, sizeof s->err) != ET_OK)
        return ET_ERR_STATE;
    et_run_env env = {lr_as_float(lr), state->step, state->seed, state->rng_counter,
                      s->nthreads, s->plan.ws, s->plan.ws_bytes, NULL, 0};
    if (s->program == ET_PROGRAM_EVAL) eval_cache_update(s);
    else s->version++; /* TRAIN and GRAD write stored tensors (weights, BatchNorm statistics) */
    const int train = s->program == ET_PROGRAM_TRAIN;
    int guarded = train && s->guard.policy != ET_NONFINITE_OFF, skip = 0;
    uint32_t at = guarded ? s->guard.at : train ? 0 : pg->n_nodes;
    if (guarded) et_guard_backup(&s->guard, &s->model, s->ptr);
    s->guard.last_skipped = 0;
    st = run_nodes(s, 0, at, &env);
    if (st == ET_OK && guarded) st = guard_step(s, &skip);
    if (st != ET_OK && guarded && st != ET_ERR_NONFINITE) et_guard_restore(&s->guard, &s->model, s->ptr);
    if (st != ET_OK || skip) {
        s->guard.last_skipped = skip;
        return st;
    }
    if (train) {
        st = run_step_tail(s, at, &env, &skip);
        s->guard.last_skipped = skip == 1;
        if (st != ET_OK) return st;
        if (skip) {
            if (skip == 2) state->rng_counter++; /* a micro-batch: accumulated, no update yet */
            return ET_OK;
        }
    } else {
        st = run_nodes(s, at, pg->n_nodes, &env);
        if (st != ET_OK) return st;
    }
    if (s->program == ET_PROGRAM_TRAIN) state->step++;
    if (s->program == ET_PROGRAM_TRAIN || s->program == ET_PROGRAM_GRAD) state->rng_counter++;
    return ET_OK;
}

/* ======================================================================= */
/* Batch size and the non-finite guard                                      */
/* ======================================================================= */
int64_t et_session_max_batch(const et_session *s) { return s ? s->cache.batch_limit : 0; }

int et_session_cached_plans(const et_session *s) { return s ? 1 + et_plan_cache_count(&s->cache) : 0; }

et_status et_session_set_nonfinite_policy(et_session *s, et_nonfinite_policy policy) {
    if (!s) return ET_ERR_ARG;
    if ((unsigned)policy >= ET_NONFINITE_COUNT_)
        return session_fail(s, ET_ERR_ARG, "non-finite policy %d unknown (0 raise, 1 skip, 2 off)", (int)policy);
    s->guard.policy = (int)policy;
    return ET_OK;
}

et_nonfinite_policy et_session_nonfinite_policy(const et_session *s) {
    return s ? (et_nonfinite_policy)s->guard.policy : ET_NONFINITE_RAISE;
}

uint64_t et_session_skipped_steps(const et_session *s) { return s ? s->guard.skipped : 0; }

int et_session_last_step_skipped(const et_session *s) { return s ? s->guard.last_skipped : 0; }

et_status et_session_set_skipped_steps(et_session *s, uint64_t n) {
    if (!s) return ET_ERR_ARG;
    s->guard.skipped = n;
    return ET_OK;
}

int et_session_accumulation(const et_session *s, int *micro) {
    if (micro) *micro = 0;
    if (!s || s->guard.accum_count < 0) return 1;
    const et_program_def *pg = &s->model.programs[ET_PROGRAM_TRAIN];
    const et_node_def *nd = &s->model.nodes[pg->nodes[s->guard.accum_after - 1]];
    if (micro) *micro = *(const int32_t *)s->persist.ptr[s->guard.accum_count];
    return (int)nd->iattr[0];
}

/* ======================================================================= */
/* Saving and introspection                                                 */
/* ======================================================================= */
et_status et_session_save_file(et_session *s, const char *path) {
    if (!s) return ET_ERR_ARG;
    if (!path || !path[0]) return session_fail(s, ET_ERR_ARG, "save: empty path");
    return et_model_save(&s->model, s->cache.home, s->persist.ptr, &s->model.state, path, s->err, sizeof s->err);
}

et_status et_session_memory_info(const et_session *s, et_memory_info *info) {
    if (!s || !info) return ET_ERR_ARG;
    memset(info, 0, sizeof *info);
    info->params_bytes = s->persist.bytes[ET_BLOCK_PARAMS];
    /* gradients in the arena count as grads, not as activations: the keys still add up to the total */
    info->grads_in_arena_bytes = s->model.grads_in_arena ? (size_t)et_grads_bytes(&s->model) : 0;
    info->grads_bytes = s->persist.bytes[ET_BLOCK_GRADS] + info->grads_in_arena_bytes;
    info->optimizer_bytes = s->persist.bytes[ET_BLOCK_OPTIMIZER];
    info->const_bytes = s->persist.bytes[ET_BLOCK_CONSTS];
    info->inputs_bytes = s->plan.inputs_bytes;
    info->activations_bytes = s->plan.arena_bytes - info->grads_in_arena_bytes;
    info->workspace_bytes = s->plan.ws_bytes;
    info->eval_cache_bytes = s->ecache.block ? s->ecache.bytes : 0;
    info->total_bytes = info->params_bytes + info->grads_bytes + info->optimizer_bytes + info->const_bytes +
                        info->inputs_bytes + info->activations_bytes + info->workspace_bytes +
                        info->eval_cache_bytes;
    info->activations_unplanned_bytes = s->plan.act_unplanned_bytes - info->grads_in_arena_bytes;
    info->workspace_unplanned_bytes = s->plan.ws_unplanned_bytes;
    return ET_OK;
}

et_status et_session_set_profiling(et_session *s, int enabled) {
    if (!s) return ET_ERR_ARG;
    if (enabled && !s->prof) {
        s->prof = (uint64_t *)et_calloc(2 * (size_t)s->model.n_nodes + 1, sizeof(uint64_t));
        if (!s->prof) return session_fail(s, ET_ERR_NOMEM, "out of memory for profile counters");
    }
    if (enabled) memset(s->prof, 0, (2 * (size_t)s->model.n_nodes + 1) * sizeof(uint64_t));
    s->profiling = enabled != 0;
    return ET_OK;
}

int et_session_profiling(const et_session *s) { return s ? s->profiling : 0; }

int et_session_profile(const et_session *s, et_node_profile *out, int cap) {
    if (!s || (cap > 0 && !out)) return -1;
    for (uint32_t i = 0; i < s->model.n_nodes && (int64_t)i < cap; i++) {
        out[i].op = (int)s->model.nodes[i].op;
        out[i].layer = s->model.nodes[i].layer ? s->model.nodes[i].layer : "";
        out[i].ns = s->prof ? s->prof[2 * i] : 0;
        out[i].calls = s->prof ? s->prof[2 * i + 1] : 0;
    }
    return (int)s->model.n_nodes;
}

int et_session_eval_pairs(const et_session *s, int32_t *out, int cap) {
    if (!s || (cap > 0 && !out)) return -1;
    const et_program_def *pg = &s->model.programs[ET_PROGRAM_EVAL];
    int n = 0;
    for (uint32_t k = 0; s->plan.seg_cb && k < pg->n_nodes; k++) {
        if (!s->plan.seg_cb[k]) continue;
        if (n < cap) {
            out[3 * n] = (int32_t)pg->nodes[k];
            out[3 * n + 1] = (int32_t)pg->nodes[k + 1];
            out[3 * n + 2] = (int32_t)s->plan.seg_cb[k];
        }
        n++;
    }
    return n;
}

int et_session_eval_segments(const et_session *s, int32_t *out, int cap) {
    if (!s || (cap > 0 && !out)) return -1;
    const et_program_def *pg = &s->model.programs[ET_PROGRAM_EVAL];
    for (uint32_t k = 0; k < s->plan.n_segs && (int64_t)k < cap; k++) {
        const et_segment *g = &s->plan.segs[k];
        out[3 * k] = (int32_t)pg->nodes[g->from];
        out[3 * k + 1] = (int32_t)pg->nodes[g->to - 1];
        out[3 * k + 2] = (int32_t)(g->to - g->from);
    }
    return (int)s->plan.n_segs;
}

int et_session_node_groups(const et_session *s, et_program_kind kind, int32_t *out, int cap) {
    if (!s || (unsigned)kind >= ET_PROGRAM_COUNT_ || (cap > 0 && !out)) return -1;
    const et_program_def *pg = &s->model.programs[kind];
    const et_group_pos *gp = s->plan.grp[kind];
    int n = 0;
    for (uint32_t k = 0; gp && k < pg->n_nodes; k++) {
        if (!gp[k].to || gp[k].from != k) continue;
        if (n < cap) {
            out[3 * n] = (int32_t)pg->nodes[k];
            out[3 * n + 1] = (int32_t)pg->nodes[gp[k].to - 1];
            out[3 * n + 2] = (int32_t)(gp[k].to - k);
        }
        n++;
    }
    return n;
}

int et_session_node_count(const et_session *s, et_program_kind kind) {
    if (!s || (unsigned)kind >= ET_PROGRAM_COUNT_) return -1;
    return s->model.programs[kind].present ? (int)s->model.programs[kind].n_nodes : 0;
}
