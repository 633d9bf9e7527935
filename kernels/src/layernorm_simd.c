/* edgetrain — SIMD rows of the row normalisation (LayerNorm / GroupNorm / InstanceNorm,
 * layernorm.c): et_f32_normalize_rows_{fwd,bwd}__{avx2,avx512,neon}.
 *
 * Bit-identical to __ref: __ref already sums in 8 double lanes (element j of each run of 8
 * goes to lane j, the tail of k % 8 elements is added after, in order) and combines the lanes
 * in a fixed order. Here the 8 lanes are one __m512d, two __m256d or four float64x2_t, each
 * lane doing the same double adds in the same order; the lanes are then stored and combined by
 * the same scalar expressions, and the per-element outputs are the same double operations
 * (no FP contraction), rounded to float. So every ISA gives __ref's bits, on x86 and arm64.
 */
#include <math.h>

#include "misc_internal.h"
#include "norm_internal.h"

/* __ref's combination of the 8 lanes of the variance / backward sums. */
static inline double lanes8(const double *a) {
    return (a[0] + a[1]) + (a[2] + a[3]) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* et_misc_sum_f64's combination (the mean): lanes, then the tail sum. */
static inline double mean_lanes8(const double *a, double tail) {
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail;
}

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

/* ---- AVX2: lanes 0-3 and 4-7 in two __m256d --------------------------------------------- */
ET_TARGET_AVX2 static inline void load8_avx2(const float *p, __m256d *lo, __m256d *hi) {
    *lo = _mm256_cvtps_pd(_mm_loadu_ps(p));
    *hi = _mm256_cvtps_pd(_mm_loadu_ps(p + 4));
}

ET_TARGET_AVX2 void et_f32_normalize_rows_fwd__avx2(int64_t r0, int64_t r1, int64_t k, float eps,
                                                    const float *x, float *y, float *invstd) {
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * k;
        float *yr = y + r * k;
        double lanes[8], tail = 0.0;
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), a, b;
        for (int64_t j = 0; j < k8; j += 8) {
            load8_avx2(xr + j, &a, &b);
            s0 = _mm256_add_pd(s0, a);
            s1 = _mm256_add_pd(s1, b);
        }
        for (int64_t j = k8; j < k; j++) tail += (double)xr[j];
        _mm256_storeu_pd(lanes, s0);
        _mm256_storeu_pd(lanes + 4, s1);
        const double mean = mean_lanes8(lanes, tail) / (double)k;
        const __m256d vm = _mm256_set1_pd(mean);
        s0 = s1 = _mm256_setzero_pd();
        for (int64_t j = 0; j < k8; j += 8) {
            load8_avx2(xr + j, &a, &b);
            a = _mm256_sub_pd(a, vm);
            b = _mm256_sub_pd(b, vm);
            s0 = _mm256_add_pd(s0, _mm256_mul_pd(a, a));
            s1 = _mm256_add_pd(s1, _mm256_mul_pd(b, b));
        }
        _mm256_storeu_pd(lanes, s0);
        _mm256_storeu_pd(lanes + 4, s1);
        for (int64_t j = k8; j < k; j++) {
            double d = (double)xr[j] - mean;
            lanes[0] += d * d;
        }
        const double is = 1.0 / sqrt(lanes8(lanes) / (double)k + (double)eps);
        const __m256d vi = _mm256_set1_pd(is);
        for (int64_t j = 0; j < k8; j += 8) {
            load8_avx2(xr + j, &a, &b);
            _mm_storeu_ps(yr + j, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(a, vm), vi)));
            _mm_storeu_ps(yr + j + 4, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(b, vm), vi)));
        }
        for (int64_t j = k8; j < k; j++) yr[j] = (float)(((double)xr[j] - mean) * is);
        invstd[r] = (float)is;
    }
}

