/* edgetrain — batch normalisation over (N, HW) per channel, NCHW (BatchNorm1d: hw = 1).
 *
 * Statistics are accumulated in double (two passes: mean, then squared deviations), channels
 * are independent and processed one per loop iteration (static schedule), so results are
 * reproducible for a given thread count and no atomics are needed. The per-element transforms
 * follow PyTorch's CPU kernels: y = x * alpha + shift with alpha = invstd * gamma,
 * shift = beta - mean * alpha. gamma / beta may be NULL (1 / 0).
 *
 * Frozen statistics (QConfig.freeze_bn_step, PyTorch's ConvBn2d.freeze_bn_stats): a training
 * step that normalises with the running statistics, which it leaves alone; they are constants
 * of the backward, so dx = dy * gamma * invstd (dgamma, dbeta as usual).
 *
 * A fused relu / relu6 (batchnorm_train / batchnorm_bwd's act, export.fuse_batchnorm_activations):
 * the forward applies the act op's comparisons to the affine's float before storing it; the
 * backward reads the act's output y and masks dy as act_bwd does (+0 where y <= 0, relu6: or
 * y >= 6) in its sums and its dx pass (the *_m kernels), never storing the masked dy. Each
 * element sees the unfused ops' operations in their order, so the bits are theirs.
 *
 * The per-element loops are the kernels of a variant table (et_f32_bn_variants, norm_internal.h):
 * the __ref row is below, the AVX2 / AVX-512 / NEON rows (batchnorm_simd.c) do the same double
 * and float operations per lane in the same order, so every row gives __ref's bits.
 */
#include <math.h>

#include "misc_internal.h"
#include "norm_internal.h"

/* ---- __ref row ---------------------------------------------------------------------------- */
double et_f32_bn_plane_sum__ref(int64_t hw, const float *x) { return et_misc_sum_f64(x, hw); }

