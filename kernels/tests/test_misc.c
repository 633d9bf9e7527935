/* edgetrain — tests of the misc kernel family: activations, broadcast binary ops and
 * reductions, batch norm, dropout, softmax, losses and optimizer updates.
 * Every row of the variant tables (activations, dropout, optimizers) that runs here is compared
 * with the table's __ref row at awkward sizes; everything else with
 * naive double-precision formulas (index-computing loops) and finite differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"
#include "misc_internal.h"

static const int64_t kSizes[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4097};
#define NSIZES ((int)(sizeof kSizes / sizeof kSizes[0]))

static float *fbuf(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double *dbuf(int64_t n) { return (double *)calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

static int bitwise_equal(const float *a, const float *b, int64_t n) {
    return n == 0 || memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* Compare a float result with a double oracle: |a - b| <= atol + rtol |b|. */
static int close_to_f64(const float *a, const double *b, int64_t n, double rtol, double atol,
                        const char *what) {
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - b[i]);
        if (!(err <= atol + rtol * fabs(b[i]))) {
            fprintf(stderr, "  mismatch in %s at %lld: got %.9g want %.9g\n", what, (long long)i,
                    (double)a[i], b[i]);
            return 0;
        }
    }
    return 1;
}

/* ========================================================================================= */
/* activations                                                                               */
/* ========================================================================================= */
static double act_naive(et_act act, double alpha, double x) {
    switch (act) {
    case ET_ACT_RELU: return x > 0 ? x : 0;
    case ET_ACT_RELU6: return x < 0 ? 0 : (x > 6 ? 6 : x);
    case ET_ACT_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case ET_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case ET_ACT_TANH: return tanh(x);
    case ET_ACT_HARDSWISH: return x * fmin(fmax(x + 3, 0), 6) / 6;
    default: return x;
    }
}

static void fill_act_input(float *x, int64_t n, uint64_t seed) {
    et_fill_random(x, n, seed, -10.0f, 10.0f);
    static const float special[] = {0.0f, -3.0f, 3.0f, 6.0f, -0.0f, 1e-5f, -1e-5f, 0.6f, -90.0f,
                                    90.0f, 20.0f, -20.0f, 0.625f, -0.624f};
    for (int64_t i = 0; i < n; i += 3) x[i] = special[(i / 3) % 14];
}

static void test_activations(void) {
    const int64_t nmax = 4097;
    float *x = fbuf(nmax), *dy = fbuf(nmax), *t = fbuf(nmax);
    float *r = fbuf(nmax), *v = fbuf(nmax), *rb = fbuf(nmax), *vb = fbuf(nmax);
    double *want = dbuf(nmax);
    const float alpha = 0.1f;
    const et_f32_act_variant *ref = &et_f32_act_variants[0];
    et_check_variant_table("act", et_f32_act_variants, sizeof et_f32_act_variants[0]);
    for (int a = 0; a < ET_ACT_COUNT_; a++) {
        const et_act act = (et_act)a;
        const int smooth = act == ET_ACT_SIGMOID || act == ET_ACT_TANH;
        for (int si = 0; si < NSIZES; si++) {
            const int64_t n = kSizes[si];
            fill_act_input(x, n, 100 + si);
            et_fill_random(dy, n, 200 + si, -1.0f, 1.0f);
            ref->fwd(act, alpha, n, x, r);
            /* reference vs naive double formula */
            for (int64_t i = 0; i < n; i++) want[i] = act_naive(act, alpha, x[i]);
            ET_CHECK(close_to_f64(r, want, n, 2e-7, 1e-30, "act ref fwd"), "act %d n=%lld ref fwd",
                     a, (long long)n);
            /* backward input t: x, or y for sigmoid / tanh */
            memcpy(t, smooth ? r : x, (size_t)n * sizeof(float));
            ref->bwd(act, alpha, n, t, dy, rb);
            for (const et_f32_act_variant *row = ref + 1; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                row->fwd(act, alpha, n, x, v);
                if (smooth)
                    ET_CHECK(et_allclose(v, r, n, 4e-7f, 1e-37f, "act fwd variant"),
                             "act %d %s n=%lld", a, row->head.name, (long long)n);
                else
                    ET_CHECK(bitwise_equal(v, r, n), "act %d %s n=%lld fwd not bitwise", a,
                             row->head.name, (long long)n);
                row->bwd(act, alpha, n, t, dy, vb);
                ET_CHECK(bitwise_equal(vb, rb, n), "act %d %s n=%lld bwd not bitwise", a,
                         row->head.name, (long long)n);
            }
            /* dispatch, 1 and 3 threads, in place */
            for (int nt = 1; nt <= 3; nt += 2) {
                memcpy(v, x, (size_t)n * sizeof(float));
                ET_CHECK(et_f32_act_fwd(act, alpha, n, v, v, nt) == ET_OK, "act fwd status");
                ET_CHECK(et_allclose(v, r, n, 4e-7f, 1e-37f, "act fwd dispatch"), "act %d", a);
                memcpy(vb, dy, (size_t)n * sizeof(float));
                ET_CHECK(et_f32_act_bwd(act, alpha, n, t, vb, vb, nt) == ET_OK, "act bwd status");
                ET_CHECK(bitwise_equal(vb, rb, n), "act %d bwd dispatch in place", a);
            }
        }
    }
    /* PyTorch gradient conventions at the kinks */
    {
        const float xs[] = {0.0f, 6.0f, 3.0f, -3.0f, -4.0f, 4.0f, 1e-7f, -1e-7f};
        const float ones[] = {1, 1, 1, 1, 1, 1, 1, 1};
        float g[8];
        et_f32_act_bwd(ET_ACT_RELU, 0, 8, xs, ones, g, 1);
        ET_CHECK(g[0] == 0.0f && g[1] == 1.0f && g[6] == 1.0f && g[7] == 0.0f, "relu grad");
        et_f32_act_bwd(ET_ACT_RELU6, 0, 8, xs, ones, g, 1);
        ET_CHECK(g[0] == 0.0f && g[1] == 0.0f && g[2] == 1.0f && g[6] == 1.0f && g[7] == 0.0f,
                 "relu6 grad");
        et_f32_act_bwd(ET_ACT_HARDSWISH, 0, 8, xs, ones, g, 1);
        ET_CHECK(g[2] == 1.0f && g[3] == 0.0f && g[4] == 0.0f && g[5] == 1.0f &&
                 fabsf(g[0] - 0.5f) < 1e-7f, "hardswish grad %g %g %g %g", g[2], g[3], g[4], g[5]);
        et_f32_act_bwd(ET_ACT_LEAKY_RELU, 0.2f, 8, xs, ones, g, 1);
        ET_CHECK(g[0] == 0.2f && g[5] == 1.0f, "leaky grad");
        float nanx = NAN, y;
        et_f32_act_fwd(ET_ACT_RELU, 0, 1, &nanx, &y, 1);
        ET_CHECK(isnan(y), "relu(NaN) must be NaN");
    }
    ET_CHECK(et_f32_act_fwd(ET_ACT_COUNT_, 0, 4, x, v, 1) == ET_ERR_ARG, "bad act");
    ET_CHECK(et_f32_act_fwd(ET_ACT_RELU, 0, -1, x, v, 1) == ET_ERR_ARG, "negative n");
    ET_CHECK(et_f32_act_bwd(ET_ACT_RELU, 0, 4, NULL, dy, v, 1) == ET_ERR_ARG, "null t");
    free(x); free(dy); free(t); free(r); free(v); free(rb); free(vb); free(want);
}

/* ========================================================================================= */
/* broadcast binary, reduce_sum_to, broadcast_to, affine                                     */
/* ========================================================================================= */
static int64_t numel(int nd, const int64_t *s) {
    int64_t t = 1;
    for (int d = 0; d < nd; d++) t *= s[d];
    return t;
}

/* Offset in a tensor of shape s of the element at (broadcast) index idx. */
static int64_t bcast_index(int nd, const int64_t *s, const int64_t *idx) {
    int64_t off = 0;
    for (int d = 0; d < nd; d++) off = off * s[d] + (s[d] == 1 ? 0 : idx[d]);
    return off;
}

static void unravel(int nd, const int64_t *s, int64_t flat, int64_t *idx) {
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = flat % s[d];
        flat /= s[d];
    }
}

typedef struct { int nd; int64_t y[6], a[6], b[6]; } bin_case;

static const bin_case kBinCases[] = {
    {1, {7}, {7}, {7}},
    {1, {9}, {9}, {1}},
    {1, {9}, {1}, {9}},
    {2, {5, 6}, {5, 6}, {1, 6}},              /* bias row */
    {2, {5, 6}, {5, 6}, {5, 1}},
    {2, {5, 6}, {5, 1}, {1, 6}},              /* outer product */
    {2, {5, 6}, {1, 1}, {5, 6}},              /* scalar on the left */
    {3, {3, 5, 4}, {3, 1, 4}, {1, 5, 1}},     /* mixed 1s on both sides */
    {4, {2, 3, 4, 5}, {2, 3, 4, 5}, {1, 3, 1, 1}}, /* per channel */
    {4, {2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}},
    {4, {2, 3, 4, 5}, {2, 3, 4, 5}, {1, 1, 1, 1}},
    {4, {2, 3, 4, 5}, {2, 1, 4, 1}, {1, 3, 1, 5}},
    {4, {2, 1, 4, 5}, {2, 1, 4, 5}, {1, 1, 4, 1}},
    {4, {4, 16, 33, 33}, {4, 16, 33, 33}, {1, 16, 1, 1}},
    {4, {3, 16, 1, 1}, {3, 16, 1, 1}, {1, 16, 1, 1}},
    {2, {300, 257}, {300, 257}, {1, 257}},
    {1, {100003}, {100003}, {100003}},
    {6, {2, 1, 3, 2, 4, 3}, {2, 1, 1, 2, 4, 1}, {1, 1, 3, 1, 4, 3}},
    {0, {0}, {0}, {0}},
    {2, {0, 5}, {0, 5}, {1, 5}},
};

