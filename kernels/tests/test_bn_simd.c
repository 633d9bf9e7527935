/* edgetrain — tests of the BatchNorm SIMD rows (et_f32_bn_variants, batchnorm_simd.c).
 *   kernels: every supported row against the __ref row at lengths below, at, above and not
 *            divisible by the vector widths (2, 4, 8, 16), with magnitudes 1e-3..1e9 (so a
 *            changed summation order shows), the accumulators over 3 strided images, and with
 *            NaN / inf: bitwise (a NaN where __ref has
 *            a NaN; x86 and arm64 give different NaN signs, as in __ref).
 *   entry points: et_f32_batchnorm_train_fwd / _bwd / _frozen_* / _infer_fwd under et_set_isa()
 *            of each row against ET_ISA_REF, on the channel-block path (hw <= 512: planes of
 *            size 1, many channels) and the per-channel path (large planes), 1 and 3 threads:
 *            every output bitwise. The FNV hash of the outputs on finite inputs is printed: the
 *            x86 and arm64 (qemu) runs print the same hash.
 *   split rule: the training forward / backward outputs of every row at 1, 2 and 3 threads
 *            against batchnorm.c's statistics rule (image groups, their sums' order, the
 *            groups' combine) written out as plain loops, with a channel whose sums depend on
 *            the order: bitwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"
#include "norm_internal.h"

static const int64_t kLens[] = {0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 1000, 4097};
#define NLENS ((int)(sizeof kLens / sizeof kLens[0]))

/* Same bits, or both NaN. */
static int same_f(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

static int same_d(const double *a, const double *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(double)) != 0 && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

static uint64_t fnv_mix(uint64_t h, const void *a, size_t bytes) {
    const unsigned char *p = (const unsigned char *)a;
    for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* Inputs with magnitudes 1e-3..1e9 (order-sensitive double sums); special != 0 adds NaN / inf. */
static void fill_bn(float *x, int64_t n, uint64_t seed, int special) {
    et_fill_random(x, n, seed, -1.0f, 3.0f);
    for (int64_t j = 0; j < n; j++) {
        const float m = (j % 3 == 0) ? 1e9f : ((j % 3 == 1) ? -7e8f : 1e-3f);
        if (j % 5 < 2) x[j] *= m;
    }
    if (special && n > 5) x[5] = NAN;
    if (special && n > 9) x[9] = INFINITY;
    if (special && n > 12) x[n - 2] = -INFINITY;
}

static void test_bn_kernels(void) {
    const int64_t nmax = 4097;
    float *x = calloc(nmax, 4), *g = calloc(nmax, 4), *a = calloc(nmax, 4), *s = calloc(nmax, 4);
    float *mf = calloc(nmax, 4), *pr = calloc(nmax, 4), *y = calloc(nmax, 4), *yv = calloc(nmax, 4);
    double *md = calloc(nmax, 8), *acc = calloc(nmax, 8), *accv = calloc(nmax, 8);
    double *acc2 = calloc(nmax, 8), *acc2v = calloc(nmax, 8);
    float *xi = calloc(3 * (nmax + 5), 4), *gi = calloc(3 * (nmax + 5), 4);
    float *fq[2] = {calloc(5 * nmax, 4), calloc(5 * nmax, 4)};
    const et_f32_bn_variant *ref = &et_f32_bn_variants[0];
    et_check_variant_table("batchnorm", et_f32_bn_variants, sizeof et_f32_bn_variants[0]);
    for (int sp = 0; sp < 2; sp++)
        for (int li = 0; li < NLENS; li++) {
            const int64_t n = kLens[li];
            fill_bn(x, n, 700 + li, sp);
            fill_bn(g, n, 800 + li, sp && n > 20);
            et_fill_random(a, n, 900 + li, -2.0f, 2.0f);
            et_fill_random(s, n, 1000 + li, -2.0f, 2.0f);
            et_fill_random(mf, n, 1100 + li, -1e3f, 1e3f);
            et_fill_random(pr, n, 1200 + li, -1.0f, 1.0f);
            for (int64_t j = 0; j < n; j++) md[j] = (double)mf[j] * 1.0000001;
            for (const et_f32_bn_variant *row = ref + 1; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                const char *nm = row->head.name;
                double r = ref->plane_sum(n, x), v = row->plane_sum(n, x);
                ET_CHECK(same_d(&r, &v, 1), "bn plane_sum %s n=%lld sp=%d", nm, (long long)n, sp);
                r = ref->plane_dev(n, x, NULL, 12.5), v = row->plane_dev(n, x, NULL, 12.5);
                ET_CHECK(same_d(&r, &v, 1), "bn plane_dev sq %s n=%lld sp=%d", nm, (long long)n, sp);
                r = ref->plane_dev(n, x, g, -3.25), v = row->plane_dev(n, x, g, -3.25);
                ET_CHECK(same_d(&r, &v, 1), "bn plane_dev dy %s n=%lld sp=%d", nm, (long long)n, sp);
                double rs, rd, vs, vd;
                ref->plane_bwd(n, x, g, -3.25, &rs, &rd);
                row->plane_bwd(n, x, g, -3.25, &vs, &vd);
                ET_CHECK(same_d(&rs, &vs, 1) && same_d(&rd, &vd, 1), "bn plane_bwd %s n=%lld sp=%d",
                         nm, (long long)n, sp);
                r = ref->plane_sum(n, g);
                ET_CHECK(same_d(&rs, &r, 1), "bn plane_bwd sum = plane_sum %s", nm);
                ref->affine(n, x, 0.37f, -1.5f, y);
                row->affine(n, x, 0.37f, -1.5f, yv);
                ET_CHECK(same_f(y, yv, n), "bn affine %s n=%lld sp=%d", nm, (long long)n, sp);
                ref->affine_v(n, x, a, s, y);
                row->affine_v(n, x, a, s, yv);
                ET_CHECK(same_f(y, yv, n), "bn affine_v %s n=%lld sp=%d", nm, (long long)n, sp);
                ref->dx(n, x, g, 0.25f, 1.5f, -3e-4f, 0.8f, y);
                row->dx(n, x, g, 0.25f, 1.5f, -3e-4f, 0.8f, yv);
                ET_CHECK(same_f(y, yv, n), "bn dx %s n=%lld sp=%d", nm, (long long)n, sp);
                ref->dx_v(n, x, g, s, mf, pr, a, y);
                row->dx_v(n, x, g, s, mf, pr, a, yv);
                ET_CHECK(same_f(y, yv, n), "bn dx_v %s n=%lld sp=%d", nm, (long long)n, sp);
                /* accumulators over 3 images (stride n + 5, x and g as images), twice from
                 * the same start */
                const int64_t is = n + 5;
                for (int64_t j = 0; j < 3 * is; j++) {
                    xi[j] = x[j % (n ? n : 1)] * (float)(1 + j / is);
                    gi[j] = g[j % (n ? n : 1)] * (float)(3 - j / is);
                }
                for (int64_t j = 0; j < n; j++) acc[j] = accv[j] = acc2[j] = acc2v[j] = 0.1 * j;
                for (int k = 0; k < 2; k++) {
                    ref->acc_sum(3, is, n, xi, acc);
                    row->acc_sum(3, is, n, xi, accv);
                }
                ET_CHECK(same_d(acc, accv, n), "bn acc_sum %s n=%lld sp=%d", nm, (long long)n, sp);
                for (int k = 0; k < 2; k++) {
                    ref->acc_sqdev(3, is, n, xi, md, acc);
                    row->acc_sqdev(3, is, n, xi, md, accv);
                }
                ET_CHECK(same_d(acc, accv, n), "bn acc_sqdev %s n=%lld sp=%d", nm, (long long)n, sp);
                for (int k = 0; k < 2; k++) {
                    ref->acc_bwd(3, is, n, xi, gi, mf, acc, acc2);
                    row->acc_bwd(3, is, n, xi, gi, mf, accv, acc2v);
                }
                ET_CHECK(same_d(acc, accv, n) && same_d(acc2, acc2v, n), "bn acc_bwd %s n=%lld sp=%d",
                         nm, (long long)n, sp);
                /* the per-channel factors (n channels): md as sums / means, acc2 (>= 0 but
                 * for sp's NaN / inf) as M2 / var and dots, x's magnitudes as gamma and beta,
                 * pr as invstd; with and without gamma / beta / dgamma / dbeta, frozen */
                for (int64_t j = 0; j < n; j++) acc2[j] = (double)g[j] * (double)g[j] * 1e-3;
                for (int dv = 0; dv < 3; dv++) { /* the SIMD rows multiply by 1/32, 1/0.25 */
                    const double d = dv == 0 ? 3.0 : (dv == 1 ? 32.0 : 0.25);
                    ref->div(n, md, d, acc);
                    row->div(n, md, d, accv);
                    ET_CHECK(same_d(acc, accv, n), "bn div %s n=%lld sp=%d d=%g", nm, (long long)n,
                             sp, d);
                }
                for (int wg = 0; wg < 2; wg++) {
                    const float *ga = wg ? x : NULL, *be = wg ? g : NULL;
                    ref->fwd_factors(n, md, acc2, 1e-5, ga, be, acc, y, a);
                    row->fwd_factors(n, md, acc2, 1e-5, ga, be, accv, yv, s);
                    ET_CHECK(same_d(acc, accv, n) && same_f(y, yv, n) && same_f(a, s, n),
                             "bn fwd_factors %s n=%lld sp=%d gamma=%d", nm, (long long)n, sp, wg);
                    for (int fr = 0; fr < 3; fr++) { /* 2: not frozen, count 128 */
                        float *o[2][5];
                        for (int v = 0; v < 2; v++)
                            for (int e = 0; e < 5; e++) o[v][e] = fq[v] + e * nmax;
                        const double cnt = fr == 2 ? 128.0 : 7.0;
                        ref->bwd_factors(n, md, acc2, cnt, pr, ga, fr == 1, wg ? o[0][0] : NULL,
                                         wg ? o[0][1] : NULL, o[0][2], o[0][3], o[0][4]);
                        row->bwd_factors(n, md, acc2, cnt, pr, ga, fr == 1, wg ? o[1][0] : NULL,
                                         wg ? o[1][1] : NULL, o[1][2], o[1][3], o[1][4]);
                        int ok = 1;
                        for (int e = wg ? 0 : 2; e < 5; e++) ok = ok && same_f(o[0][e], o[1][e], n);
                        ET_CHECK(ok, "bn bwd_factors %s n=%lld sp=%d gamma=%d frozen=%d", nm,
                                 (long long)n, sp, wg, fr);
                    }
                }
            }
        }
    free(x); free(g); free(a); free(s); free(mf); free(pr); free(y); free(yv);
    free(xi); free(gi); free(md); free(acc); free(accv); free(acc2); free(acc2v);
    free(fq[0]); free(fq[1]);
}

/* All outputs of the training forward / backward, frozen and eval passes of one shape. */
typedef struct bn_outs {
    float *y, *dx, *fy, *fdx, *ey;
    float sm[4][1024], rs[4][1024];
} bn_outs;

static void run_all(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy,
                    const float *gamma, const float *beta, int nt, bn_outs *o) {
    float *rm = o->rs[0], *rv = o->rs[1], *dg = o->rs[2], *db = o->rs[3];
    for (int64_t k = 0; k < c; k++) rm[k] = 0.1f * (float)k, rv[k] = 1.0f + 0.01f * (float)k;
    ET_CHECK(et_f32_batchnorm_train_fwd(n, c, hw, x, gamma, beta, rm, rv, 0.1f, 1e-5f, o->y,
                                        o->sm[0], o->sm[1], nt) == ET_OK, "bn train_fwd status");
    ET_CHECK(et_f32_batchnorm_bwd(n, c, hw, x, dy, gamma, o->sm[0], o->sm[1], o->dx, dg, db, nt)
                 == ET_OK, "bn bwd status");
    ET_CHECK(et_f32_batchnorm_frozen_fwd(n, c, hw, x, gamma, beta, rm, rv, 1e-5f, o->fy, o->sm[2],
                                         o->sm[3], nt) == ET_OK, "bn frozen_fwd status");
    ET_CHECK(et_f32_batchnorm_frozen_bwd(n, c, hw, x, dy, gamma, o->sm[2], o->sm[3], o->fdx, dg,
                                         db, nt) == ET_OK, "bn frozen_bwd status");
    ET_CHECK(et_f32_batchnorm_infer_fwd(n, c, hw, x, gamma, beta, rm, rv, 1e-5f, o->ey, nt)
                 == ET_OK, "bn infer status");
}

static int same_outs(const bn_outs *a, const bn_outs *b, int64_t total, int64_t c) {
    int ok = same_f(a->y, b->y, total) && same_f(a->dx, b->dx, total) &&
             same_f(a->fy, b->fy, total) && same_f(a->fdx, b->fdx, total) &&
             same_f(a->ey, b->ey, total);
    for (int k = 0; k < 4; k++) ok = ok && same_f(a->sm[k], b->sm[k], c) && same_f(a->rs[k], b->rs[k], c);
    return ok;
}

static void test_bn_entry(void) {
    /* (n, c, hw): blocked path (hw <= 512) incl. planes of size 1 and many channels, then the
     * per-channel path (hw > 512), sizes off the vector widths */
    static const int64_t shapes[][3] = {{7, 3, 1},   {2, 1000, 1}, {3, 300, 3},  {4, 5, 7},
                                        {3, 9, 8},   {2, 17, 9},   {5, 6, 33},   {3, 4, 100},
                                        {2, 3, 512}, {2, 3, 513},  {3, 2, 784},  {2, 5, 1031},
                                        {1, 2, 4097}};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    const int64_t maxt = 2 * 5 * 1031 > 3 * 300 * 3 ? 2 * 5 * 1031 : 3 * 300 * 3;
    float *x = calloc(maxt, 4), *dy = calloc(maxt, 4), gamma[1024], beta[1024];
    bn_outs *o[2];
    for (int k = 0; k < 2; k++) {
        o[k] = calloc(1, sizeof(bn_outs));
        o[k]->y = calloc(maxt, 4), o[k]->dx = calloc(maxt, 4), o[k]->fy = calloc(maxt, 4);
        o[k]->fdx = calloc(maxt, 4), o[k]->ey = calloc(maxt, 4);
    }
    const et_isa best = et_get_isa();
    uint64_t h = 1469598103934665603ULL;
    for (int sp = 0; sp < 2; sp++)
        for (int si = 0; si < nshapes; si++) {
            const int64_t n = shapes[si][0], c = shapes[si][1], hw = shapes[si][2], t = n * c * hw;
            et_fill_random(x, t, 1300 + si, -2.0f, 5.0f);
            et_fill_random(dy, t, 1400 + si, -1.0f, 1.0f);
            for (int64_t j = 0; j < t; j += 7) x[j] *= 1e4f; /* order-sensitive sums */
            et_fill_random(gamma, c, 1500 + si, 0.5f, 1.5f);
            et_fill_random(beta, c, 1600 + si, -0.5f, 0.5f);
            if (sp) { /* NaN / inf in channel 0 (and in dy of the last channel) */
                x[0] = NAN;
                if (t > 2) x[t - 1] = INFINITY;
                dy[t / 2] = -INFINITY;
            }
            et_set_isa(ET_ISA_REF);
            run_all(n, c, hw, x, dy, gamma, beta, 1, o[0]);
            if (!sp) { /* finite inputs (the default NaN's sign differs between x86 and arm64) */
                h = fnv_mix(h, o[0]->y, (size_t)t * 4);
                h = fnv_mix(h, o[0]->dx, (size_t)t * 4);
                h = fnv_mix(h, o[0]->sm, sizeof o[0]->sm);
                h = fnv_mix(h, o[0]->rs, sizeof o[0]->rs);
            }
            for (const et_f32_bn_variant *row = et_f32_bn_variants; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                et_set_isa(row->head.isa);
                for (int nt = 1; nt <= 3; nt += 2) {
                    run_all(n, c, hw, x, dy, gamma, beta, nt, o[1]);
                    ET_CHECK(same_outs(o[0], o[1], t, c), "bn entry %s [%lld,%lld,%lld] t%d sp=%d",
                             row->head.name, (long long)n, (long long)c, (long long)hw, nt, sp);
                }
            }
        }
    et_set_isa(best);
    printf("  batchnorm outputs fnv %016llx (equal on x86 and arm64)\n", (unsigned long long)h);
    free(x); free(dy);
    for (int k = 0; k < 2; k++) {
        free(o[k]->y); free(o[k]->dx); free(o[k]->fy); free(o[k]->fdx); free(o[k]->ey); free(o[k]);
    }
}


/* ---- the split rule, written out as plain loops -------------------------------------------
 * batchnorm.c's statistics: per image group (et_f32_bn_groups), each channel's sums over the
 * group's images (planes <= 512: per-element double accumulators over the images, then the
 * plane_sum order over the plane; larger planes: plane_sum / plane_dev per plane in image
 * order), the forward's squared deviations from the group's mean S_g / n_g, combined
 * over the groups in order (mean = sum S_g / count, var = sum (M2_g + n_g d_g^2) / count).
 * The outputs must equal these loops bit for bit on every row and thread count (the old split
 * by channel blocks summed each element over all images at once: other bits). */
static double rule_lanes(const double *l, double tail) {
    return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7])) + tail;
}

