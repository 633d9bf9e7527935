/* edgetrain — benchmark of the fake-quant rows (et_f32_fq_variants, quant_simd.c), side by side:
 * fwd, bwd and minmax of every row that runs here over LeNet's conv1 activation [64, 20, 24, 24]
 * (737,280 floats, ReLU-like: half of them zeros, so minmax takes its zero-sign path), one
 * thread, best of a number of runs (the minimum survives a noisy machine).
 *
 * Build (not part of the library or the test binary):
 *   make -C kernels BUILD=build/bench
 *   cc -std=c99 -O3 -pthread -D_POSIX_C_SOURCE=200809L -Ikernels/include -Ikernels/src \
 *      kernels/tests/bench_quant_rows.c kernels/build/bench/libedgetrain.a -lm -o bench_quant_rows
 * Run:
 *   ./bench_quant_rows [runs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quant_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const int runs = argc > 1 ? atoi(argv[1]) : 15;
    const int64_t n = 64 * 20 * 24 * 24;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *dy = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        const float v = (float)((i * 7919 % 2000) / 250.0 - 4.0);
        x[i] = v > 0.0f ? v : 0.0f;
        dy[i] = (float)((i * 31 % 200) / 100.0 - 1.0);
    }
    const float s = 4.0f / 255.0f, inv = 1.0f / s;
    printf("%-7s %9s %9s %9s   (ms, %lld floats)\n", "row", "fwd", "bwd", "minmax", (long long)n);
    for (const et_f32_fq_variant *r = et_f32_fq_variants; r->head.name; r++) {
        if (!et_isa_supported(r->head.isa)) continue;
        double best[3] = {1e9, 1e9, 1e9};
        float mn = 0.0f, mx = 0.0f;
        for (int k = 0; k < runs; k++) {
            double t0 = now();
            r->fwd(n, x, s, inv, 0.0f, 0.0f, 255.0f, y);
            double t1 = now();
            r->bwd(n, dy, x, inv, 0.0f, 0.0f, 255.0f, dx);
            double t2 = now();
            r->minmax(n, x, &mn, &mx);
            double t3 = now();
            best[0] = t1 - t0 < best[0] ? t1 - t0 : best[0];
            best[1] = t2 - t1 < best[1] ? t2 - t1 : best[1];
            best[2] = t3 - t2 < best[2] ? t3 - t2 : best[2];
        }
        printf("%-7s %9.3f %9.3f %9.3f   (min %g max %g, y[7] %g)\n", r->head.name, best[0] * 1e3,
               best[1] * 1e3, best[2] * 1e3, mn, mx, y[7]);
    }
    free(x); free(y); free(dy); free(dx);
    return 0;
}
