/* edgetrain — GEMM variants (internal; tests call them directly).
 *
 * Layout of the family
 *   gemm_ref.c     et_f32_gemm__ref: scalar, double accumulation; the test oracle.
 *                  et_f32_gemm_config_scalar: 4x16 plain-C fmaf microkernel, the config of
 *                  the ref ISA (EDGETRAIN_ISA=ref), so that ISA computes the SIMD bits.
 *   gemm.c         et_f32_gemm: argument checks, ISA dispatch, the shared
 *                  BLIS-style packed driver (et_f32_gemm_packed), the thread
 *                  partition and an unpacked path for tiny / vector problems.
 *   gemm_avx512.c  14x32 zmm microkernel, compiled with ET_TARGET_AVX512, and its two
 *                  forms with A read in place (one-panel products, C^T of x W^T) and with
 *                  B's rows through a table (the convolution's implicit im2col).
 *   gemm_avx2.c    6x16 ymm microkernel + AVX2 packers (also used by the
 *                  AVX-512 config), compiled with ET_TARGET_AVX2.
 *   gemm_neon.c    8x12 aarch64 Advanced SIMD microkernel + packers.
 *
 * Packed algorithm (Goto / BLIS), for one thread's block of C:
 *   for jc in N step NC:            B block  op(B)[pc:pc+kc, jc:jc+nc] packed once (L3)
 *     for pc in K step KC:          A block  op(A)[ic:ic+mc, pc:pc+kc] packed (L2)
 *       for ic in M step MC:
 *         for jr in nc step NR:     B micro-panel kc x NR (L1 or L2)
 *           for ir in mc step MR:   ukernel: C[MR,NR] (+)= A panel * B panel
 * Packed A panels are MR rows interleaved per k ("a[k*MR + r]"), packed B
 * panels NR columns per k ("b[k*NR + c]"), both zero-padded at the edges so
 * the microkernel always runs a full MR x NR tile and only its stores are
 * clipped to (mr, nr). When M is small and B is not transposed, full B panels
 * are read in place (row stride ldb) instead of being copied.
 *
 * Threads: C is cut along tile boundaries into a tm x tn grid of 2 * nthreads
 * tasks (the grid with the least compute + packing per task; a worker that joins
 * late takes fewer tasks); each task runs the loop nest above on its block with
 * its own slice of the workspace. When tasks share rows of A (tn > 1), op(A) is
 * packed once first, in parallel, into the workspace's tail and the tasks read
 * it; the grid then has more columns, about 1 M multiply-adds per task, since
 * more column tasks pack nothing more (et_f32_gemm_plan_of, gemm.c). Products
 * under ET_GEMM_THREAD_MIN_MACS multiply-adds run on one thread.
 *
 * Determinism: every C element is computed by one thread with an FMA chain in
 * k order (starting from 0) whose KC split depends only on K (ET_GEMM_KC, the
 * same for every ISA), followed by the same epilogue on every ISA:
 *   first k block:  c = fma(beta, c_old, alpha * acc)   (c = alpha * acc if beta == 0)
 *   later blocks:   c = fma(1, c_old, alpha * acc)
 * and the unpacked path is plain C built with -ffp-contract=off. So results
 * are bitwise identical for any thread count and on every ISA (AVX-512, AVX2,
 * NEON, and ref through the scalar config); kernels/tests/test_gemm.c pins the bits.
 * (The oracle, et_f32_gemm__ref, accumulates in double and is not bit-compatible; no
 * ISA runs it.)
 */
#ifndef EDGETRAIN_GEMM_INTERNAL_H
#define EDGETRAIN_GEMM_INTERNAL_H
#include <string.h>

#include "edgetrain/et_kernels.h"
#include "variant_internal.h"

/* K block of the packed path, shared by every ISA (the bits depend on it):
 * K is cut into ceil(K / ET_GEMM_KC) nearly equal blocks (the packed driver
 * and its workspace use ET_GEMM_KC, not cfg->kc; every config's kc states it
 * and the tests check they agree). 768 is AVX-512's best on Zen 5. */
#define ET_GEMM_KC 768

/* Scalar reference, double accumulation. No workspace, single thread. */
void et_f32_gemm__ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);

/* Microkernel: C[0:mr, 0:nr] = alpha * Apanel * Bpanel + beta * C  (mr <= MR, nr <= NR).
 * a: kc x MR packed panel; b: kc rows of NR floats, row k at b + k*ldb (a packed
 * panel with ldb == NR, or op(B) itself when it can be read in place).
 * beta == 0 means C is not read. kc >= 1. */
