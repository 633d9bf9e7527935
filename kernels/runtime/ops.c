/* edgetrain — the C op table: for every op of enum et_op, its name, arity,
 * shape inference, workspace size and kernel call (docs/ops.md).
 *
 * Shape functions validate everything a kernel relies on (ranks, dtypes,
 * matching dims, attribute ranges), so a planned node only fails in its
 * kernel for data-dependent reasons (a label out of range).
 * Run functions read shapes and attributes only; they never allocate.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime_internal.h"

/* ======================================================================= */
/* Names and shape helpers                                                  */
/* ======================================================================= */
const char *et_dtype_name(et_dtype t) {
    static const char *names[] = {"f32", "i32", "i64", "u8", "i8"};
    return (unsigned)t < ET_DTYPE_COUNT_ ? names[t] : "?";
}

const char *et_kind_name(et_tensor_kind k) {
    static const char *names[] = {"INPUT", "PARAM", "BUFFER", "GRAD", "OPTSTATE", "CONST", "ACT"};
    return (unsigned)k < ET_KIND_COUNT_ ? names[k] : "?";
}

const char *et_program_name(int kind) {
    static const char *names[] = {"eval", "grad", "train"};
    return kind >= 0 && kind < ET_PROGRAM_COUNT_ ? names[kind] : "?";
}

int et_shape_is_sane(const et_tshape *s) {
    if (s->ndim < 0 || s->ndim > ET_MAX_DIMS || et_dtype_size(s->dtype) == 0) return 0;
    uint64_t n = 1;
    for (int d = 0; d < s->ndim; d++) {
        if (s->dim[d] < 0 || s->dim[d] > ET_MAX_DIM) return 0;
        n *= (uint64_t)s->dim[d]; /* <= 2^40 * 2^31 before the check below: no overflow */
        if (n > ET_MAX_BYTES) return 0;
    }
    return n * et_dtype_size(s->dtype) <= ET_MAX_BYTES;
}

int64_t et_shape_numel(const et_tshape *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->dim[d];
    return n;
}

size_t et_shape_bytes(const et_tshape *s) { return (size_t)et_shape_numel(s) * et_dtype_size(s->dtype); }

int et_shape_equal(const et_tshape *a, const et_tshape *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->dim[d] != b->dim[d]) return 0;
    return 1;
}

static int same_dims(const et_tshape *a, const et_tshape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->dim[d] != b->dim[d]) return 0;
    return 1;
}

const char *et_shape_str(const et_tshape *s, char *buf, size_t cap) {
    size_t pos = 0;
    int n = snprintf(buf, cap, "[");
    for (int d = 0; d < s->ndim && n >= 0; d++) {
        pos += (size_t)n;
        if (pos >= cap) break;
        n = snprintf(buf + pos, cap - pos, d ? ",%lld" : "%lld", (long long)s->dim[d]);
    }
    if (n >= 0) pos += (size_t)n;
    if (pos < cap) snprintf(buf + pos, cap - pos, "] %s", et_dtype_name(s->dtype));
    return buf;
}

void et_msgf(char *buf, size_t cap, const char *fmt, ...) {
    if (!buf || cap == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static et_status shape_error(char *msg, size_t cap, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static et_status shape_error(char *msg, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (msg && cap) vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return ET_ERR_SHAPE;
}

/* Input `t` must have dtype dt and rank ndim (-1: rank >= 1, -2: any rank). */
static et_status want(const et_tshape *t, et_dtype dt, int ndim, const char *what, char *msg, size_t cap) {
    char b[128];
    int rank_ok = ndim == -2 || (ndim == -1 ? t->ndim >= 1 : t->ndim == ndim);
    if (t->dtype == dt && rank_ok) return ET_OK;
    if (ndim >= 0)
        return shape_error(msg, cap, "%s must be %d-D %s, got %s", what, ndim, et_dtype_name(dt), et_shape_str(t, b, sizeof b));
    return shape_error(msg, cap, "%s must be %s%s, got %s", what, ndim == -1 ? "at least 1-D " : "",
                       et_dtype_name(dt), et_shape_str(t, b, sizeof b));
}

static et_status want_same(const et_tshape *a, const et_tshape *b, const char *wa, const char *wb, char *msg,
                           size_t cap) {
    char x[128], y[128];
    if (same_dims(a, b)) return ET_OK;
    return shape_error(msg, cap, "%s %s and %s %s must have the same shape", wa, et_shape_str(a, x, sizeof x), wb,
                       et_shape_str(b, y, sizeof y));
}

/* 1-D f32 tensor of length c. */
static et_status want_vec(const et_tshape *t, int64_t c, const char *what, char *msg, size_t cap) {
    char b[128];
    if (t->dtype == ET_F32 && t->ndim == 1 && t->dim[0] == c) return ET_OK;
    return shape_error(msg, cap, "%s must be [%lld] f32, got %s", what, (long long)c, et_shape_str(t, b, sizeof b));
}

static et_status want_scalar(const et_tshape *t, const char *what, char *msg, size_t cap) {
    char b[128];
    if (t->dtype == ET_F32 && et_shape_numel(t) == 1) return ET_OK;
    return shape_error(msg, cap, "%s must be one f32 value, got %s", what, et_shape_str(t, b, sizeof b));
}

static et_status want_flag(int64_t v, const char *what, char *msg, size_t cap) {
    if (v == 0 || v == 1) return ET_OK;
    return shape_error(msg, cap, "attribute %s must be 0 or 1, got %lld", what, (long long)v);
}

static et_status want_finite(float v, const char *what, char *msg, size_t cap) {
    if (isfinite(v)) return ET_OK;
    return shape_error(msg, cap, "attribute %s must be finite, got %g", what, (double)v);
}

static void set_shape(et_tshape *o, et_dtype dt, int ndim, const int64_t *dims) {
    memset(o, 0, sizeof *o);
    o->dtype = dt;
    o->ndim = ndim;
    for (int d = 0; d < ndim; d++) o->dim[d] = dims[d];
}

static void set_like(et_tshape *o, const et_tshape *t, et_dtype dt) {
    *o = *t;
    o->dtype = dt;
}

static void set_scalar(et_tshape *o) { set_shape(o, ET_F32, 0, NULL); }

/* Right-aligns s into rank `ndim` (leading 1s); rank 0 becomes [1]. */
static int pad_dims(const et_tshape *s, int ndim, int64_t *out) {
    if (ndim < 1) ndim = 1;
    int lead = ndim - s->ndim;
    for (int d = 0; d < ndim; d++) out[d] = d < lead ? 1 : s->dim[d - lead];
    return ndim;
}

/* Integer attributes used as sizes must fit the kernels' int64 arithmetic. */
static et_status want_attr_range(const et_node_def *n, int first, int count, char *msg, size_t cap) {
    for (int k = first; k < first + count; k++)
        if (n->iattr[k] < 0 || n->iattr[k] > ET_MAX_DIM)
            return shape_error(msg, cap, "integer attribute %d = %lld out of range 0..2^31", k, (long long)n->iattr[k]);
    return ET_OK;
}

#define TRY(expr)                          \
    do {                                   \
        et_status st_ = (expr);            \
        if (st_ != ET_OK) return st_;      \
    } while (0)

/* ======================================================================= */
/* Convolution                                                              */
/* ======================================================================= */
/* What conv2d and conv_transpose2d check alike: x and w 4-D f32, 9 integer attributes
 * (at least) with stride at[0..1] and dilation at[6..7]. */
static et_status want_conv_args(const et_node_def *n, const et_tshape *x, const et_tshape *w, char *msg,
                                size_t cap) {
    TRY(want(x, ET_F32, 4, "input x", msg, cap));
    TRY(want(w, ET_F32, 4, "weight w", msg, cap));
    return want_attr_range(n, 0, 9, msg, cap);
}
static et_status want_stride_dilation(const int64_t *at, char *msg, size_t cap) {
    if (at[0] < 1 || at[1] < 1 || at[6] < 1 || at[7] < 1)
        return shape_error(msg, cap, "stride %lldx%lld and dilation %lldx%lld must be >= 1", (long long)at[0],
                           (long long)at[1], (long long)at[6], (long long)at[7]);
    return ET_OK;
}

/* iattr: stride_h, stride_w, pad_t, pad_l, pad_b, pad_r, dil_h, dil_w, groups, act. */
static et_status conv_params(const et_node_def *n, const et_tshape *x, const et_tshape *w, int with_act,
                             et_conv2d_params *p, char *msg, size_t cap) {
    char a[128], b[128];
    const int64_t *at = n->iattr;
    TRY(want_conv_args(n, x, w, msg, cap));
    memset(p, 0, sizeof *p);
    p->n = x->dim[0]; p->c = x->dim[1]; p->h = x->dim[2]; p->w = x->dim[3];
    p->oc = w->dim[0]; p->kh = w->dim[2]; p->kw = w->dim[3];
    p->stride_h = at[0]; p->stride_w = at[1];
    p->pad_t = at[2]; p->pad_l = at[3]; p->pad_b = at[4]; p->pad_r = at[5];
    p->dil_h = at[6]; p->dil_w = at[7];
    p->groups = at[8];
    p->act = ET_ACT_NONE;
    if (with_act) {
        if (at[9] < 0 || at[9] >= ET_ACT_COUNT_) return shape_error(msg, cap, "activation %lld unknown", (long long)at[9]);
        p->act = (et_act)at[9];
        p->act_alpha = n->fattr[0];
    }
    if (p->groups < 1) return shape_error(msg, cap, "groups must be >= 1, got %lld", (long long)p->groups);
    if (w->dim[1] * p->groups != p->c)
        return shape_error(msg, cap, "input has %lld channels but the weight %s with groups=%lld expects %lld",
                           (long long)p->c, et_shape_str(w, b, sizeof b), (long long)p->groups,
                           (long long)(w->dim[1] * p->groups));
    if (p->oc % p->groups != 0)
        return shape_error(msg, cap, "%lld output channels not divisible by groups=%lld", (long long)p->oc,
                           (long long)p->groups);
    TRY(want_stride_dilation(at, msg, cap));
    if (et_conv2d_params_init(p) != ET_OK)
        return shape_error(msg, cap, "input %s too small for kernel %lldx%lld with pad %lld,%lld,%lld,%lld and "
                           "dilation %lldx%lld (output would be empty)", et_shape_str(x, a, sizeof a),
                           (long long)p->kh, (long long)p->kw, (long long)at[2], (long long)at[3], (long long)at[4],
                           (long long)at[5], (long long)at[6], (long long)at[7]);
    return ET_OK;
}

/* dy must be f32 [n, c, oh, ow], the shape of `op`'s output. */
static et_status want_dy4(const et_tshape *dy, int64_t n, int64_t c, int64_t oh, int64_t ow, const char *op,
                          char *msg, size_t cap) {
    char b[128];
    TRY(want(dy, ET_F32, 4, "gradient dy", msg, cap));
    if (dy->dim[0] != n || dy->dim[1] != c || dy->dim[2] != oh || dy->dim[3] != ow)
        return shape_error(msg, cap, "gradient dy %s must be [%lld,%lld,%lld,%lld] (the %s's output)",
                           et_shape_str(dy, b, sizeof b), (long long)n, (long long)c, (long long)oh, (long long)ow, op);
    return ET_OK;
}
static et_status want_conv_dy(const et_tshape *dy, const et_conv2d_params *p, char *msg, size_t cap) {
    return want_dy4(dy, p->n, p->oc, p->oh, p->ow, "convolution", msg, cap);
}

static et_status want_eps(float eps, char *msg, size_t cap);
/* conv2d's fused eval BatchNorm (inputs 3..6: bn_weight?, bn_bias?, bn_mean?, bn_var?; fattr[1]
 * eps): present when bn_mean is; its per-channel factors sit at the start of the workspace. */
static int conv_has_bn(const et_node_io *io) { return io->node->n_in > 5 && io->in[5] != NULL; }
static size_t conv_bn_bytes(const et_node_io *io, int64_t oc) {
    return conv_has_bn(io) ? ((size_t)(2 * oc) * sizeof(float) + 63) & ~(size_t)63 : 0;
}
static et_status want_conv_bn(const et_node_io *io, int64_t oc, char *msg, size_t cap) {
    static const char *names[] = {"BatchNorm weight bn_weight", "BatchNorm bias bn_bias",
                                  "BatchNorm running mean bn_mean", "BatchNorm running var bn_var"};
    const int n_in = io->node->n_in;
    for (int k = 3; k < n_in; k++)
        if (io->in[k]) TRY(want_vec(io->in[k], oc, names[k - 3], msg, cap));
    const int has_mean = n_in > 5 && io->in[5], has_var = n_in > 6 && io->in[6];
    if (has_mean != has_var || (!has_mean && n_in > 3 && (io->in[3] || io->in[4])))
        return shape_error(msg, cap, "a fused BatchNorm needs both bn_mean and bn_var (bn_weight / bn_bias "
                           "are optional), got %s", has_mean ? "no bn_var" : has_var ? "no bn_mean" :
                           "bn_weight / bn_bias alone");
    if (has_mean) TRY(want_eps(io->node->fattr[1], msg, cap));
    return ET_OK;
}

static et_status conv2d_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    et_conv2d_params p = {0};
    TRY(conv_params(io->node, io->in[0], io->in[1], 1, &p, msg, cap));
    if (io->in[2]) TRY(want_vec(io->in[2], p.oc, "bias b", msg, cap));
    TRY(want_conv_bn(io, p.oc, msg, cap));
    int64_t dims[4] = {p.n, p.oc, p.oh, p.ow};
    set_shape(&out[0], ET_F32, 4, dims);
    return ET_OK;
}
static size_t conv2d_ws(const et_node_io *io, int nthreads) {
    et_conv2d_params p = {0};
    if (conv_params(io->node, io->in[0], io->in[1], 1, &p, NULL, 0) != ET_OK) return 0;
    return conv_bn_bytes(io, p.oc) + et_f32_conv2d_fwd_ws_bytes(&p, nthreads);
}
static et_status conv2d_run(const et_node_io *io, const et_run_env *e) {
    et_conv2d_params p = {0};
    TRY(conv_params(io->node, io->in[0], io->in[1], 1, &p, NULL, 0));
    const size_t bn = conv_bn_bytes(io, p.oc);
    if (e->cache) { /* the eval cache's entry (conv2d_cache_fill): factors, packed weights */
        if (e->ws_bytes < bn || e->cache_bytes < bn) return ET_ERR_ARG;
        const float *a = (const float *)e->cache;
        if (bn) p.bn_scale = a, p.bn_shift = a + p.oc;
        const void *pk = e->cache_bytes > bn ? (const char *)e->cache + bn : NULL;
        return et_f32_conv2d_fwd_packed(&p, io->in_data[0], io->in_data[1], pk, io->in_data[2],
                                        io->out_data[0], bn ? (char *)e->ws + bn : e->ws,
                                        e->ws_bytes - bn, e->nthreads);
    }
    if (bn) {
        if (e->ws_bytes < bn) return ET_ERR_ARG;
        float *a = (float *)e->ws, *sh = a + p.oc;
        for (int64_t o = 0; o < p.oc; o++)
            et_f32_bn_infer_factor(io->in_data[3], io->in_data[4], io->in_data[5], io->in_data[6],
                                   io->node->fattr[1], o, &a[o], &sh[o]);
        p.bn_scale = a, p.bn_shift = sh;
    }
    return et_f32_conv2d_fwd(&p, io->in_data[0], io->in_data[1], io->in_data[2], io->out_data[0],
                             bn ? (char *)e->ws + bn : e->ws, e->ws_bytes - bn, e->nthreads);
}

/* An EVAL program's cache entry (eval_cache.c): the fused BatchNorm's factors (as conv2d_run
 * puts them at the start of its workspace), then the weights packed as et_f32_conv2d_fwd packs
 * them on every call. Derived from w and the BatchNorm inputs (conv2d_cache_in). */
static size_t conv2d_cache_bytes(const et_node_io *io) {
    et_conv2d_params p = {0};
    if (conv_params(io->node, io->in[0], io->in[1], 1, &p, NULL, 0) != ET_OK) return 0;
    return conv_bn_bytes(io, p.oc) + et_f32_conv2d_fwd_packed_bytes(&p);
}
static et_status conv2d_cache_fill(const et_node_io *io, void *cache, size_t bytes, int nthreads) {
    et_conv2d_params p = {0};
    TRY(conv_params(io->node, io->in[0], io->in[1], 1, &p, NULL, 0));
    const size_t bn = conv_bn_bytes(io, p.oc);
    if (bytes < bn) return ET_ERR_ARG;
    float *a = (float *)cache, *sh = a + p.oc;
    for (int64_t o = 0; bn && o < p.oc; o++)
        et_f32_bn_infer_factor(io->in_data[3], io->in_data[4], io->in_data[5], io->in_data[6],
                               io->node->fattr[1], o, &a[o], &sh[o]);
    if (bytes == bn) return ET_OK;
    return et_f32_conv2d_fwd_pack(&p, io->in_data[1], (char *)cache + bn, bytes - bn, nthreads);
}
#define conv2d_cache_in ((1u << 1) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6))

/* The two convolution input gradients: dy = in[0], x = in[xi], w = in[wi]; the output has
 * in[2]'s shape (the tensor whose gradient it is). */
static et_status conv_bwd_infer(const et_node_io *io, int xi, int wi, et_tshape *out, char *msg, size_t cap) {
    et_conv2d_params p = {0};
    TRY(conv_params(io->node, io->in[xi], io->in[wi], 0, &p, msg, cap));
    TRY(want_conv_dy(io->in[0], &p, msg, cap));
    set_like(&out[0], io->in[2], ET_F32);
    return ET_OK;
}

/* conv2d_bwd_input: dy, w, x (shape only) -> dx */
static et_status conv2d_bwd_input_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    return conv_bwd_infer(io, 2, 1, out, msg, cap);
}
static size_t conv2d_bwd_input_ws(const et_node_io *io, int nthreads) {
    et_conv2d_params p = {0};
    return conv_params(io->node, io->in[2], io->in[1], 0, &p, NULL, 0) == ET_OK
               ? et_f32_conv2d_bwd_input_ws_bytes(&p, nthreads) : 0;
}
static et_status conv2d_bwd_input_run(const et_node_io *io, const et_run_env *e) {
    et_conv2d_params p = {0};
    TRY(conv_params(io->node, io->in[2], io->in[1], 0, &p, NULL, 0));
    return et_f32_conv2d_bwd_input(&p, io->in_data[0], io->in_data[1], io->out_data[0], e->ws, e->ws_bytes, e->nthreads);
}

/* conv2d_bwd_weight: dy, x, w (shape only) -> dw */
static et_status conv2d_bwd_weight_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    return conv_bwd_infer(io, 1, 2, out, msg, cap);
}
static size_t conv2d_bwd_weight_ws(const et_node_io *io, int nthreads) {
    et_conv2d_params p = {0};
    return conv_params(io->node, io->in[1], io->in[2], 0, &p, NULL, 0) == ET_OK
               ? et_f32_conv2d_bwd_weight_ws_bytes(&p, nthreads) : 0;
}
static et_status conv2d_bwd_weight_run(const et_node_io *io, const et_run_env *e) {
    et_conv2d_params p = {0};
    TRY(conv_params(io->node, io->in[1], io->in[2], 0, &p, NULL, 0));
    return et_f32_conv2d_bwd_weight(&p, io->in_data[0], io->in_data[1], io->out_data[0], e->ws, e->ws_bytes,
                                    e->nthreads);
}

/* conv2d_bwd_bias: dy[N,OC,OH,OW] -> db[OC]. The kernel reads n, oc, oh, ow:
 * describe a 1x1 convolution whose output has dy's shape. */
static et_status conv2d_bwd_bias_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want(io->in[0], ET_F32, 4, "gradient dy", msg, cap));
    set_shape(&out[0], ET_F32, 1, &io->in[0]->dim[1]);
    return ET_OK;
}
static et_status conv2d_bwd_bias_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    et_conv2d_params p = {0};
    memset(&p, 0, sizeof p);
    p.n = d[0]; p.c = d[1]; p.h = d[2]; p.w = d[3];
    p.oc = d[1]; p.kh = 1; p.kw = 1;
    p.stride_h = p.stride_w = p.dil_h = p.dil_w = p.groups = 1;
    p.oh = d[2]; p.ow = d[3];
    return et_f32_conv2d_bwd_bias(&p, io->in_data[0], io->out_data[0], e->nthreads);
}

/* ======================================================================= */
/* Matmul, broadcast binary ops, reductions, reshape, affine               */
/* ======================================================================= */
typedef struct mm_dims { int64_t M, N, K; int ta, tb; } mm_dims;

