/* edgetrain — elementwise activations, forward and backward (PyTorch semantics).
 *
 * __ref is scalar C with libm (the test oracle). The fast variants share one body,
 * act_*_body(), written as simple loops the compiler auto-vectorises; sigmoid and tanh use a
 * polynomial exp (Cephes expf, ~2 ulp) instead of libm so they vectorise too. The body is
 * force-inlined into target("avx2") / target("avx512...") wrappers on x86 and compiled for the
 * baseline on aarch64 (__neon), giving one source and one semantics for every ISA.
 * hardswish backward as current PyTorch (checked against torch 2.13): 0 for x <= -3, dy for
 * x >= 3, dy * (x / 3 + 0.5) strictly inside (so the kinks take the outer slope).
 * Aliasing: y == x (fwd) and dx == dy (bwd) are allowed; each element is read before it is
 * written at the same index, so the restrict-qualified loops stay correct.
 */
#include <math.h>
#include <string.h>

#include "misc_internal.h"

/* Without this GCC keeps the selects of relu/leaky/sigmoid/hardswish as branches (a multiply in
 * one arm "may trap") and does not vectorise them. We never read FP exception flags; values
 * and evaluation order are unchanged. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ET_INLINE static inline __attribute__((always_inline))
#else
#define ET_INLINE static inline
#endif

/* ---- scalar reference ------------------------------------------------------------------ */
static float hardswish_ref(float x) {
    return x * fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f;
}

void et_f32_act_fwd__ref(et_act act, float alpha, int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], r;
        switch (act) {
        case ET_ACT_RELU: r = v < 0.0f ? 0.0f : v; break;
        case ET_ACT_RELU6: r = v <= 0.0f ? 0.0f : (v >= 6.0f ? 6.0f : v); break;
        case ET_ACT_LEAKY_RELU: r = v > 0.0f ? v : v * alpha; break;
        case ET_ACT_SIGMOID: r = (float)(1.0 / (1.0 + exp(-(double)v))); break;
        case ET_ACT_TANH: r = tanhf(v); break;
        case ET_ACT_HARDSWISH: r = isnan(v) ? v : hardswish_ref(v); break;
        default: r = v; break;
        }
        y[i] = r;
    }
}

void et_f32_act_bwd__ref(et_act act, float alpha, int64_t n, const float *t, const float *dy,
                         float *dx) {
    for (int64_t i = 0; i < n; i++) {
        float v = t[i], g = dy[i], r;
        switch (act) {
        case ET_ACT_RELU: r = v <= 0.0f ? 0.0f : g; break;
        case ET_ACT_RELU6: r = (v <= 0.0f || v >= 6.0f) ? 0.0f : g; break;
        case ET_ACT_LEAKY_RELU: r = v > 0.0f ? g : g * alpha; break;
        case ET_ACT_SIGMOID: r = g * (1.0f - v) * v; break;
        case ET_ACT_TANH: r = g * (1.0f - v * v); break;
        case ET_ACT_HARDSWISH:
            r = v <= -3.0f ? 0.0f : (v < 3.0f ? g * (v / 3.0f + 0.5f) : g);
            break;
        default: r = g; break;
        }
        dx[i] = r;
    }
}

/* ---- vectorisable math ------------------------------------------------------------------ */
/* exp(a) for a <= 0 (Cephes expf polynomial). Results below exp(-87.3) flush to 0; NaN stays
 * NaN (the polynomial then runs on `lo`, so the float->int conversion below is always defined). */
ET_INLINE float exp_nonpos(float a) {
    const float lo = -87.3f;
    float ac = a >= lo ? a : lo;
    float t = ac * 1.44269504088896341f;
    float fn = (t + 12582912.0f) - 12582912.0f; /* round to nearest (|t| < 2^22) */
    int32_t n = (int32_t)fn;
    float r = (ac - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (n + 127) << 23; /* n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = p * scale;
    return a < lo ? 0.0f : (a == a ? e : a);
}

ET_INLINE float sigmoid_fast(float x) {
    float e = exp_nonpos(-fabsf(x));
    float s = 1.0f / (1.0f + e);
    float es = e * s; /* computed unconditionally so the select if-converts */
    return x >= 0.0f ? s : es;
}

ET_INLINE float tanh_fast(float x) {
    float a = fabsf(x);
    /* small |x|: Cephes tanhf odd polynomial; otherwise (1 - e) / (1 + e), e = exp(-2|x|). */
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float e = exp_nonpos(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}

/* ---- shared fast body ------------------------------------------------------------------- */
ET_INLINE void act_fwd_body(et_act act, float alpha, int64_t n, const float *ET_RESTRICT x,
                            float *ET_RESTRICT y) {
    switch (act) {
    case ET_ACT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
        break;
    case ET_ACT_RELU6:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = v <= 0.0f ? 0.0f : (v >= 6.0f ? 6.0f : v);
        }
        break;
    case ET_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i], neg = v * alpha;
            y[i] = v > 0.0f ? v : neg;
        }
        break;
    case ET_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) y[i] = sigmoid_fast(x[i]);
        break;
    case ET_ACT_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = tanh_fast(x[i]);
        break;
    case ET_ACT_HARDSWISH:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            float r = v + 3.0f;
            r = r > 0.0f ? r : 0.0f;
            r = r < 6.0f ? r : 6.0f;
            y[i] = v * r / 6.0f; /* NaN: v * r stays NaN */
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++) y[i] = x[i];
        break;
    }
}

