/* edgetrain — GEMM: argument checks, ISA dispatch, the shared packed driver,
 * the thread partition and the unpacked path for tiny / vector problems.
 * The algorithm is described in gemm_internal.h. */
#include "gemm_internal.h"

#include <string.h>

#define ET_GEMM_ALIGN 64 /* packed buffers start on a cache line */
#ifndef ET_GEMM_DIRECT_B_MAX_M
#define ET_GEMM_DIRECT_B_MAX_M 128 /* rows up to which a plain B is read in place */
#endif
/* Packed products of fewer multiply-adds run on one thread (a few us of work: about what
 * waking a sleeping worker costs; LeNet's fc2, 64 x 10 x 500, ran slower on 2 threads).
 * Any split gives the same bits. */
#define ET_GEMM_THREAD_MIN_MACS 524288.0
/* Tasks per thread of a threaded product: a worker that joins late takes fewer of them. */
#define ET_GEMM_TASKS_PER_THREAD 2

static int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* Block length that splits `total` into the fewest pieces of at most `blk`,
 * as equal as possible and a multiple of `unit` (blk % unit == 0). Avoids a
 * thin last block, e.g. K = 800, KC = 256 gives 4 x 200 instead of 3 x 256 + 32. */
static int64_t balanced_block(int64_t total, int64_t blk, int64_t unit) {
    if (total <= 0) return unit;
    int64_t pieces = ceil_div(total, blk);
    return round_up(ceil_div(total, pieces), unit);
}

/* ---- portable packers ------------------------------------------------------ */
void et_f32_gemm_pack_interleave__scalar(int64_t w, int64_t n, int64_t kc, const float *src,
                                         int64_t ld, float *dst) {
    for (int64_t r = 0; r < w; r++) {
        const float *s = src + r * ld;
        float *d = dst + r;
        if (r < n)
            for (int64_t k = 0; k < kc; k++) d[k * w] = s[k];
        else
            for (int64_t k = 0; k < kc; k++) d[k * w] = 0.0f;
    }
}

void et_f32_gemm_pack_copy__scalar(int64_t w, int64_t n, int64_t kc, const float *src,
                                   int64_t ld, float *dst) {
    for (int64_t k = 0; k < kc; k++) {
        memcpy(dst + k * w, src + k * ld, (size_t)n * sizeof(float));
        for (int64_t c = n; c < w; c++) dst[k * w + c] = 0.0f;
    }
}

/* ---- unpacked path ----------------------------------------------------------
 * For M == 1, N == 1 or tiny products packing costs more than it saves. Each
 * element is an independent k-ordered sum, so the result does not depend on
 * the thread split. */
int et_f32_gemm_is_small(int64_t M, int64_t N, int64_t K) {
    return M == 1 || N == 1 || (double)M * (double)N * (double)K <= 4096.0;
}

#define ET_GEMM_SMALL_COLS 256 /* column chunk accumulated on the stack */

/* sum_k x[k*sx] * y[k*sy] with 8 partial sums (breaks the add latency chain). */
static inline float dot8(const float *ET_RESTRICT x, int64_t sx, const float *ET_RESTRICT y,
                         int64_t sy, int64_t K) {
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int u = 0; u < 8; u++) p[u] += x[(k + u) * sx] * y[(k + u) * sy];
    for (; k < K; k++) p[0] += x[k * sx] * y[k * sy];
    return ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
}

/* C[i0:i1, j0:j1] of the product, unpacked. */
static void gemm_small_block(int trans_a, int trans_b, int64_t i0, int64_t i1, int64_t j0,
                             int64_t j1, int64_t K, float alpha, const float *ET_RESTRICT A,
                             int64_t lda, const float *ET_RESTRICT B, int64_t ldb, float beta,
                             float *ET_RESTRICT C, int64_t ldc) {
    const int64_t sak = trans_a ? lda : 1; /* stride of op(A)[i, k] along k */
    const int64_t sai = trans_a ? 1 : lda; /* ... along i */
    for (int64_t i = i0; i < i1; i++) {
        const float *ai = A + i * sai;
        float *ci = C + i * ldc;
        if (!trans_b && j1 - j0 >= 16) {
            /* row form: acc[j] += a[i,k] * B[k, j], contiguous in j (vectorises) */
            float acc[ET_GEMM_SMALL_COLS];
            for (int64_t jb = j0; jb < j1; jb += ET_GEMM_SMALL_COLS) {
                const int64_t nb = min_i64(ET_GEMM_SMALL_COLS, j1 - jb);
                for (int64_t j = 0; j < nb; j++) acc[j] = 0.0f;
                for (int64_t k = 0; k < K; k++) {
                    const float a = ai[k * sak];
                    const float *ET_RESTRICT bk = B + k * ldb + jb;
                    for (int64_t j = 0; j < nb; j++) acc[j] += a * bk[j];
                }
                float *cj = ci + jb;
                if (beta == 0.0f)
                    for (int64_t j = 0; j < nb; j++) cj[j] = alpha * acc[j];
                else
                    for (int64_t j = 0; j < nb; j++) cj[j] = alpha * acc[j] + beta * cj[j];
            }
        } else {
            /* dot form: op(B) columns are contiguous (trans_b) or N is narrow */
            const int64_t sbk = trans_b ? 1 : ldb, sbj = trans_b ? ldb : 1;
            for (int64_t j = j0; j < j1; j++) {
                const float *bj = B + j * sbj;
                /* unit strides get their own inlined copy, which vectorises */
                const float acc = sak == 1 && sbk == 1 ? dot8(ai, 1, bj, 1, K)
                                                       : dot8(ai, sak, bj, sbk, K);
                ci[j] = beta == 0.0f ? alpha * acc : alpha * acc + beta * ci[j];
            }
        }
    }
}

/* One product C = alpha op(A) op(B) + beta C, as the drivers below hand it to their tasks
 * (the first member of each job); base and slice: the workspace, one slice per thread (none
 * for the small path). */
typedef struct gemm_args {
    const et_f32_gemm_config *cfg;
    int trans_a, trans_b;
    int64_t M, N, K;
    float alpha;
    const float *A;
    int64_t lda;
    const float *B;
    int64_t ldb;
    float beta;
    float *C;
    int64_t ldc;
    char *base;
    size_t slice;
} gemm_args;

typedef struct small_job {
    gemm_args a;
    int split_m;
} small_job;

/* Rows (split_m) or columns [b, e) of C. */
static void small_range(void *ctx, int64_t b, int64_t e, int tid) {
    const small_job *j = (const small_job *)ctx;
    const gemm_args *a = &j->a;
    (void)tid;
    if (j->split_m)
        gemm_small_block(a->trans_a, a->trans_b, b, e, 0, a->N, a->K, a->alpha, a->A, a->lda, a->B,
                         a->ldb, a->beta, a->C, a->ldc);
    else
        gemm_small_block(a->trans_a, a->trans_b, 0, a->M, b, e, a->K, a->alpha, a->A, a->lda, a->B,
                         a->ldb, a->beta, a->C, a->ldc);
}

void et_f32_gemm_small(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc, int nthreads) {
    /* Threads only pay off with real work; split the longer of M and N. */
    int nth = (double)M * (double)N * (double)K >= 262144.0 ? nthreads : 1;
    const int split_m = M >= N;
    const int64_t len = split_m ? M : N;
    small_job j = {{NULL, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, 0},
                   split_m};
    /* every element of C is one K loop whatever the split: any chunking gives the same bits */
    et_parallel_ranges(len, nth > 1 ? et_split_chunks(len, nth) : 1, nth, small_range, &j);
}

/* ---- packed path ------------------------------------------------------------ */

/* Bytes of one task's packing buffers, each padded to a cache line. They
 * bound the blocks of any sub-problem of M x N x K. */
static size_t pack_a_bytes(const et_f32_gemm_config *cfg, int64_t M, int64_t K) {
    const int64_t mc = min_i64(cfg->mc, round_up(M, cfg->mr)), kc = min_i64(ET_GEMM_KC, K);
    return (size_t)round_up(mc * kc * (int64_t)sizeof(float), ET_GEMM_ALIGN);
}
static size_t pack_b_bytes(const et_f32_gemm_config *cfg, int64_t N, int64_t K) {
    const int64_t nc = min_i64(cfg->nc, round_up(N, cfg->nr)), kc = min_i64(ET_GEMM_KC, K);
    return (size_t)round_up(kc * nc * (int64_t)sizeof(float), ET_GEMM_ALIGN);
}

/* All of op(A) packed once (the layout of packed_a, below) for a threaded call whose tasks
 * share rows of A: each task would otherwise pack the same panels again. */
static size_t shared_a_bytes(const et_f32_gemm_config *cfg, int64_t M, int64_t K) {
    return (size_t)round_up(round_up(M, cfg->mr) * K * (int64_t)sizeof(float), ET_GEMM_ALIGN);
}

size_t et_f32_gemm_packed_ws_bytes(const et_f32_gemm_config *cfg, int64_t M, int64_t N,
                                   int64_t K, int nthreads) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    /* one slice per task + slack to align the start (+ the shared packed A, see shared_a_bytes) */
    return (size_t)nthreads * (pack_a_bytes(cfg, M, K) + pack_b_bytes(cfg, N, K)) + ET_GEMM_ALIGN +
           (nthreads > 1 ? shared_a_bytes(cfg, M, K) : 0);
}

/* Reading B in place walks its rows at stride ldb for every k: fine for short rows, but a
 * stride of many pages misses the TLB at every row, and one that is a multiple of 4 KiB maps
 * every row to the same L1 sets (B = a 4096-wide matrix ran at half speed); such B is packed. */
static int direct_b_stride_ok(int64_t ldb) {
    const int64_t bytes = ldb * (int64_t)sizeof(float);
    return bytes <= 8192 && bytes % 4096 != 0;
}

/* op(A) packed whole by et_f32_gemm_pack_a: for each K block (balanced_block(K, ET_GEMM_KC)),
 * starting at k = pc, the MR-wide panels of all mp = round_up(M, MR) rows, the panel of
 * rows [r, r + MR) at data + pc * mp + r * kc: the panels the driver would pack, in place. */
typedef struct packed_a {
    const float *data;
    int64_t mp;
} packed_a;

/* One MR-wide panel of op(A): rows [r, r + m) (m <= MR, zero-padded), k in [pc, pc + kc). */
static void pack_a_panel(const et_f32_gemm_config *cfg, int trans_a, int64_t m, int64_t kc,
                         const float *A, int64_t lda, int64_t r, int64_t pc, float *dst) {
    if (trans_a)
        cfg->pack_copy(cfg->mr, m, kc, A + pc * lda + r, lda, dst);
    else
        cfg->pack_interleave(cfg->mr, m, kc, A + r * lda + pc, lda, dst);
}

/* One task's serial BLIS loop nest over its block of C (see gemm_internal.h).
 * pa, pb: 64-byte aligned packing buffers of pack_a_bytes / pack_b_bytes. */
