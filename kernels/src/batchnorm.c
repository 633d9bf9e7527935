/* edgetrain — batch normalisation over (N, HW) per channel, NCHW (BatchNorm1d: hw = 1).
 *
 * Statistics are accumulated in double (per group of images: sum, then squared deviations from
 * the group's mean; the groups combined in order), over a split that depends on the shape only
 * (see "the split over threads" below), so results are the same for every thread count and no
 * atomics are needed. The per-element transforms
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

/* ---- __ref row: the per-channel factors of a small-plane block ---------------------------- */
void et_f32_bn_div__ref(int64_t nc, const double *s, double d, double *q_out) {
    for (int64_t q = 0; q < nc; q++) q_out[q] = s[q] / d;
}

void et_f32_bn_fwd_factors__ref(int64_t nc, const double *mean, const double *var, double eps,
                                const float *gamma, const float *beta, double *invstd, float *a,
                                float *sh) {
    for (int64_t q = 0; q < nc; q++) {
        const double is = 1.0 / sqrt(var[q] + eps);
        const double g = gamma ? (double)gamma[q] : 1.0, b = beta ? (double)beta[q] : 0.0;
        const double alpha = is * g;
        invstd[q] = is;
        a[q] = (float)alpha;
        sh[q] = (float)(b - mean[q] * alpha);
    }
}

void et_f32_bn_bwd_factors__ref(int64_t nc, const double *sum, const double *dot, double count,
                                const float *invstd, const float *gamma, int frozen,
                                float *dgamma, float *dbeta, float *gm, float *pr, float *gs) {
    for (int64_t q = 0; q < nc; q++) {
        const double is = (double)invstd[q], di = dot[q] * is;
        if (dgamma) dgamma[q] = (float)di;
        if (dbeta) dbeta[q] = (float)sum[q];
        const double g = gamma ? (double)gamma[q] : 1.0;
        gm[q] = frozen ? 0.0f : (float)(sum[q] / count);
        pr[q] = frozen ? 0.0f : (float)(di * is / count);
        gs[q] = (float)(is * g);
    }
}

/* ---- the split over threads ----------------------------------------------------------------
 * Chunks are rectangles of images x channels, in address order. The pool hands the calling
 * thread chunks from the front and a worker chunks from the back, as it does for the
 * elementwise ops, pools, depthwise and per-image convolutions around a BatchNorm, so when
 * the chunks are groups of images each thread reads the images its own core's cache holds
 * (a split by channels reads half of every image from the other core).
 *
 * Planes of hw >= BN_GROUP_HW elements: `groups` image groups (BN_GROUPS, fewer only with
 * fewer images), a function of the shape only. A pass is two parallel regions over the same
 * chunks (group g, part h of the channels): (1) each chunk sums its images of each of its
 * channels into the (g, channel) slot, and the last chunk of a part to finish combines the
 * part's slots in group order, (2) each chunk writes y or dx. The channel parts and slabs do not
 * change a channel's sums, so they may depend on the thread count: one thread runs one block
 * of channels at a time, each group's sums, the combine, then y / dx of all images in one
 * pass (its data stays in cache from its sums to y), several threads a slab of channels whose
 * data fits in their caches (BN_CACHE each), cut into parts for balance.
 * Smaller planes (MobileNetV2's 2x2 and 1x1 maps) have too little data per image for a group
 * to pay for its sums: one group (all images), and each chunk is a block of channels that
 * sums, combines and writes its own channels in one call (bn_train_block / bn_bwd_block, no
 * slots; planes above BN_BLOCK with one image: the grid with one group).
 *
 * A chunk's sums of channel ch over its images, the same on every ISA (the row kernels and
 * plain C): planes of hw <= BN_BLOCK elements in blocks of channels (cb * hw <= BN_BLOCK,
 * contiguous in every image): per-element double accumulators over the images in order, then
 * each channel's hw accumulators (bn_block_sums); larger planes: plane_sum / plane_dev /
 * plane_bwd of each plane, added in image order.
 * Forward: group g's sum S_g, its mean m_g = S_g / n_g (n_g = its images * hw) and
 * M2_g = sum (x - m_g)^2, a second pass over data still in the core's cache; combined as
 * mean = (sum_g S_g) / count, var = sum_g (M2_g + n_g (m_g - mean)^2) / count (terms >= 0:
 * two-pass quality with one pass over memory). Backward: sums of dy and dy * (x - mean)
 * (dy masked with a fused act), added over the groups in order.
 * The slots are on the caller's stack (BN_SLOTS); the combine leaves each channel's factors
 * in its group-0 slot. Work below BN_SERIAL elements runs on one thread (a job costs more). */
/* elements of a channel block: its accumulators and per-element factors are stack arrays,
 * 64-byte aligned so the SIMD rows' loads never split a cache line (unaligned, the y pass of a
 * 16-element-plane block ran ~14% slower) */
