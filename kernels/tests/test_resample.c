/* edgetrain — tests of conv_transpose.c and resample.c.
 * Transposed convolution: the GEMM path (via conv2d's input gradient) against the __ref gather
 * loop, and __ref against the scatter loop written from the definition; thread counts give
 * the same bits. Interpolation: exact cases (identity, 2x nearest, integer downsampling),
 * bilinear reproducing a linear ramp, backward as the exact adjoint of forward. Adaptive
 * average pooling against a double loop with floor/ceil windows. */
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"

static float *falloc(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static int bitwise_same(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* ---- transposed convolution ------------------------------------------------------------ */
typedef struct ct_case {
    int64_t n, c, h, w, oc, kh, kw, s_h, s_w, p_h, p_w, op_h, op_w, d_h, d_w, g;
} ct_case;

static const ct_case ct_cases[] = {
    {2, 3, 5, 4, 4, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1},
    {2, 4, 5, 6, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},
    {1, 4, 4, 5, 6, 3, 3, 2, 2, 0, 0, 1, 1, 2, 2, 2},      /* groups 2, dilation 2 */
    {2, 2, 4, 3, 5, 2, 4, 3, 3, 2, 2, 2, 2, 1, 1, 1},      /* stride 3, out_pad 2 */
    {2, 3, 5, 4, 2, 3, 3, 2, 1, 1, 0, 1, 0, 1, 1, 1},      /* rectangular stride */
    {2, 4, 5, 5, 4, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 4},      /* depthwise */
    {3, 8, 7, 7, 4, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1},      /* U-Net up-sampling */
    {1, 3, 1, 1, 2, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1},      /* one pixel */
    {4, 32, 7, 7, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},    /* images in parallel */
    {1, 64, 14, 14, 32, 4, 4, 2, 2, 1, 1, 0, 0, 1, 1, 1},  /* one image, threaded GEMM */
};

static et_conv_transpose2d_params ct_params(const ct_case *k) {
    et_conv_transpose2d_params p = {k->n, k->c, k->h, k->w, k->oc, k->kh, k->kw, k->s_h, k->s_w,
                                    k->p_h, k->p_w, k->op_h, k->op_w, k->d_h, k->d_w, k->g, 0, 0};
    return p;
}

/* The definition: every input pixel scatters its kernel-weighted value into y. */
static void ct_scatter(const et_conv_transpose2d_params *p, const float *x, const float *w,
                       const float *b, double *y) {
    const int64_t cg = p->c / p->groups, ocg = p->oc / p->groups;
    for (int64_t i = 0; i < p->n * p->oc * p->oh * p->ow; i++) y[i] = b ? b[(i / (p->oh * p->ow)) % p->oc] : 0.0;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t c = 0; c < p->c; c++)
            for (int64_t iy = 0; iy < p->h; iy++)
                for (int64_t ix = 0; ix < p->w; ix++)
                    for (int64_t oo = 0; oo < ocg; oo++)
                        for (int64_t ky = 0; ky < p->kh; ky++)
                            for (int64_t kx = 0; kx < p->kw; kx++) {
                                const int64_t oy = iy * p->stride_h - p->pad_h + ky * p->dil_h;
                                const int64_t ox = ix * p->stride_w - p->pad_w + kx * p->dil_w;
                                if (oy < 0 || oy >= p->oh || ox < 0 || ox >= p->ow) continue;
                                const int64_t o = (c / cg) * ocg + oo;
                                y[((i * p->oc + o) * p->oh + oy) * p->ow + ox] +=
                                    (double)x[((i * p->c + c) * p->h + iy) * p->w + ix] *
                                    (double)w[((c * ocg + oo) * p->kh + ky) * p->kw + kx];
                            }
}

static void check_conv_transpose(int ci, const ct_case *k) {
    et_conv_transpose2d_params p = ct_params(k);
    ET_CHECK(et_conv_transpose2d_params_init(&p) == ET_OK, "case %d: init", ci);
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.c * (p.oc / p.groups) * p.kh * p.kw;
    const int64_t ny = p.n * p.oc * p.oh * p.ow;
    float *x = falloc(nx), *w = falloc(nw), *b = falloc(p.oc), *y = falloc(ny), *y3 = falloc(ny);
    float *yr = falloc(ny), *yd = falloc(ny);
    double *ys = (double *)calloc((size_t)ny, sizeof(double));
    et_fill_random(x, nx, 100 + ci, -1.0f, 1.0f);
    et_fill_random(w, nw, 200 + ci, -0.5f, 0.5f);
    et_fill_random(b, p.oc, 300 + ci, -1.0f, 1.0f);
    ct_scatter(&p, x, w, b, ys);
    for (int64_t i = 0; i < ny; i++) yd[i] = (float)ys[i];
    ET_CHECK(et_f32_conv_transpose2d_fwd__ref(&p, x, w, b, yr) == ET_OK, "case %d: ref", ci);
    ET_CHECK(et_allclose(yr, yd, ny, 1e-6f, 1e-6f, "ref vs scatter"), "case %d: __ref != definition", ci);
    for (int t = 1; t <= 3; t += 2) {
        size_t ws_bytes = et_f32_conv_transpose2d_fwd_ws_bytes(&p, t);
        void *ws = ws_bytes ? malloc(ws_bytes) : NULL;
        float *out = t == 1 ? y : y3;
        memset(out, 0xff, (size_t)ny * sizeof(float)); /* NaN: every output must be written */
        ET_CHECK(et_f32_conv_transpose2d_fwd(&p, x, w, b, out, ws, ws_bytes, t) == ET_OK, "case %d: fwd", ci);
        ET_CHECK(et_allclose(out, yr, ny, 1e-5f, 1e-5f, "conv_transpose"), "case %d threads %d: fwd != ref", ci, t);
        if (ws_bytes)
            ET_CHECK(et_f32_conv_transpose2d_fwd(&p, x, w, b, out, ws, ws_bytes - 1, t) == ET_ERR_WORKSPACE,
                     "case %d: short workspace accepted", ci);
        free(ws);
    }
    ET_CHECK(bitwise_same(y, y3, ny), "case %d: 1 and 3 threads differ", ci);
    free(x); free(w); free(b); free(y); free(y3); free(yr); free(yd); free(ys);
}

static void check_conv_transpose_params(void) {
    const ct_case ok = {1, 4, 5, 5, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2};
    et_conv_transpose2d_params p = ct_params(&ok);
    ET_CHECK(et_conv_transpose2d_params_init(&p) == ET_OK && p.oh == 10 && p.ow == 10, "output size");
    p = ct_params(&ok); p.out_pad_h = 2;
    ET_CHECK(et_conv_transpose2d_params_init(&p) == ET_ERR_ARG, "out_pad >= stride accepted");
    p = ct_params(&ok); p.groups = 3;
    ET_CHECK(et_conv_transpose2d_params_init(&p) == ET_ERR_ARG, "channels not divisible by groups");
    p = ct_params(&ok); p.pad_h = 6;
    ET_CHECK(et_conv_transpose2d_params_init(&p) == ET_ERR_ARG, "empty output accepted");
    p = ct_params(&ok);
    et_conv_transpose2d_params_init(&p);
    p.oh += 1;
    float v = 0.0f;
    ET_CHECK(et_f32_conv_transpose2d_fwd__ref(&p, &v, &v, NULL, &v) == ET_ERR_ARG, "stale oh accepted");
    ET_CHECK(et_f32_conv_transpose2d_fwd(&p, &v, &v, NULL, &v, NULL, 0, 1) == ET_ERR_ARG, "stale oh accepted");
}

/* ---- interpolation ----------------------------------------------------------------------- */
static et_interp2d_params ip(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow, et_interp_mode m,
                             int ac, float sh, float sw) {
    et_interp2d_params p = {nc, h, w, oh, ow, m, ac, sh, sw};
    return p;
}

/* <fwd(x), dy> == <x, bwd(dy)>: the backward is the forward's transpose. */
static void check_adjoint(const et_interp2d_params *p, const char *what) {
    const int64_t nx = p->nc * p->h * p->w, ny = p->nc * p->oh * p->ow;
    float *x = falloc(nx), *y = falloc(ny), *dy = falloc(ny), *dx = falloc(nx), *dx3 = falloc(nx);
    float *y3 = falloc(ny);
    et_fill_random(x, nx, 7, -1.0f, 1.0f);
    et_fill_random(dy, ny, 8, -1.0f, 1.0f);
    memset(dx, 0xff, (size_t)nx * sizeof(float));
    ET_CHECK(et_f32_interp2d_fwd(p, x, y, 1) == ET_OK && et_f32_interp2d_bwd(p, dy, dx, 1) == ET_OK, "%s: run", what);
    double a = 0.0, b = 0.0;
    for (int64_t i = 0; i < ny; i++) a += (double)y[i] * dy[i];
    for (int64_t i = 0; i < nx; i++) b += (double)x[i] * dx[i];
    ET_CHECK(fabs(a - b) <= 1e-4 * (1.0 + fabs(a)), "%s: not adjoint (%g vs %g)", what, a, b);
    et_f32_interp2d_fwd(p, x, y3, 3);
    et_f32_interp2d_bwd(p, dy, dx3, 3);
    ET_CHECK(bitwise_same(y, y3, ny) && bitwise_same(dx, dx3, nx), "%s: thread-count dependent", what);
    free(x); free(y); free(dy); free(dx); free(dx3); free(y3);
}

static void check_interp(void) {
    enum { NC = 3, H = 4, W = 5 };
    float x[NC * H * W], y[NC * 4 * H * 4 * W];
    et_fill_random(x, NC * H * W, 5, -2.0f, 2.0f);
    /* identity for both modes */
    for (int m = 0; m < ET_INTERP_COUNT_; m++) {
        et_interp2d_params p = ip(NC, H, W, H, W, (et_interp_mode)m, 0, 0.0f, 0.0f);
        ET_CHECK(et_f32_interp2d_fwd(&p, x, y, 1) == ET_OK && bitwise_same(x, y, NC * H * W), "mode %d identity", m);
    }
    /* nearest 2x duplicates, 3x (by sizes) triplicates, /2 takes even pixels */
    et_interp2d_params p = ip(NC, H, W, 2 * H, 3 * W, ET_INTERP_NEAREST, 0, 0.0f, 0.0f);
    et_f32_interp2d_fwd(&p, x, y, 1);
    int ok = 1;
    for (int q = 0; q < NC; q++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 3 * W; j++) ok &= y[(q * 2 * H + i) * 3 * W + j] == x[(q * H + i / 2) * W + j / 3];
    ET_CHECK(ok, "nearest 2x3 replication");
    p = ip(NC, H, W, H / 2, 1, ET_INTERP_NEAREST, 0, 0.0f, 0.0f);
    et_f32_interp2d_fwd(&p, x, y, 1);
    ok = 1;
    for (int q = 0; q < NC; q++)
        for (int i = 0; i < H / 2; i++) ok &= y[q * H / 2 + i] == x[(q * H + 2 * i) * W];
    ET_CHECK(ok, "nearest downsampling");
    /* bilinear reproduces a ramp r = 0.5 i - 0.25 j at the source coordinates */
    enum { OH = 9, OW = 7 };
    float ramp[H * W], out[OH * OW];
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) ramp[i * W + j] = 0.5f * i - 0.25f * j;
    for (int ac = 0; ac < 2; ac++) {
        p = ip(1, H, W, OH, OW, ET_INTERP_BILINEAR, ac, 0.0f, 0.0f);
        et_f32_interp2d_fwd(&p, ramp, out, 1);
        double worst = 0.0;
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                double si = ac ? i * (H - 1.0) / (OH - 1.0) : (i + 0.5) * H / OH - 0.5;
                double sj = ac ? j * (W - 1.0) / (OW - 1.0) : (j + 0.5) * W / OW - 0.5;
                si = si < 0 ? 0 : (si > H - 1 ? H - 1 : si);
                sj = sj < 0 ? 0 : (sj > W - 1 ? W - 1 : sj);
                double e = fabs(out[i * OW + j] - (0.5 * si - 0.25 * sj));
                if (e > worst) worst = e;
            }
        ET_CHECK(worst < 1e-5, "bilinear align_corners=%d ramp error %g", ac, worst);
    }
    /* adjoint and determinism at awkward sizes, both modes, scale factors too */
    const et_interp2d_params adj[] = {
        ip(5, 4, 5, 7, 9, ET_INTERP_NEAREST, 0, 0.0f, 0.0f),
        ip(5, 7, 5, 3, 2, ET_INTERP_NEAREST, 0, 0.0f, 0.0f),
        ip(4, 5, 7, 8, 11, ET_INTERP_NEAREST, 0, 1.7f, 1.5f),
        ip(5, 4, 5, 9, 7, ET_INTERP_BILINEAR, 0, 0.0f, 0.0f),
        ip(5, 4, 5, 9, 7, ET_INTERP_BILINEAR, 1, 0.0f, 0.0f),
        ip(3, 7, 9, 3, 4, ET_INTERP_BILINEAR, 0, 0.0f, 0.0f),
        ip(3, 7, 9, 1, 4, ET_INTERP_BILINEAR, 1, 0.0f, 0.0f),
        ip(2, 3, 5, 7, 7, ET_INTERP_BILINEAR, 0, 2.5f, 1.5f),
    };
    char name[64];
    for (size_t i = 0; i < sizeof adj / sizeof adj[0]; i++) {
        snprintf(name, sizeof name, "interp case %zu", i);
        check_adjoint(&adj[i], name);
    }
    p = ip(1, 2, 2, 0, 2, ET_INTERP_NEAREST, 0, 0.0f, 0.0f);
    ET_CHECK(et_f32_interp2d_fwd(&p, x, y, 1) == ET_ERR_ARG, "empty output accepted");
    p = ip(1, 2, 2, 2, 2, ET_INTERP_COUNT_, 0, 0.0f, 0.0f);
    ET_CHECK(et_f32_interp2d_bwd(&p, x, y, 1) == ET_ERR_ARG, "bad mode accepted");
    p = ip(1, 2, 2, 2, 2, ET_INTERP_BILINEAR, 0, -1.0f, 0.0f);
    ET_CHECK(et_f32_interp2d_fwd(&p, x, y, 1) == ET_ERR_ARG, "negative scale accepted");
}