static void gemm_packed_block(const et_f32_gemm_config *cfg, int trans_a, int trans_b,
                              int64_t M, int64_t N, int64_t K, float alpha,
                              const float *ET_RESTRICT A, int64_t lda, const float *ET_RESTRICT B,
                              int64_t ldb, float beta, float *ET_RESTRICT C, int64_t ldc,
                              float *ET_RESTRICT pa, float *ET_RESTRICT pb, const packed_a *pre,
                              int64_t row0) {
    const int64_t MR = cfg->mr, NR = cfg->nr;
    /* kc_blk depends on K only (ET_GEMM_KC is shared by all ISAs), so every
     * element sums its k blocks identically whatever the thread split and the
     * ISA; mc/nc blocks do not affect the arithmetic. */
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    const int64_t mc_blk = balanced_block(M, cfg->mc, MR);
    const int64_t nc_blk = balanced_block(N, cfg->nc, NR);
    /* With few rows each B panel serves only a few microkernel calls and
     * packing it would cost more than it saves: full NR-wide panels of a
     * non-transposed B are then read in place (row stride ldb). The result
     * is the same bits either way. */
    const int direct_b = !trans_b && M <= ET_GEMM_DIRECT_B_MAX_M && direct_b_stride_ok(ldb);
    /* With a single B panel each A panel serves one ukernel call: packing A would copy (and
     * transpose) all of it to read it once, so a plain A is read in place when the ISA has
     * the kernel (the same bits; strides as for an in-place B, the rows' L1 sets) */
    const int sa = cfg->ukernel_sa && !trans_a && !pre && N <= NR && direct_b_stride_ok(lda);
    for (int64_t jc = 0; jc < N; jc += nc_blk) {
        const int64_t nc = min_i64(nc_blk, N - jc);
        for (int64_t pc = 0; pc < K; pc += kc_blk) {
            const int64_t kc = min_i64(kc_blk, K - pc);
            /* B block op(B)[pc:pc+kc, jc:jc+nc] -> NR-wide panels */
            for (int64_t jr = 0; jr < nc; jr += NR) {
                const int64_t n = min_i64(NR, nc - jr);
                if (trans_b)
                    cfg->pack_interleave(NR, n, kc, B + (jc + jr) * ldb + pc, ldb, pb + jr * kc);
                else if (!direct_b || n < NR)
                    cfg->pack_copy(NR, n, kc, B + pc * ldb + jc + jr, ldb, pb + jr * kc);
            }
            /* the first k block applies beta; later ones accumulate */
            const float beta_k = pc == 0 ? beta : 1.0f;
            for (int64_t ic = 0; ic < M; ic += mc_blk) {
                const int64_t mc = min_i64(mc_blk, M - ic);
                /* A block op(A)[ic:ic+mc, pc:pc+kc] -> MR-wide panels (or packed before) */
                const float *ap = pre ? pre->data + pc * pre->mp + (row0 + ic) * kc : pa;
                for (int64_t ir = 0; ir < mc && !pre && !sa; ir += MR)
                    pack_a_panel(cfg, trans_a, min_i64(MR, mc - ir), kc, A, lda, ic + ir, pc,
                                 pa + ir * kc);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = min_i64(NR, nc - jr);
                    const int in_place = direct_b && nr == NR;
                    const float *bp = in_place ? B + pc * ldb + jc + jr : pb + jr * kc;
                    const int64_t bs = in_place ? ldb : NR;
                    float *cp = C + ic * ldc + jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int64_t mr = min_i64(MR, mc - ir);
                        if (sa)
                            cfg->ukernel_sa(kc, A + (ic + ir) * lda + pc, lda, bp, bs,
                                            cp + ir * ldc, ldc, mr, nr, alpha, beta_k);
                        else
                            cfg->ukernel(kc, ap + ir * kc, bp, bs, cp + ir * ldc, ldc, mr, nr,
                                         alpha, beta_k);
                    }
                }
            }
        }
    }
}

/* Split C into a tm x tn grid of tasks (tm * tn == ntasks) along tile
 * boundaries, choosing the grid that minimises one task's compute plus
 * packing estimate. Deterministic in (M, N, ntasks, cfg). */
static void choose_grid(const et_f32_gemm_config *cfg, int64_t M, int64_t N, int ntasks, int *tm,
                        int *tn) {
    const int64_t mt = ceil_div(M, cfg->mr), nt = ceil_div(N, cfg->nr);
    double best = -1.0;
    *tm = 1;
    *tn = ntasks;
    for (int a = 1; a <= ntasks; a++) {
        if (ntasks % a) continue;
        const int b = ntasks / a;
        const double rows = (double)(ceil_div(mt, a) * cfg->mr);
        const double cols = (double)(ceil_div(nt, b) * cfg->nr);
        /* per k: rows*cols FMAs vs (rows+cols) packed elements, one packed
         * element costing about as much as 32 lanes of FMA */
        double cost = rows * cols + 32.0 * (rows + cols);
        if (a > mt || b > nt) cost *= 4.0; /* idle tasks */
        if (best < 0.0 || cost < best) {
            best = cost;
            *tm = a;
            *tn = b;
        }
    }
}

/* C = beta * C: the whole product when K == 0 or alpha == 0. */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *ci = C + i * ldc;
        if (beta == 0.0f)
            for (int64_t j = 0; j < N; j++) ci[j] = 0.0f;
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) ci[j] *= beta;
    }
}

typedef struct packed_job {
    gemm_args a;
    const packed_a *pre;
    size_t a_bytes; /* the slice's packed-A part (packed B after it) */
    int64_t mt, nt;
    int tm, tn;
} packed_job;

/* Rows [i0, i1) and columns [j0, j1) of C for task t of a tm x tn grid over mt x nt tiles. */
static void grid_block(const et_f32_gemm_config *cfg, int64_t M, int64_t N, int64_t mt, int64_t nt,
                       int tm, int tn, int64_t t, int64_t *i0, int64_t *i1, int64_t *j0, int64_t *j1) {
    int64_t mb, me, nb, ne;
    et_thread_range(mt, (int)(t / tn), tm, &mb, &me);
    et_thread_range(nt, (int)(t % tn), tn, &nb, &ne);
    *i0 = mb * cfg->mr, *i1 = min_i64(me * cfg->mr, M);
    *j0 = nb * cfg->nr, *j1 = min_i64(ne * cfg->nr, N);
}

/* Task t of the tm x tn grid of C blocks (whole MR x NR tiles; every element of C is the same
 * K loop whatever the grid). Packing buffers: the slice of the thread running it. */
static void packed_task(void *ctx, int64_t t, int tid) {
    const packed_job *j = (const packed_job *)ctx;
    const gemm_args *a = &j->a;
    const et_f32_gemm_config *cfg = a->cfg;
    int64_t i0, i1, j0, j1;
    grid_block(cfg, a->M, a->N, j->mt, j->nt, j->tm, j->tn, t, &i0, &i1, &j0, &j1);
    if (i1 > i0 && j1 > j0) {
        float *pa = (float *)(a->base + (size_t)tid * a->slice);
        float *pb = (float *)(a->base + (size_t)tid * a->slice + j->a_bytes);
        const float *At = a->trans_a ? a->A + i0 : a->A + i0 * a->lda;
        const float *Bt = a->trans_b ? a->B + j0 * a->ldb : a->B + j0;
        gemm_packed_block(cfg, a->trans_a, a->trans_b, i1 - i0, j1 - j0, a->K, a->alpha, At, a->lda,
                          Bt, a->ldb, a->beta, a->C + i0 * a->ldc + j0, a->ldc, pa, pb, j->pre, i0);
    }
}

typedef struct pack_a_job {
    const et_f32_gemm_config *cfg;
    int trans_a;
    int64_t M, K;
    const float *A;
    int64_t lda;
    float *data;
} pack_a_job;

/* Row panels [p0, p1) (MR rows each) of every K block. */
static void pack_a_range(void *ctx, int64_t p0, int64_t p1, int tid) {
    const pack_a_job *j = (const pack_a_job *)ctx;
    const int64_t MR = j->cfg->mr, mp = round_up(j->M, MR);
    const int64_t kc_blk = balanced_block(j->K, ET_GEMM_KC, 1);
    (void)tid;
    for (int64_t pc = 0; pc < j->K; pc += kc_blk) {
        const int64_t kc = min_i64(kc_blk, j->K - pc);
        for (int64_t r = p0 * MR; r < p1 * MR; r += MR)
            pack_a_panel(j->cfg, j->trans_a, min_i64(MR, j->M - r), kc, j->A, j->lda, r, pc,
                         j->data + pc * mp + r * kc);
    }
}

/* dst[q*ld + r] = src[r*ls + q] for r < m, q < n: a C^T tile to C (the config's store_t, else
 * one float at a time). A copy: the bits of the tile. */
static void store_tile_t(const et_f32_gemm_config *cfg, int64_t m, int64_t n, const float *src,
                         int64_t ls, float *dst, int64_t ld) {
    if (cfg->store_t) {
        cfg->store_t(m, n, src, ls, dst, ld);
        return;
    }
    for (int64_t q = 0; q < n; q++)
        for (int64_t r = 0; r < m; r++) dst[q * ld + r] = src[r * ls + q];
}

/* ---- C^T for a few rows times a transposed B ---------------------------------------------
 * C[M, N] = A B^T with few rows (a batch through a linear layer: x W^T) packs all of B^T (a
 * transpose of the whole weight matrix) to use it for a few row tiles. Computed as
 * C^T = B A^T instead: B's rows are the kernel's A rows, read in place (ukernel_sa), A^T is
 * the packed B side (a transpose of the few rows), and each MR x NR tile of C^T is kept in a
 * small buffer over the K blocks (loaded transposed when beta reads C) and stored transposed.
 * Every element is the same k-ordered FMA chain (x*w == w*x) with the same per-block epilogue,
 * so the same bits.
 * Threads: every thread packs all of A^T into its own slot (once, for all the tasks it runs):
 * packing it once for all threads measured slower (LeNet's fc1, 64 x 800 at 2 threads: a
 * 16 us packing pass plus ~10 us in each thread's first tiles reading the half the other core
 * packed, against 10 us of packing each thread does anyway). The MR tiles of C^T are split into
 * tasks of CT_TILES_PER_TASK tiles, so a worker that joins late leaves the caller a tile or two
 * to finish, not a quarter of the product. */
#define CT_MAX_ROWS 64      /* M up to this */
#define CT_TILES_PER_TASK 2 /* MR tiles of C^T per task (LeNet fc1: 2 x ~7 us) */
/* It also serves products with at most MR columns (a classifier: 10 classes): the packed path
 * computes ceil(M / MR) row tiles on an NR-wide panel of which N columns are real (MobileNetV2's
 * head, 32 x 10 x 1280: 3 tiles, 31 % of the panel), C^T one MR tile per NR images. */

typedef struct ct_job {
    gemm_args a;
    int64_t nt;     /* MR tiles of C^T's rows (C's columns) */
    int64_t ntasks; /* tasks over the nt tiles */
    unsigned char packed[ET_POOL_MAX_THREADS]; /* thread tid's slot holds A^T already */
} ct_job;

