/* edgetrain — tests of the fake-quant SIMD rows (et_f32_fq_variants, quant_simd.c).
 *   rows: every supported row against the __ref row, bitwise (NaNs included), at
 *         every length 0..70 (all tails of 4, 8, 16 lanes) and a few long ones, for unsigned
 *         ranges of 2..8 bits with the zero point at qmin, inside and at qmax, signed weight
 *         ranges (-127..127, -128..127), scales that are powers of two with exact ties
 *         (x * inv_s = k + 0.5 for even and odd, positive and negative k) and random scales;
 *         inputs far outside the range, NaN, +-inf, +-0, subnormals; the backward with
 *         negative, NaN and infinite dy; in place.
 *   minmax: the rows against __ref: zero minima / maxima with zeros of both signs in every
 *         order (always +0), NaN anywhere, all NaN, +-inf.
 *   entry points: et_f32_fake_quant_fwd / _bwd / et_f32_quant_observe under et_set_isa() of
 *         every row against the __ref entry points, 1 and 3 threads, per tensor (long rows,
 *         several observer chunks) and per channel; the per-tensor observer's min / max also
 *         against a plain sequential fminf / fmaxf fold with a zero as +0 (the chunks combine to
 *         the same bits).
 *         An FNV hash of the outputs on finite inputs is printed: x86 and arm64 print the same.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"
#include "quant_internal.h"

/* Same bits, NaNs included (the rows do __ref's operations: the same NaN on one machine; x86
 * and arm64 differ in the default NaN, so the hashes below skip NaN outputs). */
static int same_fn(const float *a, const float *b, int64_t n) {
    return n == 0 || memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static uint64_t fnv_mix(uint64_t h, const void *a, size_t bytes) {
    const unsigned char *p = (const unsigned char *)a;
    for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

typedef struct fq_case { int64_t qmin, qmax; float zp; } fq_case;

/* x for scale s (inv = 1 / s exact when s is a power of two): random over 1.5x the range, then
 * exact ties, far-out values and specials sprinkled in (special = 0: finite only). */
static void fill_fq(float *x, int64_t n, uint64_t seed, float s, const fq_case *c, int special) {
    const float span = (float)(c->qmax - c->qmin) * s;
    et_fill_random(x, n, seed, -0.75f * span - (c->zp - (float)c->qmin) * s, 0.75f * span + span);
    static const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e30f, -1e30f, 1e-40f,
                               -1e-40f, 3.4e38f, -3.4e38f, -1e-45f};
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = (int64_t)(seed + (uint64_t)i) % 23 - 11; /* -11..11: even and odd */
        if (i % 3 == 1) x[i] = ((float)k + 0.5f) * s;               /* a tie */
        else if (i % 3 == 2 && i % 7 == 2) x[i] = ((float)k - 0.5f) * s * 20.0f; /* ties far out */
        if (special && i % 11 == 5) x[i] = sp[(i / 11) % 12];
        else if (i % 11 == 5) x[i] = sp[3 + (i / 11) % 9]; /* the finite ones */
    }
}