static et_status matmul_dims(const et_node_io *io, mm_dims *d, char *msg, size_t cap) {
    char x[128], y[128];
    const et_tshape *a = io->in[0], *b = io->in[1];
    TRY(want(a, ET_F32, 2, "input a", msg, cap));
    TRY(want(b, ET_F32, 2, "input b", msg, cap));
    TRY(want_flag(io->node->iattr[0], "trans_a", msg, cap));
    TRY(want_flag(io->node->iattr[1], "trans_b", msg, cap));
    d->ta = (int)io->node->iattr[0];
    d->tb = (int)io->node->iattr[1];
    d->M = d->ta ? a->dim[1] : a->dim[0];
    d->K = d->ta ? a->dim[0] : a->dim[1];
    int64_t kb = d->tb ? b->dim[1] : b->dim[0];
    d->N = d->tb ? b->dim[0] : b->dim[1];
    if (kb != d->K)
        return shape_error(msg, cap, "inner dimensions differ: a %s%s, b %s%s", et_shape_str(a, x, sizeof x),
                           d->ta ? " (transposed)" : "", et_shape_str(b, y, sizeof y), d->tb ? " (transposed)" : "");
    return ET_OK;
}
static et_status matmul_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    mm_dims d = {0};
    TRY(matmul_dims(io, &d, msg, cap));
    int64_t dims[2] = {d.M, d.N};
    set_shape(&out[0], ET_F32, 2, dims);
    return ET_OK;
}
static size_t matmul_ws(const et_node_io *io, int nthreads) {
    mm_dims d = {0};
    return matmul_dims(io, &d, NULL, 0) == ET_OK ? et_f32_gemm_ws_bytes(d.M, d.N, d.K, nthreads) : 0;
}
static et_status matmul_run(const et_node_io *io, const et_run_env *e) {
    mm_dims d = {0};
    TRY(matmul_dims(io, &d, NULL, 0));
    return et_f32_gemm(d.ta, d.tb, d.M, d.N, d.K, 1.0f, io->in_data[0], io->in[0]->dim[1], io->in_data[1],
                       io->in[1]->dim[1], 0.0f, io->out_data[0], d.N, e->ws, e->ws_bytes, e->nthreads);
}

/* numpy broadcasting of a and b, right-aligned, up to 6-D */
static et_status binary_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char x[128], y[128];
    const et_tshape *a = io->in[0], *b = io->in[1];
    TRY(want(a, ET_F32, -2, "input a", msg, cap));
    TRY(want(b, ET_F32, -2, "input b", msg, cap));
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t pa[ET_MAX_DIMS], pb[ET_MAX_DIMS], dims[ET_MAX_DIMS];
    pad_dims(a, nd, pa);
    pad_dims(b, nd, pb);
    for (int d = 0; d < nd; d++) {
        if (pa[d] != pb[d] && pa[d] != 1 && pb[d] != 1)
            return shape_error(msg, cap, "shapes %s and %s do not broadcast", et_shape_str(a, x, sizeof x),
                               et_shape_str(b, y, sizeof y));
        dims[d] = pa[d] == 1 ? pb[d] : pa[d];
    }
    set_shape(&out[0], ET_F32, nd, dims);
    return ET_OK;
}
static et_status binary_run(const et_node_io *io, et_binop op, int nthreads) {
    int64_t ys[ET_MAX_DIMS], as[ET_MAX_DIMS], bs[ET_MAX_DIMS];
    int nd = pad_dims(io->out[0], io->out[0]->ndim, ys);
    pad_dims(io->in[0], nd, as);
    pad_dims(io->in[1], nd, bs);
    return et_f32_binary(op, nd, ys, as, io->in_data[0], bs, io->in_data[1], io->out_data[0], nthreads);
}
static et_status add_run(const et_node_io *io, const et_run_env *e) { return binary_run(io, ET_BIN_ADD, e->nthreads); }
static et_status sub_run(const et_node_io *io, const et_run_env *e) { return binary_run(io, ET_BIN_SUB, e->nthreads); }
static et_status mul_run(const et_node_io *io, const et_run_env *e) { return binary_run(io, ET_BIN_MUL, e->nthreads); }
static et_status div_run(const et_node_io *io, const et_run_env *e) { return binary_run(io, ET_BIN_DIV, e->nthreads); }

/* 1 if `small` broadcasts to `big` (right-aligned, each dim equal or 1). */
static int broadcasts_to(const et_tshape *small, const et_tshape *big) {
    if (small->ndim > big->ndim) return 0;
    int64_t p[ET_MAX_DIMS];
    int nd = pad_dims(small, big->ndim, p);
    for (int d = 0; d < nd && big->ndim > 0; d++)
        if (p[d] != 1 && p[d] != big->dim[d]) return 0;
    return 1;
}

/* reduce_sum_to: x, ref (shape only) -> y[shape(ref)] */
static et_status reduce_sum_to_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char x[128], y[128];
    TRY(want(io->in[0], ET_F32, -2, "input x", msg, cap));
    TRY(want_finite(io->node->fattr[0], "scale", msg, cap));
    if (!broadcasts_to(io->in[1], io->in[0]))
        return shape_error(msg, cap, "reference %s does not broadcast to x %s", et_shape_str(io->in[1], y, sizeof y),
                           et_shape_str(io->in[0], x, sizeof x));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status reduce_sum_to_run(const et_node_io *io, const et_run_env *e) {
    int64_t xs[ET_MAX_DIMS], ys[ET_MAX_DIMS];
    int nd = pad_dims(io->in[0], io->in[0]->ndim, xs);
    pad_dims(io->out[0], nd, ys);
    return et_f32_reduce_sum_to(nd, xs, io->in_data[0], ys, io->out_data[0], io->node->fattr[0], e->nthreads);
}

/* broadcast_to: x, ref (shape only) -> y[shape(ref)] */
static et_status broadcast_to_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char x[128], y[128];
    TRY(want(io->in[0], ET_F32, -2, "input x", msg, cap));
    TRY(want_finite(io->node->fattr[0], "scale", msg, cap));
    if (!broadcasts_to(io->in[0], io->in[1]))
        return shape_error(msg, cap, "x %s does not broadcast to the reference %s", et_shape_str(io->in[0], x, sizeof x),
                           et_shape_str(io->in[1], y, sizeof y));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status broadcast_to_run(const et_node_io *io, const et_run_env *e) {
    int64_t xs[ET_MAX_DIMS], ys[ET_MAX_DIMS];
    int nd = pad_dims(io->out[0], io->out[0]->ndim, ys);
    pad_dims(io->in[0], nd, xs);
    return et_f32_broadcast_to(nd, xs, io->in_data[0], ys, io->out_data[0], io->node->fattr[0], e->nthreads);
}

/* reduce: iattr mode (0 sum, 1 mean), keepdims, axis_mask (bit d; 0 = all) */
static et_status reduce_check(const et_node_io *io, char *msg, size_t cap) {
    const et_tshape *x = io->in[0];
    int64_t mask = io->node->iattr[2];
    TRY(want(x, ET_F32, -2, "input x", msg, cap));
    TRY(want_flag(io->node->iattr[0], "mode", msg, cap));
    TRY(want_flag(io->node->iattr[1], "keepdims", msg, cap));
    if (mask < 0 || mask >= ((int64_t)1 << x->ndim))
        return shape_error(msg, cap, "axis_mask 0x%llx names axes beyond rank %d", (long long)mask, x->ndim);
    return ET_OK;
}
static int reduced_axis(int64_t mask, int d) { return mask == 0 || ((mask >> d) & 1); }

static et_status reduce_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(reduce_check(io, msg, cap));
    const et_tshape *x = io->in[0];
    int64_t mask = io->node->iattr[2], dims[ET_MAX_DIMS];
    int keep = (int)io->node->iattr[1], nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!reduced_axis(mask, d)) dims[nd++] = x->dim[d];
        else if (keep) dims[nd++] = 1;
    }
    set_shape(&out[0], ET_F32, nd, dims);
    return ET_OK;
}
static et_status reduce_run(const et_node_io *io, const et_run_env *e) {
    const et_tshape *x = io->in[0];
    int64_t mask = io->node->iattr[2], xs[ET_MAX_DIMS], ys[ET_MAX_DIMS], count = 1;
    int nd = pad_dims(x, x->ndim, xs);
    for (int d = 0; d < nd; d++) ys[d] = xs[d];
    for (int d = 0; d < x->ndim; d++)
        if (reduced_axis(mask, d)) { ys[d] = 1; count *= x->dim[d]; }
    float scale = io->node->iattr[0] == ET_REDUCE_MEAN ? (count > 0 ? (float)(1.0 / (double)count) : 0.0f) : 1.0f;
    return et_f32_reduce_sum_to(nd, xs, io->in_data[0], ys, io->out_data[0], scale, e->nthreads);
}

/* reshape: iattr ndim, d0..d5 (0 = copy input dim, -1 = infer one) */
static et_status reshape_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char b[128];
    const et_tshape *x = io->in[0];
    const et_node_def *n = io->node;
    int64_t nd = n->iattr[0], dims[ET_MAX_DIMS], known = 1;
    int infer_at = -1;
    if (nd < 0 || nd > ET_MAX_DIMS || n->n_iattr < 1 + nd)
        return shape_error(msg, cap, "target rank %lld invalid or missing dims (%d attributes)", (long long)nd, n->n_iattr);
    for (int d = 0; d < (int)nd; d++) {
        int64_t v = n->iattr[1 + d];
        if (v == 0) {
            if (d >= x->ndim) return shape_error(msg, cap, "dim %d = 0 copies input dim %d, but the input %s has rank %d",
                                                 d, d, et_shape_str(x, b, sizeof b), x->ndim);
            v = x->dim[d];
        } else if (v == -1) {
            if (infer_at >= 0) return shape_error(msg, cap, "more than one dim is -1");
            infer_at = d;
            v = 1;
        } else if (v < 0 || v > ET_MAX_DIM) {
            return shape_error(msg, cap, "dim %d = %lld is invalid", d, (long long)v);
        }
        dims[d] = v;
        known *= v;
        if (known > (int64_t)ET_MAX_BYTES) return shape_error(msg, cap, "target shape is too large");
    }
    int64_t numel = et_shape_numel(x);
    if (infer_at >= 0) {
        if (known == 0 || numel % known != 0)
            return shape_error(msg, cap, "cannot infer the -1 dim: %lld elements of %s into blocks of %lld",
                               (long long)numel, et_shape_str(x, b, sizeof b), (long long)known);
        dims[infer_at] = numel / known;
        known = numel;
    }
    if (known != numel)
        return shape_error(msg, cap, "cannot reshape %s (%lld elements) into %lld elements",
                           et_shape_str(x, b, sizeof b), (long long)numel, (long long)known);
    set_shape(&out[0], x->dtype, (int)nd, dims);
    return ET_OK;
}
static et_status reshape_run(const et_node_io *io, const et_run_env *e) {
    (void)e;
    if (io->out_data[0] != io->in_data[0]) memcpy(io->out_data[0], io->in_data[0], et_shape_bytes(io->in[0]));
    return ET_OK;
}

/* affine: y = alpha * x + beta */
static et_status unary_f32_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want(io->in[0], ET_F32, -2, "input x", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status affine_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_finite(io->node->fattr[0], "alpha", msg, cap));
    TRY(want_finite(io->node->fattr[1], "beta", msg, cap));
    return unary_f32_infer(io, out, msg, cap);
}
static et_status affine_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_affine(et_shape_numel(io->in[0]), io->node->fattr[0], io->node->fattr[1], io->in_data[0],
                         io->out_data[0], e->nthreads);
}

/* unary: y = f(x; a, b), iattr fn (et_unary), fattr a, b */
static et_status unary_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    const int64_t fn = io->node->iattr[0];
    const float a = io->node->fattr[0], b = io->node->fattr[1];
    if (fn < 0 || fn >= ET_UNARY_COUNT_)
        return shape_error(msg, cap, "unary function %lld unknown (0..%d)", (long long)fn, ET_UNARY_COUNT_ - 1);
    if (isnan(a) || isnan(b)) return shape_error(msg, cap, "unary attribute a or b is NaN");
    if (fn == ET_UN_POW) TRY(want_finite(a, "exponent", msg, cap));
    if ((fn == ET_UN_CLAMP || fn == ET_UN_IN_RANGE) && a > b)
        return shape_error(msg, cap, "clamp range min %g > max %g", (double)a, (double)b);
    return unary_f32_infer(io, out, msg, cap);
}
static et_status unary_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_unary((et_unary)io->node->iattr[0], io->node->fattr[0], io->node->fattr[1],
                        et_shape_numel(io->in[0]), io->in_data[0], io->out_data[0], e->nthreads);
}

/* ======================================================================= */
/* Activations, dropout, softmax                                            */
/* ======================================================================= */
static et_status want_act(const et_node_def *n, char *msg, size_t cap) {
    if (n->iattr[0] < 0 || n->iattr[0] >= ET_ACT_COUNT_)
        return shape_error(msg, cap, "activation %lld unknown (0..%d)", (long long)n->iattr[0], ET_ACT_COUNT_ - 1);
    return want_finite(n->fattr[0], "alpha", msg, cap);
}
static et_status act_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_act(io->node, msg, cap));
    return unary_f32_infer(io, out, msg, cap);
}
static et_status act_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_act_fwd((et_act)io->node->iattr[0], io->node->fattr[0], et_shape_numel(io->in[0]), io->in_data[0],
                          io->out_data[0], e->nthreads);
}
/* act_bwd: dy, t -> dx */
static et_status act_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_act(io->node, msg, cap));
    TRY(want(io->in[0], ET_F32, -2, "gradient dy", msg, cap));
    TRY(want(io->in[1], ET_F32, -2, "input t", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "dy", "t", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status act_bwd_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_act_bwd((et_act)io->node->iattr[0], io->node->fattr[0], et_shape_numel(io->in[0]), io->in_data[1],
                          io->in_data[0], io->out_data[0], e->nthreads);
}

/* dropout / dropout_bwd: iattr stream, fattr p */
static et_status dropout_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    float p = io->node->fattr[0];
    if (!(p >= 0.0f && p < 1.0f)) return shape_error(msg, cap, "dropout probability %g outside [0, 1)", (double)p);
    return unary_f32_infer(io, out, msg, cap);
}
static void dropout_rng(const et_node_io *io, const et_run_env *e, uint64_t *seed, uint64_t *offset) {
    *seed = e->seed + (uint64_t)io->node->iattr[0] * 0x9E3779B97F4A7C15ull;
    *offset = e->rng_counter << 32;
}
static et_status dropout_run(const et_node_io *io, const et_run_env *e) {
    uint64_t seed, off;
    dropout_rng(io, e, &seed, &off);
    return et_f32_dropout_fwd(et_shape_numel(io->in[0]), io->node->fattr[0], seed, off, io->in_data[0],
                              io->out_data[0], e->nthreads);
}
static et_status dropout_bwd_run(const et_node_io *io, const et_run_env *e) {
    uint64_t seed, off;
    dropout_rng(io, e, &seed, &off);
    return et_f32_dropout_bwd(et_shape_numel(io->in[0]), io->node->fattr[0], seed, off, io->in_data[0],
                              io->out_data[0], e->nthreads);
}

/* softmax along iattr[0] (negative counts from the end); iattr[1] log */
typedef struct sm_view { int64_t outer, len, inner; } sm_view;

static et_status softmax_view(const et_node_io *io, const et_tshape *x, sm_view *v, char *msg, size_t cap) {
    int64_t axis = io->node->iattr[0];
    TRY(want(x, ET_F32, -1, "input", msg, cap));
    TRY(want_flag(io->node->iattr[1], "log", msg, cap));
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim)
        return shape_error(msg, cap, "axis %lld out of range for rank %d", (long long)io->node->iattr[0], x->ndim);
    v->outer = v->inner = 1;
    for (int d = 0; d < axis; d++) v->outer *= x->dim[d];
    for (int d = (int)axis + 1; d < x->ndim; d++) v->inner *= x->dim[d];
    v->len = x->dim[axis];
    return ET_OK;
}
static et_status softmax_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    sm_view v = {0};
    TRY(softmax_view(io, io->in[0], &v, msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status softmax_run(const et_node_io *io, const et_run_env *e) {
    sm_view v = {0};
    TRY(softmax_view(io, io->in[0], &v, NULL, 0));
    return et_f32_softmax_fwd(v.outer, v.len, v.inner, (int)io->node->iattr[1], io->in_data[0], io->out_data[0],
                              e->nthreads);
}
/* softmax_bwd: dy, y -> dx */
static et_status softmax_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    sm_view v = {0};
    TRY(softmax_view(io, io->in[1], &v, msg, cap));
    TRY(want(io->in[0], ET_F32, -1, "gradient dy", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "dy", "y", msg, cap));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status softmax_bwd_run(const et_node_io *io, const et_run_env *e) {
    sm_view v = {0};
    TRY(softmax_view(io, io->in[1], &v, NULL, 0));
    return et_f32_softmax_bwd(v.outer, v.len, v.inner, (int)io->node->iattr[1], io->in_data[1], io->in_data[0],
                              io->out_data[0], e->nthreads);
}

/* ======================================================================= */
/* Pooling                                                                  */
/* ======================================================================= */
/* maxpool iattr: kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, ceil_mode
 * avgpool iattr: kh, kw, stride_h, stride_w, pad_h, pad_w, ceil_mode, count_include_pad */
static et_status pool_params(const et_node_io *io, const et_tshape *x, int is_max, et_pool2d_params *p, char *msg,
                             size_t cap) {
    char b[128];
    const int64_t *a = io->node->iattr;
    TRY(want(x, ET_F32, 4, "input x", msg, cap));
    TRY(want_attr_range(io->node, 0, is_max ? 8 : 6, msg, cap));
    TRY(want_flag(a[is_max ? 8 : 6], "ceil_mode", msg, cap));
    if (!is_max) TRY(want_flag(a[7], "count_include_pad", msg, cap));
    memset(p, 0, sizeof *p);
    p->n = x->dim[0]; p->c = x->dim[1]; p->h = x->dim[2]; p->w = x->dim[3];
    p->kh = a[0]; p->kw = a[1]; p->stride_h = a[2]; p->stride_w = a[3]; p->pad_h = a[4]; p->pad_w = a[5];
    p->dil_h = is_max ? a[6] : 1;
    p->dil_w = is_max ? a[7] : 1;
    p->ceil_mode = (int)a[is_max ? 8 : 6];
    p->count_include_pad = is_max ? 0 : (int)a[7];
    if (et_pool2d_params_init(p) != ET_OK)
        return shape_error(msg, cap, "invalid pooling of %s: kernel %lldx%lld, stride %lldx%lld, pad %lldx%lld "
                           "(padding must be at most half the kernel; an input too small for the window "
                           "gives an empty output)", et_shape_str(x, b, sizeof b),
                           (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], (long long)a[4],
                           (long long)a[5]);
    return ET_OK;
}
static et_status want_pool_dy(const et_tshape *dy, const et_pool2d_params *p, char *msg, size_t cap) {
    return want_dy4(dy, p->n, p->c, p->oh, p->ow, "pooling", msg, cap);
}
static et_status pool_infer(const et_node_io *io, et_tshape *out, int is_max, char *msg, size_t cap) {
    et_pool2d_params p = {0};
    TRY(pool_params(io, io->in[0], is_max, &p, msg, cap));
    int64_t dims[4] = {p.n, p.c, p.oh, p.ow};
    set_shape(&out[0], ET_F32, 4, dims);
    return ET_OK;
}
/* backward: dy, x -> dx[shape(x)] */
static et_status pool_bwd_infer(const et_node_io *io, et_tshape *out, int is_max, char *msg, size_t cap) {
    et_pool2d_params p = {0};
    TRY(pool_params(io, io->in[1], is_max, &p, msg, cap));
    TRY(want_pool_dy(io->in[0], &p, msg, cap));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status maxpool2d_infer(const et_node_io *io, et_tshape *o, char *m, size_t c) { return pool_infer(io, o, 1, m, c); }
static et_status avgpool2d_infer(const et_node_io *io, et_tshape *o, char *m, size_t c) { return pool_infer(io, o, 0, m, c); }
static et_status avgpool2d_bwd_infer(const et_node_io *io, et_tshape *o, char *m, size_t c) { return pool_bwd_infer(io, o, 0, m, c); }

static et_status maxpool2d_run(const et_node_io *io, const et_run_env *e) {
    et_pool2d_params p = {0};
    TRY(pool_params(io, io->in[0], 1, &p, NULL, 0));
    return et_f32_maxpool2d_fwd(&p, io->in_data[0], io->out_data[0], e->nthreads);
}
/* maxpool2d_bwd's optional iattr[9] act: a fused relu / relu6 derivative (export.fuse_maxpool_act_bwd);
 * absent or 0: none. */
static et_act maxpool_bwd_act(const et_node_def *nd) { return nd->n_iattr > 9 ? (et_act)nd->iattr[9] : ET_ACT_NONE; }
static et_status maxpool2d_bwd_infer(const et_node_io *io, et_tshape *o, char *m, size_t c) {
    et_act act = maxpool_bwd_act(io->node);
    if (act != ET_ACT_NONE && act != ET_ACT_RELU && act != ET_ACT_RELU6)
        return shape_error(m, c, "act must be 0 (none), 1 (relu) or 2 (relu6), got %lld", (long long)act);
    return pool_bwd_infer(io, o, 1, m, c);
}
static et_status maxpool2d_bwd_run(const et_node_io *io, const et_run_env *e) {
    et_pool2d_params p = {0};
    TRY(pool_params(io, io->in[1], 1, &p, NULL, 0));
    return et_f32_maxpool2d_act_bwd(&p, maxpool_bwd_act(io->node), io->in_data[1], io->in_data[0], io->out_data[0],
                                    e->nthreads);
}
static et_status avgpool2d_run(const et_node_io *io, const et_run_env *e) {
    et_pool2d_params p = {0};
    TRY(pool_params(io, io->in[0], 0, &p, NULL, 0));
    return et_f32_avgpool2d_fwd(&p, io->in_data[0], io->out_data[0], e->nthreads);
}
static et_status avgpool2d_bwd_run(const et_node_io *io, const et_run_env *e) {
    et_pool2d_params p = {0};
    TRY(pool_params(io, io->in[1], 0, &p, NULL, 0));
    return et_f32_avgpool2d_bwd(&p, io->in_data[0], io->out_data[0], e->nthreads);
}

/* global_avgpool: x[N,C,H,W] -> y[N,C,1,1]; backward: dy, x (shape only) */
static et_status global_avgpool_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    const et_tshape *x = io->in[0];
    TRY(want(x, ET_F32, 4, "input x", msg, cap));
    int64_t dims[4] = {x->dim[0], x->dim[1], 1, 1};
    set_shape(&out[0], ET_F32, 4, dims);
    return ET_OK;
}
static et_status global_avgpool_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char b[128];
    const et_tshape *dy = io->in[0], *x = io->in[1];
    TRY(want(x, ET_F32, 4, "input x", msg, cap));
    TRY(want(dy, ET_F32, -1, "gradient dy", msg, cap));
    if (et_shape_numel(dy) != x->dim[0] * x->dim[1] || dy->dim[0] != x->dim[0])
        return shape_error(msg, cap, "gradient dy %s must be [%lld,%lld,1,1]", et_shape_str(dy, b, sizeof b),
                           (long long)x->dim[0], (long long)x->dim[1]);
    set_like(&out[0], x, ET_F32);
    return ET_OK;
}
static et_status global_avgpool_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_global_avgpool_fwd(d[0], d[1], d[2] * d[3], io->in_data[0], io->out_data[0], e->nthreads);
}
static et_status global_avgpool_bwd_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[1]->dim;
    return et_f32_global_avgpool_bwd(d[0], d[1], d[2] * d[3], io->in_data[0], io->out_data[0], e->nthreads);
}

