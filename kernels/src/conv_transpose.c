/* edgetrain — transposed 2-D convolution, fp32 NCHW, PyTorch's ConvTranspose2d.
 *
 * x[N,C,H,W], w[C, OC/g, KH, KW], y[N,OC,OH,OW]:
 *   y[n, o, iy*s - p + ky*d, ...] += x[n, c, iy, ...] * w[c, o % (OC/g), ky, kx]   (o in c's group)
 * That is exactly the input gradient of the convolution with input shaped like y, weight w
 * ([C, OC/g, KH, KW] read as [conv OC, conv C/g, KH, KW]), padding pad on every side, and
 * output shaped like x (out_pad < stride makes it exactly H x W: the out_pad extra rows of y
 * are where the last stride window ends early). So the forward calls et_f32_conv2d_bwd_input (GEMM +
 * col2im, or the depthwise kernels) and adds the bias; the gradients are conv2d ops:
 *   dx = conv2d(dy, w), dw = conv2d_bwd_weight(dy := x, x := dy), db = conv2d_bwd_bias(dy).
 * The __ref below is the naive gather loop, written from the definition above.
 */
#include <string.h>

#include "edgetrain/et_kernels.h"

et_status et_conv_transpose2d_params_init(et_conv_transpose2d_params *p) {
    if (!p) return ET_ERR_ARG;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->kh <= 0 || p->kw <= 0)
        return ET_ERR_ARG;
    if (p->groups <= 0 || p->c % p->groups != 0 || p->oc % p->groups != 0) return ET_ERR_ARG;
    if (p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1) return ET_ERR_ARG;
    if (p->pad_h < 0 || p->pad_w < 0 || p->out_pad_h < 0 || p->out_pad_w < 0) return ET_ERR_ARG;
    if (p->out_pad_h >= p->stride_h || p->out_pad_w >= p->stride_w) return ET_ERR_ARG;
    p->oh = (p->h - 1) * p->stride_h - 2 * p->pad_h + p->dil_h * (p->kh - 1) + p->out_pad_h + 1;
    p->ow = (p->w - 1) * p->stride_w - 2 * p->pad_w + p->dil_w * (p->kw - 1) + p->out_pad_w + 1;
    if (p->oh < 1 || p->ow < 1) return ET_ERR_ARG;
    return ET_OK;
}

/* Valid params whose oh/ow are the ones init computes. */
static int params_ok(const et_conv_transpose2d_params *p) {
    if (!p) return 0;
    et_conv_transpose2d_params q = *p;
    return et_conv_transpose2d_params_init(&q) == ET_OK && q.oh == p->oh && q.ow == p->ow;
}

et_status et_conv_transpose2d_as_conv(const et_conv_transpose2d_params *p, et_conv2d_params *conv) {
    if (!params_ok(p) || !conv) return ET_ERR_ARG;
    memset(conv, 0, sizeof *conv);
    conv->n = p->n; conv->c = p->oc; conv->h = p->oh; conv->w = p->ow;
    conv->oc = p->c; conv->kh = p->kh; conv->kw = p->kw;
    conv->stride_h = p->stride_h; conv->stride_w = p->stride_w;
    conv->pad_t = p->pad_h; conv->pad_l = p->pad_w;
    conv->pad_b = p->pad_h; conv->pad_r = p->pad_w;
    conv->dil_h = p->dil_h; conv->dil_w = p->dil_w;
    conv->groups = p->groups;
    conv->act = ET_ACT_NONE;
    if (et_conv2d_params_init(conv) != ET_OK || conv->oh != p->h || conv->ow != p->w) return ET_ERR_ARG;
    return ET_OK;
}

size_t et_f32_conv_transpose2d_fwd_ws_bytes(const et_conv_transpose2d_params *p, int nthreads) {
    et_conv2d_params conv;
    if (et_conv_transpose2d_as_conv(p, &conv) != ET_OK) return 0;
    return et_f32_conv2d_bwd_input_ws_bytes(&conv, nthreads);
}

typedef struct bias_job {
    int64_t oc, np;
    const float *b;
    float *y;
} bias_job;

static void add_bias_planes(void *ctx, int64_t beg, int64_t end, int tid) {
    const bias_job *k = (const bias_job *)ctx;
    (void)tid;
    for (int64_t q = beg; q < end; q++) {
        const float bias = k->b[q % k->oc];
        float *row = k->y + q * k->np;
        for (int64_t i = 0; i < k->np; i++) row[i] += bias;
    }
}

et_status et_f32_conv_transpose2d_fwd(const et_conv_transpose2d_params *p, const float *x,
                                      const float *w, const float *b, float *y, void *ws,
                                      size_t ws_bytes, int nthreads) {
    et_conv2d_params conv;
    if (!x || !w || !y || et_conv_transpose2d_as_conv(p, &conv) != ET_OK) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    et_status st = et_f32_conv2d_bwd_input(&conv, x, w, y, ws, ws_bytes, nthreads);
    if (st != ET_OK || !b) return st;
    const int64_t planes = p->n * p->oc;
    bias_job k = {p->oc, p->oh * p->ow, b, y};
    et_parallel_ranges(planes, et_split_chunks(planes, nthreads), nthreads, add_bias_planes, &k);
    return ET_OK;
}

/* Output row oy receives input row iy through kernel row ky when oy = iy*s - pad + ky*d. */
static int source_index(int64_t o, int64_t k, int64_t s, int64_t pad, int64_t d, int64_t in, int64_t *i) {
    const int64_t t = o + pad - k * d;
    if (t < 0 || t % s != 0 || t / s >= in) return 0;
    *i = t / s;
    return 1;
}

et_status et_f32_conv_transpose2d_fwd__ref(const et_conv_transpose2d_params *p, const float *x,
                                           const float *w, const float *b, float *y) {
    if (!params_ok(p) || !x || !w || !y) return ET_ERR_ARG;
    const int64_t cg = p->c / p->groups, ocg = p->oc / p->groups;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t o = 0; o < p->oc; o++) {
            const int64_t g = o / ocg, oo = o % ocg;
            for (int64_t oy = 0; oy < p->oh; oy++)
                for (int64_t ox = 0; ox < p->ow; ox++) {
                    double acc = 0.0;
                    for (int64_t ci = g * cg; ci < (g + 1) * cg; ci++)
                        for (int64_t ky = 0; ky < p->kh; ky++) {
                            int64_t iy, ix;
                            if (!source_index(oy, ky, p->stride_h, p->pad_h, p->dil_h, p->h, &iy)) continue;
                            for (int64_t kx = 0; kx < p->kw; kx++) {
                                if (!source_index(ox, kx, p->stride_w, p->pad_w, p->dil_w, p->w, &ix)) continue;
                                acc += (double)x[((i * p->c + ci) * p->h + iy) * p->w + ix] *
                                       (double)w[((ci * ocg + oo) * p->kh + ky) * p->kw + kx];
                            }
                        }
                    y[((i * p->oc + o) * p->oh + oy) * p->ow + ox] = (float)acc + (b ? b[o] : 0.0f);
                }
        }
    return ET_OK;
}
