/* edgetrain — pooling tests: the kernels against a naive oracle written here from the PyTorch
 * definitions (window over the padded input, explicit -inf / zero padding), values checked
 * with torch 2.x, over ceil_mode, padding, dilation, count_include_pad, 1 and 2 threads; every
 * row of the 2x2 / stride 2 variant table that runs here bitwise against its __ref row. */
#include <stdlib.h>
#include <string.h>

#include "et_test.h"
#include "pool_internal.h"

typedef struct pool_case {
    int64_t h, w, kh, kw, sh, sw, ph, pw, dh, dw;
    int ceil_mode;
} pool_case;

static const pool_case cases[] = {
    /* h   w  kh kw sh sw ph pw dh dw ceil */
    {8, 8, 2, 2, 2, 2, 0, 0, 1, 1, 0},
    {7, 9, 2, 2, 2, 2, 0, 0, 1, 1, 1},   /* ceil adds a partial window */
    {7, 9, 2, 2, 2, 2, 0, 0, 1, 1, 0},
    {9, 11, 3, 3, 2, 2, 1, 1, 1, 1, 0},
    {9, 11, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1},   /* ceil: last window would start in the right pad */
    {10, 13, 3, 2, 3, 2, 1, 1, 1, 1, 1},
    {11, 12, 3, 3, 1, 2, 1, 0, 2, 2, 0}, /* dilation (max only) */
    {12, 10, 3, 3, 3, 3, 1, 1, 2, 1, 1},
    {5, 33, 5, 5, 1, 1, 2, 2, 1, 1, 0},
    {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0},
    {4, 17, 4, 4, 4, 4, 2, 2, 1, 1, 1},
    {24, 24, 2, 2, 2, 2, 0, 0, 1, 1, 0}, /* LeNet's pools: the 2x2 / stride 2 fast path */
    {9, 2, 2, 2, 2, 2, 0, 0, 1, 1, 1},   /* ceil: the partial last row leaves the fast path */
};

static et_pool2d_params make_params(const pool_case *k, int64_t n, int64_t c) {
    et_pool2d_params p;
    memset(&p, 0, sizeof p);
    p.n = n; p.c = c; p.h = k->h; p.w = k->w; p.kh = k->kh; p.kw = k->kw;
    p.stride_h = k->sh; p.stride_w = k->sw; p.pad_h = k->ph; p.pad_w = k->pw;
    p.dil_h = k->dh; p.dil_w = k->dw; p.ceil_mode = k->ceil_mode;
    return p;
}

/* Oracle output size: the PyTorch formula written with doubles. */
static int64_t oracle_out(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d, int ceil_mode) {
    double v = (double)(in + 2 * pad - d * (k - 1) - 1) / (double)s;
    int64_t out = (int64_t)(ceil_mode ? ceil(v) : floor(v)) + 1;
    if (ceil_mode && (out - 1) * s >= in + pad) out--;
    return out;
}

/* Naive max pool over the padded window; returns the flat plane index of the max (grad target). */
static void oracle_max(const et_pool2d_params *p, const float *x, float *y, const float *dy, float *dx) {
    int64_t planes = p->n * p->c;
    memset(dx, 0, (size_t)(planes * p->h * p->w) * sizeof(float));
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox = 0; ox < p->ow; ox++) {
                float best = -INFINITY;
                int64_t arg = -1, first = -1;
                for (int64_t ky = 0; ky < p->kh; ky++)
                    for (int64_t kx = 0; kx < p->kw; kx++) {
                        int64_t iy = oy * p->stride_h - p->pad_h + ky * p->dil_h;
                        int64_t ix = ox * p->stride_w - p->pad_w + kx * p->dil_w;
                        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue; /* -inf */
                        int64_t idx = iy * p->w + ix;
                        if (first < 0) first = idx;
                        float v = x[pl * p->h * p->w + idx];
                        if (v > best || isnan(v)) { best = v; arg = idx; }
                    }
                if (arg < 0) arg = first;
                y[(pl * p->oh + oy) * p->ow + ox] = best;
                if (arg >= 0) dx[pl * p->h * p->w + arg] += dy[(pl * p->oh + oy) * p->ow + ox];
            }
}