static void test_fq_rows(void) {
    enum { NMAX = 4099 };
    static const int64_t longs[] = {100, 127, 128, 129, 1000, 4099};
    float *x = calloc(NMAX, 4), *dy = calloc(NMAX, 4), *r = calloc(NMAX, 4), *v = calloc(NMAX, 4);
    const et_f32_fq_variant *ref = &et_f32_fq_variants[0];
    et_check_variant_table("fq", et_f32_fq_variants, sizeof et_f32_fq_variants[0]);
    fq_case cases[40];
    int nc = 0;
    for (int bits = 2; bits <= 8; bits++) {
        const int64_t qmax = ((int64_t)1 << bits) - 1;
        cases[nc++] = (fq_case){0, qmax, 0.0f};
        cases[nc++] = (fq_case){0, qmax, (float)(qmax / 2 + 1)};
        cases[nc++] = (fq_case){0, qmax, (float)qmax};
        cases[nc++] = (fq_case){-((int64_t)1 << (bits - 1)), qmax >> 1, 0.0f};
    }
    cases[nc++] = (fq_case){-127, 127, 0.0f};
    cases[nc++] = (fq_case){-128, 127, 0.0f};
    cases[nc++] = (fq_case){-128, 127, -128.0f};
    const float scales[] = {0.25f, 1.0f / 64.0f, 8.0f, 0.0371f, 1.3e-3f};
    for (int ci = 0; ci < nc; ci++)
        for (int si = 0; si < 5; si++)
            for (int li = 0; li < 71 + 6; li++) {
                const int64_t n = li <= 70 ? li : longs[li - 71];
                const fq_case *c = &cases[ci];
                const float s = scales[si], inv = 1.0f / s, lo = (float)c->qmin, hi = (float)c->qmax;
                const uint64_t seed = (uint64_t)(ci * 1000 + si * 100 + li);
                fill_fq(x, n, seed, s, c, 1);
                et_fill_random(dy, n, seed + 7, -2.0f, 2.0f);
                for (int64_t i = 13; i < n; i += 29) dy[i] = (i % 2) ? NAN : -INFINITY;
                for (const et_f32_fq_variant *row = ref + 1; row->head.name; row++) {
                    if (!et_isa_supported(row->head.isa)) continue;
                    const char *nm = row->head.name;
                    ref->fwd(n, x, s, inv, c->zp, lo, hi, r);
                    row->fwd(n, x, s, inv, c->zp, lo, hi, v);
                    ET_CHECK(same_fn(r, v, n), "fq fwd %s n=%lld q%lld..%lld zp %g s %g", nm, (long long)n,
                             (long long)c->qmin, (long long)c->qmax, c->zp, s);
                    memcpy(v, x, (size_t)n * 4);
                    row->fwd(n, v, s, inv, c->zp, lo, hi, v);
                    ET_CHECK(same_fn(r, v, n), "fq fwd in place %s n=%lld", nm, (long long)n);
                    ref->bwd(n, dy, x, inv, c->zp, lo, hi, r);
                    row->bwd(n, dy, x, inv, c->zp, lo, hi, v);
                    ET_CHECK(same_fn(r, v, n), "fq bwd %s n=%lld q%lld..%lld zp %g s %g", nm, (long long)n,
                             (long long)c->qmin, (long long)c->qmax, c->zp, s);
                    memcpy(v, dy, (size_t)n * 4);
                    row->bwd(n, v, x, inv, c->zp, lo, hi, v);
                    ET_CHECK(same_fn(r, v, n), "fq bwd in place %s n=%lld", nm, (long long)n);
                }
            }
    /* the rule itself on hand values (s = 0.25, zp 0, -8..7): ties to even, -0 from a masked
     * negative dy, NaN through the forward, masked in the backward */
    const float hx[8] = {0.125f, 0.375f, -0.125f, -0.375f, 0.625f, 100.0f, -100.0f, NAN};
    const float hdy[8] = {1, 1, 1, 1, 1, -1, -1, -1};
    const float fw[7] = {0.0f, 0.5f, 0.0f, -0.5f, 0.5f, 1.75f, -2.0f}, bw[8] = {1, 1, 1, 1, 1, -0.0f, -0.0f, -0.0f};
    for (const et_f32_fq_variant *row = ref; row->head.name; row++) {
        if (!et_isa_supported(row->head.isa)) continue;
        float hy[8], hg[8];
        for (int rep = 0; rep < 5; rep++) { /* as the 4th, 8th or 16th element: vector and tail */
            float bx[24], bd[24], by[24], bg[24];
            for (int i = 0; i < 24; i++) bx[i] = 0.0f, bd[i] = 1.0f;
            const int off = rep * 4;
            memcpy(bx + off, hx, sizeof hx);
            memcpy(bd + off, hdy, sizeof hdy);
            row->fwd(24, bx, 0.25f, 4.0f, 0.0f, -8.0f, 7.0f, by);
            row->bwd(24, bd, bx, 4.0f, 0.0f, -8.0f, 7.0f, bg);
            memcpy(hy, by + off, sizeof hy);
            memcpy(hg, bg + off, sizeof hg);
            ET_CHECK(memcmp(hy, fw, sizeof fw) == 0 && isnan(hy[7]), "fq rule fwd %s off %d", row->head.name, off);
            ET_CHECK(memcmp(hg, bw, sizeof bw) == 0, "fq rule bwd %s off %d: %g %g %g", row->head.name, off,
                     hg[5], hg[6], hg[7]);
        }
    }
    free(x); free(dy); free(r); free(v);
}

