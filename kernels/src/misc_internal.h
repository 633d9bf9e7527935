/* edgetrain — internal declarations of the elementwise / normalisation / loss / optimizer
 * kernels ("misc" family): the SIMD variants of the flat loops and their scalar __ref twins,
 * plus small helpers shared by the .c files of the family. Tests call the variants directly.
 *
 * Variant contract: a variant processes the whole range [0, n) it is given, single-threaded;
 * the dispatching entry point in et_kernels.h splits the range across threads and picks the
 * variant from et_get_isa(). __ref is plain scalar C (libm for exp/tanh) and is the oracle.
 */
#ifndef EDGETRAIN_MISC_INTERNAL_H
#define EDGETRAIN_MISC_INTERNAL_H
#include "edgetrain/et_kernels.h"

/* ---- activations (activation.c) ------------------------------------------------------- */
void et_f32_act_fwd__ref(et_act act, float alpha, int64_t n, const float *x, float *y);
void et_f32_act_bwd__ref(et_act act, float alpha, int64_t n, const float *t, const float *dy,
                         float *dx);
/* Portable fast versions (polynomial exp/tanh, written so the compiler auto-vectorises them);
 * __neon is the generic body compiled for the aarch64 baseline (Advanced SIMD). */
#if defined(ET_HAVE_X86_SIMD)
void et_f32_act_fwd__avx2(et_act act, float alpha, int64_t n, const float *x, float *y);
void et_f32_act_bwd__avx2(et_act act, float alpha, int64_t n, const float *t, const float *dy,
                          float *dx);
void et_f32_act_fwd__avx512(et_act act, float alpha, int64_t n, const float *x, float *y);
void et_f32_act_bwd__avx512(et_act act, float alpha, int64_t n, const float *t, const float *dy,
                            float *dx);
#endif
#if defined(ET_HAVE_NEON)
void et_f32_act_fwd__neon(et_act act, float alpha, int64_t n, const float *x, float *y);
void et_f32_act_bwd__neon(et_act act, float alpha, int64_t n, const float *t, const float *dy,
                          float *dx);
#endif

/* ---- optimizers (optim.c) -------------------------------------------------------------- */
/* Scalar factors are precomputed in double by the entry point (as PyTorch does in Python)
 * and passed as floats; the loops run in float. */
typedef struct et_sgd_coef {
    float neg_lr;          /* -lr */
    float momentum;
    float one_minus_damp;  /* 1 - dampening */
    float weight_decay;
    int nesterov, l1, first_step;
} et_sgd_coef;

typedef struct et_adam_coef {
    float decay_mul;       /* 1 - lr * wd for AdamW (1 when unused) */
    float weight_decay;    /* wd added to the gradient for Adam (0 when unused) */
    float w1;              /* lerp weight 1 - beta1 */
    float beta2, one_minus_beta2;
    float bc2_sqrt;        /* sqrt(1 - beta2^step) */
    float eps;
    float neg_step_size;   /* -lr / (1 - beta1^step) */
} et_adam_coef;

void et_f32_sgd_update__ref(const et_sgd_coef *k, int64_t n, float *param, const float *grad,
                            float *buf);
void et_f32_adam_update__ref(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                             float *m, float *v);
#if defined(ET_HAVE_X86_SIMD)
void et_f32_sgd_update__avx2(const et_sgd_coef *k, int64_t n, float *param, const float *grad,
                             float *buf);
void et_f32_adam_update__avx2(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                              float *m, float *v);
void et_f32_sgd_update__avx512(const et_sgd_coef *k, int64_t n, float *param, const float *grad,
                               float *buf);
void et_f32_adam_update__avx512(const et_adam_coef *k, int64_t n, float *param,
                                const float *grad, float *m, float *v);
#endif
#if defined(ET_HAVE_NEON)
void et_f32_adam_update__neon(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                              float *m, float *v);
#endif

/* ---- helpers ---------------------------------------------------------------------------- */
/* Number of contiguous chunks to split n elementwise items into: one per thread, but no chunk
 * smaller than `grain` items. Elementwise results do not depend on the split. */
static inline int et_misc_nchunks(int64_t n, int nthreads, int64_t grain) {
    if (nthreads <= 1 || n <= grain) return 1;
    int64_t c = n / grain;
    return (int)(c < nthreads ? c : nthreads);
}

/* Fixed number of partial sums used by the loss reductions: the partition of rows does not
 * depend on the thread count, and partials are combined in order, so loss values are bitwise
 * identical for every thread count. */
#define ET_MISC_NPART 64
#endif