typedef void et_f32_gemm_ukernel(int64_t kc, const float *a, const float *b, int64_t ldb,
                                 float *c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                                 float beta);
typedef et_f32_gemm_ukernel *et_f32_gemm_ukernel_fn;
/* The same product with A read in place (not packed): row r of the panel at a + r * lda,
 * element k at a[r * lda + k]; rows >= mr are never read. The same FMA chain per element as
 * the packed ukernel, so the same bits. */
typedef void et_f32_gemm_ukernel_sa(int64_t kc, const float *a, int64_t lda, const float *b,
                                    int64_t ldb, float *c, int64_t ldc, int64_t mr, int64_t nr,
                                    float alpha, float beta);
typedef et_f32_gemm_ukernel_sa *et_f32_gemm_ukernel_sa_fn;
/* The packed ukernel with B's rows found through a table: row k of the panel at b + off[k]
 * (NR floats; an implicit im2col). The same FMA chain per element, so the same bits. */
typedef void et_f32_gemm_ukernel_off(int64_t kc, const float *a, const float *b,
                                     const int32_t *off, float *c, int64_t ldc, int64_t mr,
                                     int64_t nr, float alpha, float beta);
typedef et_f32_gemm_ukernel_off *et_f32_gemm_ukernel_off_fn;

/* Packing primitives. Both write `w`-wide panels, dst[k*w + r] for k < kc,
 * r < w, with zeros for r >= n (n <= w):
 *  interleave: n source rows of kc contiguous floats, row r at src + r*ld
 *              (a transpose: A not transposed, or B transposed);
 *  copy:       kc source rows of n contiguous floats, row k at src + k*ld
 *              (A transposed, or B not transposed). */
typedef void et_f32_gemm_pack(int64_t w, int64_t n, int64_t kc, const float *src, int64_t ld,
                              float *dst);
typedef et_f32_gemm_pack *et_f32_gemm_pack_fn;
/* Transposing copy of a register tile (the C^T paths' store, gemm.c):
 * dst[q*ld + r] = src[r*ls + q] for r < m, q < n (m, n up to the config's MR, NR). */
typedef void et_f32_gemm_store_t(int64_t m, int64_t n, const float *src, int64_t ls, float *dst,
                                 int64_t ld);
typedef et_f32_gemm_store_t *et_f32_gemm_store_t_fn;

/* A per-row epilogue a microkernel can apply in registers to a final tile (the pointwise
 * convolution's bias, BatchNorm and ReLU / ReLU6). Output row r of the product, value v:
 *   bias_r = bias ? bias[r] : 0;  if (bias_r != 0 || bias_always) v = v + bias_r;
 *   if (scale) v = v * scale[r], then v = v + shift[r]   (two roundings, no fma);
 *   clamp: RELU      v < 0 -> 0
 *          RELU6     v < 0 -> 0, v > 6 -> 6
 *          RELU6_LE  v <= 0 -> +0, v >= 6 -> 6
 * NaN passes every clamp. et_f32_gemm_rowepi_apply is this in plain C (an et_f32_gemm_epilogue
 * whose ctx is the struct); a ukernel_epi computes the same bits. */
enum { ET_GEMM_CLAMP_NONE, ET_GEMM_CLAMP_RELU, ET_GEMM_CLAMP_RELU6, ET_GEMM_CLAMP_RELU6_LE };
typedef struct et_f32_gemm_rowepi {
    const float *bias, *scale, *shift;
    int bias_always, clamp;
} et_f32_gemm_rowepi;
/* The packed ukernel (beta 0 or 1, alpha 1) followed by e's epilogue for output rows row0 ..
 * row0 + mr - 1, applied before the store: the bits of the ukernel then
 * et_f32_gemm_rowepi_apply. */
typedef void et_f32_gemm_ukernel_epi(int64_t kc, const float *a, const float *b, int64_t ldb,
                                     float *c, int64_t ldc, int64_t mr, int64_t nr, float beta,
                                     const et_f32_gemm_rowepi *e, int64_t row0);
typedef et_f32_gemm_ukernel_epi *et_f32_gemm_ukernel_epi_fn;

