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
 * depend on the thread count. Backward kernels overwrite dx. The 2x2 / stride 2 max pool has
 * SIMD plane kernels, listed in et_f32_maxpool2d_k2s2_variants (pool_internal.h).
 * The max pool's backward can apply a following relu / relu6's derivative (act_bwd reading the
 * pool's input x): every cell but a window's winner gets +0 from the pool, and act_bwd keeps
 * +0 or turns it into +0, so only the winner's test counts, and the winner's value is at hand.
 */
#include <math.h>
#include <string.h>

#include "pool_internal.h"

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>
#endif
#if defined(ET_HAVE_NEON)
#include <arm_neon.h>
#endif

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

/* ---- 2x2 / stride 2 plane kernels -------------------------------------------------------
 * The scalar kernels below are the reference (ET_ISA_REF) and do the column tails of the SIMD
 * kernels. Every SIMD variant computes the same bits: the forward max is the value of the
 * winning cell (blends only, no max instructions), the backward writes the gradient bits to
 * the winning cell and +0.0 to the other three. The winner follows the scan a, b, c, d with
 * POOL_TAKES: t_b, t_c, t_d are the take masks against the running max; the winner is the
 * last cell that took (d if t_d, else c if t_c, else b if t_b, else a). */

/* Forward, output columns [ox0, ow) of one output row. */
static inline void k2s2_fwd_cols(const float *ET_RESTRICT r0, const float *ET_RESTRICT r1,
                                 float *ET_RESTRICT yr, int64_t ox0, int64_t ow) {
    for (int64_t ox = ox0; ox < ow; ox++) {
        float m = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
        m = POOL_TAKES(b, m) ? b : m;
        m = POOL_TAKES(c, m) ? c : m;
        m = POOL_TAKES(d, m) ? d : m;
        yr[ox] = m;
    }
}

/* Backward, output columns [ox0, ow) of one output row: writes d0/d1[2*ox0, 2*ow). */
static inline void k2s2_bwd_cols(const float *ET_RESTRICT r0, const float *ET_RESTRICT r1,
                                 const float *ET_RESTRICT gr, float *ET_RESTRICT d0,
                                 float *ET_RESTRICT d1, int64_t ox0, int64_t ow, float lo, float hi) {
    for (int64_t ox = ox0; ox < ow; ox++) {
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
        /* the act's mask: a NaN winner (mn) passes, else the winner's value is m */
        uint32_t kill = ~mn & ((uint32_t)(m <= lo) | (uint32_t)(m >= hi)) & 1u;
        uint32_t gb, o[4];
        memcpy(&gb, &g, sizeof gb);
        gb &= kill - 1u;
        o[0] = gb & (0u - (wa & 1u));
        o[1] = gb & (0u - (wb & 1u));
        o[2] = gb & (0u - (wc & 1u));
        o[3] = gb & (0u - (wd & 1u));
        memcpy(d0 + 2 * ox, o, 2 * sizeof(float));
        memcpy(d1 + 2 * ox, o + 2, 2 * sizeof(float));
    }
}

/* Zero the cells of dx no window covers: columns [2*ow, w) of the row pair d0/d1. */
static inline void k2s2_zero_tail_cols(float *d0, float *d1, int64_t w, int64_t ow) {
    for (int64_t x = 2 * ow; x < w; x++) d0[x] = d1[x] = 0.0f;
}

static void maxpool_fwd_plane_k2s2__ref(const float *ET_RESTRICT xp, float *ET_RESTRICT yp,
                                        int64_t w, int64_t oh, int64_t ow) {
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w;
        k2s2_fwd_cols(r0, r0 + w, yp + oy * ow, 0, ow);
    }
}

static void maxpool_bwd_plane_k2s2__ref(const float *ET_RESTRICT xp, const float *ET_RESTRICT gp,
                                        float *ET_RESTRICT dp, int64_t h, int64_t w, int64_t oh,
                                        int64_t ow, float lo, float hi) {
    if (2 * oh != h || 2 * ow != w) memset(dp, 0, (size_t)(h * w) * sizeof(float));
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w;
        float *d0 = dp + 2 * oy * w;
        k2s2_bwd_cols(r0, r0 + w, gp + oy * ow, d0, d0 + w, 0, ow, lo, hi);
    }
}

#if defined(ET_HAVE_X86_SIMD)
/* ---- AVX2: 8 windows per step ----
 * shuffle_ps(lo, hi) of 16 input columns gives the even (or odd) columns in the window order
 * [0 1 4 5 | 2 3 6 7]; unpacklo/hi_ps of two such vectors restores the column order, so only
 * the gradient load (and the forward store) needs a cross-lane permute. A 4-wide SSE step and
 * scalar code take the tail. */
#define K2S2_P4_0213 0xD8 /* _MM_SHUFFLE(3, 1, 2, 0): 64-bit lanes [0 2 1 3], self-inverse */

ET_TARGET_AVX2 static inline __m256 k2s2_takes8(__m256 v, __m256 m) {
    return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}
