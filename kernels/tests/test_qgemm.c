/* edgetrain — int8 inference kernels (src/qgemm.c) against a direct integer reference written
 * here (a plain convolution without im2col, the requantization in double-free integer terms):
 * exact equality at awkward sizes (odd, 1, padding, stride, dilation, groups), 1 and 3 threads
 * bit-identical, round half to even, clamping, zero-point padding and the argument checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_common.h"
#include "edgetrain/et_kernels.h"
#include "../src/qgemm_internal.h"
#include "et_test.h"

static uint64_t q_rng = 0x1234567u;
static uint32_t q_next(void) {
    q_rng = q_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(q_rng >> 33);
}

static uint8_t ref_requant(int64_t acc, float mult, int32_t zp, int32_t qmin, int32_t qmax) {
    float r = nearbyintf((float)acc * mult);
    double v = (double)r + zp; /* r is an integer: the sum is exact in double */
    return (uint8_t)(v < qmin ? qmin : (v > qmax ? qmax : v));
}

static void ref_conv(const et_conv2d_params *p, const uint8_t *x, int32_t xz, const int8_t *w, const int32_t *b,
                     const float *m, int32_t yz, int32_t qmin, int32_t qmax, uint8_t *y) {
    const int64_t cg = p->c / p->groups, ocg = p->oc / p->groups;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t o = 0; o < p->oc; o++)
            for (int64_t oy = 0; oy < p->oh; oy++)
                for (int64_t ox = 0; ox < p->ow; ox++) {
                    int64_t acc = b ? b[o] : 0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < p->kh; i++)
                            for (int64_t j = 0; j < p->kw; j++) {
                                int64_t iy = oy * p->stride_h - p->pad_t + i * p->dil_h;
                                int64_t ix = ox * p->stride_w - p->pad_l + j * p->dil_w;
                                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue; /* pad = zp: adds 0 */
                                int64_t c = (o / ocg) * cg + ci;
                                acc += (int64_t)(x[((n * p->c + c) * p->h + iy) * p->w + ix] - xz) *
                                       w[((o * cg + ci) * p->kh + i) * p->kw + j];
                            }
                    y[((n * p->oc + o) * p->oh + oy) * p->ow + ox] = ref_requant(acc, m[o], yz, qmin, qmax);
                }
}

static void check_conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t k, int64_t stride,
                       int64_t pad, int64_t dil, int64_t groups, int bias) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = n; p.c = c; p.h = h; p.w = w; p.oc = oc; p.kh = k; p.kw = k;
    p.stride_h = p.stride_w = stride; p.pad_t = p.pad_l = p.pad_b = p.pad_r = pad;
    p.dil_h = p.dil_w = dil; p.groups = groups;
    ET_CHECK(et_conv2d_params_init(&p) == ET_OK, "params");
    const int64_t nx = n * c * h * w, nw = oc * (c / groups) * k * k, ny = n * oc * p.oh * p.ow;
    uint8_t *x = malloc((size_t)nx), *y1 = malloc((size_t)ny), *y3 = malloc((size_t)ny), *yr = malloc((size_t)ny);
    int8_t *wt = malloc((size_t)nw);
    int32_t *b = malloc((size_t)oc * sizeof *b);
    float *m = malloc((size_t)oc * sizeof *m);
    for (int64_t i = 0; i < nx; i++) x[i] = (uint8_t)(q_next() % 256);
    for (int64_t i = 0; i < nw; i++) wt[i] = (int8_t)((int)(q_next() % 255) - 127);
    for (int64_t i = 0; i < oc; i++) {
        b[i] = (int32_t)(q_next() % 20001) - 10000;
        if (bias == 2) /* too large for the tiled rows' int32 sums: their im2col fallback */
            b[i] = (i % 2 ? 1 : -1) * (INT32_MAX - (int32_t)(q_next() % 1000));
        m[i] = (float)(q_next() % 1000 + 1) * 1e-6f;
    }
    const int32_t xz = (int32_t)(q_next() % 256), yz = (int32_t)(q_next() % 200) + 20;
    size_t wsb = et_q_conv2d_ws_bytes(&p);
    void *ws = malloc(wsb ? wsb : 1);
    ref_conv(&p, x, xz, wt, bias ? b : NULL, m, yz, 3, 250, yr);
    ET_CHECK(et_q_conv2d__ref(&p, x, xz, wt, bias ? b : NULL, m, yz, 3, 250, y1, ws, wsb, 1) == ET_OK, "conv");
    ET_CHECK(et_q_conv2d__ref(&p, x, xz, wt, bias ? b : NULL, m, yz, 3, 250, y3, ws, wsb, 3) == ET_OK, "conv 3t");
    ET_CHECK(memcmp(y1, yr, (size_t)ny) == 0, "qconv2d vs direct reference (n%lld c%lld %lldx%lld oc%lld k%lld s%lld "
             "p%lld d%lld g%lld)", (long long)n, (long long)c, (long long)h, (long long)w, (long long)oc,
             (long long)k, (long long)stride, (long long)pad, (long long)dil, (long long)groups);
    ET_CHECK(memcmp(y1, y3, (size_t)ny) == 0, "1 and 3 threads differ");
    /* every conv row the CPU runs (the tiled SIMD rows) == __ref, 1 and 3 threads, with the
     * workspace for 3 threads and with the 1-thread one (fewer slots than threads) */
    size_t wsn = et_q_conv2d_ws_bytes_nt(&p, 3);
    void *ws3 = malloc(wsn ? wsn : 1);
    for (const et_q_conv2d_variant *row = et_q_conv2d_variants + 1; row->head.name; row++)
        for (int th = 1; th <= 3 && et_isa_supported(row->head.isa); th += 2)
            for (int big = 0; big < 2; big++) {
                memset(y3, 0, (size_t)ny);
                ET_CHECK(row->conv(&p, x, xz, wt, bias ? b : NULL, m, yz, 3, 250, y3, big ? ws3 : ws,
                                   big ? wsn : wsb, th) == ET_OK, "conv %s", row->head.name);
                ET_CHECK(memcmp(y1, y3, (size_t)ny) == 0, "qconv2d %s != ref (n%lld c%lld %lldx%lld oc%lld k%lld s%lld "
                         "p%lld d%lld g%lld) th%d ws%d", row->head.name, (long long)n, (long long)c, (long long)h,
                         (long long)w, (long long)oc, (long long)k, (long long)stride, (long long)pad, (long long)dil,
                         (long long)groups, th, big);
            }
    free(ws3);
    if (wsb) /* the depthwise path (groups == c == oc, e.g. the 1x1 case) needs none */
        ET_CHECK(et_q_conv2d__ref(&p, x, xz, wt, b, m, yz, 3, 250, y1, ws, et_q_conv2d_im2col_ws_bytes(&p) - 1, 1) ==
                     ET_ERR_WORKSPACE && et_q_conv2d(&p, x, xz, wt, b, m, yz, 3, 250, y1, ws, 1, 1) == ET_ERR_WORKSPACE,
                 "small workspace");
    free(x); free(y1); free(y3); free(yr); free(wt); free(b); free(m); free(ws);
}

