/* edgetrain — the convolution's faster same-bits paths (et_conv2d_fast_paths_) against the
 * paths they replace, byte for byte: bwd_weight's channels-last path (plan hwc: B panels read
 * straight from the channels-last image by the table ukernel, dw's columns permuted back) and
 * its first-layer path (plan fl: transposed columns built in blocks, rows in passes), and
 * bwd_input's col2im per band in vectors (col2im_band_avx512), and the forward's direct path
 * for few-tap windows (direct_fwd), on every SIMD ISA, 1..3 threads; the shapes reach their branches and the places they stand down. */
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "et_test.h"

typedef struct fast_case {
    int64_t n, c, h, w, oc, kh, kw, sh, sw, dh, dw;
} fast_case;

static const fast_case fast_cases[] = {
    /*  n   c   h   w   oc kh kw sh sw dh dw */
    {64, 20, 12, 12, 50, 5, 5, 1, 1, 1, 1},  /* LeNet conv2 b64: panels straddling runs of 100 */
    {9, 20, 12, 12, 50, 5, 5, 1, 1, 1, 1},   /* 8 chunks of uneven size */
    {1, 3, 9, 11, 17, 5, 5, 1, 1, 1, 1},     /* runs of 15 < NR: panels over three runs */
    {5, 8, 10, 13, 15, 3, 3, 2, 2, 1, 1},    /* stride 2 both ways, runs of 24 */
    {3, 6, 11, 9, 29, 3, 4, 1, 1, 2, 1},     /* dil_h 2, kw 4 */
    {5, 70, 6, 6, 3, 3, 3, 1, 1, 1, 1},      /* Kg 630, 3 rows of dw */
    {3, 40, 7, 7, 9, 5, 5, 1, 1, 1, 1},      /* Kg 1000, 9 pixels */
    {2, 4, 40, 40, 5, 4, 4, 1, 1, 1, 1},     /* 1369 pixels: two K blocks (old path) */
    {3, 16, 40, 40, 8, 3, 3, 1, 1, 1, 1},    /* several column bands (old path) */
    {3, 40, 7, 7, 300, 5, 5, 1, 1, 1, 1},    /* dw > 1 MiB: one chunk (old path at th > 1) */
    {4, 2, 9, 9, 7, 6, 6, 1, 1, 1, 1},       /* Kg 72 from 2 channels, runs of 12 */
    {3, 4, 9, 10, 14, 4, 5, 1, 1, 1, 1},     /* runs of 20: a piece over both halves; dy one
                                              * whole row panel (OC 14 = the AVX-512 MR) */
    {2, 3, 8, 9, 28, 5, 5, 1, 1, 1, 1},      /* runs of 15, dy two whole row panels */
    {3, 17, 7, 9, 11, 3, 3, 1, 1, 1, 1},     /* channels 16..: one (4 x 16 transposes) */
    /* first layers (Kg < 32: padded colt, plan fl on AVX-512: colt built in blocks of 64) */
    {64, 1, 28, 28, 20, 5, 5, 1, 1, 1, 1},   /* LeNet conv1 b64: two passes of 10 rows */
    {9, 1, 28, 28, 20, 5, 5, 1, 1, 1, 1},    /* uneven chunks */
    {3, 1, 13, 17, 7, 5, 5, 1, 1, 1, 1},     /* 117 pixels: a short last block; 7 rows */
    {2, 1, 21, 15, 29, 5, 5, 2, 1, 2, 1},    /* 7 x 11 pixels, sh 2, dil_h 2; 3 passes */
    {4, 1, 30, 30, 16, 3, 3, 1, 1, 1, 1},    /* Kg 9: the left half only; 784 px: 2 K blocks */
    {4, 1, 20, 22, 13, 3, 3, 1, 2, 1, 1},    /* sw 2; an odd row count */
    {5, 3, 16, 16, 32, 3, 3, 1, 1, 1, 1},    /* Kg 27 from 3 channels; 3 passes */
    {3, 3, 17, 15, 64, 3, 3, 2, 2, 1, 1},    /* OC 64 = FL_MAX_OC, stride 2 */
    {2, 3, 12, 12, 65, 3, 3, 1, 1, 1, 1},    /* OC 65 (old path) */
    {3, 1, 16, 16, 6, 4, 4, 1, 1, 1, 1},     /* (c*kh, kw) not instantiated (old path) */
    {1, 1, 5, 5, 1, 5, 5, 1, 1, 1, 1},       /* one pixel (the GEMM's unpacked path) */
};

