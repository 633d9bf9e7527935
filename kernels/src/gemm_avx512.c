/* edgetrain — AVX-512 GEMM: 14x32 zmm microkernel (28 accumulators + 2 B
 * vectors + 1 broadcast = 31 of 32 zmm registers). Packing reuses the AVX2
 * packers. Compiled with ET_TARGET_AVX512 function attributes (no -march). */
#include "gemm_internal.h"

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

#define MR 14
#define NR 32
/* The full kernel prefetches the packed A panel this many k steps ahead (896 bytes; a k step
 * reads 56 of them, so one prefetch a step reaches every line). When N is a single column
 * panel or two (1x1 and 2x2 planes: the last MobileNetV2 blocks, 1.6 MiB of weights for 32
 * images), each panel of A is read once, from L2 or L3, and the hardware prefetcher alone left
 * the kernel waiting on it. Measured on MobileNetV2 28x28 b32 eval at 1 thread, builds
 * interleaved: 8 steps ahead 10 %, 16 steps 17 %, 32 steps 11 % faster than none. A prefetch
 * never faults, so running past the panel's end (into the next tile's panel, or past the
 * buffer) is harmless, and it changes no bit. */
#define PREFETCH_A_STEPS 16

/* Column masks for the (possibly partial) two halves of a 32-wide tile. */
ET_TARGET_AVX512 static inline void col_masks(int64_t nr, __mmask16 *m0, __mmask16 *m1) {
    *m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    *m1 = nr >= 32 ? (__mmask16)0xFFFF
                   : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1u);
}

/* c[0:16] under mask m = alpha * acc + beta * c (beta == 0: c not read; alpha == 1: acc not
 * multiplied -- acc * 1 is acc, the same bits, one FP op less per vector: a short-K call's
 * epilogue, the weight gradient's per image, is a visible share of it). */
ET_TARGET_AVX512 static inline __m512 combine16(const float *c, __m512 acc, __m512 valpha,
                                                int alpha_one, __m512 vbeta, int beta_zero,
                                                __mmask16 m) {
    __m512 r = alpha_one ? acc : _mm512_mul_ps(acc, valpha);
    if (!beta_zero) r = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(m, c), r);
    return r;
}
ET_TARGET_AVX512 static inline void update16(float *c, __m512 acc, __m512 valpha, int alpha_one,
                                             __m512 vbeta, int beta_zero, __mmask16 m) {
    _mm512_mask_storeu_ps(c, m, combine16(c, acc, valpha, alpha_one, vbeta, beta_zero, m));
}

/* Row o's factors of a row epilogue (et_f32_gemm_rowepi), broadcast. */
typedef struct epi_row {
    __m512 bias, scale, shift;
    int add_bias;
} epi_row;
ET_TARGET_AVX512 static inline epi_row epi_row_of(const et_f32_gemm_rowepi *e, int64_t o) {
    const float bias = e->bias ? e->bias[o] : 0.0f;
    epi_row r = {_mm512_set1_ps(bias), _mm512_setzero_ps(), _mm512_setzero_ps(),
                 bias != 0.0f || e->bias_always};
    if (e->scale) r.scale = _mm512_set1_ps(e->scale[o]), r.shift = _mm512_set1_ps(e->shift[o]);
    return r;
}

