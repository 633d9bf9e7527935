/* edgetrain — benchmark of the SIMD rows for issue 12's ViT: every row of
 * et_f32_unary_variants (erf, exp on the [128, 16, 128] GELU tensor), et_f32_normrows_variants
 * ([2048, 64]: LayerNorm of 128 x 16 tokens of 64) and et_f32_softmax_rows_variants
 * ([16384, 16]: attention rows), side by side, one thread, best of a number of runs (the minimum
 * is the figure that survives a noisy machine).
 *
 * Build (not part of the library or the test binary):
 *   make -C kernels BUILD=build/bench
 *   cc -std=c99 -O3 -pthread -D_POSIX_C_SOURCE=200809L -Ikernels/include -Ikernels/src \
 *      kernels/tests/bench_simd_rows.c kernels/build/bench/libedgetrain.a -lm -o bench_simd_rows
 * Run:
 *   ./bench_simd_rows [runs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "misc_internal.h"
#include "norm_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const int runs = argc > 1 ? atoi(argv[1]) : 15;
    const int64_t n = 128 * 16 * 128, rows = 128 * 16, k = 64, srows = n / 16;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *dy = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    float *is = malloc(rows * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)((i * 7919 % 2000) / 250.0 - 4.0);
        dy[i] = (float)((i * 31 % 200) / 100.0 - 1.0);
    }
    printf("%-28s %-7s %9s %9s\n", "kernel", "row", "ms", "ms (bwd)");
    for (const et_f32_unary_variant *r = et_f32_unary_variants; r->head.name; r++) {
        if (!et_isa_supported(r->head.isa)) continue;
        for (int f = 0; f < 2; f++) {
            const et_unary fn = f ? ET_UN_EXP : ET_UN_ERF;
            double best = 1e9;
            for (int rep = 0; rep < runs; rep++) {
                const double t0 = now();
                r->run(fn, 0.0f, 0.0f, n, x, y);
                const double t = now() - t0;
                best = t < best ? t : best;
            }
            printf("unary %-22s %-7s %9.3f\n", f ? "exp [262144]" : "erf [262144]", r->head.name,
                   best * 1e3);
        }
    }
    for (const et_f32_normrows_variant *r = et_f32_normrows_variants; r->head.name; r++) {
        if (!et_isa_supported(r->head.isa)) continue;
        double bf = 1e9, bb = 1e9;
        for (int rep = 0; rep < runs; rep++) {
            const double t0 = now();
            r->fwd(0, rows, k, 1e-5f, x, y, is);
            const double t1 = now();
            r->bwd(0, rows, k, y, is, dy, dx);
            const double t2 = now();
            bf = t1 - t0 < bf ? t1 - t0 : bf;
            bb = t2 - t1 < bb ? t2 - t1 : bb;
        }
        printf("%-28s %-7s %9.3f %9.3f\n", "normalize rows [2048, 64]", r->head.name, bf * 1e3,
               bb * 1e3);
    }
    for (const et_f32_softmax_rows_variant *r = et_f32_softmax_rows_variants; r->head.name; r++) {
        if (!et_isa_supported(r->head.isa)) continue;
        double bf = 1e9, bb = 1e9;
        for (int rep = 0; rep < runs; rep++) {
            const double t0 = now();
            r->fwd(0, srows, 16, x, y, 0);
            const double t1 = now();
            r->bwd(0, srows, 16, y, dy, dx, 0);
            const double t2 = now();
            bf = t1 - t0 < bf ? t1 - t0 : bf;
            bb = t2 - t1 < bb ? t2 - t1 : bb;
        }
        printf("%-28s %-7s %9.3f %9.3f\n", "softmax rows [16384, 16]", r->head.name, bf * 1e3,
               bb * 1e3);
    }
    free(x); free(y); free(dy); free(dx); free(is);
    return 0;
}
