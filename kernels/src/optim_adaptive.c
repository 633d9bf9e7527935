/* edgetrain — RMSprop and Adagrad updates, following torch.optim's single-tensor path:
 *   RMSprop: g (+ prox) (+ wd * p); sq = sq * alpha + (1 - alpha) * g * g;
 *            centered: ga = lerp(ga, g, 1 - alpha), avg = sqrt(sq - ga * ga) + eps;
 *            else avg = sqrt(sq) + eps;
 *            momentum > 0: buf = buf * momentum + g / avg, p = p - lr * buf;
 *            else p = p - lr * (g / avg).
 *   Adagrad: g (+ prox) (+ wd * p); sum = sum + g * g; p = p - clr * (g / (sqrt(sum) + eps)),
 *            clr = lr / (1 + (step - 1) * lr_decay) (double, as PyTorch computes it in Python).
 * Scalar factors are computed in double by the entry points and passed as floats; the element
 * loops run in float in PyTorch's operation order. Only the scalar __ref loops exist: the
 * updates are a few percent of a step, and sqrtf's errno branch keeps gcc from vectorising the
 * loop (see optim.c). IEEE sqrt, no FP contraction (-std=c99): the same bits on x86 and arm64
 * and for every thread count (the chunks are independent).
 * FedProx, as sgd/adam: g += prox_mu * (p - anchor) first, when an anchor is given.
 */
#include <math.h>

#include "misc_internal.h"

#define OPT_GRAIN 16384

/* torch.lerp(start, end, w) in float, as adam_elem (optim.c). */
static inline float lerp_f(float start, float end, float w) {
    float d = end - start;
    return fabsf(w) < 0.5f ? start + w * d : end - d * (1.0f - w);
}

void et_f32_rmsprop_update__ref(const et_rmsprop_coef *k, int64_t n, float *param, const float *grad,
                                float *square_avg, float *grad_avg, float *buf, const float *anchor) {
    for (int64_t i = 0; i < n; i++) {
        float p = param[i], g = grad[i];
        if (anchor) g = g + k->prox_mu * (p - anchor[i]);
        if (k->weight_decay != 0.0f) g = g + k->weight_decay * p;
        float sq = square_avg[i] * k->alpha + k->one_minus_alpha * g * g;
        square_avg[i] = sq;
        float avg;
        if (grad_avg) {
            float ga = lerp_f(grad_avg[i], g, k->one_minus_alpha);
            grad_avg[i] = ga;
            avg = sqrtf(sq + -1.0f * ga * ga);
        } else {
            avg = sqrtf(sq);
        }
        avg = avg + k->eps;
        if (buf) {
            float b = buf[i] * k->momentum + g / avg;
            buf[i] = b;
            param[i] = p + k->neg_lr * b;
        } else {
            param[i] = p + k->neg_lr * (g / avg);
        }
    }
}

void et_f32_adagrad_update__ref(const et_adagrad_coef *k, int64_t n, float *param, const float *grad,
                                float *sum, const float *anchor) {
    for (int64_t i = 0; i < n; i++) {
        float p = param[i], g = grad[i];
        if (anchor) g = g + k->prox_mu * (p - anchor[i]);
        if (k->weight_decay != 0.0f) g = g + k->weight_decay * p;
        float s = sum[i] + g * g;
        sum[i] = s;
        param[i] = p + k->neg_clr * (g / (sqrtf(s) + k->eps));
    }
}

typedef struct rmsprop_job {
    const et_rmsprop_coef *k;
    float *param, *square_avg, *grad_avg, *buf;
    const float *grad, *anchor;
} rmsprop_job;

static void rmsprop_range(void *ctx, int64_t b, int64_t e, int tid) {
    const rmsprop_job *j = (const rmsprop_job *)ctx;
    (void)tid;
    et_f32_rmsprop_update__ref(j->k, e - b, j->param + b, j->grad + b, j->square_avg + b,
                               j->grad_avg ? j->grad_avg + b : NULL, j->buf ? j->buf + b : NULL,
                               j->anchor ? j->anchor + b : NULL);
}

