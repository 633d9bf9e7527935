/* edgetrain — 2-D max / average pooling and global average pooling, fp32 NCHW.
 *
 * PyTorch semantics throughout (ATen's CPU max / avg pool kernels):
 *  - output size floor or ceil((h + 2*pad - dil*(k-1) - 1) / stride) + 1; in ceil mode the
 *    last window must start inside the input or the left padding.
 *  - max pool: padded cells are -inf; a cell replaces the running max if `v > max || isnan(v)`
 *    (first maximum wins, the last NaN wins); the index starts at the first valid cell of the
 *    window. The backward recomputes that index from x.
 *  - avg pool: divisor = window clipped to the padded bounds [-pad, h + pad) when
 *    count_include_pad, else the number of input cells in the window.
 * Every op runs one (n, c) plane per iteration of a static parallel loop, so results do not
 * depend on the thread count. Backward kernels overwrite dx.
 */
#include <math.h>
#include <string.h>

#include "edgetrain/et_kernels.h"

/* floor(a / b) for b > 0. */
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t dil, int ceil_mode) {
    int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
    int64_t out = floor_div(num, s) + 1;
    if (ceil_mode && (out - 1) * s >= in + pad) out--;
    return out;
}

et_status et_pool2d_params_init(et_pool2d_params *p) {
    if (!p) return ET_ERR_ARG;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->kh <= 0 || p->kw <= 0) return ET_ERR_ARG;
    if (p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1) return ET_ERR_ARG;
    if (p->pad_h < 0 || p->pad_w < 0 || p->pad_h > p->kh / 2 || p->pad_w > p->kw / 2) return ET_ERR_ARG;
    p->oh = pool_out(p->h, p->kh, p->stride_h, p->pad_h, p->dil_h, p->ceil_mode);
    p->ow = pool_out(p->w, p->kw, p->stride_w, p->pad_w, p->dil_w, p->ceil_mode);
    if (p->oh < 1 || p->ow < 1) return ET_ERR_ARG;
    return ET_OK;
}

static int params_ok(const et_pool2d_params *p) {
    if (!p) return 0;
    et_pool2d_params q = *p;
    return et_pool2d_params_init(&q) == ET_OK && q.oh == p->oh && q.ow == p->ow;
}

/* ---- max pool -------------------------------------------------------------------------- */
/* First valid tap of a window starting at `start` with dilation d: k0 (or k if none). */
static int64_t first_tap(int64_t start, int64_t d, int64_t k) {
    if (start >= 0) return 0;
    int64_t k0 = (-start + d - 1) / d;
    return k0 < k ? k0 : k;
}

/* Index (in the plane) of the window maximum, or -1 for a window without input cells. */
static inline int64_t max_index(const et_pool2d_params *p, const float *xp, int64_t oy, int64_t ox,
                                float *maxval) {
    const int64_t ys = oy * p->stride_h - p->pad_h, xs = ox * p->stride_w - p->pad_w;
    const int64_t ky0 = first_tap(ys, p->dil_h, p->kh), kx0 = first_tap(xs, p->dil_w, p->kw);
    float best = -INFINITY;
    int64_t idx = -1;
    if (ky0 < p->kh && kx0 < p->kw && ys + ky0 * p->dil_h < p->h && xs + kx0 * p->dil_w < p->w)
        idx = (ys + ky0 * p->dil_h) * p->w + xs + kx0 * p->dil_w;
    for (int64_t ky = ky0; ky < p->kh; ky++) {
        int64_t iy = ys + ky * p->dil_h;
        if (iy >= p->h) break;
        const float *row = xp + iy * p->w;
        for (int64_t kx = kx0; kx < p->kw; kx++) {
            int64_t ix = xs + kx * p->dil_w;
            if (ix >= p->w) break;
            float v = row[ix];
            if (v > best || isnan(v)) {
                best = v;
                idx = iy * p->w + ix;
            }
        }
    }
    *maxval = best;
    return idx;
}

/* The common 2x2 / stride 2 / no padding pool with every window inside the input: the same
 * scan order and NaN rule as max_index, without bounds checks (vectorisable). */
static int is_k2s2(const et_pool2d_params *p) {
    return p->kh == 2 && p->kw == 2 && p->stride_h == 2 && p->stride_w == 2 && p->pad_h == 0 &&
           p->pad_w == 0 && p->dil_h == 1 && p->dil_w == 1 && 2 * p->oh <= p->h && 2 * p->ow <= p->w;
}

