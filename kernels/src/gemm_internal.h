/* edgetrain — GEMM variants (internal; tests call them directly). */
#ifndef EDGETRAIN_GEMM_INTERNAL_H
#define EDGETRAIN_GEMM_INTERNAL_H
#include "edgetrain/et_kernels.h"

void et_f32_gemm__ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);
#endif