/* One ISA's packed-GEMM recipe: tile (MR x NR), cache blocks, kernels. */
typedef struct et_f32_gemm_config {
    const char *name;
    int64_t mr, nr;     /* register tile */
    int64_t mc, kc, nc; /* cache blocks; mc % mr == 0, nc % nr == 0 */
    et_f32_gemm_ukernel_fn ukernel;
    et_f32_gemm_pack_fn pack_interleave;
    et_f32_gemm_pack_fn pack_copy;
    /* optional (NULL: always pack A): A read in place when each A panel would serve a single
     * B panel (N <= NR, gemm.c), where packing it costs as much as the product */
    et_f32_gemm_ukernel_sa_fn ukernel_sa;
    /* optional (NULL: et_f32_gemm_pa_offb is not available): B rows through a table */
    et_f32_gemm_ukernel_off_fn ukernel_off;
    /* optional (NULL: a plain C loop, one float at a time): the C^T paths' tile store */
    et_f32_gemm_store_t_fn store_t;
    /* optional (NULL: the tile is stored, then et_f32_gemm_rowepi_apply runs on it): the
     * packed ukernel with a row epilogue before the store (et_f32_gemm_nchw's final tiles) */
    et_f32_gemm_ukernel_epi_fn ukernel_epi;
} et_f32_gemm_config;

/* Shared drivers (gemm.c); arguments already validated (et_f32_gemm's checks).
 * et_f32_gemm_run: the full path for one config: the unpacked path for tiny /
 *   vector problems (et_f32_gemm_is_small), the packed path otherwise.
 * et_f32_gemm_packed: always packs (tests use it to reach every tile edge). */
et_status et_f32_gemm_run(const et_f32_gemm_config *cfg, int trans_a, int trans_b, int64_t M,
                          int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                          const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                          void *ws, size_t ws_bytes, int nthreads);
et_status et_f32_gemm_packed(const et_f32_gemm_config *cfg, int trans_a, int trans_b, int64_t M,
                             int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                             const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                             void *ws, size_t ws_bytes, int nthreads);
/* How et_f32_gemm_packed splits a product over threads (tests pin it for known shapes):
 * nthreads: the threads it uses (1 under ET_GEMM_THREAD_MIN_MACS multiply-adds); ct: the C^T
 * path (x W^T with few rows; tn tasks over C^T's MR tiles, tm == 1); cta: the C^T path of a
 * transposed A with at most MR columns (dY^T H; tn tasks over C^T's NR panels, tm == 1);
 * shared_a: op(A) is packed once, by pack_units chunks, before the tasks; tm x tn: the task
 * grid over C's MR x NR tiles. has_pre: op(A) comes pre-packed (et_f32_gemm_pa). */
typedef struct et_f32_gemm_plan {
    int nthreads, ct, cta, shared_a, tm, tn;
    int64_t pack_units;
} et_f32_gemm_plan;
void et_f32_gemm_plan_of(const et_f32_gemm_config *cfg, int trans_a, int trans_b, int64_t M,
                         int64_t N, int64_t K, int64_t ldb, int has_pre, int nthreads,
                         et_f32_gemm_plan *p);
/* Workspace bytes et_f32_gemm_packed needs with `cfg` (0 if M, N or K is 0). */
size_t et_f32_gemm_packed_ws_bytes(const et_f32_gemm_config *cfg, int64_t M, int64_t N,
                                   int64_t K, int nthreads);
/* 1 if (M, N, K) takes the unpacked path, which needs no workspace. */
int et_f32_gemm_is_small(int64_t M, int64_t N, int64_t K);
/* The unpacked path: plain C, any sizes, no workspace. */
void et_f32_gemm_small(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc, int nthreads);

/* Portable packers (gemm.c). */
et_f32_gemm_pack et_f32_gemm_pack_interleave__scalar, et_f32_gemm_pack_copy__scalar;

/* ---- batched NCHW operands (1x1 convolutions) ----------------------------------------------
 * For each image i < n: y_i[M, np] = op(A)[M, K] * x_i[K, np] with x_i = x + i * xs and
 * y_i = y + i * ys (row strides np), i.e. the product C = op(A) B over the n * np columns
 * j = i * np + p, without gathering B or scattering C: B's NR-wide panels are packed straight
 * from the images (or read in place), C tiles inside one image are stored straight into y,
 * tiles across images go through a small tile buffer. A must be pre-packed by
 * et_f32_gemm_pack_a(trans_a, M, K, ...) for the current ISA. After a tile of C (rows
 * [row0, row0 + rows), ncols columns, all in one image or the tile buffer) holds its final
 * values, epi (if not NULL) is called on it: epi(ctx, row0, rows, c, ldc, ncols), which must
 * work elementwise in place.
 * Bits: each element is the packed path's k-ordered FMA chain (K blocks of
 * balanced_block(K, ET_GEMM_KC), alpha = 1, beta = 0), so the result equals et_f32_gemm's
 * packed path for any column count and thread count (every ISA, ref included, has a packed
 * config). */