ET_TARGET_AVX2 void et_f32_normalize_rows_bwd__avx2(int64_t r0, int64_t r1, int64_t k,
                                                    const float *y, const float *invstd,
                                                    const float *dy, float *dx) {
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *yr = y + r * k, *gr = dy + r * k;
        float *dr = dx + r * k;
        __m256d g0 = _mm256_setzero_pd(), g1 = g0, q0 = g0, q1 = g0, ga, gb, ya, yb;
        for (int64_t j = 0; j < k8; j += 8) {
            load8_avx2(gr + j, &ga, &gb);
            load8_avx2(yr + j, &ya, &yb);
            g0 = _mm256_add_pd(g0, ga);
            g1 = _mm256_add_pd(g1, gb);
            q0 = _mm256_add_pd(q0, _mm256_mul_pd(ga, ya));
            q1 = _mm256_add_pd(q1, _mm256_mul_pd(gb, yb));
        }
        double sg[8], sgy[8];
        _mm256_storeu_pd(sg, g0);
        _mm256_storeu_pd(sg + 4, g1);
        _mm256_storeu_pd(sgy, q0);
        _mm256_storeu_pd(sgy + 4, q1);
        for (int64_t j = k8; j < k; j++) {
            sg[0] += (double)gr[j];
            sgy[0] += (double)gr[j] * (double)yr[j];
        }
        const double mg = lanes8(sg) / (double)k, mgy = lanes8(sgy) / (double)k;
        const double is = (double)invstd[r];
        const __m256d vmg = _mm256_set1_pd(mg), vmgy = _mm256_set1_pd(mgy), vi = _mm256_set1_pd(is);
        for (int64_t j = 0; j < k8; j += 8) {
            load8_avx2(gr + j, &ga, &gb);
            load8_avx2(yr + j, &ya, &yb);
            ga = _mm256_sub_pd(_mm256_sub_pd(ga, vmg), _mm256_mul_pd(ya, vmgy));
            gb = _mm256_sub_pd(_mm256_sub_pd(gb, vmg), _mm256_mul_pd(yb, vmgy));
            _mm_storeu_ps(dr + j, _mm256_cvtpd_ps(_mm256_mul_pd(vi, ga)));
            _mm_storeu_ps(dr + j + 4, _mm256_cvtpd_ps(_mm256_mul_pd(vi, gb)));
        }
        for (int64_t j = k8; j < k; j++)
            dr[j] = (float)(is * ((double)gr[j] - mg - (double)yr[j] * mgy));
    }
}

/* ---- AVX-512: the 8 lanes in one __m512d ------------------------------------------------ */
ET_TARGET_AVX512 static inline __m512d load8_avx512(const float *p) {
    return _mm512_cvtps_pd(_mm256_loadu_ps(p));
}

ET_TARGET_AVX512 void et_f32_normalize_rows_fwd__avx512(int64_t r0, int64_t r1, int64_t k,
                                                        float eps, const float *x, float *y,
                                                        float *invstd) {
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * k;
        float *yr = y + r * k;
        double lanes[8], tail = 0.0;
        __m512d s = _mm512_setzero_pd();
        for (int64_t j = 0; j < k8; j += 8) s = _mm512_add_pd(s, load8_avx512(xr + j));
        for (int64_t j = k8; j < k; j++) tail += (double)xr[j];
        _mm512_storeu_pd(lanes, s);
        const double mean = mean_lanes8(lanes, tail) / (double)k;
        const __m512d vm = _mm512_set1_pd(mean);
        s = _mm512_setzero_pd();
        for (int64_t j = 0; j < k8; j += 8) {
            const __m512d d = _mm512_sub_pd(load8_avx512(xr + j), vm);
            s = _mm512_add_pd(s, _mm512_mul_pd(d, d));
        }
        _mm512_storeu_pd(lanes, s);
        for (int64_t j = k8; j < k; j++) {
            double d = (double)xr[j] - mean;
            lanes[0] += d * d;
        }
        const double is = 1.0 / sqrt(lanes8(lanes) / (double)k + (double)eps);
        const __m512d vi = _mm512_set1_pd(is);
        for (int64_t j = 0; j < k8; j += 8)
            _mm256_storeu_ps(yr + j, _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(load8_avx512(xr + j), vm), vi)));
        for (int64_t j = k8; j < k; j++) yr[j] = (float)(((double)xr[j] - mean) * is);
        invstd[r] = (float)is;
    }
}

