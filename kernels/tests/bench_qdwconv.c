/* edgetrain — int8 depthwise convolution benchmark: ms per call of qconv2d at MobileNetV2's
 * depthwise shapes for a 28x28 (MNIST) input, batch 32, side by side in one run: the generic
 * path (im2col + one GEMM per channel and image, et_q_conv2d_im2col with the dispatched GEMM
 * row: the path every qconv2d took before the direct one) and the direct depthwise path
 * (et_q_conv2d). Best of a number of runs (the minimum survives a noisy machine). The two
 * outputs are compared byte for byte.
 *
 * Build (not part of the library or the test binary):
 *   make -C kernels BUILD=build/qdw
 *   cc -std=c99 -O3 -pthread -D_POSIX_C_SOURCE=200809L -Ikernels/include -Ikernels/src \
 *      kernels/tests/bench_qdwconv.c kernels/build/qdw/libedgetrain.a -lm -o bench_qdwconv
 * Run:
 *   ./bench_qdwconv [runs] [threads]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgetrain/et_kernels.h"
#include "qgemm_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
    const char *name;
    int64_t n, c, h, w, k, stride, pad;
} shape;

static const shape shapes[] = {
    {"[32,96,14,14] k3 s2", 32, 96, 14, 14, 3, 2, 1},
    {"[32,144,7,7] k3 s1", 32, 144, 7, 7, 3, 1, 1},
    {"[32,192,4,4] k3 s1", 32, 192, 4, 4, 3, 1, 1},
    {"[32,32,14,14] k3 s1", 32, 32, 14, 14, 3, 1, 1},
    {"[32,144,14,14] k3 s1", 32, 144, 14, 14, 3, 1, 1},
};

int main(int argc, char **argv) {
    const int runs = argc > 1 ? atoi(argv[1]) : 20, th = argc > 2 ? atoi(argv[2]) : 1;
    unsigned seed = 12345u;
    printf("%-22s %3s %10s %10s %7s\n", "ms per call", "thr", "im2col", "direct", "speedup");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *s = &shapes[si];
        et_conv2d_params p = {0};
        p.n = s->n, p.c = s->c, p.h = s->h, p.w = s->w, p.oc = s->c, p.kh = p.kw = s->k;
        p.stride_h = p.stride_w = s->stride;
        p.pad_t = p.pad_l = p.pad_b = p.pad_r = s->pad;
        p.dil_h = p.dil_w = 1, p.groups = s->c;
        if (et_conv2d_params_init(&p) != ET_OK) return 1;
        const size_t xn = (size_t)(p.n * p.c * p.h * p.w), yn = (size_t)(p.n * p.oc * p.oh * p.ow);
        const size_t wn = (size_t)(p.oc * p.kh * p.kw);
        uint8_t *x = malloc(xn), *y0 = malloc(yn), *y1 = malloc(yn);
        int8_t *w = malloc(wn);
        int32_t *b = malloc((size_t)p.oc * sizeof *b);
        float *m = malloc((size_t)p.oc * sizeof *m);
        for (size_t i = 0; i < xn; i++) x[i] = (uint8_t)((seed = seed * 1103515245u + 12345u) >> 16);
        for (size_t i = 0; i < wn; i++) w[i] = (int8_t)((seed = seed * 1103515245u + 12345u) >> 16);
        for (int64_t i = 0; i < p.oc; i++) b[i] = (int32_t)(i * 37 % 2001) - 1000, m[i] = 1e-4f;
        const size_t wsb = et_q_conv2d_im2col_ws_bytes(&p);
        void *ws = malloc(wsb + 64);
        double best[2] = {1e9, 1e9};
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            et_q_conv2d_im2col(et_q_gemm_requant, &p, x, 7, w, b, m, 120, 0, 255, y0, ws, wsb, th);
            double t1 = now();
            et_q_conv2d(&p, x, 7, w, b, m, 120, 0, 255, y1, NULL, 0, th);
            double t2 = now();
            if (t1 - t0 < best[0]) best[0] = t1 - t0;
            if (t2 - t1 < best[1]) best[1] = t2 - t1;
        }
        printf("%-22s %3d %10.3f %10.3f %6.1fx%s\n", s->name, th, best[0] * 1e3, best[1] * 1e3, best[0] / best[1],
               memcmp(y0, y1, yn) ? "  OUTPUTS DIFFER" : "");
        free(x), free(y0), free(y1), free(w), free(b), free(m), free(ws);
    }
    return 0;
}