/* ---- adaptive average pooling ------------------------------------------------------------ */
static void check_adaptive(void) {
    const int64_t shapes[][4] = {{7, 9, 3, 4}, {5, 5, 5, 5}, {6, 8, 4, 3}, {4, 5, 6, 7}, {9, 7, 1, 3}, {8, 8, 2, 2}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t nc = 3, h = shapes[s][0], w = shapes[s][1], oh = shapes[s][2], ow = shapes[s][3];
        float *x = falloc(nc * h * w), *y = falloc(nc * oh * ow), *dy = falloc(nc * oh * ow);
        float *dx = falloc(nc * h * w), *y3 = falloc(nc * oh * ow), *dx3 = falloc(nc * h * w);
        float *yr = falloc(nc * oh * ow), *dxr = falloc(nc * h * w);
        et_fill_random(x, nc * h * w, 40 + s, -1.0f, 1.0f);
        et_fill_random(dy, nc * oh * ow, 50 + s, -1.0f, 1.0f);
        for (int64_t q = 0; q < nc; q++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    const int64_t r0 = (int64_t)floor((double)i * h / oh), r1 = (int64_t)ceil((double)(i + 1) * h / oh);
                    const int64_t c0 = (int64_t)floor((double)j * w / ow), c1 = (int64_t)ceil((double)(j + 1) * w / ow);
                    double acc = 0.0;
                    for (int64_t r = r0; r < r1; r++)
                        for (int64_t c = c0; c < c1; c++) acc += x[(q * h + r) * w + c];
                    const double cnt = (double)((r1 - r0) * (c1 - c0));
                    yr[(q * oh + i) * ow + j] = (float)(acc / cnt);
                    for (int64_t r = r0; r < r1; r++)
                        for (int64_t c = c0; c < c1; c++) dxr[(q * h + r) * w + c] += (float)(dy[(q * oh + i) * ow + j] / cnt);
                }
        ET_CHECK(et_f32_adaptive_avgpool2d_fwd(nc, h, w, oh, ow, x, y, 1) == ET_OK, "adaptive fwd");
        memset(dx, 0xff, (size_t)(nc * h * w) * sizeof(float));
        ET_CHECK(et_f32_adaptive_avgpool2d_bwd(nc, h, w, oh, ow, dy, dx, 1) == ET_OK, "adaptive bwd");
        ET_CHECK(et_allclose(y, yr, nc * oh * ow, 1e-5f, 1e-6f, "adaptive fwd"), "adaptive %zu fwd", s);
        ET_CHECK(et_allclose(dx, dxr, nc * h * w, 1e-5f, 1e-6f, "adaptive bwd"), "adaptive %zu bwd", s);
        et_f32_adaptive_avgpool2d_fwd(nc, h, w, oh, ow, x, y3, 3);
        et_f32_adaptive_avgpool2d_bwd(nc, h, w, oh, ow, dy, dx3, 3);
        ET_CHECK(bitwise_same(y, y3, nc * oh * ow) && bitwise_same(dx, dx3, nc * h * w),
                 "adaptive %zu thread-count dependent", s);
        free(x); free(y); free(dy); free(dx); free(y3); free(dx3); free(yr); free(dxr);
    }
    float v = 0.0f;
    ET_CHECK(et_f32_adaptive_avgpool2d_fwd(1, 2, 2, 0, 1, &v, &v, 1) == ET_ERR_ARG, "empty output accepted");
    ET_CHECK(et_f32_adaptive_avgpool2d_bwd(1, 2, 2, 1, 1, NULL, &v, 1) == ET_ERR_ARG, "NULL accepted");
}

