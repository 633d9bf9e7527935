/* edgetrain — depthwise 2-D convolution (groups == c, oc = k*c), direct kernels.
 *
 * Output channel o reads input channel o / k. Every variant shares the scalar drivers below;
 * an ISA only supplies two row primitives:
 *   row: out[j] += sum_t sum_kx wt[t][kx*wsx] * in[t][j*s + kx*d]  (j < cnt, all taps in bounds)
 *   dot: sum_j a[j] * b[j*s]
 * The drivers handle padding: the plane interior (all horizontal taps in bounds) goes to the
 * row primitive, the few edge columns are done with bounds checks.
 *   fwd        per (n, o) plane: y = bias; y += rows; act.
 *   bwd_input  per (n, ci) plane: stride 1 is a forward conv of dy with the flipped kernel
 *              (pads (k-1)*d - pad); other strides scatter dy into dx (scalar).
 *   bwd_weight per o: one dot per (tap, image, output row), summed in double. No reduction
 *              across threads, so the result does not depend on the thread count.
 * SIMD rows exist for stride 1 and 2 (stride 2 deinterleaves two vector loads); other strides
 * use the scalar rows.
 */
#include <string.h>

#include "conv_internal.h"

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>
#endif
#if defined(ET_HAVE_NEON)
#include <arm_neon.h>
#endif

#define DW_MAX_ROWS 8  /* kernel rows handed to one row call */
#define DW_MAX_TAPS 64 /* bwd_weight accumulators per pass */

typedef void (*dw_row_fn)(float *out, const float *const *in, const float *const *wt, int nt,
                          int64_t kw, int64_t wsx, int64_t s, int64_t d, int64_t cnt);
typedef float (*dw_dot_fn)(const float *a, const float *b, int64_t s, int64_t cnt);

/* A plane convolution out[oy, ox] += sum_{ky,kx} w0[ky*wsy + kx*wsx] *
 * in[oy*sh - pt + ky*dh, ox*sw - pl + kx*dw] (zero outside in). Negative pads are allowed
 * (bwd_input runs the flipped kernel with pads (k-1)*d - pad). */
typedef struct dw_geom {
    int64_t ih, iw, oh, ow;
    int64_t kh, kw, wsy, wsx;
    int64_t sh, sw, dh, dw, pt, pl;
} dw_geom;
typedef void (*dw_plane_fn)(const dw_geom *g, const float *in, const float *w0, float *out);
/* dwo[kh*kw] = weight gradient of output channel o. */
typedef void (*dw_wgrad_fn)(const et_conv2d_params *p, const float *dy, const float *x, int64_t o,
                            float *dwo);

/* ---- scalar rows ------------------------------------------------------------------------ */
static void dw_row_scalar(float *out, const float *const *in, const float *const *wt, int nt,
                          int64_t kw, int64_t wsx, int64_t s, int64_t d, int64_t j0, int64_t cnt) {
    for (int64_t j = j0; j < cnt; j++) {
        float acc = out[j];
        for (int t = 0; t < nt; t++) {
            const float *r = in[t] + j * s;
            for (int64_t kx = 0; kx < kw; kx++) acc += wt[t][kx * wsx] * r[kx * d];
        }
        out[j] = acc;
    }
}

static void dw_row__ref(float *out, const float *const *in, const float *const *wt, int nt,
                        int64_t kw, int64_t wsx, int64_t s, int64_t d, int64_t cnt) {
    dw_row_scalar(out, in, wt, nt, kw, wsx, s, d, 0, cnt);
}

static float dw_dot__ref(const float *a, const float *b, int64_t s, int64_t cnt) {
    float acc = 0.0f;
    for (int64_t j = 0; j < cnt; j++) acc += a[j] * b[j * s];
    return acc;
}

