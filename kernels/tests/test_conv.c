/* edgetrain — conv2d tests: public entry points (every ISA, 1 and 2 threads) and the
 * depthwise variants against the naive __ref oracle, over awkward shapes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "et_test.h"

typedef struct conv_case {
    int64_t c, h, w, oc, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, groups;
} conv_case;

static const conv_case cases[] = {
    /*  c   h   w  oc kh kw sh sw pt pl pb pr dh dw g */
    {4, 5, 7, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},       /* 1x1 direct path */
    {4, 7, 9, 5, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1},       /* 1x1 stride 2 */
    {3, 9, 17, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},      /* 3x3 same */
    {4, 11, 16, 6, 3, 3, 2, 2, 0, 1, 1, 0, 1, 1, 1},     /* asymmetric pads, stride 2 */
    {2, 13, 15, 3, 5, 5, 3, 3, 2, 2, 2, 2, 1, 1, 1},     /* 5x5 stride 3 */
    {3, 10, 19, 5, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},     /* dilation 2 */
    {4, 6, 33, 4, 1, 3, 1, 1, 0, 1, 0, 1, 1, 1, 1},      /* 1x3 kernel */
    {3, 7, 5, 2, 3, 1, 2, 1, 1, 0, 0, 0, 1, 1, 1},       /* 3x1, mixed strides */
    {4, 8, 15, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},      /* groups 2 */
    {6, 9, 10, 3, 3, 3, 2, 1, 1, 2, 0, 1, 1, 2, 3},      /* groups 3, mixed */
    {1, 12, 12, 4, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},     /* LeNet conv1-like, c = 1 */
    {16, 40, 40, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* several column bands */
    /* no padding, width stride 1: the row-copy im2col / col2im at the widths it special-cases */
    {20, 12, 12, 50, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},   /* LeNet conv2: rows of 8, kw 5 */
    {3, 11, 26, 4, 3, 3, 2, 1, 0, 0, 0, 0, 1, 1, 1},     /* rows of 24, kw 3, stride_h 2 */
    {3, 12, 22, 4, 3, 3, 1, 1, 0, 0, 0, 0, 2, 2, 1},     /* dilation 2: rows of 18 */
    {2, 9, 14, 3, 2, 4, 1, 1, 0, 0, 0, 0, 1, 1, 1},      /* kw 4, rows of 11 */
    {70, 6, 6, 3, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1},      /* Kg = 630: transposed columns */
    {16, 11, 10, 8, 2, 4, 2, 1, 0, 0, 0, 0, 2, 1, 1},    /* Kg 128, kw 4, dil_h 2, stride_h 2 */
    /* depthwise */
    {5, 6, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5},
    {5, 6, 8, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5},
    {5, 5, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5},
    {3, 5, 15, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},
    {3, 5, 16, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},
    {3, 5, 17, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},
    {2, 4, 31, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},
    {2, 4, 32, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},
    {2, 4, 33, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},
    {2, 3, 70, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},
    {4, 9, 15, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4},      /* dw stride 2 */
    {4, 9, 16, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4},
    {4, 9, 17, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4},
    {2, 7, 33, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},
    {2, 7, 34, 2, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, 2},
    {2, 7, 67, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},
    {3, 8, 19, 6, 3, 3, 1, 1, 1, 0, 0, 1, 1, 1, 3},      /* channel multiplier 2 */
    {3, 9, 37, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 3},      /* multiplier 3, stride 2 */
    {3, 11, 21, 3, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 3},     /* dw 5x5 */
    {3, 11, 21, 3, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 3},     /* dw dilation 2 */
    {2, 11, 23, 2, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 2},     /* dw stride 3 */
    {2, 5, 20, 2, 3, 3, 1, 1, 3, 3, 3, 3, 1, 1, 2},      /* dw pad larger than the kernel */
    {2, 6, 20, 4, 1, 3, 1, 2, 0, 1, 0, 1, 1, 1, 2},      /* dw 1x3, mixed stride */
    {2, 1, 1, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2},       /* dw 1x1 on 1x1 */
    /* dw on small power-of-two planes (AVX-512 flat path), partial channel units */
    {19, 1, 1, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 19},   /* 1x1 plane, 3x3 pad 1 */
    {7, 2, 2, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 7},       /* 2x2 */
    {5, 4, 4, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5},       /* 4x4 */
    {3, 8, 8, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},       /* 8x8 */
    {2, 16, 16, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},     /* 16x16 */
    {17, 2, 2, 17, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 17},   /* 2x2 -> 1x1 stride 2 */
    {9, 4, 4, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 9},       /* 4x4 -> 2x2 */
    {3, 8, 8, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 3},       /* 8x8 -> 4x4 */
    {3, 16, 16, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 3},     /* 16x16 -> 8x8 */
    {2, 32, 32, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},     /* 32x32 -> 16x16 */
    {5, 8, 8, 5, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, 5},       /* asymmetric pads, stride 2 */
    {6, 4, 4, 6, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 6},       /* valid: 4x4 -> 2x2 */
    {3, 8, 8, 3, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 3},       /* dilation 2 */
    {6, 4, 4, 6, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 6},       /* 25 taps: driver path */
    {4, 4, 8, 4, 1, 3, 1, 2, 0, 1, 0, 1, 1, 1, 4},       /* 1x3, stride (1, 2) */
    {4, 4, 4, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4},       /* multiplier 2: driver path */
    /* dw on any plane size (AVX-512: flat path up to 1024 elements, padded planes above) */
    {6, 7, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6},       /* 7x7 (hw 49) */
    {5, 14, 14, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 5},     /* 14x14 -> 7x7 */
    {7, 3, 3, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 7},       /* hw 9: one channel per unit */
    {7, 3, 2, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 7},       /* hw 6: two channels, 4 lanes idle */
    {3, 28, 28, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},     /* 28x28 (hw 784) */
    {3, 30, 34, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},     /* hw 1020 */
    {2, 33, 33, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},     /* hw 1089: padded planes */
    {2, 112, 112, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},   /* several bands */
    {3, 112, 112, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 3},   /* 112 -> 56, several bands */
    {2, 56, 57, 2, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, 2},     /* stride 2, asymmetric pads, odd */
    {2, 40, 37, 2, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 2},     /* 5x5 (generic tap loop) */
    {2, 36, 45, 2, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2},     /* stride 2, dilation 2 */
    {2, 36, 40, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},     /* multiplier 2 */
    {2, 33, 40, 2, 3, 3, 1, 1, 3, 3, 3, 3, 1, 1, 2},     /* pad 3: negative flipped pads */
    {2, 30, 41, 2, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 2},     /* strides (2, 1) */
    {1, 3, 1100, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* rows too wide: row driver */
    {2, 34, 35, 2, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 2},     /* stride 3: row driver */
    {3, 9, 11, 3, 3, 3, 2, 2, 3, 3, 3, 3, 1, 1, 3},      /* stride 2, pad 3: dy rows off dx */
    {18, 3, 5, 18, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 18},   /* 3x5 -> 2x3: input grad, 1 ch/unit */
    {9, 7, 7, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 9},       /* 7x7 -> 4x4 */
};

static const et_act acts[] = {ET_ACT_NONE, ET_ACT_RELU, ET_ACT_RELU6, ET_ACT_LEAKY_RELU,
                              ET_ACT_SIGMOID, ET_ACT_TANH, ET_ACT_HARDSWISH};

static et_conv2d_params make_params(const conv_case *k, int64_t n) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = n; p.c = k->c; p.h = k->h; p.w = k->w; p.oc = k->oc; p.kh = k->kh; p.kw = k->kw;
    p.stride_h = k->sh; p.stride_w = k->sw;
    p.pad_t = k->pt; p.pad_l = k->pl; p.pad_b = k->pb; p.pad_r = k->pr;
    p.dil_h = k->dh; p.dil_w = k->dw; p.groups = k->groups;
    p.act = ET_ACT_NONE; p.act_alpha = 0.1f;
    return p;
}

