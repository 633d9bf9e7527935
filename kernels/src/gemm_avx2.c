/* edgetrain — AVX2 + FMA GEMM: 6x16 ymm microkernel and the AVX2 packers
 * (the packers are shared with the AVX-512 config). Compiled with
 * ET_TARGET_AVX2 function attributes, so the file builds without -march. */
#include "gemm_internal.h"

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

/* ---- packers ------------------------------------------------------------------ */

/* In-register transpose of an 8x8 block: r[i] lane j  <->  r[j] lane i. */
ET_TARGET_AVX2 static inline void transpose8x8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Store the first `cnt` (1..8) lanes of v at d. */
ET_TARGET_AVX2 static inline void store_first(float *d, __m256 v, int64_t cnt) {
    if (cnt == 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    __m128 lo = _mm256_castps256_ps128(v);
    if (cnt >= 4) {
        _mm_storeu_ps(d, lo);
        d += 4;
        cnt -= 4;
        lo = _mm256_extractf128_ps(v, 1);
    }
    if (cnt >= 2) {
        _mm_storel_pi((__m64 *)d, lo);
        d += 2;
        cnt -= 2;
        lo = _mm_movehl_ps(lo, lo);
    }
    if (cnt) _mm_store_ss(d, lo);
}

/* dst[k*w + r] = src[r*ld + k] for r < n, 0 for n <= r < w: groups of 8 rows
 * go through 8x8 register transposes, missing rows read as zero. The whole groups (8 real rows,
 * 8 lanes stored) go first, all of them for each 8 k: each packed row is then written whole
 * while it is in L1 (group by group, a 32-wide panel of 500 k, 64 KiB, left L1 between the
 * groups' partial writes) and no per-row tests slow the loop (LeNet's fc2 forward spent 2/3 of
 * its time here); the rest group by group with the tests. */
ET_TARGET_AVX2 void et_f32_gemm_pack_interleave__avx2(int64_t w, int64_t n, int64_t kc,
                                                      const float *src, int64_t ld, float *dst) {
    const int64_t kc8 = kc & ~(int64_t)7;
    const int64_t gfull = (n < w ? n : w) / 8 * 8; /* rows in whole groups */
    for (int64_t k = 0; k < kc8; k += 8)
        for (int64_t g = 0; g < gfull; g += 8) {
            const float *s = src + g * ld + k;
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + i * ld);
            transpose8x8(r);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (k + i) * w + g, r[i]);
        }
    for (int64_t g = 0; g < w; g += 8) {
        const int64_t gw = w - g < 8 ? w - g : 8; /* lanes stored for this group */
        const float *s = src + g * ld;
        float *d = dst + g;
        for (int64_t k = 0; k < kc8 && g >= gfull; k += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = g + i < n ? _mm256_loadu_ps(s + i * ld + k) : _mm256_setzero_ps();
            transpose8x8(r);
            for (int i = 0; i < 8; i++) store_first(d + (k + i) * w, r[i], gw);
        }
        for (int64_t k = kc8; k < kc; k++)
            for (int64_t i = 0; i < gw; i++) d[k * w + i] = g + i < n ? s[i * ld + k] : 0.0f;
    }
}

/* dst[k*w + c] = src[k*ld + c] for c < n, 0 for n <= c < w. */
ET_TARGET_AVX2 void et_f32_gemm_pack_copy__avx2(int64_t w, int64_t n, int64_t kc, const float *src,
                                                int64_t ld, float *dst) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + k * ld;
        float *d = dst + k * w;
        int64_t c = 0;
        for (; c + 8 <= n; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps(s + c));
        if (c + 4 <= n) {
            _mm_storeu_ps(d + c, _mm_loadu_ps(s + c));
            c += 4;
        }
        for (; c < n; c++) d[c] = s[c];
        for (; c < w; c++) d[c] = 0.0f;
    }
}

/* dst[q*ld + r] = src[r*ls + q] for r < m, q < n: 8 x 8 blocks through registers (the C^T
 * paths stored LeNet's fc1 forward one float at a time: 7 % of its time). Rows of src past m
 * are not read. */
ET_TARGET_AVX2 void et_f32_gemm_store_t__avx2(int64_t m, int64_t n, const float *src, int64_t ls,
                                              float *dst, int64_t ld) {
    const int64_t n8 = n & ~(int64_t)7;
    for (int64_t r0 = 0; r0 < m; r0 += 8) {
        const int64_t rows = m - r0 < 8 ? m - r0 : 8;
        const float *s = src + r0 * ls;
        for (int64_t q0 = 0; q0 < n8; q0 += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++)
                v[i] = i < rows ? _mm256_loadu_ps(s + i * ls + q0) : _mm256_setzero_ps();
            transpose8x8(v);
            for (int j = 0; j < 8; j++) store_first(dst + (q0 + j) * ld + r0, v[j], rows);
        }
        for (int64_t q = n8; q < n; q++)
            for (int64_t i = 0; i < rows; i++) dst[q * ld + r0 + i] = s[i * ls + q];
    }
}