/* ---- drivers ---------------------------------------------------------------------------- */
/* Output columns [lo, hi) whose input index ox*s + off .. + span stays inside [0, iw). */
static void interior(int64_t off, int64_t span, int64_t s, int64_t iw, int64_t ow, int64_t *lo,
                     int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t num = iw - 1 - span - off;
    int64_t h = num < 0 ? 0 : num / s + 1;
    if (l > ow) l = ow;
    if (h > ow) h = ow;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* The plane convolution of dw_geom with a row primitive: interior by rows, edges scalar. */
static void dw_accum_plane(const dw_geom *g, const float *in, const float *w0, float *out,
                           dw_row_fn row) {
    const int64_t ih = g->ih, iw = g->iw, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw;
    const int64_t wsy = g->wsy, wsx = g->wsx, sh = g->sh, sw = g->sw, dh = g->dh, dw = g->dw;
    const int64_t pt = g->pt, pl = g->pl;
    int64_t lo, hi;
    interior(-pl, (kw - 1) * dw, sw, iw, ow, &lo, &hi);
    for (int64_t oy = 0; oy < oh; oy++) {
        float *orow = out + oy * ow;
        const float *rows[DW_MAX_ROWS], *wts[DW_MAX_ROWS];
        int nt = 0;
        for (int64_t ky = 0; ky < kh; ky++) {
            int64_t iy = oy * sh - pt + ky * dh;
            if (iy < 0 || iy >= ih) continue;
            const float *r = in + iy * iw, *wr = w0 + ky * wsy;
            /* edge columns, with bounds checks */
            for (int64_t ox = 0; ox < ow; ox++) {
                if (ox == lo) ox = hi;
                if (ox >= ow) break;
                float acc = orow[ox];
                for (int64_t kx = 0; kx < kw; kx++) {
                    int64_t ix = ox * sw - pl + kx * dw;
                    if (ix >= 0 && ix < iw) acc += wr[kx * wsx] * r[ix];
                }
                orow[ox] = acc;
            }
            if (hi > lo) {
                rows[nt] = r + lo * sw - pl;
                wts[nt] = wr;
                if (++nt == DW_MAX_ROWS) {
                    row(orow + lo, rows, wts, nt, kw, wsx, sw, dw, hi - lo);
                    nt = 0;
                }
            }
        }
        if (nt > 0) row(orow + lo, rows, wts, nt, kw, wsx, sw, dw, hi - lo);
    }
}

static void dw_fwd(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                   float *y, int nthreads, dw_plane_fn plane) {
    (void)nthreads; /* unused without OpenMP */
    const int64_t mult = p->oc / p->c, planes = p->n * p->oc;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow, ks = p->kh * p->kw;
    const dw_geom g = {p->h, p->w, p->oh, p->ow, p->kh, p->kw, p->kw, 1,
                       p->stride_h, p->stride_w, p->dil_h, p->dil_w, p->pad_t, p->pad_l};
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        int64_t i = pl / p->oc, o = pl % p->oc;
        const float *xp = x + (i * p->c + o / mult) * xs;
        float *yp = y + pl * ys;
        float bias = b ? b[o] : 0.0f;
        for (int64_t j = 0; j < ys; j++) yp[j] = bias;
        plane(&g, xp, w + o * ks, yp);
        if (p->act != ET_ACT_NONE) et_conv_bias_act_(yp, ys, 0.0f, p->act, p->act_alpha);
    }
}

/* dx plane += scatter of dy plane through kernel wk (any stride). */
static void dw_scatter_plane(const et_conv2d_params *p, const float *dyp, const float *wk, float *dxp) {
    for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ky = 0; ky < p->kh; ky++) {
            int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
            if (iy < 0 || iy >= p->h) continue;
            float *drow = dxp + iy * p->w;
            const float *g = dyp + oy * p->ow;
            for (int64_t kx = 0; kx < p->kw; kx++) {
                float wv = wk[ky * p->kw + kx];
                int64_t off = kx * p->dil_w - p->pad_l, lo, hi;
                interior(off, 0, p->stride_w, p->w, p->ow, &lo, &hi);
                for (int64_t ox = lo; ox < hi; ox++) drow[ox * p->stride_w + off] += wv * g[ox];
            }
        }
}