ET_INLINE void act_bwd_body(et_act act, float alpha, int64_t n, const float *ET_RESTRICT t,
                            const float *ET_RESTRICT dy, float *ET_RESTRICT dx) {
    switch (act) {
    case ET_ACT_RELU:
        for (int64_t i = 0; i < n; i++) {
            float v = t[i], g = dy[i];
            dx[i] = v <= 0.0f ? 0.0f : g;
        }
        break;
    case ET_ACT_RELU6:
        for (int64_t i = 0; i < n; i++) {
            float v = t[i], g = dy[i];
            float r = v >= 6.0f ? 0.0f : g;
            dx[i] = v <= 0.0f ? 0.0f : r;
        }
        break;
    case ET_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            float g = dy[i], neg = g * alpha;
            dx[i] = t[i] > 0.0f ? g : neg;
        }
        break;
    case ET_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - t[i]) * t[i];
        break;
    case ET_ACT_TANH:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - t[i] * t[i]);
        break;
    case ET_ACT_HARDSWISH:
        for (int64_t i = 0; i < n; i++) {
            float v = t[i], g = dy[i];
            float mid = g * (v / 3.0f + 0.5f);
            float r = v < 3.0f ? mid : g;
            dx[i] = v <= -3.0f ? 0.0f : r;
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i];
        break;
    }
}

/* One fwd / bwd wrapper pair per ISA around the shared bodies (a macro: C has no other way
 * to compile one body under several target attributes). Declared in misc_internal.h. */
#define ACT_ISA_WRAPPERS(isa, target)                                                        \
    target void et_f32_act_fwd__##isa(et_act act, float alpha, int64_t n, const float *x,   \
                                      float *y) {                                            \
        act_fwd_body(act, alpha, n, x, y);                                                   \
    }                                                                                        \
    target void et_f32_act_bwd__##isa(et_act act, float alpha, int64_t n, const float *t,   \
                                      const float *dy, float *dx) {                          \
        act_bwd_body(act, alpha, n, t, dy, dx);                                              \
    }
#if defined(ET_HAVE_X86_SIMD)
ACT_ISA_WRAPPERS(avx2, ET_TARGET_AVX2)
ACT_ISA_WRAPPERS(avx512, ET_TARGET_AVX512)
#endif
#if defined(ET_HAVE_NEON)
ACT_ISA_WRAPPERS(neon, )
#endif

/* ---- variant table (variant_internal.h) ------------------------------------------------ */
const et_f32_act_variant et_f32_act_variants[] = {
    {{ET_ISA_REF, "ref"}, et_f32_act_fwd__ref, et_f32_act_bwd__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_f32_act_fwd__avx2, et_f32_act_bwd__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_f32_act_fwd__avx512, et_f32_act_bwd__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, et_f32_act_fwd__neon, et_f32_act_bwd__neon},
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL}, /* end */
};

#define ACT_GRAIN 8192

typedef struct act_job {
    const et_f32_act_variant *row;
    et_act act;
    float alpha;
    const float *x, *t, *dy;
    float *y, *dx;
} act_job;

static void act_fwd_range(void *ctx, int64_t b, int64_t e, int tid) {
    const act_job *k = (const act_job *)ctx;
    (void)tid;
    k->row->fwd(k->act, k->alpha, e - b, k->x + b, k->y + b);
}

static void act_bwd_range(void *ctx, int64_t b, int64_t e, int tid) {
    const act_job *k = (const act_job *)ctx;
    (void)tid;
    k->row->bwd(k->act, k->alpha, e - b, k->t ? k->t + b : NULL, k->dy + b, k->dx + b);
}

et_status et_f32_act_fwd(et_act act, float alpha, int64_t n, const float *x, float *y,
                         int nthreads) {
    if (n < 0 || (int)act < 0 || act >= ET_ACT_COUNT_) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!x || !y) return ET_ERR_ARG;
    const et_f32_act_variant *row = ET_VARIANT_PICK(et_f32_act_variants);
    act_job k = {row, act, alpha, x, NULL, NULL, y, NULL};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, ACT_GRAIN), nthreads, act_fwd_range, &k);
    return ET_OK;
}

et_status et_f32_act_bwd(et_act act, float alpha, int64_t n, const float *t, const float *dy,
                         float *dx, int nthreads) {
    if (n < 0 || (int)act < 0 || act >= ET_ACT_COUNT_) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!dy || !dx || (act != ET_ACT_NONE && !t)) return ET_ERR_ARG;
    const et_f32_act_variant *row = ET_VARIANT_PICK(et_f32_act_variants);
    act_job k = {row, act, alpha, NULL, t, dy, NULL, dx};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, ACT_GRAIN), nthreads, act_bwd_range, &k);
    return ET_OK;
}
