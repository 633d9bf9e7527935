/* edgetrain — 2-D convolution, fp32 NCHW: im2col + et_f32_gemm, and the naive references.
 *
 * Per image and group g (Cg = c/groups, OCg = oc/groups, Kg = Cg*kh*kw, P = oh*ow):
 *   fwd        y_g[OCg, P]  = w_g[OCg, Kg] * col_g[Kg, P]
 *   bwd_input  dcol_g[Kg,P] = w_g^T * dy_g[OCg, P], then col2im (scatter-add) into dx
 *   bwd_weight dw_g[OCg,Kg] += dy_g[OCg, P] * col_g^T
 * col holds all groups: row (ci*kh + ky)*kw + kx, the weight layout, so group g is rows
 * [g*Kg, (g+1)*Kg). fwd and bwd_input pack w_g (the GEMM's A) once per call, not per image
 * (et_f32_gemm_pa). bwd_weight with Kg >= CONV_COLT_MIN_K builds the transposed columns
 * colt[P, Kg] instead, which the GEMM reads in place (dw_g += dy_g * colt_g; the same FMA
 * order, so the same bits); below CONV_COLT_PAD (groups 1) the transposed columns are padded to
 * whole GEMM panels and dw goes through a padded copy in the slot. The output is processed in
 * bands of whole output rows so the column buffer stays near L2 size (CONV_COL_TILE_FLOATS).
 * 1x1 / stride 1 / no pad convs use x (dx) directly as the column matrix.
 * Stride 1 / no pad / no dilation, the image in one band, one GEMM thread: fwd builds kw
 * shifted copies of the image instead of im2col and the GEMM reads B's rows through a table
 * (implicit_columns, et_f32_gemm_pa_offb; bias + activation per tile), bwd_input runs col2im
 * per band of GEMM rows (col2im_band, et_f32_gemm_pa_bands; planes of rows up to 16 floats:
 * per input channel, its dx rows in AVX-512 vectors, col2im_band_avx512). Same FMA chains and
 * additions in the same order, so the same bits (kernels/tests/test_conv.c check_fwd_bits,
 * tests/test_conv_fast.c check_bwd_input). With Kg <= DIRECT_MAX_K (a first layer) fwd runs
 * those chains in registers with the bias + relu / relu6 before the one store instead, over
 * the shifted copies or each band's im2col columns (direct_fwd, on AVX-512;
 * tests/test_conv_fast.c check_fwd_direct).
 * Threads: with n >= nthreads each thread takes whole images with its own column buffer and
 * gemm workspace slot (gemm runs single threaded); otherwise images run one after the other
 * and gemm gets the threads. bwd_weight keeps one partial dw per thread (thread 0 writes dw
 * itself) and sums them in thread order, so it is deterministic for a thread count.
 * Pointwise NCHW path (pw_plan): fwd and bwd_input of 1x1 / stride 1 / no pad / groups 1
 * convs, whenever the paths below would run the packed GEMM (not its unpacked small-problem
 * path), run one et_f32_gemm_nchw over the whole batch: B panels packed straight from the
 * images (or read in place), C tiles stored straight into y (dx), bias + activation applied
 * per tile while it is in L1; no gather / scatter passes and the same bits. Weights packing
 * to more than PW_A_MIN_BYTES are packed by the GEMM's row tasks, about 64 KiB at a
 * time (et_f32_gemm_nchw_a), unless an eval program packed them before the call.
 * Batched pointwise path: 1x1 / stride 1 / no pad / groups 1 convs with a small plane
 * (np < CONV_BATCH_MAX_NP, n > 1, gathered matrices within CONV_BATCH_MAX_BYTES) gather the
 * whole batch into [C, n*np] / [OC, n*np] workspace matrices and run one GEMM with all threads
 * (today bwd_weight, and fwd / bwd_input shapes of the small-problem GEMM path):
 *   fwd        Y'[OC, n*np]  = w[OC, C] * X'[C, n*np], scattered to y with bias + activation
 *   bwd_input  dX'[C, n*np]  = w^T * dY'[OC, n*np], scattered to dx
 *   bwd_weight dw[OC, C]     = dY'[OC, n*np] * X'^T (K = n*np: one FMA chain per element, so
 *              it does not depend on the thread count); when that GEMM packs, its panels are
 *              packed straight from dy and x instead (et_f32_gemm_nchw_wgrad, no gather)
 * Channels-last weight gradient (plan hwc: no padding, dil_w 1, groups 1, one band, one K
 * block, one GEMM thread, a config with a table ukernel): B panels read straight from the image
 * stored channels-last, dw's columns permuted while summed and put back at the end (see
 * hwc_offb_image); the same FMA chains and sums, so the same bits (tests/test_conv_fast.c).
 * First-layer weight gradient (padded-colt shapes, no padding, one band and one K block, on
 * the AVX-512 config): colt built FL_BLOCK pixels at a time into L1 with constant-mask loads
 * and dw's rows run over each block in passes (fl_image); the same FMA chains and sums, so the
 * same bits (tests/test_conv_fast.c).
 * Depthwise shapes (groups == c) go to the direct kernels in conv2d_depthwise.c.
 */
#include <string.h>

#include "conv_internal.h"
#include "gemm_internal.h" /* et_f32_gemm_is_small: the padded-colt path keeps the packed GEMM */
#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>
#endif

#define CONV_COL_TILE_FLOATS ((int64_t)128 * 1024) /* 512 KiB column band per thread */
#define CONV_ALIGN 64
/* Batched pointwise path: planes smaller than this, gathered matrices up to this size. */
#define CONV_BATCH_MAX_NP 256
#define CONV_BATCH_MAX_BYTES ((size_t)16 << 20)
/* Pointwise path: weights packing to more than this are packed per row task (pw_plan). */
#define PW_A_MIN_BYTES ((size_t)512 << 10)
/* bwd_weight builds transposed columns from this Kg on (see conv_plan_make). */
#define CONV_COLT_MIN_K 64
/* bwd_weight with Kg below this (groups 1; a first layer: c * kh * kw of a few dozen) builds
 * transposed columns with rows padded to CONV_COLT_PAD floats and lets the GEMM write a padded
 * dw [OC, CONV_COLT_PAD] in the slot (copied out per chunk): B is then whole NR-wide panels read
 * in place instead of columns packed transposed. Each dw element is the same FMA chain. */
#define CONV_COLT_PAD 32
/* bwd_weight sums the images of each of at most CONV_WCHUNKS (conv_internal.h) fixed chunks
 * into its own partial dw (combined in chunk order), when one partial is at most
 * CONV_WPART_MAX_BYTES; larger dw sum the images one after the other with the GEMM threaded.
 * Both depend on the shapes only, so dw is bit-identical for every thread count. */
#define CONV_WPART_MAX_BYTES ((size_t)1 << 20)

static int64_t round_up_i64(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static size_t align_up(size_t v) { return (v + CONV_ALIGN - 1) & ~(size_t)(CONV_ALIGN - 1); }

/* Tests: 0 runs the older paths the faster ones give the same bits as (conv_internal.h). */
static int conv_fast = 1;
void et_conv2d_fast_paths_(int on) { conv_fast = on; }

et_status et_conv2d_params_init(et_conv2d_params *p) {
    if (!p) return ET_ERR_ARG;
    if (p->n <= 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->kh <= 0 || p->kw <= 0)
        return ET_ERR_ARG;
    if (p->groups <= 0 || p->c % p->groups != 0 || p->oc % p->groups != 0) return ET_ERR_ARG;
    if (p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1) return ET_ERR_ARG;
    if (p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0) return ET_ERR_ARG;
    if ((int)p->act < 0 || p->act >= ET_ACT_COUNT_) return ET_ERR_ARG;
    if ((p->bn_scale == NULL) != (p->bn_shift == NULL)) return ET_ERR_ARG;
    int64_t nh = p->h + p->pad_t + p->pad_b - p->dil_h * (p->kh - 1) - 1;
    int64_t nw = p->w + p->pad_l + p->pad_r - p->dil_w * (p->kw - 1) - 1;
    if (nh < 0 || nw < 0) return ET_ERR_ARG; /* output would be empty */
    p->oh = nh / p->stride_h + 1;
    p->ow = nw / p->stride_w + 1;
    return ET_OK;
}

/* A kernel's params must be valid and carry the oh/ow that init computes. */
static int params_ok(const et_conv2d_params *p) {
    if (!p) return 0;
    et_conv2d_params q = *p;
    return et_conv2d_params_init(&q) == ET_OK && q.oh == p->oh && q.ow == p->ow;
}

int et_conv2d_is_depthwise(const et_conv2d_params *p) {
    return p->groups == p->c && (p->c > 1 || p->oc == 1);
}

/* ---- im2col / col2im for output rows [oy0, oy1) -------------------------------------- */
/* Valid output columns [lo, hi) for an input offset ix = ox*sw + off inside [0, w). */
static void valid_cols(int64_t off, int64_t sw, int64_t w, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t h = (w - 1 - off) < 0 ? 0 : (w - 1 - off) / sw + 1;
    if (l > ow) l = ow;
    if (h > ow) h = ow;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* rows short rows of n floats: d[r*dstep ..] = s[r*sstep ..]. The per-row cost dominates
 * for short rows (im2col of small planes copies thousands of them per image), so the common
 * widths get straight-line fixed-size moves instead of et_copy_short_'s length tests. */
static inline void copy_rows(float *ET_RESTRICT d, int64_t dstep, const float *ET_RESTRICT s,
                             int64_t sstep, int64_t rows, int64_t n) {
    if (n == 8) {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep) memcpy(d, s, 8 * sizeof(float));
    } else if (n % 8 == 0) {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep)
            for (int64_t i = 0; i < n; i += 8) memcpy(d + i, s + i, 8 * sizeof(float));
    } else if (n == 5) {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep) {
            memcpy(d, s, 4 * sizeof(float));
            d[4] = s[4];
        }
    } else if (n == 3) {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep) {
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    } else {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep) et_copy_short_(d, s, n);
    }
}

/* d[r*dstep + i] += s[r*sstep + i] for i < n, r < rows (col2im's short rows, as copy_rows). */
static inline void add_rows(float *ET_RESTRICT d, int64_t dstep, const float *ET_RESTRICT s,
                            int64_t sstep, int64_t rows, int64_t n) {
    if (n == 8) {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep)
            for (int j = 0; j < 8; j++) d[j] += s[j];
    } else if (n % 8 == 0) {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep)
            for (int64_t i = 0; i < n; i += 8)
                for (int j = 0; j < 8; j++) d[i + j] += s[i + j];
    } else {
        for (int64_t r = 0; r < rows; r++, d += dstep, s += sstep) {
            int64_t i = 0;
            for (; i + 8 <= n; i += 8)
                for (int j = 0; j < 8; j++) d[i + j] += s[i + j];
            for (; i < n; i++) d[i] += s[i];
        }
    }
}

/* 1 if no window of p reaches into padding and the width stride is 1: im2col and col2im are
 * then plain row copies / adds. */
static int conv_inside(const et_conv2d_params *p) {
    return p->stride_w == 1 && p->pad_t == 0 && p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0;
}

/* im2col of a window that never leaves the input (no padding in effect: every output pixel
 * reads valid input), stride 1 along the width: plain row copies. */
static void im2col_inside(const et_conv2d_params *p, const float *ET_RESTRICT x, int64_t oy0,
                          int64_t oy1, float *ET_RESTRICT col) {
    const int64_t h = p->h, w = p->w, ow = p->ow, rows = oy1 - oy0;
    const int64_t step = p->stride_h * w;
    for (int64_t ci = 0; ci < p->c; ci++) {
        for (int64_t ky = 0; ky < p->kh; ky++) {
            const float *src0 = x + (ci * h + oy0 * p->stride_h + ky * p->dil_h) * w;
            for (int64_t kx = 0; kx < p->kw; kx++) {
                const float *src = src0 + kx * p->dil_w;
                copy_rows(col, ow, src, step, rows, ow);
                col += rows * ow;
            }
        }
    }
}

/* dst[i] = src[2 * i] for i < n: im2col's stride-2 rows (a first layer's stem: the copy took
 * 40% of MobileNetV2's stem conv as a scalar loop). A plain copy, so ISA-specific variants
 * change no bits. */
typedef void gather2_fn(float *ET_RESTRICT dst, const float *ET_RESTRICT src, int64_t n);

static void gather2_ref(float *ET_RESTRICT dst, const float *ET_RESTRICT src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[2 * i];
}

#if defined(ET_HAVE_X86_SIMD)
/* The even lanes of two vectors per 16 floats; masked loads read no float past src[2n - 2]. */
ET_TARGET_AVX512 static void gather2_avx512(float *ET_RESTRICT dst, const float *ET_RESTRICT src,
                                            int64_t n) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t m = n - i < 16 ? n - i : 16, need = 2 * m - 1;
        const __mmask16 m0 = need >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << need) - 1u);
        const __mmask16 m1 = need > 16 ? (__mmask16)((1u << (need - 16)) - 1u) : (__mmask16)0;
        const __m512 a = _mm512_maskz_loadu_ps(m0, src + 2 * i);
        const __m512 b = _mm512_maskz_loadu_ps(m1, src + 2 * i + 16);
        _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << m) - 1u),
                              _mm512_permutex2var_ps(a, even, b));
    }
}
#endif

typedef struct gather2_variant {
    et_variant_head head;
    gather2_fn *fn;
} gather2_variant;
static const gather2_variant gather2_variants[] = {
    {{ET_ISA_REF, "ref"}, gather2_ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512, "avx512"}, gather2_avx512},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};

static void im2col(const et_conv2d_params *p, const float *ET_RESTRICT x, int64_t oy0, int64_t oy1,
                   float *ET_RESTRICT col) {
    const int64_t h = p->h, w = p->w, ow = p->ow, sw = p->stride_w;
    if (conv_inside(p)) {
        im2col_inside(p, x, oy0, oy1, col);
        return;
    }
    gather2_fn *g2 =
        sw == 2 ? ((const gather2_variant *)ET_VARIANT_PICK(gather2_variants))->fn : NULL;
    for (int64_t ci = 0; ci < p->c; ci++) {
        const float *xc = x + ci * h * w;
        for (int64_t ky = 0; ky < p->kh; ky++) {
            for (int64_t kx = 0; kx < p->kw; kx++) {
                int64_t off = kx * p->dil_w - p->pad_l, lo, hi;
                valid_cols(off, sw, w, ow, &lo, &hi);
                for (int64_t oy = oy0; oy < oy1; oy++, col += ow) {
                    int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                    if (iy < 0 || iy >= h) {
                        memset(col, 0, (size_t)ow * sizeof(float));
                        continue;
                    }
                    const float *src = xc + iy * w + off;
                    for (int64_t ox = 0; ox < lo; ox++) col[ox] = 0.0f;
                    if (sw == 1) {
                        et_copy_short_(col + lo, src + lo, hi - lo);
                    } else if (g2) {
                        g2(col + lo, src + 2 * lo, hi - lo);
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) col[ox] = src[ox * sw];
                    }
                    for (int64_t ox = hi; ox < ow; ox++) col[ox] = 0.0f;
                }
            }
        }
    }
}

