/* edgetrain — resampling of NCHW planes: F.interpolate (nearest, bilinear) and adaptive
 * average pooling, forward and backward. Plain loops (they are the reference; no SIMD rows):
 * every kernel runs over the n*c planes on the thread pool (et_parallel_ranges over planes,
 * plane_range below), and a plane's result is computed by one thread in a fixed order, so the bits do not depend on the thread count.
 * Adaptive max pooling takes the first maximum of a window (a NaN wins, as in PyTorch); its
 * backward recomputes that index from x (no index storage, like maxpool2d).
 * Index formulas are PyTorch's (aten/src/ATen/native/UpSample.h), in float as its fp32 CPU
 * kernels compute them.
 */
#include <math.h>
#include <string.h>

#include "edgetrain/et_kernels.h"

/* ---- F.interpolate ---------------------------------------------------------------------- */
/* PyTorch's 1/scale_factor when one is given, else in/out. */
static float inv_scale(int64_t in, int64_t out, float scale) {
    return scale > 0.0f ? (float)(1.0 / (double)scale) : (float)in / (float)out;
}

/* 'nearest': floor(dst * scale), clamped; the 1x and 2x cases are exact integer maps. */
static int64_t nearest_src(int64_t o, int64_t in, int64_t out, float scale) {
    if (out == in) return o;
    if (out == 2 * in) return o >> 1;
    const int64_t i = (int64_t)floorf((float)o * inv_scale(in, out, scale));
    return i < in - 1 ? i : in - 1;
}

/* 'bilinear' along one axis: the two source indices and their weights. */
typedef struct lin_tap { int64_t i0, i1; float l0, l1; } lin_tap;

static lin_tap linear_src(int64_t o, int64_t in, int64_t out, int align_corners, float scale) {
    lin_tap t = {o, o, 1.0f, 0.0f};
    if (out == in) return t;
    float src;
    if (align_corners) {
        const float r = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
        src = r * (float)o;
    } else {
        src = inv_scale(in, out, scale) * ((float)o + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
    }
    int64_t i0 = (int64_t)floorf(src);
    if (i0 > in - 1) i0 = in - 1;
    float lam = src - (float)i0;
    lam = lam < 0.0f ? 0.0f : (lam > 1.0f ? 1.0f : lam);
    t.i0 = i0;
    t.i1 = i0 + (i0 < in - 1 ? 1 : 0);
    t.l1 = lam;
    t.l0 = 1.0f - lam;
    return t;
}

static int interp_ok(const et_interp2d_params *p) {
    return p && p->nc > 0 && p->h > 0 && p->w > 0 && p->oh > 0 && p->ow > 0 &&
           (int)p->mode >= 0 && p->mode < ET_INTERP_COUNT_ && (p->align_corners == 0 || p->align_corners == 1) &&
           p->scale_h >= 0.0f && p->scale_w >= 0.0f && isfinite(p->scale_h) && isfinite(p->scale_w);
}

static void nearest_plane(const et_interp2d_params *p, const float *x, float *y) {
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const float *xr = x + nearest_src(oy, p->h, p->oh, p->scale_h) * p->w;
        float *yr = y + oy * p->ow;
        for (int64_t ox = 0; ox < p->ow; ox++) yr[ox] = xr[nearest_src(ox, p->w, p->ow, p->scale_w)];
    }
}

static void nearest_plane_bwd(const et_interp2d_params *p, const float *dy, float *dx) {
    memset(dx, 0, (size_t)(p->h * p->w) * sizeof(float));
    for (int64_t oy = 0; oy < p->oh; oy++) {
        float *dxr = dx + nearest_src(oy, p->h, p->oh, p->scale_h) * p->w;
        const float *dyr = dy + oy * p->ow;
        for (int64_t ox = 0; ox < p->ow; ox++) dxr[nearest_src(ox, p->w, p->ow, p->scale_w)] += dyr[ox];
    }
}

static void bilinear_plane(const et_interp2d_params *p, const float *x, float *y) {
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const lin_tap ty = linear_src(oy, p->h, p->oh, p->align_corners, p->scale_h);
        const float *r0 = x + ty.i0 * p->w, *r1 = x + ty.i1 * p->w;
        float *yr = y + oy * p->ow;
        for (int64_t ox = 0; ox < p->ow; ox++) {
            const lin_tap tx = linear_src(ox, p->w, p->ow, p->align_corners, p->scale_w);
            yr[ox] = ty.l0 * (tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1]) +
                     ty.l1 * (tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1]);
        }
    }
}

