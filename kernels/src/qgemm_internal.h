/* edgetrain — int8 GEMM variant table (internal; src/qgemm.c, tests, benchmarks).
 * Rows: __ref first, then the SIMD rows compiled for this target; every row gives the same
 * integers (exact sums), so the same bytes. */
#ifndef EDGETRAIN_QGEMM_INTERNAL_H
#define EDGETRAIN_QGEMM_INTERNAL_H
#include "edgetrain/et_kernels.h"
#include "variant_internal.h"

typedef et_status (*et_q_gemm_fn)(int64_t M, int64_t N, int64_t K, const uint8_t *a, int32_t a_zp,
                                  const int8_t *w, const int32_t *bias, const float *mult, int32_t y_zp,
                                  int32_t qmin, int32_t qmax, uint8_t *y, int64_t y_rs, int64_t y_cs, int nthreads);
typedef struct et_q_gemm_variant {
    et_variant_head head;
    et_q_gemm_fn gemm;
} et_q_gemm_variant;
extern const et_q_gemm_variant et_q_gemm_variants[];
/* The generic convolution, im2col + one call of `gemm` per image and group (every qconv2d but
 * the depthwise one, which et_q_conv2d runs directly): the oracle of the depthwise tests and
 * the baseline of bench_qdwconv. */
size_t et_q_conv2d_im2col_ws_bytes(const et_conv2d_params *p);
et_status et_q_conv2d_im2col(et_q_gemm_fn gemm, const et_conv2d_params *p, const uint8_t *x, int32_t x_zp,
                             const int8_t *w, const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin,
                             int32_t qmax, uint8_t *y, void *ws, size_t ws_bytes, int nthreads);
/* The convolution rows: __ref (im2col + one __ref GEMM per image and group), then tiled SIMD
 * rows (src/qgemm.c). et_q_conv2d runs the picked SIMD row, or without one im2col + the picked
 * GEMM row. */
typedef et_status (*et_q_conv2d_fn)(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w,
                                    const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                                    uint8_t *y, void *ws, size_t ws_bytes, int nthreads);
typedef struct et_q_conv2d_variant {
    et_variant_head head;
    et_q_conv2d_fn conv;
} et_q_conv2d_variant;
extern const et_q_conv2d_variant et_q_conv2d_variants[];
/* The direct depthwise convolution (groups == c == oc, no workspace): the same loops
 * (src/qdw_body.h) compiled per target; ET_ERR_ARG for other shapes. */
extern const et_q_conv2d_variant et_q_dwconv2d_variants[];

/* Round half to even of |v| < 2^22 in the default rounding mode, no libm call: v + 1.5 * 2^23
 * lies in [2^22, 2^24), where the float spacing is 1, so the add rounds v to an integer (ties
 * to even) and the subtraction is exact. = nearbyintf(v) for such v (-0 becomes +0). */
static inline float et_q_round_even(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* The requantize of every int8 kernel: clamp(nearbyintf((float)acc * mult) + y_zp, qmin, qmax),
 * computed as round(clamp(v, qmin - y_zp, qmax - y_zp)) + y_zp: the bounds are integers, so
 * the clamp and the rounding commute (both monotonic, integers fixed), and the clamped value is
 * within 255 of zero (et_q_round_even applies). v is never NaN (acc finite, mult finite > 0);
 * +-inf clamps to a bound. The SIMD rows do the same clamp and round with vector instructions. */
static inline uint8_t et_q_requant1(int64_t acc, float mult, int32_t y_zp, int32_t qmin, int32_t qmax) {
    const float lo = (float)(qmin - y_zp), hi = (float)(qmax - y_zp);
    float v = (float)acc * mult;
    v = v < lo ? lo : (v > hi ? hi : v);
    return (uint8_t)((int32_t)et_q_round_even(v) + y_zp);
}
#endif /* EDGETRAIN_QGEMM_INTERNAL_H */
