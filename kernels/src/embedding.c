/* edgetrain — embedding lookup (PyTorch nn.Embedding) and its gradient, a scatter-add.
 *
 * Indices are validated before anything is written (ET_ERR_LABEL when one is outside [0, v)).
 * The backward splits the embedding COLUMNS across threads; every thread walks all indices in
 * order, so each gradient element is summed in index order whatever the thread count: the
 * result is bitwise identical for every thread count.
 */
#include <string.h>

#include "misc_internal.h"

#define EMB_GRAIN 16384 /* output elements per chunk before the lookup splits */
#define EMB_COL_GRAIN 64 /* columns per thread before the scatter-add splits */

static int indices_ok(int64_t n, int64_t v, const int32_t *idx) {
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || (int64_t)idx[i] >= v) return 0;
    return 1;
}

typedef struct emb_job {
    int64_t n, d;
    const int32_t *idx;
    const float *weight; /* forward */
    float *y;
    const float *dy;     /* backward */
    int64_t padding_idx;
    float *dw;
} emb_job;

static void emb_fwd_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const emb_job *k = (const emb_job *)ctx;
    (void)tid;
    for (int64_t i = beg; i < end; i++)
        memcpy(k->y + i * k->d, k->weight + (int64_t)k->idx[i] * k->d, (size_t)k->d * sizeof(float));
}

/* Columns [c0, c1) of dw, all indices in order. */
static void emb_bwd_cols(void *ctx, int64_t c0, int64_t c1, int tid) {
    const emb_job *k = (const emb_job *)ctx;
    (void)tid;
    for (int64_t i = 0; i < k->n; i++) {
        if ((int64_t)k->idx[i] == k->padding_idx) continue;
        const float *ET_RESTRICT g = k->dy + i * k->d;
        float *ET_RESTRICT w = k->dw + (int64_t)k->idx[i] * k->d;
        for (int64_t j = c0; j < c1; j++) w[j] += g[j];
    }
}

/* y[i, :] = weight[idx[i], :], weight [v, d], y [n, d] */
et_status et_f32_embedding_fwd__ref(int64_t n, int64_t v, int64_t d, const float *weight, const int32_t *idx,
                                    float *y, int nthreads) {
    if (n < 0 || v < 0 || d < 0 || (n * d > 0 && (!weight || !idx || !y))) return ET_ERR_ARG;
    if (n > 0 && !idx) return ET_ERR_ARG;
    if (!indices_ok(n, v, idx)) return ET_ERR_LABEL;
    if (d == 0) return ET_OK;
    emb_job k = {n, d, idx, weight, y, NULL, -1, NULL};
    et_parallel_ranges(n, et_misc_nchunks(n * d, nthreads, EMB_GRAIN), nthreads, emb_fwd_rows, &k);
    return ET_OK;
}

/* dw = 0; dw[idx[i], :] += dy[i, :] for i in order, except rows idx[i] == padding_idx
 * (padding_idx < 0: none). */
et_status et_f32_embedding_bwd__ref(int64_t n, int64_t v, int64_t d, const int32_t *idx, const float *dy,
                                    int64_t padding_idx, float *dw, int nthreads) {
    if (n < 0 || v < 0 || d < 0 || (v * d > 0 && !dw) || (n * d > 0 && !dy) || (n > 0 && !idx)) return ET_ERR_ARG;
    if (!indices_ok(n, v, idx)) return ET_ERR_LABEL;
    if (v * d > 0) memset(dw, 0, (size_t)(v * d) * sizeof(float));
    emb_job k = {n, d, idx, NULL, NULL, dy, padding_idx, dw};
    et_parallel_ranges(d, et_misc_nchunks(d, nthreads, EMB_COL_GRAIN), nthreads, emb_bwd_cols, &k);
    return ET_OK;
}
