/* edgetrain — internal declarations of fake quantization and its observers (quant.c: the
 * __ref rows and the entry points; quant_simd.c: the SIMD rows).
 *
 * Variant table et_f32_fq_variants (variant_internal.h): single-threaded row kernels; the entry
 * points in quant.c split the work over threads (fixed chunks) and run the row of et_get_isa().
 * Every row gives __ref's bits:
 *   fwd / bwd: per element, __ref's float operations in __ref's order (the multiply by inv_s,
 *     round half to even, + zp, the two comparisons of the clamp or of the mask, - zp, * s or
 *     dy * mask), no fused multiply-add; a NaN input gives a NaN (forward) or dy * 0 (backward).
 *   minmax: the left-to-right fold a = fminf(a, x[i]) from +inf (b = fmaxf(b, x[i]) from -inf).
 *     Minimum and maximum are exact, so lanes and chunks may reduce in any order, except for
 *     two details of fminf / fmaxf that depend on the C library: NaN is ignored (the vector
 *     rows ignore it too), and the sign of a zero result (glibc x86-64: fminf(+0, -0) = +0, the
 *     first argument, so the fold keeps the first zero; aarch64 fminnm: -0 wins whatever the
 *     order). A vector row whose minimum (maximum) is a zero therefore asks et_fq_zero_fold for
 *     the sign the fold gives. The fold is associative, so per-chunk folds combined with
 *     fminf / fmaxf in chunk order equal the fold over the whole run.
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
/* *mn = the fold fminf(...fminf(+inf, x[0])..., x[n-1]), *mx likewise with fmaxf from -inf */
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

/* The fold of fminf (is_max 0) or fmaxf (1) over x[0..n) when its result is a zero: the zero
 * (+0 or -0) that fold gives, from the zeros of x in order and this C library's fminf / fmaxf
 * on (+0, -0) and (-0, +0). Compiled in quant.c with __ref's flags. */
float et_fq_zero_fold(int64_t n, const float *x, int is_max);

#endif
