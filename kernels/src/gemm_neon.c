/* edgetrain — aarch64 Advanced SIMD GEMM: 8x12 microkernel (24 q accumulators
 * + 3 B vectors + 2 A vectors of 32 registers) using vfmaq_laneq_f32, and
 * 4x4-transpose packers. */
#include "gemm_internal.h"

#if defined(ET_HAVE_NEON)
#include <arm_neon.h>

#define MR 8
#define NR 12

/* ---- packers ------------------------------------------------------------------ */

/* dst[k*w + r] = src[r*ld + k] for r < n, 0 for n <= r < w (w % 4 == 0):
 * groups of 4 rows x 4 k through register transposes. */
void et_f32_gemm_pack_interleave__neon(int64_t w, int64_t n, int64_t kc, const float *src,
                                       int64_t ld, float *dst) {
    const int64_t kc4 = kc & ~(int64_t)3;
    const float32x4_t z = vdupq_n_f32(0.0f);
    for (int64_t g = 0; g < w; g += 4) {
        const float *s = src + g * ld;
        float *d = dst + g;
        for (int64_t k = 0; k < kc4; k += 4) {
            const float32x4_t r0 = g + 0 < n ? vld1q_f32(s + k) : z;
            const float32x4_t r1 = g + 1 < n ? vld1q_f32(s + ld + k) : z;
            const float32x4_t r2 = g + 2 < n ? vld1q_f32(s + 2 * ld + k) : z;
            const float32x4_t r3 = g + 3 < n ? vld1q_f32(s + 3 * ld + k) : z;
            /* 4x4 transpose: t0 = (r0[0], r1[0], r0[2], r1[2]), ... */
            const float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
            const float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
            vst1q_f32(d + (k + 0) * w, vreinterpretq_f32_f64(vtrn1q_f64(
                                           vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2))));
            vst1q_f32(d + (k + 1) * w, vreinterpretq_f32_f64(vtrn1q_f64(
                                           vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3))));
            vst1q_f32(d + (k + 2) * w, vreinterpretq_f32_f64(vtrn2q_f64(
                                           vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2))));
            vst1q_f32(d + (k + 3) * w, vreinterpretq_f32_f64(vtrn2q_f64(
                                           vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3))));
        }
        for (int64_t k = kc4; k < kc; k++)
            for (int64_t i = 0; i < 4; i++) d[k * w + i] = g + i < n ? s[i * ld + k] : 0.0f;
    }
}

/* dst[k*w + c] = src[k*ld + c] for c < n, 0 for n <= c < w. */
void et_f32_gemm_pack_copy__neon(int64_t w, int64_t n, int64_t kc, const float *src, int64_t ld,
                                 float *dst) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + k * ld;
        float *d = dst + k * w;
        int64_t c = 0;
        for (; c + 4 <= n; c += 4) vst1q_f32(d + c, vld1q_f32(s + c));
        for (; c < n; c++) d[c] = s[c];
        for (; c < w; c++) d[c] = 0.0f;
    }
}

/* ---- 8x12 microkernel ----------------------------------------------------------- */

/* c[0:nr] (nr <= 4) = alpha * acc + beta * c (beta == 0: c not read). */
static inline void update4(float *c, float32x4_t acc, float alpha, float beta, int64_t nr) {
    float32x4_t r = vmulq_n_f32(acc, alpha);
    if (nr >= 4) {
        if (beta != 0.0f) r = vfmaq_n_f32(r, vld1q_f32(c), beta);
        vst1q_f32(c, r);
    } else { /* edge: same arithmetic through a stack copy */
        float t[4] = {0, 0, 0, 0};
        if (beta != 0.0f) {
            for (int64_t j = 0; j < nr; j++) t[j] = c[j];
            r = vfmaq_n_f32(r, vld1q_f32(t), beta);
        }
        vst1q_f32(t, r);
        for (int64_t j = 0; j < nr; j++) c[j] = t[j];
    }
}

/* One k step of rows 4q..4q+3 (lanes of av) against b[k, 0:12]. */
#define ROWS_FMA(r0, r1, r2, r3, av)                       \
    do {                                                   \
        c##r0##_0 = vfmaq_laneq_f32(c##r0##_0, b0, av, 0); \
        c##r0##_1 = vfmaq_laneq_f32(c##r0##_1, b1, av, 0); \
        c##r0##_2 = vfmaq_laneq_f32(c##r0##_2, b2, av, 0); \
        c##r1##_0 = vfmaq_laneq_f32(c##r1##_0, b0, av, 1); \
        c##r1##_1 = vfmaq_laneq_f32(c##r1##_1, b1, av, 1); \
        c##r1##_2 = vfmaq_laneq_f32(c##r1##_2, b2, av, 1); \
        c##r2##_0 = vfmaq_laneq_f32(c##r2##_0, b0, av, 2); \
        c##r2##_1 = vfmaq_laneq_f32(c##r2##_1, b1, av, 2); \
        c##r2##_2 = vfmaq_laneq_f32(c##r2##_2, b2, av, 2); \
        c##r3##_0 = vfmaq_laneq_f32(c##r3##_0, b0, av, 3); \
        c##r3##_1 = vfmaq_laneq_f32(c##r3##_1, b1, av, 3); \
        c##r3##_2 = vfmaq_laneq_f32(c##r3##_2, b2, av, 3); \
    } while (0)