static float bin_naive(et_binop op, float u, float w) {
    switch (op) {
    case ET_BIN_ADD: return u + w;
    case ET_BIN_SUB: return u - w;
    case ET_BIN_MUL: return u * w;
    case ET_BIN_MAX: return (isnan(u) || u > w) ? u : w;
    case ET_BIN_MIN: return (isnan(u) || u < w) ? u : w;
    case ET_BIN_TIE_WEIGHT: return u > w ? 1.0f : (u == w ? 0.5f : 0.0f);
    default: return u / w;
    }
}

static void test_binary(void) {
    for (size_t ci = 0; ci < sizeof kBinCases / sizeof kBinCases[0]; ci++) {
        const bin_case *c = &kBinCases[ci];
        const int64_t ny = numel(c->nd, c->y), na = numel(c->nd, c->a), nb = numel(c->nd, c->b);
        float *a = fbuf(na), *b = fbuf(nb), *y = fbuf(ny), *want = fbuf(ny);
        et_fill_random(a, na, 11 + ci, -2.0f, 2.0f);
        et_fill_random(b, nb, 31 + ci, 0.5f, 2.0f);
        for (int op = 0; op < ET_BINOP_COUNT_; op++) {
            int64_t idx[6];
            for (int64_t i = 0; i < ny; i++) {
                unravel(c->nd, c->y, i, idx);
                want[i] = bin_naive((et_binop)op, a[bcast_index(c->nd, c->a, idx)],
                                    b[bcast_index(c->nd, c->b, idx)]);
            }
            for (int nt = 1; nt <= 4; nt *= 2) {
                for (int64_t i = 0; i < ny; i++) y[i] = NAN;
                et_status st = et_f32_binary((et_binop)op, c->nd, c->y, c->a, a, c->b, b, y, nt);
                ET_CHECK(st == ET_OK, "binary case %zu status %d", ci, st);
                ET_CHECK(bitwise_equal(y, want, ny), "binary case %zu op %d nt %d", ci, op, nt);
            }
            if (na == ny) { /* in place: y aliases a */
                float *ac = fbuf(na);
                memcpy(ac, a, (size_t)na * sizeof(float));
                et_f32_binary((et_binop)op, c->nd, c->y, c->a, ac, c->b, b, ac, 2);
                ET_CHECK(bitwise_equal(ac, want, ny), "binary in place case %zu op %d", ci, op);
                free(ac);
            }
        }
        /* broadcast_to(a -> y) with a scale */
        {
            int64_t idx[6];
            for (int64_t i = 0; i < ny; i++) {
                unravel(c->nd, c->y, i, idx);
                want[i] = a[bcast_index(c->nd, c->a, idx)] * 0.5f;
            }
            ET_CHECK(et_f32_broadcast_to(c->nd, c->a, a, c->y, y, 0.5f, 3) == ET_OK, "bto status");
            ET_CHECK(bitwise_equal(y, want, ny), "broadcast_to case %zu", ci);
        }
        /* reduce_sum_to(y-shaped x -> a shape) against a naive double loop */
        {
            float *x = fbuf(ny), *r1 = fbuf(na), *r3 = fbuf(na);
            double *acc = dbuf(na);
            et_fill_random(x, ny, 71 + ci, -1.0f, 1.0f);
            int64_t idx[6];
            for (int64_t i = 0; i < ny; i++) {
                unravel(c->nd, c->y, i, idx);
                acc[bcast_index(c->nd, c->a, idx)] += x[i];
            }
            for (int64_t i = 0; i < na; i++) acc[i] *= 0.25;
            for (int64_t i = 0; i < na; i++) r1[i] = NAN;
            ET_CHECK(et_f32_reduce_sum_to(c->nd, c->y, x, c->a, r1, 0.25f, 1) == ET_OK,
                     "reduce status");
            ET_CHECK(close_to_f64(r1, acc, na, 1e-6, 1e-6, "reduce_sum_to"), "reduce case %zu", ci);
            et_f32_reduce_sum_to(c->nd, c->y, x, c->a, r3, 0.25f, 3);
            ET_CHECK(bitwise_equal(r1, r3, na), "reduce_sum_to thread-count dependent, case %zu", ci);
            free(x); free(r1); free(r3); free(acc);
        }
        free(a); free(b); free(y); free(want);
    }
    /* large reductions: [1000, 300] -> [1, 300] (several column blocks), [3, 5000] -> [3, 1],
     * everything -> scalar (fixed partition), with a large offset to probe accuracy */
    {
        const int64_t xs1[2] = {1000, 300}, ys1[2] = {1, 300}, ys2[2] = {1000, 1}, ys3[2] = {1, 1};
        const int64_t *yss[3] = {ys1, ys2, ys3};
        float *x = fbuf(300000), *y = fbuf(1000), *y4 = fbuf(1000);
        double *acc = dbuf(1000);
        et_fill_random(x, 300000, 5, 99.0f, 101.0f);
        for (int k = 0; k < 3; k++) {
            const int64_t *ysk = yss[k];
            const int64_t ny = numel(2, ysk);
            memset(acc, 0, 1000 * sizeof(double));
            for (int64_t i = 0; i < 1000; i++)
                for (int64_t j = 0; j < 300; j++)
                    acc[(ysk[0] == 1 ? 0 : i) * ysk[1] + (ysk[1] == 1 ? 0 : j)] += x[i * 300 + j];
            et_f32_reduce_sum_to(2, xs1, x, ysk, y, 1.0f, 1);
            et_f32_reduce_sum_to(2, xs1, x, ysk, y4, 1.0f, 4);
            ET_CHECK(close_to_f64(y, acc, ny, 1e-7, 0, "big reduce"), "big reduce %d", k);
            ET_CHECK(bitwise_equal(y, y4, ny), "big reduce %d thread-count dependent", k);
        }
        free(x); free(y); free(y4); free(acc);
    }
    /* affine */
    {
        float x[33], y[33], w[33];
        et_fill_random(x, 33, 9, -3.0f, 3.0f);
        for (int i = 0; i < 33; i++) w[i] = 1.5f * x[i] + -0.25f;
        ET_CHECK(et_f32_affine(33, 1.5f, -0.25f, x, y, 2) == ET_OK && bitwise_equal(y, w, 33),
                 "affine");
        et_f32_affine(33, 1.5f, -0.25f, x, x, 1);
        ET_CHECK(bitwise_equal(x, w, 33), "affine in place");
    }
    /* unary math: every fn against a double reference, threads, in place, NaN, errors */
    {
        enum { UN = 40000 };
        float *x = malloc(UN * sizeof(float)), *y = malloc(UN * sizeof(float));
        float *y4 = malloc(UN * sizeof(float));
        double *r = malloc(UN * sizeof(double));
        const float a = 1.7f, b = 0.0f;
        for (int fn = 0; fn < ET_UNARY_COUNT_; fn++) {
            const int positive = fn == ET_UN_LOG || fn == ET_UN_SQRT || fn == ET_UN_RSQRT ||
                                 fn == ET_UN_POW;
            et_fill_random(x, UN, 11 + fn, positive ? 0.01f : -4.0f, 4.0f);
            const float lo = fn == ET_UN_POW ? a : -0.5f, hi = fn == ET_UN_POW ? b : 1.25f;
            for (int64_t i = 0; i < UN; i++) {
                double v = x[i];
                switch (fn) {
                case ET_UN_EXP: r[i] = exp(v); break;
                case ET_UN_LOG: r[i] = log(v); break;
                case ET_UN_SQRT: r[i] = sqrt(v); break;
                case ET_UN_RSQRT: r[i] = 1.0 / sqrt(v); break;
                case ET_UN_ABS: r[i] = fabs(v); break;
                case ET_UN_ERF: r[i] = erf(v); break;
                case ET_UN_SIGN: r[i] = v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); break;
                case ET_UN_POW: r[i] = pow(v, lo); break;
                case ET_UN_CLAMP: r[i] = v < lo ? lo : (v > hi ? hi : v); break;
                default: r[i] = (v >= lo && v <= hi) ? 1.0 : 0.0; break;
                }
            }
            ET_CHECK(et_f32_unary((et_unary)fn, lo, hi, UN, x, y, 1) == ET_OK, "unary %d", fn);
            ET_CHECK(close_to_f64(y, r, UN, 1.5e-7, 0, "unary"), "unary %d values", fn);
            et_f32_unary((et_unary)fn, lo, hi, UN, x, y4, 4);
            ET_CHECK(bitwise_equal(y, y4, UN), "unary %d thread-count dependent", fn);
            et_f32_unary((et_unary)fn, lo, hi, UN, x, x, 2);
            ET_CHECK(bitwise_equal(y, x, UN), "unary %d in place", fn);
        }
        float nan_in = NAN, nan_out = 0.0f;
        et_f32_unary(ET_UN_CLAMP, -1.0f, 1.0f, 1, &nan_in, &nan_out, 1);
        ET_CHECK(isnan(nan_out), "clamp keeps NaN");
        et_f32_unary(ET_UN_SIGN, 0.0f, 0.0f, 1, &nan_in, &nan_out, 1);
        ET_CHECK(isnan(nan_out), "sign keeps NaN");
        ET_CHECK(et_f32_unary(ET_UNARY_COUNT_, 0, 0, 3, x, y, 1) == ET_ERR_ARG, "unary fn");
        ET_CHECK(et_f32_unary(ET_UN_EXP, 0, 0, -1, x, y, 1) == ET_ERR_ARG, "unary n");
        ET_CHECK(et_f32_unary(ET_UN_EXP, 0, 0, 3, NULL, y, 1) == ET_ERR_ARG, "unary NULL");
        free(x); free(y); free(y4); free(r);
    }
    /* errors */
    {
        const int64_t s23[2] = {2, 3}, s33[2] = {3, 3}, s13[2] = {1, 3}, sneg[2] = {-1, 3};
        float a[9] = {0}, b[9] = {0}, y[9];
        ET_CHECK(et_f32_binary(ET_BIN_ADD, 2, s33, s23, a, s13, b, y, 1) == ET_ERR_SHAPE, "shape");
        ET_CHECK(et_f32_binary(ET_BIN_ADD, 7, s33, s33, a, s33, b, y, 1) == ET_ERR_ARG, "ndim");
        ET_CHECK(et_f32_binary(ET_BIN_ADD, 2, sneg, sneg, a, s13, b, y, 1) == ET_ERR_ARG, "neg");
        ET_CHECK(et_f32_binary(ET_BINOP_COUNT_, 2, s33, s33, a, s33, b, y, 1) == ET_ERR_ARG, "op");
        ET_CHECK(et_f32_reduce_sum_to(2, s13, a, s33, y, 1.0f, 1) == ET_ERR_SHAPE, "reduce shape");
        ET_CHECK(et_f32_broadcast_to(2, s23, a, s33, y, 1.0f, 1) == ET_ERR_SHAPE, "bto shape");
    }
}

