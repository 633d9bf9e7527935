/* edgetrain — SIMD rows of the BatchNorm training kernels (et_f32_bn_variants, norm_internal.h):
 * AVX2 (4 doubles / 8 floats), AVX-512 (8 / 16) and NEON (2 / 4), one body
 * (batchnorm_simd_body.h) instantiated per ISA with its intrinsics.
 *
 * Bit-identical to __ref (batchnorm.c): the plane sums keep __ref's 8 double lanes (1, 2 or 4
 * vectors) combined by the same scalar expression, the other kernels are per element (double
 * accumulators over the images, float scale / shift / dx), each lane doing __ref's operations
 * in __ref's order, without FMA contraction. So every ISA gives __ref's bits, x86 and arm64.
 *
 * The fused relu / relu6 (et_bn_act_, et_bn_mask_ in norm_internal.h) are per-ISA helpers
 * below: compares with the predicates of the scalar expressions (ordered <, <=, >=, so NaN
 * passes; the mask keeps g where !(t <= 0) [&& !(t >= 6)]) and a select or an AND, which
 * writes +0 where the scalar code writes 0.0f. They act on the loaded floats, before the
 * widening to double, as __ref masks the float dy.
 */
#include <math.h>

#include "norm_internal.h"

/* d = +-2^k with 1 / d a double (exact): s / d == s * (1 / d) for every s */
static inline int bn_pow2(double d) {
    int e;
    return isfinite(d) && fabs(frexp(d, &e)) == 0.5 && e > -1020 && e < 1020;
}

/* __ref's acc_bwd_mr is its acc_bwd_m (one loop order, the same sums) */
#define et_f32_bn_acc_bwd_mr__ref et_f32_bn_acc_bwd_m__ref

#define ET_BN_ROW(isa, name)                                                                    \
    {                                                                                           \
        {isa, #name}, et_f32_bn_plane_sum__##name, et_f32_bn_plane_dev__##name,                 \
            et_f32_bn_affine__##name, et_f32_bn_affine_v__##name, et_f32_bn_acc_sum__##name,    \
            et_f32_bn_acc_sqdev__##name, et_f32_bn_acc_bwd__##name, et_f32_bn_dx__##name,       \
            et_f32_bn_dx_v__##name, et_f32_bn_plane_bwd__##name, et_f32_bn_affine_act__##name,  \
            et_f32_bn_affine_v_act__##name, et_f32_bn_acc_bwd_m__##name, et_f32_bn_dx_m__##name, \
            et_f32_bn_dx_v_m__##name, et_f32_bn_plane_bwd_m__##name, et_f32_bn_acc_bwd_mr__##name, \
            et_f32_bn_div__##name,                                                              \
            et_f32_bn_fwd_factors__##name, et_f32_bn_bwd_factors__##name                        \
    }

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

/* ---- AVX2 ------------------------------------------------------------------------------- */
/* relu / relu6 of 8 floats; dy masked from t, 8 and 4 floats (D_LDM: widened to double) */
ET_TARGET_AVX2 static inline __m256 bn_act8(__m256 v, et_act act) {
    const __m256 z = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    if (act == ET_ACT_RELU) return _mm256_andnot_ps(_mm256_cmp_ps(v, z, _CMP_LT_OQ), v);
    const __m256 r = _mm256_blendv_ps(v, six, _mm256_cmp_ps(v, six, _CMP_GE_OQ));
    return _mm256_andnot_ps(_mm256_cmp_ps(v, z, _CMP_LE_OQ), r);
}
ET_TARGET_AVX2 static inline __m256 bn_mask8(__m256 g, __m256 t, et_act act) {
    __m256 keep = _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_NLE_UQ);
    if (act == ET_ACT_RELU6) keep = _mm256_and_ps(keep, _mm256_cmp_ps(t, _mm256_set1_ps(6.0f), _CMP_NGE_UQ));
    return _mm256_and_ps(g, keep);
}
ET_TARGET_AVX2 static inline __m256d bn_ldm4(const float *g, const float *t, et_act act) {
    const __m128 tv = _mm_loadu_ps(t);
    __m128 keep = _mm_cmp_ps(tv, _mm_setzero_ps(), _CMP_NLE_UQ);
    if (act == ET_ACT_RELU6) keep = _mm_and_ps(keep, _mm_cmp_ps(tv, _mm_set1_ps(6.0f), _CMP_NGE_UQ));
    return _mm256_cvtps_pd(_mm_and_ps(_mm_loadu_ps(g), keep));
}

