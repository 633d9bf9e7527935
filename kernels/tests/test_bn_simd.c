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
            }
        }
    free(x); free(g); free(a); free(s); free(mf); free(pr); free(y); free(yv);
    free(xi); free(gi); free(md); free(acc); free(accv); free(acc2); free(acc2v);
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

void test_bn_simd(void) {
    test_bn_kernels();
    test_bn_entry();
}
