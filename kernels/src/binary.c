/* edgetrain — broadcast binary ops, reduce-sum-to, broadcast-to, affine and unary math.
 *
 * Shapes are first collapsed: output dims of size 1 are dropped and neighbouring dims with the
 * same broadcast pattern are merged, so the common cases become one long contiguous inner row:
 *   same shape                 -> [T]            a, b stride 1 (flat loop)
 *   [N,C,H,W] op [1,C,1,1]     -> [N, C, HW]     inner row of HW with b constant
 *   [M,N] op [1,N] (bias)      -> [M, N]         inner row with both strided 1
 *   scalar                     -> [T]            b stride 0
 * The inner row is one of 4 op x 4 stride-pattern loops the compiler vectorises; outer
 * indices are walked with an odometer, so no per-element index arithmetic.
 * Reductions accumulate in double and each output element is produced by one thread in a fixed
 * order, so results are bitwise reproducible for any thread count.
 */
#include <math.h>
#include <string.h>

#include "misc_internal.h"

#define BIN_GRAIN 16384

/* ---- collapsed broadcast plan ---------------------------------------------------------- */
typedef struct bcast_plan {
    int nd;                       /* collapsed rank (0 = one element) */
    int64_t dim[ET_MAX_DIMS];
    int64_t sa[ET_MAX_DIMS];      /* element strides of a and b (0 where broadcast) */
    int64_t sb[ET_MAX_DIMS];
    int64_t total;
} bcast_plan;

static et_status check_shape(int ndim, const int64_t *s) {
    if (ndim < 0 || ndim > ET_MAX_DIMS) return ET_ERR_ARG;
    if (ndim > 0 && !s) return ET_ERR_ARG;
    for (int d = 0; d < ndim; d++)
        if (s[d] < 0) return ET_ERR_ARG;
    return ET_OK;
}

/* b_shape NULL means b is a single broadcast value. */
static et_status make_plan(int ndim, const int64_t *ys, const int64_t *as, const int64_t *bs,
                           bcast_plan *p) {
    et_status st;
    if ((st = check_shape(ndim, ys)) != ET_OK || (st = check_shape(ndim, as)) != ET_OK) return st;
    if (bs && (st = check_shape(ndim, bs)) != ET_OK) return st;
    int fa[ET_MAX_DIMS], fb[ET_MAX_DIMS];
    p->nd = 0;
    p->total = 1;
    for (int d = 0; d < ndim; d++) {
        int64_t bd = bs ? bs[d] : 1;
        if ((as[d] != ys[d] && as[d] != 1) || (bd != ys[d] && bd != 1)) return ET_ERR_SHAPE;
        p->total *= ys[d];
        if (ys[d] == 1) continue;
        int va = as[d] == ys[d], vb = bd == ys[d];
        if (p->nd > 0 && fa[p->nd - 1] == va && fb[p->nd - 1] == vb) {
            p->dim[p->nd - 1] *= ys[d];
        } else {
            fa[p->nd] = va;
            fb[p->nd] = vb;
            p->dim[p->nd] = ys[d];
            p->nd++;
        }
    }
    int64_t ra = 1, rb = 1;
    for (int k = p->nd - 1; k >= 0; k--) {
        p->sa[k] = fa[k] ? ra : 0;
        p->sb[k] = fb[k] ? rb : 0;
        if (fa[k]) ra *= p->dim[k];
        if (fb[k]) rb *= p->dim[k];
    }
    if (p->nd == 0) { /* single element */
        p->nd = 1;
        p->dim[0] = 1;
        p->sa[0] = p->sb[0] = 0;
    }
    return ET_OK;
}

/* ---- inner rows ---------------------------------------------------------------------- */
/* One loop per stride pattern so each is a plain vectorisable loop. y may equal a (same
 * index read before write). */
#define ROW_PATTERNS(EXPR)                                                                   \
    do {                                                                                     \
        if (sa && sb) {                                                                      \
            for (int64_t i = 0; i < n; i++) { float u = a[i], w = b[i]; y[i] = (EXPR); }     \
        } else if (sa) {                                                                     \
            float w = b[0];                                                                  \
            for (int64_t i = 0; i < n; i++) { float u = a[i]; y[i] = (EXPR); }               \
        } else if (sb) {                                                                     \
            float u = a[0];                                                                  \
            for (int64_t i = 0; i < n; i++) { float w = b[i]; y[i] = (EXPR); }               \
        } else {                                                                             \
            float u = a[0], w = b[0], r = (EXPR);                                            \
            for (int64_t i = 0; i < n; i++) y[i] = r;                                        \
        }                                                                                    \
    } while (0)