static float *alloc_f(int64_t n) { return (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

static void fill_nan(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
}

/* One shape, one batch size: every ISA, 1 and 2 threads, bias on/off, an activation. */
static void check_case(int ci, const conv_case *k, int64_t n) {
    et_conv2d_params p = make_params(k, n);
    et_status st = et_conv2d_params_init(&p);
    ET_CHECK(st == ET_OK, "case %d: params_init -> %d", ci, st);
    if (st != ET_OK) return;
    const int64_t cg = p.c / p.groups;
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * cg * p.kh * p.kw, ny = p.n * p.oc * p.oh * p.ow;
    float *x = alloc_f(nx), *w = alloc_f(nw), *b = alloc_f(p.oc), *dy = alloc_f(ny);
    float *y_ref = alloc_f(ny), *y = alloc_f(ny), *dx_ref = alloc_f(nx), *dx = alloc_f(nx);
    float *dw_ref = alloc_f(nw), *dw = alloc_f(nw), *dw2 = alloc_f(nw), *db = alloc_f(p.oc);
    et_fill_random(x, nx, 11 + ci, -1.0f, 1.0f);
    et_fill_random(w, nw, 23 + ci, -1.0f, 1.0f);
    et_fill_random(b, p.oc, 37 + ci, -1.0f, 1.0f);
    et_fill_random(dy, ny, 41 + ci, -1.0f, 1.0f);
    const float rtol = 1e-4f, atol = 1e-4f;
    char what[160];

    et_f32_conv2d_bwd_input__ref(&p, dy, w, dx_ref);
    et_f32_conv2d_bwd_weight__ref(&p, dy, x, dw_ref);

    /* bias: sums of dy in double */
    {
        float *db_ref = alloc_f(p.oc);
        for (int64_t o = 0; o < p.oc; o++) {
            double s = 0.0;
            for (int64_t i = 0; i < p.n; i++)
                for (int64_t j = 0; j < p.oh * p.ow; j++) s += dy[(i * p.oc + o) * p.oh * p.ow + j];
            db_ref[o] = (float)s;
        }
        for (int th = 1; th <= 2; th++) {
            fill_nan(db, p.oc);
            st = et_f32_conv2d_bwd_bias(&p, dy, db, th);
            snprintf(what, sizeof what, "case %d n%lld bwd_bias th%d", ci, (long long)n, th);
            ET_CHECK(st == ET_OK && et_allclose(db, db_ref, p.oc, rtol, atol, what), "%s", what);
        }
        free(db_ref);
    }

    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        for (int th = 1; th <= 2; th++) {
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                p.act = acts[(ci + 2 * th + with_bias) % 7];
                et_f32_conv2d_fwd__ref(&p, x, w, with_bias ? b : NULL, y_ref);
                size_t wsb = et_f32_conv2d_fwd_ws_bytes(&p, th);
                void *ws = wsb ? malloc(wsb) : NULL;
                if (wsb) {
                    st = et_f32_conv2d_fwd(&p, x, w, b, y, ws, wsb - 1, th);
                    ET_CHECK(st == ET_ERR_WORKSPACE, "case %d: short fwd workspace -> %d", ci, st);
                }
                fill_nan(y, ny);
                st = et_f32_conv2d_fwd(&p, x, w, with_bias ? b : NULL, y, ws, wsb, th);
                snprintf(what, sizeof what, "case %d n%lld fwd %s th%d bias%d act%d", ci, (long long)n,
                         et_isa_name(isa), th, with_bias, (int)p.act);
                ET_CHECK(st == ET_OK && et_allclose(y, y_ref, ny, rtol, atol, what), "%s (st %d)", what, st);
                free(ws);
            }
            p.act = ET_ACT_NONE;

            size_t wsb = et_f32_conv2d_bwd_input_ws_bytes(&p, th);
            void *ws = wsb ? malloc(wsb) : NULL;
            fill_nan(dx, nx);
            st = et_f32_conv2d_bwd_input(&p, dy, w, dx, ws, wsb, th);
            snprintf(what, sizeof what, "case %d n%lld bwd_input %s th%d", ci, (long long)n, et_isa_name(isa), th);
            ET_CHECK(st == ET_OK && et_allclose(dx, dx_ref, nx, rtol, atol, what), "%s (st %d)", what, st);
            free(ws);

            wsb = et_f32_conv2d_bwd_weight_ws_bytes(&p, th);
            ws = wsb ? malloc(wsb) : NULL;
            fill_nan(dw, nw);
            st = et_f32_conv2d_bwd_weight(&p, dy, x, dw, ws, wsb, th);
            snprintf(what, sizeof what, "case %d n%lld bwd_weight %s th%d", ci, (long long)n, et_isa_name(isa), th);
            ET_CHECK(st == ET_OK && et_allclose(dw, dw_ref, nw, rtol, atol, what), "%s (st %d)", what, st);
            /* deterministic for a thread count */
            fill_nan(dw2, nw);
            et_f32_conv2d_bwd_weight(&p, dy, x, dw2, ws, wsb, th);
            ET_CHECK(memcmp(dw, dw2, (size_t)nw * sizeof(float)) == 0, "case %d: bwd_weight th%d not deterministic", ci, th);
            if (wsb) {
                st = et_f32_conv2d_bwd_weight(&p, dy, x, dw2, ws, wsb - 1, th);
                ET_CHECK(st == ET_ERR_WORKSPACE, "case %d: short bwd_weight workspace -> %d", ci, st);
            }
            free(ws);
        }
    }
    et_set_isa(et_cpu_best_isa());

    /* every row of the depthwise variant table that runs here, called directly */
    if (et_conv2d_is_depthwise(&p)) {
        int v = 0;
        for (const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants; row->head.name;
             row++, v++) {
            if (!et_isa_supported(row->head.isa)) continue;
            for (int th = 1; th <= 2; th++) {
                p.act = acts[(ci + th + v) % 7];
                et_f32_conv2d_fwd__ref(&p, x, w, b, y_ref);
                fill_nan(y, ny);
                st = row->fwd(&p, x, w, b, y, th);
                snprintf(what, sizeof what, "case %d n%lld dw fwd__%s th%d act%d", ci, (long long)n,
                         row->head.name, th, (int)p.act);
                ET_CHECK(st == ET_OK && et_allclose(y, y_ref, ny, rtol, atol, what), "%s", what);
                p.act = ET_ACT_NONE;
                fill_nan(dx, nx);
                st = row->bwd_input(&p, dy, w, dx, th);
                snprintf(what, sizeof what, "case %d n%lld dw bwd_input__%s th%d", ci, (long long)n, row->head.name, th);
                ET_CHECK(st == ET_OK && et_allclose(dx, dx_ref, nx, rtol, atol, what), "%s", what);
                fill_nan(dw, nw);
                st = row->bwd_weight(&p, dy, x, dw, th);
                snprintf(what, sizeof what, "case %d n%lld dw bwd_weight__%s th%d", ci, (long long)n, row->head.name, th);
                ET_CHECK(st == ET_OK && et_allclose(dw, dw_ref, nw, rtol, atol, what), "%s", what);
            }
        }
    }
    free(x); free(w); free(b); free(dy); free(y_ref); free(y); free(dx_ref); free(dx);
    free(dw_ref); free(dw); free(dw2); free(db);
}