/* ========================================================================================= */
/* batch norm                                                                                */
/* ========================================================================================= */
typedef struct bn_ref {
    double *y, *mean, *invstd, *rm, *rv, *dx, *dgamma, *dbeta;
} bn_ref;

static void bn_naive(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                     const float *beta, const float *rm0, const float *rv0, double momentum,
                     double eps, const float *dy, bn_ref *o) {
    const double cnt = (double)(n * hw);
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) s += x[(i * c + ch) * hw + j];
        double mean = s / cnt;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                double d = x[(i * c + ch) * hw + j] - mean;
                ss += d * d;
            }
        double var = ss / cnt, invstd = 1.0 / sqrt(var + eps);
        o->mean[ch] = mean;
        o->invstd[ch] = invstd;
        o->rm[ch] = (1 - momentum) * rm0[ch] + momentum * mean;
        o->rv[ch] = (1 - momentum) * rv0[ch] + momentum * var * cnt / (cnt - 1);
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                double xh = (x[k] - mean) * invstd;
                o->y[k] = xh * gamma[ch] + beta[ch];
                sdy += dy[k];
                sdyx += dy[k] * xh;
            }
        o->dgamma[ch] = sdyx;
        o->dbeta[ch] = sdy;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                double xh = (x[k] - mean) * invstd;
                o->dx[k] = gamma[ch] * invstd * (dy[k] - sdy / cnt - xh * sdyx / cnt);
            }
    }
}

/* L = sum(w * bn(x)) evaluated with the float kernel, accumulated in double. */
static double bn_loss(int64_t n, int64_t c, int64_t hw, const float *x, const float *g,
                      const float *b, const float *w, float *y, float eps) {
    float rm[8] = {0}, rv[8] = {0}, sm[8], si[8];
    et_f32_batchnorm_train_fwd(n, c, hw, x, g, b, rm, rv, 0.1f, eps, y, sm, si, 1);
    double l = 0;
    for (int64_t i = 0; i < n * c * hw; i++) l += (double)w[i] * y[i];
    return l;
}

static void test_batchnorm(void) {
    static const int64_t shapes[][3] = {{4, 3, 35}, {8, 5, 1}, {2, 7, 17}, {3, 2, 1000},
                                        {5, 8, 4}, {2, 7, 256}, {9, 8, 2}, {3, 5, 513}};
    for (int si = 0; si < 8; si++) {
        const int64_t n = shapes[si][0], c = shapes[si][1], hw = shapes[si][2], t = n * c * hw;
        float *x = fbuf(t), *dy = fbuf(t), *y = fbuf(t), *dx = fbuf(t), *y3 = fbuf(t);
        float g[8], b[8], rm[8], rv[8], rm0[8], rv0[8], sm[8], sinv[8], dg[8], db[8];
        bn_ref o;
        o.y = dbuf(t); o.dx = dbuf(t);
        o.mean = dbuf(c); o.invstd = dbuf(c); o.rm = dbuf(c); o.rv = dbuf(c);
        o.dgamma = dbuf(c); o.dbeta = dbuf(c);
        et_fill_random(x, t, 300 + si, 4.0f, 6.0f); /* offset mean probes the accuracy */
        et_fill_random(dy, t, 400 + si, -1.0f, 1.0f);
        et_fill_random(g, c, 500 + si, 0.5f, 1.5f);
        et_fill_random(b, c, 600 + si, -0.5f, 0.5f);
        et_fill_random(rm0, c, 700 + si, -0.1f, 0.1f);
        et_fill_random(rv0, c, 800 + si, 0.5f, 1.5f);
        const float mom = 0.1f, eps = 1e-5f;
        bn_naive(n, c, hw, x, g, b, rm0, rv0, mom, eps, dy, &o);
        memcpy(rm, rm0, sizeof rm);
        memcpy(rv, rv0, sizeof rv);
        ET_CHECK(et_f32_batchnorm_train_fwd(n, c, hw, x, g, b, rm, rv, mom, eps, y, sm, sinv, 2) ==
                 ET_OK, "bn train status");
        ET_CHECK(close_to_f64(y, o.y, t, 1e-5, 2e-5, "bn y"), "bn train y shape %d", si);
        ET_CHECK(close_to_f64(sm, o.mean, c, 1e-6, 0, "bn mean"), "bn mean %d", si);
        ET_CHECK(close_to_f64(sinv, o.invstd, c, 1e-6, 0, "bn invstd"), "bn invstd %d", si);
        ET_CHECK(close_to_f64(rm, o.rm, c, 1e-6, 1e-7, "bn running_mean"), "bn rm %d", si);
        ET_CHECK(close_to_f64(rv, o.rv, c, 1e-6, 1e-7, "bn running_var"), "bn rv %d", si);
        /* thread-count independence */
        {
            float rm3[8], rv3[8], sm3[8], si3[8];
            memcpy(rm3, rm0, sizeof rm3);
            memcpy(rv3, rv0, sizeof rv3);
            et_f32_batchnorm_train_fwd(n, c, hw, x, g, b, rm3, rv3, mom, eps, y3, sm3, si3, 1);
            ET_CHECK(bitwise_equal(y, y3, t) && bitwise_equal(sm, sm3, c) &&
                     bitwise_equal(rv, rv3, c), "bn train depends on thread count");
        }
        ET_CHECK(et_f32_batchnorm_bwd(n, c, hw, x, dy, g, sm, sinv, dx, dg, db, 3) == ET_OK,
                 "bn bwd status");
        ET_CHECK(close_to_f64(dx, o.dx, t, 1e-4, 1e-5, "bn dx"), "bn dx %d", si);
        ET_CHECK(close_to_f64(dg, o.dgamma, c, 1e-5, 1e-5, "bn dgamma"), "bn dgamma %d", si);
        ET_CHECK(close_to_f64(db, o.dbeta, c, 1e-6, 1e-6, "bn dbeta"), "bn dbeta %d", si);
        float *dx2 = fbuf(t);
        ET_CHECK(et_f32_batchnorm_bwd(n, c, hw, x, dy, g, sm, sinv, dx2, NULL, NULL, 1) == ET_OK &&
                 bitwise_equal(dx, dx2, t), "bn bwd with NULL dgamma/dbeta");
        /* inference with the running stats */
        for (int64_t k = 0; k < t; k++) {
            int64_t ch = (k / hw) % c;
            o.y[k] = (x[k] - rm0[ch]) / sqrt((double)rv0[ch] + eps) * g[ch] + b[ch];
        }
        ET_CHECK(et_f32_batchnorm_infer_fwd(n, c, hw, x, g, b, rm0, rv0, eps, y, 2) == ET_OK,
                 "bn infer status");
        ET_CHECK(close_to_f64(y, o.y, t, 1e-5, 1e-5, "bn infer"), "bn infer %d", si);
        free(x); free(dy); free(y); free(dx); free(dx2); free(y3);
        free(o.y); free(o.dx); free(o.mean); free(o.invstd); free(o.rm); free(o.rv);
        free(o.dgamma); free(o.dbeta);
    }
    /* finite differences on a tiny case: d/dx, d/dgamma, d/dbeta of sum(w * y) */
    {
        const int64_t n = 2, c = 2, hw = 3, t = 12;
        float x[12], w[12], y[12], g[2] = {1.3f, 0.7f}, b[2] = {0.2f, -0.1f};
        float rm[2] = {0}, rv[2] = {1, 1}, sm[2], si[2], dx[12], dg[2], db[2];
        et_fill_random(x, t, 1, -1.0f, 1.0f);
        et_fill_random(w, t, 2, -1.0f, 1.0f);
        et_f32_batchnorm_train_fwd(n, c, hw, x, g, b, rm, rv, 0.1f, 1e-5f, y, sm, si, 1);
        et_f32_batchnorm_bwd(n, c, hw, x, w, g, sm, si, dx, dg, db, 1);
        const float h = 1e-2f;
        for (int64_t k = 0; k < t; k++) {
            float x0 = x[k];
            x[k] = x0 + h; double lp = bn_loss(n, c, hw, x, g, b, w, y, 1e-5f);
            x[k] = x0 - h; double lm = bn_loss(n, c, hw, x, g, b, w, y, 1e-5f);
            x[k] = x0;
            double fd = (lp - lm) / (2 * h);
            ET_CHECK(fabs(fd - dx[k]) < 2e-3 + 1e-2 * fabs(fd), "bn fd dx[%lld] %g vs %g",
                     (long long)k, fd, (double)dx[k]);
        }
        for (int64_t ch = 0; ch < c; ch++) {
            float g0 = g[ch], b0 = b[ch];
            g[ch] = g0 + h; double lp = bn_loss(n, c, hw, x, g, b, w, y, 1e-5f);
            g[ch] = g0 - h; double lm = bn_loss(n, c, hw, x, g, b, w, y, 1e-5f);
            g[ch] = g0;
            ET_CHECK(fabs((lp - lm) / (2 * h) - dg[ch]) < 2e-3, "bn fd dgamma");
            b[ch] = b0 + h; lp = bn_loss(n, c, hw, x, g, b, w, y, 1e-5f);
            b[ch] = b0 - h; lm = bn_loss(n, c, hw, x, g, b, w, y, 1e-5f);
            b[ch] = b0;
            ET_CHECK(fabs((lp - lm) / (2 * h) - db[ch]) < 2e-3, "bn fd dbeta");
        }
    }
    {
        float x[3] = {1, 2, 3}, y[3], sm[3], si[3];
        ET_CHECK(et_f32_batchnorm_train_fwd(1, 3, 1, x, NULL, NULL, NULL, NULL, 0.1f, 1e-5f, y, sm,
                                            si, 1) == ET_ERR_SHAPE, "bn one value per channel");
        ET_CHECK(et_f32_batchnorm_train_fwd(-1, 3, 1, x, NULL, NULL, NULL, NULL, 0.1f, 1e-5f, y,
                                            sm, si, 1) == ET_ERR_ARG, "bn negative");
    }
}