static void check_fast(int ci, const fast_case *k) {
    et_conv2d_params p = {0};
    p.n = k->n, p.c = k->c, p.h = k->h, p.w = k->w, p.oc = k->oc, p.kh = k->kh, p.kw = k->kw;
    p.stride_h = k->sh, p.stride_w = k->sw, p.dil_h = k->dh, p.dil_w = k->dw, p.groups = 1;
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "fast case %d: params", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.oc * p.oh * p.ow;
    const int64_t nw = p.oc * p.c * p.kh * p.kw;
    float *x = malloc((size_t)nx * sizeof(float)), *dy = malloc((size_t)ny * sizeof(float));
    float *want = malloc((size_t)nw * sizeof(float)), *dw = malloc((size_t)nw * sizeof(float));
    et_fill_random(x, nx, 301 + ci, -1.0f, 1.0f);
    et_fill_random(dy, ny, 307 + ci, -1.0f, 1.0f);
    int have = 0;
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        for (int fast = 0; fast <= 1; fast++)
            for (int th = 1; th <= 3; th++) {
                et_conv2d_fast_paths_(fast);
                size_t wsb = et_f32_conv2d_bwd_weight_ws_bytes(&p, th);
                void *ws = wsb ? malloc(wsb) : NULL;
                float *out = have ? dw : want;
                for (int64_t i = 0; i < nw; i++) out[i] = (float)i * 1e30f; /* overwritten */
                et_status st = et_f32_conv2d_bwd_weight(&p, dy, x, out, ws, wsb, th);
                ET_CHECK(st == ET_OK, "fast case %d %s fast%d th%d: status %d", ci,
                         et_isa_name(isa), fast, th, (int)st);
                if (have)
                    ET_CHECK(memcmp(dw, want, (size_t)nw * sizeof(float)) == 0,
                             "fast case %d %s fast%d th%d: bwd_weight bits differ", ci,
                             et_isa_name(isa), fast, th);
                have = 1;
                free(ws);
            }
    }
    et_conv2d_fast_paths_(1);
    et_set_isa(et_cpu_best_isa());
    free(x); free(dy); free(want); free(dw);
}

/* bwd_input's col2im per band of GEMM rows (plan bands; col2im_band_avx512 on AVX-512: dx
 * rows of at most 16 floats in vectors) against the old paths, byte for byte: every ISA, fast
 * paths off and on, 1..3 threads. The LeNet case's channels straddle the 14-row bands. */
static const fast_case bwd_input_cases[] = {
    /*  n   c   h   w   oc kh kw sh sw dh dw */
    {64, 20, 12, 12, 50, 5, 5, 1, 1, 1, 1},  /* LeNet conv2 b64 */
    {3, 7, 11, 16, 33, 4, 3, 1, 1, 1, 1},    /* w 16 (a whole vector), kh != kw */
    {2, 5, 13, 9, 40, 3, 3, 2, 1, 1, 1},     /* stride_h 2: rows without a contribution */
    {2, 6, 14, 10, 21, 3, 2, 1, 1, 2, 1},    /* dil_h 2 */
    {2, 3, 10, 17, 30, 3, 3, 1, 1, 1, 1},    /* w 17 (col2im_band) */
    {2, 4, 9, 9, 24, 3, 3, 1, 1, 1, 2},      /* dil_w 2 (col2im_band) */
};