/* Hand-computed: 1x1x3x3 input 1..9, 2x2 kernel of ones, pad 0 -> 2x2 window sums. */
static void check_tiny(void) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = 1; p.c = 1; p.h = 3; p.w = 3; p.oc = 1; p.kh = 2; p.kw = 2;
    p.stride_h = p.stride_w = 1; p.dil_h = p.dil_w = 1; p.groups = 1;
    ET_CHECK(et_conv2d_params_init(&p) == ET_OK && p.oh == 2 && p.ow == 2, "tiny params");
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 1, 1, 1}, want[4] = {12, 16, 24, 28};
    float y[4];
    ET_CHECK(et_f32_conv2d_fwd__ref(&p, x, w, NULL, y) == ET_OK && et_allclose(y, want, 4, 0, 0, "tiny ref"), "tiny ref");
    ET_CHECK(et_f32_conv2d_fwd(&p, x, w, NULL, y, NULL, 0, 1) == ET_OK && et_allclose(y, want, 4, 0, 0, "tiny"), "tiny");
    /* dx of sum(y): each input cell counts the windows it is in */
    const float dy[4] = {1, 1, 1, 1}, dx_want[9] = {1, 2, 1, 2, 4, 2, 1, 2, 1};
    float dx[9];
    ET_CHECK(et_f32_conv2d_bwd_input__ref(&p, dy, w, dx) == ET_OK && et_allclose(dx, dx_want, 9, 0, 0, "tiny dx"), "tiny dx");
    /* stride 2, pad 1, w = [[1,2],[3,4]] (checked with torch.nn.functional.conv2d) */
    p.stride_h = p.stride_w = 2; p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
    ET_CHECK(et_conv2d_params_init(&p) == ET_OK && p.oh == 2 && p.ow == 2, "tiny s2 params");
    const float w2[4] = {1, 2, 3, 4}, want2b[4] = {4, 18, 36, 77};
    ET_CHECK(et_f32_conv2d_fwd__ref(&p, x, w2, NULL, y) == ET_OK && et_allclose(y, want2b, 4, 0, 0, "tiny s2"), "tiny s2");
}