/* Frozen statistics (QAT freeze_bn_step): y = eval's, save_* from the running statistics
 * (unchanged), backward with constant statistics: dx = dy * g * invstd. */
static void test_batchnorm_frozen(void) {
    static const int64_t shapes[][3] = {{4, 3, 35}, {8, 5, 1}, {1, 7, 17}, {3, 2, 1000}, {3, 5, 513}};
    for (int si = 0; si < 5; si++) {
        const int64_t n = shapes[si][0], c = shapes[si][1], hw = shapes[si][2], t = n * c * hw;
        float *x = fbuf(t), *dy = fbuf(t), *y = fbuf(t), *yi = fbuf(t), *dx = fbuf(t), *dx1 = fbuf(t);
        float g[8], b[8], rm[8], rv[8], rm0[8], rv0[8], sm[8], sinv[8], dg[8], db[8], dg1[8], db1[8];
        double *rdx = dbuf(t), rdg[8], rdb[8];
        et_fill_random(x, t, 900 + si, -3.0f, 5.0f);
        et_fill_random(dy, t, 910 + si, -1.0f, 1.0f);
        et_fill_random(g, c, 920 + si, 0.5f, 1.5f);
        et_fill_random(b, c, 930 + si, -0.5f, 0.5f);
        et_fill_random(rm0, c, 940 + si, -1.0f, 1.0f);
        et_fill_random(rv0, c, 950 + si, 0.5f, 1.5f);
        memcpy(rm, rm0, sizeof rm);
        memcpy(rv, rv0, sizeof rv);
        const float eps = 1e-3f;
        ET_CHECK(et_f32_batchnorm_frozen_fwd(n, c, hw, x, g, b, rm, rv, eps, y, sm, sinv, 2) == ET_OK,
                 "bn frozen fwd status");
        ET_CHECK(et_f32_batchnorm_infer_fwd(n, c, hw, x, g, b, rm0, rv0, eps, yi, 1) == ET_OK &&
                 bitwise_equal(y, yi, t), "bn frozen y != eval y %d", si);
        ET_CHECK(bitwise_equal(rm, rm0, c) && bitwise_equal(rv, rv0, c), "bn frozen moved stats");
        ET_CHECK(bitwise_equal(sm, rm0, c), "bn frozen save_mean");
        for (int64_t ch = 0; ch < c; ch++) {
            rdg[ch] = rdb[ch] = 0.0;
            ET_CHECK(fabs(sinv[ch] - 1.0 / sqrt((double)rv0[ch] + eps)) < 1e-6, "bn frozen invstd");
        }
        for (int64_t k = 0; k < t; k++) {
            const int64_t ch = (k / hw) % c;
            const double inv = 1.0 / sqrt((double)rv0[ch] + eps);
            rdx[k] = (double)dy[k] * g[ch] * inv;
            rdg[ch] += (double)dy[k] * ((double)x[k] - rm0[ch]) * inv;
            rdb[ch] += dy[k];
        }
        ET_CHECK(et_f32_batchnorm_frozen_bwd(n, c, hw, x, dy, g, sm, sinv, dx, dg, db, 3) == ET_OK,
                 "bn frozen bwd status");
        ET_CHECK(close_to_f64(dx, rdx, t, 1e-5, 1e-6, "bn frozen dx"), "bn frozen dx %d", si);
        ET_CHECK(close_to_f64(dg, rdg, c, 1e-5, 1e-5, "bn frozen dgamma"), "bn frozen dg %d", si);
        ET_CHECK(close_to_f64(db, rdb, c, 1e-6, 1e-6, "bn frozen dbeta"), "bn frozen db %d", si);
        ET_CHECK(et_f32_batchnorm_frozen_bwd(n, c, hw, x, dy, g, sm, sinv, dx1, dg1, db1, 1) == ET_OK &&
                 bitwise_equal(dx, dx1, t) && bitwise_equal(dg, dg1, c) && bitwise_equal(db, db1, c),
                 "bn frozen bwd depends on thread count");
        free(x); free(dy); free(y); free(yi); free(dx); free(dx1); free(rdx);
    }
}

/* ========================================================================================= */
/* dropout                                                                                   */
/* ========================================================================================= */
static void test_dropout(void) {
    /* Golden stream: the same on x86-64 and aarch64 (run this binary under qemu). */
    static const struct { uint64_t seed, counter; uint32_t value; } golden[] = {
        {0x0000000000000000ULL, 0x0000000000000000ULL, 0x8359fff6u},
        {0x0000000000000000ULL, 0x0000000000000001ULL, 0x93118a61u},
        {0x0000000000000000ULL, 0xffffffffffffffffULL, 0x901eef07u},
        {0x0000000000000001ULL, 0x0000000000000000ULL, 0x83cd62b9u},
        {0x000000000000002aULL, 0x00000000000003e8ULL, 0x0a282f9cu},
        {0x000000000000002aULL, 0x0000000100000005ULL, 0xc579ba9fu},
        {0xdeadbeefcafebabeULL, 0x0000000000000002ULL, 0xca0104e9u},
        {0xdeadbeefcafebabeULL, 0x0000000100000005ULL, 0x4b3acf38u},
        {0x9e3779b97f4a7c15ULL, 0x0000000000000000ULL, 0xc0524850u},
        {0x9e3779b97f4a7c15ULL, 0xffffffffffffffffULL, 0xa1d88abcu},
    };
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++)
        ET_CHECK(et_rng_u32(golden[i].seed, golden[i].counter) == golden[i].value,
                 "rng golden %zu: got 0x%08x", i, et_rng_u32(golden[i].seed, golden[i].counter));

    const int64_t n = 100000;
    float *x = fbuf(n), *y1 = fbuf(n), *y2 = fbuf(n), *dx = fbuf(n), *ones = fbuf(n);
    et_fill_random(x, n, 3, -1.0f, 1.0f);
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
    const float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    const uint64_t seed = 1234, offset = 7ULL << 32;
    for (int k = 0; k < 4; k++) {
        const float p = ps[k], scale = (float)(1.0 / (1.0 - (double)p));
        ET_CHECK(et_f32_dropout_fwd(n, p, seed, offset, x, y1, 1) == ET_OK, "dropout status");
        et_f32_dropout_fwd(n, p, seed, offset, x, y2, 2);
        ET_CHECK(bitwise_equal(y1, y2, n), "dropout mask depends on thread count (p=%g)", p);
        int64_t kept = 0, bad = 0;
        const uint32_t thr = (uint32_t)fmin((double)p * 4294967296.0, 4294967295.0);
        for (int64_t i = 0; i < n; i++) {
            int keep = et_rng_u32(seed, offset + (uint64_t)i) >= thr;
            kept += keep;
            if (y1[i] != x[i] * (keep ? scale : 0.0f)) bad++;
        }
        ET_CHECK(bad == 0, "dropout values disagree with et_rng_u32 (%lld)", (long long)bad);
        double ratio = (double)kept / (double)n;
        ET_CHECK(fabs(ratio - (1.0 - p)) < 0.01, "dropout keep ratio %g for p=%g", ratio, p);
        /* backward uses the same mask */
        ET_CHECK(et_f32_dropout_bwd(n, p, seed, offset, ones, dx, 3) == ET_OK, "dropout bwd");
        bad = 0;
        for (int64_t i = 0; i < n; i++)
            if ((dx[i] != 0.0f) != (y1[i] != 0.0f || x[i] == 0.0f) || (dx[i] != 0.0f && dx[i] != scale))
                bad++;
        ET_CHECK(bad == 0, "dropout bwd mask differs from fwd (%lld)", (long long)bad);
    }
    /* SIMD variants vs __ref, bitwise */
    {
        const et_f32_dropout_variant *ref = &et_f32_dropout_variants[0];
        const uint64_t key = et_misc_rng_key(seed);
        et_check_variant_table("dropout", et_f32_dropout_variants,
                               sizeof et_f32_dropout_variants[0]);
        for (const et_f32_dropout_variant *row = ref + 1; row->head.name; row++) {
            if (!et_isa_supported(row->head.isa)) continue;
            for (int si = 0; si < NSIZES; si++) {
                const int64_t m = kSizes[si];
                ref->mask(m, x, y1, key, offset + 3, 0x40000000u, 1.25f);
                row->mask(m, x, y2, key, offset + 3, 0x40000000u, 1.25f);
                ET_CHECK(bitwise_equal(y1, y2, m), "dropout %s n=%lld", row->head.name,
                         (long long)m);
            }
        }
    }
    /* the mask of element i depends on offset + i only */
    et_f32_dropout_fwd(110, 0.5f, seed, offset, x, y1, 1);
    et_f32_dropout_fwd(100, 0.5f, seed, offset + 10, x + 10, y2, 1);
    ET_CHECK(bitwise_equal(y1 + 10, y2, 100), "dropout offset shift");
    /* another seed gives another mask */
    et_f32_dropout_fwd(1000, 0.5f, seed + 1, offset, ones, y2, 1);
    et_f32_dropout_fwd(1000, 0.5f, seed, offset, ones, y1, 1);
    ET_CHECK(!bitwise_equal(y1, y2, 1000), "dropout seed ignored");
    et_f32_dropout_fwd(1000, 0.0f, seed, offset, x, y1, 2);
    ET_CHECK(bitwise_equal(y1, x, 1000), "dropout p=0 is a copy");
    et_f32_dropout_fwd(1000, 1.0f, seed, offset, x, y1, 2);
    int zeros = 1;
    for (int i = 0; i < 1000; i++) zeros &= y1[i] == 0.0f;
    ET_CHECK(zeros, "dropout p=1 gives zeros");
    ET_CHECK(et_f32_dropout_fwd(10, -0.1f, seed, 0, x, y1, 1) == ET_ERR_ARG, "p < 0");
    ET_CHECK(et_f32_dropout_fwd(10, 1.1f, seed, 0, x, y1, 1) == ET_ERR_ARG, "p > 1");
    ET_CHECK(et_f32_dropout_fwd(10, NAN, seed, 0, x, y1, 1) == ET_ERR_ARG, "p NaN");
    free(x); free(y1); free(y2); free(dx); free(ones);
}

