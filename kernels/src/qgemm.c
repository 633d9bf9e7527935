/* edgetrain — int8 inference kernels: the integer path of a QAT model's eval program and of
 * its int8 file (issue 14).
 *
 * Number rules (one for every kernel and every variant):
 *   quantize    q = clamp(nearbyintf(x * (1.0f / s)) + zp, qmin, qmax)   (the fake_quant level)
 *   dequantize  y = (float)(q - zp) * s
 *   GEMM        acc[m, n] = sum_k (a[m, k] - a_zp) * w[n, k]  (+ bias[n]), exact in integers
 *   requantize  q = clamp(nearbyintf((float)acc * mult[n]) + y_zp, qmin, qmax)
 * Activations are u8 with a zero point, weights i8 symmetric per output channel (zero point 0),
 * bias i32 in units of s_in * s_w[n], mult[n] = s_in * s_w[n] / s_out in float. nearbyintf
 * rounds half to even in the default rounding mode. Integer sums do not depend on the order
 * of the terms, so every partition of the work (threads, SIMD) gives the same bits; the one
 * float operation per output (the multiply) is the same everywhere.
 * |a - a_zp| <= 255 and |w| <= 128, so K <= ET_Q_MAX_K keeps the sum inside int32; the sum is
 * formed in int64 here (a SIMD variant may use int32: the result is the same).
 *
 * __ref kernels: plain loops. The GEMM is written as the definition above (no column sums;
 * a packed variant subtracts a_zp * colsum(w) instead, the same integer). The GEMM has a
 * variant table (qgemm_internal.h): __avx2 widens a - a_zp and w to int16 and sums pairs with
 * vpmaddwd (|pair| <= 2 * 255 * 128, no saturation) into int32 lanes, __avx512 the same on
 * zmm registers, __neon with vmlal_s16 (aarch64); __avx512vnni / __avxvnni use vpdpbusd
 * (u8 x s8) and __neondot sdot with the +128 trick, four columns per load of a, minus the
 * zero-point term a_zp * sum_k w (exactness notes at each); the requantization is the same scalar code. et_q_gemm_requant / et_q_conv2d dispatch on et_get_isa().
 * A depthwise qconv2d (groups == c == oc) runs a direct loop per (image, channel) plane instead
 * of im2col + one GEMM per channel: the same integer sums and the same q_requant, so the same bytes.
 *
 * MobileNetV2's other int8 ops: qadd (dequantize both, add, quantize: each step in float, as
 * the float composition), qclamp (clamp to the levels of lo and hi: ReLU6 on the grid),
 * qglobal_avgpool (the plane's mean rounded half to even in integers).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "misc_internal.h"
#include "qgemm_internal.h"

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>
#endif
#if defined(ET_HAVE_NEON)
#include <arm_neon.h>
#endif

/* The quantize level of v: clamp(nearbyintf(v * inv_s) + zp, qmin, qmax), NaN -> the zero point. */
static inline int32_t q_level(float v, float inv_s, int32_t zp, int32_t qmin, int32_t qmax) {
    /* clamp, then round: the bounds are integers (et_q_requant1's argument); NaN -> 0 */
    const float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
    float r = v * inv_s;
    r = r != r ? 0.0f : (r < lo ? lo : (r > hi ? hi : r));
    return (int32_t)et_q_round_even(r) + zp;
}

/* Requantize: the one float operation per output of a GEMM / convolution, acc exact;
 * = clamp(nearbyintf((float)acc * mult) + zp, qmin, qmax) without the libm call (et_q_requant1). */
static inline uint8_t q_requant(int64_t acc, float mult, int32_t y_zp, int32_t qmin, int32_t qmax) {
    return et_q_requant1(acc, mult, y_zp, qmin, qmax);
}

static int q_params_ok(float s, int32_t zp, int32_t qmin, int32_t qmax) {
    return isfinite(s) && s > 0.0f && qmin >= 0 && qmax <= 255 && qmin < qmax && zp >= qmin && zp <= qmax;
}

/* Elementwise jobs on the thread pool: each element depends on itself only, so any chunking
 * gives the same bytes. */
typedef struct q_elem_job {
    const float *xf;
    const uint8_t *xq;
    float *yf;
    uint8_t *yq;
    float scale;
    int32_t zp, qmin, qmax;
} q_elem_job;

static void q_quantize_range(void *ctx, int64_t i0, int64_t i1, int tid) {
    const q_elem_job *k = (const q_elem_job *)ctx;
    const float inv_s = 1.0f / k->scale;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) k->yq[i] = (uint8_t)q_level(k->xf[i], inv_s, k->zp, k->qmin, k->qmax);
}

static void q_dequantize_range(void *ctx, int64_t i0, int64_t i1, int tid) {
    const q_elem_job *k = (const q_elem_job *)ctx;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) k->yf[i] = (float)((int32_t)k->xq[i] - k->zp) * k->scale;
}

/* u8 loops read the job into locals first: a store through uint8_t * may alias the job, which
 * would keep the compiler from vectorising (pmaxub / pminub are exact). */
static void q_relu_range(void *ctx, int64_t i0, int64_t i1, int tid) {
    const q_elem_job *k = (const q_elem_job *)ctx;
    const uint8_t *x = k->xq, z = (uint8_t)k->zp;
    uint8_t *y = k->yq;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) y[i] = x[i] > z ? x[i] : z;
}

static void q_elem_run(et_range_body body, int64_t n, const q_elem_job *k, int nthreads) {
    et_parallel_ranges(n, et_split_chunks(n, nthreads), nthreads, body, (void *)k);
}

et_status et_q_quantize__ref(int64_t n, const float *x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                             uint8_t *y, int nthreads) {
    if (n < 0 || !x || !y || !q_params_ok(scale, zp, qmin, qmax)) return ET_ERR_ARG;
    const q_elem_job k = {x, NULL, NULL, y, scale, zp, qmin, qmax};
    q_elem_run(q_quantize_range, n, &k, nthreads);
    return ET_OK;
}

et_status et_q_dequantize__ref(int64_t n, const uint8_t *x, float scale, int32_t zp, float *y, int nthreads) {
    if (n < 0 || !x || !y || !q_params_ok(scale, zp, 0, 255)) return ET_ERR_ARG;
    const q_elem_job k = {NULL, x, y, NULL, scale, zp, 0, 255};
    q_elem_run(q_dequantize_range, n, &k, nthreads);
    return ET_OK;
}

/* The output range of a requantize may be narrower than the zero point's (a fused clamp:
 * [Q(lo), Q(hi)], maybe one level, maybe above or below y_zp): any 0 <= qmin <= qmax <= 255. */
static int requant_ok(int64_t n, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax) {
    if (!mult || y_zp < 0 || y_zp > 255 || qmin < 0 || qmax > 255 || qmin > qmax) return 0;
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(mult[j]) || !(mult[j] > 0.0f)) return 0;
    return 1;
}

static int64_t q_dot__ref(int64_t K, const uint8_t *ET_RESTRICT a, int32_t a_zp, const int8_t *ET_RESTRICT w) {
    int64_t acc = 0;
    for (int64_t k = 0; k < K; k++) acc += (int64_t)((int32_t)a[k] - a_zp) * w[k];
    return acc;
}

/* Rows [m0, m1) of the requantized GEMM: exact integer dots, one fp32 multiply per output. */
typedef int64_t (*q_dot_fn)(int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w);
typedef struct q_gemm_job {
    int64_t N, K, y_rs, y_cs;
    const uint8_t *a;
    const int8_t *w;
    const int32_t *bias;
    const float *mult;
    uint8_t *y;
    int32_t a_zp, y_zp, qmin, qmax;
    q_dot_fn dot;
} q_gemm_job;

/* y[m, n] from the exact dot sum_k (a[m, k] - a_zp) * w[n, k]: + bias, one fp32 multiply */
static inline void q_out(const q_gemm_job *k, int64_t m, int64_t n, int64_t dot) {
    const int64_t acc = (k->bias ? k->bias[n] : 0) + dot;
    k->y[m * k->y_rs + n * k->y_cs] = q_requant(acc, k->mult[n], k->y_zp, k->qmin, k->qmax);
}

static void q_gemm_rows(void *ctx, int64_t m0, int64_t m1, int tid) {
    const q_gemm_job *k = (const q_gemm_job *)ctx;
    (void)tid;
    for (int64_t m = m0; m < m1; m++)
        for (int64_t n = 0; n < k->N; n++) q_out(k, m, n, k->dot(k->K, k->a + m * k->K, k->a_zp, k->w + n * k->K));
}

#define Q_GEMM_BODY(DOT) Q_GEMM_BODY_ROWS(DOT, q_gemm_rows)
#define Q_GEMM_BODY_ROWS(DOT, ROWS)                                                                        \
    if (M < 0 || N < 0 || K < 0 || K > ET_Q_MAX_K || !a || !w || !y || a_zp < 0 || a_zp > 255 ||           \
        !requant_ok(N, mult, y_zp, qmin, qmax))                                                            \
        return ET_ERR_ARG;                                                                                 \
    const q_gemm_job job = {N, K, y_rs, y_cs, a, w, bias, mult, y, a_zp, y_zp, qmin, qmax, DOT};          \
    et_parallel_ranges(M, et_split_chunks(M, nthreads), nthreads, ROWS, (void *)&job);                    \
    return ET_OK;

et_status et_q_gemm_requant__ref(int64_t M, int64_t N, int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w,
                                 const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                                 uint8_t *y, int64_t y_rs, int64_t y_cs, int nthreads) {
    Q_GEMM_BODY(q_dot__ref)
}

#if defined(ET_HAVE_X86_SIMD)
ET_TARGET_AVX2 static int64_t q_dot__avx2(int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w) {
    __m256i acc = _mm256_setzero_si256();
    const __m256i zp = _mm256_set1_epi16((short)a_zp);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m256i av = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + k))), zp);
        const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + k)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(av, wv));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    int64_t r = _mm_cvtsi128_si32(s);
    for (; k < K; k++) r += (int64_t)((int32_t)a[k] - a_zp) * w[k];
    return r;
}

ET_TARGET_AVX2 static et_status et_q_gemm_requant__avx2(int64_t M, int64_t N, int64_t K, const uint8_t *a,
                                                        int32_t a_zp, const int8_t *w, const int32_t *bias,
                                                        const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                                                        uint8_t *y, int64_t y_rs, int64_t y_cs, int nthreads) {
    Q_GEMM_BODY(q_dot__avx2)
}

ET_TARGET_AVX512 static int64_t q_dot__avx512(int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w) {
    __m512i acc = _mm512_setzero_si512();
    const __m512i zp = _mm512_set1_epi16((short)a_zp);
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        const __m512i av = _mm512_sub_epi16(_mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(a + k))), zp);
        const __m512i wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k)));
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(av, wv));
    }
    int64_t r = _mm512_reduce_add_epi32(acc); /* |sum| < 2^31: no wrap in any lane order */
    for (; k < K; k++) r += (int64_t)((int32_t)a[k] - a_zp) * w[k];
    return r;
}

ET_TARGET_AVX512 static et_status et_q_gemm_requant__avx512(int64_t M, int64_t N, int64_t K, const uint8_t *a,
                                                            int32_t a_zp, const int8_t *w, const int32_t *bias,
                                                            const float *mult, int32_t y_zp, int32_t qmin,
                                                            int32_t qmax, uint8_t *y, int64_t y_rs, int64_t y_cs,
                                                            int nthreads) {
    Q_GEMM_BODY(q_dot__avx512)
}

/* vpdpbusd multiplies u8 a by s8 w directly (no +128 trick) and adds each group of four
 * products to an int32 lane, without saturation. Two accumulators: sum a*w and sum a_zp*w
 * (a_zp broadcast as u8); their difference is sum (a - a_zp)*w. Every partial and total sum
 * here is at most 255 * 128 * K < 2^31 in size (K <= ET_Q_MAX_K), and the lane adds, the
 * subtraction and the reduction wrap modulo 2^32 at worst, so the int32 result is the exact
 * integer of __ref. The tail (K % 64) is a masked load: zero bytes add zero products. */
