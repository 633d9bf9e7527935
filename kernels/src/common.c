/* edgetrain — status names, dtype sizes, CPU feature detection, ISA choice and the variant-table
 * lookup (variant_internal.h). */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT (glibc, bionic) */
#endif
#include "edgetrain/et_common.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "variant_internal.h"

const char *et_status_str(et_status s) {
    switch (s) {
    case ET_OK: return "ok";
    case ET_ERR_ARG: return "invalid argument";
    case ET_ERR_SHAPE: return "shape mismatch";
    case ET_ERR_DTYPE: return "wrong dtype";
    case ET_ERR_LABEL: return "label out of range";
    case ET_ERR_NOMEM: return "out of memory";
    case ET_ERR_FORMAT: return "corrupt or unsupported model file";
    case ET_ERR_IO: return "i/o error";
    case ET_ERR_UNSUPPORTED: return "unsupported";
    case ET_ERR_WORKSPACE: return "workspace too small";
    case ET_ERR_STATE: return "invalid state";
    case ET_ERR_NOT_FOUND: return "not found";
    case ET_ERR_LIMIT: return "resource limit exceeded";
    case ET_ERR_NONFINITE: return "non-finite loss or gradient";
    default: return "unknown status";
    }
}

size_t et_dtype_size(et_dtype t) {
    switch (t) {
    case ET_F32: return 4;
    case ET_I32: return 4;
    case ET_I64: return 8;
    case ET_U8: return 1;
    case ET_I8: return 1;
    default: return 0;
    }
}

int et_has_openmp(void) {
    return 0;
}

/* The cores this process may run on: its CPU affinity where the OS reports it (taskset, a
 * container's cpuset, a phone's cluster pinning), else the processors online. */
int et_max_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
#endif
    return n < 1 ? 1 : (n > ET_POOL_MAX_THREADS ? ET_POOL_MAX_THREADS : (int)n);
}

/* ---- CPU features --------------------------------------------------------- */
#if defined(ET_HAVE_X86_SIMD)
#include <cpuid.h>
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
static int cpu_has_avx2_fma(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    if ((xgetbv0() & 0x6) != 0x6) return 0; /* XMM and YMM state enabled */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1; /* AVX2 */
}
static int cpu_has_avx512(void) {
    unsigned a, b, c, d;
    if (!cpu_has_avx2_fma()) return 0;
    if ((xgetbv0() & 0xE6) != 0xE6) return 0; /* opmask, ZMM state enabled */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    return f && dq && bw && vl;
}
static int cpu_has_avx512vnni(void) { /* CPUID.(7,0):ECX bit 11 */
    unsigned a, b, c, d;
    if (!cpu_has_avx512() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (c >> 11) & 1;
}
static int cpu_has_avxvnni(void) { /* CPUID.(7,1):EAX bit 4 */
    unsigned a, b, c, d;
    if (!cpu_has_avx2_fma() || !__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return 0;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 4) & 1;
}
#endif
#if defined(ET_HAVE_NEON_DOT)
#if defined(__ARM_FEATURE_DOTPROD)
static int cpu_has_neondot(void) { return 1; } /* the whole build targets it */
#elif defined(__linux__)
#include <sys/auxv.h>
static int cpu_has_neondot(void) { return (getauxval(AT_HWCAP) >> 20) & 1; } /* HWCAP_ASIMDDP */
#else
static int cpu_has_neondot(void) { return 0; }
#endif
#endif

int et_isa_supported(et_isa isa) {
    switch (isa) {
    case ET_ISA_REF: return 1;
#if defined(ET_HAVE_X86_SIMD)
    case ET_ISA_AVX2: return cpu_has_avx2_fma();
    case ET_ISA_AVX512: return cpu_has_avx512();
    case ET_ISA_AVX512VNNI: return cpu_has_avx512vnni();
#endif
#if defined(ET_HAVE_AVXVNNI)
    case ET_ISA_AVXVNNI: return cpu_has_avxvnni();
#endif
#if defined(ET_HAVE_NEON)
    case ET_ISA_NEON: return 1;
#endif
#if defined(ET_HAVE_NEON_DOT)
    case ET_ISA_NEONDOT: return cpu_has_neondot();
#endif
    default: return 0;
    }
}

et_isa et_cpu_best_isa(void) {
    if (et_isa_supported(ET_ISA_AVX512VNNI)) return ET_ISA_AVX512VNNI;
    if (et_isa_supported(ET_ISA_AVX512)) return ET_ISA_AVX512;
    if (et_isa_supported(ET_ISA_AVXVNNI)) return ET_ISA_AVXVNNI;
    if (et_isa_supported(ET_ISA_AVX2)) return ET_ISA_AVX2;
    if (et_isa_supported(ET_ISA_NEONDOT)) return ET_ISA_NEONDOT;
    if (et_isa_supported(ET_ISA_NEON)) return ET_ISA_NEON;
    return ET_ISA_REF;
}

const char *et_isa_name(et_isa isa) {
    static const char *names[ET_ISA_COUNT_] = {"ref",     "avx2",       "avx512", "neon",
                                               "avxvnni", "avx512vnni", "neondot"};
    return (isa >= 0 && isa < ET_ISA_COUNT_) ? names[isa] : "unknown";
}

et_isa et_isa_parent(et_isa isa) {
    switch (isa) {
    case ET_ISA_AVXVNNI: return ET_ISA_AVX2;
    case ET_ISA_AVX512VNNI: return ET_ISA_AVX512;
    case ET_ISA_NEONDOT: return ET_ISA_NEON;
    default: return isa;
    }
}

static int g_isa = -1; /* chosen once on first use */

static et_isa isa_from_env(void) {
    const char *e = getenv("EDGETRAIN_ISA");
    et_isa best = et_cpu_best_isa();
    if (!e || !*e) return best;
    for (int i = 0; i < ET_ISA_COUNT_; i++)
        if (strcmp(e, et_isa_name((et_isa)i)) == 0 && et_isa_supported((et_isa)i)) return (et_isa)i;
    return best;
}

et_isa et_get_isa(void) {
    int isa = __atomic_load_n(&g_isa, __ATOMIC_RELAXED);
    if (ET_UNLIKELY(isa < 0)) {
        isa = (int)isa_from_env();
        __atomic_store_n(&g_isa, isa, __ATOMIC_RELAXED);
    }
    return (et_isa)isa;
}

et_status et_set_isa(et_isa isa) {
    if (isa < 0 || isa >= ET_ISA_COUNT_ || !et_isa_supported(isa)) return ET_ERR_UNSUPPORTED;
    __atomic_store_n(&g_isa, (int)isa, __ATOMIC_RELAXED);
    return ET_OK;
}

/* ---- variant tables ------------------------------------------------------------------------ */
const void *et_variant_pick(const void *table, size_t row_size) {
    const et_isa isa = et_get_isa();
    /* a row begins with its et_variant_head, so the cast reads that first member */
    for (const char *r = table; ((const et_variant_head *)r)->name; r += row_size)
        if (((const et_variant_head *)r)->isa == isa) return r;
    const et_isa parent = et_isa_parent(isa); /* e.g. avx512vnni runs the avx512 row */
    if (parent != isa)
        for (const char *r = table; ((const et_variant_head *)r)->name; r += row_size)
            if (((const et_variant_head *)r)->isa == parent) return r;
    return table; /* the __ref row */
}