static int same_bits1(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static void test_minmax_rows(void) {
    enum { NMAX = 4099 };
    float *x = calloc(NMAX, 4);
    const et_f32_fq_variant *ref = &et_f32_fq_variants[0];
    static const int64_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 70, 100, 1000, 4099};
    for (int li = 0; li < (int)(sizeof lens / sizeof lens[0]); li++)
        for (int kind = 0; kind < 9; kind++) {
            const int64_t n = lens[li];
            const uint64_t seed = (uint64_t)(li * 10 + kind);
            /* 0 mixed; 1 >= 0 with zeros; 2 <= 0 with zeros; 3 all zeros; 4 NaN-laden; 5 all NaN;
             * 6 +-inf; 7 ReLU-like (half zeros, one -0 near the end); 8 zeros only at the ends */
            et_fill_random(x, n, 900 + seed, kind == 2 ? -5.0f : (kind == 1 || kind == 7 ? 0.0f : -3.0f),
                           kind == 2 ? 0.0f : 4.0f);
            for (int64_t i = 0; i < n; i++) {
                const uint64_t h = (seed * 2654435761u + (uint64_t)i * 40503u) >> 7;
                if ((kind == 1 || kind == 2) && h % 5 == 0) x[i] = (h % 3) ? 0.0f : -0.0f;
                if (kind == 3) x[i] = (h % 2) ? 0.0f : -0.0f;
                if (kind == 4 && h % 4 == 0) x[i] = NAN;
                if (kind == 5) x[i] = NAN;
                if (kind == 6 && h % 6 == 0) x[i] = (h % 2) ? INFINITY : -INFINITY;
                if (kind == 7 && x[i] < 2.0f) x[i] = 0.0f;
            }
            if (kind == 7 && n > 3) x[n - 2] = -0.0f;
            if (kind == 8 && n > 0) {
                for (int64_t i = 0; i < n; i++) x[i] = fabsf(x[i]) + 1.0f;
                x[0] = -0.0f;
                x[n - 1] = 0.0f;
            }
            for (int flip = 0; flip < 2; flip++) { /* both sign orders of the zeros */
                if (flip)
                    for (int64_t i = 0; i < n; i++)
                        if (x[i] == 0.0f) x[i] = -x[i];
                float rm, rM;
                ref->minmax(n, x, &rm, &rM);
                ET_CHECK(!(rm == 0.0f && signbit(rm)) && !(rM == 0.0f && signbit(rM)),
                         "fq minmax ref n=%lld kind %d flip %d: a zero result must be +0", (long long)n, kind, flip);
                for (const et_f32_fq_variant *row = ref + 1; row->head.name; row++) {
                    if (!et_isa_supported(row->head.isa)) continue;
                    float vm, vM;
                    row->minmax(n, x, &vm, &vM);
                    ET_CHECK(same_bits1(rm, vm) && same_bits1(rM, vM),
                             "fq minmax %s n=%lld kind %d flip %d: ref %g %g (sign %d %d) row %g %g (sign %d %d)",
                             row->head.name, (long long)n, kind, flip, rm, rM, !!signbit(rm), !!signbit(rM), vm, vM,
                             !!signbit(vm), !!signbit(vM));
                }
            }
        }
    free(x);
}

/* Every output of the fake quant and the observer (both modes, symmetric and affine) of one
 * shape, by the __ref (use_ref) or the dispatched entry points. */