double et_f32_bn_plane_dev__ref(int64_t hw, const float *x, const float *dy, double mean) {
    const float *ET_RESTRICT xp = x;
    const float *ET_RESTRICT gp = dy ? dy : x;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    if (dy) {
        for (; j + 8 <= hw; j += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)gp[j + l] * ((double)xp[j + l] - mean);
        for (; j < hw; j++) acc[0] += (double)gp[j] * ((double)xp[j] - mean);
    } else {
        for (; j + 8 <= hw; j += 8)
            for (int l = 0; l < 8; l++) {
                double d = (double)xp[j + l] - mean;
                acc[l] += d * d;
            }
        for (; j < hw; j++) {
            double d = (double)xp[j] - mean;
            acc[0] += d * d;
        }
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void et_f32_bn_affine__ref(int64_t len, const float *x, float a, float s, float *y) {
    const float *ET_RESTRICT xp = x;
    float *ET_RESTRICT yp = y;
    for (int64_t j = 0; j < len; j++) yp[j] = xp[j] * a + s;
}

void et_f32_bn_affine_v__ref(int64_t len, const float *x, const float *a, const float *s, float *y) {
    const float *ET_RESTRICT xp = x;
    float *ET_RESTRICT yp = y;
    for (int64_t j = 0; j < len; j++) yp[j] = xp[j] * a[j] + s[j];
}

void et_f32_bn_acc_sum__ref(int64_t n, int64_t is, int64_t len, const float *x, double *acc) {
    double *ET_RESTRICT ap = acc;
    for (int64_t i = 0; i < n; i++) {
        const float *ET_RESTRICT xp = x + i * is;
        for (int64_t j = 0; j < len; j++) ap[j] += (double)xp[j];
    }
}

void et_f32_bn_acc_sqdev__ref(int64_t n, int64_t is, int64_t len, const float *x,
                              const double *mean, double *acc) {
    double *ET_RESTRICT ap = acc;
    for (int64_t i = 0; i < n; i++) {
        const float *ET_RESTRICT xp = x + i * is;
        for (int64_t j = 0; j < len; j++) {
            double d = (double)xp[j] - mean[j];
            ap[j] += d * d;
        }
    }
}

void et_f32_bn_acc_bwd__ref(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                            const float *mean, double *as, double *ad) {
    double *ET_RESTRICT sp = as;
    double *ET_RESTRICT dp = ad;
    for (int64_t i = 0; i < n; i++) {
        const float *ET_RESTRICT xp = x + i * is;
        const float *ET_RESTRICT gp = dy + i * is;
        for (int64_t j = 0; j < len; j++) {
            sp[j] += (double)gp[j];
            dp[j] += (double)gp[j] * ((double)xp[j] - (double)mean[j]);
        }
    }
}

void et_f32_bn_dx__ref(int64_t len, const float *x, const float *dy, float gm, float mean,
                       float pr, float gs, float *dx) {
    const float *ET_RESTRICT xp = x;
    const float *ET_RESTRICT gp = dy;
    float *ET_RESTRICT dp = dx;
    for (int64_t j = 0; j < len; j++) dp[j] = (gp[j] - gm - (xp[j] - mean) * pr) * gs;
}

void et_f32_bn_dx_v__ref(int64_t len, const float *x, const float *dy, const float *gm,
                         const float *mean, const float *pr, const float *gs, float *dx) {
    const float *ET_RESTRICT xp = x;
    const float *ET_RESTRICT gp = dy;
    float *ET_RESTRICT dp = dx;
    for (int64_t j = 0; j < len; j++) dp[j] = (gp[j] - gm[j] - (xp[j] - mean[j]) * pr[j]) * gs[j];
}

void et_f32_bn_plane_bwd__ref(int64_t hw, const float *x, const float *dy, double mean,
                              double *sum, double *dot) {
    *sum = et_f32_bn_plane_sum__ref(hw, dy);
    *dot = et_f32_bn_plane_dev__ref(hw, x, dy, mean);
}

/* ---- __ref row: the fused relu / relu6 (batchnorm_train / batchnorm_bwd's act) ----------
 * affine_act: y = act(x * a + s), the act op's comparisons on the affine's float (et_bn_act_).
 * The *_m kernels are the backward kernels above on dy masked as act_bwd masks it from the
 * act's output t (et_bn_mask_: +0 where masked), each element's double / float operations and
 * every sum in the unmasked kernel's order: the bits of act_bwd then batchnorm_bwd. */
void et_f32_bn_affine_act__ref(int64_t len, const float *x, float a, float s, et_act act,
                               float *y) {
    const float *ET_RESTRICT xp = x;
    float *ET_RESTRICT yp = y;
    for (int64_t j = 0; j < len; j++) yp[j] = et_bn_act_(act, xp[j] * a + s);
}

void et_f32_bn_affine_v_act__ref(int64_t len, const float *x, const float *a, const float *s,
                                 et_act act, float *y) {
    const float *ET_RESTRICT xp = x;
    float *ET_RESTRICT yp = y;
    for (int64_t j = 0; j < len; j++) yp[j] = et_bn_act_(act, xp[j] * a[j] + s[j]);
}

void et_f32_bn_acc_bwd_m__ref(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                              const float *t, et_act act, const float *mean, double *as,
                              double *ad) {
    double *ET_RESTRICT sp = as;
    double *ET_RESTRICT dp = ad;
    for (int64_t i = 0; i < n; i++) {
        const float *ET_RESTRICT xp = x + i * is;
        const float *ET_RESTRICT gp = dy + i * is;
        const float *ET_RESTRICT tp = t + i * is;
        for (int64_t j = 0; j < len; j++) {
            const double g = (double)et_bn_mask_(act, tp[j], gp[j]);
            sp[j] += g;
            dp[j] += g * ((double)xp[j] - (double)mean[j]);
        }
    }
}

void et_f32_bn_dx_m__ref(int64_t len, const float *x, const float *dy, const float *t, et_act act,
                         float gm, float mean, float pr, float gs, float *dx) {
    const float *ET_RESTRICT xp = x;
    const float *ET_RESTRICT gp = dy;
    const float *ET_RESTRICT tp = t;
    float *ET_RESTRICT dp = dx;
    for (int64_t j = 0; j < len; j++)
        dp[j] = (et_bn_mask_(act, tp[j], gp[j]) - gm - (xp[j] - mean) * pr) * gs;
}

void et_f32_bn_dx_v_m__ref(int64_t len, const float *x, const float *dy, const float *t,
                           et_act act, const float *gm, const float *mean, const float *pr,
                           const float *gs, float *dx) {
    const float *ET_RESTRICT xp = x;
    const float *ET_RESTRICT gp = dy;
    const float *ET_RESTRICT tp = t;
    float *ET_RESTRICT dp = dx;
    for (int64_t j = 0; j < len; j++)
        dp[j] = (et_bn_mask_(act, tp[j], gp[j]) - gm[j] - (xp[j] - mean[j]) * pr[j]) * gs[j];
}

/* plane_sum's order for the sum (8 lanes, a separate tail), plane_dev's for the dot (the tail
 * into lane 0), as et_f32_bn_plane_bwd__ref computes them on the masked dy. */
void et_f32_bn_plane_bwd_m__ref(int64_t hw, const float *x, const float *dy, const float *t,
                                et_act act, double mean, double *sum, double *dot) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, d[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0.0;
    int64_t j = 0;
    for (; j + 8 <= hw; j += 8)
        for (int l = 0; l < 8; l++) {
            const double g = (double)et_bn_mask_(act, t[j + l], dy[j + l]);
            s[l] += g;
            d[l] += g * ((double)x[j + l] - mean);
        }
    for (; j < hw; j++) {
        const double g = (double)et_bn_mask_(act, t[j], dy[j]);
        tail += g;
        d[0] += g * ((double)x[j] - mean);
    }
    *sum = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
    *dot = ((d[0] + d[4]) + (d[1] + d[5])) + ((d[2] + d[6]) + (d[3] + d[7]));
}

/* Sum over the n planes of channel ch of x, then of (x - mean)^2 or dy * (x - mean). */
static double sum_channel(const et_f32_bn_variant *row, int64_t n, int64_t c, int64_t hw,
                          int64_t ch, const float *x) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += row->plane_sum(hw, x + (i * c + ch) * hw);
    return s;
}

static double sum_dev(const et_f32_bn_variant *row, int64_t n, int64_t c, int64_t hw, int64_t ch,
                      const float *x, const float *dy, double mean) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t off = (i * c + ch) * hw;
        s += row->plane_dev(hw, x + off, dy ? dy + off : NULL, mean);
    }
    return s;
}