/* dx += col2im(col) for output rows [oy0, oy1). */
static void col2im_add(const et_conv2d_params *p, const float *ET_RESTRICT col, int64_t oy0,
                       int64_t oy1, float *ET_RESTRICT dx) {
    const int64_t h = p->h, w = p->w, ow = p->ow, sw = p->stride_w;
    if (conv_inside(p)) {
        const int64_t rows = oy1 - oy0, step = p->stride_h * w;
        for (int64_t ci = 0; ci < p->c; ci++)
            for (int64_t ky = 0; ky < p->kh; ky++) {
                float *dst0 = dx + (ci * h + oy0 * p->stride_h + ky * p->dil_h) * w;
                for (int64_t kx = 0; kx < p->kw; kx++, col += rows * ow)
                    add_rows(dst0 + kx * p->dil_w, step, col, ow, rows, ow);
            }
        return;
    }
    for (int64_t ci = 0; ci < p->c; ci++) {
        float *dc = dx + ci * h * w;
        for (int64_t ky = 0; ky < p->kh; ky++) {
            for (int64_t kx = 0; kx < p->kw; kx++) {
                int64_t off = kx * p->dil_w - p->pad_l, lo, hi;
                valid_cols(off, sw, w, ow, &lo, &hi);
                for (int64_t oy = oy0; oy < oy1; oy++, col += ow) {
                    int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                    if (iy < 0 || iy >= h) continue;
                    float *dst = dc + iy * w + off;
                    if (sw == 1) {
                        int64_t ox = lo;
                        for (; ox + 8 <= hi; ox += 8)
                            for (int j = 0; j < 8; j++) dst[ox + j] += col[ox + j];
                        for (; ox < hi; ox++) dst[ox] += col[ox];
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox * sw] += col[ox];
                    }
                }
            }
        }
    }
}

/* Most window rows per output pixel (c * kh) im2col_t_inside takes (offset table size). */
#define CONV_COLT_ROWS_MAX 1024

/* im2col_t for windows that never leave x (conv_inside) with dil_w 1: each output pixel's colt
 * row is c*kh window rows of kw floats laid end to end, so it is written front to back from an
 * offset table (few long loops instead of one short loop per (row, channel, ky)). */
static void im2col_t_inside(const et_conv2d_params *p, const float *ET_RESTRICT x, int64_t oy0,
                            int64_t oy1, float *ET_RESTRICT colt, int64_t kall) {
    const int64_t h = p->h, w = p->w, ow = p->ow, kw = p->kw, nt = p->c * p->kh;
    int64_t off[CONV_COLT_ROWS_MAX];
    for (int64_t ci = 0; ci < p->c; ci++)
        for (int64_t ky = 0; ky < p->kh; ky++) off[ci * p->kh + ky] = (ci * h + ky * p->dil_h) * w;
    for (int64_t oy = oy0; oy < oy1; oy++) {
        for (int64_t ox = 0; ox < ow; ox++) {
            float *d = colt + ((oy - oy0) * ow + ox) * kall;
            const float *s = x + oy * p->stride_h * w + ox;
            if (kw == 5) {
                for (int64_t t = 0; t < nt; t++, d += 5) {
                    memcpy(d, s + off[t], 4 * sizeof(float));
                    d[4] = s[off[t] + 4];
                }
            } else if (kw == 3) {
                for (int64_t t = 0; t < nt; t++, d += 3) {
                    d[0] = s[off[t]];
                    d[1] = s[off[t] + 1];
                    d[2] = s[off[t] + 2];
                }
            } else {
                for (int64_t t = 0; t < nt; t++, d += kw) et_copy_short_(d, s + off[t], kw);
            }
        }
    }
}

/* Transposed columns for output rows [oy0, oy1): colt[q * kall + ci*kh*kw + ky*kw + kx] for
 * output pixel q of the band (row stride kall >= c*kh*kw; columns past c*kh*kw untouched),
 * so the weight gradient dw = dy * colt reads colt in place as a plain (not transposed) GEMM
 * operand instead of packing a transposed one. */
