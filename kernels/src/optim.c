/* edgetrain — optimizer updates: SGD (momentum, dampening, nesterov, L2 / L1 decay) and
 * Adam / AdamW, following torch.optim's single-tensor (foreach=False) path:
 *   scalar factors (bias corrections, step size) in double, the elementwise loop in float,
 *   m.lerp_(g, 1 - beta1); v.mul_(beta2).addcmul_(g, g, 1 - beta2);
 *   denom = sqrt(v) / sqrt(bc2) + eps; p.addcdiv_(m, denom, -lr / bc1).
 * SGD: one force-inlined loop compiled three ways (baseline, AVX2, AVX-512). Adam: a scalar
 * element function (__ref, tails) and explicit AVX2 / AVX-512 / NEON intrinsics.
 * FedProx: with an anchor (the round's global weights) both add the gradient of
 * prox_mu/2 * ||p - anchor||^2, g += prox_mu * (p - anchor), first (before weight decay), as
 * autograd of loss + proximal term would.
 */
#include <math.h>

#include "misc_internal.h"
#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>
#endif
#if defined(ET_HAVE_NEON)
#include <arm_neon.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ET_INLINE static inline __attribute__((always_inline))
#else
#define ET_INLINE static inline
#endif

/* Elements per chunk at least: a plain SGD chunk of 8192 floats moves ~100 KB (a couple of us),
 * about what handing it to a spinning worker costs; updates of 16k-32k floats (LeNet's conv2,
 * MobileNetV2's middle 1x1 convs) split too. Any split gives the same bits (elementwise). */
#define OPT_GRAIN 8192

ET_INLINE void sgd_body(const et_sgd_coef *k, int64_t n, float *ET_RESTRICT param,
                        const float *ET_RESTRICT grad, float *ET_RESTRICT buf,
                        const float *ET_RESTRICT anchor) {
    const float wd = k->weight_decay, mom = k->momentum, omd = k->one_minus_damp;
    const float neg_lr = k->neg_lr, mu = k->prox_mu;
    const int use_wd = wd != 0.0f, l1 = k->l1, use_mom = mom != 0.0f;
    const int first = k->first_step, nesterov = k->nesterov, use_prox = anchor && mu != 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float p = param[i], g = grad[i];
        if (use_prox) g = g + mu * (p - anchor[i]);
        if (use_wd) {
            float sp = p > 0.0f ? 1.0f : (p < 0.0f ? -1.0f : 0.0f);
            g = g + wd * (l1 ? sp : p);
        }
        if (use_mom) {
            float b = first ? g : buf[i] * mom + omd * g;
            buf[i] = b;
            g = nesterov ? g + mom * b : b;
        }
        param[i] = p + neg_lr * g;
    }
}

/* One Adam element, in PyTorch's order; shared by __ref and the SIMD tails so every variant
 * rounds identically (no FMA contraction: -std=c99 implies -ffp-contract=off). */
ET_INLINE void adam_elem(const et_adam_coef *k, float *param, const float *grad, float *m,
                         float *v, const float *anchor) {
    float p = *param, g = *grad;
    if (anchor) g = g + k->prox_mu * (p - *anchor); /* FedProx */
    if (k->decay_mul != 1.0f) p = p * k->decay_mul; /* AdamW */
    if (k->weight_decay != 0.0f) g = g + k->weight_decay * p; /* Adam L2 */
    float mi = *m, d = g - mi;
    mi = fabsf(k->w1) < 0.5f ? mi + k->w1 * d : g - d * (1.0f - k->w1); /* torch.lerp */
    float vi = *v * k->beta2 + k->one_minus_beta2 * g * g;
    float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
    *m = mi;
    *v = vi;
    *param = p + k->neg_step_size * (mi / denom);
}