/* ---- small planes: channel blocks --------------------------------------------------------
 * With hw <= BN_BLOCK (MobileNetV2 at 32x32: [32, C, 16x16 ... 1x1]) the per-channel loops
 * above run a few elements per call. Here a block of cb channels (cb * hw <= BN_BLOCK elements,
 * contiguous in every image) is handled at once: per-element accumulators over the images
 * (long contiguous loops that vectorise), then a short per-channel reduction, then per-element
 * scale / shift arrays. Same two-pass double statistics; blocks are independent, so results do
 * not depend on the thread count. Work below BN_SERIAL elements runs on one thread (a pool job
 * costs more than the loop). A channel's values do not depend on its block either (per-element
 * accumulators, then its own reduction), so blocks are also made small enough that there are
 * BN_MIN_BLOCKS of them when each keeps BN_MIN_LEN elements per image: the head of MobileNetV2
 * (c = 384..1280 at 2x2 and 1x1) otherwise has 2 or 3 blocks, which 2 threads share unevenly. */
#define BN_BLOCK 512
#define BN_SERIAL 8192
#define BN_MIN_BLOCKS 8
#define BN_MIN_LEN 64

/* The channel blocks of the small-plane path: cb channels each, on one thread below
 * BN_SERIAL elements. */
typedef struct bn_blocks {
    int64_t cb, count;
    int nth;
} bn_blocks;

