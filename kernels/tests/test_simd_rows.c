/* edgetrain — tests of the SIMD rows added for issue 12's model families: the unary math
 * family (et_f32_unary_variants: exp, erf), the row normalisation of LayerNorm / GroupNorm
 * (et_f32_normrows_variants) and softmax over contiguous rows (et_f32_softmax_rows_variants).
 * Every row that runs here is compared with its table's __ref row at sizes below, at, above
 * and not divisible by the SIMD widths (2, 4, 8, 16 lanes).
 *   unary: exp and erf follow the activation family's rule for smooth functions (relative
 *          4e-7 against __ref), and since both compute the same double value to ~1e-15 the
 *          test also bounds how many elements differ at all (last-bit, at most 1 in 10^4 on a
 *          sweep of 2^20 inputs); the other functions run __ref's loop and are bit-identical.
 *   normalize rows: bit-identical (same double operations in the same order).
 *   softmax rows: exp as unary's, against glibc's expf in __ref, so the forward and the
 *          log-softmax backward as smooth functions (4e-7 relative, 1e-6 absolute for
 *          log-softmax values near 0; at most 1 % of the elements differ at all, ~0.1 % when
 *          written); the softmax backward bit-identical.
 * The sweeps also check that the fast rows of a table give the same bits as each other, and
 * print an FNV hash of their outputs: the x86 and the arm64 (qemu) runs print the same hashes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"
#include "misc_internal.h"
#include "norm_internal.h"

static const int64_t kSizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 1000, 4097};
#define NSIZES ((int)(sizeof kSizes / sizeof kSizes[0]))

static float *fbuf(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* FNV-1a of the bytes: the sweeps print it so the x86 and arm64 runs can be compared. */
static uint64_t fnv(const float *a, int64_t n) {
    const unsigned char *p = (const unsigned char *)a;
    uint64_t h = 1469598103934665603ULL;
    for (int64_t i = 0; i < n * (int64_t)sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static int64_t count_diff(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

/* Random inputs over fn's useful range with the edge cases sprinkled in. */
static void fill_unary(float *x, int64_t n, et_unary fn, uint64_t seed) {
    static const float erf_sp[] = {0.0f, -0.0f, 0.5f, -0.5f, 1.0f, 5.5f, 5.999f, 6.0f, -6.0f,
                                   6.5f, 1e-30f, -1e-30f, 1e-45f, 0.25f, 3.92f, -3.9f, 100.0f};
    static const float exp_sp[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 88.7f, 88.73f, 89.0f, -87.3f,
                                   -103.9f, -104.0f, -150.0f, 150.0f, 0.34657f, -0.34658f,
                                   1.0f, -1.0f, 10.0f};
    const int isexp = fn == ET_UN_EXP;
    const float *sp = isexp ? exp_sp : erf_sp;
    et_fill_random(x, n, seed, isexp ? -110.0f : -7.0f, isexp ? 95.0f : 7.0f);
    for (int64_t i = 0; i < n; i += 5) x[i] = sp[(i / 5) % 17];
    if (n > 3) x[3] = NAN;
    if (n > 8) x[8] = INFINITY;
    if (n > 13) x[13] = -INFINITY;
}

static void test_unary_rows(void) {
    const int64_t nmax = 4097, nsweep = (int64_t)1 << 20;
    float *x = fbuf(nsweep), *r = fbuf(nsweep), *v = fbuf(nsweep);
    const et_f32_unary_variant *ref = &et_f32_unary_variants[0];
    et_check_variant_table("unary", et_f32_unary_variants, sizeof et_f32_unary_variants[0]);
    for (int f = 0; f < ET_UNARY_COUNT_; f++) {
        const et_unary fn = (et_unary)f;
        const int smooth = fn == ET_UN_EXP || fn == ET_UN_ERF;
        const float a = fn == ET_UN_POW ? 1.7f : -0.5f, b = 1.25f;
        for (int si = 0; si < NSIZES; si++) {
            const int64_t n = kSizes[si];
            fill_unary(x, n, fn, 300 + si);
            if (fn == ET_UN_LOG || fn == ET_UN_SQRT || fn == ET_UN_RSQRT || fn == ET_UN_POW)
                for (int64_t i = 0; i < n; i++) x[i] = fabsf(x[i]);
            ref->run(fn, a, b, n, x, r);
            for (const et_f32_unary_variant *row = ref + 1; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                row->run(fn, a, b, n, x, v);
                if (smooth)
                    ET_CHECK(et_allclose(v, r, n, 4e-7f, 1e-37f, "unary variant"),
                             "unary %d %s n=%lld", f, row->head.name, (long long)n);
                else
                    ET_CHECK(count_diff(v, r, n) == 0, "unary %d %s n=%lld not bitwise", f,
                             row->head.name, (long long)n);
                for (int64_t i = 0; i < n; i++)
                    if (x[i] == 0.0f && smooth && fn == ET_UN_ERF)
                        ET_CHECK(signbit(v[i]) == signbit(x[i]), "erf keeps the sign of zero");
                memcpy(v, x, (size_t)n * sizeof(float)); /* in place */
                row->run(fn, a, b, n, v, v);
                ET_CHECK(et_allclose(v, r, n, smooth ? 4e-7f : 0.0f, 0.0f, "unary in place"),
                         "unary %d %s n=%lld in place", f, row->head.name, (long long)n);
            }
        }
        if (!smooth) continue;
        /* sweep: how many elements differ from __ref at all */
        fill_unary(x, nsweep, fn, 77 + f);
        ref->run(fn, a, b, nsweep, x, r);
        uint64_t first = 0; /* the fast rows share one computation: the same bits on every ISA */
        for (const et_f32_unary_variant *row = ref + 1; row->head.name; row++) {
            if (!et_isa_supported(row->head.isa)) continue;
            row->run(fn, a, b, nsweep, x, v);
            const int64_t d = count_diff(v, r, nsweep);
            if (!first) first = fnv(v, nsweep);
            ET_CHECK(fnv(v, nsweep) == first, "unary %d %s: other bits than the first fast row",
                     f, row->head.name);
            ET_CHECK(et_allclose(v, r, nsweep, 4e-7f, 1e-37f, "unary sweep"), "unary %d %s sweep",
                     f, row->head.name);
            ET_CHECK(d <= nsweep / 10000, "unary %d %s: %lld of %lld differ from __ref", f,
                     row->head.name, (long long)d, (long long)nsweep);
            printf("  unary %s %s: %lld of %lld elements differ from __ref (last bit), "
                   "fnv %016llx\n", fn == ET_UN_EXP ? "exp" : "erf", row->head.name,
                   (long long)d, (long long)nsweep, (unsigned long long)fnv(v, nsweep));
        }
    }
    (void)nmax;
    free(x); free(r); free(v);
}

static int same_bits(const float *a, const float *b, int64_t n) { return count_diff(a, b, n) == 0; }

static void test_normrows_rows(void) {
    const int64_t rows = 5, kmax = 4097;
    float *x = fbuf(rows * kmax), *dy = fbuf(rows * kmax), *y = fbuf(rows * kmax);
    float *yv = fbuf(rows * kmax), *dx = fbuf(rows * kmax), *dxv = fbuf(rows * kmax);
    float is[5], isv[5];
    const et_f32_normrows_variant *ref = &et_f32_normrows_variants[0];
    et_check_variant_table("normrows", et_f32_normrows_variants, sizeof et_f32_normrows_variants[0]);
    for (int si = 0; si < NSIZES; si++) {
        const int64_t k = kSizes[si], n = rows * k;
        if (k == 0) continue;
        et_fill_random(x, n, 500 + si, -3.0f, 7.0f); /* mean far from 0 */
        et_fill_random(dy, n, 600 + si, -1.0f, 1.0f);
        for (int64_t j = 0; j < k; j++) x[2 * k + j] = 1.25f; /* a constant row: var 0 */
        /* a row and its gradient with magnitudes 1e-3..1e9: the double sums then depend on their
         * order (a changed lane or tail order shows in the float results) */
        for (int64_t j = 0; j < k; j++) {
            const float m = (j % 3 == 0) ? 1e9f : ((j % 3 == 1) ? -7e8f : 1e-3f);
            x[4 * k + j] = m * (1.0f + x[4 * k + j]);
            dy[4 * k + j] = m * dy[4 * k + j];
        }
        ref->fwd(0, rows, k, 1e-5f, x, y, is);
        ref->bwd(0, rows, k, y, is, dy, dx);
        for (const et_f32_normrows_variant *row = ref + 1; row->head.name; row++) {
            if (!et_isa_supported(row->head.isa)) continue;
            memset(yv, 0, (size_t)n * sizeof(float));
            row->fwd(0, rows, k, 1e-5f, x, yv, isv);
            ET_CHECK(same_bits(yv, y, n) && same_bits(isv, is, rows),
                     "normalize fwd %s k=%lld not bitwise", row->head.name, (long long)k);
            row->fwd(1, 3, k, 1e-5f, x, yv, isv); /* a sub-range of rows */
            ET_CHECK(same_bits(yv + k, y + k, 2 * k), "normalize fwd %s rows 1..3", row->head.name);
            row->bwd(0, rows, k, y, is, dy, dxv);
            ET_CHECK(same_bits(dxv, dx, n), "normalize bwd %s k=%lld not bitwise", row->head.name,
                     (long long)k);
        }
        /* the dispatching entry points, 1 and 3 threads */
        for (int nt = 1; nt <= 3; nt += 2) {
            ET_CHECK(et_f32_normalize_rows_fwd(rows, k, 1e-5f, x, yv, isv, nt) == ET_OK, "fwd status");
            ET_CHECK(same_bits(yv, y, n) && same_bits(isv, is, rows), "normalize fwd dispatch");
            ET_CHECK(et_f32_normalize_rows_bwd(rows, k, y, is, dy, dxv, nt) == ET_OK, "bwd status");
            ET_CHECK(same_bits(dxv, dx, n), "normalize bwd dispatch k=%lld", (long long)k);
        }
    }
    free(x); free(dy); free(y); free(yv); free(dx); free(dxv);
}

/* softmax rows: the forward and the log-softmax backward with the smooth-function tolerance
 * (and a count of differing elements), the softmax backward bitwise; in place too. */
static void test_softmax_rows(void) {
    const int64_t rows = 4, lmax = 4097, nsweep = (int64_t)1 << 18;
    float *x = fbuf(nsweep), *dy = fbuf(nsweep), *r = fbuf(nsweep), *v = fbuf(nsweep);
    float *rb = fbuf(nsweep), *vb = fbuf(nsweep);
    const et_f32_softmax_rows_variant *ref = &et_f32_softmax_rows_variants[0];
    et_check_variant_table("softmax_rows", et_f32_softmax_rows_variants,
                           sizeof et_f32_softmax_rows_variants[0]);
    for (int lg = 0; lg <= 1; lg++) {
        const float atol = lg ? 1e-6f : 1e-37f;
        for (int si = 0; si < NSIZES; si++) {
            const int64_t len = kSizes[si], n = rows * len;
            if (len == 0 || len > lmax) continue;
            et_fill_random(x, n, 700 + si, -20.0f, 20.0f);
            et_fill_random(dy, n, 800 + si, -1.0f, 1.0f);
            if (len > 2) {
                x[len + 1] = -INFINITY; /* row 1: a zero probability */
                x[3 * len + 2] = NAN;   /* row 3: all NaN */
            }
            ref->fwd(0, rows, len, x, r, lg);
            ref->bwd(0, rows, len, r, dy, rb, lg);
            for (const et_f32_softmax_rows_variant *row = ref + 1; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                row->fwd(0, rows, len, x, v, lg);
                ET_CHECK(et_allclose(v, r, n, 4e-7f, atol, "softmax rows fwd"),
                         "softmax rows fwd %s len=%lld log %d", row->head.name, (long long)len, lg);
                memcpy(v, x, (size_t)n * sizeof(float));
                row->fwd(0, rows, len, v, v, lg);
                ET_CHECK(et_allclose(v, r, n, 4e-7f, atol, "softmax rows fwd in place"),
                         "softmax rows fwd %s len=%lld log %d in place", row->head.name,
                         (long long)len, lg);
                row->bwd(0, rows, len, r, dy, vb, lg);
                if (lg)
                    ET_CHECK(et_allclose(vb, rb, n, 4e-7f, 1e-6f, "log-softmax rows bwd"),
                             "log-softmax rows bwd %s len=%lld", row->head.name, (long long)len);
                else
                    ET_CHECK(same_bits(vb, rb, n), "softmax rows bwd %s len=%lld not bitwise",
                             row->head.name, (long long)len);
                memcpy(vb, dy, (size_t)n * sizeof(float));
                row->bwd(0, rows, len, r, vb, vb, lg);
                ET_CHECK(et_allclose(vb, rb, n, lg ? 4e-7f : 0.0f, lg ? 1e-6f : 0.0f,
                                     "softmax rows bwd in place"),
                         "softmax rows bwd %s len=%lld in place", row->head.name, (long long)len);
            }
            /* dispatch at 1 and 3 threads gives the picked row's bits */
            const et_f32_softmax_rows_variant *pick = ET_VARIANT_PICK(et_f32_softmax_rows_variants);
            pick->fwd(0, rows, len, x, r, lg);
            for (int nt = 1; nt <= 3; nt += 2) {
                ET_CHECK(et_f32_softmax_fwd(rows, len, 1, lg, x, v, nt) == ET_OK, "softmax status");
                ET_CHECK(same_bits(v, r, n), "softmax fwd dispatch len=%lld", (long long)len);
            }
        }
        /* sweep: attention-like rows of 16, count the elements that differ from __ref */
        et_fill_random(x, nsweep, 900 + lg, -30.0f, 30.0f);
        et_fill_random(dy, nsweep, 950 + lg, -1.0f, 1.0f);
        ref->fwd(0, nsweep / 16, 16, x, r, lg);
        ref->bwd(0, nsweep / 16, 16, r, dy, rb, lg);
        uint64_t first = 0;
        for (const et_f32_softmax_rows_variant *row = ref + 1; row->head.name; row++) {
            if (!et_isa_supported(row->head.isa)) continue;
            row->fwd(0, nsweep / 16, 16, x, v, lg);
            row->bwd(0, nsweep / 16, 16, r, dy, vb, lg);
            if (!first) first = fnv(v, nsweep) ^ fnv(vb, nsweep);
            ET_CHECK((fnv(v, nsweep) ^ fnv(vb, nsweep)) == first,
                     "softmax rows %s: other bits than the first fast row", row->head.name);
            const int64_t d = count_diff(v, r, nsweep), db = count_diff(vb, rb, nsweep);
            /* glibc's expf is within 0.502 ulp, not always correctly rounded: exp_f64 (within
             * ~1e-15 of exact) differs from it in ~0.1 % of the elements, by one ulp */
            ET_CHECK(d <= nsweep / 100 && db <= nsweep / 100,
                     "softmax rows %s log %d: %lld / %lld of %lld differ", row->head.name, lg,
                     (long long)d, (long long)db, (long long)nsweep);
            printf("  %s rows %s: fwd %lld, bwd %lld of %lld elements differ from __ref, "
                   "fnv %016llx %016llx\n", lg ? "log_softmax" : "softmax", row->head.name,
                   (long long)d, (long long)db, (long long)nsweep,
                   (unsigned long long)fnv(v, nsweep), (unsigned long long)fnv(vb, nsweep));
        }
    }
    free(x); free(dy); free(r); free(v); free(rb); free(vb);
}

void test_simd_rows(void) {
    test_unary_rows();
    test_normrows_rows();
    test_softmax_rows();
}