static void im2col_t(const et_conv2d_params *p, const float *ET_RESTRICT x, int64_t oy0,
                     int64_t oy1, float *ET_RESTRICT colt, int64_t kall) {
    const int64_t h = p->h, w = p->w, ow = p->ow, kw = p->kw, khw = p->kh * p->kw;
    const int64_t sw = p->stride_w, dw = p->dil_w;
    /* (per output row and window row, the loops below copy ow windows: long enough when ow
     * is; otherwise one loop per output pixel over its c*kh window rows) */
    if (conv_inside(p) && dw == 1 && p->c * p->kh <= CONV_COLT_ROWS_MAX && p->c * p->kh > ow) {
        im2col_t_inside(p, x, oy0, oy1, colt, kall);
        return;
    }
    for (int64_t oy = oy0; oy < oy1; oy++) {
        float *rowq = colt + (oy - oy0) * ow * kall;
        for (int64_t ci = 0; ci < p->c; ci++) {
            for (int64_t ky = 0; ky < p->kh; ky++) {
                int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                float *d = rowq + ci * khw + ky * kw;
                if (iy < 0 || iy >= h) {
                    for (int64_t ox = 0; ox < ow; ox++, d += kall)
                        for (int64_t kx = 0; kx < kw; kx++) d[kx] = 0.0f;
                    continue;
                }
                const float *src = x + (ci * h + iy) * w;
                if (dw == 1 && p->pad_l == 0 && (ow - 1) * sw + kw <= w) {
                    copy_rows(d, kall, src, sw, ow, kw); /* every window inside the row */
                    continue;
                }
                for (int64_t ox = 0; ox < ow; ox++, d += kall) {
                    int64_t ix0 = ox * sw - p->pad_l;
                    if (dw == 1 && ix0 >= 0 && ix0 + kw <= w) {
                        et_copy_short_(d, src + ix0, kw);
                    } else {
                        for (int64_t kx = 0; kx < kw; kx++) {
                            int64_t ix = ix0 + kx * dw;
                            d[kx] = ix >= 0 && ix < w ? src[ix] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

/* ---- channels-last columns (bwd_weight, plan hwc) ------------------------------------
 * With no padding and dil_w 1, the window of output pixel q = (oy, ox) at window row ky reads
 * x[ci, oy*sh + ky*dh, ox*sw + kx] for kx < kw, ci < c: in the image stored channels-last,
 * xt[(iy*w + ix)*c + ci], that is one run of kw*c floats. With the columns of the transposed
 * columns permuted, j' = (ky*kw + kx)*c + ci instead of j = (ci*kh + ky)*kw + kx, the GEMM's
 * B panels are then read straight from xt through a row table (hwc_offb_image) instead of
 * being copied out of x in runs of kw floats. The product computes dw with its columns
 * permuted the same way -- each element the same FMA chain, summed over images and chunks in
 * the same order -- and dw_unpermute puts them back in place at the end.
 * The product's columns go in this order: first, run by run, the whole NR-wide panels
 * of each run (read in place), then the runs' leftovers (run % NR columns each, run after run)
 * in panels packed from pieces of several runs. A panel straddling two runs costs a packing
 * pass per image; with runs of 100 (LeNet conv2: 5 x 20 channels) and NR 32, plain order has
 * four such panels, this order one. Where a column lands changes no arithmetic. */
/* dw[o, (ci*kh + ky)*kw + kx] = dwp[o, the product's column of j' = (ky*kw + kx)*c + ci]
 * (dwp: oc * kg floats; nr: the GEMM config's NR). With full = run rounded down to NR, column
 * j' = ky*run + o sits at ky*full + o (o < full) or kh*full + ky*(run - full) + (o - full). */
static void dw_unpermute(const et_conv2d_params *p, const float *ET_RESTRICT dwp,
                         float *ET_RESTRICT dw, int64_t nr) {
    const int64_t c = p->c, kh = p->kh, kw = p->kw, khw = kh * kw, kg = c * khw;
    const int64_t run = kw * c, full = run / nr * nr, left = run - full;
    for (int64_t o = 0; o < p->oc; o++) {
        const float *sr = dwp + o * kg;
        float *dr = dw + o * kg;
        for (int64_t ky = 0; ky < kh; ky++)
            for (int64_t kx = 0; kx < kw; kx++) {
                /* channels [0, split) in the whole panels, the rest in the leftovers */
                const int64_t o0 = kx * c, t = ky * kw + kx;
                const int64_t split = full - o0 < 0 ? 0 : (full - o0 > c ? c : full - o0);
                const float *a = sr + ky * full + o0, *b = sr + kh * full + ky * left + o0 - full;
                for (int64_t ci = 0; ci < split; ci++) dr[ci * khw + t] = a[ci];
                for (int64_t ci = split; ci < c; ci++) dr[ci * khw + t] = b[ci];
            }
    }
}

/* ---- plan: sizes, bands, workspace layout --------------------------------------------- */
enum { CONV_FWD = 0, CONV_BWD_INPUT = 1, CONV_BWD_WEIGHT = 2 };

typedef struct conv_plan {
    int64_t cg, ocg, kg, kall, np; /* np = oh*ow */
    int64_t band;                  /* output rows per band */
    int direct;                    /* 1x1 / stride 1 / no pad: no column buffer */
    int batch_par;                 /* threads take whole images (fwd, bwd_input) */
    int wchunks;                   /* bwd_weight: image chunks with their own partial dw */
    int nslots;                    /* workspace slots (one per thread that may run at once) */
    int gemm_threads;
    int batched;                   /* batched pointwise path (see the header comment) */
    int pw;                        /* pointwise NCHW GEMM path (fwd, bwd_input) */
    int colt;                      /* bwd_weight: transposed columns, read in place */
    int implicit;                  /* fwd: shifted copies + B rows through a table (below) */
    int bands;                     /* bwd_input: col2im per band of GEMM rows (col2im_band) */
    size_t off_bytes;              /* implicit: the slot's row-offset table */
    int64_t ldt;                   /* their row stride: kall, or CONV_COLT_PAD (padded) */
    size_t dwp_bytes;              /* padded: the slot's dw [OC, CONV_COLT_PAD] */
    int hwc;                       /* bwd_weight: B read from a channels-last image, dw's
                                    * columns permuted (hwc_offb_image); the call clears it
                                    * when it cannot run that path */
    size_t xt_bytes;               /* hwc: the slot's channels-last image */
    int fl;                        /* bwd_weight: 1 + the fl_table row of fl_image, or 0 (the
                                    * call sets it: fl_pick) */
    size_t perm_bytes;             /* hwc: dw before its columns are put back in order */
    size_t in_bytes, out_bytes;    /* batched: gathered input / output matrices */
    size_t pa_one, pa_bytes;       /* the weights packed once per call, per group / in all */
    size_t pw_a;                   /* pw: when not 0, a call without packed weights packs them
                                    * per row task instead (et_f32_gemm_nchw_a, this workspace) */
    const char *pre;               /* fwd: those packed before the call, in the same layout
                                    * (et_f32_conv2d_fwd_packed), else NULL: packed in ws */
    size_t col_bytes, gemm_bytes, slot_bytes, part_bytes, total;
} conv_plan;

/* ---- implicit im2col (forward) -------------------------------------------------------
 * With stride 1, no padding and no dilation, window column kx of every output pixel reads
 * x shifted by kx: xs[(ci*kw + kx)*h*ow + iy*ow + ox] = x[ci, iy, ox + kx] (kw copies of
 * the image, not kh*kw), and the im2col row k = (ci*kh + ky)*kw + kx is xs + off[k] with
 * off[k] = (ci*kw + kx)*h*ow + ky*ow, its np pixels contiguous (pixel q = oy*ow + ox sits at
 * (oy + ky)*ow + ox). The GEMM reads B's rows through that table (et_f32_gemm_pa_offb): the
 * same FMA chains as the GEMM over the im2col columns, so the same bits. */
static int64_t implicit_floats(const et_conv2d_params *p) { return p->c * p->kw * p->h * p->ow; }

static int implicit_ok(const et_conv2d_params *p, const conv_plan *cp) {
    return p->groups == 1 && !cp->direct && conv_inside(p) && p->stride_h == 1 &&
           p->dil_h == 1 && p->dil_w == 1 && cp->band == p->oh &&
           implicit_floats(p) + ET_GEMM_NR_MAX < ((int64_t)1 << 31) &&
           !et_f32_gemm_is_small(cp->ocg, cp->np, cp->kg);
}

/* The shifted copies of image x into xs (zeros past them: the last panel's columns past np
 * are read, never stored) and the row table. */
static void implicit_columns(const et_conv2d_params *p, const float *ET_RESTRICT x,
                             float *ET_RESTRICT xs, int32_t *off) {
    const int64_t h = p->h, w = p->w, ow = p->ow, kh = p->kh, kw = p->kw, hw = h * ow;
    for (int64_t ci = 0; ci < p->c; ci++)
        for (int64_t kx = 0; kx < kw; kx++)
            copy_rows(xs + (ci * kw + kx) * hw, ow, x + ci * h * w + kx, w, h, ow);
    memset(xs + implicit_floats(p), 0, ET_GEMM_NR_MAX * sizeof(float));
    for (int64_t ci = 0; ci < p->c; ci++)
        for (int64_t ky = 0; ky < kh; ky++)
            for (int64_t kx = 0; kx < kw; kx++)
                off[(ci * kh + ky) * kw + kx] = (int32_t)((ci * kw + kx) * hw + ky * ow);
}

#define BAND_ROWS_MAX 64 /* col2im_band_avx512: most dx rows (h) */
/* 1 if col2im_band_avx512 takes p's input gradient (on the AVX-512 config). */
static int band_avx512_ok(const et_conv2d_params *p) {
    return conv_fast && p->w <= 16 && p->h <= BAND_ROWS_MAX && p->dil_w == 1;
}

/* Rows of dcol et_f32_gemm_pa_bands hands on at a time: one input channel's kh*kw window rows
 * for the shapes col2im_band_avx512 takes (small planes: a few KiB of rows wait for their
 * channel), else each band as it is done. The same on every ISA (the workspace's size). */
static int64_t band_unit(const et_conv2d_params *p) {
    return band_avx512_ok(p) ? p->kh * p->kw : 0;
}

static size_t gemm_ws_for(int kind, const conv_plan *cp, int64_t pt, int nth) {
    switch (kind) {
    case CONV_FWD: return et_f32_gemm_ws_bytes(cp->ocg, pt, cp->kg, nth);
    case CONV_BWD_INPUT: return et_f32_gemm_ws_bytes(cp->kg, pt, cp->ocg, nth);
    default: return et_f32_gemm_ws_bytes(cp->ocg, cp->dwp_bytes ? cp->ldt : cp->kg, pt, nth);
    }
}

/* Pointwise NCHW path (fwd, bwd_input of 1x1 / stride 1 / no pad / groups 1 convs): one GEMM
 * over the batch that packs its B panels straight from the images and stores C straight into
 * them, with the bias + activation applied per tile (et_f32_gemm_nchw). It gives the packed
 * GEMM's bits, so it is taken exactly when the older paths (batched or per image) would have
 * run the packed GEMM, not its unpacked small-problem path; the choice depends on the shapes
 * only, so the workspace does not depend on the ISA. Returns 1 when cp is this plan. */
static int pw_plan(const et_conv2d_params *p, int kind, int nthreads, conv_plan *cp) {
    if (!cp->direct || p->groups != 1 || kind == CONV_BWD_WEIGHT) return 0;
    const int64_t rin = kind == CONV_BWD_INPUT ? p->oc : p->c;
    const int64_t rout = kind == CONV_BWD_INPUT ? p->c : p->oc;
    const int64_t nn = p->n * cp->np;
    const size_t gathered = align_up((size_t)(rin * nn) * sizeof(float)) +
                            align_up((size_t)(rout * nn) * sizeof(float));
    const int old_batched =
        p->n > 1 && cp->np < CONV_BATCH_MAX_NP && gathered <= CONV_BATCH_MAX_BYTES;
    if (et_f32_gemm_is_small(rout, old_batched ? nn : cp->np, rin)) return 0;
    cp->pw = 1;
    cp->gemm_threads = nthreads;
    cp->pa_one = cp->pa_bytes = align_up(et_f32_gemm_pack_a_bytes(rout, rin));
    cp->gemm_bytes = align_up(et_f32_gemm_nchw_ws_bytes(rout, rin, p->n, cp->np, nthreads));
    cp->total = cp->pa_bytes + cp->gemm_bytes + CONV_ALIGN;
    /* A wide layer's packed weights (MobileNetV2's last block: 1.6 MiB) would be the step's
     * largest workspace; the row tasks pack them piece by piece instead (the same bits). The
     * plan keeps pa_bytes: an eval program's cache still packs them once before the call. */
    const size_t pw_a =
        cp->pa_bytes > PW_A_MIN_BYTES
            ? align_up(et_f32_gemm_nchw_a_ws_bytes(rout, rin, p->n, cp->np, nthreads))
            : 0;
    if (pw_a && pw_a < cp->pa_bytes + cp->gemm_bytes) {
        cp->pw_a = pw_a;
        cp->total = (pw_a > cp->gemm_bytes ? pw_a : cp->gemm_bytes) + CONV_ALIGN;
    }
    return 1;
}

static void conv_plan_make(const et_conv2d_params *p, int kind, int nthreads, conv_plan *cp) {
    memset(cp, 0, sizeof *cp);
    if (nthreads < 1) nthreads = 1;
    cp->cg = p->c / p->groups;
    cp->ocg = p->oc / p->groups;
    cp->kg = cp->cg * p->kh * p->kw;
    cp->kall = p->c * p->kh * p->kw;
    cp->np = p->oh * p->ow;
    cp->direct = p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 &&
                 p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0;
    if (pw_plan(p, kind, nthreads, cp)) return;
    if (cp->direct && p->groups == 1 && p->n > 1 && cp->np < CONV_BATCH_MAX_NP) {
        int64_t nn = p->n * cp->np;
        /* fwd: in = X' [C, nn], out = Y' [OC, nn]; bwd_input: in = dY' [OC, nn], out = dX'
         * [C, nn]; bwd_weight: in = X' [C, nn], out = dY' [OC, nn]. */
        int64_t rin = kind == CONV_BWD_INPUT ? p->oc : p->c;
        int64_t rout = kind == CONV_BWD_INPUT ? p->c : p->oc;
        size_t in_b = align_up((size_t)(rin * nn) * sizeof(float));
        size_t out_b = align_up((size_t)(rout * nn) * sizeof(float));
        if (in_b + out_b <= CONV_BATCH_MAX_BYTES) {
            size_t g;
            if (kind == CONV_FWD) g = et_f32_gemm_ws_bytes(p->oc, nn, p->c, nthreads);
            else if (kind == CONV_BWD_INPUT) g = et_f32_gemm_ws_bytes(p->c, nn, p->oc, nthreads);
            else if (et_f32_gemm_is_small(p->oc, p->c, nn))
                g = et_f32_gemm_ws_bytes(p->oc, p->c, nn, nthreads);
            else { /* et_f32_gemm_nchw_wgrad packs from the images: nothing gathered */
                g = et_f32_gemm_nchw_wgrad_ws_bytes(p->oc, p->c, p->n, cp->np, nthreads);
                in_b = out_b = 0;
            }
            cp->batched = 1;
            cp->gemm_threads = nthreads;
            cp->in_bytes = in_b;
            cp->out_bytes = out_b;
            cp->gemm_bytes = align_up(g);
            cp->total = in_b + out_b + cp->gemm_bytes + CONV_ALIGN;
            return;
        }
    }
    if (cp->direct) {
        cp->band = p->oh;
    } else {
        int64_t rows = CONV_COL_TILE_FLOATS / (cp->kall * p->ow);
        cp->band = rows < 1 ? 1 : (rows > p->oh ? p->oh : rows);
    }
    /* Transposed columns pay off when dw is wide (the GEMM reads whole NR-wide panels of
     * them in place); for narrow dw (a first layer: c * kh * kw of a few dozen) building them
     * costs more short copies than packing ordinary columns transposed. */
    cp->colt = kind == CONV_BWD_WEIGHT && !cp->direct && cp->kg >= CONV_COLT_MIN_K;
    /* transposed columns read in place: rows start on a 64-byte line (no split vector loads)
     * at an odd number of lines apart (rows spread over the L1 sets); the row stride changes
     * no arithmetic */
    cp->ldt = cp->colt ? (cp->kall + 15) / 16 * 16 | 16 : cp->kall;
    if (kind == CONV_BWD_WEIGHT && !cp->direct && p->groups == 1 && cp->kg < CONV_COLT_PAD) {
        /* only where today's GEMMs (every band) take the packed path: the unpacked one sums
         * in another order, and padding N could move a band from it to the packed one */
        const int64_t last = p->oh % cp->band;
        if (!et_f32_gemm_is_small(cp->ocg, cp->kg, cp->band * p->ow) &&
            (!last || !et_f32_gemm_is_small(cp->ocg, cp->kg, last * p->ow))) {
            cp->colt = 1;
            cp->ldt = CONV_COLT_PAD;
            cp->dwp_bytes = align_up((size_t)(p->oc * CONV_COLT_PAD) * sizeof(float));
        }
    }
    if (kind == CONV_BWD_WEIGHT && cp->colt && !cp->dwp_bytes && p->groups == 1 &&
        p->pad_t == 0 && p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0 && p->dil_w == 1 &&
        p->c > 1) {
        cp->hwc = 1;
        cp->xt_bytes = align_up((size_t)(p->c * p->h * p->w + ET_GEMM_NR_MAX) * sizeof(float));
        cp->perm_bytes = align_up((size_t)(p->oc * cp->kg) * sizeof(float));
    }
    cp->batch_par = nthreads > 1 && p->n >= nthreads;
    if (kind == CONV_BWD_WEIGHT) {
        const size_t part = (size_t)(p->oc * cp->kg) * sizeof(float);
        const int64_t wc = p->n < CONV_WCHUNKS ? p->n : CONV_WCHUNKS;
        cp->wchunks = part <= CONV_WPART_MAX_BYTES && wc > 1 ? (int)wc : 1;
        cp->batch_par = cp->wchunks > 1 && nthreads > 1;
    }
    cp->gemm_threads = cp->batch_par ? 1 : nthreads;
    /* fwd and bwd_input apply the same weight matrix to every image: pack it once */
    if (kind == CONV_FWD)
        cp->pa_one = align_up(et_f32_gemm_pack_a_bytes(cp->ocg, cp->kg));
    else if (kind == CONV_BWD_INPUT)
        cp->pa_one = align_up(et_f32_gemm_pack_a_bytes(cp->kg, cp->ocg));
    cp->pa_bytes = cp->pa_one * (size_t)p->groups;
    int nslots = cp->batch_par ? nthreads : 1;
    if (kind == CONV_BWD_WEIGHT && cp->wchunks > 1 && nslots > cp->wchunks) nslots = cp->wchunks;
    cp->nslots = nslots;
    cp->col_bytes = cp->direct ? 0 : align_up((size_t)(cp->ldt * cp->band * p->ow) * sizeof(float));
    int64_t last = p->oh % cp->band;
    size_t g1 = gemm_ws_for(kind, cp, cp->band * p->ow, cp->gemm_threads);
    size_t g2 = last ? gemm_ws_for(kind, cp, last * p->ow, cp->gemm_threads) : 0;
    cp->gemm_bytes = align_up(g1 > g2 ? g1 : g2);
    if (kind == CONV_FWD && implicit_ok(p, cp)) {
        /* the column buffer holds the shifted copies instead (sized for both paths, so the
         * workspace does not depend on the ISA) */
        const size_t xs = align_up((size_t)(implicit_floats(p) + ET_GEMM_NR_MAX) * sizeof(float));
        if (xs > cp->col_bytes) cp->col_bytes = xs;
        cp->implicit = 1;
        cp->off_bytes = align_up((size_t)cp->kg * sizeof(int32_t));
    }
    if (kind == CONV_BWD_INPUT && p->groups == 1 && !cp->direct && conv_inside(p) &&
        cp->band == p->oh && !et_f32_gemm_is_small(cp->kg, cp->np, cp->ocg)) {
        const size_t bb = align_up(
            (size_t)et_f32_gemm_bands_floats(cp->np, cp->ocg, band_unit(p)) * sizeof(float));
        if (bb > cp->col_bytes) cp->col_bytes = bb;
        cp->bands = 1;
    }
    cp->slot_bytes = cp->col_bytes + cp->gemm_bytes + cp->dwp_bytes + cp->off_bytes + cp->xt_bytes;
    cp->part_bytes = (kind == CONV_BWD_WEIGHT && cp->wchunks > 1)
                         ? align_up((size_t)(p->oc * cp->kg) * sizeof(float))
                         : 0;
    size_t total = cp->pa_bytes + (size_t)nslots * cp->slot_bytes +
                   (size_t)(cp->wchunks > 1 ? cp->wchunks - 1 : 0) * cp->part_bytes +
                   cp->perm_bytes;
    cp->total = total ? total + CONV_ALIGN : 0;
}

static size_t conv_ws_bytes(const et_conv2d_params *p, int kind, int nthreads) {
    if (!params_ok(p) || et_conv2d_is_depthwise(p)) return 0;
    conv_plan cp;
    conv_plan_make(p, kind, nthreads, &cp);
    return cp.total;
}

size_t et_f32_conv2d_fwd_ws_bytes(const et_conv2d_params *p, int nthreads) {
    return conv_ws_bytes(p, CONV_FWD, nthreads);
}
size_t et_f32_conv2d_bwd_input_ws_bytes(const et_conv2d_params *p, int nthreads) {
    return conv_ws_bytes(p, CONV_BWD_INPUT, nthreads);
}
size_t et_f32_conv2d_bwd_weight_ws_bytes(const et_conv2d_params *p, int nthreads) {
    return conv_ws_bytes(p, CONV_BWD_WEIGHT, nthreads);
}

/* Workspace: the packed weights (fwd, bwd_input), then one slot per thread: column buffer,
 * then gemm workspace. Partial dw buffers (bwd_weight, threads 1..) follow all slots. */
typedef struct conv_slot {
    float *col;
    void *gws;
    size_t gws_bytes;
    float *dwp; /* bwd_weight, padded columns: the padded dw */
    int32_t *off; /* fwd, implicit: the row-offset table */
    float *xt;    /* bwd_weight, hwc: the image channels-last */
} conv_slot;

static char *ws_base(void *ws) {
    uintptr_t a = (uintptr_t)ws;
    return (char *)((a + CONV_ALIGN - 1) & ~(uintptr_t)(CONV_ALIGN - 1));
}

static conv_slot slot_at(const conv_plan *cp, char *base, int t) {
    conv_slot s;
    char *b = base ? base + cp->pa_bytes + (size_t)t * cp->slot_bytes : NULL;
    s.col = (b && cp->col_bytes) ? (float *)b : NULL;
    s.gws = (b && cp->gemm_bytes) ? b + cp->col_bytes : NULL;
    s.gws_bytes = cp->gemm_bytes;
    s.dwp = (b && cp->dwp_bytes) ? (float *)(b + cp->col_bytes + cp->gemm_bytes) : NULL;
    s.off = (b && cp->off_bytes)
                ? (int32_t *)(b + cp->col_bytes + cp->gemm_bytes + cp->dwp_bytes)
                : NULL;
    s.xt = (b && cp->xt_bytes)
               ? (float *)(b + cp->col_bytes + cp->gemm_bytes + cp->dwp_bytes + cp->off_bytes)
               : NULL;
    return s;
}

/* ---- one image ------------------------------------------------------------------------- */
/* The GEMM operand for output rows [oy0, oy1): x itself for direct (1x1) convs, else the
 * band's im2col columns in `col`. *ldb receives its row stride. */
static const float *band_columns(const et_conv2d_params *p, const conv_plan *cp, const float *x,
                                 int64_t oy0, int64_t oy1, float *col, int64_t *ldb) {
    if (cp->direct) {
        *ldb = cp->np;
        return x + oy0 * p->ow;
    }
    im2col(p, x, oy0, oy1, col);
    *ldb = (oy1 - oy0) * p->ow;
    return col;
}

/* The packed weights of group g (NULL when the plan packs none). */
static const void *packed_w(const conv_plan *cp, const char *base, int64_t g) {
    return cp->pa_bytes ? (cp->pre ? cp->pre : base) + (size_t)g * cp->pa_one : NULL;
}

/* Packs each group's weight matrix (op(A) of the per-image GEMMs) once per call. */
static et_status pack_weights(const et_conv2d_params *p, const conv_plan *cp, const float *w,
                              char *base, int trans) {
    for (int64_t g = 0; g < p->groups && cp->pa_bytes; g++) {
        /* op(A) = w_g [OCg, Kg] (fwd) or its transpose (bwd_input) */
        et_status st = et_f32_gemm_pack_a(trans, trans ? cp->kg : cp->ocg, trans ? cp->ocg : cp->kg,
                                          w + g * cp->ocg * cp->kg, cp->kg,
                                          base + (size_t)g * cp->pa_one, cp->pa_one);
        if (st != ET_OK) return st;
    }
    return ET_OK;
}

static et_status fwd_implicit_gemm(const et_conv2d_params *p, const conv_plan *cp,
                                   const void *pw, conv_slot s, const float *b, float *y);

/* ---- direct forward of a few-tap window ----------------------------------------------
 * With Kg <= DIRECT_MAX_K (a first layer: LeNet's conv1, Kg 25; MobileNetV2's stem, Kg 27)
 * the GEMM stores each C tile after only Kg FMAs per element and the epilogue passes over it
 * again. direct_fwd runs each y element's k-ordered FMA chain from +0 over the same B rows
 * (the implicit plan's shifted copies, or a band's im2col columns) -- the packed GEMM's chain:
 * alpha 1, beta 0 -- in registers, DIRECT_O channels x DIRECT_V vectors at a time, and applies
 * the epilogue (bias, fused BatchNorm, relu / relu6: et_conv_epilogue_'s arithmetic) before
 * the one store: the same bits. Only where a variant has the kernel (AVX-512); other ISAs keep
 * the GEMM. */
#define DIRECT_MAX_K 32
#define DIRECT_O 4 /* channels per tile */
#define DIRECT_V 6 /* 16-float vectors of pixels per tile: 24 accumulators + 6 rows of B */

/* npix pixels of y (row stride ldy) from B rows xs + off[k] (k < Kg), npix floats each. */
typedef void direct_fwd_fn(const et_conv2d_params *p, const float *w, const float *b,
                           const float *xs, const int32_t *off, int64_t npix, float *y,
                           int64_t ldy);

/* 1 if the plan's forward can run direct_fwd (shapes, and an epilogue it applies in registers:
 * bias, a fused BatchNorm, relu, relu6 or none); the band path also needs each band's GEMM to
 * be a packed one (et_f32_gemm_is_small sums in another order). */
static int direct_ok(const et_conv2d_params *p, const conv_plan *cp) {
    return conv_fast && p->groups == 1 && !cp->direct && cp->kg <= DIRECT_MAX_K &&
           (p->act == ET_ACT_NONE || p->act == ET_ACT_RELU || p->act == ET_ACT_RELU6);
}

#if defined(ET_HAVE_X86_SIMD)
/* The epilogue of DIRECT_O channels (et_conv_epilogue_'s arithmetic): channel i adds bias[i]
 * when add[i]; with a fused BatchNorm (bn) then * sc[i] and + sh[i] (a mul and an add, no
 * fma); then act: 0 none, 1 relu, 2 relu6. */
typedef struct direct_ep {
    float bias[DIRECT_O], sc[DIRECT_O], sh[DIRECT_O];
    int add[DIRECT_O];
    int bn, act;
} direct_ep;

/* Channels [o, o + O) x pixels [q, q + 16 * V) of y (the last vector's pixels under ml), ep
 * their epilogue. The loops unrolled, so the accumulators stay in registers. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void direct_tile_avx512(
    const int O, const int V, int64_t kg, const float *ET_RESTRICT w, const float *ET_RESTRICT xs,
    const int32_t *ET_RESTRICT off, int64_t q, __mmask16 ml, const direct_ep *ep,
    float *ET_RESTRICT y, int64_t ldy) {
    __m512 acc[DIRECT_O][DIRECT_V];
    _Pragma("GCC unroll 8") for (int i = 0; i < O; i++)
        _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kg; k++) {
        const float *bk = xs + off[k] + q;
        __m512 bv[DIRECT_V];
        _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)
            bv[v] = _mm512_maskz_loadu_ps(v == V - 1 ? ml : (__mmask16)0xFFFF, bk + 16 * v);
        _Pragma("GCC unroll 8") for (int i = 0; i < O; i++) {
            const __m512 a = _mm512_set1_ps(w[i * kg + k]);
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)
                acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
        }
    }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    const int act = ep->act, bn = ep->bn;
    _Pragma("GCC unroll 8") for (int i = 0; i < O; i++) {
        const __m512 vb = _mm512_set1_ps(ep->bias[i]), va = _mm512_set1_ps(ep->sc[i]);
        const __m512 vs = _mm512_set1_ps(ep->sh[i]);
        const int addi = ep->add[i];
        _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) {
            __m512 r = acc[i][v];
            if (addi) r = _mm512_add_ps(r, vb);
            if (bn) r = _mm512_add_ps(_mm512_mul_ps(r, va), vs);
            /* v < 0 ? 0 : (v > 6 ? 6 : v) by ordered compares: NaN and -0 kept (max_ps would
             * turn -0 into +0); after a BatchNorm relu6 tests v <= 0 (-0 to +0) */
            if (act == 2 && bn)
                r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, zero, _CMP_LE_OQ), zero);
            else if (act)
                r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, zero, _CMP_LT_OQ), zero);
            if (act == 2) r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, six, _CMP_GT_OQ), six);
            _mm512_mask_storeu_ps(y + i * ldy + q + 16 * v, v == V - 1 ? ml : (__mmask16)0xFFFF, r);
        }
    }
}