static void oracle_avg(const et_pool2d_params *p, const float *x, float *y, const float *dy, float *dx) {
    int64_t planes = p->n * p->c;
    memset(dx, 0, (size_t)(planes * p->h * p->w) * sizeof(float));
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox = 0; ox < p->ow; ox++) {
                double s = 0.0;
                int64_t valid = 0, padded = 0;
                for (int64_t ky = 0; ky < p->kh; ky++)
                    for (int64_t kx = 0; kx < p->kw; kx++) {
                        int64_t iy = oy * p->stride_h - p->pad_h + ky;
                        int64_t ix = ox * p->stride_w - p->pad_w + kx;
                        if (iy < p->h + p->pad_h && ix < p->w + p->pad_w) padded++;
                        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                        valid++;
                        s += x[(pl * p->h + iy) * p->w + ix];
                    }
                double div = p->count_include_pad ? (double)padded : (double)valid;
                float g = valid ? (float)(dy[(pl * p->oh + oy) * p->ow + ox] / div) : 0.0f;
                y[(pl * p->oh + oy) * p->ow + ox] = valid ? (float)(s / div) : 0.0f;
                for (int64_t ky = 0; ky < p->kh; ky++)
                    for (int64_t kx = 0; kx < p->kw; kx++) {
                        int64_t iy = oy * p->stride_h - p->pad_h + ky;
                        int64_t ix = ox * p->stride_w - p->pad_w + kx;
                        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                        dx[(pl * p->h + iy) * p->w + ix] += g;
                    }
            }
}

static void fill_nan(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
}

/* The fused relu / relu6 backward (et_f32_maxpool2d_act_bwd) against its definition, the two
 * ops one after the other, bit for bit at 1..3 threads. x must hold negatives, zeros and
 * windows whose maximum is 0 or (relu6) >= 6, or a fusion that ignores the act would pass. */
static int64_t act_dropped[2]; /* gradients the fused relu / relu6 dropped: the tests mean something */
static void check_act_fused(const et_pool2d_params *p, const float *x, const float *dy, float *dx,
                            float *dx_ref, const char *tag) {
    const int64_t nx = p->n * p->c * p->h * p->w;
    static const et_act acts[] = {ET_ACT_RELU, ET_ACT_RELU6};
    char what[200];
    for (size_t a = 0; a < 2; a++) {
        fill_nan(dx_ref, nx);
        ET_CHECK(et_f32_maxpool2d_bwd(p, x, dy, dx_ref, 1) == ET_OK, "%s: unfused pool bwd", tag);
        ET_CHECK(et_f32_act_bwd(acts[a], 0.0f, nx, x, dx_ref, dx_ref, 1) == ET_OK, "%s: act bwd", tag);
        for (int th = 1; th <= 3; th++) {
            fill_nan(dx, nx);
            et_status st = et_f32_maxpool2d_act_bwd(p, acts[a], x, dy, dx, th);
            snprintf(what, sizeof what, "%s act %d th%d: fused pool+act bwd", tag, (int)acts[a], th);
            ET_CHECK(st == ET_OK && memcmp(dx, dx_ref, (size_t)nx * sizeof(float)) == 0, "%s", what);
        }
        ET_CHECK(et_f32_maxpool2d_bwd(p, x, dy, dx, 1) == ET_OK, "%s: plain bwd", tag);
        for (int64_t i = 0; i < nx; i++) act_dropped[a] += memcmp(&dx[i], &dx_ref[i], sizeof(float)) != 0;
    }
    ET_CHECK(et_f32_maxpool2d_act_bwd(p, ET_ACT_SIGMOID, x, dy, dx, 1) == ET_ERR_ARG, "%s: sigmoid accepted", tag);
}

