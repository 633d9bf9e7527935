/* edgetrain — softmax / log-softmax along an axis, data viewed as [outer, len, inner].
 *
 * Numerically stable (the row maximum is subtracted), sums in double. inner == 1 walks
 * contiguous rows; inner > 1 processes blocks of SM_BLOCK neighbouring columns at once so all
 * loads stay contiguous. One (outer, block) item per loop iteration: deterministic for any
 * thread count. Contiguous rows (inner == 1) run the row of et_f32_softmax_rows_variants
 * picked by et_get_isa() (softmax_simd.c: AVX2 / AVX-512 / NEON; __ref rows here).
 */
#include <math.h>

#include "misc_internal.h"

#define SM_BLOCK 64

double et_misc_softmax_row(int64_t len, const float *ET_RESTRICT x, float *ET_RESTRICT y,
                           int log_softmax) {
    float m = -INFINITY;
    for (int64_t i = 0; i < len; i++) m = x[i] > m ? x[i] : m;
    for (int64_t i = 0; i < len; i++)
        if (isnan(x[i])) m = x[i];
    double s = 0.0;
    for (int64_t i = 0; i < len; i++) {
        float e = expf(x[i] - m);
        if (y && !log_softmax) y[i] = e;
        s += (double)e;
    }
    const double lse = (double)m + log(s);
    if (y) {
        if (log_softmax) {
            for (int64_t i = 0; i < len; i++) y[i] = (float)((double)x[i] - lse);
        } else {
            const float inv = (float)(1.0 / s);
            for (int64_t i = 0; i < len; i++) y[i] *= inv;
        }
    }
    return lse;
}

static void softmax_block(int64_t len, int64_t inner, int64_t nb, const float *x, float *y,
                          int log_softmax) {
    float mx[SM_BLOCK];
    double s[SM_BLOCK];
    for (int64_t j = 0; j < nb; j++) {
        mx[j] = -INFINITY;
        s[j] = 0.0;
    }
    for (int64_t l = 0; l < len; l++) {
        const float *xr = x + l * inner;
        for (int64_t j = 0; j < nb; j++) mx[j] = (xr[j] > mx[j] || isnan(xr[j])) ? xr[j] : mx[j];
    }
    for (int64_t l = 0; l < len; l++) {
        const float *xr = x + l * inner;
        float *yr = y + l * inner;
        for (int64_t j = 0; j < nb; j++) {
            float e = expf(xr[j] - mx[j]);
            if (!log_softmax) yr[j] = e;
            s[j] += (double)e;
        }
    }
    if (log_softmax) {
        double lse[SM_BLOCK];
        for (int64_t j = 0; j < nb; j++) lse[j] = (double)mx[j] + log(s[j]);
        for (int64_t l = 0; l < len; l++)
            for (int64_t j = 0; j < nb; j++)
                y[l * inner + j] = (float)((double)x[l * inner + j] - lse[j]);
    } else {
        float inv[SM_BLOCK];
        for (int64_t j = 0; j < nb; j++) inv[j] = (float)(1.0 / s[j]);
        for (int64_t l = 0; l < len; l++)
            for (int64_t j = 0; j < nb; j++) y[l * inner + j] *= inv[j];
    }
}

/* Work item it of the [outer, nblk] grid of column blocks of width bw over [outer, len, inner]:
 * returns the offset of its first element and sets *nb to its width. */
static int64_t block_at(int64_t it, int64_t nblk, int64_t bw, int64_t len, int64_t inner,
                        int64_t *nb) {
    const int64_t o = it / nblk, j0 = (it % nblk) * bw;
    *nb = inner - j0 < bw ? inner - j0 : bw;
    return o * len * inner + j0;
}

/* __ref rows of et_f32_softmax_rows_variants (softmax_simd.c has the SIMD rows). */
void et_f32_softmax_rows_fwd__ref(int64_t r0, int64_t r1, int64_t len, const float *x, float *y,
                                  int log_softmax) {
    for (int64_t o = r0; o < r1; o++)
        et_misc_softmax_row(len, x + o * len, y + o * len, log_softmax);
}

/* Rows (inner == 1) or blocks of columns, each computed on its own: any split gives the
 * same bits. x: the input (forward) or y (backward); d: dy (backward); out: y or dx. */
typedef struct sm_job {
    const et_f32_softmax_rows_variant *row; /* inner == 1: et_f32_softmax_rows_variants */
    int64_t len, inner, nblk, bw;
    int log_softmax;
    const float *x, *d;
    float *out;
} sm_job;

/* softmax:     dx = y * (dy - sum(dy * y))
 * log_softmax: dx = dy - exp(y) * sum(dy)        (sums along len) */