static void dw_bwd_input(const et_conv2d_params *p, const float *dy, const float *w, float *dx,
                         int nthreads, dw_plane_fn plane) {
    (void)nthreads; /* unused without OpenMP */
    const int64_t mult = p->oc / p->c, planes = p->n * p->c;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow, ks = p->kh * p->kw;
    /* stride 1: forward conv of dy with the flipped kernel */
    const int flip = plane != NULL && p->stride_h == 1 && p->stride_w == 1;
    const dw_geom g = {p->oh, p->ow, p->h, p->w, p->kh, p->kw, -p->kw, -1, 1, 1, p->dil_h, p->dil_w,
                       (p->kh - 1) * p->dil_h - p->pad_t, (p->kw - 1) * p->dil_w - p->pad_l};
    ET_PARALLEL_FOR(nthreads)
    for (int64_t pl = 0; pl < planes; pl++) {
        int64_t i = pl / p->c, ci = pl % p->c;
        float *dxp = dx + pl * xs;
        memset(dxp, 0, (size_t)xs * sizeof(float));
        for (int64_t m = 0; m < mult; m++) {
            int64_t o = ci * mult + m;
            const float *dyp = dy + (i * p->oc + o) * ys, *wk = w + o * ks;
            if (flip) {
                plane(&g, dyp, wk + ks - 1, dxp);
            } else {
                dw_scatter_plane(p, dyp, wk, dxp);
            }
        }
    }
}

/* Weight gradient of output channel o with a dot primitive: one dot per (tap, image, row). */
static void dw_wgrad_dot(const et_conv2d_params *p, const float *dy, const float *x, int64_t o,
                         float *dwo, dw_dot_fn dot) {
    const int64_t ci = o / (p->oc / p->c), ks = p->kh * p->kw;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow;
    for (int64_t t0 = 0; t0 < ks; t0 += DW_MAX_TAPS) {
        int64_t t1 = t0 + DW_MAX_TAPS < ks ? t0 + DW_MAX_TAPS : ks;
        double acc[DW_MAX_TAPS];
        for (int64_t t = t0; t < t1; t++) acc[t - t0] = 0.0;
        for (int64_t i = 0; i < p->n; i++) {
            const float *dyp = dy + (i * p->oc + o) * ys, *xp = x + (i * p->c + ci) * xs;
            for (int64_t oy = 0; oy < p->oh; oy++) {
                for (int64_t t = t0; t < t1; t++) {
                    int64_t ky = t / p->kw, kx = t % p->kw;
                    int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                    if (iy < 0 || iy >= p->h) continue;
                    int64_t off = kx * p->dil_w - p->pad_l, lo, hi;
                    interior(off, 0, p->stride_w, p->w, p->ow, &lo, &hi);
                    if (hi > lo)
                        acc[t - t0] += dot(dyp + oy * p->ow + lo, xp + iy * p->w + lo * p->stride_w + off,
                                           p->stride_w, hi - lo);
                }
            }
        }
        for (int64_t t = t0; t < t1; t++) dwo[t] = (float)acc[t - t0];
    }
}

static void dw_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x, float *dw,
                          int nthreads, dw_wgrad_fn wgrad) {
    (void)nthreads; /* unused without OpenMP */
    const int64_t ks = p->kh * p->kw;
    ET_PARALLEL_FOR(nthreads)
    for (int64_t o = 0; o < p->oc; o++) wgrad(p, dy, x, o, dw + o * ks);
}

/* ---- scalar variant ------------------------------------------------------------------- */
static void dw_plane__ref(const dw_geom *g, const float *in, const float *w0, float *out) {
    dw_accum_plane(g, in, w0, out, dw_row__ref);
}
static void dw_wgrad__ref(const et_conv2d_params *p, const float *dy, const float *x, int64_t o,
                          float *dwo) {
    dw_wgrad_dot(p, dy, x, o, dwo, dw_dot__ref);
}