typedef void et_f32_gemm_epilogue(void *ctx, int64_t row0, int64_t rows, float *c, int64_t ldc,
                                  int64_t ncols);
/* The row epilogue (ctx: a const et_f32_gemm_rowepi *) in plain C. Passed as
 * et_f32_gemm_nchw's epi, it lets a config with a ukernel_epi apply it in registers instead
 * (the same bits). */
void et_f32_gemm_rowepi_apply(void *ctx, int64_t row0, int64_t rows, float *c, int64_t ldc,
                              int64_t ncols);
et_status et_f32_gemm_nchw(int trans_a, int64_t M, int64_t K, int64_t n, int64_t np,
                           const void *pa, const float *x, int64_t xs, float *y, int64_t ys,
                           et_f32_gemm_epilogue *epi, void *epi_ctx, void *ws, size_t ws_bytes,
                           int nthreads);
/* The weight gradient of a 1x1 convolution without gathering: C[M, N] (row stride ldc) =
 * dY' X'^T with dY'[M, n*np] and X'[N, n*np] the batch's images side by side (image i of dy
 * at dy + i * ys, of x at x + i * xs, rows of np pixels), K = n * np in image order. The same
 * bits as et_f32_gemm(0, 1, M, N, K, 1, dY', K, X', K, 0, C, ldc) on its packed path, with
 * et_f32_gemm_nchw_wgrad_ws_bytes(M, N, n, np, nthreads) of workspace (on several threads
 * both operands packed whole). ET_ERR_ARG when (M, N, K) takes et_f32_gemm's small path. */
size_t et_f32_gemm_nchw_wgrad_ws_bytes(int64_t M, int64_t N, int64_t n, int64_t np,
                                       int nthreads);
et_status et_f32_gemm_nchw_wgrad(int64_t M, int64_t N, int64_t n, int64_t np, const float *dy,
                                 int64_t ys, const float *x, int64_t xs, float *C, int64_t ldc,
                                 void *ws, size_t ws_bytes, int nthreads);
/* C[M, N] (row stride ldc) = op(A) B with op(A) pre-packed by et_f32_gemm_pack_a(0, M, K, ...)
 * and B[k, j] = b[off[k] + j] (an implicit im2col: b must be readable up to
 * b[max(off) + round_up(N, 32) - 1]), alpha 1, beta 0, one thread: the bits of et_f32_gemm's
 * packed path (K blocks of balanced_block(K, ET_GEMM_KC), k-ordered FMA chains); epi (if not
 * NULL) runs on each final tile as in et_f32_gemm_nchw. ET_ERR_ARG
 * when the current ISA has no table ukernel (callers then build the columns and run
 * et_f32_gemm_pa) or pa does not fit. */
et_status et_f32_gemm_pa_offb(int64_t M, int64_t N, int64_t K, const void *pa, const float *b,
                              const int32_t *off, float *C, int64_t ldc,
                              et_f32_gemm_epilogue *epi, void *epi_ctx);
/* C = op(A) B (alpha 1, beta 0, one thread) with op(A) pre-packed by et_f32_gemm_pack_a,
 * one band of MR rows at a time into buf (row stride N), handed on in units of `unit` rows
 * (0: each band as it is done): once rows [row0, row0 + rows) (rows = unit, or what is left at
 * the end) hold their final values, band_fn(ctx, row0, rows, buf', N, N) consumes them (buf'
 * their first row), in row order. The bits of et_f32_gemm's packed path. buf:
 * et_f32_gemm_bands_floats(N, K, unit) floats. ET_ERR_ARG when pa does not fit or B's row
 * stride is one the packed path would not read in place (callers then run et_f32_gemm_pa). */
et_status et_f32_gemm_pa_bands(int64_t M, int64_t N, int64_t K, const void *pa, const float *B,
                               int64_t ldb, int64_t unit, float *buf,
                               et_f32_gemm_epilogue *band_fn, void *ctx);
int64_t et_f32_gemm_bands_floats(int64_t N, int64_t K, int64_t unit);

/* 1 if the current ISA runs et_f32_gemm_pa_offb. */
int et_f32_gemm_offb_available(void);
/* Widest B panel any config reads (et_f32_gemm_pa_offb's over-read past N). */
#define ET_GEMM_NR_MAX 32