static void test_quantize_rules(void) {
    /* s = 0.5: x / s = 0.5, 1.5, 2.5, -0.5 (ties -> 0, 2, 2, -0), 1000 (clamp), NaN (-> zp) */
    const float x[6] = {0.25f, 0.75f, 1.25f, -0.25f, 500.0f, NAN};
    uint8_t q[6];
    float d[6];
    ET_CHECK(et_q_quantize__ref(6, x, 0.5f, 10, 0, 255, q, 1) == ET_OK, "quantize");
    const uint8_t want[6] = {10, 12, 12, 10, 255, 10};
    ET_CHECK(memcmp(q, want, 6) == 0, "quantize ties/clamp: %d %d %d %d %d %d", q[0], q[1], q[2], q[3], q[4], q[5]);
    ET_CHECK(et_q_dequantize__ref(6, q, 0.5f, 10, d, 1) == ET_OK && d[1] == 1.0f && d[4] == 122.5f, "dequantize");
    ET_CHECK(et_q_quantize__ref(6, x, 0.5f, 256, 0, 255, q, 1) == ET_ERR_ARG, "zero point out of range");
    ET_CHECK(et_q_quantize__ref(6, x, 0.0f, 0, 0, 255, q, 1) == ET_ERR_ARG, "scale 0");
    ET_CHECK(et_q_quantize__ref(6, x, NAN, 0, 0, 255, q, 1) == ET_ERR_ARG, "scale NaN");
    /* requantize ties: acc * mult = 2.5 -> 2, 3.5 -> 4 */
    const uint8_t a[2] = {5, 7};
    const int8_t w1[1] = {1};
    const float m[1] = {0.5f};
    uint8_t y[2];
    ET_CHECK(et_q_gemm_requant__ref(2, 1, 1, a, 0, w1, NULL, m, 0, 0, 255, y, 1, 1, 1) == ET_OK && y[0] == 2 &&
             y[1] == 4, "requantize half to even: %d %d", y[0], y[1]);
    const float bad[1] = {-1.0f};
    ET_CHECK(et_q_gemm_requant__ref(2, 1, 1, a, 0, w1, NULL, bad, 0, 0, 255, y, 1, 1, 1) == ET_ERR_ARG,
             "negative multiplier");
    const uint8_t r[4] = {0, 9, 10, 200};
    uint8_t ry[4];
    ET_CHECK(et_q_relu__ref(4, r, 10, ry, 1) == ET_OK && ry[0] == 10 && ry[1] == 10 && ry[3] == 200, "relu");
}

static void test_prep(void) {
    const float w[4] = {0.3f, -0.25f, 10.0f, 0.05f}, ws[2] = {0.1f, 0.5f}, b[2] = {0.015f, -1.0f};
    int8_t wq[4];
    int32_t bq[2];
    float m[2];
    ET_CHECK(et_q_prep_weights__ref(2, 2, w, ws, b, 0.1f, 0.2f, -7, 7, wq, bq, m) == ET_OK, "prep");
    /* 0.3/0.1 = 3 (float: 2.9999998 * ... rounds to 3), -0.25/0.1 = -2.5 -> -2, 10/0.5 = 20 -> 7, 0.1 -> 0 */
    ET_CHECK(wq[0] == 3 && wq[1] == -2 && wq[2] == 7 && wq[3] == 0, "wq %d %d %d %d", wq[0], wq[1], wq[2], wq[3]);
    ET_CHECK(m[0] == (0.1f * 0.1f) / 0.2f && m[1] == (0.1f * 0.5f) / 0.2f, "multipliers");
    ET_CHECK(bq[1] == -20, "bias -1 / 0.05 = %d", bq[1]);
    const float bad[2] = {0.1f, 0.0f};
    ET_CHECK(et_q_prep_weights__ref(2, 2, w, bad, b, 0.1f, 0.2f, -7, 7, wq, bq, m) == ET_ERR_ARG, "scale 0");
}

static void test_maxpool(void) {
    et_pool2d_params p;
    memset(&p, 0, sizeof p);
    p.n = 2; p.c = 3; p.h = 7; p.w = 5; p.kh = 3; p.kw = 2; p.stride_h = 2; p.stride_w = 2;
    p.pad_h = 1; p.pad_w = 1; p.dil_h = 1; p.dil_w = 1; p.ceil_mode = 1;
    ET_CHECK(et_pool2d_params_init(&p) == ET_OK, "pool params");
    uint8_t x[2 * 3 * 7 * 5], y[2 * 3 * 4 * 4], y3[2 * 3 * 4 * 4];
    for (size_t i = 0; i < sizeof x; i++) x[i] = (uint8_t)(q_next() % 256);
    ET_CHECK(et_q_maxpool2d__ref(&p, x, y, 1) == ET_OK && et_q_maxpool2d__ref(&p, x, y3, 3) == ET_OK, "pool");
    int ok = 1;
    for (int64_t pl = 0; pl < p.n * p.c; pl++)
        for (int64_t oy = 0; oy < p.oh; oy++)
            for (int64_t ox = 0; ox < p.ow; ox++) {
                int best = -1;
                for (int64_t i = 0; i < p.kh; i++)
                    for (int64_t j = 0; j < p.kw; j++) {
                        int64_t iy = oy * 2 - 1 + i, ix = ox * 2 - 1 + j;
                        if (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w && x[(pl * p.h + iy) * p.w + ix] > best)
                            best = x[(pl * p.h + iy) * p.w + ix];
                    }
                ok &= y[(pl * p.oh + oy) * p.ow + ox] == best;
            }
    ET_CHECK(ok, "qmaxpool2d vs reference");
    ET_CHECK(memcmp(y, y3, (size_t)(p.n * p.c * p.oh * p.ow)) == 0, "pool threads");
}