static int ct_fits(const et_f32_gemm_config *cfg, int64_t M, int64_t K, size_t slice) {
    return (size_t)(round_up(M, cfg->nr) * K + cfg->mr * cfg->nr) * sizeof(float) <= slice;
}

static void ct_task(void *ctx, int64_t t, int tid) {
    ct_job *j = (ct_job *)ctx;
    const gemm_args *a = &j->a;
    const et_f32_gemm_config *cfg = a->cfg;
    const int64_t MR = cfg->mr, NR = cfg->nr, M = a->M, K = a->K, mp = round_up(M, NR);
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    int64_t tb, te;
    et_thread_range(j->nt, (int)t, (int)j->ntasks, &tb, &te);
    if (te <= tb) return;
    /* A^T's NR-wide panels for every K block: block pc, panel of columns i at pb + pc*mp + i*kc;
     * packed once per thread (its slot) for all the tasks it runs (the same panels) */
    float *pb = (float *)(a->base + (size_t)tid * a->slice), *tile = pb + mp * K;
    for (int64_t pc = 0; pc < K && !j->packed[tid]; pc += kc_blk) {
        const int64_t kc = min_i64(kc_blk, K - pc);
        for (int64_t i = 0; i < M; i += NR)
            cfg->pack_interleave(NR, min_i64(NR, M - i), kc, a->A + i * a->lda + pc, a->lda,
                                 pb + pc * mp + i * kc);
    }
    j->packed[tid] = 1;
    for (int64_t r0 = tb * MR; r0 < min_i64(te * MR, a->N); r0 += MR) {
        const int64_t mr = min_i64(MR, a->N - r0);
        for (int64_t i = 0; i < M; i += NR) {
            const int64_t nr = min_i64(NR, M - i);
            float *c = a->C + i * a->ldc + r0; /* C^T tile (r, q) is C[i + q, r0 + r] */
            if (a->beta != 0.0f)
                for (int64_t r = 0; r < mr; r++)
                    for (int64_t q = 0; q < nr; q++) tile[r * NR + q] = c[q * a->ldc + r];
            for (int64_t pc = 0; pc < K; pc += kc_blk) {
                const int64_t kc = min_i64(kc_blk, K - pc);
                cfg->ukernel_sa(kc, a->B + r0 * a->ldb + pc, a->ldb, pb + pc * mp + i * kc, NR,
                                tile, NR, mr, nr, a->alpha, pc == 0 ? a->beta : 1.0f);
            }
            store_tile_t(cfg, mr, nr, tile, NR, c, a->ldc);
        }
    }
}

/* ---- C^T for at most MR columns times a transposed A -----------------------------------
 * C[M, N] = A^T op(B) with N <= MR (A stored [K, M]; a classifier's weight gradient dY^T H:
 * LeNet's fc2, 500 x 10 x 64) on the packed path packs all of A and runs ceil(M / MR) row
 * tiles on an NR-wide B panel of which N columns are real (10 of 32). Computed as
 * C^T = op(B)^T A instead: op(B)^T is a single MR-row panel (N real rows, packed: N x K
 * floats) and A's rows are C^T's B panels, read in place (whole NR panels at a stride
 * direct_b_stride_ok accepts; the partial last one packed), so each kernel call fills N of MR
 * rows instead of N of NR columns and A is not copied. Each MR x NR tile of C^T is kept in a
 * small buffer over the K blocks (loaded transposed when beta reads C) and stored transposed,
 * as on the C^T path above. Every element is the same k-ordered FMA chain (b*a == a*b) with the
 * same per-block epilogue, so the same bits. Threads: tasks of CT_TILES_PER_TASK NR panels of
 * C^T; each task packs op(B)^T itself (N x K floats, against its 2 * NR * MR * K multiply-adds).
 * Tiny K (where the tile buffer would not fit the workspace slice) keeps the packed path. */
typedef struct cta_job {
    gemm_args a;
    int64_t nt;     /* NR panels of C^T's columns (C's rows) */
    int64_t ntasks; /* tasks over the nt panels */
    int in_place;   /* whole panels of A read in place (direct_b_stride_ok(lda)) */
} cta_job;

/* Floats of one task's buffers: op(B)^T's panels for all K blocks, the tile, one packed
 * partial B panel; each part rounded to a cache line. */
static int64_t cta_floats(const et_f32_gemm_config *cfg, int64_t K) {
    const int64_t line = ET_GEMM_ALIGN / (int64_t)sizeof(float);
    return round_up(cfg->mr * K, line) + round_up(cfg->mr * cfg->nr, line) +
           round_up(cfg->nr * min_i64(ET_GEMM_KC, K), line);
}

static void cta_task(void *ctx, int64_t t, int tid) {
    const cta_job *j = (const cta_job *)ctx;
    const gemm_args *a = &j->a;
    const et_f32_gemm_config *cfg = a->cfg;
    const int64_t MR = cfg->mr, NR = cfg->nr, M = a->M, N = a->N, K = a->K;
    const int64_t line = ET_GEMM_ALIGN / (int64_t)sizeof(float);
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    int64_t tb, te;
    et_thread_range(j->nt, (int)t, (int)j->ntasks, &tb, &te);
    if (te <= tb) return;
    /* op(B)^T's MR-row panel of K block pc at pa + pc * MR */
    float *pa = (float *)(a->base + (size_t)tid * a->slice);
    float *tile = pa + round_up(MR * K, line), *pb = tile + round_up(MR * NR, line);
    for (int64_t pc = 0; pc < K; pc += kc_blk) {
        const int64_t kc = min_i64(kc_blk, K - pc);
        if (a->trans_b) /* op(B)^T's row c is B's row c */
            cfg->pack_interleave(MR, N, kc, a->B + pc, a->ldb, pa + pc * MR);
        else
            cfg->pack_copy(MR, N, kc, a->B + pc * a->ldb, a->ldb, pa + pc * MR);
    }
    for (int64_t i0 = tb * NR; i0 < min_i64(te * NR, M); i0 += NR) {
        const int64_t n = min_i64(NR, M - i0);
        float *c = a->C + i0 * a->ldc; /* C^T tile (r, q) is C[i0 + q, r] */
        if (a->beta != 0.0f)
            for (int64_t r = 0; r < N; r++)
                for (int64_t q = 0; q < n; q++) tile[r * NR + q] = c[q * a->ldc + r];
        for (int64_t pc = 0; pc < K; pc += kc_blk) {
            const int64_t kc = min_i64(kc_blk, K - pc);
            const float *bp = a->A + pc * a->lda + i0; /* A's rows: C^T's B panel, in place */
            int64_t bs = a->lda;
            if (n < NR || !j->in_place) {
                cfg->pack_copy(NR, n, kc, bp, a->lda, pb);
                bp = pb;
                bs = NR;
            }
            cfg->ukernel(kc, pa + pc * MR, bp, bs, tile, NR, N, n, a->alpha,
                         pc == 0 ? a->beta : 1.0f);
        }
        store_tile_t(cfg, N, n, tile, NR, c, a->ldc);
    }
}

/* When the tasks share packed A (packed once before them, or pre-packed), more column tasks
 * pack nothing more (each packs only its own columns of B, as many times as there are row
 * groups tm): the grid then gets about GRID_TASK_MACS multiply-adds per task (tn raised, whole
 * NR panels, at most one task per panel) instead of 2 tasks per thread, so a worker that joins
 * late or a thread that another process holds up leaves the other a panel or two to finish,
 * not a whole task (LeNet's fc1 dX, 64 x 800 x 500: 24 tasks over its 25 ~11 us panels, was 4 of
 * ~70 us; dW, 500 x 800 x 64: 2 x 12, was 2 x 2). */
#define GRID_TASK_MACS 1048576.0

void et_f32_gemm_plan_of(const et_f32_gemm_config *cfg, int trans_a, int trans_b, int64_t M,
                         int64_t N, int64_t K, int64_t ldb, int has_pre, int nthreads,
                         et_f32_gemm_plan *p) {
    memset(p, 0, sizeof *p);
    if (nthreads < 1) nthreads = 1;
    if ((double)M * (double)N * (double)K < ET_GEMM_THREAD_MIN_MACS) nthreads = 1;
    p->nthreads = nthreads;
    const size_t slice = pack_a_bytes(cfg, M, K) + pack_b_bytes(cfg, N, K);
    if (!has_pre && !trans_a && trans_b && cfg->ukernel_sa && M <= CT_MAX_ROWS &&
        (N >= 4 * cfg->mr || N <= cfg->mr) && direct_b_stride_ok(ldb) &&
        ct_fits(cfg, M, K, slice)) {
        const int64_t nt = ceil_div(N, cfg->mr);
        p->ct = 1;
        p->tm = 1;
        p->tn = nthreads > 1 ? ceil_div(nt, CT_TILES_PER_TASK) : 1;
        return;
    }
    if (!has_pre && trans_a && N <= cfg->mr && M >= cfg->nr &&
        (size_t)cta_floats(cfg, K) * sizeof(float) <= slice) {
        const int64_t nt = ceil_div(M, cfg->nr);
        p->cta = 1;
        p->tm = 1;
        p->tn = nthreads > 1 ? ceil_div(nt, CT_TILES_PER_TASK) : 1;
        return;
    }
    /* more tasks than threads: a thread preempted by another process or a worker that joins
     * late holds up one task only (the grid changes no result bit: every element of C is the
     * same K loop) */
    int tm, tn;
    choose_grid(cfg, M, N, nthreads > 1 ? ET_GEMM_TASKS_PER_THREAD * nthreads : 1, &tm, &tn);
    const int64_t mt = ceil_div(M, cfg->mr), nt = ceil_div(N, cfg->nr);
    /* tasks that share rows of A (tn > 1) would each pack them again: op(A) is packed once, in
     * parallel, first (pack_a_range) */
    p->shared_a = !has_pre && tn > 1 && nthreads > 1;
    p->pack_units = p->shared_a ? et_split_chunks(mt, nthreads) : 0;
    if (nthreads > 1 && (has_pre || p->shared_a)) {
        const double per = (double)M * (double)N * (double)K / GRID_TASK_MACS / tm;
        if (per > (double)tn) tn = (int)min_i64(nt, (int64_t)per);
    }
    p->tm = tm;
    p->tn = tn;
}

