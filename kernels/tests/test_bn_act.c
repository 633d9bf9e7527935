/* edgetrain — tests of BatchNorm training with a fused relu / relu6 (batchnorm_train /
 * batchnorm_bwd's act; batchnorm.c, batchnorm_simd.c).
 *   kernels: the __ref row's fused kernels against the unfused composition (the plain kernel
 *            after et_f32_act_fwd, or on et_f32_act_bwd's masked dy), and every other row the
 *            CPU runs against __ref, at lengths below, at, above and not divisible by the
 *            vector widths, with t / affine outputs at the act's edges (+-0, 6, NaN, +-inf,
 *            denormals): bitwise.
 *   entry points: et_f32_batchnorm_train_act_fwd / et_f32_batchnorm_act_bwd under each row's
 *            ISA at 1, 2 and 3 threads against the unfused program (batchnorm_train_fwd then
 *            act_fwd; act_bwd then batchnorm_bwd) at __ref on 1 thread, act none / relu /
 *            relu6, on the channel-block path (c = 1, hw = 1, odd sizes) and the per-channel
 *            path (hw > 512): every output bitwise. The FNV hash of the fused outputs on finite
 *            inputs is printed: the x86 and arm64 (qemu) runs print the same hash.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"
#include "norm_internal.h"

static const int64_t kLens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 1001};
#define NLENS ((int)(sizeof kLens / sizeof kLens[0]))
static const et_act kActs[] = {ET_ACT_RELU, ET_ACT_RELU6};

/* Same bits, or both NaN (x86 and arm64 differ in the default NaN's sign). */
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

/* Values at the edges of relu / relu6 (and some random ones between them). */
static void fill_edges(float *v, int64_t n, uint64_t seed) {
    static const float edges[] = {0.0f, -0.0f, 6.0f, 5.9999995f, 6.0000005f, 1e-40f, -1e-40f,
                                  3.0f, -2.5f, 7.0f, INFINITY, -INFINITY};
    et_fill_random(v, n, seed, -3.0f, 9.0f);
    for (int64_t j = 0; j < n; j++)
        if (j % 3 != 2) v[j] = edges[(j * 5 + (int64_t)seed) % 12];
    if (n > 6) v[6] = NAN;
}

