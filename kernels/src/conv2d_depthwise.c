/* edgetrain — depthwise 2-D convolution (groups == c, oc = k*c), direct kernels.
 *
 * Output channel o reads input channel o / k. Every variant shares the scalar drivers below;
 * an ISA only supplies three row primitives:
 *   row: out[j] += sum_t sum_kx wt[t][kx*wsx] * in[t][j*s + kx*d]  (j < cnt, all taps in bounds)
 *   lanes: acc[j % 16] += g[j] * x[j*s] (the weight gradient's rows, dw_wgrad_canon, and its
 *          flat planes on tap buffers, dw_wgrad_flat_vec)
 *   cols: dst[j] = x[j*s] (filling those tap buffers)
 * The drivers handle padding: the plane interior (all horizontal taps in bounds) goes to the
 * row primitive, the few edge columns are done with bounds checks.
 *   fwd        per (n, o) plane: y = bias; y += rows; act.
 *   bwd_input  per (n, ci) plane: stride 1 is a forward conv of dy with the flipped kernel
 *              (pads (k-1)*d - pad); other strides scatter dy into dx (scalar).
 *   bwd_weight per o: dw_wgrad_canon. No reduction across threads, so the result does not
 *              depend on the thread count.
 * SIMD rows exist for stride 1 and 2 (stride 2 deinterleaves two vector loads); other strides
 * use the scalar rows.
 * Bits: x86 (any ISA) and arm64 compute the same bits, __ref included (the kernel test
 * "dwbits" compares every variant with __ref byte for byte). Every multiply-add is one fused
 * fmaf / vector FMA (the build has -ffp-contract=off, so nothing else is fused), in one order:
 *   fwd        per output one chain from the bias (+0 without one) over the taps whose input
 *              exists, (ky, kx) ascending; then et_conv_epilogue_ (BatchNorm as mul then add).
 *   bwd_input  per dx element one chain from +0: channel multiplier m ascending, then the taps
 *              whose dy exists in (ky, kx) ascending order (dy positions descending: the
 *              flipped-kernel conv runs its taps backwards, g->rev; the scatter runs oy
 *              downwards).
 *   bwd_weight the AVX-512 kernels' lane structure, see dw_wgrad_canon.
 * A padding tap some paths add as w * 0 changes only a chain at -0 (a bias of -0) or a
 * non-finite weight.
 * AVX-512 replaces the drivers where it can: the forward with stride 2 on narrow planes (input
 * rows <= 16 floats, output rows 4..8) on permuted row pairs (dwq), the other stride-2 3x3
 * forwards with output rows >= DW3_MIN_OW on rows split into their taps in registers (dw3),
 * planes of at most DWS_MAX_HW elements (channel multiplier 1; stride 2 only with output rows
 * < DWS_S2_MIN_OW) on the flat table path (dws), larger stride-1 3x3 forwards on bands of rows
 * streamed through registers (dw1), other larger forward / stride-1 input-gradient planes on
 * the padded-plane path (dwp). All add each output's taps in (ky, kx) order in one FMA chain
 * (kernels/tests/test_conv.c and test_dwbits.c check the forward's bits).
 * Bias and activation of the forward (where a fused epilogue goes): dws, dwq, dw3, dw1 and dwp
 * start their accumulators at the bias and apply a fused BatchNorm with relu / relu6 / no act
 * in registers before the store (dws_bn_act), other epilogues after the plane; the generic
 * drivers (__ref, AVX2, NEON) fill the output plane with the bias before the plane and apply
 * the epilogue after it (dw_fwd_planes). AVX2 runs the forward of planes of at most DWS_MAX_HW
 * elements on the AVX-512 section's table too (dws2: 8-lane halves of its chunks), and dw3's
 * and dw1's shapes on their 8-lane twins (dw3_fwd_planes__avx2, dw1_fwd_planes__avx2).
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
/* The AVX-512 flat path (dws): channel multiplier 1, at most DWS_MAX_TAPS taps, planes of at
 * most DWS_MAX_HW elements. The weight gradient's order depends on it (dw_wgrad_canon). */
#define DWS_MAX_TAPS 16
#define DWS_MAX_HW 1024

typedef void (*dw_row_fn)(float *out, const float *const *in, const float *const *wt, int nt,
                          int64_t kw, int64_t wsx, int64_t s, int64_t d, int64_t cnt);
typedef float (*dw_dot_fn)(const float *a, const float *b, int64_t s, int64_t cnt);

/* A plane convolution out[oy, ox] += sum_{ky,kx} w0[ky*wsy + kx*wsx] *
 * in[oy*sh - pt + ky*dh, ox*sw - pl + kx*dw] (zero outside in). Negative pads are allowed
 * (bwd_input runs the flipped kernel with pads (k-1)*d - pad). */
struct dwp_plan;
typedef struct dw_geom {
    int64_t ih, iw, oh, ow;
    int64_t kh, kw, wsy, wsx;
    int64_t sh, sw, dh, dw, pt, pl;
    const struct dwp_plan *plan; /* AVX-512 padded-plane plan for this geometry, or NULL */
    int rev; /* 1: add the taps in descending (ky, kx) order (the flipped kernel of bwd_input) */
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
            for (int64_t kx = 0; kx < kw; kx++) acc = fmaf(wt[t][kx * wsx], r[kx * d], acc);
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
    for (int64_t j = 0; j < cnt; j++) acc = fmaf(a[j], b[j * s], acc);
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

/* The plane convolution of dw_geom with a row primitive: interior by rows, edges scalar.
 * g->rev: the rows in descending ky, each handed to the row primitive from its last tap with
 * negated steps (so kx descending too). */
static void dw_accum_plane(const dw_geom *g, const float *in, const float *w0, float *out,
                           dw_row_fn row) {
    const int64_t ih = g->ih, iw = g->iw, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw;
    const int64_t wsy = g->wsy, wsx = g->wsx, sh = g->sh, sw = g->sw, dh = g->dh, dw = g->dw;
    const int64_t pt = g->pt, pl = g->pl, rev = g->rev;
    const int64_t last = rev ? kw - 1 : 0; /* the row primitive's first tap */
    int64_t lo, hi;
    interior(-pl, (kw - 1) * dw, sw, iw, ow, &lo, &hi);
    for (int64_t oy = 0; oy < oh; oy++) {
        float *orow = out + oy * ow;
        const float *rows[DW_MAX_ROWS], *wts[DW_MAX_ROWS];
        int nt = 0;
        for (int64_t q = 0; q < kh; q++) {
            const int64_t ky = rev ? kh - 1 - q : q;
            int64_t iy = oy * sh - pt + ky * dh;
            if (iy < 0 || iy >= ih) continue;
            const float *r = in + iy * iw, *wr = w0 + ky * wsy;
            /* edge columns, with bounds checks */
            for (int64_t ox = 0; ox < ow; ox++) {
                if (ox == lo) ox = hi;
                if (ox >= ow) break;
                float acc = orow[ox];
                for (int64_t qx = 0; qx < kw; qx++) {
                    const int64_t kx = rev ? kw - 1 - qx : qx;
                    int64_t ix = ox * sw - pl + kx * dw;
                    if (ix >= 0 && ix < iw) acc = fmaf(wr[kx * wsx], r[ix], acc);
                }
                orow[ox] = acc;
            }
            if (hi > lo) {
                rows[nt] = r + lo * sw - pl + last * dw;
                wts[nt] = wr + last * wsx;
                if (++nt == DW_MAX_ROWS) {
                    row(orow + lo, rows, wts, nt, kw, rev ? -wsx : wsx, sw, rev ? -dw : dw, hi - lo);
                    nt = 0;
                }
            }
        }
        if (nt > 0) row(orow + lo, rows, wts, nt, kw, rev ? -wsx : wsx, sw, rev ? -dw : dw, hi - lo);
    }
}

/* One job of the generic paths: planes (fwd, bwd_input) or output channels (bwd_weight), each
 * computed on its own, so any split gives the same bits. */
typedef struct dw_job {
    const et_conv2d_params *p;
    const dw_geom *g;
    dw_plane_fn plane;
    dw_wgrad_fn wgrad;
    const float *x, *w, *b, *dy;
    float *out;
    int flip;
} dw_job;

/* Inlined into each variant's planes job (dw_fwd_planes__X carries the ISA's target, so the
 * bias fill and the epilogue's loops are vectorised for it; elementwise, the same bits). */
static inline __attribute__((always_inline)) void dw_fwd_planes_body(void *ctx, int64_t p0, int64_t p1,
                                                                     int tid) {
    const dw_job *k = (const dw_job *)ctx;
    const et_conv2d_params *p = k->p;
    const float *x = k->x, *w = k->w, *b = k->b;
    float *y = k->out;
    const int64_t mult = p->oc / p->c;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow, ks = p->kh * p->kw;
    (void)tid;
    for (int64_t pl = p0; pl < p1; pl++) {
        int64_t i = pl / p->oc, o = pl % p->oc;
        const float *xp = x + (i * p->c + o / mult) * xs;
        float *yp = y + pl * ys;
        float bias = b ? b[o] : 0.0f;
        for (int64_t j = 0; j < ys; j++) yp[j] = bias;
        k->plane(k->g, xp, w + o * ks, yp);
        if (p->act != ET_ACT_NONE || p->bn_scale) et_conv_epilogue_(p, o, 0.0f, yp, ys);
    }
}

static void dw_fwd_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    dw_fwd_planes_body(ctx, p0, p1, tid);
}

typedef void (*dw_planes_job)(void *ctx, int64_t p0, int64_t p1, int tid);

static dw_geom dw_fwd_geom(const et_conv2d_params *p) {
    const dw_geom g = {p->h, p->w, p->oh, p->ow, p->kh, p->kw, p->kw, 1,
                       p->stride_h, p->stride_w, p->dil_h, p->dil_w, p->pad_t, p->pad_l, NULL, 0};
    return g;
}

/* The flipped-kernel geometry of the stride-1 input gradient (see dw_bwd_input). */
static dw_geom dw_flip_geom(const et_conv2d_params *p) {
    const dw_geom g = {p->oh, p->ow, p->h, p->w, p->kh, p->kw, -p->kw, -1, 1, 1, p->dil_h, p->dil_w,
                       (p->kh - 1) * p->dil_h - p->pad_t, (p->kw - 1) * p->dil_w - p->pad_l, NULL, 1};
    return g;
}

/* g: dw_fwd_geom(p), possibly with a plan. */
static void dw_fwd_g(const et_conv2d_params *p, const dw_geom *gp, const float *x, const float *w,
                     const float *b, float *y, int nthreads, dw_plane_fn plane, dw_planes_job job) {
    const int64_t planes = p->n * p->oc;
    const dw_geom g = *gp;
    dw_job k = {p, &g, plane, NULL, x, w, b, NULL, y, 0};
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, job, &k);
}

static void dw_fwd(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                   float *y, int nthreads, dw_plane_fn plane, dw_planes_job job) {
    const dw_geom g = dw_fwd_geom(p);
    dw_fwd_g(p, &g, x, w, b, y, nthreads, plane, job);
}

/* dx plane += scatter of dy plane through kernel wk (any stride). */
static void dw_scatter_plane(const et_conv2d_params *p, const float *dyp, const float *wk, float *dxp) {
    for (int64_t oy = p->oh - 1; oy >= 0; oy--) /* per dx element: ky ascending */
        for (int64_t ky = 0; ky < p->kh; ky++) {
            int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
            if (iy < 0 || iy >= p->h) continue;
            float *drow = dxp + iy * p->w;
            const float *g = dyp + oy * p->ow;
            for (int64_t kx = 0; kx < p->kw; kx++) { /* ox descending: kx ascending */
                float wv = wk[ky * p->kw + kx];
                int64_t off = kx * p->dil_w - p->pad_l, lo, hi;
                interior(off, 0, p->stride_w, p->w, p->ow, &lo, &hi);
                for (int64_t ox = lo; ox < hi; ox++) {
                    float *d = drow + ox * p->stride_w + off;
                    *d = fmaf(wv, g[ox], *d);
                }
            }
        }
}

static void dw_bwd_input_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    const dw_job *k = (const dw_job *)ctx;
    const et_conv2d_params *p = k->p;
    const float *dy = k->dy, *w = k->w;
    float *dx = k->out;
    const int64_t mult = p->oc / p->c;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow, ks = p->kh * p->kw;
    (void)tid;
    for (int64_t pl = p0; pl < p1; pl++) {
        int64_t i = pl / p->c, ci = pl % p->c;
        float *dxp = dx + pl * xs;
        memset(dxp, 0, (size_t)xs * sizeof(float));
        for (int64_t m = 0; m < mult; m++) {
            int64_t o = ci * mult + m;
            const float *dyp = dy + (i * p->oc + o) * ys, *wk = w + o * ks;
            if (k->flip) {
                k->plane(k->g, dyp, wk + ks - 1, dxp);
            } else {
                dw_scatter_plane(p, dyp, wk, dxp);
            }
        }
    }
}

/* g: dw_flip_geom(p), possibly with a plan. */
static void dw_bwd_input_g(const et_conv2d_params *p, const dw_geom *gp, const float *dy,
                           const float *w, float *dx, int nthreads, dw_plane_fn plane) {
    const int64_t planes = p->n * p->c;
    /* stride 1: forward conv of dy with the flipped kernel */
    const int flip = plane != NULL && p->stride_h == 1 && p->stride_w == 1;
    const dw_geom g = *gp;
    dw_job k = {p, &g, plane, NULL, NULL, w, NULL, dy, dx, flip};
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, dw_bwd_input_planes, &k);
}