#define DIRECT_TILE(O, V)                                                                        \
    ET_TARGET_AVX512 static void direct_tile_##O##x##V(                                          \
        int64_t kg, const float *w, const float *xs, const int32_t *off, int64_t q, __mmask16 ml, \
        const direct_ep *ep, float *y, int64_t ldy) {                                             \
        direct_tile_avx512(O, V, kg, w, xs, off, q, ml, ep, y, ldy);                              \
    }
DIRECT_TILE(4, 6)
DIRECT_TILE(1, 6)
DIRECT_TILE(4, 1)
DIRECT_TILE(1, 1)

ET_TARGET_AVX512 static void direct_fwd_avx512(const et_conv2d_params *p, const float *w,
                                               const float *b, const float *xs,
                                               const int32_t *off, int64_t np, float *y,
                                               int64_t ldy) {
    const int64_t kg = p->c * p->kh * p->kw, oc = p->oc;
    direct_ep ep;
    ep.act = p->act == ET_ACT_RELU ? 1 : p->act == ET_ACT_RELU6 ? 2 : 0; /* direct_ok */
    ep.bn = p->bn_scale != NULL;
    for (int64_t q = 0; q < np;) {
        /* a DIRECT_V tile while more than DIRECT_V - 1 vectors are left (its last vector may be
         * partial), then one vector at a time */
        const int64_t left = np - q;
        const int wide = left > 16 * (DIRECT_V - 1);
        const int64_t span = wide ? (left < 16 * DIRECT_V ? left : 16 * DIRECT_V)
                                  : (left < 16 ? left : 16);
        const int64_t tail = span % 16;
        const __mmask16 ml = tail ? (__mmask16)((1u << tail) - 1u) : (__mmask16)0xFFFF;
        for (int64_t o = 0; o < oc;) {
            const int O = oc - o >= DIRECT_O ? DIRECT_O : 1;
            for (int i = 0; i < O; i++) {
                ep.bias[i] = b ? b[o + i] : 0.0f;
                ep.sc[i] = ep.bn ? p->bn_scale[o + i] : 1.0f;
                ep.sh[i] = ep.bn ? p->bn_shift[o + i] : 0.0f;
                /* et_conv_bias_act_: relu / relu6 add every bias, none only non-zero ones
                 * (adding +0 would turn -0 into +0); with a BatchNorm only non-zero ones */
                ep.add[i] = (ep.act && !ep.bn) || ep.bias[i] != 0.0f;
            }
            if (O == DIRECT_O)
                (wide ? direct_tile_4x6 : direct_tile_4x1)(kg, w + o * kg, xs, off, q, ml, &ep,
                                                           y + o * ldy, ldy);
            else
                (wide ? direct_tile_1x6 : direct_tile_1x1)(kg, w + o * kg, xs, off, q, ml, &ep,
                                                           y + o * ldy, ldy);
            o += O;
        }
        q += span;
    }
}
#endif

typedef struct direct_variant {
    et_variant_head head;
    direct_fwd_fn *fn; /* NULL: the GEMM path */
} direct_variant;
static const direct_variant direct_variants[] = {
    {{ET_ISA_REF, "ref"}, NULL},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512, "avx512"}, direct_fwd_avx512},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};

static et_status fwd_image(const et_conv2d_params *p, const conv_plan *cp, const float *x,
                           const float *w, const float *b, float *y, conv_slot s,
                           const char *base, int nth) {
    const int64_t ow = p->ow, np = cp->np;
    direct_fwd_fn *dfn =
        nth == 1 && direct_ok(p, cp)
            ? ((const direct_variant *)ET_VARIANT_PICK(direct_variants))->fn
            : NULL;
    if (dfn && cp->implicit) {
        implicit_columns(p, x, s.col, s.off);
        dfn(p, w, b, s.col, s.off, np, y, np);
        return ET_OK;
    }
    if (cp->implicit && nth == 1 && et_f32_gemm_offb_available()) {
        implicit_columns(p, x, s.col, s.off);
        return fwd_implicit_gemm(p, cp, packed_w(cp, base, 0), s, b, y);
    }
    int32_t off[DIRECT_MAX_K];
    for (int64_t oy0 = 0; oy0 < p->oh; oy0 += cp->band) {
        int64_t oy1 = oy0 + cp->band < p->oh ? oy0 + cp->band : p->oh;
        int64_t pt = (oy1 - oy0) * ow, p0 = oy0 * ow;
        int64_t ldb;
        const float *B = band_columns(p, cp, x, oy0, oy1, s.col, &ldb);
        if (dfn && !et_f32_gemm_is_small(cp->ocg, pt, cp->kg)) {
            /* the band's im2col columns: row k at k * ldb */
            for (int64_t k = 0; k < cp->kg; k++) off[k] = (int32_t)(k * ldb);
            dfn(p, w, b, B, off, pt, y + p0, np);
            continue;
        }
        for (int64_t g = 0; g < p->groups; g++) {
            et_status st = et_f32_gemm_pa(0, 0, cp->ocg, pt, cp->kg, 1.0f,
                                          w + g * cp->ocg * cp->kg, cp->kg, packed_w(cp, base, g),
                                          B + g * cp->kg * ldb, ldb, 0.0f,
                                          y + g * cp->ocg * np + p0, np, s.gws, s.gws_bytes, nth);
            if (st != ET_OK) return st;
        }
        if (et_conv_has_epilogue_(p, b)) {
            for (int64_t o = 0; o < p->oc; o++)
                et_conv_epilogue_(p, o, b ? b[o] : 0.0f, y + o * np + p0, pt);
        }
    }
    return ET_OK;
}

/* The input gradient a band of dcol rows at a time (plan bands: conv_inside windows, the
 * image in one band; band_unit: whole input channels for small planes): after the GEMM has
 * finished rows [k0, k0 + rows) of dcol (in buf, row stride ldc), they are added
 * into dx as col2im_inside_rows adds them -- every dx element still gets its contributions in
 * k order, one addition each, so the same bits -- while they are in L1, instead of through a
 * column buffer of the whole image. */
typedef struct band_job {
    const et_conv2d_params *p;
    float *dx;
} band_job;

static void col2im_band(void *ctx, int64_t k0, int64_t rows, float *buf, int64_t ldc,
                        int64_t ncols) {
    const band_job *j = (const band_job *)ctx;
    const et_conv2d_params *p = j->p;
    const int64_t khw = p->kh * p->kw, step = p->stride_h * p->w;
    (void)ncols;
    for (int64_t k = k0; k < k0 + rows; k++) {
        const int64_t ci = k / khw, ky = k % khw / p->kw, kx = k % p->kw;
        add_rows(j->dx + (ci * p->h + ky * p->dil_h) * p->w + kx * p->dil_w, step,
                 buf + (k - k0) * ldc, p->ow, p->oh, p->ow);
    }
}

#if defined(ET_HAVE_X86_SIMD)
/* col2im_band for dx rows of at most 16 floats (w <= 16, dil_w 1), AVX-512, one vector per
 * dx row. col2im_band stalls twice per window row: window column kx + 1 reads the dx row kx
 * has just written one float further on (a partial overlap: no store forwarding), and each
 * element's additions form one long dependent chain. Here a channel's dx rows that the rows
 * [k0, k0 + rows) reach are copied into whole aligned vectors (rowv), window row (ky, kx)
 * adds its output row oy -- moved kx lanes up by a masked load from kx floats before it; the
 * masked-off lanes are not read -- into vector ky*dh + oy*sh, oy innermost (oh independent
 * chains), and the rows are copied back after all were read (a masked store's 64 bytes would
 * overlap the next row's load). Every dx element gets the same additions in the same (k)
 * order: the same bits. */
ET_TARGET_AVX512 static void band_rows_avx512(const et_conv2d_params *p, int64_t k0,
                                              int64_t rows, const float *buf, int64_t ldc,
                                              float *dx) {
    const int64_t kw = p->kw, khw = p->kh * kw, w = p->w, ow = p->ow, oh = p->oh;
    const int64_t sh = p->stride_h, dh = p->dil_h, k1 = k0 + rows;
    const __mmask16 wm = (__mmask16)((1u << w) - 1u), om = (__mmask16)((1u << ow) - 1u);
    float rowv[BAND_ROWS_MAX][16] ET_ALIGNED(64);
    for (int64_t ci = k0 / khw; ci * khw < k1; ci++) {
        /* this channel's window rows here: (kya, kxa) .. (kyb, kxb), both included */
        const int64_t ra = (ci * khw > k0 ? ci * khw : k0) - ci * khw;
        const int64_t rb = ((ci + 1) * khw < k1 ? (ci + 1) * khw : k1) - 1 - ci * khw;
        const int64_t kya = ra / kw, kxa = ra % kw, kyb = rb / kw, kxb = rb % kw;
        const float *bc = buf + (ci * khw - k0) * ldc; /* window row r at bc + r * ldc */
        float *dxc = dx + ci * p->h * w;
        const int64_t iy0 = kya * dh, iy1 = kyb * dh + (oh - 1) * sh + 1;
        for (int64_t iy = iy0; iy < iy1; iy++)
            _mm512_store_ps(rowv[iy - iy0], _mm512_maskz_loadu_ps(wm, dxc + iy * w));
        for (int64_t ky = kya; ky <= kyb; ky++) {
            const int64_t x0 = ky == kya ? kxa : 0, x1 = ky == kyb ? kxb : kw - 1;
            float *r0 = rowv[ky * dh - iy0];
            for (int64_t kx = x0; kx <= x1; kx++) {
                const __mmask16 m = (__mmask16)(om << kx);
                const float *src = bc + (ky * kw + kx) * ldc - kx;
                for (int64_t oy = 0; oy < oh; oy++) {
                    float *r = r0 + oy * sh * 16;
                    const __m512 v = _mm512_maskz_loadu_ps(m, src + oy * ow);
                    _mm512_store_ps(r, _mm512_mask_add_ps(_mm512_load_ps(r), m, _mm512_load_ps(r), v));
                }
            }
        }
        for (int64_t iy = iy0; iy < iy1; iy++)
            _mm512_mask_storeu_ps(dxc + iy * w, wm, _mm512_load_ps(rowv[iy - iy0]));
    }
}

/* One whole channel (window rows at bc, row stride ldc) for stride_h = dil_h = 1 and
 * constant kh, kw, oh (inlined into an instantiation): the kh + oh - 1 dx rows in registers,
 * window row (ky, kx) adding into rows ky .. ky + oh - 1 as above; no branch. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void channel_fixed(
    const int KH, const int KW, const int OH, const float *bc, int64_t ldc, float *dxc) {
    const int W = OH + KW - 1;
    const __mmask16 wm = (__mmask16)((1u << W) - 1u), om = (__mmask16)((1u << OH) - 1u);
    __m512 acc[BAND_ROWS_MAX];
#pragma GCC unroll 64
    for (int r = 0; r < KH + OH - 1; r++) acc[r] = _mm512_maskz_loadu_ps(wm, dxc + r * W);
#pragma GCC unroll 16
    for (int ky = 0; ky < KH; ky++)
#pragma GCC unroll 16
        for (int kx = 0; kx < KW; kx++) {
            const __mmask16 m = (__mmask16)(om << kx);
            const float *src = bc + (ky * KW + kx) * ldc - kx;
#pragma GCC unroll 64
            for (int oy = 0; oy < OH; oy++)
                acc[ky + oy] = _mm512_mask_add_ps(acc[ky + oy], m, acc[ky + oy],
                                                  _mm512_maskz_loadu_ps(m, src + oy * OH));
        }
#pragma GCC unroll 64
    for (int r = 0; r < KH + OH - 1; r++) _mm512_mask_storeu_ps(dxc + r * W, wm, acc[r]);
}

/* The instantiated (kh, kw, oh) with ow = oh, no padding: LeNet's conv2 (5, 5, 8). */
ET_TARGET_AVX512 static void channel_5x5_8(const float *bc, int64_t ldc, float *dxc) {
    channel_fixed(5, 5, 8, bc, ldc, dxc);
}

/* band_fn of et_f32_gemm_pa_bands with units of one channel (band_unit). */
ET_TARGET_AVX512 static void col2im_band_avx512(void *ctx, int64_t k0, int64_t rows, float *buf,
                                                int64_t ldc, int64_t ncols) {
    const band_job *j = (const band_job *)ctx;
    const et_conv2d_params *p = j->p;
    const int64_t khw = p->kh * p->kw;
    (void)ncols;
    if (p->kh == 5 && p->kw == 5 && p->oh == 8 && p->ow == 8 && p->stride_h == 1 &&
        p->dil_h == 1 && rows == khw && k0 % khw == 0)
        channel_5x5_8(buf, ldc, j->dx + k0 / khw * p->h * p->w);
    else
        band_rows_avx512(p, k0, rows, buf, ldc, j->dx);
}
#endif

/* col2im_band compiled for the ISA in use where that has one (a variant table,
 * variant_internal.h); the AVX-512 row takes dx rows of at most 16 floats and dil_w 1. */
typedef struct band_variant {
    et_variant_head head;
    et_f32_gemm_epilogue *fn;
} band_variant;
static const band_variant band_variants[] = {
    {{ET_ISA_REF, "ref"}, col2im_band},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512, "avx512"}, col2im_band_avx512},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};

static et_f32_gemm_epilogue *band_fn_for(const et_conv2d_params *p) {
    const band_variant *v = (const band_variant *)ET_VARIANT_PICK(band_variants);
    return band_avx512_ok(p) ? v->fn : col2im_band;
}