static et_status gemm_packed_pre(const et_f32_gemm_config *cfg, int trans_a, int trans_b,
                                 int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                 int64_t lda, const packed_a *pre, const float *B, int64_t ldb,
                                 float beta, float *C, int64_t ldc, void *ws, size_t ws_bytes,
                                 int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (M == 0 || N == 0) return ET_OK;
    if (K == 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return ET_OK;
    }
    if (ws_bytes < et_f32_gemm_packed_ws_bytes(cfg, M, N, K, nthreads) || !ws)
        return ET_ERR_WORKSPACE;
    /* align the workspace; each task owns one slice */
    char *base = (char *)ws + ((ET_GEMM_ALIGN - (uintptr_t)ws % ET_GEMM_ALIGN) % ET_GEMM_ALIGN);
    const size_t a_bytes = pack_a_bytes(cfg, M, K), slice = a_bytes + pack_b_bytes(cfg, N, K);
    const gemm_args args = {cfg, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                            base, slice};
    et_f32_gemm_plan plan;
    et_f32_gemm_plan_of(cfg, trans_a, trans_b, M, N, K, ldb, pre != NULL, nthreads, &plan);
    nthreads = plan.nthreads;
    if (plan.ct) {
        ct_job cj = {args, ceil_div(N, cfg->mr), plan.tn, {0}};
        et_parallel_for(plan.tn, nthreads, ct_task, &cj);
        return ET_OK;
    }
    if (plan.cta) {
        cta_job cj = {args, ceil_div(M, cfg->nr), plan.tn, direct_b_stride_ok(lda)};
        et_parallel_for(plan.tn, nthreads, cta_task, &cj);
        return ET_OK;
    }
    const int64_t mt = ceil_div(M, cfg->mr), nt = ceil_div(N, cfg->nr);
    packed_a shared;
    if (plan.shared_a) { /* into the workspace after the slices (the same panels, the same bits) */
        float *data = (float *)(base + (size_t)nthreads * slice);
        pack_a_job pj = {cfg, trans_a, M, K, A, lda, data};
        et_parallel_ranges(mt, plan.pack_units, nthreads, pack_a_range, &pj);
        shared.data = data;
        shared.mp = round_up(M, cfg->mr);
        pre = &shared;
    }
    packed_job j = {args, pre, a_bytes, mt, nt, plan.tm, plan.tn};
    et_parallel_for((int64_t)plan.tm * plan.tn, nthreads, packed_task, &j);
    return ET_OK;
}

et_status et_f32_gemm_packed(const et_f32_gemm_config *cfg, int trans_a, int trans_b, int64_t M,
                             int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                             const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                             void *ws, size_t ws_bytes, int nthreads) {
    return gemm_packed_pre(cfg, trans_a, trans_b, M, N, K, alpha, A, lda, NULL, B, ldb, beta, C,
                           ldc, ws, ws_bytes, nthreads);
}

et_status et_f32_gemm_run(const et_f32_gemm_config *cfg, int trans_a, int trans_b, int64_t M,
                          int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                          const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                          void *ws, size_t ws_bytes, int nthreads) {
    if (M == 0 || N == 0) return ET_OK;
    if (K == 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return ET_OK;
    }
    if (et_f32_gemm_is_small(M, N, K)) {
        et_f32_gemm_small(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                          nthreads < 1 ? 1 : nthreads);
        return ET_OK;
    }
    return et_f32_gemm_packed(cfg, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                              ws, ws_bytes, nthreads);
}

/* ---- public entry points ------------------------------------------------------ */

const et_f32_gemm_variant et_f32_gemm_variants[] = {
    {{ET_ISA_REF, "ref"}, &et_f32_gemm_config_scalar},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX512, "avx512"}, &et_f32_gemm_config_avx512},
    {{ET_ISA_AVX2, "avx2"}, &et_f32_gemm_config_avx2},
#endif
#if defined(ET_HAVE_NEON)
    {{ET_ISA_NEON, "neon"}, &et_f32_gemm_config_neon},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};

/* The workspace query covers every config compiled into this build, so its answer does not
 * depend on the ISA chosen at run time. */
size_t et_f32_gemm_ws_bytes(int64_t M, int64_t N, int64_t K, int nthreads) {
    size_t bytes = 0;
    if (et_f32_gemm_is_small(M, N, K)) return 0;
    for (const et_f32_gemm_variant *row = et_f32_gemm_variants; row->head.name; row++) {
        const size_t b = et_f32_gemm_packed_ws_bytes(row->cfg, M, N, K, nthreads);
        if (b > bytes) bytes = b;
    }
    return bytes;
}

/* The packed-GEMM recipe of the ISA chosen now. */
static const et_f32_gemm_config *current_config(void) {
    const et_f32_gemm_variant *row = ET_VARIANT_PICK(et_f32_gemm_variants);
    return row->cfg;
}

static et_status check_args(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            const float *A, int64_t lda, const float *B, int64_t ldb,
                            const float *C, int64_t ldc, const void *ws, size_t ws_bytes,
                            int nthreads) {
    if (M < 0 || N < 0 || K < 0) return ET_ERR_ARG;
    if (M == 0 || N == 0) return ET_OK;
    if (!C || ldc < N) return ET_ERR_ARG;
    if (K > 0 && (!A || !B || lda < (trans_a ? M : K) || ldb < (trans_b ? K : N)))
        return ET_ERR_ARG;
    /* same workspace rule on every ISA, so callers tested on one work on all */
    const size_t need = et_f32_gemm_ws_bytes(M, N, K, nthreads);
    if (need > 0 && (ws_bytes < need || !ws)) return ET_ERR_WORKSPACE;
    return ET_OK;
}

et_status et_f32_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc, void *ws, size_t ws_bytes, int nthreads) {
    et_status st = check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, ws, ws_bytes,
                              nthreads);
    if (st != ET_OK || M == 0 || N == 0) return st;
    return et_f32_gemm_run(current_config(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                           beta, C, ldc, ws, ws_bytes, nthreads);
}

/* ---- pre-packed A ------------------------------------------------------------- */
/* pa starts with this header (one cache line), then the panels (see packed_a). */
typedef struct pa_header {
    uint64_t magic;
    const et_f32_gemm_config *cfg;
    int64_t m, k, trans_a;
} pa_header;
#define ET_PA_MAGIC 0x41504b4345474d45ull /* "EMGECKPA" */

static float *pa_data(const void *pa) {
    uintptr_t a = (uintptr_t)pa + sizeof(pa_header);
    return (float *)((a + ET_GEMM_ALIGN - 1) & ~(uintptr_t)(ET_GEMM_ALIGN - 1));
}

size_t et_f32_gemm_pack_a_bytes(int64_t M, int64_t K) {
    if (M <= 0 || K <= 0) return 0;
    size_t bytes = 0;
    for (const et_f32_gemm_variant *row = et_f32_gemm_variants; row->head.name; row++) {
        const size_t b = (size_t)(round_up(M, row->cfg->mr) * K) * sizeof(float);
        if (b > bytes) bytes = b;
    }
    return bytes + sizeof(pa_header) + ET_GEMM_ALIGN;
}

et_status et_f32_gemm_pack_a_threads(int trans_a, int64_t M, int64_t K, const float *A,
                                     int64_t lda, void *pa, size_t pa_bytes, int nthreads) {
    if (M <= 0 || K <= 0 || !A || !pa || lda < (trans_a ? M : K)) return ET_ERR_ARG;
    if (pa_bytes < et_f32_gemm_pack_a_bytes(M, K)) return ET_ERR_WORKSPACE;
    const et_f32_gemm_config *cfg = current_config();
    pa_header h = {ET_PA_MAGIC, cfg, M, K, trans_a != 0};
    memcpy(pa, &h, sizeof h);
    pack_a_job j = {cfg, trans_a, M, K, A, lda, pa_data(pa)};
    const int64_t panels = ceil_div(M, cfg->mr);
    /* threads only for real work (a copy: the split changes no value) */
    const int nth = nthreads > 1 && M * K >= 32768 ? nthreads : 1;
    et_parallel_ranges(panels, nth > 1 ? et_split_chunks(panels, nth) : 1, nth, pack_a_range, &j);
    return ET_OK;
}

et_status et_f32_gemm_pack_a(int trans_a, int64_t M, int64_t K, const float *A, int64_t lda,
                             void *pa, size_t pa_bytes) {
    return et_f32_gemm_pack_a_threads(trans_a, M, K, A, lda, pa, pa_bytes, 1);
}

int et_f32_gemm_pa_current(const void *pa, int trans_a, int64_t M, int64_t K) {
    const et_f32_gemm_config *cfg = current_config();
    pa_header h;
    if (!pa || !cfg) return 0;
    memcpy(&h, pa, sizeof h);
    return h.magic == ET_PA_MAGIC && h.cfg == cfg && h.m == M && h.k == K &&
           h.trans_a == (trans_a != 0);
}

et_status et_f32_gemm_pa(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const void *pa, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc, void *ws, size_t ws_bytes,
                         int nthreads) {
    et_status st = check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, ws, ws_bytes,
                              nthreads);
    if (st != ET_OK || M == 0 || N == 0) return st;
    const et_f32_gemm_config *cfg = current_config();
    pa_header h;
    if (pa) memcpy(&h, pa, sizeof h);
    if (!pa || !cfg || h.magic != ET_PA_MAGIC || h.cfg != cfg || h.m != M || h.k != K ||
        h.trans_a != (trans_a != 0) || K == 0 || alpha == 0.0f || et_f32_gemm_is_small(M, N, K))
        return et_f32_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ws,
                           ws_bytes, nthreads);
    const packed_a pre = {pa_data(pa), round_up(M, cfg->mr)};
    return gemm_packed_pre(cfg, trans_a, trans_b, M, N, K, alpha, A, lda, &pre, B, ldb, beta, C,
                           ldc, ws, ws_bytes, nthreads);
}

/* ---- B rows through a table (gemm_internal.h) ------------------------------------------ */
int et_f32_gemm_offb_available(void) {
    const et_f32_gemm_config *cfg = current_config();
    return cfg && cfg->ukernel_off;
}

et_status et_f32_gemm_pa_offb(int64_t M, int64_t N, int64_t K, const void *pa, const float *b,
                              const int32_t *off, float *C, int64_t ldc,
                              et_f32_gemm_epilogue *epi, void *epi_ctx) {
    const et_f32_gemm_config *cfg = current_config();
    if (!cfg || !cfg->ukernel_off || cfg->nr > ET_GEMM_NR_MAX || M <= 0 || N <= 0 || K <= 0 ||
        !pa || !b || !off || !C || ldc < N)
        return ET_ERR_ARG;
    pa_header h;
    memcpy(&h, pa, sizeof h);
    if (h.magic != ET_PA_MAGIC || h.cfg != cfg || h.m != M || h.k != K || h.trans_a != 0)
        return ET_ERR_ARG;
    const int64_t MR = cfg->mr, NR = cfg->nr, mp = round_up(M, MR);
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    const float *ap = pa_data(pa); /* K block pc: panel of rows ir at ap + pc * mp + ir * kc */
    /* per tile its K blocks back to back (the first sets C, later ones add): the packed
     * path's epilogue sequence */
    for (int64_t ir = 0; ir < M; ir += MR) {
        const int64_t mr = min_i64(MR, M - ir);
        for (int64_t jr = 0; jr < N; jr += NR) {
            const int64_t nr = min_i64(NR, N - jr);
            for (int64_t pc = 0; pc < K; pc += kc_blk) {
                const int64_t kc = min_i64(kc_blk, K - pc);
                cfg->ukernel_off(kc, ap + pc * mp + ir * kc, b + jr, off + pc, C + ir * ldc + jr,
                                 ldc, mr, nr, 1.0f, pc == 0 ? 0.0f : 1.0f);
            }
            if (epi) epi(epi_ctx, ir, mr, C + ir * ldc + jr, ldc, nr);
        }
    }
    return ET_OK;
}

