/* edgetrain — depthwise conv bit identity: every row of the depthwise variant table (ref, AVX2,
 * AVX-512 on x86; ref, NEON on arm64) must give the bits of __ref, byte for byte (memcmp), for
 * the forward (bias on / off, fused BatchNorm, activations), the input gradient and the weight
 * gradient, 1 and 2 threads, at awkward shapes: plane edges, odd sizes, strides 1 / 2 / 3,
 * pads 0 / 1 / 2 / 3, 1x1 planes, planes on both sides of the AVX-512 flat-path limit (1024),
 * channel multiplier 2, dilation, kernels too large for the padded-plane path. __ref itself is
 * pinned to the canonical order (conv2d_depthwise.c, file top) for the forward and the input
 * gradient by the plain fmaf chains below; the weight gradient's order is checked across the
 * variants (and against float64 by the conv family). Inputs hold exact zeros (relu outputs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "et_test.h"

typedef struct dwb_case {
    int64_t c, h, w, mult, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw;
} dwb_case;

static const dwb_case dwb_cases[] = {
    /* c   h     w mult kh kw sh sw pt pl pb pr dh dw */
    {5, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},      /* 1x1 plane, 3x3 pad 1 */
    {3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1},      /* 1x1 plane, 1x1 kernel */
    {17, 2, 2, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},     /* hw 4: four channels a vector */
    {9, 2, 2, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},      /* 2x2 -> 1x1 */
    {7, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},      /* hw 9: one channel, 7 lanes idle */
    {7, 3, 2, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},      /* hw 6 */
    {4, 5, 7, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1},      /* odd, pad 0 */
    {4, 5, 7, 1, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1},      /* odd, pad 2 */
    {6, 7, 7, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},      /* 7x7 -> 4x4 (hw 16) */
    {3, 13, 11, 1, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1},    /* stride 2, pad 2 */
    {3, 9, 11, 1, 3, 3, 2, 2, 3, 3, 3, 3, 1, 1},     /* pad 3 > kernel */
    {2, 45, 47, 1, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1},    /* stride 2, asymmetric pads, hw 506 */
    {2, 31, 33, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    /* hw 1023: flat */
    {2, 32, 32, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    /* hw 1024: flat, the limit */
    {2, 32, 33, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    /* hw 1056: padded planes */
    {2, 33, 35, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1},    /* pad 0, hw 1155 -> 1023 */
    {2, 65, 66, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* stride 2, output 33x33 */
    {2, 64, 63, 1, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1},    /* stride 2, output 32x31 */
    {2, 40, 37, 1, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1},    /* 5x5: 25 taps, not flat */
    {2, 21, 20, 1, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2},    /* dilation 2 */
    {2, 23, 25, 1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1},    /* stride 3: scalar rows */
    {2, 40, 41, 1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1},    /* stride 3, larger plane */
    {2, 30, 41, 1, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1},    /* strides (2, 1) */
    {2, 20, 33, 1, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1},    /* strides (1, 2) */
    {3, 19, 17, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    /* multiplier 2 */
    {3, 19, 37, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* multiplier 2, stride 2 */
    {2, 40, 40, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    /* multiplier 2, large plane */
    {1, 3, 1100, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* rows too wide: row driver */
    {1, 5, 1100, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},   /* ... stride 2 */
    {2, 20, 70, 1, 9, 9, 2, 2, 4, 4, 4, 4, 1, 1},    /* 81 taps, stride 2: row driver */
    {2, 12, 20, 1, 9, 9, 1, 1, 4, 4, 4, 4, 1, 1},    /* 81 taps, narrow: masked rows */
    {2, 12, 21, 1, 9, 9, 2, 2, 4, 4, 4, 4, 1, 1},    /* ... stride 2 */
    {2, 9, 40, 1, 1, 17, 1, 1, 0, 8, 0, 8, 1, 1},    /* 1x17 kernel */
    /* the AVX-512 forward's 3x3 flat path (four images, taps unrolled) and stride 2 with output
     * rows >= 14 on the padded planes */
    {19, 28, 28, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},   /* 28 -> 14, padded planes */
    {5, 29, 27, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* odd, 15x14 */
    {3, 27, 29, 1, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1},    /* pad 0, 13x14 */
    {3, 30, 28, 1, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1},    /* pad 2, 16x15 */
    {17, 14, 14, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* 14x14, 17 channels */
    {18, 13, 13, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* 13x13 */
    {20, 15, 17, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* 15x17 */
    {33, 7, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},     /* 7x7, 33 channels */
    {7, 2, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},      /* 2x3 */
    {6, 14, 14, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* 14 -> 7: the table's gathers */
    {4, 15, 13, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* multiplier 2, stride 2, odd */
    {3, 29, 31, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1},    /* pad 0, 27x29 flat */
    /* the AVX-512 stride-2 narrow-plane forward (rows <= 16 wide, two output rows a vector) */
    {5, 16, 16, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* 16 -> 8 */
    {3, 12, 16, 1, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2},    /* dilation 2, pad 2 */
    {2, 9, 9, 1, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1},      /* 9 -> 4, pad 0 */
    {3, 11, 9, 1, 1, 5, 2, 2, 0, 2, 0, 2, 1, 1},     /* 1x5 kernel */
    {3, 4, 15, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},     /* 2x8: one row pair */
    {2, 20, 14, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* 10x7: more pairs than unrolled */
    /* the AVX-512 stride-2 3x3 forward (dw3): output rows below / at / above a vector, odd
     * heights (the last row alone), pads 0 / 1 / 2, rows narrower than the table limit */
    {3, 32, 31, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* 16x16 */
    {2, 35, 34, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* 18x17 */
    {2, 18, 18, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},    /* 9x9 */
    {3, 6, 6, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},      /* 3x3, the narrowest */
    {2, 21, 26, 1, 3, 3, 2, 2, 0, 2, 0, 1, 1, 1},    /* pads (0, 2), 10x13 */
    {2, 25, 23, 1, 3, 3, 2, 2, 2, 0, 1, 0, 1, 1},    /* pads (2, 0), 13x11 */
    /* the AVX-512 stride-1 3x3 forward on planes above the flat limit (dw1): bands of 8 output
     * rows with 4 / 2 / 1 left over, rows not a multiple of 16, pads 0 / 1 / 2, asymmetric */
    {3, 41, 37, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    /* 41x37: 5 bands + 1 row */
    {2, 41, 45, 1, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1},    /* pad 2, 43x47: 5 bands + 2 + 1 */
    {2, 45, 35, 1, 3, 3, 1, 1, 0, 1, 2, 0, 1, 1},    /* pads (0, 1) / (2, 0), 45x34 */
    {2, 36, 36, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1},    /* pad 0, 34x34 */
    /* the flat table's permuted taps (stride 1, planes of at most 16 floats, dws_table.perm)
     * and its per-lane channel gathers (dws_lane_vec), units of 1, 2 and 16 channels with a
     * short last one */
    {9, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},      /* 4x4: one channel a vector */
    {11, 2, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},     /* 2x4: two channels a vector */
    {37, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},     /* 1x1, 37 channels: units of 16 + 5 */
    {5, 3, 5, 1, 2, 2, 1, 1, 0, 0, 1, 1, 1, 1},      /* 2x2 kernel, asymmetric pads, hw 15 */
    {7, 4, 4, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},      /* 4x4 -> 2x2: 64 source floats a unit */
    {19, 2, 2, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},     /* 2x2 -> 1x1, units of 16 + 3 */
    {6, 3, 4, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},      /* 3x4 -> 2x2: 36 source floats */
    {9, 5, 5, 1, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1},      /* 5x5 -> 2x2, pad 0: 25 a unit */
};

static const et_act dwb_acts[] = {ET_ACT_NONE, ET_ACT_RELU, ET_ACT_RELU6, ET_ACT_HARDSWISH};

static float *dwb_alloc(int64_t n) { return (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

/* Random values in [-1, 1], every third one an exact zero. */
static void dwb_fill(float *x, int64_t n, uint64_t seed) {
    et_fill_random(x, n, seed, -1.0f, 1.0f);
    for (int64_t i = 0; i < n; i += 3) x[i] = 0.0f;
}

/* Weights: every seventh one an exact zero (every third would zero the same tap of every 3x3
 * kernel, and a path that moved that tap in the chain would go unnoticed). */
static void dwb_fill_w(float *w, int64_t n, uint64_t seed) {
    et_fill_random(w, n, seed, -1.0f, 1.0f);
    for (int64_t i = 0; i < n; i += 7) w[i] = 0.0f;
}

static int dwb_same(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* The canonical forward before the epilogue: one fmaf chain from the bias, taps ascending. */
static void dwb_fwd_chain(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                          float *y) {
    const int64_t mult = p->oc / p->c;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t o = 0; o < p->oc; o++)
            for (int64_t oy = 0; oy < p->oh; oy++)
                for (int64_t ox = 0; ox < p->ow; ox++) {
                    float acc = b ? b[o] : 0.0f;
                    for (int64_t ky = 0; ky < p->kh; ky++)
                        for (int64_t kx = 0; kx < p->kw; kx++) {
                            const int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                            const int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                            if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                            acc = fmaf(w[(o * p->kh + ky) * p->kw + kx],
                                       x[((i * p->c + o / mult) * p->h + iy) * p->w + ix], acc);
                        }
                    y[((i * p->oc + o) * p->oh + oy) * p->ow + ox] = acc;
                }
}

/* The canonical input gradient: one fmaf chain from +0, multiplier ascending, taps ascending. */
static void dwb_bwd_input_chain(const et_conv2d_params *p, const float *dy, const float *w,
                                float *dx) {
    const int64_t mult = p->oc / p->c;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t ci = 0; ci < p->c; ci++)
            for (int64_t iy = 0; iy < p->h; iy++)
                for (int64_t ix = 0; ix < p->w; ix++) {
                    float acc = 0.0f;
                    for (int64_t m = 0; m < mult; m++) {
                        const int64_t o = ci * mult + m;
                        for (int64_t ky = 0; ky < p->kh; ky++)
                            for (int64_t kx = 0; kx < p->kw; kx++) {
                                const int64_t ny = iy + p->pad_t - ky * p->dil_h;
                                const int64_t nx = ix + p->pad_l - kx * p->dil_w;
                                if (ny < 0 || nx < 0 || ny % p->stride_h || nx % p->stride_w) continue;
                                const int64_t oy = ny / p->stride_h, ox = nx / p->stride_w;
                                if (oy >= p->oh || ox >= p->ow) continue;
                                acc = fmaf(w[(o * p->kh + ky) * p->kw + kx],
                                           dy[((i * p->oc + o) * p->oh + oy) * p->ow + ox], acc);
                            }
                    }
                    dx[((i * p->c + ci) * p->h + iy) * p->w + ix] = acc;
                }
}

static void dwb_check(int ci, const dwb_case *k, int64_t n) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = n; p.c = k->c; p.h = k->h; p.w = k->w; p.oc = k->c * k->mult; p.kh = k->kh; p.kw = k->kw;
    p.stride_h = k->sh; p.stride_w = k->sw;
    p.pad_t = k->pt; p.pad_l = k->pl; p.pad_b = k->pb; p.pad_r = k->pr;
    p.dil_h = k->dh; p.dil_w = k->dw; p.groups = k->c;
    p.act = ET_ACT_NONE; p.act_alpha = 0.1f;
    if (et_conv2d_params_init(&p) != ET_OK || !et_conv2d_is_depthwise(&p)) {
        ET_CHECK(0, "dwbits case %d: not a depthwise shape", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * p.kh * p.kw, ny = p.n * p.oc * p.oh * p.ow;
    float *x = dwb_alloc(nx), *w = dwb_alloc(nw), *b = dwb_alloc(p.oc), *dy = dwb_alloc(ny);
    float *bn_a = dwb_alloc(p.oc), *bn_s = dwb_alloc(p.oc);
    float *y_ref = dwb_alloc(ny), *y = dwb_alloc(ny), *dx_ref = dwb_alloc(nx), *dx = dwb_alloc(nx);
    float *dw_ref = dwb_alloc(nw), *dw = dwb_alloc(nw);
    dwb_fill(x, nx, 101 + ci);
    dwb_fill_w(w, nw, 103 + ci);
    et_fill_random(b, p.oc, 107 + ci, -1.0f, 1.0f);
    dwb_fill(dy, ny, 109 + ci);
    et_fill_random(bn_a, p.oc, 113 + ci, 0.5f, 2.0f);
    et_fill_random(bn_s, p.oc, 127 + ci, -0.5f, 0.5f);
    const et_f32_dwconv2d_variant *ref = et_f32_dwconv2d_variants; /* row 0: __ref */

    /* __ref against the canonical chains */
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
        dwb_fwd_chain(&p, x, w, with_bias ? b : NULL, y_ref);
        ref->fwd(&p, x, w, with_bias ? b : NULL, y, 1);
        ET_CHECK(dwb_same(y, y_ref, ny), "dwbits case %d n%lld: fwd__ref bias%d is not the fmaf chain",
                 ci, (long long)n, with_bias);
    }
    dwb_bwd_input_chain(&p, dy, w, dx_ref);
    ref->bwd_input(&p, dy, w, dx, 1);
    ET_CHECK(dwb_same(dx, dx_ref, nx), "dwbits case %d n%lld: bwd_input__ref is not the fmaf chain",
             ci, (long long)n);
    ref->bwd_weight(&p, dy, x, dw_ref, 1);

    for (const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants; row->head.name; row++) {
        if (!et_isa_supported(row->head.isa)) continue;
        for (int th = 1; th <= 2; th++) {
            for (int a = 0; a < (int)(sizeof dwb_acts / sizeof dwb_acts[0]); a++)
                for (int mode = 0; mode < 3; mode++) { /* 0: no bias, 1: bias, 2: bias + BN */
                    p.act = dwb_acts[a];
                    p.bn_scale = mode == 2 ? bn_a : NULL;
                    p.bn_shift = mode == 2 ? bn_s : NULL;
                    const float *bb = mode ? b : NULL;
                    ref->fwd(&p, x, w, bb, y_ref, 1);
                    for (int64_t j = 0; j < ny; j++) y[j] = NAN;
                    et_status st = row->fwd(&p, x, w, bb, y, th);
                    ET_CHECK(st == ET_OK && dwb_same(y, y_ref, ny),
                             "dwbits case %d n%lld: fwd__%s th%d act%d mode%d differs from __ref", ci,
                             (long long)n, row->head.name, th, (int)p.act, mode);
                }
            p.act = ET_ACT_NONE;
            p.bn_scale = p.bn_shift = NULL;
            for (int64_t j = 0; j < nx; j++) dx[j] = NAN;
            et_status st = row->bwd_input(&p, dy, w, dx, th);
            ET_CHECK(st == ET_OK && dwb_same(dx, dx_ref, nx),
                     "dwbits case %d n%lld: bwd_input__%s th%d differs from __ref", ci, (long long)n,
                     row->head.name, th);
            for (int64_t j = 0; j < nw; j++) dw[j] = NAN;
            st = row->bwd_weight(&p, dy, x, dw, th);
            ET_CHECK(st == ET_OK && dwb_same(dw, dw_ref, nw),
                     "dwbits case %d n%lld: bwd_weight__%s th%d differs from __ref", ci, (long long)n,
                     row->head.name, th);
        }
    }
    free(x); free(w); free(b); free(dy); free(bn_a); free(bn_s);
    free(y_ref); free(y); free(dx_ref); free(dx); free(dw_ref); free(dw);
}

/* The weight gradient with non-finite dy (inf, -inf, NaN) at positions whose input is padding
 * for some taps: every variant still gives __ref's bits (the canonical order skips those
 * positions; a vector path that added dy * 0 there would turn inf into NaN). Any NaN matches
 * any NaN: where two NaNs meet, which one an add returns depends on the compiler's operand
 * order (x86 returns the first), not on the operation order. */
static void dwb_check_nonfinite(int ci, const dwb_case *k) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = 3; p.c = k->c; p.h = k->h; p.w = k->w; p.oc = k->c * k->mult; p.kh = k->kh; p.kw = k->kw;
    p.stride_h = k->sh; p.stride_w = k->sw;
    p.pad_t = k->pt; p.pad_l = k->pl; p.pad_b = k->pb; p.pad_r = k->pr;
    p.dil_h = k->dh; p.dil_w = k->dw; p.groups = k->c;
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "dwbits nonfinite case %d: bad shape", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * p.kh * p.kw, ny = p.n * p.oc * p.oh * p.ow;
    float *x = dwb_alloc(nx), *dy = dwb_alloc(ny), *dw_ref = dwb_alloc(nw), *dw = dwb_alloc(nw);
    dwb_fill(x, nx, 201 + ci);
    dwb_fill(dy, ny, 203 + ci);
    const int64_t hw = p.oh * p.ow;
    /* image 1: the first and last position of channel 0 (padding for the edge taps), image 2:
     * a NaN in the middle of channel 0 */
    dy[(1 * p.oc) * hw] = INFINITY;
    dy[(1 * p.oc) * hw + hw - 1] = -INFINITY;
    dy[(2 * p.oc) * hw + hw / 2] = NAN;
    const et_f32_dwconv2d_variant *ref = et_f32_dwconv2d_variants;
    ref->bwd_weight(&p, dy, x, dw_ref, 1);
    for (const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants; row->head.name; row++) {
        if (!et_isa_supported(row->head.isa)) continue;
        for (int64_t j = 0; j < nw; j++) dw[j] = 0.5f;
        et_status st = row->bwd_weight(&p, dy, x, dw, 2);
        int same = 1;
        for (int64_t j = 0; j < nw; j++)
            same &= (isnan(dw[j]) && isnan(dw_ref[j])) || dwb_same(dw + j, dw_ref + j, 1);
        ET_CHECK(st == ET_OK && same, "dwbits nonfinite case %d: bwd_weight__%s differs from __ref", ci, row->head.name);
    }
    free(x); free(dy); free(dw_ref); free(dw);
}

/* The forward with inf, -inf and NaN in x (at plane corners, edges and the middle, so in
 * padding-adjacent and interior taps): every variant gives __ref's bits for every act and
 * epilogue mode, 1 and 2 threads (any NaN matches any NaN, as above). */
static void dwb_check_fwd_nonfinite(int ci, const dwb_case *k) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = 5; p.c = k->c; p.h = k->h; p.w = k->w; p.oc = k->c * k->mult; p.kh = k->kh; p.kw = k->kw;
    p.stride_h = k->sh; p.stride_w = k->sw;
    p.pad_t = k->pt; p.pad_l = k->pl; p.pad_b = k->pb; p.pad_r = k->pr;
    p.dil_h = k->dh; p.dil_w = k->dw; p.groups = k->c; p.act_alpha = 0.1f;
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "dwbits fwd nonfinite case %d: bad shape", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * p.kh * p.kw, ny = p.n * p.oc * p.oh * p.ow;
    const int64_t hw = p.h * p.w;
    float *x = dwb_alloc(nx), *w = dwb_alloc(nw), *b = dwb_alloc(p.oc), *y_ref = dwb_alloc(ny), *y = dwb_alloc(ny);
    float *bn_a = dwb_alloc(p.oc), *bn_s = dwb_alloc(p.oc);
    dwb_fill(x, nx, 301 + ci);
    dwb_fill_w(w, nw, 303 + ci);
    et_fill_random(b, p.oc, 307 + ci, -1.0f, 1.0f);
    et_fill_random(bn_a, p.oc, 311 + ci, 0.5f, 2.0f);
    et_fill_random(bn_s, p.oc, 313 + ci, -0.5f, 0.5f);
    for (int64_t pl = 0; pl < p.n * p.c; pl += 3) { /* every third plane */
        float *xp = x + pl * hw;
        xp[0] = INFINITY;
        xp[hw - 1] = -INFINITY;
        xp[hw / 2] = NAN;
        xp[p.w - 1] = pl % 2 ? NAN : -INFINITY;
    }
    const et_f32_dwconv2d_variant *ref = et_f32_dwconv2d_variants;
    for (const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants; row->head.name; row++) {
        if (!et_isa_supported(row->head.isa)) continue;
        for (int th = 1; th <= 2; th++)
            for (int a = 0; a < (int)(sizeof dwb_acts / sizeof dwb_acts[0]); a++)
                for (int mode = 0; mode < 3; mode++) {
                    p.act = dwb_acts[a];
                    p.bn_scale = mode == 2 ? bn_a : NULL;
                    p.bn_shift = mode == 2 ? bn_s : NULL;
                    const float *bb = mode ? b : NULL;
                    ref->fwd(&p, x, w, bb, y_ref, 1);
                    for (int64_t j = 0; j < ny; j++) y[j] = 0.5f;
                    et_status st = row->fwd(&p, x, w, bb, y, th);
                    int same = 1;
                    for (int64_t j = 0; j < ny; j++)
                        same &= (isnan(y[j]) && isnan(y_ref[j])) || dwb_same(y + j, y_ref + j, 1);
                    ET_CHECK(st == ET_OK && same,
                             "dwbits fwd nonfinite case %d: fwd__%s th%d act%d mode%d differs from __ref",
                             ci, row->head.name, th, (int)p.act, mode);
                }
    }
    free(x); free(w); free(b); free(y_ref); free(y); free(bn_a); free(bn_s);
}

/* MobileNetV2's depthwise forwards at 224x224 (one image, all channels), as its eval program
 * runs them (no bias, fused BatchNorm, relu6) and plain (no bias, no epilogue): every variant
 * gives __ref's bits at 1, 2 and 3 threads. */
static void dwb_check_mnv2_224(void) {
    static const int64_t shapes[][3] = { /* c, h (= w), stride */
        {32, 112, 1}, {96, 112, 2}, {144, 56, 1}, {144, 56, 2}, {192, 28, 1}, {192, 28, 2},
        {384, 14, 1}, {576, 14, 2}, {960, 7, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        et_conv2d_params p;
        memset(&p, 0, sizeof p);
        p.n = 1; p.c = shapes[si][0]; p.h = p.w = shapes[si][1]; p.oc = p.c; p.kh = p.kw = 3;
        p.stride_h = p.stride_w = shapes[si][2];
        p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
        p.dil_h = p.dil_w = 1; p.groups = p.c;
        if (et_conv2d_params_init(&p) != ET_OK) {
            ET_CHECK(0, "dwbits mnv2 shape %d: bad shape", (int)si);
            continue;
        }
        const int64_t nx = p.c * p.h * p.w, nw = p.oc * 9, ny = p.oc * p.oh * p.ow;
        float *x = dwb_alloc(nx), *w = dwb_alloc(nw), *y_ref = dwb_alloc(ny), *y = dwb_alloc(ny);
        float *bn_a = dwb_alloc(p.oc), *bn_s = dwb_alloc(p.oc);
        dwb_fill(x, nx, 401 + si);
        dwb_fill_w(w, nw, 403 + si);
        et_fill_random(bn_a, p.oc, 409 + si, 0.5f, 2.0f);
        et_fill_random(bn_s, p.oc, 419 + si, -0.5f, 0.5f);
        const et_f32_dwconv2d_variant *ref = et_f32_dwconv2d_variants;
        for (int eval = 0; eval <= 1; eval++) {
            p.act = eval ? ET_ACT_RELU6 : ET_ACT_NONE;
            p.bn_scale = eval ? bn_a : NULL;
            p.bn_shift = eval ? bn_s : NULL;
            ref->fwd(&p, x, w, NULL, y_ref, 1);
            for (const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants; row->head.name; row++) {
                if (!et_isa_supported(row->head.isa)) continue;
                for (int th = 1; th <= 3; th++) {
                    for (int64_t j = 0; j < ny; j++) y[j] = NAN;
                    et_status st = row->fwd(&p, x, w, NULL, y, th);
                    ET_CHECK(st == ET_OK && dwb_same(y, y_ref, ny),
                             "dwbits mnv2 c%lld %lldx%lld s%lld: fwd__%s th%d eval%d differs from __ref",
                             (long long)p.c, (long long)p.h, (long long)p.w, (long long)p.stride_h,
                             row->head.name, th, eval);
                }
            }
        }
        free(x); free(w); free(y_ref); free(y); free(bn_a); free(bn_s);
    }
}

/* MobileNetV2's depthwise convolutions at 32x32 as a training step runs them (9 and 32 images:
 * the AVX-512 / AVX2 table path's image parts, whole groups of four images and a remainder, on
 * several threads; smaller shapes run on one): forward (plain and eval's fused BatchNorm +
 * relu6), input and weight gradient give __ref's bits at 1, 2 and 3 threads. */
static void dwb_check_mnv2_32(void) {
    static const int64_t shapes[][3] = { /* c, h (= w), stride */
        {32, 16, 1}, {96, 16, 2}, {144, 8, 1}, {144, 8, 2}, {192, 4, 1}, {192, 4, 2},
        {384, 2, 1}, {576, 2, 2}, {960, 1, 1}};
    static const int64_t batches[] = {9, 32};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            et_conv2d_params p;
            memset(&p, 0, sizeof p);
            p.n = batches[bi]; p.c = shapes[si][0]; p.h = p.w = shapes[si][1]; p.oc = p.c;
            p.kh = p.kw = 3; p.stride_h = p.stride_w = shapes[si][2];
            p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
            p.dil_h = p.dil_w = 1; p.groups = p.c;
            if (et_conv2d_params_init(&p) != ET_OK) {
                ET_CHECK(0, "dwbits mnv2-32 shape %d: bad shape", (int)si);
                continue;
            }
            const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * 9, ny = p.n * p.oc * p.oh * p.ow;
            float *x = dwb_alloc(nx), *w = dwb_alloc(nw), *y_ref = dwb_alloc(ny), *y = dwb_alloc(ny);
            float *dy = dwb_alloc(ny), *dx_ref = dwb_alloc(nx), *dx = dwb_alloc(nx);
            float *bn_a = dwb_alloc(p.oc), *bn_s = dwb_alloc(p.oc);
            dwb_fill(x, nx, 431 + si);
            dwb_fill(dy, ny, 433 + si);
            dwb_fill_w(w, nw, 437 + si);
            et_fill_random(bn_a, p.oc, 439 + si, 0.5f, 2.0f);
            et_fill_random(bn_s, p.oc, 443 + si, -0.5f, 0.5f);
            const et_f32_dwconv2d_variant *ref = et_f32_dwconv2d_variants;
            float *dw_ref = dwb_alloc(nw), *dw = dwb_alloc(nw);
            ref->bwd_input(&p, dy, w, dx_ref, 1);
            ref->bwd_weight(&p, dy, x, dw_ref, 1);
            for (int eval = 0; eval <= 1; eval++) {
                p.act = eval ? ET_ACT_RELU6 : ET_ACT_NONE;
                p.bn_scale = eval ? bn_a : NULL;
                p.bn_shift = eval ? bn_s : NULL;
                ref->fwd(&p, x, w, NULL, y_ref, 1);
                for (const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants; row->head.name;
                     row++) {
                    if (!et_isa_supported(row->head.isa)) continue;
                    for (int th = 1; th <= 3; th++) {
                        for (int64_t j = 0; j < ny; j++) y[j] = NAN;
                        et_status st = row->fwd(&p, x, w, NULL, y, th);
                        ET_CHECK(st == ET_OK && dwb_same(y, y_ref, ny),
                                 "dwbits mnv2-32 n%lld c%lld %lldx%lld s%lld: fwd__%s th%d eval%d "
                                 "differs from __ref", (long long)p.n, (long long)p.c,
                                 (long long)p.h, (long long)p.w, (long long)p.stride_h,
                                 row->head.name, th, eval);
                        if (eval) continue;
                        for (int64_t j = 0; j < nx; j++) dx[j] = NAN;
                        st = row->bwd_input(&p, dy, w, dx, th);
                        ET_CHECK(st == ET_OK && dwb_same(dx, dx_ref, nx),
                                 "dwbits mnv2-32 n%lld c%lld %lldx%lld s%lld: bwd_input__%s th%d "
                                 "differs from __ref", (long long)p.n, (long long)p.c,
                                 (long long)p.h, (long long)p.w, (long long)p.stride_h,
                                 row->head.name, th);
                        for (int64_t j = 0; j < nw; j++) dw[j] = NAN;
                        st = row->bwd_weight(&p, dy, x, dw, th);
                        ET_CHECK(st == ET_OK && dwb_same(dw, dw_ref, nw),
                                 "dwbits mnv2-32 n%lld c%lld %lldx%lld s%lld: bwd_weight__%s th%d "
                                 "differs from __ref", (long long)p.n, (long long)p.c,
                                 (long long)p.h, (long long)p.w, (long long)p.stride_h,
                                 row->head.name, th);
                    }
                }
            }
            p.act = ET_ACT_NONE;
            p.bn_scale = p.bn_shift = NULL;
            free(x); free(w); free(y_ref); free(y); free(dy); free(dx_ref); free(dx);
            free(bn_a); free(bn_s); free(dw_ref); free(dw);
        }
}

/* Weight and input gradient (3x3) give __ref's bits for the shapes {h (= w), stride, pad}, the
 * channel counts, 1, 3 and 32 images, 1, 2 and 3 threads. */
static void dwb_check_grads(const char *what, const int64_t (*shapes)[3], size_t nshapes,
                            const int64_t *chans, size_t nchans, uint64_t seed0) {
    static const int64_t batches[] = {1, 3, 32};
    for (size_t si = 0; si < nshapes; si++)
        for (size_t ci = 0; ci < nchans; ci++)
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
                et_conv2d_params p;
                memset(&p, 0, sizeof p);
                p.n = batches[bi]; p.c = chans[ci]; p.h = p.w = shapes[si][0]; p.oc = p.c;
                p.kh = p.kw = 3; p.stride_h = p.stride_w = shapes[si][1];
                p.pad_t = p.pad_l = p.pad_b = p.pad_r = shapes[si][2];
                p.dil_h = p.dil_w = 1; p.groups = p.c;
                if (et_conv2d_params_init(&p) != ET_OK) {
                    ET_CHECK(0, "dwbits %s shape %d: bad shape", what, (int)si);
                    continue;
                }
                const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * 9, ny = p.n * p.oc * p.oh * p.ow;
                float *x = dwb_alloc(nx), *w = dwb_alloc(nw), *dy = dwb_alloc(ny);
                float *dx_ref = dwb_alloc(nx), *dx = dwb_alloc(nx), *dw_ref = dwb_alloc(nw), *dw = dwb_alloc(nw);
                const uint64_t seed = seed0 + 16 * si + 4 * ci + bi;
                dwb_fill(x, nx, seed);
                dwb_fill(dy, ny, seed + 1000);
                dwb_fill_w(w, nw, seed + 2000);
                const et_f32_dwconv2d_variant *ref = et_f32_dwconv2d_variants;
                ref->bwd_input(&p, dy, w, dx_ref, 1);
                ref->bwd_weight(&p, dy, x, dw_ref, 1);
                for (const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants; row->head.name; row++) {
                    if (!et_isa_supported(row->head.isa)) continue;
                    for (int th = 1; th <= 3; th++) {
                        for (int64_t j = 0; j < nw; j++) dw[j] = NAN;
                        et_status st = row->bwd_weight(&p, dy, x, dw, th);
                        ET_CHECK(st == ET_OK && dwb_same(dw, dw_ref, nw),
                                 "dwbits %s n%lld c%lld %lldx%lld s%lld: bwd_weight__%s th%d differs "
                                 "from __ref", what, (long long)p.n, (long long)p.c, (long long)p.h,
                                 (long long)p.w, (long long)p.stride_h, row->head.name, th);
                        for (int64_t j = 0; j < nx; j++) dx[j] = NAN;
                        st = row->bwd_input(&p, dy, w, dx, th);
                        ET_CHECK(st == ET_OK && dwb_same(dx, dx_ref, nx),
                                 "dwbits %s n%lld c%lld %lldx%lld s%lld: bwd_input__%s th%d differs "
                                 "from __ref", what, (long long)p.n, (long long)p.c, (long long)p.h,
                                 (long long)p.w, (long long)p.stride_h, row->head.name, th);
                    }
                }
                free(x); free(w); free(dy); free(dx_ref); free(dx); free(dw_ref); free(dw);
            }
}

/* Planes of at most 16 floats (MobileNetV2's 4x4, 2x2 and 1x1 at 32x32; the AVX-512 weight
 * gradient's permuted blocks, dws_wgrad_perm: units side by side when one tap is used, short
 * last units). */
static void dwb_check_tiny_grads(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {2, 1, 1}, {4, 2, 1}, {4, 1, 1}, {2, 2, 1}};
    static const int64_t chans[] = {16, 37, 384, 960};
    dwb_check_grads("tiny", shapes, sizeof shapes / sizeof shapes[0], chans,
                    sizeof chans / sizeof chans[0], 500);
}

/* MobileNetV2's 16x16 and 8x8 planes at 32x32 (the AVX-512 stride-2 input gradient on 16-float
 * rows, dws_s2row_*, its unrolled 16x16 -> 8x8 case and the generic one at pad 0; the
 * table-built weight gradients). */
static void dwb_check_mid_grads(void) {
    static const int64_t shapes[][3] = {{16, 2, 1}, {16, 1, 1}, {8, 1, 1}, {8, 2, 1}, {16, 2, 0}};
    static const int64_t chans[] = {16, 37, 96, 144, 192};
    dwb_check_grads("mid", shapes, sizeof shapes / sizeof shapes[0], chans,
                    sizeof chans / sizeof chans[0], 700);
}

void test_dwbits(void) {
    dwb_check_mnv2_224();
    dwb_check_mnv2_32();
    dwb_check_tiny_grads();
    dwb_check_mid_grads();
    for (size_t i = 0; i < sizeof dwb_cases / sizeof dwb_cases[0]; i++)
        dwb_check_fwd_nonfinite((int)i, &dwb_cases[i]);
    static const int nonfinite[] = {0, 2, 4, 8, 9, 12, 19, 20, 22, 23};
    for (size_t i = 0; i < sizeof nonfinite / sizeof nonfinite[0]; i++)
        dwb_check_nonfinite(nonfinite[i], &dwb_cases[nonfinite[i]]);
    for (size_t i = 0; i < sizeof dwb_cases / sizeof dwb_cases[0]; i++) {
        dwb_check((int)i, &dwb_cases[i], 1);
        dwb_check((int)i, &dwb_cases[i], 5);
    }
}