static et_status bwd_input_image(const et_conv2d_params *p, const conv_plan *cp, const float *dy,
                                 const float *w, const float *b_unused, float *dx, conv_slot s,
                                 const char *base, int nth) {
    (void)b_unused;
    const int64_t ow = p->ow, np = cp->np;
    if (!cp->direct) memset(dx, 0, (size_t)(p->c * p->h * p->w) * sizeof(float));
    if (cp->bands && nth == 1) {
        band_job j = {p, dx};
        if (et_f32_gemm_pa_bands(cp->kg, np, cp->ocg, packed_w(cp, base, 0), dy, np,
                                 band_unit(p), s.col, band_fn_for(p), &j) == ET_OK)
            return ET_OK;
        /* a stride the packed path would not read in place: nothing done yet */
    }
    for (int64_t oy0 = 0; oy0 < p->oh; oy0 += cp->band) {
        int64_t oy1 = oy0 + cp->band < p->oh ? oy0 + cp->band : p->oh;
        int64_t pt = (oy1 - oy0) * ow, p0 = oy0 * ow;
        float *C = cp->direct ? dx + p0 : s.col;
        int64_t ldc = cp->direct ? np : pt;
        for (int64_t g = 0; g < p->groups; g++) {
            et_status st = et_f32_gemm_pa(1, 0, cp->kg, pt, cp->ocg, 1.0f,
                                          w + g * cp->ocg * cp->kg, cp->kg, packed_w(cp, base, g),
                                          dy + g * cp->ocg * np + p0, np, 0.0f,
                                          C + g * cp->kg * ldc, ldc, s.gws, s.gws_bytes, nth);
            if (st != ET_OK) return st;
        }
        if (!cp->direct) col2im_add(p, s.col, oy0, oy1, dx);
    }
    return ET_OK;
}

/* The hwc weight gradient of one image without transposed columns (plan hwc, one band, one
 * K block, one thread, a config with a table ukernel): dw' [OC, kg] (columns permuted, j')
 * (+)= dy [OC, np] * colt' read straight from the channels-last image. Column panel
 * [jr, jr + NR) of colt' lies inside window row ky's run of kw*c floats of every pixel (but
 * for the panels straddling two runs, packed), so its row q is xt + off[q] + (jr - ky*run) +
 * ky*dh*w*c with off[q] the pixel's start: the table ukernel reads it there. dy is packed once
 * per image as the GEMM packs it; each element is the packed GEMM's FMA chain over the np
 * pixels (one K block) and its (beta) update, so the same bits as the colt path. */
static int hwc_offb_ok(const et_conv2d_params *p, const conv_plan *cp, int nth) {
    const et_f32_gemm_config *cfg = ((const et_f32_gemm_variant *)ET_VARIANT_PICK(et_f32_gemm_variants))->cfg;
    return cp->hwc && nth == 1 && cp->band == p->oh && cp->np <= ET_GEMM_KC && cfg &&
           cfg->ukernel_off && cfg->nr <= ET_GEMM_NR_MAX &&
           !et_f32_gemm_is_small(cp->ocg, cp->kg, cp->np) &&
           (size_t)(round_up_i64(p->oc, cfg->mr) * cp->np + cfg->nr * cp->np) * sizeof(float) +
                   (size_t)(2 * cp->np) * sizeof(int32_t) + 256 <=
               cp->col_bytes &&
           p->c * p->h * p->w < ((int64_t)1 << 30);
}

/* The NR of the config hwc_offb_image runs with (the order of dw's columns, dw_unpermute). */
static int64_t hwc_nr(void) {
    return ((const et_f32_gemm_variant *)ET_VARIANT_PICK(et_f32_gemm_variants))->cfg->nr;
}

/* xt[q*c + ci] = x[ci*hw + q]: the image channels-last. */
static void channels_last(const float *ET_RESTRICT x, int64_t c, int64_t hw, float *ET_RESTRICT xt) {
    for (int64_t ci = 0; ci < c; ci++)
        for (int64_t q = 0; q < hw; q++) xt[q * c + ci] = x[ci * hw + q];
}
#if defined(ET_HAVE_X86_SIMD)
/* Rows [0, nc) (nc <= 4) of x into xt[q*ldt + i], mask mc (<= 4 lanes: zeros for nc <= i). */
ET_TARGET_AVX512 static void channels_last4_avx512(const float *ET_RESTRICT x, int64_t nc,
                                                   int64_t hw, int64_t ldt, __mmask16 mc,
                                                   float *ET_RESTRICT xt) {
    for (int64_t q0 = 0; q0 < hw; q0 += 16) {
        const int64_t nq = hw - q0 < 16 ? hw - q0 : 16;
        const __mmask16 mq = (__mmask16)(nq == 16 ? 0xFFFFu : (1u << nq) - 1u);
        __m512 r[4];
        for (int i = 0; i < 4; i++)
            r[i] = i < nc ? _mm512_maskz_loadu_ps(mq, x + i * hw + q0) : _mm512_setzero_ps();
        const __m512 t0 = _mm512_unpacklo_ps(r[0], r[1]), t1 = _mm512_unpackhi_ps(r[0], r[1]);
        const __m512 t2 = _mm512_unpacklo_ps(r[2], r[3]), t3 = _mm512_unpackhi_ps(r[2], r[3]);
        const __m512d a = _mm512_castps_pd(t0), b = _mm512_castps_pd(t1);
        const __m512d cc = _mm512_castps_pd(t2), d = _mm512_castps_pd(t3);
        const __m512 u[4] = {_mm512_castpd_ps(_mm512_unpacklo_pd(a, cc)), /* pixel 4l + 0 */
                             _mm512_castpd_ps(_mm512_unpackhi_pd(a, cc)), /* 4l + 1 */
                             _mm512_castpd_ps(_mm512_unpacklo_pd(b, d)),  /* 4l + 2 */
                             _mm512_castpd_ps(_mm512_unpackhi_pd(b, d))}; /* 4l + 3 */
        /* pixel 4l + e is 128-bit lane l of u[e]: stored under the mask shifted to lane l, at
         * its row's address less 4l floats (masked-off lanes are not touched) */
        for (int64_t j = 0; j < nq; j++) {
            const int l = (int)(j >> 2);
            _mm512_mask_storeu_ps(xt + (q0 + j) * ldt - 4 * l, (__mmask16)(mc << (4 * l)),
                                  u[j & 3]);
        }
    }
}

/* The same moves in 16 x 16 blocks transposed in registers (the table-ukernel path runs on the
 * AVX-512 config only), with rows of ldt >= c floats: xt[q*ldt + ci], zeros for c <= ci < ldt
 * (ldt - c < 16; ldt = MR > c: the last row panel of dy packed as the GEMM packs it). */
ET_TARGET_AVX512 static void channels_last_avx512(const float *ET_RESTRICT x, int64_t c,
                                                  int64_t hw, int64_t ldt, float *ET_RESTRICT xt) {
    for (int64_t ci0 = 0; ci0 < ldt; ci0 += 16) {
        const int64_t nc = c - ci0 < 16 ? c - ci0 : 16, nl = ldt - ci0 < 16 ? ldt - ci0 : 16;
        const __mmask16 mc = (__mmask16)(nl == 16 ? 0xFFFFu : (1u << nl) - 1u);
        if (nl <= 4) { /* c = 20: the last 4 channels in 4 x 16 transposes, not 16 x 16 */
            channels_last4_avx512(x + ci0 * hw, nc, hw, ldt, mc, xt + ci0);
            continue;
        }
        for (int64_t q0 = 0; q0 < hw; q0 += 16) {
            const int64_t nq = hw - q0 < 16 ? hw - q0 : 16;
            const __mmask16 mq = (__mmask16)(nq == 16 ? 0xFFFFu : (1u << nq) - 1u);
            __m512 r[16], t[16], u[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < nc ? _mm512_maskz_loadu_ps(mq, x + (ci0 + i) * hw + q0)
                              : _mm512_setzero_ps();
            for (int i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 16; i += 4) {
                const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
                const __m512d cc = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
                u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, cc));     /* element 0 of lanes */
                u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, cc)); /* element 1 */
                u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));  /* element 2 */
                u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));  /* element 3 */
            }
            for (int e = 0; e < 4; e++) {
                const __m512 s0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88);
                const __m512 s1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xDD);
                const __m512 s2 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
                const __m512 s3 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xDD);
                const __m512 o[4] = {_mm512_shuffle_f32x4(s0, s2, 0x88),
                                     _mm512_shuffle_f32x4(s1, s3, 0x88),
                                     _mm512_shuffle_f32x4(s0, s2, 0xDD),
                                     _mm512_shuffle_f32x4(s1, s3, 0xDD)};
                for (int l = 0; l < 4; l++) { /* pixel 4*l + e */
                    const int64_t j = 4 * l + e;
                    if (j < nq) _mm512_mask_storeu_ps(xt + (q0 + j) * ldt + ci0, mc, o[l]);
                }
            }
        }
    }
}
#endif

#if defined(ET_HAVE_X86_SIMD)
/* A straddling 32-wide B panel (the AVX-512 config's NR): row q = the pieces (destination
 * column pd, source xt + offq[q] + ps, pl floats), zeros elsewhere. Zero-masked loads (a
 * masked-off lane reads nothing) OR-ed together: with at most PACK_PIECES_MAX pieces (more:
 * the scalar copies) the masks and source offsets stay in registers and the rows carry no
 * dependence, where merging loads under masks read from memory chained each row's loads. */
#define PACK_PIECES_MAX 3
ET_TARGET_AVX512 static void pack_pieces_avx512(int64_t K, const float *xt, const int32_t *offq,
                                                const int64_t *pd, const int64_t *ps,
                                                const int64_t *pl, int np_, float *pb) {
    __mmask16 m0[PACK_PIECES_MAX] = {0}, m1[PACK_PIECES_MAX] = {0};
    int64_t so[PACK_PIECES_MAX] = {0}; /* column j of piece i at xt + offq[q] + so[i] + j */
    for (int i = 0; i < np_; i++) {
        const uint32_t bits = (uint32_t)(((uint64_t)1 << (pd[i] + pl[i])) - ((uint64_t)1 << pd[i]));
        m0[i] = (__mmask16)(bits & 0xFFFFu);
        m1[i] = (__mmask16)(bits >> 16);
        so[i] = ps[i] - pd[i];
    }
    for (int64_t q = 0; q < K; q++) {
        const float *sq = xt + offq[q];
        __m512 v0 = _mm512_maskz_loadu_ps(m0[0], sq + so[0]);
        __m512 v1 = _mm512_maskz_loadu_ps(m1[0], sq + so[0] + 16);
        v0 = _mm512_or_ps(v0, _mm512_maskz_loadu_ps(m0[1], sq + so[1]));
        v1 = _mm512_or_ps(v1, _mm512_maskz_loadu_ps(m1[1], sq + so[1] + 16));
        if (np_ > 2) {
            v0 = _mm512_or_ps(v0, _mm512_maskz_loadu_ps(m0[2], sq + so[2]));
            v1 = _mm512_or_ps(v1, _mm512_maskz_loadu_ps(m1[2], sq + so[2] + 16));
        }
        _mm512_storeu_ps(pb + q * 32, v0);
        _mm512_storeu_ps(pb + q * 32 + 16, v1);
    }
}

/* The same for more pieces (the leftovers of runs shorter than 16 floats past their whole
 * panels: LeNet conv2's five runs leave 4 columns each): each half ORs only the loads of the
 * pieces that reach it. */
ET_TARGET_AVX512 static void pack_pieces_n_avx512(int64_t K, const float *xt, const int32_t *offq,
                                                  const int64_t *pd, const int64_t *ps,
                                                  const int64_t *pl, int np_, float *pb) {
    __mmask16 m[2][ET_GEMM_NR_MAX + 1];
    int64_t so[2][ET_GEMM_NR_MAX + 1]; /* half h, piece i: lanes m[h][i] at xt + offq[q] + so */
    int n[2] = {0, 0};
    for (int i = 0; i < np_; i++) {
        const uint32_t bits = (uint32_t)(((uint64_t)1 << (pd[i] + pl[i])) - ((uint64_t)1 << pd[i]));
        for (int h = 0; h < 2; h++) {
            const uint32_t hb = h ? bits >> 16 : bits & 0xFFFFu;
            if (!hb) continue;
            m[h][n[h]] = (__mmask16)hb;
            so[h][n[h]++] = ps[i] - pd[i] + 16 * h;
        }
    }
    for (int64_t q = 0; q < K; q++) {
        const float *sq = xt + offq[q];
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_setzero_ps();
            for (int i = 0; i < n[h]; i++)
                v = _mm512_or_ps(v, _mm512_maskz_loadu_ps(m[h][i], sq + so[h][i]));
            _mm512_storeu_ps(pb + q * 32 + 16 * h, v);
        }
    }
}
#endif

static void hwc_offb_image(const et_conv2d_params *p, const conv_plan *cp, const float *dy,
                           const float *x, float *dw, int accumulate, conv_slot s) {
    const et_f32_gemm_config *cfg = ((const et_f32_gemm_variant *)ET_VARIANT_PICK(et_f32_gemm_variants))->cfg;
    const int64_t MR = cfg->mr, NR = cfg->nr, M = p->oc, N = cp->kg, K = cp->np;
    const int64_t c = p->c, w = p->w, ow = p->ow, run = p->kw * c, hw = p->h * w;
    float *pa = s.col;                                /* dy packed: round_up(M, MR) x K */
    float *pb = pa + round_up_i64(M, MR) * K;         /* a straddling panel: K x NR */
    int32_t *offq = (int32_t *)(pb + NR * K);         /* pixel starts in xt */
    int32_t *offp = offq + K;                         /* rows of pb */
    float *xt = s.xt;
#if defined(ET_HAVE_X86_SIMD)
    if (cfg == &et_f32_gemm_config_avx512)
        channels_last_avx512(x, c, hw, c, xt);
    else
#endif
        channels_last(x, c, hw, xt);
    memset(xt + c * hw, 0, ET_GEMM_NR_MAX * sizeof(float)); /* the last panel reads past */
    for (int64_t ir = 0; ir < M; ir += MR) {
        const int64_t mr = M - ir < MR ? M - ir : MR;
#if defined(ET_HAVE_X86_SIMD)
        /* the panel, pa[k*MR + i] = dy[(ir + i)*K + k] (0 for i >= mr), is dy's rows stored
         * channels-last (the 16 x 16 register transposes; the AVX2 packer works 8 x 8) */
        if (cfg == &et_f32_gemm_config_avx512 && MR <= 16) {
            channels_last_avx512(dy + ir * K, mr, K, MR, pa + ir * K);
            continue;
        }
#endif
        cfg->pack_interleave(MR, mr, K, dy + ir * K, K, pa + ir * K);
    }
    for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++)
            offq[oy * ow + ox] = (int32_t)((oy * p->stride_h * w + ox * p->stride_w) * c);
    for (int64_t q = 0; q < K; q++) offp[q] = (int32_t)(q * NR);
    const float beta = accumulate ? 1.0f : 0.0f;
    /* the product's columns (see dw_unpermute): [0, nfull) the runs' whole panels, then the
     * runs' leftovers of `left` columns each */
    const int64_t full = run / NR * NR, left = run - full, nfull = p->kh * full;
    const int64_t rstep = p->dil_h * w * c; /* window row ky's run starts ky * rstep further */
    for (int64_t jr = 0; jr < N; jr += NR) {
        const int64_t nr = N - jr < NR ? N - jr : NR;
        const float *b;
        const int32_t *off;
        /* columns [jr, jr + nr) as pieces (destination column, offset from the pixel's start,
         * length), the same for every pixel */
        int64_t pd[ET_GEMM_NR_MAX + 1], ps[ET_GEMM_NR_MAX + 1], pl[ET_GEMM_NR_MAX + 1];
        int np_ = 0;
        if (jr < nfull) { /* a whole panel of run jr / full */
            pd[0] = 0, ps[0] = jr / full * rstep + jr % full, pl[0] = nr, np_ = 1;
        } else {
            const int64_t l0 = jr - nfull; /* leftover columns [l0, l0 + nr) */
            for (int64_t j = l0; j < l0 + nr; np_++) {
                const int64_t r = j / left, e = (r + 1) * left;
                const int64_t j1 = e < l0 + nr ? e : l0 + nr;
                pd[np_] = j - l0;
                ps[np_] = r * rstep + full + (j - r * left);
                pl[np_] = j1 - j;
                j = j1;
            }
        }
        if (np_ == 1) {
            b = xt + ps[0];
            off = offq;
        } else {
#if defined(ET_HAVE_X86_SIMD)
            if (cfg == &et_f32_gemm_config_avx512 && np_ <= PACK_PIECES_MAX)
                pack_pieces_avx512(K, xt, offq, pd, ps, pl, np_, pb);
            else if (cfg == &et_f32_gemm_config_avx512 && NR == 32)
                pack_pieces_n_avx512(K, xt, offq, pd, ps, pl, np_, pb);
            else
#endif
                for (int64_t q = 0; q < K; q++) {
                    float *d = pb + q * NR;
                    const float *sq = xt + offq[q];
                    for (int i = 0; i < np_; i++) et_copy_short_(d + pd[i], sq + ps[i], pl[i]);
                    for (int64_t j = nr; j < NR; j++) d[j] = 0.0f;
                }
            b = pb;
            off = offp;
        }
        for (int64_t ir = 0; ir < M; ir += MR) {
            const int64_t mr = M - ir < MR ? M - ir : MR;
            float *ct = dw + ir * N + jr;
            /* the C tile (in L2 between images) towards L1 while the k loop runs */
#if defined(__GNUC__)
            for (int64_t i = 0; i < mr; i++) {
                __builtin_prefetch(ct + i * N);
                __builtin_prefetch(ct + i * N + nr - 1);
            }
#endif
            cfg->ukernel_off(K, pa + ir * K, b, off, ct, N, mr, nr, 1.0f, beta);
        }
    }
}