/* v[0..len) in plane_sum's order (from +0 in order below 8) */
static double rule_sum(const double *v, int64_t len) {
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0.0;
    int64_t j = 0;
    if (len < 8) {
        for (; j < len; j++) tail += v[j];
        return tail;
    }
    for (; j + 8 <= len; j += 8)
        for (int r = 0; r < 8; r++) l[r] += v[j + r];
    for (; j < len; j++) tail += v[j];
    return rule_lanes(l, tail);
}

/* one plane's plane_dev (dy NULL: (x - m)^2, else dy * (x - m)): the tail into lane 0 */
static double rule_dev(const float *x, const float *dy, int64_t hw, double m) {
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= hw; j += 8)
        for (int r = 0; r < 8; r++) {
            const double d = (double)x[j + r] - m;
            l[r] += dy ? (double)dy[j + r] * d : d * d;
        }
    for (; j < hw; j++) {
        const double d = (double)x[j] - m;
        l[0] += dy ? (double)dy[j] * d : d * d;
    }
    return rule_lanes(l, 0.0);
}

/* Group g's sums of channel ch: what = 0: x (forward S), 1: (x - m)^2, 2: dy, 3: dy * (x - m) */
static double rule_group(const float *x, const float *dy, int64_t c, int64_t hw, int64_t ch,
                         int64_t i0, int64_t i1, int what, double m, double *acc, double *pl) {
    const int64_t is = c * hw;
    if (hw > 512) {
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++) {
            const float *xp = x + i * is + ch * hw, *gp = dy ? dy + i * is + ch * hw : NULL;
            if (what == 0 || what == 2) {
                const float *v = what == 0 ? xp : gp;
                for (int64_t j = 0; j < hw; j++) pl[j] = (double)v[j];
                double l[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0.0;
                int64_t j = 0;
                for (; j + 8 <= hw; j += 8)
                    for (int r = 0; r < 8; r++) l[r] += pl[j + r];
                for (; j < hw; j++) tail += pl[j];
                s += rule_lanes(l, tail);
            } else {
                s += rule_dev(xp, what == 3 ? gp : NULL, hw, m);
            }
        }
        return s;
    }
    for (int64_t j = 0; j < hw; j++) acc[j] = 0.0;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = 0; j < hw; j++) {
            const int64_t e = i * is + ch * hw + j;
            const double d = (double)x[e] - m;
            acc[j] += what == 0 ? (double)x[e] : what == 1 ? d * d
                    : what == 2 ? (double)dy[e] : (double)dy[e] * d;
        }
    return rule_sum(acc, hw);
}