/* ---- one band of rows at a time (gemm_internal.h) ---------------------------------------- */
#define ET_GEMM_MR_MAX 16 /* the tallest register tile of any config */

/* Rows of buf before the packed B panel: unit - 1 rows waiting for their unit and one band. */
static int64_t bands_rows(int64_t unit) { return (unit > 1 ? unit - 1 : 0) + ET_GEMM_MR_MAX; }

int64_t et_f32_gemm_bands_floats(int64_t N, int64_t K, int64_t unit) {
    /* the rows, then one packed B panel (the partial last one), each 64-byte aligned */
    return round_up(bands_rows(unit) * N, 16) + K * ET_GEMM_NR_MAX + 16;
}

et_status et_f32_gemm_pa_bands(int64_t M, int64_t N, int64_t K, const void *pa, const float *B,
                               int64_t ldb, int64_t unit, float *buf,
                               et_f32_gemm_epilogue *band_fn, void *ctx) {
    const et_f32_gemm_config *cfg = current_config();
    if (!cfg || cfg->mr > ET_GEMM_MR_MAX || cfg->nr > ET_GEMM_NR_MAX || M <= 0 || N <= 0 ||
        K <= 0 || unit < 0 || !pa || !B || !buf || !band_fn || ldb < N ||
        !direct_b_stride_ok(ldb))
        return ET_ERR_ARG;
    pa_header h;
    memcpy(&h, pa, sizeof h);
    if (h.magic != ET_PA_MAGIC || h.cfg != cfg || h.m != M || h.k != K) return ET_ERR_ARG;
    const int64_t MR = cfg->mr, NR = cfg->nr, mp = round_up(M, MR);
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    const float *ap = pa_data(pa);
    float *pb = buf + round_up(bands_rows(unit) * N, 16);
    pb += (ET_GEMM_ALIGN - (uintptr_t)pb % ET_GEMM_ALIGN) % ET_GEMM_ALIGN / sizeof(float);
    /* whole B panels read in place, the partial last one packed once */
    const int64_t jlast = (N - 1) / NR * NR;
    const int pack_last = N - jlast < NR;
    if (pack_last) cfg->pack_copy(NR, N - jlast, K, B + jlast, ldb, pb);
    int64_t base = 0; /* buf's row 0 is row base of C; rows [base, ir) are computed */
    for (int64_t ir = 0; ir < M; ir += MR) {
        const int64_t mr = min_i64(MR, M - ir);
        float *cb = buf + (ir - base) * N;
        for (int64_t jr = 0; jr < N; jr += NR) {
            const int64_t nr = min_i64(NR, N - jr);
            const int packed = jr == jlast && pack_last;
            const float *bp = packed ? pb : B + jr;
            const int64_t bs = packed ? NR : ldb;
            for (int64_t pc = 0; pc < K; pc += kc_blk) {
                const int64_t kc = min_i64(kc_blk, K - pc);
                cfg->ukernel(kc, ap + pc * mp + ir * kc, bp + pc * bs, bs, cb + jr, N, mr, nr,
                             1.0f, pc == 0 ? 0.0f : 1.0f);
            }
        }
        const int64_t done = ir + mr;
        if (unit == 0) {
            band_fn(ctx, ir, mr, cb, N, N);
            base = done;
            continue;
        }
        int64_t row = base;
        for (; done - row >= unit || (done == M && row < M); row += unit)
            band_fn(ctx, row, min_i64(unit, M - row), buf + (row - base) * N, N, N);
        if (row > base) {
            /* the rows still waiting for their unit move to the front (fewer than unit) */
            memmove(buf, buf + (row - base) * N, (size_t)((done - row) * N) * sizeof(float));
            base = row;
        }
    }
    return ET_OK;
}

/* ---- batched NCHW operands (gemm_internal.h) -------------------------------------- */
/* Floats of packed B one task keeps (all K rows of nc columns): about 512 KiB, half of L2. */
#define ET_GEMM_NCHW_B_FLOATS ((int64_t)128 * 1024)

/* Columns of packed B per block: all K rows of it fit ET_GEMM_NCHW_B_FLOATS. */
static int64_t nchw_nc(const et_f32_gemm_config *cfg, int64_t K) {
    int64_t nc = ET_GEMM_NCHW_B_FLOATS / K / cfg->nr * cfg->nr;
    if (nc < cfg->nr) nc = cfg->nr;
    return min_i64(nc, cfg->nc);
}

/* One thread's slice: packed B block (K x nc), then the tile buffer (MR x NR). */
static size_t nchw_pb_bytes(const et_f32_gemm_config *cfg, int64_t K, int64_t N) {
    const int64_t nc = min_i64(nchw_nc(cfg, K), round_up(N, cfg->nr));
    return (size_t)round_up(K * nc * (int64_t)sizeof(float), ET_GEMM_ALIGN);
}
static size_t nchw_tile_bytes(const et_f32_gemm_config *cfg, int64_t M) {
    (void)M;
    return (size_t)round_up(cfg->mr * cfg->nr * (int64_t)sizeof(float), ET_GEMM_ALIGN);
}

size_t et_f32_gemm_nchw_ws_bytes(int64_t M, int64_t K, int64_t n, int64_t np, int nthreads) {
    if (M <= 0 || K <= 0 || n <= 0 || np <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    size_t bytes = 0;
    for (const et_f32_gemm_variant *row = et_f32_gemm_variants; row->head.name; row++) {
        const size_t b = (nchw_pb_bytes(row->cfg, K, n * np) + nchw_tile_bytes(row->cfg, M)) *
                         (size_t)nthreads;
        if (b > bytes) bytes = b;
    }
    return bytes ? bytes + ET_GEMM_ALIGN : 0;
}


void et_f32_gemm_rowepi_apply(void *ctx, int64_t row0, int64_t rows, float *c, int64_t ldc,
                              int64_t ncols) {
    const et_f32_gemm_rowepi *e = (const et_f32_gemm_rowepi *)ctx;
    for (int64_t r = 0; r < rows; r++) {
        float *ET_RESTRICT v = c + r * ldc;
        const int64_t o = row0 + r;
        const float bias = e->bias ? e->bias[o] : 0.0f;
        if (bias != 0.0f || e->bias_always)
            for (int64_t j = 0; j < ncols; j++) v[j] += bias;
        if (e->scale) {
            const float a = e->scale[o], s = e->shift[o];
            for (int64_t j = 0; j < ncols; j++) v[j] = v[j] * a + s;
        }
        switch (e->clamp) {
        case ET_GEMM_CLAMP_RELU:
            for (int64_t j = 0; j < ncols; j++) v[j] = v[j] < 0.0f ? 0.0f : v[j];
            break;
        case ET_GEMM_CLAMP_RELU6:
            for (int64_t j = 0; j < ncols; j++)
                v[j] = v[j] < 0.0f ? 0.0f : (v[j] > 6.0f ? 6.0f : v[j]);
            break;
        case ET_GEMM_CLAMP_RELU6_LE:
            for (int64_t j = 0; j < ncols; j++)
                v[j] = v[j] <= 0.0f ? 0.0f : (v[j] >= 6.0f ? 6.0f : v[j]);
            break;
        default: break;
        }
    }
}

typedef struct nchw_job {
    const et_f32_gemm_config *cfg;
    int64_t M, K, n, np;
    const float *pa; /* packed op(A) panels (packed_a layout) */
    int64_t mp;
    const float *x;
    int64_t xs;
    float *y;
    int64_t ys;
    et_f32_gemm_epilogue *epi;
    void *epi_ctx;
    char *base;
    size_t pb_bytes, slice;
    int64_t mt, nt;
    int tm, tn;
    int direct_b; /* whole panels read in place: only with one row tile (M <= MR), else each
                   * row tile would stream them from memory again */
    int shared_b;    /* all of B packed once (slot 0) before the row tasks run (nchw_shared_b) */
    int64_t kstrips; /* shared_b: K strips per panel in the packing pass */
    /* et_f32_gemm_nchw_a: A unpacked (pa NULL), each row task packs its a_rows rows */
    int trans_a;
    const float *A;
    int64_t lda, a_rows;
    size_t a_bytes;
} nchw_job;

/* Whole images of NP pixels (a constant: one vector move per row for 4 .. 16 instead of
 * et_copy_short_'s tests and overlapping moves): image img0 + q's rows k0 .. k1 - 1, back to
 * back in x, to columns q * NP .. of the panel's rows (stride NR). Row by row: each packed row
 * (a cache line or two) is written whole while the images are read as parallel streams. */
#define NCHW_PACK_WHOLE(NP)                                                                   \
    static void nchw_pack_whole_##NP(const nchw_job *jb, int64_t img0, int64_t imgs,        \
                                     int64_t k0, int64_t k1, float *ET_RESTRICT dst) {      \
        const int64_t NR = jb->cfg->nr;                                                      \
        const float *ET_RESTRICT s = jb->x + img0 * jb->xs;                                  \
        for (int64_t k = k0; k < k1; k++)                                                    \
            for (int64_t q = 0; q < imgs; q++)                                               \
                memcpy(dst + k * NR + q * NP, s + q * jb->xs + k * NP, NP * sizeof(float));  \
    }
NCHW_PACK_WHOLE(2)
NCHW_PACK_WHOLE(4)
NCHW_PACK_WHOLE(8)
NCHW_PACK_WHOLE(16)

/* dst[k*NR + c] = B[k, j + c] for k0 <= k < k1, c < nr (zeros for nr <= c < NR), B's column
 * j + c being pixel (j + c) % np of image (j + c) / np. */
static void nchw_pack_b(const nchw_job *jb, int64_t j, int64_t nr, int64_t k0, int64_t k1,
                        float *ET_RESTRICT dst) {
    const int64_t NR = jb->cfg->nr, np = jb->np, kc = k1 - k0;
    if (nr == NR && j % np + NR <= np) { /* one image: a plain row-copy panel */
        jb->cfg->pack_copy(NR, NR, kc, jb->x + (j / np) * jb->xs + k0 * np + j % np, np,
                           dst + k0 * NR);
        return;
    }
    if (np == 1) { /* column c is image j + c's vector of K floats: a transposing pack */
        jb->cfg->pack_interleave(NR, nr, kc, jb->x + j * jb->xs + k0, jb->xs, dst + k0 * NR);
        return;
    }
    if (nr == NR && j % np == 0 && NR % np == 0) { /* whole images of a small plane */
        switch (np) {
        case 2: nchw_pack_whole_2(jb, j / np, NR / np, k0, k1, dst); return;
        case 4: nchw_pack_whole_4(jb, j / np, NR / np, k0, k1, dst); return;
        case 8: nchw_pack_whole_8(jb, j / np, NR / np, k0, k1, dst); return;
        case 16: nchw_pack_whole_16(jb, j / np, NR / np, k0, k1, dst); return;
        default: break;
        }
    }
    for (int64_t off = 0; off < nr;) {
        const int64_t img = (j + off) / np, pix = (j + off) % np;
        const int64_t len = min_i64(np - pix, nr - off);
        const float *ET_RESTRICT s = jb->x + img * jb->xs + pix;
        float *ET_RESTRICT d = dst + off;
        if (len == 1)
            for (int64_t k = k0; k < k1; k++) d[k * NR] = s[k * np];
        else
            for (int64_t k = k0; k < k1; k++) et_copy_short_(d + k * NR, s + k * np, len);
        off += len;
    }
    if (nr < NR)
        for (int64_t k = k0; k < k1; k++)
            for (int64_t c = nr; c < NR; c++) dst[k * NR + c] = 0.0f;
}