static bn_blocks bn_blocks_of(int64_t n, int64_t c, int64_t hw, int nthreads) {
    bn_blocks bb;
    bb.cb = BN_BLOCK / hw;
    int64_t even = (c + BN_MIN_BLOCKS - 1) / BN_MIN_BLOCKS;  /* channels for BN_MIN_BLOCKS */
    const int64_t least = (BN_MIN_LEN + hw - 1) / hw;        /* channels for BN_MIN_LEN */
    if (even < least) even = least;
    if (even < bb.cb) bb.cb = even;
    bb.count = (c + bb.cb - 1) / bb.cb;
    bb.nth = n * c * hw < BN_SERIAL ? 1 : nthreads;
    return bb;
}

static void bn_train_block(const et_f32_bn_variant *row, int64_t n, int64_t c, int64_t hw, int64_t c0, int64_t cb,
                           const float *x, const float *gamma, const float *beta,
                           float *running_mean, float *running_var, double mom, double unbias,
                           float eps, et_act act, float *y, float *save_mean, float *save_invstd) {
    double acc[BN_BLOCK], mj[BN_BLOCK];
    float a[BN_BLOCK], sh[BN_BLOCK];
    const int64_t len = cb * hw, count = n * hw, is = c * hw;
    const float *xb = x + c0 * hw;
    for (int64_t j = 0; j < len; j++) acc[j] = 0.0;
    row->acc_sum(n, is, len, xb, acc);
    for (int64_t k = 0; k < cb; k++) {
        double s = 0.0;
        for (int64_t j = k * hw; j < (k + 1) * hw; j++) s += acc[j];
        for (int64_t j = k * hw; j < (k + 1) * hw; j++) mj[j] = s / (double)count;
    }
    for (int64_t j = 0; j < len; j++) acc[j] = 0.0;
    row->acc_sqdev(n, is, len, xb, mj, acc);
    for (int64_t k = 0; k < cb; k++) {
        const int64_t ch = c0 + k;
        double s = 0.0;
        for (int64_t j = k * hw; j < (k + 1) * hw; j++) s += acc[j];
        const double mean = mj[k * hw], var = s / (double)count;
        const double invstd = 1.0 / sqrt(var + (double)eps);
        const double g = gamma ? (double)gamma[ch] : 1.0, b = beta ? (double)beta[ch] : 0.0;
        const double alpha = invstd * g;
        const float fa = (float)alpha, fs = (float)(b - mean * alpha);
        for (int64_t j = k * hw; j < (k + 1) * hw; j++) {
            a[j] = fa;
            sh[j] = fs;
        }
        if (save_mean) save_mean[ch] = (float)mean;
        if (save_invstd) save_invstd[ch] = (float)invstd;
        if (running_mean) {
            running_mean[ch] = (float)((1.0 - mom) * (double)running_mean[ch] + mom * mean);
            running_var[ch] = (float)((1.0 - mom) * (double)running_var[ch] + mom * var * unbias);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        if (act != ET_ACT_NONE)
            row->affine_v_act(len, xb + i * is, a, sh, act, y + c0 * hw + i * is);
        else
            row->affine_v(len, xb + i * is, a, sh, y + c0 * hw + i * is);
    }
}

/* t != NULL: dy masked by act from t (the act's output), frozen == 0 */
static void bn_bwd_block(const et_f32_bn_variant *row, int64_t n, int64_t c, int64_t hw, int64_t c0, int64_t cb, const float *x,
                         const float *dy, const float *t, et_act act, const float *gamma,
                         const float *save_mean, const float *save_invstd, int frozen, float *dx,
                         float *dgamma, float *dbeta) {
    double as[BN_BLOCK], ad[BN_BLOCK];
    float mf[BN_BLOCK], gm[BN_BLOCK], pr[BN_BLOCK], gs[BN_BLOCK];
    const int64_t len = cb * hw, count = n * hw, is = c * hw;
    for (int64_t j = 0; j < len; j++) {
        mf[j] = save_mean[c0 + j / hw];
        as[j] = ad[j] = 0.0;
    }
    if (t)
        row->acc_bwd_m(n, is, len, x + c0 * hw, dy + c0 * hw, t + c0 * hw, act, mf, as, ad);
    else
        row->acc_bwd(n, is, len, x + c0 * hw, dy + c0 * hw, mf, as, ad);
    for (int64_t k = 0; k < cb; k++) {
        const int64_t ch = c0 + k;
        double sum = 0.0, dotp = 0.0;
        for (int64_t j = k * hw; j < (k + 1) * hw; j++) {
            sum += as[j];
            dotp += ad[j];
        }
        const double invstd = (double)save_invstd[ch];
        if (dgamma) dgamma[ch] = (float)(dotp * invstd);
        if (dbeta) dbeta[ch] = (float)sum;
        const double g = gamma ? (double)gamma[ch] : 1.0;
        const float fg = frozen ? 0.0f : (float)(sum / (double)count);
        const float fp = frozen ? 0.0f : (float)(dotp * invstd * invstd / (double)count);
        const float fs = (float)(invstd * g);
        for (int64_t j = k * hw; j < (k + 1) * hw; j++) {
            gm[j] = fg;
            pr[j] = fp;
            gs[j] = fs;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const float *ET_RESTRICT xp = x + c0 * hw + i * is;
        const float *ET_RESTRICT gp = dy + c0 * hw + i * is;
        float *ET_RESTRICT dp = dx + c0 * hw + i * is;
        if (frozen)
            for (int64_t j = 0; j < len; j++) dp[j] = gp[j] * gs[j];
        else if (t)
            row->dx_v_m(len, xp, gp, t + c0 * hw + i * is, act, gm, mf, pr, gs, dp);
        else
            row->dx_v(len, xp, gp, gm, mf, pr, gs, dp);
    }
}

/* Every channel is computed on its own (fixed blocks of channels): any split of the channels
 * over threads gives the same bits. */
typedef struct bn_job {
    int64_t n, c, hw, cb;
    const float *x, *dy, *gamma, *beta;
    const float *t; /* the fused act's output (backward with act), else NULL */
    et_act act;     /* fused relu / relu6, or ET_ACT_NONE */
    float *running_mean, *running_var;
    const float *rmean, *rvar, *save_mean_in, *save_invstd_in; /* infer / bwd inputs */
    double mom, unbias;
    float eps;
    int frozen; /* backward with the running statistics (constants) */
    const et_f32_bn_variant *row; /* et_f32_bn_variants (batchnorm_simd.c) */
    float *y, *save_mean, *save_invstd, *dgamma, *dbeta;
} bn_job;

/* A training-mode pass (forward or backward) over the channels: in blocks of k->cb channels
 * (blocked, small planes) or one channel at a time. */
static et_status run_bn(bn_job *k, int blocked, et_range_body blocks, et_range_body channels,
                        int nthreads) {
    k->row = (const et_f32_bn_variant *)ET_VARIANT_PICK(et_f32_bn_variants);
    if (blocked) {
        const bn_blocks bb = bn_blocks_of(k->n, k->c, k->hw, nthreads);
        k->cb = bb.cb;
        et_parallel_ranges(bb.count, et_split_chunks(bb.count, bb.nth), bb.nth, blocks, k);
        return ET_OK;
    }
    et_parallel_ranges(k->c, et_split_chunks(k->c, nthreads), nthreads, channels, k);
    return ET_OK;
}

static void bn_train_blocks(void *ctx, int64_t b0, int64_t b1, int tid);
static void bn_train_channels(void *ctx, int64_t c0, int64_t c1, int tid);

et_status et_f32_batchnorm_train_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                     const float *gamma, const float *beta,
                                     float *running_mean, float *running_var, float momentum,
                                     float eps, float *y, float *save_mean, float *save_invstd,
                                     int nthreads) {
    return et_f32_batchnorm_train_act_fwd(n, c, hw, x, gamma, beta, running_mean, running_var,
                                          momentum, eps, ET_ACT_NONE, y, save_mean, save_invstd,
                                          nthreads);
}

static int bn_act_ok(et_act act) {
    return act == ET_ACT_NONE || act == ET_ACT_RELU || act == ET_ACT_RELU6;
}

et_status et_f32_batchnorm_train_act_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                         const float *gamma, const float *beta,
                                         float *running_mean, float *running_var, float momentum,
                                         float eps, et_act act, float *y, float *save_mean,
                                         float *save_invstd, int nthreads) {
    if (n < 0 || c < 0 || hw < 0 || !(eps >= 0.0f) || !bn_act_ok(act)) return ET_ERR_ARG;
    if (c == 0) return ET_OK;
    /* PyTorch: "Expected more than 1 value per channel when training". */
    if (n * hw <= 1) return ET_ERR_SHAPE;
    if (!x || !y) return ET_ERR_ARG;
    if ((running_mean == NULL) != (running_var == NULL)) return ET_ERR_ARG;
    const int64_t count = n * hw;
    const double mom = (double)momentum;
    const double unbias = (double)count / (double)(count - 1);
    bn_job k = {0};
    k.n = n, k.c = c, k.hw = hw, k.x = x, k.gamma = gamma, k.beta = beta;
    k.running_mean = running_mean, k.running_var = running_var, k.mom = mom, k.unbias = unbias;
    k.eps = eps, k.act = act, k.y = y, k.save_mean = save_mean, k.save_invstd = save_invstd;
    return run_bn(&k, hw <= BN_BLOCK, bn_train_blocks, bn_train_channels, nthreads);
}