ET_TARGET_AVX512VNNI static int64_t q_dot__avx512vnni(int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w) {
    __m512i aw = _mm512_setzero_si512(), zw = _mm512_setzero_si512();
    const __m512i zp = _mm512_set1_epi8((char)a_zp);
    int64_t k = 0;
    for (; k + 64 <= K; k += 64) {
        const __m512i wv = _mm512_loadu_si512((const void *)(w + k));
        aw = _mm512_dpbusd_epi32(aw, _mm512_loadu_si512((const void *)(a + k)), wv);
        zw = _mm512_dpbusd_epi32(zw, zp, wv);
    }
    if (k < K) {
        const __mmask64 m = ~0ULL >> (64 - (K - k));
        const __m512i wv = _mm512_maskz_loadu_epi8(m, w + k);
        aw = _mm512_dpbusd_epi32(aw, _mm512_maskz_loadu_epi8(m, a + k), wv);
        zw = _mm512_dpbusd_epi32(zw, zp, wv);
    }
    return _mm512_reduce_add_epi32(_mm512_sub_epi32(aw, zw));
}

/* Rows [m0, m1) four columns at a time (one load of a feeds four vpdpbusd), the zero-point
 * term a_zp * sum_k w[n, k] formed once per column block in int64 (exact: an integer sum in any
 * order) and subtracted from the u8 x s8 sum (at most 255 * 128 * K < 2^31 in size, so its
 * int32 lanes and reduction are exact, as above). Leftover columns use q_dot__avx512vnni. */
ET_TARGET_AVX512VNNI static void q_gemm_rows__avx512vnni(void *ctx, int64_t m0, int64_t m1, int tid) {
    const q_gemm_job *k = (const q_gemm_job *)ctx;
    const int64_t K = k->K, kv = K & ~(int64_t)63;
    const __mmask64 tm = K > kv ? ~0ULL >> (64 - (K - kv)) : 0;
    int64_t zterm[64];
    (void)tid;
    for (int64_t n0 = 0; n0 < k->N; n0 += 64) {
        const int64_t nb = k->N - n0 < 64 ? k->N - n0 : 64, n4 = nb & ~(int64_t)3;
        for (int64_t j = 0; j < n4; j++) {
            const int8_t *wn = k->w + (n0 + j) * K;
            int64_t sw = 0;
            for (int64_t i = 0; i < K; i++) sw += wn[i];
            zterm[j] = (int64_t)k->a_zp * sw;
        }
        int64_t m = m0;
        for (; m + 4 <= m1; m += 4) /* four rows per load of w (a quarter of the w traffic) */
            for (int64_t j = 0; j < n4; j += 4) {
                const int8_t *w0 = k->w + (n0 + j) * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
                const uint8_t *a0 = k->a + m * K, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
                __m512i c[4][4];
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++) c[r][q] = _mm512_setzero_si512();
#define Q_G4_STEP(LOADA, LOADW)                                                                     \
    do {                                                                                          \
        const __m512i v0 = LOADW(w0), v1 = LOADW(w1), v2 = LOADW(w2), v3 = LOADW(w3);            \
        const __m512i u0 = LOADA(a0), u1 = LOADA(a1), u2 = LOADA(a2), u3 = LOADA(a3);            \
        c[0][0] = _mm512_dpbusd_epi32(c[0][0], u0, v0), c[0][1] = _mm512_dpbusd_epi32(c[0][1], u0, v1); \
        c[0][2] = _mm512_dpbusd_epi32(c[0][2], u0, v2), c[0][3] = _mm512_dpbusd_epi32(c[0][3], u0, v3); \
        c[1][0] = _mm512_dpbusd_epi32(c[1][0], u1, v0), c[1][1] = _mm512_dpbusd_epi32(c[1][1], u1, v1); \
        c[1][2] = _mm512_dpbusd_epi32(c[1][2], u1, v2), c[1][3] = _mm512_dpbusd_epi32(c[1][3], u1, v3); \
        c[2][0] = _mm512_dpbusd_epi32(c[2][0], u2, v0), c[2][1] = _mm512_dpbusd_epi32(c[2][1], u2, v1); \
        c[2][2] = _mm512_dpbusd_epi32(c[2][2], u2, v2), c[2][3] = _mm512_dpbusd_epi32(c[2][3], u2, v3); \
        c[3][0] = _mm512_dpbusd_epi32(c[3][0], u3, v0), c[3][1] = _mm512_dpbusd_epi32(c[3][1], u3, v1); \
        c[3][2] = _mm512_dpbusd_epi32(c[3][2], u3, v2), c[3][3] = _mm512_dpbusd_epi32(c[3][3], u3, v3); \
    } while (0)
#define Q_G4_LD(P) _mm512_loadu_si512((const void *)((P) + i))
#define Q_G4_LDM(P) _mm512_maskz_loadu_epi8(tm, (P) + kv)
                for (int64_t i = 0; i < kv; i += 64) Q_G4_STEP(Q_G4_LD, Q_G4_LD);
                if (tm) Q_G4_STEP(Q_G4_LDM, Q_G4_LDM); /* masked-off bytes load as 0 and add 0 */
#undef Q_G4_STEP
#undef Q_G4_LD
#undef Q_G4_LDM
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++)
                        q_out(k, m + r, n0 + j + q, (int64_t)_mm512_reduce_add_epi32(c[r][q]) - zterm[j + q]);
            }
        for (int64_t r = m0; r < m; r++) /* the leftover columns of those rows */
            for (int64_t j = n4; j < nb; j++)
                q_out(k, r, n0 + j, q_dot__avx512vnni(K, k->a + r * K, k->a_zp, k->w + (n0 + j) * K));
        for (; m < m1; m++) {
            const uint8_t *am = k->a + m * K;
            for (int64_t j = 0; j < n4; j += 4) {
                const int8_t *w0 = k->w + (n0 + j) * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
                __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
                for (int64_t i = 0; i < kv; i += 64) {
                    const __m512i av = _mm512_loadu_si512((const void *)(am + i));
                    c0 = _mm512_dpbusd_epi32(c0, av, _mm512_loadu_si512((const void *)(w0 + i)));
                    c1 = _mm512_dpbusd_epi32(c1, av, _mm512_loadu_si512((const void *)(w1 + i)));
                    c2 = _mm512_dpbusd_epi32(c2, av, _mm512_loadu_si512((const void *)(w2 + i)));
                    c3 = _mm512_dpbusd_epi32(c3, av, _mm512_loadu_si512((const void *)(w3 + i)));
                }
                if (tm) { /* masked-off bytes load as 0 and add 0 */
                    const __m512i av = _mm512_maskz_loadu_epi8(tm, am + kv);
                    c0 = _mm512_dpbusd_epi32(c0, av, _mm512_maskz_loadu_epi8(tm, w0 + kv));
                    c1 = _mm512_dpbusd_epi32(c1, av, _mm512_maskz_loadu_epi8(tm, w1 + kv));
                    c2 = _mm512_dpbusd_epi32(c2, av, _mm512_maskz_loadu_epi8(tm, w2 + kv));
                    c3 = _mm512_dpbusd_epi32(c3, av, _mm512_maskz_loadu_epi8(tm, w3 + kv));
                }
                q_out(k, m, n0 + j, (int64_t)_mm512_reduce_add_epi32(c0) - zterm[j]);
                q_out(k, m, n0 + j + 1, (int64_t)_mm512_reduce_add_epi32(c1) - zterm[j + 1]);
                q_out(k, m, n0 + j + 2, (int64_t)_mm512_reduce_add_epi32(c2) - zterm[j + 2]);
                q_out(k, m, n0 + j + 3, (int64_t)_mm512_reduce_add_epi32(c3) - zterm[j + 3]);
            }
            for (int64_t j = n4; j < nb; j++) q_out(k, m, n0 + j, q_dot__avx512vnni(K, am, k->a_zp, k->w + (n0 + j) * K));
        }
    }
}

ET_TARGET_AVX512VNNI static et_status et_q_gemm_requant__avx512vnni(int64_t M, int64_t N, int64_t K, const uint8_t *a,
                                                                    int32_t a_zp, const int8_t *w, const int32_t *bias,
                                                                    const float *mult, int32_t y_zp, int32_t qmin,
                                                                    int32_t qmax, uint8_t *y, int64_t y_rs, int64_t y_cs,
                                                                    int nthreads) {
    Q_GEMM_BODY_ROWS(q_dot__avx512vnni, q_gemm_rows__avx512vnni)
}
#endif

#if defined(ET_HAVE_AVXVNNI)
/* The AVX-VNNI (VEX, ymm) form of __avx512vnni: the same two sums, 32 bytes a step, and an
 * int64 scalar tail (AVX2 has no byte-masked load). */
ET_TARGET_AVXVNNI static int64_t q_dot__avxvnni(int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w) {
    __m256i aw = _mm256_setzero_si256(), zw = _mm256_setzero_si256();
    const __m256i zp = _mm256_set1_epi8((char)a_zp);
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + k));
        aw = _mm256_dpbusd_avx_epi32(aw, _mm256_loadu_si256((const __m256i *)(a + k)), wv);
        zw = _mm256_dpbusd_avx_epi32(zw, zp, wv);
    }
    const __m256i d = _mm256_sub_epi32(aw, zw);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    int64_t r = _mm_cvtsi128_si32(s);
    for (; k < K; k++) r += (int64_t)((int32_t)a[k] - a_zp) * w[k];
    return r;
}

/* Rows [m0, m1) as q_gemm_rows__avx512vnni, on ymm: four columns per load of a, the zero-point
 * term once per column block, the K % 32 tail as int64 scalar products a * w. */
ET_TARGET_AVXVNNI static void q_gemm_rows__avxvnni(void *ctx, int64_t m0, int64_t m1, int tid) {
    const q_gemm_job *k = (const q_gemm_job *)ctx;
    const int64_t K = k->K, kv = K & ~(int64_t)31;
    int64_t zterm[64];
    (void)tid;
    for (int64_t n0 = 0; n0 < k->N; n0 += 64) {
        const int64_t nb = k->N - n0 < 64 ? k->N - n0 : 64, n4 = nb & ~(int64_t)3;
        for (int64_t j = 0; j < n4; j++) {
            const int8_t *wn = k->w + (n0 + j) * K;
            int64_t sw = 0;
            for (int64_t i = 0; i < K; i++) sw += wn[i];
            zterm[j] = (int64_t)k->a_zp * sw;
        }
        for (int64_t m = m0; m < m1; m++) {
            const uint8_t *am = k->a + m * K;
            for (int64_t j = 0; j < n4; j += 4) {
                const int8_t *wj[4] = {k->w + (n0 + j) * K, k->w + (n0 + j + 1) * K, k->w + (n0 + j + 2) * K,
                                       k->w + (n0 + j + 3) * K};
                __m256i c[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                                _mm256_setzero_si256()};
                for (int64_t i = 0; i < kv; i += 32) {
                    const __m256i av = _mm256_loadu_si256((const __m256i *)(am + i));
                    for (int q = 0; q < 4; q++)
                        c[q] = _mm256_dpbusd_avx_epi32(c[q], av, _mm256_loadu_si256((const __m256i *)(wj[q] + i)));
                }
                for (int q = 0; q < 4; q++) {
                    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(c[q]), _mm256_extracti128_si256(c[q], 1));
                    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
                    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
                    int64_t r = _mm_cvtsi128_si32(s);
                    for (int64_t i = kv; i < K; i++) r += (int64_t)am[i] * wj[q][i];
                    q_out(k, m, n0 + j + q, r - zterm[j + q]);
                }
            }
            for (int64_t j = n4; j < nb; j++) q_out(k, m, n0 + j, q_dot__avxvnni(K, am, k->a_zp, k->w + (n0 + j) * K));
        }
    }
}

ET_TARGET_AVXVNNI static et_status et_q_gemm_requant__avxvnni(int64_t M, int64_t N, int64_t K, const uint8_t *a,
                                                              int32_t a_zp, const int8_t *w, const int32_t *bias,
                                                              const float *mult, int32_t y_zp, int32_t qmin,
                                                              int32_t qmax, uint8_t *y, int64_t y_rs, int64_t y_cs,
                                                              int nthreads) {
    Q_GEMM_BODY_ROWS(q_dot__avxvnni, q_gemm_rows__avxvnni)
}
#endif

#if defined(ET_HAVE_NEON)
static int64_t q_dot__neon(int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w) {
    int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
    const int16x8_t zp = vdupq_n_s16((int16_t)a_zp);
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        const int16x8_t av = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vld1_u8(a + k))), zp);
        const int16x8_t wv = vmovl_s8(vld1_s8(w + k));
        acc0 = vmlal_s16(acc0, vget_low_s16(av), vget_low_s16(wv));
        acc1 = vmlal_s16(acc1, vget_high_s16(av), vget_high_s16(wv));
    }
    int64_t r = vaddvq_s32(vaddq_s32(acc0, acc1));
    for (; k < K; k++) r += (int64_t)((int32_t)a[k] - a_zp) * w[k];
    return r;
}