typedef struct fq_outs { float *y, *dx, st[4][4][64]; } fq_outs;

static void run_entries(int use_ref, int64_t o, int64_t c, int64_t in, const float *x, const float *dy,
                        const float *scale, const float *zp, int64_t qmin, int64_t qmax, int nt, fq_outs *r) {
    et_status st1 = use_ref ? et_f32_fake_quant_fwd__ref(o, c, in, x, scale, zp, qmin, qmax, r->y, nt)
                            : et_f32_fake_quant_fwd(o, c, in, x, scale, zp, qmin, qmax, r->y, nt);
    et_status st2 = use_ref ? et_f32_fake_quant_bwd__ref(o, c, in, dy, x, scale, zp, qmin, qmax, r->dx, nt)
                            : et_f32_fake_quant_bwd(o, c, in, dy, x, scale, zp, qmin, qmax, r->dx, nt);
    ET_CHECK(st1 == ET_OK && st2 == ET_OK, "fq entry status");
    for (int m = 0; m < 4; m++) { /* ema / minmax x affine / symmetric, two observations each */
        float *mn = r->st[m][0], *mx = r->st[m][1], *s = r->st[m][2], *z = r->st[m][3];
        const int ema = m & 1, sym = m >> 1;
        const int64_t lo = sym ? -127 : qmin, hi = sym ? 127 : qmax;
        for (int64_t k = 0; k < c; k++) mn[k] = INFINITY, mx[k] = -INFINITY;
        for (int t = 0; t < 2; t++) {
            const float *xt = t ? dy : x;
            et_status st = use_ref ? et_f32_quant_observe__ref(o, c, in, xt, mn, mx, s, z, lo, hi, sym, ema, 0.25f, nt)
                                   : et_f32_quant_observe(o, c, in, xt, mn, mx, s, z, lo, hi, sym, ema, 0.25f, nt);
            ET_CHECK(st == ET_OK, "observe entry status");
        }
    }
}

