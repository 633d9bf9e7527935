/* edgetrain — internal declarations of the elementwise / normalisation / loss / optimizer
 * kernels ("misc" family): the SIMD variants of the flat loops and their scalar __ref twins,
 * plus small helpers shared by the .c files of the family. Tests call the variants directly.
 *
 * Variant contract: a variant processes the whole range [0, n) it is given, single-threaded;
 * the dispatching entry point in et_kernels.h splits the range across threads and picks the
 * variant from its family's table (variant_internal.h): et_f32_act_variants,
 * et_f32_optim_variants, et_f32_dropout_variants. __ref is plain scalar C (libm for exp/tanh)
 * and is the oracle; it is the first row of each table.
 */
#ifndef EDGETRAIN_MISC_INTERNAL_H
#define EDGETRAIN_MISC_INTERNAL_H
#include "edgetrain/et_kernels.h"
#include "variant_internal.h"

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
typedef void (*et_f32_act_fwd_fn)(et_act act, float alpha, int64_t n, const float *x, float *y);
typedef void (*et_f32_act_bwd_fn)(et_act act, float alpha, int64_t n, const float *t,
                                  const float *dy, float *dx);
typedef struct et_f32_act_variant {
    et_variant_head head;
    et_f32_act_fwd_fn fwd;
    et_f32_act_bwd_fn bwd;
} et_f32_act_variant;
extern const et_f32_act_variant et_f32_act_variants[];

/* ---- optimizers (optim.c) -------------------------------------------------------------- */
/* Scalar factors are precomputed in double by the entry point (as PyTorch does in Python)
 * and passed as floats; the loops run in float in PyTorch's operation order. __ref is the same
 * loop compiled for the baseline (SSE2 / NEON, auto-vectorised for SGD), SGD __avx2 / __avx512
 * the same body compiled with target attributes, Adam __avx2 / __avx512 / __neon intrinsics in
 * the same operation order; without FP contraction all variants are bitwise equal. */
typedef struct et_sgd_coef {
    float neg_lr;          /* -lr */
    float momentum;
    float one_minus_damp;  /* 1 - dampening */
    float weight_decay;
    int nesterov, l1, first_step;
    float prox_mu;         /* FedProx: g += prox_mu * (p - anchor) (0 when unused) */
} et_sgd_coef;

typedef struct et_adam_coef {
    float decay_mul;       /* 1 - lr * wd for AdamW (1 when unused) */
    float weight_decay;    /* wd added to the gradient for Adam (0 when unused) */
    float w1;              /* lerp weight 1 - beta1 */
    float beta2, one_minus_beta2;
    float bc2_sqrt;        /* sqrt(1 - beta2^step) */
    float eps;
    float neg_step_size;   /* -lr / (1 - beta1^step) */
    float prox_mu;         /* FedProx: g += prox_mu * (p - anchor) (0 when unused) */
} et_adam_coef;

void et_f32_sgd_update__ref(const et_sgd_coef *k, int64_t n, float *param, const float *grad,
                            float *buf, const float *anchor);
void et_f32_adam_update__ref(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                             float *m, float *v, const float *anchor);
#if defined(ET_HAVE_X86_SIMD)
void et_f32_sgd_update__avx2(const et_sgd_coef *k, int64_t n, float *param, const float *grad,
                             float *buf, const float *anchor);
void et_f32_adam_update__avx2(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                              float *m, float *v, const float *anchor);
void et_f32_sgd_update__avx512(const et_sgd_coef *k, int64_t n, float *param, const float *grad,
                               float *buf, const float *anchor);
void et_f32_adam_update__avx512(const et_adam_coef *k, int64_t n, float *param,
                                const float *grad, float *m, float *v, const float *anchor);
#endif
#if defined(ET_HAVE_NEON)
void et_f32_adam_update__neon(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                              float *m, float *v, const float *anchor);
#endif
typedef void (*et_f32_sgd_update_fn)(const et_sgd_coef *k, int64_t n, float *param,
                                     const float *grad, float *buf, const float *anchor);