static void dw_bwd_input(const et_conv2d_params *p, const float *dy, const float *w, float *dx,
                         int nthreads, dw_plane_fn plane) {
    const dw_geom g = dw_flip_geom(p);
    dw_bwd_input_g(p, &g, dy, w, dx, nthreads, plane);
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

/* ---- the weight gradient's canonical order ---------------------------------------------
 * Every variant computes these bits (the AVX-512 kernels' order; here in scalar fmaf, the SIMD
 * variants' lane primitive vectorises the rows case and, on tap buffers, the flat case:
 * dw_wgrad_flat_vec). Per output channel o and tap (ky, kx):
 *   flat (dw_flat_ok): 16 float lanes; lane e % 16 takes output position e of each image
 *     (images, then e, ascending; positions whose input is padding skipped) in one fmaf chain;
 *     oh * ow > 8: the lanes summed in dw_sum16's tree; oh * ow <= 8 (the AVX-512 vector holds
 *     several channels): the oh * ow lanes added in order.
 *   rows (stride along x 1 or 2): per image two 16-lane sets, used by turns for the output rows
 *     whose input row exists; lane (ox - lo) % 16 of a row (lo: the first output column whose
 *     input is inside); per image dw_sum16(set0 + set1), added in double over the images.
 *   other strides along x: dw_wgrad_dot with dw_dot__ref (one fmaf chain per image row).
 * A skipped lane or position would add g * 0 to an accumulator that starts at +0 and so is
 * never -0: no change (for finite g). */
static int dw_flat_ok(const et_conv2d_params *p, int64_t hw) {
    return p->oc == p->c && p->kh * p->kw <= DWS_MAX_TAPS && hw <= DWS_MAX_HW;
}

/* The 16 lanes of a vector summed as _mm512_reduce_add_ps does in GCC: halves, quarters,
 * then (0 + 2) + (1 + 3). */
static inline float dw_sum16(const float *v) {
    float a[8], b[4];
    for (int i = 0; i < 8; i++) a[i] = v[i + 8] + v[i];
    for (int i = 0; i < 4; i++) b[i] = a[i + 4] + a[i];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* acc[j % 16] = fmaf(g[j], x[j * s], acc[j % 16]) for j < cnt in order (s = 1 or 2). */
typedef void (*dw_lanes_fn)(float *acc, const float *g, const float *x, int64_t s, int64_t cnt);

static void dw_lanes__ref(float *acc, const float *g, const float *x, int64_t s, int64_t cnt) {
    for (int64_t j = 0; j < cnt; j++) acc[j & 15] = fmaf(g[j], x[j * s], acc[j & 15]);
}

/* Inlined into each variant's wgrad (dw_wgrad__X carries the ISA's target, so fmaf is one FMA
 * instruction there). */
#define DW_INLINE static inline __attribute__((always_inline))

/* Output columns [lo, hi) whose input column exists for tap column kx. */
static inline void dw_flat_cols(const et_conv2d_params *p, int64_t kx, int64_t *lo, int64_t *hi) {
    interior(kx * p->dil_w - p->pad_l, 0, p->stride_w, p->w, p->ow, lo, hi);
}

/* One image's positions of tap (ky, kx) into the 16 lanes, in the canonical order (g, xp: the
 * image's dy and x planes of the channel; lo, hi: dw_flat_cols). */
DW_INLINE void dw_flat_image(const et_conv2d_params *p, const float *g, const float *xp, int64_t ky,
                             int64_t kx, int64_t lo, int64_t hi, float *lane) {
    const int64_t ow = p->ow, sw = p->stride_w, off = kx * p->dil_w - p->pad_l;
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
        if (iy < 0 || iy >= p->h) continue;
        const float *gr = g + oy * ow, *xr = xp + iy * p->w + off;
        for (int64_t ox = lo, e = oy * ow + lo; ox < hi; ox++, e++)
            lane[e & 15] = fmaf(gr[ox], xr[ox * sw], lane[e & 15]);
    }
}

/* The lanes of a flat tap summed (plane of hw elements). */
static inline float dw_flat_sum(const float *lane, int64_t hw) {
    if (hw > 8) return dw_sum16(lane);
    float s = 0.0f;
    for (int64_t e = 0; e < hw; e++) s += lane[e];
    return s;
}

DW_INLINE float dw_wgrad_flat_tap(const et_conv2d_params *p, const float *dy, const float *x,
                                  int64_t o, int64_t ky, int64_t kx) {
    const int64_t hw = p->oh * p->ow, xs = p->h * p->w;
    float lane[16] = {0.0f};
    int64_t lo, hi;
    dw_flat_cols(p, kx, &lo, &hi);
    for (int64_t i = 0; i < p->n; i++)
        dw_flat_image(p, dy + (i * p->oc + o) * hw, x + (i * p->c + o) * xs, ky, kx, lo, hi, lane);
    return dw_flat_sum(lane, hw);
}

/* ---- the flat order on vectors (AVX2, NEON) ----------------------------------------------
 * Per image and horizontal tap kx, a buffer holds the tap's input in the output's layout: row
 * r of phase ph (ph < sh) is input row r * sh + ph - pt at the columns ox * sw + kx * dw - pl
 * (ox < ow; 0 outside the input). Tap (ky, kx) of output position e = oy * ow + ox is then
 * element e + q * ow of phase ph (ky * dh = q * sh + ph): one contiguous run over the
 * positions, so the lane primitive (s = 1, starting at a multiple of 16) does the flat path's
 * fmaf chains with vectors, positions of the output rows whose input row exists.
 * The canonical order skips padding columns; here they add g * 0, the same bits for finite g
 * (the accumulators start at +0 and are never -0). An image whose dy plane is not all finite
 * runs the scalar order (dw_flat_image). */
#define DW_TBUF 8192 /* floats of tap buffer (32 KiB, on the stack) */

/* dst[j] = src[j * s] for j < cnt. */
typedef void (*dw_cols_fn)(float *dst, const float *src, int64_t s, int64_t cnt);

static inline int dw_all_finite(const float *g, int64_t n) {
    uint32_t bad = 0;
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, g + j, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* The phases of tap column kx of one image (R rows each; ph_used[ph]: fill phase ph; lo, hi:
 * dw_flat_cols). zero: also write the zeros (else buf holds them from an earlier fill: only the
 * input is copied). */
DW_INLINE void dw_flat_fill(const et_conv2d_params *p, const float *xp, int64_t kx, int64_t lo,
                            int64_t hi, int64_t R, const unsigned char *ph_used, int zero,
                            float *buf, dw_cols_fn cols) {
    const int64_t ow = p->ow, sw = p->stride_w, off = kx * p->dil_w - p->pad_l;
    for (int64_t ph = 0; ph < p->stride_h; ph++) {
        if (!ph_used[ph]) continue;
        for (int64_t r = 0; r < R; r++) {
            const int64_t iy = r * p->stride_h + ph - p->pad_t;
            float *d = buf + (ph * R + r) * ow;
            if (iy < 0 || iy >= p->h || hi <= lo) {
                if (zero) memset(d, 0, (size_t)ow * sizeof(float));
                continue;
            }
            if (zero) {
                memset(d, 0, (size_t)lo * sizeof(float));
                memset(d + hi, 0, (size_t)(ow - hi) * sizeof(float));
            }
            cols(d + lo, xp + iy * p->w + lo * sw + off, sw, hi - lo);
        }
    }
}

/* Planes where the buffers pay off (fewer instructions than the scalar order, counted on
 * arm64 and timed with AVX2): the fills cost about as much as the lanes save below 4x4 (rows
 * copied with stride 1) or 6x6 (stride 2 copies: strided short rows). */
static int dw_flat_vec_ok(const et_conv2d_params *p) {
    const int64_t hw = p->oh * p->ow;
    return dw_flat_ok(p, hw) && hw >= (p->stride_w == 1 ? 16 : 36);
}

/* The flat order of output channel o (dw_flat_ok) with vectors; 0 (nothing written) if the
 * buffer is too small. */
DW_INLINE int dw_wgrad_flat_vec(const et_conv2d_params *p, const float *dy, const float *x,
                                int64_t o, float *dwo, dw_lanes_fn lanes, dw_cols_fn cols) {
    const int64_t oh = p->oh, ow = p->ow, hw = oh * ow, xs = p->h * p->w, sh = p->stride_h;
    const int64_t kh = p->kh, kw = p->kw, dh = p->dil_h;
    const int64_t R = oh + (kh - 1) * dh / sh; /* rows per phase */
    const int64_t plane = sh * R * ow; /* the phases of one kx */
    if (sh > 64 || plane > DW_TBUF) return 0;
    /* one buffer per kx if they fit: the zeros are written once */
    const int per_kx = kw * plane <= DW_TBUF;
    float buf[DW_TBUF];
    if (per_kx) memset(buf, 0, (size_t)(kw * plane) * sizeof(float));
    float acc[DWS_MAX_TAPS][16];
    unsigned char ph_used[64] = {0};
    int64_t e0[DWS_MAX_TAPS], e1[DWS_MAX_TAPS], toff[DWS_MAX_TAPS]; /* per ky */
    int64_t clo[DWS_MAX_TAPS], chi[DWS_MAX_TAPS];                     /* per kx */
    for (int64_t kx = 0; kx < kw; kx++) dw_flat_cols(p, kx, &clo[kx], &chi[kx]);
    for (int64_t ky = 0; ky < kh; ky++) {
        int64_t lo, hi; /* output rows whose input row exists */
        interior(ky * dh - p->pad_t, 0, sh, p->h, oh, &lo, &hi);
        ph_used[ky * dh % sh] = 1;
        toff[ky] = (ky * dh % sh * R + ky * dh / sh) * ow;
        e0[ky] = lo * ow / 16 * 16; /* lane 0 */
        e1[ky] = hi * ow;
    }
    memset(acc, 0, sizeof acc);
    for (int64_t i = 0; i < p->n; i++) {
        const float *g = dy + (i * p->oc + o) * hw, *xp = x + (i * p->c + o) * xs;
        if (!dw_all_finite(g, hw)) {
            for (int64_t t = 0; t < kh * kw; t++)
                dw_flat_image(p, g, xp, t / kw, t % kw, clo[t % kw], chi[t % kw], acc[t]);
            continue;
        }
        for (int64_t kx = 0; kx < kw; kx++) {
            float *b = per_kx ? buf + kx * plane : buf;
            dw_flat_fill(p, xp, kx, clo[kx], chi[kx], R, ph_used, !per_kx, b, cols);
            for (int64_t ky = 0; ky < kh; ky++)
                if (e1[ky] > e0[ky])
                    lanes(acc[ky * kw + kx], g + e0[ky], b + toff[ky] + e0[ky], 1, e1[ky] - e0[ky]);
        }
    }
    for (int64_t t = 0; t < kh * kw; t++) dwo[t] = dw_flat_sum(acc[t], hw);
    return 1;
}

DW_INLINE float dw_wgrad_rows_tap(const et_conv2d_params *p, const float *dy, const float *x,
                               int64_t o, int64_t ky, int64_t kx, dw_lanes_fn lanes) {
    const int64_t ci = o / (p->oc / p->c), xs = p->h * p->w, ys = p->oh * p->ow, sw = p->stride_w;
    const int64_t off = kx * p->dil_w - p->pad_l;
    int64_t lo, hi;
    interior(off, 0, sw, p->w, p->ow, &lo, &hi);
    double acc = 0.0;
    for (int64_t i = 0; i < p->n && hi > lo; i++) {
        const float *dyp = dy + (i * p->oc + o) * ys, *xp = x + (i * p->c + ci) * xs;
        float a[2][16] = {{0.0f}}, s[16];
        int cur = 0;
        for (int64_t oy = 0; oy < p->oh; oy++) {
            const int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
            if (iy < 0 || iy >= p->h) continue;
            lanes(a[cur], dyp + oy * p->ow + lo, xp + iy * p->w + lo * sw + off, sw, hi - lo);
            cur ^= 1;
        }
        for (int l = 0; l < 16; l++) s[l] = a[0][l] + a[1][l];
        acc += (double)dw_sum16(s);
    }
    return (float)acc;
}

DW_INLINE void dw_wgrad_canon(const et_conv2d_params *p, const float *dy, const float *x, int64_t o,
                           float *dwo, dw_lanes_fn lanes) {
    if (!dw_flat_ok(p, p->oh * p->ow) && p->stride_w != 1 && p->stride_w != 2) {
        dw_wgrad_dot(p, dy, x, o, dwo, dw_dot__ref);
        return;
    }
    for (int64_t ky = 0; ky < p->kh; ky++)
        for (int64_t kx = 0; kx < p->kw; kx++)
            dwo[ky * p->kw + kx] = dw_flat_ok(p, p->oh * p->ow)
                                       ? dw_wgrad_flat_tap(p, dy, x, o, ky, kx)
                                       : dw_wgrad_rows_tap(p, dy, x, o, ky, kx, lanes);
}

static void dw_bwd_weight_channels(void *ctx, int64_t o0, int64_t o1, int tid) {
    const dw_job *k = (const dw_job *)ctx;
    const int64_t ks = k->p->kh * k->p->kw;
    (void)tid;
    for (int64_t o = o0; o < o1; o++) k->wgrad(k->p, k->dy, k->x, o, k->out + o * ks);
}

static void dw_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x, float *dw,
                          int nthreads, dw_wgrad_fn wgrad) {
    dw_job k = {p, NULL, NULL, wgrad, x, NULL, NULL, dy, dw, 0};
    et_parallel_ranges(p->oc, et_split_chunks(p->oc, nthreads), nthreads, dw_bwd_weight_channels, &k);
}

/* The plane and weight-gradient helpers and the three entry points of the variant X (TARGET:
 * its target attribute, for the inlined scalar fmaf of the weight gradient), built
 * from its row kernel dw_row__X, lane kernel dw_lanes__X and column copy dw_cols__X (the AVX2
 * and NEON rows; __ref uses
 * the scatter for its input gradient and AVX-512 adds its table path, so theirs are written
 * out). */
#define DW_VARIANT(X, TARGET)                                                                  \
    static void dw_plane__##X(const dw_geom *g, const float *in, const float *w0, float *out) { \
        dw_accum_plane(g, in, w0, out, dw_row__##X);                                           \
    }                                                                                          \
    TARGET static void dw_fwd_planes__##X(void *ctx, int64_t p0, int64_t p1, int tid) {         \
        dw_fwd_planes_body(ctx, p0, p1, tid);                                                  \
    }                                                                                          \
    TARGET static void dw_wgrad__##X(const et_conv2d_params *p, const float *dy,               \
                                     const float *x, int64_t o, float *dwo) {                  \
        if (dw_flat_vec_ok(p) &&                                                               \
            dw_wgrad_flat_vec(p, dy, x, o, dwo, dw_lanes__##X, dw_cols__##X))                  \
            return;                                                                            \
        dw_wgrad_canon(p, dy, x, o, dwo, dw_lanes__##X);                                      \
    }                                                                                          \
    et_status et_f32_dwconv2d_fwd__##X(const et_conv2d_params *p, const float *x,              \
                                       const float *w, const float *b, float *y, int nth) {    \
        if (dw_fwd_fast__##X(p, x, w, b, y, nth)) return ET_OK;                                \
        dw_fwd(p, x, w, b, y, nth, dw_plane__##X, dw_fwd_planes__##X);                         \
        return ET_OK;                                                                          \
    }                                                                                          \
    et_status et_f32_dwconv2d_bwd_input__##X(const et_conv2d_params *p, const float *dy,       \
                                             const float *w, float *dx, int nth) {             \
        dw_bwd_input(p, dy, w, dx, nth, dw_plane__##X);                                        \
        return ET_OK;                                                                          \
    }                                                                                          \
    et_status et_f32_dwconv2d_bwd_weight__##X(const et_conv2d_params *p, const float *dy,      \
                                              const float *x, float *dw, int nth) {            \
        dw_bwd_weight(p, dy, x, dw, nth, dw_wgrad__##X);                                       \
        return ET_OK;                                                                          \
    }

/* ---- scalar variant ------------------------------------------------------------------- */
static void dw_plane__ref(const dw_geom *g, const float *in, const float *w0, float *out) {
    dw_accum_plane(g, in, w0, out, dw_row__ref);
}
static void dw_wgrad__ref(const et_conv2d_params *p, const float *dy, const float *x, int64_t o,
                          float *dwo) {
    dw_wgrad_canon(p, dy, x, o, dwo, dw_lanes__ref);
}

et_status et_f32_dwconv2d_fwd__ref(const et_conv2d_params *p, const float *x, const float *w,
                                   const float *b, float *y, int nthreads) {
    dw_fwd(p, x, w, b, y, nthreads, dw_plane__ref, dw_fwd_planes);
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

/* Odd elements of q[0..15]. */
ET_TARGET_AVX2 static inline __m256 odds8(const float *q) {
    __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(q + 8), 0xDD);
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
            __m256 a0 = _mm256_loadu_ps(out + j); /* one FMA chain per output */
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + 2 * j;
                for (int64_t kx = 0; kx < kw; kx++)
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(wt[t][kx * wsx]), evens8(r + kx * d), a0);
            }
            _mm256_storeu_ps(out + j, a0);
        }
    }
    dw_row_scalar(out, in, wt, nt, kw, wsx, s, d, j, cnt);
}

/* dw_lanes__ref on two 8-lane vectors per 16 lanes. */
ET_TARGET_AVX2 static void dw_lanes__avx2(float *acc, const float *g, const float *x, int64_t s,
                                          int64_t cnt) {
    __m256 a0 = _mm256_loadu_ps(acc), a1 = _mm256_loadu_ps(acc + 8);
    int64_t j = 0;
    if (s == 1) {
        for (; j + 16 <= cnt; j += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j + 8), _mm256_loadu_ps(x + j + 8), a1);
        }
        if (j + 8 <= cnt) { /* lanes 0-7 of the last 16 */
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(x + j), a0);
            j += 8;
        }
    } else if (s == 2) { /* evens8 reads one element past the last one used */
        for (; j + 16 <= cnt - 1; j += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j), evens8(x + 2 * j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j + 8), evens8(x + 2 * j + 16), a1);
        }
        if (j + 8 <= cnt - 1) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j), evens8(x + 2 * j), a0);
            j += 8;
        }
    }
    _mm256_storeu_ps(acc, a0);
    _mm256_storeu_ps(acc + 8, a1);
    for (; j < cnt; j++) acc[j & 15] = fmaf(g[j], x[j * s], acc[j & 15]);
}

ET_TARGET_AVX2 static void dw_cols__avx2(float *dst, const float *src, int64_t s, int64_t cnt) {
    int64_t j = 0;
    if (s == 1) { /* short rows: no memcpy call */
        for (; j + 8 <= cnt; j += 8) _mm256_storeu_ps(dst + j, _mm256_loadu_ps(src + j));
        for (; j + 4 <= cnt; j += 4) _mm_storeu_ps(dst + j, _mm_loadu_ps(src + j));
    } else if (s == 2) { /* evens8 reads one element past the last one used */
        for (; j + 8 <= cnt - 1; j += 8) _mm256_storeu_ps(dst + j, evens8(src + 2 * j));
        if (j < cnt && cnt >= 9) { /* the last 8 again, as the odd elements from one before */
            _mm256_storeu_ps(dst + cnt - 8, odds8(src + 2 * (cnt - 8) - 1));
            j = cnt;
        }
    }
    for (; j < cnt; j++) dst[j] = src[j * s];
}

/* The flat table path for AVX2 (dws2, with the AVX-512 section's table): 1 if it ran. */
static int dw_fwd_fast__avx2(const et_conv2d_params *p, const float *x, const float *w,
                             const float *b, float *y, int nthreads);
DW_VARIANT(avx2, ET_TARGET_AVX2)

/* ---- AVX-512 --------------------------------------------------------------------------- */
ET_TARGET_AVX512 static inline __m512 evens16(const float *q) {
    const __m512i idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(q), idx, _mm512_loadu_ps(q + 16));
}

/* AVX-512: planes of at most DWS_MAX_HW elements use the flat table path (dws, below); larger
 * ones the padded-plane path (dwp), else (stride along x > 2) the row driver or, for narrow
 * planes, masked loads. The weight gradient uses masked loads:
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
            __m512 a0 = _mm512_loadu_ps(out + j); /* one FMA chain per output */
            for (int t = 0; t < nt; t++) {
                const float *r = in[t] + 2 * j;
                for (int64_t kx = 0; kx < kw; kx++)
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(wt[t][kx * wsx]), evens16(r + kx * d), a0);
            }
            _mm512_storeu_ps(out + j, a0);
        }
    }
    dw_row_scalar(out, in, wt, nt, kw, wsx, s, d, j, cnt);
}

/* The lanes of v added in dw_sum16's tree. */
ET_TARGET_AVX512 static inline float dw_reduce16(__m512 v) {
    float l[16];
    _mm512_storeu_ps(l, v);
    return dw_sum16(l);
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

/* ---- AVX-512, padded planes ------------------------------------------------------------
 * Any plane size, stride 1 or 2 along x, any kernel and dilation (at most DWP_MAX_TAPS taps).
 * A band of output rows is computed from a stack buffer that holds the band's input rows
 * zero-padded and, for stride 2, split into even and odd columns ("phases"): buffer row r
 * (input row oy0 * sh - pt + r), phase ph, column t holds in[.., t * sw + ph - pl] (0 outside).
 * Tap (ky, kx) of output (oy, ox) is then buffer row (oy - oy0) * sh + ky * dh, phase
 * (kx * dw) % sw, column ox + (kx * dw) / sw: the tap of 16 consecutive outputs is one unmasked
 * load at a fixed offset from the piece (toff[tap]), with no edge cases. DWP_UNITS 16-wide
 * pieces (a row's pieces, then the next rows') run as independent FMA chains.
 * Bits: per output element one FMA chain from out[] (the bias, or the partial input gradient)
 * over the taps in the order of dw_accum_plane (ky, then kx); a padding tap adds w * 0, which
 * changes no sum that does not start from -0. */
#define DWP_BUF 8192 /* floats of band buffer (32 KiB, on the stack) */
#define DWP_MAX_TAPS 64
#define DWP_UNITS 8
#define DWP_MAX_PW 1024 /* widest phase */

typedef struct dwp_plan {
    int64_t chunks, pw, rs, band; /* pieces per row, phase width, buffer row stride, rows per band */
    int64_t nt;                   /* taps */
    int64_t toff[DWP_MAX_TAPS];   /* buffer offset of each tap from the piece's first element */
    uint64_t fm[DWP_MAX_PW / 16]; /* per 16-column piece: mask of the 16 * sw input elements
                                     in the row (bit e: column t0 * sw - pl + e) */
} dwp_plan;

/* 0 if the geometry is not handled (stride along x not 1 or 2, too many taps, rows too wide). */
static int dwp_make(const dw_geom *g, dwp_plan *pl) {
    const int64_t nt = g->kh * g->kw, sw = g->sw;
    if (nt > DWP_MAX_TAPS || (sw != 1 && sw != 2) || g->oh < 1 || g->ow < 1) return 0;
    const int64_t chunks = (g->ow + 15) / 16, maxoff = (g->kw - 1) * g->dw / sw;
    const int64_t pw = (chunks * 16 + maxoff + 15) / 16 * 16, rs = sw * pw;
    const int64_t cap = DWP_BUF / rs, span = (g->kh - 1) * g->dh + 1;
    if (cap < span || pw > DWP_MAX_PW) return 0;
    for (int64_t t0 = 0; t0 < pw; t0 += 16) {
        int64_t a, b; /* elements inside the row */
        interior(t0 * sw - g->pl, 0, 1, g->iw, 16 * sw, &a, &b);
        pl->fm[t0 / 16] = a < b ? ((1ull << b) - 1) & ~((1ull << a) - 1) : 0;
    }
    pl->chunks = chunks;
    pl->pw = pw;
    pl->rs = rs;
    pl->band = (cap - span) / g->sh + 1;
    if (pl->band > g->oh) pl->band = g->oh;
    pl->nt = nt;
    for (int64_t t = 0; t < nt; t++) {
        const int64_t ky = t / g->kw, kx = t % g->kw;
        pl->toff[g->rev ? nt - 1 - t : t] = ky * g->dh * rs + (kx * g->dw % sw) * pw + kx * g->dw / sw;
    }
    return 1;
}

/* One buffer row: the phases of input row `row` (NULL: a padding row, all zero). */
ET_TARGET_AVX512 static void dwp_fill_row(const dw_geom *g, const dwp_plan *pl, const float *row,
                                          float *dst) {
    const int64_t sw = g->sw;
    if (!row) {
        memset(dst, 0, (size_t)pl->rs * sizeof(float));
        return;
    }
    /* address arithmetic only; elements outside the row are masked off */
    const float *src = row - g->pl;
    if (sw == 1) {
        for (int64_t t0 = 0; t0 < pl->pw; t0 += 16)
            _mm512_storeu_ps(dst + t0, _mm512_maskz_loadu_ps((__mmask16)pl->fm[t0 / 16], src + t0));
        return;
    }
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int64_t t0 = 0; t0 < pl->pw; t0 += 16) {
        const uint64_t m = pl->fm[t0 / 16];
        const __m512 lo = _mm512_maskz_loadu_ps((__mmask16)m, src + 2 * t0);
        const __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), src + 2 * t0 + 16);
        _mm512_storeu_ps(dst + t0, _mm512_permutex2var_ps(lo, ev, hi));
        _mm512_storeu_ps(dst + pl->pw + t0, _mm512_permutex2var_ps(lo, od, hi));
    }
}