/* et_f32_gemm_pack_a with the panels split over nthreads (the same bytes). */
et_status et_f32_gemm_pack_a_threads(int trans_a, int64_t M, int64_t K, const float *A,
                                     int64_t lda, void *pa, size_t pa_bytes, int nthreads);
/* et_f32_gemm_nchw with A given unpacked (A[M, K], or A^T with trans_a, row stride lda):
 * each row task packs its own rows of A (about 256 KiB) just before using them, so the
 * workspace holds no whole packed A. Same bits as et_f32_gemm_nchw. Only when all of B fits
 * one packed block for every config: et_f32_gemm_nchw_a_ws_bytes is 0 otherwise (and the
 * call ET_ERR_ARG). */
et_status et_f32_gemm_nchw_a(int trans_a, int64_t M, int64_t K, int64_t n, int64_t np,
                             const float *A, int64_t lda, const float *x, int64_t xs, float *y,
                             int64_t ys, et_f32_gemm_epilogue *epi, void *epi_ctx, void *ws,
                             size_t ws_bytes, int nthreads);
size_t et_f32_gemm_nchw_a_ws_bytes(int64_t M, int64_t K, int64_t n, int64_t np, int nthreads);
/* Workspace of et_f32_gemm_nchw for every config compiled in (ISA independent). */
size_t et_f32_gemm_nchw_ws_bytes(int64_t M, int64_t K, int64_t n, int64_t np, int nthreads);

/* ---- variant table (variant_internal.h) ------------------------------------ */
/* One row per ISA: its packed-GEMM config (the ref row: et_f32_gemm_config_scalar, the
 * SIMD bits in plain C; the oracle et_f32_gemm__ref is in no row). et_f32_gemm runs
 * et_f32_gemm_run(row->cfg, ...) for the row of et_get_isa(); only run a row when
 * et_isa_supported(row->head.isa). */
typedef struct et_f32_gemm_variant {
    et_variant_head head;
    const et_f32_gemm_config *cfg;
} et_f32_gemm_variant;
extern const et_f32_gemm_variant et_f32_gemm_variants[];

/* ---- per-ISA configs and kernels ---------------------------------------- */
extern const et_f32_gemm_config et_f32_gemm_config_scalar;
#if defined(ET_HAVE_X86_SIMD)
extern const et_f32_gemm_config et_f32_gemm_config_avx512;
extern const et_f32_gemm_config et_f32_gemm_config_avx2;
/* AVX2 packers (gemm_avx2.c), shared by the AVX-512 config. */
et_f32_gemm_pack et_f32_gemm_pack_interleave__avx2, et_f32_gemm_pack_copy__avx2;
et_f32_gemm_store_t et_f32_gemm_store_t__avx2;
et_f32_gemm_ukernel et_f32_gemm_ukernel_14x32__avx512, et_f32_gemm_ukernel_6x16__avx2;
et_f32_gemm_ukernel_epi et_f32_gemm_ukernel_epi_14x32__avx512;
et_f32_gemm_ukernel_sa et_f32_gemm_ukernel_sa_14x32__avx512;
et_f32_gemm_ukernel_off et_f32_gemm_ukernel_off_14x32__avx512;
#endif
#if defined(ET_HAVE_NEON)
extern const et_f32_gemm_config et_f32_gemm_config_neon;
et_f32_gemm_pack et_f32_gemm_pack_interleave__neon, et_f32_gemm_pack_copy__neon;
et_f32_gemm_ukernel et_f32_gemm_ukernel_8x12__neon;
#endif

/* d[0..n) = s[0..n) for short rows (a few to a few dozen floats: im2col rows, GEMM panels across
 * images), without a memcpy call per row: fixed-size block copies (inlined as vector moves), the last block overlapping. */
static inline void et_copy_short_(float *ET_RESTRICT d, const float *ET_RESTRICT s, int64_t n) {
    if (n >= 8) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) memcpy(d + i, s + i, 8 * sizeof(float));
        if (i < n) memcpy(d + n - 8, s + n - 8, 8 * sizeof(float));
    } else if (n >= 4) {
        memcpy(d, s, 4 * sizeof(float));
        memcpy(d + n - 4, s + n - 4, 4 * sizeof(float));
    } else {
        if (n > 0) d[0] = s[0];
        if (n > 1) d[1] = s[1];
        if (n > 2) d[2] = s[2];
    }
}

#endif