void et_f32_sgd_update__ref(const et_sgd_coef *k, int64_t n, float *param, const float *grad,
                            float *buf, const float *anchor) {
    sgd_body(k, n, param, grad, buf, anchor);
}
void et_f32_adam_update__ref(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                             float *m, float *v, const float *anchor) {
    for (int64_t i = 0; i < n; i++) adam_elem(k, param + i, grad + i, m + i, v + i, anchor ? anchor + i : NULL);
}
#if defined(ET_HAVE_X86_SIMD)
ET_TARGET_AVX2 void et_f32_sgd_update__avx2(const et_sgd_coef *k, int64_t n, float *param,
                                            const float *grad, float *buf, const float *anchor) {
    sgd_body(k, n, param, grad, buf, anchor);
}
/* Adam with explicit intrinsics: gcc keeps sqrtf's errno branch (-fmath-errno is the default)
 * and then does not vectorise the loop. Same operations and order as adam_elem. */
ET_TARGET_AVX2 void et_f32_adam_update__avx2(const et_adam_coef *k, int64_t n, float *param,
                                             const float *grad, float *m, float *v,
                                             const float *anchor) {
    const int small_w = fabsf(k->w1) < 0.5f;
    const __m256 dm = _mm256_set1_ps(k->decay_mul), wd = _mm256_set1_ps(k->weight_decay);
    const __m256 lw = _mm256_set1_ps(small_w ? k->w1 : 1.0f - k->w1);
    const __m256 b2 = _mm256_set1_ps(k->beta2), omb2 = _mm256_set1_ps(k->one_minus_beta2);
    const __m256 bc2s = _mm256_set1_ps(k->bc2_sqrt), eps = _mm256_set1_ps(k->eps);
    const __m256 ns = _mm256_set1_ps(k->neg_step_size), mu = _mm256_set1_ps(k->prox_mu);
    const int use_decay = k->decay_mul != 1.0f, use_wd = k->weight_decay != 0.0f;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = _mm256_loadu_ps(param + i), g = _mm256_loadu_ps(grad + i);
        if (anchor) g = _mm256_add_ps(g, _mm256_mul_ps(mu, _mm256_sub_ps(p, _mm256_loadu_ps(anchor + i))));
        if (use_decay) p = _mm256_mul_ps(p, dm);
        if (use_wd) g = _mm256_add_ps(g, _mm256_mul_ps(wd, p));
        __m256 mi = _mm256_loadu_ps(m + i), d = _mm256_sub_ps(g, mi);
        mi = small_w ? _mm256_add_ps(mi, _mm256_mul_ps(lw, d)) : _mm256_sub_ps(g, _mm256_mul_ps(d, lw));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2),
                                  _mm256_mul_ps(_mm256_mul_ps(omb2, g), g));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2s), eps);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(param + i, _mm256_add_ps(p, _mm256_mul_ps(ns, _mm256_div_ps(mi, denom))));
    }
    for (; i < n; i++) adam_elem(k, param + i, grad + i, m + i, v + i, anchor ? anchor + i : NULL);
}
ET_TARGET_AVX512 void et_f32_sgd_update__avx512(const et_sgd_coef *k, int64_t n, float *param,
                                                const float *grad, float *buf,
                                                const float *anchor) {
    sgd_body(k, n, param, grad, buf, anchor);
}
ET_TARGET_AVX512 void et_f32_adam_update__avx512(const et_adam_coef *k, int64_t n, float *param,
                                                 const float *grad, float *m, float *v,
                                                 const float *anchor) {
    const int small_w = fabsf(k->w1) < 0.5f;
    const __m512 dm = _mm512_set1_ps(k->decay_mul), wd = _mm512_set1_ps(k->weight_decay);
    const __m512 lw = _mm512_set1_ps(small_w ? k->w1 : 1.0f - k->w1);
    const __m512 b2 = _mm512_set1_ps(k->beta2), omb2 = _mm512_set1_ps(k->one_minus_beta2);
    const __m512 bc2s = _mm512_set1_ps(k->bc2_sqrt), eps = _mm512_set1_ps(k->eps);
    const __m512 ns = _mm512_set1_ps(k->neg_step_size), mu = _mm512_set1_ps(k->prox_mu);
    const int use_decay = k->decay_mul != 1.0f, use_wd = k->weight_decay != 0.0f;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 p = _mm512_maskz_loadu_ps(mk, param + i), g = _mm512_maskz_loadu_ps(mk, grad + i);
        if (anchor)
            g = _mm512_add_ps(g, _mm512_mul_ps(mu, _mm512_sub_ps(p, _mm512_maskz_loadu_ps(mk, anchor + i))));
        if (use_decay) p = _mm512_mul_ps(p, dm);
        if (use_wd) g = _mm512_add_ps(g, _mm512_mul_ps(wd, p));
        __m512 mi = _mm512_maskz_loadu_ps(mk, m + i), d = _mm512_sub_ps(g, mi);
        mi = small_w ? _mm512_add_ps(mi, _mm512_mul_ps(lw, d)) : _mm512_sub_ps(g, _mm512_mul_ps(d, lw));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, v + i), b2),
                                  _mm512_mul_ps(_mm512_mul_ps(omb2, g), g));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2s), eps);
        _mm512_mask_storeu_ps(m + i, mk, mi);
        _mm512_mask_storeu_ps(v + i, mk, vi);
        _mm512_mask_storeu_ps(param + i, mk,
                              _mm512_add_ps(p, _mm512_mul_ps(ns, _mm512_div_ps(mi, denom))));
    }
}
#endif

