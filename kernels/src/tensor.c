/* edgetrain — tensor copies: concat, strided slice (and its backward), transpose, pad
 * (constant / reflect / replicate, and its backward) and gather / index_select (and their
 * scatter-add backward).
 *
 * These are memory-bound copies, so each has only a scalar __ref body; the entry points of
 * et_kernels.h call it. Every output element is written by exactly one thread, and every sum
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

/* ---- concat ---------------------------------------------------------------------------- */
et_status et_f32_concat__ref(int n, const float *const *x, const int64_t *len, int64_t outer,
                             int64_t inner, float *y, int nthreads) {
    if (n < 1 || !x || !len || !y || outer < 0 || inner < 0) return ET_ERR_ARG;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (len[k] < 0 || (!x[k] && len[k] > 0)) return ET_ERR_ARG;
        total += len[k];
    }
    ET_PARALLEL_FOR(nthreads)
    for (int64_t o = 0; o < outer; o++) {
        float *dst = y + o * total * inner;
        for (int k = 0; k < n; k++) {
            size_t row = (size_t)(len[k] * inner);
            if (row) memcpy(dst, x[k] + o * (int64_t)row, row * sizeof(float));
            dst += row;
        }
    }
    return ET_OK;
}

/* ---- slice ----------------------------------------------------------------------------- */
static et_status slice_args(int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t step,
                            int64_t count, const void *a, const void *b) {
    if (!a || !b || outer < 0 || dim < 0 || inner < 0 || count < 0 || step < 1 || start < 0) return ET_ERR_ARG;
    if (count > 0 && start + (count - 1) * step >= dim) return ET_ERR_ARG;
    return ET_OK;
}

et_status et_f32_slice_fwd__ref(int64_t outer, int64_t dim, int64_t inner, int64_t start,
                                int64_t step, int64_t count, const float *x, float *y,
                                int nthreads) {
    et_status st = slice_args(outer, dim, inner, start, step, count, x, y);
    if (st != ET_OK) return st;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t r = 0; r < outer * count; r++) {
        int64_t o = r / count, j = r % count;
        memcpy(y + r * inner, x + (o * dim + start + j * step) * inner, (size_t)inner * sizeof(float));
    }
    return ET_OK;
}

et_status et_f32_slice_bwd__ref(int64_t outer, int64_t dim, int64_t inner, int64_t start,
                                int64_t step, int64_t count, const float *dy, float *dx,
                                int nthreads) {
    et_status st = slice_args(outer, dim, inner, start, step, count, dy, dx);
    if (st != ET_OK) return st;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t o = 0; o < outer; o++) {
        float *slab = dx + o * dim * inner;
        memset(slab, 0, (size_t)(dim * inner) * sizeof(float));
        for (int64_t j = 0; j < count; j++)
            memcpy(slab + (start + j * step) * inner, dy + (o * count + j) * inner, (size_t)inner * sizeof(float));
    }
    return ET_OK;
}

/* ---- transpose ------------------------------------------------------------------------- */
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
    ET_PARALLEL_FOR(nthreads)
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0, rest = r;
        for (int d = ndim - 2; d >= 0; d--) {
            off += (rest % ys[d]) * sx[d];
            rest /= ys[d];
        }
        float *dst = y + r * last;
        for (int64_t j = 0; j < last; j++) dst[j] = x[off + j * step];
    }
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

et_status et_f32_pad_fwd__ref(int ndim, const int64_t *x_shape, const int64_t *before,
                              const int64_t *after, et_pad_mode mode, float value,
                              const float *x, float *y, int nthreads) {
    et_status st = pad_args(ndim, x_shape, before, after, mode, x, y);
    if (st != ET_OK) return st;
    int64_t ys[ET_MAX_DIMS] = {0}, xst[ET_MAX_DIMS] = {0};
    for (int d = 0; d < ndim; d++) ys[d] = before[d] + x_shape[d] + after[d];
    strides_of(ndim, x_shape, xst);
    const int l = ndim - 1;
    const int64_t last = ys[l], rows = prod(ys, 0, l);
    ET_PARALLEL_FOR(nthreads)
    for (int64_t r = 0; r < rows; r++) {
        float *dst = y + r * last;
        int64_t off = 0, rest = r;
        int outside = 0;
        for (int d = l - 1; d >= 0; d--) {
            int64_t s = pad_src(mode, rest % ys[d], before[d], x_shape[d]);
            rest /= ys[d];
            if (s < 0) outside = 1;
            else off += s * xst[d];
        }
        for (int64_t j = 0; j < last; j++) {
            int64_t s = outside ? -1 : pad_src(mode, j, before[l], x_shape[l]);
            dst[j] = s < 0 ? value : x[off + s];
        }
    }
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
    ET_PARALLEL_FOR(nthreads)
    for (int64_t e = 0; e < total; e++) {
        int64_t xc[ET_MAX_DIMS], rest = e;
        for (int d = ndim - 1; d >= 0; d--) {
            xc[d] = rest % x_shape[d];
            rest /= x_shape[d];
        }
        dx[e] = (float)pad_gather_sum(&v, 0, xc, 0, dy);
    }
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

et_status et_f32_gather_fwd__ref(int ndim, const int64_t *x_shape, const int64_t *idx_shape,
                                 int axis, int select, const float *x, const int32_t *index,
                                 float *y, int nthreads) {
    gather_view v;
    et_status st = gather_view_of(ndim, x_shape, idx_shape, axis, select, x, index, y, &v);
    if (st != ET_OK) return st;
    const int64_t ast = v.xst[axis];
    ET_PARALLEL_FOR(nthreads)
    for (int64_t c = 0; c < v.outer * v.inner; c++) {
        int64_t o = c / v.inner, i = c % v.inner, base = gather_col_off(&v, o, i);
        for (int64_t j = 0; j < v.len; j++) {
            int64_t at = (o * v.len + j) * v.inner + i;
            y[at] = x[base + (int64_t)index[select ? j : at] * ast];
        }
    }
    return ET_OK;
}

et_status et_f32_gather_bwd__ref(int ndim, const int64_t *x_shape, const int64_t *idx_shape,
                                 int axis, int select, const float *dy, const int32_t *index,
                                 float *dx, int nthreads) {
    gather_view v;
    et_status st = gather_view_of(ndim, x_shape, idx_shape, axis, select, dy, index, dx, &v);
    if (st != ET_OK) return st;
    const int64_t ast = v.xst[axis];
    memset(dx, 0, (size_t)prod(x_shape, 0, ndim) * sizeof(float));
    /* a column of dy adds only into the matching column of dx: columns are independent */
    ET_PARALLEL_FOR(nthreads)
    for (int64_t c = 0; c < v.outer * v.inner; c++) {
        int64_t o = c / v.inner, i = c % v.inner, base = gather_col_off(&v, o, i);
        for (int64_t j = 0; j < v.len; j++) {
            int64_t at = (o * v.len + j) * v.inner + i;
            dx[base + (int64_t)index[select ? j : at] * ast] += dy[at];
        }
    }
    return ET_OK;
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