/* The forward's bias and epilogue in registers (dwp_fwd_planes): mode 0: the accumulators start
 * from out[] (the input gradient, or a plane already holding the bias); 1: from bias; 2: from
 * bias, then dws_bn_act(a, s, act) before the store (the fused BatchNorm with relu / relu6 / no
 * act: the bits of et_conv_epilogue_). */
typedef struct dwp_ep {
    int mode;
    et_act act;
    float bias, a, s;
} dwp_ep;

ET_TARGET_AVX512 static inline __m512 dws_bn_act(__m512 v, __m512 a, __m512 s, et_act act);

/* Pieces u0 .. u0 + U - 1 of the band starting at output row oy0 (pieces past n_units are
 * computed on piece u0 and not stored). Inlined with constant U and nt. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dwp_units(const dw_geom *g, const dwp_plan *pl, const float *buf, const float *wts, float *out,
          int64_t oy0, int64_t u0, int64_t n_units, const int U, const int64_t nt, const dwp_ep *ep) {
    const float *bp[DWP_UNITS];
    float *op[DWP_UNITS];
    __mmask16 mo[DWP_UNITS];
    __m512 acc[DWP_UNITS];
    for (int k = 0; k < U; k++) {
        const int64_t u = u0 + k < n_units ? u0 + k : u0;
        const int64_t r = u / pl->chunks, j0 = (u % pl->chunks) * 16;
        const int64_t n = g->ow - j0 < 16 ? g->ow - j0 : 16;
        bp[k] = buf + r * g->sh * pl->rs + j0;
        op[k] = out + (oy0 + r) * g->ow + j0;
        mo[k] = u0 + k < n_units ? (__mmask16)((1u << n) - 1u) : 0;
        acc[k] = ep->mode ? _mm512_set1_ps(ep->bias) : _mm512_maskz_loadu_ps(mo[k], op[k]);
    }
    for (int64_t t = 0; t < nt; t++) {
        const __m512 wv = _mm512_set1_ps(wts[t]);
        const int64_t off = pl->toff[t];
        for (int k = 0; k < U; k++) acc[k] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(bp[k] + off), acc[k]);
    }
    if (ep->mode == 2) {
        const __m512 a = _mm512_set1_ps(ep->a), s = _mm512_set1_ps(ep->s);
        for (int k = 0; k < U; k++) acc[k] = dws_bn_act(acc[k], a, s, ep->act);
    }
    for (int k = 0; k < U; k++) _mm512_mask_storeu_ps(op[k], mo[k], acc[k]);
}

/* The pieces of one band, DWP_UNITS (or 4 for the last few) at a time. */
ET_TARGET_AVX512 static void dwp_band(const dw_geom *g, const dwp_plan *pl, const float *buf,
                                      const float *wts, float *out, int64_t oy0, int64_t n_units,
                                      const dwp_ep *ep) {
    int64_t u = 0;
    if (pl->nt == 9) { /* 3x3: unrolled, weights in registers */
        for (; u + 4 < n_units; u += DWP_UNITS) dwp_units(g, pl, buf, wts, out, oy0, u, n_units, DWP_UNITS, 9, ep);
        for (; u < n_units; u += 4) dwp_units(g, pl, buf, wts, out, oy0, u, n_units, 4, 9, ep);
        return;
    }
    for (; u + 4 < n_units; u += DWP_UNITS) dwp_units(g, pl, buf, wts, out, oy0, u, n_units, DWP_UNITS, pl->nt, ep);
    for (; u < n_units; u += 4) dwp_units(g, pl, buf, wts, out, oy0, u, n_units, 4, pl->nt, ep);
}

/* out = the plane convolution of g (g->plan set) with ep's start and epilogue (mode 0: out +=). */
ET_TARGET_AVX512 static void dwp_plane_ep(const dw_geom *g, const float *in, const float *w0, float *out,
                                          const dwp_ep *ep, const float *next_in) {
    const dwp_plan *pl = g->plan;
    float buf[DWP_BUF];
    float wts[DWP_MAX_TAPS];
    for (int64_t t = 0; t < pl->nt; t++) /* in the order of pl->toff */
        wts[g->rev ? pl->nt - 1 - t : t] = w0[(t / g->kw) * g->wsy + (t % g->kw) * g->wsx];
    for (int64_t oy0 = 0; oy0 < g->oh; oy0 += pl->band) {
        const int64_t rows = g->oh - oy0 < pl->band ? g->oh - oy0 : pl->band;
        const int64_t brows = (rows - 1) * g->sh + (g->kh - 1) * g->dh + 1;
        for (int64_t r = 0; r < brows; r++) {
            const int64_t iy = oy0 * g->sh - g->pt + r;
            dwp_fill_row(g, pl, iy >= 0 && iy < g->ih ? in + iy * g->iw : NULL, buf + r * pl->rs);
            if (next_in && iy >= 0 && iy < g->ih) /* the next plane's row, into L2 */
                for (int64_t e = 0; e < g->iw; e += 16)
                    _mm_prefetch((const char *)(next_in + iy * g->iw + e), _MM_HINT_T1);
        }
        dwp_band(g, pl, buf, wts, out, oy0, rows * pl->chunks, ep);
    }
}

/* out += the plane convolution of g (g->plan set). */
ET_TARGET_AVX512 static void dwp_plane(const dw_geom *g, const float *in, const float *w0, float *out) {
    const dwp_ep ep = {0, ET_ACT_NONE, 0.0f, 0.0f, 0.0f};
    dwp_plane_ep(g, in, w0, out, &ep, NULL);
}

/* The forward's planes on the padded-plane path: the bias and (where dws_bn_act covers it) the
 * epilogue in registers, so the plane is written once; other epilogues run after the plane as
 * in dw_fwd_planes. */
ET_TARGET_AVX512 static void dwp_fwd_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    const dw_job *k = (const dw_job *)ctx;
    const et_conv2d_params *p = k->p;
    const int64_t mult = p->oc / p->c;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow, ks = p->kh * p->kw;
    const int bn_vec = p->bn_scale && (p->act == ET_ACT_NONE || p->act == ET_ACT_RELU || p->act == ET_ACT_RELU6);
    (void)tid;
    for (int64_t pl = p0; pl < p1; pl++) {
        const int64_t i = pl / p->oc, o = pl % p->oc;
        float *yp = k->out + pl * ys;
        const dwp_ep ep = {bn_vec ? 2 : 1, p->act, k->b ? k->b[o] : 0.0f,
                           bn_vec ? p->bn_scale[o] : 0.0f, bn_vec ? p->bn_shift[o] : 0.0f};
        const int64_t i1 = (pl + 1) / p->oc, o1 = (pl + 1) % p->oc;
        dwp_plane_ep(k->g, k->x + (i * p->c + o / mult) * xs, k->w + o * ks, yp, &ep,
                     pl + 1 < p1 ? k->x + (i1 * p->c + o1 / mult) * xs : NULL);
        if (!bn_vec && (p->act != ET_ACT_NONE || p->bn_scale)) et_conv_epilogue_(p, o, 0.0f, yp, ys);
    }
}

#define DW_UNITS 4 /* 16-wide output pieces computed together (independent FMA chains) */

ET_TARGET_AVX512 static void dw_plane__avx512(const dw_geom *g, const float *in, const float *w0,
                                              float *out) {
    if (g->plan) {
        dwp_plane(g, in, w0, out);
        return;
    }
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
        for (int64_t qy = 0; qy < g->kh; qy++) {
            const int64_t ky = g->rev ? g->kh - 1 - qy : qy;
            const float *wr = w0 + ky * g->wsy;
            const float *r[DW_UNITS];
            int valid[DW_UNITS];
            for (int k = 0; k < DW_UNITS; k++) {
                int64_t iy = oy[k] * g->sh - g->pt + ky * g->dh;
                valid[k] = iy >= 0 && iy < g->ih;
                /* address arithmetic only; lanes outside the row are masked off */
                r[k] = in + (valid[k] ? iy : 0) * g->iw + j0[k] * g->sw - g->pl;
            }
            for (int64_t qx = 0; qx < g->kw; qx++) {
                const int64_t kx = g->rev ? g->kw - 1 - qx : qx;
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
                acc += (double)dw_reduce16(_mm512_add_ps(a0, a1));
            }
            dwo[ky * p->kw + kx] = (float)acc;
        }
}

/* ---- AVX-512, planes of at most DWS_MAX_HW elements --------------------------------------
 * MobileNetV2 runs its depthwise convs on 28x28 ... 1x1 planes with up to 960 channels, where
 * one plane row fills a few lanes of a vector. Here the lanes run over the flat NCHW data
 * instead: with a plane of hw <= DWS_MAX_HW elements, a 16-lane chunk holds floor(16 / hw)
 * whole channels (hw < 16) or 16 elements of one channel (hw >= 16; the last chunk of a plane
 * is masked, cm[]). A "unit" is the chunks covering max(1, floor(16 / hw)) channels. A table built once per call gives, for every chunk
 * of a unit and every tap, the source element of each lane (relative to the unit's source
 * base) and a mask of lanes whose source lies inside the plane. Taps whose sources are
 * contiguous use a masked load, others (stride 2) a masked gather; masked lanes never fault.
 *   fwd:        lanes = output positions, source = x, weight tap t.
 *   bwd_input:  lanes = input positions, source = dy; tap (ky, kx) reads dy[oy, ox] with
 *               oy * sh - pt + ky * dh = iy (and the same along x), so any stride gathers.
 *   bwd_weight: lanes = output positions; dw[c, t] = sum of dy * (fwd source of tap t), one
 *               vector accumulator per tap over the images, then the lanes of each channel.
 * Units are independent (parallel over units), so results do not depend on the thread count.
 * Only for channel multiplier 1 and at most DWS_MAX_TAPS taps; other shapes use the drivers. */
/* The forward with stride 2 and output rows at least this wide runs on the padded-plane path
 * (dwp: deinterleaved band buffer, no gathers) instead of this table's gathers: about 1.2-1.4x
 * faster at 56 -> 28 and 28 -> 14, slower at 14 -> 7 (timed in MobileNetV2's shapes). 3x3
 * kernels (dw3) take stride 2 before either. */
#define DWS_S2_MIN_OW 14
#define DWS_IMGS 4 /* images per pass (independent accumulators); the code assumes 4 */
/* Below this many masked vector FMAs (t->work per image times the images) a call runs on one
 * thread. A vector FMA here often costs a gather (strided or padded taps), about 1-2 ns, so
 * 4096 of them are a few microseconds: more than a pool job (1-2 us) costs. Only the thread
 * count depends on it; the units and their results do not. */
#define DWS_SERIAL_WORK 4096

typedef struct dws_table {
    int64_t hw, src_hw;    /* lane plane size, source plane size */
    int64_t g, chunks, ks; /* channels per unit, 16-lane chunks per unit, taps */
    __mmask16 m[DWS_MAX_HW / 16][DWS_MAX_TAPS];
    __mmask16 cm[DWS_MAX_HW / 16]; /* lanes of the chunk inside the unit's planes */
    uint8_t contig[DWS_MAX_HW / 16][DWS_MAX_TAPS]; /* 1: source = lane + off[][] */
    int32_t off[DWS_MAX_HW / 16][DWS_MAX_TAPS];
    int32_t idx[DWS_MAX_HW / 16][DWS_MAX_TAPS][16];
    /* the weight gradient's gathered taps as two windows (dws_wgrad_windows): win 1: lane l is
     * element idx[][][l] of the 32 floats loaded from woff[][][0] and woff[][][1] (masks wm) */
    uint8_t win[DWS_MAX_HW / 16][DWS_MAX_TAPS];
    int32_t woff[DWS_MAX_HW / 16][DWS_MAX_TAPS][2];
    __mmask16 wm[DWS_MAX_HW / 16][DWS_MAX_TAPS][2];
    /* lane l's channel in its unit (l / hw; g > 1): the index of the per-channel vectors'
     * gathers (dws_lane_vec), so a unit's set-up is a few gathers, not 16 divisions and a
     * store-forwarding stall per vector (it was most of the time on 1x1 and 2x2 planes) */
    int32_t lch[16];
    uint8_t tap_used[DWS_MAX_TAPS]; /* 1: some chunk reads tap (a tap that none reads, e.g.
                                     * all but the centre on 1x1 planes, needs no weights) */
    int64_t work; /* masked tap loads per image, all units (for the threading decision) */
    int upsampled; /* 1: the source is dy spread out (dws_upsample_fill), all taps contiguous */
    int all_contig; /* 1: every tap of every chunk is a masked load (no gather) */
    /* perm > 0: one chunk a unit whose taps all read inside the unit's first 16 * perm (<= 64)
     * source floats (planes of at most 16 floats; with stride 2 sources of up to 64): each
     * image's block is loaded once (perm vectors) and every tap's vector is a zero-masked
     * permute of it (pidx: the source of each lane), the values the masked loads or gathers
     * would give, instead of a load per tap that mostly splits cache lines or a gather */
    int perm;
    int32_t pidx[DWS_MAX_TAPS][16];
    __mmask16 phi[DWS_MAX_TAPS]; /* perm > 2: lanes whose source is in the second 32 floats */
} dws_table;

/* Input gradient, stride 2: dy[oy, ox] spread out to u[oy * 2, ox * 2] of an h x w plane (0
 * between), laid out like the lanes (plane stride hw). Tap (ky, kx) of lane (y, x) then reads
 * u[y + pt - ky * dh, x + pl - kx * dw]: a fixed offset from the lane, so a masked load instead
 * of a gather (lanes of the other parity read a 0: w * 0 changes no sum that does not start
 * from -0). 0 (t unchanged) if some valid source lies outside h x w. */
static int dws_try_upsampled(const et_conv2d_params *p, dws_table *t) {
    const int64_t hw = t->hw, w = p->w;
    int32_t off[DWS_MAX_HW / 16][DWS_MAX_TAPS];
    /* every dy element lands inside the plane; planes of a few elements: gathers (measured) */
    if (p->stride_h != 2 || p->stride_w != 2 || 2 * (p->oh - 1) >= p->h || 2 * (p->ow - 1) >= w ||
        hw < 16)
        return 0;
    for (int64_t k = 0; k < t->chunks; k++) {
        int64_t lc[16], ly[16], lx[16]; /* each lane's channel, row, column (no division per tap) */
        for (int64_t l = 0; l < 16; l++) {
            const int64_t flat = k * 16 + l, pos = flat % hw;
            lc[l] = flat / hw;
            ly[l] = pos / w;
            lx[l] = pos % w;
        }
        for (int64_t tap = 0; tap < t->ks; tap++) {
            const int64_t ky = tap / p->kw, kx = tap % p->kw;
            int have = 0;
            off[k][tap] = 0;
            for (int64_t l = 0; l < 16; l++) {
                if (!((t->m[k][tap] >> l) & 1)) continue;
                const int64_t ch = lc[l];
                const int64_t ny = ly[l] + p->pad_t - ky * p->dil_h, nx = lx[l] + p->pad_l - kx * p->dil_w;
                if (ny >= p->h || nx >= w) return 0; /* ny, nx >= 0: the lane is valid */
                const int32_t src = (int32_t)(ch * hw + ny * w + nx);
                if (!have) off[k][tap] = src - (int32_t)l;
                else if (src - (int32_t)l != off[k][tap]) return 0;
                have = 1;
            }
        }
    }
    for (int64_t k = 0; k < t->chunks; k++)
        for (int64_t tap = 0; tap < t->ks; tap++) {
            t->off[k][tap] = off[k][tap];
            t->contig[k][tap] = 1;
        }
    return 1;
}

/* q = a / s, r = a % s (C's), without a division for the common strides 1 and 2 (a >= 0). */
static inline void dws_divmod(int64_t a, int64_t s, int64_t *q, int64_t *r) {
    if (s == 1) {
        *q = a;
        *r = 0;
    } else if (s == 2 && a >= 0) {
        *q = a >> 1;
        *r = a & 1;
    } else {
        *q = a / s;
        *r = a % s;
    }
}

/* Fills t for the forward / weight gradient (bwd_input = 0: lanes over the output) or the
 * input gradient (bwd_input = 1: lanes over the input). 0 if the shape is not handled. */
static int dws_build(const et_conv2d_params *p, int bwd_input, dws_table *t) {
    const int64_t ks = p->kh * p->kw;
    const int64_t lh = bwd_input ? p->h : p->oh, lw = bwd_input ? p->w : p->ow;
    const int64_t srch = bwd_input ? p->oh : p->h, srcw = bwd_input ? p->ow : p->w;
    const int64_t hw = lh * lw;
    if (p->oc != p->c || ks > DWS_MAX_TAPS || hw > DWS_MAX_HW) return 0;
    t->hw = hw;
    t->src_hw = srch * srcw;
    t->g = hw < 16 ? 16 / hw : 1;
    t->chunks = hw < 16 ? 1 : (hw + 15) / 16;
    t->ks = ks;
    t->work = 0;
    for (int64_t l = 0; l < 16; l++) t->lch[l] = (int32_t)(l / hw);
    memset(t->tap_used, 0, sizeof t->tap_used);
    for (int64_t k = 0; k < t->chunks; k++) {
        const int64_t nl = t->g * hw - k * 16; /* lanes inside the unit's planes */
        t->cm[k] = nl >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nl) - 1u);
        /* each lane's channel, row and column, once a chunk: the divisions per lane and tap
         * were most of a call's fixed cost (about 35 us on 16x16 input gradients) */
        int64_t lc[16], ly[16], lx[16];
        for (int64_t l = 0; l < 16; l++) {
            const int64_t flat = k * 16 + l, pos = flat % hw;
            lc[l] = flat / hw;
            ly[l] = pos / lw;
            lx[l] = pos % lw;
        }
        for (int64_t tap = 0; tap < ks; tap++) {
            const int64_t ky = tap / p->kw, kx = tap % p->kw;
            unsigned m = 0;
            int contig = 1, have = 0;
            int32_t off = 0;
            for (int64_t l = 0; l < 16; l++) {
                const int64_t flat = k * 16 + l, ch = lc[l];
                const int64_t y = ly[l], x = lx[l];
                int64_t sy, sx;
                int ok;
                if (!bwd_input) {
                    sy = y * p->stride_h - p->pad_t + ky * p->dil_h;
                    sx = x * p->stride_w - p->pad_l + kx * p->dil_w;
                    ok = sy >= 0 && sy < srch && sx >= 0 && sx < srcw;
                } else {
                    const int64_t ny = y + p->pad_t - ky * p->dil_h, nx = x + p->pad_l - kx * p->dil_w;
                    int64_t ry, rx;
                    dws_divmod(ny, p->stride_h, &sy, &ry);
                    dws_divmod(nx, p->stride_w, &sx, &rx);
                    ok = ny >= 0 && nx >= 0 && ry == 0 && rx == 0 && sy < srch && sx < srcw;
                }
                ok = ok && flat < t->g * hw;
                const int32_t src = (int32_t)(ch * t->src_hw + sy * srcw + sx);
                t->idx[k][tap][l] = ok ? src : 0;
                if (!ok) continue;
                m |= 1u << l;
                if (!have) off = src - (int32_t)l;
                else if (src - (int32_t)l != off) contig = 0;
                have = 1;
            }
            t->m[k][tap] = (__mmask16)m;
            t->contig[k][tap] = (uint8_t)contig;
            t->off[k][tap] = off;
            if (m) t->work++;
            if (m) t->tap_used[tap] = 1;
        }
    }
    t->work *= (p->c + t->g - 1) / t->g;
    int64_t top = 0; /* one past the highest source any lane reads */
    int ok = t->chunks == 1;
    for (int64_t tap = 0; tap < ks && ok; tap++) {
        t->phi[tap] = 0;
        for (int64_t l = 0; l < 16; l++) {
            /* the lane's source in the unit's block */
            const int64_t src = t->contig[0][tap] ? l + t->off[0][tap] : t->idx[0][tap][l];
            const int valid = (t->m[0][tap] >> l) & 1;
            if (valid && (src < 0 || src >= 64)) ok = 0;
            if (valid && src >= top) top = src + 1;
            if (valid && src >= 32) t->phi[tap] |= (__mmask16)(1u << l);
            t->pidx[tap][l] = valid ? (int32_t)(src & 31) : 0;
        }
    }
    t->perm = ok ? (int)((top + 15) / 16) : 0;
    /* the permutes beat spreading dy out per image (4x4 -> 2x2: about 4x, timed) */
    t->upsampled = bwd_input && !t->perm && dws_try_upsampled(p, t);
    t->all_contig = 1;
    for (int64_t k = 0; k < t->chunks; k++)
        for (int64_t tap = 0; tap < ks; tap++) t->all_contig &= t->contig[k][tap] != 0;
    if (t->perm == 3) t->perm = 4; /* the two-permute form reads vectors 2 and 3 */
    return 1;
}

