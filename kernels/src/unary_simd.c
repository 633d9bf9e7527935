/* edgetrain — SIMD rows of the unary math kernel (et_f32_unary): exp and erf.
 *
 * __ref (binary.c) evaluates (float)exp((double)x) and (float)erf((double)x) with libm, one
 * element at a time. The fast rows compute the same double value with a branch-free
 * polynomial (error ~3e-16 for exp, ~8e-16 absolute for erf, far below the float rounding
 * step of 6e-8) and round it to float, so they agree with __ref except when the exact value
 * sits within ~1e-15 of a float rounding boundary. kernels/tests/test_simd_rows.c checks them
 * with the activation family's tolerance for smooth functions (4e-7 relative) and bounds how
 * many elements differ at all (0 of 2^20 on x86 and arm64 when written). The other unary
 * functions run __ref's loop.
 *   exp: exp_f64 (simd_math_internal.h), in a plain loop the compiler vectorises (the act_*
 *        style of activation.c), force-inlined into the target("avx2") / target("avx512...")
 *        wrappers and compiled for the aarch64 baseline (__neon).
 *   erf: odd, erf(x) = copysign(erf(|x|), x); a = |x| in [0, 0.5): a * q(a^2) (Taylor series);
 *        in [k/2, k/2 + 1/2), k = 1..11: a degree-12 fit in a - centre (kernels/tools/
 *        gen_erf_coefs.py); a >= 6: 1 (erfc(6) = 2e-17). gcc does not vectorise the table
 *        lookups, so erf has intrinsics (AVX2 gathers, AVX-512 two-register permutes, two
 *        lanes on NEON) doing erf_f64's
 *        double operations lane by lane; the scalar erf_f64 does the tails.
 * Double arithmetic with no FP contraction (-ffp-contract=off) gives the same bits on every
 * ISA, so x86 and arm64 agree.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "misc_internal.h"
#include "simd_math_internal.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* [j][k]: coefficient of power j, interval k (kernels/tools/gen_erf_coefs.py) */
static const double ERF_C[13][12] = {
    {1.1283791670955126, 0.7111556336535152, 0.92290012825645817, 0.98667167121918242, 0.99853728341331893, 0.99989937807788043, 0.99999569722053649, 0.99999988627274361, 0.99999999814942575, 0.99999999998151512, 0.99999999999988709, 0.99999999999999944},
    {-0.37612638903183754, 0.64293106919522169, 0.23652112244728082, 0.052774995930152988, 0.0071423190220180951, 0.00058627724709318907, 2.9189025383518165e-05, 8.8143219063443724e-07, 1.6143993802970098e-08, 1.7934327050971752e-10, 1.2074433208627694e-12, 5.3659026299641402e-15},
    {0.11283791670955126, -0.48219830189638313, -0.29565140305909843, -0.092356242877769265, -0.016070217799551173, -0.001612262429517314, -9.486433250908814e-05, -3.3053707374171203e-06, -6.8611963743560055e-08, -8.5190464122962809e-10, -6.3667903313285884e-12, -1.3727281903760493e-14},
    {-0.026866170645131252, 0.026788794543660246, 0.16753579507135527, 0.090157284712762492, 0.021724553691919668, 0.0027603887053219774, 0.00019580971201584447, 7.9696162746361771e-06, 1.8901918503615575e-07, 2.6380241393504264e-09, 2.2128416238978753e-11, -4.9167940481856485e-14},
    {0.0052239776254421879, 0.15068696934391712, -0.0061594042319021627, -0.048102209830154972, -0.019083383634697634, -0.0032581136580466237, -0.00028656933512664169, -1.3841235763237284e-05, -3.7879706516339887e-07, -5.9766164689873698e-09, -5.0532766674284981e-11, -3.1189637204364458e-12},
    {-0.00085483270234508533, -0.053242728383101193, -0.047181036987562187, 0.0066243616342701464, 0.010657679174229332, 0.0027558083798936788, 0.00031379721866879297, 1.8370954031761853e-05, 5.8725504278728805e-07, 1.0552069052727865e-08, 7.6837675150426308e-11, 1.5833968597155961e-11},
    {0.00012055332981789664, -0.026872509903361739, 0.021301273032343977, 0.0089630449337408467, -0.0029043572497943482, -0.0016573275142704375, -0.00026352870197906024, -1.9273026508381746e-05, -7.307934129049289e-07, -1.5461103615503914e-08, -5.1943789970823196e-10, 1.8945269310043671e-10},
    {-1.492565035840625e-05, 0.018435191785685163, 0.0036260147297290791, -0.0060587608897037853, -0.00067045655714421276, 0.00064604283691802793, 0.00016999163188734717, 1.6276144460740907e-05, 7.4734493636936775e-07, 1.890737502006654e-08, 1.5413360845995588e-09, -6.0525626004330252e-10},
    {1.6462114365889248e-06, 0.0023018090789884422, -0.0056976800130118903, 0.00073005641394726392, 0.00099950040814380213, -8.9008015528663776e-05, -8.164093404401669e-05, -1.1118058053926078e-05, -6.4196376827669837e-07, -7.5395296218787988e-09, 1.1366997434581761e-08, -5.8358946274142292e-09},
    {-1.6365844691234924e-07, -0.0039670924513307178, 0.0008767744004297527, 0.00089444110863577686, -0.00036936203051181121, -7.1271758682599183e-05, 2.5912627910779858e-05, 6.0943430090566647e-06, 4.6376548300808837e-07, -1.7934386003319409e-10, -2.2515825201287766e-08, 1.0662307810588076e-08},
    {1.4807192815879218e-08, 0.00018553507859115175, 0.00079355142042100723, -0.00044280593741066184, -1.1591679224949532e-05, 5.4946705316572608e-05, -2.432865292383104e-06, -2.7590069273268124e-06, -2.1231559336735884e-07, -1.7626182054559836e-07, -1.8188907915027406e-07, 8.3747338448230576e-08},
    {-1.2290555301717928e-09, 0.00060887328295602678, -0.00031282692113628182, -8.8789047488465583e-06, 6.4872853995355401e-05, -1.5254614569016835e-05, -2.9104183865102905e-06, 8.6203486980650722e-07, 9.6328094727450594e-08, 1.1085252112020475e-07, 1.4426624820418299e-07, -6.7888633974381875e-08},
    {9.4227590646504113e-11, -0.00010076434149486621, -5.325830429758058e-05, 6.849896944824345e-05, -2.1591539066028317e-05, -8.7320131250618832e-07, 2.5070185782207806e-06, 8.0371108030731265e-07, -4.1424996810862301e-07, 9.4733261011895058e-07, 1.0576272711768755e-06, -4.5928310447418498e-07},
};
/* max abs error of the fit, intervals 1..11: 7.8e-16 */

