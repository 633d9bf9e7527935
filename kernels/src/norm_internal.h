/* edgetrain — internal declarations of the row-normalisation, max-reduction and batched-matmul
 * kernels (layernorm.c, reduce_max.c, bmm.c) and of the BatchNorm training kernels (batchnorm.c):
 * the single-threaded __ref bodies the dispatching entry points of et_kernels.h split across
 * threads, and their variant tables. Tests call them directly.
 */
#ifndef EDGETRAIN_NORM_INTERNAL_H
#define EDGETRAIN_NORM_INTERNAL_H
#include "edgetrain/et_kernels.h"

/* rows [r0, r1) of x[rows, k]: y = (x - mean) * invstd, invstd[r] = 1 / sqrt(var + eps). */
void et_f32_normalize_rows_fwd__ref(int64_t r0, int64_t r1, int64_t k, float eps, const float *x,
                                    float *y, float *invstd);
/* rows [r0, r1): dx = invstd * (dy - mean(dy) - y * mean(dy * y)). */
void et_f32_normalize_rows_bwd__ref(int64_t r0, int64_t r1, int64_t k, const float *y,
                                    const float *invstd, const float *dy, float *dx);
/* columns [j0, j1) of the [outer, len, inner] view, outer index o: y[o, j] = max (or min) over
 * len, idx[o, j] its first position (either output may be NULL). NaN wins, as in PyTorch. */
void et_f32_max_axis__ref(int64_t o, int64_t j0, int64_t j1, int64_t len, int64_t inner,
                          int is_min, const float *x, float *y, int32_t *idx);
/* several axes: ys has 1 on the reduced dims (same rank as xs). */
void et_f32_reduce_max__ref(int nd, const int64_t *xs, const float *x, const int64_t *ys, float *y,
                            int is_min);
/* SIMD rows of the two normalize kernels (layernorm_simd.c), bit-identical to __ref; the entry
 * points of layernorm.c run the row of et_f32_normrows_variants chosen by et_get_isa(). */
#include "variant_internal.h"
#if defined(ET_HAVE_X86_SIMD)
void et_f32_normalize_rows_fwd__avx2(int64_t r0, int64_t r1, int64_t k, float eps, const float *x,
                                     float *y, float *invstd);
void et_f32_normalize_rows_bwd__avx2(int64_t r0, int64_t r1, int64_t k, const float *y,
                                     const float *invstd, const float *dy, float *dx);
void et_f32_normalize_rows_fwd__avx512(int64_t r0, int64_t r1, int64_t k, float eps,
                                       const float *x, float *y, float *invstd);
void et_f32_normalize_rows_bwd__avx512(int64_t r0, int64_t r1, int64_t k, const float *y,
                                       const float *invstd, const float *dy, float *dx);
#endif
#if defined(ET_HAVE_NEON)
void et_f32_normalize_rows_fwd__neon(int64_t r0, int64_t r1, int64_t k, float eps, const float *x,
                                     float *y, float *invstd);
void et_f32_normalize_rows_bwd__neon(int64_t r0, int64_t r1, int64_t k, const float *y,
                                     const float *invstd, const float *dy, float *dx);
#endif
typedef void (*et_f32_normalize_rows_fwd_fn)(int64_t r0, int64_t r1, int64_t k, float eps,
                                             const float *x, float *y, float *invstd);
typedef void (*et_f32_normalize_rows_bwd_fn)(int64_t r0, int64_t r1, int64_t k, const float *y,
                                             const float *invstd, const float *dy, float *dx);
typedef struct et_f32_normrows_variant {
    et_variant_head head;
    et_f32_normalize_rows_fwd_fn fwd;
    et_f32_normalize_rows_bwd_fn bwd;
} et_f32_normrows_variant;
extern const et_f32_normrows_variant et_f32_normrows_variants[];

/* ---- BatchNorm training (batchnorm.c; SIMD rows in batchnorm_simd.c) ---------------------
 * The per-element kernels of the training forward / backward, single-threaded; batchnorm.c
 * splits images and channels over threads and runs the et_f32_bn_variants row picked by
 * et_get_isa().
 * __ref defines the bits: the plane sums use 8 double lanes (element j of each run of 8 in
 * lane j, the tail after, combined ((0+4)+(1+5))+((2+6)+(3+7))), the other kernels are per
 * element (double accumulators over the images, float transforms), so vector rows doing the
 * same operations per lane give the same bits on every ISA. */