static void bn_train_blocks(void *ctx, int64_t b0, int64_t b1, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    (void)tid;
    for (int64_t bi = b0; bi < b1; bi++) {
        const int64_t c0 = bi * k->cb, m = k->c - c0 < k->cb ? k->c - c0 : k->cb;
        bn_train_block(k->row, k->n, k->c, k->hw, c0, m, k->x, k->gamma, k->beta, k->running_mean,
                       k->running_var, k->mom, k->unbias, k->eps, k->act, k->y, k->save_mean,
                       k->save_invstd);
    }
}

static void bn_train_channels(void *ctx, int64_t c0, int64_t c1, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    const int64_t n = k->n, c = k->c, hw = k->hw, count = n * hw;
    const float *x = k->x, *gamma = k->gamma, *beta = k->beta;
    float *y = k->y, *save_mean = k->save_mean, *save_invstd = k->save_invstd;
    float *running_mean = k->running_mean, *running_var = k->running_var;
    const double mom = k->mom, unbias = k->unbias;
    const float eps = k->eps;
    (void)tid;
    for (int64_t ch = c0; ch < c1; ch++) {
        const double mean = sum_channel(k->row, n, c, hw, ch, x) / (double)count;
        const double var = sum_dev(k->row, n, c, hw, ch, x, NULL, mean) / (double)count;
        const double invstd = 1.0 / sqrt(var + (double)eps);
        const double g = gamma ? (double)gamma[ch] : 1.0, b = beta ? (double)beta[ch] : 0.0;
        const double alpha = invstd * g;
        const float fa = (float)alpha, fs = (float)(b - mean * alpha);
        for (int64_t i = 0; i < n; i++) {
            const int64_t off = (i * c + ch) * hw;
            if (k->act != ET_ACT_NONE)
                k->row->affine_act(hw, x + off, fa, fs, k->act, y + off);
            else
                k->row->affine(hw, x + off, fa, fs, y + off);
        }
        if (save_mean) save_mean[ch] = (float)mean;
        if (save_invstd) save_invstd[ch] = (float)invstd;
        if (running_mean) {
            running_mean[ch] = (float)((1.0 - mom) * (double)running_mean[ch] + mom * mean);
            running_var[ch] = (float)((1.0 - mom) * (double)running_var[ch] + mom * var * unbias);
        }
    }
}