/* ========================================================================================= */
/* softmax                                                                                   */
/* ========================================================================================= */
static void softmax_naive(int64_t outer, int64_t len, int64_t inner, int lg, const float *x,
                          double *y) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const int64_t base = o * len * inner + j;
            double m = -INFINITY, s = 0;
            for (int64_t l = 0; l < len; l++) /* not fmax: aarch64 gcc 12 ICEs vectorising it */
                if (x[base + l * inner] > m) m = x[base + l * inner];
            for (int64_t l = 0; l < len; l++) s += exp(x[base + l * inner] - m);
            for (int64_t l = 0; l < len; l++) {
                double v = x[base + l * inner] - m;
                y[base + l * inner] = lg ? v - log(s) : exp(v) / s;
            }
        }
}

static void test_softmax(void) {
    static const int64_t shapes[][3] = {{3, 10, 1}, {2, 7, 5}, {2, 5, 130}, {1, 1000, 1}, {4, 1, 3}};
    for (int si = 0; si < 5; si++) {
        const int64_t o = shapes[si][0], l = shapes[si][1], in = shapes[si][2], t = o * l * in;
        float *x = fbuf(t), *y = fbuf(t), *dy = fbuf(t), *dx = fbuf(t), *y2 = fbuf(t);
        double *want = dbuf(t), *dwant = dbuf(t);
        et_fill_random(x, t, 900 + si, -20.0f, 20.0f);
        et_fill_random(dy, t, 950 + si, -1.0f, 1.0f);
        for (int lg = 0; lg <= 1; lg++) {
            softmax_naive(o, l, in, lg, x, want);
            ET_CHECK(et_f32_softmax_fwd(o, l, in, lg, x, y, 2) == ET_OK, "softmax status");
            /* float rounding of x - max bounds the error: relative for softmax (tiny
             * probabilities included), absolute (a few ulp of |x|) for log-softmax */
            ET_CHECK(close_to_f64(y, want, t, lg ? 1e-6 : 1e-5, lg ? 1e-5 : 1e-30, "softmax"),
                     "softmax %d log %d", si, lg);
            et_f32_softmax_fwd(o, l, in, lg, x, y2, 1);
            ET_CHECK(bitwise_equal(y, y2, t), "softmax thread-count dependent");
            /* naive backward in double */
            for (int64_t a = 0; a < o; a++)
                for (int64_t j = 0; j < in; j++) {
                    const int64_t base = a * l * in + j;
                    double s = 0;
                    for (int64_t k = 0; k < l; k++) {
                        const int64_t q = base + k * in;
                        s += lg ? dy[q] : dy[q] * want[q];
                    }
                    for (int64_t k = 0; k < l; k++) {
                        const int64_t q = base + k * in;
                        dwant[q] = lg ? dy[q] - exp(want[q]) * s : want[q] * (dy[q] - s);
                    }
                }
            ET_CHECK(et_f32_softmax_bwd(o, l, in, lg, y, dy, dx, 3) == ET_OK, "softmax bwd");
            ET_CHECK(close_to_f64(dx, dwant, t, 1e-5, 1e-6, "softmax bwd"), "softmax bwd %d log %d",
                     si, lg);
        }
        free(x); free(y); free(dy); free(dx); free(y2); free(want); free(dwant);
    }
    /* finite differences of L = sum(w * softmax(x)) on one row */
    for (int lg = 0; lg <= 1; lg++) {
        float x[6], w[6], y[6], dx[6];
        et_fill_random(x, 6, 17, -2.0f, 2.0f);
        et_fill_random(w, 6, 18, -1.0f, 1.0f);
        et_f32_softmax_fwd(1, 6, 1, lg, x, y, 1);
        et_f32_softmax_bwd(1, 6, 1, lg, y, w, dx, 1);
        for (int k = 0; k < 6; k++) {
            const float h = 1e-2f, x0 = x[k];
            double lp = 0, lm = 0;
            x[k] = x0 + h; et_f32_softmax_fwd(1, 6, 1, lg, x, y, 1);
            for (int i = 0; i < 6; i++) lp += (double)w[i] * y[i];
            x[k] = x0 - h; et_f32_softmax_fwd(1, 6, 1, lg, x, y, 1);
            for (int i = 0; i < 6; i++) lm += (double)w[i] * y[i];
            x[k] = x0;
            double fd = (lp - lm) / (2 * h);
            ET_CHECK(fabs(fd - dx[k]) < 1e-3, "softmax fd log %d [%d] %g vs %g", lg, k, fd,
                     (double)dx[k]);
        }
    }
}

/* ========================================================================================= */
/* losses                                                                                    */
/* ========================================================================================= */
typedef double (*loss_fn)(const float *x, const void *ctx);

/* Central differences of a scalar loss (evaluated with the float kernel) w.r.t. x. */
static void check_fd(float *x, int64_t n, const float *grad, loss_fn fn, const void *ctx,
                     float h, double tol, const char *what) {
    int bad = 0;
    for (int64_t k = 0; k < n && !bad; k++) {
        const float x0 = x[k];
        x[k] = x0 + h; double lp = fn(x, ctx);
        x[k] = x0 - h; double lm = fn(x, ctx);
        x[k] = x0;
        double fd = (lp - lm) / ((double)(x0 + h) - (double)(x0 - h));
        if (!(fabs(fd - grad[k]) <= tol)) {
            fprintf(stderr, "  %s: fd %g vs grad %g at %lld\n", what, fd, (double)grad[k],
                    (long long)k);
            bad = 1;
        }
    }
    ET_CHECK(!bad, "finite differences: %s", what);
}

typedef struct loss_ctx {
    int64_t n, c;
    const int32_t *labels;
    const float *target;
    float margin;
} loss_ctx;

static double xent_loss(const float *x, const void *v) {
    const loss_ctx *k = (const loss_ctx *)v;
    float l;
    et_f32_softmax_xent_fwd(k->n, k->c, x, k->labels, &l, NULL, 1);
    return l;
}
static double xent_prob_loss(const float *x, const void *v) {
    const loss_ctx *k = (const loss_ctx *)v;
    float l;
    et_f32_softmax_xent_prob_fwd(k->n, k->c, x, k->target, &l, NULL, 1);
    return l;
}
static double mse_loss(const float *x, const void *v) {
    const loss_ctx *k = (const loss_ctx *)v;
    float l;
    et_f32_mse_fwd(k->n, x, k->target, &l, 1);
    return l;
}
static double l1_loss(const float *x, const void *v) {
    const loss_ctx *k = (const loss_ctx *)v;
    float l;
    et_f32_l1_fwd(k->n, x, k->target, &l, 1);
    return l;
}
static double hinge_loss(const float *x, const void *v) {
    const loss_ctx *k = (const loss_ctx *)v;
    float l;
    et_f32_hinge_fwd(k->n, k->c, x, k->labels, k->margin, &l, 1);
    return l;
}
static double kldiv_loss(const float *x, const void *v) {
    const loss_ctx *k = (const loss_ctx *)v;
    float l;
    et_f32_kldiv_fwd(k->n, k->c, x, k->target, &l, 1);
    return l;
}