/* Cases (n, c, hw, act, affine): the shapes below with no act and gamma / beta, then the small
 * planes of MobileNetV2's head and off the vector widths (hw 1, 2, 4, 9, 16; c 37, 576, 960;
 * n 1, 3, 32) with relu, relu6 and none, without gamma / beta for one act in three. */
#define RULE_MAX_CASES 200
static int rule_cases(int64_t (*cs)[5]) {
    /* (n, c, hw): one group (hw < 16, or one image; one image above 512: the grid's one-group
     * path), two groups (even and odd n, planes at and off the lane width, above 512: the plane
     * path; 1100 channels: two slabs), serial and parallel sizes */
    static const int64_t shapes[][3] = {{7, 3, 1},   {32, 300, 1}, {5, 40, 4},  {1, 9, 100},
                                        {1, 3, 600}, {2, 5, 16},   {5, 40, 64}, {3, 7, 33},
                                        {32, 24, 16}, {4, 3, 513}, {3, 5, 1031}, {2, 1100, 16}};
    static const int64_t hws[] = {1, 2, 4, 9, 16}, cs_[] = {37, 576, 960}, ns[] = {1, 3, 32};
    static const et_act acts[] = {ET_ACT_RELU6, ET_ACT_RELU, ET_ACT_NONE};
    int k = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++, k++) {
        cs[k][0] = shapes[i][0], cs[k][1] = shapes[i][1], cs[k][2] = shapes[i][2];
        cs[k][3] = ET_ACT_NONE, cs[k][4] = 1;
    }
    int r = 0;
    for (int h = 0; h < 5; h++)
        for (int ci = 0; ci < 3; ci++)
            for (int ni = 0; ni < 3; ni++, r++) {
                if (ns[ni] * hws[h] <= 1) continue; /* one value per channel: ET_ERR_SHAPE */
                cs[k][0] = ns[ni], cs[k][1] = cs_[ci], cs[k][2] = hws[h];
                cs[k][3] = acts[r % 3], cs[k][4] = r % 4 != 3;
                k++;
            }
    return k;
}