/* Lanes of unit u that hold existing channels. */
static inline __mmask16 dws_unit_mask(const dws_table *t, int64_t c, int64_t u, int64_t *gc) {
    int64_t n = c - u * t->g < t->g ? c - u * t->g : t->g;
    *gc = n;
    return n * t->hw >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n * t->hw)) - 1u);
}

ET_TARGET_AVX512 static inline __m512 dws_load(const dws_table *t, int64_t k, int64_t tap,
                                               __mmask16 m, const float *src) {
    if (t->contig[k][tap]) return _mm512_maskz_loadu_ps(m, src + t->off[k][tap]);
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                    _mm512_loadu_si512((const void *)t->idx[k][tap]), src, 4);
}

/* Per-lane values v[c0 + lane's channel] (stride vs between channels, tap offset added), 0 in
 * the lanes past the unit's gc channels (vm, dws_unit_mask). */
ET_TARGET_AVX512 static inline __m512 dws_lane_vec(const dws_table *t, const float *v, int64_t vs,
                                                   __mmask16 vm) {
    if (t->g == 1) return _mm512_set1_ps(v[0]);
    const __m512i idx = _mm512_mullo_epi32(_mm512_loadu_si512((const void *)t->lch),
                                           _mm512_set1_epi32((int)vs));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), vm, idx, v, 4);
}

/* u = the spread-out dy planes (t->upsampled) of the gc channels of one image at dy. */
ET_TARGET_AVX512 static void dws_upsample_fill(const dws_table *t, const et_conv2d_params *p,
                                               const float *dy, int64_t gc, float *u) {
    const int64_t oh = p->oh, ow = p->ow, w = p->w, hw = t->hw;
    memset(u, 0, (size_t)(gc * hw) * sizeof(float));
    for (int64_t ch = 0; ch < gc; ch++)
        for (int64_t oy = 0; oy < oh; oy++) {
            const float *r = dy + (ch * oh + oy) * ow;
            float *d = u + ch * hw + 2 * oy * w;
            for (int64_t ox0 = 0; ox0 < ow; ox0 += 8) {
                const int64_t n = ow - ox0 < 8 ? ow - ox0 : 8, room = w - 2 * ox0;
                const __mmask16 take = (__mmask16)(0x5555u & ((1u << (2 * n)) - 1u));
                const __mmask16 put = room >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << room) - 1u);
                _mm512_mask_storeu_ps(d + 2 * ox0, put, _mm512_maskz_expandloadu_ps(take, r + ox0));
            }
        }
}

/* dst = act(b + sum_t w[t] * src[tap t]) over n images: the forward (b, act) and bwd_input. */
typedef struct dws_job {
    const dws_table *t;
    const et_conv2d_params *p;
    int64_t n, c;
    const float *src, *w, *b, *dy;
    et_act act;
    float alpha;
    float *dst;
} dws_job;

/* Units [u0, u1) of images [i0, i1) (i0 a multiple of DWS_IMGS, i1 one or n). */
typedef void (*dws_units_fn)(const dws_job *j, int64_t u0, int64_t u1, int64_t i0, int64_t i1);

/* The forward's and input gradient's tasks: image parts (whole groups of DWS_IMGS images, one
 * part per thread, so each unit's weights are set up once per part) times unit ranges, the
 * image part outermost (one part when a vector holds several channels: dws_run). Units alone
 * gave each thread a share of the channels of every image, while the ops around (elementwise,
 * pools, the pointwise GEMMs) split by images in address order and leave each thread's images
 * in its own core's cache: the caller takes the front tasks (the first images), a worker the
 * back ones. Every output is the same per-lane chain whichever task computes it (the image
 * groups do not move), so the split changes no bit. */
typedef struct dws_split {
    const dws_job *j;
    dws_units_fn fn;
    int64_t units, groups, parts, ranges;
} dws_split;

static void dws_split_task(void *ctx, int64_t task, int tid) {
    const dws_split *s = (const dws_split *)ctx;
    int64_t g0, g1, u0, u1;
    (void)tid;
    et_thread_range(s->groups, (int)(task / s->ranges), (int)s->parts, &g0, &g1);
    et_thread_range(s->units, (int)(task % s->ranges), (int)s->ranges, &u0, &u1);
    const int64_t i1 = g1 * DWS_IMGS < s->j->n ? g1 * DWS_IMGS : s->j->n;
    if (g1 > g0 && u1 > u0) s->fn(s->j, u0, u1, g0 * DWS_IMGS, i1);
}

static void dws_run(const dws_job *j, int64_t units, int nth, dws_units_fn fn) {
    const int64_t groups = (j->n + DWS_IMGS - 1) / DWS_IMGS;
    /* several channels a vector (planes under 16 floats): setting up a unit's lane vectors
     * costs more than a part's images save (timed: 2x2 planes, 32 images) */
    const int64_t parts = j->t->g > 1 ? 1 : nth < groups ? nth : groups;
    int64_t ranges = (et_split_chunks(units * groups, nth) + parts - 1) / parts;
    if (ranges > units) ranges = units;
    dws_split s = {j, fn, units, groups, parts, ranges};
    et_parallel_for(parts * ranges, nth, dws_split_task, &s);
}

/* The fused BatchNorm and relu / relu6 of et_conv_epilogue_ on a register: v * a + s (a
 * multiply, then an add), then the act op's own comparisons (relu: v < 0 -> 0; relu6: v <= 0
 * -> 0, v >= 6 -> 6; NaN passes), so the same bits as the epilogue's scalar loop. */
ET_TARGET_AVX512 static inline __m512 dws_bn_act(__m512 v, __m512 a, __m512 s, et_act act) {
    const __m512 zero = _mm512_setzero_ps();
    v = _mm512_add_ps(_mm512_mul_ps(v, a), s);
    if (act == ET_ACT_RELU) return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, zero);
    if (act == ET_ACT_RELU6) {
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), v, zero);
        const __m512 six = _mm512_set1_ps(6.0f);
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, six, _CMP_GE_OQ), v, six);
    }
    return v;
}

/* The chunks of one unit on ni images (sources s + j * ss, outputs d + j * ds): per lane one FMA
 * chain from bv over the taps in order, then (bn_vec) dws_bn_act. Inlined with constant ni, ks
 * and contig (1: the table has no gather, t->all_contig; 2, 3, 5: permutes of the unit's t->perm
 * = contig - 1 source vectors). */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dws_fwd_chunks(const dws_table *t, __mmask16 vm, int64_t gc, const __m512 *wv, __m512 bv,
               const float *s, int64_t ss, float *d, int64_t ds, int bn_vec, __m512 av, __m512 sv,
               et_act act, const int64_t ni, const int64_t ks, const int contig) {
    for (int64_t k = 0; k < t->chunks; k++) {
        __m512 acc[DWS_IMGS], blk[DWS_IMGS][4];
        for (int j = 0; j < DWS_IMGS; j++) acc[j] = bv;
        if (contig >= 2) { /* t->perm (= contig - 1) vectors: the unit's source block */
            const int64_t have = gc * t->src_hw; /* source floats of the unit's channels */
            __mmask16 lm[4];
            for (int v = 0; v < contig - 1; v++) {
                const int64_t left = have - 16 * v;
                lm[v] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
            }
            for (int j = 0; j < DWS_IMGS; j++)
                for (int v = 0; v < contig - 1; v++)
                    if (j < ni) blk[j][v] = _mm512_maskz_loadu_ps(lm[v], s + j * ss + 16 * v);
        }
        for (int64_t tap = 0; tap < ks; tap++) {
            const __mmask16 m = t->m[k][tap] & vm;
            if (!m) continue;
            if (contig >= 2) {
                const __m512i ix = _mm512_loadu_si512((const void *)t->pidx[tap]);
                for (int j = 0; j < DWS_IMGS; j++) {
                    if (j >= ni) continue;
                    __m512 x;
                    if (contig == 2) x = _mm512_maskz_permutexvar_ps(m, ix, blk[j][0]);
                    else if (contig == 3) x = _mm512_maskz_permutex2var_ps(m, blk[j][0], ix, blk[j][1]);
                    else
                        x = _mm512_maskz_mov_ps(
                            m, _mm512_mask_blend_ps(t->phi[tap],
                                                    _mm512_permutex2var_ps(blk[j][0], ix, blk[j][1]),
                                                    _mm512_permutex2var_ps(blk[j][2], ix, blk[j][3])));
                    acc[j] = _mm512_fmadd_ps(wv[tap], x, acc[j]);
                }
            } else if (contig) {
                const float *q = s + t->off[k][tap];
                for (int j = 0; j < DWS_IMGS; j++)
                    if (j < ni) acc[j] = _mm512_fmadd_ps(wv[tap], _mm512_maskz_loadu_ps(m, q + j * ss), acc[j]);
            } else {
                for (int j = 0; j < DWS_IMGS; j++)
                    if (j < ni) acc[j] = _mm512_fmadd_ps(wv[tap], dws_load(t, k, tap, m, s + j * ss), acc[j]);
            }
        }
        if (bn_vec)
            for (int j = 0; j < DWS_IMGS; j++) acc[j] = dws_bn_act(acc[j], av, sv, act);
        for (int j = 0; j < DWS_IMGS; j++)
            if (j < ni) _mm512_mask_storeu_ps(d + j * ds + k * 16, vm & t->cm[k], acc[j]);
    }
}

/* Units [u0, u1) (groups of channels, each computed on its own). */
ET_TARGET_AVX512 static void dws_apply_units(const dws_job *j, int64_t u0, int64_t u1, int64_t n0,
                                             int64_t n) {
    const dws_table *t = j->t;
    const int64_t c = j->c, ks = t->ks, hw = t->hw, src_hw = t->src_hw;
    const float *src = j->src, *w = j->w, *b = j->b;
    const et_act act = j->act;
    const float alpha = j->alpha;
    const et_conv2d_params *jp = j->p;
    float *dst = j->dst;
    float q[DWS_IMGS * DWS_MAX_HW]; /* spread-out dy planes (t->upsampled) */
    for (int64_t u = u0; u < u1; u++) {
        int64_t gc;
        const __mmask16 vm = dws_unit_mask(t, c, u, &gc);
        const int64_t c0 = u * t->g;
        __m512 wv[DWS_MAX_TAPS];
        for (int64_t tap = 0; tap < ks; tap++)
            wv[tap] = t->tap_used[tap] ? dws_lane_vec(t, w + c0 * ks + tap, ks, vm) : _mm512_setzero_ps();
        const __m512 bv = b ? dws_lane_vec(t, b + c0, 1, vm) : _mm512_setzero_ps();
        /* a fused BatchNorm with relu / relu6 / no act is applied in registers (tiny planes
         * would otherwise pay one epilogue call per channel and image) */
        const int bn_vec = jp->bn_scale && (act == ET_ACT_NONE || act == ET_ACT_RELU || act == ET_ACT_RELU6);
        const __m512 av = bn_vec ? dws_lane_vec(t, jp->bn_scale + c0, 1, vm) : _mm512_setzero_ps();
        const __m512 sv = bn_vec ? dws_lane_vec(t, jp->bn_shift + c0, 1, vm) : _mm512_setzero_ps();
        /* DWS_IMGS images at a time: independent FMA chains, table entries read once */
        for (int64_t i0 = n0; i0 < n; i0 += DWS_IMGS) {
            const int64_t ni = n - i0 < DWS_IMGS ? n - i0 : DWS_IMGS;
            const float *s = src + (i0 * c + c0) * src_hw;
            float *d = dst + (i0 * c + c0) * hw;
            int64_t ss = c * src_hw; /* image strides */
            const int64_t ds = c * hw;
            if (t->upsampled) {
                for (int64_t j = 0; j < ni; j++) dws_upsample_fill(t, jp, s + j * ss, gc, q + j * DWS_MAX_HW);
                s = q;
                ss = DWS_MAX_HW;
            }
            /* 3x3 on DWS_IMGS images: the taps unrolled, the weights in registers */
            if (ni == DWS_IMGS && ks == 9 && t->perm == 1)
                dws_fwd_chunks(t, vm, gc, wv, bv, s, ss, d, ds, bn_vec, av, sv, act, DWS_IMGS, 9, 2);
            else if (ni == DWS_IMGS && ks == 9 && t->perm == 2)
                dws_fwd_chunks(t, vm, gc, wv, bv, s, ss, d, ds, bn_vec, av, sv, act, DWS_IMGS, 9, 3);
            else if (ni == DWS_IMGS && ks == 9 && t->perm == 4)
                dws_fwd_chunks(t, vm, gc, wv, bv, s, ss, d, ds, bn_vec, av, sv, act, DWS_IMGS, 9, 5);
            else if (ni == DWS_IMGS && ks == 9 && t->all_contig)
                dws_fwd_chunks(t, vm, gc, wv, bv, s, ss, d, ds, bn_vec, av, sv, act, DWS_IMGS, 9, 1);
            else if (ni == DWS_IMGS && ks == 9)
                dws_fwd_chunks(t, vm, gc, wv, bv, s, ss, d, ds, bn_vec, av, sv, act, DWS_IMGS, 9, 0);
            else
                dws_fwd_chunks(t, vm, gc, wv, bv, s, ss, d, ds, bn_vec, av, sv, act, ni, ks, 0);
            if (act != ET_ACT_NONE && !jp->bn_scale)
                for (int64_t i = 0; i < ni; i++) et_conv_bias_act_(d + i * ds, gc * hw, 0.0f, act, alpha);
            if (jp->bn_scale && !bn_vec) /* the fused BatchNorm: the epilogue per channel */
                for (int64_t i = 0; i < ni; i++)
                    for (int64_t ch = 0; ch < gc; ch++)
                        et_conv_epilogue_(jp, c0 + ch, 0.0f, d + i * ds + ch * hw, hw);
        }
    }
}

/* Input gradient, stride 2, 16-float rows (dws_s2row_ok: t->upsampled, one channel a unit,
 * chunk k = input row k): the tap vectors that dws_apply_units loads from the spread-out dy
 * (u, dws_upsample_fill), built in registers instead. Tap (ky, kx) of row k reads u row
 * r = k + pt - ky * dh, shifted by s = pl - kx * dw columns; u row r is dy row r / 2 spread to
 * the even lanes (an expand), r odd or outside the plane: the tap's mask is empty and the tap
 * skipped. So per dy row and kx one vector (expand, then a zero-filling alignr by s) serves
 * every tap that reads it: the same value in every lane as the masked load (dws_s2row_ok checks
 * each mask against the lanes the construction fills), no memset, no spread-out plane, no
 * loads splitting cache lines. Per lane the same FMA chain (taps ascending, empty masks
 * skipped, masked-off lanes adding w * +0). */
#define DWS_S2R_KW 4   /* widest kernel */
#define DWS_S2R_OH 32  /* dy rows (the plane's 1024 floats are 64 rows of 16) */

/* Lanes l of a 16-float u row, shifted by s, that hold a dy element (of ow) of the row. */
static unsigned dws_s2row_lanes(int64_t s, int64_t ow) {
    unsigned m = 0;
    for (int64_t l = 0; l < 16; l++) {
        const int64_t col = l + s;
        if (col >= 0 && col < 16 && col % 2 == 0 && col / 2 < ow) m |= 1u << l;
    }
    return m;
}

static int dws_s2row_ok(const et_conv2d_params *p, const dws_table *t) {
    if (!t->upsampled || t->g != 1 || p->w != 16 || p->ow > 8 || p->kw > DWS_S2R_KW ||
        p->oh > DWS_S2R_OH || t->chunks != p->h)
        return 0;
    for (int64_t k = 0; k < t->chunks; k++)
        for (int64_t tap = 0; tap < t->ks; tap++) {
            const unsigned m = t->m[k][tap];
            if (!m) continue;
            const int64_t ky = tap / p->kw, kx = tap % p->kw;
            const int64_t r = k + p->pad_t - ky * p->dil_h, s = p->pad_l - kx * p->dil_w;
            if (r < 0 || r % 2 || r / 2 >= p->oh || s <= -16 || s >= 16) return 0;
            if (m != dws_s2row_lanes(s, p->ow)) return 0;
        }
    /* 2: MobileNetV2's 16x16 -> 8x8 (3x3, pads 1): the taps of row k are 3, 4, 5 (k even) or
     * 0, 1, 2 (k odd, but the last) and 6, 7, 8, dws_s2row_33 unrolled */
    if (p->kh != 3 || p->kw != 3 || p->pad_t != 1 || p->pad_l != 1 || p->dil_h != 1 ||
        p->dil_w != 1 || p->h != 16 || p->oh != 8)
        return 1;
    for (int64_t k = 0; k < 16; k++)
        for (int64_t tap = 0; tap < 9; tap++) {
            const int64_t r = k + 1 - tap / 3;
            if ((t->m[k][tap] != 0) != (r >= 0 && r < 16 && r % 2 == 0)) return 1;
        }
    return 2;
}