/* the 2x2 stride-2 fast path (and its neighbours on the generic loop: ceil mode past the
 * edge, padding) against a plain window max, odd sizes, 1 and 3 threads */
static void check_maxpool_k2(int64_t h, int64_t w, int64_t pad, int ceil) {
    et_pool2d_params p;
    memset(&p, 0, sizeof p);
    p.n = 3; p.c = 5; p.h = h; p.w = w; p.kh = 2; p.kw = 2; p.stride_h = 2; p.stride_w = 2;
    p.pad_h = pad; p.pad_w = pad; p.dil_h = 1; p.dil_w = 1; p.ceil_mode = ceil;
    ET_CHECK(et_pool2d_params_init(&p) == ET_OK, "pool params");
    const int64_t nx = p.n * p.c * h * w, ny = p.n * p.c * p.oh * p.ow;
    uint8_t *x = malloc((size_t)nx), *y = malloc((size_t)ny), *y3 = malloc((size_t)ny);
    for (int64_t i = 0; i < nx; i++) x[i] = (uint8_t)(q_next() % 256);
    ET_CHECK(et_q_maxpool2d__ref(&p, x, y, 1) == ET_OK && et_q_maxpool2d__ref(&p, x, y3, 3) == ET_OK, "pool k2");
    int ok = 1;
    for (int64_t pl = 0; pl < p.n * p.c; pl++)
        for (int64_t oy = 0; oy < p.oh; oy++)
            for (int64_t ox = 0; ox < p.ow; ox++) {
                int best = -1;
                for (int64_t i = 0; i < 2; i++)
                    for (int64_t j = 0; j < 2; j++) {
                        int64_t iy = oy * 2 - pad + i, ix = ox * 2 - pad + j;
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w && x[(pl * h + iy) * w + ix] > best)
                            best = x[(pl * h + iy) * w + ix];
                    }
                ok &= y[(pl * p.oh + oy) * p.ow + ox] == best;
            }
    ET_CHECK(ok && memcmp(y, y3, (size_t)ny) == 0, "qmaxpool2d k2s2 %lldx%lld pad %lld ceil %d", (long long)h,
             (long long)w, (long long)pad, ceil);
    free(x), free(y), free(y3);
}

/* every GEMM row the CPU runs == the __ref row, K below, at, above and not divisible by the
 * SIMD widths (16, 32, 64), extreme values (a - a_zp = -255 / 255, w = -128 / 127) */
static void test_variants(void) {
    et_check_variant_table("qgemm", et_q_gemm_variants, sizeof et_q_gemm_variants[0]);
    static const int64_t Ks[] = {1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129, 801, 65536};
    for (size_t t = 0; t < sizeof Ks / sizeof Ks[0]; t++) {
        const int64_t M = 3, N = 5, K = Ks[t];
        uint8_t *a = malloc((size_t)(M * K)), y0[15], y1[15];
        int8_t *w = malloc((size_t)(N * K));
        int32_t b[5];
        float m[5];
        const int extreme = K == 65536;
        for (int64_t i = 0; i < M * K; i++) a[i] = extreme ? (uint8_t)(i % 2 ? 255 : 0) : (uint8_t)(q_next() % 256);
        for (int64_t i = 0; i < N * K; i++) w[i] = extreme ? (int8_t)(i % 2 ? 127 : -128) : (int8_t)(q_next() % 256 - 128);
        for (int i = 0; i < 5; i++) {
            b[i] = (int32_t)(q_next() % 2001) - 1000;
            m[i] = extreme ? 1e-9f : 1e-4f;
        }
        const int32_t zp = extreme ? (int32_t)(K % 3 ? 0 : 255) : (int32_t)(q_next() % 256);
        ET_CHECK(et_q_gemm_variants[0].gemm(M, N, K, a, zp, w, b, m, 128, 0, 255, y0, N, 1, 1) == ET_OK, "ref K=%lld",
                 (long long)K);
        for (const et_q_gemm_variant *row = et_q_gemm_variants + 1; row->head.name; row++) {
            if (!et_isa_supported(row->head.isa)) continue;
            memset(y1, 0, sizeof y1);
            ET_CHECK(row->gemm(M, N, K, a, zp, w, b, m, 128, 0, 255, y1, N, 1, 2) == ET_OK, "%s", row->head.name);
            ET_CHECK(memcmp(y0, y1, (size_t)(M * N)) == 0, "qgemm %s != ref at K=%lld", row->head.name, (long long)K);
        }
        free(a);
        free(w);
    }
}

/* Each row's integer dot, seen exactly: bias[n] = -sum_k (a - a_zp) * w (computed here in
 * int64) and mult 1, so every output is y_zp = 128 unless the row's sum is off (by any amount:
 * 128 + the error, clamped). K below, at and above every vector width (16, 32, 64) and up to
 * ET_Q_MAX_K; data random, or extreme: activations 0 / 255 with a_zp 0 / 255, weights 127 / -128,
 * whole rows of one value (the largest sums, 255 * 128 * K) and alternating / random mixes. */