static void check_params(void) {
    conv_case k = cases[2];
    et_conv2d_params p = make_params(&k, 2);
    ET_CHECK(et_conv2d_params_init(&p) == ET_OK && p.oh == 9 && p.ow == 17, "same-pad oh/ow");
    et_conv2d_params q = p; q.groups = 2;
    ET_CHECK(et_conv2d_params_init(&q) == ET_ERR_ARG, "c %% groups");
    q = p; q.stride_w = 0;
    ET_CHECK(et_conv2d_params_init(&q) == ET_ERR_ARG, "stride 0");
    q = p; q.pad_l = -1;
    ET_CHECK(et_conv2d_params_init(&q) == ET_ERR_ARG, "negative pad");
    q = p; q.kh = 12; q.pad_t = q.pad_b = 0;
    ET_CHECK(et_conv2d_params_init(&q) == ET_ERR_ARG, "empty output");
    q = p; q.dil_h = 0;
    ET_CHECK(et_conv2d_params_init(&q) == ET_ERR_ARG, "dilation 0");
    q = p; q.n = 0;
    ET_CHECK(et_conv2d_params_init(&q) == ET_ERR_ARG, "n 0");
    ET_CHECK(et_conv2d_params_init(NULL) == ET_ERR_ARG, "null params");
    float buf[4];
    ET_CHECK(et_f32_conv2d_fwd(&p, NULL, buf, NULL, buf, NULL, 0, 1) == ET_ERR_ARG, "null x");
    q = p; q.oh = 3;
    ET_CHECK(et_f32_conv2d_fwd(&q, buf, buf, NULL, buf, NULL, 0, 1) == ET_ERR_ARG, "stale oh");
    ET_CHECK(et_f32_conv2d_bwd_bias(&p, buf, NULL, 1) == ET_ERR_ARG, "null db");
}

