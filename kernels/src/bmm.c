/* edgetrain — batched matrix product with broadcast batch dims (attention scores, torch.matmul
 * on 3-D / 4-D tensors): y[b..., M, N] = op(a[b..., ...]) op(b[b..., ...]), op = transpose when
 * the flag is set (a stored [.., K, M], b stored [.., N, K]). Batch dims are right-aligned and
 * each is equal to y's or 1 (broadcast). Every batch is one et_f32_gemm call (its variants and
 * its fixed K split), taken in batch order, so results do not depend on the thread count.
 */
#include "misc_internal.h"

et_status et_f32_bmm(int trans_a, int trans_b, int nb, const int64_t *y_batch,
                     const int64_t *a_batch, const int64_t *b_batch, int64_t M, int64_t N, int64_t K,
                     const float *a, const float *b, float *y, void *ws, size_t ws_bytes, int nthreads) {
    if (nb < 0 || nb > ET_MAX_DIMS || M < 0 || N < 0 || K < 0) return ET_ERR_ARG;
    int64_t sa[ET_MAX_DIMS], sb[ET_MAX_DIMS], total = 1, ra = M * K, rb = K * N;
    for (int d = nb - 1; d >= 0; d--) {
        if ((a_batch[d] != y_batch[d] && a_batch[d] != 1) || (b_batch[d] != y_batch[d] && b_batch[d] != 1))
            return ET_ERR_SHAPE;
        sa[d] = a_batch[d] == 1 ? 0 : ra;
        sb[d] = b_batch[d] == 1 ? 0 : rb;
        ra *= a_batch[d];
        rb *= b_batch[d];
        total *= y_batch[d];
    }
    if (total == 0 || M == 0 || N == 0) return ET_OK;
    if (!a || !b || !y) return ET_ERR_ARG;
    int64_t idx[ET_MAX_DIMS] = {0}, oa = 0, ob = 0;
    for (int64_t t = 0; t < total; t++) {
        et_status st = et_f32_gemm(trans_a, trans_b, M, N, K, 1.0f, a + oa, trans_a ? M : K, b + ob,
                                   trans_b ? K : N, 0.0f, y + t * M * N, N, ws, ws_bytes, nthreads);
        if (st != ET_OK) return st;
        for (int d = nb - 1; d >= 0; d--) { /* odometer over the batch dims */
            oa += sa[d];
            ob += sb[d];
            if (++idx[d] < y_batch[d]) break;
            oa -= sa[d] * y_batch[d];
            ob -= sb[d] * y_batch[d];
            idx[d] = 0;
        }
    }
    return ET_OK;
}