static void test_dot_exact(void) {
    static const int64_t Ks[] = {1, 3, 4, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 800, 801,
                                 4099, 65535, 65536};
    enum { M = 4, N = 6 };
    for (size_t t = 0; t < sizeof Ks / sizeof Ks[0]; t++)
        for (int mode = 0; mode < 3; mode++) {
            const int64_t K = Ks[t];
            uint8_t *a = malloc((size_t)(M * K)), y[N];
            int8_t *w = malloc((size_t)(N * K));
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    const uint32_t r = q_next();
                    a[m * K + k] = mode == 0 ? (uint8_t)(r % 256)
                                   : m == 0  ? 255
                                   : m == 1  ? 0
                                   : m == 2  ? (uint8_t)(k % 2 ? 255 : 0)
                                             : (uint8_t)(r % 2 ? 255 : 0);
                }
            for (int64_t n = 0; n < N; n++)
                for (int64_t k = 0; k < K; k++) {
                    const uint32_t r = q_next();
                    w[n * K + k] = mode == 0 ? (int8_t)(r % 256 - 128)
                                   : n == 0  ? -128
                                   : n == 1  ? 127
                                   : n == 2  ? (int8_t)(k % 2 ? 127 : -128)
                                   : n == 3  ? (int8_t)(k % 3 ? -128 : 127)
                                             : (int8_t)(r % 2 ? 127 : -128);
                }
            const int32_t zp = mode == 1 ? 0 : mode == 2 ? 255 : (int32_t)(q_next() % 256);
            const float one[N] = {1, 1, 1, 1, 1, 1};
            for (int64_t m = 0; m < M; m++) {
                int32_t b[N];
                for (int64_t n = 0; n < N; n++) {
                    int64_t acc = 0;
                    for (int64_t k = 0; k < K; k++) acc += (int64_t)(a[m * K + k] - zp) * w[n * K + k];
                    b[n] = (int32_t)-acc; /* |acc| <= 255 * 128 * K < 2^31 */
                }
                for (const et_q_gemm_variant *row = et_q_gemm_variants; row->head.name; row++) {
                    if (!et_isa_supported(row->head.isa)) continue;
                    memset(y, 0, sizeof y);
                    ET_CHECK(row->gemm(1, N, K, a + m * K, zp, w, b, one, 128, 0, 255, y, N, 1, 1) == ET_OK, "%s",
                             row->head.name);
                    int ok = 1;
                    for (int n = 0; n < N; n++) ok &= y[n] == 128;
                    ET_CHECK(ok, "qgemm %s: dot off at K=%lld mode %d row %lld (y %d %d %d %d %d %d, 128 = exact)",
                             row->head.name, (long long)K, mode, (long long)m, y[0], y[1], y[2], y[3], y[4], y[5]);
                }
            }
            free(a);
            free(w);
        }
}

/* wide GEMMs: N over the 64-column blocks and not a multiple of 4 (the rows that work on
 * column blocks), an output with strides (y_cs), 1 and 2 threads, every row == __ref */
static void test_wide(void) {
    static const int64_t shapes[][3] = {{5, 131, 25}, {3, 64, 800}, {7, 67, 65}, {2, 200, 129}, {9, 70, 801}, {12, 9, 64}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int64_t M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
        uint8_t *a = malloc((size_t)(M * K)), *y0 = malloc((size_t)(M * N)), *y1 = malloc((size_t)(M * N));
        int8_t *w = malloc((size_t)(N * K));
        int32_t *b = malloc(sizeof(int32_t) * (size_t)N);
        float *m = malloc(sizeof(float) * (size_t)N);
        for (int64_t i = 0; i < M * K; i++) a[i] = (uint8_t)(q_next() % 256);
        for (int64_t i = 0; i < N * K; i++) w[i] = (int8_t)(q_next() % 256 - 128);
        for (int64_t i = 0; i < N; i++) {
            b[i] = (int32_t)(q_next() % 20001) - 10000;
            m[i] = 1.0f / (float)(64 * K + (int64_t)(q_next() % 1000));
        }
        const int32_t zp = (int32_t)(q_next() % 256);
        ET_CHECK(et_q_gemm_variants[0].gemm(M, N, K, a, zp, w, b, m, 128, 0, 255, y0, 1, M, 1) == ET_OK, "ref");
        for (const et_q_gemm_variant *row = et_q_gemm_variants + 1; row->head.name; row++)
            for (int th = 1; th <= 2 && et_isa_supported(row->head.isa); th++) {
                memset(y1, 0, (size_t)(M * N));
                ET_CHECK(row->gemm(M, N, K, a, zp, w, b, m, 128, 0, 255, y1, 1, M, th) == ET_OK, "%s", row->head.name);
                ET_CHECK(memcmp(y0, y1, (size_t)(M * N)) == 0, "qgemm %s != ref at M=%lld N=%lld K=%lld th%d",
                         row->head.name, (long long)M, (long long)N, (long long)K, th);
            }
        free(a), free(y0), free(y1), free(w), free(b), free(m);
    }
}

/* The dot-product ISA levels: et_set_isa accepts exactly the supported levels, each level maps
 * to its parent, and a supported child implies its parent. */
static void test_isa_levels(void) {
    const et_isa saved = et_get_isa();
    for (int i = 0; i < ET_ISA_COUNT_; i++) {
        const et_isa isa = (et_isa)i, parent = et_isa_parent(isa);
        const int sup = et_isa_supported(isa);
        ET_CHECK((et_set_isa(isa) == ET_OK) == sup, "set_isa %s vs supported %d", et_isa_name(isa), sup);
        ET_CHECK(!sup || et_isa_supported(parent), "%s without its parent %s", et_isa_name(isa), et_isa_name(parent));
        ET_CHECK(et_isa_parent(parent) == parent, "parent of %s", et_isa_name(isa));
    }
    ET_CHECK(et_isa_parent(ET_ISA_AVX512VNNI) == ET_ISA_AVX512 && et_isa_parent(ET_ISA_AVXVNNI) == ET_ISA_AVX2 &&
                 et_isa_parent(ET_ISA_NEONDOT) == ET_ISA_NEON && et_isa_parent(ET_ISA_REF) == ET_ISA_REF,
             "isa parents");
    ET_CHECK(et_set_isa(ET_ISA_COUNT_) == ET_ERR_UNSUPPORTED, "set_isa past the enum");
    ET_CHECK(!(et_isa_supported(ET_ISA_NEONDOT) && et_isa_supported(ET_ISA_AVX2)), "neondot and avx2 together");
    et_set_isa(saved);
}

/* The direct depthwise path (groups == c == oc) of et_q_conv2d and et_q_conv2d__ref against the
 * generic im2col + GEMM path (et_q_conv2d_im2col with the __ref GEMM) and the plain reference
 * above, byte for byte, 1 and 3 threads; random data, or extreme (x 0 / 255, w -128 / 127,
 * zero points 0 / 255: the largest sums, saturated outputs). */
