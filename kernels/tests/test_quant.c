/* edgetrain — fake quantization and observers (src/quant.c): exact ties round half to even,
 * the straight-through mask, the channel layout, thread-count independence and the observers'
 * min / max, scale and zero point on hand-computed values. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void test_ties_and_mask(void) {
    /* s = 0.25: x * 4 = 0.5, 1.5, -0.5, -1.5, 2.5 (ties), 400, -400 (clamped), NaN */
    const float x[8] = {0.125f, 0.375f, -0.125f, -0.375f, 0.625f, 100.0f, -100.0f, NAN};
    const float want[7] = {0.0f, 0.5f, 0.0f, -0.5f, 0.5f, 1.75f, -2.0f}; /* -0.5 -> -0 + zp 0 = +0 */
    const float s = 0.25f, zp = 0.0f, dy[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    float y[8], dx[8];
    ET_CHECK(et_f32_fake_quant_fwd__ref(1, 1, 8, x, &s, &zp, -8, 7, y, 1) == ET_OK, "fwd");
    ET_CHECK(same_bits(y, want, 7), "ties round half to even: %g %g %g %g %g %g %g", y[0], y[1], y[2], y[3],
             y[4], y[5], y[6]);
    ET_CHECK(isnan(y[7]), "NaN stays NaN, got %g", y[7]);
    ET_CHECK(et_f32_fake_quant_bwd__ref(1, 1, 8, dy, x, &s, &zp, -8, 7, dx, 1) == ET_OK, "bwd");
    const float mask[8] = {1, 1, 1, 1, 1, 0, 0, 0};
    ET_CHECK(same_bits(dx, mask, 8), "mask %g %g %g %g %g %g %g %g", dx[0], dx[1], dx[2], dx[3], dx[4], dx[5],
             dx[6], dx[7]);
    /* zero point 3, range 0..15: x * 4 + 3 */
    const float z3 = 3.0f, x2[3] = {-0.75f, -0.875f, 3.125f}; /* levels 0 (in), -3.5 -> -4 + 3 = -1 (clamped, masked), 12.5 -> 12 + 3 = 15 (in) */
    float y2[3], g2[3];
    ET_CHECK(et_f32_fake_quant_fwd__ref(1, 1, 3, x2, &s, &z3, 0, 15, y2, 1) == ET_OK, "fwd zp");
    ET_CHECK(y2[0] == -0.75f && y2[1] == -0.75f && y2[2] == 3.0f, "zp 3: %g %g %g", y2[0], y2[1], y2[2]);
    ET_CHECK(et_f32_fake_quant_bwd__ref(1, 1, 3, dy, x2, &s, &z3, 0, 15, g2, 1) == ET_OK, "bwd zp");
    ET_CHECK(g2[0] == 1.0f && g2[1] == 0.0f && g2[2] == 1.0f, "zp 3 mask: %g %g %g", g2[0], g2[1], g2[2]);
    ET_CHECK(et_f32_fake_quant_fwd__ref(1, 1, 3, x2, &s, &z3, 5, 5, y2, 1) == ET_ERR_ARG, "qmin == qmax");
}

/* x [outer, c, inner]: channel k of element (o, k, i) uses scale[k]; 1 and 3 threads agree. */
static void test_channels(void) {
    enum { O = 3, C = 5, I = 7, N = O * C * I };
    float x[N], scale[C], zp[C], y1[N], y3[N], dx1[N], dx3[N], dy[N];
    et_fill_random(x, N, 11, -3.0f, 3.0f);
    et_fill_random(dy, N, 12, -1.0f, 1.0f);
    for (int k = 0; k < C; k++) {
        scale[k] = 0.01f + 0.05f * (float)k;
        zp[k] = (float)(k * 20);
    }
    ET_CHECK(et_f32_fake_quant_fwd__ref(O, C, I, x, scale, zp, 0, 63, y1, 1) == ET_OK, "fwd");
    ET_CHECK(et_f32_fake_quant_fwd__ref(O, C, I, x, scale, zp, 0, 63, y3, 3) == ET_OK, "fwd 3 threads");
    ET_CHECK(et_f32_fake_quant_bwd__ref(O, C, I, dy, x, scale, zp, 0, 63, dx1, 1) == ET_OK, "bwd");
    ET_CHECK(et_f32_fake_quant_bwd__ref(O, C, I, dy, x, scale, zp, 0, 63, dx3, 3) == ET_OK, "bwd 3 threads");
    ET_CHECK(same_bits(y1, y3, N) && same_bits(dx1, dx3, N), "thread count changes the result");
    int bad = 0;
    for (int o = 0; o < O; o++)
        for (int k = 0; k < C; k++)
            for (int i = 0; i < I; i++) {
                const int j = (o * C + k) * I + i;
                const float inv = 1.0f / scale[k];
                float q = nearbyintf(x[j] * inv) + zp[k];
                const int in = q >= 0.0f && q <= 63.0f;
                q = q < 0.0f ? 0.0f : (q > 63.0f ? 63.0f : q);
                bad += y1[j] != (q - zp[k]) * scale[k] || dx1[j] != dy[j] * (in ? 1.0f : 0.0f);
            }
    ET_CHECK(bad == 0, "%d elements use the wrong channel's parameters", bad);
}