static void check_bwd_input(int ci, const fast_case *k) {
    et_conv2d_params p = {0};
    p.n = k->n, p.c = k->c, p.h = k->h, p.w = k->w, p.oc = k->oc, p.kh = k->kh, p.kw = k->kw;
    p.stride_h = k->sh, p.stride_w = k->sw, p.dil_h = k->dh, p.dil_w = k->dw, p.groups = 1;
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "bwd_input case %d: params", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.oc * p.oh * p.ow;
    const int64_t nw = p.oc * p.c * p.kh * p.kw;
    float *w = malloc((size_t)nw * sizeof(float)), *dy = malloc((size_t)ny * sizeof(float));
    float *want = malloc((size_t)nx * sizeof(float)), *dx = malloc((size_t)nx * sizeof(float));
    et_fill_random(w, nw, 401 + ci, -1.0f, 1.0f);
    et_fill_random(dy, ny, 409 + ci, -1.0f, 1.0f);
    int have = 0;
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        for (int fast = 0; fast <= 1; fast++)
            for (int th = 1; th <= 3; th++) {
                et_conv2d_fast_paths_(fast);
                size_t wsb = et_f32_conv2d_bwd_input_ws_bytes(&p, th);
                void *ws = wsb ? malloc(wsb) : NULL;
                float *out = have ? dx : want;
                for (int64_t i = 0; i < nx; i++) out[i] = (float)i * 1e30f; /* overwritten */
                et_status st = et_f32_conv2d_bwd_input(&p, dy, w, out, ws, wsb, th);
                ET_CHECK(st == ET_OK, "bwd_input case %d %s fast%d th%d: status %d", ci,
                         et_isa_name(isa), fast, th, (int)st);
                if (have)
                    ET_CHECK(memcmp(dx, want, (size_t)nx * sizeof(float)) == 0,
                             "bwd_input case %d %s fast%d th%d: dx bits differ", ci,
                             et_isa_name(isa), fast, th);
                have = 1;
                free(ws);
            }
    }
    et_conv2d_fast_paths_(1);
    et_set_isa(et_cpu_best_isa());
    free(w); free(dy); free(want); free(dx);
}

/* The forward's direct path for few-tap windows (direct_fwd on AVX-512: Kg <= 32 on the
 * implicit plan or over im2col bands, each element's FMA chain in registers, bias + relu /
 * relu6 before the store) against the GEMM paths, byte for byte: every ISA, fast paths off
 * and on, 1..3 threads. Pixel counts reach whole and partial 96-pixel tiles and single
 * vectors; channel counts leave 1..3 rows after the 4-row tiles; the biases mix zeros (act
 * none adds only non-zero ones). Integer data (ints) makes sums land on exactly 0 and 6 (relu6's
 * bounds) and one NaN input reaches outputs; the case checks that it got all three. */
typedef struct fwd_case {
    int64_t n, c, h, w, oc, kh, kw;
    et_act act;
    int bias;        /* 0: none, 1: every channel, 2: every third channel zero */
    int stride, pad; /* 0: 1 and 0 */
    int ints;        /* small integers and a NaN in x */
    int bn;          /* a fused BatchNorm (eval programs): scales of both signs, shifts with -0 */
} fwd_case;

