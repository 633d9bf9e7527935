/* edgetrain — fake quantization (quantization-aware training in float) and its observers.
 *
 * One number rule (PyTorch's and ONNX's), for x viewed as [outer, c, inner] with scale s and
 * zero point zp of channel k (c = 1: per tensor):
 *   q = clamp(nearbyint(x * inv_s) + zp, qmin, qmax),  y = (q - zp) * s,  inv_s = 1.0f / s
 * in float, round-half-even (the default rounding mode), as PyTorch's CPU kernels
 * (fake_quantize_tensor_cachemask_kernel / fake_quant_per_channel_cachemask_cpu) compute it:
 * there the sum zp + nearbyint(..) is a float sum, the clamp is done on the integer value of
 * that float and (q - zp) * s is a double product of an integer below 2^17 and a float —
 * exact, so rounding it to float equals the float product here. A NaN input stays NaN (PyTorch
 * converts it to an integer, undefined behaviour; keeping it lets the non-finite guard see it).
 * The straight-through gradient is dx = dy * (qmin <= q <= qmax ? 1 : 0) with the unclamped q,
 * PyTorch's cachemask backward (dy * mask, so -0 where a negative dy is masked).
 *
 * The observer (torch.ao.quantization MinMaxObserver / MovingAverageMinMaxObserver and their
 * per-channel versions) keeps running min_val / max_val per channel (+inf / -inf before the
 * first observation) and recomputes scale and zero point (torch's _calculate_qparams):
 *   minmax: min_val = min(min_val, min(x)), max_val likewise
 *   ema:    first observation sets them, later min_val = min_val + c * (min(x) - min_val)
 *   lo = min(min_val, 0), hi = max(max_val, 0)
 *   symmetric: s = max(max(-lo, hi) / ((qmax - qmin) / 2), eps), zp = 0
 *   affine:    s = max((hi - lo) / (qmax - qmin), eps), zp = clamp(qmin - round(lo / s), qmin, qmax)
 * with eps = FLT_EPSILON, everything in float. Minimum and maximum are exact, so the result does
 * not depend on the partition of the work (quant_internal.h: the zero sign and NaN rules of
 * fminf / fmaxf that the chunked and vector reductions keep).
 *
 * Rows and threads: the per-element work is done by the rows of et_f32_fq_variants
 * (quant_internal.h; __ref below, SIMD in quant_simd.c). The fake quant splits the elements of
 * x into chunks that may cut rows (a per-tensor fake quant of a 2-D tensor is one long row);
 * elementwise, so the bits do not depend on the split. The observer reduces a per-tensor x
 * (c = 1) in fixed chunks (count from the size only), each chunk's min / max folded in chunk
 * order on the calling thread; per channel, channels are split over threads and each channel
 * folds its outer runs in order. The __ref entry points run the __ref row through the same
 * code; the entry points without suffix run the row of et_get_isa().
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "misc_internal.h"
#include "quant_internal.h"

#define FQ_GRAIN 8192          /* fake quant: elements per chunk at least (elementwise) */
#define OBS_GRAIN 16384        /* per-tensor observer: elements per chunk at least */
#define OBS_MAX_CHUNKS 64      /* ... and at most this many chunks (both from the size only) */

/* The unclamped level nearbyint(x * inv_s) + zp (an integer-valued float, or NaN). */
static inline float fq_level(float x, float inv_s, float zp) { return nearbyintf(x * inv_s) + zp; }

static inline float fq_clamp(float q, float qmin, float qmax) {
    return q < qmin ? qmin : (q > qmax ? qmax : q);
}

/* ---- the __ref row ---------------------------------------------------------------------- */
void et_f32_fq_fwd__ref(int64_t n, const float *x, float s, float inv_s, float zp, float lo,
                        float hi, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = (fq_clamp(fq_level(x[i], inv_s, zp), lo, hi) - zp) * s;
}

void et_f32_fq_bwd__ref(int64_t n, const float *dy, const float *x, float inv_s, float zp,
                        float lo, float hi, float *dx) {
    for (int64_t i = 0; i < n; i++) {
        const float q = fq_level(x[i], inv_s, zp);
        dx[i] = dy[i] * (q >= lo && q <= hi ? 1.0f : 0.0f);
    }
}

void et_f32_fq_minmax__ref(int64_t n, const float *x, float *mn, float *mx) {
    float a = INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        a = fminf(a, x[i]);
        b = fmaxf(b, x[i]);
    }
    *mn = et_fq_plus_zero(a);
    *mx = et_fq_plus_zero(b);
}

/* ---- fake quant ------------------------------------------------------------------------- */
static et_status fq_check(int64_t outer, int64_t c, int64_t inner, int64_t qmin, int64_t qmax) {
    if (outer < 0 || c < 1 || inner < 0 || qmin >= qmax) return ET_ERR_ARG;
    return ET_OK;
}

typedef struct fq_job {
    const et_f32_fq_variant *row;
    int64_t c, inner;
    float lo, hi;
    const float *x, *dy, *scale, *zero_point; /* dy NULL: the forward */
    float *out; /* y (forward) or dx (backward) */
} fq_job;