static void softmax_bwd_block(int64_t len, int64_t inner, int64_t nb, const float *y,
                              const float *dy, float *dx, int log_softmax) {
    double s[SM_BLOCK];
    for (int64_t j = 0; j < nb; j++) s[j] = 0.0;
    for (int64_t l = 0; l < len; l++)
        for (int64_t j = 0; j < nb; j++) {
            const int64_t k = l * inner + j;
            s[j] += log_softmax ? (double)dy[k] : (double)dy[k] * (double)y[k];
        }
    float sf[SM_BLOCK];
    for (int64_t j = 0; j < nb; j++) sf[j] = (float)s[j];
    for (int64_t l = 0; l < len; l++)
        for (int64_t j = 0; j < nb; j++) {
            const int64_t k = l * inner + j;
            dx[k] = log_softmax ? dy[k] - expf(y[k]) * sf[j] : y[k] * (dy[k] - sf[j]);
        }
}

void et_f32_softmax_rows_bwd__ref(int64_t r0, int64_t r1, int64_t len, const float *y,
                                  const float *dy, float *dx, int log_softmax) {
    for (int64_t o = r0; o < r1; o++)
        softmax_bwd_block(len, 1, 1, y + o * len, dy + o * len, dx + o * len, log_softmax);
}

/* Items (o, block of up to bw inner positions): softmax_block, or with k->d (dy) its backward. */
static void sm_blocks(void *ctx, int64_t i0, int64_t i1, int tid) {
    const sm_job *k = (const sm_job *)ctx;
    (void)tid;
    for (int64_t it = i0; it < i1; it++) {
        int64_t nb;
        const int64_t base = block_at(it, k->nblk, k->bw, k->len, k->inner, &nb);
        if (k->d)
            softmax_bwd_block(k->len, k->inner, nb, k->x + base, k->d + base, k->out + base,
                              k->log_softmax);
        else
            softmax_block(k->len, k->inner, nb, k->x + base, k->out + base, k->log_softmax);
    }
}

static et_status run_blocks(int64_t outer, int64_t len, int64_t inner, int64_t bw, int log_softmax,
                            const float *x, const float *d, float *out, int nthreads) {
    const int64_t nblk = (inner + bw - 1) / bw, items = outer * nblk;
    sm_job k = {NULL, len, inner, nblk, bw, log_softmax, x, d, out};
    et_parallel_ranges(items, et_split_chunks(items, nthreads), nthreads, sm_blocks, &k);
    return ET_OK;
}

/* Rows (inner == 1) through the variant table: the forward, or with k->d (dy) the backward. */
static void sm_rows(void *ctx, int64_t o0, int64_t o1, int tid) {
    const sm_job *k = (const sm_job *)ctx;
    (void)tid;
    if (k->d)
        k->row->bwd(o0, o1, k->len, k->x, k->d, k->out, k->log_softmax);
    else
        k->row->fwd(o0, o1, k->len, k->x, k->out, k->log_softmax);
}

static et_status run_rows(int64_t outer, int64_t len, int log_softmax, const float *x, const float *d,
                          float *out, int nthreads) {
    sm_job k = {ET_VARIANT_PICK(et_f32_softmax_rows_variants), len, 1, 0, 0, log_softmax, x, d, out};
    et_parallel_ranges(outer, et_split_chunks(outer, nthreads), nthreads, sm_rows, &k);
    return ET_OK;
}

et_status et_f32_softmax_fwd(int64_t outer, int64_t len, int64_t inner, int log_softmax,
                             const float *x, float *y, int nthreads) {
    if (outer < 0 || len < 0 || inner < 0) return ET_ERR_ARG;
    if (outer * len * inner == 0) return ET_OK;
    if (!x || !y) return ET_ERR_ARG;
    if (inner == 1) return run_rows(outer, len, log_softmax, x, NULL, y, nthreads);
    return run_blocks(outer, len, inner, SM_BLOCK, log_softmax, x, NULL, y, nthreads);
}

et_status et_f32_softmax_bwd(int64_t outer, int64_t len, int64_t inner, int log_softmax,
                             const float *y, const float *dy, float *dx, int nthreads) {
    if (outer < 0 || len < 0 || inner < 0) return ET_ERR_ARG;
    if (outer * len * inner == 0) return ET_OK;
    if (!y || !dy || !dx) return ET_ERR_ARG;
    if (inner == 1) return run_rows(outer, len, log_softmax, y, dy, dx, nthreads);
    return run_blocks(outer, len, inner, SM_BLOCK, log_softmax, y, dy, dx, nthreads);
}