/* The epilogue on v: et_f32_gemm_rowepi_apply's operations in its order, one rounding each,
 * so the same bits. clamp and affine are constants in each inlined copy. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) __m512
epi16(const epi_row *r, int affine, int clamp, __m512 v) {
    if (r->add_bias) v = _mm512_add_ps(v, r->bias);
    if (affine) v = _mm512_add_ps(_mm512_mul_ps(v, r->scale), r->shift);
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    switch (clamp) {
    case ET_GEMM_CLAMP_RELU:
        return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
    case ET_GEMM_CLAMP_RELU6:
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
        return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, six, _CMP_GT_OQ), six);
    case ET_GEMM_CLAMP_RELU6_LE:
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), zero);
        return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, six, _CMP_GE_OQ), six);
    default: return v;
    }
}

/* The tile's store: rows i < mr of acc, columns < nr, as update16; with e (affine, clamp:
 * its kind, constants here) the epilogue of output row row0 + i before the store. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
store_rows(float *c, int64_t ldc, const __m512 (*acc)[2], int64_t mr, int64_t nr, float alpha,
           float beta, const et_f32_gemm_rowepi *e, int64_t row0, int affine, int clamp) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int bz = beta == 0.0f, a1 = alpha == 1.0f;
    __mmask16 m0, m1;
    col_masks(nr, &m0, &m1);
    for (int64_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        epi_row r;
        if (e) r = epi_row_of(e, row0 + i);
        __m512 r0 = combine16(ci, acc[i][0], va, a1, vb, bz, m0);
        if (e) r0 = epi16(&r, affine, clamp, r0);
        _mm512_mask_storeu_ps(ci, m0, r0);
        if (!m1) continue;
        __m512 r1 = combine16(ci + 16, acc[i][1], va, a1, vb, bz, m1);
        if (e) r1 = epi16(&r, affine, clamp, r1);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

/* store_rows with e's affine and clamp as constants (e NULL: a plain store). */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
store_tile(float *c, int64_t ldc, const __m512 (*acc)[2], int64_t mr, int64_t nr, float alpha,
           float beta, const et_f32_gemm_rowepi *e, int64_t row0) {
    if (!e) {
        store_rows(c, ldc, acc, mr, nr, alpha, beta, NULL, 0, 0, 0);
        return;
    }
    const et_f32_gemm_rowepi le = *e; /* a copy the stores to c cannot alias */
#define ET_STORE_EPI(AFF, CL) store_rows(c, ldc, acc, mr, nr, alpha, beta, &le, row0, AFF, CL)
    switch ((le.scale ? 4 : 0) + le.clamp) {
    case 0 + ET_GEMM_CLAMP_RELU: ET_STORE_EPI(0, ET_GEMM_CLAMP_RELU); break;
    case 0 + ET_GEMM_CLAMP_RELU6: ET_STORE_EPI(0, ET_GEMM_CLAMP_RELU6); break;
    case 4 + ET_GEMM_CLAMP_NONE: ET_STORE_EPI(1, ET_GEMM_CLAMP_NONE); break;
    case 4 + ET_GEMM_CLAMP_RELU: ET_STORE_EPI(1, ET_GEMM_CLAMP_RELU); break;
    case 4 + ET_GEMM_CLAMP_RELU6_LE: ET_STORE_EPI(1, ET_GEMM_CLAMP_RELU6_LE); break;
    default: ET_STORE_EPI(le.scale != NULL, le.clamp); break; /* the rarer combinations */
    }
#undef ET_STORE_EPI
}

/* One k step of row i: both halves of the row accumulate a[i] * b[k, 0:32]. */
#define ROW_FMA(i)                                    \
    do {                                              \
        const __m512 ai = _mm512_set1_ps(a[i]);       \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0); \
        c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1); \
    } while (0)

/* Short edge tiles (mr <= ROWS < MR: M = 50 leaves 8 rows, M = 20 leaves 6 - conv1's weight
 * gradient, where the 8-row kernel spent a third of the time on 6 rows; M = 500 leaves 10, and
 * a classifier's C^T has 10 rows - LeNet's fc1 and fc2): the same k-ordered
 * FMA chain per element as the full kernel, so the same bits, without computing the zero rows
 * of the packed panel (its stride stays MR). */
#define SHORT_KERNEL(ROWS, ...)                                                                   \
    ET_TARGET_AVX512 static void ukernel_##ROWS##x32(                                             \
        int64_t kc, const float *a, const float *b, int64_t ldb, float *c, int64_t ldc,          \
        int64_t mr, int64_t nr, float alpha, float beta, const et_f32_gemm_rowepi *e,            \
        int64_t row0) {                                                                           \
        __m512 acc[ROWS][2];                                                                      \
        for (int i = 0; i < ROWS; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();              \
        for (int64_t k = 0; k < kc; k++) {                                                        \
            const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);                   \
            for (int i = 0; i < ROWS; i++) {                                                      \
                const __m512 ai = _mm512_set1_ps(a[i]);                                           \
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);                                   \
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);                                   \
            }                                                                                     \
            a += MR;                                                                              \
            b += ldb;                                                                             \
        }                                                                                         \
        store_tile(c, ldc, (const __m512(*)[2])acc, mr, nr, alpha, beta, e, row0);                \
    }
SHORT_KERNEL(4)
SHORT_KERNEL(6)
SHORT_KERNEL(8)
SHORT_KERNEL(10)
SHORT_KERNEL(12)