static void test_bn_act_kernels(void) {
    const int64_t nmax = 1001, is = nmax + 3;
    float *x = calloc(nmax, 4), *g = calloc(nmax, 4), *t = calloc(nmax, 4), *gm = calloc(nmax, 4);
    float *a = calloc(nmax, 4), *s = calloc(nmax, 4), *mf = calloc(nmax, 4), *pr = calloc(nmax, 4);
    float *y = calloc(nmax, 4), *yv = calloc(nmax, 4);
    float *xi = calloc(3 * is, 4), *gi = calloc(3 * is, 4), *ti = calloc(3 * is, 4);
    float *gmi = calloc(3 * is, 4);
    double *acc = calloc(nmax, 8), *acc2 = calloc(nmax, 8), *accv = calloc(nmax, 8);
    double *acc2v = calloc(nmax, 8);
    const et_f32_bn_variant *ref = &et_f32_bn_variants[0];
    for (int ai = 0; ai < 2; ai++)
        for (int li = 0; li < NLENS; li++) {
            const et_act act = kActs[ai];
            const int64_t n = kLens[li];
            const char *an = act == ET_ACT_RELU ? "relu" : "relu6";
            et_fill_random(x, n, 100 + li, -8.0f, 14.0f);
            for (int64_t j = 0; j < n; j += 4) x[j] = (j / 4) % 2 ? 6.0f : -0.0f;
            fill_edges(t, n, 200 + li);
            et_fill_random(g, n, 300 + li, -2.0f, 2.0f);
            for (int64_t j = 0; j < n; j += 5) g[j] *= 1e7f; /* order-sensitive sums */
            if (n > 9) g[9] = -0.0f;
            et_fill_random(a, n, 400 + li, -2.0f, 2.0f);
            et_fill_random(s, n, 500 + li, -2.0f, 2.0f);
            for (int64_t j = 0; j < n; j += 4) a[j] = 1.0f, s[j] = -0.0f; /* x's edges kept */
            et_fill_random(mf, n, 600 + li, -1.0f, 1.0f);
            et_fill_random(pr, n, 700 + li, -1.0f, 1.0f);
            ET_CHECK(et_f32_act_bwd(act, 0.0f, n, t, g, gm, 1) == ET_OK, "act_bwd status");
            for (const et_f32_bn_variant *row = ref; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                const char *nm = row->head.name;
                /* forward: the affine (scalar and per element factors; a = 1, s = +-0 puts x's
                 * edges, -0 included, on the act's edges) then act */
                const float fa[3] = {1.0f, 1.0f, 0.37f}, fs[3] = {0.0f, -0.0f, -1.5f};
                for (int k = 0; k < 3; k++) {
                    ref->affine(n, x, fa[k], fs[k], y);
                    ET_CHECK(et_f32_act_fwd(act, 0.0f, n, y, y, 1) == ET_OK, "act_fwd status");
                    row->affine_act(n, x, fa[k], fs[k], act, yv);
                    ET_CHECK(same_f(y, yv, n), "bn affine_act %s %s n=%lld k=%d", nm, an,
                             (long long)n, k);
                }
                ref->affine_v(n, x, a, s, y);
                ET_CHECK(et_f32_act_fwd(act, 0.0f, n, y, y, 1) == ET_OK, "act_fwd status");
                row->affine_v_act(n, x, a, s, act, yv);
                ET_CHECK(same_f(y, yv, n), "bn affine_v_act %s %s n=%lld", nm, an, (long long)n);
                /* backward: the unmasked __ref kernels on act_bwd's dy */
                ref->dx(n, x, gm, 0.25f, 1.5f, -3e-4f, 0.8f, y);
                row->dx_m(n, x, g, t, act, 0.25f, 1.5f, -3e-4f, 0.8f, yv);
                ET_CHECK(same_f(y, yv, n), "bn dx_m %s %s n=%lld", nm, an, (long long)n);
                ref->dx_v(n, x, gm, s, mf, pr, a, y);
                row->dx_v_m(n, x, g, t, act, s, mf, pr, a, yv);
                ET_CHECK(same_f(y, yv, n), "bn dx_v_m %s %s n=%lld", nm, an, (long long)n);
                double rs, rd, vs, vd;
                ref->plane_bwd(n, x, gm, -0.25, &rs, &rd);
                row->plane_bwd_m(n, x, g, t, act, -0.25, &vs, &vd);
                ET_CHECK(same_d(&rs, &vs, 1) && same_d(&rd, &vd, 1), "bn plane_bwd_m %s %s n=%lld",
                         nm, an, (long long)n);
                /* accumulators over 3 strided images, twice from the same start */
                for (int64_t j = 0; j < 3 * is; j++) {
                    const int64_t e = j % (n ? n : 1);
                    xi[j] = x[e] * (float)(1 + j / is);
                    gi[j] = g[e] * (float)(3 - j / is);
                    ti[j] = t[(e + j / is) % (n ? n : 1)];
                }
                ET_CHECK(et_f32_act_bwd(act, 0.0f, 3 * is, ti, gi, gmi, 1) == ET_OK, "act_bwd");
                for (int64_t j = 0; j < n; j++) acc[j] = accv[j] = acc2[j] = acc2v[j] = 0.1 * j;
                for (int k = 0; k < 2; k++) {
                    ref->acc_bwd(3, is, n, xi, gmi, mf, acc, acc2);
                    row->acc_bwd_m(3, is, n, xi, gi, ti, act, mf, accv, acc2v);
                }
                ET_CHECK(same_d(acc, accv, n) && same_d(acc2, acc2v, n),
                         "bn acc_bwd_m %s %s n=%lld", nm, an, (long long)n);
                for (int64_t j = 0; j < n; j++) accv[j] = acc2v[j] = 0.1 * j;
                for (int k = 0; k < 2; k++)
                    row->acc_bwd_mr(3, is, n, xi, gi, ti, act, mf, accv, acc2v);
                ET_CHECK(same_d(acc, accv, n) && same_d(acc2, acc2v, n),
                         "bn acc_bwd_mr %s %s n=%lld", nm, an, (long long)n);
            }
        }
    free(x); free(g); free(t); free(gm); free(a); free(s); free(mf); free(pr); free(y); free(yv);
    free(xi); free(gi); free(ti); free(gmi); free(acc); free(acc2); free(accv); free(acc2v);
}