static et_status et_q_gemm_requant__neon(int64_t M, int64_t N, int64_t K, const uint8_t *a, int32_t a_zp,
                                         const int8_t *w, const int32_t *bias, const float *mult, int32_t y_zp,
                                         int32_t qmin, int32_t qmax, uint8_t *y, int64_t y_rs, int64_t y_cs,
                                         int nthreads) {
    Q_GEMM_BODY(q_dot__neon)
}
#endif

#if defined(ET_HAVE_NEON_DOT)
/* sdot multiplies s8 by s8 (four products into an int32 lane). The +128 trick, done on both
 * sides: a - 128 (a XOR 0x80, as s8) and a_zp - 128 (broadcast s8) are each in [-128, 127];
 * sum (a - 128)*w - sum (a_zp - 128)*w = sum (a - a_zp)*w. Each sum is at most 128 * 128 * K
 * and the difference at most 255 * 128 * K < 2^31 in size (K <= ET_Q_MAX_K): the wrapping
 * lane subtraction and reduction give the exact integer of __ref. int64 scalar tail. */
ET_TARGET_NEONDOT static int64_t q_dot__neondot(int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w) {
    int32x4_t aw = vdupq_n_s32(0), zw = vdupq_n_s32(0);
    const int8x16_t zp = vdupq_n_s8((int8_t)(a_zp - 128));
    const uint8x16_t flip = vdupq_n_u8(0x80);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        const int8x16_t wv = vld1q_s8(w + k);
        aw = vdotq_s32(aw, vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a + k), flip)), wv);
        zw = vdotq_s32(zw, zp, wv);
    }
    int64_t r = vaddvq_s32(vsubq_s32(aw, zw));
    for (; k < K; k++) r += (int64_t)((int32_t)a[k] - a_zp) * w[k];
    return r;
}

/* Rows [m0, m1) four columns per load of a (as q_gemm_rows__avx512vnni): S = sum (a - 128) * w
 * by sdot (at most 128 * 128 * K < 2^31 in size: exact in int32 lanes), minus the term
 * (a_zp - 128) * sum_k w formed once per column block in int64; the K % 16 tail adds
 * (a - 128) * w as int64 scalars. */
ET_TARGET_NEONDOT static void q_gemm_rows__neondot(void *ctx, int64_t m0, int64_t m1, int tid) {
    const q_gemm_job *k = (const q_gemm_job *)ctx;
    const int64_t K = k->K, kv = K & ~(int64_t)15;
    const uint8x16_t flip = vdupq_n_u8(0x80);
    int64_t zterm[64];
    (void)tid;
    for (int64_t n0 = 0; n0 < k->N; n0 += 64) {
        const int64_t nb = k->N - n0 < 64 ? k->N - n0 : 64, n4 = nb & ~(int64_t)3;
        for (int64_t j = 0; j < n4; j++) {
            const int8_t *wn = k->w + (n0 + j) * K;
            int64_t sw = 0;
            for (int64_t i = 0; i < K; i++) sw += wn[i];
            zterm[j] = (int64_t)(k->a_zp - 128) * sw;
        }
        for (int64_t m = m0; m < m1; m++) {
            const uint8_t *am = k->a + m * K;
            for (int64_t j = 0; j < n4; j += 4) {
                const int8_t *w0 = k->w + (n0 + j) * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
                int32x4_t c0 = vdupq_n_s32(0), c1 = c0, c2 = c0, c3 = c0;
                for (int64_t i = 0; i < kv; i += 16) {
                    const int8x16_t av = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(am + i), flip));
                    c0 = vdotq_s32(c0, av, vld1q_s8(w0 + i));
                    c1 = vdotq_s32(c1, av, vld1q_s8(w1 + i));
                    c2 = vdotq_s32(c2, av, vld1q_s8(w2 + i));
                    c3 = vdotq_s32(c3, av, vld1q_s8(w3 + i));
                }
                int64_t r0 = vaddvq_s32(c0), r1 = vaddvq_s32(c1), r2 = vaddvq_s32(c2), r3 = vaddvq_s32(c3);
                for (int64_t i = kv; i < K; i++) {
                    const int64_t ai = (int64_t)am[i] - 128;
                    r0 += ai * w0[i], r1 += ai * w1[i], r2 += ai * w2[i], r3 += ai * w3[i];
                }
                q_out(k, m, n0 + j, r0 - zterm[j]);
                q_out(k, m, n0 + j + 1, r1 - zterm[j + 1]);
                q_out(k, m, n0 + j + 2, r2 - zterm[j + 2]);
                q_out(k, m, n0 + j + 3, r3 - zterm[j + 3]);
            }
            for (int64_t j = n4; j < nb; j++) q_out(k, m, n0 + j, q_dot__neondot(K, am, k->a_zp, k->w + (n0 + j) * K));
        }
    }
}

ET_TARGET_NEONDOT static et_status et_q_gemm_requant__neondot(int64_t M, int64_t N, int64_t K, const uint8_t *a,
                                                              int32_t a_zp, const int8_t *w, const int32_t *bias,
                                                              const float *mult, int32_t y_zp, int32_t qmin,
                                                              int32_t qmax, uint8_t *y, int64_t y_rs, int64_t y_cs,
                                                              int nthreads) {
    Q_GEMM_BODY_ROWS(q_dot__neondot, q_gemm_rows__neondot)
}
#endif

const et_q_gemm_variant et_q_gemm_variants[] = {
    {{ET_ISA_REF, "ref"}, et_q_gemm_requant__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_q_gemm_requant__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_q_gemm_requant__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, et_q_gemm_requant__neon},
#endif
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512VNNI, "avx512vnni"}, et_q_gemm_requant__avx512vnni},
#endif
#if defined(ET_HAVE_AVXVNNI)
    {{ET_ISA_AVXVNNI, "avxvnni"}, et_q_gemm_requant__avxvnni},
#endif
#if defined(ET_HAVE_NEON_DOT)
    {{ET_ISA_NEONDOT, "neondot"}, et_q_gemm_requant__neondot},
#endif
    {{ET_ISA_REF, NULL}, NULL},
};

et_status et_q_gemm_requant(int64_t M, int64_t N, int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w,
                            const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                            uint8_t *y, int64_t y_rs, int64_t y_cs, int nthreads) {
    const et_q_gemm_variant *row = ET_VARIANT_PICK(et_q_gemm_variants);
    return row->gemm(M, N, K, a, a_zp, w, bias, mult, y_zp, qmin, qmax, y, y_rs, y_cs, nthreads);
}

/* One [KH, KW] filter per channel (the depthwise case): the direct path, no workspace. */
static int q_is_depthwise(const et_conv2d_params *p) { return p->groups == p->c && p->oc == p->c; }

size_t et_q_conv2d_im2col_ws_bytes(const et_conv2d_params *p) {
    return (size_t)(p->oh * p->ow * (p->c / p->groups) * p->kh * p->kw);
}

size_t et_q_conv2d_ws_bytes_nt(const et_conv2d_params *p, int nthreads);
size_t et_q_conv2d_ws_bytes(const et_conv2d_params *p) { return et_q_conv2d_ws_bytes_nt(p, 1); }

static int q_conv_args_ok(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w,
                          const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax, const uint8_t *y) {
    return p && x && w && y && x_zp >= 0 && x_zp <= 255 && requant_ok(p->oc, mult, y_zp, qmin, qmax);
}

/* Patches of group g of image x[c, h, w]: cols[pixel, (ci, i, j)], padding = the zero point. */
static void q_im2col(const et_conv2d_params *p, const uint8_t *x, int64_t g, uint8_t pad, uint8_t *cols) {
    const int64_t cg = p->c / p->groups, K = cg * p->kh * p->kw;
    for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ox = 0; ox < p->ow; ox++) {
            uint8_t *col = cols + (oy * p->ow + ox) * K;
            for (int64_t ci = 0; ci < cg; ci++) {
                const uint8_t *xc = x + (g * cg + ci) * p->h * p->w;
                for (int64_t i = 0; i < p->kh; i++) {
                    const int64_t iy = oy * p->stride_h - p->pad_t + i * p->dil_h;
                    for (int64_t j = 0; j < p->kw; j++) {
                        const int64_t ix = ox * p->stride_w - p->pad_l + j * p->dil_w;
                        const int in = iy >= 0 && iy < p->h && ix >= 0 && ix < p->w;
                        *col++ = in ? xc[iy * p->w + ix] : pad;
                    }
                }
            }
        }
}

et_status et_q_conv2d_im2col(et_q_gemm_fn gemm, const et_conv2d_params *p, const uint8_t *x, int32_t x_zp,
                             const int8_t *w, const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin,
                             int32_t qmax, uint8_t *y, void *ws, size_t ws_bytes, int nthreads) {
    if (!gemm || !q_conv_args_ok(p, x, x_zp, w, mult, y_zp, qmin, qmax, y)) return ET_ERR_ARG;
    if (!ws || ws_bytes < et_q_conv2d_im2col_ws_bytes(p)) return ET_ERR_WORKSPACE;
    const int64_t cg = p->c / p->groups, ocg = p->oc / p->groups, K = cg * p->kh * p->kw, P = p->oh * p->ow;
    uint8_t *cols = (uint8_t *)ws;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t g = 0; g < p->groups; g++) {
            q_im2col(p, x + n * p->c * p->h * p->w, g, (uint8_t)x_zp, cols);
            /* rows = pixels, columns = this group's output channels; y[n, oc, pixel] */
            et_status st = gemm(P, ocg, K, cols, x_zp, w + g * ocg * K, bias ? bias + g * ocg : NULL, mult + g * ocg,
                                y_zp, qmin, qmax, y + (n * p->oc + g * ocg) * P, 1, P, nthreads);
            if (st != ET_OK) return st;
        }
    return ET_OK;
}

/* The direct depthwise convolution: one job per (image, channel) plane, in blocks of output
 * rows. A block's input rows are first copied into a stack buffer padded with the zero point
 * (column u of the copy = input column u - pad_l), so every tap reads inside it and padding
 * adds (x_zp - x_zp) * w = 0, as in im2col. acc[oy, ox] = sum_{i,j} (x[..] - x_zp) * w[c, i, j]
 * in int32 (at most 255 * 128 * KH * KW < 2^31 in size, KH * KW <= ET_Q_MAX_K), then + bias in
 * int64 and the same q_requant as the GEMM path: the same integers as im2col + GEMM, so the
 * same bytes, for every partition of the planes. With stride 1 the accumulators of a block are
 * laid out with the padded row width, so each tap is ONE contiguous loop over the whole block
 * (rows and columns; the columns past the output width are computed and dropped), which the
 * compiler vectorises even for 7-pixel rows; other strides loop per output row. Rows too wide
 * for the stack buffers take q_dw_block_cols (output columns in blocks, taps clipped to the
 * image). */
#define Q_DW_PAD 16384 /* bytes of padded input rows per block */
#define Q_DW_ACC 4096  /* int32 accumulators per block */
#define Q_DW_COLS 256  /* columns per block of q_dw_block_cols */
typedef struct q_dw_job {
    const et_conv2d_params *p;
    const uint8_t *x;
    const int8_t *w;
    const int32_t *bias;
    const float *mult;
    uint8_t *y;
    int32_t x_zp, y_zp, qmin, qmax;
    int64_t wp, rows; /* padded row width; output rows per padded block (0: use q_dw_block_cols) */
} q_dw_job;



/* The output rows per padded block: (rows - 1) * sh + the kernel's height in input rows of wp
 * bytes must fit Q_DW_PAD, the accumulators Q_DW_ACC; 0 when not even one row fits. */
static int64_t q_dw_rows_per_block(const et_conv2d_params *p, int64_t wp) {
    const int64_t ext_h = (p->kh - 1) * p->dil_h + 1, as = p->stride_w == 1 ? wp : p->ow;
    if (wp > Q_DW_PAD || ext_h > Q_DW_PAD / wp || as > Q_DW_ACC) return 0;
    int64_t rows = (Q_DW_PAD / wp - ext_h) / p->stride_h + 1;
    if (rows > Q_DW_ACC / as) rows = Q_DW_ACC / as;
    return rows < p->oh ? rows : p->oh;
}



/* Columns [*t0, *t1) of the block [ox0, ox0 + nb) whose input column ox * sw + off is in [0, W). */
static void q_dw_cols(int64_t ox0, int64_t nb, int64_t sw, int64_t off, int64_t W, int64_t *t0, int64_t *t1) {
    const int64_t first = off >= 0 ? 0 : (-off + sw - 1) / sw;     /* first ox with ix >= 0 */
    const int64_t end = W - off > 0 ? (W - off - 1) / sw + 1 : 0; /* first ox with ix >= W */
    *t0 = first > ox0 ? first - ox0 : 0;
    *t1 = end - ox0 < nb ? end - ox0 : nb;
    if (*t1 < *t0) *t1 = *t0;
}