#define BN_BLOCK 512
#define BN_SERIAL 8192     /* elements below which one thread runs the chunks */
#define BN_GRAIN 4096      /* elements per chunk, at least */
#define BN_CHUNKS 8        /* chunks per slab, at most */
#define BN_SLOTS 2048      /* (group, channel) slots (32 KiB) */
#define BN_CACHE (1 << 20) /* bytes of a slab's data per thread (half a core's L2) */
#define BN_GROUPS 2        /* image groups (two threads: each its half of the images) */
#define BN_GROUP_HW 16     /* smallest planes split into image groups */

/* The partials of (group, channel): forward S, M2; backward sum of dy, of dy * (x - mean).
 * After the combine, group 0's slot holds the channel's factors: forward alpha, shift;
 * backward grad_mean, proj, gscale. */
typedef union bn_slot {
    double d[2];
    float f[4];
} bn_slot;

typedef struct bn_job {
    int64_t n, c, hw;
    const float *x, *dy, *gamma, *beta;
    const float *t; /* the fused act's output (backward with act), else NULL */
    et_act act;     /* fused relu / relu6, or ET_ACT_NONE */
    float *running_mean, *running_var;
    const float *rmean, *rvar, *save_mean_in, *save_invstd_in; /* infer / bwd inputs */
    double mom, unbias;
    float eps;
    int frozen;                   /* backward with the running statistics (constants) */
    const et_f32_bn_variant *row; /* et_f32_bn_variants (batchnorm_simd.c) */
    float *y, *save_mean, *save_invstd, *dgamma, *dbeta;
    /* the grid: chunk = group * parts + part; group g is images et_thread_range(n, g, groups),
     * part h channels et_thread_range(s1 - s0, h, parts) of the slab [s0, s1) */
    int64_t groups, parts, s0, s1;
    int64_t cb; /* one group, planes <= BN_BLOCK: channels per block (bn_blocks_of) */
    bn_slot *part; /* slot (g, ch): part[g * (s1 - s0) + ch - s0] */
    void (*combine)(const struct bn_job *k, int64_t c0, int64_t c1);
    et_pool_body stats, apply;
    void (*apply_rect)(const struct bn_job *k, int64_t i0, int64_t i1, int64_t c0, int64_t c1);
    int done[BN_CHUNKS]; /* per part: its chunks whose sums are in (several groups) */
} bn_job;

/* The grid of a pass over `tensors` arrays of the shape's size (x, y; x, dy, t, dx): groups
 * (a function of the shape), channel parts (at most; fewer in a narrow slab), slab width. */
typedef struct bn_grid {
    int64_t groups, parts, slab;
    int nth;
} bn_grid;

int64_t et_f32_bn_groups(int64_t n, int64_t hw) {
    return hw < BN_GROUP_HW || n < 2 ? 1 : (n < BN_GROUPS ? n : BN_GROUPS);
}

static bn_grid bn_grid_of(int64_t n, int64_t c, int64_t hw, int tensors, int nthreads) {
    bn_grid gr;
    const int64_t total = n * c * hw, cb = hw > BN_BLOCK ? 1 : BN_BLOCK / hw;
    gr.groups = et_f32_bn_groups(n, hw);
    gr.nth = total < BN_SERIAL ? 1 : nthreads;
    gr.parts = 1;
    if (gr.groups == 1) { /* chunks of whole blocks, each in one region */
        gr.slab = c;
        gr.parts = (c + cb - 1) / cb;
        if (gr.nth > 1) { /* at least BN_CHUNKS parts of BN_GRAIN elements, when there are */
            const int64_t want = et_chunk_count(total, BN_GRAIN, BN_CHUNKS);
            if (gr.parts < want) gr.parts = want < c ? want : c;
        }
    } else if (gr.nth == 1) { /* block by block: its data stays in cache from its sums to y */
        gr.slab = c < cb ? c : cb;
    } else { /* slabs whose data fits in the threads' caches */
        const int64_t per_ch = n * hw * (int64_t)sizeof(float) * tensors;
        gr.slab = (int64_t)BN_CACHE * gr.nth / per_ch;
        if (gr.slab < 1) gr.slab = 1;
        if (gr.slab > c) gr.slab = c;
        const int64_t chunks = et_chunk_count(n * gr.slab * hw, BN_GRAIN, BN_CHUNKS);
        if (chunks > gr.groups) gr.parts = (chunks + gr.groups - 1) / gr.groups;
    }
    if (gr.slab > BN_SLOTS / gr.groups) gr.slab = BN_SLOTS / gr.groups;
    return gr;
}

/* Chunk `chunk`'s group (returned), images [*i0, *i1) and channels [*c0, *c1). */
static int64_t bn_rect(const bn_job *k, int64_t chunk, int64_t *i0, int64_t *i1, int64_t *c0,
                       int64_t *c1) {
    const int64_t g = chunk / k->parts;
    et_thread_range(k->n, (int)g, (int)k->groups, i0, i1);
    et_thread_range(k->s1 - k->s0, (int)(chunk % k->parts), (int)k->parts, c0, c1);
    *c0 += k->s0;
    *c1 += k->s0;
    return g;
}