/* erf((double)x) rounded to float; NaN stays NaN, erf(-0) = -0. */
ET_INLINE float erf_f64(float xf) {
    const double x = (double)xf, a = fabs(x);
    const double ac = a < 6.0 ? a : 0.0; /* also NaN -> 0 */
    const int k = (int)(ac * 2.0);       /* 0..11 */
    const double t = k == 0 ? ac * ac : ac - ((double)k * 0.5 + 0.25);
    double p = ERF_C[12][k]; /* Horner, written out so the loop over elements vectorises */
    p = p * t + ERF_C[11][k];
    p = p * t + ERF_C[10][k];
    p = p * t + ERF_C[9][k];
    p = p * t + ERF_C[8][k];
    p = p * t + ERF_C[7][k];
    p = p * t + ERF_C[6][k];
    p = p * t + ERF_C[5][k];
    p = p * t + ERF_C[4][k];
    p = p * t + ERF_C[3][k];
    p = p * t + ERF_C[2][k];
    p = p * t + ERF_C[1][k];
    p = p * t + ERF_C[0][k];
    double r = k == 0 ? p * ac : p;
    r = a < 6.0 ? r : 1.0;
    r = copysign(r, x); /* r >= 0; erf(-0) = -0 */
    return x == x ? (float)r : xf;
}