static void bin_row(et_binop op, int64_t n, const float *ET_RESTRICT a, int64_t sa,
                    const float *ET_RESTRICT b, int64_t sb, float *ET_RESTRICT y) {
    switch (op) {
    case ET_BIN_ADD: ROW_PATTERNS(u + w); break;
    case ET_BIN_SUB: ROW_PATTERNS(u - w); break;
    case ET_BIN_MUL: ROW_PATTERNS(u * w); break;
    case ET_BIN_MAX: ROW_PATTERNS((u > w || u != u) ? u : w); break;
    case ET_BIN_MIN: ROW_PATTERNS((u < w || u != u) ? u : w); break;
    case ET_BIN_TIE_WEIGHT: ROW_PATTERNS(u > w ? 1.0f : (u == w ? 0.5f : 0.0f)); break;
    default: ROW_PATTERNS(u / w); break;
    }
}
#undef ROW_PATTERNS

typedef struct bin_job {
    et_binop op;
    const bcast_plan *p;
    const float *a, *b;
    float *y;
} bin_job;

/* Output elements [beg, end). */
static void bin_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const bin_job *j = (const bin_job *)ctx;
    const et_binop op = j->op;
    const bcast_plan *p = j->p;
    const float *a = j->a, *b = j->b;
    float *y = j->y;
    const int nd = p->nd;
    const int64_t inner = p->dim[nd - 1];
    (void)tid;
    {
        /* odometer over the outer dims, starting at row beg / inner */
        int64_t idx[ET_MAX_DIMS] = {0};
        int64_t row = beg / inner, col = beg % inner, oa = 0, ob = 0;
        for (int k = nd - 2; k >= 0; k--) {
            idx[k] = row % p->dim[k];
            row /= p->dim[k];
            oa += idx[k] * p->sa[k];
            ob += idx[k] * p->sb[k];
        }
        int64_t pos = beg;
        while (pos < end) {
            int64_t len = inner - col < end - pos ? inner - col : end - pos;
            bin_row(op, len, a + oa + col * p->sa[nd - 1], p->sa[nd - 1],
                    b + ob + col * p->sb[nd - 1], p->sb[nd - 1], y + pos);
            pos += len;
            col = 0;
            for (int k = nd - 2; k >= 0; k--) { /* next row */
                oa += p->sa[k];
                ob += p->sb[k];
                if (++idx[k] < p->dim[k]) break;
                oa -= p->sa[k] * p->dim[k];
                ob -= p->sb[k] * p->dim[k];
                idx[k] = 0;
            }
        }
    }
}

static void run_plan(et_binop op, const bcast_plan *p, const float *a, const float *b, float *y,
                     int nthreads) {
    bin_job j = {op, p, a, b, y};
    et_parallel_ranges(p->total, et_misc_nchunks(p->total, nthreads, BIN_GRAIN), nthreads,
                       bin_range, &j);
}

et_status et_f32_binary(et_binop op, int ndim, const int64_t *y_shape, const int64_t *a_shape,
                        const float *a, const int64_t *b_shape, const float *b, float *y,
                        int nthreads) {
    if ((int)op < 0 || op >= ET_BINOP_COUNT_ || !b_shape) return ET_ERR_ARG;
    bcast_plan p;
    et_status st = make_plan(ndim, y_shape, a_shape, b_shape, &p);
    if (st != ET_OK) return st;
    if (p.total == 0) return ET_OK;
    if (!a || !b || !y) return ET_ERR_ARG;
    run_plan(op, &p, a, b, y, nthreads);
    return ET_OK;
}

et_status et_f32_broadcast_to(int ndim, const int64_t *x_shape, const float *x,
                              const int64_t *y_shape, float *y, float scale, int nthreads) {
    bcast_plan p;
    et_status st = make_plan(ndim, y_shape, x_shape, NULL, &p);
    if (st != ET_OK) return st;
    if (p.total == 0) return ET_OK;
    if (!x || !y) return ET_ERR_ARG;
    run_plan(ET_BIN_MUL, &p, x, &scale, y, nthreads);
    return ET_OK;
}

/* Elementwise jobs: y = alpha * x + beta (affine), y = fn(x) (unary). */
typedef struct ew_job {
    const float *x;
    float *y;
    float alpha, beta;
    et_unary fn;
    const et_f32_unary_variant *row; /* unary: the chosen row of et_f32_unary_variants */
} ew_job;

static void affine_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    (void)tid;
    const float *ET_RESTRICT xs = k->x + beg;
    float *ET_RESTRICT ys = k->y + beg;
    const float alpha = k->alpha, beta = k->beta;
    for (int64_t i = 0; i < end - beg; i++) ys[i] = alpha * xs[i] + beta;
}