/* The 14x32 kernel; e: a row epilogue before the store (NULL: none; a constant in each
 * caller, so each gets its own copy). */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
ukernel_14x32(int64_t kc, const float *a, const float *b, int64_t ldb, float *c, int64_t ldc,
              int64_t mr, int64_t nr, float alpha, float beta, const et_f32_gemm_rowepi *e,
              int64_t row0) {
    if (mr <= 4) {
        ukernel_4x32(kc, a, b, ldb, c, ldc, mr, nr, alpha, beta, e, row0);
        return;
    }
    if (mr <= 6) {
        ukernel_6x32(kc, a, b, ldb, c, ldc, mr, nr, alpha, beta, e, row0);
        return;
    }
    if (mr <= 8) {
        ukernel_8x32(kc, a, b, ldb, c, ldc, mr, nr, alpha, beta, e, row0);
        return;
    }
    if (mr <= 10) {
        ukernel_10x32(kc, a, b, ldb, c, ldc, mr, nr, alpha, beta, e, row0);
        return;
    }
    if (mr <= 12) {
        ukernel_12x32(kc, a, b, ldb, c, ldc, mr, nr, alpha, beta, e, row0);
        return;
    }
    __m512 c0_0 = _mm512_setzero_ps(), c0_1 = _mm512_setzero_ps();
    __m512 c1_0 = _mm512_setzero_ps(), c1_1 = _mm512_setzero_ps();
    __m512 c2_0 = _mm512_setzero_ps(), c2_1 = _mm512_setzero_ps();
    __m512 c3_0 = _mm512_setzero_ps(), c3_1 = _mm512_setzero_ps();
    __m512 c4_0 = _mm512_setzero_ps(), c4_1 = _mm512_setzero_ps();
    __m512 c5_0 = _mm512_setzero_ps(), c5_1 = _mm512_setzero_ps();
    __m512 c6_0 = _mm512_setzero_ps(), c6_1 = _mm512_setzero_ps();
    __m512 c7_0 = _mm512_setzero_ps(), c7_1 = _mm512_setzero_ps();
    __m512 c8_0 = _mm512_setzero_ps(), c8_1 = _mm512_setzero_ps();
    __m512 c9_0 = _mm512_setzero_ps(), c9_1 = _mm512_setzero_ps();
    __m512 c10_0 = _mm512_setzero_ps(), c10_1 = _mm512_setzero_ps();
    __m512 c11_0 = _mm512_setzero_ps(), c11_1 = _mm512_setzero_ps();
    __m512 c12_0 = _mm512_setzero_ps(), c12_1 = _mm512_setzero_ps();
    __m512 c13_0 = _mm512_setzero_ps(), c13_1 = _mm512_setzero_ps();
    /* pull the C tile towards L1 while the k loop runs */
    for (int64_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        _mm_prefetch((const char *)(a + MR * PREFETCH_A_STEPS), _MM_HINT_T0);
        ROW_FMA(0);
        ROW_FMA(1);
        ROW_FMA(2);
        ROW_FMA(3);
        ROW_FMA(4);
        ROW_FMA(5);
        ROW_FMA(6);
        ROW_FMA(7);
        ROW_FMA(8);
        ROW_FMA(9);
        ROW_FMA(10);
        ROW_FMA(11);
        ROW_FMA(12);
        ROW_FMA(13);
        a += MR;
        b += ldb;
    }
    const __m512 acc[MR][2] = {
        {c0_0, c0_1},   {c1_0, c1_1},   {c2_0, c2_1},   {c3_0, c3_1},   {c4_0, c4_1},
        {c5_0, c5_1},   {c6_0, c6_1},   {c7_0, c7_1},   {c8_0, c8_1},   {c9_0, c9_1},
        {c10_0, c10_1}, {c11_0, c11_1}, {c12_0, c12_1}, {c13_0, c13_1},
    };
    store_tile(c, ldc, acc, mr, nr, alpha, beta, e, row0);
}

ET_TARGET_AVX512 void et_f32_gemm_ukernel_14x32__avx512(int64_t kc, const float *a,
                                                        const float *b, int64_t ldb, float *c,
                                                        int64_t ldc, int64_t mr, int64_t nr,
                                                        float alpha, float beta) {
    ukernel_14x32(kc, a, b, ldb, c, ldc, mr, nr, alpha, beta, NULL, 0);
}