/* The outputs of one training forward + backward. */
typedef struct bn_act_outs {
    float *y, *dx;
    float sm[2][1024], rs[4][1024];
} bn_act_outs;

/* fused: the act inside the BatchNorm kernels, else batchnorm then act_fwd / act_bwd then
 * batchnorm_bwd (scratch: the unfused program's intermediate). */
static void run_fb(int fused, et_act act, int64_t n, int64_t c, int64_t hw, const float *x,
                   const float *dy, const float *gamma, const float *beta, int nt, float *scratch,
                   bn_act_outs *o) {
    float *rm = o->rs[0], *rv = o->rs[1], *dg = o->rs[2], *db = o->rs[3];
    const int64_t total = n * c * hw;
    for (int64_t k = 0; k < c; k++) rm[k] = 0.1f * (float)k, rv[k] = 1.0f + 0.01f * (float)k;
    if (fused) {
        ET_CHECK(et_f32_batchnorm_train_act_fwd(n, c, hw, x, gamma, beta, rm, rv, 0.1f, 1e-5f, act,
                                                o->y, o->sm[0], o->sm[1], nt) == ET_OK,
                 "bn train_act_fwd status");
        ET_CHECK(et_f32_batchnorm_act_bwd(n, c, hw, x, o->y, dy, act, gamma, o->sm[0], o->sm[1],
                                          o->dx, dg, db, nt) == ET_OK, "bn act_bwd status");
        return;
    }
    ET_CHECK(et_f32_batchnorm_train_fwd(n, c, hw, x, gamma, beta, rm, rv, 0.1f, 1e-5f, o->y,
                                        o->sm[0], o->sm[1], nt) == ET_OK, "bn train_fwd status");
    const float *g = dy;
    if (act != ET_ACT_NONE) {
        ET_CHECK(et_f32_act_fwd(act, 0.0f, total, o->y, o->y, nt) == ET_OK, "act_fwd status");
        ET_CHECK(et_f32_act_bwd(act, 0.0f, total, o->y, dy, scratch, nt) == ET_OK, "act_bwd");
        g = scratch;
    }
    ET_CHECK(et_f32_batchnorm_bwd(n, c, hw, x, g, gamma, o->sm[0], o->sm[1], o->dx, dg, db, nt)
                 == ET_OK, "bn bwd status");
}

static int same_outs(const bn_act_outs *a, const bn_act_outs *b, int64_t total, int64_t c) {
    int ok = same_f(a->y, b->y, total) && same_f(a->dx, b->dx, total);
    for (int k = 0; k < 2; k++) ok = ok && same_f(a->sm[k], b->sm[k], c);
    for (int k = 0; k < 4; k++) ok = ok && same_f(a->rs[k], b->rs[k], c);
    return ok;
}