#define QDW(f) f##__ref
#define QDW_TARGET
#include "qdw_body.h"
#undef QDW
#undef QDW_TARGET
#if defined(ET_HAVE_X86_SIMD)
#define QDW(f) f##__avx2
#define QDW_TARGET ET_TARGET_AVX2
#include "qdw_body.h"
#undef QDW
#undef QDW_TARGET
#define QDW(f) f##__avx512
#define QDW_TARGET ET_TARGET_AVX512
#include "qdw_body.h"
#undef QDW
#undef QDW_TARGET
#endif

static et_status q_dwconv2d_with(et_range_body planes, const et_conv2d_params *p, const uint8_t *x, int32_t x_zp,
                                 const int8_t *w, const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin,
                                 int32_t qmax, uint8_t *y, int nthreads) {
    if (p->kh * p->kw > ET_Q_MAX_K) return ET_ERR_ARG;
    const int64_t wp = (p->ow - 1) * p->stride_w + (p->kw - 1) * p->dil_w + 1;
    const q_dw_job job = {p, x, w, bias, mult, y, x_zp, y_zp, qmin, qmax, wp, q_dw_rows_per_block(p, wp)};
    const int64_t n_planes = p->n * p->c;
    et_parallel_ranges(n_planes, et_split_chunks(n_planes, nthreads), nthreads, planes, (void *)&job);
    return ET_OK;
}

/* Depthwise rows: the same loops compiled for each target (qdw_body.h); q_dwconv2d runs the
 * picked one, et_q_conv2d__ref the __ref one. */
#define Q_DW_ROW(SFX)                                                                                          \
    static et_status q_dwconv2d_##SFX(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w, \
                                      const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin,      \
                                      int32_t qmax, uint8_t *y, void *ws, size_t ws_bytes, int nthreads) {       \
        (void)ws, (void)ws_bytes;                                                                              \
        if (!q_conv_args_ok(p, x, x_zp, w, mult, y_zp, qmin, qmax, y) || !q_is_depthwise(p)) return ET_ERR_ARG;  \
        return q_dwconv2d_with(q_dw_planes__##SFX, p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, nthreads);  \
    }
Q_DW_ROW(ref)
#if defined(ET_HAVE_X86_SIMD)
Q_DW_ROW(avx2)
Q_DW_ROW(avx512)
#endif
#if defined(ET_HAVE_X86_SIMD)
/* The channels-in-lanes depthwise row (avx512): per (image, block of 16 channels) the input
 * planes are copied into a zero-point-padded window T[row][col][16] (channels interleaved), then
 * each output pixel is 16 channels at once: acc = sum_taps (T - x_zp) * w[c, tap] in int32 lanes
 * (exact: at most 255 * 128 * KH * KW < 2^31), + bias (exact in int32 when |bias| + that bound
 * < 2^31, checked; otherwise, or when the window does not fit the stack buffers, the plane
 * loops run), requantized as q_tile_store16 does (et_q_requant1's bits), and written back to
 * the channel planes. Small planes (7x7, 4x4, 1x1) are many short loops for the plane path;
 * here the work per pixel is a fixed number of vector instructions. */
#define Q_DWH_PIX 1024  /* padded input pixels and output pixels per window */
#define Q_DWH_TAB 16384 /* int32 entries of the per-call weight / bias / multiplier table */
typedef struct q_dwh_job {
    const et_conv2d_params *p;
    const uint8_t *x;
    const int8_t *w;
    const int32_t *bias;
    const float *mult;
    uint8_t *y;
    int32_t x_zp, y_zp, qmin, qmax;
    int64_t hp, wp; /* the padded window's size */
    int64_t cpad;   /* channels rounded up to 16 */
    const int32_t *wt, *bs; /* weights [tap][cpad], biases [cpad] (zero past c) */
    const float *ms;        /* multipliers [cpad] */
} q_dwh_job;

/* dst[j * ds + i] = src[i * ss + j], i, j < 16 (unpacks of bytes, words, dwords, qwords) */
ET_TARGET_AVX512 static inline void q_tr16x16(const uint8_t *src, int64_t ss, uint8_t *dst, int64_t ds) {
    __m128i a[16], b[16], c[16];
    for (int i = 0; i < 16; i++) a[i] = _mm_loadu_si128((const __m128i *)(src + i * ss));
    for (int k = 0; k < 8; k++) {
        b[k] = _mm_unpacklo_epi8(a[2 * k], a[2 * k + 1]);
        b[k + 8] = _mm_unpackhi_epi8(a[2 * k], a[2 * k + 1]);
    }
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++) {
            c[8 * h + k] = _mm_unpacklo_epi16(b[8 * h + 2 * k], b[8 * h + 2 * k + 1]);
            c[8 * h + 4 + k] = _mm_unpackhi_epi16(b[8 * h + 2 * k], b[8 * h + 2 * k + 1]);
        }
    for (int g = 0; g < 4; g++) {
        const __m128i d0 = _mm_unpacklo_epi32(c[4 * g], c[4 * g + 1]), d1 = _mm_unpackhi_epi32(c[4 * g], c[4 * g + 1]);
        const __m128i d2 = _mm_unpacklo_epi32(c[4 * g + 2], c[4 * g + 3]);
        const __m128i d3 = _mm_unpackhi_epi32(c[4 * g + 2], c[4 * g + 3]);
        _mm_storeu_si128((__m128i *)(dst + (4 * g) * ds), _mm_unpacklo_epi64(d0, d2));
        _mm_storeu_si128((__m128i *)(dst + (4 * g + 1) * ds), _mm_unpackhi_epi64(d0, d2));
        _mm_storeu_si128((__m128i *)(dst + (4 * g + 2) * ds), _mm_unpacklo_epi64(d1, d3));
        _mm_storeu_si128((__m128i *)(dst + (4 * g + 3) * ds), _mm_unpackhi_epi64(d1, d3));
    }
}

ET_TARGET_AVX512 static void q_dwh_block(const q_dwh_job *k, int64_t n, int64_t c0, uint8_t *T, uint8_t *O) {
    const et_conv2d_params *p = k->p;
    const int64_t cb = p->c - c0 < 16 ? p->c - c0 : 16, khw = p->kh * p->kw, ohw = p->oh * p->ow, hw = p->h * p->w;
    /* locals: a uint8_t store may alias the job, which would reload its fields per byte */
    const int64_t H = p->h, W = p->w, pt = p->pad_t, pl = p->pad_l, wpad = k->wp;
    memset(T, k->x_zp, (size_t)(k->hp * k->wp * 16));
    if (cb == 16) { /* the planes to [pixel][16] in O (16x16 transposes), then row by row into T */
        const uint8_t *xb = k->x + (n * p->c + c0) * hw;
        int64_t t = 0;
        for (; t + 16 <= hw; t += 16) q_tr16x16(xb + t, hw, O + t * 16, 16);
        for (; t < hw; t++)
            for (int64_t c = 0; c < 16; c++) O[t * 16 + c] = xb[c * hw + t];
        for (int64_t iy = 0; iy < H; iy++) memcpy(T + ((iy + pt) * wpad + pl) * 16, O + iy * W * 16, (size_t)(W * 16));
    } else
    for (int64_t c = 0; c < cb; c++) {
        const uint8_t *xc = k->x + (n * p->c + c0 + c) * hw;
        for (int64_t iy = 0; iy < H; iy++) {
            uint8_t *tr = T + ((iy + pt) * wpad + pl) * 16 + c;
            const uint8_t *xr = xc + iy * W;
            for (int64_t ix = 0; ix < W; ix++) tr[ix * 16] = xr[ix];
        }
    }
    __m512i wv[64]; /* khw <= 64 (checked) */
    for (int64_t t = 0; t < khw; t++) wv[t] = _mm512_loadu_si512((const void *)(k->wt + t * k->cpad + c0));
    const __m512i bias = _mm512_loadu_si512((const void *)(k->bs + c0)), zx = _mm512_set1_epi32(k->x_zp);
    const __m512i zy = _mm512_set1_epi32(k->y_zp);
    const __m512 mult = _mm512_loadu_ps(k->ms + c0), lo = _mm512_set1_ps((float)(k->qmin - k->y_zp));
    const __m512 hi = _mm512_set1_ps((float)(k->qmax - k->y_zp));
#define Q_DWH_TAP(OFF, W) \
    _mm512_mullo_epi32(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(OFF))), zx), W)
    const int k3 = p->kh == 3 && p->kw == 3 && p->dil_h == 1 && p->dil_w == 1;
    for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ox = 0; ox < p->ow; ox++) {
            __m512i acc = bias;
            if (k3) { /* 3x3: nine taps unrolled, two sums */
                const uint8_t *t0 = T + (oy * p->stride_h * k->wp + ox * p->stride_w) * 16, *t1 = t0 + k->wp * 16;
                const uint8_t *t2 = t1 + k->wp * 16;
                __m512i s0 = _mm512_add_epi32(Q_DWH_TAP(t0, wv[0]), Q_DWH_TAP(t0 + 16, wv[1]));
                __m512i s1 = _mm512_add_epi32(Q_DWH_TAP(t0 + 32, wv[2]), Q_DWH_TAP(t1, wv[3]));
                s0 = _mm512_add_epi32(s0, _mm512_add_epi32(Q_DWH_TAP(t1 + 16, wv[4]), Q_DWH_TAP(t1 + 32, wv[5])));
                s1 = _mm512_add_epi32(s1, _mm512_add_epi32(Q_DWH_TAP(t2, wv[6]), Q_DWH_TAP(t2 + 16, wv[7])));
                acc = _mm512_add_epi32(_mm512_add_epi32(acc, Q_DWH_TAP(t2 + 32, wv[8])), _mm512_add_epi32(s0, s1));
            } else
            for (int64_t i = 0; i < p->kh; i++) {
                const uint8_t *tr = T + ((oy * p->stride_h + i * p->dil_h) * k->wp + ox * p->stride_w) * 16;
                for (int64_t j = 0; j < p->kw; j++) {
                    const __m512i a = _mm512_sub_epi32(
                        _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(tr + j * p->dil_w * 16))), zx);
                    acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(a, wv[i * p->kw + j]));
                }
            }
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult); /* int32 adds in any order: exact */
            f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
            _mm_storeu_si128((__m128i *)(O + (oy * p->ow + ox) * 16),
                             _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), zy)));
        }
#undef Q_DWH_TAP
    uint8_t *yn = k->y + (n * p->c + c0) * ohw;
    int64_t t0 = 0;
    if (cb == 16)
        for (; t0 + 16 <= ohw; t0 += 16) q_tr16x16(O + t0 * 16, 16, yn + t0, ohw);
    for (int64_t c = 0; c < cb; c++) {
        uint8_t *yc = yn + c * ohw;
        for (int64_t t = t0; t < ohw; t++) yc[t] = O[t * 16 + c];
    }
}

ET_TARGET_AVX512 static void q_dwh_range(void *ctx, int64_t b0, int64_t b1, int tid) {
    const q_dwh_job *k = (const q_dwh_job *)ctx;
    const int64_t nb = (k->p->c + 15) / 16;
    uint8_t T[Q_DWH_PIX * 16], O[Q_DWH_PIX * 16];
    (void)tid;
    for (int64_t b = b0; b < b1; b++) q_dwh_block(k, b / nb, (b % nb) * 16, T, O);
}