/* v shifted by s lanes (lane l = v[l + s], 0 outside 0..15). */
ET_TARGET_AVX512 static inline __m512 dws_shift(__m512 v, int64_t s) {
    const __m512i z = _mm512_setzero_si512(), vi = _mm512_castps_si512(v);
    switch (s) { /* alignr takes an immediate */
    case 0: return v;
    case 1: return _mm512_castsi512_ps(_mm512_alignr_epi32(z, vi, 1));
    case 2: return _mm512_castsi512_ps(_mm512_alignr_epi32(z, vi, 2));
    case -1: return _mm512_castsi512_ps(_mm512_alignr_epi32(vi, z, 15));
    case -2: return _mm512_castsi512_ps(_mm512_alignr_epi32(vi, z, 14));
    default: {
        const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        const __m512i src = _mm512_add_epi32(lane, _mm512_set1_epi32((int)s));
        const __mmask16 in = _mm512_cmpge_epi32_mask(src, z) &
                             _mm512_cmplt_epi32_mask(src, _mm512_set1_epi32(16));
        return _mm512_maskz_permutexvar_ps(in, src, v);
    }
    }
}

/* dws_s2row_units on dws_s2row_ok's case 2, unrolled, every FMA on registers: dy row q's
 * vectors (kx = 0, 1, 2) serve input rows 2q (taps 3, 4, 5), 2q - 1 (taps 0, 1, 2, before the
 * taps 6, 7, 8 from row q - 1's vectors, kept) and 2q + 1 (taps 6, 7, 8). */
ET_TARGET_AVX512 static void dws_s2row_33(const dws_job *j, int64_t u0, int64_t u1, int64_t n0,
                                          int64_t n) {
    const int64_t c = j->c, hw = 256, src_hw = 64;
    const __m512i z = _mm512_setzero_si512();
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t u = u0; u < u1; u++) {
        __m512 wv[9];
        for (int tap = 0; tap < 9; tap++) wv[tap] = _mm512_set1_ps(j->w[u * 9 + tap]);
        for (int64_t i = n0; i < n; i++) {
            const float *g = j->src + (i * c + u) * src_hw;
            float *d = j->dst + (i * c + u) * hw;
            __m512 p0 = zero, p1 = zero, p2 = zero; /* dy row q - 1's vectors */
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                const __m512i e = _mm512_castps_si512(_mm512_maskz_expandloadu_ps(0x5555, g + q * 8));
                const __m512 v0 = _mm512_castsi512_ps(_mm512_alignr_epi32(z, e, 1));
                const __m512 v1 = _mm512_castsi512_ps(e);
                const __m512 v2 = _mm512_castsi512_ps(_mm512_alignr_epi32(e, z, 15));
                if (q > 0) {
                    __m512 odd = _mm512_fmadd_ps(wv[0], v0, zero);
                    odd = _mm512_fmadd_ps(wv[1], v1, odd);
                    odd = _mm512_fmadd_ps(wv[2], v2, odd);
                    odd = _mm512_fmadd_ps(wv[6], p0, odd);
                    odd = _mm512_fmadd_ps(wv[7], p1, odd);
                    odd = _mm512_fmadd_ps(wv[8], p2, odd);
                    _mm512_storeu_ps(d + (2 * q - 1) * 16, odd);
                }
                __m512 even = _mm512_fmadd_ps(wv[3], v0, zero);
                even = _mm512_fmadd_ps(wv[4], v1, even);
                even = _mm512_fmadd_ps(wv[5], v2, even);
                _mm512_storeu_ps(d + 2 * q * 16, even);
                p0 = v0;
                p1 = v1;
                p2 = v2;
            }
            __m512 last = _mm512_fmadd_ps(wv[6], p0, zero); /* row 15: taps 0, 1, 2 past dy */
            last = _mm512_fmadd_ps(wv[7], p1, last);
            last = _mm512_fmadd_ps(wv[8], p2, last);
            _mm512_storeu_ps(d + 15 * 16, last);
        }
    }
}

ET_TARGET_AVX512 static void dws_s2row_units(const dws_job *j, int64_t u0, int64_t u1, int64_t n0,
                                             int64_t n) {
    const dws_table *t = j->t;
    const et_conv2d_params *p = j->p;
    const int64_t c = j->c, ks = t->ks, hw = t->hw, src_hw = t->src_hw, oh = p->oh, ow = p->ow;
    const int64_t kw = p->kw, h = p->h;
    const __mmask16 take = (__mmask16)(0x5555u & ((1u << (2 * ow)) - 1u));
    int64_t sh[DWS_S2R_KW];
    for (int64_t kx = 0; kx < kw; kx++) sh[kx] = p->pad_l - kx * p->dil_w;
    /* per row k its taps with a non-empty mask, ascending: the tap and its vector */
    uint8_t nt[DWS_MAX_HW / 16], tl[DWS_MAX_HW / 16][DWS_MAX_TAPS], vi[DWS_MAX_HW / 16][DWS_MAX_TAPS];
    for (int64_t k = 0; k < h; k++) {
        nt[k] = 0;
        for (int64_t tap = 0; tap < ks; tap++) {
            if (!t->m[k][tap]) continue;
            const int64_t r = k + p->pad_t - tap / kw * p->dil_h;
            tl[k][nt[k]] = (uint8_t)tap;
            vi[k][nt[k]++] = (uint8_t)(r / 2 * DWS_S2R_KW + tap % kw);
        }
    }
    for (int64_t u = u0; u < u1; u++) {
        __m512 wv[DWS_MAX_TAPS];
        for (int64_t tap = 0; tap < ks; tap++) wv[tap] = _mm512_set1_ps(j->w[u * ks + tap]);
        for (int64_t i = n0; i < n; i++) {
            const float *g = j->src + (i * c + u) * src_hw;
            float *d = j->dst + (i * c + u) * hw;
            __m512 v[DWS_S2R_OH * DWS_S2R_KW];
            for (int64_t r = 0; r < oh; r++) {
                const __m512 e = _mm512_maskz_expandloadu_ps(take, g + r * ow);
                for (int64_t kx = 0; kx < kw; kx++) v[r * DWS_S2R_KW + kx] = dws_shift(e, sh[kx]);
            }
            for (int64_t k = 0; k < h; k++) {
                __m512 acc = _mm512_setzero_ps();
                for (int q = 0; q < nt[k]; q++) acc = _mm512_fmadd_ps(wv[tl[k][q]], v[vi[k][q]], acc);
                _mm512_storeu_ps(d + k * 16, acc);
            }
        }
    }
}

/* Input gradient, stride 1, 3x3, pads 1, on W x W planes (W = 8 or 16, MobileNetV2's): the
 * table's masks and offsets as constants (dws_s1i_ok checks them), so each tap is a masked load
 * at a fixed offset and an FMA, taps with empty masks (top and bottom rows) dropped at compile
 * time. Per lane the chain of dws_fwd_chunks (from +0, taps ascending, masked-off lanes adding
 * w * 0). */
static inline unsigned dws_s1i_mask(int W, int k, int ky, int kx) {
    /* tap (ky, kx) of input (y, x) reads dy[y + 1 - ky][x + 1 - kx] */
    const unsigned col = kx == 0 ? (W == 16 ? 0x7FFFu : 0x7F7Fu)
                         : kx == 2 ? (W == 16 ? 0xFFFEu : 0xFEFEu) : 0xFFFFu;
    unsigned row = 0xFFFFu;
    if (ky == 0 && k == W * W / 16 - 1) row = W == 16 ? 0u : 0x00FFu;
    if (ky == 2 && k == 0) row = W == 16 ? 0u : 0xFF00u;
    return col & row;
}

static int dws_s1i_ok(const et_conv2d_params *p, const dws_table *t) {
    const int W = (int)p->w;
    if ((W != 8 && W != 16) || p->h != W || p->oh != W || p->ow != W || p->kh != 3 ||
        p->kw != 3 || p->stride_h != 1 || p->stride_w != 1 || t->ks != 9 || t->g != 1 ||
        t->upsampled || t->chunks != W * W / 16 || t->hw != W * W || t->src_hw != W * W)
        return 0;
    for (int k = 0; k < W * W / 16; k++)
        for (int tap = 0; tap < 9; tap++) {
            const unsigned m = dws_s1i_mask(W, k, tap / 3, tap % 3);
            if (t->m[k][tap] != m || (m && !t->contig[k][tap])) return 0;
            if (m && t->off[k][tap] != 16 * k + (1 - tap / 3) * W + 1 - tap % 3) return 0;
        }
    return 1;
}

ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dws_s1i_body(const dws_job *j, int64_t u0, int64_t u1, int64_t n0, int64_t n, const int W) {
    const int64_t c = j->c, hw = W * W;
#define DWS_S1I_TAP(q)                                                                             \
    do {                                                                                           \
        const __mmask16 m = (__mmask16)dws_s1i_mask(W, k, q / 3, q % 3);                         \
        if (m)                                                                                     \
            acc = _mm512_fmadd_ps(                                                                 \
                wv[q], _mm512_maskz_loadu_ps(m, s + 16 * k + (1 - q / 3) * W + 1 - q % 3), acc);   \
    } while (0)
    for (int64_t u = u0; u < u1; u++) {
        __m512 wv[9];
        for (int tap = 0; tap < 9; tap++) wv[tap] = _mm512_set1_ps(j->w[u * 9 + tap]);
        for (int64_t i = n0; i < n; i++) {
            const float *s = j->src + (i * c + u) * hw;
            float *d = j->dst + (i * c + u) * hw;
#pragma GCC unroll 16
            for (int k = 0; k < W * W / 16; k++) {
                __m512 acc = _mm512_setzero_ps();
                DWS_S1I_TAP(0); DWS_S1I_TAP(1); DWS_S1I_TAP(2);
                DWS_S1I_TAP(3); DWS_S1I_TAP(4); DWS_S1I_TAP(5);
                DWS_S1I_TAP(6); DWS_S1I_TAP(7); DWS_S1I_TAP(8);
                _mm512_storeu_ps(d + 16 * k, acc);
            }
        }
    }
#undef DWS_S1I_TAP
}

ET_TARGET_AVX512 static void dws_s1i_8(const dws_job *j, int64_t u0, int64_t u1, int64_t n0, int64_t n) {
    dws_s1i_body(j, u0, u1, n0, n, 8);
}

ET_TARGET_AVX512 static void dws_s1i_16(const dws_job *j, int64_t u0, int64_t u1, int64_t n0, int64_t n) {
    dws_s1i_body(j, u0, u1, n0, n, 16);
}

ET_TARGET_AVX512 static void dws_apply(const dws_table *t, const et_conv2d_params *p, const float *src,
                                       const float *w, const float *b, et_act act, float alpha,
                                       float *dst, int nthreads) {
    const int64_t n = p->n, c = p->c, units = (c + t->g - 1) / t->g;
    const int nth = t->work * n < DWS_SERIAL_WORK ? 1 : nthreads;
    dws_job j = {t, p, n, c, src, w, b, NULL, act, alpha, dst};
    /* bwd_input (no bias, act or BatchNorm) on 16-float rows: the tap vectors in registers */
    const int bwd = !b && act == ET_ACT_NONE && !p->bn_scale;
    const int s2row = bwd ? dws_s2row_ok(p, t) : 0;
    dws_units_fn fn = s2row == 2 ? dws_s2row_33 : s2row ? dws_s2row_units : dws_apply_units;
    if (bwd && dws_s1i_ok(p, t)) fn = p->w == 8 ? dws_s1i_8 : dws_s1i_16;
    dws_run(&j, units, nth, fn);
}

/* dw of the gc channels of a unit from its taps' accumulators (acc[tap]; t->tap_used[tap] == 0:
 * never read, +0 as an all-zero accumulator sums to): g == 1 dw_sum16's tree, else per channel
 * its hw lanes added in order from +0 (dw_flat_sum), all channels at once (lane ch of the sum
 * takes lane ch * hw + e of acc at step e), scattered to dw[ch * ks + tap]. */
ET_TARGET_AVX512 static inline void dws_wgrad_store(const dws_table *t, const __m512 *acc, int64_t gc,
                                                    float *dwu) {
    const int64_t ks = t->ks, hw = t->hw;
    if (t->g == 1) {
        for (int64_t tap = 0; tap < ks; tap++) dwu[tap] = t->tap_used[tap] ? dw_reduce16(acc[tap]) : 0.0f;
        return;
    }
    memset(dwu, 0, (size_t)(gc * ks) * sizeof(float));
    const __mmask16 cm = (__mmask16)((1u << gc) - 1u);
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i first = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)hw)); /* ch * hw */
    const __m512i to = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)ks));    /* ch * ks */
    for (int64_t tap = 0; tap < ks; tap++) {
        if (!t->tap_used[tap]) continue;
        __m512 sum = _mm512_setzero_ps();
        for (int64_t e = 0; e < hw; e++)
            sum = _mm512_add_ps(sum, _mm512_permutexvar_ps(
                                         _mm512_add_epi32(first, _mm512_set1_epi32((int)e)), acc[tap]));
        _mm512_mask_i32scatter_ps(dwu + tap, cm, to, sum, 4);
    }
}

/* Units [u, u + NU) on the permuted-block tables (t->perm = PERM, one chunk a unit, at most NT
 * taps used, listed in ut[]): per image each unit's source block is loaded once (PERM vectors)
 * and each used tap's vector is a permute of it; the accumulators stay in registers and the NU
 * units' chains run side by side (1x1 planes have one used tap: one unit alone would be a
 * single chain of dependent FMAs). Per lane the same chain as dws_wgrad_units: one masked FMA
 * per image, lanes whose source is padding keep their value. Inlined with constant NU, NT and
 * PERM; ident[q]: the tap's source is the lane itself (no permute). */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dws_wgrad_perm(const dws_table *t, int64_t c, int64_t n, const float *dy, const float *x, int64_t u,
               float *dw, const int *ut, int nt, const int *ident, const int NU, const int NT,
               const int PERM) {
    const int64_t ks = t->ks, hw = t->hw, src_hw = t->src_hw;
    __m512 acc[4][DWS_MAX_TAPS], blk[4][4];
    __m512i ix[DWS_MAX_TAPS];
    __mmask16 um[4], lm[4][4], mm[4][DWS_MAX_TAPS];
    int64_t gc[4] = {0};
    for (int q = 0; q < NT; q++)
        ix[q] = q < nt ? _mm512_loadu_si512((const void *)t->pidx[ut[q]]) : _mm512_setzero_si512();
    for (int v = 0; v < NU; v++) {
        um[v] = dws_unit_mask(t, c, u + v, &gc[v]);
        for (int b = 0; b < PERM; b++) {
            const int64_t left = gc[v] * src_hw - 16 * b;
            lm[v][b] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
        }
        for (int q = 0; q < NT; q++) {
            acc[v][q] = _mm512_setzero_ps();
            mm[v][q] = q < nt ? t->m[0][ut[q]] & um[v] : 0;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        for (int v = 0; v < NU; v++) {
            const int64_t c0 = (u + v) * t->g;
            const float *s = x + (i * c + c0) * src_hw;
            const __m512 gv = _mm512_maskz_loadu_ps(um[v], dy + (i * c + c0) * hw);
            for (int b = 0; b < PERM; b++) blk[v][b] = _mm512_maskz_loadu_ps(lm[v][b], s + 16 * b);
            for (int q = 0; q < NT; q++) {
                if (q >= nt) continue;
                __m512 xv;
                if (ident[q]) xv = blk[v][0];
                else if (PERM == 1) xv = _mm512_permutexvar_ps(ix[q], blk[v][0]);
                else if (PERM == 2) xv = _mm512_permutex2var_ps(blk[v][0], ix[q], blk[v][1]);
                else
                    xv = _mm512_mask_blend_ps(t->phi[ut[q]], _mm512_permutex2var_ps(blk[v][0], ix[q], blk[v][1]),
                                              _mm512_permutex2var_ps(blk[v][2], ix[q], blk[v][3]));
                acc[v][q] = _mm512_mask3_fmadd_ps(gv, xv, acc[v][q], mm[v][q]);
            }
        }
    }
    for (int v = 0; v < NU; v++) {
        __m512 a[DWS_MAX_TAPS];
        for (int q = 0; q < NT; q++)
            if (q < nt) a[ut[q]] = acc[v][q];
        dws_wgrad_store(t, a, gc[v], dw + (u + v) * t->g * ks);
    }
}

/* The units [u0, u1) on dws_wgrad_perm if the table allows (t->perm, at most 9 used taps);
 * returns the first unit not done. */
ET_TARGET_AVX512 static int64_t dws_wgrad_perm_units(const dws_table *t, int64_t c, int64_t n,
                                                     const float *dy, const float *x, int64_t u0,
                                                     int64_t u1, float *dw) {
    int ut[DWS_MAX_TAPS], ident[DWS_MAX_TAPS], nt = 0;
    for (int tap = 0; tap < (int)t->ks; tap++) {
        if (!t->tap_used[tap]) continue;
        int id = t->phi[tap] == 0;
        for (int l = 0; l < 16; l++)
            if (((t->m[0][tap] >> l) & 1) && t->pidx[tap][l] != l) id = 0;
        ident[nt] = id;
        ut[nt++] = tap;
    }
    if (t->perm < 1 || t->perm > 4 || nt > 9) return u0;
    int64_t u = u0;
    if (nt == 1) { /* four units' chains side by side */
        for (; u + 4 <= u1; u += 4) {
            if (t->perm == 1) dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, nt, ident, 4, 1, 1);
            else if (t->perm == 2) dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, nt, ident, 4, 1, 2);
            else dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, nt, ident, 4, 1, 4);
        }
    }
    for (; u < u1 && nt == 9; u++) { /* every tap used (constant: the tap loop unrolled) */
        if (t->perm == 1) dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, 9, ident, 1, 9, 1);
        else if (t->perm == 2) dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, 9, ident, 1, 9, 2);
        else dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, 9, ident, 1, 9, 4);
    }
    for (; u < u1; u++) {
        if (t->perm == 1) dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, nt, ident, 1, 9, 1);
        else if (t->perm == 2) dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, nt, ident, 1, 9, 2);
        else dws_wgrad_perm(t, c, n, dy, x, u, dw, ut, nt, ident, 1, 9, 4);
    }
    return u;
}

/* For the weight gradient: each gathered tap of a chunk (stride 2) whose sources lie in two
 * runs of 16 floats (two output rows of up to 8 a chunk: two input rows) becomes two masked
 * loads and a permute (dws_wgrad_load), the same values as the gather's, about a third of its
 * cost (16x16 -> 8x8, timed). t->idx of such a tap then holds the permute's index. */
static void dws_wgrad_windows(dws_table *t) {
    for (int64_t k = 0; k < t->chunks; k++)
        for (int64_t tap = 0; tap < t->ks; tap++) {
            const unsigned m = t->m[k][tap];
            const int32_t *idx = t->idx[k][tap];
            t->win[k][tap] = 0;
            if (t->contig[k][tap] || !m) continue;
            int32_t a = INT32_MAX, b = INT32_MAX;
            for (int l = 0; l < 16; l++)
                if ((m >> l) & 1 && idx[l] < a) a = idx[l];
            for (int l = 0; l < 16; l++)
                if ((m >> l) & 1 && idx[l] >= a + 16 && idx[l] < b) b = idx[l];
            if (b == INT32_MAX) b = a + 16;
            int ok = 1;
            unsigned ma = 0, mb = 0;
            int32_t pidx[16];
            for (int l = 0; l < 16; l++) {
                pidx[l] = 0;
                if (!((m >> l) & 1)) continue;
                if (idx[l] < a + 16) {
                    ma |= 1u << (idx[l] - a);
                    pidx[l] = idx[l] - a;
                } else if (idx[l] >= b && idx[l] < b + 16) {
                    mb |= 1u << (idx[l] - b);
                    pidx[l] = 16 + idx[l] - b;
                } else {
                    ok = 0;
                }
            }
            if (!ok) continue;
            t->win[k][tap] = 1;
            t->woff[k][tap][0] = a;
            t->woff[k][tap][1] = b;
            t->wm[k][tap][0] = (__mmask16)ma;
            t->wm[k][tap][1] = (__mmask16)mb;
            memcpy(t->idx[k][tap], pidx, sizeof pidx);
        }
}