static void bilinear_plane_bwd(const et_interp2d_params *p, const float *dy, float *dx) {
    memset(dx, 0, (size_t)(p->h * p->w) * sizeof(float));
    for (int64_t oy = 0; oy < p->oh; oy++) {
        const lin_tap ty = linear_src(oy, p->h, p->oh, p->align_corners, p->scale_h);
        float *r0 = dx + ty.i0 * p->w, *r1 = dx + ty.i1 * p->w;
        const float *dyr = dy + oy * p->ow;
        for (int64_t ox = 0; ox < p->ow; ox++) {
            const lin_tap tx = linear_src(ox, p->w, p->ow, p->align_corners, p->scale_w);
            const float g0 = ty.l0 * dyr[ox], g1 = ty.l1 * dyr[ox];
            r0[tx.i0] += tx.l0 * g0;
            r0[tx.i1] += tx.l1 * g0;
            r1[tx.i0] += tx.l0 * g1;
            r1[tx.i1] += tx.l1 * g1;
        }
    }
}

/* ---- plane loops on the thread pool ------------------------------------------------------ */
typedef struct resample_job resample_job;
typedef void (*plane_fn)(const resample_job *j, int64_t q);
struct resample_job {
    plane_fn fn;                   /* computes plane q */
    const et_interp2d_params *p;   /* interpolate only */
    int64_t h, w, oh, ow;          /* adaptive pooling only */
    const float *x, *dy;
    float *out;                    /* y (forward) or dx (backward) */
};

static void plane_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const resample_job *j = (const resample_job *)ctx;
    (void)tid;
    for (int64_t q = beg; q < end; q++) j->fn(j, q);
}

static et_status run_planes(resample_job *j, int64_t nc, int nthreads) {
    et_parallel_ranges(nc, et_split_chunks(nc, nthreads), nthreads, plane_range, j);
    return ET_OK;
}

static void interp_fwd_q(const resample_job *j, int64_t q) {
    const et_interp2d_params *p = j->p;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow;
    if (p->mode == ET_INTERP_NEAREST) nearest_plane(p, j->x + q * xs, j->out + q * ys);
    else bilinear_plane(p, j->x + q * xs, j->out + q * ys);
}

static void interp_bwd_q(const resample_job *j, int64_t q) {
    const et_interp2d_params *p = j->p;
    const int64_t xs = p->h * p->w, ys = p->oh * p->ow;
    if (p->mode == ET_INTERP_NEAREST) nearest_plane_bwd(p, j->dy + q * ys, j->out + q * xs);
    else bilinear_plane_bwd(p, j->dy + q * ys, j->out + q * xs);
}

et_status et_f32_interp2d_fwd(const et_interp2d_params *p, const float *x, float *y, int nthreads) {
    if (!interp_ok(p) || !x || !y) return ET_ERR_ARG;
    resample_job j = {interp_fwd_q, p, 0, 0, 0, 0, x, NULL, y};
    return run_planes(&j, p->nc, nthreads);
}

et_status et_f32_interp2d_bwd(const et_interp2d_params *p, const float *dy, float *dx, int nthreads) {
    if (!interp_ok(p) || !dy || !dx) return ET_ERR_ARG;
    resample_job j = {interp_bwd_q, p, 0, 0, 0, 0, NULL, dy, dx};
    return run_planes(&j, p->nc, nthreads);
}

/* ---- adaptive average pooling ------------------------------------------------------------ */
/* Window [start, end) of output cell i: floor(i*in/out), ceil((i+1)*in/out). */
static int64_t win_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
static int64_t win_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

static int adaptive_ok(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow) {
    return nc > 0 && h > 0 && w > 0 && oh > 0 && ow > 0;
}

/* nc planes h x w -> oh x ow through fn (the caller checks the inputs fn reads). */
static et_status run_adaptive(plane_fn fn, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                              const float *x, const float *dy, float *out, int nthreads) {
    if (!adaptive_ok(nc, h, w, oh, ow) || !out) return ET_ERR_ARG;
    resample_job j = {fn, NULL, h, w, oh, ow, x, dy, out};
    return run_planes(&j, nc, nthreads);
}