static const fwd_case fwd_cases[] = {
    /*  n  c   h   w  oc kh kw  act            bias */
    {64, 1, 28, 28, 20, 5, 5, ET_ACT_RELU, 1, 0, 0, 0, 0},  /* LeNet conv1 b64: 576 = 6 tiles of 96 */
    {3, 1, 28, 28, 20, 5, 5, ET_ACT_NONE, 2, 0, 0, 0, 0},   /* act none, zero biases among the others */
    {3, 1, 14, 15, 7, 5, 5, ET_ACT_RELU, 0, 0, 0, 0, 0},    /* 10 x 11 = 110: 96 + a 14-pixel vector; 4+3 */
    {2, 2, 13, 14, 6, 4, 4, ET_ACT_NONE, 1, 0, 0, 0, 0},    /* 10 x 11 px, Kg 32 (the most); 4 + 2 rows */
    {3, 1, 13, 14, 9, 4, 5, ET_ACT_RELU, 2, 0, 0, 0, 0},    /* 10 x 10 = 100: 96 + 4; 4 + 4 + 1 rows */
    {2, 1, 13, 14, 5, 4, 4, ET_ACT_NONE, 0, 0, 0, 0, 0},    /* 10 x 11 = 110 (no epilogue) */
    {2, 3, 12, 12, 17, 3, 3, ET_ACT_RELU, 1, 0, 0, 0, 0},   /* 10 x 10, Kg 27 from 3 channels */
    {2, 1, 12, 14, 8, 3, 3, ET_ACT_RELU, 1, 0, 0, 0, 0},    /* 10 x 12 = 120: 96 + 16 + 8 */
    {2, 1, 13, 12, 8, 4, 3, ET_ACT_RELU, 1, 0, 0, 0, 0},    /* 10 x 10 with kh != kw */
    {2, 1, 14, 12, 8, 2, 3, ET_ACT_RELU, 1, 0, 0, 0, 0},    /* 13 x 10 = 130 */
    {2, 1, 12, 14, 8, 3, 4, ET_ACT_RELU6, 1, 0, 0, 0, 0},   /* relu6 */
    {2, 4, 12, 12, 8, 3, 3, ET_ACT_RELU, 1, 0, 0, 0, 0},    /* Kg 36 (GEMM path) */
    /* MobileNetV2's stem (BN folded into the bias): stride 2, pad 1, im2col in 3 bands */
    {8, 3, 224, 224, 32, 3, 3, ET_ACT_RELU6, 1, 2, 1, 0, 0},
    {3, 3, 15, 17, 10, 3, 3, ET_ACT_RELU6, 2, 2, 1, 0, 0},  /* 8 x 9 = 72 px; 4 + 4 + 2 rows */
    {3, 3, 15, 17, 10, 3, 3, ET_ACT_RELU6, 1, 2, 1, 1, 0},  /* exact 0 / 6, NaN */
    {2, 3, 33, 31, 7, 3, 3, ET_ACT_RELU6, 1, 2, 1, 1, 0},   /* 17 x 16 = 272 px */
    {2, 1, 12, 14, 8, 3, 4, ET_ACT_RELU6, 1, 1, 0, 1, 0},   /* exact 0 / 6, NaN: implicit plan */
    {2, 2, 13, 11, 6, 3, 3, ET_ACT_NONE, 2, 2, 1, 1, 0},    /* act none, stride 2 */
    /* the stem as an eval program runs it: BatchNorm fused, no bias */
    {8, 3, 224, 224, 32, 3, 3, ET_ACT_RELU6, 0, 2, 1, 0, 1},
    {3, 3, 15, 17, 10, 3, 3, ET_ACT_RELU6, 2, 2, 1, 1, 1}, /* bn relu6: -0 to +0 */
    {3, 3, 15, 17, 10, 3, 3, ET_ACT_RELU, 1, 2, 1, 1, 1},
    {3, 3, 15, 17, 10, 3, 3, ET_ACT_NONE, 0, 2, 1, 1, 1},
    {2, 1, 12, 14, 9, 3, 4, ET_ACT_RELU6, 2, 1, 0, 1, 1}, /* implicit plan */
};