/* One group: a chunk's channels are complete, so it sums, combines and writes them. */
static void bn_whole(void *ctx, int64_t chunk, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    int64_t i0, i1, c0, c1;
    bn_rect(k, chunk, &i0, &i1, &c0, &c1);
    k->stats(ctx, chunk, tid);
    k->combine(k, c0, c1);
    k->apply(ctx, chunk, tid);
}

/* Several groups: a chunk sums its part of the channels; the last of the part's chunks to
 * finish (on any thread) combines them, so no thread waits for a serial combine between the
 * two regions. The combine reads the groups' slots in group order, whoever runs it. */
static void bn_stats_part(void *ctx, int64_t chunk, int tid) {
    bn_job *k = (bn_job *)ctx;
    int64_t i0, i1, c0, c1;
    bn_rect(k, chunk, &i0, &i1, &c0, &c1);
    k->stats(ctx, chunk, tid);
    if (__atomic_add_fetch(&k->done[chunk % k->parts], 1, __ATOMIC_ACQ_REL) == k->groups)
        k->combine(k, c0, c1);
}

/* Runs a pass: slab by slab, the sums over the grid's chunks and the combine, then apply. */
static void run_bn(bn_job *k, int64_t c, const bn_grid *gr, bn_slot *part) {
    k->row = (const et_f32_bn_variant *)ET_VARIANT_PICK(et_f32_bn_variants);
    k->groups = gr->groups;
    k->part = part;
    for (int64_t s0 = 0; s0 < c; s0 += gr->slab) {
        k->s0 = s0;
        k->s1 = c - s0 < gr->slab ? c : s0 + gr->slab;
        k->parts = k->s1 - s0 < gr->parts ? k->s1 - s0 : gr->parts;
        const int64_t chunks = k->groups * k->parts;
        if (k->groups == 1) {
            et_parallel_for(chunks, gr->nth, bn_whole, k);
            continue;
        }
        if (gr->nth == 1) { /* one thread, one part: each group's sums, then y / dx at once */
            for (int64_t g = 0; g < k->groups; g++) k->stats(k, g, 0);
            k->combine(k, k->s0, k->s1);
            k->apply_rect(k, 0, k->n, k->s0, k->s1);
            continue;
        }
        for (int64_t h = 0; h < k->parts; h++) k->done[h] = 0;
        et_parallel_for(chunks, gr->nth, bn_stats_part, k);
        et_parallel_for(chunks, gr->nth, k->apply, k);
    }
}

/* Sum of the hw accumulators of each of the nb channels of a block, plane_sum's order: in
 * order (from +0) below 8, else 8 lanes (element j of each run of 8 in lane j) combined
 * ((0+4)+(1+5))+((2+6)+(3+7)), plus the tail summed in order. Plain C: one order, one result
 * whatever the ISA. (hw = 1: the accumulator itself, never -0, is that sum.) */
static inline void bn_block_sums(int64_t nb, int64_t hw, const double *acc, double *sums) {
    if (hw == 1) {
        for (int64_t q = 0; q < nb; q++) sums[q] = acc[q];
        return;
    }
    for (int64_t q = 0; q < nb; q++) {
        const double *a = acc + q * hw;
        double tail = 0.0;
        int64_t j = 0;
        if (hw < 8) {
            for (; j < hw; j++) tail += a[j];
            sums[q] = tail;
            continue;
        }
        double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (; j + 8 <= hw; j += 8)
            for (int r = 0; r < 8; r++) l[r] += a[j + r];
        for (; j < hw; j++) tail += a[j];
        sums[q] = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7])) + tail;
    }
}

/* ---- one group, planes <= BN_BLOCK: fused channel blocks ----------------------------------
 * (MobileNetV2 at 32x32: the 2x2 and 1x1 maps of its head.) A block of cb channels (cb * hw <=
 * BN_BLOCK elements, contiguous in every image) sums, combines and writes its channels in one
 * call, with no slots: per-element accumulators over all images, each channel's sums
 * (bn_block_sums), its factors, then the per-element y / dx pass. These are the grid's sums and
 * factors for one group (mean S / count, M2 about it), so the bits are the rule's. A channel's
 * values do not depend on its block, so blocks are also made small enough that there are
 * BN_MIN_BLOCKS of them when each keeps BN_MIN_LEN elements per image: the head (c = 384..1280
 * at 2x2 and 1x1) otherwise has 2 or 3 blocks, which 2 threads share unevenly. */
#define BN_MIN_BLOCKS 8
#define BN_MIN_LEN 64
/* Elements below which the blocks run on one thread: MobileNetV2 b32's 2x2 and 1x1 maps
 * (40960 to 73728 elements, 9-35 us on one thread) took 10-60% longer on two threads of the
 * session (per-node profile, 2 shared cores), the split's hand-out and wait costing more than
 * the half of the blocks it moves. */
#define BN_BLOCK_SERIAL (1 << 17)
#define BN_ROW_ALIGN 32 /* elements: a multiple of every row's vector loop (AVX-512: 4 x 8) */