et_status et_f32_rmsprop_update(int64_t n, float *param, const float *grad, float *square_avg,
                                float *grad_avg, float *momentum_buf, const float *prox_anchor, float lr,
                                float alpha, float eps, float weight_decay, float momentum, int centered,
                                float prox_mu, int nthreads) {
    if (n < 0) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!param || !grad || !square_avg || (centered && !grad_avg) || (momentum > 0.0f && !momentum_buf))
        return ET_ERR_ARG;
    if (prox_mu != 0.0f && !prox_anchor) return ET_ERR_ARG;
    et_rmsprop_coef k;
    k.neg_lr = (float)(-(double)lr);
    k.alpha = alpha;
    k.one_minus_alpha = (float)(1.0 - (double)alpha);
    k.eps = eps;
    k.weight_decay = weight_decay;
    k.momentum = momentum;
    k.prox_mu = prox_mu;
    if (!centered) grad_avg = NULL;
    if (!(momentum > 0.0f)) momentum_buf = NULL;
    if (prox_mu == 0.0f) prox_anchor = NULL;
    rmsprop_job j = {&k, param, square_avg, grad_avg, momentum_buf, grad, prox_anchor};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, OPT_GRAIN), nthreads, rmsprop_range, &j);
    return ET_OK;
}

typedef struct adagrad_job {
    const et_adagrad_coef *k;
    float *param, *sum;
    const float *grad, *anchor;
} adagrad_job;

static void adagrad_range(void *ctx, int64_t b, int64_t e, int tid) {
    const adagrad_job *j = (const adagrad_job *)ctx;
    (void)tid;
    et_f32_adagrad_update__ref(j->k, e - b, j->param + b, j->grad + b, j->sum + b,
                               j->anchor ? j->anchor + b : NULL);
}

et_status et_f32_adagrad_update(int64_t n, float *param, const float *grad, float *sum, const float *prox_anchor,
                                float lr, float lr_decay, float eps, float weight_decay, float prox_mu, int64_t step,
                                int nthreads) {
    if (n < 0 || step < 1) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!param || !grad || !sum) return ET_ERR_ARG;
    if (prox_mu != 0.0f && !prox_anchor) return ET_ERR_ARG;
    et_adagrad_coef k;
    k.neg_clr = (float)(-((double)lr / (1.0 + (double)(step - 1) * (double)lr_decay)));
    k.eps = eps;
    k.weight_decay = weight_decay;
    k.prox_mu = prox_mu;
    if (prox_mu == 0.0f) prox_anchor = NULL;
    adagrad_job j = {&k, param, sum, grad, prox_anchor};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, OPT_GRAIN), nthreads, adagrad_range, &j);
    return ET_OK;
}

/* ---- gradient clipping and accumulation ------------------------------------------------- */
/* Sum of squares in double over a fixed partition (ET_MISC_NPART parts, a function of n only),
 * partials combined in order: the same bits for every thread count. A float's square is exact
 * in double, so only the additions round, in a fixed order. */
typedef struct sumsq_job {
    int64_t n;
    int np;
    const float *x;
    double *part;
} sumsq_job;

/* Part k of the fixed partition [0, n) into np parts (np depends on n only). */
static void sumsq_part(void *ctx, int64_t k, int tid) {
    const sumsq_job *j = (const sumsq_job *)ctx;
    const float *x = j->x;
    int64_t b, e;
    (void)tid;
    et_thread_range(j->n, (int)k, j->np, &b, &e);
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = b;
    for (; i + 8 <= e; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    double tail = 0.0;
    for (; i < e; i++) tail += (double)x[i] * (double)x[i];
    j->part[k] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

double et_f32_sum_squares(int64_t n, const float *x, int nthreads) {
    if (n <= 0 || !x) return 0.0;
    double part[ET_MISC_NPART];
    const int np = n < (int64_t)ET_MISC_NPART * 1024 ? (int)((n + 1023) / 1024) : ET_MISC_NPART;
    const int nch = et_misc_nchunks(n, nthreads, OPT_GRAIN);
    sumsq_job j = {n, np, x, part};
    /* at most nch threads, as before: small tensors stay on the calling thread */
    et_parallel_for(np, nch < nthreads ? nch : nthreads, sumsq_part, &j);
    double total = 0.0;
    for (int k = 0; k < np; k++) total += part[k];
    return total;
}

typedef struct grad_acc_job {
    float *acc;
    const float *grad;
    float scale;
    int first;
} grad_acc_job;

static void grad_acc_range(void *ctx, int64_t b, int64_t e, int tid) {
    const grad_acc_job *j = (const grad_acc_job *)ctx;
    float *acc = j->acc;
    const float *grad = j->grad;
    const float scale = j->scale;
    (void)tid;
    if (j->first)
        for (int64_t i = b; i < e; i++) acc[i] = scale * grad[i];
    else
        for (int64_t i = b; i < e; i++) acc[i] = acc[i] + scale * grad[i];
}

et_status et_f32_grad_accumulate(int64_t n, float *acc, const float *grad, float scale, int first, int nthreads) {
    if (n < 0) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!acc || !grad) return ET_ERR_ARG;
    grad_acc_job j = {acc, grad, scale, first};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, OPT_GRAIN), nthreads, grad_acc_range, &j);
    return ET_OK;
}