static void check_case(int ci, const pool_case *k, int64_t n) {
    const int64_t c = 3;
    et_pool2d_params p = make_params(k, n, c);
    et_status st = et_pool2d_params_init(&p);
    ET_CHECK(st == ET_OK, "pool case %d: init -> %d", ci, st);
    if (st != ET_OK) return;
    ET_CHECK(p.oh == oracle_out(p.h, p.kh, p.stride_h, p.pad_h, p.dil_h, p.ceil_mode) &&
                 p.ow == oracle_out(p.w, p.kw, p.stride_w, p.pad_w, p.dil_w, p.ceil_mode),
             "pool case %d: output size %lldx%lld", ci, (long long)p.oh, (long long)p.ow);
    const int64_t nx = n * c * p.h * p.w, ny = n * c * p.oh * p.ow;
    float *x = malloc((size_t)nx * sizeof(float)), *dy = malloc((size_t)ny * sizeof(float));
    float *y = malloc((size_t)ny * sizeof(float)), *y_ref = malloc((size_t)ny * sizeof(float));
    float *dx = malloc((size_t)nx * sizeof(float)), *dx_ref = malloc((size_t)nx * sizeof(float));
    /* coarse values so ties occur (first maximum must win) */
    et_fill_random(x, nx, 5 + ci, -4.0f, 4.0f);
    for (int64_t i = 0; i < nx; i++) x[i] = floorf(x[i]);
    if (nx > 5) x[nx / 2] = NAN; /* NaN propagates */
    et_fill_random(dy, ny, 9 + ci, -1.0f, 1.0f);
    char what[128];

    oracle_max(&p, x, y_ref, dy, dx_ref);
    for (int th = 1; th <= 2; th++) {
        fill_nan(y, ny);
        st = et_f32_maxpool2d_fwd(&p, x, y, th);
        snprintf(what, sizeof what, "pool case %d n%lld maxpool fwd th%d", ci, (long long)n, th);
        ET_CHECK(st == ET_OK && et_allclose(y, y_ref, ny, 0, 0, what), "%s", what);
        fill_nan(dx, nx);
        st = et_f32_maxpool2d_bwd(&p, x, dy, dx, th);
        snprintf(what, sizeof what, "pool case %d n%lld maxpool bwd th%d", ci, (long long)n, th);
        ET_CHECK(st == ET_OK && et_allclose(dx, dx_ref, nx, 1e-6f, 1e-6f, what), "%s", what);
    }
    /* integers in [-4, 8) (windows of max 0, ties, >= 6) and one NaN */
    for (int64_t i = 0; i < nx; i++) x[i] = floorf(x[i] * 1.5f + 2.0f);
    snprintf(what, sizeof what, "pool case %d n%lld", ci, (long long)n);
    check_act_fused(&p, x, dy, dx, dx_ref, what);
    if (p.dil_h == 1 && p.dil_w == 1) {
        et_fill_random(x, nx, 5 + ci, -1.0f, 1.0f);
        for (int cip = 0; cip <= 1; cip++) {
            p.count_include_pad = cip;
            oracle_avg(&p, x, y_ref, dy, dx_ref);
            for (int th = 1; th <= 2; th++) {
                fill_nan(y, ny);
                st = et_f32_avgpool2d_fwd(&p, x, y, th);
                snprintf(what, sizeof what, "pool case %d n%lld avgpool fwd cip%d th%d", ci, (long long)n, cip, th);
                ET_CHECK(st == ET_OK && et_allclose(y, y_ref, ny, 1e-5f, 1e-6f, what), "%s", what);
                fill_nan(dx, nx);
                st = et_f32_avgpool2d_bwd(&p, dy, dx, th);
                snprintf(what, sizeof what, "pool case %d n%lld avgpool bwd cip%d th%d", ci, (long long)n, cip, th);
                ET_CHECK(st == ET_OK && et_allclose(dx, dx_ref, nx, 1e-5f, 1e-6f, what), "%s", what);
            }
        }
    } else {
        ET_CHECK(et_f32_avgpool2d_fwd(&p, x, y, 1) == ET_ERR_ARG, "avgpool with dilation");
    }
    free(x); free(dy); free(y); free(y_ref); free(dx); free(dx_ref);
}

