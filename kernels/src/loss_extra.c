/* edgetrain — more losses (PyTorch formulas): elementwise BCE, BCE with logits and Huber /
 * SmoothL1 (no reduction: the caller reduces with the reduce op, so 'none', 'sum' and 'mean'
 * all come from one kernel), and NLL with class weights, ignore_index and label smoothing,
 * reduced here ('mean' divides by the summed weights of the counted targets, as PyTorch).
 *
 * Every element is computed in double from float inputs and rounded once: results do not
 * depend on the thread split. The NLL sums use a fixed partition of the rows (at most
 * ET_MISC_NPART parts, independent of the thread count) combined in order, so they are bitwise
 * identical for every thread count. Targets are validated before anything is written.
 */
#include <math.h>

#include "misc_internal.h"

#define ELEM_GRAIN 16384 /* elements per chunk before an elementwise loop splits */
#define NLL_PART_MIN 256 /* rows per part before the NLL sums split */

/* ---- binary cross-entropy on probabilities ---------------------------------------------- */
/* PyTorch clamps both logs at -100 so that x = 0 or 1 gives a finite loss. */
static double log_clamped(double v) {
    double l = log(v);
    return l < -100.0 ? -100.0 : l;
}

/* Elementwise jobs: every element computed on its own (any split gives the same bits). */
typedef struct ew_job {
    const float *x, *y, *lw, *dl;
    float *out;
    double dt, sc; /* Huber: delta, scale */
} ew_job;

static void bce_fwd_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    const float *x = k->x, *y = k->y;
    float *out = k->out;
    (void)tid;
    for (int64_t i = beg; i < end; i++) {
        const double p = x[i], t = y[i];
        out[i] = (float)((t - 1.0) * log_clamped(1.0 - p) - t * log_clamped(p));
    }
}

static void bce_bwd_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    const float *x = k->x, *y = k->y;
    const float *dl = k->dl;
    float *out = k->out;
    (void)tid;
    for (int64_t i = beg; i < end; i++) {
        const double p = x[i];
        double den = p * (1.0 - p);
        if (den < 1e-12) den = 1e-12;
        out[i] = (float)((double)dl[i] * (p - (double)y[i]) / den);
    }
}

static void bce_logits_fwd_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    const float *x = k->x, *y = k->y;
    const float *lw = k->lw;
    float *out = k->out;
    (void)tid;
    for (int64_t i = beg; i < end; i++) {
        const double v = x[i], t = y[i], w = lw ? (double)lw[i] : 1.0;
        const double sp = log1p(exp(-fabs(v))) + (v < 0.0 ? -v : 0.0); /* softplus(-x) */
        out[i] = (float)((1.0 - t) * v + w * sp);
    }
}

static void bce_logits_bwd_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    const float *x = k->x, *y = k->y;
    const float *lw = k->lw;
    const float *dl = k->dl;
    float *out = k->out;
    (void)tid;
    for (int64_t i = beg; i < end; i++) {
        const double v = x[i], t = y[i], w = lw ? (double)lw[i] : 1.0;
        const double e = exp(-fabs(v));
        const double sig = v >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        out[i] = (float)((double)dl[i] * (w * (sig - 1.0) + 1.0 - t));
    }
}

static void huber_fwd_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    const float *x = k->x, *y = k->y;
    float *out = k->out;
    const double dt = k->dt, sc = k->sc;
    (void)tid;
    for (int64_t i = beg; i < end; i++) {
        const double a = fabs((double)x[i] - (double)y[i]);
        out[i] = (float)(sc * (a < dt ? 0.5 * a * a : dt * (a - 0.5 * dt)));
    }
}

static void huber_bwd_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    const float *x = k->x, *y = k->y;
    const float *dl = k->dl;
    float *out = k->out;
    const double dt = k->dt, sc = k->sc;
    (void)tid;
    for (int64_t i = beg; i < end; i++) {
        double d = (double)x[i] - (double)y[i];
        d = d < -dt ? -dt : (d > dt ? dt : d);
        out[i] = (float)((double)dl[i] * sc * d);
    }
}

/* Elements [0, n) of one elementwise kernel fn, in chunks of at least ELEM_GRAIN. */
static et_status run_ew(et_range_body fn, int64_t n, const float *x, const float *y,
                        const float *lw, const float *dl, float *out, double dt, double sc,
                        int nthreads) {
    ew_job k = {x, y, lw, dl, out, dt, sc};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, ELEM_GRAIN), nthreads, fn, &k);
    return ET_OK;
}

et_status et_f32_bce_fwd__ref(int64_t n, const float *x, const float *y, float *loss, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !loss))) return ET_ERR_ARG;
    return run_ew(bce_fwd_range, n, x, y, NULL, NULL, loss, 0.0, 0.0, nthreads);
}

