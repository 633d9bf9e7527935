/* edgetrain — tests of the embedding lookup and the losses of loss_extra.c: the kernels
 * against direct double formulas at awkward sizes, PyTorch's edge values (BCE log clamp,
 * stable BCE with logits, the Huber kink), index / target errors that write nothing, and
 * results that are bitwise identical for every thread count. */
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"

static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

static void test_embedding(void) {
    const int64_t v = 37, d = 203, n = 150; /* d: several column chunks, not divisible */
    float *w = malloc((size_t)(v * d) * sizeof(float)), *dy = malloc((size_t)(n * d) * sizeof(float));
    float *y = malloc((size_t)(n * d) * sizeof(float)), *dw1 = malloc((size_t)(v * d) * sizeof(float));
    float *dw4 = malloc((size_t)(v * d) * sizeof(float));
    double *ref = calloc((size_t)(v * d), sizeof(double));
    int32_t idx[150];
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)((i * 7 + i / 3) % 11); /* repeats */
    et_fill_random(w, v * d, 1, -1.0f, 1.0f);
    et_fill_random(dy, n * d, 2, -1.0f, 1.0f);
    ET_CHECK(et_f32_embedding_fwd__ref(n, v, d, w, idx, y, 4) == ET_OK, "embedding fwd");
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= memcmp(y + i * d, w + idx[i] * d, (size_t)d * sizeof(float)) == 0;
    ET_CHECK(ok, "embedding fwd copies the rows");
    ET_CHECK(et_f32_embedding_bwd__ref(n, v, d, idx, dy, 5, dw1, 1) == ET_OK, "embedding bwd 1 thread");
    ET_CHECK(et_f32_embedding_bwd__ref(n, v, d, idx, dy, 5, dw4, 4) == ET_OK, "embedding bwd 4 threads");
    ET_CHECK(same_bits(dw1, dw4, v * d), "embedding bwd bitwise equal for 1 and 4 threads");
    for (int64_t i = 0; i < n; i++)
        if (idx[i] != 5)
            for (int64_t j = 0; j < d; j++) ref[idx[i] * d + j] += dy[i * d + j];
    float *reff = malloc((size_t)(v * d) * sizeof(float));
    for (int64_t k = 0; k < v * d; k++) reff[k] = (float)ref[k];
    ET_CHECK(et_allclose(dw1, reff, v * d, 1e-5f, 1e-5f, "embedding dw"), "embedding dw vs double sum");
    int pad_zero = 1;
    for (int64_t j = 0; j < d; j++) pad_zero &= dw1[5 * d + j] == 0.0f;
    ET_CHECK(pad_zero, "no gradient into padding_idx");
    /* out-of-range indices: ET_ERR_LABEL, nothing written */
    int32_t bad[3] = {0, (int32_t)v, 1}, neg[2] = {1, -1};
    y[0] = 12345.0f;
    dw1[0] = 12345.0f;
    ET_CHECK(et_f32_embedding_fwd__ref(3, v, d, w, bad, y, 1) == ET_ERR_LABEL && y[0] == 12345.0f, "index v");
    ET_CHECK(et_f32_embedding_fwd__ref(2, v, d, w, neg, y, 1) == ET_ERR_LABEL, "index -1");
    ET_CHECK(et_f32_embedding_bwd__ref(3, v, d, bad, dy, -1, dw1, 1) == ET_ERR_LABEL && dw1[0] == 12345.0f,
             "bwd index v writes nothing");
    free(w), free(dy), free(y), free(dw1), free(dw4), free(ref), free(reff);
}

