/* edgetrain — batched matrix product with broadcast batch dims (attention scores, torch.matmul
 * on 3-D / 4-D tensors): y[b..., M, N] = op(a[b..., ...]) op(b[b..., ...]), op = transpose when
 * the flag is set (a stored [.., K, M], b stored [.., N, K]). Batch dims are right-aligned and
 * each is equal to y's or 1 (broadcast). Every batch is one et_f32_gemm call (its variants, its
 * fixed K split: the same bits for any thread count). With at least as many batches as threads,
 * the batches are split into nthreads contiguous chunks (one workspace slot each) on the thread
 * pool, each gemm single-threaded (attention
 * has many small matrices); otherwise the batches run in order, each gemm with all threads.
 */
#include "misc_internal.h"

size_t et_f32_bmm_ws_bytes(int64_t batches, int64_t M, int64_t N, int64_t K, int nthreads) {
    if (nthreads > 1 && batches >= nthreads) return (size_t)nthreads * et_f32_gemm_ws_bytes(M, N, K, 1);
    return et_f32_gemm_ws_bytes(M, N, K, nthreads);
}

/* Element offsets of batch t (row-major over y_batch) in a and b. */
static void batch_offsets(int nb, const int64_t *y_batch, const int64_t *sa, const int64_t *sb, int64_t t,
                          int64_t *oa, int64_t *ob) {
    *oa = *ob = 0;
    for (int d = nb - 1; d >= 0; d--) {
        int64_t i = t % y_batch[d];
        t /= y_batch[d];
        *oa += i * sa[d];
        *ob += i * sb[d];
    }
}

typedef struct bmm_job {
    int trans_a, trans_b, nb;
    const int64_t *y_batch, *sa, *sb;
    int64_t total, M, N, K, lda, ldb;
    const float *a, *b;
    float *y;
    char *ws;
    size_t per; /* workspace bytes of one chunk */
    int nch;
    int err;    /* atomic: an et_status of a failed GEMM (all are argument errors) */
} bmm_job;

/* Chunk ch of nch: its batch range, one single-threaded GEMM each, in workspace slot ch. */
static void bmm_chunk(void *ctx, int64_t ch, int tid) {
    bmm_job *j = (bmm_job *)ctx;
    int64_t beg, end, oa, ob;
    (void)tid;
    et_thread_range(j->total, (int)ch, j->nch, &beg, &end);
    for (int64_t t = beg; t < end; t++) {
        batch_offsets(j->nb, j->y_batch, j->sa, j->sb, t, &oa, &ob);
        et_status s = et_f32_gemm(j->trans_a, j->trans_b, j->M, j->N, j->K, 1.0f, j->a + oa, j->lda, j->b + ob,
                                  j->ldb, 0.0f, j->y + t * j->M * j->N, j->N,
                                  j->per ? j->ws + (size_t)ch * j->per : NULL, j->per, 1);
        if (s != ET_OK) __atomic_store_n(&j->err, (int)s, __ATOMIC_RELAXED);
    }
}

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
    if (ws_bytes < et_f32_bmm_ws_bytes(total, M, N, K, nthreads)) return ET_ERR_ARG;
    const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
    if (nthreads > 1 && total >= nthreads) {
        bmm_job j = {trans_a, trans_b, nb, y_batch, sa, sb, total, M, N, K, lda, ldb, a, b, y, (char *)ws,
                     et_f32_gemm_ws_bytes(M, N, K, 1), nthreads, ET_OK};
        et_parallel_for(nthreads, nthreads, bmm_chunk, &j);
        return (et_status)j.err;
    }
    for (int64_t t = 0; t < total; t++) {
        int64_t oa, ob;
        batch_offsets(nb, y_batch, sa, sb, t, &oa, &ob);
        et_status st = et_f32_gemm(trans_a, trans_b, M, N, K, 1.0f, a + oa, lda, b + ob, ldb, 0.0f, y + t * M * N,
                                   N, ws, ws_bytes, nthreads);
        if (st != ET_OK) return st;
    }
    return ET_OK;
}