et_status et_f32_affine(int64_t n, float alpha, float beta, const float *x, float *y,
                        int nthreads) {
    if (n < 0) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!x || !y) return ET_ERR_ARG;
    ew_job k = {x, y, alpha, beta, 0, NULL};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, BIN_GRAIN), nthreads, affine_range, &k);
    return ET_OK;
}

/* ---- unary math -------------------------------------------------------------------------- */
static float unary_one(et_unary fn, double a, double b, float xf) {
    const double x = (double)xf;
    switch (fn) {
    case ET_UN_EXP: return (float)exp(x);
    case ET_UN_LOG: return (float)log(x);
    case ET_UN_SQRT: return sqrtf(xf);
    case ET_UN_RSQRT: return (float)(1.0 / sqrt(x));
    case ET_UN_ABS: return fabsf(xf);
    case ET_UN_ERF: return (float)erf(x);
    case ET_UN_SIGN: return xf > 0.0f ? 1.0f : (xf < 0.0f ? -1.0f : xf);
    case ET_UN_POW: return (float)pow(x, a);
    case ET_UN_CLAMP: return isnan(xf) ? xf : (float)(x < a ? a : (x > b ? b : x));
    case ET_UN_IN_RANGE: return (x >= a && x <= b) ? 1.0f : 0.0f;
    default: return xf;
    }
}

void et_f32_unary__ref(et_unary fn, float a, float b, int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = unary_one(fn, a, b, x[i]);
}

static void unary_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const ew_job *k = (const ew_job *)ctx;
    (void)tid;
    k->row->run(k->fn, k->alpha, k->beta, end - beg, k->x + beg, k->y + beg);
}

et_status et_f32_unary(et_unary fn, float a, float b, int64_t n, const float *x, float *y,
                       int nthreads) {
    if (n < 0 || (int)fn < 0 || fn >= ET_UNARY_COUNT_) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!x || !y) return ET_ERR_ARG;
    ew_job k = {x, y, a, b, fn, ET_VARIANT_PICK(et_f32_unary_variants)};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, BIN_GRAIN / 8), nthreads, unary_range, &k);
    return ET_OK;
}

/* ---- reduce_sum_to ----------------------------------------------------------------------- */
#define RED_BLOCK 256 /* columns accumulated at once (double acc[RED_BLOCK] on the stack) */

typedef struct red_plan {
    int nd;
    int64_t dim[ET_MAX_DIMS];
    int64_t xs[ET_MAX_DIMS];  /* element stride in x */
    int red[ET_MAX_DIMS];     /* 1 = summed over */
} red_plan;

/* Decode output index o (row-major over the kept dims) into an offset in x. */
static int64_t kept_offset(const red_plan *p, int64_t o, int skip_last) {
    int64_t off = 0;
    for (int k = p->nd - 1 - skip_last; k >= 0; k--) {
        if (p->red[k]) continue;
        off += (o % p->dim[k]) * p->xs[k];
        o /= p->dim[k];
    }
    return off;
}

/* Odometer over the reduced dims among [0, upto): advances *off, returns 0 when done. */
static int next_reduced(const red_plan *p, int upto, int64_t *idx, int64_t *off) {
    for (int k = upto - 1; k >= 0; k--) {
        if (!p->red[k]) continue;
        *off += p->xs[k];
        if (++idx[k] < p->dim[k]) return 1;
        *off -= p->xs[k] * p->dim[k];
        idx[k] = 0;
    }
    return 0;
}

typedef struct red_job {
    const red_plan *p;
    const float *x;
    float *y;
    double sc;
    int64_t xtotal, nblk;
    double *part; /* everything summed: one partial per chunk */
} red_job;

/* Everything summed: chunk ip of a fixed partition (combined in order by the caller). */
static void red_part(void *ctx, int64_t ip, int tid) {
    const red_job *j = (const red_job *)ctx;
    (void)tid;
    const int np = j->xtotal >= ET_MISC_NPART * 4096 ? ET_MISC_NPART : 1;
    int64_t beg, end;
    et_thread_range(j->xtotal, (int)ip, np, &beg, &end);
    j->part[ip] = et_misc_sum_f64(j->x + beg, end - beg);
}

/* Last dim kept: items [beg, end) = (output index, block of RED_BLOCK columns), each summed
 * on its own in double. */