static void avgpool_fwd_q(const resample_job *jb, int64_t q) {
    const int64_t h = jb->h, w = jb->w, oh = jb->oh, ow = jb->ow;
    const float *x = jb->x;
    float *y = jb->out;
    const float *xp = x + q * h * w;
    for (int64_t i = 0; i < oh; i++) {
        const int64_t y0 = win_start(i, h, oh), y1 = win_end(i, h, oh);
        for (int64_t j = 0; j < ow; j++) {
            const int64_t x0 = win_start(j, w, ow), x1 = win_end(j, w, ow);
            float acc = 0.0f;
            for (int64_t r = y0; r < y1; r++)
                for (int64_t c = x0; c < x1; c++) acc += xp[r * w + c];
            y[(q * oh + i) * ow + j] = acc / (float)((y1 - y0) * (x1 - x0));
        }
    }
}

static void avgpool_bwd_q(const resample_job *jb, int64_t q) {
    const int64_t h = jb->h, w = jb->w, oh = jb->oh, ow = jb->ow;
    const float *dy = jb->dy;
    float *dx = jb->out;
    float *dxp = dx + q * h * w;
    memset(dxp, 0, (size_t)(h * w) * sizeof(float));
    for (int64_t i = 0; i < oh; i++) {
        const int64_t y0 = win_start(i, h, oh), y1 = win_end(i, h, oh);
        for (int64_t j = 0; j < ow; j++) {
            const int64_t x0 = win_start(j, w, ow), x1 = win_end(j, w, ow);
            const float g = dy[(q * oh + i) * ow + j] / (float)((y1 - y0) * (x1 - x0));
            for (int64_t r = y0; r < y1; r++)
                for (int64_t c = x0; c < x1; c++) dxp[r * w + c] += g;
        }
    }
}

et_status et_f32_adaptive_avgpool2d_fwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *x, float *y, int nthreads) {
    if (!x) return ET_ERR_ARG;
    return run_adaptive(avgpool_fwd_q, nc, h, w, oh, ow, x, NULL, y, nthreads);
}

et_status et_f32_adaptive_avgpool2d_bwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *dy, float *dx, int nthreads) {
    if (!dy) return ET_ERR_ARG;
    return run_adaptive(avgpool_bwd_q, nc, h, w, oh, ow, NULL, dy, dx, nthreads);
}

/* ---- adaptive max pooling ------------------------------------------------------------------ */
/* Index (r*w + c) of the window's first maximum; the first NaN if there is one. */
static int64_t window_argmax(const float *xp, int64_t w, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
    int64_t best = y0 * w + x0;
    float m = xp[best];
    for (int64_t r = y0; r < y1 && !isnan(m); r++)
        for (int64_t c = x0; c < x1; c++) {
            const float v = xp[r * w + c];
            if (v > m || isnan(v)) {
                m = v;
                best = r * w + c;
                if (isnan(v)) break;
            }
        }
    return best;
}

static void maxpool_fwd_q(const resample_job *jb, int64_t q) {
    const int64_t h = jb->h, w = jb->w, oh = jb->oh, ow = jb->ow;
    const float *x = jb->x;
    float *y = jb->out;
    const float *xp = x + q * h * w;
    for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++)
            y[(q * oh + i) * ow + j] = xp[window_argmax(xp, w, win_start(i, h, oh), win_end(i, h, oh),
                                                        win_start(j, w, ow), win_end(j, w, ow))];
}

static void maxpool_bwd_q(const resample_job *jb, int64_t q) {
    const int64_t h = jb->h, w = jb->w, oh = jb->oh, ow = jb->ow;
    const float *x = jb->x, *dy = jb->dy;
    float *dx = jb->out;
    const float *xp = x + q * h * w;
    float *dxp = dx + q * h * w;
    memset(dxp, 0, (size_t)(h * w) * sizeof(float));
    for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++)
            dxp[window_argmax(xp, w, win_start(i, h, oh), win_end(i, h, oh), win_start(j, w, ow),
                              win_end(j, w, ow))] += dy[(q * oh + i) * ow + j];
}

et_status et_f32_adaptive_maxpool2d_fwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *x, float *y, int nthreads) {
    if (!x) return ET_ERR_ARG;
    return run_adaptive(maxpool_fwd_q, nc, h, w, oh, ow, x, NULL, y, nthreads);
}

et_status et_f32_adaptive_maxpool2d_bwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *x, const float *dy, float *dx, int nthreads) {
    if (!x || !dy) return ET_ERR_ARG;
    return run_adaptive(maxpool_bwd_q, nc, h, w, oh, ow, x, dy, dx, nthreads);
}
