/* edgetrain — normalisation of the rows of x[rows, k] (LayerNorm, GroupNorm, InstanceNorm).
 *
 * y = (x - mean) * invstd with the biased variance, invstd = 1 / sqrt(var + eps); invstd[rows]
 * is saved for the backward, which needs only y and invstd:
 *   dx = invstd * (dy - mean(dy) - y * mean(dy * y)).
 * Sums run in double over one row in a fixed order (et_misc_sum_f64 lanes); rows are split
 * into contiguous chunks (et_parallel_ranges), each row computed by one thread, so results are bitwise
 * the same for every thread count. The rows run the et_f32_normrows_variants row picked by
 * et_get_isa() (layernorm_simd.c: AVX2 / AVX-512 / NEON, bit-identical to the __ref here).
 */
#include <math.h>

#include "misc_internal.h"
#include "norm_internal.h"

#define NORM_GRAIN 4096 /* elements per chunk, at least */

void et_f32_normalize_rows_fwd__ref(int64_t r0, int64_t r1, int64_t k, float eps, const float *x,
                                    float *y, float *invstd) {
    for (int64_t r = r0; r < r1; r++) {
        const float *ET_RESTRICT xr = x + r * k;
        float *ET_RESTRICT yr = y + r * k;
        const double mean = et_misc_sum_f64(xr, k) / (double)k;
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 8 <= k; j += 8)
            for (int l = 0; l < 8; l++) {
                double d = (double)xr[j + l] - mean;
                acc[l] += d * d;
            }
        for (; j < k; j++) {
            double d = (double)xr[j] - mean;
            acc[0] += d * d;
        }
        const double var = ((acc[0] + acc[1]) + (acc[2] + acc[3]) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) / (double)k;
        const double is = 1.0 / sqrt(var + (double)eps);
        for (j = 0; j < k; j++) yr[j] = (float)(((double)xr[j] - mean) * is);
        invstd[r] = (float)is;
    }
}

void et_f32_normalize_rows_bwd__ref(int64_t r0, int64_t r1, int64_t k, const float *y,
                                    const float *invstd, const float *dy, float *dx) {
    for (int64_t r = r0; r < r1; r++) {
        const float *ET_RESTRICT yr = y + r * k;
        const float *ET_RESTRICT gr = dy + r * k;
        float *ET_RESTRICT dr = dx + r * k;
        double sg[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sgy[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 8 <= k; j += 8)
            for (int l = 0; l < 8; l++) {
                sg[l] += (double)gr[j + l];
                sgy[l] += (double)gr[j + l] * (double)yr[j + l];
            }
        for (; j < k; j++) {
            sg[0] += (double)gr[j];
            sgy[0] += (double)gr[j] * (double)yr[j];
        }
        const double mg = ((sg[0] + sg[1]) + (sg[2] + sg[3]) + ((sg[4] + sg[5]) + (sg[6] + sg[7]))) / (double)k;
        const double mgy = ((sgy[0] + sgy[1]) + (sgy[2] + sgy[3]) + ((sgy[4] + sgy[5]) + (sgy[6] + sgy[7]))) / (double)k;
        const double is = (double)invstd[r];
        for (j = 0; j < k; j++) dr[j] = (float)(is * ((double)gr[j] - mg - (double)yr[j] * mgy));
    }
}

typedef struct norm_rows_job {
    const et_f32_normrows_variant *row; /* et_f32_normrows_variants (layernorm_simd.c) */
    int64_t k;
    float eps;
    const float *x, *y, *invstd, *dy;
    float *out, *out_invstd;
} norm_rows_job;

static void norm_fwd_rows(void *ctx, int64_t b, int64_t e, int tid) {
    const norm_rows_job *j = (const norm_rows_job *)ctx;
    (void)tid;
    j->row->fwd(b, e, j->k, j->eps, j->x, j->out, j->out_invstd);
}

static void norm_bwd_rows(void *ctx, int64_t b, int64_t e, int tid) {
    const norm_rows_job *j = (const norm_rows_job *)ctx;
    (void)tid;
    j->row->bwd(b, e, j->k, j->y, j->invstd, j->dy, j->out);
}

static int row_chunks(int64_t rows, int64_t k, int nthreads) {
    int64_t per = k > 0 ? (NORM_GRAIN + k - 1) / k : rows; /* rows per chunk, at least */
    return et_misc_nchunks(rows, nthreads, per > 0 ? per : 1);
}

et_status et_f32_normalize_rows_fwd(int64_t rows, int64_t k, float eps, const float *x, float *y,
                                    float *invstd, int nthreads) {
    if (rows < 0 || k <= 0 || !(eps >= 0.0f) || !isfinite(eps)) return ET_ERR_ARG;
    if (rows == 0) return ET_OK;
    if (!x || !y || !invstd) return ET_ERR_ARG;
    norm_rows_job j = {ET_VARIANT_PICK(et_f32_normrows_variants), k, eps, x, NULL, NULL, NULL, y,
                       invstd};
    et_parallel_ranges(rows, row_chunks(rows, k, nthreads), nthreads, norm_fwd_rows, &j);
    return ET_OK;
}

et_status et_f32_normalize_rows_bwd(int64_t rows, int64_t k, const float *y, const float *invstd,
                                    const float *dy, float *dx, int nthreads) {
    if (rows < 0 || k <= 0) return ET_ERR_ARG;
    if (rows == 0) return ET_OK;
    if (!y || !invstd || !dy || !dx) return ET_ERR_ARG;
    norm_rows_job j = {ET_VARIANT_PICK(et_f32_normrows_variants), k, 0.0f, NULL, y, invstd, dy, dx,
                       NULL};
    et_parallel_ranges(rows, row_chunks(rows, k, nthreads), nthreads, norm_bwd_rows, &j);
    return ET_OK;
}