ET_TARGET_AVX2 static inline __m128 k2s2_takes4(__m128 v, __m128 m) {
    return _mm_or_ps(_mm_cmpgt_ps(v, m), _mm_cmpunord_ps(v, v));
}
/* The act's mask of winning values m (lo / hi as in pool_internal.h; ordered: NaN passes). */
ET_TARGET_AVX2 static inline __m256 k2s2_kill8(__m256 m, __m256 lo, __m256 hi) {
    return _mm256_or_ps(_mm256_cmp_ps(m, lo, _CMP_LE_OQ), _mm256_cmp_ps(m, hi, _CMP_GE_OQ));
}
ET_TARGET_AVX2 static inline __m128 k2s2_kill4(__m128 m, __m128 lo, __m128 hi) {
    return _mm_or_ps(_mm_cmp_ps(m, lo, _CMP_LE_OQ), _mm_cmp_ps(m, hi, _CMP_GE_OQ));
}

/* 8 windows: the 4 windows of the 8 columns at u0 / v0 (top / bottom row) and the 4 at u1 / v1.
 * Consecutive in one row pair (u1 = u0 + 8) or, when ow == 4, two row pairs at once. The
 * outputs (and gradients) of the u0 windows come first. */
/* The four cells a, b, c, d of 8 windows: rows u = u0|u1 and v = v0|v1 (16 floats each) split
 * into even / odd columns, in the lane order of _mm256_shuffle_ps (windows 0-1, 4-5, 2-3,
 * 6-7; the callers restore the order). a is returned in *m (the running max's start). */
ET_TARGET_AVX2 static inline void k2s2_split8__avx2(const float *u0, const float *u1,
                                                    const float *v0, const float *v1, __m256 *m,
                                                    __m256 *b, __m256 *c, __m256 *d) {
    __m256 p0 = _mm256_loadu_ps(u0), p1 = _mm256_loadu_ps(u1);
    __m256 q0 = _mm256_loadu_ps(v0), q1 = _mm256_loadu_ps(v1);
    *m = _mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
    *b = _mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1));
    *c = _mm256_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0));
    *d = _mm256_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1));
}

/* The same for 4 windows (8 floats of each row, in order). */
ET_TARGET_AVX2 static inline void k2s2_split4__avx2(const float *u, const float *v, __m128 *m,
                                                    __m128 *b, __m128 *c, __m128 *d) {
    __m128 p0 = _mm_loadu_ps(u), p1 = _mm_loadu_ps(u + 4);
    __m128 q0 = _mm_loadu_ps(v), q1 = _mm_loadu_ps(v + 4);
    *m = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
    *b = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1));
    *c = _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0));
    *d = _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1));
}

ET_TARGET_AVX2 static inline void k2s2_fwd8__avx2(const float *u0, const float *u1,
                                                  const float *v0, const float *v1, float *y) {
    __m256 m, b, c, d;
    k2s2_split8__avx2(u0, u1, v0, v1, &m, &b, &c, &d);
    m = _mm256_blendv_ps(m, b, k2s2_takes8(b, m));
    m = _mm256_blendv_ps(m, c, k2s2_takes8(c, m));
    m = _mm256_blendv_ps(m, d, k2s2_takes8(d, m));
    _mm256_storeu_ps(y, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), K2S2_P4_0213)));
}

/* Backward of k2s2_fwd8__avx2: g holds the 8 gradients, du* / dv* mirror u* / v*. */
ET_TARGET_AVX2 static inline void k2s2_bwd8__avx2(const float *u0, const float *u1,
                                                  const float *v0, const float *v1,
                                                  const float *gs, float *du0, float *du1,
                                                  float *dv0, float *dv1, __m256 lo, __m256 hi) {
    __m256 m, b, c, d;
    k2s2_split8__avx2(u0, u1, v0, v1, &m, &b, &c, &d);
    __m256 tb = k2s2_takes8(b, m);
    m = _mm256_blendv_ps(m, b, tb);
    __m256 tc = k2s2_takes8(c, m);
    m = _mm256_blendv_ps(m, c, tc);
    __m256 td = k2s2_takes8(d, m);
    m = _mm256_blendv_ps(m, d, td);
    __m256 g = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_loadu_ps(gs)), K2S2_P4_0213));
    g = _mm256_andnot_ps(k2s2_kill8(m, lo, hi), g);
    __m256 tcd = _mm256_or_ps(tc, td);
    __m256 ga = _mm256_andnot_ps(_mm256_or_ps(tb, tcd), g);
    __m256 gb = _mm256_and_ps(_mm256_andnot_ps(tcd, tb), g);
    __m256 gc = _mm256_and_ps(_mm256_andnot_ps(td, tc), g);
    __m256 gd = _mm256_and_ps(td, g);
    _mm256_storeu_ps(du0, _mm256_unpacklo_ps(ga, gb));
    _mm256_storeu_ps(du1, _mm256_unpackhi_ps(ga, gb));
    _mm256_storeu_ps(dv0, _mm256_unpacklo_ps(gc, gd));
    _mm256_storeu_ps(dv1, _mm256_unpackhi_ps(gc, gd));
}