/* ======================================================================= */
/* Batch normalisation: x[N,C,...] viewed as (n, c, hw)                     */
/* ======================================================================= */
typedef struct bn_view { int64_t n, c, hw; } bn_view;

static et_status bn_view_of(const et_tshape *x, bn_view *v, char *msg, size_t cap) {
    char b[128];
    if (x->dtype != ET_F32 || x->ndim < 2)
        return shape_error(msg, cap, "input x must be f32 [N,C,...] (rank >= 2), got %s", et_shape_str(x, b, sizeof b));
    v->n = x->dim[0];
    v->c = x->dim[1];
    v->hw = 1;
    for (int d = 2; d < x->ndim; d++) v->hw *= x->dim[d];
    return ET_OK;
}
/* inputs 1..4 of train/infer: gamma, beta, running_mean, running_var, all [C] */
static et_status bn_params_infer(const et_node_io *io, bn_view *v, char *msg, size_t cap) {
    static const char *names[] = {"x", "gamma", "beta", "running_mean", "running_var"};
    TRY(bn_view_of(io->in[0], v, msg, cap));
    for (int k = 1; k < 5; k++)  /* running stats absent: batchnorm_train's recompute form */
        if (k < 3 || io->in[k]) TRY(want_vec(io->in[k], v->c, names[k], msg, cap));
    return ET_OK;
}
static et_status want_eps(float eps, char *msg, size_t cap) {
    if (isfinite(eps) && eps >= 0.0f) return ET_OK;
    return shape_error(msg, cap, "eps must be finite and >= 0, got %g", (double)eps);
}
/* Optional iattr freeze_step (QAT freeze_bn_step) of batchnorm_train / batchnorm_bwd: from that
 * optimizer step on (the session's step counter) the running statistics normalise and stay
 * unchanged; absent or -1: never. */
static et_status want_freeze_step(const et_node_def *nd, char *msg, size_t cap) {
    if (nd->n_iattr < 1 || nd->iattr[0] >= -1) return ET_OK;
    return shape_error(msg, cap, "freeze_step must be >= 0 (or -1: never freeze), got %lld",
                       (long long)nd->iattr[0]);
}
static int bn_frozen(const et_node_def *nd, const et_run_env *e) {
    return nd->n_iattr > 0 && nd->iattr[0] >= 0 && e->step >= (uint64_t)nd->iattr[0];
}
/* Optional iattr[1] act and fattr[alpha_at] alpha of batchnorm_train / batchnorm_bwd: a fused
 * relu / relu6 (export.fuse_batchnorm_activations); absent or 0: none. Not with freeze_step
 * (frozen BatchNorms are not fused). alpha is the act op's attribute, unused by relu / relu6. */
static et_act bn_act(const et_node_def *nd) { return nd->n_iattr > 1 ? (et_act)nd->iattr[1] : ET_ACT_NONE; }
static et_status want_bn_act(const et_node_def *nd, int alpha_at, char *msg, size_t cap) {
    if (nd->n_iattr < 2 || nd->iattr[1] == ET_ACT_NONE) return ET_OK;
    if (nd->iattr[1] != ET_ACT_RELU && nd->iattr[1] != ET_ACT_RELU6)
        return shape_error(msg, cap, "act must be 0 (none), 1 (relu) or 2 (relu6), got %lld",
                           (long long)nd->iattr[1]);
    if (nd->iattr[0] >= 0)
        return shape_error(msg, cap, "a fused act cannot be combined with freeze_step %lld (frozen "
                           "BatchNorms are not fused)", (long long)nd->iattr[0]);
    if (nd->n_fattr > alpha_at) TRY(want_finite(nd->fattr[alpha_at], "alpha", msg, cap));
    return ET_OK;
}
static et_status batchnorm_train_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    bn_view v = {0};
    TRY(bn_params_infer(io, &v, msg, cap));
    TRY(want_freeze_step(io->node, msg, cap));
    if ((io->in[3] == NULL) != (io->in[4] == NULL))
        return shape_error(msg, cap, "running_mean and running_var must be both given or both absent");
    if (!io->in[3] && io->node->n_iattr > 0 && io->node->iattr[0] >= 0)
        return shape_error(msg, cap, "freeze_step needs the running statistics (inputs 3 and 4)");
    TRY(want_finite(io->node->fattr[0], "momentum", msg, cap));
    TRY(want_eps(io->node->fattr[1], msg, cap));
    TRY(want_bn_act(io->node, 2, msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    set_shape(&out[1], ET_F32, 1, &v.c);
    set_shape(&out[2], ET_F32, 1, &v.c);
    return ET_OK;
}
static et_status batchnorm_train_run(const et_node_io *io, const et_run_env *e) {
    bn_view v = {0};
    TRY(bn_view_of(io->in[0], &v, NULL, 0));
    if (bn_frozen(io->node, e))
        return et_f32_batchnorm_frozen_fwd(v.n, v.c, v.hw, io->in_data[0], io->in_data[1], io->in_data[2],
                                           io->in_data[3], io->in_data[4], io->node->fattr[1], io->out_data[0],
                                           io->out_data[1], io->out_data[2], e->nthreads);
    return et_f32_batchnorm_train_act_fwd(v.n, v.c, v.hw, io->in_data[0], io->in_data[1], io->in_data[2],
                                          io->in_data[3], io->in_data[4], io->node->fattr[0], io->node->fattr[1],
                                          bn_act(io->node), io->out_data[0], io->out_data[1], io->out_data[2],
                                          e->nthreads);
}
static et_status batchnorm_infer_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    bn_view v = {0};
    TRY(bn_params_infer(io, &v, msg, cap));
    TRY(want_eps(io->node->fattr[0], msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status batchnorm_infer_run(const et_node_io *io, const et_run_env *e) {
    bn_view v = {0};
    TRY(bn_view_of(io->in[0], &v, NULL, 0));
    return et_f32_batchnorm_infer_fwd(v.n, v.c, v.hw, io->in_data[0], io->in_data[1], io->in_data[2], io->in_data[3],
                                      io->in_data[4], io->node->fattr[0], io->out_data[0], e->nthreads);
}
/* batchnorm_bwd: dy, x, gamma, save_mean, save_invstd, y? -> dx, dgamma?, dbeta?; with a fused
 * act, y is the forward's (activated) output and dy is masked from it. */
static et_status batchnorm_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    static const char *names[] = {"dy", "x", "gamma", "save_mean", "save_invstd"};
    bn_view v = {0};
    TRY(bn_view_of(io->in[1], &v, msg, cap));
    TRY(want_freeze_step(io->node, msg, cap));
    TRY(want_bn_act(io->node, 0, msg, cap));
    TRY(want(io->in[0], ET_F32, -1, "gradient dy", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "dy", "x", msg, cap));
    for (int k = 2; k < 5; k++) TRY(want_vec(io->in[k], v.c, names[k], msg, cap));
    const int has_y = io->node->n_in > 5 && io->in[5] != NULL;
    if (has_y != (bn_act(io->node) != ET_ACT_NONE))
        return shape_error(msg, cap, has_y ? "input y (the fused act's output) needs act 1 (relu) or 2 (relu6)"
                                           : "act %d needs input y (the fused act's output)", (int)bn_act(io->node));
    if (has_y) {
        TRY(want(io->in[5], ET_F32, -1, "y (the fused act's output)", msg, cap));
        TRY(want_same(io->in[5], io->in[1], "y", "x", msg, cap));
    }
    set_like(&out[0], io->in[1], ET_F32);
    set_shape(&out[1], ET_F32, 1, &v.c);
    set_shape(&out[2], ET_F32, 1, &v.c);
    return ET_OK;
}
static et_status batchnorm_bwd_run(const et_node_io *io, const et_run_env *e) {
    bn_view v = {0};
    TRY(bn_view_of(io->in[1], &v, NULL, 0));
    if (bn_frozen(io->node, e))
        return et_f32_batchnorm_frozen_bwd(v.n, v.c, v.hw, io->in_data[1], io->in_data[0], io->in_data[2],
                                           io->in_data[3], io->in_data[4], io->out_data[0], io->out_data[1],
                                           io->out_data[2], e->nthreads);
    const float *y = io->node->n_in > 5 ? io->in_data[5] : NULL;
    return et_f32_batchnorm_act_bwd(v.n, v.c, v.hw, io->in_data[1], y, io->in_data[0], bn_act(io->node),
                                    io->in_data[2], io->in_data[3], io->in_data[4], io->out_data[0], io->out_data[1],
                                    io->out_data[2], e->nthreads);
}

/* ======================================================================= */
/* Losses                                                                   */
/* ======================================================================= */
/* [N,C] f32 and, for integer targets, labels [N] i32. */
static et_status want_rows(const et_tshape *x, const char *what, char *msg, size_t cap) {
    return want(x, ET_F32, 2, what, msg, cap);
}
static et_status want_labels(const et_tshape *labels, const et_tshape *x, char *msg, size_t cap) {
    char b[128];
    if (labels->dtype == ET_I32 && labels->ndim == 1 && labels->dim[0] == x->dim[0]) return ET_OK;
    return shape_error(msg, cap, "labels must be [%lld] i32, got %s", (long long)x->dim[0],
                       et_shape_str(labels, b, sizeof b));
}

/* softmax_xent: logits[N,C], labels[N] -> loss[], probs[N,C] */
static et_status softmax_xent_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_rows(io->in[0], "logits", msg, cap));
    TRY(want_labels(io->in[1], io->in[0], msg, cap));
    set_scalar(&out[0]);
    set_like(&out[1], io->in[0], ET_F32);
    return ET_OK;
}
static et_status softmax_xent_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_softmax_xent_fwd(d[0], d[1], io->in_data[0], io->in_data[1], io->out_data[0], io->out_data[1],
                                   e->nthreads);
}
/* softmax_xent_bwd: probs, labels, dloss -> dlogits */
static et_status softmax_xent_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_rows(io->in[0], "probs", msg, cap));
    TRY(want_labels(io->in[1], io->in[0], msg, cap));
    TRY(want_scalar(io->in[2], "dloss", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status softmax_xent_bwd_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_softmax_xent_bwd(d[0], d[1], io->in_data[0], io->in_data[1], io->in_data[2], io->out_data[0],
                                   e->nthreads);
}
/* softmax_xent_prob: logits[N,C], target[N,C] -> loss[], probs */
static et_status softmax_xent_prob_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_rows(io->in[0], "logits", msg, cap));
    TRY(want(io->in[1], ET_F32, 2, "target", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "logits", "target", msg, cap));
    set_scalar(&out[0]);
    set_like(&out[1], io->in[0], ET_F32);
    return ET_OK;
}
static et_status softmax_xent_prob_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_softmax_xent_prob_fwd(d[0], d[1], io->in_data[0], io->in_data[1], io->out_data[0], io->out_data[1],
                                        e->nthreads);
}
static et_status softmax_xent_prob_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_rows(io->in[0], "probs", msg, cap));
    TRY(want(io->in[1], ET_F32, 2, "target", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "probs", "target", msg, cap));
    TRY(want_scalar(io->in[2], "dloss", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status softmax_xent_prob_bwd_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_softmax_xent_prob_bwd(d[0], d[1], io->in_data[0], io->in_data[1], io->in_data[2], io->out_data[0],
                                        e->nthreads);
}

/* mse, l1: pred, target (same shape) -> loss[]; backward adds dloss -> dpred */
static et_status pair_loss_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want(io->in[0], ET_F32, -2, "pred", msg, cap));
    TRY(want(io->in[1], ET_F32, -2, "target", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "pred", "target", msg, cap));
    set_scalar(&out[0]);
    return ET_OK;
}
static et_status pair_loss_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(pair_loss_infer(io, out, msg, cap));
    TRY(want_scalar(io->in[2], "dloss", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status mse_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_mse_fwd(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->out_data[0], e->nthreads);
}
static et_status mse_bwd_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_mse_bwd(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2], io->out_data[0],
                          e->nthreads);
}
static et_status l1_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_l1_fwd(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->out_data[0], e->nthreads);
}
static et_status l1_bwd_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_l1_bwd(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2], io->out_data[0],
                         e->nthreads);
}

/* hinge: x[N,C], labels[N], fattr margin -> loss[]; hinge_bwd: x, labels, dloss -> dx */
static et_status hinge_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_rows(io->in[0], "x", msg, cap));
    TRY(want_labels(io->in[1], io->in[0], msg, cap));
    TRY(want_finite(io->node->fattr[0], "margin", msg, cap));
    set_scalar(&out[0]);
    return ET_OK;
}
static et_status hinge_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(hinge_infer(io, out, msg, cap));
    TRY(want_scalar(io->in[2], "dloss", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status hinge_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_hinge_fwd(d[0], d[1], io->in_data[0], io->in_data[1], io->node->fattr[0], io->out_data[0],
                            e->nthreads);
}
static et_status hinge_bwd_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_hinge_bwd(d[0], d[1], io->in_data[0], io->in_data[1], io->node->fattr[0], io->in_data[2],
                            io->out_data[0], e->nthreads);
}

/* kldiv: input[R,...], target (same shape) -> loss[]; rows = dim 0 */
static void kl_rows(const et_tshape *t, int64_t *rows, int64_t *cols) {
    *rows = t->dim[0];
    *cols = *rows > 0 ? et_shape_numel(t) / *rows : 0;
}
static et_status kldiv_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want(io->in[0], ET_F32, -1, "input", msg, cap));
    TRY(want(io->in[1], ET_F32, -1, "target", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "input", "target", msg, cap));
    set_scalar(&out[0]);
    return ET_OK;
}
static et_status kldiv_run(const et_node_io *io, const et_run_env *e) {
    int64_t r, c;
    kl_rows(io->in[0], &r, &c);
    return et_f32_kldiv_fwd(r, c, io->in_data[0], io->in_data[1], io->out_data[0], e->nthreads);
}
/* kldiv_bwd: target, dloss -> dinput */
static et_status kldiv_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want(io->in[0], ET_F32, -1, "target", msg, cap));
    TRY(want_scalar(io->in[1], "dloss", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status kldiv_bwd_run(const et_node_io *io, const et_run_env *e) {
    int64_t r, c;
    kl_rows(io->in[0], &r, &c);
    return et_f32_kldiv_bwd(r, c, io->in_data[0], io->in_data[1], io->out_data[0], e->nthreads);
}

/* ======================================================================= */
/* Optimizer updates (no outputs; inputs mutated in place)                  */
/* ======================================================================= */
static et_status want_param_like(const et_node_io *io, int k, const char *what, char *msg, size_t cap) {
    TRY(want(io->in[k], ET_F32, -2, what, msg, cap));
    return want_same(io->in[0], io->in[k], "param", what, msg, cap);
}
/* FedProx: an optional prox_anchor input (input k) and the prox_mu fattr (position j; 0 when
 * an older file has fewer fattrs) go together. */
static et_status want_prox(const et_node_io *io, int k, int j, char *msg, size_t cap) {
    const float mu = io->node->fattr[j];
    if (io->in[k]) TRY(want_param_like(io, k, "prox_anchor", msg, cap));
    TRY(want_finite(mu, "prox_mu", msg, cap));
    if (mu < 0.0f) return shape_error(msg, cap, "prox_mu must be >= 0, got %g", (double)mu);
    if (mu != 0.0f && !io->in[k]) return shape_error(msg, cap, "prox_mu %g needs a prox_anchor input", (double)mu);
    return ET_OK;
}
/* sgd_update: param, grad, momentum_buf?, prox_anchor?; iattr nesterov, l1;
 * fattr lr_scale, momentum, dampening, weight_decay, prox_mu? */
static et_status sgd_update_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    static const char *fnames[] = {"lr_scale", "momentum", "dampening", "weight_decay"};
    (void)out;
    TRY(want(io->in[0], ET_F32, -2, "param", msg, cap));
    TRY(want_param_like(io, 1, "grad", msg, cap));
    if (io->in[2]) TRY(want_param_like(io, 2, "momentum_buf", msg, cap));
    TRY(want_flag(io->node->iattr[0], "nesterov", msg, cap));
    TRY(want_flag(io->node->iattr[1], "l1", msg, cap));
    for (int k = 0; k < 4; k++) TRY(want_finite(io->node->fattr[k], fnames[k], msg, cap));
    if (io->node->fattr[1] != 0.0f && !io->in[2])
        return shape_error(msg, cap, "momentum %g needs a momentum_buf input", (double)io->node->fattr[1]);
    return want_prox(io, 3, 4, msg, cap);
}
static et_status sgd_update_run(const et_node_io *io, const et_run_env *e) {
    const float *f = io->node->fattr;
    return et_f32_sgd_update(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2],
                             io->in_data[3], e->lr * f[0], f[1], f[2], (int)io->node->iattr[0], f[3],
                             (int)io->node->iattr[1], f[4], e->step == 0, e->nthreads);
}
/* adam_update: param, grad, m, v, prox_anchor?; iattr decoupled;
 * fattr lr_scale, beta1, beta2, eps, weight_decay, prox_mu? */
static et_status adam_update_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    static const char *fnames[] = {"lr_scale", "beta1", "beta2", "eps", "weight_decay"};
    (void)out;
    TRY(want(io->in[0], ET_F32, -2, "param", msg, cap));
    TRY(want_param_like(io, 1, "grad", msg, cap));
    TRY(want_param_like(io, 2, "m", msg, cap));
    TRY(want_param_like(io, 3, "v", msg, cap));
    TRY(want_flag(io->node->iattr[0], "decoupled", msg, cap));
    for (int k = 0; k < 5; k++) TRY(want_finite(io->node->fattr[k], fnames[k], msg, cap));
    return want_prox(io, 4, 5, msg, cap);
}
static et_status adam_update_run(const et_node_io *io, const et_run_env *e) {
    const float *f = io->node->fattr;
    return et_f32_adam_update(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2],
                              io->in_data[3], io->in_data[4], e->lr * f[0], f[1], f[2], f[3], f[4],
                              (int)io->node->iattr[0], f[5], (int64_t)(e->step + 1), e->nthreads);
}