static int64_t bn_blocks_of(int64_t c, int64_t hw) {
    int64_t cb = BN_BLOCK / hw;
    int64_t even = (c + BN_MIN_BLOCKS - 1) / BN_MIN_BLOCKS; /* channels for BN_MIN_BLOCKS */
    const int64_t least = (BN_MIN_LEN + hw - 1) / hw;       /* channels for BN_MIN_LEN */
    if (even < least) even = least;
    /* Rows of a multiple of BN_ROW_ALIGN elements, when one fits: the row kernels' vector
     * loops then cover every row, with no scalar tail (960 channels of 1x1 planes: blocks of
     * 120 left 8 per image to the scalar loops, 25% of the block's time in the y pass). */
    int64_t m = BN_ROW_ALIGN;
    for (int64_t h = hw; m > 1 && h % 2 == 0; h /= 2) m /= 2; /* channels per aligned row */
    if (m * hw <= BN_BLOCK) {
        even = (even + m - 1) / m * m;
        cb = cb / m * m;
    }
    return even < cb ? even : cb;
}

/* The channels' factors come from the row's div / fwd_factors / bwd_factors (vectors of
 * channels: 1x1 planes have as many channels as elements, and the scalar divisions and square
 * roots were a third of the block). The per-channel arrays reuse per-element ones whose lives
 * do not overlap (var in mj, invstd in acc) and, for planes hw > 1 (at most BN_BLOCK / 2
 * channels), are spread over the elements in the per-channel loop: every call touches its
 * whole frame, which stays near its size before these kernels. */
