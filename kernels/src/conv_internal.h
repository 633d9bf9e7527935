/* edgetrain — convolution internals: naive references (test oracles), depthwise variants,
 * and the fused bias + activation helper shared by conv2d.c and conv2d_depthwise.c.
 * Not part of the public API; tests include it directly. */
#ifndef EDGETRAIN_CONV_INTERNAL_H
#define EDGETRAIN_CONV_INTERNAL_H
#include <math.h>

#include "edgetrain/et_kernels.h"
#include "variant_internal.h"

/* ---- naive direct loops, double accumulation: the oracle for every conv path ---------- */
/* Arguments as the public entry points; single threaded, no workspace. */
et_status et_f32_conv2d_fwd__ref(const et_conv2d_params *p, const float *x, const float *w,
                                 const float *b, float *y);
et_status et_f32_conv2d_bwd_input__ref(const et_conv2d_params *p, const float *dy, const float *w,
                                       float *dx);
et_status et_f32_conv2d_bwd_weight__ref(const et_conv2d_params *p, const float *dy, const float *x,
                                        float *dw);

/* The pointwise forward without the GEMM, the GEMM path's bits (conv2d_pointwise.c): 1x1,
 * stride 1, no padding, groups 1, few output channels, AVX-512. ET_ERR_UNSUPPORTED for other
 * shapes and ISAs (the caller then runs the GEMM). */
et_status et_f32_conv2d_pw_direct_fwd(const et_conv2d_params *p, const float *x, const float *w,
                                      const float *b, float *y, int nthreads);

/* bwd_weight (conv2d.c, per-image paths, dw of at most 1 MiB, n > 1): images are summed in
 * min(n, CONV_WCHUNKS) chunks, chunk c = et_thread_range(n, c, chunks), each in image order,
 * the chunks' sums added in chunk order -- whatever the thread count
 * (tests/test_conv_fast.c check_order). */
#define CONV_WCHUNKS 8

/* 1 if p is a depthwise shape (groups == c, so one input channel per group; oc = k*c). */
int et_conv2d_is_depthwise(const et_conv2d_params *p);

/* ---- depthwise direct kernels (conv2d_depthwise.c); p must be initialised and depthwise.
 * No workspace. Parallel over (n, channel) planes (fwd, bwd_input) or over oc (bwd_weight,
 * no reduction), so results do not depend on the thread count. The dispatching versions pick
 * the row of et_f32_dwconv2d_variants (below) for et_get_isa(). SIMD variants vectorise along the output width for stride
 * 1 and 2 (any kernel size / dilation / padding) and fall back to scalar code otherwise. */
et_status et_f32_dwconv2d_fwd(const et_conv2d_params *p, const float *x, const float *w,
                              const float *b, float *y, int nthreads);
et_status et_f32_dwconv2d_bwd_input(const et_conv2d_params *p, const float *dy, const float *w,
                                    float *dx, int nthreads);
et_status et_f32_dwconv2d_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x,
                                     float *dw, int nthreads);

/* One variant's kernels (function types; bwd_input's `in` is w, bwd_weight's is x). */
typedef et_status et_f32_dwconv2d_fwd_kernel(const et_conv2d_params *p, const float *x,
                                             const float *w, const float *b, float *y,
                                             int nthreads);
typedef et_status et_f32_dwconv2d_bwd_kernel(const et_conv2d_params *p, const float *dy,
                                             const float *in, float *out, int nthreads);
typedef et_f32_dwconv2d_fwd_kernel *et_f32_dwconv2d_fwd_fn;
typedef et_f32_dwconv2d_bwd_kernel *et_f32_dwconv2d_bwd_fn;

et_f32_dwconv2d_fwd_kernel et_f32_dwconv2d_fwd__ref;
et_f32_dwconv2d_bwd_kernel et_f32_dwconv2d_bwd_input__ref, et_f32_dwconv2d_bwd_weight__ref;
#if defined(ET_HAVE_X86_SIMD)
et_f32_dwconv2d_fwd_kernel et_f32_dwconv2d_fwd__avx2, et_f32_dwconv2d_fwd__avx512;
et_f32_dwconv2d_bwd_kernel et_f32_dwconv2d_bwd_input__avx2, et_f32_dwconv2d_bwd_weight__avx2;
et_f32_dwconv2d_bwd_kernel et_f32_dwconv2d_bwd_input__avx512, et_f32_dwconv2d_bwd_weight__avx512;
#endif
#if defined(ET_HAVE_NEON)
et_f32_dwconv2d_fwd_kernel et_f32_dwconv2d_fwd__neon;
et_f32_dwconv2d_bwd_kernel et_f32_dwconv2d_bwd_input__neon, et_f32_dwconv2d_bwd_weight__neon;
#endif
/* Variant table (variant_internal.h). */
typedef struct et_f32_dwconv2d_variant {
    et_variant_head head;
    et_f32_dwconv2d_fwd_fn fwd;
    et_f32_dwconv2d_bwd_fn bwd_input, bwd_weight;
} et_f32_dwconv2d_variant;
extern const et_f32_dwconv2d_variant et_f32_dwconv2d_variants[];

