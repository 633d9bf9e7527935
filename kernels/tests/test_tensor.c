/* edgetrain — tensor copy kernels (tensor.c): concat, slice, transpose, pad, gather.
 * Forwards against direct index arithmetic; backwards by the adjoint identity
 * <fwd(x), dy> = <x, bwd(dy)> (pad with value 0); results bitwise identical for 1 and 3
 * threads; bad arguments and out-of-range indices return ET_ERR_ARG. Awkward sizes: odd,
 * size-1 dims, steps > 1. */
#include <stdlib.h>
#include <string.h>

#include "et_test.h"
#include "tensor_internal.h"

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static int adjoint_ok(double lhs, double rhs) { return fabs(lhs - rhs) <= 1e-4 * (1.0 + fabs(rhs)); }

static void test_concat(void) {
    /* [3, len_k, 5] along axis 1, len = 2, 1, 4 */
    const int64_t outer = 3, inner = 5, len[3] = {2, 1, 4};
    float a[30], b[15], c[60], y[105], y3[105];
    et_fill_random(a, 30, 1, -1, 1);
    et_fill_random(b, 15, 2, -1, 1);
    et_fill_random(c, 60, 3, -1, 1);
    const float *x[3] = {a, b, c};
    ET_CHECK(et_f32_concat__ref(3, x, len, outer, inner, y, 1) == ET_OK, "concat status");
    int ok = 1;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < 7; j++)
            for (int64_t i = 0; i < inner; i++) {
                int k = j < 2 ? 0 : j < 3 ? 1 : 2;
                int64_t jj = j - (k == 0 ? 0 : k == 1 ? 2 : 3);
                ok &= y[(o * 7 + j) * inner + i] == x[k][(o * len[k] + jj) * inner + i];
            }
    ET_CHECK(ok, "concat values");
    et_f32_concat__ref(3, x, len, outer, inner, y3, 3);
    ET_CHECK(memcmp(y, y3, sizeof y) == 0, "concat thread count");
    const int64_t bad[3] = {2, -1, 4};
    ET_CHECK(et_f32_concat__ref(3, x, bad, outer, inner, y, 1) == ET_ERR_ARG, "negative length");
}

static void test_slice(void) {
    /* [2, 9, 3] -> start 1, step 3, count 3 (1, 4, 7) */
    const int64_t outer = 2, dim = 9, inner = 3, start = 1, step = 3, count = 3;
    float x[54], y[18], dy[18], dx[54], dx3[54];
    et_fill_random(x, 54, 4, -1, 1);
    et_fill_random(dy, 18, 5, -1, 1);
    ET_CHECK(et_f32_slice_fwd__ref(outer, dim, inner, start, step, count, x, y, 2) == ET_OK, "slice status");
    int ok = 1;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < count; j++)
            for (int64_t i = 0; i < inner; i++)
                ok &= y[(o * count + j) * inner + i] == x[(o * dim + start + j * step) * inner + i];
    ET_CHECK(ok, "slice values");
    et_f32_slice_bwd__ref(outer, dim, inner, start, step, count, dy, dx, 1);
    et_f32_slice_bwd__ref(outer, dim, inner, start, step, count, dy, dx3, 3);
    ET_CHECK(adjoint_ok(dot(y, dy, 18), dot(x, dx, 54)), "slice adjoint");
    ET_CHECK(memcmp(dx, dx3, sizeof dx) == 0, "slice_bwd thread count");
    ET_CHECK(et_f32_slice_fwd__ref(outer, dim, inner, 1, 3, 4, x, y, 1) == ET_ERR_ARG, "slice past the end");
    ET_CHECK(et_f32_slice_fwd__ref(outer, dim, inner, 1, 0, 1, x, y, 1) == ET_ERR_ARG, "step 0");
}

static void test_transpose(void) {
    /* [3, 1, 4, 5] with perm (2, 0, 3, 1) -> [4, 3, 5, 1] */
    const int64_t xs[4] = {3, 1, 4, 5};
    const int perm[4] = {2, 0, 3, 1}, dup[4] = {2, 0, 2, 1};
    float x[60], y[60], y3[60];
    et_fill_random(x, 60, 6, -1, 1);
    ET_CHECK(et_f32_transpose__ref(4, xs, perm, x, y, 1) == ET_OK, "transpose status");
    int ok = 1;
    for (int64_t a = 0; a < 3; a++)
        for (int64_t c = 0; c < 4; c++)
            for (int64_t d = 0; d < 5; d++)
                ok &= y[(c * 3 + a) * 5 + d] == x[(a * 4 + c) * 5 + d];
    ET_CHECK(ok, "transpose values");
    et_f32_transpose__ref(4, xs, perm, x, y3, 3);
    ET_CHECK(memcmp(y, y3, sizeof y) == 0, "transpose thread count");
    ET_CHECK(et_f32_transpose__ref(4, xs, dup, x, y, 1) == ET_ERR_ARG, "repeated dim");
}

/* x index read by padded position j (-1: outside), written independently of tensor.c */
static int64_t pad_ref_src(et_pad_mode m, int64_t j, int64_t before, int64_t n) {
    int64_t i = j - before;
    if (m == ET_PAD_CONSTANT) return i >= 0 && i < n ? i : -1;
    if (m == ET_PAD_REPLICATE) return i < 0 ? 0 : i >= n ? n - 1 : i;
    int64_t r = i < 0 ? -i : i;
    return r >= n ? 2 * (n - 1) - r : r;
}