static void check_fwd_direct(int ci, const fwd_case *k) {
    et_conv2d_params p = {0};
    p.n = k->n, p.c = k->c, p.h = k->h, p.w = k->w, p.oc = k->oc, p.kh = k->kh, p.kw = k->kw;
    p.stride_h = p.stride_w = k->stride ? k->stride : 1, p.dil_h = p.dil_w = 1, p.groups = 1;
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = k->pad, p.act = k->act;
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "fwd case %d: params", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.oc * p.oh * p.ow;
    const int64_t nw = p.oc * p.c * p.kh * p.kw;
    float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
    float *b = malloc((size_t)p.oc * sizeof(float)), *bn = malloc(2 * (size_t)p.oc * sizeof(float));
    float *want = malloc((size_t)ny * sizeof(float)), *y = malloc((size_t)ny * sizeof(float));
    et_fill_random(x, nx, 501 + ci, -1.0f, 1.0f);
    et_fill_random(w, nw, 503 + ci, -1.0f, 1.0f);
    et_fill_random(b, p.oc, 509 + ci, -1.0f, 1.0f);
    for (int64_t o = 0; o < p.oc && k->bias == 2; o += 3) b[o] = 0.0f;
    et_fill_random(bn, 2 * p.oc, 511 + ci, -1.0f, 1.0f);
    for (int64_t o = 0; o < p.oc; o++) {
        bn[o] = o % 3 == 1 ? -0.5f - bn[o] * bn[o] : 0.5f + bn[o] * bn[o];
        if (k->ints) bn[o] = o % 3 == 1 ? -1.0f : 1.0f + (float)(o % 2);
        if (k->ints) bn[p.oc + o] = (float)(int)(bn[p.oc + o] * 3.0f);
        if (o % 4 == 3) bn[p.oc + o] = -0.0f;
    }
    if (k->bn) p.bn_scale = bn, p.bn_shift = bn + p.oc;
    if (k->ints) {
        for (int64_t i = 0; i < nx; i++) x[i] = (float)(int)(x[i] * 2.5f); /* -2 .. 2 */
        for (int64_t i = 0; i < nw; i++) w[i] = (float)(int)(w[i] * 1.5f); /* -1 .. 1 */
        for (int64_t o = 0; o < p.oc; o++) b[o] = (float)(int)(b[o] * 3.0f);
        x[nx / 2 + p.w / 2] = NAN;
    }
    int have = 0;
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        for (int fast = 0; fast <= 1; fast++)
            for (int th = 1; th <= 3; th++) {
                et_conv2d_fast_paths_(fast);
                size_t wsb = et_f32_conv2d_fwd_ws_bytes(&p, th);
                void *ws = wsb ? malloc(wsb) : NULL;
                float *out = have ? y : want;
                for (int64_t i = 0; i < ny; i++) out[i] = (float)i * 1e30f; /* overwritten */
                et_status st = et_f32_conv2d_fwd(&p, x, w, k->bias ? b : NULL, out, ws, wsb, th);
                ET_CHECK(st == ET_OK, "fwd case %d %s fast%d th%d: status %d", ci,
                         et_isa_name(isa), fast, th, (int)st);
                if (have)
                    ET_CHECK(memcmp(y, want, (size_t)ny * sizeof(float)) == 0,
                             "fwd case %d %s fast%d th%d: y bits differ", ci, et_isa_name(isa),
                             fast, th);
                have = 1;
                free(ws);
            }
    }
    if (k->ints) {
        int zero = 0, six = 0, nan = 0;
        for (int64_t i = 0; i < ny; i++) {
            zero |= want[i] == 0.0f;
            six |= want[i] == 6.0f;
            nan |= want[i] != want[i];
        }
        ET_CHECK(zero && nan && (six || k->act != ET_ACT_RELU6),
                 "fwd case %d: data reach 0 %d, 6 %d, NaN %d", ci, zero, six, nan);
    }
    et_conv2d_fast_paths_(1);
    et_set_isa(et_cpu_best_isa());
    free(x); free(w); free(b); free(bn); free(want); free(y);
}

/* bwd_weight's summation order (conv_internal.h, CONV_WCHUNKS) pinned byte for byte on every
 * ISA, fast paths off and on, 1..3 threads: image i's term is the n = 1 call's dw (one band,
 * so one FMA chain per element, added to the sum as c + acc); the images of chunk c,
 * et_thread_range(n, c, chunks), summed in order; dw = the chunks' sums added in chunk order.
 * Reversing the images of a chunk or the chunks, or cutting chunks by thread count, fails. */
static const fast_case order_cases[] = {
    /*  n   c   h   w   oc kh kw sh sw dh dw */
    {64, 20, 12, 12, 50, 5, 5, 1, 1, 1, 1}, /* LeNet conv2 b64: 8 chunks of 8 (plan hwc) */
    {11, 20, 12, 12, 50, 5, 5, 1, 1, 1, 1}, /* chunks of 2 and 1 */
    {5, 20, 12, 12, 50, 5, 5, 1, 1, 1, 1},  /* fewer images than CONV_WCHUNKS */
    {64, 1, 28, 28, 20, 5, 5, 1, 1, 1, 1},  /* LeNet conv1 b64 (padded colt, plan fl) */
};