ET_TARGET_AVX512 void et_f32_gemm_ukernel_epi_14x32__avx512(int64_t kc, const float *a,
                                                            const float *b, int64_t ldb,
                                                            float *c, int64_t ldc, int64_t mr,
                                                            int64_t nr, float beta,
                                                            const et_f32_gemm_rowepi *e,
                                                            int64_t row0) {
    ukernel_14x32(kc, a, b, ldb, c, ldc, mr, nr, 1.0f, beta, e, row0);
}

/* ---- A read in place (et_f32_gemm_ukernel_sa) -------------------------------------------
 * The kernels above with a[i] (packed panel, stride MR per k) replaced by row i's element k,
 * ar[i][k]; rows past mr alias the last real row (computed, never stored). */
#define SA_ROWS(ROWS)                                                                             \
    const float *ar[ROWS];                                                                        \
    for (int i = 0; i < ROWS; i++) ar[i] = a + (i < mr ? i : mr - 1) * lda

#define SA_SHORT_KERNEL(ROWS)                                                                     \
    ET_TARGET_AVX512 static void ukernel_sa_##ROWS##x32(                                          \
        int64_t kc, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,          \
        int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {                           \
        SA_ROWS(ROWS);                                                                            \
        __m512 acc[ROWS][2];                                                                      \
        for (int i = 0; i < ROWS; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();              \
        for (int64_t k = 0; k < kc; k++) {                                                        \
            const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);                   \
            for (int i = 0; i < ROWS; i++) {                                                      \
                const __m512 ai = _mm512_set1_ps(ar[i][k]);                                       \
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);                                   \
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);                                   \
            }                                                                                     \
            b += ldb;                                                                             \
        }                                                                                         \
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                       \
        const int bz = beta == 0.0f, a1 = alpha == 1.0f;                                          \
        __mmask16 m0, m1;                                                                         \
        col_masks(nr, &m0, &m1);                                                                  \
        for (int64_t i = 0; i < mr; i++) {                                                        \
            float *ci = c + i * ldc;                                                              \
            update16(ci, acc[i][0], va, a1, vb, bz, m0);                                          \
            if (m1) update16(ci + 16, acc[i][1], va, a1, vb, bz, m1);                             \
        }                                                                                         \
    }
SA_SHORT_KERNEL(4)
SA_SHORT_KERNEL(6)
SA_SHORT_KERNEL(8)
SA_SHORT_KERNEL(10)
SA_SHORT_KERNEL(12)

#define SA_ROW_FMA(i)                                 \
    do {                                              \
        const __m512 ai = _mm512_set1_ps(ar[i][k]);   \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0); \
        c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1); \
    } while (0)