/* dx = dl * (x - y) / max(x (1 - x), 1e-12) */
et_status et_f32_bce_bwd__ref(int64_t n, const float *x, const float *y, const float *dl, float *dx,
                              int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !dl || !dx))) return ET_ERR_ARG;
    return run_ew(bce_bwd_range, n, x, y, NULL, dl, dx, 0.0, 0.0, nthreads);
}

/* ---- binary cross-entropy on logits ------------------------------------------------------ */
/* l = (1 - y) x + lw (log(1 + exp(-|x|)) + max(-x, 0)), lw = 1 + (pos_weight - 1) y (1 when
 * lw is NULL): never exponentiates a positive number. */
et_status et_f32_bce_logits_fwd__ref(int64_t n, const float *x, const float *y, const float *lw,
                                     float *loss, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !loss))) return ET_ERR_ARG;
    return run_ew(bce_logits_fwd_range, n, x, y, lw, NULL, loss, 0.0, 0.0, nthreads);
}

/* dx = dl * (lw sigmoid(x) + 1 - lw - y)  (= (sigmoid(x) - y) dl when lw = 1) */
et_status et_f32_bce_logits_bwd__ref(int64_t n, const float *x, const float *y, const float *lw,
                                     const float *dl, float *dx, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !dl || !dx))) return ET_ERR_ARG;
    return run_ew(bce_logits_bwd_range, n, x, y, lw, dl, dx, 0.0, 0.0, nthreads);
}

/* ---- Huber / SmoothL1 --------------------------------------------------------------------- */
/* l = scale * (|d| < delta ? d^2 / 2 : delta (|d| - delta / 2)), d = x - y.
 * HuberLoss(delta): scale 1; SmoothL1Loss(beta): delta = beta, scale = 1 / beta. */
et_status et_f32_huber_fwd__ref(int64_t n, const float *x, const float *y, float delta, float scale,
                                float *loss, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !loss))) return ET_ERR_ARG;
    return run_ew(huber_fwd_range, n, x, y, NULL, NULL, loss, delta, scale, nthreads);
}

/* dx = dl * scale * clamp(d, -delta, delta) (at |d| = delta both sides agree) */
et_status et_f32_huber_bwd__ref(int64_t n, const float *x, const float *y, float delta, float scale,
                                const float *dl, float *dx, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !dl || !dx))) return ET_ERR_ARG;
    return run_ew(huber_bwd_range, n, x, y, NULL, dl, dx, delta, scale, nthreads);
}

/* ---- negative log-likelihood (+ label smoothing) ------------------------------------------ */
/* x[n, c, s] (s: the trailing dims, 1 for [N, C]), target[n, s]. Per counted target t:
 *   l = (1 - eps) w[t] (-x[n,t,s]) + eps / c * sum_k w[k] (-x[n,k,s]);  ignored: l = 0, weight 0.
 * 'mean' divides the sum by sum of w[t] over the counted targets. */
static int targets_ok(int64_t m, int64_t c, const int32_t *t, int64_t ignore) {
    for (int64_t i = 0; i < m; i++)
        if ((int64_t)t[i] != ignore && (t[i] < 0 || (int64_t)t[i] >= c)) return 0;
    return 1;
}

typedef struct nll_ctx {
    int64_t c, s;
    const float *x, *w;
    const int32_t *t;
    int64_t ignore;
    double eps;
    float *lnone; /* per-target losses ('none'), or NULL */
    double *lsum, *wsum; /* one partial per part */
} nll_ctx;

static double weight_of(const float *w, int64_t k) { return w ? (double)w[k] : 1.0; }

static double nll_one(const nll_ctx *k, int64_t n, int64_t s, int64_t t) {
    const float *xr = k->x + n * k->c * k->s + s;
    double l = (1.0 - k->eps) * weight_of(k->w, t) * -(double)xr[t * k->s];
    if (k->eps != 0.0) {
        double sm = 0.0;
        for (int64_t j = 0; j < k->c; j++) sm += weight_of(k->w, j) * -(double)xr[j * k->s];
        l += k->eps / (double)k->c * sm;
    }
    return l;
}

/* Rows [beg, end): losses and their weights, summed in index order. */
static void nll_rows(const nll_ctx *k, int64_t beg, int64_t end, double *lsum, double *wsum) {
    double ls = 0.0, ws = 0.0;
    for (int64_t n = beg; n < end; n++)
        for (int64_t s = 0; s < k->s; s++) {
            const int64_t t = k->t[n * k->s + s];
            double l = 0.0;
            if (t != k->ignore) {
                l = nll_one(k, n, s, t);
                ws += weight_of(k->w, t);
            }
            if (k->lnone) k->lnone[n * k->s + s] = (float)l;
            ls += l;
        }
    *lsum = ls;
    *wsum = ws;
}

static int nll_parts(int64_t rows) {
    int64_t np = rows / NLL_PART_MIN;
    return np < 1 ? 1 : (np > ET_MISC_NPART ? ET_MISC_NPART : (int)np);
}