/* Max over the same windows: the first maximum in row-major order, NaN wins; dy goes there. */
static void check_adaptive_max(void) {
    const int64_t nc = 2, h = 7, w = 6, oh = 3, ow = 4;
    float x[2 * 7 * 6], y[2 * 3 * 4], dy[2 * 3 * 4], dx[2 * 7 * 6], y3[2 * 3 * 4], dx3[2 * 7 * 6];
    float dxr[2 * 7 * 6] = {0};
    et_fill_random(x, nc * h * w, 61, -1.0f, 1.0f);
    for (int64_t i = 0; i < w; i++) x[2 * w + i] = x[w + i]; /* tied rows 1 and 2 */
    x[nc * h * w - 1] = NAN;                                 /* last window holds a NaN */
    et_fill_random(dy, nc * oh * ow, 62, -1.0f, 1.0f);
    int ok = 1;
    for (int64_t q = 0; q < nc; q++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                const int64_t r0 = (int64_t)floor((double)i * h / oh), r1 = (int64_t)ceil((double)(i + 1) * h / oh);
                const int64_t c0 = (int64_t)floor((double)j * w / ow), c1 = (int64_t)ceil((double)(j + 1) * w / ow);
                int64_t best = -1;
                for (int64_t r = r0; r < r1; r++)
                    for (int64_t c = c0; c < c1; c++) {
                        const int64_t k = (q * h + r) * w + c;
                        if (best < 0 || (!isnan(x[best]) && (x[k] > x[best] || isnan(x[k])))) best = k;
                    }
                dxr[best] += dy[(q * oh + i) * ow + j];
                y3[(q * oh + i) * ow + j] = x[best];
            }
    ET_CHECK(et_f32_adaptive_maxpool2d_fwd(nc, h, w, oh, ow, x, y, 1) == ET_OK, "adaptive max fwd");
    ET_CHECK(et_f32_adaptive_maxpool2d_bwd(nc, h, w, oh, ow, x, dy, dx, 1) == ET_OK, "adaptive max bwd");
    for (int64_t i = 0; i < nc * oh * ow; i++) ok &= (isnan(y[i]) && isnan(y3[i])) || y[i] == y3[i];
    ET_CHECK(ok, "adaptive max values");
    ET_CHECK(isnan(y[nc * oh * ow - 1]), "adaptive max keeps NaN");
    ET_CHECK(bitwise_same(dx, dxr, nc * h * w), "adaptive max gradient routing");
    et_f32_adaptive_maxpool2d_fwd(nc, h, w, oh, ow, x, y3, 3);
    et_f32_adaptive_maxpool2d_bwd(nc, h, w, oh, ow, x, dy, dx3, 3);
    ET_CHECK(bitwise_same(y, y3, nc * oh * ow) && bitwise_same(dx, dx3, nc * h * w), "adaptive max threads");
    ET_CHECK(et_f32_adaptive_maxpool2d_bwd(nc, h, w, oh, ow, NULL, dy, dx, 1) == ET_ERR_ARG, "NULL x accepted");
}

void test_resample(void) {
    check_conv_transpose_params();
    for (size_t i = 0; i < sizeof ct_cases / sizeof ct_cases[0]; i++) check_conv_transpose((int)i, &ct_cases[i]);
    check_interp();
    check_adaptive();
    check_adaptive_max();
}