ET_TARGET_AVX512 void et_f32_gemm_ukernel_sa_14x32__avx512(int64_t kc, const float *a,
                                                           int64_t lda, const float *b,
                                                           int64_t ldb, float *c, int64_t ldc,
                                                           int64_t mr, int64_t nr, float alpha,
                                                           float beta) {
    if (mr <= 4) {
        ukernel_sa_4x32(kc, a, lda, b, ldb, c, ldc, mr, nr, alpha, beta);
        return;
    }
    if (mr <= 6) {
        ukernel_sa_6x32(kc, a, lda, b, ldb, c, ldc, mr, nr, alpha, beta);
        return;
    }
    if (mr <= 8) {
        ukernel_sa_8x32(kc, a, lda, b, ldb, c, ldc, mr, nr, alpha, beta);
        return;
    }
    if (mr <= 10) {
        ukernel_sa_10x32(kc, a, lda, b, ldb, c, ldc, mr, nr, alpha, beta);
        return;
    }
    if (mr <= 12) {
        ukernel_sa_12x32(kc, a, lda, b, ldb, c, ldc, mr, nr, alpha, beta);
        return;
    }
    SA_ROWS(MR);
    __m512 c0_0 = _mm512_setzero_ps(), c0_1 = _mm512_setzero_ps();
    __m512 c1_0 = _mm512_setzero_ps(), c1_1 = _mm512_setzero_ps();
    __m512 c2_0 = _mm512_setzero_ps(), c2_1 = _mm512_setzero_ps();
    __m512 c3_0 = _mm512_setzero_ps(), c3_1 = _mm512_setzero_ps();
    __m512 c4_0 = _mm512_setzero_ps(), c4_1 = _mm512_setzero_ps();
    __m512 c5_0 = _mm512_setzero_ps(), c5_1 = _mm512_setzero_ps();
    __m512 c6_0 = _mm512_setzero_ps(), c6_1 = _mm512_setzero_ps();
    __m512 c7_0 = _mm512_setzero_ps(), c7_1 = _mm512_setzero_ps();
    __m512 c8_0 = _mm512_setzero_ps(), c8_1 = _mm512_setzero_ps();
    __m512 c9_0 = _mm512_setzero_ps(), c9_1 = _mm512_setzero_ps();
    __m512 c10_0 = _mm512_setzero_ps(), c10_1 = _mm512_setzero_ps();
    __m512 c11_0 = _mm512_setzero_ps(), c11_1 = _mm512_setzero_ps();
    __m512 c12_0 = _mm512_setzero_ps(), c12_1 = _mm512_setzero_ps();
    __m512 c13_0 = _mm512_setzero_ps(), c13_1 = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        SA_ROW_FMA(0);
        SA_ROW_FMA(1);
        SA_ROW_FMA(2);
        SA_ROW_FMA(3);
        SA_ROW_FMA(4);
        SA_ROW_FMA(5);
        SA_ROW_FMA(6);
        SA_ROW_FMA(7);
        SA_ROW_FMA(8);
        SA_ROW_FMA(9);
        SA_ROW_FMA(10);
        SA_ROW_FMA(11);
        SA_ROW_FMA(12);
        SA_ROW_FMA(13);
        b += ldb;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int bz = beta == 0.0f, a1 = alpha == 1.0f;
    const __m512 acc[MR][2] = {
        {c0_0, c0_1},   {c1_0, c1_1},   {c2_0, c2_1},   {c3_0, c3_1},   {c4_0, c4_1},
        {c5_0, c5_1},   {c6_0, c6_1},   {c7_0, c7_1},   {c8_0, c8_1},   {c9_0, c9_1},
        {c10_0, c10_1}, {c11_0, c11_1}, {c12_0, c12_1}, {c13_0, c13_1},
    };
    __mmask16 m0, m1;
    col_masks(nr, &m0, &m1);
    for (int64_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        update16(ci, acc[i][0], va, a1, vb, bz, m0);
        if (m1) update16(ci + 16, acc[i][1], va, a1, vb, bz, m1);
    }
}

/* ---- B rows through a table (et_f32_gemm_ukernel_off) ------------------------------------- */
#define OFF_SHORT_KERNEL(ROWS)                                                                    \
    ET_TARGET_AVX512 static void ukernel_off_##ROWS##x32(                                         \
        int64_t kc, const float *a, const float *b, const int32_t *off, float *c, int64_t ldc,   \
        int64_t mr, int64_t nr, float alpha, float beta) {                                        \
        __m512 acc[ROWS][2];                                                                      \
        for (int i = 0; i < ROWS; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();              \
        for (int64_t k = 0; k < kc; k++) {                                                        \
            const float *bk = b + off[k];                                                         \
            const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);                 \
            for (int i = 0; i < ROWS; i++) {                                                      \
                const __m512 ai = _mm512_set1_ps(a[i]);                                           \
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);                                   \
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);                                   \
            }                                                                                     \
            a += MR;                                                                              \
        }                                                                                         \
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                       \
        const int bz = beta == 0.0f, a1 = alpha == 1.0f;                                          \
        __mmask16 m0, m1;                                                                         \
        col_masks(nr, &m0, &m1);                                                                  \
        for (int64_t i = 0; i < mr; i++) {                                                        \
            float *ci = c + i * ldc;                                                              \
            update16(ci, acc[i][0], va, a1, vb, bz, m0);                                          \
            if (m1) update16(ci + 16, acc[i][1], va, a1, vb, bz, m1);                             \
        }                                                                                         \
    }
OFF_SHORT_KERNEL(4)
OFF_SHORT_KERNEL(6)
OFF_SHORT_KERNEL(8)