/* Rows [k0, k1) of the B block of columns [jc, jc + nc) into pb (panel jr at pb + jr * K).
 * Runs of whole panels inside one image are copied 8 image rows at a time across the run (8
 * read streams, not K of them, and 1 KiB written per panel, not 128 bytes at a power-of-two
 * stride); they are skipped when B is read in place. Other panels (across images, partial)
 * go through nchw_pack_b. */
static void nchw_pack_block(const nchw_job *jb, int64_t jc, int64_t nc, int64_t k0, int64_t k1,
                            float *pb) {
    const int64_t NR = jb->cfg->nr, K = jb->K, np = jb->np;
    for (int64_t jr = 0; jr < nc;) {
        const int64_t jj = jc + jr, pix = jj % np;
        if (nc - jr < NR || pix + NR > np) {
            nchw_pack_b(jb, jj, min_i64(NR, nc - jr), k0, k1, pb + jr * K);
            jr += NR;
            continue;
        }
        int64_t q = 1; /* whole panels in this run */
        while (jr + (q + 1) * NR <= nc && pix + (q + 1) * NR <= np) q++;
        if (!jb->direct_b) {
            const float *ET_RESTRICT src = jb->x + (jj / np) * jb->xs + pix;
            float *ET_RESTRICT dst = pb + jr * K;
            for (int64_t r0 = k0; r0 < k1; r0 += 8) {
                const int64_t r1 = min_i64(r0 + 8, k1);
                for (int64_t t = 0; t < q; t++)
                    for (int64_t k = r0; k < r1; k++)
                        memcpy(dst + t * K * NR + k * NR, src + k * np + t * NR,
                               (size_t)NR * sizeof(float));
            }
        }
        jr += q * NR;
    }
}

/* Whole images of NP pixels (a constant: one move a row, none of et_copy_short_'s length
 * tests, no division per image): image q of the tile is rows x NP floats at tile + q * NP (row
 * stride NR) and goes to y's rows row0.. of image img0 + q, which lie back to back. */
#define NCHW_SCATTER_WHOLE(NP)                                                                \
    static void nchw_scatter_whole_##NP(const nchw_job *jb, const float *ET_RESTRICT tile,   \
                                        int64_t row0, int64_t rows, int64_t img0,            \
                                        int64_t imgs, int64_t NR) {                          \
        for (int64_t q = 0; q < imgs; q++) {                                                  \
            float *ET_RESTRICT d = jb->y + (img0 + q) * jb->ys + row0 * NP;                   \
            const float *ET_RESTRICT s = tile + q * NP;                                       \
            for (int64_t r = 0; r < rows; r++)                                                \
                memcpy(d + r * NP, s + r * NR, NP * sizeof(float));                          \
        }                                                                                     \
    }
NCHW_SCATTER_WHOLE(2)
NCHW_SCATTER_WHOLE(4)
NCHW_SCATTER_WHOLE(8)
NCHW_SCATTER_WHOLE(16)

/* A tile (rows rows, nr columns from column j, row stride NR) to y, image by image. */
static void nchw_scatter(const nchw_job *jb, const float *ET_RESTRICT tile, int64_t row0,
                         int64_t rows, int64_t j, int64_t nr) {
    const int64_t NR = jb->cfg->nr, np = jb->np;
    if (j % np == 0 && nr % np == 0) { /* whole images: small planes, the late layers */
        const int64_t img0 = j / np, imgs = nr / np;
        switch (np) {
        case 1: /* C^T: each image's rows side by side, the config's transposing store */
            store_tile_t(jb->cfg, rows, imgs, tile, NR, jb->y + img0 * jb->ys + row0, jb->ys);
            return;
        case 2: nchw_scatter_whole_2(jb, tile, row0, rows, img0, imgs, NR); return;
        case 4: nchw_scatter_whole_4(jb, tile, row0, rows, img0, imgs, NR); return;
        case 8: nchw_scatter_whole_8(jb, tile, row0, rows, img0, imgs, NR); return;
        case 16: nchw_scatter_whole_16(jb, tile, row0, rows, img0, imgs, NR); return;
        default: break;
        }
    }
    for (int64_t off = 0; off < nr;) {
        const int64_t img = (j + off) / np, pix = (j + off) % np;
        const int64_t len = min_i64(np - pix, nr - off);
        float *ET_RESTRICT d = jb->y + img * jb->ys + row0 * np + pix;
        const float *ET_RESTRICT s = tile + off;
        if (len == 1)
            for (int64_t r = 0; r < rows; r++) d[r * np] = s[r * NR];
        else
            for (int64_t r = 0; r < rows; r++) et_copy_short_(d + r * np, s + r * NR, len);
        off += len;
    }
}

/* Rows [i0, i1) x columns [j0, j1) of C (tile aligned). Loop nest: column blocks (B packed
 * once per block, all K rows), row blocks, MR row tiles, NR column panels, K blocks innermost:
 * a tile's K blocks run back to back, so each tile is final (epilogue, scatter) while in L1,
 * and consecutive tiles continue the same MR output rows (few store streams; the A panel
 * stays in L1 while the B block streams from L2). */
/* ap: packed A holding rows [a0, a0 + mp) (K block pc of rows ir at ap + pc * mp +
 * (ir - a0) * kc). */
static void nchw_block(const nchw_job *jb, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                       float *pb, float *tile, const float *ap, int64_t mp, int64_t a0) {
    const et_f32_gemm_config *cfg = jb->cfg;
    const int64_t MR = cfg->mr, NR = cfg->nr, K = jb->K, np = jb->np;
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    const int64_t nc_blk = balanced_block(j1 - j0, nchw_nc(cfg, K), NR);
    /* a row epilogue the ukernel applies in registers before its last store */
    const int fused = jb->epi == et_f32_gemm_rowepi_apply && cfg->ukernel_epi;
    for (int64_t jc = j0; jc < j1; jc += nc_blk) {
        const int64_t nc = min_i64(nc_blk, j1 - jc);
        if (!jb->shared_b) nchw_pack_block(jb, jc, nc, 0, K, pb);
        for (int64_t ir = i0; ir < i1; ir += MR) {
            const int64_t mr = min_i64(MR, i1 - ir);
            for (int64_t jr = 0; jr < nc; jr += NR) {
                const int64_t jj = jc + jr, nr = min_i64(NR, nc - jr);
                const int64_t img = jj / np, pix = jj % np;
                const int inside = pix + nr <= np;
                const int in_place = jb->direct_b && nr == NR && inside;
                const float *bp = in_place ? jb->x + img * jb->xs + pix : pb + jr * K;
                const int64_t bs = in_place ? np : NR;
                float *c = inside ? jb->y + img * jb->ys + ir * np + pix : tile;
                const int64_t ldc = inside ? np : NR;
                for (int64_t pc = 0; pc < K; pc += kc_blk) {
                    const int64_t kc = min_i64(kc_blk, K - pc);
                    const float *a = ap + pc * mp + (ir - a0) * kc, *b = bp + pc * bs;
                    const float beta = pc == 0 ? 0.0f : 1.0f;
                    if (fused && pc + kc == K)
                        cfg->ukernel_epi(kc, a, b, bs, c, ldc, mr, nr, beta,
                                         (const et_f32_gemm_rowepi *)jb->epi_ctx, ir);
                    else
                        cfg->ukernel(kc, a, b, bs, c, ldc, mr, nr, 1.0f, beta);
                }
                if (jb->epi && !fused) jb->epi(jb->epi_ctx, ir, mr, c, ldc, nr);
                if (!inside) nchw_scatter(jb, tile, ir, mr, jj, nr);
            }
        }
    }
}

/* Task t: column block t / tm, row block t % tm. The columns are the images in address order,
 * so the front tasks (the caller's) are all rows of the first images and the back ones (a
 * worker's) all rows of the last: each thread reads and writes the images the ops around it
 * (split by images) leave in its core's cache. The grid, not the order, sets the bits. */
static void nchw_task(void *ctx, int64_t t, int tid) {
    const nchw_job *jb = (const nchw_job *)ctx;
    const et_f32_gemm_config *cfg = jb->cfg;
    int64_t mb, me, nb, ne;
    et_thread_range(jb->mt, (int)(t % jb->tm), jb->tm, &mb, &me);
    et_thread_range(jb->nt, (int)(t / jb->tm), jb->tn, &nb, &ne);
    const int64_t i0 = mb * cfg->mr, i1 = min_i64(me * cfg->mr, jb->M);
    const int64_t j0 = nb * cfg->nr, j1 = min_i64(ne * cfg->nr, jb->n * jb->np);
    if (i1 <= i0 || j1 <= j0) return;
    float *pb = (float *)(jb->base + (size_t)(jb->shared_b ? 0 : tid) * jb->slice);
    float *tile = (float *)(jb->base + (size_t)tid * jb->slice + jb->pb_bytes);
    nchw_block(jb, i0, i1, j0, j1, pb, tile, jb->pa, jb->mp, 0);
}

/* Shared B (packing pass): unit u = K strip u % kstrips of column panel u / kstrips. */
static void nchw_pack_task(void *ctx, int64_t u, int tid) {
    const nchw_job *jb = (const nchw_job *)ctx;
    const int64_t NR = jb->cfg->nr, N = jb->n * jb->np;
    const int64_t jr = (u / jb->kstrips) * NR;
    int64_t k0, k1;
    (void)tid;
    et_thread_range(jb->K, (int)(u % jb->kstrips), (int)jb->kstrips, &k0, &k1);
    nchw_pack_block(jb, jr, min_i64(NR, N - jr), k0, k1, (float *)jb->base + jr * jb->K);
}

/* When the task grid splits the rows (tm > 1) and the whole B is one packed block (it fits
 * slot 0's buffer): B is packed once by all threads (panels x K strips), then the row tiles
 * split over tasks that all read it, instead of every row task of a column range packing the
 * same block again (small N: 1x1 planes, the late MobileNetV2 blocks). Each tile is the same
 * ukernel calls on the same packed values, so the bits do not change. */
static int nchw_shared_b(const et_f32_gemm_config *cfg, int64_t M, int64_t K, int64_t N) {
    return M > cfg->mr && nchw_nc(cfg, K) >= round_up(N, cfg->nr);
}

/* Packing pass strips: about this many K rows each (a panel is K x NR floats). */
#define NCHW_PACK_STRIP 64
/* Column panels per thread from which et_f32_gemm_nchw splits by columns alone. */
#define NCHW_COL_PANELS 4
#define NCHW_COL_A_BYTES (1024.0 * 1024.0)

