/* edgetrain — max / min over one axis of the [outer, len, inner] view (amax, amin, max(x, dim),
 * argmax, argmin). Several axes are reduced by the runtime one axis at a time (max is exact, so
 * the order does not change a bit). Each output column is produced by one thread scanning len in
 * order; the first extreme position wins, and NaN is an extreme (PyTorch's rule).
 */
#include <math.h>

#include "misc_internal.h"
#include "norm_internal.h"

#define MAX_GRAIN 4096

void et_f32_max_axis__ref(int64_t o, int64_t j0, int64_t j1, int64_t len, int64_t inner,
                          int is_min, const float *x, float *y, int32_t *idx) {
    const float *xo = x + o * len * inner;
    for (int64_t j = j0; j < j1; j++) {
        float best = xo[j];
        int32_t at = 0;
        for (int64_t l = 1; l < len && !isnan(best); l++) {
            float v = xo[l * inner + j];
            if (isnan(v) || (is_min ? v < best : v > best)) {
                best = v;
                at = (int32_t)l;
            }
        }
        if (y) y[o * inner + j] = best;
        if (idx) idx[o * inner + j] = at;
    }
}

typedef struct max_axis_job {
    int64_t len, inner;
    int is_min;
    const float *x;
    float *y;
    int32_t *idx;
} max_axis_job;

static void max_axis_range(void *ctx, int64_t b, int64_t e, int tid) {
    const max_axis_job *k = (const max_axis_job *)ctx;
    (void)tid;
    while (b < e) { /* split [b, e) at outer boundaries */
        int64_t o = b / k->inner, j = b % k->inner;
        int64_t stop = (o + 1) * k->inner < e ? (o + 1) * k->inner : e;
        et_f32_max_axis__ref(o, j, j + (stop - b), k->len, k->inner, k->is_min, k->x, k->y, k->idx);
        b = stop;
    }
}

et_status et_f32_max_axis(int64_t outer, int64_t len, int64_t inner, int is_min, const float *x,
                          float *y, int32_t *idx, int nthreads) {
    if (outer < 0 || len <= 0 || inner < 0 || len > INT32_MAX) return ET_ERR_ARG;
    const int64_t total = outer * inner;
    if (total == 0) return ET_OK;
    if (!x || (!y && !idx)) return ET_ERR_ARG;
    max_axis_job k = {len, inner, is_min, x, y, idx};
    et_parallel_ranges(total, et_misc_nchunks(total, nthreads, MAX_GRAIN / len + 1), nthreads,
                       max_axis_range, &k);
    return ET_OK;
}

/* Several axes at once: y (dims 1 where reduced) starts at -inf (+inf for min) and every x
 * element, visited in memory order, is folded into its output. Serial: max is exact, so this is
 * the only rounding-free order there is and any split would give the same bits anyway. */
void et_f32_reduce_max__ref(int nd, const int64_t *xs, const float *x, const int64_t *ys, float *y,
                            int is_min) {
    int64_t ny = 1, nx = 1, st[ET_MAX_DIMS], idx[ET_MAX_DIMS] = {0}, oy = 0;
    for (int d = nd - 1; d >= 0; d--) {
        st[d] = ys[d] == 1 ? 0 : ny;
        ny *= ys[d];
        nx *= xs[d];
    }
    for (int64_t i = 0; i < ny; i++) y[i] = is_min ? INFINITY : -INFINITY;
    for (int64_t i = 0; i < nx; i++) {
        float v = x[i];
        if (isnan(v) || (is_min ? v < y[oy] : v > y[oy])) y[oy] = v;
        for (int d = nd - 1; d >= 0; d--) {
            oy += st[d];
            if (++idx[d] < xs[d]) break;
            oy -= st[d] * xs[d];
            idx[d] = 0;
        }
    }
}

et_status et_f32_reduce_max(int nd, const int64_t *xs, const float *x, const int64_t *ys, float *y,
                            int is_min) {
    if (nd < 0 || nd > ET_MAX_DIMS) return ET_ERR_ARG;
    int64_t nx = 1;
    for (int d = 0; d < nd; d++) {
        if (xs[d] < 0 || (ys[d] != xs[d] && ys[d] != 1)) return ET_ERR_SHAPE;
        if (ys[d] == 1 && xs[d] == 0) return ET_ERR_SHAPE; /* max of nothing */
        nx *= xs[d];
    }
    if (nx == 0) return ET_OK;
    if (!x || !y) return ET_ERR_ARG;
    et_f32_reduce_max__ref(nd, xs, x, ys, y, is_min);
    return ET_OK;
}