static void test_losses(void) {
    const int64_t n = 5, c = 7, t = n * c;
    float x[35], tg[35], probs[35], d[35], loss;
    int32_t labels[5] = {0, 6, 3, 3, 1};
    const float dloss = 0.75f;
    et_fill_random(x, t, 41, -3.0f, 3.0f);
    et_fill_random(tg, t, 42, 0.0f, 1.0f);
    tg[3] = 0.0f; /* a zero target for KL */
    loss_ctx ctx = {n, c, labels, tg, 1.0f};

    /* softmax cross-entropy, integer labels */
    {
        double want = 0, pw[35];
        softmax_naive(n, c, 1, 0, x, pw);
        for (int64_t r = 0; r < n; r++) want -= log(pw[r * c + labels[r]]);
        want /= n;
        ET_CHECK(et_f32_softmax_xent_fwd(n, c, x, labels, &loss, probs, 2) == ET_OK, "xent");
        ET_CHECK(fabs(loss - want) < 1e-6 * fabs(want) + 1e-7, "xent loss %g vs %g", loss, want);
        ET_CHECK(close_to_f64(probs, pw, t, 1e-6, 1e-9, "xent probs"), "xent probs");
        ET_CHECK(et_f32_softmax_xent_bwd(n, c, probs, labels, &dloss, d, 2) == ET_OK, "xent bwd");
        double dw[35];
        for (int64_t k = 0; k < t; k++)
            dw[k] = (pw[k] - (labels[k / c] == k % c ? 1.0 : 0.0)) * dloss / n;
        ET_CHECK(close_to_f64(d, dw, t, 1e-5, 1e-7, "xent bwd"), "xent bwd formula");
        float g1[35];
        et_f32_softmax_xent_bwd(n, c, probs, labels, &(float){1.0f}, g1, 1);
        check_fd(x, t, g1, xent_loss, &ctx, 1e-2f, 1e-3, "softmax_xent");
        /* label errors: nothing written */
        int32_t badl[5] = {0, 1, -1, 2, 3}, badh[5] = {0, 1, 7, 2, 3};
        float sentinel = 123.0f, pr[35];
        for (int k = 0; k < 35; k++) pr[k] = 5.0f;
        float ls = sentinel;
        ET_CHECK(et_f32_softmax_xent_fwd(n, c, x, badl, &ls, pr, 1) == ET_ERR_LABEL, "label -1");
        ET_CHECK(et_f32_softmax_xent_fwd(n, c, x, badh, &ls, pr, 1) == ET_ERR_LABEL, "label c");
        ET_CHECK(ls == sentinel && pr[0] == 5.0f && pr[34] == 5.0f, "xent wrote on label error");
        ET_CHECK(et_f32_softmax_xent_bwd(n, c, probs, badh, &dloss, pr, 1) == ET_ERR_LABEL &&
                 pr[0] == 5.0f, "xent bwd label");
        ET_CHECK(et_f32_hinge_fwd(n, c, x, badl, 1.0f, &ls, 1) == ET_ERR_LABEL, "hinge label -1");
        ET_CHECK(et_f32_hinge_fwd(n, c, x, badh, 1.0f, &ls, 1) == ET_ERR_LABEL, "hinge label c");
        ET_CHECK(et_f32_hinge_bwd(n, c, x, badh, 1.0f, &dloss, pr, 1) == ET_ERR_LABEL &&
                 pr[0] == 5.0f && ls == sentinel, "hinge bwd label");
    }
    /* probability targets (rows not normalised) */
    {
        double want = 0, lw[35], pw[35];
        softmax_naive(n, c, 1, 1, x, lw);
        softmax_naive(n, c, 1, 0, x, pw);
        for (int64_t k = 0; k < t; k++) want -= tg[k] * lw[k];
        want /= n;
        ET_CHECK(et_f32_softmax_xent_prob_fwd(n, c, x, tg, &loss, probs, 2) == ET_OK, "xentp");
        ET_CHECK(fabs(loss - want) < 1e-6 * fabs(want), "xent prob loss %g vs %g", loss, want);
        ET_CHECK(et_f32_softmax_xent_prob_bwd(n, c, probs, tg, &dloss, d, 2) == ET_OK, "xentp bwd");
        double dw[35];
        for (int64_t r = 0; r < n; r++) {
            double ts = 0;
            for (int64_t i = 0; i < c; i++) ts += tg[r * c + i];
            for (int64_t i = 0; i < c; i++)
                dw[r * c + i] = (pw[r * c + i] * ts - tg[r * c + i]) * dloss / n;
        }
        ET_CHECK(close_to_f64(d, dw, t, 1e-5, 1e-7, "xent prob bwd"), "xent prob bwd formula");
        float g1[35];
        et_f32_softmax_xent_prob_bwd(n, c, probs, tg, &(float){1.0f}, g1, 1);
        check_fd(x, t, g1, xent_prob_loss, &ctx, 1e-2f, 1e-3, "softmax_xent_prob");
    }
    /* mse and l1 over all 35 elements */
    {
        loss_ctx e = {t, 1, NULL, tg, 0};
        double ws = 0, wa = 0, dw[35], da[35];
        for (int64_t k = 0; k < t; k++) {
            double df = (double)x[k] - tg[k];
            ws += df * df;
            wa += fabs(df);
            dw[k] = 2 * df * dloss / t;
            da[k] = (df > 0 ? 1 : (df < 0 ? -1 : 0)) * (double)dloss / t;
        }
        ET_CHECK(et_f32_mse_fwd(t, x, tg, &loss, 2) == ET_OK && fabs(loss - ws / t) < 1e-6 * ws / t,
                 "mse %g vs %g", loss, ws / t);
        et_f32_mse_bwd(t, x, tg, &dloss, d, 2);
        ET_CHECK(close_to_f64(d, dw, t, 1e-6, 1e-8, "mse bwd"), "mse bwd");
        ET_CHECK(et_f32_l1_fwd(t, x, tg, &loss, 2) == ET_OK && fabs(loss - wa / t) < 1e-6 * wa / t,
                 "l1 %g vs %g", loss, wa / t);
        et_f32_l1_bwd(t, x, tg, &dloss, d, 2);
        ET_CHECK(close_to_f64(d, da, t, 1e-6, 1e-9, "l1 bwd"), "l1 bwd");
        float one = 1.0f, g1[35];
        et_f32_mse_bwd(t, x, tg, &one, g1, 1);
        check_fd(x, t, g1, mse_loss, &e, 1e-2f, 1e-4, "mse");
        et_f32_l1_bwd(t, x, tg, &one, g1, 1);
        check_fd(x, t, g1, l1_loss, &e, 1e-3f, 1e-4, "l1");
        float p0[2] = {1.0f, 2.0f}, t0[2] = {1.0f, 3.0f};
        et_f32_l1_bwd(2, p0, t0, &one, g1, 1);
        ET_CHECK(g1[0] == 0.0f && g1[1] == -0.5f, "l1 sign(0) = 0");
    }
    /* hinge (MultiMarginLoss p=1) */
    {
        const float margins[2] = {1.0f, 2.5f};
        for (int mi = 0; mi < 2; mi++) {
            const float mg = margins[mi];
            double want = 0, dw[35];
            for (int64_t r = 0; r < n; r++) {
                const float *xr = x + r * c;
                int y = labels[r], act = 0;
                for (int64_t i = 0; i < c; i++) {
                    double z = mg - (double)xr[y] + xr[i];
                    dw[r * c + i] = 0;
                    if (i != y && z > 0) {
                        want += z / c;
                        dw[r * c + i] = (double)dloss / (n * c);
                        act++;
                    }
                }
                dw[r * c + y] = -act * (double)dloss / (n * c);
            }
            want /= n;
            ET_CHECK(et_f32_hinge_fwd(n, c, x, labels, mg, &loss, 2) == ET_OK &&
                     fabs(loss - want) < 1e-6 * want, "hinge %g vs %g", loss, want);
            et_f32_hinge_bwd(n, c, x, labels, mg, &dloss, d, 2);
            ET_CHECK(close_to_f64(d, dw, t, 1e-6, 1e-9, "hinge bwd"), "hinge bwd margin %g", mg);
            float one = 1.0f, g1[35];
            loss_ctx hc = {n, c, labels, NULL, mg};
            et_f32_hinge_bwd(n, c, x, labels, mg, &one, g1, 1);
            check_fd(x, t, g1, hinge_loss, &hc, 1e-3f, 1e-4, "hinge");
        }
    }
    /* KL divergence, batchmean, target 0 contributes 0 */
    {
        float lp[35];
        double lw[35], want = 0, dw[35];
        softmax_naive(n, c, 1, 1, x, lw);
        for (int k = 0; k < 35; k++) lp[k] = (float)lw[k];
        for (int64_t k = 0; k < t; k++) {
            if (tg[k] != 0) want += tg[k] * (log(tg[k]) - lp[k]);
            dw[k] = -(double)tg[k] * dloss / n;
        }
        want /= n;
        ET_CHECK(et_f32_kldiv_fwd(n, c, lp, tg, &loss, 2) == ET_OK &&
                 fabs(loss - want) < 1e-6 * fabs(want), "kldiv %g vs %g", loss, want);
        et_f32_kldiv_bwd(n, c, tg, &dloss, d, 2);
        ET_CHECK(close_to_f64(d, dw, t, 1e-6, 1e-9, "kldiv bwd"), "kldiv bwd");
        float one = 1.0f, g1[35];
        et_f32_kldiv_bwd(n, c, tg, &one, g1, 1);
        check_fd(lp, t, g1, kldiv_loss, &ctx, 1e-2f, 1e-4, "kldiv");
        float inp[2] = {-1.0f, -2.0f}, tz[2] = {0.0f, 0.0f};
        et_f32_kldiv_fwd(1, 2, inp, tz, &loss, 1);
        ET_CHECK(loss == 0.0f, "kldiv zero target");
    }
    /* losses are bitwise identical for every thread count (fixed partition) */
    {
        const int64_t bn = 3000, bc = 10;
        float *bx = fbuf(bn * bc), *bt = fbuf(bn * bc), l1v, l4v;
        int32_t *bl = (int32_t *)calloc((size_t)bn, sizeof(int32_t));
        et_fill_random(bx, bn * bc, 61, -5.0f, 5.0f);
        et_fill_random(bt, bn * bc, 62, 0.0f, 1.0f);
        for (int64_t r = 0; r < bn; r++) bl[r] = (int32_t)((r * 7) % bc);
        et_f32_softmax_xent_fwd(bn, bc, bx, bl, &l1v, NULL, 1);
        et_f32_softmax_xent_fwd(bn, bc, bx, bl, &l4v, NULL, 4);
        ET_CHECK(l1v == l4v, "xent loss depends on thread count");
        et_f32_mse_fwd(bn * bc, bx, bt, &l1v, 1);
        et_f32_mse_fwd(bn * bc, bx, bt, &l4v, 3);
        ET_CHECK(l1v == l4v, "mse loss depends on thread count");
        et_f32_hinge_fwd(bn, bc, bx, bl, 1.0f, &l1v, 1);
        et_f32_hinge_fwd(bn, bc, bx, bl, 1.0f, &l4v, 2);
        ET_CHECK(l1v == l4v, "hinge loss depends on thread count");
        free(bx); free(bt); free(bl);
    }
}

