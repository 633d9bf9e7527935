/* edgetrain — scalar math written to vectorise, shared by the SIMD rows of the unary and
 * softmax families (unary_simd.c, softmax_simd.c). Internal.
 *
 * exp_f64(x): exp((double)x) rounded to float, by a branch-free double polynomial (~3e-16
 * relative): the value libm's exp gives to ~1e-15, so equal to (float)exp((double)x) and to
 * glibc's expf but for rare last-bit cases at float rounding boundaries. Plain double
 * operations (no FP contraction in this project's builds), so the same bits on every ISA.
 *   x = k ln2 + r (k = round(x / ln2), ln2 split in two for an exact k * ln2_hi),
 *   exp(r) by its degree-13 Taylor polynomial (|r| <= 0.347), times 2^k from the bits.
 */
#ifndef EDGETRAIN_SIMD_MATH_INTERNAL_H
#define EDGETRAIN_SIMD_MATH_INTERNAL_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define ET_INLINE static inline __attribute__((always_inline))
#else
#define ET_INLINE static inline
#endif

/* exp((double)x) rounded to float. x > 100: inf; x < -120: 0 (both far past float's range:
 * exp(89) > FLT_MAX, exp(-104) < half the least subnormal); NaN stays NaN. */
ET_INLINE float exp_f64(float xf) {
    const double x = (double)xf;
    double xc = x < 100.0 ? x : 100.0;
    xc = xc > -120.0 ? xc : -120.0; /* NaN -> -120 (then replaced below) */
    const double kd = (xc * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    const double r = (xc - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;             /* 1/13! */
    p = p * r + 1.0 / 479001600.0;             /* 1/12! */
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const int64_t bits = ((int64_t)(int32_t)kd + 1023) << 52; /* k in [-174, 145]: normal */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double e = p * scale;
    e = x > 100.0 ? INFINITY : e;
    e = x < -120.0 ? 0.0 : e;
    return x == x ? (float)e : xf;
}

#endif /* EDGETRAIN_SIMD_MATH_INTERNAL_H */