/* rmsprop_update: param, grad, square_avg, grad_avg?, momentum_buf?, prox_anchor?; iattr centered;
 * fattr lr_scale, alpha, eps, weight_decay, momentum, prox_mu? */
static et_status want_nonneg(float v, const char *what, char *msg, size_t cap) {
    TRY(want_finite(v, what, msg, cap));
    if (v < 0.0f) return shape_error(msg, cap, "%s must be >= 0, got %g", what, (double)v);
    return ET_OK;
}
static et_status rmsprop_update_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    static const char *fnames[] = {"lr_scale", "alpha", "eps", "weight_decay", "momentum"};
    const float *f = io->node->fattr;
    (void)out;
    TRY(want(io->in[0], ET_F32, -2, "param", msg, cap));
    TRY(want_param_like(io, 1, "grad", msg, cap));
    TRY(want_param_like(io, 2, "square_avg", msg, cap));
    if (io->in[3]) TRY(want_param_like(io, 3, "grad_avg", msg, cap));
    if (io->in[4]) TRY(want_param_like(io, 4, "momentum_buf", msg, cap));
    TRY(want_flag(io->node->iattr[0], "centered", msg, cap));
    for (int k = 0; k < 5; k++) TRY(want_nonneg(f[k], fnames[k], msg, cap));
    if (io->node->iattr[0] && !io->in[3]) return shape_error(msg, cap, "centered needs a grad_avg input");
    if (f[4] > 0.0f && !io->in[4])
        return shape_error(msg, cap, "momentum %g needs a momentum_buf input", (double)f[4]);
    return want_prox(io, 5, 5, msg, cap);
}
static et_status rmsprop_update_run(const et_node_io *io, const et_run_env *e) {
    const float *f = io->node->fattr;
    return et_f32_rmsprop_update(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2],
                                 io->in_data[3], io->in_data[4], io->in_data[5], e->lr * f[0], f[1], f[2], f[3],
                                 f[4], (int)io->node->iattr[0], f[5], e->nthreads);
}
/* adagrad_update: param, grad, sum, prox_anchor?; fattr lr_scale, lr_decay, eps, weight_decay, prox_mu? */
static et_status adagrad_update_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    static const char *fnames[] = {"lr_scale", "lr_decay", "eps", "weight_decay"};
    (void)out;
    TRY(want(io->in[0], ET_F32, -2, "param", msg, cap));
    TRY(want_param_like(io, 1, "grad", msg, cap));
    TRY(want_param_like(io, 2, "sum", msg, cap));
    for (int k = 0; k < 4; k++) TRY(want_nonneg(io->node->fattr[k], fnames[k], msg, cap));
    return want_prox(io, 3, 4, msg, cap);
}
static et_status adagrad_update_run(const et_node_io *io, const et_run_env *e) {
    const float *f = io->node->fattr;
    return et_f32_adagrad_update(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2],
                                 io->in_data[3], e->lr * f[0], f[1], f[2], f[3], f[4], (int64_t)(e->step + 1),
                                 e->nthreads);
}

/* ======================================================================= */
/* Gradient clipping and accumulation                                       */
/* ======================================================================= */
/* grad_norm: x0..x7 (f32, any shapes) -> norm[] = sqrt(sum of squares of all inputs), and with
 * fattr max_norm the optional scale[] = min(1, max_norm / (norm + 1e-6)) (float, as
 * torch.nn.utils.clip_grad_norm_). A tree of these nodes gives the global norm of any number
 * of gradients (an inner node's inputs are the norms below it). */
static et_status grad_norm_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    for (int k = 0; k < io->node->n_in; k++) {
        if (!io->in[k]) return shape_error(msg, cap, "input %d is required", k);
        TRY(want(io->in[k], ET_F32, -2, "input", msg, cap));
    }
    if (io->node->n_fattr >= 1) {
        const float mx = io->node->fattr[0];
        TRY(want_finite(mx, "max_norm", msg, cap));
        if (!(mx > 0.0f)) return shape_error(msg, cap, "max_norm must be > 0, got %g", (double)mx);
    }
    set_shape(&out[0], ET_F32, 0, NULL);
    set_shape(&out[1], ET_F32, 0, NULL);
    return ET_OK;
}
static et_status grad_norm_run(const et_node_io *io, const et_run_env *e) {
    double ss = 0.0;
    for (int k = 0; k < io->node->n_in; k++)
        ss += et_f32_sum_squares(et_shape_numel(io->in[k]), (const float *)io->in_data[k], e->nthreads);
    const float norm = (float)sqrt(ss);
    *(float *)io->out_data[0] = norm;
    if (io->out_data[1] && io->node->n_fattr >= 1) {
        float c = io->node->fattr[0] / (norm + 1e-6f);
        *(float *)io->out_data[1] = c < 1.0f ? c : 1.0f; /* NaN stays NaN (torch.clamp) */
    } else if (io->out_data[1]) {
        *(float *)io->out_data[1] = 1.0f; /* no max_norm: no clipping */
    }
    return ET_OK;
}
/* The accumulation counter: one i32 value in a BUFFER tensor. */
static et_status want_counter(const et_tshape *t, char *msg, size_t cap) {
    char b[128];
    if (t->dtype == ET_I32 && et_shape_numel(t) == 1) return ET_OK;
    return shape_error(msg, cap, "count must be one i32 value, got %s", et_shape_str(t, b, sizeof b));
}
/* grad_accumulate: acc (mut), grad, count; fattr scale: acc = scale * grad when count == 0, else
 * acc + scale * grad. */
static et_status grad_accumulate_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    (void)out;
    TRY(want(io->in[0], ET_F32, -2, "acc", msg, cap));
    TRY(want(io->in[1], ET_F32, -2, "grad", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "acc", "grad", msg, cap));
    TRY(want_counter(io->in[2], msg, cap));
    TRY(want_finite(io->node->fattr[0], "scale", msg, cap));
    return ET_OK;
}
static et_status grad_accumulate_run(const et_node_io *io, const et_run_env *e) {
    const int first = *(const int32_t *)io->in_data[2] == 0;
    return et_f32_grad_accumulate(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->node->fattr[0],
                                  first, e->nthreads);
}
/* accum_step: count (mut); iattr k: count = (count + 1) mod k. The session stops a TRAIN run
 * after this node while count != 0 (the updates and the step wait for the k-th micro-batch). */
static et_status accum_step_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    (void)out;
    TRY(want_counter(io->in[0], msg, cap));
    const int64_t k = io->node->iattr[0];
    if (k < 1 || k > INT32_MAX) return shape_error(msg, cap, "accumulation steps k must be in 1..2^31-1, got %lld", (long long)k);
    return ET_OK;
}
static et_status accum_step_run(const et_node_io *io, const et_run_env *e) {
    (void)e;
    int32_t *c = (int32_t *)io->in_data[0];
    const int64_t k = io->node->iattr[0];
    if (*c < 0 || *c >= k) return ET_ERR_STATE; /* a counter no run could have written */
    *c = (int32_t)((*c + 1) % k);
    return ET_OK;
}

/* ======================================================================= */
/* Embedding and more losses (embedding.c, loss_extra.c)                    */
/* ======================================================================= */
/* embedding: weight[V,D], indices[...] i32 -> y[..., D]; iattr padding_idx (-1: none) */
static et_status embedding_check(const et_node_io *io, const et_tshape *idx, char *msg, size_t cap) {
    char b[128];
    const et_tshape *w = io->in[0];
    const int64_t pad = io->node->iattr[0];
    TRY(want(w, ET_F32, 2, "weight", msg, cap));
    if (idx->dtype != ET_I32 || idx->ndim > ET_MAX_DIMS - 1)
        return shape_error(msg, cap, "indices must be i32 of rank 0..%d, got %s", ET_MAX_DIMS - 1,
                           et_shape_str(idx, b, sizeof b));
    if (pad < -1 || pad >= w->dim[0])
        return shape_error(msg, cap, "padding_idx %lld must be in [0, %lld) or -1 (none)", (long long)pad,
                           (long long)w->dim[0]);
    return ET_OK;
}
static void embedding_out(const et_tshape *idx, int64_t d, et_tshape *out) {
    int64_t dims[ET_MAX_DIMS];
    for (int k = 0; k < idx->ndim; k++) dims[k] = idx->dim[k];
    dims[idx->ndim] = d;
    set_shape(out, ET_F32, idx->ndim + 1, dims);
}
static et_status embedding_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(embedding_check(io, io->in[1], msg, cap));
    embedding_out(io->in[1], io->in[0]->dim[1], &out[0]);
    return ET_OK;
}
static et_status embedding_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *w = io->in[0]->dim;
    return et_f32_embedding_fwd__ref(et_shape_numel(io->in[1]), w[0], w[1], io->in_data[0], io->in_data[1],
                                     io->out_data[0], e->nthreads);
}
/* embedding_bwd: weight (shape only), indices, dy[..., D] -> dweight[V,D] */
static et_status embedding_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    et_tshape want_dy;
    TRY(embedding_check(io, io->in[1], msg, cap));
    embedding_out(io->in[1], io->in[0]->dim[1], &want_dy);
    TRY(want(io->in[2], ET_F32, -1, "gradient dy", msg, cap));
    TRY(want_same(io->in[2], &want_dy, "dy", "the lookup", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status embedding_bwd_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *w = io->in[0]->dim;
    return et_f32_embedding_bwd__ref(et_shape_numel(io->in[1]), w[0], w[1], io->in_data[1], io->in_data[2],
                                     io->node->iattr[0], io->out_data[0], e->nthreads);
}

/* Elementwise losses: x, target and the optional inputs from `first_opt` on all of x's shape. */
static et_status elem_loss_check(const et_node_io *io, int n_req, char *msg, size_t cap) {
    static const char *fwd[] = {"input", "target", "log_weight", ""}, *bwd[] = {"input", "target", "dloss",
                                                                                "log_weight"};
    const char **names = n_req == 3 ? bwd : fwd;
    TRY(want(io->in[0], ET_F32, -2, "input", msg, cap));
    for (int k = 1; k < 4; k++) {
        if (!io->in[k]) {
            if (k < n_req) return shape_error(msg, cap, "%s is required", names[k]);
            continue;
        }
        TRY(want(io->in[k], ET_F32, -2, names[k], msg, cap));
        TRY(want_same(io->in[0], io->in[k], "input", names[k], msg, cap));
    }
    return ET_OK;
}
/* bce: x, target -> loss (shape of x); bce_bwd: x, target, dloss -> dx */
static et_status bce_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(elem_loss_check(io, 2, msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status bce_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(elem_loss_check(io, 3, msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status bce_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_bce_fwd__ref(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->out_data[0],
                               e->nthreads);
}
static et_status bce_bwd_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_bce_bwd__ref(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2],
                               io->out_data[0], e->nthreads);
}
/* bce_logits: x, target, log_weight? -> loss; bce_logits_bwd: x, target, dloss, log_weight? -> dx */
static et_status bce_logits_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_bce_logits_fwd__ref(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[2],
                                      io->out_data[0], e->nthreads);
}
static et_status bce_logits_bwd_run(const et_node_io *io, const et_run_env *e) {
    return et_f32_bce_logits_bwd__ref(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], io->in_data[3],
                                      io->in_data[2], io->out_data[0], e->nthreads);
}
/* huber: x, target -> loss; fattr delta (> 0), scale; huber_bwd: x, target, dloss -> dx */
static et_status huber_attrs(const et_node_io *io, char *msg, size_t cap) {
    TRY(want_finite(io->node->fattr[0], "delta", msg, cap));
    TRY(want_finite(io->node->fattr[1], "scale", msg, cap));
    if (!(io->node->fattr[0] > 0.0f))
        return shape_error(msg, cap, "delta must be > 0, got %g", (double)io->node->fattr[0]);
    return ET_OK;
}
static et_status huber_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(huber_attrs(io, msg, cap));
    return bce_infer(io, out, msg, cap);
}
static et_status huber_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(huber_attrs(io, msg, cap));
    return bce_bwd_infer(io, out, msg, cap);
}
static et_status huber_run(const et_node_io *io, const et_run_env *e) {
    const float *f = io->node->fattr;
    return et_f32_huber_fwd__ref(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], f[0], f[1],
                                 io->out_data[0], e->nthreads);
}
static et_status huber_bwd_run(const et_node_io *io, const et_run_env *e) {
    const float *f = io->node->fattr;
    return et_f32_huber_bwd__ref(et_shape_numel(io->in[0]), io->in_data[0], io->in_data[1], f[0], f[1],
                                 io->in_data[2], io->out_data[0], e->nthreads);
}

/* nll: x[N,C,d...], target[N,d...] i32, weight[C]?; iattr ignore_index, reduction (et_reduction);
 * fattr label_smoothing -> loss (target's shape for 'none', else []) */
static et_status nll_check(const et_node_io *io, const et_tshape *weight, char *msg, size_t cap) {
    char a[128], b[128];
    const et_tshape *x = io->in[0], *t = io->in[1];
    const int64_t red = io->node->iattr[1];
    const float eps = io->node->fattr[0];
    TRY(want(x, ET_F32, -1, "input", msg, cap));
    if (x->ndim < 2) return shape_error(msg, cap, "input must be [N, C, ...], got %s", et_shape_str(x, a, sizeof a));
    int ok = t->dtype == ET_I32 && t->ndim == x->ndim - 1 && t->dim[0] == x->dim[0];
    for (int d = 1; ok && d < t->ndim; d++) ok = t->dim[d] == x->dim[d + 1];
    if (!ok)
        return shape_error(msg, cap, "target must be i32 class indices shaped as input %s without dim 1, got %s",
                           et_shape_str(x, a, sizeof a), et_shape_str(t, b, sizeof b));
    if (x->dim[1] < 1) return shape_error(msg, cap, "input has no classes (dim 1 is 0)");
    if (weight) TRY(want_vec(weight, x->dim[1], "weight", msg, cap));
    if (red < ET_REDUCTION_NONE || red > ET_REDUCTION_MEAN)
        return shape_error(msg, cap, "reduction %lld unknown (0 none, 1 sum, 2 mean)", (long long)red);
    if (!(eps >= 0.0f && eps <= 1.0f))
        return shape_error(msg, cap, "label_smoothing must be in [0, 1], got %g", (double)eps);
    return ET_OK;
}
static void nll_dims(const et_tshape *x, int64_t *n, int64_t *c, int64_t *s) {
    *n = x->dim[0];
    *c = x->dim[1];
    *s = 1;
    for (int d = 2; d < x->ndim; d++) *s *= x->dim[d];
}
static et_status nll_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(nll_check(io, io->in[2], msg, cap));
    if (io->node->iattr[1] == ET_REDUCTION_NONE) set_like(&out[0], io->in[1], ET_F32);
    else set_scalar(&out[0]);
    return ET_OK;
}
static et_status nll_run(const et_node_io *io, const et_run_env *e) {
    int64_t n, c, s;
    nll_dims(io->in[0], &n, &c, &s);
    return et_f32_nll_fwd__ref(n, c, s, io->in_data[0], io->in_data[1], io->in_data[2], io->node->iattr[0],
                               (int)io->node->iattr[1], io->node->fattr[0], io->out_data[0], e->nthreads);
}
/* nll_bwd: x (shape only), target, dloss, weight? -> dx */
static et_status nll_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char a[128];
    TRY(nll_check(io, io->in[3], msg, cap));
    const et_tshape *dl = io->in[2];
    if (io->node->iattr[1] == ET_REDUCTION_NONE) {
        TRY(want(dl, ET_F32, -2, "dloss", msg, cap));
        if (!same_dims(dl, io->in[1]))
            return shape_error(msg, cap, "dloss %s must have the target's shape", et_shape_str(dl, a, sizeof a));
    } else {
        TRY(want_scalar(dl, "dloss", msg, cap));
    }
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status nll_bwd_run(const et_node_io *io, const et_run_env *e) {
    int64_t n, c, s;
    nll_dims(io->in[0], &n, &c, &s);
    return et_f32_nll_bwd__ref(n, c, s, io->in_data[1], io->in_data[3], io->node->iattr[0], (int)io->node->iattr[1],
                               io->node->fattr[0], io->in_data[2], io->out_data[0], e->nthreads);
}

/* ======================================================================= */
/* Transposed convolution and resampling                                    */
/* ======================================================================= */
/* conv_transpose2d: x[N,C,H,W], w[C,OC/g,KH,KW], b[OC]? -> y[N,OC,OH,OW]
 * iattr: stride_h, stride_w, pad_h, pad_w, out_pad_h, out_pad_w, dil_h, dil_w, groups */
static et_status convt_params(const et_node_def *n, const et_tshape *x, const et_tshape *w,
                              et_conv_transpose2d_params *p, char *msg, size_t cap) {
    char a[128], b[128];
    const int64_t *at = n->iattr;
    TRY(want_conv_args(n, x, w, msg, cap));
    memset(p, 0, sizeof *p);
    p->n = x->dim[0]; p->c = x->dim[1]; p->h = x->dim[2]; p->w = x->dim[3];
    p->groups = at[8];
    p->oc = w->dim[1] * p->groups; p->kh = w->dim[2]; p->kw = w->dim[3];
    p->stride_h = at[0]; p->stride_w = at[1]; p->pad_h = at[2]; p->pad_w = at[3];
    p->out_pad_h = at[4]; p->out_pad_w = at[5]; p->dil_h = at[6]; p->dil_w = at[7];
    if (p->groups < 1) return shape_error(msg, cap, "groups must be >= 1, got %lld", (long long)p->groups);
    if (w->dim[0] != p->c)
        return shape_error(msg, cap, "input has %lld channels but the weight %s (in_channels, out_channels/groups, "
                           "kh, kw) expects %lld", (long long)p->c, et_shape_str(w, b, sizeof b), (long long)w->dim[0]);
    if (p->c % p->groups != 0)
        return shape_error(msg, cap, "%lld input channels not divisible by groups=%lld", (long long)p->c,
                           (long long)p->groups);
    TRY(want_stride_dilation(at, msg, cap));
    if (p->out_pad_h >= p->stride_h || p->out_pad_w >= p->stride_w)
        return shape_error(msg, cap, "output_padding %lldx%lld must be smaller than stride %lldx%lld",
                           (long long)at[4], (long long)at[5], (long long)at[0], (long long)at[1]);
    if (et_conv_transpose2d_params_init(p) != ET_OK || p->oh > ET_MAX_DIM || p->ow > ET_MAX_DIM)
        return shape_error(msg, cap, "input %s with kernel %lldx%lld, stride %lldx%lld, padding %lldx%lld: output "
                           "would be empty", et_shape_str(x, a, sizeof a), (long long)p->kh, (long long)p->kw,
                           (long long)at[0], (long long)at[1], (long long)at[2], (long long)at[3]);
    return ET_OK;
}
static et_status conv_transpose2d_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    et_conv_transpose2d_params p = {0};
    TRY(convt_params(io->node, io->in[0], io->in[1], &p, msg, cap));
    if (io->in[2]) TRY(want_vec(io->in[2], p.oc, "bias b", msg, cap));
    int64_t dims[4] = {p.n, p.oc, p.oh, p.ow};
    set_shape(&out[0], ET_F32, 4, dims);
    return ET_OK;
}
static size_t conv_transpose2d_ws(const et_node_io *io, int nthreads) {
    et_conv_transpose2d_params p = {0};
    return convt_params(io->node, io->in[0], io->in[1], &p, NULL, 0) == ET_OK
               ? et_f32_conv_transpose2d_fwd_ws_bytes(&p, nthreads) : 0;
}
static et_status conv_transpose2d_run(const et_node_io *io, const et_run_env *e) {
    et_conv_transpose2d_params p = {0};
    TRY(convt_params(io->node, io->in[0], io->in[1], &p, NULL, 0));
    return et_f32_conv_transpose2d_fwd(&p, io->in_data[0], io->in_data[1], io->in_data[2], io->out_data[0], e->ws,
                                       e->ws_bytes, e->nthreads);
}

/* interpolate: x[N,C,H,W] -> y[N,C,OH,OW]; backward: dy, x (shape only)
 * iattr: mode (et_interp_mode), align_corners, oh, ow; fattr: scale_h, scale_w (0 = sizes) */