static void bn_train_block(const bn_job *k, int64_t c0, int64_t cb) {
    double acc[BN_BLOCK] ET_ALIGNED(64), mean[BN_BLOCK] ET_ALIGNED(64);
    double mj[BN_BLOCK] ET_ALIGNED(64); /* per element: mean; after the M2 sums: var */
    float a[BN_BLOCK] ET_ALIGNED(64), sh[BN_BLOCK] ET_ALIGNED(64);
    float fa[BN_BLOCK / 2] ET_ALIGNED(64), fs[BN_BLOCK / 2] ET_ALIGNED(64);
    const int64_t n = k->n, hw = k->hw, len = cb * hw, is = k->c * hw;
    const double count = (double)(n * hw), mom = k->mom, unbias = k->unbias;
    const float *xb = k->x + c0 * hw;
    const et_f32_bn_variant *row = k->row;
    double *var = mj, *invstd = acc;
    for (int64_t j = 0; j < len; j++) acc[j] = 0.0;
    row->acc_sum(n, is, len, xb, acc);
    bn_block_sums(cb, hw, acc, mean);
    row->div(cb, mean, count, mean);
    for (int64_t q = 0; q < cb; q++)
        for (int64_t j = q * hw; j < (q + 1) * hw; j++) mj[j] = mean[q];
    for (int64_t j = 0; j < len; j++) acc[j] = 0.0;
    row->acc_sqdev(n, is, len, xb, mj, acc);
    bn_block_sums(cb, hw, acc, var);
    row->div(cb, var, count, var);
    row->fwd_factors(cb, mean, var, (double)k->eps, k->gamma ? k->gamma + c0 : NULL,
                     k->beta ? k->beta + c0 : NULL, invstd, hw == 1 ? a : fa, hw == 1 ? sh : fs);
    for (int64_t q = 0; q < cb; q++) {
        const int64_t ch = c0 + q;
        if (hw != 1) /* spread over the channel's elements */
            for (int64_t j = q * hw; j < (q + 1) * hw; j++) {
                a[j] = fa[q];
                sh[j] = fs[q];
            }
        if (k->save_mean) k->save_mean[ch] = (float)mean[q];
        if (k->save_invstd) k->save_invstd[ch] = (float)invstd[q];
        if (k->running_mean) {
            float *rm = k->running_mean, *rv = k->running_var;
            rm[ch] = (float)((1.0 - mom) * (double)rm[ch] + mom * mean[q]);
            rv[ch] = (float)((1.0 - mom) * (double)rv[ch] + mom * var[q] * unbias);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        if (k->act != ET_ACT_NONE)
            row->affine_v_act(len, xb + i * is, a, sh, k->act, k->y + c0 * hw + i * is);
        else
            row->affine_v(len, xb + i * is, a, sh, k->y + c0 * hw + i * is);
    }
}

static void bn_bwd_block(const bn_job *k, int64_t c0, int64_t cb) {
    double as[BN_BLOCK] ET_ALIGNED(64), ad[BN_BLOCK] ET_ALIGNED(64);
    double sums[BN_BLOCK] ET_ALIGNED(64), dots[BN_BLOCK] ET_ALIGNED(64);
    float mf[BN_BLOCK] ET_ALIGNED(64), gm[BN_BLOCK] ET_ALIGNED(64);
    float pr[BN_BLOCK] ET_ALIGNED(64), gs[BN_BLOCK] ET_ALIGNED(64);
    float fg[BN_BLOCK / 2] ET_ALIGNED(64), fp[BN_BLOCK / 2] ET_ALIGNED(64);
    float fs[BN_BLOCK / 2] ET_ALIGNED(64);
    const int64_t n = k->n, hw = k->hw, len = cb * hw, is = k->c * hw, o = c0 * hw;
    const double count = (double)(n * hw);
    const float *x = k->x + o, *dy = k->dy + o, *t = k->t ? k->t + o : NULL;
    const et_f32_bn_variant *row = k->row;
    for (int64_t q = 0; q < cb; q++)
        for (int64_t j = q * hw; j < (q + 1) * hw; j++) mf[j] = k->save_mean_in[c0 + q];
    for (int64_t j = 0; j < len; j++) as[j] = ad[j] = 0.0;
    if (t)
        row->acc_bwd_mr(n, is, len, x, dy, t, k->act, mf, as, ad);
    else
        row->acc_bwd(n, is, len, x, dy, mf, as, ad);
    bn_block_sums(cb, hw, as, sums);
    bn_block_sums(cb, hw, ad, dots);
    row->bwd_factors(cb, sums, dots, count, k->save_invstd_in + c0, k->gamma ? k->gamma + c0 : NULL,
                     k->frozen, k->dgamma ? k->dgamma + c0 : NULL,
                     k->dbeta ? k->dbeta + c0 : NULL, hw == 1 ? gm : fg, hw == 1 ? pr : fp,
                     hw == 1 ? gs : fs);
    if (hw != 1) /* spread over each channel's elements */
        for (int64_t q = 0; q < cb; q++)
            for (int64_t j = q * hw; j < (q + 1) * hw; j++) {
                gm[j] = fg[q];
                pr[j] = fp[q];
                gs[j] = fs[q];
            }
    for (int64_t i = 0; i < n; i++) {
        const float *ET_RESTRICT gp = dy + i * is;
        float *ET_RESTRICT dp = k->y + o + i * is;
        if (k->frozen)
            for (int64_t j = 0; j < len; j++) dp[j] = gp[j] * gs[j];
        else if (t)
            row->dx_v_m(len, x + i * is, gp, t + i * is, k->act, gm, mf, pr, gs, dp);
        else
            row->dx_v(len, x + i * is, gp, gm, mf, pr, gs, dp);
    }
}

static void bn_train_blocks(void *ctx, int64_t b0, int64_t b1, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    (void)tid;
    for (int64_t bi = b0; bi < b1; bi++) {
        const int64_t c0 = bi * k->cb;
        bn_train_block(k, c0, k->c - c0 < k->cb ? k->c - c0 : k->cb);
    }
}

static void bn_bwd_blocks(void *ctx, int64_t b0, int64_t b1, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    (void)tid;
    for (int64_t bi = b0; bi < b1; bi++) {
        const int64_t c0 = bi * k->cb;
        bn_bwd_block(k, c0, k->c - c0 < k->cb ? k->c - c0 : k->cb);
    }
}

/* Runs a pass in fused blocks when the shape has one group and planes <= BN_BLOCK; returns 0
 * (nothing done) otherwise. */
static int run_bn_blocks(bn_job *k, et_range_body blocks, int nthreads) {
    if (et_f32_bn_groups(k->n, k->hw) != 1 || k->hw > BN_BLOCK) return 0;
    k->row = (const et_f32_bn_variant *)ET_VARIANT_PICK(et_f32_bn_variants);
    k->cb = bn_blocks_of(k->c, k->hw);
    const int64_t count = (k->c + k->cb - 1) / k->cb;
    const int nth = k->n * k->c * k->hw < BN_BLOCK_SERIAL ? 1 : nthreads;
    et_parallel_ranges(count, et_split_chunks(count, nth), nth, blocks, k);
    return 1;
}

/* The element count n_g of group g (images et_thread_range(n, g, groups) times hw): the chunk
 * centres its squared deviations on S_g / n_g, the combine uses the same value (one group:
 * S / count, the mean, so M2 is the two-pass sum of squared deviations). */
static double bn_group_count(const bn_job *k, int64_t g) {
    int64_t i0, i1;
    et_thread_range(k->n, (int)g, (int)k->groups, &i0, &i1);
    return (double)((i1 - i0) * k->hw);
}

/* ---- training forward ---------------------------------------------------------------------- */
static void bn_fwd_stats(void *ctx, int64_t chunk, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    int64_t i0, i1, c0, c1;
    const int64_t g = bn_rect(k, chunk, &i0, &i1, &c0, &c1);
    const int64_t m = i1 - i0, hw = k->hw, is = k->c * hw;
    const double ng = bn_group_count(k, g);
    const float *x = k->x + i0 * is;
    bn_slot *p = k->part + g * (k->s1 - k->s0) - k->s0;
    (void)tid;
    if (hw > BN_BLOCK) {
        for (int64_t ch = c0; ch < c1; ch++) {
            double s = 0.0, q = 0.0;
            for (int64_t i = 0; i < m; i++) s += k->row->plane_sum(hw, x + i * is + ch * hw);
            const double mg = s / ng;
            for (int64_t i = 0; i < m; i++)
                q += k->row->plane_dev(hw, x + i * is + ch * hw, NULL, mg);
            p[ch].d[0] = s;
            p[ch].d[1] = q;
        }
        return;
    }
    double acc[BN_BLOCK] ET_ALIGNED(64), mj[BN_BLOCK] ET_ALIGNED(64), sums[BN_BLOCK] ET_ALIGNED(64);
    const int64_t cb = BN_BLOCK / hw;
    for (int64_t b0 = c0; b0 < c1; b0 += cb) {
        const int64_t nb = c1 - b0 < cb ? c1 - b0 : cb, len = nb * hw;
        const float *xb = x + b0 * hw;
        for (int64_t j = 0; j < len; j++) acc[j] = 0.0;
        k->row->acc_sum(m, is, len, xb, acc);
        bn_block_sums(nb, hw, acc, sums);
        for (int64_t q = 0; q < nb; q++) {
            const double mg = sums[q] / ng;
            p[b0 + q].d[0] = sums[q];
            for (int64_t j = q * hw; j < (q + 1) * hw; j++) mj[j] = mg;
        }
        for (int64_t j = 0; j < len; j++) acc[j] = 0.0;
        k->row->acc_sqdev(m, is, len, xb, mj, acc);
        bn_block_sums(nb, hw, acc, sums);
        for (int64_t q = 0; q < nb; q++) p[b0 + q].d[1] = sums[q];
    }
}

/* The slab's statistics, outputs and factors (alpha, shift) from the groups' partials. */
static void bn_fwd_combine(const bn_job *k, int64_t c0, int64_t c1) {
    const int64_t w = k->s1 - k->s0, groups = k->groups;
    const double count = (double)(k->n * k->hw), eps = (double)k->eps, mom = k->mom;
    const double unbias = k->unbias;
    const float *gamma = k->gamma, *beta = k->beta;
    float *save_mean = k->save_mean, *save_invstd = k->save_invstd;
    float *running_mean = k->running_mean, *running_var = k->running_var;
    double cnt[BN_GROUPS];
    for (int64_t g = 0; g < groups; g++) cnt[g] = bn_group_count(k, g);
    bn_slot *p = k->part - k->s0; /* p[g * w + ch]: slot (g, ch) */
    for (int64_t ch = c0; ch < c1; ch++) {
        double s = 0.0, m2 = 0.0, mean;
        if (groups == 1) { /* the loops' values: S / n_0 - mean = 0, and M2 >= +0 */
            s = p[ch].d[0];
            mean = s / count;
            m2 = p[ch].d[1];
        } else {
            for (int64_t g = 0; g < groups; g++) s += p[g * w + ch].d[0];
            mean = s / count;
            for (int64_t g = 0; g < groups; g++) {
                const double d = p[g * w + ch].d[0] / cnt[g] - mean;
                m2 += p[g * w + ch].d[1] + cnt[g] * d * d;
            }
        }
        const double var = m2 / count;
        const double invstd = 1.0 / sqrt(var + eps);
        const double gm = gamma ? (double)gamma[ch] : 1.0, b = beta ? (double)beta[ch] : 0.0;
        const double alpha = invstd * gm;
        p[ch].f[0] = (float)alpha;
        p[ch].f[1] = (float)(b - mean * alpha);
        if (save_mean) save_mean[ch] = (float)mean;
        if (save_invstd) save_invstd[ch] = (float)invstd;
        if (running_mean) {
            running_mean[ch] = (float)((1.0 - mom) * (double)running_mean[ch] + mom * mean);
            running_var[ch] = (float)((1.0 - mom) * (double)running_var[ch] + mom * var * unbias);
        }
    }
}

/* images [i0, i1) x channels [c0, c1) of the slab */
static void bn_fwd_apply_rect(const bn_job *k, int64_t i0, int64_t i1, int64_t c0, int64_t c1) {
    const int64_t hw = k->hw, is = k->c * hw;
    const bn_slot *p = k->part - k->s0; /* p[ch]: the factors */
    if (hw > BN_BLOCK) {
        for (int64_t i = i0; i < i1; i++)
            for (int64_t ch = c0; ch < c1; ch++) {
                const int64_t off = i * is + ch * hw;
                if (k->act != ET_ACT_NONE)
                    k->row->affine_act(hw, k->x + off, p[ch].f[0], p[ch].f[1], k->act, k->y + off);
                else
                    k->row->affine(hw, k->x + off, p[ch].f[0], p[ch].f[1], k->y + off);
            }
        return;
    }
    float a[BN_BLOCK] ET_ALIGNED(64), sh[BN_BLOCK] ET_ALIGNED(64);
    const int64_t cb = BN_BLOCK / hw;
    for (int64_t b0 = c0; b0 < c1; b0 += cb) {
        const int64_t nb = c1 - b0 < cb ? c1 - b0 : cb, len = nb * hw;
        for (int64_t q = 0; q < nb; q++)
            for (int64_t j = q * hw; j < (q + 1) * hw; j++) {
                a[j] = p[b0 + q].f[0];
                sh[j] = p[b0 + q].f[1];
            }
        for (int64_t i = i0; i < i1; i++) {
            const int64_t off = i * is + b0 * hw;
            if (k->act != ET_ACT_NONE)
                k->row->affine_v_act(len, k->x + off, a, sh, k->act, k->y + off);
            else
                k->row->affine_v(len, k->x + off, a, sh, k->y + off);
        }
    }
}

static void bn_fwd_apply(void *ctx, int64_t chunk, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    int64_t i0, i1, c0, c1;
    bn_rect(k, chunk, &i0, &i1, &c0, &c1);
    (void)tid;
    bn_fwd_apply_rect(k, i0, i1, c0, c1);
}

static int bn_act_ok(et_act act) {
    return act == ET_ACT_NONE || act == ET_ACT_RELU || act == ET_ACT_RELU6;
}

et_status et_f32_batchnorm_train_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                     const float *gamma, const float *beta,
                                     float *running_mean, float *running_var, float momentum,
                                     float eps, float *y, float *save_mean, float *save_invstd,
                                     int nthreads) {
    return et_f32_batchnorm_train_act_fwd(n, c, hw, x, gamma, beta, running_mean, running_var,
                                          momentum, eps, ET_ACT_NONE, y, save_mean, save_invstd,
                                          nthreads);
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
    bn_job k = {0};
    k.n = n, k.c = c, k.hw = hw, k.x = x, k.gamma = gamma, k.beta = beta;
    k.running_mean = running_mean, k.running_var = running_var, k.mom = (double)momentum;
    k.unbias = (double)count / (double)(count - 1);
    k.eps = eps, k.act = act, k.y = y, k.save_mean = save_mean, k.save_invstd = save_invstd;
    k.stats = bn_fwd_stats, k.combine = bn_fwd_combine, k.apply = bn_fwd_apply;
    k.apply_rect = bn_fwd_apply_rect;
    if (run_bn_blocks(&k, bn_train_blocks, nthreads)) return ET_OK;
    const bn_grid gr = bn_grid_of(n, c, hw, 2, nthreads);
    bn_slot part[BN_SLOTS];
    run_bn(&k, c, &gr, part);
    return ET_OK;
}

