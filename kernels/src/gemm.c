/* edgetrain — GEMM dispatch. PLACEHOLDER: calls the reference until the packed kernels land. */
#include "gemm_internal.h"

size_t et_f32_gemm_ws_bytes(int64_t M, int64_t N, int64_t K, int nthreads) {
    (void)M; (void)N; (void)K; (void)nthreads;
    return 0;
}

et_status et_f32_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc, void *ws, size_t ws_bytes, int nthreads) {
    (void)ws; (void)ws_bytes; (void)nthreads;
    if (M < 0 || N < 0 || K < 0 || !A || !B || !C) return ET_ERR_ARG;
    et_f32_gemm__ref(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return ET_OK;
}
