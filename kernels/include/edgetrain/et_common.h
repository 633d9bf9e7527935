/* edgetrain — common definitions shared by kernels and runtime.
 *
 * Status codes, ISA selection, the thread pool API and small utilities.
 * Plain C99; no allocation, no Python.
 */
#ifndef EDGETRAIN_ET_COMMON_H
#define EDGETRAIN_ET_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes (every kernel and runtime call returns one) ---------- */
typedef enum et_status {
    ET_OK = 0,
    ET_ERR_ARG = 1,         /* bad argument: null pointer, negative size, bad attribute */
    ET_ERR_SHAPE = 2,       /* shapes do not agree */
    ET_ERR_DTYPE = 3,       /* wrong element type */
    ET_ERR_LABEL = 4,       /* class label out of range */
    ET_ERR_NOMEM = 5,       /* allocation failed (runtime only; kernels never allocate) */
    ET_ERR_FORMAT = 6,      /* corrupt / unsupported model file */
    ET_ERR_IO = 7,          /* file could not be read or written */
    ET_ERR_UNSUPPORTED = 8, /* op / ISA / feature not available */
    ET_ERR_WORKSPACE = 9,   /* workspace buffer too small */
    ET_ERR_STATE = 10,      /* call not valid in the current session state */
    ET_ERR_NOT_FOUND = 11,  /* name not found */
    ET_ERR_LIMIT = 12,      /* a resource limit (memory, threads) would be exceeded; nothing was allocated */
    ET_ERR_NONFINITE = 13,  /* a TRAIN step met a NaN/Inf loss or gradient; nothing was updated */
    ET_STATUS_COUNT_
} et_status;

/* Short, static, human readable name of a status code. */
const char *et_status_str(et_status s);

/* ---- element types ------------------------------------------------------ */
typedef enum et_dtype {
    ET_F32 = 0,
    ET_I32 = 1,
    ET_I64 = 2,
    ET_U8 = 3,
    ET_I8 = 4,
    ET_DTYPE_COUNT_
} et_dtype;

size_t et_dtype_size(et_dtype t); /* 0 for an invalid dtype */

/* ---- instruction-set selection ----------------------------------------- */
/* Kernels with SIMD variants dispatch on et_get_isa(); it is chosen once from
 * CPU features (or the EDGETRAIN_ISA environment variable:
 * ref|avx2|avx512|neon|avxvnni|avx512vnni|neondot)
 * and may be lowered by tests with et_set_isa(). */
typedef enum et_isa {
    ET_ISA_REF = 0,
    ET_ISA_AVX2 = 1,   /* AVX2 + FMA */
    ET_ISA_AVX512 = 2, /* AVX-512 F (+VL) */
    ET_ISA_NEON = 3,   /* aarch64 Advanced SIMD */
    /* levels that add dot-product instructions to a base level (et_isa_parent): only families with
     * a row of their own (the int8 GEMM) use them; every other family runs the parent's row */
    ET_ISA_AVXVNNI = 4,    /* AVX2 + AVX-VNNI (VEX vpdpbusd) */
    ET_ISA_AVX512VNNI = 5, /* AVX-512 (F, VL, DQ, BW) + AVX512_VNNI */
    ET_ISA_NEONDOT = 6,    /* aarch64 Advanced SIMD + dot product (sdot, FEAT_DotProd) */
    ET_ISA_COUNT_
} et_isa;

et_isa et_cpu_best_isa(void);       /* best ISA this CPU and build support */
int et_isa_supported(et_isa isa);   /* 1 if this CPU and build can run it */
et_isa et_get_isa(void);            /* current choice */
et_status et_set_isa(et_isa isa);   /* ET_ERR_UNSUPPORTED if not supported */
const char *et_isa_name(et_isa isa);
/* the level whose rows serve `isa` in a family without a row for it (avxvnni -> avx2,
 * avx512vnni -> avx512, neondot -> neon); `isa` itself for the base levels */
et_isa et_isa_parent(et_isa isa);

/* ---- threads ------------------------------------------------------------- */
/* Kernels parallelise with the edgetrain thread pool (kernels/src/threadpool.c, docs/threads.md):
 * the output is split into n_chunks pieces whose bounds depend on the shapes only, the loop body
 * is a static function + ctx struct, and
 *     et_parallel_for(n_chunks, nthreads, body, &ctx);
 * runs body(ctx, chunk, tid) once for every chunk in [0, n_chunks), chunks handed out one by one
 * to at most nthreads threads. tid (< nthreads; 0 = the calling thread) indexes per-thread
 * workspace slots only: a chunk's result must not depend on it, and reductions combine
 * per-chunk partials in chunk order, so results are bit-identical for every thread count.
 * No OpenMP is involved and no global thread setting of the process is changed. */
typedef void (*et_pool_body)(void *ctx, int64_t chunk, int tid);
#define ET_POOL_MAX_THREADS 64 /* threads one call may use (more are clamped) */
#define ET_POOL_SPIN_US 300    /* default spin before an idle thread sleeps (EDGETRAIN_SPIN_US); */
                               /* shorter while other threads need the cores (threadpool.c) */