static et_status interp_params(const et_node_def *n, const et_tshape *x, et_interp2d_params *p, char *msg,
                               size_t cap) {
    const int64_t *at = n->iattr;
    TRY(want(x, ET_F32, 4, "input x", msg, cap));
    if (at[0] < 0 || at[0] >= ET_INTERP_COUNT_)
        return shape_error(msg, cap, "interpolation mode %lld unknown (0 nearest, 1 bilinear)", (long long)at[0]);
    TRY(want_flag(at[1], "align_corners", msg, cap));
    if (at[0] == ET_INTERP_NEAREST && at[1])
        return shape_error(msg, cap, "align_corners applies to mode bilinear only");
    TRY(want_attr_range(n, 2, 2, msg, cap));
    if (at[2] < 1 || at[3] < 1)
        return shape_error(msg, cap, "output size %lldx%lld must be at least 1x1", (long long)at[2], (long long)at[3]);
    const float sh = n->fattr[0], sw = n->fattr[1];
    if (!(sh >= 0.0f) || !(sw >= 0.0f) || !isfinite(sh) || !isfinite(sw))
        return shape_error(msg, cap, "scale factors %g, %g must be finite and >= 0", (double)sh, (double)sw);
    memset(p, 0, sizeof *p);
    p->nc = x->dim[0] * x->dim[1]; p->h = x->dim[2]; p->w = x->dim[3];
    p->oh = at[2]; p->ow = at[3];
    p->mode = (et_interp_mode)at[0]; p->align_corners = (int)at[1];
    p->scale_h = sh; p->scale_w = sw;
    return ET_OK;
}
static et_status interpolate_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    et_interp2d_params p = {0};
    TRY(interp_params(io->node, io->in[0], &p, msg, cap));
    int64_t dims[4] = {io->in[0]->dim[0], io->in[0]->dim[1], p.oh, p.ow};
    set_shape(&out[0], ET_F32, 4, dims);
    return ET_OK;
}
/* dy must be [N, C, oh, ow] of the 4-D input x; out: dx shaped like x. */
static et_status want_resample_dy(const et_tshape *dy, const et_tshape *x, int64_t oh, int64_t ow, char *msg,
                                  size_t cap) {
    char b[128];
    TRY(want(dy, ET_F32, 4, "gradient dy", msg, cap));
    if (dy->dim[0] != x->dim[0] || dy->dim[1] != x->dim[1] || dy->dim[2] != oh || dy->dim[3] != ow)
        return shape_error(msg, cap, "gradient dy %s must be [%lld,%lld,%lld,%lld]", et_shape_str(dy, b, sizeof b),
                           (long long)x->dim[0], (long long)x->dim[1], (long long)oh, (long long)ow);
    return ET_OK;
}
static et_status interpolate_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    et_interp2d_params p = {0};
    TRY(interp_params(io->node, io->in[1], &p, msg, cap));
    TRY(want_resample_dy(io->in[0], io->in[1], p.oh, p.ow, msg, cap));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status interpolate_run(const et_node_io *io, const et_run_env *e) {
    et_interp2d_params p = {0};
    TRY(interp_params(io->node, io->in[0], &p, NULL, 0));
    return et_f32_interp2d_fwd(&p, io->in_data[0], io->out_data[0], e->nthreads);
}
static et_status interpolate_bwd_run(const et_node_io *io, const et_run_env *e) {
    et_interp2d_params p = {0};
    TRY(interp_params(io->node, io->in[1], &p, NULL, 0));
    return et_f32_interp2d_bwd(&p, io->in_data[0], io->out_data[0], e->nthreads);
}

/* adaptive_avgpool2d, adaptive_maxpool2d: x[N,C,H,W] -> y[N,C,OH,OW]; backward: dy, x. iattr: oh, ow */
static et_status adaptive_params(const et_node_def *n, const et_tshape *x, char *msg, size_t cap) {
    TRY(want(x, ET_F32, 4, "input x", msg, cap));
    TRY(want_attr_range(n, 0, 2, msg, cap));
    if (n->iattr[0] < 1 || n->iattr[1] < 1)
        return shape_error(msg, cap, "output size %lldx%lld must be at least 1x1", (long long)n->iattr[0],
                           (long long)n->iattr[1]);
    return ET_OK;
}
static et_status adaptive_pool2d_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(adaptive_params(io->node, io->in[0], msg, cap));
    int64_t dims[4] = {io->in[0]->dim[0], io->in[0]->dim[1], io->node->iattr[0], io->node->iattr[1]};
    set_shape(&out[0], ET_F32, 4, dims);
    return ET_OK;
}
static et_status adaptive_pool2d_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(adaptive_params(io->node, io->in[1], msg, cap));
    TRY(want_resample_dy(io->in[0], io->in[1], io->node->iattr[0], io->node->iattr[1], msg, cap));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status adaptive_avgpool2d_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_adaptive_avgpool2d_fwd(d[0] * d[1], d[2], d[3], io->node->iattr[0], io->node->iattr[1],
                                         io->in_data[0], io->out_data[0], e->nthreads);
}
static et_status adaptive_avgpool2d_bwd_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[1]->dim;
    return et_f32_adaptive_avgpool2d_bwd(d[0] * d[1], d[2], d[3], io->node->iattr[0], io->node->iattr[1],
                                         io->in_data[0], io->out_data[0], e->nthreads);
}
/* adaptive_maxpool2d: shapes as adaptive_avgpool2d; backward: dy, x (read: the argmax) */
static et_status adaptive_maxpool2d_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[0]->dim;
    return et_f32_adaptive_maxpool2d_fwd(d[0] * d[1], d[2], d[3], io->node->iattr[0], io->node->iattr[1],
                                         io->in_data[0], io->out_data[0], e->nthreads);
}
static et_status adaptive_maxpool2d_bwd_run(const et_node_io *io, const et_run_env *e) {
    const int64_t *d = io->in[1]->dim;
    return et_f32_adaptive_maxpool2d_bwd(d[0] * d[1], d[2], d[3], io->node->iattr[0], io->node->iattr[1],
                                         io->in_data[1], io->in_data[0], io->out_data[0], e->nthreads);
}

/* ======================================================================= */
/* int8 inference (qgemm.c): u8 activations, i8 weights, i32 bias         */
/* ======================================================================= */
/* Per-tensor quantization parameters are one-value f32 tensors (the observers' buffers in a
 * QAT eval program, constants in an int8 file); a zero point must hold an integer in
 * [qmin, qmax] and a scale / multiplier be finite and > 0 — checked when the node runs and,
 * for constants, when the file is loaded (et_q_check_const). */
static et_status want_q1(const et_tshape *t, const char *what, char *msg, size_t cap) {
    char b[128];
    if (t->dtype == ET_F32 && et_shape_numel(t) == 1 && t->ndim <= 1) return ET_OK;
    return shape_error(msg, cap, "%s must be [] or [1] f32, got %s", what, et_shape_str(t, b, sizeof b));
}
static et_status want_qrange(const et_node_def *n, int at, int lo, int hi, char *msg, size_t cap) {
    const int64_t qmin = n->iattr[at], qmax = n->iattr[at + 1];
    if (qmin < lo || qmax > hi || qmin >= qmax)
        return shape_error(msg, cap, "quantization range qmin %lld .. qmax %lld must satisfy %d <= qmin < qmax <= %d",
                           (long long)qmin, (long long)qmax, lo, hi);
    return ET_OK;
}
static et_status want_dtype(const et_tshape *t, et_dtype dt, const char *what, char *msg, size_t cap) {
    char b[128];
    if (t->dtype == dt) return ET_OK;
    return shape_error(msg, cap, "%s must be %s, got %s", what, et_dtype_name(dt), et_shape_str(t, b, sizeof b));
}
/* A zero point read at run time: an integer-valued float in [lo, hi]. */
static et_status q_zp(const void *p, int32_t lo, int32_t hi, int32_t *zp) {
    const float v = *(const float *)p;
    if (!(v >= (float)lo && v <= (float)hi) || v != nearbyintf(v)) return ET_ERR_ARG;
    *zp = (int32_t)v;
    return ET_OK;
}
static float q_f(const void *p) { return *(const float *)p; }
static et_status want_present(const et_node_io *io, int from, int to, char *msg, size_t cap) {
    for (int k = from; k < to; k++)
        if (!io->in[k]) return shape_error(msg, cap, "input %d is required", k);
    return ET_OK;
}

/* quantize: x f32, scale, zero_point -> y u8; iattr qmin, qmax */
static et_status quantize_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want(io->in[0], ET_F32, -2, "input x", msg, cap));
    TRY(want_q1(io->in[1], "scale", msg, cap));
    TRY(want_q1(io->in[2], "zero_point", msg, cap));
    TRY(want_qrange(io->node, 0, 0, 255, msg, cap));
    set_like(&out[0], io->in[0], ET_U8);
    return ET_OK;
}
static et_status quantize_run(const et_node_io *io, const et_run_env *e) {
    const int32_t qmin = (int32_t)io->node->iattr[0], qmax = (int32_t)io->node->iattr[1];
    int32_t zp;
    TRY(q_zp(io->in_data[2], qmin, qmax, &zp));
    return et_q_quantize__ref(et_shape_numel(io->in[0]), io->in_data[0], q_f(io->in_data[1]), zp, qmin, qmax,
                              io->out_data[0], e->nthreads);
}

/* dequantize: x u8, scale, zero_point -> y f32 */
static et_status dequantize_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_dtype(io->in[0], ET_U8, "input x", msg, cap));
    TRY(want_q1(io->in[1], "scale", msg, cap));
    TRY(want_q1(io->in[2], "zero_point", msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status dequantize_run(const et_node_io *io, const et_run_env *e) {
    int32_t zp;
    TRY(q_zp(io->in_data[2], 0, 255, &zp));
    return et_q_dequantize__ref(et_shape_numel(io->in[0]), io->in_data[0], q_f(io->in_data[1]), zp, io->out_data[0],
                                e->nthreads);
}

/* qprep: w f32 [OC, ...], w_scale [OC], b [OC]?, s_in, s_out -> wq i8 shape(w), bq i32 [OC]?, mult f32 [OC];
 * iattr wqmin, wqmax */
static et_status qprep_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    const et_tshape *w = io->in[0];
    TRY(want_present(io, 3, 5, msg, cap));
    if (!io->out[2]) return shape_error(msg, cap, "output 2 (multiplier mult) is required but absent");
    if (io->in[2] && !io->out[1]) return shape_error(msg, cap, "bias b (input 2) needs output 1 (bq)");
    TRY(want(w, ET_F32, -1, "weight w", msg, cap));
    if (w->ndim < 2) return shape_error(msg, cap, "weight w must have rank >= 2, got %d", w->ndim);
    TRY(want_vec(io->in[1], w->dim[0], "weight scale", msg, cap));
    if (io->in[2]) TRY(want_vec(io->in[2], w->dim[0], "bias b", msg, cap));
    TRY(want_q1(io->in[3], "input scale", msg, cap));
    TRY(want_q1(io->in[4], "output scale", msg, cap));
    TRY(want_qrange(io->node, 0, -128, 127, msg, cap));
    set_like(&out[0], w, ET_I8);
    set_shape(&out[1], ET_I32, 1, w->dim);
    set_shape(&out[2], ET_F32, 1, w->dim);
    return ET_OK;
}
static et_status qprep_run(const et_node_io *io, const et_run_env *e) {
    (void)e;
    const int64_t oc = io->in[0]->dim[0], k = oc ? et_shape_numel(io->in[0]) / oc : 0;
    if (!io->in[2] && io->out[1]) memset(io->out_data[1], 0, (size_t)oc * sizeof(int32_t)); /* no bias: bq = 0 */
    return et_q_prep_weights__ref(oc, k, io->in_data[0], io->in_data[1], io->in[2] ? io->in_data[2] : NULL,
                                  q_f(io->in_data[3]), q_f(io->in_data[4]), (int32_t)io->node->iattr[0],
                                  (int32_t)io->node->iattr[1], io->out_data[0],
                                  io->in[2] ? io->out_data[1] : NULL, io->out_data[2]);
}

/* The requantize inputs shared by qconv2d and qlinear: b i32 [OC]? (slot 2), mult f32 [OC] (3),
 * x_zp (4), y_zp (5), y_scale (6)?; iattr qmin, qmax at `at`. Optional fused clamp: with
 * y_scale the output is clamped to qclamp's levels [Q(clamp_lo), Q(clamp_hi)] of fattr 0, 1
 * (= the op then qclamp(lo, hi) on the output grid, byte for byte; ReLU: 0, +inf). fattr: none
 * (files before the fused clamp) or two, lo finite <= hi; ignored without y_scale. */
static int q_has_yscale(const et_node_io *io) { return io->node->n_in > 6 && io->in[6]; }
static et_status want_fused_clamp(const et_node_io *io, char *msg, size_t cap) {
    const et_node_def *n = io->node;
    if (q_has_yscale(io)) TRY(want_q1(io->in[6], "output scale y_scale", msg, cap));
    if (n->n_fattr != 0 && n->n_fattr != 2)
        return shape_error(msg, cap, "the fused clamp takes 0 or 2 float attributes (clamp_lo, clamp_hi), got %d",
                           n->n_fattr);
    if (q_has_yscale(io) && n->n_fattr != 2)
        return shape_error(msg, cap, "the output scale y_scale (input 6) needs clamp_lo, clamp_hi");
    if (n->n_fattr == 2 && (!isfinite(n->fattr[0]) || !(n->fattr[1] >= n->fattr[0])))
        return shape_error(msg, cap, "clamp bounds lo %g .. hi %g must satisfy lo <= hi with lo finite (hi may be +inf)",
                           (double)n->fattr[0], (double)n->fattr[1]);
    return ET_OK;
}
static et_status want_requant(const et_node_io *io, int64_t oc, int at, char *msg, size_t cap) {
    char b[128];
    TRY(want_present(io, 3, 6, msg, cap));
    if (io->in[2] && !(io->in[2]->dtype == ET_I32 && io->in[2]->ndim == 1 && io->in[2]->dim[0] == oc))
        return shape_error(msg, cap, "bias b must be [%lld] i32, got %s", (long long)oc,
                           et_shape_str(io->in[2], b, sizeof b));
    TRY(want_vec(io->in[3], oc, "multiplier", msg, cap));
    TRY(want_q1(io->in[4], "input zero_point", msg, cap));
    TRY(want_q1(io->in[5], "output zero_point", msg, cap));
    TRY(want_fused_clamp(io, msg, cap));
    return want_qrange(io->node, at, 0, 255, msg, cap);
}
/* the zero points and the output range: [qmin, qmax], or with y_scale [Q(lo), Q(hi)] */
static et_status q_zps(const et_node_io *io, int at, int32_t *x_zp, int32_t *y_zp, int32_t *qmin, int32_t *qmax) {
    *qmin = (int32_t)io->node->iattr[at], *qmax = (int32_t)io->node->iattr[at + 1];
    TRY(q_zp(io->in_data[4], 0, 255, x_zp));
    TRY(q_zp(io->in_data[5], *qmin, *qmax, y_zp));
    if (!q_has_yscale(io)) return ET_OK;
    return et_q_clamp_levels(q_f(io->in_data[6]), *y_zp, *qmin, *qmax, io->node->fattr[0], io->node->fattr[1], qmin,
                             qmax);
}

/* qconv2d: x u8 [N,C,H,W], w i8, b i32?, mult, x_zp, y_zp -> y u8; iattr as conv2d (without act), qmin, qmax */
static et_status qconv_params(const et_node_io *io, et_conv2d_params *p, char *msg, size_t cap) {
    et_tshape x = *io->in[0], w = *io->in[1];
    TRY(want_dtype(&x, ET_U8, "input x", msg, cap));
    TRY(want_dtype(&w, ET_I8, "weight w", msg, cap));
    x.dtype = w.dtype = ET_F32;
    TRY(conv_params(io->node, &x, &w, 0, p, msg, cap));
    if ((p->c / p->groups) * p->kh * p->kw > ET_Q_MAX_K)
        return shape_error(msg, cap, "dot products of %lld terms exceed the int32 accumulator's %d",
                           (long long)((p->c / p->groups) * p->kh * p->kw), ET_Q_MAX_K);
    return want_requant(io, p->oc, 9, msg, cap);
}
static et_status qconv2d_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    et_conv2d_params p = {0};
    TRY(qconv_params(io, &p, msg, cap));
    int64_t dims[4] = {p.n, p.oc, p.oh, p.ow};
    set_shape(&out[0], ET_U8, 4, dims);
    return ET_OK;
}
static size_t qconv2d_ws(const et_node_io *io, int nthreads) {
    et_conv2d_params p = {0};
    return qconv_params(io, &p, NULL, 0) == ET_OK ? et_q_conv2d_ws_bytes_nt(&p, nthreads) : 0;
}
static et_status qconv2d_run(const et_node_io *io, const et_run_env *e) {
    et_conv2d_params p = {0};
    int32_t x_zp, y_zp, qmin, qmax;
    TRY(qconv_params(io, &p, NULL, 0));
    TRY(q_zps(io, 9, &x_zp, &y_zp, &qmin, &qmax));
    return et_q_conv2d(&p, io->in_data[0], x_zp, io->in_data[1], io->in_data[2], io->in_data[3], y_zp, qmin, qmax,
                       io->out_data[0], e->ws, e->ws_bytes, e->nthreads);
}

/* qlinear: x u8 [N,K], w i8 [OC,K], b i32?, mult, x_zp, y_zp -> y u8 [N,OC]; iattr qmin, qmax */
static et_status qlinear_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char a[128], b[128];
    const et_tshape *x = io->in[0], *w = io->in[1];
    TRY(want_dtype(x, ET_U8, "input x", msg, cap));
    TRY(want_dtype(w, ET_I8, "weight w", msg, cap));
    if (x->ndim != 2 || w->ndim != 2 || x->dim[1] != w->dim[1])
        return shape_error(msg, cap, "input %s and weight %s must be [N,K] and [OC,K]", et_shape_str(x, a, sizeof a),
                           et_shape_str(w, b, sizeof b));
    if (w->dim[1] > ET_Q_MAX_K)
        return shape_error(msg, cap, "dot products of %lld terms exceed the int32 accumulator's %d",
                           (long long)w->dim[1], ET_Q_MAX_K);
    TRY(want_requant(io, w->dim[0], 0, msg, cap));
    int64_t dims[2] = {x->dim[0], w->dim[0]};
    set_shape(&out[0], ET_U8, 2, dims);
    return ET_OK;
}
static et_status qlinear_run(const et_node_io *io, const et_run_env *e) {
    int32_t x_zp, y_zp, qmin, qmax;
    TRY(q_zps(io, 0, &x_zp, &y_zp, &qmin, &qmax));
    const int64_t N = io->in[0]->dim[0], OC = io->in[1]->dim[0], K = io->in[1]->dim[1];
    return et_q_linear(N, OC, K, io->in_data[0], x_zp, io->in_data[1], io->in_data[2], io->in_data[3], y_zp, qmin,
                       qmax, io->out_data[0], e->ws, e->ws_bytes, e->nthreads);
}
static size_t qlinear_ws(const et_node_io *io, int nthreads) {
    return et_q_linear_ws_bytes(io->in[0]->dim[0], io->in[1]->dim[0], io->in[1]->dim[1], nthreads);
}

/* qmaxpool2d: x u8 -> y u8; iattr as maxpool2d */
static et_status qmaxpool_params(const et_node_io *io, et_pool2d_params *p, char *msg, size_t cap) {
    et_tshape x = *io->in[0];
    TRY(want_dtype(&x, ET_U8, "input x", msg, cap));
    x.dtype = ET_F32;
    return pool_params(io, &x, 1, p, msg, cap);
}
static et_status qmaxpool2d_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    et_pool2d_params p = {0};
    TRY(qmaxpool_params(io, &p, msg, cap));
    int64_t dims[4] = {p.n, p.c, p.oh, p.ow};
    set_shape(&out[0], ET_U8, 4, dims);
    return ET_OK;
}
static et_status qmaxpool2d_run(const et_node_io *io, const et_run_env *e) {
    et_pool2d_params p = {0};
    TRY(qmaxpool_params(io, &p, NULL, 0));
    return et_q_maxpool2d__ref(&p, io->in_data[0], io->out_data[0], e->nthreads);
}

/* qrelu: x u8, zero_point -> y u8 = max(x, zero_point) */
static et_status qrelu_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(want_dtype(io->in[0], ET_U8, "input x", msg, cap));
    TRY(want_q1(io->in[1], "zero_point", msg, cap));
    set_like(&out[0], io->in[0], ET_U8);
    return ET_OK;
}
static et_status qrelu_run(const et_node_io *io, const et_run_env *e) {
    int32_t zp;
    TRY(q_zp(io->in_data[1], 0, 255, &zp));
    return et_q_relu__ref(et_shape_numel(io->in[0]), io->in_data[0], zp, io->out_data[0], e->nthreads);
}

/* qadd: a u8, a_scale, a_zero_point, b u8, b_scale, b_zero_point, y_scale, y_zero_point -> y u8;
 * iattr qmin, qmax; a and b of one shape (no broadcasting) */
