/* edgetrain — a tiny C test harness shared by the kernel test files.
 * ET_CHECK records a failure and continues; et_allclose compares arrays with
 * abs/rel tolerance and reports the worst element. */
#ifndef EDGETRAIN_ET_TEST_H
#define EDGETRAIN_ET_TEST_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int et_test_failures;
extern int et_test_checks;
extern const char *et_test_current;

#define ET_CHECK(cond, ...)                                                            \
    do {                                                                               \
        et_test_checks++;                                                              \
        if (!(cond)) {                                                                 \
            et_test_failures++;                                                        \
            fprintf(stderr, "FAIL [%s] %s:%d: ", et_test_current, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                              \
            fprintf(stderr, "\n");                                                     \
        }                                                                              \
    } while (0)

/* 1 if |a-b| <= atol + rtol*|b| everywhere (NaN only matches NaN). */
int et_allclose(const float *a, const float *b, int64_t n, float rtol, float atol, const char *what);
/* Deterministic pseudo-random fill in [lo, hi). */
void et_fill_random(float *x, int64_t n, uint64_t seed, float lo, float hi);
/* Checks a variant table (src/variant_internal.h; pass the table and sizeof its row): the
 * first row is __ref, each row's name is et_isa_name(isa), no ISA twice, and et_variant_pick
 * returns each supported row under et_set_isa(its isa) and the __ref row for a supported ISA
 * without a row. Prints the rows that run here ("  variants <family>: ref avx2 ...") and
 * returns their number. The caller then compares every supported row with the first. */
int et_check_variant_table(const char *family, const void *table, size_t row_size);
#endif
