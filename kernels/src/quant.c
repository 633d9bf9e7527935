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
 * not depend on the partition of the work.
 */
#include <float.h>
#include <math.h>

#include "misc_internal.h"

/* The unclamped level nearbyint(x * inv_s) + zp (an integer-valued float, or NaN). */
static inline float fq_level(float x, float inv_s, float zp) { return nearbyintf(x * inv_s) + zp; }

static inline float fq_clamp(float q, float qmin, float qmax) {
    return q < qmin ? qmin : (q > qmax ? qmax : q);
}

static et_status fq_check(int64_t outer, int64_t c, int64_t inner, int64_t qmin, int64_t qmax) {
    if (outer < 0 || c < 1 || inner < 0 || qmin >= qmax) return ET_ERR_ARG;
    return ET_OK;
}

typedef struct fq_job {
    int64_t c, inner;
    float lo, hi;
    const float *x, *dy, *scale, *zero_point; /* dy NULL: the forward */
    float *out; /* y (forward) or dx (backward) */
} fq_job;

/* Rows r = (o, k) of x: the forward y = (clamp(q) - zp) * s, or with dy the straight-through
 * backward dx = dy * (lo <= q <= hi), q = fq_level(x). */
static void fq_rows(void *ctx, int64_t beg, int64_t end, int tid) {
    const fq_job *j = (const fq_job *)ctx;
    const int64_t c = j->c, inner = j->inner;
    const float lo = j->lo, hi = j->hi;
    (void)tid;
    for (int64_t r = beg; r < end; r++) {
        const int64_t k = r % c;
        const float s = j->scale[k], zp = j->zero_point[k], inv_s = 1.0f / s;
        const float *ET_RESTRICT xr = j->x + r * inner;
        float *ET_RESTRICT dst = j->out + r * inner;
        if (!j->dy) {
            for (int64_t i = 0; i < inner; i++) dst[i] = (fq_clamp(fq_level(xr[i], inv_s, zp), lo, hi) - zp) * s;
            continue;
        }
        const float *ET_RESTRICT gr = j->dy + r * inner;
        for (int64_t i = 0; i < inner; i++) {
            const float q = fq_level(xr[i], inv_s, zp);
            dst[i] = gr[i] * (q >= lo && q <= hi ? 1.0f : 0.0f);
        }
    }
}

static et_status run_fq(int64_t outer, int64_t c, int64_t inner, const float *x, const float *dy,
                        const float *scale, const float *zero_point, int64_t qmin, int64_t qmax,
                        float *out, int nthreads) {
    const int64_t rows = outer * c;
    fq_job j = {c, inner, (float)qmin, (float)qmax, x, dy, scale, zero_point, out};
    et_parallel_ranges(rows, et_split_chunks(rows, nthreads), nthreads, fq_rows, &j);
    return ET_OK;
}

et_status et_f32_fake_quant_fwd__ref(int64_t outer, int64_t c, int64_t inner, const float *x, const float *scale,
                                     const float *zero_point, int64_t qmin, int64_t qmax, float *y, int nthreads) {
    if (fq_check(outer, c, inner, qmin, qmax) != ET_OK || !x || !scale || !zero_point || !y) return ET_ERR_ARG;
    return run_fq(outer, c, inner, x, NULL, scale, zero_point, qmin, qmax, y, nthreads);
}

et_status et_f32_fake_quant_bwd__ref(int64_t outer, int64_t c, int64_t inner, const float *dy, const float *x,
                                     const float *scale, const float *zero_point, int64_t qmin, int64_t qmax,
                                     float *dx, int nthreads) {
    if (fq_check(outer, c, inner, qmin, qmax) != ET_OK || !dy || !x || !scale || !zero_point || !dx)
        return ET_ERR_ARG;
    return run_fq(outer, c, inner, x, dy, scale, zero_point, qmin, qmax, dx, nthreads);
}

/* min and max of channel k over [outer, c, inner] (NaN ignored, as fminf / fmaxf). */
static void channel_minmax(int64_t outer, int64_t c, int64_t inner, const float *x, int64_t k, float *mn,
                           float *mx) {
    float a = INFINITY, b = -INFINITY;
    for (int64_t o = 0; o < outer; o++) {
        const float *ET_RESTRICT xr = x + (o * c + k) * inner;
        for (int64_t i = 0; i < inner; i++) {
            a = fminf(a, xr[i]);
            b = fmaxf(b, xr[i]);
        }
    }
    *mn = a;
    *mx = b;
}

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
    int64_t outer, c, inner, qmin, qmax;
    int symmetric, ema;
    float averaging_constant;
    const float *x;
    float *min_val, *max_val, *scale, *zero_point;
} observe_job;

static void observe_channels(void *ctx, int64_t beg, int64_t end, int tid) {
    const observe_job *j = (const observe_job *)ctx;
    float *min_val = j->min_val, *max_val = j->max_val;
    (void)tid;
    for (int64_t k = beg; k < end; k++) {
        float mn, mx;
        channel_minmax(j->outer, j->c, j->inner, j->x, k, &mn, &mx);
        const int first = min_val[k] == INFINITY && max_val[k] == -INFINITY;
        if (j->ema && !first) {
            mn = min_val[k] + j->averaging_constant * (mn - min_val[k]);
            mx = max_val[k] + j->averaging_constant * (mx - max_val[k]);
        } else if (!j->ema) {
            mn = fminf(mn, min_val[k]);
            mx = fmaxf(mx, max_val[k]);
        }
        min_val[k] = mn;
        max_val[k] = mx;
        qparams(mn, mx, j->qmin, j->qmax, j->symmetric, &j->scale[k], &j->zero_point[k]);
    }
}

et_status et_f32_quant_observe__ref(int64_t outer, int64_t c, int64_t inner, const float *x, float *min_val,
                                    float *max_val, float *scale, float *zero_point, int64_t qmin, int64_t qmax,
                                    int symmetric, int ema, float averaging_constant, int nthreads) {
    if (fq_check(outer, c, inner, qmin, qmax) != ET_OK || outer * inner < 1 || !x || !min_val || !max_val ||
        !scale || !zero_point)
        return ET_ERR_ARG;
    observe_job j = {outer, c, inner, qmin, qmax, symmetric, ema, averaging_constant, x, min_val, max_val,
                     scale, zero_point};
    et_parallel_ranges(c, et_split_chunks(c, nthreads), nthreads, observe_channels, &j);
    return ET_OK;
}