static et_status qadd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char sa[128], sb[128];
    static const char *const qn[8] = {NULL, "a_scale", "a_zero_point", NULL, "b_scale", "b_zero_point", "y_scale",
                                      "y_zero_point"};
    TRY(want_dtype(io->in[0], ET_U8, "input a", msg, cap));
    TRY(want_dtype(io->in[3], ET_U8, "input b", msg, cap));
    for (int k = 1; k < 8; k++)
        if (qn[k]) TRY(want_q1(io->in[k], qn[k], msg, cap));
    if (!same_dims(io->in[0], io->in[3]))
        return shape_error(msg, cap, "input a %s and input b %s must have the same shape (qadd does not broadcast)",
                           et_shape_str(io->in[0], sa, sizeof sa), et_shape_str(io->in[3], sb, sizeof sb));
    TRY(want_qrange(io->node, 0, 0, 255, msg, cap));
    set_like(&out[0], io->in[0], ET_U8);
    return ET_OK;
}
static et_status qadd_run(const et_node_io *io, const et_run_env *e) {
    const int32_t qmin = (int32_t)io->node->iattr[0], qmax = (int32_t)io->node->iattr[1];
    int32_t a_zp, b_zp, y_zp;
    TRY(q_zp(io->in_data[2], 0, 255, &a_zp));
    TRY(q_zp(io->in_data[5], 0, 255, &b_zp));
    TRY(q_zp(io->in_data[7], qmin, qmax, &y_zp));
    return et_q_add__ref(et_shape_numel(io->in[0]), io->in_data[0], q_f(io->in_data[1]), a_zp, io->in_data[3],
                         q_f(io->in_data[4]), b_zp, q_f(io->in_data[6]), y_zp, qmin, qmax, io->out_data[0],
                         e->nthreads);
}

/* qclamp: x u8, scale, zero_point -> y u8; iattr qmin, qmax; fattr lo, hi (lo finite <= hi, hi finite or +inf) */
static et_status qclamp_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    const float lo = io->node->fattr[0], hi = io->node->fattr[1];
    TRY(want_dtype(io->in[0], ET_U8, "input x", msg, cap));
    TRY(want_q1(io->in[1], "scale", msg, cap));
    TRY(want_q1(io->in[2], "zero_point", msg, cap));
    TRY(want_qrange(io->node, 0, 0, 255, msg, cap));
    if (!isfinite(lo) || !(hi >= lo))
        return shape_error(msg, cap, "clamp bounds lo %g .. hi %g must satisfy lo <= hi with lo finite (hi may be +inf)",
                           (double)lo, (double)hi);
    set_like(&out[0], io->in[0], ET_U8);
    return ET_OK;
}
static et_status qclamp_run(const et_node_io *io, const et_run_env *e) {
    const int32_t qmin = (int32_t)io->node->iattr[0], qmax = (int32_t)io->node->iattr[1];
    int32_t zp;
    TRY(q_zp(io->in_data[2], qmin, qmax, &zp));
    return et_q_clamp__ref(et_shape_numel(io->in[0]), io->in_data[0], q_f(io->in_data[1]), zp, qmin, qmax,
                           io->node->fattr[0], io->node->fattr[1], io->out_data[0], e->nthreads);
}

/* qglobal_avgpool: x u8 [N,C,H,W], zero_point -> y u8 [N,C,1,1]; iattr qmin, qmax */
static et_status qglobal_avgpool_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char b[128];
    const et_tshape *x = io->in[0];
    TRY(want_dtype(x, ET_U8, "input x", msg, cap));
    if (x->ndim != 4 || x->dim[2] < 1 || x->dim[3] < 1)
        return shape_error(msg, cap, "input x must be [N,C,H,W] with H, W >= 1, got %s", et_shape_str(x, b, sizeof b));
    TRY(want_q1(io->in[1], "zero_point", msg, cap));
    TRY(want_qrange(io->node, 0, 0, 255, msg, cap));
    int64_t dims[4] = {x->dim[0], x->dim[1], 1, 1};
    set_shape(&out[0], ET_U8, 4, dims);
    return ET_OK;
}
static et_status qglobal_avgpool_run(const et_node_io *io, const et_run_env *e) {
    const int32_t qmin = (int32_t)io->node->iattr[0], qmax = (int32_t)io->node->iattr[1];
    const int64_t *d = io->in[0]->dim;
    int32_t zp;
    TRY(q_zp(io->in_data[1], qmin, qmax, &zp));
    return et_q_global_avgpool__ref(d[0] * d[1], d[2] * d[3], io->in_data[0], zp, qmin, qmax, io->out_data[0],
                                    e->nthreads);
}

/* ======================================================================= */
/* Fake quantization and observers (quant.c)                                */
/* ======================================================================= */
/* iattr axis (-1: per tensor), qmin, qmax: x viewed as [outer, c, inner] around the axis;
 * the qparam inputs k0, k0 + 1 (scale, zero_point) and, for the observer, its min_val /
 * max_val must hold c values ([c], or one value per tensor). */
typedef struct fq_view { int64_t outer, c, inner; } fq_view;

static et_status fq_view_of(const et_node_io *io, int x_slot, fq_view *v, char *msg, size_t cap) {
    const et_tshape *x = io->in[x_slot];
    const int64_t axis = io->node->iattr[0], qmin = io->node->iattr[1], qmax = io->node->iattr[2];
    TRY(want(x, ET_F32, -2, "input x", msg, cap));
    if (qmin < -32768 || qmax > 65535 || qmin >= qmax)
        return shape_error(msg, cap, "quantization range qmin %lld .. qmax %lld must satisfy -32768 <= qmin < qmax "
                           "<= 65535", (long long)qmin, (long long)qmax);
    if (axis < -1 || axis >= x->ndim)
        return shape_error(msg, cap, "channel axis %lld out of range for a %d-D input (-1: per tensor)",
                           (long long)axis, x->ndim);
    v->outer = 1;
    v->c = axis < 0 ? 1 : x->dim[axis];
    v->inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (axis >= 0 && d < axis) v->outer *= x->dim[d];
        else if (d != axis) v->inner *= x->dim[d];
    }
    if (v->c < 1) return shape_error(msg, cap, "channel axis %lld has size 0", (long long)axis);
    return ET_OK;
}
static et_status want_qvec(const et_tshape *t, const fq_view *v, int per_tensor, const char *what, char *msg,
                           size_t cap) {
    char b[128];
    if (per_tensor) {
        if (t->dtype == ET_F32 && et_shape_numel(t) == 1 && t->ndim <= 1) return ET_OK;
        return shape_error(msg, cap, "%s of a per-tensor quantization must be [] or [1] f32, got %s", what,
                           et_shape_str(t, b, sizeof b));
    }
    return want_vec(t, v->c, what, msg, cap);
}
static et_status fq_params(const et_node_io *io, int x_slot, int first_q, int nq, fq_view *v, char *msg, size_t cap) {
    static const char *names[] = {"scale", "zero_point", "min_val", "max_val"};
    static const int order[] = {2, 3, 0, 1}; /* observer inputs: min_val, max_val, scale, zero_point */
    TRY(fq_view_of(io, x_slot, v, msg, cap));
    for (int k = 0; k < nq; k++) {
        const char *what = nq == 4 ? names[order[k]] : names[k];
        TRY(want_qvec(io->in[first_q + k], v, io->node->iattr[0] < 0, what, msg, cap));
    }
    return ET_OK;
}
/* fake_quant: x, scale, zero_point -> y */
static et_status fake_quant_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    fq_view v;
    TRY(fq_params(io, 0, 1, 2, &v, msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status fake_quant_run(const et_node_io *io, const et_run_env *e) {
    fq_view v;
    TRY(fq_params(io, 0, 1, 2, &v, NULL, 0));
    return et_f32_fake_quant_fwd(v.outer, v.c, v.inner, io->in_data[0], io->in_data[1], io->in_data[2],
                                 io->node->iattr[1], io->node->iattr[2], io->out_data[0], e->nthreads);
}
/* fake_quant_bwd: dy, x, scale, zero_point -> dx */
static et_status fake_quant_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    fq_view v;
    TRY(fq_params(io, 1, 2, 2, &v, msg, cap));
    TRY(want(io->in[0], ET_F32, -2, "gradient dy", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "dy", "x", msg, cap));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status fake_quant_bwd_run(const et_node_io *io, const et_run_env *e) {
    fq_view v;
    TRY(fq_params(io, 1, 2, 2, &v, NULL, 0));
    return et_f32_fake_quant_bwd(v.outer, v.c, v.inner, io->in_data[0], io->in_data[1], io->in_data[2],
                                 io->in_data[3], io->node->iattr[1], io->node->iattr[2], io->out_data[0],
                                 e->nthreads);
}
/* quant_observe: x, min_val, max_val, scale, zero_point (all four mut); iattr axis, qmin, qmax,
 * symmetric, ema, until_step (-1: always); fattr averaging_constant. Does nothing once the
 * session's step counter reaches until_step. */
static et_status quant_observe_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    fq_view v;
    const float c = io->node->fattr[0];
    (void)out;
    TRY(fq_params(io, 0, 1, 4, &v, msg, cap));
    TRY(want_flag(io->node->iattr[3], "symmetric", msg, cap));
    TRY(want_flag(io->node->iattr[4], "ema", msg, cap));
    if (io->node->iattr[5] < -1)
        return shape_error(msg, cap, "until_step must be >= 0 (or -1: never stop), got %lld",
                           (long long)io->node->iattr[5]);
    if (!(c > 0.0f && c <= 1.0f))
        return shape_error(msg, cap, "averaging_constant must be in (0, 1], got %g", (double)c);
    if (io->node->iattr[3] && (io->node->iattr[1] > 0 || io->node->iattr[2] < 0))
        return shape_error(msg, cap, "a symmetric range qmin %lld .. qmax %lld must contain 0",
                           (long long)io->node->iattr[1], (long long)io->node->iattr[2]);
    if (et_shape_numel(io->in[0]) < 1) return shape_error(msg, cap, "the observed input is empty");
    return ET_OK;
}
static et_status quant_observe_run(const et_node_io *io, const et_run_env *e) {
    fq_view v;
    const int64_t *a = io->node->iattr;
    if (a[5] >= 0 && e->step >= (uint64_t)a[5]) return ET_OK;
    TRY(fq_params(io, 0, 1, 4, &v, NULL, 0));
    return et_f32_quant_observe(v.outer, v.c, v.inner, io->in_data[0], io->in_data[1], io->in_data[2],
                                io->in_data[3], io->in_data[4], a[1], a[2], (int)a[3], (int)a[4],
                                io->node->fattr[0], e->nthreads);
}

/* ======================================================================= */
/* Row normalisation, max / min, argmax, batched matmul                     */
/* ======================================================================= */
/* normalize: the trailing iattr[0] (naxes) dims of x form one row; the invstd output keeps x's
 * rank with those dims 1 (normalize_bwd's third input has the same shape). */
typedef struct nr_view { int64_t rows, k; } nr_view;

static et_status normalize_view(const et_tshape *x, int64_t naxes, nr_view *v, et_tshape *stat, char *msg,
                                size_t cap) {
    TRY(want(x, ET_F32, -1, "input x", msg, cap));
    if (naxes < 1 || naxes > x->ndim)
        return shape_error(msg, cap, "naxes %lld must be in 1..%d (the rank of x)", (long long)naxes, x->ndim);
    int64_t dims[ET_MAX_DIMS];
    v->rows = v->k = 1;
    for (int d = 0; d < x->ndim; d++) {
        int normed = d >= x->ndim - (int)naxes;
        dims[d] = normed ? 1 : x->dim[d];
        if (normed) v->k *= x->dim[d];
        else v->rows *= x->dim[d];
    }
    if (v->k == 0) return shape_error(msg, cap, "the normalised dims of x are empty");
    if (stat) set_shape(stat, ET_F32, x->ndim, dims);
    return ET_OK;
}
static et_status normalize_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    nr_view v = {0};
    TRY(normalize_view(io->in[0], io->node->iattr[0], &v, &out[1], msg, cap));
    TRY(want_eps(io->node->fattr[0], msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    return ET_OK;
}
static et_status normalize_run(const et_node_io *io, const et_run_env *e) {
    nr_view v = {0};
    TRY(normalize_view(io->in[0], io->node->iattr[0], &v, NULL, NULL, 0));
    return et_f32_normalize_rows_fwd(v.rows, v.k, io->node->fattr[0], io->in_data[0], io->out_data[0],
                                     io->out_data[1], e->nthreads);
}
/* normalize_bwd: dy, y, invstd -> dx */
static et_status normalize_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    nr_view v = {0};
    et_tshape stat;
    memset(&stat, 0, sizeof stat);
    TRY(normalize_view(io->in[1], io->node->iattr[0], &v, &stat, msg, cap));
    TRY(want(io->in[0], ET_F32, -1, "gradient dy", msg, cap));
    TRY(want_same(io->in[0], io->in[1], "dy", "y", msg, cap));
    TRY(want(io->in[2], ET_F32, -1, "invstd", msg, cap));
    TRY(want_same(io->in[2], &stat, "invstd", "the statistics shape", msg, cap));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status normalize_bwd_run(const et_node_io *io, const et_run_env *e) {
    nr_view v = {0};
    TRY(normalize_view(io->in[1], io->node->iattr[0], &v, NULL, NULL, 0));
    return et_f32_normalize_rows_bwd(v.rows, v.k, io->in_data[1], io->in_data[2], io->in_data[0], io->out_data[0],
                                     e->nthreads);
}

/* maximum, minimum, tie_weight: broadcast binary ops (binary_infer) */
static et_status maximum_run(const et_node_io *io, const et_run_env *e) { return binary_run(io, ET_BIN_MAX, e->nthreads); }
static et_status minimum_run(const et_node_io *io, const et_run_env *e) { return binary_run(io, ET_BIN_MIN, e->nthreads); }
static et_status tie_weight_run(const et_node_io *io, const et_run_env *e) {
    return binary_run(io, ET_BIN_TIE_WEIGHT, e->nthreads);
}

/* reduce_max: iattr mode (0 max, 1 min), keepdims, axis_mask, as reduce */
static et_status reduce_max_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    TRY(reduce_check(io, msg, cap));
    const et_tshape *x = io->in[0];
    for (int d = 0; d < x->ndim; d++)
        if (reduced_axis(io->node->iattr[2], d) && x->dim[d] == 0)
            return shape_error(msg, cap, "max / min over the empty dim %d of x", d);
    return reduce_infer(io, out, msg, cap);
}
static et_status reduce_max_run(const et_node_io *io, const et_run_env *e) {
    const et_tshape *x = io->in[0];
    int64_t mask = io->node->iattr[2], xs[ET_MAX_DIMS], ys[ET_MAX_DIMS];
    int nd = pad_dims(x, x->ndim, xs), nred = 0, axis = 0, is_min = (int)io->node->iattr[0];
    for (int d = 0; d < nd; d++) {
        ys[d] = reduced_axis(mask, d) ? 1 : xs[d];
        if (reduced_axis(mask, d) && xs[d] != 1) {
            nred++;
            axis = d;
        }
    }
    if (nred <= 1) { /* one axis (none: a copy, len 1): the parallel [outer, len, inner] kernel */
        int64_t outer = 1, inner = 1, len = nred ? xs[axis] : 1;
        for (int d = 0; d < nd; d++) {
            if (d < axis || !nred) outer *= xs[d];
            else if (d > axis) inner *= xs[d];
        }
        return et_f32_max_axis(outer, len, inner, is_min, io->in_data[0], io->out_data[0], NULL, e->nthreads);
    }
    return et_f32_reduce_max(nd, xs, io->in_data[0], ys, io->out_data[0], is_min);
}

/* argmax: iattr axis (negative counts from the end), keepdims, min -> i32 positions */
static et_status argmax_axis(const et_node_io *io, int *axis, char *msg, size_t cap) {
    const et_tshape *x = io->in[0];
    int64_t a = io->node->iattr[0];
    TRY(want(x, ET_F32, -1, "input x", msg, cap));
    TRY(want_flag(io->node->iattr[1], "keepdims", msg, cap));
    TRY(want_flag(io->node->iattr[2], "min", msg, cap));
    if (a < 0) a += x->ndim;
    if (a < 0 || a >= x->ndim)
        return shape_error(msg, cap, "axis %lld out of range for rank %d", (long long)io->node->iattr[0], x->ndim);
    if (x->dim[a] == 0 || x->dim[a] > INT32_MAX)
        return shape_error(msg, cap, "argmax over dim %d of size %lld", (int)a, (long long)x->dim[a]);
    *axis = (int)a;
    return ET_OK;
}
static et_status argmax_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    int axis = 0, nd = 0;
    TRY(argmax_axis(io, &axis, msg, cap));
    const et_tshape *x = io->in[0];
    int64_t dims[ET_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        if (d != axis) dims[nd++] = x->dim[d];
        else if (io->node->iattr[1]) dims[nd++] = 1;
    }
    set_shape(&out[0], ET_I32, nd, dims);
    return ET_OK;
}
static et_status argmax_run(const et_node_io *io, const et_run_env *e) {
    int axis = 0;
    TRY(argmax_axis(io, &axis, NULL, 0));
    const et_tshape *x = io->in[0];
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= x->dim[d];
    for (int d = axis + 1; d < x->ndim; d++) inner *= x->dim[d];
    return et_f32_max_axis(outer, x->dim[axis], inner, (int)io->node->iattr[2], io->in_data[0], NULL,
                           (int32_t *)io->out_data[0], e->nthreads);
}

/* bmm: a[..., M, K] (or [..., K, M] with trans_a), b[..., K, N] (or [..., N, K] with trans_b);
 * the batch dims (all but the last two) broadcast right-aligned. */
typedef struct bmm_dims {
    int nb, ta, tb;
    int64_t M, N, K, yb[ET_MAX_DIMS], ab[ET_MAX_DIMS], bb[ET_MAX_DIMS];
} bmm_dims;

static void batch_dims(const et_tshape *t, int nb, int64_t *out) {
    int tb = t->ndim - 2;
    for (int d = 0; d < nb; d++) out[d] = d < nb - tb ? 1 : t->dim[d - (nb - tb)];
}
static et_status bmm_dims_of(const et_node_io *io, bmm_dims *d, char *msg, size_t cap) {
    char x[128], y[128];
    const et_tshape *a = io->in[0], *b = io->in[1];
    TRY(want(a, ET_F32, -1, "input a", msg, cap));
    TRY(want(b, ET_F32, -1, "input b", msg, cap));
    if (a->ndim < 2 || b->ndim < 2)
        return shape_error(msg, cap, "bmm needs a and b of rank >= 2, got a %s, b %s", et_shape_str(a, x, sizeof x),
                           et_shape_str(b, y, sizeof y));
    TRY(want_flag(io->node->iattr[0], "trans_a", msg, cap));
    TRY(want_flag(io->node->iattr[1], "trans_b", msg, cap));
    d->ta = (int)io->node->iattr[0];
    d->tb = (int)io->node->iattr[1];
    d->nb = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    const int64_t *ad = a->dim + a->ndim - 2, *bd = b->dim + b->ndim - 2;
    d->M = d->ta ? ad[1] : ad[0];
    d->K = d->ta ? ad[0] : ad[1];
    int64_t kb = d->tb ? bd[1] : bd[0];
    d->N = d->tb ? bd[0] : bd[1];
    if (kb != d->K)
        return shape_error(msg, cap, "inner dimensions differ: a %s%s, b %s%s", et_shape_str(a, x, sizeof x),
                           d->ta ? " (transposed)" : "", et_shape_str(b, y, sizeof y), d->tb ? " (transposed)" : "");
    batch_dims(a, d->nb, d->ab);
    batch_dims(b, d->nb, d->bb);
    for (int k = 0; k < d->nb; k++) {
        if (d->ab[k] != d->bb[k] && d->ab[k] != 1 && d->bb[k] != 1)
            return shape_error(msg, cap, "batch dims of a %s and b %s do not broadcast", et_shape_str(a, x, sizeof x),
                               et_shape_str(b, y, sizeof y));
        d->yb[k] = d->ab[k] == 1 ? d->bb[k] : d->ab[k];
    }
    return ET_OK;
}
static et_status bmm_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    bmm_dims d;
    memset(&d, 0, sizeof d);
    TRY(bmm_dims_of(io, &d, msg, cap));
    int64_t dims[ET_MAX_DIMS];
    for (int k = 0; k < d.nb; k++) dims[k] = d.yb[k];
    dims[d.nb] = d.M;
    dims[d.nb + 1] = d.N;
    set_shape(&out[0], ET_F32, d.nb + 2, dims);
    return ET_OK;
}
static size_t bmm_ws(const et_node_io *io, int nthreads) {
    bmm_dims d;
    memset(&d, 0, sizeof d);
    if (bmm_dims_of(io, &d, NULL, 0) != ET_OK) return 0;
    int64_t batches = 1;
    for (int k = 0; k < d.nb; k++) batches *= d.yb[k];
    return et_f32_bmm_ws_bytes(batches, d.M, d.N, d.K, nthreads);
}
static et_status bmm_run(const et_node_io *io, const et_run_env *e) {
    bmm_dims d;
    memset(&d, 0, sizeof d);
    TRY(bmm_dims_of(io, &d, NULL, 0));
    return et_f32_bmm(d.ta, d.tb, d.nb, d.yb, d.ab, d.bb, d.M, d.N, d.K, io->in_data[0], io->in_data[1],
                      io->out_data[0], e->ws, e->ws_bytes, e->nthreads);
}

