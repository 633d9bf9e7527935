/* edgetrain — internal declarations of fake quantization and its observers (quant.c: the
 * __ref rows and the entry points; quant_simd.c: the SIMD rows).
 *
 * Variant table et_f32_fq_variants (variant_internal.h): single-threaded row kernels; the entry
 * points in quant.c split the work over threads (fixed chunks) and run the row of et_get_isa().
 * Every row gives __ref's bits:
 *   fwd / bwd: per element, __ref's float operations in __ref's order (the multiply by inv_s,
 *     round half to even, + zp, the two comparisons of the clamp or of the mask, - zp, * s or
 *     dy * mask), no fused multiply-add; a NaN input gives a NaN (forward) or dy * 0 (backward).
 *   minmax: the minimum (maximum) of the elements, NaN ignored (fminf / fmaxf), +inf (-inf)
 *     for none, and a zero result always +0: minimum and maximum are exact, so lanes and
 *     chunks may reduce in any order, except for the sign of a zero, which fminf / fmaxf leave
 *     to the C library (glibc x86-64: fminf(+0, -0) = +0, the first argument; aarch64 fminnm:
 *     -0 whatever the order). Defining it as +0 makes the observers' stored min_val / max_val
 *     the same bits on every platform (lo = min(min_val, 0) ignores the sign anyway).
 *   Not reproduced: signalling NaNs (never produced by arithmetic; fminf turns them into NaN,
 *     the rows ignore them as quiet NaNs).
 */
#ifndef EDGETRAIN_QUANT_INTERNAL_H
#define EDGETRAIN_QUANT_INTERNAL_H
#include "edgetrain/et_kernels.h"
#include "variant_internal.h"

/* y[i] = (clamp(nearbyint(x[i] * inv_s) + zp, lo, hi) - zp) * s over [0, n); y == x allowed */
typedef void (*et_f32_fq_fwd_fn)(int64_t n, const float *x, float s, float inv_s, float zp,
                                 float lo, float hi, float *y);
/* dx[i] = dy[i] * (lo <= nearbyint(x[i] * inv_s) + zp <= hi ? 1 : 0); dx == dy allowed */
typedef void (*et_f32_fq_bwd_fn)(int64_t n, const float *dy, const float *x, float inv_s,
                                 float zp, float lo, float hi, float *dx);
/* *mn = min(x) and *mx = max(x), NaN ignored, +inf / -inf for none, a zero as +0 */
typedef void (*et_f32_fq_minmax_fn)(int64_t n, const float *x, float *mn, float *mx);

typedef struct et_f32_fq_variant {
    et_variant_head head;
    et_f32_fq_fwd_fn fwd;
    et_f32_fq_bwd_fn bwd;
    et_f32_fq_minmax_fn minmax;
} et_f32_fq_variant;
extern const et_f32_fq_variant et_f32_fq_variants[];

void et_f32_fq_fwd__ref(int64_t n, const float *x, float s, float inv_s, float zp, float lo,
                        float hi, float *y);
void et_f32_fq_bwd__ref(int64_t n, const float *dy, const float *x, float inv_s, float zp,
                        float lo, float hi, float *dx);
void et_f32_fq_minmax__ref(int64_t n, const float *x, float *mn, float *mx);

/* v, with a zero (either sign) as +0: the minmax rule above. */
static inline float et_fq_plus_zero(float v) { return v == 0.0f ? 0.0f : v; }

#endif
