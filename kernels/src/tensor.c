/* edgetrain — tensor copies: concat, strided slice (and its backward), transpose, pad
 * (constant / reflect / replicate, and its backward) and gather / index_select (and their
 * scatter-add backward).
 *
 * These are memory-bound copies, so each has only a scalar __ref body; the entry points of
 * et_kernels.h call it. Loops over independent rows run on the thread pool
 * (run_rows: et_parallel_ranges); every output element is written by exactly one thread, and every sum
 * (the pad and gather backwards) runs over its terms in one fixed order, so the results are
 * bitwise identical for any thread count. Shapes arrive validated by the op's shape rule
 * (kernels/runtime/ops.c); the kernels still refuse negative sizes and null pointers.
 */
#include <string.h>

#include "tensor_internal.h"

static int bad_sizes(int ndim, const int64_t *s) {
    if (ndim < 0 || ndim > ET_MAX_DIMS || (ndim > 0 && !s)) return 1;
    for (int d = 0; d < ndim; d++)
        if (s[d] < 0) return 1;
    return 0;
}

static int64_t prod(const int64_t *s, int from, int to) {
    int64_t n = 1;
    for (int d = from; d < to; d++) n *= s[d];
    return n;
}

/* Row-major element strides of a shape. */
static void strides_of(int ndim, const int64_t *s, int64_t *st) {
    int64_t n = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        st[d] = n;
        n *= s[d];
    }
}

/* Rows [0, n) of a loop of independent rows, on the thread pool (docs/threads.md). */
static void run_rows(int64_t n, et_range_body fn, void *ctx, int nthreads) {
    et_parallel_ranges(n, et_split_chunks(n, nthreads), nthreads, fn, ctx);
}

/* ---- concat ---------------------------------------------------------------------------- */
typedef struct concat_job {
    int n;
    const float *const *x;
    const int64_t *len;
    int64_t inner, total;
    float *y;
} concat_job;

static void concat_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const concat_job *j = (const concat_job *)ctx;
    (void)tid;
    for (int64_t o = beg; o < end; o++) {
        float *dst = j->y + o * j->total * j->inner;
        for (int k = 0; k < j->n; k++) {
            size_t row = (size_t)(j->len[k] * j->inner);
            if (row) memcpy(dst, j->x[k] + o * (int64_t)row, row * sizeof(float));
            dst += row;
        }
    }
}

et_status et_f32_concat__ref(int n, const float *const *x, const int64_t *len, int64_t outer,
                             int64_t inner, float *y, int nthreads) {
    if (n < 1 || !x || !len || !y || outer < 0 || inner < 0) return ET_ERR_ARG;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (len[k] < 0 || (!x[k] && len[k] > 0)) return ET_ERR_ARG;
        total += len[k];
    }
    concat_job j = {n, x, len, inner, total, y};
    run_rows(outer, concat_rows, &j, nthreads);
    return ET_OK;
}

/* ---- slice ----------------------------------------------------------------------------- */
static et_status slice_args(int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t step,
                            int64_t count, const void *a, const void *b) {
    if (!a || !b || outer < 0 || dim < 0 || inner < 0 || count < 0 || step < 1 || start < 0) return ET_ERR_ARG;
    if (count > 0 && start + (count - 1) * step >= dim) return ET_ERR_ARG;
    return ET_OK;
}

typedef struct slice_job {
    int64_t dim, inner, start, step, count;
    const float *src;
    float *dst;
} slice_job;

static void slice_fwd_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const slice_job *k = (const slice_job *)ctx;
    (void)tid;
    for (int64_t r = beg; r < end; r++) {
        int64_t o = r / k->count, j = r % k->count;
        memcpy(k->dst + r * k->inner, k->src + (o * k->dim + k->start + j * k->step) * k->inner,
               (size_t)k->inner * sizeof(float));
    }
}

static void slice_bwd_slabs(void *ctx, int64_t beg, int64_t end, int tid) {
    const slice_job *k = (const slice_job *)ctx;
    const int64_t inner = k->inner;
    (void)tid;
    for (int64_t o = beg; o < end; o++) {
        float *slab = k->dst + o * k->dim * inner;
        memset(slab, 0, (size_t)(k->dim * inner) * sizeof(float));
        for (int64_t j = 0; j < k->count; j++)
            memcpy(slab + (k->start + j * k->step) * inner, k->src + (o * k->count + j) * inner,
                   (size_t)inner * sizeof(float));
    }
}