et_status et_f32_gemm_nchw(int trans_a, int64_t M, int64_t K, int64_t n, int64_t np,
                           const void *pa, const float *x, int64_t xs, float *y, int64_t ys,
                           et_f32_gemm_epilogue *epi, void *epi_ctx, void *ws, size_t ws_bytes,
                           int nthreads) {
    const et_f32_gemm_config *cfg = current_config();
    if (nthreads < 1) nthreads = 1;
    if (!cfg || M <= 0 || K <= 0 || n <= 0 || np <= 0 || !pa || !x || !y) return ET_ERR_ARG;
    pa_header h;
    memcpy(&h, pa, sizeof h);
    if (h.magic != ET_PA_MAGIC || h.cfg != cfg || h.m != M || h.k != K ||
        h.trans_a != (trans_a != 0))
        return ET_ERR_ARG;
    if (!ws || ws_bytes < et_f32_gemm_nchw_ws_bytes(M, K, n, np, nthreads))
        return ET_ERR_WORKSPACE;
    const int64_t N = n * np;
    char *base = (char *)ws + ((ET_GEMM_ALIGN - (uintptr_t)ws % ET_GEMM_ALIGN) % ET_GEMM_ALIGN);
    const size_t pb_bytes = nchw_pb_bytes(cfg, K, N);
    const int64_t mt = ceil_div(M, cfg->mr), nt = ceil_div(N, cfg->nr);
    int tm = 1, tn = nthreads > 1 ? 2 * nthreads : 1;
    /* Split by columns (images) alone when every thread gets a few panels and A, which every
     * column task reads whole, is not both the larger operand and larger than NCHW_COL_A_BYTES:
     * a thread then reads and writes only its images, which the ops around it (split by images)
     * leave in its core's cache, and packs each B panel once. Otherwise the grid of the least
     * compute plus packing. */
    if (nthreads == 1 || nt < NCHW_COL_PANELS * (int64_t)nthreads ||
        (M > N && (double)M * (double)K * sizeof(float) > NCHW_COL_A_BYTES))
        choose_grid(cfg, M, N, nthreads > 1 ? 2 * nthreads : 1, &tm, &tn);
    const int shared = tm > 1 && nchw_shared_b(cfg, M, K, N);
    if (shared) { /* row tasks only: up to ET_POOL_CHUNKS_PER_THREAD per thread */
        tm = (int)min_i64(mt, (int64_t)nthreads * ET_POOL_CHUNKS_PER_THREAD);
        tn = 1;
    }
    nchw_job jb = {cfg, M, K, n, np, pa_data(pa), round_up(M, cfg->mr), x, xs, y, ys, epi,
                   epi_ctx, base, pb_bytes, pb_bytes + nchw_tile_bytes(cfg, M), mt, nt, tm, tn,
                   M <= cfg->mr && direct_b_stride_ok(np), shared, 1, 0, NULL, 0, 0, 0};
    if (shared) {
        jb.kstrips = nthreads > 1 ? ceil_div(K, NCHW_PACK_STRIP) : 1;
        et_parallel_for(nt * jb.kstrips, nthreads, nchw_pack_task, &jb);
    }
    et_parallel_for(tm * tn, nthreads, nchw_task, &jb);
    return ET_OK;
}

/* ---- batched NCHW operands, A packed by the row tasks ------------------------------------
 * et_f32_gemm_nchw with a large A (a wide 1x1 convolution's weights: 1280 x 320 in
 * MobileNetV2's last block, 1.6 MiB packed) needs all of packed A in its workspace, the
 * largest block of a training step's plan. When all of B fits one packed block (small planes,
 * exactly where A is large), B is packed once (the shared pass) and each row task packs its
 * own NCHW_A_TASK_BYTES of A rows into its thread's slot just before using them: the same
 * total packing, one such slot per thread, and each tile the same ukernel calls on the same
 * packed values, so the same bits as et_f32_gemm_nchw. The tasks are small (~10 us each): at
 * 256 KiB MobileNetV2's 960 x 160 weights made 3 row tasks, which 2 threads share 2 : 1. */
#define NCHW_A_TASK_BYTES ((int64_t)64 * 1024)

/* Rows of A per task: whole register tiles, about NCHW_A_TASK_BYTES of them. */
static int64_t nchw_a_rows(const et_f32_gemm_config *cfg, int64_t K) {
    const int64_t rows = NCHW_A_TASK_BYTES / ((int64_t)sizeof(float) * K) / cfg->mr * cfg->mr;
    return rows > cfg->mr ? rows : cfg->mr;
}
static size_t nchw_a_slot_bytes(const et_f32_gemm_config *cfg, int64_t K) {
    return (size_t)round_up(nchw_a_rows(cfg, K) * K * (int64_t)sizeof(float), ET_GEMM_ALIGN);
}

size_t et_f32_gemm_nchw_a_ws_bytes(int64_t M, int64_t K, int64_t n, int64_t np, int nthreads) {
    if (M <= 0 || K <= 0 || n <= 0 || np <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    size_t bytes = 0;
    for (const et_f32_gemm_variant *row = et_f32_gemm_variants; row->head.name; row++) {
        const et_f32_gemm_config *cfg = row->cfg;
        if (nchw_nc(cfg, K) < round_up(n * np, cfg->nr)) return 0; /* B is not one block */
        const size_t b = nchw_pb_bytes(cfg, K, n * np) +
                         (nchw_a_slot_bytes(cfg, K) + nchw_tile_bytes(cfg, M)) * (size_t)nthreads;
        if (b > bytes) bytes = b;
    }
    return bytes ? bytes + ET_GEMM_ALIGN : 0;
}

/* Row task t: rows [t * a_rows, ...) of A packed into this thread's slot, then every column. */
static void nchw_a_task(void *ctx, int64_t t, int tid) {
    const nchw_job *jb = (const nchw_job *)ctx;
    const et_f32_gemm_config *cfg = jb->cfg;
    const int64_t MR = cfg->mr, i0 = t * jb->a_rows, i1 = min_i64(i0 + jb->a_rows, jb->M);
    const int64_t mp = round_up(i1 - i0, MR), kc_blk = balanced_block(jb->K, ET_GEMM_KC, 1);
    char *slot = jb->base + jb->pb_bytes + (size_t)tid * jb->slice;
    float *ap = (float *)slot, *tile = (float *)(slot + jb->a_bytes);
    for (int64_t pc = 0; pc < jb->K; pc += kc_blk) {
        const int64_t kc = min_i64(kc_blk, jb->K - pc);
        for (int64_t r = i0; r < i1; r += MR)
            pack_a_panel(cfg, jb->trans_a, min_i64(MR, i1 - r), kc, jb->A, jb->lda, r, pc,
                         ap + pc * mp + (r - i0) * kc);
    }
    nchw_block(jb, i0, i1, 0, jb->n * jb->np, (float *)jb->base, tile, ap, mp, i0);
}

et_status et_f32_gemm_nchw_a(int trans_a, int64_t M, int64_t K, int64_t n, int64_t np,
                             const float *A, int64_t lda, const float *x, int64_t xs, float *y,
                             int64_t ys, et_f32_gemm_epilogue *epi, void *epi_ctx, void *ws,
                             size_t ws_bytes, int nthreads) {
    const et_f32_gemm_config *cfg = current_config();
    if (nthreads < 1) nthreads = 1;
    if (!cfg || M <= 0 || K <= 0 || n <= 0 || np <= 0 || !A || lda < (trans_a ? M : K) || !x ||
        !y)
        return ET_ERR_ARG;
    const size_t need = et_f32_gemm_nchw_a_ws_bytes(M, K, n, np, nthreads);
    if (!need) return ET_ERR_ARG;
    if (!ws || ws_bytes < need) return ET_ERR_WORKSPACE;
    const int64_t N = n * np;
    char *base = (char *)ws + ((ET_GEMM_ALIGN - (uintptr_t)ws % ET_GEMM_ALIGN) % ET_GEMM_ALIGN);
    const size_t pb_bytes = nchw_pb_bytes(cfg, K, N), a_bytes = nchw_a_slot_bytes(cfg, K);
    const int64_t a_rows = nchw_a_rows(cfg, K);
    nchw_job jb = {cfg, M, K, n, np, NULL, 0, x, xs, y, ys, epi, epi_ctx, base, pb_bytes,
                   a_bytes + nchw_tile_bytes(cfg, M), 0, ceil_div(N, cfg->nr), 0, 0, 0, 1,
                   nthreads > 1 ? ceil_div(K, NCHW_PACK_STRIP) : 1, trans_a != 0, A, lda, a_rows,
                   a_bytes};
    et_parallel_for(jb.nt * jb.kstrips, nthreads, nchw_pack_task, &jb);
    et_parallel_for(ceil_div(M, a_rows), nthreads, nchw_a_task, &jb);
    return ET_OK;
}

/* ---- weight gradient of a 1x1 convolution over NCHW images ---------------------------- */
typedef struct wgrad_job {
    const et_f32_gemm_config *cfg;
    int64_t M, N, K, np;
    const float *dy;
    int64_t ys;
    const float *x;
    int64_t xs;
    float *C;
    int64_t ldc;
    char *base;
    size_t a_bytes, slice;
    int64_t mt, nt;
    int tm, tn;
    /* threads > 1 (wgrad_split_task): the tasks split rows of C (split_rows) or its columns;
     * thread tid's slot (slot bytes from sp) holds K block ready[tid] - 1 of the other operand
     * packed whole, then one panel of the split operand */
    float *sp;
    size_t slot;
    int split_rows;
    int64_t kblocks, ntasks;
    float *parts; /* K blocks 1.. : their products, M x N each */
    int64_t ready[ET_POOL_MAX_THREADS];
} wgrad_job;

/* A w-wide panel of rows [r0, r0 + m) of an operand whose columns are the batch's pixels
 * (column k: pixel k % np of image k / np, src + image * ss + row * np), columns
 * [pc, pc + kc): dst[k*w + r], zeros for r >= m. The interleave pack per piece of one image
 * (np == 1: the rows of a transposed matrix, the copy pack). */
static void wgrad_pack(const et_f32_gemm_config *cfg, int64_t w, int64_t m, const float *src,
                       int64_t ss, int64_t np, int64_t r0, int64_t pc, int64_t kc, float *dst) {
    if (np == 1) {
        cfg->pack_copy(w, m, kc, src + pc * ss + r0, ss, dst);
        return;
    }
    for (int64_t k = 0; k < kc;) {
        const int64_t img = (pc + k) / np, pix = (pc + k) % np, len = min_i64(np - pix, kc - k);
        cfg->pack_interleave(w, m, len, src + img * ss + r0 * np + pix, np, dst + k * w);
        k += len;
    }
}

/* C rows [i0, i1) x columns [j0, j1): gemm_packed_block's loop nest and arithmetic for
 * C = dY' X'^T, with both operands packed straight from the images. */
static void wgrad_block(const wgrad_job *j, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                        float *pa, float *pb) {
    const et_f32_gemm_config *cfg = j->cfg;
    const int64_t MR = cfg->mr, NR = cfg->nr, K = j->K;
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    const int64_t mc_blk = balanced_block(i1 - i0, cfg->mc, MR);
    const int64_t nc_blk = balanced_block(j1 - j0, cfg->nc, NR);
    for (int64_t jc = j0; jc < j1; jc += nc_blk) {
        const int64_t nc = min_i64(nc_blk, j1 - jc);
        for (int64_t pc = 0; pc < K; pc += kc_blk) {
            const int64_t kc = min_i64(kc_blk, K - pc);
            for (int64_t jr = 0; jr < nc; jr += NR)
                wgrad_pack(cfg, NR, min_i64(NR, nc - jr), j->x, j->xs, j->np, jc + jr, pc, kc,
                           pb + jr * kc);
            const float beta_k = pc == 0 ? 0.0f : 1.0f;
            for (int64_t ic = i0; ic < i1; ic += mc_blk) {
                const int64_t mc = min_i64(mc_blk, i1 - ic);
                for (int64_t ir = 0; ir < mc; ir += MR)
                    wgrad_pack(cfg, MR, min_i64(MR, mc - ir), j->dy, j->ys, j->np, ic + ir, pc, kc,
                               pa + ir * kc);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = min_i64(NR, nc - jr);
                    float *cp = j->C + ic * j->ldc + jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR)
                        cfg->ukernel(kc, pa + ir * kc, pb + jr * kc, NR, cp + ir * j->ldc, j->ldc,
                                     min_i64(MR, mc - ir), nr, 1.0f, beta_k);
                }
            }
        }
    }
}