static void check_dw(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                     int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dil, int bias, int extreme) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = n; p.c = c; p.h = h; p.w = w; p.oc = c; p.kh = kh; p.kw = kw;
    p.stride_h = sh; p.stride_w = sw; p.pad_t = pt; p.pad_l = pl; p.pad_b = pb; p.pad_r = pr;
    p.dil_h = p.dil_w = dil; p.groups = c;
    ET_CHECK(et_conv2d_params_init(&p) == ET_OK, "dw params");
    ET_CHECK(et_q_conv2d_ws_bytes(&p) == 0, "the depthwise path needs no workspace");
    const int64_t nx = n * c * h * w, nw = c * kh * kw, ny = n * c * p.oh * p.ow;
    uint8_t *x = malloc((size_t)nx), *yr = malloc((size_t)ny), *yg = malloc((size_t)ny), *y = malloc((size_t)ny);
    int8_t *wt = malloc((size_t)nw);
    int32_t *b = malloc((size_t)c * sizeof *b);
    float *m = malloc((size_t)c * sizeof *m);
    for (int64_t i = 0; i < nx; i++) x[i] = extreme ? (uint8_t)(q_next() % 2 ? 255 : 0) : (uint8_t)(q_next() % 256);
    for (int64_t i = 0; i < nw; i++) wt[i] = extreme ? (int8_t)(q_next() % 2 ? 127 : -128) : (int8_t)(q_next() % 256 - 128);
    for (int64_t i = 0; i < c; i++) {
        b[i] = (int32_t)(q_next() % 20001) - 10000;
        m[i] = extreme ? (float)(q_next() % 100 + 1) * 1e-5f : (float)(q_next() % 1000 + 1) * 2e-5f;
    }
    const int32_t xz = extreme ? (q_next() % 2 ? 255 : 0) : (int32_t)(q_next() % 256);
    const int32_t yz = (int32_t)(q_next() % 200) + 20;
    const int32_t *bb = bias ? b : NULL;
    const size_t wsb = et_q_conv2d_im2col_ws_bytes(&p);
    void *ws = malloc(wsb ? wsb : 1);
    ref_conv(&p, x, xz, wt, bb, m, yz, 3, 250, yr);
    ET_CHECK(et_q_conv2d_im2col(et_q_gemm_variants[0].gemm, &p, x, xz, wt, bb, m, yz, 3, 250, yg, ws, wsb, 1) == ET_OK,
             "im2col");
    ET_CHECK(memcmp(yg, yr, (size_t)ny) == 0, "im2col path vs reference");
    for (int th = 1; th <= 3; th += 2)
        for (int fast = 0; fast < 2; fast++) {
            memset(y, 0, (size_t)ny);
            const et_status st = fast ? et_q_conv2d(&p, x, xz, wt, bb, m, yz, 3, 250, y, NULL, 0, th)
                                      : et_q_conv2d__ref(&p, x, xz, wt, bb, m, yz, 3, 250, y, NULL, 0, th);
            ET_CHECK(st == ET_OK, "dw conv");
            ET_CHECK(memcmp(y, yg, (size_t)ny) == 0,
                     "depthwise %s != im2col path (n%lld c%lld %lldx%lld k%lldx%lld s%lld,%lld pad %lld %lld %lld %lld "
                     "d%lld bias %d extreme %d, %d threads)", fast ? "et_q_conv2d" : "et_q_conv2d__ref", (long long)n,
                     (long long)c, (long long)h, (long long)w, (long long)kh, (long long)kw, (long long)sh,
                     (long long)sw, (long long)pt, (long long)pl, (long long)pb, (long long)pr, (long long)dil, bias,
                     extreme, th);
        }
    for (const et_q_conv2d_variant *row = et_q_dwconv2d_variants; row->head.name; row++) /* every depthwise row */
        for (int th = 1; th <= 3 && et_isa_supported(row->head.isa); th += 2) {
            memset(y, 0, (size_t)ny);
            ET_CHECK(row->conv(&p, x, xz, wt, bb, m, yz, 3, 250, y, NULL, 0, th) == ET_OK, "dw %s", row->head.name);
            ET_CHECK(memcmp(y, yg, (size_t)ny) == 0, "depthwise row %s != im2col path (n%lld c%lld %lldx%lld k%lldx%lld "
                     "s%lld,%lld d%lld extreme %d, %d threads)", row->head.name, (long long)n, (long long)c,
                     (long long)h, (long long)w, (long long)kh, (long long)kw, (long long)sh, (long long)sw,
                     (long long)dil, extreme, th);
        }
    m[0] = -1.0f;
    ET_CHECK(et_q_conv2d(&p, x, xz, wt, bb, m, yz, 3, 250, y, NULL, 0, 1) == ET_ERR_ARG, "dw: negative multiplier");
    m[0] = 1e-3f;
    ET_CHECK(et_q_conv2d(&p, x, 256, wt, bb, m, yz, 3, 250, y, NULL, 0, 1) == ET_ERR_ARG, "dw: x_zp 256");
    free(x); free(yr); free(yg); free(y); free(wt); free(b); free(m); free(ws);
}

