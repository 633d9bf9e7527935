/* edgetrain — internal declarations of the row-normalisation, max-reduction and batched-matmul
 * kernels (layernorm.c, reduce_max.c, bmm.c): the single-threaded __ref bodies the dispatching
 * entry points of et_kernels.h split across threads. Tests call them directly.
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
#endif