/* ======================================================================= */
/* Tensor copies: concat, slice, transpose, pad, gather, expand             */
/* ======================================================================= */
/* Axis attribute `a` (negative counts from the end) as 0..ndim-1. */
static et_status want_axis(int64_t a, int ndim, int64_t *axis, char *msg, size_t cap) {
    *axis = a < 0 ? a + ndim : a;
    if (*axis >= 0 && *axis < ndim) return ET_OK;
    return shape_error(msg, cap, "axis %lld out of range for rank %d", (long long)a, ndim);
}

/* x viewed as [outer, dim axis, inner] */
static void axis_view(const et_tshape *x, int64_t axis, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < axis) *outer *= x->dim[d];
        if (d > axis) *inner *= x->dim[d];
    }
}

/* concat: x0, x1?, ... x7?; iattr axis. (The tracer chains nodes for more than 8 inputs.) */
static et_status concat_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char a[128], b[128];
    const et_tshape *first = io->in[0];
    int64_t axis, total = 0;
    TRY(want(first, ET_F32, -1, "input x0", msg, cap));
    TRY(want_axis(io->node->iattr[0], first->ndim, &axis, msg, cap));
    for (int k = 0; k < ET_NODE_MAX_IN; k++) {
        const et_tshape *x = io->in[k];
        if (!x) continue;
        if (x->dtype != ET_F32 || x->ndim != first->ndim)
            return shape_error(msg, cap, "input %d %s must be f32 of rank %d like input 0 %s", k,
                               et_shape_str(x, a, sizeof a), first->ndim, et_shape_str(first, b, sizeof b));
        for (int d = 0; d < x->ndim; d++)
            if (d != axis && x->dim[d] != first->dim[d])
                return shape_error(msg, cap, "input %d %s does not match input 0 %s off axis %lld", k,
                                   et_shape_str(x, a, sizeof a), et_shape_str(first, b, sizeof b), (long long)axis);
        total += x->dim[axis];
    }
    set_like(&out[0], first, ET_F32);
    out[0].dim[axis] = total;
    return ET_OK;
}
static et_status concat_run(const et_node_io *io, const et_run_env *e) {
    const float *x[ET_NODE_MAX_IN];
    int64_t len[ET_NODE_MAX_IN], axis, outer, inner;
    int n = 0;
    TRY(want_axis(io->node->iattr[0], io->in[0]->ndim, &axis, NULL, 0));
    axis_view(io->in[0], axis, &outer, &inner);
    for (int k = 0; k < ET_NODE_MAX_IN; k++) {
        if (!io->in[k]) continue;
        x[n] = io->in_data[k];
        len[n++] = io->in[k]->dim[axis];
    }
    return et_f32_concat(n, x, len, outer, inner, io->out_data[0], e->nthreads);
}

/* slice / slice_bwd: iattr axis, start, stop, step, drop. start and stop as Python slice bounds
 * (negative counts from the end, clamped to [0, dim]); step >= 1; an empty slice is an error;
 * drop = 1 (an integer index, x[i]) removes the axis, which must then keep one element. */
typedef struct slice_view { int64_t axis, start, step, count, outer, inner; } slice_view;

static et_status slice_view_of(const et_node_io *io, const et_tshape *x, slice_view *v, char *msg, size_t cap) {
    const int64_t *at = io->node->iattr;
    TRY(want(x, ET_F32, -1, "input x", msg, cap));
    TRY(want_axis(at[0], x->ndim, &v->axis, msg, cap));
    const int64_t n = x->dim[v->axis];
    int64_t start = at[1], stop = at[2];
    if (at[3] < 1) return shape_error(msg, cap, "slice step must be >= 1, got %lld", (long long)at[3]);
    if (start < 0) start = start < -n ? 0 : start + n;
    if (stop < 0) stop = stop < -n ? 0 : stop + n;
    if (start > n) start = n;
    if (stop > n) stop = n;
    v->start = start;
    v->step = at[3];
    v->count = stop > start ? (stop - start - 1) / v->step + 1 : 0;
    if (v->count == 0)
        return shape_error(msg, cap, "slice %lld:%lld:%lld of dim %lld (size %lld) selects no elements",
                           (long long)at[1], (long long)at[2], (long long)at[3], (long long)v->axis, (long long)n);
    TRY(want_flag(at[4], "drop", msg, cap));
    if (at[4] && v->count != 1)
        return shape_error(msg, cap, "slice with drop = 1 must select one element of dim %lld, got %lld",
                           (long long)v->axis, (long long)v->count);
    axis_view(x, v->axis, &v->outer, &v->inner);
    return ET_OK;
}
/* The slice's output shape: x with dim axis = count, or without it (drop). */
static void sliced_shape(const et_node_io *io, const et_tshape *x, const slice_view *v, et_tshape *y) {
    set_like(y, x, ET_F32);
    y->dim[v->axis] = v->count;
    if (!io->node->iattr[4]) return;
    for (int d = (int)v->axis; d + 1 < x->ndim; d++) y->dim[d] = x->dim[d + 1];
    y->dim[--y->ndim] = 0;
}
static et_status slice_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    slice_view v = {0};
    TRY(slice_view_of(io, io->in[0], &v, msg, cap));
    sliced_shape(io, io->in[0], &v, &out[0]);
    return ET_OK;
}
static et_status slice_run(const et_node_io *io, const et_run_env *e) {
    slice_view v = {0};
    TRY(slice_view_of(io, io->in[0], &v, NULL, 0));
    return et_f32_slice_fwd(v.outer, io->in[0]->dim[v.axis], v.inner, v.start, v.step, v.count, io->in_data[0],
                            io->out_data[0], e->nthreads);
}
/* slice_bwd: dy, x (shape only) -> dx */
static et_status slice_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char a[128], b[128];
    slice_view v = {0};
    TRY(slice_view_of(io, io->in[1], &v, msg, cap));
    et_tshape sliced;
    sliced_shape(io, io->in[1], &v, &sliced);
    TRY(want(io->in[0], ET_F32, -1, "gradient dy", msg, cap));
    if (!same_dims(io->in[0], &sliced))
        return shape_error(msg, cap, "gradient dy %s must have the slice's shape %s",
                           et_shape_str(io->in[0], a, sizeof a), et_shape_str(&sliced, b, sizeof b));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status slice_bwd_run(const et_node_io *io, const et_run_env *e) {
    slice_view v = {0};
    TRY(slice_view_of(io, io->in[1], &v, NULL, 0));
    return et_f32_slice_bwd(v.outer, io->in[1]->dim[v.axis], v.inner, v.start, v.step, v.count, io->in_data[0],
                            io->out_data[0], e->nthreads);
}

/* transpose: iattr ndim, p0..p5; y dim d = x dim p_d */
static et_status transpose_perm(const et_node_io *io, int *perm, char *msg, size_t cap) {
    const et_tshape *x = io->in[0];
    const int64_t *at = io->node->iattr;
    int seen = 0;
    TRY(want(x, ET_F32, -2, "input x", msg, cap));
    if (at[0] != x->ndim || io->node->n_iattr < 1 + x->ndim)
        return shape_error(msg, cap, "permutation of %lld dims for an input of rank %d", (long long)at[0], x->ndim);
    for (int d = 0; d < x->ndim; d++) {
        int64_t p = at[1 + d];
        if (p < 0 || p >= x->ndim || (seen >> p & 1))
            return shape_error(msg, cap, "dims (%lld,%lld,%lld,%lld,%lld,%lld) are not a permutation of 0..%d",
                               (long long)at[1], (long long)at[2], (long long)at[3], (long long)at[4],
                               (long long)at[5], (long long)at[6], x->ndim - 1);
        seen |= 1 << p;
        perm[d] = (int)p;
    }
    return ET_OK;
}
static et_status transpose_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    int perm[ET_MAX_DIMS];
    TRY(transpose_perm(io, perm, msg, cap));
    set_like(&out[0], io->in[0], ET_F32);
    for (int d = 0; d < io->in[0]->ndim; d++) out[0].dim[d] = io->in[0]->dim[perm[d]];
    return ET_OK;
}
static et_status transpose_run(const et_node_io *io, const et_run_env *e) {
    int perm[ET_MAX_DIMS];
    TRY(transpose_perm(io, perm, NULL, 0));
    return et_f32_transpose(io->in[0]->ndim, io->in[0]->dim, perm, io->in_data[0], io->out_data[0], e->nthreads);
}

/* pad / pad_bwd: iattr mode, then (before, after) for dims 0..5; fattr value (constant mode) */
typedef struct pad_attrs { et_pad_mode mode; int64_t before[ET_MAX_DIMS], after[ET_MAX_DIMS]; } pad_attrs;

static et_status pad_attrs_of(const et_node_io *io, const et_tshape *x, pad_attrs *p, char *msg, size_t cap) {
    static const char *modes[] = {"constant", "reflect", "replicate"};
    const int64_t *at = io->node->iattr;
    TRY(want(x, ET_F32, -1, "input x", msg, cap));
    if (at[0] < 0 || at[0] >= ET_PAD_MODE_COUNT_)
        return shape_error(msg, cap, "pad mode %lld unknown (0..%d)", (long long)at[0], ET_PAD_MODE_COUNT_ - 1);
    if (isnan(io->node->fattr[0])) return shape_error(msg, cap, "pad value is NaN");
    p->mode = (et_pad_mode)at[0];
    for (int d = 0; d < ET_MAX_DIMS; d++) {
        int64_t b = at[1 + 2 * d], a = at[2 + 2 * d];
        if (d >= x->ndim) {
            if (a || b) return shape_error(msg, cap, "padding of dim %d but the input has rank %d", d, x->ndim);
            continue;
        }
        if (a < 0 || b < 0 || a > ET_MAX_DIM || b > ET_MAX_DIM)
            return shape_error(msg, cap, "padding (%lld, %lld) of dim %d must be >= 0", (long long)b, (long long)a, d);
        if (p->mode == ET_PAD_REFLECT && (a || b) && (a >= x->dim[d] || b >= x->dim[d]))
            return shape_error(msg, cap, "reflect padding (%lld, %lld) of dim %d must be < its size %lld",
                               (long long)b, (long long)a, d, (long long)x->dim[d]);
        if (p->mode == ET_PAD_REPLICATE && (a || b) && x->dim[d] == 0)
            return shape_error(msg, cap, "%s padding of the empty dim %d", modes[p->mode], d);
        p->before[d] = b;
        p->after[d] = a;
    }
    return ET_OK;
}
static void padded_shape(const et_tshape *x, const pad_attrs *p, et_tshape *y) {
    set_like(y, x, ET_F32);
    for (int d = 0; d < x->ndim; d++) y->dim[d] = p->before[d] + x->dim[d] + p->after[d];
}
static et_status pad_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    pad_attrs p = {0};
    TRY(pad_attrs_of(io, io->in[0], &p, msg, cap));
    padded_shape(io->in[0], &p, &out[0]);
    return ET_OK;
}
static et_status pad_run(const et_node_io *io, const et_run_env *e) {
    pad_attrs p = {0};
    TRY(pad_attrs_of(io, io->in[0], &p, NULL, 0));
    return et_f32_pad_fwd(io->in[0]->ndim, io->in[0]->dim, p.before, p.after, p.mode, io->node->fattr[0],
                          io->in_data[0], io->out_data[0], e->nthreads);
}
/* pad_bwd: dy, x (shape only) -> dx */
static et_status pad_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char a[128], b[128];
    pad_attrs p = {0};
    et_tshape padded;
    TRY(pad_attrs_of(io, io->in[1], &p, msg, cap));
    padded_shape(io->in[1], &p, &padded);
    TRY(want(io->in[0], ET_F32, -1, "gradient dy", msg, cap));
    if (!same_dims(io->in[0], &padded))
        return shape_error(msg, cap, "gradient dy %s must have the padded shape %s",
                           et_shape_str(io->in[0], a, sizeof a), et_shape_str(&padded, b, sizeof b));
    set_like(&out[0], io->in[1], ET_F32);
    return ET_OK;
}
static et_status pad_bwd_run(const et_node_io *io, const et_run_env *e) {
    pad_attrs p = {0};
    TRY(pad_attrs_of(io, io->in[1], &p, NULL, 0));
    return et_f32_pad_bwd(io->in[1]->ndim, io->in[1]->dim, p.before, p.after, p.mode, io->in_data[0],
                          io->out_data[0], e->nthreads);
}

/* gather: x, index (i32); iattr axis, select. select 0 = torch.gather (index of x's rank, its
 * dims <= x's off the axis; y has index's shape), 1 = torch.index_select (1-D index [L]; y is
 * x with dim axis = L). gather_bwd: dy, index, x (shape only) -> dx (scatter-add). */
static et_status gather_shape(const et_node_io *io, const et_tshape *x, const et_tshape *idx, int64_t *axis,
                              et_tshape *y, char *msg, size_t cap) {
    char a[128], b[128];
    TRY(want(x, ET_F32, -1, "input x", msg, cap));
    TRY(want_axis(io->node->iattr[0], x->ndim, axis, msg, cap));
    TRY(want_flag(io->node->iattr[1], "select", msg, cap));
    set_like(y, x, ET_F32);
    if (io->node->iattr[1]) {
        TRY(want(idx, ET_I32, 1, "index", msg, cap));
        y->dim[*axis] = idx->dim[0];
        return ET_OK;
    }
    TRY(want(idx, ET_I32, x->ndim, "index", msg, cap));
    for (int d = 0; d < x->ndim; d++)
        if (d != *axis && idx->dim[d] > x->dim[d])
            return shape_error(msg, cap, "index %s is larger than the input %s in dim %d (off axis %lld)",
                               et_shape_str(idx, a, sizeof a), et_shape_str(x, b, sizeof b), d, (long long)*axis);
    set_like(y, idx, ET_F32);
    return ET_OK;
}
static et_status gather_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    int64_t axis;
    return gather_shape(io, io->in[0], io->in[1], &axis, &out[0], msg, cap);
}
static et_status gather_run(const et_node_io *io, const et_run_env *e) {
    int64_t axis;
    et_tshape y;
    TRY(gather_shape(io, io->in[0], io->in[1], &axis, &y, NULL, 0));
    return et_f32_gather_fwd(io->in[0]->ndim, io->in[0]->dim, io->in[1]->dim, (int)axis, (int)io->node->iattr[1],
                             io->in_data[0], io->in_data[1], io->out_data[0], e->nthreads);
}
static et_status gather_bwd_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char a[128], b[128];
    int64_t axis;
    et_tshape y;
    TRY(gather_shape(io, io->in[2], io->in[1], &axis, &y, msg, cap));
    TRY(want(io->in[0], ET_F32, -1, "gradient dy", msg, cap));
    if (!same_dims(io->in[0], &y))
        return shape_error(msg, cap, "gradient dy %s must have the gathered shape %s",
                           et_shape_str(io->in[0], a, sizeof a), et_shape_str(&y, b, sizeof b));
    set_like(&out[0], io->in[2], ET_F32);
    return ET_OK;
}
static et_status gather_bwd_run(const et_node_io *io, const et_run_env *e) {
    int64_t axis;
    et_tshape y;
    TRY(gather_shape(io, io->in[2], io->in[1], &axis, &y, NULL, 0));
    return et_f32_gather_bwd(io->in[2]->ndim, io->in[2]->dim, io->in[1]->dim, (int)axis, (int)io->node->iattr[1],
                             io->in_data[0], io->in_data[1], io->out_data[0], e->nthreads);
}

/* expand: x, like? (shape only); iattr ndim, d0..d5; x broadcast (right-aligned) to the dims,
 * -1 = keep x's dim, -2 - k = dim k of `like` (a size read from another tensor's shape). */
static et_status expand_infer(const et_node_io *io, et_tshape *out, char *msg, size_t cap) {
    char b[128];
    const et_tshape *x = io->in[0], *like = io->in[1];
    const int64_t *at = io->node->iattr;
    int64_t dims[ET_MAX_DIMS];
    TRY(want(x, ET_F32, -2, "input x", msg, cap));
    if (at[0] < x->ndim || at[0] > ET_MAX_DIMS || io->node->n_iattr < 1 + at[0])
        return shape_error(msg, cap, "cannot expand %s to %lld dims", et_shape_str(x, b, sizeof b), (long long)at[0]);
    const int nd = (int)at[0], lead = nd - x->ndim;
    for (int d = 0; d < nd; d++) {
        int64_t v = at[1 + d], have = d < lead ? -1 : x->dim[d - lead];
        if (v == -1 && have >= 0) v = have;
        if (v <= -2) {
            if (!like || -2 - v >= like->ndim)
                return shape_error(msg, cap, "size %lld of dim %d reads dim %lld of the `like` input, which is %s",
                                   (long long)v, d, (long long)(-2 - v), like ? "of lower rank" : "absent");
            v = like->dim[-2 - v];
        }
        if (v < 0 || v > ET_MAX_DIM || (have >= 0 && have != 1 && have != v))
            return shape_error(msg, cap, "cannot expand %s: size %lld in dim %d (new leading dims need a size, "
                               "existing ones must be 1 or kept)", et_shape_str(x, b, sizeof b),
                               (long long)at[1 + d], d);
        dims[d] = v;
    }
    set_shape(&out[0], ET_F32, nd, dims);
    return ET_OK;
}
static et_status expand_run(const et_node_io *io, const et_run_env *e) {
    int64_t xs[ET_MAX_DIMS], ys[ET_MAX_DIMS];
    int nd = pad_dims(io->out[0], io->out[0]->ndim, ys);
    pad_dims(io->in[0], nd, xs);
    return et_f32_broadcast_to(nd, xs, io->in_data[0], ys, io->out_data[0], 1.0f, e->nthreads);
}

/* ======================================================================= */
/* The table                                                                */
/* ======================================================================= */
/* One row per op, fields named (et_op_desc in runtime_internal.h); omitted
 * counts are 0, an omitted ws_bytes means the op needs no workspace. */