static void test_depthwise(void) {
    static const int64_t cs[] = {1, 3, 17};
    for (size_t i = 0; i < 3; i++) {
        const int64_t c = cs[i];
        check_dw(1, c, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0);  /* stride 1, pad 1 */
        check_dw(3, c, 9, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0);  /* stride 2, batch 3 */
        check_dw(1, c, 11, 13, 5, 5, 1, 1, 2, 2, 2, 2, 1, 0, 0); /* kernel 5, no bias */
        check_dw(3, c, 13, 11, 5, 5, 2, 2, 2, 2, 2, 2, 1, 1, 0); /* kernel 5, stride 2 */
        check_dw(1, c, 9, 10, 3, 3, 1, 1, 0, 2, 1, 0, 1, 1, 0); /* asymmetric padding */
        check_dw(3, c, 10, 9, 3, 3, 2, 2, 2, 0, 0, 1, 1, 1, 0); /* asymmetric, stride 2 */
        check_dw(1, c, 11, 11, 3, 3, 1, 1, 2, 2, 2, 2, 2, 1, 0); /* dilation 2 */
        check_dw(3, c, 12, 9, 5, 5, 2, 2, 3, 1, 4, 2, 2, 1, 0); /* dilation 2, kernel 5, stride 2 */
        check_dw(1, c, 5, 3, 3, 5, 1, 2, 1, 2, 1, 2, 1, 1, 0);  /* 3x5 kernel, strides 1, 2 */
        check_dw(3, c, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);  /* extreme values */
    }
    check_dw(1, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0);   /* 1x1 */
    check_dw(1, 2, 2, 2, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 0);   /* kernel larger than the image */
    check_dw(2, 3, 3, 601, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0); /* wide rows, still in the padded buffer */
    check_dw(1, 2, 70, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0); /* more rows than one padded block holds */
    check_dw(2, 2, 90, 33, 3, 3, 2, 2, 1, 2, 0, 1, 1, 1, 0); /* stride 2 over several padded blocks */
    check_dw(1, 2, 4, 6001, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0); /* too wide for the buffer: column blocks */
    check_dw(1, 2, 5, 9001, 3, 3, 2, 2, 2, 1, 0, 2, 2, 1, 1); /* the same, stride 2, dilation 2 */
    check_dw(1, 4, 5, 515, 3, 3, 2, 2, 1, 1, 1, 1, 2, 1, 1); /* wide, stride 2, dilation 2, extreme */
    check_dw(32, 8, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0); /* MobileNetV2-like */
    /* full blocks of 16 channels (the transposed copies), planes below / at / over 16 pixels */
    check_dw(2, 32, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0);
    check_dw(3, 48, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    check_dw(2, 16, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0);
    check_dw(1, 33, 2, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0);
    check_dw(2, 16, 9, 11, 3, 3, 2, 2, 1, 0, 1, 1, 1, 1, 1);
    check_dw(1, 32, 17, 5, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 0);
}

/* qadd: ties (half to even), saturation at both ends, the float order; threads; bad parameters */
static void test_qadd(void) {
    /* a: s 0.5 zp 10, b: s 0.25 zp 0, y: s 1 zp 0 -> fa + fb = 0.5, 1.5, 2.5, -0.5, -1.5, 186.25 */
    const uint8_t a[6] = {11, 13, 15, 9, 7, 255}, b[6] = {0, 0, 0, 0, 0, 255};
    uint8_t y[6];
    ET_CHECK(et_q_add__ref(6, a, 0.5f, 10, b, 0.25f, 0, 1.0f, 5, 0, 255, y, 1) == ET_OK, "qadd");
    const uint8_t want[6] = {5, 7, 7, 5, 3, 191};
    ET_CHECK(memcmp(y, want, 6) == 0, "qadd ties: %d %d %d %d %d %d", y[0], y[1], y[2], y[3], y[4], y[5]);
    ET_CHECK(et_q_add__ref(6, a, 0.5f, 10, b, 0.25f, 0, 0.5f, 5, 4, 250, y, 1) == ET_OK && y[5] == 250 && y[4] == 4,
             "qadd saturation: %d %d", y[5], y[4]);
    enum { N = 100003 };
    uint8_t *ra = malloc(N), *rb = malloc(N), *y1 = malloc(N), *y3 = malloc(N);
    for (int i = 0; i < N; i++) ra[i] = (uint8_t)(q_next() % 256), rb[i] = (uint8_t)(q_next() % 256);
    ET_CHECK(et_q_add__ref(N, ra, 0.013f, 77, rb, 13.1f, 200, 0.7f, 128, 0, 255, y1, 1) == ET_OK &&
                 et_q_add__ref(N, ra, 0.013f, 77, rb, 13.1f, 200, 0.7f, 128, 0, 255, y3, 3) == ET_OK &&
                 memcmp(y1, y3, N) == 0, "qadd 1 vs 3 threads");
    int ok = 1;
    for (int i = 0; i < N; i++) {
        const float s = (float)(ra[i] - 77) * 0.013f + (float)(rb[i] - 200) * 13.1f;
        const float r = nearbyintf(s * (1.0f / 0.7f)) + 128.0f;
        ok &= y1[i] == (uint8_t)(r < 0.0f ? 0.0f : (r > 255.0f ? 255.0f : r));
    }
    ET_CHECK(ok, "qadd vs the float formula");
    ET_CHECK(et_q_add__ref(6, a, 0.0f, 10, b, 0.25f, 0, 1.0f, 5, 0, 255, y, 1) == ET_ERR_ARG, "qadd a_s 0");
    ET_CHECK(et_q_add__ref(6, a, 0.5f, 256, b, 0.25f, 0, 1.0f, 5, 0, 255, y, 1) == ET_ERR_ARG, "qadd a_zp 256");
    ET_CHECK(et_q_add__ref(6, a, 0.5f, 1, b, INFINITY, 0, 1.0f, 5, 0, 255, y, 1) == ET_ERR_ARG, "qadd b_s inf");
    ET_CHECK(et_q_add__ref(6, a, 0.5f, 1, b, 1.0f, 0, 1.0f, 3, 4, 255, y, 1) == ET_ERR_ARG, "qadd y_zp < qmin");
    free(ra), free(rb), free(y1), free(y3);
}

/* qclamp: the bounds' levels (ties, +inf, clamped to the range), threads, bad bounds */
static void test_qclamp(void) {
    const uint8_t x[8] = {0, 19, 20, 25, 32, 33, 200, 255};
    uint8_t y[8];
    /* s 0.5, zp 20: Q(0) = 20, Q(6) = 32 */
    ET_CHECK(et_q_clamp__ref(8, x, 0.5f, 20, 0, 255, 0.0f, 6.0f, y, 1) == ET_OK, "qclamp");
    const uint8_t relu6[8] = {20, 20, 20, 25, 32, 32, 32, 32};
    ET_CHECK(memcmp(y, relu6, 8) == 0, "qclamp relu6");
    /* lo 1.25 / 0.5 = 2.5 -> 2 (tie to even): 22; hi +inf -> qmax 240 */
    ET_CHECK(et_q_clamp__ref(8, x, 0.5f, 20, 10, 240, 1.25f, INFINITY, y, 1) == ET_OK && y[0] == 22 && y[3] == 25 &&
                 y[7] == 240, "qclamp tie / inf: %d %d %d", y[0], y[3], y[7]);
    /* hi below the range: Q(hi) = qmin; lo = hi */
    ET_CHECK(et_q_clamp__ref(8, x, 0.5f, 20, 10, 240, -100.0f, -100.0f, y, 1) == ET_OK && y[7] == 10, "qclamp low");
    ET_CHECK(et_q_clamp__ref(8, x, 0.5f, 20, 0, 255, 1.0f, 0.5f, y, 1) == ET_ERR_ARG, "qclamp lo > hi");
    ET_CHECK(et_q_clamp__ref(8, x, 0.5f, 20, 0, 255, -INFINITY, 0.5f, y, 1) == ET_ERR_ARG, "qclamp lo -inf");
    ET_CHECK(et_q_clamp__ref(8, x, 0.5f, 20, 0, 255, 0.0f, NAN, y, 1) == ET_ERR_ARG, "qclamp hi NaN");
    ET_CHECK(et_q_clamp__ref(8, x, 0.5f, 9, 10, 255, 0.0f, 1.0f, y, 1) == ET_ERR_ARG, "qclamp zp < qmin");
    enum { N = 70001 };
    uint8_t *r = malloc(N), *y1 = malloc(N), *y3 = malloc(N);
    for (int i = 0; i < N; i++) r[i] = (uint8_t)(q_next() % 256);
    ET_CHECK(et_q_clamp__ref(N, r, 0.03f, 100, 0, 255, -1.0f, 2.0f, y1, 1) == ET_OK &&
                 et_q_clamp__ref(N, r, 0.03f, 100, 0, 255, -1.0f, 2.0f, y3, 3) == ET_OK && memcmp(y1, y3, N) == 0,
             "qclamp 1 vs 3 threads");
    free(r), free(y1), free(y3);
}

/* round half to even of s / n by another route: floor((2s + n) / 2n), one down at an exact odd tie */
static int64_t gap_ref_round(int64_t s, int64_t n) {
    const int64_t num = 2 * s + n, den = 2 * n;
    int64_t q = num / den;
    if (num % den != 0 && num < 0) q -= 1; /* floor */
    if (num % den == 0 && (q % 2 != 0)) q -= 1;
    return q;
}

/* qglobal_avgpool: exact ties of both parities and signs, hw = 1, large planes, clamping, threads */
static void test_qgap(void) {
    /* zp 100, hw 4: S = 2, 6, 10, -2, -6, -10 -> 0.5, 1.5, 2.5, -0.5, -1.5, -2.5 -> 0, 2, 2, 0, -2, -2 */
    const uint8_t x[24] = {100, 100, 100, 102, 100, 100, 100, 106, 100, 100, 100, 110,
                           100, 100, 100, 98,  100, 100, 100, 94,  100, 100, 100, 90};
    uint8_t y[24];
    ET_CHECK(et_q_global_avgpool__ref(6, 4, x, 100, 0, 255, y, 1) == ET_OK, "qgap");
    const uint8_t want[6] = {100, 102, 102, 100, 98, 98};
    ET_CHECK(memcmp(y, want, 6) == 0, "qgap ties: %d %d %d %d %d %d", y[0], y[1], y[2], y[3], y[4], y[5]);
    ET_CHECK(et_q_global_avgpool__ref(24, 1, x, 100, 95, 105, y, 1) == ET_OK && y[0] == 100 && y[3] == 102 &&
                 y[11] == 105 && y[23] == 95, "qgap hw 1 / clamp");
    ET_CHECK(et_q_global_avgpool__ref(6, 0, x, 100, 0, 255, y, 1) == ET_ERR_ARG, "qgap hw 0");
    ET_CHECK(et_q_global_avgpool__ref(6, 4, x, 100, 0, 99, y, 1) == ET_ERR_ARG, "qgap zp > qmax");
    const int64_t hws[] = {1, 2, 3, 49, 196, 65536 + 7};
    for (size_t t = 0; t < sizeof hws / sizeof hws[0]; t++) {
        const int64_t hw = hws[t], planes = 37;
        uint8_t *r = malloc((size_t)(planes * hw)), y1[37], y3[37];
        for (int64_t pl = 0; pl < planes; pl++) {
            const int spread = (int)(q_next() % 256) + 1, base = (int)(q_next() % (257 - spread));
            for (int64_t i = 0; i < hw; i++) r[pl * hw + i] = (uint8_t)(base + (int)(q_next() % (uint32_t)spread));
        }
        const int32_t zp = (int32_t)(q_next() % 256);
        ET_CHECK(et_q_global_avgpool__ref(planes, hw, r, zp, 0, 255, y1, 1) == ET_OK &&
                     et_q_global_avgpool__ref(planes, hw, r, zp, 0, 255, y3, 3) == ET_OK && memcmp(y1, y3, 37) == 0,
                 "qgap threads");
        int ok = 1;
        for (int64_t pl = 0; pl < planes; pl++) {
            int64_t s = 0;
            for (int64_t i = 0; i < hw; i++) s += (int64_t)r[pl * hw + i] - zp;
            const int64_t q = zp + gap_ref_round(s, hw);
            ok &= y1[pl] == (q < 0 ? 0 : (q > 255 ? 255 : q));
        }
        ET_CHECK(ok, "qgap vs integer reference at hw %lld", (long long)hw);
        free(r);
    }
}

/* et_q_requant1 (clamp, then round by adding 1.5 * 2^23) == clamp(nearbyintf(acc * mult) + zp):
 * exact ties (acc * mult = k + 0.5, both signs, even and odd k), values near the clamp bounds,
 * huge products (inf), random accs and multipliers. */
static void test_requant_round(void) {
    int bad = 0;
    for (int64_t acc = -1100; acc <= 1100; acc++) {
        const float ms[4] = {0.5f, 0.25f, 1.0f, 0.125f};
        for (int i = 0; i < 4; i++)
            for (int32_t zp = 0; zp <= 255; zp += 51)
                bad += et_q_requant1(acc, ms[i], zp, 3, 250) != ref_requant(acc, ms[i], zp, 3, 250);
    }
    for (int i = 0; i < 200000; i++) {
        const int64_t acc = (int64_t)(int32_t)(q_next() ^ (q_next() << 16)) >> (q_next() % 31);
        const float m = (float)(q_next() % 100000 + 1) * powf(2.0f, (float)((int)(q_next() % 40) - 36));
        const int32_t zp = (int32_t)(q_next() % 256), lo = (int32_t)(q_next() % (zp + 1));
        const int32_t hi = zp + (int32_t)(q_next() % (256 - zp));
        if (lo < hi) bad += et_q_requant1(acc, m, zp, lo, hi) != ref_requant(acc, m, zp, lo, hi);
    }
    bad += et_q_requant1(INT32_MAX, 3e38f, 7, 0, 255) != 255 || et_q_requant1(INT32_MIN, 3e38f, 7, 0, 255) != 0;
    ET_CHECK(bad == 0, "et_q_requant1 != nearbyintf requantize in %d cases", bad);
}

/* et_q_linear (the tiled 1x1 conv row across images when the ISA has one, else the GEMM row)
 * against the __ref GEMM under every ISA, with and without workspace, 1 and 3 threads. */
static void test_qlinear(void) {
    static const int64_t shapes[][3] = {{64, 500, 800}, {1, 10, 500}, {65, 7, 3}, {130, 33, 129}, {3, 1, 1}};
    const et_isa saved = et_get_isa();
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int64_t N = shapes[t][0], OC = shapes[t][1], K = shapes[t][2];
        uint8_t *x = malloc((size_t)(N * K)), *y0 = malloc((size_t)(N * OC)), *y1 = malloc((size_t)(N * OC));
        int8_t *w = malloc((size_t)(OC * K));
        int32_t *b = malloc((size_t)OC * sizeof *b);
        float *m = malloc((size_t)OC * sizeof *m);
        for (int64_t i = 0; i < N * K; i++) x[i] = (uint8_t)(q_next() % 256);
        for (int64_t i = 0; i < OC * K; i++) w[i] = (int8_t)(q_next() % 255 - 127);
        for (int64_t i = 0; i < OC; i++) b[i] = (int32_t)(q_next() % 20001) - 10000, m[i] = 3e-5f * (float)(1 + i % 7);
        const int32_t zp = (int32_t)(q_next() % 256);
        ET_CHECK(et_q_gemm_requant__ref(N, OC, K, x, zp, w, b, m, 100, 0, 255, y0, OC, 1, 1) == ET_OK, "qlinear ref");
        for (int isa = 0; isa < ET_ISA_COUNT_; isa++) {
            if (!et_isa_supported((et_isa)isa)) continue;
            et_set_isa((et_isa)isa);
            for (int nt = 1; nt <= 3; nt += 2)
                for (int with_ws = 0; with_ws < 2; with_ws++) {
                    const size_t ws_bytes = with_ws ? et_q_linear_ws_bytes(N, OC, K, nt) : 0;
                    void *ws = ws_bytes ? malloc(ws_bytes) : NULL;
                    memset(y1, 0, (size_t)(N * OC));
                    ET_CHECK(et_q_linear(N, OC, K, x, zp, w, b, m, 100, 0, 255, y1, ws, ws_bytes, nt) == ET_OK,
                             "qlinear status");
                    ET_CHECK(memcmp(y0, y1, (size_t)(N * OC)) == 0, "qlinear %s [%lld,%lld,%lld] ws %d nt %d != ref",
                             et_isa_name((et_isa)isa), (long long)N, (long long)OC, (long long)K, with_ws, nt);
                    free(ws);
                }
        }
        et_set_isa(saved);
        free(x), free(y0), free(y1), free(w), free(b), free(m);
    }
}

