/* edgetrain — benchmark of the fused BatchNorm + relu6 training kernels (issue 15): every
 * BatchNorm of MobileNetV2 b32 at 32x32 (shapes and counts of its training program), one
 * training step's BN + act work, fused (et_f32_batchnorm_train_act_fwd +
 * et_f32_batchnorm_act_bwd) against the unfused ops (batchnorm_train_fwd, act_fwd, act_bwd,
 * batchnorm_bwd), at 1 and 2 threads, the variants alternating run by run; best of a number of
 * runs (the minimum is the figure that survives a noisy machine). Every BatchNorm has its own
 * tensors (x, y, dy, dx and the unfused intermediates), as in the training program, so the
 * step streams them from memory instead of finding one layer's data in the cache.
 *
 * Build (not part of the library or the test binary):
 *   make -C kernels BUILD=build/bench
 *   cc -std=c99 -O3 -pthread -D_POSIX_C_SOURCE=200809L -Ikernels/include -Ikernels/src \
 *      kernels/tests/bench_bn_act.c kernels/build/bench/libedgetrain.a -lm -o bench_bn_act
 * Run:
 *   ./bench_bn_act [runs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "edgetrain/et_kernels.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU time of the process (all threads): the work, less sensitive to other processes than the
 * wall time on a shared machine (not to their use of the memory bus) */
static double cpu(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* (c, hw, act, count): MobileNetV2 b32 32x32's BatchNorms (act 2 = relu6 after it) */
static const int kLayers[][4] = {
    {16, 256, 0, 1}, {24, 64, 0, 2},  {32, 16, 0, 3},  {32, 256, 2, 2}, {64, 4, 0, 4},
    {96, 4, 0, 3},   {96, 64, 2, 1},  {96, 256, 2, 1}, {144, 16, 2, 1}, {144, 64, 2, 3},
    {160, 1, 0, 3},  {192, 4, 2, 1},  {192, 16, 2, 5}, {320, 1, 0, 1},  {384, 4, 2, 8},
    {576, 1, 2, 1},  {576, 4, 2, 5},  {960, 1, 2, 6},  {1280, 1, 2, 1},
};
#define NLAYERS ((int)(sizeof kLayers / sizeof kLayers[0]))
#define N 32

typedef struct bufs {
    float *x, *y, *t, *dy, *g, *dx, *gamma, *beta, *rm, *rv, *sm, *si, *dg, *db;
} bufs;
#define MAXINST 64 /* BatchNorms in the step */

/* One step's BN (+ relu6) forward and backward over every layer (all forwards, then all
 * backwards in reverse, as in the program). */
static void step(int fused, int nt, const bufs *bs) {
    int base[NLAYERS]; /* the first instance (bs index) of each layer */
    for (int l = 0, inst = 0; l < NLAYERS; inst += kLayers[l][3], l++) base[l] = inst;
    for (int pass = 0; pass < 2; pass++)
    for (int li = 0; li < NLAYERS; li++) {
        const int l = pass ? NLAYERS - 1 - li : li;
        const int64_t c = kLayers[l][0], hw = kLayers[l][1], total = N * c * hw;
        const et_act act = (et_act)kLayers[l][2];
        for (int k = 0; k < kLayers[l][3]; k++) {
            const bufs *b = &bs[base[l] + k];
            if (pass == 0) {
                if (fused)
                    et_f32_batchnorm_train_act_fwd(N, c, hw, b->x, b->gamma, b->beta, b->rm, b->rv,
                                                   0.1f, 1e-5f, act, b->y, b->sm, b->si, nt);
                else {
                    et_f32_batchnorm_train_fwd(N, c, hw, b->x, b->gamma, b->beta, b->rm, b->rv,
                                               0.1f, 1e-5f, b->t, b->sm, b->si, nt);
                    if (act != ET_ACT_NONE) et_f32_act_fwd(act, 0.0f, total, b->t, b->y, nt);
                }
                continue;
            }
            if (fused) {
                et_f32_batchnorm_act_bwd(N, c, hw, b->x, b->y, b->dy, act, b->gamma, b->sm, b->si,
                                         b->dx, b->dg, b->db, nt);
                continue;
            }
            const float *g = b->dy;
            if (act != ET_ACT_NONE) {
                et_f32_act_bwd(act, 0.0f, total, b->y, b->dy, b->g, nt);
                g = b->g;
            }
            et_f32_batchnorm_bwd(N, c, hw, b->x, g, b->gamma, b->sm, b->si, b->dx, b->dg, b->db, nt);
        }
    }
}

int main(int argc, char **argv) {
    const int runs = argc > 1 ? atoi(argv[1]) : 30;
    static bufs bs[MAXINST];
    for (int l = 0, inst = 0; l < NLAYERS; l++)
        for (int k = 0; k < kLayers[l][3]; k++, inst++) {
            const int64_t t = (int64_t)N * kLayers[l][0] * kLayers[l][1], c = kLayers[l][0];
            bufs *b = &bs[inst];
            float **big[] = {&b->x, &b->y, &b->t, &b->dy, &b->g, &b->dx};
            float **small[] = {&b->gamma, &b->beta, &b->rm, &b->rv, &b->sm, &b->si, &b->dg, &b->db};
            for (int q = 0; q < 6; q++) *big[q] = calloc(t, sizeof(float));
            for (int q = 0; q < 8; q++) *small[q] = calloc(c, sizeof(float));
            for (int64_t i = 0; i < t; i++) {
                b->x[i] = (float)((i * 7919 % 2000) / 250.0 - 4.0);
                b->dy[i] = (float)((i * 31 % 200) / 100.0 - 1.0);
            }
            for (int64_t i = 0; i < c; i++) b->gamma[i] = 1.5f, b->beta[i] = 0.5f, b->rv[i] = 1;
        }
    double best[2][2] = {{1e9, 1e9}, {1e9, 1e9}}; /* [threads - 1][fused] */
    double bcpu[2][2] = {{1e9, 1e9}, {1e9, 1e9}};
    for (int r = 0; r < runs; r++)
        for (int v = 0; v < 4; v++) {
            const int nt = 1 + (v >> 1), fused = (v & 1) ^ (r & 1);
            const double t0 = now(), c0 = cpu();
            step(fused, nt, bs);
            const double ms = (now() - t0) * 1e3, cms = (cpu() - c0) * 1e3;
            if (ms < best[nt - 1][fused]) best[nt - 1][fused] = ms;
            if (cms < bcpu[nt - 1][fused]) bcpu[nt - 1][fused] = cms;
        }
    printf("MobileNetV2 b32 32x32: BatchNorm (+relu6) forward + backward of one training step, "
           "best of %d\n", runs);
    for (int nt = 1; nt <= 2; nt++)
        printf("  threads=%d: unfused %6.2f ms, fused %6.2f ms (x%.2f); CPU unfused %6.2f ms, "
               "fused %6.2f ms (x%.2f)\n", nt, best[nt - 1][0], best[nt - 1][1],
               best[nt - 1][0] / best[nt - 1][1], bcpu[nt - 1][0], bcpu[nt - 1][1],
               bcpu[nt - 1][0] / bcpu[nt - 1][1]);
    printf("  1 -> 2 threads: unfused x%.2f, fused x%.2f\n", best[0][0] / best[1][0],
           best[0][1] / best[1][1]);
    return 0;
}
