/* edgetrain — kernel test runner: every SIMD variant against __ref.
 * Prints one line per family and a closing "N passed, N failed" line. */
#include <stdlib.h>
#include <string.h>

#include "edgetrain/et_common.h"
#include "et_test.h"
#include "variant_internal.h"

int et_test_failures = 0;
int et_test_checks = 0;
const char *et_test_current = "";

int et_allclose(const float *a, const float *b, int64_t n, float rtol, float atol, const char *what) {
    int64_t worst = -1;
    double worst_err = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            if (isnan(a[i]) && isnan(b[i])) continue;
            worst = i; worst_err = INFINITY; break;
        }
        double err = fabs((double)a[i] - (double)b[i]) - (atol + rtol * fabs((double)b[i]));
        if (err > 0 && err > worst_err) { worst_err = err; worst = i; }
    }
    if (worst >= 0) {
        fprintf(stderr, "  mismatch in %s at %lld: got %.9g want %.9g\n", what, (long long)worst,
                (double)a[worst], (double)b[worst]);
        return 0;
    }
    return 1;
}

void et_fill_random(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 11) / 9007199254740992.0;
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

int et_check_variant_table(const char *family, const void *table, size_t row_size) {
    const et_isa saved = et_get_isa();
    const et_variant_head *first = table;
    ET_CHECK(first->name && first->isa == ET_ISA_REF, "%s: the first row is not __ref", family);
    int has_row[ET_ISA_COUNT_] = {0}, runs = 0;
    char names[96] = "";
    for (const char *r = table; ((const et_variant_head *)r)->name; r += row_size) {
        const et_variant_head *h = (const et_variant_head *)r;
        const int isa_ok = h->isa >= 0 && h->isa < ET_ISA_COUNT_;
        ET_CHECK(isa_ok && !has_row[h->isa]++, "%s: row %s: bad or repeated isa", family, h->name);
        ET_CHECK(strcmp(h->name, et_isa_name(h->isa)) == 0, "%s: row %s is for isa %s", family,
                 h->name, et_isa_name(h->isa));
        if (!isa_ok || !et_isa_supported(h->isa)) continue;
        runs++;
        strncat(names, " ", sizeof names - strlen(names) - 1);
        strncat(names, h->name, sizeof names - strlen(names) - 1);
        et_set_isa(h->isa);
        ET_CHECK(et_variant_pick(table, row_size) == (const void *)r, "%s: dispatch misses row %s",
                 family, h->name);
    }
    for (int isa = 0; isa < ET_ISA_COUNT_; isa++) {
        if (has_row[isa] || et_set_isa((et_isa)isa) != ET_OK) continue;
        /* no row of its own: the parent's row (avx512vnni -> avx512), else __ref */
        const et_isa parent = et_isa_parent((et_isa)isa);
        const char *want = table;
        for (const char *r = table; (int)parent != isa && ((const et_variant_head *)r)->name; r += row_size)
            if (((const et_variant_head *)r)->isa == parent) want = r;
        ET_CHECK(et_variant_pick(table, row_size) == (const void *)want, "%s: isa %s does not fall back to %s",
                 family, et_isa_name((et_isa)isa), ((const et_variant_head *)want)->name);
    }
    et_set_isa(saved);
    printf("  variants %s:%s\n", family, names);
    return runs;
}

/* One entry per kernel family; each lives in its own test_<family>.c. */
void test_gemm(void);
void test_conv(void);
void test_pool(void);
void test_misc(void);
void test_runtime(void);
void test_atomic_file(void);
void test_loss_extra(void);
void test_resample(void);
void test_quant(void);
void test_norm(void);
void test_tensor(void);
void test_threadpool(void);
void test_qgemm(void);
void test_simd_rows(void);
void test_bn_simd(void);
void test_quant_simd(void);
void test_conv_bn(void);
void test_conv_packed(void);
void test_dwbits(void);
void test_bn_act(void);
void test_conv_fast(void);
void test_conv_pw(void);

/* One row a family (append new families at the end). */
static const struct { const char *name; void (*fn)(void); } families[] = {
    {"gemm", test_gemm},
    {"conv", test_conv},
    {"pool", test_pool},
    {"misc", test_misc},
    {"runtime", test_runtime},
    {"atomic", test_atomic_file},
    {"lossx", test_loss_extra},
    {"resample", test_resample},
    {"quant", test_quant},
    {"norm", test_norm},
    {"tensor", test_tensor},
    {"threadpool", test_threadpool},
    {"qgemm", test_qgemm},
    {"simd", test_simd_rows},
    {"bnsimd", test_bn_simd},
    {"qsimd", test_quant_simd},
    {"convbn", test_conv_bn},
    {"convpk", test_conv_packed},
    {"dwbits", test_dwbits},
    {"bnact", test_bn_act},
    {"convfast", test_conv_fast},
    {"convpw", test_conv_pw},
};

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    printf("edgetrain kernel tests, best ISA: %s\n", et_isa_name(et_cpu_best_isa()));
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (argc > 1 && strcmp(argv[1], families[i].name) != 0) continue;
        int before = et_test_failures, checks = et_test_checks;
        et_test_current = families[i].name;
        families[i].fn();
        int f = et_test_failures - before;
        printf("%-6s %s (%d checks, %d failed)\n", families[i].name, f ? "FAILED" : "ok",
               et_test_checks - checks, f);
        if (f) failed++; else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
