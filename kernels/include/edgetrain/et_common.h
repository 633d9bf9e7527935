/* edgetrain — common definitions shared by kernels and runtime.
 *
 * Status codes, ISA selection, the OpenMP helper and small utilities.
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
 * CPU features (or the EDGETRAIN_ISA environment variable: ref|avx2|avx512|neon)
 * and may be lowered by tests with et_set_isa(). */
typedef enum et_isa {
    ET_ISA_REF = 0,
    ET_ISA_AVX2 = 1,   /* AVX2 + FMA */
    ET_ISA_AVX512 = 2, /* AVX-512 F (+VL) */
    ET_ISA_NEON = 3,   /* aarch64 Advanced SIMD */
    ET_ISA_COUNT_
} et_isa;

et_isa et_cpu_best_isa(void);       /* best ISA this CPU and build support */
int et_isa_supported(et_isa isa);   /* 1 if this CPU and build can run it */
et_isa et_get_isa(void);            /* current choice */
et_status et_set_isa(et_isa isa);   /* ET_ERR_UNSUPPORTED if not supported */
const char *et_isa_name(et_isa isa);

/* ---- threads ------------------------------------------------------------- */
/* OpenMP is optional. Kernels take `nthreads` from the caller and use
 * ET_PARALLEL_FOR(nthreads) before a `for` loop; without OpenMP it is a no-op.
 * Loops use static schedules so results are deterministic for a thread count. */
#ifdef _OPENMP
#include <omp.h>
#define ET_PRAGMA_(x) _Pragma(#x)
#define ET_PARALLEL_FOR(nth) ET_PRAGMA_(omp parallel for schedule(static) num_threads(nth) if(nth > 1))
#define ET_PARALLEL(nth) ET_PRAGMA_(omp parallel num_threads(nth) if(nth > 1))
static inline int et_thread_id(void) { return omp_get_thread_num(); }
static inline int et_thread_count(void) { return omp_get_num_threads(); }
#else
#define ET_PARALLEL_FOR(nth)
#define ET_PARALLEL(nth)
static inline int et_thread_id(void) { return 0; }
static inline int et_thread_count(void) { return 1; }
#endif

int et_has_openmp(void);
int et_max_threads(void); /* hardware threads available (1 without OpenMP) */

/* Split [0, total) into nth nearly equal contiguous parts; part ith is [*b, *e). */
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
#endif
#if defined(__aarch64__)
#define ET_HAVE_NEON 1
#endif

#ifdef __cplusplus
}
#endif
#endif /* EDGETRAIN_ET_COMMON_H */