static void test_observers(void) {
    /* affine per tensor, 0..255: min -1, max 3 -> s = 4/255, zp = round(1 / s) = round(63.75) = 64 */
    float mn = INFINITY, mx = -INFINITY, s = 1.0f, zp = 0.0f;
    const float a[2] = {-1.0f, 3.0f}, b[2] = {-2.0f, 1.0f};
    ET_CHECK(et_f32_quant_observe__ref(1, 1, 2, a, &mn, &mx, &s, &zp, 0, 255, 0, 1, 0.5f, 1) == ET_OK, "ema 1");
    ET_CHECK(mn == -1.0f && mx == 3.0f && s == 4.0f / 255.0f && zp == 64.0f, "first ema: %g %g %g %g", mn, mx,
             s, zp);
    /* ema 0.5: min -1 + 0.5 (-2 + 1) = -1.5, max 3 + 0.5 (1 - 3) = 2, s = 3.5/255, zp = 109 */
    ET_CHECK(et_f32_quant_observe__ref(1, 1, 2, b, &mn, &mx, &s, &zp, 0, 255, 0, 1, 0.5f, 1) == ET_OK, "ema 2");
    ET_CHECK(mn == -1.5f && mx == 2.0f && s == 3.5f / 255.0f && zp == 109.0f, "second ema: %g %g %g %g", mn,
             mx, s, zp);
    /* minmax keeps the extremes: -2, 3 */
    mn = INFINITY; mx = -INFINITY;
    et_f32_quant_observe__ref(1, 1, 2, a, &mn, &mx, &s, &zp, 0, 255, 0, 0, 0.01f, 1);
    et_f32_quant_observe__ref(1, 1, 2, b, &mn, &mx, &s, &zp, 0, 255, 0, 0, 0.01f, 1);
    ET_CHECK(mn == -2.0f && mx == 3.0f && s == 5.0f / 255.0f && zp == 102.0f, "minmax: %g %g %g %g", mn, mx, s,
             zp);
    /* symmetric per channel (axis 0 of [2, 2]), -127..127: s = max|x| / 127, zp = 0; all-positive
     * data still includes 0 in the range; an all-zero channel gets eps */
    const float w[6] = {-2.0f, 1.0f, 0.5f, 4.0f, 0.0f, 0.0f};
    float cmn[3] = {INFINITY, INFINITY, INFINITY}, cmx[3] = {-INFINITY, -INFINITY, -INFINITY}, cs[3], cz[3];
    ET_CHECK(et_f32_quant_observe__ref(1, 3, 2, w, cmn, cmx, cs, cz, -127, 127, 1, 0, 0.01f, 2) == ET_OK, "sym");
    ET_CHECK(cs[0] == 2.0f / 127.0f && cs[1] == 4.0f / 127.0f && cs[2] == FLT_EPSILON && cz[0] == 0.0f &&
             cz[1] == 0.0f, "symmetric: %g %g %g %g %g", cs[0], cs[1], cs[2], cz[0], cz[1]);
    ET_CHECK(cmn[1] == 0.5f && cmx[1] == 4.0f, "channel 1 min/max %g %g", cmn[1], cmx[1]);
}

void test_quant(void) {
    test_ties_and_mask();
    test_channels();
    test_observers();
}