void et_f32_bn_infer_factor(const float *gamma, const float *beta, const float *mean,
                            const float *var, float eps, int64_t ch, float *a, float *sh) {
    const double invstd = 1.0 / sqrt((double)var[ch] + (double)eps);
    const double g = gamma ? (double)gamma[ch] : 1.0, b = beta ? (double)beta[ch] : 0.0;
    const double alpha = invstd * g;
    *a = (float)alpha;
    *sh = (float)(b - (double)mean[ch] * alpha);
}

/* Channels ch in [c0, c1): the affine factors once per channel (small planes are common: a
 * MobileNetV2 head has 1x1 maps, so per-plane factors cost more than the planes), then every
 * image's plane of that channel. Each element's value does not depend on the partition. */
static void bn_infer_channels(void *ctx, int64_t c0, int64_t c1, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    const int64_t c = k->c, hw = k->hw;
    (void)tid;
    for (int64_t ch = c0; ch < c1; ch++) {
        float a, sh;
        et_f32_bn_infer_factor(k->gamma, k->beta, k->rmean, k->rvar, k->eps, ch, &a, &sh);
        for (int64_t img = 0; img < k->n; img++) {
            const int64_t pl = img * c + ch;
            k->row->affine(hw, k->x + pl * hw, a, sh, k->y + pl * hw);
        }
    }
}

