/* edgetrain — tests of the row-normalisation, max / min, argmax, batched-matmul kernels and the
 * max / min / tie-weight binary ops: each against a naive double-precision loop at awkward sizes
 * (1, odd, above the per-chunk grain), and 1 vs 3 threads bitwise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"
#include "norm_internal.h"

static float *nbuf(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static int close_d(const float *a, const double *b, int64_t n, double rtol, double atol, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= atol + rtol * fabs(b[i]))) {
            fprintf(stderr, "  mismatch in %s at %lld: got %.9g want %.9g\n", what, (long long)i, (double)a[i], b[i]);
            return 0;
        }
    return 1;
}

static void test_normalize(void) {
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 33}, {2, 8}, {700, 13}, {3, 5000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], k = shapes[s][1], n = rows * k;
        float *x = nbuf(n), *dy = nbuf(n), *y = nbuf(n), *y3 = nbuf(n), *is = nbuf(rows), *is3 = nbuf(rows);
        float *dx = nbuf(n), *dx3 = nbuf(n);
        double *wy = calloc((size_t)n, sizeof(double)), *wdx = calloc((size_t)n, sizeof(double));
        et_fill_random(x, n, 11 + s, -3.0f, 5.0f);
        et_fill_random(dy, n, 17 + s, -1.0f, 1.0f);
        const float eps = 1e-5f;
        ET_CHECK(et_f32_normalize_rows_fwd(rows, k, eps, x, y, is, 1) == ET_OK, "normalize fwd status");
        ET_CHECK(et_f32_normalize_rows_fwd(rows, k, eps, x, y3, is3, 3) == ET_OK, "normalize fwd status");
        ET_CHECK(memcmp(y, y3, (size_t)n * 4) == 0 && memcmp(is, is3, (size_t)rows * 4) == 0,
                 "normalize fwd %lldx%lld: threads change bits", (long long)rows, (long long)k);
        ET_CHECK(et_f32_normalize_rows_bwd(rows, k, y, is, dy, dx, 1) == ET_OK, "normalize bwd status");
        ET_CHECK(et_f32_normalize_rows_bwd(rows, k, y, is, dy, dx3, 3) == ET_OK, "normalize bwd status");
        ET_CHECK(memcmp(dx, dx3, (size_t)n * 4) == 0, "normalize bwd %lldx%lld: threads change bits",
                 (long long)rows, (long long)k);
        for (int64_t r = 0; r < rows; r++) { /* naive: mean, var, then the textbook gradient */
            double m = 0, v = 0, g = 0, gx = 0;
            for (int64_t j = 0; j < k; j++) m += x[r * k + j];
            m /= (double)k;
            for (int64_t j = 0; j < k; j++) v += (x[r * k + j] - m) * (x[r * k + j] - m);
            double inv = 1.0 / sqrt(v / (double)k + eps);
            for (int64_t j = 0; j < k; j++) {
                wy[r * k + j] = (x[r * k + j] - m) * inv;
                g += dy[r * k + j];
                gx += dy[r * k + j] * wy[r * k + j];
            }
            for (int64_t j = 0; j < k; j++)
                wdx[r * k + j] = inv * (dy[r * k + j] - g / (double)k - wy[r * k + j] * gx / (double)k);
        }
        ET_CHECK(close_d(y, wy, n, 1e-5, 1e-5, "normalize y"), "normalize fwd %lldx%lld", (long long)rows,
                 (long long)k);
        ET_CHECK(close_d(dx, wdx, n, 1e-4, k == 1 ? 1e-2 : 1e-5, "normalize dx"), "normalize bwd %lldx%lld",
                 (long long)rows, (long long)k);
        free(x); free(dy); free(y); free(y3); free(is); free(is3); free(dx); free(dx3); free(wy); free(wdx);
    }
    float x = 1.0f, y, is;
    ET_CHECK(et_f32_normalize_rows_fwd(1, 0, 1e-5f, &x, &y, &is, 1) == ET_ERR_ARG, "k = 0 accepted");
    ET_CHECK(et_f32_normalize_rows_fwd(1, 1, -1.0f, &x, &y, &is, 1) == ET_ERR_ARG, "eps < 0 accepted");
}

