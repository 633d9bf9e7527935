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
#endif /* EDGETRAIN_QGEMM_INTERNAL_H */