/* ---- first-layer weight gradient, colt built in blocks (padded plan, AVX-512) -------------
 * The padded plan spends two fifths of LeNet conv1's time building colt (c*kh short copies of
 * kw floats per pixel: im2col_t) before the GEMM dw[OC, 32] (+)= dy[OC, np] * colt[np, 32]. With no
 * padding, dil_w 1, one band and one K block (np <= ET_GEMM_KC) and OC <= FL_MAX_OC, fl_image
 * instead builds colt FL_BLOCK pixels at a time into L1 (fl_build_*: window row t = (ci, ky)
 * of pixel (oy, ox), kw floats at x + (ci*h + ky*dil_h)*w + oy*sh*w + ox*sw, goes to columns
 * [t*kw, (t+1)*kw) by zero-masked loads whose masks are constants of the instantiation: c*kh
 * and kw are template parameters) and runs the rows of dw over each block in passes of at
 * most FL_MAX_ROWS (fl_pass_*), the accumulators kept in a buffer between blocks (stored and
 * reloaded exactly). Each element is the packed GEMM's FMA chain over the pixels in order
 * from 0 and its epilogue with alpha 1 (c = acc, or c_old + acc when accumulating), so the
 * same bits as the colt path -- which the other ISAs keep (tests/test_conv_fast.c). */
#define FL_BLOCK 64
#define FL_MAX_ROWS 14 /* 28 accumulators + the two halves + a broadcast: 31 zmm */
#define FL_MAX_OC 64   /* the accumulator buffer (on the stack): FL_MAX_OC x 32 floats */
#if defined(ET_HAVE_X86_SIMD)
/* colt rows of pixels [q0, q1) (row q - q0 at b + (q - q0) * 32; zeros from column NT*KW on). */
#define FL_BUILD(NT, KW)                                                                          \
    ET_TARGET_AVX512 static void fl_build_##NT##_##KW(const et_conv2d_params *p, const float *x, \
                                                      const int64_t *ps, int64_t q0, int64_t q1, \
                                                      float *b) {                                 \
        const int64_t ow = p->ow, sw = p->stride_w, rstep = p->stride_h * p->w;                   \
        int64_t oy = q0 / ow, ox = q0 % ow;                                                       \
        const float *r[NT];                                                                       \
        for (int t = 0; t < NT; t++) r[t] = x + oy * rstep + ps[t] - t * KW;                      \
        for (int64_t q = q0; q < q1; q++, b += CONV_COLT_PAD) {                                   \
            const int64_t xo = ox * sw;                                                           \
            __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();                            \
            _Pragma("GCC unroll 16") for (int t = 0; t < NT; t++) {                               \
                const uint32_t bits = (uint32_t)((1ull << (t * KW + KW)) - (1ull << (t * KW)));   \
                if (bits & 0xFFFFu)                                                               \
                    b0 = _mm512_or_ps(                                                            \
                        b0, _mm512_maskz_loadu_ps((__mmask16)(bits & 0xFFFFu), r[t] + xo));       \
                if (bits >> 16)                                                                   \
                    b1 = _mm512_or_ps(                                                            \
                        b1, _mm512_maskz_loadu_ps((__mmask16)(bits >> 16), r[t] + xo + 16));      \
            }                                                                                     \
            _mm512_storeu_ps(b, b0);                                                              \
            _mm512_storeu_ps(b + 16, b1);                                                         \
            if (++ox == ow) {                                                                     \
                ox = 0;                                                                           \
                for (int t = 0; t < NT; t++) r[t] += rstep;                                       \
            }                                                                                     \
        }                                                                                         \
    }
FL_BUILD(5, 5)
FL_BUILD(3, 3)
FL_BUILD(9, 3)

/* Row i's two accumulators are named variables (an array of 28 zmm would live in memory). */
#define FL_LOAD(i)                                                                                \
    __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();                        \
    if (i < RR && i < mr && !first) {                                                             \
        c##i##_0 = _mm512_loadu_ps(acc + i * 32);                                                 \
        c##i##_1 = _mm512_loadu_ps(acc + i * 32 + 16);                                            \
    }
#define FL_FMA(i)                                                                                 \
    if (i < RR) {                                                                                 \
        const __m512 ai = _mm512_set1_ps(ar[i][k]);                                               \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);                                             \
        if (TWO) c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);                                    \
    }
/* c = acc (c_old + acc when accumulating) under mask m: the GEMM's epilogue, alpha = beta = 1 */
#define FL_STORE1(d, v, m)                                                                        \
    _mm512_mask_storeu_ps(d, m, accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v) : v)
#define FL_SAVE(i)                                                                                \
    if (i < RR && i < mr && !last) {                                                              \
        _mm512_storeu_ps(acc + i * 32, c##i##_0);                                                 \
        _mm512_storeu_ps(acc + i * 32 + 16, c##i##_1);                                            \
    }                                                                                             \
    if (i < RR && last && i < mr) {                                                               \
        FL_STORE1(c + i * ldc, c##i##_0, m0);                                                     \
        if (TWO) FL_STORE1(c + i * ldc + 16, c##i##_1, m1);                                       \
    }
#define FL_ROWS14(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) OP(12) OP(13)
/* Rows [0, mr) (mr <= R; row i of dy at a + i * lda, rows past mr alias row mr - 1: computed,
 * never stored) over the K pixels of a block (colt rows b): the accumulators of rows < mr
 * start at zero (first) or from acc [mr, 32], and go back to acc or (last) through the
 * epilogue into c [mr, nj] (row stride ldc). TWO: the right half of colt holds columns
 * (nj > 16). */
#define FL_PASS(R, T)                                                                             \
    ET_TARGET_AVX512 static void fl_pass_##R##_##T(int64_t K, const float *a, int64_t lda,       \
                                                   const float *b, float *acc, int first,        \
                                                   int last, float *c, int64_t ldc, int64_t mr,  \
                                                   int64_t nj, int accumulate) {                  \
        enum { RR = R, TWO = T };                                                                 \
        const float *ar[R];                                                                       \
        for (int i = 0; i < R; i++) ar[i] = a + (i < mr ? i : mr - 1) * lda;                      \
        FL_ROWS14(FL_LOAD)                                                                        \
        for (int64_t k = 0; k < K; k++, b += CONV_COLT_PAD) {                                     \
            const __m512 b0 = _mm512_loadu_ps(b), b1 = TWO ? _mm512_loadu_ps(b + 16) : b0;       \
            FL_ROWS14(FL_FMA)                                                                     \
        }                                                                                         \
        const uint32_t cols = (uint32_t)((1ull << nj) - 1u);                                      \
        const __mmask16 m0 = (__mmask16)(cols & 0xFFFFu), m1 = (__mmask16)(cols >> 16);           \
        FL_ROWS14(FL_SAVE)                                                                        \
    }
#define FL_PASSES(R) FL_PASS(R, 0) FL_PASS(R, 1)
FL_PASSES(2) FL_PASSES(4) FL_PASSES(6) FL_PASSES(8) FL_PASSES(10) FL_PASSES(12) FL_PASSES(14)
typedef void fl_pass_fn(int64_t, const float *, int64_t, const float *, float *, int, int,
                        float *, int64_t, int64_t, int64_t, int);
static fl_pass_fn *const fl_passes[2][FL_MAX_ROWS / 2] = { /* [TWO][rows / 2 - 1] */
    {fl_pass_2_0, fl_pass_4_0, fl_pass_6_0, fl_pass_8_0, fl_pass_10_0, fl_pass_12_0, fl_pass_14_0},
    {fl_pass_2_1, fl_pass_4_1, fl_pass_6_1, fl_pass_8_1, fl_pass_10_1, fl_pass_12_1, fl_pass_14_1},
};
typedef void fl_build_fn(const et_conv2d_params *, const float *, const int64_t *, int64_t,
                         int64_t, float *);
/* (c*kh, kw) instantiated: LeNet's conv1 (1, 5x5), 1 x 3x3 and 3 x 3x3 first layers */
static const struct {
    int nt, kw;
    fl_build_fn *build;
} fl_table[] = {{5, 5, fl_build_5_5}, {3, 3, fl_build_3_3}, {9, 3, fl_build_9_3}};
#endif

/* The fl_table row for this call (the AVX-512 config, the shape's (c*kh, kw) instantiated, no
 * padding, dil_w 1, the padded plan's one band and one K block), else -1: the colt path. */
static int fl_pick(const et_conv2d_params *p, const conv_plan *cp) {
#if defined(ET_HAVE_X86_SIMD)
    const et_f32_gemm_config *cfg =
        ((const et_f32_gemm_variant *)ET_VARIANT_PICK(et_f32_gemm_variants))->cfg;
    if (!conv_fast || cfg != &et_f32_gemm_config_avx512 || !cp->dwp_bytes || p->pad_t ||
        p->pad_l || p->pad_b || p->pad_r || p->dil_w != 1 || cp->band != p->oh ||
        cp->np > ET_GEMM_KC || p->oc > FL_MAX_OC)
        return -1;
    for (int e = 0; e < (int)(sizeof fl_table / sizeof fl_table[0]); e++)
        if (fl_table[e].nt == p->c * p->kh && fl_table[e].kw == p->kw) return e;
#else
    (void)p, (void)cp;
#endif
    return -1;
}

#if defined(ET_HAVE_X86_SIMD)
/* dw (s.dwp [OC, 32]) (+)= image (dy, x) with fl_table[e]; colt blocks in s.col. Rows in
 * near-equal passes of at most FL_MAX_ROWS (OC = 20: two of 10). */
static void fl_image(const et_conv2d_params *p, const conv_plan *cp, int e, const float *dy,
                     const float *x, float *dw, int accumulate, conv_slot s) {
    const int64_t M = p->oc, np = cp->np, nj = cp->kg;
    float acc[FL_MAX_OC * CONV_COLT_PAD];
    int64_t ps[CONV_COLT_PAD];
    for (int64_t ci = 0; ci < p->c; ci++)
        for (int64_t ky = 0; ky < p->kh; ky++)
            ps[ci * p->kh + ky] = (ci * p->h + ky * p->dil_h) * p->w;
    const int64_t passes = (M + FL_MAX_ROWS - 1) / FL_MAX_ROWS;
    const int64_t rows = ((M + passes - 1) / passes + 1) / 2 * 2;
    for (int64_t q0 = 0; q0 < np; q0 += FL_BLOCK) {
        const int64_t q1 = np - q0 < FL_BLOCK ? np : q0 + FL_BLOCK;
        fl_table[e].build(p, x, ps, q0, q1, s.col);
        for (int64_t o0 = 0; o0 < M; o0 += rows) {
            const int64_t mr = M - o0 < rows ? M - o0 : rows;
            fl_passes[nj > 16][(mr + 1) / 2 - 1](q1 - q0, dy + o0 * np + q0, np, s.col,
                                                  acc + o0 * CONV_COLT_PAD, q0 == 0, q1 == np,
                                                  dw + o0 * CONV_COLT_PAD, CONV_COLT_PAD, mr,
                                                  nj, accumulate);
        }
    }
}
#endif

/* dw = (accumulate ? dw : 0) + contribution of this image; dw is s.dwp [OC, ldt] when the
 * plan pads the transposed columns. */
static et_status bwd_weight_image(const et_conv2d_params *p, const conv_plan *cp, const float *dy,
                                  const float *x, float *dw, int accumulate, conv_slot s, int nth) {
    const int64_t ow = p->ow, np = cp->np;
    const int pad = cp->dwp_bytes != 0;
    const int64_t n_out = pad ? cp->ldt : cp->kg; /* GEMM columns = dw's row stride */
    if (pad) dw = s.dwp;
#if defined(ET_HAVE_X86_SIMD)
    if (cp->fl) { /* the call checked fl_pick */
        fl_image(p, cp, cp->fl - 1, dy, x, dw, accumulate, s);
        return ET_OK;
    }
#endif
    if (cp->hwc) { /* the call checked hwc_offb_ok */
        hwc_offb_image(p, cp, dy, x, dw, accumulate, s);
        return ET_OK;
    }
    for (int64_t oy0 = 0; oy0 < p->oh; oy0 += cp->band) {
        int64_t oy1 = oy0 + cp->band < p->oh ? oy0 + cp->band : p->oh;
        int64_t pt = (oy1 - oy0) * ow, p0 = oy0 * ow;
        float beta = (accumulate || oy0 > 0) ? 1.0f : 0.0f;
        /* dw_g += dy_g[:, band] * op(B): B = the band's transposed columns [pt, ldt], read
         * in place, or its columns [kall, pt] (x itself for 1x1), read transposed */
        const int tb = !cp->colt;
        int64_t ldb, gstep;
        const float *B;
        if (cp->colt) {
            im2col_t(p, x, oy0, oy1, s.col, cp->ldt);
            /* zero padding columns (whole panels, finite products): once per call of
             * bwd_weight_images, at its first image's first band (the longest); im2col_t
             * leaves them alone */
            if (pad && !accumulate && oy0 == 0)
                for (int64_t q = 0; q < pt; q++) {
                    float *z = s.col + q * cp->ldt;
                    for (int64_t j = cp->kall; j < cp->ldt; j++) z[j] = 0.0f;
                }
            B = s.col, ldb = cp->ldt, gstep = cp->kg;
        } else {
            B = band_columns(p, cp, x, oy0, oy1, s.col, &ldb);
            gstep = cp->kg * ldb;
        }
        for (int64_t g = 0; g < p->groups; g++) {
            et_status st = et_f32_gemm(0, tb, cp->ocg, n_out, pt, 1.0f,
                                       dy + g * cp->ocg * np + p0, np, B + g * gstep, ldb, beta,
                                       dw + g * cp->ocg * n_out, n_out, s.gws, s.gws_bytes, nth);
            if (st != ET_OK) return st;
        }
    }
    return ET_OK;
}

/* dw = the sum of images [i0, i1) (in order), with the slot s. */
static et_status bwd_weight_images(const et_conv2d_params *p, const conv_plan *cp, const float *dy,
                                   const float *x, int64_t i0, int64_t i1, float *dw, conv_slot s,
                                   int nth) {
    const int64_t xs = p->c * p->h * p->w, ys = p->oc * cp->np;
    for (int64_t i = i0; i < i1; i++) {
        et_status st = bwd_weight_image(p, cp, dy + i * ys, x + i * xs, dw, i > i0, s, nth);
        if (st != ET_OK) return st;
    }
    if (cp->dwp_bytes && i1 > i0) /* the padded dw, unpadded */
        for (int64_t o = 0; o < p->oc; o++)
            memcpy(dw + o * cp->kg, s.dwp + o * cp->ldt, (size_t)cp->kg * sizeof(float));
    return ET_OK;
}

static void note_error(int *err, et_status st) {
    if (st != ET_OK) __atomic_store_n(err, (int)st, __ATOMIC_RELAXED);
}

/* ---- batched pointwise path --------------------------------------------------------- */
/* dst[r, i*np + j] = src[i, r, j] (src [n, rows, np] -> dst [rows, n*np]). */
typedef struct rows_job {
    const float *src;
    float *dst;
    int64_t n, rows, np;
    const float *b;
    const et_conv2d_params *epi; /* scatter: the forward whose epilogue applies; NULL = none */
} rows_job;

static void gather_range(void *ctx, int64_t r0, int64_t r1, int tid) {
    const rows_job *k = (const rows_job *)ctx;
    const float *ET_RESTRICT src = k->src;
    float *ET_RESTRICT dst = k->dst;
    const int64_t n = k->n, rows = k->rows, np = k->np, nn = n * np;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        float *d = dst + r * nn;
        const float *s = src + r * np;
        if (np == 1) {
            for (int64_t i = 0; i < n; i++) d[i] = s[i * rows];
        } else {
            for (int64_t i = 0; i < n; i++)
                memcpy(d + i * np, s + i * rows * np, (size_t)np * sizeof(float));
        }
    }
}

static void gather_rows(const float *ET_RESTRICT src, int64_t n, int64_t rows, int64_t np,
                        float *ET_RESTRICT dst, int nth) {
    rows_job k = {src, dst, n, rows, np, NULL, NULL};
    et_parallel_ranges(rows, et_split_chunks(rows, nth), nth, gather_range, &k);
}

/* dst[i, r, j] = epilogue(src[r, i*np + j]) (the inverse of gather_rows, with the forward's
 * epilogue et_conv_epilogue_ -- bias, fused BatchNorm, activation -- when epi has one). */
#define SCATTER_ROW_EPI 256
static void scatter_range(void *ctx, int64_t r0, int64_t r1, int tid) {
    const rows_job *k = (const rows_job *)ctx;
    const float *ET_RESTRICT src = k->src;
    float *ET_RESTRICT dst = k->dst;
    const float *b = k->b;
    const int64_t n = k->n, rows = k->rows, np = k->np, nn = n * np;
    const int fuse = k->epi && et_conv_has_epilogue_(k->epi, b);
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        const float *s = src + r * nn;
        float *d = dst + r * np;
        /* small planes: the epilogue once over the row's n * np values (the GEMM output in
         * the workspace, written in place) instead of once per image */
        const int row_epi = fuse && np < SCATTER_ROW_EPI;
        if (row_epi) et_conv_epilogue_(k->epi, r, b ? b[r] : 0.0f, (float *)(uintptr_t)s, nn);
        if (np == 1 && (!fuse || row_epi)) {
            for (int64_t i = 0; i < n; i++) d[i * rows] = s[i];
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            float *di = d + i * rows * np;
            memcpy(di, s + i * np, (size_t)np * sizeof(float));
            if (fuse && !row_epi) et_conv_epilogue_(k->epi, r, b ? b[r] : 0.0f, di, np);
        }
    }
}

static void scatter_rows(const float *ET_RESTRICT src, int64_t n, int64_t rows, int64_t np,
                         float *ET_RESTRICT dst, const float *b, const et_conv2d_params *epi, int nth) {
    rows_job k = {src, dst, n, rows, np, b, epi};
    et_parallel_ranges(rows, et_split_chunks(rows, nth), nth, scatter_range, &k);
}

/* Y = op(W) X over the whole batch at once (a 1x1, stride-1 convolution): the forward
 * (op = W, rows c -> oc, fused bias + activation) or the input gradient (op = W^T, rows
 * oc -> c). */
static et_status pointwise_batched(const et_conv2d_params *p, const conv_plan *cp, int trans_w,
                                   const float *src, const float *w, const float *b, float *dst,
                                   char *base, int nth) {
    const int64_t nn = p->n * cp->np;
    const int64_t rin = trans_w ? p->oc : p->c, rout = trans_w ? p->c : p->oc;
    float *X = (float *)base, *Y = (float *)(base + cp->in_bytes);
    void *gws = cp->gemm_bytes ? base + cp->in_bytes + cp->out_bytes : NULL;
    gather_rows(src, p->n, rin, cp->np, X, nth);
    et_status st = et_f32_gemm(trans_w, 0, rout, nn, rin, 1.0f, w, p->c, X, nn, 0.0f, Y, nn, gws,
                               cp->gemm_bytes, nth);
    if (st != ET_OK) return st;
    scatter_rows(Y, p->n, rout, cp->np, dst, b, trans_w ? NULL : p, nth);
    return ET_OK;
}

static et_status bwd_weight_batched(const et_conv2d_params *p, const conv_plan *cp,
                                    const float *dy, const float *x, float *dw, char *base,
                                    int nth) {
    const int64_t nn = p->n * cp->np;
    float *X = (float *)base, *DY = (float *)(base + cp->in_bytes);
    void *gws = cp->gemm_bytes ? base + cp->in_bytes + cp->out_bytes : NULL;
    /* packed straight from the images when the GEMM would pack (the same bits, no gather) */
    if (!et_f32_gemm_is_small(p->oc, p->c, nn))
        return et_f32_gemm_nchw_wgrad(p->oc, p->c, p->n, cp->np, dy, p->oc * cp->np, x,
                                      p->c * cp->np, dw, p->c, gws, cp->gemm_bytes, nth);
    gather_rows(x, p->n, p->c, cp->np, X, nth);
    gather_rows(dy, p->n, p->oc, cp->np, DY, nth);
    return et_f32_gemm(0, 1, p->oc, p->c, nn, 1.0f, DY, nn, X, nn, 0.0f, dw, p->c, gws,
                       cp->gemm_bytes, nth);
}

/* ---- pointwise NCHW path (pw_plan) -------------------------------------------------- */
typedef struct pw_epi {
    const et_conv2d_params *p;
    const float *b;
} pw_epi;

/* The forward's epilogue (bias, fused BatchNorm, activation: et_conv_epilogue_) on a final
 * tile of y (rows row0.. of the output). */
static inline void pw_epilogue_body(void *ctx, int64_t row0, int64_t rows, float *c, int64_t ldc,
                                    int64_t ncols) {
    const pw_epi *e = (const pw_epi *)ctx;
    for (int64_t r = 0; r < rows; r++)
        et_conv_epilogue_(e->p, row0 + r, e->b ? e->b[row0 + r] : 0.0f, c + r * ldc, ncols);
}
static void pw_epilogue(void *ctx, int64_t row0, int64_t rows, float *c, int64_t ldc,
                        int64_t ncols) {
    pw_epilogue_body(ctx, row0, rows, c, ldc, ncols);
}
#if defined(ET_HAVE_X86_SIMD)
/* The same elementwise code compiled for AVX-512 (tiles of 32-float rows: two vectors a row
 * instead of eight SSE ones); elementwise, so the same bits. */
ET_TARGET_AVX512 static void pw_epilogue_avx512(void *ctx, int64_t row0, int64_t rows, float *c,
                                                int64_t ldc, int64_t ncols) {
    pw_epilogue_body(ctx, row0, rows, c, ldc, ncols);
}
#endif

/* The epilogue compiled for the ISA in use (a variant table, variant_internal.h). */
typedef struct pw_epi_variant {
    et_variant_head head;
    et_f32_gemm_epilogue *fn;
} pw_epi_variant;
static const pw_epi_variant pw_epi_variants[] = {
    {{ET_ISA_REF, "ref"}, pw_epilogue},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512, "avx512"}, pw_epilogue_avx512},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};