/* Tap tap's source vector of chunk k (lanes m) for the weight gradient (dws_wgrad_windows). */
ET_TARGET_AVX512 static inline __m512 dws_wgrad_load(const dws_table *t, int64_t k, int64_t tap,
                                                     __mmask16 m, const float *src) {
    if (t->win[k][tap])
        return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(t->wm[k][tap][0], src + t->woff[k][tap][0]),
                                      _mm512_loadu_si512((const void *)t->idx[k][tap]),
                                      _mm512_maskz_loadu_ps(t->wm[k][tap][1], src + t->woff[k][tap][1]));
    return dws_load(t, k, tap, m, src);
}

/* Unit u of any table: one accumulator per tap over the images and chunks (lane l of chunk k is
 * position k * 16 + l: the canonical flat order). Inlined with constant KS (9: the accumulators
 * in registers). */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dws_wgrad_unit(const dws_table *t, int64_t c, int64_t n, const float *dy, const float *x, int64_t u,
               float *dw, const int64_t KS) {
    const int64_t hw = t->hw, src_hw = t->src_hw;
    int64_t gc;
    const __mmask16 vm = dws_unit_mask(t, c, u, &gc);
    const int64_t c0 = u * t->g;
    __m512 acc[DWS_MAX_TAPS];
    for (int64_t tap = 0; tap < KS; tap++) acc[tap] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        const float *s = x + (i * c + c0) * src_hw, *g = dy + (i * c + c0) * hw;
        for (int64_t k = 0; k < t->chunks; k++) {
            const __m512 gv = _mm512_maskz_loadu_ps(vm & t->cm[k], g + k * 16);
#pragma GCC unroll 16
            for (int64_t tap = 0; tap < KS; tap++) {
                const __mmask16 m = t->m[k][tap] & vm;
                /* masked-off lanes (padding) keep their value: dy * 0 is not added */
                if (m) acc[tap] = _mm512_mask3_fmadd_ps(gv, dws_wgrad_load(t, k, tap, m, s), acc[tap], m);
            }
        }
    }
    dws_wgrad_store(t, acc, gc, dw + c0 * t->ks);
}

/* dws_wgrad_unit on one-channel units of 3x3 tables whose taps are all masked loads (stride 1,
 * t->all_contig): the masks and offsets of each chunk's taps in compact arrays (km, ko), the
 * nine accumulators in registers and no branch: a tap whose mask is empty in a chunk runs as a
 * zero-masked load and an FMA masked off, which leaves the accumulator as the skip does. The
 * table path spilled the accumulators and branched per tap (about 4x slower on 8x8 planes). */
ET_TARGET_AVX512 static void dws_wgrad_contig9(const dws_table *t, int64_t c, int64_t n,
                                               const float *dy, const float *x, int64_t u0,
                                               int64_t u1, float *dw) {
    const int64_t hw = t->hw, src_hw = t->src_hw, chunks = t->chunks;
    __mmask16 km[DWS_MAX_HW / 16][9];
    int32_t ko[DWS_MAX_HW / 16][9];
    for (int64_t k = 0; k < chunks; k++)
        for (int tap = 0; tap < 9; tap++) {
            km[k][tap] = t->m[k][tap];
            ko[k][tap] = t->m[k][tap] ? t->off[k][tap] : 0;
        }
    /* nine named accumulators: an array of them stayed in memory (a store per FMA) */
#define DWS_C9_TAP(q)                                                                              \
    a##q = _mm512_mask3_fmadd_ps(gv, _mm512_maskz_loadu_ps(km[k][q], s + ko[k][q]), a##q, km[k][q])
    for (int64_t u = u0; u < u1; u++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0, a8 = a0;
        for (int64_t i = 0; i < n; i++) {
            const float *s = x + (i * c + u) * src_hw, *g = dy + (i * c + u) * hw;
            for (int64_t k = 0; k < chunks; k++) {
                const __m512 gv = _mm512_maskz_loadu_ps(t->cm[k], g + k * 16);
                DWS_C9_TAP(0); DWS_C9_TAP(1); DWS_C9_TAP(2);
                DWS_C9_TAP(3); DWS_C9_TAP(4); DWS_C9_TAP(5);
                DWS_C9_TAP(6); DWS_C9_TAP(7); DWS_C9_TAP(8);
            }
        }
        const __m512 acc[9] = {a0, a1, a2, a3, a4, a5, a6, a7, a8};
        /* dws_wgrad_store's one-channel case */
        for (int tap = 0; tap < 9; tap++) dw[u * 9 + tap] = t->tap_used[tap] ? dw_reduce16(acc[tap]) : 0.0f;
    }
#undef DWS_C9_TAP
}

/* MobileNetV2's stride-1 3x3 weight gradients (pads 1) on W x W planes, W = 8 or 16: the masks
 * and offsets of dws_wgrad_contig9 as constants (dws_s1_ok checks them against the table), so a
 * tap is one masked load at a fixed offset and a masked FMA; taps with empty masks (the top
 * and bottom rows) drop out at compile time. */
static inline unsigned dws_s1_mask(int W, int k, int ky, int kx) {
    const unsigned col = kx == 0 ? (W == 16 ? 0xFFFEu : 0xFEFEu)
                         : kx == 2 ? (W == 16 ? 0x7FFFu : 0x7F7Fu) : 0xFFFFu;
    const int rows = W * W / 16; /* chunks */
    unsigned row = 0xFFFFu;
    if (ky == 0 && k == 0) row = W == 16 ? 0u : 0xFF00u;
    if (ky == 2 && k == rows - 1) row = W == 16 ? 0u : 0x00FFu;
    return col & row;
}

static int dws_s1_ok(const et_conv2d_params *p, const dws_table *t) {
    const int W = (int)p->w;
    if ((W != 8 && W != 16) || p->h != W || t->ks != 9 || t->g != 1 || p->stride_h != 1 ||
        p->stride_w != 1 || t->hw != W * W || t->src_hw != W * W || t->chunks != W * W / 16)
        return 0;
    for (int k = 0; k < W * W / 16; k++)
        for (int tap = 0; tap < 9; tap++) {
            const unsigned m = dws_s1_mask(W, k, tap / 3, tap % 3);
            if (t->m[k][tap] != m) return 0;
            if (m && t->off[k][tap] != 16 * k + (tap / 3 - 1) * W + tap % 3 - 1) return 0;
        }
    return 1;
}

ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dws_wgrad_s1(const dws_table *t, int64_t c, int64_t n, const float *dy, const float *x, int64_t u0,
             int64_t u1, float *dw, const int W) {
    const int64_t hw = W * W;
#define DWS_S1_TAP(q)                                                                              \
    do {                                                                                           \
        const __mmask16 m = (__mmask16)dws_s1_mask(W, k, q / 3, q % 3);                          \
        if (m)                                                                                     \
            a##q = _mm512_mask3_fmadd_ps(                                                          \
                gv, _mm512_maskz_loadu_ps(m, s + 16 * k + (q / 3 - 1) * W + q % 3 - 1), a##q, m);  \
    } while (0)
    for (int64_t u = u0; u < u1; u++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0, a8 = a0;
        for (int64_t i = 0; i < n; i++) {
            const float *s = x + (i * c + u) * hw, *g = dy + (i * c + u) * hw;
#pragma GCC unroll 16
            for (int k = 0; k < W * W / 16; k++) {
                const __m512 gv = _mm512_loadu_ps(g + k * 16);
                DWS_S1_TAP(0); DWS_S1_TAP(1); DWS_S1_TAP(2);
                DWS_S1_TAP(3); DWS_S1_TAP(4); DWS_S1_TAP(5);
                DWS_S1_TAP(6); DWS_S1_TAP(7); DWS_S1_TAP(8);
            }
        }
        const __m512 acc[9] = {a0, a1, a2, a3, a4, a5, a6, a7, a8};
        for (int tap = 0; tap < 9; tap++) dw[u * 9 + tap] = t->tap_used[tap] ? dw_reduce16(acc[tap]) : 0.0f;
    }
#undef DWS_S1_TAP
}

/* MobileNetV2's 16x16 -> 8x8 weight gradient (3x3, stride 2, pads 1): chunk k holds output
 * rows 2k and 2k + 1, so tap (ky, kx) reads input rows 4k + ky - 1 (lanes 0-7) and 4k + ky + 1
 * (lanes 8-15) at columns 2 ox + kx - 1: one two-source permute of the two rows (loaded once an
 * image) instead of two window loads and a permute per tap, masks as constants (dws_s2w_ok
 * checks them against the table). Per lane the chain of dws_wgrad_unit. */
static inline unsigned dws_s2w_mask(int k, int ky, int kx) {
    return (kx == 0 ? 0xFEFEu : 0xFFFFu) & (k == 0 && ky == 0 ? 0xFF00u : 0xFFFFu);
}

static int dws_s2w_ok(const et_conv2d_params *p, const dws_table *t) {
    if (p->h != 16 || p->w != 16 || p->oh != 8 || p->ow != 8 || p->kh != 3 || p->kw != 3 ||
        p->stride_h != 2 || p->stride_w != 2 || p->pad_t != 1 || p->pad_l != 1 || p->dil_h != 1 ||
        p->dil_w != 1 || t->g != 1 || t->chunks != 4 || t->ks != 9)
        return 0;
    for (int k = 0; k < 4; k++)
        for (int tap = 0; tap < 9; tap++)
            if (t->m[k][tap] != dws_s2w_mask(k, tap / 3, tap % 3)) return 0;
    return 1;
}

ET_TARGET_AVX512 static void dws_wgrad_s2w(const dws_table *t, int64_t c, int64_t n,
                                           const float *dy, const float *x, int64_t u0, int64_t u1,
                                           float *dw) {
    __m512i ix[3]; /* per kx: lane l < 8 from the first row, l >= 8 from the second (+ 16) */
    for (int kx = 0; kx < 3; kx++) {
        int32_t e[16];
        for (int l = 0; l < 16; l++) {
            const int col = 2 * (l % 8) + kx - 1; /* -1: a masked-off lane */
            e[l] = (col < 0 ? 0 : col) + (l >= 8 ? 16 : 0);
        }
        ix[kx] = _mm512_loadu_si512((const void *)e);
    }
#define DWS_S2W_TAP(q, A, B)                                                                       \
    a##q = _mm512_mask3_fmadd_ps(gv, _mm512_permutex2var_ps(A, ix[q % 3], B), a##q,                 \
                                 (__mmask16)dws_s2w_mask(k, q / 3, q % 3))
    for (int64_t u = u0; u < u1; u++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0, a8 = a0;
        for (int64_t i = 0; i < n; i++) {
            const float *s = x + (i * c + u) * 256, *g = dy + (i * c + u) * 64;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512 gv = _mm512_loadu_ps(g + k * 16);
                /* rows 4k - 1 .. 4k + 3 (row -1: lanes masked off, row 0 read instead) */
                const __m512 r0 = _mm512_loadu_ps(s + (k == 0 ? 0 : 4 * k - 1) * 16);
                const __m512 r1 = _mm512_loadu_ps(s + (4 * k) * 16);
                const __m512 r2 = _mm512_loadu_ps(s + (4 * k + 1) * 16);
                const __m512 r3 = _mm512_loadu_ps(s + (4 * k + 2) * 16);
                const __m512 r4 = _mm512_loadu_ps(s + (4 * k + 3) * 16);
                DWS_S2W_TAP(0, r0, r2); DWS_S2W_TAP(1, r0, r2); DWS_S2W_TAP(2, r0, r2);
                DWS_S2W_TAP(3, r1, r3); DWS_S2W_TAP(4, r1, r3); DWS_S2W_TAP(5, r1, r3);
                DWS_S2W_TAP(6, r2, r4); DWS_S2W_TAP(7, r2, r4); DWS_S2W_TAP(8, r2, r4);
            }
        }
        const __m512 acc[9] = {a0, a1, a2, a3, a4, a5, a6, a7, a8};
        for (int tap = 0; tap < 9; tap++) dw[u * 9 + tap] = t->tap_used[tap] ? dw_reduce16(acc[tap]) : 0.0f;
    }
#undef DWS_S2W_TAP
}

ET_TARGET_AVX512 static void dws_wgrad_units(void *ctx, int64_t u0, int64_t u1, int tid) {
    const dws_job *j = (const dws_job *)ctx;
    const dws_table *t = j->t;
    const int64_t c = j->p->c, n = j->p->n;
    (void)tid;
    u0 = dws_wgrad_perm_units(t, c, n, j->dy, j->src, u0, u1, j->dst);
    if (dws_s2w_ok(j->p, t)) {
        dws_wgrad_s2w(t, c, n, j->dy, j->src, u0, u1, j->dst);
        return;
    }
    if (dws_s1_ok(j->p, t)) { /* (cheap next to a unit range: 144 mask compares) */
        if (j->p->w == 8) dws_wgrad_s1(t, c, n, j->dy, j->src, u0, u1, j->dst, 8);
        else dws_wgrad_s1(t, c, n, j->dy, j->src, u0, u1, j->dst, 16);
        return;
    }
    if (t->ks == 9 && t->g == 1 && t->all_contig) {
        dws_wgrad_contig9(t, c, n, j->dy, j->src, u0, u1, j->dst);
        return;
    }
    for (int64_t u = u0; u < u1; u++) {
        if (t->ks == 9) dws_wgrad_unit(t, c, n, j->dy, j->src, u, j->dst, 9);
        else dws_wgrad_unit(t, c, n, j->dy, j->src, u, j->dst, t->ks);
    }
}

ET_TARGET_AVX512 static void dws_wgrad(const dws_table *t, const et_conv2d_params *p,
                                       const float *dy, const float *x, float *dw, int nthreads) {
    const int64_t units = (p->c + t->g - 1) / t->g;
    const int nth = t->work * p->n < DWS_SERIAL_WORK ? 1 : nthreads;
    dws_job j = {t, p, p->n, p->c, x, NULL, NULL, dy, ET_ACT_NONE, 0.0f, dw};
    et_parallel_ranges(units, et_split_chunks(units, nth), nth, dws_wgrad_units, &j);
}

/* ---- AVX2, the flat table path (dws2) ------------------------------------------------------
 * The forward of dws (the same table, units, lanes and per-lane FMA chains) on 8-lane vectors:
 * each 16-lane chunk as two halves, masked loads (vmaskmovps, masked lanes never fault) or
 * gathers, the fused BatchNorm + relu / relu6 in registers as dws_bn_act. A half whose lanes
 * all read padding for a tap skips it (the canonical order); other padding lanes add w * 0 as
 * the AVX-512 path does. */

/* Lanes of the 8-bit mask m8 as a vector mask. */
ET_TARGET_AVX2 static inline __m256i dws2_mask(unsigned m8) {
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)m8), bits), bits);
}

ET_TARGET_AVX2 static inline __m256 dws2_bn_act(__m256 v, __m256 a, __m256 s, et_act act) {
    const __m256 zero = _mm256_setzero_ps();
    v = _mm256_add_ps(_mm256_mul_ps(v, a), s);
    if (act == ET_ACT_RELU) return _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
    if (act == ET_ACT_RELU6) {
        v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LE_OQ));
        const __m256 six = _mm256_set1_ps(6.0f);
        v = _mm256_blendv_ps(v, six, _mm256_cmp_ps(v, six, _CMP_GE_OQ));
    }
    return v;
}

/* Half h of per-lane values v[c0 + lane's channel] (as dws_lane_vec; vm the unit's lanes). */
ET_TARGET_AVX2 static inline __m256 dws2_lane_vec(const dws_table *t, const float *v, int64_t vs,
                                                  __mmask16 vm, int h) {
    if (t->g == 1) return _mm256_set1_ps(v[0]);
    const __m256i idx = _mm256_mullo_epi32(
        _mm256_loadu_si256((const __m256i *)(const void *)(t->lch + 8 * h)), _mm256_set1_epi32((int)vs));
    const __m256 m = _mm256_castsi256_ps(dws2_mask((unsigned)(vm >> (8 * h)) & 0xFFu));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), v, idx, m, 4);
}

ET_TARGET_AVX2 static void dws2_fwd_units(const dws_job *j, int64_t u0, int64_t u1, int64_t n0,
                                          int64_t n) {
    const dws_table *t = j->t;
    const et_conv2d_params *jp = j->p;
    const int64_t c = j->c, ks = t->ks, hw = t->hw, src_hw = t->src_hw;
    const et_act act = jp->act;
    const int bn_vec = jp->bn_scale && (act == ET_ACT_NONE || act == ET_ACT_RELU || act == ET_ACT_RELU6);
    for (int64_t u = u0; u < u1; u++) {
        int64_t gc;
        const __mmask16 vm = dws_unit_mask(t, c, u, &gc);
        const int64_t c0 = u * t->g;
        __m256 wv[2][DWS_MAX_TAPS], bv[2], av[2], sv[2];
        for (int h = 0; h < 2; h++) {
            for (int64_t tap = 0; tap < ks; tap++)
                wv[h][tap] = t->tap_used[tap] ? dws2_lane_vec(t, j->w + c0 * ks + tap, ks, vm, h)
                                              : _mm256_setzero_ps();
            bv[h] = j->b ? dws2_lane_vec(t, j->b + c0, 1, vm, h) : _mm256_setzero_ps();
            av[h] = bn_vec ? dws2_lane_vec(t, jp->bn_scale + c0, 1, vm, h) : _mm256_setzero_ps();
            sv[h] = bn_vec ? dws2_lane_vec(t, jp->bn_shift + c0, 1, vm, h) : _mm256_setzero_ps();
        }
        for (int64_t i0 = n0; i0 < n; i0 += DWS_IMGS) {
            const int64_t ni = n - i0 < DWS_IMGS ? n - i0 : DWS_IMGS;
            const float *s = j->src + (i0 * c + c0) * src_hw;
            float *d = j->dst + (i0 * c + c0) * hw;
            const int64_t ss = c * src_hw, ds = c * hw;
            for (int64_t k = 0; k < t->chunks; k++)
                for (int h = 0; h < 2; h++) {
                    const unsigned om = (unsigned)((vm & t->cm[k]) >> (8 * h)) & 0xFFu;
                    if (!om) continue;
                    __m256 acc[DWS_IMGS];
                    for (int q = 0; q < DWS_IMGS; q++) acc[q] = bv[h];
                    for (int64_t tap = 0; tap < ks; tap++) {
                        const unsigned m8 = (unsigned)((t->m[k][tap] & vm) >> (8 * h)) & 0xFFu;
                        if (!m8) continue;
                        const __m256i mi = dws2_mask(m8);
                        if (t->contig[k][tap]) {
                            const float *src = s + t->off[k][tap] + 8 * h;
                            for (int q = 0; q < DWS_IMGS; q++)
                                if (q < ni)
                                    acc[q] = _mm256_fmadd_ps(wv[h][tap], _mm256_maskload_ps(src + q * ss, mi), acc[q]);
                        } else {
                            const __m256i idx = _mm256_loadu_si256((const __m256i *)(const void *)(t->idx[k][tap] + 8 * h));
                            for (int q = 0; q < DWS_IMGS; q++)
                                if (q < ni)
                                    acc[q] = _mm256_fmadd_ps(
                                        wv[h][tap],
                                        _mm256_mask_i32gather_ps(_mm256_setzero_ps(), s + q * ss, idx,
                                                                 _mm256_castsi256_ps(mi), 4),
                                        acc[q]);
                        }
                    }
                    const __m256i mo = dws2_mask(om);
                    for (int q = 0; q < DWS_IMGS; q++)
                        if (q < ni) {
                            if (bn_vec) acc[q] = dws2_bn_act(acc[q], av[h], sv[h], act);
                            _mm256_maskstore_ps(d + q * ds + k * 16 + 8 * h, mo, acc[q]);
                        }
                }
            if (act != ET_ACT_NONE && !jp->bn_scale)
                for (int64_t i = 0; i < ni; i++) et_conv_bias_act_(d + i * ds, gc * hw, 0.0f, act, jp->act_alpha);
            if (jp->bn_scale && !bn_vec)
                for (int64_t i = 0; i < ni; i++)
                    for (int64_t ch = 0; ch < gc; ch++)
                        et_conv_epilogue_(jp, c0 + ch, 0.0f, d + i * ds + ch * hw, hw);
        }
    }
}