et_status et_f32_dwconv2d_fwd__ref(const et_conv2d_params *p, const float *x, const float *w,
                                   const float *b, float *y, int nthreads) {
    dw_fwd(p, x, w, b, y, nthreads, dw_plane__ref);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_input__ref(const et_conv2d_params *p, const float *dy,
                                         const float *w, float *dx, int nthreads) {
    dw_bwd_input(p, dy, w, dx, nthreads, NULL); /* scatter for every stride */
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_weight__ref(const et_conv2d_params *p, const float *dy,
                                          const float *x, float *dw, int nthreads) {
    dw_bwd_weight(p, dy, x, dw, nthreads, dw_wgrad__ref);
    return ET_OK;
}

/* ---- AVX2 ------------------------------------------------------------------------------ */
#if defined(ET_HAVE_X86_SIMD)
/* Even elements of q[0..15]. */
ET_TARGET_AVX2 static inline __m256 evens8(const float *q) {
    __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(q + 8), 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
}

ET_TARGET_AVX2 static void dw_row__avx2(float *out, const float *const *in, const float *const *wt,
                                        int nt, int64_t kw, int64_t wsx, int64_t s, int64_t d,
                                        int64_t cnt) {
    int64_t j = 0;
    if (s == 1) {
        for (; j + 16 <= cnt; j += 16) {
            __m256 a0 = _mm256_loadu_ps(out + j), a1 = _mm256_loadu_ps(out + j + 8);
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + j;
                for (int64_t kx = 0; kx < kw; kx++) {
                    __m256 wv = _mm256_set1_ps(wt[t][kx * wsx]);
                    a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r + kx * d), a0);
                    a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r + kx * d + 8), a1);
                }
            }
            _mm256_storeu_ps(out + j, a0);
            _mm256_storeu_ps(out + j + 8, a1);
        }
        for (; j + 8 <= cnt; j += 8) {
            __m256 a0 = _mm256_loadu_ps(out + j);
            for (int t = 0; t < nt; t++)
                for (int64_t kx = 0; kx < kw; kx++)
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(wt[t][kx * wsx]),
                                         _mm256_loadu_ps(in[t] + j + kx * d), a0);
            _mm256_storeu_ps(out + j, a0);
        }
    } else if (s == 2) {
        /* evens8 reads one element past the last one used: keep one output in reserve. */
        for (; j + 8 <= cnt - 1; j += 8) {
            __m256 a0 = _mm256_loadu_ps(out + j), a1 = _mm256_setzero_ps();
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + 2 * j;
                int64_t kx = 0;
                for (; kx + 2 <= kw; kx += 2) {
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(wt[t][kx * wsx]), evens8(r + kx * d), a0);
                    a1 = _mm256_fmadd_ps(_mm256_set1_ps(wt[t][(kx + 1) * wsx]),
                                         evens8(r + (kx + 1) * d), a1);
                }
                if (kx < kw) a0 = _mm256_fmadd_ps(_mm256_set1_ps(wt[t][kx * wsx]), evens8(r + kx * d), a0);
            }
            _mm256_storeu_ps(out + j, _mm256_add_ps(a0, a1));
        }
    }
    dw_row_scalar(out, in, wt, nt, kw, wsx, s, d, j, cnt);
}

ET_TARGET_AVX2 static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ET_TARGET_AVX2 static float dw_dot__avx2(const float *a, const float *b, int64_t s, int64_t cnt) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t j = 0;
    if (s == 1) {
        for (; j + 16 <= cnt; j += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), a1);
        }
        for (; j + 8 <= cnt; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), a0);
    } else if (s == 2) {
        for (; j + 8 <= cnt - 1; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), evens8(b + 2 * j), a0);
    }
    float acc = hsum8(_mm256_add_ps(a0, a1));
    for (; j < cnt; j++) acc += a[j] * b[j * s];
    return acc;
}

static void dw_plane__avx2(const dw_geom *g, const float *in, const float *w0, float *out) {
    dw_accum_plane(g, in, w0, out, dw_row__avx2);
}
static void dw_wgrad__avx2(const et_conv2d_params *p, const float *dy, const float *x, int64_t o,
                          float *dwo) {
    dw_wgrad_dot(p, dy, x, o, dwo, dw_dot__avx2);
}