static void test_max(void) {
    static const int64_t views[][3] = {{1, 1, 1}, {3, 5, 7}, {2, 1, 9}, {4, 17, 1}, {1, 3, 5000}};
    for (size_t s = 0; s < sizeof views / sizeof views[0]; s++) {
        const int64_t o = views[s][0], len = views[s][1], in = views[s][2], n = o * len * in;
        float *x = nbuf(n), *y = nbuf(o * in), *y3 = nbuf(o * in), *r = nbuf(o * in);
        int32_t *idx = calloc((size_t)(o * in), 4), *idx3 = calloc((size_t)(o * in), 4);
        et_fill_random(x, n, 5 + s, -4.0f, 4.0f);
        for (int64_t i = 0; i < n; i++) x[i] = floorf(x[i]); /* ties */
        for (int is_min = 0; is_min < 2; is_min++) {
            ET_CHECK(et_f32_max_axis(o, len, in, is_min, x, y, idx, 1) == ET_OK, "max_axis status");
            ET_CHECK(et_f32_max_axis(o, len, in, is_min, x, y3, idx3, 3) == ET_OK, "max_axis status");
            ET_CHECK(!memcmp(y, y3, (size_t)(o * in) * 4) && !memcmp(idx, idx3, (size_t)(o * in) * 4),
                     "max_axis: threads change results");
            int ok = 1;
            for (int64_t a = 0; a < o; a++)
                for (int64_t j = 0; j < in; j++) {
                    float best = x[a * len * in + j];
                    int32_t at = 0;
                    for (int64_t l = 1; l < len; l++) {
                        float v = x[(a * len + l) * in + j];
                        if (is_min ? v < best : v > best) { best = v; at = (int32_t)l; }
                    }
                    ok &= y[a * in + j] == best && idx[a * in + j] == at;
                }
            ET_CHECK(ok, "max_axis %zu min %d: not the first extreme", s, is_min);
            /* the same reduction through the several-axes kernel */
            int64_t xs[3] = {o, len, in}, ys[3] = {o, 1, in};
            ET_CHECK(et_f32_reduce_max(3, xs, x, ys, r, is_min) == ET_OK, "reduce_max status");
            ET_CHECK(!memcmp(r, y, (size_t)(o * in) * 4), "reduce_max %zu differs from max_axis", s);
        }
        free(x); free(y); free(y3); free(r); free(idx); free(idx3);
    }
    float x[6] = {1, NAN, 3, -2, 5, 0}, y[2];
    int32_t idx[2];
    int64_t xs[2] = {2, 3}, ys[2] = {1, 3};
    ET_CHECK(et_f32_max_axis(2, 3, 1, 0, x, y, idx, 1) == ET_OK && isnan(y[0]) && idx[0] == 1 && y[1] == 5 && idx[1] == 1,
             "max_axis: NaN must win");
    float r[3];
    ET_CHECK(et_f32_reduce_max(2, xs, x, ys, r, 1) == ET_OK && r[0] == -2 && isnan(r[1]) && r[2] == 0,
             "reduce_max min: columns with NaN");
    int64_t zs[2] = {0, 3}, zy[2] = {1, 3};
    ET_CHECK(et_f32_reduce_max(2, zs, x, zy, r, 0) == ET_ERR_SHAPE, "max over an empty dim accepted");
}

static void test_bmm(void) {
    /* y[2,3,M,N] from a[2,1,M,K] (or [.., K, M]) and b[3,K,N] (or [3,N,K]) */
    const int64_t M = 5, N = 3, K = 7, yb[2] = {2, 3}, ab[2] = {2, 1}, bb[2] = {1, 3};
    float *a = nbuf(2 * M * K), *b = nbuf(3 * K * N), *y = nbuf(6 * M * N), *y3 = nbuf(6 * M * N);
    double *want = calloc((size_t)(6 * M * N), sizeof(double));
    et_fill_random(a, 2 * M * K, 3, -1.0f, 1.0f);
    et_fill_random(b, 3 * K * N, 4, -1.0f, 1.0f);
    size_t ws_bytes = et_f32_bmm_ws_bytes(6, M, N, K, 3);
    void *ws = malloc(ws_bytes ? ws_bytes : 1);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (int64_t i = 0; i < 2; i++)
                for (int64_t j = 0; j < 3; j++)
                    for (int64_t m = 0; m < M; m++)
                        for (int64_t n = 0; n < N; n++) {
                            double s = 0;
                            for (int64_t k = 0; k < K; k++) {
                                double av = ta ? a[i * M * K + k * M + m] : a[i * M * K + m * K + k];
                                double bv = tb ? b[j * K * N + n * K + k] : b[j * K * N + k * N + n];
                                s += av * bv;
                            }
                            want[((i * 3 + j) * M + m) * N + n] = s;
                        }
            ET_CHECK(et_f32_bmm(ta, tb, 2, yb, ab, bb, M, N, K, a, b, y, ws, ws_bytes, 1) == ET_OK, "bmm status");
            ET_CHECK(et_f32_bmm(ta, tb, 2, yb, ab, bb, M, N, K, a, b, y3, ws, ws_bytes, 3) == ET_OK, "bmm status");
            ET_CHECK(close_d(y, want, 6 * M * N, 1e-5, 1e-5, "bmm"), "bmm ta %d tb %d", ta, tb);
            ET_CHECK(!memcmp(y, y3, (size_t)(6 * M * N) * 4), "bmm ta %d tb %d: threads change bits", ta, tb);
        }
    const int64_t bad[2] = {3, 3};
    ET_CHECK(et_f32_bmm(0, 0, 2, yb, bad, bb, M, N, K, a, b, y, ws, ws_bytes, 1) == ET_ERR_SHAPE,
             "bmm: non-broadcasting batch accepted");
    free(a); free(b); free(y); free(y3); free(want); free(ws);
}

static void test_extreme_binary(void) {
    float a[5] = {1, -2, 3, NAN, 0}, b[5] = {1, 2, -3, 0, NAN}, y[5];
    const int64_t s[1] = {5};
    ET_CHECK(et_f32_binary(ET_BIN_MAX, 1, s, s, a, s, b, y, 1) == ET_OK && y[0] == 1 && y[1] == 2 && y[2] == 3 &&
                 isnan(y[3]) && isnan(y[4]),
             "maximum");
    ET_CHECK(et_f32_binary(ET_BIN_MIN, 1, s, s, a, s, b, y, 1) == ET_OK && y[0] == 1 && y[1] == -2 && y[2] == -3 &&
                 isnan(y[3]) && isnan(y[4]),
             "minimum");
    ET_CHECK(et_f32_binary(ET_BIN_TIE_WEIGHT, 1, s, s, a, s, b, y, 1) == ET_OK && y[0] == 0.5f && y[1] == 0 &&
                 y[2] == 1 && y[3] == 0 && y[4] == 0,
             "tie_weight");
}

void test_norm(void) {
    test_normalize();
    test_max();
    test_bmm();
    test_extreme_binary();
}