void et_parallel_for(int64_t n_chunks, int nthreads, et_pool_body body, void *ctx);
/* Workers the pool has created so far (lazily; the calling thread is not counted). */
int et_pool_workers(void);
/* How long an idle pool thread spins now before it sleeps, in ns: ET_POOL_SPIN_US (or
 * EDGETRAIN_SPIN_US), or the short spin while the cores look contended (threadpool.c). */
int64_t et_pool_spin_ns(void);
/* 1 while other threads look to need the cores (the contention look, threadpool.c; also
 * before the first look), else 0: work that a preempted worker would hold up whole -- a
 * concurrent group's nodes (session.c) -- then runs on the calling thread. */
int et_pool_contended(void);
void et_pool_force_contended_(int on); /* tests: et_pool_contended() is 1 while on */
/* Tests that need the workers to take chunks whatever the machine's load: while on, contention
 * only shortens spins (calls are not run inline on the caller). */
void et_pool_ignore_contention_(int on);
/* Tests: one look at the run queue that found the cores contended (hit) or not, and threads
 * other than the team's needing them (others_hit 1 or 0; -1: a team larger than the cores,
 * which does not look at them), as the pool owner's looks do: at least 6 of the last 8 make
 * the cores contended for 500 ms. Returns 1 when calls now run inline on the caller. */
int et_pool_contention_look_(int hit, int others_hit);
/* ceil(total / grain) chunks, at most max_chunks (when >= 1); 0 for total <= 0. Use it with a
 * grain and cap that depend on the shapes only, never on the thread count, whenever chunks
 * hold partial sums. */
int64_t et_chunk_count(int64_t total, int64_t grain, int64_t max_chunks);
/* The common case: [0, total) cut into n_chunks contiguous ranges (et_thread_range bounds);
 * body(ctx, beg, end, tid) runs once per range. */
typedef void (*et_range_body)(void *ctx, int64_t beg, int64_t end, int tid);
void et_parallel_ranges(int64_t total, int64_t n_chunks, int nthreads, et_range_body body,
                        void *ctx);
/* Chunks for a loop of n INDEPENDENT iterations (no partial sums): 1 on one thread, else up to
 * ET_POOL_CHUNKS_PER_THREAD per thread, so a preempted thread holds up little work. */
#define ET_POOL_CHUNKS_PER_THREAD 4
int64_t et_split_chunks(int64_t n, int nthreads);

/* Always 0: no edgetrain build uses OpenMP any more (kept for the API: _native.has_openmp,
 * et_train --version). */
int et_has_openmp(void);
int et_max_threads(void); /* cores this process may use: affinity, else online (default threads) */

/* Split [0, total) into nth nearly equal contiguous parts; part ith is [*b, *e) (also the
 * bounds of chunk ith of nth chunks). */
static inline void et_thread_range(int64_t total, int ith, int nth, int64_t *b, int64_t *e) {
    int64_t per = total / nth, rem = total % nth;
    *b = ith * per + (ith < rem ? ith : rem);
    *e = *b + per + (ith < rem ? 1 : 0);
}

#if defined(__GNUC__) || defined(__clang__)
#define ET_RESTRICT __restrict__
#define ET_ALIGNED(n) __attribute__((aligned(n)))
#define ET_LIKELY(x) __builtin_expect(!!(x), 1)
#define ET_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ET_RESTRICT
#define ET_ALIGNED(n)
#define ET_LIKELY(x) (x)
#define ET_UNLIKELY(x) (x)
#endif

/* x86 SIMD variants are compiled with target attributes (no -march flags). */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define ET_HAVE_X86_SIMD 1
#define ET_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define ET_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#define ET_TARGET_AVX512VNNI __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512vnni,avx2,fma")))
/* AVX-VNNI (VEX-encoded vpdpbusd, _mm256_dpbusd_avx_epi32): gcc >= 11, clang >= 12 */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11)
#define ET_HAVE_AVXVNNI 1
#define ET_TARGET_AVXVNNI __attribute__((target("avxvnni,avx2,fma")))
#endif
#endif
#if defined(__aarch64__)
#define ET_HAVE_NEON 1
/* sdot (vdotq_s32) on a baseline armv8-a build: a target attribute, chosen at run time */
#if defined(__clang__) && __clang_major__ >= 16
#define ET_HAVE_NEON_DOT 1
#define ET_TARGET_NEONDOT __attribute__((target("dotprod")))
#elif !defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10
#define ET_HAVE_NEON_DOT 1
#define ET_TARGET_NEONDOT __attribute__((target("arch=armv8.2-a+dotprod")))
#elif defined(__ARM_FEATURE_DOTPROD) /* older clang: only when the whole build targets it */
#define ET_HAVE_NEON_DOT 1
#define ET_TARGET_NEONDOT
#endif
#endif

#ifdef __cplusplus
}
#endif
#endif /* EDGETRAIN_ET_COMMON_H */