ET_TARGET_AVX512 void et_f32_gemm_ukernel_off_14x32__avx512(int64_t kc, const float *a,
                                                            const float *b, const int32_t *off,
                                                            float *c, int64_t ldc, int64_t mr,
                                                            int64_t nr, float alpha, float beta) {
    if (mr <= 4) {
        ukernel_off_4x32(kc, a, b, off, c, ldc, mr, nr, alpha, beta);
        return;
    }
    if (mr <= 6) {
        ukernel_off_6x32(kc, a, b, off, c, ldc, mr, nr, alpha, beta);
        return;
    }
    if (mr <= 8) {
        ukernel_off_8x32(kc, a, b, off, c, ldc, mr, nr, alpha, beta);
        return;
    }
    __m512 c0_0 = _mm512_setzero_ps(), c0_1 = _mm512_setzero_ps();
    __m512 c1_0 = _mm512_setzero_ps(), c1_1 = _mm512_setzero_ps();
    __m512 c2_0 = _mm512_setzero_ps(), c2_1 = _mm512_setzero_ps();
    __m512 c3_0 = _mm512_setzero_ps(), c3_1 = _mm512_setzero_ps();
    __m512 c4_0 = _mm512_setzero_ps(), c4_1 = _mm512_setzero_ps();
    __m512 c5_0 = _mm512_setzero_ps(), c5_1 = _mm512_setzero_ps();
    __m512 c6_0 = _mm512_setzero_ps(), c6_1 = _mm512_setzero_ps();
    __m512 c7_0 = _mm512_setzero_ps(), c7_1 = _mm512_setzero_ps();
    __m512 c8_0 = _mm512_setzero_ps(), c8_1 = _mm512_setzero_ps();
    __m512 c9_0 = _mm512_setzero_ps(), c9_1 = _mm512_setzero_ps();
    __m512 c10_0 = _mm512_setzero_ps(), c10_1 = _mm512_setzero_ps();
    __m512 c11_0 = _mm512_setzero_ps(), c11_1 = _mm512_setzero_ps();
    __m512 c12_0 = _mm512_setzero_ps(), c12_1 = _mm512_setzero_ps();
    __m512 c13_0 = _mm512_setzero_ps(), c13_1 = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + off[k];
        const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);
        ROW_FMA(0);
        ROW_FMA(1);
        ROW_FMA(2);
        ROW_FMA(3);
        ROW_FMA(4);
        ROW_FMA(5);
        ROW_FMA(6);
        ROW_FMA(7);
        ROW_FMA(8);
        ROW_FMA(9);
        ROW_FMA(10);
        ROW_FMA(11);
        ROW_FMA(12);
        ROW_FMA(13);
        a += MR;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int bz = beta == 0.0f, a1 = alpha == 1.0f;
    const __m512 acc[MR][2] = {
        {c0_0, c0_1},   {c1_0, c1_1},   {c2_0, c2_1},   {c3_0, c3_1},   {c4_0, c4_1},
        {c5_0, c5_1},   {c6_0, c6_1},   {c7_0, c7_1},   {c8_0, c8_1},   {c9_0, c9_1},
        {c10_0, c10_1}, {c11_0, c11_1}, {c12_0, c12_1}, {c13_0, c13_1},
    };
    __mmask16 m0, m1;
    col_masks(nr, &m0, &m1);
    for (int64_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        update16(ci, acc[i][0], va, a1, vb, bz, m0);
        if (m1) update16(ci + 16, acc[i][1], va, a1, vb, bz, m1);
    }
}

const et_f32_gemm_config et_f32_gemm_config_avx512 = {
    /* Zen 5 (48 KiB L1d, 1 MiB L2), measured with tests/bench_gemm.c: a long kc
     * amortises the C tile update; the 14 x kc A panel (43 KiB) stays near L1,
     * the kc x 32 B panel streams from L2, the packed A block (504 KiB) in L2. */
    "avx512", MR, NR, /* mc */ 168, /* kc */ ET_GEMM_KC, /* nc */ 1024,
    et_f32_gemm_ukernel_14x32__avx512, et_f32_gemm_pack_interleave__avx2,
    et_f32_gemm_pack_copy__avx2, et_f32_gemm_ukernel_sa_14x32__avx512,
    et_f32_gemm_ukernel_off_14x32__avx512, et_f32_gemm_store_t__avx2,
    et_f32_gemm_ukernel_epi_14x32__avx512,
};

#else
typedef int et_gemm_avx512_unused; /* keeps the translation unit non-empty */
#endif