/* ---- 6x16 microkernel ------------------------------------------------------------ */
#define MR 6
#define NR 16

/* c[0:min(nr, 8)] = alpha * acc + beta * c (beta == 0: c not read). */
ET_TARGET_AVX2 static inline void update8(float *c, __m256 acc, __m256 valpha, __m256 vbeta,
                                          int beta_zero, int64_t nr) {
    __m256 r = _mm256_mul_ps(acc, valpha);
    if (nr >= 8) {
        if (!beta_zero) r = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(c), r);
        _mm256_storeu_ps(c, r);
    } else { /* edge: same arithmetic through a stack copy */
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (!beta_zero) {
            for (int64_t j = 0; j < nr; j++) t[j] = c[j];
            r = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(t), r);
        }
        _mm256_storeu_ps(t, r);
        for (int64_t j = 0; j < nr; j++) c[j] = t[j];
    }
}

/* Row i of the tile: c{i}_0, c{i}_1 += a[i] * (b0, b1) (the accumulators stay in registers). */
#define ROW_FMA(i)                                    \
    do {                                              \
        const __m256 ai = _mm256_broadcast_ss(a + i); \
        c##i##_0 = _mm256_fmadd_ps(ai, b0, c##i##_0); \
        c##i##_1 = _mm256_fmadd_ps(ai, b1, c##i##_1); \
    } while (0)

ET_TARGET_AVX2 void et_f32_gemm_ukernel_6x16__avx2(int64_t kc, const float *a, const float *b,
                                                   int64_t ldb, float *c, int64_t ldc, int64_t mr,
                                                   int64_t nr, float alpha, float beta) {
    __m256 c0_0 = _mm256_setzero_ps(), c0_1 = _mm256_setzero_ps();
    __m256 c1_0 = _mm256_setzero_ps(), c1_1 = _mm256_setzero_ps();
    __m256 c2_0 = _mm256_setzero_ps(), c2_1 = _mm256_setzero_ps();
    __m256 c3_0 = _mm256_setzero_ps(), c3_1 = _mm256_setzero_ps();
    __m256 c4_0 = _mm256_setzero_ps(), c4_1 = _mm256_setzero_ps();
    __m256 c5_0 = _mm256_setzero_ps(), c5_1 = _mm256_setzero_ps();
    /* pull the C tile towards L1 while the k loop runs */
    for (int64_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        ROW_FMA(0);
        ROW_FMA(1);
        ROW_FMA(2);
        ROW_FMA(3);
        ROW_FMA(4);
        ROW_FMA(5);
        a += MR;
        b += ldb;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const int bz = beta == 0.0f;
    const __m256 acc[MR][2] = {{c0_0, c0_1}, {c1_0, c1_1}, {c2_0, c2_1},
                               {c3_0, c3_1}, {c4_0, c4_1}, {c5_0, c5_1}};
    for (int64_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        update8(ci, acc[i][0], va, vb, bz, nr);
        if (nr > 8) update8(ci + 8, acc[i][1], va, vb, bz, nr - 8);
    }
}

const et_f32_gemm_config et_f32_gemm_config_avx2 = {
    /* kc is the shared ET_GEMM_KC (768; the bits depend on it, gemm_internal.h).
     * For AVX2-only cores (32 KiB L1d, >= 256 KiB L2) the kc x 16 B panel (48 KiB)
     * no longer fits L1 and is read from L2 (it was 24 KiB at kc 384); mc is
     * halved so the packed A block (180 KiB) stays in L2, the B block (3 MiB) in L3.
     * mc / nc do not change the bits. Not re-tuned on an AVX2-only core. */
    "avx2", MR, NR, /* mc */ 60, /* kc */ ET_GEMM_KC, /* nc */ 1024,
    et_f32_gemm_ukernel_6x16__avx2, et_f32_gemm_pack_interleave__avx2, et_f32_gemm_pack_copy__avx2,
    NULL, /* no in-place A kernel */
    NULL, /* no B-through-a-table kernel */
    et_f32_gemm_store_t__avx2,
    NULL, /* the row epilogue after the store */
};

#else
typedef int et_gemm_avx2_unused; /* keeps the translation unit non-empty */
#endif