/* The implicit-im2col forward's GEMM (fwd_image), with the bias + activation applied per
 * final tile while it is in L1 (elementwise: the same bits). */
static et_status fwd_implicit_gemm(const et_conv2d_params *p, const conv_plan *cp,
                                   const void *pw, conv_slot s, const float *b, float *y) {
    pw_epi e = {p, b};
    const pw_epi_variant *ev = (const pw_epi_variant *)ET_VARIANT_PICK(pw_epi_variants);
    return et_f32_gemm_pa_offb(cp->ocg, cp->np, cp->kg, pw, s.col, s.off, y, cp->np,
                               et_conv_has_epilogue_(p, b) ? ev->fn : NULL, &e);
}

/* The epilogue et_conv_epilogue_ as a GEMM row epilogue, which the GEMM may apply in
 * registers (the same bits): 1, or 0 for activations it has no clamp for. */
static int pw_rowepi(const et_conv2d_params *p, const float *b, et_f32_gemm_rowepi *r) {
    const int bn = p->bn_scale != NULL;
    *r = (et_f32_gemm_rowepi){b, p->bn_scale, p->bn_shift, 0, ET_GEMM_CLAMP_NONE};
    switch (p->act) {
    case ET_ACT_NONE: return 1; /* a bias only when not 0, with or without BatchNorm */
    case ET_ACT_RELU: /* et_conv_bias_act_ always adds the bias */
        r->bias_always = !bn;
        r->clamp = ET_GEMM_CLAMP_RELU;
        return 1;
    case ET_ACT_RELU6: /* after BatchNorm: the act op's relu6 (-0 -> +0) */
        r->bias_always = !bn;
        r->clamp = bn ? ET_GEMM_CLAMP_RELU6_LE : ET_GEMM_CLAMP_RELU6;
        return 1;
    default: return 0;
    }
}

/* dst_i = op(W) src_i for every image (op = W for the forward, with bias + activation;
 * W^T for the input gradient). */
static et_status pointwise_nchw(const et_conv2d_params *p, const conv_plan *cp, int trans_w,
                                const float *src, const float *w, const float *b, float *dst,
                                char *base, int nth) {
    const int64_t rin = trans_w ? p->oc : p->c, rout = trans_w ? p->c : p->oc, np = cp->np;
    const int fuse = !trans_w && et_conv_has_epilogue_(p, b);
    pw_epi e = {p, b};
    const pw_epi_variant *ev = (const pw_epi_variant *)ET_VARIANT_PICK(pw_epi_variants);
    et_f32_gemm_rowepi re;
    const int rows = fuse && pw_rowepi(p, b, &re);
    et_f32_gemm_epilogue *epi = rows ? et_f32_gemm_rowepi_apply : fuse ? ev->fn : NULL;
    void *ctx = rows ? (void *)&re : (void *)&e;
    if (cp->pw_a && !cp->pre)
        return et_f32_gemm_nchw_a(trans_w, rout, rin, p->n, np, w, p->c, src, rin * np, dst,
                                  rout * np, epi, ctx, base, cp->pw_a, nth);
    if (!cp->pre) {
        et_status st = et_f32_gemm_pack_a_threads(trans_w, rout, rin, w, p->c, base, cp->pa_one, nth);
        if (st != ET_OK) return st;
    }
    /* the GEMM's workspace after the packed weights (none in ws when pw_a: pre holds them) */
    char *gws = cp->pw_a ? base : base + cp->pa_bytes;
    return et_f32_gemm_nchw(trans_w, rout, rin, p->n, np, cp->pre ? cp->pre : base, src, rin * np,
                            dst, rout * np, epi, ctx, gws, cp->gemm_bytes, nth);
}

/* ---- per-image driver (forward and input gradient) ---------------------------------- */
typedef et_status (*image_fn)(const et_conv2d_params *p, const conv_plan *cp, const float *src,
                              const float *w, const float *b, float *dst, conv_slot s,
                              const char *base, int nth);

typedef struct image_job {
    const et_conv2d_params *p;
    const conv_plan *cp;
    image_fn fn;
    const float *src;
    int64_t ss;
    const float *w, *b;
    float *dst;
    int64_t ds;
    char *base;
    int err;
} image_job;

/* Image i, in the workspace slot of the thread running it. */
static void image_chunk(void *ctx, int64_t i, int tid) {
    image_job *k = (image_job *)ctx;
    conv_slot s = slot_at(k->cp, k->base, tid);
    note_error(&k->err, k->fn(k->p, k->cp, k->src + i * k->ss, k->w, k->b, k->dst + i * k->ds, s,
                              k->base, 1));
}

/* Runs fn on each image (src stride ss, dst stride ds): one after the other with the GEMM
 * threaded, or images in parallel (batch_par), each thread in its own workspace slot. */
static et_status per_image(const et_conv2d_params *p, const conv_plan *cp, image_fn fn,
                           const float *src, int64_t ss, const float *w, const float *b,
                           float *dst, int64_t ds, char *base, int nthreads) {
    if (!cp->batch_par) {
        conv_slot s = slot_at(cp, base, 0);
        for (int64_t i = 0; i < p->n; i++) {
            et_status st = fn(p, cp, src + i * ss, w, b, dst + i * ds, s, base, cp->gemm_threads);
            if (st != ET_OK) return st;
        }
        return ET_OK;
    }
    image_job k = {p, cp, fn, src, ss, w, b, dst, ds, base, ET_OK};
    et_parallel_for(p->n, nthreads, image_chunk, &k);
    return (et_status)k.err;
}

/* Plans one call and checks its workspace; *base is the workspace's aligned start (NULL when
 * the plan needs none). */
static et_status plan_in(const et_conv2d_params *p, int kind, int nthreads, void *ws,
                         size_t ws_bytes, conv_plan *cp, char **base) {
    conv_plan_make(p, kind, nthreads, cp);
    if (cp->total && (!ws || ws_bytes < cp->total)) return ET_ERR_WORKSPACE;
    *base = cp->total ? ws_base(ws) : NULL;
    return ET_OK;
}

/* The forward (CONV_FWD: x -> y, bias + activation) and the input gradient (CONV_BWD_INPUT:
 * dy -> dx, W transposed) of a non-depthwise convolution: the same plan, packing and drivers.
 * pre: the weights packed before (fwd_packed), or NULL to pack them into ws. */
static et_status data_pass(const et_conv2d_params *p, int kind, const float *src, const float *w,
                           const void *pre, const float *b, float *dst, void *ws, size_t ws_bytes,
                           int nthreads) {
    const int bwd = kind == CONV_BWD_INPUT;
    conv_plan cp;
    char *base;
    if (plan_in(p, kind, nthreads, ws, ws_bytes, &cp, &base) != ET_OK) return ET_ERR_WORKSPACE;
    cp.pre = cp.pa_bytes ? (const char *)pre : NULL;
    /* few output channels: without the GEMM, the same bits (conv2d_pointwise.c) */
    if (!bwd && conv_fast && et_f32_conv2d_pw_direct_fwd(p, src, w, b, dst, nthreads) == ET_OK)
        return ET_OK;
    if (cp.pw) return pointwise_nchw(p, &cp, bwd, src, w, b, dst, base, nthreads);
    if (cp.batched) return pointwise_batched(p, &cp, bwd, src, w, b, dst, base, nthreads);
    et_status pst = cp.pre ? ET_OK : pack_weights(p, &cp, w, base, bwd);
    if (pst != ET_OK) return pst;
    const int64_t xs = p->c * p->h * p->w, ys = p->oc * cp.np;
    return per_image(p, &cp, bwd ? bwd_input_image : fwd_image, src, bwd ? ys : xs, w, b, dst,
                     bwd ? xs : ys, base, nthreads);
}

/* ---- public entry points --------------------------------------------------------------- */
et_status et_f32_conv2d_fwd(const et_conv2d_params *p, const float *x, const float *w,
                            const float *b, float *y, void *ws, size_t ws_bytes, int nthreads) {
    if (!params_ok(p) || !x || !w || !y) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    if (et_conv2d_is_depthwise(p)) return et_f32_dwconv2d_fwd(p, x, w, b, y, nthreads);
    return data_pass(p, CONV_FWD, x, w, NULL, b, y, ws, ws_bytes, nthreads);
}

