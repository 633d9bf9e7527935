/* edgetrain — SIMD rows of softmax / log-softmax over contiguous rows (inner == 1: the last
 * axis, as attention's softmax): et_f32_softmax_rows_{fwd,bwd}__{avx2,avx512,neon}.
 *
 * __ref (softmax.c) is et_misc_softmax_row per row forward and the column-block backward with
 * one column. The rows here do __ref's operations in __ref's order (the max and NaN scan, the
 * double sum of the exponentials one element after the other, the scaling), with two changes:
 *   - the loops that are elementwise are plain loops the compiler vectorises (act_* style,
 *     activation.c: one body force-inlined into target("avx2") / target("avx512...")
 *     wrappers, compiled for the aarch64 baseline for __neon);
 *   - expf is exp_f64 (simd_math_internal.h), which vectorises: the same value as glibc's expf
 *     but for rare last-bit cases, so the forward and the log-softmax backward follow the
 *     activation family's rule for smooth functions (4e-7 relative against __ref, and a bound
 *     on how many elements differ at all); the softmax backward is bit-identical.
 * The fused cross-entropy (loss.c) keeps et_misc_softmax_row. Double arithmetic, no FP
 * contraction: the same bits on every ISA (x86 and arm64) and for every thread count.
 */
#include <math.h>

#include "misc_internal.h"
#include "simd_math_internal.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#define SMR_CHUNK 256 /* log-softmax: exponentials computed this many at a time */

/* __ref's max: the largest element, or the last NaN when there is one. Here in 8 lanes
 * combined after (vectorised); only the sign of a zero maximum can differ from __ref's
 * sequential scan, and it changes no result (x - m and m + log(s) are the same for m = +-0). */
ET_INLINE float row_max(int64_t len, const float *xr) {
    float mx[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int nan = 0;
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int l = 0; l < 8; l++) {
            const float v = xr[i + l];
            mx[l] = v > mx[l] ? v : mx[l];
            nan |= v != v;
        }
    float m = -INFINITY;
    for (int l = 0; l < 8; l++) m = mx[l] > m ? mx[l] : m;
    for (; i < len; i++) {
        m = xr[i] > m ? xr[i] : m;
        nan |= xr[i] != xr[i];
    }
    if (nan)
        for (i = 0; i < len; i++)
            if (isnan(xr[i])) m = xr[i];
    return m;
}

/* Aliasing: y == x and dx == dy are allowed, as for __ref. */
ET_INLINE void sm_fwd_body(int64_t r0, int64_t r1, int64_t len, const float *x, float *y,
                           int log_softmax) {
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * len;
        float *yr = y + r * len;
        const float m = row_max(len, xr);
        double s = 0.0;
        if (log_softmax) { /* y is not written before x is read for the last time (y == x) */
            float e[SMR_CHUNK];
            for (int64_t c = 0; c < len; c += SMR_CHUNK) {
                const int64_t n = len - c < SMR_CHUNK ? len - c : SMR_CHUNK;
                for (int64_t i = 0; i < n; i++) e[i] = exp_f64(xr[c + i] - m);
                for (int64_t i = 0; i < n; i++) s += (double)e[i];
            }
            const double lse = (double)m + log(s);
            for (int64_t i = 0; i < len; i++) yr[i] = (float)((double)xr[i] - lse);
        } else {
            for (int64_t i = 0; i < len; i++) yr[i] = exp_f64(xr[i] - m);
            for (int64_t i = 0; i < len; i++) s += (double)yr[i];
            const float inv = (float)(1.0 / s);
            for (int64_t i = 0; i < len; i++) yr[i] *= inv;
        }
    }
}

/* softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy). */
ET_INLINE void sm_bwd_body(int64_t r0, int64_t r1, int64_t len, const float *y, const float *dy,
                           float *dx, int log_softmax) {
    for (int64_t r = r0; r < r1; r++) {
        const float *yr = y + r * len, *gr = dy + r * len;
        float *dr = dx + r * len;
        double s = 0.0;
        if (log_softmax) {
            for (int64_t i = 0; i < len; i++) s += (double)gr[i];
            const float sf = (float)s;
            for (int64_t i = 0; i < len; i++) dr[i] = gr[i] - exp_f64(yr[i]) * sf;
        } else {
            for (int64_t i = 0; i < len; i++) s += (double)gr[i] * (double)yr[i];
            const float sf = (float)s;
            for (int64_t i = 0; i < len; i++) dr[i] = yr[i] * (gr[i] - sf);
        }
    }
}

#if defined(ET_HAVE_X86_SIMD)
ET_TARGET_AVX2 void et_f32_softmax_rows_fwd__avx2(int64_t r0, int64_t r1, int64_t len,
                                                  const float *x, float *y, int log_softmax) {
    sm_fwd_body(r0, r1, len, x, y, log_softmax);
}
ET_TARGET_AVX2 void et_f32_softmax_rows_bwd__avx2(int64_t r0, int64_t r1, int64_t len,
                                                  const float *y, const float *dy, float *dx,
                                                  int log_softmax) {
    sm_bwd_body(r0, r1, len, y, dy, dx, log_softmax);
}
ET_TARGET_AVX512 void et_f32_softmax_rows_fwd__avx512(int64_t r0, int64_t r1, int64_t len,
                                                      const float *x, float *y,
                                                      int log_softmax) {
    sm_fwd_body(r0, r1, len, x, y, log_softmax);
}
ET_TARGET_AVX512 void et_f32_softmax_rows_bwd__avx512(int64_t r0, int64_t r1, int64_t len,
                                                      const float *y, const float *dy,
                                                      float *dx, int log_softmax) {
    sm_bwd_body(r0, r1, len, y, dy, dx, log_softmax);
}
#endif
#if defined(ET_HAVE_NEON)
void et_f32_softmax_rows_fwd__neon(int64_t r0, int64_t r1, int64_t len, const float *x, float *y,
                                   int log_softmax) {
    sm_fwd_body(r0, r1, len, x, y, log_softmax);
}
void et_f32_softmax_rows_bwd__neon(int64_t r0, int64_t r1, int64_t len, const float *y,
                                   const float *dy, float *dx, int log_softmax) {
    sm_bwd_body(r0, r1, len, y, dy, dx, log_softmax);
}
#endif

/* ---- variant table (variant_internal.h) ------------------------------------------------ */
const et_f32_softmax_rows_variant et_f32_softmax_rows_variants[] = {
    {{ET_ISA_REF, "ref"}, et_f32_softmax_rows_fwd__ref, et_f32_softmax_rows_bwd__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_f32_softmax_rows_fwd__avx2, et_f32_softmax_rows_bwd__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_f32_softmax_rows_fwd__avx512, et_f32_softmax_rows_bwd__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, et_f32_softmax_rows_fwd__neon, et_f32_softmax_rows_bwd__neon},
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL}, /* end */
};