/* Edge tiles of at most 4 rows (M = 50 leaves 2, M = 20 leaves 4): the full kernel's FMA
 * chains for rows 0..3 only (same bits), reading the lower half of each 8-wide A panel. */
static void ukernel_4x12(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                         int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
    const float32x4_t z = vdupq_n_f32(0.0f);
    float32x4_t c0_0 = z, c0_1 = z, c0_2 = z, c1_0 = z, c1_1 = z, c1_2 = z;
    float32x4_t c2_0 = z, c2_1 = z, c2_2 = z, c3_0 = z, c3_1 = z, c3_2 = z;
    for (int64_t k = 0; k < kc; k++) {
        const float32x4_t a0 = vld1q_f32(a);
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
        ROWS_FMA(0, 1, 2, 3, a0);
        a += MR;
        b += ldb;
    }
    const float32x4_t acc[4][3] = {
        {c0_0, c0_1, c0_2}, {c1_0, c1_1, c1_2}, {c2_0, c2_1, c2_2}, {c3_0, c3_1, c3_2}};
    for (int64_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        for (int64_t q = 0; q < 3 && 4 * q < nr; q++)
            update4(ci + 4 * q, acc[i][q], alpha, beta, nr - 4 * q);
    }
}

void et_f32_gemm_ukernel_8x12__neon(int64_t kc, const float *a, const float *b, int64_t ldb,
                                    float *c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                                    float beta) {
    if (mr <= 4) {
        ukernel_4x12(kc, a, b, ldb, c, ldc, mr, nr, alpha, beta);
        return;
    }
    const float32x4_t z = vdupq_n_f32(0.0f);
    float32x4_t c0_0 = z, c0_1 = z, c0_2 = z, c1_0 = z, c1_1 = z, c1_2 = z;
    float32x4_t c2_0 = z, c2_1 = z, c2_2 = z, c3_0 = z, c3_1 = z, c3_2 = z;
    float32x4_t c4_0 = z, c4_1 = z, c4_2 = z, c5_0 = z, c5_1 = z, c5_2 = z;
    float32x4_t c6_0 = z, c6_1 = z, c6_2 = z, c7_0 = z, c7_1 = z, c7_2 = z;
    for (int64_t k = 0; k < kc; k++) {
        const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
        ROWS_FMA(0, 1, 2, 3, a0);
        ROWS_FMA(4, 5, 6, 7, a1);
        a += MR;
        b += ldb;
    }
    const float32x4_t acc[MR][3] = {
        {c0_0, c0_1, c0_2}, {c1_0, c1_1, c1_2}, {c2_0, c2_1, c2_2}, {c3_0, c3_1, c3_2},
        {c4_0, c4_1, c4_2}, {c5_0, c5_1, c5_2}, {c6_0, c6_1, c6_2}, {c7_0, c7_1, c7_2},
    };
    for (int64_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        for (int64_t q = 0; q < 3 && 4 * q < nr; q++)
            update4(ci + 4 * q, acc[i][q], alpha, beta, nr - 4 * q);
    }
}

const et_f32_gemm_config et_f32_gemm_config_neon = {
    /* kc is the shared ET_GEMM_KC (768; the bits depend on it, gemm_internal.h).
     * For Cortex-A7x-class cores (64 KiB L1d, 256-512 KiB L2): the kc x 12 B
     * panel (36 KiB) stays in L1, the packed A block (192 KiB) in L2, the B block
     * (3 MiB) in L3. mc / nc do not change the bits. Checked for correctness
     * under qemu only; not yet tuned on hardware. */
    "neon", MR, NR, /* mc */ 64, /* kc */ ET_GEMM_KC, /* nc */ 1032,
    et_f32_gemm_ukernel_8x12__neon, et_f32_gemm_pack_interleave__neon, et_f32_gemm_pack_copy__neon,
    NULL, /* no in-place A kernel */
    NULL, /* no B-through-a-table kernel */
    NULL, /* C^T tiles stored one float at a time */
    NULL, /* the row epilogue after the store */
};

#else
typedef int et_gemm_neon_unused; /* keeps the translation unit non-empty */
#endif