static void test_pad_mode(et_pad_mode mode) {
    /* [2, 5, 4, 3] padded in dims 1..3 (dim 0 unpadded) */
    const int64_t xs[4] = {2, 5, 4, 3}, before[4] = {0, 2, 1, 2}, after[4] = {0, 3, 3, 1};
    const int64_t ys[4] = {2, 10, 8, 6}, nx = 120, ny = 960;
    float x[120], y[960], dy[960], dx[120], dx3[120];
    et_fill_random(x, nx, 7 + mode, -1, 1);
    et_fill_random(dy, ny, 8 + mode, -1, 1);
    ET_CHECK(et_f32_pad_fwd__ref(4, xs, before, after, mode, 0.0f, x, y, 2) == ET_OK, "pad status");
    int ok = 1;
    for (int64_t e = 0; e < ny; e++) {
        int64_t rest = e, off = 0, st = 1, inside = 1;
        for (int d = 3; d >= 0; d--) {
            int64_t s = pad_ref_src(mode, rest % ys[d], before[d], xs[d]);
            rest /= ys[d];
            if (s < 0) inside = 0;
            off += s * st;
            st *= xs[d];
        }
        ok &= y[e] == (inside ? x[off] : 0.0f);
    }
    ET_CHECK(ok, "pad mode %d values", (int)mode);
    et_f32_pad_bwd__ref(4, xs, before, after, mode, dy, dx, 1);
    et_f32_pad_bwd__ref(4, xs, before, after, mode, dy, dx3, 3);
    ET_CHECK(adjoint_ok(dot(y, dy, ny), dot(x, dx, nx)), "pad mode %d adjoint", (int)mode);
    ET_CHECK(memcmp(dx, dx3, sizeof dx) == 0, "pad_bwd mode %d thread count", (int)mode);
}

static void test_pad(void) {
    test_pad_mode(ET_PAD_CONSTANT);
    test_pad_mode(ET_PAD_REFLECT);
    test_pad_mode(ET_PAD_REPLICATE);
    const int64_t xs[2] = {2, 3}, before[2] = {0, 3}, after[2] = {0, 0};
    float x[6] = {0}, y[12];
    ET_CHECK(et_f32_pad_fwd__ref(2, xs, before, after, ET_PAD_REFLECT, 0.0f, x, y, 1) == ET_ERR_ARG,
             "reflect pad >= dim");
}

static void test_gather(void) {
    /* torch.gather along axis 1: x [3, 4, 2], index [2, 6, 2] (smaller off the axis) */
    const int64_t xs[3] = {3, 4, 2}, is[3] = {2, 6, 2}, ls[1] = {5};
    int32_t index[24], sel[5] = {3, 0, 3, 3, 1};
    float x[24], y[24], dy[24], dx[24], dx3[24], ys[30], dys[30];
    for (int k = 0; k < 24; k++) index[k] = (int32_t)((k * 7 + 3) % 4);
    et_fill_random(x, 24, 9, -1, 1);
    et_fill_random(dy, 24, 10, -1, 1);
    ET_CHECK(et_f32_gather_fwd__ref(3, xs, is, 1, 0, x, index, y, 2) == ET_OK, "gather status");
    int ok = 1;
    for (int64_t a = 0; a < 2; a++)
        for (int64_t j = 0; j < 6; j++)
            for (int64_t c = 0; c < 2; c++) {
                int64_t at = (a * 6 + j) * 2 + c;
                ok &= y[at] == x[(a * 4 + index[at]) * 2 + c];
            }
    ET_CHECK(ok, "gather values");
    et_f32_gather_bwd__ref(3, xs, is, 1, 0, dy, index, dx, 1);
    et_f32_gather_bwd__ref(3, xs, is, 1, 0, dy, index, dx3, 3);
    ET_CHECK(adjoint_ok(dot(y, dy, 24), dot(x, dx, 24)), "gather adjoint");
    ET_CHECK(memcmp(dx, dx3, sizeof dx) == 0, "gather_bwd thread count");
    /* index_select along axis 1 with repeats: y [3, 5, 2] */
    et_fill_random(dys, 30, 11, -1, 1);
    ET_CHECK(et_f32_gather_fwd__ref(3, xs, ls, 1, 1, x, sel, ys, 1) == ET_OK, "index_select status");
    ok = 1;
    for (int64_t a = 0; a < 3; a++)
        for (int64_t j = 0; j < 5; j++)
            for (int64_t c = 0; c < 2; c++) ok &= ys[(a * 5 + j) * 2 + c] == x[(a * 4 + sel[j]) * 2 + c];
    ET_CHECK(ok, "index_select values");
    et_f32_gather_bwd__ref(3, xs, ls, 1, 1, dys, sel, dx, 2);
    ET_CHECK(adjoint_ok(dot(ys, dys, 30), dot(x, dx, 24)), "index_select adjoint");
    sel[2] = 4;
    ET_CHECK(et_f32_gather_fwd__ref(3, xs, ls, 1, 1, x, sel, ys, 1) == ET_ERR_ARG, "index >= dim");
    sel[2] = -1;
    ET_CHECK(et_f32_gather_bwd__ref(3, xs, ls, 1, 1, dys, sel, dx, 1) == ET_ERR_ARG, "negative index");
}

void test_tensor(void) {
    test_concat();
    test_slice();
    test_transpose();
    test_pad();
    test_gather();
}