#define BN_NAME(f) et_f32_bn_##f##__avx2
#define BN_TARGET ET_TARGET_AVX2
#define VD __m256d
#define WD 4
#define BN_CH 4
#define D_LD(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
#define D_LDD(p) _mm256_loadu_pd(p)
#define D_STD(p, v) _mm256_storeu_pd((p), (v))
#define D_ADD _mm256_add_pd
#define D_SUB _mm256_sub_pd
#define D_MUL _mm256_mul_pd
#define D_SET _mm256_set1_pd
#define D_DIV _mm256_div_pd
#define D_SQRT _mm256_sqrt_pd
#define D_STF(p, v) _mm_storeu_ps((p), _mm256_cvtpd_ps(v))
#define VF __m256
#define WF 8
#define F_LD _mm256_loadu_ps
#define F_ST(p, v) _mm256_storeu_ps((p), (v))
#define F_ADD _mm256_add_ps
#define F_SUB _mm256_sub_ps
#define F_MUL _mm256_mul_ps
#define F_SET _mm256_set1_ps
#define D_LDM bn_ldm4
#define F_MASK bn_mask8
#define F_ACT bn_act8
#include "batchnorm_simd_body.h"

/* ---- AVX-512 ---------------------------------------------------------------------------- */
/* relu / relu6 of 16 floats; dy masked from t, 16 and 8 floats */
ET_TARGET_AVX512 static inline __m512 bn_act16(__m512 v, et_act act) {
    const __m512 z = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    if (act == ET_ACT_RELU) return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, z, _CMP_LT_OQ), v, z);
    const __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, six, _CMP_GE_OQ), v, six);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, z, _CMP_LE_OQ), r, z);
}
ET_TARGET_AVX512 static inline __m512 bn_mask16(__m512 g, __m512 t, et_act act) {
    __mmask16 keep = _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_NLE_UQ);
    if (act == ET_ACT_RELU6) keep &= _mm512_cmp_ps_mask(t, _mm512_set1_ps(6.0f), _CMP_NGE_UQ);
    return _mm512_maskz_mov_ps(keep, g);
}
ET_TARGET_AVX512 static inline __m512d bn_ldm8(const float *g, const float *t, et_act act) {
    const __m256 tv = _mm256_loadu_ps(t);
    __m256 keep = _mm256_cmp_ps(tv, _mm256_setzero_ps(), _CMP_NLE_UQ);
    if (act == ET_ACT_RELU6) keep = _mm256_and_ps(keep, _mm256_cmp_ps(tv, _mm256_set1_ps(6.0f), _CMP_NGE_UQ));
    return _mm512_cvtps_pd(_mm256_and_ps(_mm256_loadu_ps(g), keep));
}
#define BN_NAME(f) et_f32_bn_##f##__avx512
#define BN_TARGET ET_TARGET_AVX512
#define VD __m512d
#define WD 8
#define BN_CH 4
#define D_LD(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define D_LDD(p) _mm512_loadu_pd(p)
#define D_STD(p, v) _mm512_storeu_pd((p), (v))
#define D_ADD _mm512_add_pd
#define D_SUB _mm512_sub_pd
#define D_MUL _mm512_mul_pd
#define D_SET _mm512_set1_pd
#define D_DIV _mm512_div_pd
#define D_SQRT _mm512_sqrt_pd
#define D_STF(p, v) _mm256_storeu_ps((p), _mm512_cvtpd_ps(v))
#define VF __m512
#define WF 16
#define F_LD _mm512_loadu_ps
#define F_ST(p, v) _mm512_storeu_ps((p), (v))
#define F_ADD _mm512_add_ps
#define F_SUB _mm512_sub_ps
#define F_MUL _mm512_mul_ps
#define F_SET _mm512_set1_ps
#define D_LDM bn_ldm8
#define F_MASK bn_mask16
#define F_ACT bn_act16
#include "batchnorm_simd_body.h"
#endif /* ET_HAVE_X86_SIMD */

