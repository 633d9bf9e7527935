/* edgetrain — losses, forward (scalar mean) and backward (gradient of the first input).
 *
 * Forward sums are taken in double over a FIXED partition of the rows / elements into at most
 * ET_MISC_NPART parts (independent of the thread count), combined in order: the loss value is
 * bitwise identical for every thread count. Labels are validated before anything is written.
 * Reductions follow PyTorch: reduction='mean' (KL: 'batchmean'); an empty batch gives NaN.
 */
#include <math.h>

#include "misc_internal.h"

#define LOSS_PART_MIN 256 /* rows / elements per part before splitting pays */

typedef double (*part_fn)(int64_t beg, int64_t end, const void *ctx);

typedef struct part_job {
    int64_t total;
    int np;
    part_fn fn;
    const void *ctx;
    double *part;
} part_job;

static void part_chunk(void *vctx, int64_t ip, int tid) {
    const part_job *j = (const part_job *)vctx;
    int64_t beg, end;
    (void)tid;
    et_thread_range(j->total, (int)ip, j->np, &beg, &end);
    j->part[ip] = j->fn(beg, end, j->ctx);
}

/* Sum of fn over [0, total) split into a fixed number of parts. */
static double fixed_partition_sum(int64_t total, part_fn fn, const void *ctx, int nthreads) {
    double part[ET_MISC_NPART];
    int64_t np64 = total / LOSS_PART_MIN;
    const int np = np64 < 1 ? 1 : (np64 > ET_MISC_NPART ? ET_MISC_NPART : (int)np64);
    part_job j = {total, np, fn, ctx, part};
    et_parallel_for(np, nthreads, part_chunk, &j);
    double s = 0.0;
    for (int ip = 0; ip < np; ip++) s += part[ip];
    return s;
}

/* Rows [0, n) of a backward on the thread pool (fixed chunks: any thread count, same bits). */
static et_status run_rows(int64_t n, et_range_body fn, void *ctx, int nthreads) {
    et_parallel_ranges(n, et_split_chunks(n, nthreads), nthreads, fn, ctx);
    return ET_OK;
}

/* Elements [0, n) of an elementwise backward, in chunks of at least 16384 elements. */
static et_status run_elems(int64_t n, et_range_body fn, void *ctx, int nthreads) {
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, 16384), nthreads, fn, ctx);
    return ET_OK;
}

static int labels_ok(int64_t n, int64_t c, const int32_t *labels) {
    for (int64_t r = 0; r < n; r++)
        if (labels[r] < 0 || (int64_t)labels[r] >= c) return 0;
    return 1;
}

/* Row losses (softmax cross-entropy with labels or probability targets, hinge): the loss is
 * the mean over the rows of a term per row, summed in fixed partitions. */
typedef struct row_ctx row_ctx;
typedef double (*row_term_fn)(const row_ctx *k, int64_t r);
struct row_ctx {
    row_term_fn term;
    int64_t c;
    const float *x, *target; /* logits / input [n, c]; probability targets [n, c] */
    const int32_t *labels;
    float *probs;            /* softmax output, or NULL */
    float margin;            /* hinge */
};

static double rows_part(int64_t beg, int64_t end, const void *vctx) {
    const row_ctx *k = (const row_ctx *)vctx;
    double s = 0.0;
    for (int64_t r = beg; r < end; r++) s += k->term(k, r);
    return s;
}

static et_status rows_mean(int64_t n, const row_ctx *k, float *loss, int nthreads) {
    loss[0] = (float)(fixed_partition_sum(n, rows_part, k, nthreads) / (double)n);
    return ET_OK;
}

/* log-sum-exp of row r of the logits (writing its softmax to probs when given). */
static double row_lse(const row_ctx *k, int64_t r) {
    return et_misc_softmax_row(k->c, k->x + r * k->c, k->probs ? k->probs + r * k->c : NULL, 0);
}