static et_status q_dwconv2d_avx512h(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w,
                                    const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                                    uint8_t *y, void *ws, size_t ws_bytes, int nthreads) {
    if (!q_conv_args_ok(p, x, x_zp, w, mult, y_zp, qmin, qmax, y) || !q_is_depthwise(p)) return ET_ERR_ARG;
    const int64_t khw = p->kh * p->kw, hp = (p->oh - 1) * p->stride_h + (p->kh - 1) * p->dil_h + 1;
    const int64_t wp = (p->ow - 1) * p->stride_w + (p->kw - 1) * p->dil_w + 1;
    /* the window covers the padded input the outputs read, and at least the image */
    const int64_t hpp = hp > p->pad_t + p->h ? hp : p->pad_t + p->h, wpp = wp > p->pad_l + p->w ? wp : p->pad_l + p->w;
    const int64_t cpad = (p->c + 15) & ~(int64_t)15;
    int ok = khw <= 64 && hpp * wpp <= Q_DWH_PIX && p->oh * p->ow <= Q_DWH_PIX && cpad * (khw + 2) <= Q_DWH_TAB;
    const int64_t dmax = (int64_t)255 * 128 * khw;
    for (int64_t c = 0; ok && bias && c < p->c; c++) ok = (bias[c] < 0 ? -(int64_t)bias[c] : bias[c]) + dmax <= INT32_MAX;
    if (!ok) return q_dwconv2d_avx512(p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes, nthreads);
    int32_t tab[Q_DWH_TAB]; /* the weights by tap, biases, multipliers: read by every block */
    int32_t *wt = tab, *bs = tab + khw * cpad;
    float *ms = (float *)(void *)(bs + cpad);
    memset(tab, 0, sizeof(int32_t) * (size_t)(cpad * (khw + 2)));
    for (int64_t c = 0; c < p->c; c++) {
        for (int64_t t = 0; t < khw; t++) wt[t * cpad + c] = w[c * khw + t];
        bs[c] = bias ? bias[c] : 0, ms[c] = mult[c];
    }
    const q_dwh_job job = {p, x, w, bias, mult, y, x_zp, y_zp, qmin, qmax, hpp, wpp, cpad, wt, bs, ms};
    const int64_t blocks = p->n * ((p->c + 15) / 16);
    et_parallel_ranges(blocks, et_split_chunks(blocks, nthreads), nthreads, q_dwh_range, (void *)&job);
    return ET_OK;
}
#endif
const et_q_conv2d_variant et_q_dwconv2d_variants[] = {
    {{ET_ISA_REF, "ref"}, q_dwconv2d_ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, q_dwconv2d_avx2},
    {{ET_ISA_AVX512, "avx512"}, q_dwconv2d_avx512h},
#endif
    {{ET_ISA_REF, NULL}, NULL},
};

static et_status q_dwconv2d(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w,
                            const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                            uint8_t *y, int nthreads) {
    const et_q_conv2d_variant *row = ET_VARIANT_PICK(et_q_dwconv2d_variants);
    return row->conv(p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, NULL, 0, nthreads);
}

static et_status q_conv2d(et_q_gemm_fn gemm, const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w,
                           const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                           uint8_t *y, void *ws, size_t ws_bytes, int nthreads) {
    if (!q_conv_args_ok(p, x, x_zp, w, mult, y_zp, qmin, qmax, y)) return ET_ERR_ARG;
    if (q_is_depthwise(p))
        return gemm == et_q_gemm_requant__ref ? q_dwconv2d_ref(p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, NULL, 0, nthreads)
                                              : q_dwconv2d(p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, nthreads);
    return et_q_conv2d_im2col(gemm, p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes, nthreads);
}

et_status et_q_conv2d__ref(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w,
                           const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                           uint8_t *y, void *ws, size_t ws_bytes, int nthreads) {
    return q_conv2d(et_q_gemm_requant__ref, p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes, nthreads);
}

/* The tiled convolution (the SIMD rows of et_q_conv2d_variants; every qconv2d but the
 * depthwise one). One parallel job over tiles of Q_TILE output pixels of one (image, group);
 * each tile's patches are packed into the thread's workspace slot as A[k / 4][pixel][k % 4]
 * (the u8 operand of a dot-product instruction: 4 consecutive k of one pixel in each 32-bit
 * lane), and the micro-kernel forms y[oc, pixels] with the pixels in vector lanes and 4 bytes
 * of w[oc] broadcast: sum_k a * w (u8 x s8), at most 255 * 128 * K < 2^31 in size, so exact in
 * int32 lanes. zterm[oc] = bias[oc] - x_zp * sum_k w[oc, k] (once per call) turns it into
 * acc = bias + sum_k (a - x_zp) * w, exact in int32 when |bias| + 255 * 128 * K < 2^31 (checked
 * per call; otherwise the im2col path runs). The last group of 4 weights of each row is read
 * from wtail[oc] (zero-padded, so the packed bytes past K add nothing). Requantize per vector:
 * (float)acc (cvtdq2ps rounds like the int64 -> float conversion: both exact-or-nearest-even of
 * the same integer), times mult[oc], clamped to [qmin - y_zp, qmax - y_zp], rounded to nearest
 * even (cvtps2dq in the default rounding mode), + y_zp: et_q_requant1's bits. Each output
 * depends on its own tile only, so every thread count gives the same bytes. */
#define Q_TILE 64 /* output pixels per tile (4 zmm of 16 int32 lanes) */
typedef struct q_tile_job q_tile_job;
/* out(oc, t) = yb[oc * ys + t] for the group's channels, lanes t < np */
typedef void (*q_tile_fn)(const q_tile_job *k, const uint8_t *A, int64_t g, uint8_t *yb, int64_t ys, int64_t np);
struct q_tile_job {
    const et_conv2d_params *p;
    const uint8_t *x;
    const int8_t *w; /* rows of K bytes: the weights (1x1), or repacked in the HWC4 order */
    const float *mult;
    uint8_t *y;
    const int32_t *zterm, *wtail;
    uint8_t *bufs;
    int64_t K, K4, cg, c4, ocg, P, tiles_img, buf_bytes;
    int32_t x_zp, y_zp, qmin, qmax;
    int mode; /* Q_TILE_DIRECT, Q_TILE_ROWS, Q_TILE_HWC, Q_TILE_WIN */
    int span; /* direct, one group, images of fewer than Q_TILE pixels: tiles run across images */
    int gather; /* the HWC4 words by vpgatherdd (the avx512vnni row) */
    q_tile_fn tile;
};

/* Two packings. A 1x1 stride-1 unpadded convolution ("direct") reads rows of the patch matrix
 * straight from x (k = input channel; w as given, its last partial group in wtail). Every other
 * one ("HWC4") first copies the tile's input window into T[row][col][c4 * 4] (channels in
 * groups of 4, the zero point outside the image, channels past cg zero) and orders k as
 * (i, j, channel): each 32-bit word of A is then one load from T. Its weights are repacked per
 * call in the same order, zero for the channels past cg (so those add nothing). */
enum { Q_TILE_DIRECT, Q_TILE_ROWS, Q_TILE_HWC, Q_TILE_WIN };
static int q_tile_mode(const et_conv2d_params *p) {
    if (p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 && p->pad_l == 0 &&
        p->oh == p->h && p->ow == p->w)
        return Q_TILE_DIRECT;
    if (p->c / p->groups >= 4) return Q_TILE_HWC;
    return p->dil_w == 1 ? Q_TILE_WIN : Q_TILE_ROWS;
}
/* 1: the weights as given (k = (ci, i, j)); 0: repacked per call (HWC4, WIN) */
static int q_tile_direct(const et_conv2d_params *p) {
    const int m = q_tile_mode(p);
    return m == Q_TILE_DIRECT || m == Q_TILE_ROWS;
}
/* WIN (fewer than 4 channels per group, no column dilation): k = (ci, i, j) with j padded to
 * kw4 = a multiple of 4 (zero weights), so 4 consecutive k are 4 adjacent input columns: each
 * word of A is one 32-bit load from the tile's input window T[ci][row][col] (rows of wq bytes,
 * the zero point outside the image, 3 spare bytes at the end for the padded taps). */
static int64_t q_tile_kw4(const et_conv2d_params *p) { return (p->kw + 3) & ~(int64_t)3; }
static int64_t q_tile_c4(const et_conv2d_params *p) { return (p->c / p->groups + 3) / 4; }
static int64_t q_tile_Kp(const et_conv2d_params *p) {
    if (q_tile_mode(p) == Q_TILE_WIN) return (p->c / p->groups) * p->kh * q_tile_kw4(p);
    return p->kh * p->kw * (q_tile_direct(p) ? p->c / p->groups : 4 * q_tile_c4(p));
}
static int64_t q_tile_K4(const et_conv2d_params *p) { return (q_tile_Kp(p) + 3) / 4; }
static int64_t q_tile_wp(const et_conv2d_params *p) { return (p->ow - 1) * p->stride_w + (p->kw - 1) * p->dil_w + 1; }
/* input rows of the window of a tile: its output rows (at most (Q_TILE - 1) / ow + 2) */
static int64_t q_tile_rows(const et_conv2d_params *p) {
    int64_t span = (Q_TILE - 1) / p->ow + 2;
    span = span < p->oh ? span : p->oh;
    return (span - 1) * p->stride_h + (p->kh - 1) * p->dil_h + 1;
}
static int64_t q_tile_fixed_bytes(const et_conv2d_params *p) {
    const int64_t wbytes = q_tile_direct(p) ? 0 : p->oc * q_tile_Kp(p);
    return ((p->oc * 8 + 63) & ~(int64_t)63) + ((wbytes + 63) & ~(int64_t)63);
}
static int q_tile_span(const et_conv2d_params *p) {
    return q_tile_mode(p) == Q_TILE_DIRECT && p->groups == 1 && p->oh * p->ow < Q_TILE;
}
/* a slot: A, then the HWC4 window T or the spanning tiles' outputs [oc][Q_TILE] */
static int64_t q_tile_buf_bytes(const et_conv2d_params *p) {
    int64_t t = q_tile_direct(p) ? 0 : q_tile_rows(p) * q_tile_wp(p) * 4 * q_tile_c4(p);
    if (q_tile_mode(p) == Q_TILE_WIN) t = (p->c / p->groups) * q_tile_rows(p) * (q_tile_wp(p) + 3);
    if (q_tile_span(p)) t = p->oc * Q_TILE;
    return ((q_tile_K4(p) * 4 * Q_TILE + t + 63) & ~(int64_t)63);
}

size_t et_q_conv2d_ws_bytes_nt(const et_conv2d_params *p, int nthreads) {
    if (q_is_depthwise(p)) return 0;
    const size_t a = et_q_conv2d_im2col_ws_bytes(p);
    const size_t t = (size_t)(q_tile_fixed_bytes(p) + 64 + (nthreads > 1 ? nthreads : 1) * q_tile_buf_bytes(p));
    return a > t ? a : t;
}

/* The tiled path below runs only as the avx512vnni row (x86); its sizes above are used on every
 * target (et_q_conv2d_ws_bytes_nt). */
#if defined(ET_HAVE_X86_SIMD)
/* direct: rows kk of x (pixels [p0, p0 + np)) four at a time, interleaved as 32-bit words (byte
 * q = row q: little-endian, as every target of the SIMD rows); pixels past np and rows past K
 * are zero (never stored / times 0 through wtail). */
static void q_tile_pack_direct(const q_tile_job *k, const uint8_t *xg, int64_t p0, int64_t np, uint8_t *A) {
    const int64_t K = k->K, hw = k->P;
    uint8_t rows[4][Q_TILE];
    uint32_t words[Q_TILE];
    memset(rows, 0, sizeof rows);
    for (int64_t k4 = 0; k4 < k->K4; k4++) {
        const uint8_t *src[4];
        for (int q = 0; q < 4; q++) {
            const int64_t kk = 4 * k4 + q;
            src[q] = rows[q];
            if (kk < K && np == Q_TILE) src[q] = xg + kk * hw + p0;
            else if (kk < K) memcpy(rows[q], xg + kk * hw + p0, (size_t)np);
            else memset(rows[q], 0, Q_TILE);
        }
        for (int64_t t = 0; t < Q_TILE; t++)
            words[t] = (uint32_t)src[0][t] | (uint32_t)src[1][t] << 8 | (uint32_t)src[2][t] << 16 |
                       (uint32_t)src[3][t] << 24;
        memcpy(A + k4 * 4 * Q_TILE, words, sizeof words);
    }
}

/* Row kk = (ci, i, j) of the patch matrix at pixels [p0, p0 + np) into r, the zero point
 * outside the image. */
