/* edgetrain — the pointwise forward without the GEMM (conv2d_pointwise.c) against the GEMM
 * path it replaces, byte for byte: every ISA, fast paths off (the GEMM) and on, 1..3 threads,
 * every epilogue (none, bias, bias + relu6, fused BatchNorm with none / relu / relu6), through
 * et_f32_conv2d_fwd and, with weights packed before, et_f32_conv2d_fwd_packed (the eval
 * program's call). Shapes: MobileNetV2's projections at 224x224 and the places the path
 * stands down (more channels, channels not a multiple of its block, K above one GEMM K block,
 * strides, padding). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "et_test.h"

typedef struct pw_case {
    int64_t n, c, h, w, oc, sh, pad;
} pw_case;

static const pw_case pw_cases[] = {
    /* n    c    h    w  oc sh pad */
    {1, 32, 112, 112, 16, 1, 0}, /* MobileNetV2 features.1 projection */
    {1, 144, 56, 56, 24, 1, 0},  /* features.3 */
    {2, 192, 28, 28, 32, 1, 0},  /* features.6: 784 pixels, a short last unit */
    {3, 5, 7, 5, 8, 1, 0},       /* 35 pixels: one partial vector set */
    {2, 7, 29, 37, 24, 1, 0},    /* 1073 pixels, odd */
    {2, 1, 20, 20, 32, 1, 0},    /* K 1 */
    {1, 768, 9, 9, 16, 1, 0},    /* K = one GEMM K block, the limit */
    {1, 769, 9, 9, 16, 1, 0},    /* two K blocks (GEMM) */
    {2, 16, 20, 20, 40, 1, 0},   /* 40 channels (GEMM) */
    {2, 16, 20, 20, 12, 1, 0},   /* not a multiple of 8 (GEMM) */
    {2, 16, 21, 21, 16, 2, 0},   /* stride 2 (GEMM) */
    {2, 16, 20, 20, 16, 1, 1},   /* padding (GEMM) */
    {2, 4, 10, 10, 8, 1, 0},     /* 8 x 100 x 4 <= 4096: the GEMM's unpacked path (no FMA) */
    {2, 16, 1, 1, 8, 1, 0},      /* one pixel: the GEMM's unpacked path */
};

static void pw_run(const et_conv2d_params *p, int packed, const float *x, const float *w,
                   const float *b, float *y, int th) {
    size_t wsb = et_f32_conv2d_fwd_ws_bytes(p, th);
    void *ws = wsb ? malloc(wsb) : NULL;
    size_t pkb = packed ? et_f32_conv2d_fwd_packed_bytes(p) : 0;
    void *pk = pkb ? malloc(pkb) : NULL;
    et_status st;
    if (pk && et_f32_conv2d_fwd_pack(p, w, pk, pkb, th) == ET_OK)
        st = et_f32_conv2d_fwd_packed(p, x, w, pk, b, y, ws, wsb, th);
    else
        st = et_f32_conv2d_fwd(p, x, w, b, y, ws, wsb, th);
    ET_CHECK(st == ET_OK, "conv pw: status %d", (int)st);
    free(ws);
    free(pk);
}

static void check_pw(int ci, const pw_case *k) {
    et_conv2d_params p = {0};
    p.n = k->n, p.c = k->c, p.h = k->h, p.w = k->w, p.oc = k->oc, p.kh = p.kw = 1;
    p.stride_h = p.stride_w = k->sh, p.dil_h = p.dil_w = 1, p.groups = 1;
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = k->pad;
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "pw case %d: params", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.oc * p.oh * p.ow, nw = p.oc * p.c;
    float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
    float *b = malloc((size_t)p.oc * sizeof(float)), *bn_a = malloc((size_t)p.oc * sizeof(float));
    float *bn_s = malloc((size_t)p.oc * sizeof(float));
    float *want = malloc((size_t)ny * sizeof(float)), *y = malloc((size_t)ny * sizeof(float));
    et_fill_random(x, nx, 501 + ci, -1.0f, 1.0f);
    for (int64_t i = 0; i < nx; i += 5) x[i] = 0.0f; /* relu outputs */
    et_fill_random(w, nw, 503 + ci, -1.0f, 1.0f);
    et_fill_random(b, p.oc, 507 + ci, -1.0f, 1.0f);
    et_fill_random(bn_a, p.oc, 509 + ci, 0.5f, 2.0f);
    et_fill_random(bn_s, p.oc, 511 + ci, -0.5f, 0.5f);
    static const struct { int bias, bn; et_act act; } epis[] = {
        {0, 0, ET_ACT_NONE}, {1, 0, ET_ACT_NONE}, {1, 0, ET_ACT_RELU6},
        {0, 1, ET_ACT_NONE}, {0, 1, ET_ACT_RELU}, {0, 1, ET_ACT_RELU6}};
    for (size_t e = 0; e < sizeof epis / sizeof epis[0]; e++) {
        p.act = epis[e].act;
        p.bn_scale = epis[e].bn ? bn_a : NULL;
        p.bn_shift = epis[e].bn ? bn_s : NULL;
        const float *bb = epis[e].bias ? b : NULL;
        int have = 0;
        for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
            if (!et_isa_supported(isa)) continue;
            et_set_isa(isa);
            for (int fast = 0; fast <= 1; fast++)
                for (int packed = 0; packed <= 1; packed++)
                    for (int th = 1; th <= 3; th++) {
                        et_conv2d_fast_paths_(fast);
                        float *out = have ? y : want;
                        for (int64_t i = 0; i < ny; i++) out[i] = NAN;
                        pw_run(&p, packed, x, w, bb, out, th);
                        if (have)
                            ET_CHECK(memcmp(y, want, (size_t)ny * sizeof(float)) == 0,
                                     "pw case %d epi %d %s fast%d packed%d th%d: bits differ", ci,
                                     (int)e, et_isa_name(isa), fast, packed, th);
                        have = 1;
                    }
        }
    }
    et_conv2d_fast_paths_(1);
    et_set_isa(et_cpu_best_isa());
    free(x); free(w); free(b); free(bn_a); free(bn_s); free(want); free(y);
}

void test_conv_pw(void) {
    for (size_t i = 0; i < sizeof pw_cases / sizeof pw_cases[0]; i++)
        check_pw((int)i, &pw_cases[i]);
}