/* ---- softmax cross-entropy, integer labels -------------------------------------------- */
static double xent_term(const row_ctx *k, int64_t r) {
    const double lse = row_lse(k, r); /* before x is read: probs may be the logits' buffer */
    return lse - (double)k->x[r * k->c + k->labels[r]];
}

et_status et_f32_softmax_xent_fwd(int64_t n, int64_t c, const float *logits,
                                  const int32_t *labels, float *loss, float *probs,
                                  int nthreads) {
    if (n < 0 || c < 0 || !loss) return ET_ERR_ARG;
    if (n > 0 && (!logits || !labels)) return ET_ERR_ARG;
    if (!labels_ok(n, c, labels)) return ET_ERR_LABEL;
    const row_ctx k = {xent_term, c, logits, NULL, labels, probs, 0.0f};
    return rows_mean(n, &k, loss, nthreads);
}

typedef struct xent_bwd_job {
    int64_t c;
    const float *probs, *target;
    const int32_t *labels;
    float *dlogits;
    float f; /* dloss / n */
} xent_bwd_job;

/* dlogits row r: (probs - onehot(label)) * f, or with probability targets
 * (probs * sum_j t_j - t) * f. */
static void xent_bwd_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const xent_bwd_job *j = (const xent_bwd_job *)ctx;
    const int64_t c = j->c;
    const float f = j->f;
    (void)tid;
    for (int64_t r = beg; r < end; r++) {
        const float *ET_RESTRICT p = j->probs + r * c;
        float *ET_RESTRICT d = j->dlogits + r * c;
        if (j->target) {
            const float *ET_RESTRICT t = j->target + r * c;
            const float ts = (float)et_misc_sum_f64(t, c);
            for (int64_t i = 0; i < c; i++) d[i] = (p[i] * ts - t[i]) * f;
            continue;
        }
        const int32_t l = j->labels[r];
        for (int64_t i = 0; i < c; i++) d[i] = p[i] * f;
        d[l] = (p[l] - 1.0f) * f;
    }
}

et_status et_f32_softmax_xent_bwd(int64_t n, int64_t c, const float *probs, const int32_t *labels,
                                  const float *dloss, float *dlogits, int nthreads) {
    if (n < 0 || c < 0 || !dloss) return ET_ERR_ARG;
    if (n * c > 0 && (!probs || !labels || !dlogits)) return ET_ERR_ARG;
    if (n > 0 && !labels) return ET_ERR_ARG;
    if (!labels_ok(n, c, labels)) return ET_ERR_LABEL;
    xent_bwd_job j = {c, probs, NULL, labels, dlogits, (float)((double)dloss[0] / (double)n)};
    return run_rows(n, xent_bwd_rows, &j, nthreads);
}

/* ---- softmax cross-entropy, probability targets ---------------------------------------- */
/* -sum_i t_i (x_i - lse) */
static double xent_prob_term(const row_ctx *k, int64_t r) {
    const float *x = k->x + r * k->c, *t = k->target + r * k->c;
    const double lse = row_lse(k, r);
    double row = 0.0;
    for (int64_t i = 0; i < k->c; i++) row += (double)t[i] * ((double)x[i] - lse);
    return -row; /* s + -row: the bits of s - row */
}

et_status et_f32_softmax_xent_prob_fwd(int64_t n, int64_t c, const float *logits,
                                       const float *target, float *loss, float *probs,
                                       int nthreads) {
    if (n < 0 || c < 0 || !loss) return ET_ERR_ARG;
    if (n * c > 0 && (!logits || !target)) return ET_ERR_ARG;
    const row_ctx k = {xent_prob_term, c, logits, target, NULL, probs, 0.0f};
    return rows_mean(n, &k, loss, nthreads);
}

/* dlogits = (probs * sum_j t_j - t) * dloss / n */
et_status et_f32_softmax_xent_prob_bwd(int64_t n, int64_t c, const float *probs,
                                       const float *target, const float *dloss, float *dlogits,
                                       int nthreads) {
    if (n < 0 || c < 0 || !dloss) return ET_ERR_ARG;
    if (n * c == 0) return ET_OK;
    if (!probs || !target || !dlogits) return ET_ERR_ARG;
    xent_bwd_job j = {c, probs, target, NULL, dlogits, (float)((double)dloss[0] / (double)n)};
    return run_rows(n, xent_bwd_rows, &j, nthreads);
}