/* Forward, output columns [ox, ow) of one output row. */
ET_TARGET_AVX2 static inline void k2s2_fwd_row__avx2(const float *ET_RESTRICT r0,
                                                     const float *ET_RESTRICT r1,
                                                     float *ET_RESTRICT yr, int64_t ox, int64_t ow) {
    for (; ox + 8 <= ow; ox += 8)
        k2s2_fwd8__avx2(r0 + 2 * ox, r0 + 2 * ox + 8, r1 + 2 * ox, r1 + 2 * ox + 8, yr + ox);
    if (ox + 4 <= ow) {
        __m128 m, b, c, d;
        k2s2_split4__avx2(r0 + 2 * ox, r1 + 2 * ox, &m, &b, &c, &d);
        m = _mm_blendv_ps(m, b, k2s2_takes4(b, m));
        m = _mm_blendv_ps(m, c, k2s2_takes4(c, m));
        m = _mm_blendv_ps(m, d, k2s2_takes4(d, m));
        _mm_storeu_ps(yr + ox, m);
        ox += 4;
    }
    k2s2_fwd_cols(r0, r1, yr, ox, ow);
}

/* Backward, output columns [ox, ow) of one output row. */
ET_TARGET_AVX2 static inline void k2s2_bwd_row__avx2(const float *ET_RESTRICT r0,
                                                     const float *ET_RESTRICT r1,
                                                     const float *ET_RESTRICT gr,
                                                     float *ET_RESTRICT d0, float *ET_RESTRICT d1,
                                                     int64_t ox, int64_t ow, float lo, float hi) {
    const __m256 lo8 = _mm256_set1_ps(lo), hi8 = _mm256_set1_ps(hi);
    for (; ox + 8 <= ow; ox += 8)
        k2s2_bwd8__avx2(r0 + 2 * ox, r0 + 2 * ox + 8, r1 + 2 * ox, r1 + 2 * ox + 8, gr + ox,
                        d0 + 2 * ox, d0 + 2 * ox + 8, d1 + 2 * ox, d1 + 2 * ox + 8, lo8, hi8);
    if (ox + 4 <= ow) {
        __m128 m, b, c, d;
        k2s2_split4__avx2(r0 + 2 * ox, r1 + 2 * ox, &m, &b, &c, &d);
        __m128 tb = k2s2_takes4(b, m);
        m = _mm_blendv_ps(m, b, tb);
        __m128 tc = k2s2_takes4(c, m);
        m = _mm_blendv_ps(m, c, tc);
        __m128 td = k2s2_takes4(d, m);
        m = _mm_blendv_ps(m, d, td);
        __m128 g = _mm_andnot_ps(k2s2_kill4(m, _mm_set1_ps(lo), _mm_set1_ps(hi)), _mm_loadu_ps(gr + ox));
        __m128 tcd = _mm_or_ps(tc, td);
        __m128 ga = _mm_andnot_ps(_mm_or_ps(tb, tcd), g);
        __m128 gb = _mm_and_ps(_mm_andnot_ps(tcd, tb), g);
        __m128 gc = _mm_and_ps(_mm_andnot_ps(td, tc), g);
        __m128 gd = _mm_and_ps(td, g);
        _mm_storeu_ps(d0 + 2 * ox, _mm_unpacklo_ps(ga, gb));
        _mm_storeu_ps(d0 + 2 * ox + 4, _mm_unpackhi_ps(ga, gb));
        _mm_storeu_ps(d1 + 2 * ox, _mm_unpacklo_ps(gc, gd));
        _mm_storeu_ps(d1 + 2 * ox + 4, _mm_unpackhi_ps(gc, gd));
        ox += 4;
    }
    k2s2_bwd_cols(r0, r1, gr, d0, d1, ox, ow, lo, hi);
}

/* Output rows [oy0, oh) of a plane; ow == 4 (LeNet's 8x8 pool) goes two rows per step. */
ET_TARGET_AVX2 static inline void k2s2_fwd_plane_rows__avx2(const float *ET_RESTRICT xp,
                                                            float *ET_RESTRICT yp, int64_t w,
                                                            int64_t oy, int64_t oh, int64_t ow) {
    if (ow == 4)
        for (; oy + 2 <= oh; oy += 2) {
            const float *r = xp + 2 * oy * w;
            k2s2_fwd8__avx2(r, r + 2 * w, r + w, r + 3 * w, yp + oy * 4);
        }
    for (; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w;
        k2s2_fwd_row__avx2(r0, r0 + w, yp + oy * ow, 0, ow);
    }
}