void test_qgemm(void) {
    test_requant_round();
    et_check_variant_table("qconv2d", et_q_conv2d_variants, sizeof et_q_conv2d_variants[0]);
    et_check_variant_table("qdwconv2d", et_q_dwconv2d_variants, sizeof et_q_dwconv2d_variants[0]);
    test_isa_levels();
    test_variants();
    test_wide();
    test_dot_exact();
    test_quantize_rules();
    test_prep();
    test_maxpool();
    check_maxpool_k2(24, 24, 0, 0);
    check_maxpool_k2(7, 9, 0, 0);
    check_maxpool_k2(7, 9, 0, 1);
    check_maxpool_k2(1, 33, 0, 1);
    check_maxpool_k2(6, 5, 1, 0);
    check_maxpool_k2(4, 1101, 0, 0); /* rows wider than the row-max buffer */
    check_conv(1, 1, 28, 28, 20, 5, 1, 0, 1, 1, 1);  /* LeNet conv1 */
    check_conv(2, 20, 12, 12, 50, 5, 1, 0, 1, 1, 1); /* LeNet conv2, batch 2 */
    check_conv(3, 3, 7, 5, 5, 3, 2, 1, 1, 1, 0);     /* odd sizes, stride, padding, no bias */
    check_conv(1, 4, 9, 9, 6, 3, 1, 2, 2, 2, 1);     /* dilation, groups */
    check_conv(1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1);     /* 1x1 */
    check_conv(3, 7, 5, 9, 13, 1, 1, 0, 1, 1, 1);    /* pointwise (the direct pack), odd channels */
    check_conv(2, 16, 11, 13, 9, 1, 2, 0, 1, 1, 0);  /* 1x1 stride 2 */
    check_conv(2, 3, 17, 19, 70, 3, 2, 1, 1, 1, 1);  /* K = 27 (tail), 70 channels, partial tiles */
    check_conv(1, 6, 10, 10, 6, 3, 1, 1, 1, 3, 1);   /* groups, 2 channels per group */
    check_conv(65, 2, 3, 3, 5, 2, 1, 0, 1, 1, 1);    /* many images, 4 pixels each */
    check_conv(1, 64, 8, 8, 3, 3, 1, 1, 1, 1, 0);    /* K = 576 */
    check_conv(2, 5, 6, 6, 7, 3, 1, 1, 1, 1, 2);     /* biases near +-2^31 */
    test_depthwise();
    test_qadd();
    test_qclamp();
    test_qgap();
    test_qlinear();
}