/* ---- fused bias + activation (PyTorch semantics, NaN propagates) ---------------------- */
static inline float et_conv_act_(et_act act, float alpha, float v) {
    switch (act) {
    case ET_ACT_RELU: return v < 0.0f ? 0.0f : v;
    case ET_ACT_RELU6: return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    case ET_ACT_LEAKY_RELU: return v < 0.0f ? v * alpha : v;
    case ET_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case ET_ACT_TANH: return tanhf(v);
    case ET_ACT_HARDSWISH: {
        float r = v + 3.0f;
        r = r < 0.0f ? 0.0f : (r > 6.0f ? 6.0f : r);
        return v * r / 6.0f;
    }
    default: return v;
    }
}

/* row[i] = act(row[i] + bias) for i < n. The switch sits outside the loops so the simple
 * cases vectorise. */
static inline void et_conv_bias_act_(float *row, int64_t n, float bias, et_act act, float alpha) {
    switch (act) {
    case ET_ACT_NONE:
        if (bias != 0.0f)
            for (int64_t i = 0; i < n; i++) row[i] += bias;
        break;
    case ET_ACT_RELU:
        for (int64_t i = 0; i < n; i++) {
            float v = row[i] + bias;
            row[i] = v < 0.0f ? 0.0f : v;
        }
        break;
    case ET_ACT_RELU6:
        for (int64_t i = 0; i < n; i++) {
            float v = row[i] + bias;
            row[i] = v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++) row[i] = et_conv_act_(act, alpha, row[i] + bias);
        break;
    }
}

/* ---- the epilogue of every conv forward path (im2col, batched pointwise, depthwise) ------
 * Row `row` (n values) of output channel o, bias already in the values or given in `bias`:
 * without a fused BatchNorm, et_conv_bias_act_; with one (p->bn_scale, eval programs), the
 * bits of conv2d (act none) -> batchnorm_infer -> act as separate ops: the bias added only
 * when non-zero (as et_conv_bias_act_ with ET_ACT_NONE), then batchnorm_infer's affine as
 * one float mul and one float add (no fma: et_f32_bn_affine__ref and its SIMD rows), then
 * the act op's relu / relu6 (et_f32_act_fwd__ref: relu6 maps -0 to +0). */
static inline int et_conv_has_epilogue_(const et_conv2d_params *p, const float *b) {
    return b || p->act != ET_ACT_NONE || p->bn_scale;
}

static inline void et_conv_epilogue_(const et_conv2d_params *p, int64_t o, float bias, float *row,
                                     int64_t n) {
    if (!p->bn_scale) {
        et_conv_bias_act_(row, n, bias, p->act, p->act_alpha);
        return;
    }
    const float a = p->bn_scale[o], s = p->bn_shift[o];
    if (bias != 0.0f)
        for (int64_t i = 0; i < n; i++) row[i] += bias;
    switch (p->act) {
    case ET_ACT_NONE:
        for (int64_t i = 0; i < n; i++) row[i] = row[i] * a + s;
        break;
    case ET_ACT_RELU:
        for (int64_t i = 0; i < n; i++) {
            float v = row[i] * a + s;
            row[i] = v < 0.0f ? 0.0f : v;
        }
        break;
    case ET_ACT_RELU6:
        for (int64_t i = 0; i < n; i++) {
            float v = row[i] * a + s;
            row[i] = v <= 0.0f ? 0.0f : (v >= 6.0f ? 6.0f : v);
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++) row[i] = et_conv_act_(p->act, p->act_alpha, row[i] * a + s);
        break;
    }
}

/* Tests: 0 runs the convolution's older paths where a faster one gives the same bits (today:
 * bwd_weight's channels-last transposed columns); 1, the default, the faster ones. */
void et_conv2d_fast_paths_(int on);

#endif /* EDGETRAIN_CONV_INTERNAL_H */