et_status et_f32_conv2d_bwd_input(const et_conv2d_params *p, const float *dy, const float *w,
                                  float *dx, void *ws, size_t ws_bytes, int nthreads) {
    if (!params_ok(p) || !dy || !w || !dx) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    if (et_conv2d_is_depthwise(p)) return et_f32_dwconv2d_bwd_input(p, dy, w, dx, nthreads);
    return data_pass(p, CONV_BWD_INPUT, dy, w, NULL, NULL, dx, ws, ws_bytes, nthreads);
}

/* ---- forward with weights packed before the call (an eval program's cache) ------------
 * The packed bytes are what data_pass packs into the start of its workspace on every call
 * (pw path: op(W) once; im2col path: one matrix per group, pa_one bytes apart), for the ISA
 * chosen at packing time; they depend on the shapes only, not on the thread count. */
size_t et_f32_conv2d_fwd_packed_bytes(const et_conv2d_params *p) {
    if (!params_ok(p) || et_conv2d_is_depthwise(p)) return 0;
    conv_plan cp;
    conv_plan_make(p, CONV_FWD, 1, &cp);
    return cp.pa_bytes;
}

et_status et_f32_conv2d_fwd_pack(const et_conv2d_params *p, const float *w, void *pk,
                                 size_t pk_bytes, int nthreads) {
    if (!params_ok(p) || !w || !pk) return ET_ERR_ARG;
    if (et_conv2d_is_depthwise(p)) return ET_ERR_ARG;
    conv_plan cp;
    conv_plan_make(p, CONV_FWD, 1, &cp);
    if (!cp.pa_bytes || pk_bytes < cp.pa_bytes) return ET_ERR_WORKSPACE;
    if (cp.pw)
        return et_f32_gemm_pack_a_threads(0, p->oc, p->c, w, p->c, pk, cp.pa_one,
                                          nthreads < 1 ? 1 : nthreads);
    return pack_weights(p, &cp, w, (char *)pk, 0);
}

/* 1 if pk holds packed weights of p's plan for the ISA in use (each group's header). */
static int packed_current(const et_conv2d_params *p, const char *pk) {
    conv_plan cp;
    conv_plan_make(p, CONV_FWD, 1, &cp);
    if (!cp.pa_bytes) return 0;
    for (int64_t g = 0; g < p->groups; g++)
        if (!et_f32_gemm_pa_current(pk + (size_t)g * cp.pa_one, 0, cp.ocg, cp.kg)) return 0;
    return 1;
}

et_status et_f32_conv2d_fwd_packed(const et_conv2d_params *p, const float *x, const float *w,
                                   const void *pk, const float *b, float *y, void *ws,
                                   size_t ws_bytes, int nthreads) {
    if (!params_ok(p) || !x || !w || !y) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    if (et_conv2d_is_depthwise(p)) return et_f32_dwconv2d_fwd(p, x, w, b, y, nthreads);
    const void *pre = pk && packed_current(p, (const char *)pk) ? pk : NULL;
    return data_pass(p, CONV_FWD, x, w, pre, b, y, ws, ws_bytes, nthreads);
}

typedef struct wchunk_job {
    const et_conv2d_params *p;
    const conv_plan *cp;
    const float *dy, *x;
    float *dw;
    char *base, *parts;
    int64_t xs, ys, wsz;
    int gemm_threads;
    int err;
    float *dwo; /* hwc: dw's columns put back here (wchunk_combine_rows) */
} wchunk_job;

static float *wchunk_dst(const wchunk_job *k, int64_t c) {
    return c == 0 ? k->dw : (float *)(k->parts + (size_t)(c - 1) * k->cp->part_bytes);
}

/* Chunk c: its images summed in order (GEMM single-threaded when chunks run in parallel). */
static void wchunk_sum(void *ctx, int64_t c, int tid) {
    wchunk_job *k = (wchunk_job *)ctx;
    int64_t i0, i1;
    et_thread_range(k->p->n, (int)c, k->cp->wchunks, &i0, &i1);
    conv_slot s = slot_at(k->cp, k->base, tid);
    const int nth = k->cp->batch_par ? 1 : k->gemm_threads;
    note_error(&k->err, bwd_weight_images(k->p, k->cp, k->dy, k->x, i0, i1, wchunk_dst(k, c), s, nth));
}

/* d[j] += s[j], j < n (not inlined: in the combining loops it kept its bound in memory) */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void add_to(float *ET_RESTRICT d, const float *ET_RESTRICT s, int64_t n) {
    for (int64_t j = 0; j < n; j++) d[j] += s[j];
}

/* dw[j] = ((dw[j] + part1[j]) + part2[j]) + ... for j in [j0, j1), in blocks of
 * WCHUNK_BLOCK floats that stay in L1 while every partial is added (dw then crosses L2 once,
 * not once per partial). */
#define WCHUNK_BLOCK 1024
static void wchunk_combine(void *ctx, int64_t j0, int64_t j1, int tid) {
    const wchunk_job *k = (const wchunk_job *)ctx;
    (void)tid;
    for (int64_t b0 = j0; b0 < j1; b0 += WCHUNK_BLOCK) {
        const int64_t b1 = j1 - b0 < WCHUNK_BLOCK ? j1 : b0 + WCHUNK_BLOCK;
        for (int64_t c = 1; c < k->cp->wchunks; c++)
            add_to(k->dw + b0, wchunk_dst(k, c) + b0, b1 - b0);
    }
}

/* hwc: rows [o0, o1) of dw combined as above, then their columns put back (dw_unpermute), in
 * one pass of the threads. */
static void wchunk_combine_rows(void *ctx, int64_t o0, int64_t o1, int tid) {
    const wchunk_job *k = (const wchunk_job *)ctx;
    const int64_t kg = k->cp->kg;
    wchunk_combine(ctx, o0 * kg, o1 * kg, tid);
    et_conv2d_params rows = *k->p;
    rows.oc = o1 - o0;
    dw_unpermute(&rows, k->dw + o0 * kg, k->dwo + o0 * kg, hwc_nr());
}

et_status et_f32_conv2d_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x,
                                   float *dw, void *ws, size_t ws_bytes, int nthreads) {
    if (!params_ok(p) || !dy || !x || !dw) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    if (et_conv2d_is_depthwise(p)) return et_f32_dwconv2d_bwd_weight(p, dy, x, dw, nthreads);
    conv_plan cp;
    char *base;
    if (plan_in(p, CONV_BWD_WEIGHT, nthreads, ws, ws_bytes, &cp, &base) != ET_OK) return ET_ERR_WORKSPACE;
    if (cp.batched) return bwd_weight_batched(p, &cp, dy, x, dw, base, nthreads);
    const int64_t xs = p->c * p->h * p->w, ys = p->oc * cp.np, wsz = p->oc * cp.kg;
    /* hwc: dw is computed with its columns permuted in the workspace's tail, then put back */
    float *dwo = dw;
    cp.hwc = conv_fast && hwc_offb_ok(p, &cp, cp.batch_par ? 1 : cp.gemm_threads);
    cp.fl = fl_pick(p, &cp) + 1;
    if (cp.hwc) dw = (float *)(base + cp.total - CONV_ALIGN - cp.perm_bytes);
    if (cp.wchunks == 1) {
        et_status st =
            bwd_weight_images(p, &cp, dy, x, 0, p->n, dw, slot_at(&cp, base, 0), cp.gemm_threads);
        if (st == ET_OK && cp.hwc) dw_unpermute(p, dw, dwo, hwc_nr());
        return st;
    }
    /* Chunk c (a fixed range of images) sums its images into dw (c = 0) or its partial; the
     * partials are then added in chunk order: the same bits for every thread count. */
    wchunk_job k = {p, &cp, dy, x, dw, base, base + cp.pa_bytes + (size_t)cp.nslots * cp.slot_bytes,
                    xs, ys, wsz, cp.gemm_threads, ET_OK, dwo};
    et_parallel_for(cp.wchunks, cp.batch_par ? nthreads : 1, wchunk_sum, &k);
    if (k.err != ET_OK) return (et_status)k.err;
    if (cp.hwc)
        et_parallel_ranges(p->oc, et_split_chunks(p->oc, nthreads), nthreads, wchunk_combine_rows,
                           &k);
    else
        et_parallel_ranges(wsz, et_split_chunks(wsz, nthreads), nthreads, wchunk_combine, &k);
    return ET_OK;
}

/* Bias gradient db[o] = sum over images i of s(i, o), s = the float sum of dy's plane (i, o)
 * (8 lanes + tail, fixed order), added in image order in double. The planes' sums are split
 * over the flat plane index i * oc + o, in address order like the elementwise kernel that
 * wrote dy (each thread reads mostly what it wrote), into a buffer of BIAS_BUF sums; the
 * totals then add them in image order: the same bits for every thread count and split. */
#define BIAS_BUF 4096
#define BIAS_MAX_OC 512 /* more channels: one channel range per chunk, all images */

typedef struct bias_job {
    const et_conv2d_params *p;
    const float *dy;
    float *db;
    float *sums; /* plane sums of images [i0, ...), flat (i - i0) * oc + o */
    int64_t i0;
} bias_job;

static inline float plane_sum(const float *r, int64_t np) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= np; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += r[j + k];
    float s = 0.0f;
    for (; j < np; j++) s += r[j];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

/* Planes [f0, f1) of the block of images starting at i0 -> sums. */
static void bias_plane_range(void *ctx, int64_t f0, int64_t f1, int tid) {
    const bias_job *k = (const bias_job *)ctx;
    const int64_t np = k->p->oh * k->p->ow, oc = k->p->oc;
    const float *dy = k->dy + k->i0 * oc * np;
    (void)tid;
    for (int64_t f = f0; f < f1; f++) k->sums[f] = plane_sum(dy + f * np, np);
}

/* Channels [o0, o1), all images (the many-channel case). */
static void bias_grad_range(void *ctx, int64_t o0, int64_t o1, int tid) {
    const bias_job *k = (const bias_job *)ctx;
    const int64_t np = k->p->oh * k->p->ow, oc = k->p->oc, n = k->p->n;
    (void)tid;
    for (int64_t o = o0; o < o1; o++) {
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) total += plane_sum(k->dy + (i * oc + o) * np, np);
        k->db[o] = (float)total;
    }
}

et_status et_f32_conv2d_bwd_bias(const et_conv2d_params *p, const float *dy, float *db, int nthreads) {
    if (!params_ok(p) || !dy || !db) return ET_ERR_ARG;
    if (nthreads < 1) nthreads = 1;
    const int64_t oc = p->oc, n = p->n;
    bias_job k = {p, dy, db, NULL, 0};
    if (oc > BIAS_MAX_OC) {
        et_parallel_ranges(oc, et_split_chunks(oc, nthreads), nthreads, bias_grad_range, &k);
        return ET_OK;
    }
    float sums[BIAS_BUF];
    double total[BIAS_MAX_OC];
    const int64_t nb = BIAS_BUF / oc; /* images per block, >= 8 */
    for (int64_t o = 0; o < oc; o++) total[o] = 0.0;
    k.sums = sums;
    for (int64_t i0 = 0; i0 < n; i0 += nb) {
        const int64_t m = n - i0 < nb ? n - i0 : nb;
        k.i0 = i0;
        et_parallel_ranges(m * oc, et_split_chunks(m * oc, nthreads), nthreads, bias_plane_range, &k);
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = 0; o < oc; o++) total[o] += sums[i * oc + o];
    }
    for (int64_t o = 0; o < oc; o++) db[o] = (float)total[o];
    return ET_OK;
}

/* ---- naive references ------------------------------------------------------------------ */
et_status et_f32_conv2d_fwd__ref(const et_conv2d_params *p, const float *x, const float *w,
                                 const float *b, float *y) {
    if (!params_ok(p) || !x || !w || !y) return ET_ERR_ARG;
    const int64_t cg = p->c / p->groups, ocg = p->oc / p->groups;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t o = 0; o < p->oc; o++) {
            int64_t g = o / ocg;
            for (int64_t oy = 0; oy < p->oh; oy++)
                for (int64_t ox = 0; ox < p->ow; ox++) {
                    double acc = 0.0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t ky = 0; ky < p->kh; ky++) {
                            int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                            if (iy < 0 || iy >= p->h) continue;
                            for (int64_t kx = 0; kx < p->kw; kx++) {
                                int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                                if (ix < 0 || ix >= p->w) continue;
                                acc += (double)x[((i * p->c + g * cg + ci) * p->h + iy) * p->w + ix] *
                                       (double)w[((o * cg + ci) * p->kh + ky) * p->kw + kx];
                            }
                        }
                    float *yo = y + ((i * p->oc + o) * p->oh + oy) * p->ow + ox;
                    if (p->bn_scale) { /* the fused BatchNorm: the epilogue's bits */
                        *yo = (float)acc;
                        et_conv_epilogue_(p, o, b ? b[o] : 0.0f, yo, 1);
                        continue;
                    }
                    *yo = et_conv_act_(p->act, p->act_alpha, (float)acc + (b ? b[o] : 0.0f));
                }
        }
    return ET_OK;
}

et_status et_f32_conv2d_bwd_input__ref(const et_conv2d_params *p, const float *dy, const float *w,
                                       float *dx) {
    if (!params_ok(p) || !dy || !w || !dx) return ET_ERR_ARG;
    const int64_t cg = p->c / p->groups, ocg = p->oc / p->groups;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t c = 0; c < p->c; c++) {
            int64_t g = c / cg, ci = c % cg;
            for (int64_t iy = 0; iy < p->h; iy++)
                for (int64_t ix = 0; ix < p->w; ix++) {
                    double acc = 0.0;
                    for (int64_t o = g * ocg; o < (g + 1) * ocg; o++)
                        for (int64_t ky = 0; ky < p->kh; ky++) {
                            int64_t ty = iy + p->pad_t - ky * p->dil_h;
                            if (ty < 0 || ty % p->stride_h != 0 || ty / p->stride_h >= p->oh) continue;
                            for (int64_t kx = 0; kx < p->kw; kx++) {
                                int64_t tx = ix + p->pad_l - kx * p->dil_w;
                                if (tx < 0 || tx % p->stride_w != 0 || tx / p->stride_w >= p->ow) continue;
                                acc += (double)dy[((i * p->oc + o) * p->oh + ty / p->stride_h) * p->ow +
                                                  tx / p->stride_w] *
                                       (double)w[((o * cg + ci) * p->kh + ky) * p->kw + kx];
                            }
                        }
                    dx[((i * p->c + c) * p->h + iy) * p->w + ix] = (float)acc;
                }
        }
    return ET_OK;
}

et_status et_f32_conv2d_bwd_weight__ref(const et_conv2d_params *p, const float *dy, const float *x,
                                        float *dw) {
    if (!params_ok(p) || !dy || !x || !dw) return ET_ERR_ARG;
    const int64_t cg = p->c / p->groups, ocg = p->oc / p->groups;
    for (int64_t o = 0; o < p->oc; o++) {
        int64_t g = o / ocg;
        for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t ky = 0; ky < p->kh; ky++)
                for (int64_t kx = 0; kx < p->kw; kx++) {
                    double acc = 0.0;
                    for (int64_t i = 0; i < p->n; i++)
                        for (int64_t oy = 0; oy < p->oh; oy++) {
                            int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                            if (iy < 0 || iy >= p->h) continue;
                            for (int64_t ox = 0; ox < p->ow; ox++) {
                                int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                                if (ix < 0 || ix >= p->w) continue;
                                acc += (double)dy[((i * p->oc + o) * p->oh + oy) * p->ow + ox] *
                                       (double)x[((i * p->c + g * cg + ci) * p->h + iy) * p->w + ix];
                            }
                        }
                    dw[((o * cg + ci) * p->kh + ky) * p->kw + kx] = (float)acc;
                }
    }
    return ET_OK;
}