/* Elements [beg, end) of x as [outer * c rows, inner]: the pieces of the rows (o, k) they cut,
 * each with channel k's s, zp and inv_s = 1 / s. */
static void fq_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const fq_job *j = (const fq_job *)ctx;
    const int64_t c = j->c, inner = j->inner;
    (void)tid;
    for (int64_t i = beg; i < end;) {
        const int64_t r = i / inner, k = r % c;
        const int64_t stop = (r + 1) * inner < end ? (r + 1) * inner : end;
        const float s = j->scale[k], zp = j->zero_point[k], inv_s = 1.0f / s;
        if (!j->dy)
            j->row->fwd(stop - i, j->x + i, s, inv_s, zp, j->lo, j->hi, j->out + i);
        else
            j->row->bwd(stop - i, j->dy + i, j->x + i, inv_s, zp, j->lo, j->hi, j->out + i);
        i = stop;
    }
}

static et_status run_fq(const et_f32_fq_variant *row, int64_t outer, int64_t c, int64_t inner,
                        const float *x, const float *dy, const float *scale, const float *zero_point,
                        int64_t qmin, int64_t qmax, float *out, int nthreads) {
    const int64_t total = outer * c * inner;
    fq_job j = {row, c, inner, (float)qmin, (float)qmax, x, dy, scale, zero_point, out};
    if (total > 0) et_parallel_ranges(total, et_misc_nchunks(total, nthreads, FQ_GRAIN), nthreads, fq_range, &j);
    return ET_OK;
}

static et_status fq_fwd(const et_f32_fq_variant *row, int64_t outer, int64_t c, int64_t inner, const float *x,
                        const float *scale, const float *zero_point, int64_t qmin, int64_t qmax, float *y,
                        int nthreads) {
    if (fq_check(outer, c, inner, qmin, qmax) != ET_OK || !x || !scale || !zero_point || !y) return ET_ERR_ARG;
    return run_fq(row, outer, c, inner, x, NULL, scale, zero_point, qmin, qmax, y, nthreads);
}

static et_status fq_bwd(const et_f32_fq_variant *row, int64_t outer, int64_t c, int64_t inner, const float *dy,
                        const float *x, const float *scale, const float *zero_point, int64_t qmin, int64_t qmax,
                        float *dx, int nthreads) {
    if (fq_check(outer, c, inner, qmin, qmax) != ET_OK || !dy || !x || !scale || !zero_point || !dx)
        return ET_ERR_ARG;
    return run_fq(row, outer, c, inner, x, dy, scale, zero_point, qmin, qmax, dx, nthreads);
}

et_status et_f32_fake_quant_fwd__ref(int64_t outer, int64_t c, int64_t inner, const float *x, const float *scale,
                                     const float *zero_point, int64_t qmin, int64_t qmax, float *y, int nthreads) {
    return fq_fwd(&et_f32_fq_variants[0], outer, c, inner, x, scale, zero_point, qmin, qmax, y, nthreads);
}

et_status et_f32_fake_quant_bwd__ref(int64_t outer, int64_t c, int64_t inner, const float *dy, const float *x,
                                     const float *scale, const float *zero_point, int64_t qmin, int64_t qmax,
                                     float *dx, int nthreads) {
    return fq_bwd(&et_f32_fq_variants[0], outer, c, inner, dy, x, scale, zero_point, qmin, qmax, dx, nthreads);
}

et_status et_f32_fake_quant_fwd(int64_t outer, int64_t c, int64_t inner, const float *x, const float *scale,
                                const float *zero_point, int64_t qmin, int64_t qmax, float *y, int nthreads) {
    return fq_fwd(ET_VARIANT_PICK(et_f32_fq_variants), outer, c, inner, x, scale, zero_point, qmin, qmax, y,
                  nthreads);
}

et_status et_f32_fake_quant_bwd(int64_t outer, int64_t c, int64_t inner, const float *dy, const float *x,
                                const float *scale, const float *zero_point, int64_t qmin, int64_t qmax, float *dx,
                                int nthreads) {
    return fq_bwd(ET_VARIANT_PICK(et_f32_fq_variants), outer, c, inner, dy, x, scale, zero_point, qmin, qmax, dx,
                  nthreads);
}

/* ---- observers -------------------------------------------------------------------------- */
/* scale and zero point of one channel from its running min / max (torch's _calculate_qparams). */
static void qparams(float min_val, float max_val, int64_t qmin, int64_t qmax, int symmetric, float *scale,
                    float *zero_point) {
    const float lo = fminf(min_val, 0.0f), hi = fmaxf(max_val, 0.0f);
    float s, zp = 0.0f;
    if (symmetric) {
        s = fmaxf(-lo, hi) / ((float)(qmax - qmin) / 2.0f);
        s = fmaxf(s, FLT_EPSILON);
    } else {
        s = (hi - lo) / (float)(qmax - qmin);
        s = fmaxf(s, FLT_EPSILON);
        zp = (float)qmin - nearbyintf(lo / s);
        zp = fq_clamp(zp, (float)qmin, (float)qmax);
    }
    *scale = s;
    *zero_point = zp;
}