static void test_elementwise(void) {
    enum { n = 1000 };
    static float x[n], t[n], lw[n], dl[n], l1[n], l4[n], g1[n], g4[n];
    et_fill_random(x, n, 3, 0.0f, 1.0f);
    et_fill_random(t, n, 4, 0.0f, 1.0f);
    et_fill_random(lw, n, 5, 0.5f, 3.0f);
    et_fill_random(dl, n, 6, -1.0f, 1.0f);
    x[0] = 0.0f, t[0] = 1.0f; /* log clamped: loss 100 */
    x[1] = 1.0f, t[1] = 0.0f;
    ET_CHECK(et_f32_bce_fwd__ref(n, x, t, l1, 1) == ET_OK, "bce fwd");
    ET_CHECK(l1[0] == 100.0f && l1[1] == 100.0f, "bce log clamp: %g %g", (double)l1[0], (double)l1[1]);
    double want = -(t[7] * log(x[7]) + (1.0 - t[7]) * log(1.0 - x[7]));
    ET_CHECK(fabs(l1[7] - want) <= 1e-6 * fabs(want), "bce value");
    ET_CHECK(et_f32_bce_bwd__ref(n, x, t, dl, g1, 1) == ET_OK, "bce bwd");
    ET_CHECK(fabsf(g1[0] - (float)(dl[0] * -1e12)) <= 1e6f, "bce grad at x = 0 uses eps 1e-12");
    ET_CHECK(et_f32_bce_bwd__ref(n, x, t, dl, g4, 4) == ET_OK && same_bits(g1, g4, n), "bce bwd thread count");
    /* logits: stable at large |x| and bitwise equal for any thread count */
    et_fill_random(x, n, 7, -60.0f, 60.0f);
    x[2] = 100.0f, t[2] = 1.0f; /* softplus(-100) = 3.7e-44: stays positive, not 0 */
    x[3] = -100.0f, t[3] = 1.0f;
    ET_CHECK(et_f32_bce_logits_fwd__ref(n, x, t, lw, l1, 1) == ET_OK, "bce_logits fwd");
    ET_CHECK(et_f32_bce_logits_fwd__ref(n, x, t, lw, l4, 4) == ET_OK, "bce_logits fwd 4");
    ET_CHECK(same_bits(l1, l4, n), "bce_logits thread count");
    ET_CHECK(l1[2] > 0.0f && l1[2] < 1e-40f, "bce_logits tail %g", (double)l1[2]);
    ET_CHECK(fabsf(l1[3] - 100.0f * lw[3]) <= 1e-4f * 100.0f * lw[3], "bce_logits x=-100: %g", (double)l1[3]);
    int finite = 1;
    for (int i = 0; i < n; i++) finite &= isfinite(l1[i]);
    ET_CHECK(finite, "bce_logits finite");
    ET_CHECK(et_f32_bce_logits_bwd__ref(n, x, t, NULL, dl, g1, 1) == ET_OK, "bce_logits bwd");
    const double sig = 1.0 / (1.0 + exp(-(double)x[9]));
    ET_CHECK(fabs(g1[9] - dl[9] * (sig - t[9])) <= 1e-6, "bce_logits grad without weight");
    /* Huber kink: |d| == delta gives the same value and slope from both sides */
    float hx[3] = {1.5f, -0.5f, 0.25f}, hy[3] = {1.0f, 0.0f, 0.0f}, hdl[3] = {1, 1, 1}, hl[3], hg[3];
    ET_CHECK(et_f32_huber_fwd__ref(3, hx, hy, 0.5f, 2.0f, hl, 1) == ET_OK, "huber fwd");
    ET_CHECK(hl[0] == 0.25f && hl[1] == 0.25f && hl[2] == 0.0625f, "huber values %g %g %g", (double)hl[0],
             (double)hl[1], (double)hl[2]);
    ET_CHECK(et_f32_huber_bwd__ref(3, hx, hy, 0.5f, 2.0f, hdl, hg, 1) == ET_OK, "huber bwd");
    ET_CHECK(hg[0] == 1.0f && hg[1] == -1.0f && hg[2] == 0.5f, "huber slopes %g %g %g", (double)hg[0],
             (double)hg[1], (double)hg[2]);
}