static void red_cols(void *ctx, int64_t beg, int64_t end, int tid) {
    const red_job *j = (const red_job *)ctx;
    const red_plan *p = j->p;
    const int last = p->nd - 1;
    const int64_t kin = p->dim[last], nblk = j->nblk;
    (void)tid;
    for (int64_t it = beg; it < end; it++) {
        const int64_t o = it / nblk, k0 = (it % nblk) * RED_BLOCK;
        const int64_t len = kin - k0 < RED_BLOCK ? kin - k0 : RED_BLOCK;
        double acc[RED_BLOCK];
        for (int64_t c = 0; c < len; c++) acc[c] = 0.0;
        int64_t idx[ET_MAX_DIMS] = {0};
        int64_t off = kept_offset(p, o, 1) + k0;
        do {
            const float *ET_RESTRICT xr = j->x + off;
            for (int64_t c = 0; c < len; c++) acc[c] += (double)xr[c];
        } while (next_reduced(p, last, idx, &off));
        float *yr = j->y + o * kin + k0;
        for (int64_t c = 0; c < len; c++) yr[c] = (float)(j->sc * acc[c]);
    }
}

/* Last dim summed: outputs [beg, end), each the sum of contiguous runs. */
static void red_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const red_job *j = (const red_job *)ctx;
    const red_plan *p = j->p;
    const int last = p->nd - 1;
    const int64_t rin = p->dim[last];
    (void)tid;
    for (int64_t o = beg; o < end; o++) {
        int64_t idx[ET_MAX_DIMS] = {0};
        int64_t off = kept_offset(p, o, 0);
        double s = 0.0;
        do {
            s += et_misc_sum_f64(j->x + off, rin);
        } while (next_reduced(p, last, idx, &off));
        j->y[o] = (float)(j->sc * s);
    }
}

et_status et_f32_reduce_sum_to(int ndim, const int64_t *x_shape, const float *x,
                               const int64_t *y_shape, float *y, float scale, int nthreads) {
    et_status st;
    if ((st = check_shape(ndim, x_shape)) != ET_OK || (st = check_shape(ndim, y_shape)) != ET_OK)
        return st;
    int64_t xtotal = 1, ytotal = 1;
    for (int d = 0; d < ndim; d++) {
        if (y_shape[d] != x_shape[d] && y_shape[d] != 1) return ET_ERR_SHAPE;
        xtotal *= x_shape[d];
        ytotal *= y_shape[d];
    }
    if (ytotal == 0) return ET_OK;
    if (!y) return ET_ERR_ARG;
    if (xtotal == 0) { /* empty sum */
        for (int64_t i = 0; i < ytotal; i++) y[i] = 0.0f;
        return ET_OK;
    }
    if (!x) return ET_ERR_ARG;

    red_plan p;
    p.nd = 0;
    for (int d = 0; d < ndim; d++) {
        if (x_shape[d] == 1) continue;
        int r = y_shape[d] == 1;
        if (p.nd > 0 && p.red[p.nd - 1] == r) {
            p.dim[p.nd - 1] *= x_shape[d];
        } else {
            p.red[p.nd] = r;
            p.dim[p.nd] = x_shape[d];
            p.nd++;
        }
    }
    int64_t sx = 1, rtotal = 1;
    for (int k = p.nd - 1; k >= 0; k--) {
        p.xs[k] = sx;
        sx *= p.dim[k];
        if (p.red[k]) rtotal *= p.dim[k];
    }
    const double sc = (double)scale;

    if (rtotal == 1) { /* nothing summed: y = scale * x */
        ew_job k = {x, y, scale, 0.0f, 0, NULL};
        et_parallel_ranges(xtotal, et_misc_nchunks(xtotal, nthreads, BIN_GRAIN), nthreads,
                           affine_range, &k);
        return ET_OK;
    }

    if (ytotal == 1) { /* everything summed: x is one contiguous run; fixed partition */
        double part[ET_MISC_NPART];
        const int np = xtotal >= ET_MISC_NPART * 4096 ? ET_MISC_NPART : 1;
        red_job j = {&p, x, y, sc, xtotal, 0, part};
        et_parallel_for(np, nthreads, red_part, &j);
        double s = 0.0;
        for (int ip = 0; ip < np; ip++) s += part[ip];
        y[0] = (float)(sc * s);
        return ET_OK;
    }

    const int last = p.nd - 1;
    if (!p.red[last]) {
        /* Last dim kept (bias grad [M,N]->[1,N], [K,R,N] ...): for each outer output index and
         * block of columns, add contiguous rows of x into double accumulators. */
        const int64_t kin = p.dim[last];
        const int64_t nblk = (kin + RED_BLOCK - 1) / RED_BLOCK;
        const int64_t items = (ytotal / kin) * nblk;
        red_job j = {&p, x, y, sc, xtotal, nblk, NULL};
        et_parallel_ranges(items, et_split_chunks(items, nthreads), nthreads, red_cols, &j);
    } else {
        /* Last dim summed ([N,C,HW]->[C], row sums): each output sums contiguous runs. */
        red_job j = {&p, x, y, sc, xtotal, 0, NULL};
        et_parallel_ranges(ytotal, et_split_chunks(ytotal, nthreads), nthreads, red_rows, &j);
    }
    return ET_OK;
}