typedef struct observe_job {
    const et_f32_fq_variant *row;
    int64_t outer, c, inner, qmin, qmax;
    int symmetric, ema;
    float averaging_constant;
    const float *x;
    float *min_val, *max_val, *scale, *zero_point;
    int64_t nchunks;         /* per tensor: chunks of the flat x */
    float *part_mn, *part_mx; /* their folds */
} observe_job;

/* Channel k's running min / max updated with this observation's mn / mx, then its qparams. */
static void observe_update(const observe_job *j, int64_t k, float mn, float mx) {
    float *min_val = j->min_val, *max_val = j->max_val;
    const int first = min_val[k] == INFINITY && max_val[k] == -INFINITY;
    if (j->ema && !first) {
        mn = min_val[k] + j->averaging_constant * (mn - min_val[k]);
        mx = max_val[k] + j->averaging_constant * (mx - max_val[k]);
    } else if (!j->ema) {
        mn = fminf(mn, min_val[k]);
        mx = fmaxf(mx, max_val[k]);
    }
    mn = et_fq_plus_zero(mn); /* a stored -0 from an older file, or the EMA's arithmetic */
    mx = et_fq_plus_zero(mx);
    min_val[k] = mn;
    max_val[k] = mx;
    qparams(mn, mx, j->qmin, j->qmax, j->symmetric, &j->scale[k], &j->zero_point[k]);
}

/* Channels [beg, end): each folds its outer runs of inner elements in order. */
static void observe_channels(void *ctx, int64_t beg, int64_t end, int tid) {
    const observe_job *j = (const observe_job *)ctx;
    (void)tid;
    for (int64_t k = beg; k < end; k++) {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t o = 0; o < j->outer; o++) {
            float a, b;
            j->row->minmax(j->inner, j->x + (o * j->c + k) * j->inner, &a, &b);
            mn = fminf(mn, a);
            mx = fmaxf(mx, b);
        }
        observe_update(j, k, mn, mx);
    }
}

/* Chunk ch of the flat per-tensor x. */
static void observe_chunk(void *ctx, int64_t ch, int tid) {
    const observe_job *j = (const observe_job *)ctx;
    int64_t b, e;
    (void)tid;
    et_thread_range(j->outer * j->inner, (int)ch, (int)j->nchunks, &b, &e);
    j->row->minmax(e - b, j->x + b, &j->part_mn[ch], &j->part_mx[ch]);
}

static et_status observe(const et_f32_fq_variant *row, int64_t outer, int64_t c, int64_t inner, const float *x,
                         float *min_val, float *max_val, float *scale, float *zero_point, int64_t qmin,
                         int64_t qmax, int symmetric, int ema, float averaging_constant, int nthreads) {
    if (fq_check(outer, c, inner, qmin, qmax) != ET_OK || outer * inner < 1 || !x || !min_val || !max_val ||
        !scale || !zero_point)
        return ET_ERR_ARG;
    float part_mn[OBS_MAX_CHUNKS], part_mx[OBS_MAX_CHUNKS];
    observe_job j = {row, outer, c, inner, qmin, qmax, symmetric, ema, averaging_constant, x, min_val, max_val,
                     scale, zero_point, 0, part_mn, part_mx};
    if (c > 1) {
        et_parallel_ranges(c, et_split_chunks(c, nthreads), nthreads, observe_channels, &j);
        return ET_OK;
    }
    j.nchunks = et_chunk_count(outer * inner, OBS_GRAIN, OBS_MAX_CHUNKS);
    et_parallel_for(j.nchunks, nthreads, observe_chunk, &j);
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t ch = 0; ch < j.nchunks; ch++) {
        mn = fminf(mn, part_mn[ch]);
        mx = fmaxf(mx, part_mx[ch]);
    }
    observe_update(&j, 0, mn, mx);
    return ET_OK;
}

et_status et_f32_quant_observe__ref(int64_t outer, int64_t c, int64_t inner, const float *x, float *min_val,
                                    float *max_val, float *scale, float *zero_point, int64_t qmin, int64_t qmax,
                                    int symmetric, int ema, float averaging_constant, int nthreads) {
    return observe(&et_f32_fq_variants[0], outer, c, inner, x, min_val, max_val, scale, zero_point, qmin, qmax,
                   symmetric, ema, averaging_constant, nthreads);
}

et_status et_f32_quant_observe(int64_t outer, int64_t c, int64_t inner, const float *x, float *min_val,
                               float *max_val, float *scale, float *zero_point, int64_t qmin, int64_t qmax,
                               int symmetric, int ema, float averaging_constant, int nthreads) {
    return observe(ET_VARIANT_PICK(et_f32_fq_variants), outer, c, inner, x, min_val, max_val, scale, zero_point,
                   qmin, qmax, symmetric, ema, averaging_constant, nthreads);
}