/* Values from torch 2.13: F.max_pool2d / F.avg_pool2d on arange(1, 26).view(1, 1, 5, 5). */
static void check_torch_values(void) {
    float x[25];
    for (int i = 0; i < 25; i++) x[i] = (float)(i + 1);
    et_pool2d_params p;
    memset(&p, 0, sizeof p);
    p.n = 1; p.c = 1; p.h = 5; p.w = 5; p.kh = p.kw = 2; p.stride_h = p.stride_w = 2;
    p.dil_h = p.dil_w = 1; p.ceil_mode = 1;
    ET_CHECK(et_pool2d_params_init(&p) == ET_OK && p.oh == 3 && p.ow == 3, "torch ceil size");
    float y[9];
    /* max_pool2d(x, 2, 2, ceil_mode=True) */
    const float want_max[9] = {7, 9, 10, 17, 19, 20, 22, 24, 25};
    ET_CHECK(et_f32_maxpool2d_fwd(&p, x, y, 1) == ET_OK && et_allclose(y, want_max, 9, 0, 0, "torch max"), "torch max");
    /* avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=True) */
    p.kh = p.kw = 3; p.pad_h = p.pad_w = 1; p.count_include_pad = 1;
    ET_CHECK(et_pool2d_params_init(&p) == ET_OK && p.oh == 3 && p.ow == 3, "torch avg size");
    const float want_avg[9] = {1.7777778f, 3.6666667f, 3.1111112f, 7.6666665f, 13.0f, 9.666667f,
                               8.4444447f, 13.666667f, 9.7777777f};
    ET_CHECK(et_f32_avgpool2d_fwd(&p, x, y, 1) == ET_OK && et_allclose(y, want_avg, 9, 1e-6f, 0, "torch avg"), "torch avg");
    p.count_include_pad = 0;
    const float want_avg2[9] = {4, 5.5f, 7, 11.5f, 13, 14.5f, 19, 20.5f, 22};
    ET_CHECK(et_f32_avgpool2d_fwd(&p, x, y, 1) == ET_OK && et_allclose(y, want_avg2, 9, 1e-6f, 0, "torch avg2"), "torch avg2");
    /* errors */
    p.pad_h = 2;
    ET_CHECK(et_pool2d_params_init(&p) == ET_ERR_ARG, "pad > kernel/2");
    p.pad_h = 1; p.stride_w = 0;
    ET_CHECK(et_pool2d_params_init(&p) == ET_ERR_ARG, "stride 0");
    ET_CHECK(et_pool2d_params_init(NULL) == ET_ERR_ARG, "null");
    ET_CHECK(et_f32_maxpool2d_fwd(NULL, x, y, 1) == ET_ERR_ARG, "null params");
}

static void check_global(void) {
    const int64_t n = 3, c = 5, hw = 37;
    float *x = malloc(n * c * hw * sizeof(float)), *dx = malloc(n * c * hw * sizeof(float));
    float y[15], y_ref[15], dy[15];
    et_fill_random(x, n * c * hw, 3, -1.0f, 1.0f);
    et_fill_random(dy, n * c, 4, -1.0f, 1.0f);
    for (int64_t i = 0; i < n * c; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < hw; j++) s += x[i * hw + j];
        y_ref[i] = (float)(s / hw);
    }
    for (int th = 1; th <= 2; th++) {
        ET_CHECK(et_f32_global_avgpool_fwd(n, c, hw, x, y, th) == ET_OK &&
                     et_allclose(y, y_ref, n * c, 1e-5f, 1e-6f, "global fwd"), "global fwd th%d", th);
        ET_CHECK(et_f32_global_avgpool_bwd(n, c, hw, dy, dx, th) == ET_OK, "global bwd th%d", th);
        int ok = 1;
        for (int64_t i = 0; i < n * c * hw; i++) ok &= fabsf(dx[i] - dy[i / hw] / hw) <= 1e-7f;
        ET_CHECK(ok, "global bwd values th%d", th);
    }
    ET_CHECK(et_f32_global_avgpool_fwd(0, c, hw, x, y, 1) == ET_ERR_ARG, "global n 0");
    free(x); free(dx);
}

/* The plane sum as the kernel states it (8 lanes from +0, the tail, the lanes added in order),
 * the rule small planes (hw < 8, their own loop) must keep bit for bit. */