static int dw3_fwd__avx2(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                         float *y, int nthreads);
static int dw1_fwd__avx2(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                         float *y, int nthreads);
static int dw_fwd_fast__avx2(const et_conv2d_params *p, const float *x, const float *w,
                             const float *b, float *y, int nthreads) {
    if (dw3_fwd__avx2(p, x, w, b, y, nthreads)) return 1;
    dws_table t;
    if (!dws_build(p, 0, &t)) return dw1_fwd__avx2(p, x, w, b, y, nthreads);
    const int64_t units = (p->c + t.g - 1) / t.g;
    const int nth = t.work * p->n < DWS_SERIAL_WORK ? 1 : nthreads;
    dws_job j = {&t, p, p->n, p->c, x, w, b, NULL, p->act, p->act_alpha, y};
    dws_run(&j, units, nth, dws2_fwd_units);
    return 1;
}

/* ---- AVX-512, stride-2 forward on narrow planes ------------------------------------------
 * Input rows of at most 16 floats, output rows of 4 .. 8 (14 -> 7, 7 -> 4 in MobileNetV2): one
 * vector holds two output rows (lane r * ow + x, r < 2). For each kernel row the two input rows
 * they read are two masked loads (a missing row is a zero vector), and each tap's 16 inputs are
 * one two-source permute of them (dwq_plan.idx: element r * 16 + 2x - pl + kx * dw), zeroing
 * the lanes whose column is padding (dwq_plan.cm). Bits: per output one FMA chain from the bias
 * over the taps in (ky, kx) order, the epilogue in registers where dws_bn_act covers it (else
 * et_conv_epilogue_ after the plane); a kernel row missing for both output rows is skipped, a
 * padding tap of one of them adds w * 0 as the flat table path does. */
#define DWQ_MAX_TAPS 16
#define DWQ_PAIRS 4 /* row pairs of the unrolled 3x3 body (outputs up to 8 rows) */

typedef struct dwq_plan {
    __m512i idx[DWQ_MAX_TAPS]; /* per kx */
    __mmask16 cm[DWQ_MAX_TAPS]; /* per kx: lanes whose column is inside the row */
    __mmask16 rm;               /* the row's elements */
    /* 3x3 with oh <= 2 * DWQ_PAIRS: per row pair and ky the offsets of its two input rows in
     * the plane and their load masks (rm, or 0 for a missing row: a zero vector) */
    int32_t off[DWQ_PAIRS][3][2];
    __mmask16 lm[DWQ_PAIRS][3][2];
} dwq_plan;

static int dwq_ok(const et_conv2d_params *p) {
    return p->stride_h == 2 && p->stride_w == 2 && p->w <= 16 && p->ow >= 4 && p->ow <= 8 &&
           p->kw <= DWQ_MAX_TAPS && p->kh * p->kw <= DWQ_MAX_TAPS;
}

ET_TARGET_AVX512 static void dwq_make(const et_conv2d_params *p, dwq_plan *q) {
    for (int64_t kx = 0; kx < p->kw; kx++) {
        int32_t id[16];
        unsigned m = 0;
        for (int l = 0; l < 16; l++) {
            const int64_t r = l / p->ow, x = l % p->ow, ix = 2 * x - p->pad_l + kx * p->dil_w;
            const int ok = r < 2 && ix >= 0 && ix < p->w;
            id[l] = ok ? (int32_t)(r * 16 + ix) : 0;
            m |= (unsigned)ok << l;
        }
        q->idx[kx] = _mm512_loadu_si512((const void *)id);
        q->cm[kx] = (__mmask16)m;
    }
    q->rm = (__mmask16)((1u << p->w) - 1u);
    for (int64_t pr = 0; pr < DWQ_PAIRS; pr++)
        for (int64_t ky = 0; ky < 3; ky++)
            for (int64_t r = 0; r < 2; r++) {
                const int64_t oy = 2 * pr + r, iy = 2 * oy - p->pad_t + ky * p->dil_h;
                const int ok = oy < p->oh && iy >= 0 && iy < p->h;
                q->off[pr][ky][r] = ok ? (int32_t)(iy * p->w) : 0;
                q->lm[pr][ky][r] = ok ? q->rm : 0;
            }
}

typedef struct dwq_job {
    const et_conv2d_params *p;
    const dwq_plan *q;
    const float *x, *w, *b;
    float *out;
} dwq_job;

/* Inlined with constant kh, kw for 3x3 (the loops unrolled, the weights in registers). */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dwq_planes_body(const dwq_job *k, int64_t p0, int64_t p1, const int64_t kh, const int64_t kw) {
    const et_conv2d_params *p = k->p;
    const dwq_plan *q = k->q;
    const int64_t mult = p->oc / p->c, h = p->h, w = p->w, oh = p->oh, ow = p->ow;
    const int64_t xs = h * w, ys = oh * ow, ks = kh * kw;
    const int bn_vec = p->bn_scale && (p->act == ET_ACT_NONE || p->act == ET_ACT_RELU || p->act == ET_ACT_RELU6);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t pl = p0; pl < p1; pl++) {
        const int64_t i = pl / p->oc, o = pl % p->oc;
        const float *xp = k->x + (i * p->c + o / mult) * xs, *wo = k->w + o * ks;
        float *yp = k->out + pl * ys;
        __m512 wv[DWQ_MAX_TAPS];
        for (int64_t t = 0; t < ks; t++) wv[t] = _mm512_set1_ps(wo[t]);
        const __m512 bv = _mm512_set1_ps(k->b ? k->b[o] : 0.0f);
        const __m512 av = _mm512_set1_ps(bn_vec ? p->bn_scale[o] : 0.0f);
        const __m512 sv = _mm512_set1_ps(bn_vec ? p->bn_shift[o] : 0.0f);
        for (int64_t y0 = 0; y0 < oh; y0 += 2) {
            __m512 acc = bv;
            for (int64_t ky = 0; ky < kh; ky++) {
                const int64_t ia = 2 * y0 - p->pad_t + ky * p->dil_h, ib = ia + 2;
                const int va = ia >= 0 && ia < h, vb = y0 + 1 < oh && ib >= 0 && ib < h;
                if (!va && !vb) continue;
                const __m512 A = va ? _mm512_maskz_loadu_ps(q->rm, xp + ia * w) : zero;
                const __m512 B = vb ? _mm512_maskz_loadu_ps(q->rm, xp + ib * w) : zero;
                for (int64_t kx = 0; kx < kw; kx++)
                    acc = _mm512_fmadd_ps(wv[ky * kw + kx],
                                          _mm512_maskz_permutex2var_ps(q->cm[kx], A, q->idx[kx], B), acc);
            }
            if (bn_vec) acc = dws_bn_act(acc, av, sv, p->act);
            const int64_t n = (y0 + 1 < oh ? 2 : 1) * ow;
            _mm512_mask_storeu_ps(yp + y0 * ow, (__mmask16)((1u << n) - 1u), acc);
        }
        if (!bn_vec && (p->act != ET_ACT_NONE || p->bn_scale)) et_conv_epilogue_(p, o, 0.0f, yp, ys);
    }
}

/* 3x3 with np = ceil(oh / 2) <= DWQ_PAIRS row pairs: the np pairs' chains side by side, no
 * branches (a missing row is a masked-off load, so its taps add w * 0 where the body above
 * skips a row missing for both outputs; see the file top for w * 0). Inlined with constant np. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dwq3_planes_body(const dwq_job *k, int64_t p0, int64_t p1, const int np) {
    const et_conv2d_params *p = k->p;
    const dwq_plan *q = k->q;
    const int64_t mult = p->oc / p->c, oh = p->oh, ow = p->ow, xs = p->h * p->w, ys = oh * ow;
    const int bn_vec = p->bn_scale && (p->act == ET_ACT_NONE || p->act == ET_ACT_RELU || p->act == ET_ACT_RELU6);
    const et_act act = p->act;
    const __m512i idx0 = q->idx[0], idx1 = q->idx[1], idx2 = q->idx[2];
    const __mmask16 cm0 = q->cm[0], cm1 = q->cm[1], cm2 = q->cm[2];
    for (int64_t pl = p0; pl < p1; pl++) {
        const int64_t i = pl / p->oc, o = pl % p->oc;
        const float *xp = k->x + (i * p->c + o / mult) * xs, *wo = k->w + o * 9;
        float *yp = k->out + pl * ys;
        __m512 wv[9], acc[DWQ_PAIRS];
        for (int t = 0; t < 9; t++) wv[t] = _mm512_set1_ps(wo[t]);
        const __m512 bv = _mm512_set1_ps(k->b ? k->b[o] : 0.0f);
        for (int pr = 0; pr < np; pr++) acc[pr] = bv;
        for (int ky = 0; ky < 3; ky++)
            for (int pr = 0; pr < np; pr++) {
                const __m512 A = _mm512_maskz_loadu_ps(q->lm[pr][ky][0], xp + q->off[pr][ky][0]);
                const __m512 B = _mm512_maskz_loadu_ps(q->lm[pr][ky][1], xp + q->off[pr][ky][1]);
                const __m512 *w3 = wv + ky * 3;
                __m512 a = acc[pr];
                a = _mm512_fmadd_ps(w3[0], _mm512_maskz_permutex2var_ps(cm0, A, idx0, B), a);
                a = _mm512_fmadd_ps(w3[1], _mm512_maskz_permutex2var_ps(cm1, A, idx1, B), a);
                acc[pr] = _mm512_fmadd_ps(w3[2], _mm512_maskz_permutex2var_ps(cm2, A, idx2, B), a);
            }
        if (bn_vec) {
            const __m512 av = _mm512_set1_ps(p->bn_scale[o]), sv = _mm512_set1_ps(p->bn_shift[o]);
            for (int pr = 0; pr < np; pr++) acc[pr] = dws_bn_act(acc[pr], av, sv, act);
        }
        for (int pr = 0; pr < np; pr++) {
            const int64_t n = (2 * pr + 1 < oh ? 2 : 1) * ow;
            _mm512_mask_storeu_ps(yp + 2 * pr * ow, (__mmask16)((1u << n) - 1u), acc[pr]);
        }
        if (!bn_vec && (act != ET_ACT_NONE || p->bn_scale)) et_conv_epilogue_(p, o, 0.0f, yp, ys);
    }
}

ET_TARGET_AVX512 static void dwq_fwd_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    const dwq_job *k = (const dwq_job *)ctx;
    const int64_t np = (k->p->oh + 1) / 2;
    (void)tid;
    if (k->p->kh == 3 && k->p->kw == 3 && np <= DWQ_PAIRS) {
        if (np == 4) dwq3_planes_body(k, p0, p1, 4);
        else if (np == 3) dwq3_planes_body(k, p0, p1, 3);
        else if (np == 2) dwq3_planes_body(k, p0, p1, 2);
        else dwq3_planes_body(k, p0, p1, 1);
    } else if (k->p->kh == 3 && k->p->kw == 3) {
        dwq_planes_body(k, p0, p1, 3, 3);
    } else {
        dwq_planes_body(k, p0, p1, k->p->kh, k->p->kw);
    }
}

/* ---- AVX-512, stride-2 3x3 forward on wide planes (dw3) ----------------------------------
 * Stride 2, 3x3, dilation 1, pads 0 .. 2 (MobileNetV2's 112 -> 56 ... 28 -> 14). No buffer:
 * for a 16-wide output piece at column j0, an input row's three taps are the elements
 * c0 + 2j + kx (c0 = 2 * j0 - pl): two permutes of the masked loads at c0 and c0 + 16 (kx 0
 * and 1) and one of the loads at c0 + 2 and c0 + 18 (kx 2); columns outside the row are masked
 * off (zeros). Each input row is loaded and split once per piece: the last row of output row
 * oy is the first of oy + 1 (carried over). Two output rows per step (independent FMA chains).
 * Bits: per output one FMA chain from the bias over the taps in (ky, kx) order, then the
 * epilogue in registers where dws_bn_act covers it (else et_conv_epilogue_ after the plane); a
 * padding tap adds w * 0 (a missing row is a zero vector), as the padded-plane path does. */
/* Narrower outputs stay on the flat table (dws), whose vectors hold several rows or channels
 * (timed: 4x4 -> 2x2 2x faster there, 6x6 -> 3x3 the same; 18x18 -> 9x9 2.5x faster here). The
 * narrow-plane path (dwq) goes first. */
#define DW3_MIN_OW 3

static int dw3_ok(const et_conv2d_params *p) {
    return p->stride_h == 2 && p->stride_w == 2 && p->kh == 3 && p->kw == 3 && p->dil_h == 1 &&
           p->dil_w == 1 && p->pad_t >= 0 && p->pad_t <= 2 && p->pad_l >= 0 && p->pad_l <= 2 &&
           p->ow >= DW3_MIN_OW && p->oh >= 1;
}

/* Lanes e of a load at column c whose column c + e is inside a row of iw. */
static inline __mmask16 dw3_mask(int64_t c, int64_t iw) {
    const int64_t lo = c < 0 ? -c : 0, hi = iw - c < 16 ? iw - c : 16;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* The three taps (kx = 0, 1, 2) of input row r (NULL: padding) for the piece at column c0. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
dw3_split(const float *r, int64_t c0, const __mmask16 *m, __m512 *t) {
    if (!r) {
        t[0] = t[1] = t[2] = _mm512_setzero_ps();
        return;
    }
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512 a = _mm512_maskz_loadu_ps(m[0], r + c0);
    const __m512 b = _mm512_maskz_loadu_ps(m[1], r + c0 + 16);
    const __m512 a2 = _mm512_maskz_loadu_ps(m[2], r + c0 + 2);
    const __m512 b2 = _mm512_maskz_loadu_ps(m[3], r + c0 + 18);
    t[0] = _mm512_permutex2var_ps(a, ev, b);
    t[1] = _mm512_permutex2var_ps(a, od, b);
    t[2] = _mm512_permutex2var_ps(a2, ev, b2);
}

/* acc + the three taps of one kernel row (weights w[0..2]) in kx order. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) __m512
dw3_row(__m512 acc, const __m512 *w, const __m512 *t) {
    acc = _mm512_fmadd_ps(w[0], t[0], acc);
    acc = _mm512_fmadd_ps(w[1], t[1], acc);
    return _mm512_fmadd_ps(w[2], t[2], acc);
}

ET_TARGET_AVX512 static void dw3_fwd_planes(void *ctx, int64_t p0, int64_t p1, int tid) {
    const dw_job *k = (const dw_job *)ctx;
    const et_conv2d_params *p = k->p;
    const int64_t mult = p->oc / p->c, h = p->h, iw = p->w, oh = p->oh, ow = p->ow;
    const int64_t pt = p->pad_t, pl = p->pad_l, xs = h * iw, ys = oh * ow;
    const int bn_vec = p->bn_scale && (p->act == ET_ACT_NONE || p->act == ET_ACT_RELU || p->act == ET_ACT_RELU6);
    (void)tid;
    for (int64_t q = p0; q < p1; q++) {
        const int64_t i = q / p->oc, o = q % p->oc;
        const float *xp = k->x + (i * p->c + o / mult) * xs, *wo = k->w + o * 9;
        float *yp = k->out + q * ys;
        __m512 wv[9];
        for (int t = 0; t < 9; t++) wv[t] = _mm512_set1_ps(wo[t]);
        const __m512 bv = _mm512_set1_ps(k->b ? k->b[o] : 0.0f);
        const __m512 av = _mm512_set1_ps(bn_vec ? p->bn_scale[o] : 0.0f);
        const __m512 sv = _mm512_set1_ps(bn_vec ? p->bn_shift[o] : 0.0f);
        for (int64_t j0 = 0; j0 < ow; j0 += 16) {
            const int64_t c0 = 2 * j0 - pl, n = ow - j0 < 16 ? ow - j0 : 16;
            const __mmask16 mo = (__mmask16)((1u << n) - 1u);
            const __mmask16 m[4] = {dw3_mask(c0, iw), dw3_mask(c0 + 16, iw), dw3_mask(c0 + 2, iw),
                                    dw3_mask(c0 + 18, iw)};
#define DW3_ROW(iy) ((iy) >= 0 && (iy) < h ? xp + (iy) * iw : NULL)
            __m512 t0[3], t1[3], t2[3], t3[3], t4[3];
            dw3_split(DW3_ROW(-pt), c0, m, t0);
            int64_t oy = 0;
            for (; oy + 2 <= oh; oy += 2) { /* input rows 2oy - pt .. 2oy - pt + 4 */
                const int64_t r = 2 * oy - pt;
                dw3_split(DW3_ROW(r + 1), c0, m, t1);
                dw3_split(DW3_ROW(r + 2), c0, m, t2);
                dw3_split(DW3_ROW(r + 3), c0, m, t3);
                dw3_split(DW3_ROW(r + 4), c0, m, t4);
                __m512 a0 = dw3_row(dw3_row(dw3_row(bv, wv, t0), wv + 3, t1), wv + 6, t2);
                __m512 a1 = dw3_row(dw3_row(dw3_row(bv, wv, t2), wv + 3, t3), wv + 6, t4);
                if (bn_vec) {
                    a0 = dws_bn_act(a0, av, sv, p->act);
                    a1 = dws_bn_act(a1, av, sv, p->act);
                }
                _mm512_mask_storeu_ps(yp + oy * ow + j0, mo, a0);
                _mm512_mask_storeu_ps(yp + (oy + 1) * ow + j0, mo, a1);
                t0[0] = t4[0];
                t0[1] = t4[1];
                t0[2] = t4[2];
            }
            if (oy < oh) {
                const int64_t r = 2 * oy - pt;
                dw3_split(DW3_ROW(r + 1), c0, m, t1);
                dw3_split(DW3_ROW(r + 2), c0, m, t2);
                __m512 a0 = dw3_row(dw3_row(dw3_row(bv, wv, t0), wv + 3, t1), wv + 6, t2);
                if (bn_vec) a0 = dws_bn_act(a0, av, sv, p->act);
                _mm512_mask_storeu_ps(yp + oy * ow + j0, mo, a0);
            }