/* ---- eval forward and the frozen-statistics forward (elementwise: any split, same bits) ---- */
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


/* ---- training backward ----------------------------------------------------------------------
 * t != NULL: dy masked by act from t (the act's output); frozen: dx = dy * gscale. */
static void bn_bwd_stats(void *ctx, int64_t chunk, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    int64_t i0, i1, c0, c1;
    const int64_t g = bn_rect(k, chunk, &i0, &i1, &c0, &c1);
    const int64_t m = i1 - i0, hw = k->hw, is = k->c * hw;
    const float *x = k->x + i0 * is, *dy = k->dy + i0 * is, *t = k->t ? k->t + i0 * is : NULL;
    const float *save_mean = k->save_mean_in;
    bn_slot *p = k->part + g * (k->s1 - k->s0) - k->s0;
    (void)tid;
    if (hw > BN_BLOCK) {
        for (int64_t ch = c0; ch < c1; ch++) {
            double sum = 0.0, dot = 0.0; /* two sums over the planes, each in image order */
            for (int64_t i = 0; i < m; i++) {
                const int64_t off = i * is + ch * hw;
                double ps, pd;
                if (t)
                    k->row->plane_bwd_m(hw, x + off, dy + off, t + off, k->act, save_mean[ch],
                                        &ps, &pd);
                else
                    k->row->plane_bwd(hw, x + off, dy + off, save_mean[ch], &ps, &pd);
                sum += ps;
                dot += pd;
            }
            p[ch].d[0] = sum;
            p[ch].d[1] = dot;
        }
        return;
    }
    double as[BN_BLOCK] ET_ALIGNED(64), ad[BN_BLOCK] ET_ALIGNED(64), sums[BN_BLOCK] ET_ALIGNED(64);
    float mf[BN_BLOCK] ET_ALIGNED(64);
    const int64_t cb = BN_BLOCK / hw;
    for (int64_t b0 = c0; b0 < c1; b0 += cb) {
        const int64_t nb = c1 - b0 < cb ? c1 - b0 : cb, len = nb * hw, o = b0 * hw;
        for (int64_t q = 0; q < nb; q++)
            for (int64_t j = q * hw; j < (q + 1) * hw; j++) mf[j] = save_mean[b0 + q];
        for (int64_t j = 0; j < len; j++) as[j] = ad[j] = 0.0;
        if (t)
            k->row->acc_bwd_m(m, is, len, x + o, dy + o, t + o, k->act, mf, as, ad);
        else
            k->row->acc_bwd(m, is, len, x + o, dy + o, mf, as, ad);
        bn_block_sums(nb, hw, as, sums);
        for (int64_t q = 0; q < nb; q++) p[b0 + q].d[0] = sums[q];
        bn_block_sums(nb, hw, ad, sums);
        for (int64_t q = 0; q < nb; q++) p[b0 + q].d[1] = sums[q];
    }
}

