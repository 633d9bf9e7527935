/* edgetrain — pointwise (1x1, stride 1, no padding) NCHW forward without the GEMM, for a
 * handful of output channels (MobileNetV2's projection convs to 16, 24 and 32 channels).
 *
 * y[i, o, j] = epilogue(sum_k w[o, k] * x[i, k, j]) for the pixels j of image i. The GEMM
 * (pointwise_nchw in conv2d.c) runs such products on its 14-row microkernel, which for 16,
 * 24 or 32 rows computes 28 or 42 (the padding rows are wasted work) and packs B first. Here a
 * tile of PWD_ROWS output channels x PWD_VECS 16-pixel vectors is one register block: per k
 * the tile's pixels of input row k are loaded once and multiplied by PWD_ROWS broadcast
 * weights. A unit (one thread's piece) is PWD_SPAN pixels of one image, all output channels,
 * done a channel block at a time so each output row gets PWD_SPAN contiguous floats (tiles of
 * single vector sets wrote 16 .. 32 rows a few cache lines each: 2x slower); the epilogue runs
 * on a channel block's rows while they are in L1.
 * Bits: those of the GEMM's packed path for K <= ET_GEMM_KC (one K block): per output one FMA
 * chain from +0 over k ascending, then the GEMM's alpha = 1 multiply (exact, so left out), then
 * et_conv_epilogue_ on the output rows (elementwise). Units are independent, so any thread
 * split gives the same bits. kernels/tests/test_conv_pw.c compares this path with the GEMM
 * path byte for byte. AVX-512 only (other ISAs run the GEMM). Products the GEMM runs unpacked
 * (et_f32_gemm_is_small: separate multiplies and adds, 8 partial sums) stay there. */
#include "conv_internal.h"
#include "gemm_internal.h" /* ET_GEMM_KC */

#if defined(ET_HAVE_X86_SIMD)
#include <immintrin.h>

#define PWD_ROWS 8 /* output channels a register block */
#define PWD_VECS 3 /* 16-pixel vectors a register block (PWD_ROWS * PWD_VECS accumulators) */
#define PWD_COLS (16 * PWD_VECS)
#define PWD_SPAN (8 * PWD_COLS) /* pixels a unit */
/* Above, the GEMM is as fast or faster (timed: 64 and 96 channels at 14x14 within 5%, 96 at
 * 112x112 slower here). */
#define PWD_MAX_OC 32

typedef struct pwd_job {
    const et_conv2d_params *p;
    const float *x, *w, *b;
    float *y;
    int64_t np, units_per_image;
} pwd_job;

/* Output channels o0 .. o0 + PWD_ROWS - 1 of pixels j0 .. j0 + cols - 1 (cols <= 16 * V) of
 * one image (xs, ys: its planes at pixel 0; np pixels a plane). Inlined with constant V. */
