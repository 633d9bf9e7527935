/* edgetrain — convolution benchmark: ms per call of conv fwd / bwd-input / bwd-weight at the
 * LeNet and a few MobileNet shapes, 1 and 2 threads, best of a number of runs (the minimum is
 * the figure that survives a noisy machine).
 *
 * Build (not part of the library or the test binary):
 *   make -C kernels BUILD=build/conv
 *   cc -std=c99 -O3 -pthread -D_POSIX_C_SOURCE=200809L -Ikernels/include -Ikernels/src \
 *      kernels/tests/bench_conv.c kernels/build/conv/libedgetrain.a -lm -o bench_conv
 * Run:
 *   ./bench_conv [runs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "edgetrain/et_kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
    const char *name;
    int64_t n, c, h, w, oc, k, stride, pad;
} shape;

static const shape shapes[] = {
    {"lenet conv1 b64", 64, 1, 28, 28, 20, 5, 1, 0},
    {"lenet conv2 b64", 64, 20, 12, 12, 50, 5, 1, 0},
    {"lenet conv2 b32", 32, 20, 12, 12, 50, 5, 1, 0},
    {"mbv2 stem b32", 32, 3, 32, 32, 32, 3, 2, 1},
};

static float *randv(size_t n) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return v;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 30;
    printf("%-20s %3s %9s %9s %9s\n", "ms per call", "thr", "fwd", "bwd_in", "bwd_w");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *s = &shapes[si];
        et_conv2d_params p = {0};
        p.n = s->n, p.c = s->c, p.h = s->h, p.w = s->w, p.oc = s->oc, p.kh = p.kw = s->k;
        p.stride_h = p.stride_w = s->stride;
        p.pad_t = p.pad_l = p.pad_b = p.pad_r = s->pad;
        p.dil_h = p.dil_w = 1, p.groups = 1;
        if (et_conv2d_params_init(&p) != ET_OK) return 1;
        size_t xn = (size_t)(p.n * p.c * p.h * p.w), yn = (size_t)(p.n * p.oc * p.oh * p.ow);
        size_t wn = (size_t)(p.oc * p.c * p.kh * p.kw);
        float *x = randv(xn), *w = randv(wn), *b = randv((size_t)p.oc), *y = randv(yn);
        float *dx = randv(xn), *dw = randv(wn);
        for (int th = 1; th <= 2; th++) {
            size_t wsb = et_f32_conv2d_fwd_ws_bytes(&p, th);
            size_t b2 = et_f32_conv2d_bwd_input_ws_bytes(&p, th), b3 = et_f32_conv2d_bwd_weight_ws_bytes(&p, th);
            if (b2 > wsb) wsb = b2;
            if (b3 > wsb) wsb = b3;
            void *ws = malloc(wsb + 64);
            double best[3] = {1e9, 1e9, 1e9};
            for (int r = 0; r < runs; r++) {
                double t0 = now();
                et_f32_conv2d_fwd(&p, x, w, b, y, ws, wsb, th);
                double t1 = now();
                et_f32_conv2d_bwd_input(&p, y, w, dx, ws, wsb, th);
                double t2 = now();
                et_f32_conv2d_bwd_weight(&p, y, x, dw, ws, wsb, th);
                double t3 = now();
                double d[3] = {t1 - t0, t2 - t1, t3 - t2};
                for (int k = 0; k < 3; k++)
                    if (d[k] < best[k]) best[k] = d[k];
            }
            printf("%-20s %3d %9.3f %9.3f %9.3f\n", s->name, th, best[0] * 1e3, best[1] * 1e3,
                   best[2] * 1e3);
            free(ws);
        }
        free(x), free(w), free(b), free(y), free(dx), free(dw);
    }
    return 0;
}