static void test_nll(void) {
    enum { n = 700, c = 5, s = 3 }; /* more rows than one fixed part */
    static float x[n * c * s], dx1[n * c * s], dx4[n * c * s], dl[n * s];
    static int32_t t[n * s];
    const float w[c] = {0.5f, 2.0f, 1.0f, 0.25f, 1.5f};
    et_fill_random(x, n * c * s, 8, -3.0f, 0.0f);
    et_fill_random(dl, n * s, 9, -1.0f, 1.0f);
    for (int i = 0; i < n * s; i++) t[i] = i % 13 == 0 ? -100 : (int32_t)((i * 3) % c);
    const float eps = 0.1f;
    double ls = 0.0, ws = 0.0;
    for (int r = 0; r < n; r++)
        for (int k = 0; k < s; k++) {
            const int32_t y = t[r * s + k];
            if (y == -100) continue;
            double sm = 0.0;
            for (int j = 0; j < c; j++) sm += w[j] * -(double)x[(r * c + j) * s + k];
            ls += (1.0 - eps) * w[y] * -(double)x[(r * c + y) * s + k] + eps / c * sm;
            ws += w[y];
        }
    float mean1, mean4, sum1;
    ET_CHECK(et_f32_nll_fwd__ref(n, c, s, x, t, w, -100, ET_REDUCTION_MEAN, eps, &mean1, 1) == ET_OK, "nll mean");
    ET_CHECK(et_f32_nll_fwd__ref(n, c, s, x, t, w, -100, ET_REDUCTION_MEAN, eps, &mean4, 4) == ET_OK, "nll mean 4");
    ET_CHECK(et_f32_nll_fwd__ref(n, c, s, x, t, w, -100, ET_REDUCTION_SUM, eps, &sum1, 2) == ET_OK, "nll sum");
    ET_CHECK(mean1 == mean4, "nll mean bitwise equal for 1 and 4 threads");
    ET_CHECK(fabs(mean1 - ls / ws) <= 1e-6 * fabs(ls / ws), "nll mean %g want %g", (double)mean1, ls / ws);
    ET_CHECK(fabs(sum1 - ls) <= 1e-6 * fabs(ls), "nll sum %g want %g", (double)sum1, ls);
    ET_CHECK(et_f32_nll_bwd__ref(n, c, s, t, w, -100, ET_REDUCTION_NONE, eps, dl, dx1, 1) == ET_OK, "nll bwd");
    ET_CHECK(et_f32_nll_bwd__ref(n, c, s, t, w, -100, ET_REDUCTION_NONE, eps, dl, dx4, 4) == ET_OK, "nll bwd 4");
    ET_CHECK(same_bits(dx1, dx4, n * c * s), "nll bwd bitwise equal for 1 and 4 threads");
    /* row 0, position 1: target 3 */
    const double g = dl[1];
    double want = -g * (eps / c * w[3] + (1.0 - eps) * w[3]);
    ET_CHECK(fabs(dx1[(0 * c + 3) * s + 1] - want) <= 1e-6, "nll bwd target element");
    ET_CHECK(dx1[(0 * c + 0) * s + 0] == 0.0f, "ignored target: zero gradient");
    /* a target outside [0, c) that is not ignore_index: ET_ERR_LABEL, nothing written */
    t[5] = c;
    mean1 = 777.0f;
    dx1[0] = 777.0f;
    ET_CHECK(et_f32_nll_fwd__ref(n, c, s, x, t, w, -100, ET_REDUCTION_MEAN, eps, &mean1, 1) == ET_ERR_LABEL &&
             mean1 == 777.0f, "nll target c");
    ET_CHECK(et_f32_nll_bwd__ref(n, c, s, t, w, -100, ET_REDUCTION_SUM, eps, dl, dx1, 1) == ET_ERR_LABEL &&
             dx1[0] == 777.0f, "nll bwd target c");
    t[5] = -100;
    ET_CHECK(et_f32_nll_fwd__ref(n, c, s, x, t, w, -1, ET_REDUCTION_MEAN, eps, &mean1, 1) == ET_ERR_LABEL,
             "-100 is out of range when ignore_index is -1");
    ET_CHECK(et_f32_nll_fwd__ref(n, c, s, x, t, w, -100, 3, eps, &mean1, 1) == ET_ERR_ARG, "bad reduction");
    ET_CHECK(et_f32_nll_fwd__ref(n, c, s, x, t, w, -100, ET_REDUCTION_SUM, 1.5f, &mean1, 1) == ET_ERR_ARG,
             "bad label_smoothing");
}

void test_loss_extra(void) {
    test_embedding();
    test_elementwise();
    test_nll();
}
