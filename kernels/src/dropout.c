/* edgetrain — dropout with a counter-based RNG.
 *
 * et_rng_u32(seed, counter) is the counter-th output of splitmix64 keyed by a mix of the seed:
 *   key = mix64(seed ^ K0);  r = high 32 bits of mix64(key + counter * 0x9E3779B97F4A7C15)
 * where mix64 is the splitmix64 / murmur3-style finaliser (a bijection on 64 bits). Pure
 * integer arithmetic: identical on every platform, for every thread count, and element i can
 * be recomputed by the backward without storing a mask. Seeds of different streams are mixed
 * first, so streams whose seeds differ by multiples of the golden ratio constant (the runtime
 * derives them that way) do not produce shifted copies of each other.
 * Element i is kept iff et_rng_u32(seed, offset + i) >= threshold, threshold =
 * min(p * 2^32, 2^32 - 1); y = x * (keep ? 1 / (1 - p) : 0) as PyTorch's x * mask (so inf / NaN
 * inputs give NaN where dropped); p == 0 copies, p == 1 writes zeros.
 */
#include <math.h>

#include "misc_internal.h"

#define RNG_GOLDEN 0x9E3779B97F4A7C15ULL
#define RNG_KEY_XOR 0x6A09E667F3BCC909ULL /* sqrt(2) fraction bits: seed 0 gives a non-zero key */
#define DROPOUT_GRAIN 8192

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t rng_key(uint64_t seed) { return mix64(seed ^ RNG_KEY_XOR); }

static inline uint32_t rng_keyed(uint64_t key, uint64_t counter) {
    return (uint32_t)(mix64(key + counter * RNG_GOLDEN) >> 32);
}

uint32_t et_rng_u32(uint64_t seed, uint64_t counter) { return rng_keyed(rng_key(seed), counter); }

#if defined(__GNUC__) || defined(__clang__)
#define ET_INLINE static inline __attribute__((always_inline))
#else
#define ET_INLINE static inline
#endif

/* y[i] = x[i] * (rng(key, c0 + i) >= thr ? scale : 0). Selecting the multiplier, not the
 * result, avoids a branch on a random bit (mispredicted half the time); x * 0 keeps PyTorch's
 * x * mask semantics. Pure integer mask: bitwise identical in every variant. */
ET_INLINE void dropout_body(int64_t n, const float *ET_RESTRICT x, float *ET_RESTRICT y,
                            uint64_t key, uint64_t c0, uint32_t thr, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float ms = rng_keyed(key, c0 + (uint64_t)i) >= thr ? scale : 0.0f;
        y[i] = x[i] * ms;
    }
}

void et_f32_dropout_mask__ref(int64_t n, const float *x, float *y, uint64_t key, uint64_t c0,
                              uint32_t thr, float scale) {
    dropout_body(n, x, y, key, c0, thr, scale);
}
#if defined(ET_HAVE_X86_SIMD)
/* 64-bit multiplies: emulated with SSE2 / AVX2, native (vpmullq) with AVX-512 DQ. */
ET_TARGET_AVX2 void et_f32_dropout_mask__avx2(int64_t n, const float *x, float *y, uint64_t key,
                                              uint64_t c0, uint32_t thr, float scale) {
    dropout_body(n, x, y, key, c0, thr, scale);
}
ET_TARGET_AVX512 void et_f32_dropout_mask__avx512(int64_t n, const float *x, float *y,
                                                  uint64_t key, uint64_t c0, uint32_t thr,
                                                  float scale) {
    dropout_body(n, x, y, key, c0, thr, scale);
}
#endif

uint64_t et_misc_rng_key(uint64_t seed) { return rng_key(seed); }

/* ---- variant table (variant_internal.h) ------------------------------------------------ */
const et_f32_dropout_variant et_f32_dropout_variants[] = {
    {{ET_ISA_REF, "ref"}, et_f32_dropout_mask__ref},
#if defined(ET_HAVE_X86_SIMD)
    {{ET_ISA_AVX2, "avx2"}, et_f32_dropout_mask__avx2},
    {{ET_ISA_AVX512, "avx512"}, et_f32_dropout_mask__avx512},
#endif
    {{ET_ISA_REF, NULL}, NULL}, /* end */
};

typedef struct dropout_job {
    const et_f32_dropout_variant *row;
    const float *x;
    float *y;
    uint64_t key, offset;
    uint32_t thr;
    float scale;
    int mode; /* 0: copy (p = 0), 1: zero (p = 1), 2: mask */
} dropout_job;

/* The mask of element i depends on (key, offset + i) only, so any split gives the same bits. */
static void dropout_range(void *ctx, int64_t beg, int64_t end, int tid) {
    const dropout_job *k = (const dropout_job *)ctx;
    (void)tid;
    const float *ET_RESTRICT xs = k->x + beg;
    float *ET_RESTRICT ys = k->y + beg;
    const int64_t len = end - beg;
    if (k->mode == 0) {
        for (int64_t i = 0; i < len; i++) ys[i] = xs[i];
    } else if (k->mode == 1) {
        for (int64_t i = 0; i < len; i++) ys[i] = 0.0f;
    } else {
        k->row->mask(len, xs, ys, k->key, k->offset + (uint64_t)beg, k->thr, k->scale);
    }
}

static et_status dropout_apply(int64_t n, float p, uint64_t seed, uint64_t offset, const float *x,
                               float *y, int nthreads) {
    if (n < 0 || !(p >= 0.0f && p <= 1.0f)) return ET_ERR_ARG;
    if (n == 0) return ET_OK;
    if (!x || !y) return ET_ERR_ARG;
    const double thr_d = fmin((double)p * 4294967296.0, 4294967295.0);
    const uint32_t thr = (uint32_t)thr_d;
    const float scale = p < 1.0f ? (float)(1.0 / (1.0 - (double)p)) : 0.0f;
    const uint64_t key = rng_key(seed);
    const int mode = p == 0.0f ? 0 : (p == 1.0f ? 1 : 2);
    const et_f32_dropout_variant *row = ET_VARIANT_PICK(et_f32_dropout_variants);
    dropout_job k = {row, x, y, key, offset, thr, scale, mode};
    et_parallel_ranges(n, et_misc_nchunks(n, nthreads, DROPOUT_GRAIN), nthreads, dropout_range, &k);
    return ET_OK;
}

et_status et_f32_dropout_fwd(int64_t n, float p, uint64_t seed, uint64_t offset, const float *x,
                             float *y, int nthreads) {
    return dropout_apply(n, p, seed, offset, x, y, nthreads);
}

et_status et_f32_dropout_bwd(int64_t n, float p, uint64_t seed, uint64_t offset, const float *dy,
                             float *dx, int nthreads) {
    return dropout_apply(n, p, seed, offset, dy, dx, nthreads);
}