static float global_plane_rule(const float *r, int64_t hw) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0.0f;
    int64_t j = 0;
    for (; j + 8 <= hw; j += 8)
        for (int i = 0; i < 8; i++) acc[i] += r[j + i];
    for (; j < hw; j++) s += r[j];
    for (int i = 0; i < 8; i++) s += acc[i];
    return s / (float)hw;
}

/* Every plane size around the small-plane loop's bound, with -0, infinities, NaNs and values
 * whose sums round, at 1..3 threads: the bits of global_plane_rule, and dx = dy / hw. */
static void check_global_bits(void) {
    const int64_t n = 5, c = 37;
    const float special[] = {-0.0f, 0.0f, INFINITY, -INFINITY, NAN, 1e-45f, -3.5f, 16777217.0f};
    for (int64_t hw = 1; hw <= 10; hw++) {
        const int64_t tot = n * c * hw;
        float *x = malloc(tot * sizeof(float)), *dx = malloc(tot * sizeof(float));
        float y[n * c], want[n * c], dy[n * c];
        et_fill_random(x, tot, (uint64_t)(40 + hw), -100.0f, 100.0f);
        et_fill_random(dy, n * c, 7, -1.0f, 1.0f);
        for (int64_t i = 0; i < tot; i += 3) x[i] = special[(i / 3) % 8];
        for (int64_t i = 0; i < n * c; i++) want[i] = global_plane_rule(x + i * hw, hw);
        for (int th = 1; th <= 3; th++) {
            memset(y, 0xA5, sizeof y);
            ET_CHECK(et_f32_global_avgpool_fwd(n, c, hw, x, y, th) == ET_OK &&
                         memcmp(y, want, sizeof y) == 0,
                     "global fwd bits hw %d th%d", (int)hw, th);
            ET_CHECK(et_f32_global_avgpool_bwd(n, c, hw, dy, dx, th) == ET_OK, "global bwd hw %d", (int)hw);
            int ok = 1;
            for (int64_t i = 0; i < tot; i++) {
                const float g = dy[i / hw] / (float)hw;
                ok &= memcmp(&dx[i], &g, sizeof g) == 0;
            }
            ET_CHECK(ok, "global bwd bits hw %d th%d", (int)hw, th);
        }
        free(x);
        free(dx);
    }
}

/* ---- 2x2 / stride 2 fast path: every table row bitwise equal to the __ref row ----
 * Inputs are dense in ties, signed zeros, infinities and NaNs with distinct payloads / signs
 * (so "the last NaN wins" shows in the forward bits); gradients include -0.0, NaN and inf.
 * Outputs are prefilled with NaN so a cell the kernel does not write shows up. */
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void fill_specials(float *x, int64_t n, uint64_t seed, int pct_special) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t r = (uint32_t)(s >> 33);
        if ((int)(r % 100) < pct_special) {
            switch ((r / 100) % 7) {
            case 0: x[i] = bits_f32(0x7fc00000u | ((r >> 8) & 0xffffu)); break; /* +qNaN, payload */
            case 1: x[i] = bits_f32(0xffc00000u | ((r >> 8) & 0xffffu)); break; /* -qNaN, payload */
            case 2: x[i] = INFINITY; break;
            case 3: x[i] = -INFINITY; break;
            case 4: x[i] = -0.0f; break;
            case 5: x[i] = 0.0f; break;
            default: x[i] = bits_f32(0x80000001u); break; /* -denormal */
            }
        } else {
            x[i] = (float)((int)((r >> 8) % 5) - 2); /* -2..2: many ties */
        }
    }
}