/* Output rows [0, oh) of a plane, including the uncovered columns [2*ow, w) of each row pair. */
ET_TARGET_AVX2 static inline void k2s2_bwd_plane_rows__avx2(const float *ET_RESTRICT xp,
                                                            const float *ET_RESTRICT gp,
                                                            float *ET_RESTRICT dp, int64_t w,
                                                            int64_t oh, int64_t ow, float lo,
                                                            float hi) {
    const __m256 lo8 = _mm256_set1_ps(lo), hi8 = _mm256_set1_ps(hi);
    int64_t oy = 0;
    if (ow == 4)
        for (; oy + 2 <= oh; oy += 2) {
            const float *r = xp + 2 * oy * w;
            float *d = dp + 2 * oy * w;
            k2s2_bwd8__avx2(r, r + 2 * w, r + w, r + 3 * w, gp + oy * 4, d, d + 2 * w, d + w, d + 3 * w,
                            lo8, hi8);
            for (int64_t i = 0; i < 4; i++) k2s2_zero_tail_cols(d + i * w, d + i * w, w, ow);
        }
    for (; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w;
        float *d0 = dp + 2 * oy * w;
        k2s2_bwd_row__avx2(r0, r0 + w, gp + oy * ow, d0, d0 + w, 0, ow, lo, hi);
        k2s2_zero_tail_cols(d0, d0 + w, w, ow);
    }
}

ET_TARGET_AVX2 static void maxpool_fwd_plane_k2s2__avx2(const float *ET_RESTRICT xp,
                                                        float *ET_RESTRICT yp, int64_t w,
                                                        int64_t oh, int64_t ow) {
    k2s2_fwd_plane_rows__avx2(xp, yp, w, 0, oh, ow);
}

ET_TARGET_AVX2 static void maxpool_bwd_plane_k2s2__avx2(const float *ET_RESTRICT xp,
                                                        const float *ET_RESTRICT gp,
                                                        float *ET_RESTRICT dp, int64_t h,
                                                        int64_t w, int64_t oh, int64_t ow,
                                                        float lo, float hi) {
    k2s2_bwd_plane_rows__avx2(xp, gp, dp, w, oh, ow, lo, hi);
    if (2 * oh < h) memset(dp + 2 * oh * w, 0, (size_t)((h - 2 * oh) * w) * sizeof(float));
}

/* ---- AVX-512: 16 windows per step, a tail of 9..15 windows with masks ----
 * permutex2var_ps splits 32 input columns into even / odd columns and interleaves the
 * gradients back. Tails of at most 8 windows (e.g. LeNet's 8x8 pool, ow = 4) take the AVX2
 * row code: a masked 16-wide step costs more there than the 8 / 4-wide steps. */
ET_TARGET_AVX512 static inline __mmask16 k2s2_takes16(__m512 v, __m512 m) {
    return _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}

/* Load masks of the 2*r input columns (lo: columns 0..15, hi: 16..31) of r < 16 windows. */
static inline void k2s2_tail_masks(int64_t r, __mmask16 *lo, __mmask16 *hi, __mmask16 *out) {
    uint32_t cols = (uint32_t)((UINT64_C(1) << (2 * r)) - 1u);
    *lo = (__mmask16)(cols & 0xFFFFu);
    *hi = (__mmask16)(cols >> 16);
    *out = (__mmask16)((1u << r) - 1u);
}

ET_TARGET_AVX512 static void maxpool_fwd_plane_k2s2__avx512(const float *ET_RESTRICT xp,
                                                            float *ET_RESTRICT yp, int64_t w,
                                                            int64_t oh, int64_t ow) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    if (ow <= 8) {
        k2s2_fwd_plane_rows__avx2(xp, yp, w, 0, oh, ow);
        return;
    }
    __mmask16 mlo, mhi, mout;
    k2s2_tail_masks(ow % 16, &mlo, &mhi, &mout);
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        float *yr = yp + oy * ow;
        int64_t ox = 0;
        for (;; ox += 16) {
            const int full = ox + 16 <= ow;
            if (!full && ow - ox <= 8) {
                k2s2_fwd_row__avx2(r0, r1, yr, ox, ow);
                break;
            }
            __m512 p0, p1, q0, q1;
            if (full) {
                p0 = _mm512_loadu_ps(r0 + 2 * ox), p1 = _mm512_loadu_ps(r0 + 2 * ox + 16);
                q0 = _mm512_loadu_ps(r1 + 2 * ox), q1 = _mm512_loadu_ps(r1 + 2 * ox + 16);
            } else {
                p0 = _mm512_maskz_loadu_ps(mlo, r0 + 2 * ox), p1 = _mm512_maskz_loadu_ps(mhi, r0 + 2 * ox + 16);
                q0 = _mm512_maskz_loadu_ps(mlo, r1 + 2 * ox), q1 = _mm512_maskz_loadu_ps(mhi, r1 + 2 * ox + 16);
            }
            __m512 m = _mm512_permutex2var_ps(p0, ev, p1), b = _mm512_permutex2var_ps(p0, od, p1);
            __m512 c = _mm512_permutex2var_ps(q0, ev, q1), d = _mm512_permutex2var_ps(q0, od, q1);
            m = _mm512_mask_mov_ps(m, k2s2_takes16(b, m), b);
            m = _mm512_mask_mov_ps(m, k2s2_takes16(c, m), c);
            m = _mm512_mask_mov_ps(m, k2s2_takes16(d, m), d);
            if (full) {
                _mm512_storeu_ps(yr + ox, m);
            } else {
                _mm512_mask_storeu_ps(yr + ox, mout, m);
                break;
            }
        }
    }
}

