/* edgetrain — conv2d forward with weights packed before the call (et_f32_conv2d_fwd_pack /
 * _packed, the eval cache's kernels): the same bits as et_f32_conv2d_fwd on every ISA and
 * thread count, packed bytes that do not depend on the thread count, and a pack made for
 * another ISA (or another shape) ignored rather than misread. */
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "et_test.h"

typedef struct pk_case {
    int64_t n, c, h, w, oc, kh, kw, s, pad, groups;
} pk_case;

static const pk_case pk_cases[] = {
    /*  n    c   h   w    oc kh kw s pad g */
    {3, 24, 9, 7, 40, 1, 1, 1, 0, 1},      /* pointwise NCHW path */
    {32, 320, 1, 1, 1280, 1, 1, 1, 0, 1},  /* MobileNetV2's last 1x1 at 28x28 */
    {2, 13, 5, 3, 37, 1, 1, 1, 0, 1},      /* odd sizes, M not a multiple of MR */
    {2, 16, 11, 10, 24, 3, 3, 1, 1, 1},    /* im2col, one group */
    {3, 12, 9, 9, 18, 3, 3, 2, 1, 3},      /* im2col, groups 3, stride 2 */
    {2, 20, 8, 8, 30, 1, 1, 2, 0, 1},      /* strided 1x1: im2col */
    {2, 3, 4, 4, 2, 1, 1, 1, 0, 1},        /* a small product: nothing packed */
    {2, 8, 6, 6, 8, 3, 3, 1, 1, 8},        /* depthwise: nothing packed */
};

/* A zeroed 64-byte aligned buffer (the packed layout puts the panels on the next cache line
 * after its header, so equal bytes need equally aligned buffers, as the eval cache's are). */
static void *alloc64(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

static et_conv2d_params pk_params(const pk_case *k) {
    et_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.n = k->n; p.c = k->c; p.h = k->h; p.w = k->w; p.oc = k->oc; p.kh = k->kh; p.kw = k->kw;
    p.stride_h = p.stride_w = k->s;
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = k->pad;
    p.dil_h = p.dil_w = 1; p.groups = k->groups;
    p.act = ET_ACT_RELU6;
    return p;
}

/* y of et_f32_conv2d_fwd (pk NULL) or et_f32_conv2d_fwd_packed with pk. */
static et_status run_fwd(const et_conv2d_params *p, const float *x, const float *w, const void *pk,
                         int packed, const float *b, float *y, int nth) {
    const size_t wb = et_f32_conv2d_fwd_ws_bytes(p, nth);
    void *ws = wb ? malloc(wb) : NULL;
    et_status st = packed ? et_f32_conv2d_fwd_packed(p, x, w, pk, b, y, ws, wb, nth)
                          : et_f32_conv2d_fwd(p, x, w, b, y, ws, wb, nth);
    free(ws);
    return st;
}

static void check_pk_case(int ci, const pk_case *k) {
    et_conv2d_params p = pk_params(k);
    if (et_conv2d_params_init(&p) != ET_OK) {
        ET_CHECK(0, "case %d: params", ci);
        return;
    }
    const int64_t nx = p.n * p.c * p.h * p.w, nw = p.oc * (p.c / p.groups) * p.kh * p.kw;
    const int64_t ny = p.n * p.oc * p.oh * p.ow;
    float *x = (float *)malloc((size_t)nx * sizeof(float)), *w = (float *)malloc((size_t)nw * sizeof(float));
    float *b = (float *)malloc((size_t)p.oc * sizeof(float));
    float *want = (float *)malloc((size_t)ny * sizeof(float)), *got = (float *)malloc((size_t)ny * sizeof(float));
    float *bn_a = (float *)malloc((size_t)p.oc * sizeof(float)), *bn_s = (float *)malloc((size_t)p.oc * sizeof(float));
    et_fill_random(x, nx, 11 + ci, -1.0f, 1.0f);
    et_fill_random(w, nw, 13 + ci, -0.5f, 0.5f);
    et_fill_random(b, p.oc, 17 + ci, -0.5f, 0.5f);
    et_fill_random(bn_a, p.oc, 19 + ci, 0.5f, 1.5f);
    et_fill_random(bn_s, p.oc, 23 + ci, -0.5f, 0.5f);
    p.bn_scale = bn_a, p.bn_shift = bn_s;
    const et_isa isas[] = {ET_ISA_REF, ET_ISA_AVX2, ET_ISA_AVX512, ET_ISA_NEON};
    void *other = NULL; /* a pack made under the previous ISA that packs */
    size_t other_bytes = 0;
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        if (!et_isa_supported(isas[ii]) || et_set_isa(isas[ii]) != ET_OK) continue;
        const char *isa = et_isa_name(isas[ii]);
        const size_t bytes = et_f32_conv2d_fwd_packed_bytes(&p);
        ET_CHECK(!bytes || !et_conv2d_is_depthwise(&p),
                 "case %d %s: %zu packed bytes for a forward that packs nothing", ci, isa, bytes);
        void *pk1 = bytes ? alloc64(bytes) : NULL, *pk2 = bytes ? alloc64(bytes) : NULL;
        if (bytes) {
            ET_CHECK(et_f32_conv2d_fwd_pack(&p, w, pk1, bytes, 1) == ET_OK &&
                         et_f32_conv2d_fwd_pack(&p, w, pk2, bytes, 2) == ET_OK,
                     "case %d %s: pack", ci, isa);
            size_t at = 0;
            while (at < bytes && ((const char *)pk1)[at] == ((const char *)pk2)[at]) at++;
            ET_CHECK(at == bytes, "case %d %s: packed bytes differ for 1 and 2 threads (byte %zu of %zu)",
                     ci, isa, at, bytes);
            ET_CHECK(et_f32_conv2d_fwd_pack(&p, w, pk1, bytes - 1, 1) == ET_ERR_WORKSPACE,
                     "case %d %s: a short pack buffer is refused", ci, isa);
        }
        for (int nth = 1; nth <= 3; nth++) {
            ET_CHECK(run_fwd(&p, x, w, NULL, 0, b, want, nth) == ET_OK, "case %d %s: fwd", ci, isa);
            memset(got, 0xff, (size_t)ny * sizeof(float));
            ET_CHECK(run_fwd(&p, x, w, pk1, 1, b, got, nth) == ET_OK &&
                         memcmp(got, want, (size_t)ny * sizeof(float)) == 0,
                     "case %d %s th%d: fwd_packed != fwd", ci, isa, nth);
            /* NULL, and a pack made under another ISA: packs w itself, the same bits */
            ET_CHECK(run_fwd(&p, x, w, NULL, 1, b, got, nth) == ET_OK &&
                         memcmp(got, want, (size_t)ny * sizeof(float)) == 0,
                     "case %d %s th%d: fwd_packed(NULL) != fwd", ci, isa, nth);
            if (other) {
                memset(got, 0xff, (size_t)ny * sizeof(float));
                ET_CHECK(run_fwd(&p, x, w, other, 1, b, got, nth) == ET_OK &&
                             memcmp(got, want, (size_t)ny * sizeof(float)) == 0,
                         "case %d %s th%d: a pack of another ISA was used", ci, isa, nth);
            }
        }
        if (bytes) {
            free(other);
            other = pk1, other_bytes = bytes;
            pk1 = NULL;
        }
        free(pk1);
        free(pk2);
    }
    (void)other_bytes;
    /* a pack of another shape (other oc) is not read as this one's */
    et_set_isa(et_cpu_best_isa());
    if (et_f32_conv2d_fwd_packed_bytes(&p) && p.groups == 1 && p.oc > 1) {
        et_conv2d_params q = p;
        q.oc = p.oc - 1;
        const size_t qb = et_f32_conv2d_fwd_packed_bytes(&q);
        void *pq = qb ? alloc64(qb + et_f32_conv2d_fwd_packed_bytes(&p)) : NULL;
        if (pq && et_f32_conv2d_fwd_pack(&q, w, pq, qb, 1) == ET_OK) {
            ET_CHECK(run_fwd(&p, x, w, NULL, 0, b, want, 2) == ET_OK &&
                         run_fwd(&p, x, w, pq, 1, b, got, 2) == ET_OK &&
                         memcmp(got, want, (size_t)ny * sizeof(float)) == 0,
                     "case %d: a pack of another shape was used", ci);
        }
        free(pq);
    }
    free(other);
    free(x); free(w); free(b); free(want); free(got); free(bn_a); free(bn_s);
}