/* Sums of the losses and of the weights over all rows (fixed partition, combined in order). */
typedef struct nll_sums_job {
    const nll_ctx *k;
    int64_t rows;
    int np;
    double *lp, *wp;
} nll_sums_job;

static void nll_part(void *ctx, int64_t ip, int tid) {
    const nll_sums_job *j = (const nll_sums_job *)ctx;
    int64_t beg, end;
    (void)tid;
    et_thread_range(j->rows, (int)ip, j->np, &beg, &end);
    nll_rows(j->k, beg, end, &j->lp[ip], &j->wp[ip]);
}

static void nll_sums(const nll_ctx *k, int64_t rows, double *lsum, double *wsum, int nthreads) {
    double lp[ET_MISC_NPART], wp[ET_MISC_NPART];
    const int np = nll_parts(rows);
    nll_sums_job j = {k, rows, np, lp, wp};
    et_parallel_for(np, nthreads, nll_part, &j);
    *lsum = *wsum = 0.0;
    for (int ip = 0; ip < np; ip++) {
        *lsum += lp[ip];
        *wsum += wp[ip];
    }
}

static et_status nll_args(int64_t n, int64_t c, int64_t s, const float *x, const int32_t *t, int reduction,
                          float eps) {
    if (n < 0 || c < 1 || s < 0 || reduction < 0 || reduction > 2 || !(eps >= 0.0f && eps <= 1.0f))
        return ET_ERR_ARG;
    if (n * s > 0 && (!x || !t)) return ET_ERR_ARG;
    return ET_OK;
}

et_status et_f32_nll_fwd__ref(int64_t n, int64_t c, int64_t s, const float *x, const int32_t *target,
                              const float *weight, int64_t ignore_index, int reduction, float eps, float *loss,
                              int nthreads) {
    et_status st = nll_args(n, c, s, x, target, reduction, eps);
    if (st != ET_OK || !loss) return st != ET_OK ? st : ET_ERR_ARG;
    if (!targets_ok(n * s, c, target, ignore_index)) return ET_ERR_LABEL;
    nll_ctx k = {c, s, x, weight, target, ignore_index, (double)eps,
                 reduction == ET_REDUCTION_NONE ? loss : NULL, NULL, NULL};
    double ls, ws;
    nll_sums(&k, n, &ls, &ws, nthreads);
    if (reduction == ET_REDUCTION_SUM) loss[0] = (float)ls;
    if (reduction == ET_REDUCTION_MEAN) loss[0] = (float)(ls / ws);
    return ET_OK;
}

typedef struct nll_bwd_job {
    int64_t c, s;
    const int32_t *target;
    const float *weight;
    int64_t ignore_index;
    int reduction;
    double eps, g0;
    const float *dl;
    float *dx;
} nll_bwd_job;

static void nll_bwd_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const nll_bwd_job *k = (const nll_bwd_job *)ctx;
    const int64_t c = k->c, s = k->s;
    const double e = k->eps, ec = k->eps / (double)c;
    (void)tid;
    for (int64_t r = beg; r < end; r++) {
        float *d = k->dx + r * c * s;
        for (int64_t si = 0; si < s; si++) {
            const int64_t t = k->target[r * s + si];
            const double g = k->reduction == ET_REDUCTION_NONE ? (double)k->dl[r * s + si] : k->g0;
            const int on = t != k->ignore_index;
            for (int64_t j = 0; j < c; j++) {
                double v = on ? -g * ec * weight_of(k->weight, j) : 0.0;
                if (on && j == t) v -= g * (1.0 - e) * weight_of(k->weight, t);
                d[j * s + si] = (float)v;
            }
        }
    }
}

/* dx[n,k,s] = -g (eps / c w[k] + (1 - eps) w[t] [k == t]); g = dl[n,s] ('none'), dl ('sum'),
 * dl / sum of counted weights ('mean'); 0 for ignored targets. */
et_status et_f32_nll_bwd__ref(int64_t n, int64_t c, int64_t s, const int32_t *target, const float *weight,
                              int64_t ignore_index, int reduction, float eps, const float *dl, float *dx,
                              int nthreads) {
    et_status st = nll_args(n, c, s, dx, target, reduction, eps);
    if (st != ET_OK || !dl) return st != ET_OK ? st : ET_ERR_ARG;
    if (!targets_ok(n * s, c, target, ignore_index)) return ET_ERR_LABEL;
    double g0 = reduction == ET_REDUCTION_NONE ? 0.0 : (double)dl[0];
    if (reduction == ET_REDUCTION_MEAN) {
        double ws = 0.0; /* in target order, as the forward's rows within one part */
        for (int64_t i = 0; i < n * s; i++)
            if ((int64_t)target[i] != ignore_index) ws += weight_of(weight, target[i]);
        g0 /= ws;
    }
    nll_bwd_job k = {c, s, target, weight, ignore_index, reduction, eps, g0, dl, dx};
    et_parallel_ranges(n, et_split_chunks(n, nthreads), nthreads, nll_bwd_rows, &k);
    return ET_OK;
}