/* Forward: rows (o, j) of y copied from x; backward: slabs o of dx zeroed and filled from dy. */
static et_status run_slice(int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t step,
                           int64_t count, const float *src, float *dst, int bwd, int nthreads) {
    et_status st = slice_args(outer, dim, inner, start, step, count, src, dst);
    if (st != ET_OK) return st;
    slice_job k = {dim, inner, start, step, count, src, dst};
    if (bwd) run_rows(outer, slice_bwd_slabs, &k, nthreads);
    else run_rows(outer * count, slice_fwd_rows, &k, nthreads);
    return ET_OK;
}

et_status et_f32_slice_fwd__ref(int64_t outer, int64_t dim, int64_t inner, int64_t start,
                                int64_t step, int64_t count, const float *x, float *y,
                                int nthreads) {
    return run_slice(outer, dim, inner, start, step, count, x, y, 0, nthreads);
}

et_status et_f32_slice_bwd__ref(int64_t outer, int64_t dim, int64_t inner, int64_t start,
                                int64_t step, int64_t count, const float *dy, float *dx,
                                int nthreads) {
    return run_slice(outer, dim, inner, start, step, count, dy, dx, 1, nthreads);
}

/* ---- transpose ------------------------------------------------------------------------- */
typedef struct transpose_job {
    int ndim;
    const int64_t *ys, *sx;
    int64_t last, step;
    const float *x;
    float *y;
} transpose_job;

static void transpose_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const transpose_job *k = (const transpose_job *)ctx;
    (void)tid;
    for (int64_t r = beg; r < end; r++) {
        int64_t off = 0, rest = r;
        for (int d = k->ndim - 2; d >= 0; d--) {
            off += (rest % k->ys[d]) * k->sx[d];
            rest /= k->ys[d];
        }
        float *dst = k->y + r * k->last;
        for (int64_t j = 0; j < k->last; j++) dst[j] = k->x[off + j * k->step];
    }
}

et_status et_f32_transpose__ref(int ndim, const int64_t *x_shape, const int *perm,
                                const float *x, float *y, int nthreads) {
    if (bad_sizes(ndim, x_shape) || (ndim > 0 && !perm) || !x || !y) return ET_ERR_ARG;
    int seen = 0;
    for (int d = 0; d < ndim; d++) {
        if (perm[d] < 0 || perm[d] >= ndim || (seen >> perm[d] & 1)) return ET_ERR_ARG;
        seen |= 1 << perm[d];
    }
    if (ndim == 0) {
        y[0] = x[0];
        return ET_OK;
    }
    int64_t xst[ET_MAX_DIMS], ys[ET_MAX_DIMS], sx[ET_MAX_DIMS];
    strides_of(ndim, x_shape, xst);
    for (int d = 0; d < ndim; d++) {
        ys[d] = x_shape[perm[d]];
        sx[d] = xst[perm[d]]; /* x stride of y's dim d */
    }
    const int64_t last = ys[ndim - 1], step = sx[ndim - 1], rows = prod(ys, 0, ndim - 1);
    transpose_job k = {ndim, ys, sx, last, step, x, y};
    run_rows(rows, transpose_rows, &k, nthreads);
    return ET_OK;
}

/* ---- pad ------------------------------------------------------------------------------- */
/* The x index that padded position j copies from (-1: the constant value). Reflect needs
 * before, after < n, so one reflection suffices. */