ET_TARGET_AVX512 static inline __attribute__((always_inline)) void
pwd_tile(const float *xs, const float *wr, float *ys, int64_t np, int64_t K, int64_t j0,
         int64_t cols, const int V) {
    __mmask16 m[PWD_VECS];
    for (int v = 0; v < PWD_VECS; v++) {
        const int64_t n = cols - 16 * v;
        m[v] = n >= 16 ? (__mmask16)0xFFFF : n > 0 ? (__mmask16)((1u << n) - 1u) : 0;
    }
    __m512 acc[PWD_ROWS][PWD_VECS];
    for (int r = 0; r < PWD_ROWS; r++)
        for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps();
    const float *xk = xs + j0;
    for (int64_t kk = 0; kk < K; kk++, xk += np) {
        __m512 xv[PWD_VECS];
        for (int v = 0; v < V; v++) xv[v] = _mm512_maskz_loadu_ps(m[v], xk + 16 * v);
        for (int v = 0; v < V; v++) /* the next tile's row k */
            _mm_prefetch((const char *)(xk + PWD_COLS + 16 * v), _MM_HINT_T0);
        for (int r = 0; r < PWD_ROWS; r++) {
            const __m512 wv = _mm512_set1_ps(wr[r * K + kk]);
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < PWD_ROWS; r++)
        for (int v = 0; v < V; v++)
            _mm512_mask_storeu_ps(ys + r * np + j0 + 16 * v, m[v], acc[r][v]);
}

ET_TARGET_AVX512 static void pwd_units(void *ctx, int64_t u0, int64_t u1, int tid) {
    const pwd_job *k = (const pwd_job *)ctx;
    const et_conv2d_params *p = k->p;
    const int64_t np = k->np, K = p->c, M = p->oc;
    const int epi = et_conv_has_epilogue_(p, k->b);
    (void)tid;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t i = u / k->units_per_image, s0 = (u % k->units_per_image) * PWD_SPAN;
        const int64_t span = np - s0 < PWD_SPAN ? np - s0 : PWD_SPAN;
        const float *xs = k->x + i * K * np;
        float *ys = k->y + i * M * np;
        for (int64_t o0 = 0; o0 < M; o0 += PWD_ROWS) {
            for (int64_t j0 = s0; j0 < s0 + span; j0 += PWD_COLS) {
                const int64_t cols = s0 + span - j0 < PWD_COLS ? s0 + span - j0 : PWD_COLS;
                const float *wr = k->w + o0 * K;
                if (cols > 32) /* the last tile: only the vectors it needs */
                    pwd_tile(xs, wr, ys + o0 * np, np, K, j0, cols, 3);
                else if (cols > 16)
                    pwd_tile(xs, wr, ys + o0 * np, np, K, j0, cols, 2);
                else
                    pwd_tile(xs, wr, ys + o0 * np, np, K, j0, cols, 1);
            }
            for (int r = 0; r < PWD_ROWS && epi; r++)
                et_conv_epilogue_(p, o0 + r, k->b ? k->b[o0 + r] : 0.0f, ys + (o0 + r) * np + s0,
                                  span);
        }
    }
}

static et_status pwd_fwd__avx512(const et_conv2d_params *p, const float *x, const float *w,
                                 const float *b, float *y, int nthreads) {
    const int64_t np = p->h * p->w, upi = (np + PWD_SPAN - 1) / PWD_SPAN, units = p->n * upi;
    pwd_job k = {p, x, w, b, y, np, upi};
    et_parallel_ranges(units, et_split_chunks(units, nthreads), nthreads, pwd_units, &k);
    return ET_OK;
}
#endif

typedef struct pwd_variant {
    et_variant_head head;
    et_status (*fwd)(const et_conv2d_params *p, const float *x, const float *w, const float *b,
                     float *y, int nthreads);
} pwd_variant;
static const pwd_variant pwd_variants[] = {
    {{ET_ISA_REF, "ref"}, NULL}, /* the GEMM path */
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512, "avx512"}, pwd_fwd__avx512},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};

et_status et_f32_conv2d_pw_direct_fwd(const et_conv2d_params *p, const float *x, const float *w,
                                      const float *b, float *y, int nthreads) {
    const pwd_variant *row = (const pwd_variant *)ET_VARIANT_PICK(pwd_variants);
#if defined(ET_HAVE_X86_SIMD)
    if (row->fwd && p->groups == 1 && p->kh == 1 && p->kw == 1 && p->stride_h == 1 &&
        p->stride_w == 1 && !p->pad_t && !p->pad_l && !p->pad_b && !p->pad_r &&
        p->c <= ET_GEMM_KC && p->oc % PWD_ROWS == 0 && p->oc <= PWD_MAX_OC &&
        !et_f32_gemm_is_small(p->oc, p->h * p->w, p->c))
        return row->fwd(p, x, w, b, y, nthreads < 1 ? 1 : nthreads);
#endif
    (void)row, (void)p, (void)x, (void)w, (void)b, (void)y, (void)nthreads;
    return ET_ERR_UNSUPPORTED;
}