ET_TARGET_AVX512 static void maxpool_bwd_plane_k2s2__avx512(const float *ET_RESTRICT xp,
                                                            const float *ET_RESTRICT gp,
                                                            float *ET_RESTRICT dp, int64_t h,
                                                            int64_t w, int64_t oh, int64_t ow,
                                                            float lo, float hi) {
    const __m512 lo16 = _mm512_set1_ps(lo), hi16 = _mm512_set1_ps(hi);
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i il = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ih = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    if (ow <= 8) {
        k2s2_bwd_plane_rows__avx2(xp, gp, dp, w, oh, ow, lo, hi);
        if (2 * oh < h) memset(dp + 2 * oh * w, 0, (size_t)((h - 2 * oh) * w) * sizeof(float));
        return;
    }
    __mmask16 mlo, mhi, mout;
    k2s2_tail_masks(ow % 16, &mlo, &mhi, &mout);
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w, *gr = gp + oy * ow;
        float *d0 = dp + 2 * oy * w, *d1 = d0 + w;
        int64_t ox = 0;
        for (;; ox += 16) {
            const int full = ox + 16 <= ow;
            if (!full && ow - ox <= 8) {
                k2s2_bwd_row__avx2(r0, r1, gr, d0, d1, ox, ow, lo, hi);
                break;
            }
            __m512 p0, p1, q0, q1, g;
            if (full) {
                p0 = _mm512_loadu_ps(r0 + 2 * ox), p1 = _mm512_loadu_ps(r0 + 2 * ox + 16);
                q0 = _mm512_loadu_ps(r1 + 2 * ox), q1 = _mm512_loadu_ps(r1 + 2 * ox + 16);
                g = _mm512_loadu_ps(gr + ox);
            } else {
                p0 = _mm512_maskz_loadu_ps(mlo, r0 + 2 * ox), p1 = _mm512_maskz_loadu_ps(mhi, r0 + 2 * ox + 16);
                q0 = _mm512_maskz_loadu_ps(mlo, r1 + 2 * ox), q1 = _mm512_maskz_loadu_ps(mhi, r1 + 2 * ox + 16);
                g = _mm512_maskz_loadu_ps(mout, gr + ox);
            }
            __m512 m = _mm512_permutex2var_ps(p0, ev, p1), b = _mm512_permutex2var_ps(p0, od, p1);
            __m512 c = _mm512_permutex2var_ps(q0, ev, q1), d = _mm512_permutex2var_ps(q0, od, q1);
            __mmask16 tb = k2s2_takes16(b, m);
            m = _mm512_mask_mov_ps(m, tb, b);
            __mmask16 tc = k2s2_takes16(c, m);
            m = _mm512_mask_mov_ps(m, tc, c);
            __mmask16 td = k2s2_takes16(d, m);
            m = _mm512_mask_mov_ps(m, td, d);
            g = _mm512_maskz_mov_ps((__mmask16)~(_mm512_cmp_ps_mask(m, lo16, _CMP_LE_OQ) |
                                                 _mm512_cmp_ps_mask(m, hi16, _CMP_GE_OQ)), g);
            __m512 ga = _mm512_maskz_mov_ps((__mmask16)~(tb | tc | td), g);
            __m512 gb = _mm512_maskz_mov_ps((__mmask16)(tb & ~(tc | td)), g);
            __m512 gc = _mm512_maskz_mov_ps((__mmask16)(tc & ~td), g);
            __m512 gd = _mm512_maskz_mov_ps(td, g);
            if (full) {
                _mm512_storeu_ps(d0 + 2 * ox, _mm512_permutex2var_ps(ga, il, gb));
                _mm512_storeu_ps(d0 + 2 * ox + 16, _mm512_permutex2var_ps(ga, ih, gb));
                _mm512_storeu_ps(d1 + 2 * ox, _mm512_permutex2var_ps(gc, il, gd));
                _mm512_storeu_ps(d1 + 2 * ox + 16, _mm512_permutex2var_ps(gc, ih, gd));
            } else {
                _mm512_mask_storeu_ps(d0 + 2 * ox, mlo, _mm512_permutex2var_ps(ga, il, gb));
                _mm512_mask_storeu_ps(d0 + 2 * ox + 16, mhi, _mm512_permutex2var_ps(ga, ih, gb));
                _mm512_mask_storeu_ps(d1 + 2 * ox, mlo, _mm512_permutex2var_ps(gc, il, gd));
                _mm512_mask_storeu_ps(d1 + 2 * ox + 16, mhi, _mm512_permutex2var_ps(gc, ih, gd));
                break;
            }
        }
        k2s2_zero_tail_cols(d0, d1, w, ow);
    }
    if (2 * oh < h) memset(dp + 2 * oh * w, 0, (size_t)((h - 2 * oh) * w) * sizeof(float));
}
#endif /* ET_HAVE_X86_SIMD */