/* Pointwise (1x1 / stride 1 / groups 1) shapes on small planes: the batched path for n > 1,
 * MobileNetV2-like channel counts. */
static const conv_case pw_cases[] = {
    /*   c  h  w   oc kh kw sh sw pt pl pb pr dh dw g */
    {96, 1, 1, 24, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},     /* HW 1 */
    {24, 2, 2, 144, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},    /* HW 4 */
    {96, 4, 4, 24, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},     /* HW 16 */
    {24, 8, 8, 144, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},    /* HW 64 */
    {320, 1, 1, 1280, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},  /* last 1x1, HW 1 */
    {320, 2, 2, 1280, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},  /* last 1x1, HW 4 */
    {13, 3, 5, 7, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},      /* odd sizes, HW 15 */
};

/* bwd_weight of the batched path does not depend on the thread count. */
static void check_pw_threads(int ci, const conv_case *k, int64_t n) {
    et_conv2d_params p = make_params(k, n);
    if (et_conv2d_params_init(&p) != ET_OK) return;
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * p.c, ny = p.n * p.oc * p.oh * p.ow;
    float *x = alloc_f(nx), *dy = alloc_f(ny), *dw1 = alloc_f(nw), *dw2 = alloc_f(nw);
    et_fill_random(x, nx, 5 + ci, -1.0f, 1.0f);
    et_fill_random(dy, ny, 7 + ci, -1.0f, 1.0f);
    size_t b1 = et_f32_conv2d_bwd_weight_ws_bytes(&p, 1), b2 = et_f32_conv2d_bwd_weight_ws_bytes(&p, 2);
    void *w1 = b1 ? malloc(b1) : NULL, *w2 = b2 ? malloc(b2) : NULL;
    et_status s1 = et_f32_conv2d_bwd_weight(&p, dy, x, dw1, w1, b1, 1);
    et_status s2 = et_f32_conv2d_bwd_weight(&p, dy, x, dw2, w2, b2, 2);
    ET_CHECK(s1 == ET_OK && s2 == ET_OK && memcmp(dw1, dw2, (size_t)nw * sizeof(float)) == 0,
             "pw case %d n%lld: bwd_weight th1 != th2", ci, (long long)n);
    free(x); free(dy); free(dw1); free(dw2); free(w1); free(w2);
}

/* The AVX-512 depthwise forward (flat and padded-plane paths: stride along x 1 or 2) adds, per
 * output element, the taps in (ky, kx) order to the bias in one FMA chain: the same bits as
 * this fmaf chain. */
static void check_dw_fma_chain(int ci, const conv_case *k, int64_t n) {
    const et_f32_dwconv2d_variant *row = et_f32_dwconv2d_variants;
    while (row->head.name && row->head.isa != ET_ISA_AVX512) row++;
    et_conv2d_params p = make_params(k, n);
    if (!row->head.name || !et_isa_supported(ET_ISA_AVX512) || et_conv2d_params_init(&p) != ET_OK ||
        !et_conv2d_is_depthwise(&p) || p.stride_w > 2 || p.ow > 1000)
        return;
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * p.kh * p.kw, ny = p.n * p.oc * p.oh * p.ow;
    float *x = alloc_f(nx), *w = alloc_f(nw), *b = alloc_f(p.oc), *y = alloc_f(ny), *want = alloc_f(ny);
    et_fill_random(x, nx, 3 + ci, -1.0f, 1.0f);
    et_fill_random(w, nw, 5 + ci, -1.0f, 1.0f);
    et_fill_random(b, p.oc, 7 + ci, -1.0f, 1.0f);
    const int64_t mult = p.oc / p.c;
    for (int64_t i = 0; i < p.n; i++)
        for (int64_t o = 0; o < p.oc; o++)
            for (int64_t oy = 0; oy < p.oh; oy++)
                for (int64_t ox = 0; ox < p.ow; ox++) {
                    float acc = b[o];
                    for (int64_t ky = 0; ky < p.kh; ky++)
                        for (int64_t kx = 0; kx < p.kw; kx++) {
                            int64_t iy = oy * p.stride_h - p.pad_t + ky * p.dil_h;
                            int64_t ix = ox * p.stride_w - p.pad_l + kx * p.dil_w;
                            if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                            acc = fmaf(w[(o * p.kh + ky) * p.kw + kx],
                                       x[((i * p.c + o / mult) * p.h + iy) * p.w + ix], acc);
                        }
                    want[((i * p.oc + o) * p.oh + oy) * p.ow + ox] = acc;
                }
    for (int th = 1; th <= 2; th++) {
        fill_nan(y, ny);
        et_status st = row->fwd(&p, x, w, b, y, th);
        ET_CHECK(st == ET_OK && memcmp(y, want, (size_t)ny * sizeof(float)) == 0,
                 "case %d n%lld dw fwd__avx512 th%d: not the bits of the FMA chain", ci, (long long)n, th);
    }
    free(x); free(w); free(b); free(y); free(want);
}