#if defined(ET_HAVE_NEON)
#include <arm_neon.h>

/* ---- NEON ------------------------------------------------------------------------------- */
/* relu / relu6 of 4 floats; dy masked from t, 4 and 2 floats */
static inline float32x4_t bn_act4(float32x4_t v, et_act act) {
    const float32x4_t z = vdupq_n_f32(0.0f), six = vdupq_n_f32(6.0f);
    if (act == ET_ACT_RELU)
        return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), vcltq_f32(v, z)));
    const float32x4_t r = vbslq_f32(vcgeq_f32(v, six), six, v);
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(r), vcleq_f32(v, z)));
}
static inline float32x4_t bn_mask4(float32x4_t g, float32x4_t t, et_act act) {
    uint32x4_t drop = vcleq_f32(t, vdupq_n_f32(0.0f));
    if (act == ET_ACT_RELU6) drop = vorrq_u32(drop, vcgeq_f32(t, vdupq_n_f32(6.0f)));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(g), drop));
}
static inline float64x2_t bn_ldm2(const float *g, const float *t, et_act act) {
    const float32x2_t tv = vld1_f32(t);
    uint32x2_t drop = vcle_f32(tv, vdup_n_f32(0.0f));
    if (act == ET_ACT_RELU6) drop = vorr_u32(drop, vcge_f32(tv, vdup_n_f32(6.0f)));
    return vcvt_f64_f32(vreinterpret_f32_u32(vbic_u32(vreinterpret_u32_f32(vld1_f32(g)), drop)));
}

#define BN_NAME(f) et_f32_bn_##f##__neon
#define BN_TARGET
#define VD float64x2_t
#define WD 2
#define BN_CH 8
#define D_LD(p) vcvt_f64_f32(vld1_f32(p))
#define D_LDD(p) vld1q_f64(p)
#define D_STD(p, v) vst1q_f64((p), (v))
#define D_ADD vaddq_f64
#define D_SUB vsubq_f64
#define D_MUL vmulq_f64
#define D_SET vdupq_n_f64
#define D_DIV vdivq_f64
#define D_SQRT vsqrtq_f64
#define D_STF(p, v) vst1_f32((p), vcvt_f32_f64(v))
#define VF float32x4_t
#define WF 4
#define F_LD vld1q_f32
#define F_ST(p, v) vst1q_f32((p), (v))
#define F_ADD vaddq_f32
#define F_SUB vsubq_f32
#define F_MUL vmulq_f32
#define F_SET vdupq_n_f32
#define D_LDM bn_ldm2
#define F_MASK bn_mask4
#define F_ACT bn_act4
#include "batchnorm_simd_body.h"
#endif /* ET_HAVE_NEON */

/* ---- variant table (variant_internal.h) ------------------------------------------------ */
const et_f32_bn_variant et_f32_bn_variants[] = {
    ET_BN_ROW(ET_ISA_REF, ref),
#if defined(ET_HAVE_X86_SIMD)
    ET_BN_ROW(ET_ISA_AVX2, avx2),
    ET_BN_ROW(ET_ISA_AVX512, avx512),
#endif
#if defined(ET_HAVE_NEON)
    ET_BN_ROW(ET_ISA_NEON, neon),
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL}, /* end */
};