static void q_tile_row(const q_tile_job *k, const uint8_t *xc, int64_t i, int64_t j, int64_t p0, int64_t np,
                       uint8_t *r) {
    const et_conv2d_params *p = k->p;
    const int64_t ow = p->ow, sw = p->stride_w, dy = i * p->dil_h - p->pad_t, dx = j * p->dil_w - p->pad_l;
    const uint8_t z = (uint8_t)k->x_zp;
    const uint64_t W = (uint64_t)p->w;
    int64_t oy = p0 / ow, ox = p0 % ow;
    for (int64_t t = 0; t < np;) {
        const int64_t len = ow - ox < np - t ? ow - ox : np - t, iy = oy * p->stride_h + dy;
        uint8_t *d = r + t;
        const uint8_t *xr = xc + iy * p->w;
        const int row_in = iy >= 0 && iy < p->h;
        if (row_in && len >= 16) { /* long rows: copy the inside part, the zero point around it */
            int64_t u0, u1;
            q_dw_cols(ox, len, sw, dx, p->w, &u0, &u1);
            u0 = u0 < len ? u0 : len, u1 = u1 < len ? u1 : len; /* q_dw_cols may give t0 = t1 > nb */
            if (u0 > 0) memset(d, z, (size_t)u0);
            if (sw == 1 && u1 - u0 >= 16 && u1 - u0 <= 32) { /* two overlapping 16-byte moves, inlined */
                const uint8_t *sr = xr + ox + u0 + dx;
                memcpy(d + u0, sr, 16);
                memcpy(d + u1 - 16, sr + (u1 - u0) - 16, 16);
            } else if (sw == 1) memcpy(d + u0, xr + ox + u0 + dx, (size_t)(u1 - u0));
            else
                for (int64_t u = u0; u < u1; u++) d[u] = xr[(ox + u) * sw + dx];
            if (len > u1) memset(d + u1, z, (size_t)(len - u1));
        } else { /* short rows: one select per byte, no library calls */
            for (int64_t u = 0; u < len; u++) {
                const int64_t ix = (ox + u) * sw + dx;
                d[u] = row_in && (uint64_t)ix < W ? xr[ix] : z;
            }
        }
        t += len, ox = 0, oy++;
    }
}

/* rows (fewer than 4 channels per group): rows kk = (ci, i, j) of the patch matrix four at a
 * time, interleaved as q_tile_pack_direct does. */
static void q_tile_pack_rows(const q_tile_job *k, const uint8_t *xg, int64_t p0, int64_t np, uint8_t *A) {
    const et_conv2d_params *p = k->p;
    const int64_t K = k->K, khw = p->kh * p->kw, hw = p->h * p->w;
    uint8_t rows[4][Q_TILE];
    uint32_t words[Q_TILE];
    memset(rows, 0, sizeof rows);
    for (int64_t k4 = 0; k4 < k->K4; k4++) {
        for (int q = 0; q < 4; q++) {
            const int64_t kk = 4 * k4 + q, r = kk % khw;
            if (kk < K) q_tile_row(k, xg + (kk / khw) * hw, r / p->kw, r % p->kw, p0, np, rows[q]);
            else memset(rows[q], 0, Q_TILE);
        }
        for (int64_t t = 0; t < Q_TILE; t++)
            words[t] = (uint32_t)rows[0][t] | (uint32_t)rows[1][t] << 8 | (uint32_t)rows[2][t] << 16 |
                       (uint32_t)rows[3][t] << 24;
        memcpy(A + k4 * 4 * Q_TILE, words, sizeof words);
    }
}

#if defined(ET_HAVE_X86_SIMD)
/* The 64 pixels' byte offsets (< 2^31: the window is small) as four vectors of 16. */
typedef struct q_tile_offsets {
    __m512i o[4];
} q_tile_offsets;

ET_TARGET_AVX512 static q_tile_offsets q_tile_offsets_of(const int64_t *base) {
    int32_t b32[Q_TILE];
    q_tile_offsets v;
    for (int64_t t = 0; t < Q_TILE; t++) b32[t] = (int32_t)base[t];
    for (int q = 0; q < 4; q++) v.o[q] = _mm512_loadu_si512((const void *)(b32 + 16 * q));
    return v;
}

/* d[t] = the 32-bit word at tap + offset of pixel t, 16 pixels per vpgatherdd */
ET_TARGET_AVX512 static inline void q_tile_gather(uint32_t *d, const q_tile_offsets *v, const uint8_t *tap) {
    for (int q = 0; q < 4; q++)
        _mm512_storeu_si512((void *)(d + 16 * q), _mm512_i32gather_epi32(v->o[q], (const void *)tap, 1));
}

/* the words of q_tile_pack_hwc */
ET_TARGET_AVX512 static void q_tile_hwc_words__avx512(const q_tile_job *k, const uint8_t *T, const int64_t *base,
                                                     uint32_t *words) {
    const et_conv2d_params *p = k->p;
    const int64_t wp = q_tile_wp(p), c4b = 4 * k->c4;
    const q_tile_offsets v = q_tile_offsets_of(base);
    for (int64_t i = 0; i < p->kh; i++)
        for (int64_t j = 0; j < p->kw; j++) {
            uint32_t *d = words + (i * p->kw + j) * k->c4 * Q_TILE;
            const uint8_t *tap = T + (i * p->dil_h * wp + j * p->dil_w) * c4b;
            for (int64_t c = 0; c < k->c4; c++, d += Q_TILE, tap += 4) q_tile_gather(d, &v, tap);
        }
}
#endif

/* HWC4: the window T of output rows [oy0, oy1], then A[(i, j, c4)][t] = the word of T at the
 * tap (i, j) of pixel t; pixels past np repeat pixel 0's words (computed, never stored). */
static void q_tile_pack_hwc(const q_tile_job *k, const uint8_t *xg, int64_t p0, int64_t np, uint8_t *A) {
    const et_conv2d_params *p = k->p;
    const int64_t wp = q_tile_wp(p), c4b = 4 * k->c4, ow = p->ow, oy0 = p0 / ow, oy1 = (p0 + np - 1) / ow;
    const int64_t R = (oy1 - oy0) * p->stride_h + (p->kh - 1) * p->dil_h + 1, iy0 = oy0 * p->stride_h - p->pad_t;
    const uint8_t z = (uint8_t)k->x_zp;
    uint8_t *T = A + k->K4 * 4 * Q_TILE;
    for (int64_t r = 0; r < R; r++) {
        const int64_t iy = iy0 + r;
        uint8_t *tr = T + r * wp * c4b;
        memset(tr, 0, (size_t)(wp * c4b));
        for (int64_t ci = 0; ci < k->cg; ci++) {
            const uint8_t *xr = xg + (ci * p->h + iy) * p->w;
            const int row_in = iy >= 0 && iy < p->h;
            for (int64_t c = 0; c < wp; c++) {
                const int64_t ix = c - p->pad_l;
                tr[c * c4b + ci] = row_in && ix >= 0 && ix < p->w ? xr[ix] : z;
            }
        }
    }
    uint32_t *words = (uint32_t *)(void *)A; /* A is 64-byte aligned within the slot */
    int64_t base[Q_TILE]; /* T offset of each pixel's window corner; pixels past np repeat pixel 0 */
    for (int64_t t = 0, oy = oy0, ox = p0 % ow; t < Q_TILE; t++) {
        base[t] = t < np ? ((oy - oy0) * p->stride_h * wp + ox * p->stride_w) * c4b : base[0];
        if (t < np && ++ox == ow) ox = 0, oy++;
    }
#if defined(ET_HAVE_X86_SIMD)
    if (k->gather) {
        q_tile_hwc_words__avx512(k, T, base, words);
        return;
    }
#endif
    for (int64_t i = 0; i < p->kh; i++)
        for (int64_t j = 0; j < p->kw; j++) {
            uint32_t *d = words + (i * p->kw + j) * k->c4 * Q_TILE;
            const uint8_t *tap = T + (i * p->dil_h * wp + j * p->dil_w) * c4b;
            for (int64_t c = 0; c < k->c4; c++, d += Q_TILE, tap += 4)
                for (int64_t t = 0; t < Q_TILE; t++) memcpy(d + t, tap + base[t], 4);
        }
}

/* A tile of pixels [m0, m0 + np) of all images (pixel m = image m / P, pixel m % P): rows of x
 * gathered, interleaved as q_tile_pack_direct; the outputs go to ybuf, then to y. */
static void q_tile_span_one(const q_tile_job *k, int64_t m0, int64_t np, uint8_t *A) {
    const int64_t P = k->P, C = k->p->c, OC = k->p->oc;
    int64_t xo[Q_TILE], yo[Q_TILE];
    for (int64_t t = 0; t < Q_TILE; t++) {
        const int64_t m = m0 + (t < np ? t : 0), n = m / P, pp = m % P;
        xo[t] = n * C * P + pp, yo[t] = n * OC * P + pp;
    }
    uint32_t words[Q_TILE];
    for (int64_t k4 = 0; k4 < k->K4; k4++) {
        const uint8_t *x0 = k->x + 4 * k4 * P;
        if (4 * k4 + 4 <= k->K)
            for (int64_t t = 0; t < Q_TILE; t++) {
                const uint8_t *s0 = x0 + xo[t];
                words[t] = (uint32_t)s0[0] | (uint32_t)s0[P] << 8 | (uint32_t)s0[2 * P] << 16 |
                           (uint32_t)s0[3 * P] << 24;
            }
        else
            for (int64_t t = 0; t < Q_TILE; t++) {
                uint32_t v = 0;
                for (int64_t q = 0; 4 * k4 + q < k->K; q++) v |= (uint32_t)x0[xo[t] + q * P] << (8 * q);
                words[t] = v;
            }
        memcpy(A + k4 * 4 * Q_TILE, words, sizeof words);
    }
    uint8_t *yb = A + k->K4 * 4 * Q_TILE;
    k->tile(k, A, 0, yb, Q_TILE, np);
    for (int64_t oc = 0; oc < OC; oc++)
        for (int64_t t = 0; t < np; t++) k->y[yo[t] + oc * P] = yb[oc * Q_TILE + t];
}

#if defined(ET_HAVE_X86_SIMD)
/* the words of q_tile_pack_win */
ET_TARGET_AVX512 static void q_tile_win_words__avx512(const q_tile_job *k, const uint8_t *T, const int64_t *base,
                                                     int64_t rmax, int64_t wq, uint32_t *words) {
    const et_conv2d_params *p = k->p;
    const int64_t g4 = q_tile_kw4(p) / 4;
    const q_tile_offsets v = q_tile_offsets_of(base);
    uint32_t *d = words;
    for (int64_t ci = 0; ci < k->cg; ci++)
        for (int64_t i = 0; i < p->kh; i++)
            for (int64_t jg = 0; jg < g4; jg++, d += Q_TILE)
                q_tile_gather(d, &v, T + (ci * rmax + i * p->dil_h) * wq + 4 * jg);
}
#endif

/* WIN: the window T[ci][row][col] of output rows [oy0, oy1], then A[(ci, i, j / 4)][t] = the word
 * at the tap's 4 columns of pixel t; pixels past np repeat pixel 0's words. */
static void q_tile_pack_win(const q_tile_job *k, const uint8_t *xg, int64_t p0, int64_t np, uint8_t *A) {
    const et_conv2d_params *p = k->p;
    const int64_t wq = q_tile_wp(p) + 3, rmax = q_tile_rows(p), ow = p->ow, oy0 = p0 / ow, oy1 = (p0 + np - 1) / ow;
    const int64_t R = (oy1 - oy0) * p->stride_h + (p->kh - 1) * p->dil_h + 1, iy0 = oy0 * p->stride_h - p->pad_t;
    const int64_t c0 = p->pad_l < wq ? p->pad_l : wq, c1 = p->pad_l + p->w < wq ? p->pad_l + p->w : wq;
    const int z = k->x_zp;
    uint8_t *T = A + k->K4 * 4 * Q_TILE;
    for (int64_t ci = 0; ci < k->cg; ci++)
        for (int64_t r = 0; r < R; r++) {
            const int64_t iy = iy0 + r;
            uint8_t *tr = T + (ci * rmax + r) * wq;
            memset(tr, z, (size_t)wq);
            if (iy >= 0 && iy < p->h && c1 > c0)
                memcpy(tr + c0, xg + (ci * p->h + iy) * p->w + (c0 - p->pad_l), (size_t)(c1 - c0));
        }
    int64_t base[Q_TILE];
    for (int64_t t = 0, oy = oy0, ox = p0 % ow; t < Q_TILE; t++) {
        base[t] = t < np ? (oy - oy0) * p->stride_h * wq + ox * p->stride_w : base[0];
        if (t < np && ++ox == ow) ox = 0, oy++;
    }
    uint32_t *words = (uint32_t *)(void *)A;
#if defined(ET_HAVE_X86_SIMD)
    if (k->gather) {
        q_tile_win_words__avx512(k, T, base, rmax, wq, words);
        return;
    }
#endif
    const int64_t g4 = q_tile_kw4(p) / 4;
    uint32_t *d = words;
    for (int64_t ci = 0; ci < k->cg; ci++)
        for (int64_t i = 0; i < p->kh; i++)
            for (int64_t jg = 0; jg < g4; jg++, d += Q_TILE) {
                const uint8_t *tap = T + (ci * rmax + i * p->dil_h) * wq + 4 * jg;
                for (int64_t t = 0; t < Q_TILE; t++) memcpy(d + t, tap + base[t], 4);
            }
}