/* ---- elementwise regression losses ----------------------------------------------------- */
typedef struct pair_ctx {
    const float *a, *b;
    int64_t cols;
} pair_ctx;

static double mse_part(int64_t beg, int64_t end, const void *vctx) {
    const pair_ctx *k = (const pair_ctx *)vctx;
    double s = 0.0;
    for (int64_t i = beg; i < end; i++) {
        double d = (double)k->a[i] - (double)k->b[i];
        s += d * d;
    }
    return s;
}

static double l1_part(int64_t beg, int64_t end, const void *vctx) {
    const pair_ctx *k = (const pair_ctx *)vctx;
    double s = 0.0;
    for (int64_t i = beg; i < end; i++) s += fabs((double)k->a[i] - (double)k->b[i]);
    return s;
}

/* loss[0] = the mean over n of part(pred[i], target[i]), summed in fixed partitions. */
static et_status pair_mean(int64_t n, const float *pred, const float *target, float *loss,
                           part_fn part, int nthreads) {
    if (n < 0 || !loss || (n > 0 && (!pred || !target))) return ET_ERR_ARG;
    pair_ctx k = {pred, target, 0};
    loss[0] = (float)(fixed_partition_sum(n, part, &k, nthreads) / (double)n);
    return ET_OK;
}

et_status et_f32_mse_fwd(int64_t n, const float *pred, const float *target, float *loss,
                         int nthreads) {
    return pair_mean(n, pred, target, loss, mse_part, nthreads);
}

/* dpred[i] = f * (pred[i] - target[i]) (mse) or f * sign(pred[i] - target[i]) (l1), with
 * f = scale * dloss[0] / n, in fixed chunks. */
typedef struct pair_bwd_job {
    const float *pred, *target;
    float *dpred;
    float f;
    int sign; /* 2: dpred = f * target (kldiv) */
} pair_bwd_job;

static void pair_bwd_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const pair_bwd_job *j = (const pair_bwd_job *)ctx;
    const float f = j->f;
    const float *ET_RESTRICT t = j->target + beg;
    float *ET_RESTRICT d = j->dpred + beg;
    (void)tid;
    if (j->sign == 2) {
        for (int64_t i = 0; i < end - beg; i++) d[i] = t[i] * f;
        return;
    }
    const float *ET_RESTRICT p = j->pred + beg;
    if (!j->sign) {
        for (int64_t i = 0; i < end - beg; i++) d[i] = f * (p[i] - t[i]);
        return;
    }
    for (int64_t i = 0; i < end - beg; i++) {
        float diff = p[i] - t[i];
        float sg = diff > 0.0f ? 1.0f : (diff < 0.0f ? -1.0f : 0.0f);
        d[i] = sg * f;
    }
}

static et_status pair_bwd(int64_t n, const float *pred, const float *target, const float *dloss,
                          float *dpred, double scale, int sign, int nthreads) {
    if (n < 0 || !dloss || (n > 0 && (!pred || !target || !dpred))) return ET_ERR_ARG;
    pair_bwd_job j = {pred, target, dpred, (float)(scale * (double)dloss[0] / (double)n), sign};
    return run_elems(n, pair_bwd_range, &j, nthreads);
}

et_status et_f32_mse_bwd(int64_t n, const float *pred, const float *target, const float *dloss,
                         float *dpred, int nthreads) {
    return pair_bwd(n, pred, target, dloss, dpred, 2.0, 0, nthreads);
}

et_status et_f32_l1_fwd(int64_t n, const float *pred, const float *target, float *loss,
                        int nthreads) {
    return pair_mean(n, pred, target, loss, l1_part, nthreads);
}

et_status et_f32_l1_bwd(int64_t n, const float *pred, const float *target, const float *dloss,
                        float *dpred, int nthreads) {
    return pair_bwd(n, pred, target, dloss, dpred, 1.0, 1, nthreads);
}