static void test_bn_rule(void) {
    static int64_t cases[RULE_MAX_CASES][5];
    const int nshapes = rule_cases(cases);
    const int64_t maxt = 32 * 960 * 16, maxc = 1100;
    float *x = calloc(maxt, 4), *dy = calloc(maxt, 4), *y = calloc(maxt, 4), *dx = calloc(maxt, 4);
    float *ry = calloc(maxt, 4), *rdx = calloc(maxt, 4), *gamma = calloc(maxc, 4);
    float *beta = calloc(maxc, 4), *rm = calloc(maxc, 4), *rv = calloc(maxc, 4);
    float *sm = calloc(maxc, 4), *si = calloc(maxc, 4), *dg = calloc(maxc, 4), *db = calloc(maxc, 4);
    float *rrm = calloc(maxc, 4), *rrv = calloc(maxc, 4), *rsm = calloc(maxc, 4);
    float *rsi = calloc(maxc, 4), *rdg = calloc(maxc, 4), *rdb = calloc(maxc, 4);
    double *acc = calloc(1031, 8), *pl = calloc(1031, 8);
    float *gmk = calloc(maxt, 4);
    const et_isa best = et_get_isa();
    for (int si_ = 0; si_ < nshapes; si_++) {
        const int64_t n = cases[si_][0], c = cases[si_][1], hw = cases[si_][2], t = n * c * hw;
        const et_act act = (et_act)cases[si_][3];
        const int affine = (int)cases[si_][4];
        const int64_t groups = et_f32_bn_groups(n, hw), count = n * hw;
        fill_bn(x, t, 2100 + si_, 0); /* magnitudes 1e-3..1e9 */
        fill_bn(dy, t, 2200 + si_, 0);
        /* channel 0, where the order of the sums shows in save_mean and dbeta: image 0 holds
         * 1e17, the first image of the second group -1e17 (the middle one with one group),
         * the others 1: 1e17 + 1 rounds to 1e17, so summing each group first loses the ones
         * the order over all images keeps */
        int64_t h0 = n / 2, h1;
        if (groups > 1) et_thread_range(n, 1, (int)groups, &h0, &h1);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                const float v = i == 0 ? 1e17f : (i == h0 ? -1e17f : 1.0f);
                x[i * c * hw + j] = dy[i * c * hw + j] = v;
            }
        /* without an affine the kernels take NULL and the rule 1 / 0 */
        et_fill_random(gamma, c, 2300 + si_, affine ? 0.5f : 1.0f, affine ? 1.5f : 1.0f);
        et_fill_random(beta, c, 2400 + si_, affine ? -0.5f : 0.0f, affine ? 0.5f : 0.0f);
        beta[0] = 0.0f;
        ET_CHECK(groups >= 1 && groups <= n, "bn groups %lld of %lld images", (long long)groups,
                 (long long)n);
        for (int64_t ch = 0; ch < c; ch++) { /* the rule: forward, then backward */
            double sg[64], m2g[64], ng[64], s = 0.0, m2 = 0.0;
            for (int64_t g = 0; g < groups; g++) {
                int64_t i0, i1;
                et_thread_range(n, (int)g, (int)groups, &i0, &i1);
                ng[g] = (double)((i1 - i0) * hw);
                sg[g] = rule_group(x, NULL, c, hw, ch, i0, i1, 0, 0.0, acc, pl);
                m2g[g] = rule_group(x, NULL, c, hw, ch, i0, i1, 1, sg[g] / ng[g], acc, pl);
                s += sg[g];
            }
            const double mean = s / (double)count;
            for (int64_t g = 0; g < groups; g++) {
                const double d = sg[g] / ng[g] - mean;
                m2 += m2g[g] + ng[g] * d * d;
            }
            const double var = m2 / (double)count, invstd = 1.0 / sqrt(var + (double)1e-5f);
            const double alpha = invstd * (double)gamma[ch];
            const float fa = (float)alpha, fs = (float)((double)beta[ch] - mean * alpha);
            rsm[ch] = (float)mean, rsi[ch] = (float)invstd;
            const double mom = (double)0.1f, unbias = (double)count / (double)(count - 1);
            rrm[ch] = (float)((1.0 - mom) * 0.0 + mom * mean);
            rrv[ch] = (float)((1.0 - mom) * 1.0 + mom * var * unbias);
            /* y through the act; the backward's dy masked from that y (act_bwd) */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < hw; j++) {
                    const int64_t e = (i * c + ch) * hw + j;
                    ry[e] = x[e] * fa + fs;
                    if (act == ET_ACT_RELU6) ry[e] = ry[e] <= 0.0f ? 0.0f : (ry[e] >= 6.0f ? 6.0f : ry[e]);
                    if (act == ET_ACT_RELU) ry[e] = ry[e] < 0.0f ? 0.0f : ry[e];
                    const int drop = act == ET_ACT_NONE ? 0
                                     : (ry[e] <= 0.0f || (act == ET_ACT_RELU6 && ry[e] >= 6.0f));
                    gmk[e] = drop ? 0.0f : dy[e];
                }
            double sum = 0.0, dot = 0.0;
            for (int64_t g = 0; g < groups; g++) {
                int64_t i0, i1;
                et_thread_range(n, (int)g, (int)groups, &i0, &i1);
                sum += rule_group(x, gmk, c, hw, ch, i0, i1, 2, 0.0, acc, pl);
                dot += rule_group(x, gmk, c, hw, ch, i0, i1, 3, (double)rsm[ch], acc, pl);
            }
            const double isd = (double)rsi[ch];
            rdg[ch] = (float)(dot * isd), rdb[ch] = (float)sum;
            const float gm = (float)(sum / (double)count);
            const float pr = (float)(dot * isd * isd / (double)count);
            const float gs = (float)(isd * (double)gamma[ch]);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < hw; j++) {
                    const int64_t e = (i * c + ch) * hw + j;
                    rdx[e] = (gmk[e] - gm - (x[e] - rsm[ch]) * pr) * gs;
                }
        }
        for (const et_f32_bn_variant *row = et_f32_bn_variants; row->head.name; row++) {
            if (!et_isa_supported(row->head.isa)) continue;
            et_set_isa(row->head.isa);
            for (int nt = 1; nt <= 3; nt++) {
                for (int64_t k = 0; k < c; k++) rm[k] = 0.0f, rv[k] = 1.0f;
                const float *ga = affine ? gamma : NULL, *be = affine ? beta : NULL;
                ET_CHECK(et_f32_batchnorm_train_act_fwd(n, c, hw, x, ga, be, rm, rv, 0.1f, 1e-5f,
                                                        act, y, sm, si, nt) == ET_OK,
                         "bn rule fwd status");
                ET_CHECK(et_f32_batchnorm_act_bwd(n, c, hw, x, y, dy, act, ga, sm, si, dx, dg, db,
                                                  nt) == ET_OK, "bn rule bwd status");
                ET_CHECK(same_f(y, ry, t) && same_f(sm, rsm, c) && same_f(si, rsi, c) &&
                             same_f(rm, rrm, c) && same_f(rv, rrv, c),
                         "bn rule fwd %s [%lld,%lld,%lld] act %d affine %d t%d", row->head.name,
                         (long long)n, (long long)c, (long long)hw, (int)act, affine, nt);
                ET_CHECK(same_f(dx, rdx, t) && same_f(dg, rdg, c) && same_f(db, rdb, c),
                         "bn rule bwd %s [%lld,%lld,%lld] act %d affine %d t%d", row->head.name,
                         (long long)n, (long long)c, (long long)hw, (int)act, affine, nt);
            }
        }
    }
    et_set_isa(best);
    free(x); free(dy); free(y); free(dx); free(ry); free(rdx); free(gamma); free(beta);
    free(rm); free(rv); free(sm); free(si); free(dg); free(db); free(rrm); free(rrv);
    free(rsm); free(rsi); free(rdg); free(rdb); free(acc); free(pl); free(gmk);
}

void test_bn_simd(void) {
    test_bn_kernels();
    test_bn_entry();
    test_bn_rule();
}