static void wgrad_task(void *ctx, int64_t t, int tid) {
    const wgrad_job *j = (const wgrad_job *)ctx;
    int64_t i0, i1, j0, j1;
    grid_block(j->cfg, j->M, j->N, j->mt, j->nt, j->tm, j->tn, t, &i0, &i1, &j0, &j1);
    if (i1 <= i0 || j1 <= j0) return;
    float *pa = (float *)(j->base + (size_t)tid * j->slice);
    float *pb = (float *)(j->base + (size_t)tid * j->slice + j->a_bytes);
    wgrad_block(j, i0, i1, j0, j1, pa, pb);
}

/* ---- the weight gradient on several threads ----
 * The product is short and wide in K (MobileNetV2 at 32x32: 144 x 24 x 2048, 32 x 192 x 512),
 * so C has few register tiles. One operand (the "split" one, wgrad_split_rows) is cut into
 * runs of panels; a task is one run times one K block. K is the batch's pixels, so a K block
 * is a run of images: block kb of a tile stores its product (beta 0) into C (kb 0) or its own
 * partial, and the partials are added to C in K order afterwards: C = (P0 + P1) + P2 ..., the
 * very sums the ukernel's beta = 1 (fma(1, c, acc)) makes when one task runs a tile's K blocks
 * back to back as wgrad_block does. A thread packs the other operand's K block into
 * its slot when its task's block is not the one there (ready), then, panel by panel of the
 * run, packs the panel and multiplies it with every panel of the other operand: the same
 * ukernel calls on the same packed values, so the bits of one thread. One job (and the K
 * order sum when there are several blocks), and no packed value crosses cores; the other
 * operand is packed once more per thread. Tasks go K block by K block: the caller (the front
 * chunks) multiplies the first images, a worker (the back ones) the last, the images the ops
 * around (split by images) leave in each core's cache. */
#define WGRAD_TASK_MACS 262144.0

static int64_t wgrad_kblocks(int64_t K) { return ceil_div(K, balanced_block(K, ET_GEMM_KC, 1)); }

/* Rows when A has more padded rows, and when the product (C) is larger than the B block each
 * thread then packs: a thread writes whole rows of C, not a run of columns of every row
 * (MobileNetV2 at 32x32 on 1x1 planes: 160 x 960 x 32, C 600 KiB, B 120 KiB). */
static int wgrad_split_rows(const et_f32_gemm_config *cfg, int64_t M, int64_t N, int64_t K) {
    const int64_t npad = round_up(N, cfg->nr);
    return round_up(M, cfg->mr) > npad || M * N > npad * balanced_block(K, ET_GEMM_KC, 1);
}

/* A thread's slot: one K block of the other operand and one panel of the split one. */
static size_t wgrad_slot_bytes(const et_f32_gemm_config *cfg, int64_t M, int64_t N, int64_t K) {
    const int rows = wgrad_split_rows(cfg, M, N, K);
    const int64_t other = rows ? round_up(N, cfg->nr) : round_up(M, cfg->mr);
    const int64_t w = rows ? cfg->mr : cfg->nr;
    return (size_t)round_up((other + w) * balanced_block(K, ET_GEMM_KC, 1) * (int64_t)sizeof(float),
                            ET_GEMM_ALIGN);
}

static size_t wgrad_threads_bytes(const et_f32_gemm_config *cfg, int64_t M, int64_t N, int64_t K,
                                  int nthreads) {
    return wgrad_slot_bytes(cfg, M, N, K) * (size_t)nthreads +
           (size_t)((wgrad_kblocks(K) - 1) * M * N * (int64_t)sizeof(float));
}

size_t et_f32_gemm_nchw_wgrad_ws_bytes(int64_t M, int64_t N, int64_t n, int64_t np,
                                       int nthreads) {
    const int64_t K = n * np;
    /* one thread's need too: a plan made for more threads serves a call on fewer */
    const size_t one = et_f32_gemm_ws_bytes(M, N, K, 1);
    if (nthreads <= 1 || M <= 0 || N <= 0 || K <= 0) return one;
    size_t bytes = 0;
    for (const et_f32_gemm_variant *row = et_f32_gemm_variants; row->head.name; row++) {
        const size_t b = wgrad_threads_bytes(row->cfg, M, N, K, nthreads) + ET_GEMM_ALIGN;
        if (b > bytes) bytes = b;
    }
    return bytes > one ? bytes : one;
}

/* Task t: K block t / ntasks of run t % ntasks of the split operand's panels, times every
 * panel of the other operand, into C (K block 0) or the block's partial (row stride N). */
static void wgrad_split_task(void *ctx, int64_t t, int tid) {
    wgrad_job *j = (wgrad_job *)ctx;
    const et_f32_gemm_config *cfg = j->cfg;
    const int64_t MR = cfg->mr, NR = cfg->nr, K = j->K, kb = t / j->ntasks;
    const int64_t kc_blk = balanced_block(K, ET_GEMM_KC, 1);
    const int64_t pc = kb * kc_blk, kc = min_i64(kc_blk, K - pc);
    const int rows = j->split_rows;
    /* o: the other operand (panel width ow, on rows), s: the split one */
    const int64_t ow = rows ? NR : MR, sw = rows ? MR : NR;
    const int64_t on = rows ? j->N : j->M, sn = rows ? j->M : j->N;
    const float *osrc = rows ? j->x : j->dy, *ssrc = rows ? j->dy : j->x;
    const int64_t oss = rows ? j->xs : j->ys, sss = rows ? j->ys : j->xs;
    float *op = (float *)((char *)j->sp + (size_t)tid * j->slot);
    float *sp = op + round_up(on, ow) * kc_blk;
    if (j->ready[tid] != kb + 1) {
        for (int64_t r = 0; r < on; r += ow)
            wgrad_pack(cfg, ow, min_i64(ow, on - r), osrc, oss, j->np, r, pc, kc, op + r * kc);
        j->ready[tid] = kb + 1;
    }
    float *dst = kb == 0 ? j->C : j->parts + (kb - 1) * j->M * j->N;
    const int64_t ld = kb == 0 ? j->ldc : j->N;
    int64_t p0, p1;
    et_thread_range(ceil_div(sn, sw), (int)(t % j->ntasks), (int)j->ntasks, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        const int64_t s = p * sw;
        wgrad_pack(cfg, sw, min_i64(sw, sn - s), ssrc, sss, j->np, s, pc, kc, sp);
        for (int64_t r = 0; r < on; r += ow) {
            const int64_t i = rows ? s : r, c = rows ? r : s;
            cfg->ukernel(kc, rows ? sp : op + r * kc, rows ? op + r * kc : sp, NR,
                         dst + i * ld + c, ld, min_i64(MR, j->M - i), min_i64(NR, j->N - c),
                         1.0f, 0.0f);
        }
    }
}

/* Rows [r0, r1) of C: the K blocks' partials added in K order. */
static void wgrad_combine_rows(void *ctx, int64_t r0, int64_t r1, int tid) {
    const wgrad_job *j = (const wgrad_job *)ctx;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        float *ET_RESTRICT c = j->C + r * j->ldc;
        for (int64_t kb = 1; kb < j->kblocks; kb++) {
            const float *ET_RESTRICT p = j->parts + (kb - 1) * j->M * j->N + r * j->N;
            for (int64_t e = 0; e < j->N; e++) c[e] += p[e];
        }
    }
}

et_status et_f32_gemm_nchw_wgrad(int64_t M, int64_t N, int64_t n, int64_t np, const float *dy,
                                 int64_t ys, const float *x, int64_t xs, float *C, int64_t ldc,
                                 void *ws, size_t ws_bytes, int nthreads) {
    const et_f32_gemm_config *cfg = current_config();
    const int64_t K = n * np;
    if (nthreads < 1) nthreads = 1;
    if (!cfg || M <= 0 || N <= 0 || K <= 0 || !dy || !x || !C || ldc < N ||
        et_f32_gemm_is_small(M, N, K))
        return ET_ERR_ARG;
    if (!ws || ws_bytes < et_f32_gemm_nchw_wgrad_ws_bytes(M, N, n, np, nthreads))
        return ET_ERR_WORKSPACE;
    char *base = (char *)ws + ((ET_GEMM_ALIGN - (uintptr_t)ws % ET_GEMM_ALIGN) % ET_GEMM_ALIGN);
    const size_t a_bytes = pack_a_bytes(cfg, M, K);
    const int64_t mt = ceil_div(M, cfg->mr), nt = ceil_div(N, cfg->nr);
    wgrad_job j = {cfg, M, N, K, np, dy, ys, x, xs, C, ldc, base, a_bytes,
                   a_bytes + pack_b_bytes(cfg, N, K), mt, nt, 1, 1, NULL, 0, 0, 0, 0, NULL, {0}};
    if (nthreads == 1) {
        wgrad_task(&j, 0, 0);
        return ET_OK;
    }
    j.split_rows = wgrad_split_rows(cfg, M, N, K);
    j.slot = wgrad_slot_bytes(cfg, M, N, K);
    j.sp = (float *)base;
    j.parts = (float *)(base + j.slot * (size_t)nthreads);
    j.kblocks = wgrad_kblocks(K);
    /* runs per K block: about WGRAD_TASK_MACS each, at least one per thread, at most a panel */
    const double tasks = (double)M * (double)N * (double)balanced_block(K, ET_GEMM_KC, 1) /
                         WGRAD_TASK_MACS;
    j.ntasks = min_i64(j.split_rows ? mt : nt, tasks < nthreads ? nthreads : (int64_t)tasks);
    et_parallel_for(j.kblocks * j.ntasks, nthreads, wgrad_split_task, &j);
    if (j.kblocks > 1)
        et_parallel_ranges(M, et_split_chunks(M, nthreads), nthreads, wgrad_combine_rows, &j);
    return ET_OK;
}