/* bwd_weight of narrow first layers (Kg < 32, groups 1: padded transposed columns, read in
 * place) and of transposed-column shapes (Kg >= 64) must keep the bits of this recipe: per image, im2col columns [Kg, P] and one
 * GEMM dw_chunk (+)= dy * col^T (B transposed); images summed in order within each of
 * min(n, 8) fixed chunks, the chunk partials added in chunk order. Every ISA, 1 and 2 threads,
 * byte for byte. The shapes keep one column band per image (small planes). */
static const conv_case narrow_cases[] = {
    /*  c   h   w  oc kh kw sh sw pt pl pb pr dh dw g */
    {1, 28, 28, 20, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},    /* LeNet conv1 */
    {1, 13, 17, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* Kg 9, padding */
    {3, 12, 15, 16, 3, 3, 2, 2, 1, 0, 1, 1, 1, 1, 1},    /* Kg 27, stride 2 */
    {2, 10, 11, 33, 2, 3, 1, 1, 0, 0, 0, 0, 1, 2, 1},    /* Kg 12, dilation, oc 33 */
    {1, 32, 32, 6, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},     /* LeNet-5 conv1 */
    {20, 12, 12, 50, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},   /* LeNet conv2: Kg 500, unpadded colt */
    {16, 11, 10, 8, 2, 4, 2, 1, 0, 0, 0, 0, 2, 1, 1},    /* Kg 128, kw 4 */
};

static void im2col_plain(const et_conv2d_params *p, const float *x, float *col) {
    const int64_t np = p->oh * p->ow;
    for (int64_t ci = 0; ci < p->c; ci++)
        for (int64_t ky = 0; ky < p->kh; ky++)
            for (int64_t kx = 0; kx < p->kw; kx++) {
                float *r = col + ((ci * p->kh + ky) * p->kw + kx) * np;
                for (int64_t oy = 0; oy < p->oh; oy++)
                    for (int64_t ox = 0; ox < p->ow; ox++) {
                        int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                        int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                        r[oy * p->ow + ox] = iy >= 0 && iy < p->h && ix >= 0 && ix < p->w
                                                 ? x[(ci * p->h + iy) * p->w + ix]
                                                 : 0.0f;
                    }
            }
}

static void check_narrow_bits(int ci, const conv_case *k, int64_t n) {
    et_conv2d_params p = make_params(k, n);
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "narrow case %d: params", ci);
        return;
    }
    const int64_t kg = p.c * p.kh * p.kw, np = p.oh * p.ow, nw = p.oc * kg;
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.oc * np;
    float *x = alloc_f(nx), *dy = alloc_f(ny), *col = alloc_f(kg * np);
    float *want = alloc_f(nw * 8), *dw = alloc_f(nw);
    et_fill_random(x, nx, 71 + ci, -1.0f, 1.0f);
    et_fill_random(dy, ny, 73 + ci, -1.0f, 1.0f);
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        const int wc = p.n < 8 ? (int)p.n : 8;
        size_t gb = et_f32_gemm_ws_bytes(p.oc, kg, np, 1);
        void *gws = gb ? malloc(gb) : NULL;
        for (int c = 0; c < wc; c++) {
            int64_t i0, i1;
            et_thread_range(p.n, c, wc, &i0, &i1);
            for (int64_t i = i0; i < i1; i++) {
                im2col_plain(&p, x + i * p.c * p.h * p.w, col);
                et_f32_gemm(0, 1, p.oc, kg, np, 1.0f, dy + i * p.oc * np, np, col, np,
                            i > i0 ? 1.0f : 0.0f, want + c * nw, kg, gws, gb, 1);
            }
        }
        for (int c = 1; c < wc; c++)
            for (int64_t j = 0; j < nw; j++) want[j] += want[c * nw + j];
        free(gws);
        for (int th = 1; th <= 2; th++) {
            size_t wsb = et_f32_conv2d_bwd_weight_ws_bytes(&p, th);
            void *ws = wsb ? malloc(wsb) : NULL;
            fill_nan(dw, nw);
            et_status st = et_f32_conv2d_bwd_weight(&p, dy, x, dw, ws, wsb, th);
            ET_CHECK(st == ET_OK && memcmp(dw, want, (size_t)nw * sizeof(float)) == 0,
                     "narrow case %d n%lld %s th%d: bwd_weight bits differ from the GEMM recipe",
                     ci, (long long)n, et_isa_name(isa), th);
            free(ws);
        }
    }
    et_set_isa(et_cpu_best_isa());
    free(x); free(dy); free(col); free(want); free(dw);
}