et_status et_f32_dwconv2d_fwd__avx2(const et_conv2d_params *p, const float *x, const float *w,
                                    const float *b, float *y, int nthreads) {
    dw_fwd(p, x, w, b, y, nthreads, dw_plane__avx2);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_input__avx2(const et_conv2d_params *p, const float *dy,
                                          const float *w, float *dx, int nthreads) {
    dw_bwd_input(p, dy, w, dx, nthreads, dw_plane__avx2);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_weight__avx2(const et_conv2d_params *p, const float *dy,
                                           const float *x, float *dw, int nthreads) {
    dw_bwd_weight(p, dy, x, dw, nthreads, dw_wgrad__avx2);
    return ET_OK;
}

/* ---- AVX-512 --------------------------------------------------------------------------- */
ET_TARGET_AVX512 static inline __m512 evens16(const float *q) {
    const __m512i idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(q), idx, _mm512_loadu_ps(q + 16));
}

/* AVX-512: wide planes use the row driver (measured faster on Zen 4 for ow >= 32). Narrow
 * planes (7, 14, 28 wide in MobileNetV2) and the weight gradient use masked loads instead:
 * lanes whose input falls in the padding are masked off (masked lanes never fault), so there
 * are no scalar edge loops and several 16-wide output pieces run as independent FMA chains. */
ET_TARGET_AVX512 static void dw_row__avx512(float *out, const float *const *in,
                                            const float *const *wt, int nt, int64_t kw, int64_t wsx,
                                            int64_t s, int64_t d, int64_t cnt) {
    int64_t j = 0;
    if (s == 1) {
        for (; j + 32 <= cnt; j += 32) {
            __m512 a0 = _mm512_loadu_ps(out + j), a1 = _mm512_loadu_ps(out + j + 16);
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + j;
                for (int64_t kx = 0; kx < kw; kx++) {
                    __m512 wv = _mm512_set1_ps(wt[t][kx * wsx]);
                    a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r + kx * d), a0);
                    a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r + kx * d + 16), a1);
                }
            }
            _mm512_storeu_ps(out + j, a0);
            _mm512_storeu_ps(out + j + 16, a1);
        }
        for (; j < cnt; j += 16) { /* masked tail: loads past the row are suppressed */
            __mmask16 m = cnt - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cnt - j)) - 1);
            __m512 a0 = _mm512_maskz_loadu_ps(m, out + j);
            for (int t = 0; t < nt; t++)
                for (int64_t kx = 0; kx < kw; kx++)
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(wt[t][kx * wsx]),
                                         _mm512_maskz_loadu_ps(m, in[t] + j + kx * d), a0);
            _mm512_mask_storeu_ps(out + j, m, a0);
        }
        return;
    }
    if (s == 2) {
        for (; j + 16 <= cnt - 1; j += 16) {
            __m512 a0 = _mm512_loadu_ps(out + j), a1 = _mm512_setzero_ps();
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + 2 * j;
                int64_t kx = 0;
                for (; kx + 2 <= kw; kx += 2) {
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(wt[t][kx * wsx]), evens16(r + kx * d), a0);
                    a1 = _mm512_fmadd_ps(_mm512_set1_ps(wt[t][(kx + 1) * wsx]),
                                         evens16(r + (kx + 1) * d), a1);
                }
                if (kx < kw) a0 = _mm512_fmadd_ps(_mm512_set1_ps(wt[t][kx * wsx]), evens16(r + kx * d), a0);
            }
            _mm512_storeu_ps(out + j, _mm512_add_ps(a0, a1));
        }
    }
    dw_row_scalar(out, in, wt, nt, kw, wsx, s, d, j, cnt);
}

/* Lanes [a, b) as a load mask: 16 bits for stride 1, 32 bits (elements [2a, 2b-1)) for
 * stride 2; 0 if empty. */
static inline uint64_t lane_mask(int64_t s, int64_t a, int64_t b) {
    if (a >= b) return 0;
    if (s == 1) return ((1ull << b) - 1) & ~((1ull << a) - 1);
    return ((1ull << (2 * b - 1)) - 1) & ~((1ull << (2 * a)) - 1);
}

