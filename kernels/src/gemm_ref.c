/* edgetrain — scalar GEMM: the reference (the test oracle; never deleted) and the portable
 * packed config the ref ISA runs. */
#include <math.h>

#include "gemm_internal.h"

void et_f32_gemm__ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                acc += (double)a * (double)b;
            }
            float r = alpha * (float)acc;
            C[i * ldc + j] = beta == 0.0f ? r : r + beta * C[i * ldc + j];
        }
    }
}

#define MR 4
#define NR 16

/* The SIMD microkernels' arithmetic one element at a time: a k-ordered fmaf chain from +0,
 * then c = alpha * acc (beta == 0) or fmaf(beta, c, alpha * acc). Only the mr x nr elements
 * that are stored are computed (the panel strides stay MR and ldb). */
static void ukernel_4x16__scalar(int64_t kc, const float *a, const float *b, int64_t ldb,
                                 float *c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                                 float beta) {
    float acc[MR][NR];
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) acc[i][j] = 0.0f;
    for (int64_t k = 0; k < kc; k++) {
        for (int64_t i = 0; i < mr; i++)
            for (int64_t j = 0; j < nr; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        a += MR;
        b += ldb;
    }
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) {
            const float r = alpha * acc[i][j];
            c[i * ldc + j] = beta == 0.0f ? r : fmaf(beta, c[i * ldc + j], r);
        }
}

const et_f32_gemm_config et_f32_gemm_config_scalar = {
    "ref", MR, NR, /* mc */ 64, /* kc */ ET_GEMM_KC, /* nc */ 1024,
    ukernel_4x16__scalar, et_f32_gemm_pack_interleave__scalar, et_f32_gemm_pack_copy__scalar,
    NULL, /* no in-place A kernel */
    NULL, /* no B-through-a-table kernel */
    NULL, /* C^T tiles stored one float at a time */
    NULL, /* the row epilogue after the store */
};