ET_TARGET_AVX512 void et_f32_normalize_rows_bwd__avx512(int64_t r0, int64_t r1, int64_t k,
                                                        const float *y, const float *invstd,
                                                        const float *dy, float *dx) {
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *yr = y + r * k, *gr = dy + r * k;
        float *dr = dx + r * k;
        __m512d g = _mm512_setzero_pd(), q = g;
        for (int64_t j = 0; j < k8; j += 8) {
            const __m512d gv = load8_avx512(gr + j);
            g = _mm512_add_pd(g, gv);
            q = _mm512_add_pd(q, _mm512_mul_pd(gv, load8_avx512(yr + j)));
        }
        double sg[8], sgy[8];
        _mm512_storeu_pd(sg, g);
        _mm512_storeu_pd(sgy, q);
        for (int64_t j = k8; j < k; j++) {
            sg[0] += (double)gr[j];
            sgy[0] += (double)gr[j] * (double)yr[j];
        }
        const double mg = lanes8(sg) / (double)k, mgy = lanes8(sgy) / (double)k;
        const double is = (double)invstd[r];
        const __m512d vmg = _mm512_set1_pd(mg), vmgy = _mm512_set1_pd(mgy), vi = _mm512_set1_pd(is);
        for (int64_t j = 0; j < k8; j += 8) {
            const __m512d d = _mm512_sub_pd(_mm512_sub_pd(load8_avx512(gr + j), vmg),
                                            _mm512_mul_pd(load8_avx512(yr + j), vmgy));
            _mm256_storeu_ps(dr + j, _mm512_cvtpd_ps(_mm512_mul_pd(vi, d)));
        }
        for (int64_t j = k8; j < k; j++)
            dr[j] = (float)(is * ((double)gr[j] - mg - (double)yr[j] * mgy));
    }
}
#endif /* ET_HAVE_X86_SIMD */

#if defined(ET_HAVE_NEON)
#include <arm_neon.h>

/* ---- NEON: lanes 0-1, 2-3, 4-5, 6-7 in four float64x2_t -------------------------------- */
static inline void load8_neon(const float *p, float64x2_t v[4]) {
    const float32x4_t a = vld1q_f32(p), b = vld1q_f32(p + 4);
    v[0] = vcvt_f64_f32(vget_low_f32(a));
    v[1] = vcvt_high_f64_f32(a);
    v[2] = vcvt_f64_f32(vget_low_f32(b));
    v[3] = vcvt_high_f64_f32(b);
}

static inline void store8_neon(double *d, const float64x2_t v[4]) {
    for (int l = 0; l < 4; l++) vst1q_f64(d + 2 * l, v[l]);
}

/* y[0..8) = (float)(v * s) for the 4 double pairs. */
static inline void store8_f32_neon(float *y, const float64x2_t v[4]) {
    vst1q_f32(y, vcvt_high_f32_f64(vcvt_f32_f64(v[0]), v[1]));
    vst1q_f32(y + 4, vcvt_high_f32_f64(vcvt_f32_f64(v[2]), v[3]));
}