#if defined(ET_HAVE_NEON)
/* ---- NEON: 4 windows per step; vld2q / vst2q (de)interleave the columns ---- */
static inline uint32x4_t k2s2_takes_neon(float32x4_t v, float32x4_t m) {
    return vorrq_u32(vcgtq_f32(v, m), vmvnq_u32(vceqq_f32(v, v)));
}

static void maxpool_fwd_plane_k2s2__neon(const float *ET_RESTRICT xp, float *ET_RESTRICT yp,
                                         int64_t w, int64_t oh, int64_t ow) {
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        float *yr = yp + oy * ow;
        int64_t ox = 0;
        for (; ox + 4 <= ow; ox += 4) {
            float32x4x2_t p = vld2q_f32(r0 + 2 * ox), q = vld2q_f32(r1 + 2 * ox);
            float32x4_t m = p.val[0];
            m = vbslq_f32(k2s2_takes_neon(p.val[1], m), p.val[1], m);
            m = vbslq_f32(k2s2_takes_neon(q.val[0], m), q.val[0], m);
            m = vbslq_f32(k2s2_takes_neon(q.val[1], m), q.val[1], m);
            vst1q_f32(yr + ox, m);
        }
        k2s2_fwd_cols(r0, r1, yr, ox, ow);
    }
}

static void maxpool_bwd_plane_k2s2__neon(const float *ET_RESTRICT xp, const float *ET_RESTRICT gp,
                                         float *ET_RESTRICT dp, int64_t h, int64_t w, int64_t oh,
                                         int64_t ow, float lo, float hi) {
    const float32x4_t lo4 = vdupq_n_f32(lo), hi4 = vdupq_n_f32(hi);
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w, *gr = gp + oy * ow;
        float *d0 = dp + 2 * oy * w, *d1 = d0 + w;
        int64_t ox = 0;
        for (; ox + 4 <= ow; ox += 4) {
            float32x4x2_t p = vld2q_f32(r0 + 2 * ox), q = vld2q_f32(r1 + 2 * ox);
            float32x4_t m = p.val[0];
            uint32x4_t tb = k2s2_takes_neon(p.val[1], m);
            m = vbslq_f32(tb, p.val[1], m);
            uint32x4_t tc = k2s2_takes_neon(q.val[0], m);
            m = vbslq_f32(tc, q.val[0], m);
            uint32x4_t td = k2s2_takes_neon(q.val[1], m);
            m = vbslq_f32(td, q.val[1], m);
            /* the act's mask; vcle / vcge are false for NaN, so a NaN winner passes */
            uint32x4_t kill = vorrq_u32(vcleq_f32(m, lo4), vcgeq_f32(m, hi4));
            uint32x4_t g = vbicq_u32(vreinterpretq_u32_f32(vld1q_f32(gr + ox)), kill);
            uint32x4_t tcd = vorrq_u32(tc, td);
            float32x4x2_t o0, o1;
            o0.val[0] = vreinterpretq_f32_u32(vbicq_u32(g, vorrq_u32(tb, tcd)));
            o0.val[1] = vreinterpretq_f32_u32(vandq_u32(vbicq_u32(tb, tcd), g));
            o1.val[0] = vreinterpretq_f32_u32(vandq_u32(vbicq_u32(tc, td), g));
            o1.val[1] = vreinterpretq_f32_u32(vandq_u32(td, g));
            vst2q_f32(d0 + 2 * ox, o0);
            vst2q_f32(d1 + 2 * ox, o1);
        }
        k2s2_bwd_cols(r0, r1, gr, d0, d1, ox, ow, lo, hi);
        k2s2_zero_tail_cols(d0, d1, w, ow);
    }
    if (2 * oh < h) memset(dp + 2 * oh * w, 0, (size_t)((h - 2 * oh) * w) * sizeof(float));
}
#endif /* ET_HAVE_NEON */

/* ---- variant table (pool_internal.h) ------------------------------------------------------ */
const et_f32_maxpool2d_k2s2_variant et_f32_maxpool2d_k2s2_variants[] = {
    {{ET_ISA_REF, "ref"}, maxpool_fwd_plane_k2s2__ref, maxpool_bwd_plane_k2s2__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, maxpool_fwd_plane_k2s2__avx2, maxpool_bwd_plane_k2s2__avx2},
    {{ET_ISA_AVX512, "avx512"}, maxpool_fwd_plane_k2s2__avx512, maxpool_bwd_plane_k2s2__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, maxpool_fwd_plane_k2s2__neon, maxpool_bwd_plane_k2s2__neon},
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL}, /* end */
};

/* Planes (one image channel each) are computed on their own: any split gives the same bits.
 * Every pooling entry fills one pool_job naming its plane function; one worker runs it. */