static void test_bn_act_entry(void) {
    /* (n, c, hw): channel blocks (hw <= 512) with c = 1, hw = 1, odd sizes, and two shapes
     * whose blocks split over the threads (2x2 and 1x1 maps above BN_BLOCK_SERIAL, as
     * MobileNetV2's late layers at batch 64); then per channel */
    static const int64_t shapes[][3] = {{7, 3, 1},  {2, 1000, 1}, {2, 1, 5},   {1, 3, 2},
                                        {3, 300, 3}, {4, 5, 7},   {2, 17, 9},  {5, 6, 33},
                                        {32, 24, 16}, {40, 900, 4}, {160, 1000, 1}, {2, 3, 512},
                                        {2, 3, 513}, {3, 2, 784}, {2, 5, 1031}, {1, 1, 4097}};
    static const et_act acts[] = {ET_ACT_NONE, ET_ACT_RELU, ET_ACT_RELU6};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    int64_t maxt = 0;
    for (int si = 0; si < nshapes; si++)
        if (shapes[si][0] * shapes[si][1] * shapes[si][2] > maxt)
            maxt = shapes[si][0] * shapes[si][1] * shapes[si][2];
    float *x = calloc(maxt, 4), *dy = calloc(maxt, 4), *scratch = calloc(maxt, 4);
    float gamma[1024], beta[1024];
    bn_act_outs *o[2];
    for (int k = 0; k < 2; k++) {
        o[k] = calloc(1, sizeof(bn_act_outs));
        o[k]->y = calloc(maxt, 4), o[k]->dx = calloc(maxt, 4);
    }
    const et_isa best = et_get_isa();
    uint64_t h = 1469598103934665603ULL;
    for (int sp = 0; sp < 2; sp++)
        for (int ai = 0; ai < 3; ai++)
            for (int si = 0; si < nshapes; si++) {
                const et_act act = acts[ai];
                const int64_t n = shapes[si][0], c = shapes[si][1], hw = shapes[si][2];
                const int64_t t = n * c * hw;
                et_fill_random(x, t, 2300 + si, -2.0f, 5.0f);
                et_fill_random(dy, t, 2400 + si, -1.0f, 1.0f);
                for (int64_t j = 0; j < t; j += 7) x[j] *= 1e4f; /* order-sensitive sums */
                et_fill_random(gamma, c, 2500 + si, 0.5f, 4.0f); /* relu6 clips some */
                et_fill_random(beta, c, 2600 + si, -0.5f, 2.5f);
                if (c > 1) gamma[1] = 0.0f; /* a channel of y = beta: on the edge for beta 0 */
                if (c > 1) beta[1] = 0.0f;
                if (sp) { /* NaN / inf in channel 0 and in dy */
                    x[0] = NAN;
                    if (t > 2) x[t - 1] = INFINITY;
                    dy[t / 2] = -INFINITY;
                    if (t > 3) dy[1] = NAN;
                }
                et_set_isa(ET_ISA_REF);
                run_fb(0, act, n, c, hw, x, dy, gamma, beta, 1, scratch, o[0]);
                for (const et_f32_bn_variant *row = et_f32_bn_variants; row->head.name; row++) {
                    if (!et_isa_supported(row->head.isa)) continue;
                    et_set_isa(row->head.isa);
                    for (int nt = 1; nt <= 3; nt++) {
                        run_fb(1, act, n, c, hw, x, dy, gamma, beta, nt, scratch, o[1]);
                        ET_CHECK(same_outs(o[0], o[1], t, c),
                                 "bn fused act %d %s [%lld,%lld,%lld] t%d sp=%d", (int)act,
                                 row->head.name, (long long)n, (long long)c, (long long)hw, nt, sp);
                        if (!sp && nt == 1 && row == et_f32_bn_variants) {
                            h = fnv_mix(h, o[1]->y, (size_t)t * 4);
                            h = fnv_mix(h, o[1]->dx, (size_t)t * 4);
                            h = fnv_mix(h, o[1]->rs, sizeof o[1]->rs);
                        }
                    }
                }
            }
    et_set_isa(best);
    /* bad arguments: an act the kernels do not fuse; act without y; y without act is ignored */
    float one[4] = {1, 2, 3, 4}, st[2][1], r[4];
    ET_CHECK(et_f32_batchnorm_train_act_fwd(2, 1, 2, one, NULL, NULL, NULL, NULL, 0.1f, 1e-5f,
                                            ET_ACT_SIGMOID, r, st[0], st[1], 1) == ET_ERR_ARG,
             "bn act sigmoid rejected");
    ET_CHECK(et_f32_batchnorm_act_bwd(2, 1, 2, one, NULL, one, ET_ACT_RELU, NULL, st[0], st[1], r,
                                      NULL, NULL, 1) == ET_ERR_ARG, "bn act bwd needs y");
    ET_CHECK(et_f32_batchnorm_act_bwd(2, 1, 2, one, one, one, ET_ACT_HARDSWISH, NULL, st[0], st[1],
                                      r, NULL, NULL, 1) == ET_ERR_ARG, "bn act bwd hardswish");
    printf("  batchnorm+act outputs fnv %016llx (equal on x86 and arm64)\n", (unsigned long long)h);
    free(x); free(dy); free(scratch);
    for (int k = 0; k < 2; k++) {
        free(o[k]->y); free(o[k]->dx); free(o[k]);
    }
}

void test_bn_act(void) {
    test_bn_act_kernels();
    test_bn_act_entry();
}
