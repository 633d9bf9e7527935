/* edgetrain — SIMD rows of the BatchNorm training kernels (et_f32_bn_variants, norm_internal.h):
 * AVX2 (4 doubles / 8 floats), AVX-512 (8 / 16) and NEON (2 / 4), one body
 * (batchnorm_simd_body.h) instantiated per ISA with its intrinsics.
 *
 * Bit-identical to __ref (batchnorm.c): the plane sums keep __ref's 8 double lanes (1, 2 or 4
 * vectors) combined by the same scalar expression, the other kernels are per element (double
 * accumulators over the images, float scale / shift / dx), each lane doing __ref's operations
 * in __ref's order, without FMA contraction. So every ISA gives __ref's bits, x86 and arm64.
 */
#include "norm_internal.h"

#define ET_BN_ROW(isa, name)                                                                    \
    {                                                                                           \
        {isa, #name}, et_f32_bn_plane_sum__##name, et_f32_bn_plane_dev__##name,                 \
            et_f32_bn_affine__##name, et_f32_bn_affine_v__##name, et_f32_bn_acc_sum__##name,    \
            et_f32_bn_acc_sqdev__##name, et_f32_bn_acc_bwd__##name, et_f32_bn_dx__##name,       \
            et_f32_bn_dx_v__##name, et_f32_bn_plane_bwd__##name                                 \
    }

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

/* ---- AVX2 ------------------------------------------------------------------------------- */
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
#define VF __m256
#define WF 8
#define F_LD _mm256_loadu_ps
#define F_ST(p, v) _mm256_storeu_ps((p), (v))
#define F_ADD _mm256_add_ps
#define F_SUB _mm256_sub_ps
#define F_MUL _mm256_mul_ps
#define F_SET _mm256_set1_ps
#include "batchnorm_simd_body.h"

/* ---- AVX-512 ---------------------------------------------------------------------------- */
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
#define VF __m512
#define WF 16
#define F_LD _mm512_loadu_ps
#define F_ST(p, v) _mm512_storeu_ps((p), (v))
#define F_ADD _mm512_add_ps
#define F_SUB _mm512_sub_ps
#define F_MUL _mm512_mul_ps
#define F_SET _mm512_set1_ps
#include "batchnorm_simd_body.h"
#endif /* ET_HAVE_X86_SIMD */

#if defined(ET_HAVE_NEON)
#include <arm_neon.h>

/* ---- NEON ------------------------------------------------------------------------------- */
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
#define VF float32x4_t
#define WF 4
#define F_LD vld1q_f32
#define F_ST(p, v) vst1q_f32((p), (v))
#define F_ADD vaddq_f32
#define F_SUB vsubq_f32
#define F_MUL vmulq_f32
#define F_SET vdupq_n_f32
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
    {{ET_ISA_REF, NULL}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL}, /* end */
};