/* Running max step of max_index: v replaces m if v > m or v is NaN. */
#define POOL_TAKES(v, m) ((v) > (m) || (v) != (v))

static void maxpool_fwd_plane_k2s2(const float *ET_RESTRICT xp, float *ET_RESTRICT yp, int64_t w,
                                   int64_t oh, int64_t ow) {
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        float *yr = yp + oy * ow;
        for (int64_t ox = 0; ox < ow; ox++) {
            float m = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
            m = POOL_TAKES(b, m) ? b : m;
            m = POOL_TAKES(c, m) ? c : m;
            m = POOL_TAKES(d, m) ? d : m;
            yr[ox] = m;
        }
    }
}

static void maxpool_bwd_plane_k2s2(const float *ET_RESTRICT xp, const float *ET_RESTRICT gp,
                                   float *ET_RESTRICT dp, int64_t h, int64_t w, int64_t oh, int64_t ow) {
    if (2 * oh != h || 2 * ow != w) memset(dp, 0, (size_t)(h * w) * sizeof(float));
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w, *gr = gp + oy * ow;
        float *d0 = dp + 2 * oy * w, *d1 = d0 + w;
        for (int64_t ox = 0; ox < ow; ox++) {
            /* Branch-free (the data decides the winner, so branches mispredict): without NaN the
             * winner is the first cell equal to the max, with NaN the last NaN cell (the rule
             * of max_index). Masks are built with integer ops so the compiler keeps no branch. */
            float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1], g = gr[ox];
            float m = a > b ? a : b;
            m = m > c ? m : c;
            m = m > d ? m : d; /* the max when no cell is NaN; unused otherwise */
            uint32_t ea = a == m, eb = b == m, ec = c == m;
            uint32_t nb = b != b, nc = c != c, nd = d != d, mn = (a != a) | nb | nc | nd;
            uint32_t wa = (mn & ~(nb | nc | nd)) | (~mn & ea);
            uint32_t wb = (mn & nb & ~(nc | nd)) | (~mn & eb & ~ea);
            uint32_t wc = (mn & nc & ~nd) | (~mn & ec & ~(ea | eb));
            uint32_t wd = (mn & nd) | (~mn & ~(ea | eb | ec));
            uint32_t gb, o[4];
            memcpy(&gb, &g, sizeof gb);
            o[0] = gb & (0u - (wa & 1u));
            o[1] = gb & (0u - (wb & 1u));
            o[2] = gb & (0u - (wc & 1u));
            o[3] = gb & (0u - (wd & 1u));
            memcpy(d0 + 2 * ox, o, 2 * sizeof(float));
            memcpy(d1 + 2 * ox, o + 2, 2 * sizeof(float));
        }
    }
}

et_status et_f32_maxpool2d_fwd(const et_pool2d_params *p, const float *x, float *y, int nthreads) {
    if (!params_ok(p) || !x || !y) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    const int64_t planes = p->n * p->c, xs = p->h * p->w, ys = p->oh * p->ow;
    if (is_k2s2(p)) {
        ET_PARALLEL_FOR(nthreads)
        for (int64_t pl = 0; pl < planes; pl++) maxpool_fwd_plane_k2s2(x + pl * xs, y + pl * ys, p->w, p->oh, p->ow);
        return ET_OK;
    }
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * xs;
        float *yp = y + pl * ys;
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox = 0; ox < p->ow; ox++) {
                float m;
                max_index(p, xp, oy, ox, &m);
                yp[oy * p->ow + ox] = m;
            }
    }
    return ET_OK;
}

et_status et_f32_maxpool2d_bwd(const et_pool2d_params *p, const float *x, const float *dy,
                               float *dx, int nthreads) {
    if (!params_ok(p) || !x || !dy || !dx) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    const int64_t planes = p->n * p->c, xs = p->h * p->w, ys = p->oh * p->ow;
    if (is_k2s2(p)) {
        ET_PARALLEL_FOR(nthreads)
        for (int64_t pl = 0; pl < planes; pl++)
            maxpool_bwd_plane_k2s2(x + pl * xs, dy + pl * ys, dx + pl * xs, p->h, p->w, p->oh, p->ow);
        return ET_OK;
    }
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * xs, *gp = dy + pl * ys;
        float *dp = dx + pl * xs;
        memset(dp, 0, (size_t)xs * sizeof(float));
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox = 0; ox < p->ow; ox++) {
                float m;
                int64_t idx = max_index(p, xp, oy, ox, &m);
                if (idx >= 0) dp[idx] += gp[oy * p->ow + ox];
            }
    }
    return ET_OK;
}