/* ---- shared fast body ------------------------------------------------------------------- */
/* exp and the functions without a fast path; erf has per-ISA intrinsics below. */
ET_INLINE void unary_body(et_unary fn, float a, float b, int64_t n, const float *ET_RESTRICT x,
                          float *ET_RESTRICT y) {
    switch (fn) {
    case ET_UN_EXP:
        for (int64_t i = 0; i < n; i++) y[i] = exp_f64(x[i]);
        break;
    default:
        et_f32_unary__ref(fn, a, b, n, x, y);
        break;
    }
}

/* ---- erf with intrinsics: the operations of erf_f64, lane by lane ----------------------- */
#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

ET_TARGET_AVX2 static void erf__avx2(int64_t n, const float *x, float *y) {
    const __m256d six = _mm256_set1_pd(6.0), two = _mm256_set1_pd(2.0);
    const __m256d half = _mm256_set1_pd(0.5), quarter = _mm256_set1_pd(0.25);
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d sign = _mm256_set1_pd(-0.0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m128 xf = _mm_loadu_ps(x + i);
        const __m256d xd = _mm256_cvtps_pd(xf), a = _mm256_andnot_pd(sign, xd);
        const __m256d in = _mm256_cmp_pd(a, six, _CMP_LT_OQ);
        const __m256d ac = _mm256_and_pd(in, a);
        const __m128i k = _mm256_cvttpd_epi32(_mm256_mul_pd(ac, two));
        const __m256d k0 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_cmpeq_epi32(k, _mm_setzero_si128())));
        const __m256d c = _mm256_add_pd(_mm256_mul_pd(_mm256_cvtepi32_pd(k), half), quarter);
        const __m256d t = _mm256_blendv_pd(_mm256_sub_pd(ac, c), _mm256_mul_pd(ac, ac), k0);
        __m256d p = _mm256_i32gather_pd(ERF_C[12], k, 8);
        for (int j = 11; j >= 0; j--)
            p = _mm256_add_pd(_mm256_mul_pd(p, t), _mm256_i32gather_pd(ERF_C[j], k, 8));
        __m256d r = _mm256_blendv_pd(p, _mm256_mul_pd(p, ac), k0);
        r = _mm256_blendv_pd(one, r, in);
        r = _mm256_or_pd(r, _mm256_and_pd(xd, sign)); /* copysign: r >= 0 */
        const __m128 f = _mm256_cvtpd_ps(r);
        _mm_storeu_ps(y + i, _mm_blendv_ps(f, xf, _mm_cmpunord_ps(xf, xf)));
    }
    for (; i < n; i++) y[i] = erf_f64(x[i]);
}

/* ERF_C[j][k] for 8 lanes of k in [0, 12): entries 0-7 and 8-11 in two registers. */
ET_TARGET_AVX512 static inline __m512d erf_coef_avx512(int j, __m512i k) {
    return _mm512_permutex2var_pd(_mm512_loadu_pd(ERF_C[j]), k,
                                  _mm512_maskz_loadu_pd(0x0F, ERF_C[j] + 8));
}

ET_TARGET_AVX512 static void erf__avx512(int64_t n, const float *x, float *y) {
    const __m512d six = _mm512_set1_pd(6.0), two = _mm512_set1_pd(2.0);
    const __m512d half = _mm512_set1_pd(0.5), quarter = _mm512_set1_pd(0.25);
    const __m512d one = _mm512_set1_pd(1.0), sign = _mm512_set1_pd(-0.0);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xf = _mm256_loadu_ps(x + i);
        const __m512d xd = _mm512_cvtps_pd(xf), a = _mm512_abs_pd(xd);
        const __mmask8 in = _mm512_cmp_pd_mask(a, six, _CMP_LT_OQ);
        const __m512d ac = _mm512_maskz_mov_pd(in, a);
        const __m256i k = _mm512_cvttpd_epi32(_mm512_mul_pd(ac, two));
        const __mmask8 k0 = _mm256_cmpeq_epi32_mask(k, _mm256_setzero_si256());
        const __m512d c = _mm512_add_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(k), half), quarter);
        const __m512d t = _mm512_mask_blend_pd(k0, _mm512_sub_pd(ac, c), _mm512_mul_pd(ac, ac));
        const __m512i k64 = _mm512_cvtepi32_epi64(k); /* lookups: ERF_C[j][k] of 12 by permutes */
        __m512d p = erf_coef_avx512(12, k64);
        for (int j = 11; j >= 0; j--) p = _mm512_add_pd(_mm512_mul_pd(p, t), erf_coef_avx512(j, k64));
        __m512d r = _mm512_mask_blend_pd(k0, p, _mm512_mul_pd(p, ac));
        r = _mm512_mask_blend_pd(in, one, r);
        r = _mm512_or_pd(r, _mm512_and_pd(xd, sign)); /* copysign: r >= 0 */
        const __m256 f = _mm512_cvtpd_ps(r);
        const __mmask8 nan = _mm256_cmp_ps_mask(xf, xf, _CMP_UNORD_Q);
        _mm256_storeu_ps(y + i, _mm256_mask_blend_ps(nan, f, xf));
    }
    for (; i < n; i++) y[i] = erf_f64(x[i]);
}

