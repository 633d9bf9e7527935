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

et_status et_f32_bce_fwd__ref(int64_t n, const float *x, const float *y, float *loss, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !loss))) return ET_ERR_ARG;
    const int nch = et_misc_nchunks(n, nthreads, ELEM_GRAIN);
    ET_PARALLEL_FOR(nch)
    for (int ch = 0; ch < nch; ch++) {
        int64_t beg, end;
        et_thread_range(n, ch, nch, &beg, &end);
        for (int64_t i = beg; i < end; i++) {
            const double p = x[i], t = y[i];
            loss[i] = (float)((t - 1.0) * log_clamped(1.0 - p) - t * log_clamped(p));
        }
    }
    return ET_OK;
}

/* dx = dl * (x - y) / max(x (1 - x), 1e-12) */
et_status et_f32_bce_bwd__ref(int64_t n, const float *x, const float *y, const float *dl, float *dx,
                              int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !dl || !dx))) return ET_ERR_ARG;
    const int nch = et_misc_nchunks(n, nthreads, ELEM_GRAIN);
    ET_PARALLEL_FOR(nch)
    for (int ch = 0; ch < nch; ch++) {
        int64_t beg, end;
        et_thread_range(n, ch, nch, &beg, &end);
        for (int64_t i = beg; i < end; i++) {
            const double p = x[i];
            double den = p * (1.0 - p);
            if (den < 1e-12) den = 1e-12;
            dx[i] = (float)((double)dl[i] * (p - (double)y[i]) / den);
        }
    }
    return ET_OK;
}

/* ---- binary cross-entropy on logits ------------------------------------------------------ */
/* l = (1 - y) x + lw (log(1 + exp(-|x|)) + max(-x, 0)), lw = 1 + (pos_weight - 1) y (1 when
 * lw is NULL): never exponentiates a positive number. */
et_status et_f32_bce_logits_fwd__ref(int64_t n, const float *x, const float *y, const float *lw,
                                     float *loss, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !loss))) return ET_ERR_ARG;
    const int nch = et_misc_nchunks(n, nthreads, ELEM_GRAIN);
    ET_PARALLEL_FOR(nch)
    for (int ch = 0; ch < nch; ch++) {
        int64_t beg, end;
        et_thread_range(n, ch, nch, &beg, &end);
        for (int64_t i = beg; i < end; i++) {
            const double v = x[i], t = y[i], w = lw ? (double)lw[i] : 1.0;
            const double sp = log1p(exp(-fabs(v))) + (v < 0.0 ? -v : 0.0); /* softplus(-x) */
            loss[i] = (float)((1.0 - t) * v + w * sp);
        }
    }
    return ET_OK;
}

/* dx = dl * (lw sigmoid(x) + 1 - lw - y)  (= (sigmoid(x) - y) dl when lw = 1) */
et_status et_f32_bce_logits_bwd__ref(int64_t n, const float *x, const float *y, const float *lw,
                                     const float *dl, float *dx, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !dl || !dx))) return ET_ERR_ARG;
    const int nch = et_misc_nchunks(n, nthreads, ELEM_GRAIN);
    ET_PARALLEL_FOR(nch)
    for (int ch = 0; ch < nch; ch++) {
        int64_t beg, end;
        et_thread_range(n, ch, nch, &beg, &end);
        for (int64_t i = beg; i < end; i++) {
            const double v = x[i], t = y[i], w = lw ? (double)lw[i] : 1.0;
            const double e = exp(-fabs(v));
            const double sig = v >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
            dx[i] = (float)((double)dl[i] * (w * (sig - 1.0) + 1.0 - t));
        }
    }
    return ET_OK;
}

/* ---- Huber / SmoothL1 --------------------------------------------------------------------- */
/* l = scale * (|d| < delta ? d^2 / 2 : delta (|d| - delta / 2)), d = x - y.
 * HuberLoss(delta): scale 1; SmoothL1Loss(beta): delta = beta, scale = 1 / beta. */
et_status et_f32_huber_fwd__ref(int64_t n, const float *x, const float *y, float delta, float scale,
                                float *loss, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !loss))) return ET_ERR_ARG;
    const double dt = delta, sc = scale;
    const int nch = et_misc_nchunks(n, nthreads, ELEM_GRAIN);
    ET_PARALLEL_FOR(nch)
    for (int ch = 0; ch < nch; ch++) {
        int64_t beg, end;
        et_thread_range(n, ch, nch, &beg, &end);
        for (int64_t i = beg; i < end; i++) {
            const double a = fabs((double)x[i] - (double)y[i]);
            loss[i] = (float)(sc * (a < dt ? 0.5 * a * a : dt * (a - 0.5 * dt)));
        }
    }
    return ET_OK;
}

/* dx = dl * scale * clamp(d, -delta, delta) (at |d| = delta both sides agree) */
et_status et_f32_huber_bwd__ref(int64_t n, const float *x, const float *y, float delta, float scale,
                                const float *dl, float *dx, int nthreads) {
    if (n < 0 || (n > 0 && (!x || !y || !dl || !dx))) return ET_ERR_ARG;
    const double dt = delta, sc = scale;
    const int nch = et_misc_nchunks(n, nthreads, ELEM_GRAIN);
    ET_PARALLEL_FOR(nch)
    for (int ch = 0; ch < nch; ch++) {
        int64_t beg, end;
        et_thread_range(n, ch, nch, &beg, &end);
        for (int64_t i = beg; i < end; i++) {
            double d = (double)x[i] - (double)y[i];
            d = d < -dt ? -dt : (d > dt ? dt : d);
            dx[i] = (float)((double)dl[i] * sc * d);
        }
    }
    return ET_OK;
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
static void nll_sums(const nll_ctx *k, int64_t rows, double *lsum, double *wsum, int nthreads) {
    (void)nthreads; /* unused without OpenMP */
    double lp[ET_MISC_NPART], wp[ET_MISC_NPART];
    const int np = nll_parts(rows);
    ET_PARALLEL_FOR(nthreads)
    for (int ip = 0; ip < np; ip++) {
        int64_t beg, end;
        et_thread_range(rows, ip, np, &beg, &end);
        nll_rows(k, beg, end, &lp[ip], &wp[ip]);
    }
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

/* dx[n,k,s] = -g (eps / c w[k] + (1 - eps) w[t] [k == t]); g = dl[n,s] ('none'), dl ('sum'),
 * dl / sum of counted weights ('mean'); 0 for ignored targets. */
et_status et_f32_nll_bwd__ref(int64_t n, int64_t c, int64_t s, const int32_t *target, const float *weight,
                              int64_t ignore_index, int reduction, float eps, const float *dl, float *dx,
                              int nthreads) {
    (void)nthreads; /* unused without OpenMP */
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
    const double e = eps, ec = (double)eps / (double)c;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t r = 0; r < n; r++) {
        float *d = dx + r * c * s;
        for (int64_t si = 0; si < s; si++) {
            const int64_t t = target[r * s + si];
            const double g = reduction == ET_REDUCTION_NONE ? (double)dl[r * s + si] : g0;
            const int on = t != ignore_index;
            for (int64_t j = 0; j < c; j++) {
                double v = on ? -g * ec * weight_of(weight, j) : 0.0;
                if (on && j == t) v -= g * (1.0 - e) * weight_of(weight, t);
                d[j * s + si] = (float)v;
            }
        }
    }
    return ET_OK;
}