#if defined(ET_HAVE_NEON)
void et_f32_adam_update__neon(const et_adam_coef *k, int64_t n, float *param, const float *grad,
                              float *m, float *v, const float *anchor) {
    const int small_w = fabsf(k->w1) < 0.5f;
    const float32x4_t dm = vdupq_n_f32(k->decay_mul), wd = vdupq_n_f32(k->weight_decay);
    const float32x4_t lw = vdupq_n_f32(small_w ? k->w1 : 1.0f - k->w1);
    const float32x4_t b2 = vdupq_n_f32(k->beta2), omb2 = vdupq_n_f32(k->one_minus_beta2);
    const float32x4_t bc2s = vdupq_n_f32(k->bc2_sqrt), eps = vdupq_n_f32(k->eps);
    const float32x4_t ns = vdupq_n_f32(k->neg_step_size), mu = vdupq_n_f32(k->prox_mu);
    const int use_decay = k->decay_mul != 1.0f, use_wd = k->weight_decay != 0.0f;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t p = vld1q_f32(param + i), g = vld1q_f32(grad + i);
        if (anchor) g = vaddq_f32(g, vmulq_f32(mu, vsubq_f32(p, vld1q_f32(anchor + i))));
        if (use_decay) p = vmulq_f32(p, dm);
        if (use_wd) g = vaddq_f32(g, vmulq_f32(wd, p));
        float32x4_t mi = vld1q_f32(m + i), d = vsubq_f32(g, mi);
        mi = small_w ? vaddq_f32(mi, vmulq_f32(lw, d)) : vsubq_f32(g, vmulq_f32(d, lw));
        float32x4_t vi = vaddq_f32(vmulq_f32(vld1q_f32(v + i), b2), vmulq_f32(vmulq_f32(omb2, g), g));
        float32x4_t denom = vaddq_f32(vdivq_f32(vsqrtq_f32(vi), bc2s), eps);
        vst1q_f32(m + i, mi);
        vst1q_f32(v + i, vi);
        vst1q_f32(param + i, vaddq_f32(p, vmulq_f32(ns, vdivq_f32(mi, denom))));
    }
    for (; i < n; i++) adam_elem(k, param + i, grad + i, m + i, v + i, anchor ? anchor + i : NULL);
}
#endif

/* Variant table (variant_internal.h). SGD on NEON is the __ref loop (auto-vectorised). */
const et_f32_optim_variant et_f32_optim_variants[] = {
    {{ET_ISA_REF, "ref"}, et_f32_sgd_update__ref, et_f32_adam_update__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_f32_sgd_update__avx2, et_f32_adam_update__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_f32_sgd_update__avx512, et_f32_adam_update__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, et_f32_sgd_update__ref, et_f32_adam_update__neon},
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL}, /* end */
};