static void q_tile_range(void *ctx, int64_t t0, int64_t t1, int tid) {
    const q_tile_job *k = (const q_tile_job *)ctx;
    uint8_t *A = k->bufs + (int64_t)tid * k->buf_bytes;
    if (k->span) {
        const int64_t M = k->p->n * k->P;
        for (int64_t t = t0; t < t1; t++) q_tile_span_one(k, t * Q_TILE, M - t * Q_TILE < Q_TILE ? M - t * Q_TILE : Q_TILE, A);
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        const int64_t img = t / k->tiles_img, pb = t % k->tiles_img;
        const int64_t n = img / k->p->groups, g = img % k->p->groups, p0 = pb * Q_TILE;
        const int64_t np = k->P - p0 < Q_TILE ? k->P - p0 : Q_TILE;
        const uint8_t *xg = k->x + (n * k->p->c + g * k->cg) * k->p->h * k->p->w;
        if (k->mode == Q_TILE_HWC) q_tile_pack_hwc(k, xg, p0, np, A);
        else if (k->mode == Q_TILE_WIN) q_tile_pack_win(k, xg, p0, np, A);
        else if (k->mode == Q_TILE_ROWS) q_tile_pack_rows(k, xg, p0, np, A);
        else q_tile_pack_direct(k, xg, p0, np, A);
        k->tile(k, A, g, k->y + n * k->p->oc * k->P + p0, k->P, np);
    }
}

/* The tiled path with micro-kernel `tile`; falls back to the im2col path (et_q_gemm_requant)
 * when a bias is too large for int32 accumulators or the workspace holds no tile slot. */
static et_status q_conv2d_tiled(q_tile_fn tile, int gather, const et_conv2d_params *p, const uint8_t *x, int32_t x_zp,
                                const int8_t *w, const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin,
                                int32_t qmax, uint8_t *y, void *ws, size_t ws_bytes, int nthreads) {
    if (!q_conv_args_ok(p, x, x_zp, w, mult, y_zp, qmin, qmax, y)) return ET_ERR_ARG;
    if (q_is_depthwise(p)) return q_dwconv2d(p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, nthreads);
    const int64_t cg = p->c / p->groups, khw = p->kh * p->kw, K = cg * khw, fixed = q_tile_fixed_bytes(p);
    const int64_t buf = q_tile_buf_bytes(p), dmax = (int64_t)255 * 128 * K, Kp = q_tile_Kp(p), c4 = q_tile_c4(p);
    /* the slots start 64-byte aligned (the HWC4 pack stores A as 32-bit words) */
    const int64_t skip = (int64_t)((64 - ((uintptr_t)ws + (uintptr_t)fixed) % 64) % 64);
    int64_t slots = ws && (int64_t)ws_bytes > fixed + skip ? ((int64_t)ws_bytes - fixed - skip) / buf : 0;
    int ok = K <= ET_Q_MAX_K && slots > 0 && ((uintptr_t)ws % 4) == 0;
    for (int64_t o = 0; ok && bias && o < p->oc; o++) ok = (bias[o] < 0 ? -(int64_t)bias[o] : bias[o]) + dmax <= INT32_MAX;
    if (!ok) return et_q_conv2d_im2col(et_q_gemm_requant, p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes,
                                       nthreads);
    int32_t *zterm = (int32_t *)ws, *wtail = zterm + p->oc;
    int8_t *wk = (int8_t *)ws + ((p->oc * 8 + 63) & ~(int64_t)63);
    const int hwc = !q_tile_direct(p);
    for (int64_t o = 0; o < p->oc; o++) {
        const int8_t *wo = w + o * K;
        int32_t sw = 0; /* |sum| <= 128 * K < 2^31: int32, so the compiler vectorises it */
        for (int64_t i = 0; i < K; i++) sw += wo[i];
        zterm[o] = (int32_t)((bias ? bias[o] : 0) - (int64_t)x_zp * sw); /* |.| <= |bias| + dmax < 2^31 */
        uint8_t t4[4] = {0, 0, 0, 0};
        for (int64_t i = K & ~(int64_t)3; i < K; i++) t4[i & 3] = (uint8_t)wo[i];
        memcpy(wtail + o, t4, 4);
        if (!hwc) continue;
        int8_t *d = wk + o * Kp;
        memset(d, 0, (size_t)Kp);
        if (q_tile_mode(p) == Q_TILE_WIN) { /* [ci][i][kw4] from [ci][i][kw] */
            const int64_t kw4 = q_tile_kw4(p);
            for (int64_t r = 0; r < cg * p->kh; r++) memcpy(d + r * kw4, wo + r * p->kw, (size_t)p->kw);
            continue;
        }
        for (int64_t ci = 0; ci < cg; ci++) /* [i][j][c4 * 4] from [ci][i][j] */
            for (int64_t r = 0; r < khw; r++) d[r * 4 * c4 + ci] = wo[ci * khw + r];
    }
    const int64_t tiles_img = (p->oh * p->ow + Q_TILE - 1) / Q_TILE;
    const int64_t tiles = q_tile_span(p) ? (p->n * p->oh * p->ow + Q_TILE - 1) / Q_TILE : p->n * p->groups * tiles_img;
    if (slots > nthreads) slots = nthreads > 1 ? nthreads : 1;
    const q_tile_job job = {p, x, hwc ? wk : w, mult, y, zterm, wtail, (uint8_t *)ws + fixed + skip, Kp,
                            q_tile_K4(p), cg, c4, p->oc / p->groups, p->oh * p->ow, tiles_img, buf, x_zp, y_zp,
                            qmin, qmax, q_tile_mode(p), q_tile_span(p), gather, tile};
    et_parallel_ranges(tiles, et_split_chunks(tiles, (int)slots), (int)slots, q_tile_range, (void *)&job);
    return ET_OK;
}
#endif /* ET_HAVE_X86_SIMD: the tiled path */

#if defined(ET_HAVE_X86_SIMD)
/* Requantize 16 int32 sums of output channel oc and store np (<= 16) bytes at dst. */
ET_TARGET_AVX512VNNI static inline void q_tile_store16(const q_tile_job *k, __m512i acc, int64_t oc, uint8_t *dst,
                                                        int64_t np) {
    const __m512 lo = _mm512_set1_ps((float)(k->qmin - k->y_zp)), hi = _mm512_set1_ps((float)(k->qmax - k->y_zp));
    acc = _mm512_add_epi32(acc, _mm512_set1_epi32(k->zterm[oc]));
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(k->mult[oc]));
    f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
    const __m128i b = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(k->y_zp)));
    if (np >= 16) _mm_storeu_si128((__m128i *)dst, b);
    else if (np > 0) _mm_mask_storeu_epi8(dst, (__mmask16)((1u << np) - 1), b);
}

/* 4 output channels x 64 pixels per pass: 16 zmm accumulators, one vpdpbusd per (channel,
 * 16 pixels, 4 k). Channels past the group's last repeat it (computed, not stored). */
ET_TARGET_AVX512VNNI static void q_tile__avx512vnni(const q_tile_job *k, const uint8_t *A, int64_t g, uint8_t *yb,
                                                    int64_t ys, int64_t np) {
    const int64_t K = k->K, Kf = K >> 2, ocg = k->ocg;
    for (int64_t o0 = 0; o0 < ocg; o0 += 4) {
        const int64_t no = ocg - o0 < 4 ? ocg - o0 : 4;
        const int64_t oc0 = g * ocg + o0, oc1 = oc0 + (no > 1), oc2 = oc0 + (no > 2 ? 2 : no - 1),
                      oc3 = oc0 + (no > 3 ? 3 : no - 1);
        const int8_t *w0 = k->w + oc0 * K, *w1 = k->w + oc1 * K, *w2 = k->w + oc2 * K, *w3 = k->w + oc3 * K;
        __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
                c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
#define Q_T512_STEP(B0, B1, B2, B3, AP)                                                                            \
    do {                                                                                                         \
        const __m512i a0 = _mm512_loadu_si512((const void *)(AP)), a1 = _mm512_loadu_si512((const void *)((AP) + 64)), \
                      a2 = _mm512_loadu_si512((const void *)((AP) + 128)),                                       \
                      a3 = _mm512_loadu_si512((const void *)((AP) + 192));                                       \
        const __m512i b0 = _mm512_set1_epi32(B0), b1 = _mm512_set1_epi32(B1), b2 = _mm512_set1_epi32(B2),       \
                      b3 = _mm512_set1_epi32(B3);                                                                \
        c00 = _mm512_dpbusd_epi32(c00, a0, b0), c01 = _mm512_dpbusd_epi32(c01, a1, b0);                           \
        c02 = _mm512_dpbusd_epi32(c02, a2, b0), c03 = _mm512_dpbusd_epi32(c03, a3, b0);                           \
        c10 = _mm512_dpbusd_epi32(c10, a0, b1), c11 = _mm512_dpbusd_epi32(c11, a1, b1);                           \
        c12 = _mm512_dpbusd_epi32(c12, a2, b1), c13 = _mm512_dpbusd_epi32(c13, a3, b1);                           \
        c20 = _mm512_dpbusd_epi32(c20, a0, b2), c21 = _mm512_dpbusd_epi32(c21, a1, b2);                           \
        c22 = _mm512_dpbusd_epi32(c22, a2, b2), c23 = _mm512_dpbusd_epi32(c23, a3, b2);                           \
        c30 = _mm512_dpbusd_epi32(c30, a0, b3), c31 = _mm512_dpbusd_epi32(c31, a1, b3);                           \
        c32 = _mm512_dpbusd_epi32(c32, a2, b3), c33 = _mm512_dpbusd_epi32(c33, a3, b3);                           \
    } while (0)
        for (int64_t kk = 0; kk < Kf; kk++) {
            int32_t v0, v1, v2, v3;
            memcpy(&v0, w0 + 4 * kk, 4), memcpy(&v1, w1 + 4 * kk, 4), memcpy(&v2, w2 + 4 * kk, 4);
            memcpy(&v3, w3 + 4 * kk, 4);
            Q_T512_STEP(v0, v1, v2, v3, A + kk * 4 * Q_TILE);
        }
        if (Kf < k->K4) Q_T512_STEP(k->wtail[oc0], k->wtail[oc1], k->wtail[oc2], k->wtail[oc3], A + Kf * 4 * Q_TILE);
#undef Q_T512_STEP
        const __m512i cs[4][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                                  {c30, c31, c32, c33}};
        for (int64_t q = 0; q < no; q++) {
            uint8_t *yo = yb + (oc0 + q) * ys;
            for (int64_t v = 0; v < 4; v++) q_tile_store16(k, cs[q][v], oc0 + q, yo + v * 16, np - v * 16);
        }
    }
}

ET_TARGET_AVX512VNNI static et_status et_q_conv2d__avx512vnni(const et_conv2d_params *p, const uint8_t *x,
                                                              int32_t x_zp, const int8_t *w, const int32_t *bias,
                                                              const float *mult, int32_t y_zp, int32_t qmin,
                                                              int32_t qmax, uint8_t *y, void *ws, size_t ws_bytes,
                                                              int nthreads) {
    return q_conv2d_tiled(q_tile__avx512vnni, 1, p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes, nthreads);
}
#endif

const et_q_conv2d_variant et_q_conv2d_variants[] = {
    {{ET_ISA_REF, "ref"}, et_q_conv2d__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512VNNI, "avx512vnni"}, et_q_conv2d__avx512vnni},
#endif
    {{ET_ISA_REF, NULL}, NULL},
};

et_status et_q_conv2d(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w, const int32_t *bias,
                      const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y, void *ws,
                      size_t ws_bytes, int nthreads) {
    const et_q_conv2d_variant *row = ET_VARIANT_PICK(et_q_conv2d_variants);
    if (row != et_q_conv2d_variants) /* a tiled SIMD row */
        return row->conv(p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes, nthreads);
    return q_conv2d(et_q_gemm_requant, p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes, nthreads);
}

/* qlinear y[N, OC] (row stride OC) as the 1x1 convolution of x viewed [N, K, 1, 1] (the same
 * layout): the tiled row, when this ISA has one, packs 64 images per tile and runs the conv
 * kernel instead of the GEMM row; the same integer sums and requantize, so the same bytes. */
static int q_linear_as_conv(int64_t N, int64_t OC, int64_t K, et_conv2d_params *p) {
    memset(p, 0, sizeof *p);
    p->n = N, p->c = K, p->h = p->w = 1, p->oc = OC, p->kh = p->kw = 1;
    p->stride_h = p->stride_w = p->dil_h = p->dil_w = p->groups = 1;
    return et_conv2d_params_init(p) == ET_OK && ET_VARIANT_PICK(et_q_conv2d_variants) != et_q_conv2d_variants;
}