et_status et_f32_batchnorm_infer_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                     const float *gamma, const float *beta,
                                     const float *running_mean, const float *running_var,
                                     float eps, float *y, int nthreads) {
    if (n < 0 || c < 0 || hw < 0 || !(eps >= 0.0f)) return ET_ERR_ARG;
    if (n * c * hw == 0) return ET_OK;
    if (!x || !y || !running_mean || !running_var) return ET_ERR_ARG;
    bn_job k = {0};
    k.n = n, k.c = c, k.hw = hw, k.x = x, k.gamma = gamma, k.beta = beta, k.rmean = running_mean;
    k.rvar = running_var, k.eps = eps, k.y = y;
    k.row = (const et_f32_bn_variant *)ET_VARIANT_PICK(et_f32_bn_variants);
    et_parallel_ranges(c, et_split_chunks(c, nthreads), nthreads, bn_infer_channels, &k);
    return ET_OK;
}

static void bn_bwd_blocks(void *ctx, int64_t b0, int64_t b1, int tid);
static void bn_bwd_channels(void *ctx, int64_t c0, int64_t c1, int tid);

/* t, act: the fused act's output and kind (t NULL and act ET_ACT_NONE without one). */
static et_status bn_bwd(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy,
                        const float *t, et_act act, const float *gamma, const float *save_mean,
                        const float *save_invstd, int frozen, float *dx, float *dgamma,
                        float *dbeta, int nthreads) {
    if (n < 0 || c < 0 || hw < 0 || !bn_act_ok(act)) return ET_ERR_ARG;
    if ((act == ET_ACT_NONE) != (t == NULL) && n * c * hw > 0) return ET_ERR_ARG;
    if (c == 0) return ET_OK;
    if (!save_mean || !save_invstd) return ET_ERR_ARG;
    const int64_t count = n * hw;
    if (count > 0 && (!x || !dy || !dx)) return ET_ERR_ARG;
    bn_job k = {0};
    k.n = n, k.c = c, k.hw = hw, k.x = x, k.dy = dy, k.gamma = gamma, k.save_mean_in = save_mean;
    k.t = count > 0 && act != ET_ACT_NONE ? t : NULL, k.act = act;
    k.save_invstd_in = save_invstd, k.y = dx, k.dgamma = dgamma, k.dbeta = dbeta, k.frozen = frozen;
    return run_bn(&k, count > 0 && hw <= BN_BLOCK, bn_bwd_blocks, bn_bwd_channels, nthreads);
}

et_status et_f32_batchnorm_bwd(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy,
                               const float *gamma, const float *save_mean,
                               const float *save_invstd, float *dx, float *dgamma, float *dbeta,
                               int nthreads) {
    return bn_bwd(n, c, hw, x, dy, NULL, ET_ACT_NONE, gamma, save_mean, save_invstd, 0, dx, dgamma,
                  dbeta, nthreads);
}

et_status et_f32_batchnorm_act_bwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                   const float *y, const float *dy, et_act act,
                                   const float *gamma, const float *save_mean,
                                   const float *save_invstd, float *dx, float *dgamma,
                                   float *dbeta, int nthreads) {
    return bn_bwd(n, c, hw, x, dy, act == ET_ACT_NONE ? NULL : y, act, gamma, save_mean,
                  save_invstd, 0, dx, dgamma, dbeta, nthreads);
}