typedef struct pool_job pool_job;
typedef void (*pool_plane_fn)(const pool_job *k, int64_t pl);
struct pool_job {
    pool_plane_fn plane;
    const et_pool2d_params *p;
    const et_f32_maxpool2d_k2s2_variant *row;
    const float *x, *dy;
    float *y, *dx;
    int64_t xs, ys, hw; /* input / output plane sizes; hw: global pool */
    float lo, hi;       /* max pool backward: the fused act's bounds (pool_internal.h) */
};

static void pool_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    const pool_job *k = (const pool_job *)ctx;
    (void)tid;
    for (int64_t pl = p0; pl < p1; pl++) k->plane(k, pl);
}

/* Runs k->plane on every one of `planes` planes, split in fixed chunks; or, with `ranges`, that
 * body once per chunk of planes (one loop, no call per plane). */
static et_status run_planes(pool_job *k, int64_t planes, et_range_body ranges, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads,
                       ranges ? ranges : pool_planes, k);
    return ET_OK;
}

/* A job over the n*c planes of p (x / dy inputs, y / dx outputs; unused ones NULL). */
static et_status run_pool(const et_pool2d_params *p, pool_plane_fn plane,
                          const et_f32_maxpool2d_k2s2_variant *row, const float *x,
                          const float *dy, float *y, float *dx, int nthreads) {
    pool_job k = {plane, p, row, x, dy, y, dx, p->h * p->w, p->oh * p->ow, 0, NAN, NAN};
    return run_planes(&k, p->n * p->c, NULL, nthreads);
}

static void maxpool_k2s2_fwd_plane(const pool_job *k, int64_t pl) {
    const et_pool2d_params *p = k->p;
    k->row->fwd(k->x + pl * k->xs, k->y + pl * k->ys, p->w, p->oh, p->ow);
}

static void maxpool_fwd_plane(const pool_job *k, int64_t pl) {
    const et_pool2d_params *p = k->p;
    const float *xp = k->x + pl * k->xs;
    float *yp = k->y + pl * k->ys;
    for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ox = 0; ox < p->ow; ox++) {
            float m;
            max_index(p, xp, oy, ox, &m);
            yp[oy * p->ow + ox] = m;
        }
}

static void maxpool_k2s2_bwd_plane(const pool_job *k, int64_t pl) {
    const et_pool2d_params *p = k->p;
    k->row->bwd(k->x + pl * k->xs, k->dy + pl * k->ys, k->dx + pl * k->xs, p->h, p->w, p->oh,
                p->ow, k->lo, k->hi);
}

static void maxpool_bwd_plane(const pool_job *k, int64_t pl) {
    const et_pool2d_params *p = k->p;
    const float *xp = k->x + pl * k->xs, *gp = k->dy + pl * k->ys;
    float *dp = k->dx + pl * k->xs;
    memset(dp, 0, (size_t)k->xs * sizeof(float));
    for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ox = 0; ox < p->ow; ox++) {
            float m;
            int64_t idx = max_index(p, xp, oy, ox, &m);
            /* act_bwd would zero the sum at a cell that fails its test: skip its terms */
            if (idx >= 0 && !(xp[idx] <= k->lo || xp[idx] >= k->hi)) dp[idx] += gp[oy * p->ow + ox];
        }
}

et_status et_f32_maxpool2d_fwd(const et_pool2d_params *p, const float *x, float *y, int nthreads) {
    if (!params_ok(p) || !x || !y) return ET_ERR_ARG;
    if (is_k2s2(p))
        return run_pool(p, maxpool_k2s2_fwd_plane, ET_VARIANT_PICK(et_f32_maxpool2d_k2s2_variants),
                        x, NULL, y, NULL, nthreads);
    return run_pool(p, maxpool_fwd_plane, NULL, x, NULL, y, NULL, nthreads);
}

et_status et_f32_maxpool2d_act_bwd(const et_pool2d_params *p, et_act act, const float *x,
                                   const float *dy, float *dx, int nthreads) {
    if (!params_ok(p) || !x || !dy || !dx) return ET_ERR_ARG;
    if (act != ET_ACT_NONE && act != ET_ACT_RELU && act != ET_ACT_RELU6) return ET_ERR_ARG;
    /* act_bwd's tests as bounds: relu zeroes v <= 0, relu6 v <= 0 or v >= 6; NaN never kills */
    pool_job k = {is_k2s2(p) ? maxpool_k2s2_bwd_plane : maxpool_bwd_plane, p,
                  is_k2s2(p) ? ET_VARIANT_PICK(et_f32_maxpool2d_k2s2_variants) : NULL,
                  x, dy, NULL, dx, p->h * p->w, p->oh * p->ow, 0,
                  act == ET_ACT_NONE ? NAN : 0.0f, act == ET_ACT_RELU6 ? 6.0f : NAN};
    return run_planes(&k, p->n * p->c, NULL, nthreads);
}