/* ========================================================================================= */
/* optimizers                                                                                */
/* ========================================================================================= */
static void test_optim_variants(void) {
    const int64_t nmax = 4097;
    float *g = fbuf(nmax), *p0 = fbuf(nmax), *b0 = fbuf(nmax), *m0 = fbuf(nmax), *v0 = fbuf(nmax);
    float *pr = fbuf(nmax), *br = fbuf(nmax), *mr = fbuf(nmax), *vr = fbuf(nmax);
    float *pv = fbuf(nmax), *bv = fbuf(nmax), *mv = fbuf(nmax), *vv = fbuf(nmax);
    float *anc = fbuf(nmax);
    et_fill_random(g, nmax, 1, -1.0f, 1.0f);
    et_fill_random(anc, nmax, 6, -1.0f, 1.0f);
    et_fill_random(p0, nmax, 2, -1.0f, 1.0f);
    et_fill_random(b0, nmax, 3, -0.1f, 0.1f);
    et_fill_random(m0, nmax, 4, -0.1f, 0.1f);
    et_fill_random(v0, nmax, 5, 0.0f, 0.01f);
    p0[0] = 0.0f; /* sign(0) for L1 */
    /* the last case of each adds the FedProx term (prox_mu != 0, an anchor) */
    et_sgd_coef sc[4] = {{-0.1f, 0.9f, 0.9f, 1e-2f, 1, 1, 0, 0.0f},
                         {-0.1f, 0.9f, 1.0f, 0.0f, 0, 0, 1, 0.0f},
                         {-0.05f, 0.0f, 1.0f, 1e-3f, 0, 0, 0, 0.0f},
                         {-0.1f, 0.9f, 1.0f, 1e-3f, 0, 0, 0, 0.3f}};
    et_adam_coef ac[3] = {{1.0f, 1e-2f, 0.1f, 0.999f, 1e-3f, 0.05f, 1e-8f, -1e-3f, 0.0f},
                          {0.9999f, 0.0f, 0.7f, 0.99f, 1e-2f, 0.3f, 1e-6f, -2e-3f, 0.0f},
                          {0.9999f, 1e-3f, 0.1f, 0.99f, 1e-2f, 0.3f, 1e-6f, -2e-3f, 0.05f}};
    const et_f32_optim_variant *ref = &et_f32_optim_variants[0];
    et_check_variant_table("optim", et_f32_optim_variants, sizeof et_f32_optim_variants[0]);
    for (const et_f32_optim_variant *row = ref + 1; row->head.name; row++) {
        if (!et_isa_supported(row->head.isa)) continue;
        for (int si = 0; si < NSIZES; si++) {
            const int64_t n = kSizes[si];
            const size_t bytes = (size_t)n * sizeof(float);
            for (int k = 0; k < 4; k++) {
                const float *a = sc[k].prox_mu != 0.0f ? anc : NULL;
                memcpy(pr, p0, bytes); memcpy(br, b0, bytes);
                memcpy(pv, p0, bytes); memcpy(bv, b0, bytes);
                ref->sgd(&sc[k], n, pr, g, br, a);
                row->sgd(&sc[k], n, pv, g, bv, a);
                ET_CHECK(bitwise_equal(pr, pv, n) && bitwise_equal(br, bv, n), "sgd %s case %d n=%lld",
                         row->head.name, k, (long long)n);
            }
            for (int k = 0; k < 3; k++) {
                const float *a = ac[k].prox_mu != 0.0f ? anc : NULL;
                memcpy(pr, p0, bytes); memcpy(mr, m0, bytes); memcpy(vr, v0, bytes);
                memcpy(pv, p0, bytes); memcpy(mv, m0, bytes); memcpy(vv, v0, bytes);
                ref->adam(&ac[k], n, pr, g, mr, vr, a);
                row->adam(&ac[k], n, pv, g, mv, vv, a);
                ET_CHECK(bitwise_equal(pr, pv, n) && bitwise_equal(mr, mv, n) &&
                         bitwise_equal(vr, vv, n), "adam %s case %d n=%lld",
                         row->head.name, k, (long long)n);
            }
        }
    }
    free(g); free(p0); free(b0); free(m0); free(v0); free(pr); free(br); free(mr); free(vr);
    free(pv); free(bv); free(mv); free(vv); free(anc);
}

typedef struct sgd_case { float lr, mom, damp, wd; int nesterov, l1; float mu; } sgd_case;
typedef struct adam_case { float lr, b1, b2, eps, wd; int decoupled; float mu; } adam_case;

static void test_optim(void) {
    test_optim_variants();
    const int64_t n = 1000;
    const int steps = 6;
    float *p = fbuf(n), *buf = fbuf(n), *m = fbuf(n), *v = fbuf(n), *g = fbuf(n), *anc = fbuf(n);
    et_fill_random(anc, n, 7, -1.0f, 1.0f);
    double *pd = dbuf(n), *bd = dbuf(n), *md = dbuf(n), *vd = dbuf(n);
    static const sgd_case sgd_cases[] = {
        {0.1f, 0.0f, 0.0f, 0.0f, 0, 0, 0.0f},  {0.1f, 0.9f, 0.0f, 0.0f, 0, 0, 0.0f},
        {0.05f, 0.9f, 0.3f, 0.0f, 0, 0, 0.0f}, {0.1f, 0.9f, 0.0f, 1e-2f, 1, 0, 0.0f},
        {0.1f, 0.5f, 0.1f, 1e-2f, 0, 1, 0.0f}, {0.1f, 0.0f, 0.0f, 5e-2f, 0, 1, 0.0f},
        {0.1f, 0.9f, 0.0f, 1e-2f, 0, 0, 0.5f}, {0.05f, 0.0f, 0.0f, 0.0f, 0, 0, 2.0f},
    };
    for (size_t ci = 0; ci < sizeof sgd_cases / sizeof sgd_cases[0]; ci++) {
        const sgd_case *c = &sgd_cases[ci];
        et_fill_random(p, n, 10 + ci, -1.0f, 1.0f);
        p[0] = 0.0f;
        for (int64_t i = 0; i < n; i++) { pd[i] = p[i]; bd[i] = 0; }
        for (int s = 0; s < steps; s++) {
            et_fill_random(g, n, 100 * ci + s, -1.0f, 1.0f);
            ET_CHECK(et_f32_sgd_update(n, p, g, c->mom != 0 ? buf : NULL, c->mu != 0 ? anc : NULL,
                                       c->lr, c->mom, c->damp, c->nesterov, c->wd, c->l1, c->mu,
                                       s == 0, 2) == ET_OK, "sgd status");
            for (int64_t i = 0; i < n; i++) {
                double gi = g[i] + (double)c->mu * (pd[i] - anc[i]);
                if (c->wd != 0) gi += (double)c->wd * (c->l1 ? (pd[i] > 0) - (pd[i] < 0) : pd[i]);
                if (c->mom != 0) {
                    bd[i] = s == 0 ? gi : c->mom * bd[i] + (1.0 - c->damp) * gi;
                    gi = c->nesterov ? gi + c->mom * bd[i] : bd[i];
                }
                pd[i] -= c->lr * gi;
            }
        }
        ET_CHECK(close_to_f64(p, pd, n, 1e-5, 1e-6, "sgd"), "sgd case %zu", ci);
    }
    static const adam_case adam_cases[] = {
        {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 0.0f},  {1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f, 0, 0.0f},
        {1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f, 1, 0.0f}, {5e-3f, 0.3f, 0.95f, 1e-6f, 0.1f, 1, 0.0f},
        {1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f, 1, 0.5f}, {1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 1.0f},
    };
    for (size_t ci = 0; ci < sizeof adam_cases / sizeof adam_cases[0]; ci++) {
        const adam_case *c = &adam_cases[ci];
        et_fill_random(p, n, 20 + ci, -1.0f, 1.0f);
        for (int64_t i = 0; i < n; i++) { pd[i] = p[i]; md[i] = vd[i] = 0; m[i] = v[i] = 0; }
        for (int s = 1; s <= steps; s++) {
            et_fill_random(g, n, 1000 * ci + s, -1.0f, 1.0f);
            ET_CHECK(et_f32_adam_update(n, p, g, m, v, c->mu != 0 ? anc : NULL, c->lr, c->b1, c->b2,
                                        c->eps, c->wd, c->decoupled, c->mu, s, 3) == ET_OK,
                     "adam status");
            const double bc1 = 1 - pow(c->b1, s), bc2 = 1 - pow(c->b2, s);
            for (int64_t i = 0; i < n; i++) {
                double gi = g[i] + (double)c->mu * (pd[i] - anc[i]);
                if (c->decoupled) pd[i] *= 1.0 - (double)c->lr * c->wd;
                else gi += (double)c->wd * pd[i];
                md[i] = c->b1 * md[i] + (1.0 - c->b1) * gi;
                vd[i] = c->b2 * vd[i] + (1.0 - c->b2) * gi * gi;
                pd[i] -= c->lr / bc1 * md[i] / (sqrt(vd[i]) / sqrt(bc2) + c->eps);
            }
        }
        ET_CHECK(close_to_f64(p, pd, n, 1e-5, 1e-6, "adam"), "adam case %zu", ci);
        ET_CHECK(close_to_f64(m, md, n, 1e-5, 1e-7, "adam m"), "adam m case %zu", ci);
        ET_CHECK(close_to_f64(v, vd, n, 1e-5, 1e-9, "adam v"), "adam v case %zu", ci);
    }
    ET_CHECK(et_f32_sgd_update(4, p, g, NULL, NULL, 0.1f, 0.9f, 0, 0, 0, 0, 0, 1, 1) == ET_ERR_ARG,
             "sgd momentum without buffer");
    ET_CHECK(et_f32_sgd_update(4, p, g, NULL, NULL, 0.1f, 0, 0, 0, 0, 0, 0.1f, 1, 1) == ET_ERR_ARG,
             "sgd prox_mu without anchor");
    ET_CHECK(et_f32_adam_update(4, p, g, m, v, NULL, 0.1f, 0.9f, 0.99f, 1e-8f, 0, 0, 0, 0, 1) == ET_ERR_ARG,
             "adam step 0");
    ET_CHECK(et_f32_adam_update(4, p, g, m, v, NULL, 0.1f, 0.9f, 0.99f, 1e-8f, 0, 0, 0.1f, 1, 1) ==
             ET_ERR_ARG, "adam prox_mu without anchor");
    free(p); free(buf); free(m); free(v); free(g); free(anc); free(pd); free(bd); free(md); free(vd);
}

