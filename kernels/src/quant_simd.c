/* edgetrain — SIMD rows of fake quantization and its observers (et_f32_fq_variants,
 * quant_internal.h): AVX2 (8 floats), AVX-512 (16) and NEON (4), one body
 * (quant_simd_body.h) instantiated per ISA with its intrinsics.
 *
 * Bit-identical to __ref (quant.c) on every ISA, x86 and arm64:
 *   - round half to even: _mm256_round_ps / _mm512_roundscale_ps with
 *     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC, NEON vrndnq_f32 (frintn): nearbyintf in
 *     the default rounding mode, signs of zero kept;
 *   - the clamp q < lo ? lo : (q > hi ? hi : q) is max(lo, q) then min(hi, q) with the x86
 *     operand order that returns the second operand when a comparison is false (a NaN q stays
 *     q), on NEON compare-and-select (vmaxq / vminq would give the default NaN);
 *   - the straight-through mask is the and of the two ordered comparisons (false for NaN),
 *     as 1.0f / +0.0f, multiplied into dy as __ref does (a masked negative dy gives -0);
 *   - minmax: x86 min_ps(x, a) / NEON vminnmq keep a when x is NaN (fminf's rule); a zero
 *     result is +0 (quant_internal.h).
 */
#include <math.h>

#include "quant_internal.h"

#define ET_FQ_ROW(isa, name)                                                                    \
    { {isa, #name}, et_f32_fq_fwd__##name, et_f32_fq_bwd__##name, et_f32_fq_minmax__##name }

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

/* ---- AVX2 ------------------------------------------------------------------------------- */
#define FQ_NAME(f) et_f32_fq_##f##__avx2
#define FQ_TARGET ET_TARGET_AVX2
#define VF __m256
#define WF 8
#define F_LD _mm256_loadu_ps
#define F_ST(p, v) _mm256_storeu_ps((p), (v))
#define F_SET _mm256_set1_ps
#define F_ADD _mm256_add_ps
#define F_SUB _mm256_sub_ps
#define F_MUL _mm256_mul_ps
#define F_RND(v) _mm256_round_ps((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define F_LOWER(lo, q) _mm256_max_ps((lo), (q)) /* lo > q ? lo : q */
#define F_UPPER(hi, q) _mm256_min_ps((hi), (q)) /* hi < q ? hi : q */
#define F_INSIDE(q, lo, hi, one)                                                                \
    _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps((q), (lo), _CMP_GE_OQ),                           \
                                _mm256_cmp_ps((q), (hi), _CMP_LE_OQ)),                          \
                  (one))
#define F_MINACC(x, a) _mm256_min_ps((x), (a)) /* x < a ? x : a */
#define F_MAXACC(x, a) _mm256_max_ps((x), (a))
#include "quant_simd_body.h"

/* ---- AVX-512 ---------------------------------------------------------------------------- */
#define FQ_NAME(f) et_f32_fq_##f##__avx512
#define FQ_TARGET ET_TARGET_AVX512
#define VF __m512
#define WF 16
#define F_LD _mm512_loadu_ps
#define F_ST(p, v) _mm512_storeu_ps((p), (v))
#define F_SET _mm512_set1_ps
#define F_ADD _mm512_add_ps
#define F_SUB _mm512_sub_ps
#define F_MUL _mm512_mul_ps
#define F_RND(v) _mm512_roundscale_ps((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define F_LOWER(lo, q) _mm512_max_ps((lo), (q))
#define F_UPPER(hi, q) _mm512_min_ps((hi), (q))
#define F_INSIDE(q, lo, hi, one)                                                                \
    _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((q), (lo), _CMP_GE_OQ) &                             \
                            _mm512_cmp_ps_mask((q), (hi), _CMP_LE_OQ),                          \
                        (one))
#define F_MINACC(x, a) _mm512_min_ps((x), (a))
#define F_MAXACC(x, a) _mm512_max_ps((x), (a))
#include "quant_simd_body.h"
#endif /* ET_HAVE_X86_SIMD */

#if defined(ET_HAVE_NEON)
#include <arm_neon.h>

/* ---- NEON ------------------------------------------------------------------------------- */
#define FQ_NAME(f) et_f32_fq_##f##__neon
#define FQ_TARGET
#define VF float32x4_t
#define WF 4
#define F_LD vld1q_f32
#define F_ST(p, v) vst1q_f32((p), (v))
#define F_SET vdupq_n_f32
#define F_ADD vaddq_f32
#define F_SUB vsubq_f32
#define F_MUL vmulq_f32
#define F_RND vrndnq_f32
#define F_LOWER(lo, q) vbslq_f32(vcltq_f32((q), (lo)), (lo), (q))
#define F_UPPER(hi, q) vbslq_f32(vcgtq_f32((q), (hi)), (hi), (q))
#define F_INSIDE(q, lo, hi, one)                                                                \
    vreinterpretq_f32_u32(vandq_u32(vandq_u32(vcgeq_f32((q), (lo)), vcleq_f32((q), (hi))),       \
                                    vreinterpretq_u32_f32(one)))
#define F_MINACC(x, a) vminnmq_f32((x), (a))
#define F_MAXACC(x, a) vmaxnmq_f32((x), (a))
#include "quant_simd_body.h"
#endif /* ET_HAVE_NEON */

/* ---- variant table (variant_internal.h) ------------------------------------------------ */
const et_f32_fq_variant et_f32_fq_variants[] = {
    ET_FQ_ROW(ET_ISA_REF, ref),
#if defined(ET_HAVE_X86_SIMD)
    ET_FQ_ROW(ET_ISA_AVX2, avx2),
    ET_FQ_ROW(ET_ISA_AVX512, avx512),
#endif
#if defined(ET_HAVE_NEON)
    ET_FQ_ROW(ET_ISA_NEON, neon),
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL, NULL}, /* end */
};