void et_f32_normalize_rows_fwd__neon(int64_t r0, int64_t r1, int64_t k, float eps, const float *x,
                                     float *y, float *invstd) {
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * k;
        float *yr = y + r * k;
        double lanes[8], tail = 0.0;
        float64x2_t s[4], v[4];
        for (int l = 0; l < 4; l++) s[l] = vdupq_n_f64(0.0);
        for (int64_t j = 0; j < k8; j += 8) {
            load8_neon(xr + j, v);
            for (int l = 0; l < 4; l++) s[l] = vaddq_f64(s[l], v[l]);
        }
        for (int64_t j = k8; j < k; j++) tail += (double)xr[j];
        store8_neon(lanes, s);
        const double mean = mean_lanes8(lanes, tail) / (double)k;
        const float64x2_t vm = vdupq_n_f64(mean);
        for (int l = 0; l < 4; l++) s[l] = vdupq_n_f64(0.0);
        for (int64_t j = 0; j < k8; j += 8) {
            load8_neon(xr + j, v);
            for (int l = 0; l < 4; l++) {
                const float64x2_t d = vsubq_f64(v[l], vm);
                s[l] = vaddq_f64(s[l], vmulq_f64(d, d));
            }
        }
        store8_neon(lanes, s);
        for (int64_t j = k8; j < k; j++) {
            double d = (double)xr[j] - mean;
            lanes[0] += d * d;
        }
        const double is = 1.0 / sqrt(lanes8(lanes) / (double)k + (double)eps);
        const float64x2_t vi = vdupq_n_f64(is);
        for (int64_t j = 0; j < k8; j += 8) {
            load8_neon(xr + j, v);
            for (int l = 0; l < 4; l++) v[l] = vmulq_f64(vsubq_f64(v[l], vm), vi);
            store8_f32_neon(yr + j, v);
        }
        for (int64_t j = k8; j < k; j++) yr[j] = (float)(((double)xr[j] - mean) * is);
        invstd[r] = (float)is;
    }
}

void et_f32_normalize_rows_bwd__neon(int64_t r0, int64_t r1, int64_t k, const float *y,
                                     const float *invstd, const float *dy, float *dx) {
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *yr = y + r * k, *gr = dy + r * k;
        float *dr = dx + r * k;
        float64x2_t g[4], q[4], gv[4], yv[4];
        for (int l = 0; l < 4; l++) g[l] = q[l] = vdupq_n_f64(0.0);
        for (int64_t j = 0; j < k8; j += 8) {
            load8_neon(gr + j, gv);
            load8_neon(yr + j, yv);
            for (int l = 0; l < 4; l++) {
                g[l] = vaddq_f64(g[l], gv[l]);
                q[l] = vaddq_f64(q[l], vmulq_f64(gv[l], yv[l]));
            }
        }
        double sg[8], sgy[8];
        store8_neon(sg, g);
        store8_neon(sgy, q);
        for (int64_t j = k8; j < k; j++) {
            sg[0] += (double)gr[j];
            sgy[0] += (double)gr[j] * (double)yr[j];
        }
        const double mg = lanes8(sg) / (double)k, mgy = lanes8(sgy) / (double)k;
        const double is = (double)invstd[r];
        const float64x2_t vmg = vdupq_n_f64(mg), vmgy = vdupq_n_f64(mgy), vi = vdupq_n_f64(is);
        for (int64_t j = 0; j < k8; j += 8) {
            load8_neon(gr + j, gv);
            load8_neon(yr + j, yv);
            for (int l = 0; l < 4; l++)
                gv[l] = vmulq_f64(vi, vsubq_f64(vsubq_f64(gv[l], vmg), vmulq_f64(yv[l], vmgy)));
            store8_f32_neon(dr + j, gv);
        }
        for (int64_t j = k8; j < k; j++)
            dr[j] = (float)(is * ((double)gr[j] - mg - (double)yr[j] * mgy));
    }
}
#endif /* ET_HAVE_NEON */

/* ---- variant table (variant_internal.h) ------------------------------------------------ */
const et_f32_normrows_variant et_f32_normrows_variants[] = {
    {{ET_ISA_REF, "ref"}, et_f32_normalize_rows_fwd__ref, et_f32_normalize_rows_bwd__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_f32_normalize_rows_fwd__avx2, et_f32_normalize_rows_bwd__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_f32_normalize_rows_fwd__avx512,
     et_f32_normalize_rows_bwd__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, et_f32_normalize_rows_fwd__neon, et_f32_normalize_rows_bwd__neon},
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL}, /* end */
};