/* A wide 1x1 layer (MobileNetV2's last, 320 -> 1280 at 32x32: 1.6 MiB of packed weights): a
 * forward or input gradient without a cache packs the weights per row task, so its workspace
 * is below the packed weights on every ISA and thread count (it held them and more: the
 * largest workspace of a MobileNetV2 training step), and under half of them at 1 thread. */
static void check_wide_ws(void) {
    et_conv2d_params p = pk_params(&pk_cases[1]);
    if (et_conv2d_params_init(&p) != ET_OK) return;
    const et_isa isas[] = {ET_ISA_AVX2, ET_ISA_AVX512, ET_ISA_NEON};
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        if (!et_isa_supported(isas[ii]) || et_set_isa(isas[ii]) != ET_OK) continue;
        const size_t packed = et_f32_conv2d_fwd_packed_bytes(&p);
        for (int nth = 1; nth <= 3; nth++)
            ET_CHECK(packed > 0 && (nth == 1 ? 2 : 1) * et_f32_conv2d_fwd_ws_bytes(&p, nth) < packed &&
                         (nth == 1 ? 2 : 1) * et_f32_conv2d_bwd_input_ws_bytes(&p, nth) < packed,
                     "%s th%d: wide 1x1 workspace %zu / %zu for %zu packed bytes",
                     et_isa_name(isas[ii]), nth, et_f32_conv2d_fwd_ws_bytes(&p, nth),
                     et_f32_conv2d_bwd_input_ws_bytes(&p, nth), packed);
    }
}

void test_conv_packed(void) {
    for (size_t i = 0; i < sizeof pk_cases / sizeof pk_cases[0]; i++) check_pk_case((int)i, &pk_cases[i]);
    check_wide_ws();
    et_set_isa(et_cpu_best_isa());
}