/* dgamma, dbeta of the slab from the groups' partials, and the dx factors:
 * dx = (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean))) * invstd * gamma
 *    = (dy - grad_mean - (x - mean) * proj) * gscale (frozen: dy * gscale). */
static void bn_bwd_combine(const bn_job *k, int64_t c0, int64_t c1) {
    const int64_t w = k->s1 - k->s0, count = k->n * k->hw;
    for (int64_t ch = c0; ch < c1; ch++) {
        bn_slot *p = k->part + (ch - k->s0);
        double sum = 0.0, dot = 0.0;
        for (int64_t g = 0; g < k->groups; g++) {
            sum += p[g * w].d[0];
            dot += p[g * w].d[1];
        }
        const double invstd = (double)k->save_invstd_in[ch];
        if (k->dgamma) k->dgamma[ch] = (float)(dot * invstd);
        if (k->dbeta) k->dbeta[ch] = (float)sum;
        const double g = k->gamma ? (double)k->gamma[ch] : 1.0;
        p->f[0] = k->frozen ? 0.0f : (float)(sum / (double)count);
        p->f[1] = k->frozen ? 0.0f : (float)(dot * invstd * invstd / (double)count);
        p->f[2] = (float)(invstd * g);
    }
}

/* images [i0, i1) x channels [c0, c1) of the slab */
static void bn_bwd_apply_rect(const bn_job *k, int64_t i0, int64_t i1, int64_t c0, int64_t c1) {
    const int64_t hw = k->hw, is = k->c * hw;
    const float *save_mean = k->save_mean_in;
    const bn_slot *p = k->part - k->s0; /* p[ch]: the factors */
    if (hw > BN_BLOCK) {
        for (int64_t i = i0; i < i1; i++)
            for (int64_t ch = c0; ch < c1; ch++) {
                const int64_t off = i * is + ch * hw;
                const float *ET_RESTRICT gp = k->dy + off;
                float *ET_RESTRICT dp = k->y + off;
                const float gm = p[ch].f[0], pr = p[ch].f[1], gs = p[ch].f[2];
                if (k->frozen)
                    for (int64_t j = 0; j < hw; j++) dp[j] = gp[j] * gs;
                else if (k->t)
                    k->row->dx_m(hw, k->x + off, gp, k->t + off, k->act, gm, save_mean[ch], pr,
                                 gs, dp);
                else
                    k->row->dx(hw, k->x + off, gp, gm, save_mean[ch], pr, gs, dp);
            }
        return;
    }
    float mf[BN_BLOCK] ET_ALIGNED(64), gm[BN_BLOCK] ET_ALIGNED(64);
    float pr[BN_BLOCK] ET_ALIGNED(64), gs[BN_BLOCK] ET_ALIGNED(64);
    const int64_t cb = BN_BLOCK / hw;
    for (int64_t b0 = c0; b0 < c1; b0 += cb) {
        const int64_t nb = c1 - b0 < cb ? c1 - b0 : cb, len = nb * hw;
        for (int64_t q = 0; q < nb; q++)
            for (int64_t j = q * hw; j < (q + 1) * hw; j++) {
                mf[j] = save_mean[b0 + q];
                gm[j] = p[b0 + q].f[0];
                pr[j] = p[b0 + q].f[1];
                gs[j] = p[b0 + q].f[2];
            }
        for (int64_t i = i0; i < i1; i++) {
            const int64_t off = i * is + b0 * hw;
            const float *ET_RESTRICT gp = k->dy + off;
            float *ET_RESTRICT dp = k->y + off;
            if (k->frozen)
                for (int64_t j = 0; j < len; j++) dp[j] = gp[j] * gs[j];
            else if (k->t)
                k->row->dx_v_m(len, k->x + off, gp, k->t + off, k->act, gm, mf, pr, gs, dp);
            else
                k->row->dx_v(len, k->x + off, gp, gm, mf, pr, gs, dp);
        }
    }
}