et_status et_f32_maxpool2d_bwd(const et_pool2d_params *p, const float *x, const float *dy,
                               float *dx, int nthreads) {
    return et_f32_maxpool2d_act_bwd(p, ET_ACT_NONE, x, dy, dx, nthreads);
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

static void avgpool_fwd_plane(const pool_job *k, int64_t pl) {
    const et_pool2d_params *p = k->p;
    const float *xp = k->x + pl * k->xs;
    float *yp = k->y + pl * k->ys;
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

static void avgpool_bwd_plane(const pool_job *k, int64_t pl) {
    const et_pool2d_params *p = k->p;
    const float *gp = k->dy + pl * k->ys;
    float *dp = k->dx + pl * k->xs;
    memset(dp, 0, (size_t)k->xs * sizeof(float));
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

et_status et_f32_avgpool2d_fwd(const et_pool2d_params *p, const float *x, float *y, int nthreads) {
    if (!params_ok(p) || !x || !y || p->dil_h != 1 || p->dil_w != 1) return ET_ERR_ARG;
    return run_pool(p, avgpool_fwd_plane, NULL, x, NULL, y, NULL, nthreads);
}

et_status et_f32_avgpool2d_bwd(const et_pool2d_params *p, const float *dy, float *dx, int nthreads) {
    if (!params_ok(p) || !dy || !dx || p->dil_h != 1 || p->dil_w != 1) return ET_ERR_ARG;
    return run_pool(p, avgpool_bwd_plane, NULL, NULL, dy, NULL, dx, nthreads);
}

/* ---- global average pool --------------------------------------------------------------- */
static void gavg_fwd_plane(const pool_job *k, int64_t pl) {
    const int64_t hw = k->hw;
    const float *r = k->x + pl * hw;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= hw; j += 8)
        for (int i = 0; i < 8; i++) acc[i] += r[j + i];
    float s = 0.0f;
    for (; j < hw; j++) s += r[j];
    for (int i = 0; i < 8; i++) s += acc[i];
    k->y[pl] = s / (float)hw;
}

static void gavg_bwd_plane(const pool_job *k, int64_t pl) {
    const int64_t hw = k->hw;
    float g = k->dy[pl] / (float)hw;
    float *r = k->dx + pl * hw;
    for (int64_t j = 0; j < hw; j++) r[j] = g;
}

/* Planes smaller than one 8-wide step (MobileNetV2's 1x1 and 2x2 heads: 40k planes of 1 to 4
 * floats) without a call per plane. gavg_fwd_plane's bits: its sum starts at +0, so it is
 * never -0 after the first add and its eight +0 lanes change nothing; what is left is
 * ((0 + r[0]) + r[1]) ... / hw. */
static void gavg_fwd_small(void *ctx, int64_t p0, int64_t p1, int tid) {
    const pool_job *k = (const pool_job *)ctx;
    const int64_t hw = k->hw;
    (void)tid;
    if (hw == 1) {
        for (int64_t pl = p0; pl < p1; pl++) k->y[pl] = 0.0f + k->x[pl]; /* / 1: exact */
        return;
    }
    for (int64_t pl = p0; pl < p1; pl++) {
        const float *r = k->x + pl * hw;
        float s = 0.0f;
        for (int64_t j = 0; j < hw; j++) s += r[j];
        k->y[pl] = s / (float)hw;
    }
}

static void gavg_bwd_small(void *ctx, int64_t p0, int64_t p1, int tid) {
    const pool_job *k = (const pool_job *)ctx;
    const int64_t hw = k->hw;
    (void)tid;
    if (hw == 1) {
        for (int64_t pl = p0; pl < p1; pl++) k->dx[pl] = k->dy[pl] / 1.0f;
        return;
    }
    for (int64_t pl = p0; pl < p1; pl++) {
        const float g = k->dy[pl] / (float)hw;
        for (int64_t j = 0; j < hw; j++) k->dx[pl * hw + j] = g;
    }
}

#define GAVG_SMALL 8 /* planes below this size: the *_small loops */

et_status et_f32_global_avgpool_fwd(int64_t n, int64_t c, int64_t hw, const float *x, float *y,
                                    int nthreads) {
    if (n <= 0 || c <= 0 || hw <= 0 || !x || !y) return ET_ERR_ARG;
    pool_job k = {gavg_fwd_plane, NULL, NULL, x, NULL, y, NULL, 0, 0, hw, NAN, NAN};
    return run_planes(&k, n * c, hw < GAVG_SMALL ? gavg_fwd_small : NULL, nthreads);
}

et_status et_f32_global_avgpool_bwd(int64_t n, int64_t c, int64_t hw, const float *dy, float *dx,
                                    int nthreads) {
    if (n <= 0 || c <= 0 || hw <= 0 || !dy || !dx) return ET_ERR_ARG;
    pool_job k = {gavg_bwd_plane, NULL, NULL, NULL, dy, NULL, dx, 0, 0, hw, NAN, NAN};
    return run_planes(&k, n * c, hw < GAVG_SMALL ? gavg_bwd_small : NULL, nthreads);
}