static const et_op_desc op_table[] = {
    [ET_OP_CONV2D] = {.name = "conv2d", .min_in = 2, .max_in = 7, .min_out = 1, .max_out = 1,
        .min_iattr = 10, .max_iattr = 10, .min_fattr = 1, .max_fattr = 2, .infer = conv2d_infer,
        .ws_bytes = conv2d_ws, .run = conv2d_run, .cache_bytes = conv2d_cache_bytes,
        .cache_fill = conv2d_cache_fill, .cache_in_mask = conv2d_cache_in},
    [ET_OP_CONV2D_BWD_INPUT] = {.name = "conv2d_bwd_input", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 9, .max_iattr = 10, .min_fattr = 0, .max_fattr = 1, .infer = conv2d_bwd_input_infer,
        .ws_bytes = conv2d_bwd_input_ws, .run = conv2d_bwd_input_run},
    [ET_OP_CONV2D_BWD_WEIGHT] = {.name = "conv2d_bwd_weight", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 9, .max_iattr = 10, .min_fattr = 0, .max_fattr = 1, .infer = conv2d_bwd_weight_infer,
        .ws_bytes = conv2d_bwd_weight_ws, .run = conv2d_bwd_weight_run},
    [ET_OP_CONV2D_BWD_BIAS] = {.name = "conv2d_bwd_bias", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .infer = conv2d_bwd_bias_infer, .run = conv2d_bwd_bias_run},
    [ET_OP_MATMUL] = {.name = "matmul", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = matmul_infer, .ws_bytes = matmul_ws, .run = matmul_run},
    [ET_OP_ADD] = {.name = "add", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = binary_infer,
        .run = add_run},
    [ET_OP_SUB] = {.name = "sub", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = binary_infer,
        .run = sub_run},
    [ET_OP_MUL] = {.name = "mul", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = binary_infer,
        .run = mul_run},
    [ET_OP_DIV] = {.name = "div", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = binary_infer,
        .run = div_run},
    [ET_OP_REDUCE_SUM_TO] = {.name = "reduce_sum_to", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_fattr = 1, .max_fattr = 1, .infer = reduce_sum_to_infer, .run = reduce_sum_to_run},
    [ET_OP_REDUCE] = {.name = "reduce", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 3, .max_iattr = 3, .infer = reduce_infer, .run = reduce_run},
    [ET_OP_BROADCAST_TO] = {.name = "broadcast_to", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_fattr = 1, .max_fattr = 1, .infer = broadcast_to_infer, .run = broadcast_to_run},
    [ET_OP_RESHAPE] = {.name = "reshape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 7, .infer = reshape_infer, .run = reshape_run},
    [ET_OP_ACT] = {.name = "act", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .min_fattr = 1, .max_fattr = 1, .infer = act_infer, .run = act_run},
    [ET_OP_ACT_BWD] = {.name = "act_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .min_fattr = 1, .max_fattr = 1, .infer = act_bwd_infer, .run = act_bwd_run},
    [ET_OP_MAXPOOL2D] = {.name = "maxpool2d", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 9, .max_iattr = 9, .infer = maxpool2d_infer, .run = maxpool2d_run},
    [ET_OP_MAXPOOL2D_BWD] = {.name = "maxpool2d_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 9, .max_iattr = 10, .infer = maxpool2d_bwd_infer, .run = maxpool2d_bwd_run},
    [ET_OP_AVGPOOL2D] = {.name = "avgpool2d", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 8, .max_iattr = 8, .infer = avgpool2d_infer, .run = avgpool2d_run},
    [ET_OP_AVGPOOL2D_BWD] = {.name = "avgpool2d_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 8, .max_iattr = 8, .infer = avgpool2d_bwd_infer, .run = avgpool2d_bwd_run},
    [ET_OP_GLOBAL_AVGPOOL] = {.name = "global_avgpool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .infer = global_avgpool_infer, .run = global_avgpool_run},
    [ET_OP_GLOBAL_AVGPOOL_BWD] = {.name = "global_avgpool_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .infer = global_avgpool_bwd_infer, .run = global_avgpool_bwd_run},
    [ET_OP_BATCHNORM_TRAIN] = {.name = "batchnorm_train", .min_in = 3, .max_in = 5, .min_out = 3, .max_out = 3,
        .min_iattr = 0, .max_iattr = 2, .min_fattr = 2, .max_fattr = 3, .mut_in_mask = (1u << 3) | (1u << 4),
        .infer = batchnorm_train_infer,
        .run = batchnorm_train_run},
    [ET_OP_BATCHNORM_INFER] = {.name = "batchnorm_infer", .min_in = 5, .max_in = 5, .min_out = 1, .max_out = 1,
        .min_fattr = 1, .max_fattr = 1, .infer = batchnorm_infer_infer, .run = batchnorm_infer_run},
    [ET_OP_BATCHNORM_BWD] = {.name = "batchnorm_bwd", .min_in = 5, .max_in = 6, .min_out = 1, .max_out = 3,
        .min_iattr = 0, .max_iattr = 2, .min_fattr = 0, .max_fattr = 1, .infer = batchnorm_bwd_infer,
        .run = batchnorm_bwd_run},
    [ET_OP_DROPOUT] = {.name = "dropout", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .min_fattr = 1, .max_fattr = 1, .infer = dropout_infer, .run = dropout_run},
    [ET_OP_DROPOUT_BWD] = {.name = "dropout_bwd", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .min_fattr = 1, .max_fattr = 1, .infer = dropout_infer,
        .run = dropout_bwd_run},
    [ET_OP_SOFTMAX] = {.name = "softmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = softmax_infer, .run = softmax_run},
    [ET_OP_SOFTMAX_BWD] = {.name = "softmax_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = softmax_bwd_infer, .run = softmax_bwd_run},
    [ET_OP_SOFTMAX_XENT] = {.name = "softmax_xent", .min_in = 2, .max_in = 2, .min_out = 2, .max_out = 2,
        .infer = softmax_xent_infer, .run = softmax_xent_run},
    [ET_OP_SOFTMAX_XENT_BWD] = {.name = "softmax_xent_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .infer = softmax_xent_bwd_infer, .run = softmax_xent_bwd_run},
    [ET_OP_SOFTMAX_XENT_PROB] = {.name = "softmax_xent_prob", .min_in = 2, .max_in = 2, .min_out = 2, .max_out = 2,
        .infer = softmax_xent_prob_infer, .run = softmax_xent_prob_run},
    [ET_OP_SOFTMAX_XENT_PROB_BWD] = {.name = "softmax_xent_prob_bwd", .min_in = 3, .max_in = 3,
        .min_out = 1, .max_out = 1, .infer = softmax_xent_prob_bwd_infer, .run = softmax_xent_prob_bwd_run},
    [ET_OP_MSE] = {.name = "mse", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = pair_loss_infer,
        .run = mse_run},
    [ET_OP_MSE_BWD] = {.name = "mse_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .infer = pair_loss_bwd_infer, .run = mse_bwd_run},
    [ET_OP_L1] = {.name = "l1", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = pair_loss_infer,
        .run = l1_run},
    [ET_OP_L1_BWD] = {.name = "l1_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .infer = pair_loss_bwd_infer, .run = l1_bwd_run},
    [ET_OP_HINGE] = {.name = "hinge", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_fattr = 1, .max_fattr = 1, .infer = hinge_infer, .run = hinge_run},
    [ET_OP_HINGE_BWD] = {.name = "hinge_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_fattr = 1, .max_fattr = 1, .infer = hinge_bwd_infer, .run = hinge_bwd_run},
    [ET_OP_KLDIV] = {.name = "kldiv", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = kldiv_infer,
        .run = kldiv_run},
    [ET_OP_KLDIV_BWD] = {.name = "kldiv_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .infer = kldiv_bwd_infer, .run = kldiv_bwd_run},
    [ET_OP_SGD_UPDATE] = {.name = "sgd_update", .min_in = 2, .max_in = 4, .min_iattr = 2, .max_iattr = 2,
        .min_fattr = 4, .max_fattr = 5, .mut_in_mask = (1u << 0) | (1u << 2), .infer = sgd_update_infer,
        .run = sgd_update_run},
    [ET_OP_ADAM_UPDATE] = {.name = "adam_update", .min_in = 4, .max_in = 5, .min_iattr = 1, .max_iattr = 1,
        .min_fattr = 5, .max_fattr = 6, .mut_in_mask = (1u << 0) | (1u << 2) | (1u << 3), .infer = adam_update_infer,
        .run = adam_update_run},
    [ET_OP_AFFINE] = {.name = "affine", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_fattr = 2, .max_fattr = 2, .infer = affine_infer, .run = affine_run},
    [ET_OP_UNARY] = {.name = "unary", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .min_fattr = 2, .max_fattr = 2, .infer = unary_infer, .run = unary_run},
    [ET_OP_EMBEDDING] = {.name = "embedding", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .infer = embedding_infer, .run = embedding_run},
    [ET_OP_EMBEDDING_BWD] = {.name = "embedding_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .infer = embedding_bwd_infer, .run = embedding_bwd_run},
    [ET_OP_BCE] = {.name = "bce", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = bce_infer,
        .run = bce_run},
    [ET_OP_BCE_BWD] = {.name = "bce_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .infer = bce_bwd_infer, .run = bce_bwd_run},
    [ET_OP_BCE_LOGITS] = {.name = "bce_logits", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
        .infer = bce_infer, .run = bce_logits_run},
    [ET_OP_BCE_LOGITS_BWD] = {.name = "bce_logits_bwd", .min_in = 3, .max_in = 4, .min_out = 1, .max_out = 1,
        .infer = bce_bwd_infer, .run = bce_logits_bwd_run},
    [ET_OP_HUBER] = {.name = "huber", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_fattr = 2, .max_fattr = 2, .infer = huber_infer, .run = huber_run},
    [ET_OP_HUBER_BWD] = {.name = "huber_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_fattr = 2, .max_fattr = 2, .infer = huber_bwd_infer, .run = huber_bwd_run},
    [ET_OP_NLL] = {.name = "nll", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .min_iattr = 2,
        .max_iattr = 2, .min_fattr = 1, .max_fattr = 1, .infer = nll_infer, .run = nll_run},
    [ET_OP_NLL_BWD] = {.name = "nll_bwd", .min_in = 3, .max_in = 4, .min_out = 1, .max_out = 1, .min_iattr = 2,
        .max_iattr = 2, .min_fattr = 1, .max_fattr = 1, .infer = nll_bwd_infer, .run = nll_bwd_run},
    [ET_OP_RMSPROP_UPDATE] = {.name = "rmsprop_update", .min_in = 3, .max_in = 6, .min_iattr = 1, .max_iattr = 1,
        .min_fattr = 5, .max_fattr = 6, .mut_in_mask = (1u << 0) | (1u << 2) | (1u << 3) | (1u << 4),
        .infer = rmsprop_update_infer, .run = rmsprop_update_run},
    [ET_OP_ADAGRAD_UPDATE] = {.name = "adagrad_update", .min_in = 3, .max_in = 4, .min_fattr = 4, .max_fattr = 5,
        .mut_in_mask = (1u << 0) | (1u << 2), .infer = adagrad_update_infer, .run = adagrad_update_run},
    [ET_OP_GRAD_NORM] = {.name = "grad_norm", .min_in = 1, .max_in = 8, .min_out = 1, .max_out = 2,
        .min_fattr = 0, .max_fattr = 1, .infer = grad_norm_infer, .run = grad_norm_run},
    [ET_OP_GRAD_ACCUMULATE] = {.name = "grad_accumulate", .min_in = 3, .max_in = 3, .min_fattr = 1, .max_fattr = 1,
        .mut_in_mask = (1u << 0), .infer = grad_accumulate_infer, .run = grad_accumulate_run},
    [ET_OP_ACCUM_STEP] = {.name = "accum_step", .min_in = 1, .max_in = 1, .min_iattr = 1, .max_iattr = 1,
        .mut_in_mask = (1u << 0), .infer = accum_step_infer, .run = accum_step_run},
    [ET_OP_CONV_TRANSPOSE2D] = {.name = "conv_transpose2d", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 9, .max_iattr = 9, .infer = conv_transpose2d_infer, .ws_bytes = conv_transpose2d_ws,
        .run = conv_transpose2d_run},
    [ET_OP_INTERPOLATE] = {.name = "interpolate", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 4, .max_iattr = 4, .min_fattr = 2, .max_fattr = 2, .infer = interpolate_infer,
        .run = interpolate_run},
    [ET_OP_INTERPOLATE_BWD] = {.name = "interpolate_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 4, .max_iattr = 4, .min_fattr = 2, .max_fattr = 2, .infer = interpolate_bwd_infer,
        .run = interpolate_bwd_run},
    [ET_OP_ADAPTIVE_AVGPOOL2D] = {.name = "adaptive_avgpool2d", .min_in = 1, .max_in = 1, .min_out = 1,
        .max_out = 1, .min_iattr = 2, .max_iattr = 2, .infer = adaptive_pool2d_infer,
        .run = adaptive_avgpool2d_run},
    [ET_OP_ADAPTIVE_AVGPOOL2D_BWD] = {.name = "adaptive_avgpool2d_bwd", .min_in = 2, .max_in = 2, .min_out = 1,
        .max_out = 1, .min_iattr = 2, .max_iattr = 2, .infer = adaptive_pool2d_bwd_infer,
        .run = adaptive_avgpool2d_bwd_run},
    [ET_OP_ADAPTIVE_MAXPOOL2D] = {.name = "adaptive_maxpool2d", .min_in = 1, .max_in = 1, .min_out = 1,
        .max_out = 1, .min_iattr = 2, .max_iattr = 2, .infer = adaptive_pool2d_infer,
        .run = adaptive_maxpool2d_run},
    [ET_OP_ADAPTIVE_MAXPOOL2D_BWD] = {.name = "adaptive_maxpool2d_bwd", .min_in = 2, .max_in = 2, .min_out = 1,
        .max_out = 1, .min_iattr = 2, .max_iattr = 2, .infer = adaptive_pool2d_bwd_infer,
        .run = adaptive_maxpool2d_bwd_run},
    [ET_OP_FAKE_QUANT] = {.name = "fake_quant", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 3, .max_iattr = 3, .infer = fake_quant_infer, .run = fake_quant_run},
    [ET_OP_FAKE_QUANT_BWD] = {.name = "fake_quant_bwd", .min_in = 4, .max_in = 4, .min_out = 1, .max_out = 1,
        .min_iattr = 3, .max_iattr = 3, .infer = fake_quant_bwd_infer, .run = fake_quant_bwd_run},
    [ET_OP_QUANT_OBSERVE] = {.name = "quant_observe", .min_in = 5, .max_in = 5, .min_iattr = 6, .max_iattr = 6,
        .min_fattr = 1, .max_fattr = 1, .mut_in_mask = (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4),
        .infer = quant_observe_infer, .run = quant_observe_run},
    [ET_OP_NORMALIZE] = {.name = "normalize", .min_in = 1, .max_in = 1, .min_out = 2, .max_out = 2,
        .min_iattr = 1, .max_iattr = 1, .min_fattr = 1, .max_fattr = 1, .infer = normalize_infer,
        .run = normalize_run},
    [ET_OP_NORMALIZE_BWD] = {.name = "normalize_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .infer = normalize_bwd_infer, .run = normalize_bwd_run},
    [ET_OP_MAXIMUM] = {.name = "maximum", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .infer = binary_infer, .run = maximum_run},
    [ET_OP_MINIMUM] = {.name = "minimum", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .infer = binary_infer, .run = minimum_run},
    [ET_OP_TIE_WEIGHT] = {.name = "tie_weight", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .infer = binary_infer, .run = tie_weight_run},
    [ET_OP_REDUCE_MAX] = {.name = "reduce_max", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 3, .max_iattr = 3, .infer = reduce_max_infer, .run = reduce_max_run},
    [ET_OP_ARGMAX] = {.name = "argmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 3, .max_iattr = 3, .infer = argmax_infer, .run = argmax_run},
    [ET_OP_BMM] = {.name = "bmm", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = bmm_infer, .ws_bytes = bmm_ws, .run = bmm_run},
    [ET_OP_CONCAT] = {.name = "concat", .min_in = 1, .max_in = 8, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 1, .infer = concat_infer, .run = concat_run},
    [ET_OP_SLICE] = {.name = "slice", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 5, .max_iattr = 5, .infer = slice_infer, .run = slice_run},
    [ET_OP_SLICE_BWD] = {.name = "slice_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 5, .max_iattr = 5, .infer = slice_bwd_infer, .run = slice_bwd_run},
    [ET_OP_TRANSPOSE] = {.name = "transpose", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 7, .infer = transpose_infer, .run = transpose_run},
    [ET_OP_PAD] = {.name = "pad", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 13, .max_iattr = 13, .min_fattr = 1, .max_fattr = 1, .infer = pad_infer, .run = pad_run},
    [ET_OP_PAD_BWD] = {.name = "pad_bwd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 13, .max_iattr = 13, .min_fattr = 1, .max_fattr = 1, .infer = pad_bwd_infer,
        .run = pad_bwd_run},
    [ET_OP_GATHER] = {.name = "gather", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = gather_infer, .run = gather_run},
    [ET_OP_GATHER_BWD] = {.name = "gather_bwd", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = gather_bwd_infer, .run = gather_bwd_run},
    [ET_OP_EXPAND] = {.name = "expand", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 1, .max_iattr = 7, .infer = expand_infer, .run = expand_run},
    [ET_OP_QUANTIZE] = {.name = "quantize", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = quantize_infer, .run = quantize_run},
    [ET_OP_DEQUANTIZE] = {.name = "dequantize", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .infer = dequantize_infer, .run = dequantize_run},
    [ET_OP_QPREP] = {.name = "qprep", .min_in = 2, .max_in = 5, .min_out = 1, .max_out = 3,
        .min_iattr = 2, .max_iattr = 2, .infer = qprep_infer, .run = qprep_run},
    [ET_OP_QCONV2D] = {.name = "qconv2d", .min_in = 2, .max_in = 7, .min_out = 1, .max_out = 1,
        .min_iattr = 11, .max_iattr = 11, .min_fattr = 0, .max_fattr = 2, .infer = qconv2d_infer, .ws_bytes = qconv2d_ws, .run = qconv2d_run},
    [ET_OP_QLINEAR] = {.name = "qlinear", .min_in = 2, .max_in = 7, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .min_fattr = 0, .max_fattr = 2, .infer = qlinear_infer,
        .ws_bytes = qlinear_ws, .run = qlinear_run},
    [ET_OP_QMAXPOOL2D] = {.name = "qmaxpool2d", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
        .min_iattr = 9, .max_iattr = 9, .infer = qmaxpool2d_infer, .run = qmaxpool2d_run},
    [ET_OP_QRELU] = {.name = "qrelu", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .infer = qrelu_infer, .run = qrelu_run},
    [ET_OP_QADD] = {.name = "qadd", .min_in = 8, .max_in = 8, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = qadd_infer, .run = qadd_run},
    [ET_OP_QCLAMP] = {.name = "qclamp", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .min_fattr = 2, .max_fattr = 2, .infer = qclamp_infer, .run = qclamp_run},
    [ET_OP_QGLOBAL_AVGPOOL] = {.name = "qglobal_avgpool", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
        .min_iattr = 2, .max_iattr = 2, .infer = qglobal_avgpool_infer, .run = qglobal_avgpool_run},
};

/* C99 static assert: one table entry per enum value (a new op without an entry
 * makes the array shorter than ET_OP_COUNT and this a negative-size array). */
typedef char et_op_table_covers_every_op[(sizeof op_table / sizeof op_table[0] == ET_OP_COUNT) ? 1 : -1];

const et_op_desc *et_op_desc_get(int op) {
    if (op < 0 || op >= ET_OP_COUNT || !op_table[op].name) return NULL;
    return &op_table[op];
}

const char *et_op_name(int op) {
    const et_op_desc *d = et_op_desc_get(op);
    return d ? d->name : NULL;
}

static int counts_fit(const et_op_desc *d, int n_in, int n_iattr, int n_fattr) {
    return n_in >= d->min_in && n_in <= d->max_in && n_iattr >= d->min_iattr && n_iattr <= d->max_iattr &&
           n_fattr >= d->min_fattr && n_fattr <= d->max_fattr;
}

et_status et_op_infer(int op, int n_in, const int *in_dtype, const int *in_ndim, const int64_t *in_dims,
                      int n_iattr, const int64_t *iattr, int n_fattr, const float *fattr,
                      int *n_out, int *out_dtype, int *out_ndim, int64_t *out_dims, char *msg, size_t cap) {
    const et_op_desc *d = et_op_desc_get(op);
    if (!d) {
        et_msgf(msg, cap, "unknown op %d", op);
        return ET_ERR_ARG;
    }
    if (!counts_fit(d, n_in, n_iattr, n_fattr) || (n_in && (!in_dtype || !in_ndim || !in_dims)) ||
        (n_iattr && !iattr) || (n_fattr && !fattr) || !n_out || !out_dtype || !out_ndim || !out_dims) {
        et_msgf(msg, cap, "op '%s': %d inputs, %d integer and %d float attributes do not fit %d..%d, %d..%d, %d..%d",
                d->name, n_in, n_iattr, n_fattr, d->min_in, d->max_in, d->min_iattr, d->max_iattr, d->min_fattr,
                d->max_fattr);
        return ET_ERR_ARG;
    }
    et_node_def nd;
    et_tshape in[ET_NODE_MAX_IN], out[ET_NODE_MAX_OUT];
    memset(&nd, 0, sizeof nd);
    memset(out, 0, sizeof out);
    nd.op = op;
    nd.n_in = n_in;
    nd.n_out = d->max_out;
    nd.n_iattr = n_iattr;
    nd.n_fattr = n_fattr;
    nd.layer = "";
    for (int k = 0; k < n_iattr; k++) nd.iattr[k] = iattr[k];
    for (int k = 0; k < n_fattr; k++) nd.fattr[k] = fattr[k];
    et_node_io io;
    memset(&io, 0, sizeof io);
    io.node = &nd;
    for (int k = 0; k < ET_NODE_MAX_IN; k++) nd.in[k] = -1;
    for (int k = 0; k < ET_NODE_MAX_OUT; k++) nd.out[k] = k < d->max_out ? k : -1;
    for (int k = 0; k < n_in; k++) {
        if (in_dtype[k] < 0) {
            if (k < d->min_in) return shape_error(msg, cap, "input %d is required", k);
            continue;
        }
        in[k].dtype = (et_dtype)in_dtype[k];
        in[k].ndim = in_ndim[k];
        for (int j = 0; j < ET_MAX_DIMS; j++) in[k].dim[j] = j < in_ndim[k] ? in_dims[k * ET_MAX_DIMS + j] : 0;
        if (!et_shape_is_sane(&in[k])) return shape_error(msg, cap, "input %d: invalid shape", k);
        nd.in[k] = k;
        io.in[k] = &in[k];
    }
    for (int k = 0; k < d->max_out; k++) io.out[k] = &out[k];
    if (msg && cap) msg[0] = '\0';
    et_status st = d->infer(&io, out, msg, cap);
    if (st != ET_OK) return st;
    *n_out = d->max_out;
    for (int k = 0; k < d->max_out; k++) {
        if (!et_shape_is_sane(&out[k])) return shape_error(msg, cap, "output %d would have more than 2^40 bytes", k);
        out_dtype[k] = (int)out[k].dtype;
        out_ndim[k] = out[k].ndim;
        for (int j = 0; j < ET_MAX_DIMS; j++) out_dims[k * ET_MAX_DIMS + j] = out[k].dim[j];
    }
    return ET_OK;
}