ET_TARGET_AVX512 static inline __m512 load_masked(const float *base, int64_t s, uint64_t m) {
    if (s == 1) return _mm512_maskz_loadu_ps((__mmask16)m, base);
    const __m512i idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps((__mmask16)m, base), idx,
                                  _mm512_maskz_loadu_ps((__mmask16)(m >> 16), base + 16));
}

#define DW_UNITS 4 /* 16-wide output pieces computed together (independent FMA chains) */

ET_TARGET_AVX512 static void dw_plane__avx512(const dw_geom *g, const float *in, const float *w0,
                                              float *out) {
    if (g->ow >= 32 || (g->sw != 1 && g->sw != 2) || g->kw > 16) { /* wide rows: row driver */
        dw_accum_plane(g, in, w0, out, dw_row__avx512);
        return;
    }
    int64_t lo[16], hi[16]; /* per kx, output columns with the input inside the row */
    for (int64_t kx = 0; kx < g->kw; kx++) interior(kx * g->dw - g->pl, 0, g->sw, g->iw, g->ow, &lo[kx], &hi[kx]);
    const int64_t chunks = (g->ow + 15) / 16, units = g->oh * chunks;
    for (int64_t u0 = 0; u0 < units; u0 += DW_UNITS) {
        int64_t oy[DW_UNITS], j0[DW_UNITS];
        uint64_t m[DW_UNITS][16];
        __mmask16 mo[DW_UNITS];
        __m512 acc[DW_UNITS];
        for (int k = 0; k < DW_UNITS; k++) {
            int64_t u = u0 + k < units ? u0 + k : u0; /* past the end: recompute unit u0, not stored */
            oy[k] = u / chunks;
            j0[k] = (u % chunks) * 16;
            int64_t n = g->ow - j0[k] < 16 ? g->ow - j0[k] : 16;
            mo[k] = u0 + k < units ? (__mmask16)((1u << n) - 1u) : 0;
            for (int64_t kx = 0; kx < g->kw; kx++) {
                int64_t a = lo[kx] - j0[k] > 0 ? lo[kx] - j0[k] : 0;
                int64_t b = hi[kx] - j0[k] < n ? hi[kx] - j0[k] : n;
                m[k][kx] = lane_mask(g->sw, a, b);
            }
            acc[k] = _mm512_maskz_loadu_ps(mo[k], out + oy[k] * g->ow + j0[k]);
        }
        for (int64_t ky = 0; ky < g->kh; ky++) {
            const float *wr = w0 + ky * g->wsy;
            const float *r[DW_UNITS];
            int valid[DW_UNITS];
            for (int k = 0; k < DW_UNITS; k++) {
                int64_t iy = oy[k] * g->sh - g->pt + ky * g->dh;
                valid[k] = iy >= 0 && iy < g->ih;
                /* address arithmetic only; lanes outside the row are masked off */
                r[k] = in + (valid[k] ? iy : 0) * g->iw + j0[k] * g->sw - g->pl;
            }
            for (int64_t kx = 0; kx < g->kw; kx++) {
                __m512 wv = _mm512_set1_ps(wr[kx * g->wsx]);
                for (int k = 0; k < DW_UNITS; k++)
                    if (valid[k]) acc[k] = _mm512_fmadd_ps(wv, load_masked(r[k] + kx * g->dw, g->sw, m[k][kx]), acc[k]);
            }
        }
        for (int k = 0; k < DW_UNITS; k++) _mm512_mask_storeu_ps(out + oy[k] * g->ow + j0[k], mo[k], acc[k]);
    }
}