/* ---- average pool ---------------------------------------------------------------------- */
/* Window of output (oy, ox) clipped to the input: rows [*y0, *y1), cols [*x0, *x1); returns
 * the divisor (0 if the window holds no input cell). */
static inline float avg_window(const et_pool2d_params *p, int64_t oy, int64_t ox, int64_t *y0,
                               int64_t *y1, int64_t *x0, int64_t *x1) {
    int64_t hs = oy * p->stride_h - p->pad_h, ws = ox * p->stride_w - p->pad_w;
    int64_t he = hs + p->kh, we = ws + p->kw;
    if (he > p->h + p->pad_h) he = p->h + p->pad_h;
    if (we > p->w + p->pad_w) we = p->w + p->pad_w;
    int64_t padded = (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > p->h) he = p->h;
    if (we > p->w) we = p->w;
    *y0 = hs;
    *y1 = he;
    *x0 = ws;
    *x1 = we;
    if (hs >= he || ws >= we) return 0.0f;
    return (float)(p->count_include_pad ? padded : (he - hs) * (we - ws));
}

et_status et_f32_avgpool2d_fwd(const et_pool2d_params *p, const float *x, float *y, int nthreads) {
    if (!params_ok(p) || !x || !y || p->dil_h != 1 || p->dil_w != 1) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    const int64_t planes = p->n * p->c, xs = p->h * p->w, ys = p->oh * p->ow;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * xs;
        float *yp = y + pl * ys;
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t y0, y1, x0, x1;
                float div = avg_window(p, oy, ox, &y0, &y1, &x0, &x1);
                float s = 0.0f;
                for (int64_t iy = y0; iy < y1; iy++)
                    for (int64_t ix = x0; ix < x1; ix++) s += xp[iy * p->w + ix];
                yp[oy * p->ow + ox] = div > 0.0f ? s / div : 0.0f;
            }
    }
    return ET_OK;
}

et_status et_f32_avgpool2d_bwd(const et_pool2d_params *p, const float *dy, float *dx, int nthreads) {
    if (!params_ok(p) || !dy || !dx || p->dil_h != 1 || p->dil_w != 1) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    const int64_t planes = p->n * p->c, xs = p->h * p->w, ys = p->oh * p->ow;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *gp = dy + pl * ys;
        float *dp = dx + pl * xs;
        memset(dp, 0, (size_t)xs * sizeof(float));
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t y0, y1, x0, x1;
                float div = avg_window(p, oy, ox, &y0, &y1, &x0, &x1);
                if (div == 0.0f) continue;
                float g = gp[oy * p->ow + ox] / div;
                for (int64_t iy = y0; iy < y1; iy++)
                    for (int64_t ix = x0; ix < x1; ix++) dp[iy * p->w + ix] += g;
            }
    }
    return ET_OK;
}

/* ---- global average pool --------------------------------------------------------------- */
et_status et_f32_global_avgpool_fwd(int64_t n, int64_t c, int64_t hw, const float *x, float *y,
                                    int nthreads) {
    if (n <= 0 || c <= 0 || hw <= 0 || !x || !y) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    const int64_t planes = n * c;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *r = x + pl * hw;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 8 <= hw; j += 8)
            for (int k = 0; k < 8; k++) acc[k] += r[j + k];
        float s = 0.0f;
        for (; j < hw; j++) s += r[j];
        for (int k = 0; k < 8; k++) s += acc[k];
        y[pl] = s / (float)hw;
    }
    return ET_OK;
}

et_status et_f32_global_avgpool_bwd(int64_t n, int64_t c, int64_t hw, const float *dy, float *dx,
                                    int nthreads) {
    if (n <= 0 || c <= 0 || hw <= 0 || !dy || !dx) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    const int64_t planes = n * c;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        float g = dy[pl] / (float)hw;
        float *r = dx + pl * hw;
        for (int64_t j = 0; j < hw; j++) r[j] = g;
    }
    return ET_OK;
}