static void check_k2s2_isas(void) {
    static const int64_t shapes[][2] = {
        {24, 24}, {8, 8}, {9, 13}, {7, 5}, {2, 2}, {3, 3}, {4, 6}, {5, 34}, {6, 66},
        {3, 70}, {2, 67}, {4, 32}, {2, 64}, {3, 17}, {2, 16}, {2, 30}, {3, 18}, {2, 51},
        {2, 48}, {9, 9}, {6, 8}, {7, 9}, {1, 40},
    };
    const et_isa saved = et_get_isa();
    const int64_t n = 2, c = 3;
    char what[160];
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        et_pool2d_params p;
        memset(&p, 0, sizeof p);
        p.n = n; p.c = c; p.h = shapes[si][0]; p.w = shapes[si][1];
        p.kh = p.kw = 2; p.stride_h = p.stride_w = 2; p.dil_h = p.dil_w = 1;
        et_status st = et_pool2d_params_init(&p);
        if (p.h < 2) {
            ET_CHECK(st == ET_ERR_ARG, "k2s2 %lldx%lld: init", (long long)p.h, (long long)p.w);
            continue;
        }
        ET_CHECK(st == ET_OK, "k2s2 %lldx%lld: init -> %d", (long long)p.h, (long long)p.w, st);
        if (st != ET_OK) continue;
        const int64_t nx = n * c * p.h * p.w, ny = n * c * p.oh * p.ow;
        float *x = malloc((size_t)nx * sizeof(float)), *dy = malloc((size_t)ny * sizeof(float));
        float *y = malloc((size_t)ny * sizeof(float)), *y_ref = malloc((size_t)ny * sizeof(float));
        float *dx = malloc((size_t)nx * sizeof(float)), *dx_ref = malloc((size_t)nx * sizeof(float));
        float *y_or = malloc((size_t)ny * sizeof(float)), *dx_or = malloc((size_t)nx * sizeof(float));
        float *xa = malloc((size_t)nx * sizeof(float));
        for (int variant = 0; variant < 3; variant++) {
            /* 0: mostly ties, 1: many specials, 2: all specials */
            fill_specials(x, nx, 100 + si * 3 + variant, variant == 0 ? 10 : variant == 1 ? 45 : 100);
            fill_specials(dy, ny, 200 + si * 3 + variant, 30);
            et_set_isa(ET_ISA_REF);
            fill_nan(y_ref, ny);
            fill_nan(dx_ref, nx);
            ET_CHECK(et_f32_maxpool2d_fwd(&p, x, y_ref, 1) == ET_OK, "k2s2 ref fwd");
            ET_CHECK(et_f32_maxpool2d_bwd(&p, x, dy, dx_ref, 1) == ET_OK, "k2s2 ref bwd");
            /* the scalar kernels against the oracle (values; the oracle's += turns -0 into +0) */
            oracle_max(&p, x, y_or, dy, dx_or);
            snprintf(what, sizeof what, "k2s2 %lldx%lld v%d ref fwd vs oracle", (long long)p.h, (long long)p.w, variant);
            ET_CHECK(memcmp(y_ref, y_or, (size_t)ny * sizeof(float)) == 0, "%s", what);
            snprintf(what, sizeof what, "k2s2 %lldx%lld v%d ref bwd vs oracle", (long long)p.h, (long long)p.w, variant);
            ET_CHECK(et_allclose(dx_ref, dx_or, nx, 0, 0, what), "%s", what);
            for (const et_f32_maxpool2d_k2s2_variant *row = et_f32_maxpool2d_k2s2_variants;
                 row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                const et_isa isa = row->head.isa;
                /* the row's plane kernels called directly, plane by plane */
                fill_nan(y, ny);
                fill_nan(dx, nx);
                for (int64_t pl = 0; pl < n * c; pl++) {
                    const int64_t xo = pl * p.h * p.w, yo = pl * p.oh * p.ow;
                    row->fwd(x + xo, y + yo, p.w, p.oh, p.ow);
                    row->bwd(x + xo, dy + yo, dx + xo, p.h, p.w, p.oh, p.ow, NAN, NAN);
                }
                snprintf(what, sizeof what, "k2s2 %lldx%lld v%d row %s", (long long)p.h,
                         (long long)p.w, variant, row->head.name);
                ET_CHECK(memcmp(y, y_ref, (size_t)ny * sizeof(float)) == 0 &&
                             memcmp(dx, dx_ref, (size_t)nx * sizeof(float)) == 0, "%s", what);
                /* and through the public entry points, which must pick this row */
                et_set_isa(isa);
                for (int th = 1; th <= 2; th++) {
                    fill_nan(y, ny);
                    st = et_f32_maxpool2d_fwd(&p, x, y, th);
                    snprintf(what, sizeof what, "k2s2 %lldx%lld v%d fwd %s th%d", (long long)p.h,
                             (long long)p.w, variant, et_isa_name(isa), th);
                    ET_CHECK(st == ET_OK && memcmp(y, y_ref, (size_t)ny * sizeof(float)) == 0, "%s", what);
                    fill_nan(dx, nx);
                    st = et_f32_maxpool2d_bwd(&p, x, dy, dx, th);
                    snprintf(what, sizeof what, "k2s2 %lldx%lld v%d bwd %s th%d", (long long)p.h,
                             (long long)p.w, variant, et_isa_name(isa), th);
                    ET_CHECK(st == ET_OK && memcmp(dx, dx_ref, (size_t)nx * sizeof(float)) == 0, "%s", what);
                }
                /* the fused act: specials (NaN winners, -0, inf) and -2..2 shifted up to 4 so
                 * relu6's upper bound and windows of max 0 both occur */
                if (variant < 2) {
                    for (int64_t i = 0; i < nx; i++) xa[i] = x[i] + (variant == 1 ? 4.0f : 0.0f);
                    snprintf(what, sizeof what, "k2s2 %lldx%lld v%d %s", (long long)p.h, (long long)p.w,
                             variant, et_isa_name(isa));
                    check_act_fused(&p, xa, dy, dx, dx_or, what);
                    et_set_isa(ET_ISA_REF);
                    float lo[2] = {0.0f, 0.0f}, hi[2] = {NAN, 6.0f};
                    for (int a = 0; a < 2; a++) {
                        fill_nan(dx_or, nx);
                        ET_CHECK(et_f32_maxpool2d_act_bwd(&p, a ? ET_ACT_RELU6 : ET_ACT_RELU, xa, dy, dx_or, 1) == ET_OK, "ref act");
                        fill_nan(dx, nx);
                        for (int64_t pl = 0; pl < n * c; pl++) {
                            const int64_t xo = pl * p.h * p.w, yo = pl * p.oh * p.ow;
                            row->bwd(xa + xo, dy + yo, dx + xo, p.h, p.w, p.oh, p.ow, lo[a], hi[a]);
                        }
                        ET_CHECK(memcmp(dx, dx_or, (size_t)nx * sizeof(float)) == 0, "%s act row %d", what, a);
                    }
                    et_set_isa(ET_ISA_REF);
                }
            }
        }
        /* the uncovered last row / column of an odd shape is exactly +0.0 */
        if (p.h % 2 || p.w % 2) {
            int ok = 1;
            for (int64_t pl = 0; pl < n * c; pl++)
                for (int64_t iy = 0; iy < p.h; iy++)
                    for (int64_t ix = 0; ix < p.w; ix++) {
                        if (iy < 2 * p.oh && ix < 2 * p.ow) continue;
                        uint32_t u;
                        memcpy(&u, &dx_ref[(pl * p.h + iy) * p.w + ix], sizeof u);
                        ok &= u == 0u;
                    }
            ET_CHECK(ok, "k2s2 %lldx%lld: uncovered dx cells not +0", (long long)p.h, (long long)p.w);
        }
        free(x); free(dy); free(y); free(y_ref); free(dx); free(dx_ref); free(y_or); free(dx_or); free(xa);
    }
    et_set_isa(saved);
}

void test_pool(void) {
    et_check_variant_table("maxpool2d_k2s2", et_f32_maxpool2d_k2s2_variants,
                           sizeof et_f32_maxpool2d_k2s2_variants[0]);
    check_torch_values();
    check_global();
    check_global_bits();
    check_k2s2_isas();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case((int)i, &cases[i], 1);
        check_case((int)i, &cases[i], 2);
    }
    ET_CHECK(act_dropped[0] > 100 && act_dropped[1] > act_dropped[0], "fused act dropped %lld / %lld gradients",
             (long long)act_dropped[0], (long long)act_dropped[1]);
}