ET_TARGET_AVX512 static void dw_wgrad__avx512(const et_conv2d_params *p, const float *dy,
                                              const float *x, int64_t o, float *dwo) {
    const int64_t sw = p->stride_w;
    if (sw != 1 && sw != 2) {
        dw_wgrad_dot(p, dy, x, o, dwo, dw_dot__ref);
        return;
    }
    const int64_t ci = o / (p->oc / p->c), xs = p->h * p->w, ys = p->oh * p->ow;
    for (int64_t ky = 0; ky < p->kh; ky++)
        for (int64_t kx = 0; kx < p->kw; kx++) {
            int64_t off = kx * p->dil_w - p->pad_l, lo, hi;
            interior(off, 0, sw, p->w, p->ow, &lo, &hi);
            double acc = 0.0;
            for (int64_t i = 0; i < p->n && hi > lo; i++) {
                const float *dyp = dy + (i * p->oc + o) * ys, *xp = x + (i * p->c + ci) * xs;
                __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
                for (int64_t oy = 0; oy < p->oh; oy++) {
                    int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                    if (iy < 0 || iy >= p->h) continue;
                    const float *gr = dyp + oy * p->ow, *xr = xp + iy * p->w + off;
                    for (int64_t j0 = lo; j0 < hi; j0 += 16) {
                        int64_t n = hi - j0 < 16 ? hi - j0 : 16;
                        __m512 gv = _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), gr + j0);
                        a0 = _mm512_fmadd_ps(gv, load_masked(xr + j0 * sw, sw, lane_mask(sw, 0, n)), a0);
                    }
                    __m512 t = a0; /* alternate accumulators between rows */
                    a0 = a1;
                    a1 = t;
                }
                acc += (double)_mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
            }
            dwo[ky * p->kw + kx] = (float)acc;
        }
}

et_status et_f32_dwconv2d_fwd__avx512(const et_conv2d_params *p, const float *x, const float *w,
                                      const float *b, float *y, int nthreads) {
    dw_fwd(p, x, w, b, y, nthreads, dw_plane__avx512);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_input__avx512(const et_conv2d_params *p, const float *dy,
                                            const float *w, float *dx, int nthreads) {
    dw_bwd_input(p, dy, w, dx, nthreads, dw_plane__avx512);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_weight__avx512(const et_conv2d_params *p, const float *dy,
                                             const float *x, float *dw, int nthreads) {
    dw_bwd_weight(p, dy, x, dw, nthreads, dw_wgrad__avx512);
    return ET_OK;
}
#endif /* ET_HAVE_X86_SIMD */

/* ---- NEON ------------------------------------------------------------------------------ */
#if defined(ET_HAVE_NEON)
static void dw_row__neon(float *out, const float *const *in, const float *const *wt, int nt,
                         int64_t kw, int64_t wsx, int64_t s, int64_t d, int64_t cnt) {
    int64_t j = 0;
    if (s == 1) {
        for (; j + 8 <= cnt; j += 8) {
            float32x4_t a0 = vld1q_f32(out + j), a1 = vld1q_f32(out + j + 4);
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + j;
                for (int64_t kx = 0; kx < kw; kx++) {
                    float wv = wt[t][kx * wsx];
                    a0 = vfmaq_n_f32(a0, vld1q_f32(r + kx * d), wv);
                    a1 = vfmaq_n_f32(a1, vld1q_f32(r + kx * d + 4), wv);
                }
            }
            vst1q_f32(out + j, a0);
            vst1q_f32(out + j + 4, a1);
        }
    } else if (s == 2) {
        for (; j + 4 <= cnt - 1; j += 4) {
            float32x4_t a0 = vld1q_f32(out + j);
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + 2 * j;
                for (int64_t kx = 0; kx < kw; kx++)
                    a0 = vfmaq_n_f32(a0, vld2q_f32(r + kx * d).val[0], wt[t][kx * wsx]);
            }
            vst1q_f32(out + j, a0);
        }
    }
    dw_row_scalar(out, in, wt, nt, kw, wsx, s, d, j, cnt);
}