static void test_fq_entries(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},    {1, 1, 70},     {3, 1, 17},  {1, 1, 100003},
                                        {64, 1, 576}, {7, 1, 40000},  {2, 5, 33},  {1, 64, 25},
                                        {3, 7, 1},    {5, 3, 9000},   {1, 1, 16384}, {1, 1, 16385}};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    const int64_t maxt = 7 * 40000;
    float *x = calloc(maxt, 4), *dy = calloc(maxt, 4), scale[64], zp[64];
    fq_outs *o[2];
    for (int k = 0; k < 2; k++) {
        o[k] = calloc(1, sizeof(fq_outs));
        o[k]->y = calloc(maxt, 4), o[k]->dx = calloc(maxt, 4);
    }
    const et_isa best = et_get_isa();
    uint64_t h = 1469598103934665603ULL;
    for (int sp = 0; sp < 3; sp++)
        for (int si = 0; si < nshapes; si++) {
            const int64_t n = shapes[si][0], c = shapes[si][1], in = shapes[si][2], t = n * c * in;
            const fq_case fc = {0, 255, 0.0f};
            for (int64_t k = 0; k < c; k++) {
                scale[k] = k % 2 ? 0.0213f * (float)(k + 1) : 1.0f / 32.0f;
                zp[k] = (float)((k * 37) % 256);
            }
            fill_fq(x, t, 77 + si, 1.0f / 32.0f, &fc, sp == 1);
            et_fill_random(dy, t, 88 + si, -3.0f, 1.0f);
            if (sp == 2) { /* ReLU-like x with zeros of both signs across chunk boundaries */
                for (int64_t i = 0; i < t; i++) x[i] = x[i] < 1.0f ? ((i / 5000) % 2 ? -0.0f : 0.0f) : x[i];
                for (int64_t i = 0; i < t; i++) dy[i] = dy[i] > -1.0f ? ((i / 7000) % 2 ? 0.0f : -0.0f) : dy[i];
            }
            if (sp == 1)
                for (int64_t i = 3; i < t; i += 101) dy[i] = NAN;
            et_set_isa(ET_ISA_REF);
            run_entries(1, n, c, in, x, dy, scale, zp, 0, 255, 1, o[0]);
            if (sp != 1) { /* finite inputs (a zero min / max is +0 everywhere) */
                h = fnv_mix(h, o[0]->y, (size_t)t * 4);
                h = fnv_mix(h, o[0]->dx, (size_t)t * 4);
                for (int m = 0; m < 4; m++)
                    for (int q = 0; q < 4; q++) h = fnv_mix(h, o[0]->st[m][q], (size_t)c * 4);
            }
            if (c == 1) { /* the chunked per-tensor observer equals one sequential fold */
                float fm[2] = {INFINITY, INFINITY}, fM[2] = {-INFINITY, -INFINITY}; /* of x, of dy */
                for (int64_t i = 0; i < t; i++) {
                    fm[0] = fminf(fm[0], x[i]), fM[0] = fmaxf(fM[0], x[i]);
                    fm[1] = fminf(fm[1], dy[i]), fM[1] = fmaxf(fM[1], dy[i]);
                }
                for (int u = 0; u < 2; u++) fm[u] = et_fq_plus_zero(fm[u]), fM[u] = et_fq_plus_zero(fM[u]);
                const float a = fminf(fm[1], fm[0]), b = fmaxf(fM[1], fM[0]); /* minmax: both */
                ET_CHECK(same_bits1(o[0]->st[2][0][0], a) && same_bits1(o[0]->st[2][1][0], b),
                         "observer fold [%lld,%lld,%lld] sp %d: %g %g want %g %g", (long long)n, (long long)c,
                         (long long)in, sp, o[0]->st[2][0][0], o[0]->st[2][1][0], a, b);
                /* one observation of x (sp 2: its min is a zero), of dy (sp 2: its max), every row */
                for (const et_f32_fq_variant *row = et_f32_fq_variants; row->head.name; row++) {
                    if (!et_isa_supported(row->head.isa)) continue;
                    et_set_isa(row->head.isa);
                    for (int u = 0; u < 2; u++) {
                        float m0 = INFINITY, M0 = -INFINITY, s0, z0;
                        ET_CHECK(et_f32_quant_observe(n, 1, in, u ? dy : x, &m0, &M0, &s0, &z0, 0, 255, 0, 0, 0.1f,
                                                      3) == ET_OK, "observe status");
                        ET_CHECK(same_bits1(m0, fm[u]) && same_bits1(M0, fM[u]),
                                 "observer fold of %s, %s [%lld,1,%lld] sp %d: %g %g want %g %g", u ? "dy" : "x",
                                 row->head.name, (long long)n, (long long)in, sp, m0, M0, fm[u], fM[u]);
                    }
                }
            }
            for (const et_f32_fq_variant *row = et_f32_fq_variants; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                et_set_isa(row->head.isa);
                for (int nt = 1; nt <= 3; nt += 2) {
                    run_entries(0, n, c, in, x, dy, scale, zp, 0, 255, nt, o[1]);
                    int ok = same_fn(o[0]->y, o[1]->y, t) && same_fn(o[0]->dx, o[1]->dx, t);
                    for (int m = 0; m < 4; m++)
                        for (int q = 0; q < 4; q++) ok = ok && same_fn(o[0]->st[m][q], o[1]->st[m][q], c);
                    ET_CHECK(ok, "fq entry %s [%lld,%lld,%lld] t%d sp %d", row->head.name, (long long)n,
                             (long long)c, (long long)in, nt, sp);
                }
            }
        }
    et_set_isa(best);
    printf("  fake quant / observer outputs fnv %016llx (equal on x86 and arm64)\n", (unsigned long long)h);
    free(x); free(dy);
    for (int k = 0; k < 2; k++) { free(o[k]->y); free(o[k]->dx); free(o[k]); }
}

void test_quant_simd(void) {
    test_fq_rows();
    test_minmax_rows();
    test_fq_entries();
}