/* The forward's and the input gradient's bits are the GEMM recipe's on every SIMD ISA and
 * thread count: per image y_i = et_f32_gemm(w, im2col(x_i)), dx_i = col2im(W^T dy_i),
 * whatever path the convolution takes (the implicit im2col with B rows through a table on
 * AVX-512, col2im per band of GEMM rows, or the column buffer). */
static const conv_case fwd_bits_cases[] = {
    /*  c   h   w  oc kh kw sh sw pt pl pb pr dh dw g */
    {1, 28, 28, 20, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},    /* LeNet conv1: 14 + 6 rows */
    {20, 12, 12, 50, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},   /* LeNet conv2: 3 x 14 + 8 rows */
    {3, 9, 13, 17, 3, 4, 1, 1, 0, 0, 0, 0, 1, 1, 1},     /* 14 + 3 rows, 70 pixels */
    {40, 7, 7, 9, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},      /* Kg 1000: two K blocks */
    {2, 10, 37, 6, 2, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1},     /* 6 rows, 315 pixels */
};

static void check_fwd_bits(int ci, const conv_case *k, int64_t n) {
    et_conv2d_params p = make_params(k, n);
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "fwd bits case %d: params", ci);
        return;
    }
    const int64_t kg = p.c * p.kh * p.kw, np = p.oh * p.ow, nw = p.oc * kg;
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.oc * np;
    float *x = alloc_f(nx), *w = alloc_f(nw), *col = alloc_f(kg * np);
    float *want = alloc_f(ny), *y = alloc_f(ny);
    et_fill_random(x, nx, 81 + ci, -1.0f, 1.0f);
    et_fill_random(w, nw, 83 + ci, -1.0f, 1.0f);
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        size_t gb = et_f32_gemm_ws_bytes(p.oc, np, kg, 1);
        void *gws = gb ? malloc(gb) : NULL;
        for (int64_t i = 0; i < p.n; i++) {
            im2col_plain(&p, x + i * p.c * p.h * p.w, col);
            et_f32_gemm(0, 0, p.oc, np, kg, 1.0f, w, kg, col, np, 0.0f, want + i * p.oc * np, np,
                        gws, gb, 1);
        }
        free(gws);
        for (int th = 1; th <= 3; th++) {
            size_t wsb = et_f32_conv2d_fwd_ws_bytes(&p, th);
            void *ws = wsb ? malloc(wsb) : NULL;
            fill_nan(y, ny);
            et_status st = et_f32_conv2d_fwd(&p, x, w, NULL, y, ws, wsb, th);
            ET_CHECK(st == ET_OK && memcmp(y, want, (size_t)ny * sizeof(float)) == 0,
                     "fwd bits case %d n%lld %s th%d: forward bits differ from the GEMM recipe",
                     ci, (long long)n, et_isa_name(isa), th);
            free(ws);
        }
    }
    /* the input gradient: per image dcol = W^T dy_i (the GEMM), then col2im adding rows in
     * (ci, ky, kx, oy) order onto zeros -- whatever path the convolution takes */
    float *dy = alloc_f(ny), *dxw = alloc_f(nx), *dx = alloc_f(nx);
    et_fill_random(dy, ny, 87 + ci, -1.0f, 1.0f);
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        size_t gb = et_f32_gemm_ws_bytes(kg, np, p.oc, 1);
        void *gws = gb ? malloc(gb) : NULL;
        memset(dxw, 0, (size_t)nx * sizeof(float));
        for (int64_t i = 0; i < p.n; i++) {
            et_f32_gemm(1, 0, kg, np, p.oc, 1.0f, w, kg, dy + i * p.oc * np, np, 0.0f, col, np,
                        gws, gb, 1);
            float *d = dxw + i * p.c * p.h * p.w;
            for (int64_t k = 0; k < kg; k++) {
                const int64_t c0 = k / (p.kh * p.kw), ky = k / p.kw % p.kh, kx = k % p.kw;
                for (int64_t oy = 0; oy < p.oh; oy++)
                    for (int64_t ox = 0; ox < p.ow; ox++)
                        d[(c0 * p.h + oy + ky) * p.w + ox + kx] += col[k * np + oy * p.ow + ox];
            }
        }
        free(gws);
        for (int th = 1; th <= 3; th++) {
            size_t wsb = et_f32_conv2d_bwd_input_ws_bytes(&p, th);
            void *ws = wsb ? malloc(wsb) : NULL;
            fill_nan(dx, nx);
            et_status st = et_f32_conv2d_bwd_input(&p, dy, w, dx, ws, wsb, th);
            ET_CHECK(st == ET_OK && memcmp(dx, dxw, (size_t)nx * sizeof(float)) == 0,
                     "bwd_input bits case %d n%lld %s th%d: bits differ from GEMM + col2im", ci,
                     (long long)n, et_isa_name(isa), th);
            free(ws);
        }
    }
    et_set_isa(et_cpu_best_isa());
    free(x); free(w); free(col); free(want); free(y); free(dy); free(dxw); free(dx);
}