static int64_t pad_src(et_pad_mode m, int64_t j, int64_t before, int64_t n) {
    int64_t i = j - before;
    if (i >= 0 && i < n) return i;
    if (m == ET_PAD_CONSTANT) return -1;
    if (m == ET_PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

/* The padded positions that copy from x index i, as up to 3 ascending ranges [lo, hi]. */
static int pad_sources(et_pad_mode m, int64_t i, int64_t before, int64_t n, int64_t after,
                       int64_t *lo, int64_t *hi) {
    int k = 0;
    if (m == ET_PAD_REPLICATE) {
        lo[0] = i == 0 ? 0 : i + before;
        hi[0] = i == n - 1 ? before + n - 1 + after : i + before;
        return 1;
    }
    if (m == ET_PAD_REFLECT && i >= 1 && i <= before) { lo[k] = hi[k] = before - i; k++; }
    lo[k] = hi[k] = before + i;
    k++;
    if (m == ET_PAD_REFLECT && i <= n - 2 && 2 * (n - 1) - i < n + after) {
        lo[k] = hi[k] = before + 2 * (n - 1) - i;
        k++;
    }
    return k;
}

static et_status pad_args(int ndim, const int64_t *xs, const int64_t *before, const int64_t *after,
                          et_pad_mode mode, const void *a, const void *b) {
    if (ndim < 1 || bad_sizes(ndim, xs) || !before || !after || !a || !b) return ET_ERR_ARG;
    if ((unsigned)mode >= ET_PAD_MODE_COUNT_) return ET_ERR_ARG;
    for (int d = 0; d < ndim; d++) {
        if (before[d] < 0 || after[d] < 0) return ET_ERR_ARG;
        if (mode == ET_PAD_REFLECT && (before[d] >= xs[d] || after[d] >= xs[d]) && before[d] + after[d] > 0)
            return ET_ERR_ARG;
        if (mode == ET_PAD_REPLICATE && xs[d] == 0 && before[d] + after[d] > 0) return ET_ERR_ARG;
    }
    return ET_OK;
}

typedef struct pad_fwd_job {
    int l;
    et_pad_mode mode;
    float value;
    const int64_t *xs, *before, *ys, *xst;
    const float *x;
    float *y;
} pad_fwd_job;

static void pad_fwd_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const pad_fwd_job *k = (const pad_fwd_job *)ctx;
    const int l = k->l;
    const int64_t last = k->ys[l];
    (void)tid;
    for (int64_t r = beg; r < end; r++) {
        float *dst = k->y + r * last;
        int64_t off = 0, rest = r;
        int outside = 0;
        for (int d = l - 1; d >= 0; d--) {
            int64_t s = pad_src(k->mode, rest % k->ys[d], k->before[d], k->xs[d]);
            rest /= k->ys[d];
            if (s < 0) outside = 1;
            else off += s * k->xst[d];
        }
        for (int64_t j = 0; j < last; j++) {
            int64_t s = outside ? -1 : pad_src(k->mode, j, k->before[l], k->xs[l]);
            dst[j] = s < 0 ? k->value : k->x[off + s];
        }
    }
}

et_status et_f32_pad_fwd__ref(int ndim, const int64_t *x_shape, const int64_t *before,
                              const int64_t *after, et_pad_mode mode, float value,
                              const float *x, float *y, int nthreads) {
    et_status st = pad_args(ndim, x_shape, before, after, mode, x, y);
    if (st != ET_OK) return st;
    int64_t ys[ET_MAX_DIMS] = {0}, xst[ET_MAX_DIMS] = {0};
    for (int d = 0; d < ndim; d++) ys[d] = before[d] + x_shape[d] + after[d];
    strides_of(ndim, x_shape, xst);
    const int l = ndim - 1;
    const int64_t rows = prod(ys, 0, l);
    pad_fwd_job k = {l, mode, value, x_shape, before, ys, xst, x, y};
    run_rows(rows, pad_fwd_rows, &k, nthreads);
    return ET_OK;
}

typedef struct pad_view {
    int ndim;
    et_pad_mode mode;
    const int64_t *xs, *before, *after;
    int64_t yst[ET_MAX_DIMS];
} pad_view;

/* Sum of dy over every padded position of dims d.. that copies from x coordinates xc. */
static double pad_gather_sum(const pad_view *v, int d, const int64_t *xc, int64_t off, const float *dy) {
    if (d == v->ndim) return dy[off];
    int64_t lo[3], hi[3];
    int k = pad_sources(v->mode, xc[d], v->before[d], v->xs[d], v->after[d], lo, hi);
    double s = 0.0;
    for (int r = 0; r < k; r++)
        for (int64_t j = lo[r]; j <= hi[r]; j++) s += pad_gather_sum(v, d + 1, xc, off + j * v->yst[d], dy);
    return s;
}

typedef struct pad_bwd_job {
    const pad_view *v;
    const float *dy;
    float *dx;
} pad_bwd_job;

static void pad_bwd_elems(void *ctx, int64_t beg, int64_t end, int tid) {
    const pad_bwd_job *k = (const pad_bwd_job *)ctx;
    const pad_view *v = k->v;
    (void)tid;
    for (int64_t e = beg; e < end; e++) {
        int64_t xc[ET_MAX_DIMS], rest = e;
        for (int d = v->ndim - 1; d >= 0; d--) {
            xc[d] = rest % v->xs[d];
            rest /= v->xs[d];
        }
        k->dx[e] = (float)pad_gather_sum(v, 0, xc, 0, k->dy);
    }
}

et_status et_f32_pad_bwd__ref(int ndim, const int64_t *x_shape, const int64_t *before,
                              const int64_t *after, et_pad_mode mode, const float *dy,
                              float *dx, int nthreads) {
    et_status st = pad_args(ndim, x_shape, before, after, mode, dy, dx);
    if (st != ET_OK) return st;
    pad_view v = {ndim, mode, x_shape, before, after, {0}};
    int64_t ys[ET_MAX_DIMS];
    for (int d = 0; d < ndim; d++) ys[d] = before[d] + x_shape[d] + after[d];
    strides_of(ndim, ys, v.yst);
    const int64_t total = prod(x_shape, 0, ndim);
    pad_bwd_job k = {&v, dy, dx};
    run_rows(total, pad_bwd_elems, &k, nthreads);
    return ET_OK;
}

/* ---- gather / index_select --------------------------------------------------------------- */
/* The index space: y's shape. Columns are its positions off the axis; along a column j runs
 * over the axis. */
typedef struct gather_view {
    int ndim, axis, select;
    int64_t is[ET_MAX_DIMS];   /* y (index space) shape */
    int64_t xst[ET_MAX_DIMS];  /* x strides */
    int64_t outer, len, inner, xdim;
} gather_view;

static et_status gather_view_of(int ndim, const int64_t *xs, const int64_t *idx_shape, int axis, int select,
                                const void *a, const int32_t *index, const void *b, gather_view *v) {
    if (ndim < 1 || bad_sizes(ndim, xs) || !idx_shape || axis < 0 || axis >= ndim || !a || !b) return ET_ERR_ARG;
    if (select != 0 && select != 1) return ET_ERR_ARG;
    v->ndim = ndim;
    v->axis = axis;
    v->select = select;
    for (int d = 0; d < ndim; d++) {
        v->is[d] = select ? (d == axis ? idx_shape[0] : xs[d]) : idx_shape[d];
        if (v->is[d] < 0 || (d != axis && v->is[d] > xs[d])) return ET_ERR_ARG;
    }
    strides_of(ndim, xs, v->xst);
    v->outer = prod(v->is, 0, axis);
    v->len = v->is[axis];
    v->inner = prod(v->is, axis + 1, ndim);
    v->xdim = xs[axis];
    int64_t n = select ? v->len : v->outer * v->len * v->inner;
    if (n > 0 && !index) return ET_ERR_ARG;
    for (int64_t k = 0; k < n; k++)
        if (index[k] < 0 || index[k] >= v->xdim) return ET_ERR_ARG;
    return ET_OK;
}

/* x offset of column (o, i) with the axis coordinate 0. */
static int64_t gather_col_off(const gather_view *v, int64_t o, int64_t i) {
    int64_t off = 0;
    for (int d = v->ndim - 1; d > v->axis; d--) {
        off += (i % v->is[d]) * v->xst[d];
        i /= v->is[d];
    }
    for (int d = v->axis - 1; d >= 0; d--) {
        off += (o % v->is[d]) * v->xst[d];
        o /= v->is[d];
    }
    return off;
}

/* Forward: dst = y, dst[at] = src[x offset]. Backward (scatter): dst = dx, dst[x offset] +=
 * src[at]; a column of dy adds only into the matching column of dx: columns are independent. */
typedef struct gather_job {
    const gather_view *v;
    int64_t ast;
    const float *src;
    const int32_t *index;
    float *dst;
    int scatter;
} gather_job;

static void gather_cols(void *ctx, int64_t beg, int64_t end, int tid) {
    const gather_job *k = (const gather_job *)ctx;
    const gather_view *v = k->v;
    (void)tid;
    for (int64_t c = beg; c < end; c++) {
        int64_t o = c / v->inner, i = c % v->inner, base = gather_col_off(v, o, i);
        for (int64_t j = 0; j < v->len; j++) {
            int64_t at = (o * v->len + j) * v->inner + i;
            int64_t xat = base + (int64_t)k->index[v->select ? j : at] * k->ast;
            if (k->scatter) k->dst[xat] += k->src[at];
            else k->dst[at] = k->src[xat];
        }
    }
}

static et_status run_gather(int ndim, const int64_t *x_shape, const int64_t *idx_shape, int axis,
                            int select, const float *src, const int32_t *index, float *dst,
                            int scatter, int nthreads) {
    gather_view v;
    et_status st = gather_view_of(ndim, x_shape, idx_shape, axis, select, src, index, dst, &v);
    if (st != ET_OK) return st;
    if (scatter) memset(dst, 0, (size_t)prod(x_shape, 0, ndim) * sizeof(float));
    gather_job k = {&v, v.xst[axis], src, index, dst, scatter};
    run_rows(v.outer * v.inner, gather_cols, &k, nthreads);
    return ET_OK;
}

et_status et_f32_gather_fwd__ref(int ndim, const int64_t *x_shape, const int64_t *idx_shape,
                                 int axis, int select, const float *x, const int32_t *index,
                                 float *y, int nthreads) {
    return run_gather(ndim, x_shape, idx_shape, axis, select, x, index, y, 0, nthreads);
}

et_status et_f32_gather_bwd__ref(int ndim, const int64_t *x_shape, const int64_t *idx_shape,
                                 int axis, int select, const float *dy, const int32_t *index,
                                 float *dx, int nthreads) {
    return run_gather(ndim, x_shape, idx_shape, axis, select, dy, index, dx, 1, nthreads);
}

/* ---- entry points (one variant each) ----------------------------------------------------- */
et_status et_f32_concat(int n, const float *const *x, const int64_t *len, int64_t outer,
                        int64_t inner, float *y, int nthreads) {
    return et_f32_concat__ref(n, x, len, outer, inner, y, nthreads);
}
et_status et_f32_slice_fwd(int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t step,
                           int64_t count, const float *x, float *y, int nthreads) {
    return et_f32_slice_fwd__ref(outer, dim, inner, start, step, count, x, y, nthreads);
}
et_status et_f32_slice_bwd(int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t step,
                           int64_t count, const float *dy, float *dx, int nthreads) {
    return et_f32_slice_bwd__ref(outer, dim, inner, start, step, count, dy, dx, nthreads);
}
et_status et_f32_transpose(int ndim, const int64_t *x_shape, const int *perm, const float *x,
                           float *y, int nthreads) {
    return et_f32_transpose__ref(ndim, x_shape, perm, x, y, nthreads);
}
et_status et_f32_pad_fwd(int ndim, const int64_t *x_shape, const int64_t *before, const int64_t *after,
                         et_pad_mode mode, float value, const float *x, float *y, int nthreads) {
    return et_f32_pad_fwd__ref(ndim, x_shape, before, after, mode, value, x, y, nthreads);
}
et_status et_f32_pad_bwd(int ndim, const int64_t *x_shape, const int64_t *before, const int64_t *after,
                         et_pad_mode mode, const float *dy, float *dx, int nthreads) {
    return et_f32_pad_bwd__ref(ndim, x_shape, before, after, mode, dy, dx, nthreads);
}
et_status et_f32_gather_fwd(int ndim, const int64_t *x_shape, const int64_t *idx_shape, int axis,
                            int select, const float *x, const int32_t *index, float *y, int nthreads) {
    return et_f32_gather_fwd__ref(ndim, x_shape, idx_shape, axis, select, x, index, y, nthreads);
}
et_status et_f32_gather_bwd(int ndim, const int64_t *x_shape, const int64_t *idx_shape, int axis,
                            int select, const float *dy, const int32_t *index, float *dx, int nthreads) {
    return et_f32_gather_bwd__ref(ndim, x_shape, idx_shape, axis, select, dy, index, dx, nthreads);
}