/* RMSprop / Adagrad (optim_adaptive.c) against double loops in PyTorch's formulas over several
 * steps; one thread and three threads give the same bits (n above the parallel grain). */
typedef struct rms_case { float lr, alpha, eps, wd, mom; int centered; float mu; } rms_case;
typedef struct adagrad_case { float lr, lr_decay, eps, wd, init; float mu; } adagrad_case;

static void test_optim_adaptive(void) {
    const int64_t n = 40000;
    const int steps = 6;
    float *p = fbuf(n), *sq = fbuf(n), *ga = fbuf(n), *buf = fbuf(n), *g = fbuf(n), *anc = fbuf(n);
    float *p1 = fbuf(n), *sq1 = fbuf(n), *ga1 = fbuf(n), *buf1 = fbuf(n);
    double *pd = dbuf(n), *sqd = dbuf(n), *gad = dbuf(n), *bd = dbuf(n);
    et_fill_random(anc, n, 8, -1.0f, 1.0f);
    static const rms_case rms_cases[] = {
        {1e-2f, 0.99f, 1e-8f, 0.0f, 0.0f, 0, 0.0f}, {5e-3f, 0.9f, 1e-6f, 1e-2f, 0.8f, 1, 0.0f},
        {1e-2f, 0.95f, 1e-8f, 0.0f, 0.0f, 1, 0.0f}, {1e-2f, 0.99f, 1e-8f, 1e-3f, 0.9f, 0, 0.5f},
    };
    for (size_t ci = 0; ci < sizeof rms_cases / sizeof rms_cases[0]; ci++) {
        const rms_case *c = &rms_cases[ci];
        et_fill_random(p, n, 40 + ci, -1.0f, 1.0f);
        memcpy(p1, p, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) { pd[i] = p[i]; sqd[i] = gad[i] = bd[i] = 0; sq[i] = ga[i] = buf[i] = 0; }
        memset(sq1, 0, (size_t)n * sizeof(float)); memset(ga1, 0, (size_t)n * sizeof(float));
        memset(buf1, 0, (size_t)n * sizeof(float));
        for (int s = 1; s <= steps; s++) {
            et_fill_random(g, n, 2000 * ci + s, -1.0f, 1.0f);
            const float *a = c->mu != 0 ? anc : NULL;
            ET_CHECK(et_f32_rmsprop_update(n, p, g, sq, ga, buf, a, c->lr, c->alpha, c->eps, c->wd, c->mom,
                                           c->centered, c->mu, 3) == ET_OK, "rmsprop status");
            ET_CHECK(et_f32_rmsprop_update(n, p1, g, sq1, ga1, buf1, a, c->lr, c->alpha, c->eps, c->wd, c->mom,
                                           c->centered, c->mu, 1) == ET_OK, "rmsprop status 1 thread");
            for (int64_t i = 0; i < n; i++) {
                double gi = g[i] + (double)c->mu * (pd[i] - anc[i]) + (double)c->wd * pd[i];
                sqd[i] = c->alpha * sqd[i] + (1.0 - c->alpha) * gi * gi;
                double avg = sqd[i];
                if (c->centered) {
                    gad[i] = c->alpha * gad[i] + (1.0 - c->alpha) * gi;
                    avg -= gad[i] * gad[i];
                }
                avg = sqrt(avg) + c->eps;
                if (c->mom > 0) {
                    bd[i] = c->mom * bd[i] + gi / avg;
                    pd[i] -= c->lr * bd[i];
                } else {
                    pd[i] -= c->lr * gi / avg;
                }
            }
        }
        ET_CHECK(close_to_f64(p, pd, n, 1e-5, 1e-6, "rmsprop"), "rmsprop case %zu", ci);
        ET_CHECK(bitwise_equal(p, p1, n) && bitwise_equal(sq, sq1, n) && bitwise_equal(buf, buf1, n) &&
                 bitwise_equal(ga, ga1, n), "rmsprop case %zu: 1 and 3 threads differ", ci);
    }
    static const adagrad_case ada_cases[] = {
        {1e-2f, 0.0f, 1e-10f, 0.0f, 0.0f, 0.0f}, {5e-2f, 0.1f, 1e-8f, 1e-2f, 0.3f, 0.0f},
        {5e-2f, 0.0f, 1e-10f, 0.0f, 0.1f, 0.5f},
    };
    for (size_t ci = 0; ci < sizeof ada_cases / sizeof ada_cases[0]; ci++) {
        const adagrad_case *c = &ada_cases[ci];
        et_fill_random(p, n, 60 + ci, -1.0f, 1.0f);
        memcpy(p1, p, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) { pd[i] = p[i]; sqd[i] = c->init; sq[i] = sq1[i] = c->init; }
        for (int s = 1; s <= steps; s++) {
            et_fill_random(g, n, 3000 * ci + s, -1.0f, 1.0f);
            const float *a = c->mu != 0 ? anc : NULL;
            ET_CHECK(et_f32_adagrad_update(n, p, g, sq, a, c->lr, c->lr_decay, c->eps, c->wd, c->mu, s, 3) == ET_OK,
                     "adagrad status");
            ET_CHECK(et_f32_adagrad_update(n, p1, g, sq1, a, c->lr, c->lr_decay, c->eps, c->wd, c->mu, s, 1) == ET_OK,
                     "adagrad status 1 thread");
            const double clr = c->lr / (1.0 + (s - 1) * (double)c->lr_decay);
            for (int64_t i = 0; i < n; i++) {
                double gi = g[i] + (double)c->mu * (pd[i] - anc[i]) + (double)c->wd * pd[i];
                sqd[i] += gi * gi;
                pd[i] -= clr * gi / (sqrt(sqd[i]) + c->eps);
            }
        }
        ET_CHECK(close_to_f64(p, pd, n, 1e-5, 1e-6, "adagrad"), "adagrad case %zu", ci);
        ET_CHECK(bitwise_equal(p, p1, n) && bitwise_equal(sq, sq1, n), "adagrad case %zu: threads differ", ci);
    }
    ET_CHECK(et_f32_rmsprop_update(4, p, g, sq, NULL, NULL, NULL, 0.1f, 0.9f, 1e-8f, 0, 0, 1, 0, 1) == ET_ERR_ARG,
             "rmsprop centered without grad_avg");
    ET_CHECK(et_f32_rmsprop_update(4, p, g, sq, NULL, NULL, NULL, 0.1f, 0.9f, 1e-8f, 0, 0.5f, 0, 0, 1) == ET_ERR_ARG,
             "rmsprop momentum without buffer");
    ET_CHECK(et_f32_adagrad_update(4, p, g, sq, NULL, 0.1f, 0, 1e-10f, 0, 0, 0, 1) == ET_ERR_ARG, "adagrad step 0");
    /* clipping norm: fixed partition, the same bits for 1 and 4 threads, close to a long double sum */
    const int64_t sizes[] = {1, 7, 1023, 1025, 70001};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        et_fill_random(g, sizes[k] < n ? sizes[k] : n, 70 + k, -3.0f, 3.0f);
        const int64_t m = sizes[k] < n ? sizes[k] : n;
        double a = et_f32_sum_squares(m, g, 1), b = et_f32_sum_squares(m, g, 4);
        long double want = 0;
        for (int64_t i = 0; i < m; i++) want += (long double)g[i] * g[i];
        ET_CHECK(memcmp(&a, &b, sizeof a) == 0, "sum_squares n=%lld: 1 and 4 threads differ", (long long)m);
        ET_CHECK(fabs(a - (double)want) <= 1e-12 * (double)want, "sum_squares n=%lld", (long long)m);
    }
    /* accumulation: acc = s * g, then acc + s * g */
    et_fill_random(g, 5, 80, -1.0f, 1.0f);
    ET_CHECK(et_f32_grad_accumulate(5, sq, g, 0.25f, 1, 2) == ET_OK, "accumulate status");
    ET_CHECK(et_f32_grad_accumulate(5, sq, g, 0.25f, 0, 2) == ET_OK, "accumulate status");
    for (int i = 0; i < 5; i++) ET_CHECK(sq[i] == 0.5f * g[i], "accumulate %d", i);
    free(p); free(sq); free(ga); free(buf); free(g); free(anc); free(p1); free(sq1); free(ga1); free(buf1);
    free(pd); free(sqd); free(gad); free(bd);
}

/* Non-finite inputs (a fuzzed model's NaN weights reach them): NaN stays NaN, infinities
 * saturate, and no float->int conversion is undefined (regression: UBSan in exp_nonpos). */
static void test_activations_nonfinite(void) {
    const float x[4] = {NAN, INFINITY, -INFINITY, 0.0f};
    for (int isa = 0; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported((et_isa)isa)) continue;
        et_isa prev = et_get_isa();
        et_set_isa((et_isa)isa);
        float s[4], t[4];
        ET_CHECK(et_f32_act_fwd(ET_ACT_SIGMOID, 0.0f, 4, x, s, 1) == ET_OK, "sigmoid");
        ET_CHECK(et_f32_act_fwd(ET_ACT_TANH, 0.0f, 4, x, t, 1) == ET_OK, "tanh");
        ET_CHECK(isnan(s[0]) && s[1] == 1.0f && s[2] == 0.0f && s[3] == 0.5f, "sigmoid(nan, inf, -inf, 0) on %s: "
                 "%g %g %g %g", et_isa_name((et_isa)isa), s[0], s[1], s[2], s[3]);
        ET_CHECK(isnan(t[0]) && t[1] == 1.0f && t[2] == -1.0f && t[3] == 0.0f, "tanh(nan, inf, -inf, 0) on %s: "
                 "%g %g %g %g", et_isa_name((et_isa)isa), t[0], t[1], t[2], t[3]);
        et_set_isa(prev);
    }
}

void test_misc(void) {
    test_activations();
    test_activations_nonfinite();
    test_binary();
    test_batchnorm();
    test_dropout();
    test_softmax();
    test_losses();
    test_optim();
    test_optim_adaptive();
    test_batchnorm_frozen();
}