et_status et_f32_batchnorm_frozen_bwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                      const float *dy, const float *gamma, const float *save_mean,
                                      const float *save_invstd, float *dx, float *dgamma,
                                      float *dbeta, int nthreads) {
    return bn_bwd(n, c, hw, x, dy, NULL, ET_ACT_NONE, gamma, save_mean, save_invstd, 1, dx, dgamma,
                  dbeta, nthreads);
}

/* A training step with frozen statistics: y as in eval, save_mean / save_invstd from the
 * running statistics (left unchanged) for et_f32_batchnorm_frozen_bwd. */
et_status et_f32_batchnorm_frozen_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                      const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var,
                                      float eps, float *y, float *save_mean, float *save_invstd,
                                      int nthreads) {
    et_status st = et_f32_batchnorm_infer_fwd(n, c, hw, x, gamma, beta, running_mean, running_var,
                                              eps, y, nthreads);
    if (st != ET_OK || c == 0) return st;
    if (!running_mean || !running_var) return ET_ERR_ARG;
    for (int64_t ch = 0; ch < c; ch++) {
        if (save_mean) save_mean[ch] = running_mean[ch];
        if (save_invstd) save_invstd[ch] = (float)(1.0 / sqrt((double)running_var[ch] + (double)eps));
    }
    return ET_OK;
}

static void bn_bwd_blocks(void *ctx, int64_t b0, int64_t b1, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    (void)tid;
    for (int64_t bi = b0; bi < b1; bi++) {
        const int64_t c0 = bi * k->cb, m = k->c - c0 < k->cb ? k->c - c0 : k->cb;
        bn_bwd_block(k->row, k->n, k->c, k->hw, c0, m, k->x, k->dy, k->t, k->act, k->gamma,
                     k->save_mean_in, k->save_invstd_in, k->frozen, k->y, k->dgamma, k->dbeta);
    }
}

static void bn_bwd_channels(void *ctx, int64_t c0, int64_t c1, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    const int64_t n = k->n, c = k->c, hw = k->hw, count = n * hw;
    const float *x = k->x, *dy = k->dy, *gamma = k->gamma;
    const float *save_mean = k->save_mean_in, *save_invstd = k->save_invstd_in;
    float *dx = k->y, *dgamma = k->dgamma, *dbeta = k->dbeta;
    (void)tid;
    for (int64_t ch = c0; ch < c1; ch++) {
        const float mean = save_mean[ch];
        const double invstd = (double)save_invstd[ch];
        double sum = 0.0, dotp = 0.0; /* two sums over the planes, each in plane order */
        for (int64_t i = 0; i < n && count; i++) {
            const int64_t off = (i * c + ch) * hw;
            double ps, pd;
            if (k->t)
                k->row->plane_bwd_m(hw, x + off, dy + off, k->t + off, k->act, mean, &ps, &pd);
            else
                k->row->plane_bwd(hw, x + off, dy + off, mean, &ps, &pd);
            sum += ps;
            dotp += pd;
        }
        if (dgamma) dgamma[ch] = (float)(dotp * invstd);
        if (dbeta) dbeta[ch] = (float)sum;
        if (count == 0) continue;
        const double g = gamma ? (double)gamma[ch] : 1.0;
        /* dx = (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean))) * invstd * g */
        const float grad_mean = (float)(sum / (double)count);
        const float proj = (float)(dotp * invstd * invstd / (double)count);
        const float gscale = (float)(invstd * g);
        for (int64_t i = 0; i < n; i++) {
            const float *ET_RESTRICT xp = x + (i * c + ch) * hw;
            const float *ET_RESTRICT gp = dy + (i * c + ch) * hw;
            float *ET_RESTRICT dp = dx + (i * c + ch) * hw;
            if (k->frozen)
                for (int64_t j = 0; j < hw; j++) dp[j] = gp[j] * gscale;
            else if (k->t)
                k->row->dx_m(hw, xp, gp, k->t + (i * c + ch) * hw, k->act, grad_mean, mean, proj,
                             gscale, dp);
            else
                k->row->dx(hw, xp, gp, grad_mean, mean, proj, gscale, dp);
        }
    }
}