typedef void (*et_f32_adam_update_fn)(const et_adam_coef *k, int64_t n, float *param,
                                      const float *grad, float *m, float *v, const float *anchor);
typedef struct et_f32_optim_variant {
    et_variant_head head;
    et_f32_sgd_update_fn sgd;
    et_f32_adam_update_fn adam;
} et_f32_optim_variant;
extern const et_f32_optim_variant et_f32_optim_variants[];

/* RMSprop and Adagrad (optim_adaptive.c): scalar __ref loops only (see the file's note). */
typedef struct et_rmsprop_coef {
    float neg_lr;          /* -lr */
    float alpha, one_minus_alpha;
    float eps, weight_decay;
    float momentum;        /* used when a momentum buffer is given */
    float prox_mu;         /* FedProx (0 when unused) */
} et_rmsprop_coef;

typedef struct et_adagrad_coef {
    float neg_clr;         /* -lr / (1 + (step - 1) * lr_decay) */
    float eps, weight_decay;
    float prox_mu;         /* FedProx (0 when unused) */
} et_adagrad_coef;

/* grad_avg NULL: not centered; buf NULL: no momentum; anchor NULL: no FedProx term. */
void et_f32_rmsprop_update__ref(const et_rmsprop_coef *k, int64_t n, float *param, const float *grad,
                                float *square_avg, float *grad_avg, float *buf, const float *anchor);
void et_f32_adagrad_update__ref(const et_adagrad_coef *k, int64_t n, float *param, const float *grad,
                                float *sum, const float *anchor);

/* ---- dropout (dropout.c) -------------------------------------------------------------- */
/* y[i] = x[i] * (keep ? scale : 0), keep = rng(key, c0 + i) >= thr, key = et_misc_rng_key(seed).
 * Integer mask, so every variant is bitwise identical to __ref. */
uint64_t et_misc_rng_key(uint64_t seed);
void et_f32_dropout_mask__ref(int64_t n, const float *x, float *y, uint64_t key, uint64_t c0,
                              uint32_t thr, float scale);
#if defined(ET_HAVE_X86_SIMD)
void et_f32_dropout_mask__avx2(int64_t n, const float *x, float *y, uint64_t key, uint64_t c0,
                               uint32_t thr, float scale);
void et_f32_dropout_mask__avx512(int64_t n, const float *x, float *y, uint64_t key, uint64_t c0,
                                 uint32_t thr, float scale);
#endif
typedef void (*et_f32_dropout_mask_fn)(int64_t n, const float *x, float *y, uint64_t key,
                                       uint64_t c0, uint32_t thr, float scale);
typedef struct et_f32_dropout_variant {
    et_variant_head head;
    et_f32_dropout_mask_fn mask;
} et_f32_dropout_variant;
extern const et_f32_dropout_variant et_f32_dropout_variants[];

/* ---- softmax row (softmax.c; shared with the fused cross-entropy in loss.c) --------------- */
/* y = softmax(x) or log_softmax(x) over one contiguous row (y may be NULL: only the
 * log-sum-exp is computed). Returns log(sum(exp(x))) in double. */
double et_misc_softmax_row(int64_t len, const float *ET_RESTRICT x, float *ET_RESTRICT y,
                           int log_softmax);

/* ---- helpers ---------------------------------------------------------------------------- */
/* Number of contiguous chunks to split n elementwise items into: up to
 * ET_POOL_CHUNKS_PER_THREAD per thread (dynamic hand-out balances load), but no chunk
 * smaller than `grain` items. Elementwise results do not depend on the split. */
static inline int et_misc_nchunks(int64_t n, int nthreads, int64_t grain) {
    if (nthreads <= 1 || n <= grain) return 1;
    int64_t c = n / grain, cap = (int64_t)nthreads * ET_POOL_CHUNKS_PER_THREAD;
    return (int)(c < cap ? c : cap);
}

/* Sum of a contiguous float run in double: 8 independent lanes (vectorisable without
 * -ffast-math) combined in a fixed order. */