static float dw_dot__neon(const float *a, const float *b, int64_t s, int64_t cnt) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int64_t j = 0;
    if (s == 1) {
        for (; j + 8 <= cnt; j += 8) {
            a0 = vfmaq_f32(a0, vld1q_f32(a + j), vld1q_f32(b + j));
            a1 = vfmaq_f32(a1, vld1q_f32(a + j + 4), vld1q_f32(b + j + 4));
        }
    } else if (s == 2) {
        for (; j + 4 <= cnt - 1; j += 4) a0 = vfmaq_f32(a0, vld1q_f32(a + j), vld2q_f32(b + 2 * j).val[0]);
    }
    float acc = vaddvq_f32(vaddq_f32(a0, a1));
    for (; j < cnt; j++) acc += a[j] * b[j * s];
    return acc;
}

static void dw_plane__neon(const dw_geom *g, const float *in, const float *w0, float *out) {
    dw_accum_plane(g, in, w0, out, dw_row__neon);
}
static void dw_wgrad__neon(const et_conv2d_params *p, const float *dy, const float *x, int64_t o,
                          float *dwo) {
    dw_wgrad_dot(p, dy, x, o, dwo, dw_dot__neon);
}

et_status et_f32_dwconv2d_fwd__neon(const et_conv2d_params *p, const float *x, const float *w,
                                    const float *b, float *y, int nthreads) {
    dw_fwd(p, x, w, b, y, nthreads, dw_plane__neon);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_input__neon(const et_conv2d_params *p, const float *dy,
                                          const float *w, float *dx, int nthreads) {
    dw_bwd_input(p, dy, w, dx, nthreads, dw_plane__neon);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_weight__neon(const et_conv2d_params *p, const float *dy,
                                           const float *x, float *dw, int nthreads) {
    dw_bwd_weight(p, dy, x, dw, nthreads, dw_wgrad__neon);
    return ET_OK;
}
#endif /* ET_HAVE_NEON */

/* ---- dispatch ------------------------------------------------------------------------- */
et_status et_f32_dwconv2d_fwd(const et_conv2d_params *p, const float *x, const float *w,
                              const float *b, float *y, int nthreads) {
    switch (et_get_isa()) {
#if defined(ET_HAVE_X86_SIMD)
    case ET_ISA_AVX512: return et_f32_dwconv2d_fwd__avx512(p, x, w, b, y, nthreads);
    case ET_ISA_AVX2: return et_f32_dwconv2d_fwd__avx2(p, x, w, b, y, nthreads);
#endif
#if defined(ET_HAVE_NEON)
    case ET_ISA_NEON: return et_f32_dwconv2d_fwd__neon(p, x, w, b, y, nthreads);
#endif
    default: return et_f32_dwconv2d_fwd__ref(p, x, w, b, y, nthreads);
    }
}

et_status et_f32_dwconv2d_bwd_input(const et_conv2d_params *p, const float *dy, const float *w,
                                    float *dx, int nthreads) {
    switch (et_get_isa()) {
#if defined(ET_HAVE_X86_SIMD)
    case ET_ISA_AVX512: return et_f32_dwconv2d_bwd_input__avx512(p, dy, w, dx, nthreads);
    case ET_ISA_AVX2: return et_f32_dwconv2d_bwd_input__avx2(p, dy, w, dx, nthreads);
#endif
#if defined(ET_HAVE_NEON)
    case ET_ISA_NEON: return et_f32_dwconv2d_bwd_input__neon(p, dy, w, dx, nthreads);
#endif
    default: return et_f32_dwconv2d_bwd_input__ref(p, dy, w, dx, nthreads);
    }
}

et_status et_f32_dwconv2d_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x,
                                     float *dw, int nthreads) {
    switch (et_get_isa()) {
#if defined(ET_HAVE_X86_SIMD)
    case ET_ISA_AVX512: return et_f32_dwconv2d_bwd_weight__avx512(p, dy, x, dw, nthreads);
    case ET_ISA_AVX2: return et_f32_dwconv2d_bwd_weight__avx2(p, dy, x, dw, nthreads);
#endif
#if defined(ET_HAVE_NEON)
    case ET_ISA_NEON: return et_f32_dwconv2d_bwd_weight__neon(p, dy, x, dw, nthreads);
#endif
    default: return et_f32_dwconv2d_bwd_weight__ref(p, dy, x, dw, nthreads);
    }
}