#undef DW3_ROW
        }
        if (!bn_vec && (p->act != ET_ACT_NONE || p->bn_scale)) et_conv_epilogue_(p, o, 0.0f, yp, ys);
    }
}

/* ---- AVX-512, stride-1 3x3 forward on large planes (dw1) ---------------------------------
 * Stride 1, 3x3, dilation 1, pads 0 .. 2, planes above the flat table's limit (MobileNetV2's
 * 112x112 and 56x56). No buffer: for a 16-wide output piece at column j0, input row r's taps are
 * the masked loads at c0 + kx (c0 = j0 - pl; columns outside the row masked off, zeros). A band
 * of DW1_ROWS output rows is done piece by piece, streaming its DW1_ROWS + 2 input rows in
 * ascending order: row r adds its three taps to the outputs it is kernel row ky = r - oy of, so
 * each output's chain runs ky, then kx, ascending, and the band's rows are independent FMA
 * chains. The band's input rows stay in L1 across its pieces; each is loaded once per piece
 * (the padded-plane path copied each row into a buffer and loaded every tap from it).
 * Bits: those of the padded-plane path it replaces here: per output one FMA chain from the bias
 * over all nine taps in (ky, kx) order, a padding tap adding w * 0 (a missing row is a zero
 * vector), then the epilogue in registers where dws_bn_act covers it (else et_conv_epilogue_
 * after the plane). */
#define DW1_ROWS 8 /* output rows a band (the unrolled body's chains) */

static int dw1_ok(const et_conv2d_params *p) {
    return p->stride_h == 1 && p->stride_w == 1 && p->kh == 3 && p->kw == 3 && p->dil_h == 1 &&
           p->dil_w == 1 && p->pad_t >= 0 && p->pad_t <= 2 && p->pad_l >= 0 && p->pad_l <= 2 &&
           p->oh >= 1 && p->ow >= 1 && p->oh * p->ow > DWS_MAX_HW;
}

#define DW1(f) f
#define DW1_TARGET ET_TARGET_AVX512
#define DW1_ROWS_MAX DW1_ROWS
#define V __m512
#define VW 16
#define VM __mmask16
#define V_SET1(f) _mm512_set1_ps(f)
#define V_ZERO() _mm512_setzero_ps()
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_LOADM(ptr, m) _mm512_maskz_loadu_ps(m, ptr)
#define V_STOREM(ptr, v, n, mo) _mm512_mask_storeu_ps(ptr, mo, v)
#define MASK_COLS(c, iw) dw3_mask(c, iw)
#define MASK_FIRST(n) ((__mmask16)((1u << (n)) - 1u))
#define V_BN_ACT(v, a, s, act) dws_bn_act(v, a, s, act)
#include "dw1_body.h"

/* dw3 with AVX2 (8-wide pieces; masked loads are vmaskmovps, which does not fault on masked-off
 * lanes either). The same chains as the AVX-512 dw3. */
ET_TARGET_AVX2 static inline __m256i dw3_mask8(int64_t c, int64_t iw) {
    const __m256i col =
        _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)c));
    return _mm256_and_si256(_mm256_cmpgt_epi32(col, _mm256_set1_epi32(-1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32((int)iw), col));
}

/* The even / odd elements of (a, b): 8 of the 16. */
ET_TARGET_AVX2 static inline __m256 dw3_evens8(__m256 a, __m256 b) {
    const __m256 e = _mm256_shuffle_ps(a, b, 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
}
ET_TARGET_AVX2 static inline __m256 dw3_odds8(__m256 a, __m256 b) {
    const __m256 e = _mm256_shuffle_ps(a, b, 0xDD);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
}

ET_TARGET_AVX2 static inline __attribute__((always_inline)) void
dw3_split8(const float *r, int64_t c0, const __m256i *m, __m256 *t) {
    if (!r) {
        t[0] = t[1] = t[2] = _mm256_setzero_ps();
        return;
    }
    const __m256 a = _mm256_maskload_ps(r + c0, m[0]), b = _mm256_maskload_ps(r + c0 + 8, m[1]);
    const __m256 a2 = _mm256_maskload_ps(r + c0 + 2, m[2]);
    const __m256 b2 = _mm256_maskload_ps(r + c0 + 10, m[3]);
    t[0] = dw3_evens8(a, b);
    t[1] = dw3_odds8(a, b);
    t[2] = dw3_evens8(a2, b2);
}

ET_TARGET_AVX2 static inline __attribute__((always_inline)) __m256
dw3_row8(__m256 acc, const __m256 *w, const __m256 *t) {
    acc = _mm256_fmadd_ps(w[0], t[0], acc);
    acc = _mm256_fmadd_ps(w[1], t[1], acc);
    return _mm256_fmadd_ps(w[2], t[2], acc);
}

/* Output piece of n <= 8 floats stored (the masked-off lanes untouched). */
ET_TARGET_AVX2 static inline void dw3_store8(float *d, __m256 v, int64_t n, __m256i mo) {
    if (n == 8) _mm256_storeu_ps(d, v);
    else _mm256_maskstore_ps(d, mo, v);
}

ET_TARGET_AVX2 static void dw3_fwd_planes__avx2(void *ctx, int64_t p0, int64_t p1, int tid) {
    const dw_job *k = (const dw_job *)ctx;
    const et_conv2d_params *p = k->p;
    const int64_t mult = p->oc / p->c, h = p->h, iw = p->w, oh = p->oh, ow = p->ow;
    const int64_t pt = p->pad_t, pl = p->pad_l, xs = h * iw, ys = oh * ow;
    const int bn_vec = p->bn_scale && (p->act == ET_ACT_NONE || p->act == ET_ACT_RELU || p->act == ET_ACT_RELU6);
    (void)tid;
    for (int64_t q = p0; q < p1; q++) {
        const int64_t i = q / p->oc, o = q % p->oc;
        const float *xp = k->x + (i * p->c + o / mult) * xs, *wo = k->w + o * 9;
        float *yp = k->out + q * ys;
        __m256 wv[9];
        for (int t = 0; t < 9; t++) wv[t] = _mm256_set1_ps(wo[t]);
        const __m256 bv = _mm256_set1_ps(k->b ? k->b[o] : 0.0f);
        const __m256 av = _mm256_set1_ps(bn_vec ? p->bn_scale[o] : 0.0f);
        const __m256 sv = _mm256_set1_ps(bn_vec ? p->bn_shift[o] : 0.0f);
        for (int64_t j0 = 0; j0 < ow; j0 += 8) {
            const int64_t c0 = 2 * j0 - pl, n = ow - j0 < 8 ? ow - j0 : 8;
            const __m256i mo = dw3_mask8(0, n);
            const __m256i m[4] = {dw3_mask8(c0, iw), dw3_mask8(c0 + 8, iw), dw3_mask8(c0 + 2, iw),
                                  dw3_mask8(c0 + 10, iw)};
#define DW3_ROW(iy) ((iy) >= 0 && (iy) < h ? xp + (iy) * iw : NULL)
            __m256 t0[3], t1[3], t2[3], t3[3], t4[3];
            dw3_split8(DW3_ROW(-pt), c0, m, t0);
            int64_t oy = 0;
            for (; oy + 2 <= oh; oy += 2) {
                const int64_t r = 2 * oy - pt;
                dw3_split8(DW3_ROW(r + 1), c0, m, t1);
                dw3_split8(DW3_ROW(r + 2), c0, m, t2);
                dw3_split8(DW3_ROW(r + 3), c0, m, t3);
                dw3_split8(DW3_ROW(r + 4), c0, m, t4);
                __m256 a0 = dw3_row8(dw3_row8(dw3_row8(bv, wv, t0), wv + 3, t1), wv + 6, t2);
                __m256 a1 = dw3_row8(dw3_row8(dw3_row8(bv, wv, t2), wv + 3, t3), wv + 6, t4);
                if (bn_vec) {
                    a0 = dws2_bn_act(a0, av, sv, p->act);
                    a1 = dws2_bn_act(a1, av, sv, p->act);
                }
                dw3_store8(yp + oy * ow + j0, a0, n, mo);
                dw3_store8(yp + (oy + 1) * ow + j0, a1, n, mo);
                t0[0] = t4[0];
                t0[1] = t4[1];
                t0[2] = t4[2];
            }
            if (oy < oh) {
                const int64_t r = 2 * oy - pt;
                dw3_split8(DW3_ROW(r + 1), c0, m, t1);
                dw3_split8(DW3_ROW(r + 2), c0, m, t2);
                __m256 a0 = dw3_row8(dw3_row8(dw3_row8(bv, wv, t0), wv + 3, t1), wv + 6, t2);
                if (bn_vec) a0 = dws2_bn_act(a0, av, sv, p->act);
                dw3_store8(yp + oy * ow + j0, a0, n, mo);
            }
#undef DW3_ROW
        }
        if (!bn_vec && (p->act != ET_ACT_NONE || p->bn_scale)) et_conv_epilogue_(p, o, 0.0f, yp, ys);
    }
}

/* dw1 with AVX2: 8-wide pieces, bands of DW1_ROWS8 output rows (16 ymm registers: the band's
 * accumulators, three taps, the nine weights). The same chains as the AVX-512 dw1. */
#define DW1_ROWS8 4

#define DW1(f) f##__avx2
#define DW1_TARGET ET_TARGET_AVX2
#define DW1_ROWS_MAX DW1_ROWS8
#define V __m256
#define VW 8
#define VM __m256i
#define V_SET1(f) _mm256_set1_ps(f)
#define V_ZERO() _mm256_setzero_ps()
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_LOADM(ptr, m) _mm256_maskload_ps(ptr, m)
#define V_STOREM(ptr, v, n, mo) dw3_store8(ptr, v, n, mo)
#define MASK_COLS(c, iw) dw3_mask8(c, iw)
#define MASK_FIRST(n) dw3_mask8(0, n)
#define V_BN_ACT(v, a, s, act) dws2_bn_act(v, a, s, act)
#include "dw1_body.h"

static int dw1_fwd__avx2(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                         float *y, int nthreads) {
    if (!dw1_ok(p)) return 0;
    const dw_geom g = dw_fwd_geom(p);
    const int64_t planes = p->n * p->oc;
    dw_job k = {p, &g, NULL, NULL, x, w, b, NULL, y, 0};
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, dw1_fwd_planes__avx2, &k);
    return 1;
}

static int dw3_fwd__avx2(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                         float *y, int nthreads) {
    if (!dw3_ok(p)) return 0;
    const dw_geom g = dw_fwd_geom(p);
    const int64_t planes = p->n * p->oc;
    dw_job k = {p, &g, NULL, NULL, x, w, b, NULL, y, 0};
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, dw3_fwd_planes__avx2, &k);
    return 1;
}

et_status et_f32_dwconv2d_fwd__avx512(const et_conv2d_params *p, const float *x, const float *w,
                                      const float *b, float *y, int nthreads) {
    if (dwq_ok(p)) {
        dwq_plan q;
        dwq_make(p, &q);
        const int64_t planes = p->n * p->oc;
        dwq_job k = {p, &q, x, w, b, y};
        et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, dwq_fwd_planes, &k);
        return ET_OK;
    }
    if (dw3_ok(p)) {
        const dw_geom g = dw_fwd_geom(p);
        const int64_t planes = p->n * p->oc;
        dw_job k = {p, &g, NULL, NULL, x, w, b, NULL, y, 0};
        et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, dw3_fwd_planes, &k);
        return ET_OK;
    }
    dws_table t;
    if (!(p->stride_h == 2 && p->stride_w == 2 && p->ow >= DWS_S2_MIN_OW) && dws_build(p, 0, &t)) {
        dws_apply(&t, p, x, w, b, p->act, p->act_alpha, y, nthreads);
        return ET_OK;
    }
    if (dw1_ok(p)) {
        const dw_geom g = dw_fwd_geom(p);
        const int64_t planes = p->n * p->oc;
        dw_job k = {p, &g, NULL, NULL, x, w, b, NULL, y, 0};
        et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, dw1_fwd_planes, &k);
        return ET_OK;
    }
    dw_geom g = dw_fwd_geom(p);
    dwp_plan pl;
    if (dwp_make(&g, &pl)) {
        g.plan = &pl;
        const int64_t planes = p->n * p->oc;
        dw_job k = {p, &g, NULL, NULL, x, w, b, NULL, y, 0};
        et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, dwp_fwd_planes, &k);
        return ET_OK;
    }
    dw_fwd_g(p, &g, x, w, b, y, nthreads, dw_plane__avx512, dw_fwd_planes);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_input__avx512(const et_conv2d_params *p, const float *dy,
                                            const float *w, float *dx, int nthreads) {
    dws_table t;
    if (dws_build(p, 1, &t)) {
        dws_apply(&t, p, dy, w, NULL, ET_ACT_NONE, 0.0f, dx, nthreads);
        return ET_OK;
    }
    dw_geom g = dw_flip_geom(p);
    dwp_plan pl;
    if (dwp_make(&g, &pl)) g.plan = &pl;
    dw_bwd_input_g(p, &g, dy, w, dx, nthreads, dw_plane__avx512);
    return ET_OK;
}
et_status et_f32_dwconv2d_bwd_weight__avx512(const et_conv2d_params *p, const float *dy,
                                             const float *x, float *dw, int nthreads) {
    dws_table t;
    if (dws_build(p, 0, &t)) {
        dws_wgrad_windows(&t);
        dws_wgrad(&t, p, dy, x, dw, nthreads);
        return ET_OK;
    }
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

/* dw_lanes__ref on four 4-lane vectors per 16 lanes. */
static void dw_lanes__neon(float *acc, const float *g, const float *x, int64_t s, int64_t cnt) {
    float32x4_t a0 = vld1q_f32(acc), a1 = vld1q_f32(acc + 4), a2 = vld1q_f32(acc + 8),
                a3 = vld1q_f32(acc + 12);
    int64_t j = 0;
    if (s == 1) {
        for (; j + 16 <= cnt; j += 16) {
            a0 = vfmaq_f32(a0, vld1q_f32(g + j), vld1q_f32(x + j));
            a1 = vfmaq_f32(a1, vld1q_f32(g + j + 4), vld1q_f32(x + j + 4));
            a2 = vfmaq_f32(a2, vld1q_f32(g + j + 8), vld1q_f32(x + j + 8));
            a3 = vfmaq_f32(a3, vld1q_f32(g + j + 12), vld1q_f32(x + j + 12));
        }
        /* the last < 16: lanes 0-3, 4-7, 8-11 */
        float32x4_t *tail[3] = {&a0, &a1, &a2};
        for (int q = 0; q < 3 && j + 4 <= cnt; q++, j += 4)
            *tail[q] = vfmaq_f32(*tail[q], vld1q_f32(g + j), vld1q_f32(x + j));
    } else if (s == 2) { /* vld2q reads one element past the last one used */
        for (; j + 16 <= cnt - 1; j += 16) {
            a0 = vfmaq_f32(a0, vld1q_f32(g + j), vld2q_f32(x + 2 * j).val[0]);
            a1 = vfmaq_f32(a1, vld1q_f32(g + j + 4), vld2q_f32(x + 2 * j + 8).val[0]);
            a2 = vfmaq_f32(a2, vld1q_f32(g + j + 8), vld2q_f32(x + 2 * j + 16).val[0]);
            a3 = vfmaq_f32(a3, vld1q_f32(g + j + 12), vld2q_f32(x + 2 * j + 24).val[0]);
        }
        float32x4_t *tail[3] = {&a0, &a1, &a2};
        for (int q = 0; q < 3 && j + 4 <= cnt - 1; q++, j += 4)
            *tail[q] = vfmaq_f32(*tail[q], vld1q_f32(g + j), vld2q_f32(x + 2 * j).val[0]);
    }
    vst1q_f32(acc, a0);
    vst1q_f32(acc + 4, a1);
    vst1q_f32(acc + 8, a2);
    vst1q_f32(acc + 12, a3);
    for (; j < cnt; j++) acc[j & 15] = fmaf(g[j], x[j * s], acc[j & 15]);
}

static void dw_cols__neon(float *dst, const float *src, int64_t s, int64_t cnt) {
    int64_t j = 0;
    if (s == 1) /* short rows: no memcpy call */
        for (; j + 4 <= cnt; j += 4) vst1q_f32(dst + j, vld1q_f32(src + j));
    else if (s == 2) { /* vld2q reads one element past the last one used */
        for (; j + 4 <= cnt - 1; j += 4) vst1q_f32(dst + j, vld2q_f32(src + 2 * j).val[0]);
        if (j < cnt && cnt >= 5) { /* the last 4 again, as the odd elements from one before */
            vst1q_f32(dst + cnt - 4, vld2q_f32(src + 2 * (cnt - 4) - 1).val[1]);
            j = cnt;
        }
    }
    for (; j < cnt; j++) dst[j] = src[j * s];
}

static inline int dw_fwd_fast__neon(const et_conv2d_params *p, const float *x, const float *w,
                                    const float *b, float *y, int nthreads) {
    (void)p, (void)x, (void)w, (void)b, (void)y, (void)nthreads;
    return 0;
}
DW_VARIANT(neon, )
#endif /* ET_HAVE_NEON */

/* ---- variant table (variant_internal.h) and dispatch ---------------------------------- */
const et_f32_dwconv2d_variant et_f32_dwconv2d_variants[] = {
    {{ET_ISA_REF, "ref"}, et_f32_dwconv2d_fwd__ref, et_f32_dwconv2d_bwd_input__ref,
     et_f32_dwconv2d_bwd_weight__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_f32_dwconv2d_fwd__avx2, et_f32_dwconv2d_bwd_input__avx2,
     et_f32_dwconv2d_bwd_weight__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_f32_dwconv2d_fwd__avx512, et_f32_dwconv2d_bwd_input__avx512,
     et_f32_dwconv2d_bwd_weight__avx512},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, et_f32_dwconv2d_fwd__neon, et_f32_dwconv2d_bwd_input__neon,
     et_f32_dwconv2d_bwd_weight__neon},
#endif
    {{ET_ISA_REF, NULL}, NULL, NULL, NULL}, /* end */
};

et_status et_f32_dwconv2d_fwd(const et_conv2d_params *p, const float *x, const float *w,
                              const float *b, float *y, int nthreads) {
    const et_f32_dwconv2d_variant *row = ET_VARIANT_PICK(et_f32_dwconv2d_variants);
    return row->fwd(p, x, w, b, y, nthreads);
}

et_status et_f32_dwconv2d_bwd_input(const et_conv2d_params *p, const float *dy, const float *w,
                                    float *dx, int nthreads) {
    const et_f32_dwconv2d_variant *row = ET_VARIANT_PICK(et_f32_dwconv2d_variants);
    return row->bwd_input(p, dy, w, dx, nthreads);
}

et_status et_f32_dwconv2d_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x,
                                     float *dw, int nthreads) {
    const et_f32_dwconv2d_variant *row = ET_VARIANT_PICK(et_f32_dwconv2d_variants);
    return row->bwd_weight(p, dy, x, dw, nthreads);
}