/* One contiguous range of the parameters per chunk (elementwise: any split gives the same bits). */
typedef struct sgd_job {
    const et_f32_optim_variant *row;
    const et_sgd_coef *k;
    float *param;
    const float *grad;
    float *mom;
    const float *anchor;
} sgd_job;

static void sgd_range(void *ctx, int64_t b, int64_t e, int tid) {
    const sgd_job *j = (const sgd_job *)ctx;
    (void)tid;
    j->row->sgd(j->k, e - b, j->param + b, j->grad + b, j->mom ? j->mom + b : NULL,
                j->anchor ? j->anchor + b : NULL);
}

typedef struct adam_job {
    const et_f32_optim_variant *row;
    const et_adam_coef *k;
    float *param;
    const float *grad;
    float *m, *v;
    const float *anchor;
} adam_job;

static void adam_range(void *ctx, int64_t b, int64_t e, int tid) {
    const adam_job *j = (const adam_job *)ctx;
    (void)tid;
    j->row->adam(j->k, e - b, j->param + b, j->grad + b, j->m + b, j->v + b,
                 j->anchor ? j->anchor + b : NULL);
}

et_status et_f32_sgd_update(int64_t n, float *param, const float *grad, float *momentum_buf,
                            const float *prox_anchor, float lr, float momentum, float dampening,
                            int nesterov, float weight_decay, int l1, float prox_mu, int first_step,
                            int nthreads) {
    if (n < 0) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!param || !grad || (momentum != 0.0f && !momentum_buf)) return ET_ERR_ARG;
    if (prox_mu != 0.0f && !prox_anchor) return ET_ERR_ARG;
    /* torch: "Nesterov momentum requires a momentum and zero dampening" */
    if (nesterov && (momentum <= 0.0f || dampening != 0.0f)) return ET_ERR_ARG;
    et_sgd_coef k;
    k.neg_lr = (float)(-(double)lr);
    k.momentum = momentum;
    k.one_minus_damp = (float)(1.0 - (double)dampening);
    k.weight_decay = weight_decay;
    k.nesterov = nesterov != 0;
    k.l1 = l1 != 0;
    k.first_step = first_step != 0;
    k.prox_mu = prox_mu;
    if (prox_mu == 0.0f) prox_anchor = NULL;
    const et_f32_optim_variant *row = ET_VARIANT_PICK(et_f32_optim_variants);
    sgd_job j = {row, &k, param, grad, momentum_buf, prox_anchor};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, OPT_GRAIN), nthreads, sgd_range, &j);
    return ET_OK;
}

et_status et_f32_adam_update(int64_t n, float *param, const float *grad, float *m, float *v,
                             const float *prox_anchor, float lr, float beta1, float beta2, float eps,
                             float weight_decay, int decoupled, float prox_mu, int64_t step,
                             int nthreads) {
    if (n < 0 || step < 1) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!param || !grad || !m || !v) return ET_ERR_ARG;
    if (prox_mu != 0.0f && !prox_anchor) return ET_ERR_ARG;
    const double b1 = beta1, b2 = beta2, dlr = lr;
    const double bc1 = 1.0 - pow(b1, (double)step);
    const double bc2 = 1.0 - pow(b2, (double)step);
    et_adam_coef k;
    k.decay_mul = (decoupled && weight_decay != 0.0f) ? (float)(1.0 - dlr * weight_decay) : 1.0f;
    k.weight_decay = (!decoupled) ? weight_decay : 0.0f;
    k.w1 = (float)(1.0 - b1);
    k.beta2 = beta2;
    k.one_minus_beta2 = (float)(1.0 - b2);
    k.bc2_sqrt = (float)sqrt(bc2);
    k.eps = eps;
    k.neg_step_size = (float)(-(dlr / bc1));
    k.prox_mu = prox_mu;
    if (prox_mu == 0.0f) prox_anchor = NULL;
    const et_f32_optim_variant *row = ET_VARIANT_PICK(et_f32_optim_variants);
    adam_job j = {row, &k, param, grad, m, v, prox_anchor};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, OPT_GRAIN), nthreads, adam_range, &j);
    return ET_OK;
}