size_t et_q_linear_ws_bytes(int64_t N, int64_t OC, int64_t K, int nthreads) {
    et_conv2d_params p;
    if (N < 1 || OC < 1 || K < 1) return 0;
    memset(&p, 0, sizeof p);
    p.n = N, p.c = K, p.h = p.w = 1, p.oc = OC, p.kh = p.kw = 1;
    p.stride_h = p.stride_w = p.dil_h = p.dil_w = p.groups = 1;
    return et_conv2d_params_init(&p) == ET_OK ? et_q_conv2d_ws_bytes_nt(&p, nthreads) : 0;
}

et_status et_q_linear(int64_t N, int64_t OC, int64_t K, const uint8_t *x, int32_t x_zp, const int8_t *w,
                      const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y,
                      void *ws, size_t ws_bytes, int nthreads) {
    et_conv2d_params p;
    if (N > 0 && OC > 0 && K > 0 && ws && ws_bytes >= et_q_linear_ws_bytes(N, OC, K, nthreads) &&
        q_linear_as_conv(N, OC, K, &p))
        return et_q_conv2d(&p, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, ws, ws_bytes, nthreads);
    return et_q_gemm_requant(N, OC, K, x, x_zp, w, bias, mult, y_zp, qmin, qmax, y, OC, 1, nthreads);
}

typedef struct q_pool_job {
    const et_pool2d_params *p;
    const uint8_t *x;
    uint8_t *y;
} q_pool_job;

/* 2x2 stride 2, no padding / dilation: each output the max of two pairs of two rows (exact) */
static int q_maxpool_is_k2s2(const et_pool2d_params *p) {
    return p->kh == 2 && p->kw == 2 && p->stride_h == 2 && p->stride_w == 2 && p->pad_h == 0 && p->pad_w == 0 &&
           p->dil_h == 1 && p->dil_w == 1 && 2 * p->oh <= p->h && 2 * p->ow <= p->w;
}

static void q_maxpool_k2s2(const et_pool2d_params *p, const uint8_t *xp, uint8_t *yp) {
    const int64_t ow = p->ow, W = p->w;
    uint8_t t[512];
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const uint8_t *r0 = xp + 2 * oy * W, *r1 = r0 + W;
        uint8_t *yr = yp + oy * ow;
        if (2 * ow <= (int64_t)sizeof t) { /* the rows' max first (one vector loop), then pairs */
            for (int64_t i = 0; i < 2 * ow; i++) t[i] = r0[i] > r1[i] ? r0[i] : r1[i];
            for (int64_t ox = 0; ox < ow; ox++) { /* a pair as one 16-bit word: max of its bytes (either order) */
                uint16_t v;
                memcpy(&v, t + 2 * ox, 2);
                const uint8_t a = (uint8_t)(v & 0xFF), b = (uint8_t)(v >> 8);
                yr[ox] = a > b ? a : b;
            }
            continue;
        }
        for (int64_t ox = 0; ox < ow; ox++) {
            const uint8_t a = r0[2 * ox] > r0[2 * ox + 1] ? r0[2 * ox] : r0[2 * ox + 1];
            const uint8_t b = r1[2 * ox] > r1[2 * ox + 1] ? r1[2 * ox] : r1[2 * ox + 1];
            yr[ox] = a > b ? a : b;
        }
    }
}

static void q_maxpool_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    const q_pool_job *k = (const q_pool_job *)ctx;
    const et_pool2d_params *p = k->p;
    const uint8_t *x = k->x;
    uint8_t *y = k->y;
    (void)tid;
    if (q_maxpool_is_k2s2(p)) {
        for (int64_t pl = p0; pl < p1; pl++) q_maxpool_k2s2(p, x + pl * p->h * p->w, y + pl * p->oh * p->ow);
        return;
    }
    for (int64_t pl = p0; pl < p1; pl++) {
        const uint8_t *xp = x + pl * p->h * p->w;
        uint8_t *yp = y + pl * p->oh * p->ow;
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox = 0; ox < p->ow; ox++) {
                int best = 0; /* every window holds at least one input cell (pad <= kernel / 2) */
                for (int64_t i = 0; i < p->kh; i++) {
                    const int64_t iy = oy * p->stride_h - p->pad_h + i * p->dil_h;
                    if (iy < 0 || iy >= p->h) continue;
                    for (int64_t j = 0; j < p->kw; j++) {
                        const int64_t ix = ox * p->stride_w - p->pad_w + j * p->dil_w;
                        if (ix >= 0 && ix < p->w && xp[iy * p->w + ix] > best) best = xp[iy * p->w + ix];
                    }
                }
                yp[oy * p->ow + ox] = (uint8_t)best;
            }
    }
}

et_status et_q_maxpool2d__ref(const et_pool2d_params *p, const uint8_t *x, uint8_t *y, int nthreads) {
    if (!p || !x || !y) return ET_ERR_ARG;
    const int64_t planes = p->n * p->c;
    q_pool_job job = {p, x, y};
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, q_maxpool_planes, &job);
    return ET_OK;
}

et_status et_q_relu__ref(int64_t n, const uint8_t *x, int32_t zp, uint8_t *y, int nthreads) {
    if (n < 0 || !x || !y || zp < 0 || zp > 255) return ET_ERR_ARG;
    const q_elem_job k = {NULL, x, NULL, y, 1.0f, zp, 0, 255};
    q_elem_run(q_relu_range, n, &k, nthreads);
    return ET_OK;
}

et_status et_q_prep_weights__ref(int64_t oc, int64_t k, const float *w, const float *w_scale, const float *b,
                                 float s_in, float s_out, int32_t wqmin, int32_t wqmax, int8_t *wq, int32_t *bq,
                                 float *mult) {
    if (oc < 0 || k < 0 || !w || !w_scale || !wq || !mult || (b && !bq) || wqmin < -128 || wqmax > 127 ||
        wqmin >= wqmax || !isfinite(s_in) || !(s_in > 0.0f) || !isfinite(s_out) || !(s_out > 0.0f))
        return ET_ERR_ARG;
    for (int64_t c = 0; c < oc; c++)
        if (!isfinite(w_scale[c]) || !(w_scale[c] > 0.0f)) return ET_ERR_ARG;
    const float lo = (float)wqmin, hi = (float)wqmax;
    for (int64_t c = 0; c < oc; c++) {
        const float inv_s = 1.0f / w_scale[c], bs = s_in * w_scale[c];
        for (int64_t i = 0; i < k; i++) {
            float r = nearbyintf(w[c * k + i] * inv_s) + 0.0f; /* the fake_quant level, zp 0 */
            r = r != r ? 0.0f : (r < lo ? lo : (r > hi ? hi : r));
            wq[c * k + i] = (int8_t)r;
        }
        mult[c] = bs / s_out;
        if (b) {
            float r = nearbyintf(b[c] / bs);
            r = r != r ? 0.0f : (r < -2147483520.0f ? -2147483520.0f : (r > 2147483520.0f ? 2147483520.0f : r));
            bq[c] = (int32_t)r;
        }
    }
    return ET_OK;
}

/* qadd: y = quantize_y(dequantize_a(a) + dequantize_b(b)), each term and the sum in float in
 * this order (the float composition dequantize, add, fake_quant, bit for bit). */
typedef struct q_add_job {
    const uint8_t *a, *b;
    uint8_t *y;
    float a_s, b_s, y_s;
    int32_t a_zp, b_zp, y_zp, qmin, qmax;
} q_add_job;

static void q_add_range(void *ctx, int64_t i0, int64_t i1, int tid) {
    const q_add_job *k = (const q_add_job *)ctx;
    const float inv_s = 1.0f / k->y_s;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        const float fa = (float)((int32_t)k->a[i] - k->a_zp) * k->a_s;
        const float fb = (float)((int32_t)k->b[i] - k->b_zp) * k->b_s;
        k->y[i] = (uint8_t)q_level(fa + fb, inv_s, k->y_zp, k->qmin, k->qmax);
    }
}

et_status et_q_add__ref(int64_t n, const uint8_t *a, float a_s, int32_t a_zp, const uint8_t *b, float b_s,
                        int32_t b_zp, float y_s, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y, int nthreads) {
    if (n < 0 || !a || !b || !y || !q_params_ok(a_s, a_zp, 0, 255) || !q_params_ok(b_s, b_zp, 0, 255) ||
        !q_params_ok(y_s, y_zp, qmin, qmax))
        return ET_ERR_ARG;
    const q_add_job k = {a, b, y, a_s, b_s, y_s, a_zp, b_zp, y_zp, qmin, qmax};
    et_parallel_ranges(n, et_split_chunks(n, nthreads), nthreads, q_add_range, (void *)&k);
    return ET_OK;
}

/* qclamp: the levels of lo and hi (quantize's rule; hi = +inf gives qmax) bound x. On the
 * grid this is quantize(clamp(dequantize(x), lo, hi)): multiplying by 1/s is monotonic and
 * (x - zp) * s * (1/s) rounds back to x - zp. The bounds ride in the job's qmin / qmax. */
static void q_clamp_range(void *ctx, int64_t i0, int64_t i1, int tid) {
    const q_elem_job *k = (const q_elem_job *)ctx;
    const uint8_t lo = (uint8_t)k->qmin, hi = (uint8_t)k->qmax, *x = k->xq;
    uint8_t *y = k->yq;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        const uint8_t v = x[i] > lo ? x[i] : lo;
        y[i] = v < hi ? v : hi;
    }
}

et_status et_q_clamp_levels(float scale, int32_t zp, int32_t qmin, int32_t qmax, float lo, float hi, int32_t *qlo,
                            int32_t *qhi) {
    if (!qlo || !qhi || !q_params_ok(scale, zp, qmin, qmax) || !isfinite(lo) || !(hi >= lo) || (isinf(hi) && hi < 0.0f))
        return ET_ERR_ARG;
    const float inv_s = 1.0f / scale;
    *qlo = q_level(lo, inv_s, zp, qmin, qmax), *qhi = q_level(hi, inv_s, zp, qmin, qmax);
    return ET_OK;
}

et_status et_q_clamp__ref(int64_t n, const uint8_t *x, float scale, int32_t zp, int32_t qmin, int32_t qmax, float lo,
                          float hi, uint8_t *y, int nthreads) {
    int32_t qlo, qhi;
    if (n < 0 || !x || !y || et_q_clamp_levels(scale, zp, qmin, qmax, lo, hi, &qlo, &qhi) != ET_OK) return ET_ERR_ARG;
    const q_elem_job k = {NULL, x, NULL, y, scale, zp, qlo, qhi};
    q_elem_run(q_clamp_range, n, &k, nthreads);
    return ET_OK;
}

/* qglobal_avgpool: per plane S = sum (x - zp) (exact, int64) and y = zp + S / hw rounded half
 * to even, in integers: floor division, then up when the remainder is above half, or exactly
 * half and the floor odd; clamped to [qmin, qmax]. No float, so no rounding but the one. */
typedef struct q_gap_job {
    int64_t hw;
    const uint8_t *x;
    uint8_t *y;
    int32_t zp, qmin, qmax;
} q_gap_job;

static int64_t q_div_round_even(int64_t s, int64_t n) {
    int64_t q = s / n, r = s % n; /* C99: q truncated toward 0, r with the sign of s */
    if (r < 0) q -= 1, r += n;    /* floor, 0 <= r < n */
    if (2 * r > n || (2 * r == n && (q & 1))) q += 1;
    return q;
}

static void q_gap_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    const q_gap_job *k = (const q_gap_job *)ctx;
    (void)tid;
    for (int64_t pl = p0; pl < p1; pl++) {
        const uint8_t *xp = k->x + pl * k->hw;
        int64_t sum = 0;
        for (int64_t i = 0; i < k->hw; i++) sum += xp[i];
        const int64_t q = k->zp + q_div_round_even(sum - (int64_t)k->zp * k->hw, k->hw);
        k->y[pl] = (uint8_t)(q < k->qmin ? k->qmin : (q > k->qmax ? k->qmax : q));
    }
}

et_status et_q_global_avgpool__ref(int64_t planes, int64_t hw, const uint8_t *x, int32_t zp, int32_t qmin,
                                   int32_t qmax, uint8_t *y, int nthreads) {
    if (planes < 0 || hw < 1 || !x || !y || !q_params_ok(1.0f, zp, qmin, qmax)) return ET_ERR_ARG;
    const q_gap_job k = {hw, x, y, zp, qmin, qmax};
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, q_gap_planes, (void *)&k);
    return ET_OK;
}
