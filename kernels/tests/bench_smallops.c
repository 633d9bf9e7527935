/* edgetrain — benchmark of the LeNet b64 training step's small ops (issue 15): max pool 2x2
 * forward / backward after conv1 ([64, 20, 24, 24]) and conv2 ([64, 50, 8, 8]), the relu
 * backward (on the full map, and on the pooled gradient as export.mask_before_maxpool_bwd runs
 * it), the max pool backward with the relu fused (export.fuse_maxpool_act_bwd, which replaces
 * the pooled relu backward + max pool backward pair), the conv bias gradients, SGD (momentum, weight decay) over fc1's 400k weights and
 * dropout over [64, 500], at 1 and 2 threads. Each op runs `runs` times in a row (its data warm
 * in the caches, as in the step); the median and the minimum are printed (ms).
 *
 * Build (not part of the library or the test binary):
 *   make -C kernels BUILD=build/bench
 *   cc -std=c99 -O3 -pthread -D_POSIX_C_SOURCE=200809L -Ikernels/include -Ikernels/src \
 *      kernels/tests/bench_smallops.c kernels/build/bench/libedgetrain.a -lm -o bench_smallops
 * Run:
 *   ./bench_smallops [runs] [batch]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgetrain/et_kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bench_ctx {
    et_pool2d_params p1, p2;
    et_conv2d_params c1, c2;
    float *x1, *y1, *g1, *d1, *x2, *y2, *g2, *d2, *db;
    float *w, *gw, *mom, *fx, *fy;
    int threads;
} bench_ctx;

typedef void (*bench_fn)(bench_ctx *b);
static void pool1_fwd(bench_ctx *b) { et_f32_maxpool2d_fwd(&b->p1, b->x1, b->y1, b->threads); }
static void pool1_bwd(bench_ctx *b) { et_f32_maxpool2d_bwd(&b->p1, b->x1, b->g1, b->d1, b->threads); }
static void pool2_fwd(bench_ctx *b) { et_f32_maxpool2d_fwd(&b->p2, b->x2, b->y2, b->threads); }
static void pool2_bwd(bench_ctx *b) { et_f32_maxpool2d_bwd(&b->p2, b->x2, b->g2, b->d2, b->threads); }
static void relu1_bwd(bench_ctx *b) {
    et_f32_act_bwd(ET_ACT_RELU, 0.0f, b->p1.n * 20 * 576, b->x1, b->d1, b->d1, b->threads);
}
static void relu2_bwd(bench_ctx *b) {
    et_f32_act_bwd(ET_ACT_RELU, 0.0f, b->p2.n * 50 * 64, b->x2, b->d2, b->d2, b->threads);
}
static void relu1p_bwd(bench_ctx *b) {
    et_f32_act_bwd(ET_ACT_RELU, 0.0f, b->p1.n * 20 * 144, b->y1, b->g1, b->g1, b->threads);
}
static void relu2p_bwd(bench_ctx *b) {
    et_f32_act_bwd(ET_ACT_RELU, 0.0f, b->p2.n * 50 * 16, b->y2, b->g2, b->g2, b->threads);
}
static void pool1_relu_bwd(bench_ctx *b) {
    et_f32_maxpool2d_act_bwd(&b->p1, ET_ACT_RELU, b->x1, b->g1, b->d1, b->threads);
}
static void pool2_relu_bwd(bench_ctx *b) {
    et_f32_maxpool2d_act_bwd(&b->p2, ET_ACT_RELU, b->x2, b->g2, b->d2, b->threads);
}
static void bias1(bench_ctx *b) { et_f32_conv2d_bwd_bias(&b->c1, b->d1, b->db, b->threads); }
static void bias2(bench_ctx *b) { et_f32_conv2d_bwd_bias(&b->c2, b->d2, b->db, b->threads); }
static void sgd_fc1(bench_ctx *b) {
    et_f32_sgd_update(400000, b->w, b->gw, b->mom, NULL, 1e-3f, 0.9f, 0.0f, 0, 5e-4f, 0, 0.0f, 0,
                      b->threads);
}
static void drop_fwd(bench_ctx *b) {
    et_f32_dropout_fwd(64 * 500, 0.5f, 7, 0, b->fx, b->fy, b->threads);
}

int main(int argc, char **argv) {
    const int runs = argc > 1 ? atoi(argv[1]) : 200;
    const int64_t nb = argc > 2 ? atoi(argv[2]) : 64; /* batch (smaller: data stays in L2) */
    bench_ctx b;
    memset(&b, 0, sizeof b);
    et_pool2d_params p = {nb, 20, 24, 24, 2, 2, 2, 2, 0, 0, 1, 1, 0, 0, 0, 0};
    b.p1 = p;
    et_pool2d_params_init(&b.p1);
    p.c = 50, p.h = p.w = 8;
    b.p2 = p;
    et_pool2d_params_init(&b.p2);
    et_conv2d_params c;
    memset(&c, 0, sizeof c);
    c.n = nb, c.c = 1, c.h = c.w = 28, c.oc = 20, c.kh = c.kw = 5, c.stride_h = c.stride_w = 1;
    c.dil_h = c.dil_w = 1, c.groups = 1;
    b.c1 = c;
    et_conv2d_params_init(&b.c1);
    c.c = 20, c.h = c.w = 12, c.oc = 50;
    b.c2 = c;
    et_conv2d_params_init(&b.c2);
    const int64_t n1 = nb * 20 * 576, n2 = nb * 50 * 64;
    b.x1 = malloc(n1 * 4), b.y1 = malloc(n1 * 4), b.g1 = malloc(n1 * 4), b.d1 = malloc(n1 * 4);
    b.x2 = malloc(n2 * 4), b.y2 = malloc(n2 * 4), b.g2 = malloc(n2 * 4), b.d2 = malloc(n2 * 4);
    b.db = malloc(64 * 4);
    b.w = malloc(400000 * 4), b.gw = malloc(400000 * 4), b.mom = malloc(400000 * 4);
    b.fx = malloc(32000 * 4), b.fy = malloc(32000 * 4);
    srand(1);
    for (int64_t i = 0; i < n1; i++) {
        float v = (float)(rand() % 2001 - 1000) / 500.0f;
        b.x1[i] = v < 0 ? 0 : v; /* relu output: about half zeros */
        b.g1[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
        b.d1[i] = b.g1[i];
    }
    for (int64_t i = 0; i < n2; i++) {
        float v = (float)(rand() % 2001 - 1000) / 500.0f;
        b.x2[i] = v < 0 ? 0 : v;
        b.g2[i] = b.d2[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
    }
    for (int64_t i = 0; i < 400000; i++) {
        b.w[i] = (float)(rand() % 2001 - 1000) / 1e4f;
        b.gw[i] = (float)(rand() % 2001 - 1000) / 1e5f;
        b.mom[i] = 0.0f;
    }
    for (int64_t i = 0; i < 32000; i++) b.fx[i] = (float)i;
    b.threads = 1;
    pool1_fwd(&b); /* y1 / y2: the pooled outputs the pooled relu backward reads */
    pool2_fwd(&b);
    struct { const char *name; bench_fn fn; } ops[] = {
        {"maxpool fwd [64,20,24,24]", pool1_fwd}, {"maxpool bwd [64,20,24,24]", pool1_bwd},
        {"maxpool fwd [64,50,8,8]", pool2_fwd},   {"maxpool bwd [64,50,8,8]", pool2_bwd},
        {"relu bwd [64,20,24,24]", relu1_bwd},    {"relu bwd [64,50,8,8]", relu2_bwd},
        {"relu bwd pooled [64,20,12,12]", relu1p_bwd}, {"relu bwd pooled [64,50,4,4]", relu2p_bwd},
        {"maxpool+relu bwd [64,20,24,24]", pool1_relu_bwd},
        {"maxpool+relu bwd [64,50,8,8]", pool2_relu_bwd},
        {"bias grad conv1", bias1},               {"bias grad conv2", bias2},
        {"sgd fc1 [400000]", sgd_fc1},            {"dropout fwd [64,500]", drop_fwd},
    };
    double *t = malloc(runs * sizeof(double));
    printf("%-28s %16s %16s\n", "op (ms)", "1 thr med/min", "2 thr med/min");
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        printf("%-28s", ops[o].name);
        for (int th = 1; th <= 2; th++) {
            b.threads = th;
            for (int r = 0; r < 10; r++) ops[o].fn(&b);
            for (int r = 0; r < runs; r++) {
                double t0 = now();
                ops[o].fn(&b);
                t[r] = now() - t0;
            }
            qsort(t, runs, sizeof(double), cmp_d);
            printf("   %6.3f / %6.3f", t[runs / 2] * 1e3, t[0] * 1e3);
        }
        printf("\n");
    }
    return 0;
}