/* The bias gradient's documented order (conv2d.c): per plane a float sum (8 lanes, tail, lanes
 * added in order), planes added in image order in double. The kernel splits the planes over
 * threads in blocks of images (several blocks when n * oc > its buffer, one channel range per
 * chunk when oc is large): the same bits for threads 1, 2, 3. */
static void check_bias_bits(void) {
    static const int64_t shapes[][4] = {{70, 64, 7, 3}, {9, 600, 2, 3}, {5, 3, 1, 1}, {2, 5, 5, 5},
                                        {64, 20, 24, 24}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        et_conv2d_params p;
        memset(&p, 0, sizeof p);
        p.n = shapes[si][0], p.c = p.oc = shapes[si][1], p.h = shapes[si][2], p.w = shapes[si][3];
        p.kh = p.kw = 1, p.stride_h = p.stride_w = p.dil_h = p.dil_w = p.groups = 1;
        ET_CHECK(et_conv2d_params_init(&p) == ET_OK, "bias bits %zu: params", si);
        const int64_t np = p.oh * p.ow, ny = p.n * p.oc * np;
        float *dy = alloc_f(ny), *db = alloc_f(p.oc), *ref = alloc_f(p.oc);
        et_fill_random(dy, ny, 91 + (int)si, -1.0f, 1.0f);
        for (int64_t o = 0; o < p.oc; o++) {
            double total = 0.0;
            for (int64_t i = 0; i < p.n; i++) {
                const float *r = dy + (i * p.oc + o) * np;
                float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0.0f;
                int64_t j = 0;
                for (; j + 8 <= np; j += 8)
                    for (int l = 0; l < 8; l++) acc[l] += r[j + l];
                for (; j < np; j++) t += r[j];
                for (int l = 0; l < 8; l++) t += acc[l];
                total += t;
            }
            ref[o] = (float)total;
        }
        for (int th = 1; th <= 3; th++) {
            fill_nan(db, p.oc);
            et_status st = et_f32_conv2d_bwd_bias(&p, dy, db, th);
            ET_CHECK(st == ET_OK && memcmp(db, ref, (size_t)p.oc * sizeof(float)) == 0,
                     "bias bits %zu th%d: not the documented order's bits", si, th);
        }
        free(dy), free(db), free(ref);
    }
}

void test_conv(void) {
    et_check_variant_table("dwconv2d", et_f32_dwconv2d_variants,
                           sizeof et_f32_dwconv2d_variants[0]);
    check_params();
    check_tiny();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case((int)i, &cases[i], 1);
        check_case((int)i, &cases[i], 3);
        check_dw_fma_chain((int)i, &cases[i], 5);
    }
    for (size_t i = 0; i < sizeof pw_cases / sizeof pw_cases[0]; i++) {
        int ci = 100 + (int)i;
        check_case(ci, &pw_cases[i], 1);
        check_case(ci, &pw_cases[i], 3);
        check_case(ci, &pw_cases[i], 32);
        check_pw_threads(ci, &pw_cases[i], 32);
    }
    for (size_t i = 0; i < sizeof narrow_cases / sizeof narrow_cases[0]; i++) {
        check_narrow_bits((int)i, &narrow_cases[i], 1);
        check_narrow_bits((int)i, &narrow_cases[i], 5);
        check_narrow_bits((int)i, &narrow_cases[i], 19);
    }
    for (size_t i = 0; i < sizeof fwd_bits_cases / sizeof fwd_bits_cases[0]; i++) {
        check_fwd_bits((int)i, &fwd_bits_cases[i], 1);
        check_fwd_bits((int)i, &fwd_bits_cases[i], 3);
    }
    check_bias_bits();
    et_set_isa(et_cpu_best_isa());
}
