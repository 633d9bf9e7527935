/* edgetrain — conv2d's fused eval BatchNorm (+ relu / relu6) epilogue (et_conv_epilogue_):
 * under every ISA and 1 / 2 threads, et_f32_conv2d_fwd with bn_scale / bn_shift must give the
 * bits of the separate ops conv2d (act none) -> et_f32_batchnorm_infer_fwd -> et_f32_act_fwd,
 * on every forward path: im2col, batched pointwise (small and large planes), grouped,
 * depthwise (multiplier 1 and 2, small planes), with and without bias. */
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "et_test.h"

typedef struct cbn_case {
    int64_t n, c, h, w, oc, k, s, pad, groups;
} cbn_case;

static const cbn_case cbn_cases[] = {
    /* n  c   h   w  oc  k  s pad g */
    {3, 5, 9, 11, 7, 3, 1, 1, 1},     /* im2col */
    {2, 4, 13, 9, 6, 3, 2, 1, 2},     /* grouped, stride 2 */
    {3, 6, 5, 7, 9, 1, 1, 0, 1},      /* batched pointwise, small planes (per-row epilogue) */
    {2, 5, 17, 19, 4, 1, 1, 0, 1},    /* batched pointwise, planes >= 256 (per image) */
    {4, 7, 1, 1, 5, 1, 1, 0, 1},      /* pointwise on 1x1 maps */
    {3, 19, 8, 8, 19, 3, 1, 1, 19},   /* depthwise, partial channel units */
    {2, 9, 15, 13, 9, 3, 2, 1, 9},    /* depthwise stride 2 */
    {2, 3, 7, 9, 6, 3, 1, 1, 3},      /* depthwise multiplier 2 */
    {5, 17, 2, 2, 17, 3, 1, 1, 17},   /* depthwise on 2x2 planes */
};

static const et_act cbn_acts[] = {ET_ACT_NONE, ET_ACT_RELU, ET_ACT_RELU6};

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* conv (act none) -> batchnorm_infer -> act, as an eval program without the fusion runs them. */
static et_status separate_ops(const et_conv2d_params *fused, const float *x, const float *w,
                              const float *b, const float *bn[4], float eps, float *y, void *ws,
                              size_t ws_bytes, int th) {
    et_conv2d_params p = *fused;
    p.act = ET_ACT_NONE;
    p.bn_scale = p.bn_shift = NULL;
    et_status st = et_f32_conv2d_fwd(&p, x, w, b, y, ws, ws_bytes, th);
    if (st != ET_OK) return st;
    st = et_f32_batchnorm_infer_fwd(p.n, p.oc, p.oh * p.ow, y, bn[0], bn[1], bn[2], bn[3], eps, y, th);
    if (st != ET_OK || fused->act == ET_ACT_NONE) return st;
    return et_f32_act_fwd(fused->act, 0.0f, p.n * p.oc * p.oh * p.ow, y, y, th);
}

static void check_cbn_case(int ci, const cbn_case *k) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = k->n; p.c = k->c; p.h = k->h; p.w = k->w; p.oc = k->oc; p.kh = p.kw = k->k;
    p.stride_h = p.stride_w = k->s; p.pad_t = p.pad_l = p.pad_b = p.pad_r = k->pad;
    p.dil_h = p.dil_w = 1; p.groups = k->groups;
    ET_CHECK(et_conv2d_params_init(&p) == ET_OK, "case %d: params", ci);
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * (p.c / p.groups) * p.kh * p.kw;
    const int64_t ny = p.n * p.oc * p.oh * p.ow;
    float *x = malloc((size_t)nx * 4), *w = malloc((size_t)nw * 4), *b = malloc((size_t)p.oc * 4);
    float *y0 = malloc((size_t)ny * 4), *y1 = malloc((size_t)ny * 4);
    float *bnv[4], *scale = malloc((size_t)p.oc * 4), *shift = malloc((size_t)p.oc * 4);
    for (int j = 0; j < 4; j++) bnv[j] = malloc((size_t)p.oc * 4);
    et_fill_random(x, nx, 300 + ci, -1.0f, 1.0f);
    et_fill_random(w, nw, 400 + ci, -1.0f, 1.0f);
    et_fill_random(b, p.oc, 500 + ci, -0.5f, 0.5f);
    et_fill_random(bnv[0], p.oc, 600 + ci, 0.5f, 4.0f);   /* gamma: pushes values past 6 */
    et_fill_random(bnv[1], p.oc, 700 + ci, -1.0f, 1.0f);  /* beta */
    et_fill_random(bnv[2], p.oc, 800 + ci, -0.5f, 0.5f);  /* running mean */
    et_fill_random(bnv[3], p.oc, 900 + ci, 0.1f, 2.0f);   /* running var */
    const float eps = 1e-5f;
    const float *bn[4] = {bnv[0], bnv[1], bnv[2], bnv[3]};
    for (int64_t o = 0; o < p.oc; o++)
        et_f32_bn_infer_factor(bn[0], bn[1], bn[2], bn[3], eps, o, &scale[o], &shift[o]);
    const size_t ws_bytes = et_f32_conv2d_fwd_ws_bytes(&p, 2);
    void *ws = ws_bytes ? malloc(ws_bytes) : NULL;
    for (et_isa isa = ET_ISA_REF; isa < ET_ISA_COUNT_; isa++) {
        if (!et_isa_supported(isa)) continue;
        et_set_isa(isa);
        for (int th = 1; th <= 2; th++)
            for (int with_bias = 0; with_bias <= 1; with_bias++)
                for (size_t a = 0; a < sizeof cbn_acts / sizeof cbn_acts[0]; a++) {
                    et_conv2d_params f = p;
                    f.act = cbn_acts[a];
                    f.bn_scale = scale, f.bn_shift = shift;
                    const float *bb = with_bias ? b : NULL;
                    et_status s0 = separate_ops(&f, x, w, bb, bn, eps, y0, ws, ws_bytes, th);
                    et_status s1 = et_f32_conv2d_fwd(&f, x, w, bb, y1, ws, ws_bytes, th);
                    ET_CHECK(s0 == ET_OK && s1 == ET_OK && same_bits(y0, y1, ny),
                             "conv+bn case %d isa %s th%d bias %d act %d: fused != separate ops", ci,
                             et_isa_name(isa), th, with_bias, (int)f.act);
                    if (isa == ET_ISA_REF && th == 1) { /* the __ref oracle applies the same epilogue */
                        et_f32_conv2d_fwd__ref(&f, x, w, bb, y1);
                        ET_CHECK(et_allclose(y1, y0, ny, 1e-4f, 1e-4f, "conv+bn __ref"),
                                 "conv+bn case %d act %d: __ref oracle differs", ci, (int)f.act);
                    }
                }
    }
    et_set_isa(et_cpu_best_isa());
    /* bn_scale without bn_shift is a bad argument */
    et_conv2d_params bad = p;
    bad.bn_scale = scale;
    ET_CHECK(et_conv2d_params_init(&bad) == ET_ERR_ARG, "conv+bn: bn_scale alone accepted");
    free(ws); free(x); free(w); free(b); free(y0); free(y1); free(scale); free(shift);
    for (int j = 0; j < 4; j++) free(bnv[j]);
}

void test_conv_bn(void) {
    for (size_t i = 0; i < sizeof cbn_cases / sizeof cbn_cases[0]; i++)
        check_cbn_case((int)i, &cbn_cases[i]);
}