static void bn_bwd_apply(void *ctx, int64_t chunk, int tid) {
    const bn_job *k = (const bn_job *)ctx;
    int64_t i0, i1, c0, c1;
    bn_rect(k, chunk, &i0, &i1, &c0, &c1);
    (void)tid;
    bn_bwd_apply_rect(k, i0, i1, c0, c1);
}

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
    if (count == 0) { /* empty sums */
        for (int64_t ch = 0; ch < c; ch++) {
            if (dgamma) dgamma[ch] = (float)(0.0 * (double)save_invstd[ch]);
            if (dbeta) dbeta[ch] = 0.0f;
        }
        return ET_OK;
    }
    if (!x || !dy || !dx) return ET_ERR_ARG;
    bn_job k = {0};
    k.n = n, k.c = c, k.hw = hw, k.x = x, k.dy = dy, k.gamma = gamma, k.save_mean_in = save_mean;
    k.t = act != ET_ACT_NONE ? t : NULL, k.act = act;
    k.save_invstd_in = save_invstd, k.y = dx, k.dgamma = dgamma, k.dbeta = dbeta, k.frozen = frozen;
    k.stats = bn_bwd_stats, k.combine = bn_bwd_combine, k.apply = bn_bwd_apply;
    k.apply_rect = bn_bwd_apply_rect;
    if (run_bn_blocks(&k, bn_bwd_blocks, nthreads)) return ET_OK;
    const bn_grid gr = bn_grid_of(n, c, hw, k.t ? 4 : 3, nthreads);
    bn_slot part[BN_SLOTS];
    run_bn(&k, c, &gr, part);
    return ET_OK;
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