static inline double et_misc_sum_f64(const float *ET_RESTRICT x, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j];
    double tail = 0.0;
    for (; i < n; i++) tail += (double)x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

/* Fixed number of partial sums used by the loss reductions: the partition of rows does not
 * depend on the thread count, and partials are combined in order, so loss values are bitwise
 * identical for every thread count. */
#define ET_MISC_NPART 64
/* ---- unary math (binary.c: __ref; unary_simd.c: the fast rows) -------------------------- */
/* y[i] = fn(x[i]; a, b) over [0, n), single-threaded; y == x allowed. The fast rows compute
 * exp and erf in double with polynomials (same double value as libm's to ~1e-15, then rounded
 * to float: equal to __ref but for rare last-bit differences) and run __ref for the others. */
void et_f32_unary__ref(et_unary fn, float a, float b, int64_t n, const float *x, float *y);
#if defined(ET_HAVE_X86_SIMD)
void et_f32_unary__avx2(et_unary fn, float a, float b, int64_t n, const float *x, float *y);
void et_f32_unary__avx512(et_unary fn, float a, float b, int64_t n, const float *x, float *y);
#endif
#if defined(ET_HAVE_NEON)
void et_f32_unary__neon(et_unary fn, float a, float b, int64_t n, const float *x, float *y);
#endif
typedef void (*et_f32_unary_fn)(et_unary fn, float a, float b, int64_t n, const float *x,
                                float *y);
typedef struct et_f32_unary_variant {
    et_variant_head head;
    et_f32_unary_fn run;
} et_f32_unary_variant;
extern const et_f32_unary_variant et_f32_unary_variants[];

/* ---- softmax over contiguous rows (softmax.c: __ref; softmax_simd.c: the fast rows) ----- */
/* rows [r0, r1) of x[rows, len] (inner == 1); single-threaded. */
void et_f32_softmax_rows_fwd__ref(int64_t r0, int64_t r1, int64_t len, const float *x, float *y,
                                  int log_softmax);
void et_f32_softmax_rows_bwd__ref(int64_t r0, int64_t r1, int64_t len, const float *y,
                                  const float *dy, float *dx, int log_softmax);
#if defined(ET_HAVE_X86_SIMD)
void et_f32_softmax_rows_fwd__avx2(int64_t r0, int64_t r1, int64_t len, const float *x, float *y,
                                   int log_softmax);
void et_f32_softmax_rows_bwd__avx2(int64_t r0, int64_t r1, int64_t len, const float *y,
                                   const float *dy, float *dx, int log_softmax);
void et_f32_softmax_rows_fwd__avx512(int64_t r0, int64_t r1, int64_t len, const float *x,
                                     float *y, int log_softmax);
void et_f32_softmax_rows_bwd__avx512(int64_t r0, int64_t r1, int64_t len, const float *y,
                                     const float *dy, float *dx, int log_softmax);
#endif
#if defined(ET_HAVE_NEON)
void et_f32_softmax_rows_fwd__neon(int64_t r0, int64_t r1, int64_t len, const float *x, float *y,
                                   int log_softmax);
void et_f32_softmax_rows_bwd__neon(int64_t r0, int64_t r1, int64_t len, const float *y,
                                   const float *dy, float *dx, int log_softmax);
#endif
typedef void (*et_f32_softmax_rows_fwd_fn)(int64_t r0, int64_t r1, int64_t len, const float *x,
                                           float *y, int log_softmax);
typedef void (*et_f32_softmax_rows_bwd_fn)(int64_t r0, int64_t r1, int64_t len, const float *y,
                                           const float *dy, float *dx, int log_softmax);
typedef struct et_f32_softmax_rows_variant {
    et_variant_head head;
    et_f32_softmax_rows_fwd_fn fwd;
    et_f32_softmax_rows_bwd_fn bwd;
} et_f32_softmax_rows_variant;
extern const et_f32_softmax_rows_variant et_f32_softmax_rows_variants[];
#endif