static void check_order(int ci, const fast_case *k) {
    et_conv2d_params p = {0}, p1;
    p.n = k->n, p.c = k->c, p.h = k->h, p.w = k->w, p.oc = k->oc, p.kh = k->kh, p.kw = k->kw;
    p.stride_h = k->sh, p.stride_w = k->sw, p.dil_h = k->dh, p.dil_w = k->dw, p.groups = 1;
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "order case %d: params", ci);
        return;
    }
    p1 = p;
    p1.n = 1;
    const int64_t xs = p.c * p.h * p.w, ys = p.oc * p.oh * p.ow, nw = p.oc * p.c * p.kh * p.kw;
    float *x = malloc((size_t)(p.n * xs) * sizeof(float));
    float *dy = malloc((size_t)(p.n * ys) * sizeof(float));
    float *terms = malloc((size_t)(p.n * nw) * sizeof(float));
    float *want = malloc((size_t)nw * sizeof(float)), *part = malloc((size_t)nw * sizeof(float));
    float *dw = malloc((size_t)nw * sizeof(float));
    et_fill_random(x, p.n * xs, 401 + ci, -1.0f, 1.0f);
    et_fill_random(dy, p.n * ys, 409 + ci, -1.0f, 1.0f);
    const int chunks = p.n < CONV_WCHUNKS ? (int)p.n : CONV_WCHUNKS;
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        for (int fast = 0; fast <= 1; fast++) {
            et_conv2d_fast_paths_(fast);
            size_t wsb = et_f32_conv2d_bwd_weight_ws_bytes(&p1, 1);
            void *ws = wsb ? malloc(wsb) : NULL;
            for (int64_t i = 0; i < p.n; i++)
                ET_CHECK(et_f32_conv2d_bwd_weight(&p1, dy + i * ys, x + i * xs, terms + i * nw,
                                                  ws, wsb, 1) == ET_OK,
                         "order case %d: image %lld", ci, (long long)i);
            free(ws);
            for (int c = 0; c < chunks; c++) {
                int64_t i0, i1;
                et_thread_range(p.n, c, chunks, &i0, &i1);
                float *sum = c == 0 ? want : part;
                memcpy(sum, terms + i0 * nw, (size_t)nw * sizeof(float));
                for (int64_t i = i0 + 1; i < i1; i++)
                    for (int64_t j = 0; j < nw; j++) sum[j] += terms[i * nw + j];
                if (c > 0)
                    for (int64_t j = 0; j < nw; j++) want[j] += part[j];
            }
            for (int th = 1; th <= 3; th++) {
                wsb = et_f32_conv2d_bwd_weight_ws_bytes(&p, th);
                ws = wsb ? malloc(wsb) : NULL;
                et_status st = et_f32_conv2d_bwd_weight(&p, dy, x, dw, ws, wsb, th);
                ET_CHECK(st == ET_OK && memcmp(dw, want, (size_t)nw * sizeof(float)) == 0,
                         "order case %d %s fast%d th%d: dw is not the sums in order", ci,
                         et_isa_name(isa), fast, th);
                free(ws);
            }
        }
    }
    et_conv2d_fast_paths_(1);
    et_set_isa(et_cpu_best_isa());
    free(x); free(dy); free(terms); free(want); free(part); free(dw);
}

void test_conv_fast(void) {
    for (size_t i = 0; i < sizeof fast_cases / sizeof fast_cases[0]; i++)
        check_fast((int)i, &fast_cases[i]);
    for (size_t i = 0; i < sizeof bwd_input_cases / sizeof bwd_input_cases[0]; i++)
        check_bwd_input((int)i, &bwd_input_cases[i]);
    for (size_t i = 0; i < sizeof fwd_cases / sizeof fwd_cases[0]; i++)
        check_fwd_direct((int)i, &fwd_cases[i]);
    for (size_t i = 0; i < sizeof order_cases / sizeof order_cases[0]; i++)
        check_order((int)i, &order_cases[i]);
}