typedef struct et_f32_bn_variant {
    et_variant_head head;
    /* sum of x[0..hw) (et_misc_sum_f64's order) */
    double (*plane_sum)(int64_t hw, const float *x);
    /* sum of (x - mean)^2, or of dy * (x - mean) when dy != NULL (tail into lane 0) */
    double (*plane_dev)(int64_t hw, const float *x, const float *dy, double mean);
    /* y = x * a + s */
    void (*affine)(int64_t len, const float *x, float a, float s, float *y);
    /* the same with per-element a[j], s[j] */
    void (*affine_v)(int64_t len, const float *x, const float *a, const float *s, float *y);
    /* over the n images i (x + i * is, in order): acc[j] += x[j] */
    void (*acc_sum)(int64_t n, int64_t is, int64_t len, const float *x, double *acc);
    /* acc[j] += (x[j] - mean[j])^2 */
    void (*acc_sqdev)(int64_t n, int64_t is, int64_t len, const float *x, const double *mean,
                      double *acc);
    /* as[j] += dy[j]; ad[j] += dy[j] * (x[j] - mean[j]) (in double; dy + i * is) */
    void (*acc_bwd)(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                    const float *mean, double *as, double *ad);
    /* dx = (dy - gm - (x - mean) * pr) * gs (float) */
    void (*dx)(int64_t len, const float *x, const float *dy, float gm, float mean, float pr,
               float gs, float *dx);
    /* the same with per-element gm, mean, pr, gs */
    void (*dx_v)(int64_t len, const float *x, const float *dy, const float *gm, const float *mean,
                 const float *pr, const float *gs, float *dx);
    /* plane_sum(dy) and plane_dev(x, dy, mean) in one pass (the same bits) */
    void (*plane_bwd)(int64_t hw, const float *x, const float *dy, double mean, double *sum,
                      double *dot);
    /* The fused relu / relu6 (act is ET_ACT_RELU or ET_ACT_RELU6): y = et_bn_act_(x * a + s) */
    void (*affine_act)(int64_t len, const float *x, float a, float s, et_act act, float *y);
    void (*affine_v_act)(int64_t len, const float *x, const float *a, const float *s, et_act act,
                         float *y);
    /* acc_bwd, dx, dx_v and plane_bwd on dy masked from t (et_bn_mask_), the same bits as the
     * unmasked kernel on act_bwd's output */
    void (*acc_bwd_m)(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                      const float *t, et_act act, const float *mean, double *as, double *ad);
    void (*dx_m)(int64_t len, const float *x, const float *dy, const float *t, et_act act,
                 float gm, float mean, float pr, float gs, float *dx);
    void (*dx_v_m)(int64_t len, const float *x, const float *dy, const float *t, et_act act,
                   const float *gm, const float *mean, const float *pr, const float *gs,
                   float *dx);
    void (*plane_bwd_m)(int64_t hw, const float *x, const float *dy, const float *t, et_act act,
                        double mean, double *sum, double *dot);
    /* acc_bwd_m's sums (the same bits), looped for short rows (the small-plane blocks) */
    void (*acc_bwd_mr)(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                       const float *t, et_act act, const float *mean, double *as, double *ad);
    /* Per channel q of a block of nc (the small-plane blocks' factors, the scalar expressions
     * of bn_fwd_combine / bn_bwd_combine; division and square root are correctly rounded, so
     * a lane gives the scalar bits): q_out[q] = s[q] / d */
    void (*div)(int64_t nc, const double *s, double d, double *q_out);
    /* invstd = 1 / sqrt(var + eps); alpha = invstd * gamma; a = (float)alpha,
     * sh = (float)(beta - mean * alpha) (gamma / beta NULL: 1 / 0) */
    void (*fwd_factors)(int64_t nc, const double *mean, const double *var, double eps,
                        const float *gamma, const float *beta, double *invstd, float *a,
                        float *sh);
    /* with is = (double)invstd[q]: dgamma = (float)(dot * is), dbeta = (float)sum (either may
     * be NULL); gm = (float)(sum / count), pr = (float)(dot * is * is / count) (frozen: 0);
     * gs = (float)(is * gamma) */
    void (*bwd_factors)(int64_t nc, const double *sum, const double *dot, double count,
                        const float *invstd, const float *gamma, int frozen, float *dgamma,
                        float *dbeta, float *gm, float *pr, float *gs);
} et_f32_bn_variant;