/* ---- multi-class hinge (MultiMarginLoss, p = 1) ---------------------------------------- */
static double hinge_term(const row_ctx *k, int64_t r) {
    const float *x = k->x + r * k->c;
    const int32_t y = k->labels[r];
    double row = 0.0;
    for (int64_t i = 0; i < k->c; i++) {
        if (i == y) continue;
        double z = (double)k->margin - (double)x[y] + (double)x[i];
        if (z > 0.0) row += z;
    }
    return row / (double)k->c;
}

et_status et_f32_hinge_fwd(int64_t n, int64_t c, const float *x, const int32_t *labels,
                           float margin, float *loss, int nthreads) {
    if (n < 0 || c < 0 || !loss || (n > 0 && (!x || !labels))) return ET_ERR_ARG;
    if (!labels_ok(n, c, labels)) return ET_ERR_LABEL;
    const row_ctx k = {hinge_term, c, x, NULL, labels, NULL, margin};
    return rows_mean(n, &k, loss, nthreads);
}

typedef struct hinge_bwd_job {
    row_ctx k;
    float *dx;
    float g; /* dloss / (n c) */
} hinge_bwd_job;

static void hinge_bwd_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const hinge_bwd_job *j = (const hinge_bwd_job *)ctx;
    const int64_t c = j->k.c;
    const float g = j->g;
    (void)tid;
    for (int64_t r = beg; r < end; r++) {
        const float *xr = j->k.x + r * c;
        float *d = j->dx + r * c;
        const int32_t y = j->k.labels[r];
        int64_t active = 0;
        for (int64_t i = 0; i < c; i++) {
            double z = (double)j->k.margin - (double)xr[y] + (double)xr[i];
            int on = i != y && z > 0.0;
            active += on;
            d[i] = on ? g : 0.0f;
        }
        d[y] = -(float)active * g;
    }
}

et_status et_f32_hinge_bwd(int64_t n, int64_t c, const float *x, const int32_t *labels,
                           float margin, const float *dloss, float *dx, int nthreads) {
    if (n < 0 || c < 0 || !dloss || (n > 0 && (!x || !labels || !dx))) return ET_ERR_ARG;
    if (!labels_ok(n, c, labels)) return ET_ERR_LABEL;
    hinge_bwd_job j = {{hinge_term, c, x, NULL, labels, NULL, margin}, dx, (float)((double)dloss[0] / ((double)n * (double)c))};
    return run_rows(n, hinge_bwd_rows, &j, nthreads);
}

/* ---- KL divergence ('batchmean'), input = log-probabilities ----------------------------- */
static double kldiv_part(int64_t beg, int64_t end, const void *vctx) {
    const pair_ctx *k = (const pair_ctx *)vctx;
    double s = 0.0;
    for (int64_t i = beg; i < end; i++) {
        double t = (double)k->b[i];
        if (t != 0.0) s += t * (log(t) - (double)k->a[i]);
    }
    return s;
}

et_status et_f32_kldiv_fwd(int64_t rows, int64_t cols, const float *input, const float *target,
                           float *loss, int nthreads) {
    if (rows < 0 || cols < 0 || !loss || (rows * cols > 0 && (!input || !target)))
        return ET_ERR_ARG;
    pair_ctx k = {input, target, cols};
    loss[0] = (float)(fixed_partition_sum(rows * cols, kldiv_part, &k, nthreads) / (double)rows);
    return ET_OK;
}

et_status et_f32_kldiv_bwd(int64_t rows, int64_t cols, const float *target, const float *dloss,
                           float *dinput, int nthreads) {
    if (rows < 0 || cols < 0 || !dloss || (rows * cols > 0 && (!target || !dinput)))
        return ET_ERR_ARG;
    const int64_t n = rows * cols;
    pair_bwd_job j = {NULL, target, dinput, (float)(-(double)dloss[0] / (double)rows), 2};
    return run_elems(n, pair_bwd_range, &j, nthreads);
}
