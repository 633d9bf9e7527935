/* edgetrain — a tiny C test harness shared by the kernel test files.
 * ET_CHECK records a failure and continues; et_allclose compares arrays with
 * abs/rel tolerance and reports the worst element. */
#ifndef EDGETRAIN_ET_TEST_H
#define EDGETRAIN_ET_TEST_H
#include <math.h>
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
#endif