/* The act op's relu / relu6 (activation.c) on one float: v < 0 -> 0 (relu: -0 and NaN pass);
 * v <= 0 -> +0, v >= 6 -> 6 (relu6: NaN passes). */
static inline float et_bn_act_(et_act act, float v) {
    if (act == ET_ACT_RELU6) return v <= 0.0f ? 0.0f : (v >= 6.0f ? 6.0f : v);
    if (act == ET_ACT_RELU) return v < 0.0f ? 0.0f : v;
    return v;
}
/* act_bwd's relu / relu6 on dy g from the act's output t: +0 where t <= 0 (relu6: or t >= 6),
 * else g (NaN t passes g). */
static inline float et_bn_mask_(et_act act, float t, float g) {
    if (act == ET_ACT_RELU6) return (t <= 0.0f || t >= 6.0f) ? 0.0f : g;
    if (act == ET_ACT_RELU) return t <= 0.0f ? 0.0f : g;
    return g;
}
extern const et_f32_bn_variant et_f32_bn_variants[];
/* The image groups of the training passes' statistics (batchnorm.c): group g of n images is
 * et_thread_range(n, g, groups); a function of the shape only, so are the bits. */
int64_t et_f32_bn_groups(int64_t n, int64_t hw);
/* the __ref row's kernels (batchnorm.c) */
double et_f32_bn_plane_sum__ref(int64_t hw, const float *x);
double et_f32_bn_plane_dev__ref(int64_t hw, const float *x, const float *dy, double mean);
void et_f32_bn_affine__ref(int64_t len, const float *x, float a, float s, float *y);
void et_f32_bn_affine_v__ref(int64_t len, const float *x, const float *a, const float *s, float *y);
void et_f32_bn_acc_sum__ref(int64_t n, int64_t is, int64_t len, const float *x, double *acc);
void et_f32_bn_acc_sqdev__ref(int64_t n, int64_t is, int64_t len, const float *x,
                              const double *mean, double *acc);
void et_f32_bn_acc_bwd__ref(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                            const float *mean, double *as, double *ad);
void et_f32_bn_dx__ref(int64_t len, const float *x, const float *dy, float gm, float mean,
                       float pr, float gs, float *dx);
void et_f32_bn_dx_v__ref(int64_t len, const float *x, const float *dy, const float *gm,
                         const float *mean, const float *pr, const float *gs, float *dx);
void et_f32_bn_plane_bwd__ref(int64_t hw, const float *x, const float *dy, double mean,
                              double *sum, double *dot);
void et_f32_bn_affine_act__ref(int64_t len, const float *x, float a, float s, et_act act,
                               float *y);
void et_f32_bn_affine_v_act__ref(int64_t len, const float *x, const float *a, const float *s,
                                 et_act act, float *y);
void et_f32_bn_acc_bwd_m__ref(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                              const float *t, et_act act, const float *mean, double *as,
                              double *ad);
void et_f32_bn_dx_m__ref(int64_t len, const float *x, const float *dy, const float *t, et_act act,
                         float gm, float mean, float pr, float gs, float *dx);
void et_f32_bn_dx_v_m__ref(int64_t len, const float *x, const float *dy, const float *t,
                           et_act act, const float *gm, const float *mean, const float *pr,
                           const float *gs, float *dx);
void et_f32_bn_plane_bwd_m__ref(int64_t hw, const float *x, const float *dy, const float *t,
                                et_act act, double mean, double *sum, double *dot);
void et_f32_bn_div__ref(int64_t nc, const double *s, double d, double *q_out);
void et_f32_bn_fwd_factors__ref(int64_t nc, const double *mean, const double *var, double eps,
                                const float *gamma, const float *beta, double *invstd, float *a,
                                float *sh);
void et_f32_bn_bwd_factors__ref(int64_t nc, const double *sum, const double *dot, double count,
                                const float *invstd, const float *gamma, int frozen,
                                float *dgamma, float *dbeta, float *gm, float *pr, float *gs);
#endif