ET_TARGET_AVX2 void et_f32_unary__avx2(et_unary fn, float a, float b, int64_t n, const float *x,
                                       float *y) {
    if (fn == ET_UN_ERF) erf__avx2(n, x, y);
    else unary_body(fn, a, b, n, x, y);
}
ET_TARGET_AVX512 void et_f32_unary__avx512(et_unary fn, float a, float b, int64_t n,
                                           const float *x, float *y) {
    if (fn == ET_UN_ERF) erf__avx512(n, x, y);
    else unary_body(fn, a, b, n, x, y);
}
#endif
#if defined(ET_HAVE_NEON)
#include <arm_neon.h>

static void erf__neon(int64_t n, const float *x, float *y) {
    const float64x2_t six = vdupq_n_f64(6.0), two = vdupq_n_f64(2.0);
    const float64x2_t half = vdupq_n_f64(0.5), quarter = vdupq_n_f64(0.25);
    const float64x2_t one = vdupq_n_f64(1.0), zero = vdupq_n_f64(0.0);
    const uint64x2_t sign = vdupq_n_u64(UINT64_C(0x8000000000000000));
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const float32x2_t xf = vld1_f32(x + i);
        const float64x2_t xd = vcvt_f64_f32(xf), a = vabsq_f64(xd);
        const uint64x2_t in = vcltq_f64(a, six);
        const float64x2_t ac = vbslq_f64(in, a, zero);
        const int64x2_t k = vcvtq_s64_f64(vmulq_f64(ac, two)); /* toward zero, as (int) */
        const int64_t k_0 = vgetq_lane_s64(k, 0), k_1 = vgetq_lane_s64(k, 1);
        const uint64x2_t k0 = vceqq_s64(k, vdupq_n_s64(0));
        const float64x2_t c = vaddq_f64(vmulq_f64(vcvtq_f64_s64(k), half), quarter);
        const float64x2_t t = vbslq_f64(k0, vmulq_f64(ac, ac), vsubq_f64(ac, c));
        float64x2_t p = vcombine_f64(vld1_f64(&ERF_C[12][k_0]), vld1_f64(&ERF_C[12][k_1]));
        for (int j = 11; j >= 0; j--) {
            const float64x2_t cj = vcombine_f64(vld1_f64(&ERF_C[j][k_0]), vld1_f64(&ERF_C[j][k_1]));
            p = vaddq_f64(vmulq_f64(p, t), cj);
        }
        float64x2_t r = vbslq_f64(k0, vmulq_f64(p, ac), p);
        r = vbslq_f64(in, r, one);
        r = vbslq_f64(sign, xd, r); /* copysign: r >= 0 */
        const float32x2_t f = vcvt_f32_f64(r);
        vst1_f32(y + i, vbsl_f32(vceq_f32(xf, xf), f, xf));
    }
    for (; i < n; i++) y[i] = erf_f64(x[i]);
}

void et_f32_unary__neon(et_unary fn, float a, float b, int64_t n, const float *x, float *y) {
    if (fn == ET_UN_ERF) erf__neon(n, x, y);
    else unary_body(fn, a, b, n, x, y);
}
#endif

/* ---- variant table (variant_internal.h) ------------------------------------------------ */
const et_f32_unary_variant et_f32_unary_variants[] = {
    {{ET_ISA_REF, "ref"}, et_f32_unary__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_f32_unary__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_f32_unary__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, et_f32_unary__neon},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};
