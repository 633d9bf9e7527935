/* edgetrain — SGEMM benchmark: GFLOP/s of et_f32_gemm at square and LeNet
 * shapes, 1 and 2 threads, best of a few runs, for one or every row of the
 * variant table (et_f32_gemm_variants) that runs here; optionally side by side
 * with an OpenBLAS loaded at run time (64-bit-int cblas, e.g. numpy's bundled one).
 *
 * Build (not part of the library or the test binary):
 *   make -C kernels BUILD=build/gemm
 *   cc -std=c99 -O3 -pthread -D_POSIX_C_SOURCE=200809L -Ikernels/include -Ikernels/src \
 *      kernels/tests/bench_gemm.c kernels/build/gemm/libedgetrain.a -lm -ldl -o bench_gemm
 * Run:
 *   ./bench_gemm [variant | all] [max_seconds_per_case]
 *     variant: a row name of et_f32_gemm_variants (ref, avx2, ...; default: the ISA chosen
 *     at start); all: every row this CPU runs, side by side (ref is slow at 2048^3)
 *   ET_BENCH_OPENBLAS=/path/libscipy_openblas64_.so ./bench_gemm   adds an OpenBLAS column
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* cblas_sgemm with 64-bit integers (ILP64 OpenBLAS); 101 = row-major, 111/112 = no/trans. */
typedef void (*cblas_sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float *,
                                 int64_t, const float *, int64_t, float, float *, int64_t);
typedef void (*set_threads_fn)(int);
static cblas_sgemm64_fn g_blas;
static set_threads_fn g_blas_threads;

static void load_openblas(void) {
    const char *path = getenv("ET_BENCH_OPENBLAS");
    if (!path) return;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return;
    }
    const char *gemm_names[] = {"scipy_cblas_sgemm64_", "cblas_sgemm64_", "cblas_sgemm"};
    const char *thr_names[] = {"scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                               "openblas_set_num_threads"};
    for (int i = 0; i < 3 && !g_blas; i++) *(void **)&g_blas = dlsym(h, gemm_names[i]);
    for (int i = 0; i < 3 && !g_blas_threads; i++)
        *(void **)&g_blas_threads = dlsym(h, thr_names[i]);
}

typedef struct shape {
    const char *name;
    int ta, tb;
    int64_t M, N, K;
} shape;

/* Best GFLOP/s over runs within max_s seconds (at least 3 runs). */
static double bench_one(const shape *s, int nth, int use_blas, double max_s) {
    const int64_t M = s->M, N = s->N, K = s->K;
    const int64_t lda = s->ta ? M : K, ldb = s->tb ? K : N;
    float *A = malloc(sizeof(float) * (size_t)(M * K));
    float *B = malloc(sizeof(float) * (size_t)(K * N));
    float *C = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)((i * 5) % 11) * 0.1f - 0.5f;
    memset(C, 0, sizeof(float) * (size_t)(M * N));
    const size_t ws_bytes = et_f32_gemm_ws_bytes(M, N, K, nth);
    void *ws = ws_bytes ? malloc(ws_bytes) : NULL;
    if (use_blas && g_blas_threads) g_blas_threads(nth);
    double best = 1e30, start = now();
    for (int rep = 0; rep < 3 || (now() - start < max_s && rep < 200); rep++) {
        const double t0 = now();
        if (use_blas)
            g_blas(101, s->ta ? 112 : 111, s->tb ? 112 : 111, M, N, K, 1.0f, A, lda, B, ldb, 0.0f,
                   C, N);
        else if (et_f32_gemm(s->ta, s->tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N, ws, ws_bytes,
                             nth) != ET_OK) {
            fprintf(stderr, "et_f32_gemm failed\n");
            exit(1);
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    free(A), free(B), free(C), free(ws);
    return 2.0 * (double)M * (double)N * (double)K / best * 1e-9;
}

/* The rows of et_f32_gemm_variants to run: the one named `arg` (NULL: the current ISA's),
 * or every supported row for "all". Returns their number. */
static int select_rows(const char *arg, const et_f32_gemm_variant **rows) {
    int n = 0;
    for (const et_f32_gemm_variant *v = et_f32_gemm_variants; v->head.name; v++) {
        if (!et_isa_supported(v->head.isa)) continue;
        if (arg ? strcmp(arg, "all") == 0 || strcmp(arg, v->head.name) == 0
                : v->head.isa == et_get_isa())
            rows[n++] = v;
    }
    if (n == 0) {
        rows[n++] = et_variant_pick(et_f32_gemm_variants, sizeof et_f32_gemm_variants[0]);
        fprintf(stderr, "no variant %s runs here, using %s\n", arg ? arg : "", rows[0]->head.name);
    }
    return n;
}

int main(int argc, char **argv) {
    const et_f32_gemm_variant *rows[ET_ISA_COUNT_];
    const int nrows = select_rows(argc > 1 ? argv[1] : NULL, rows);
    const double max_s = argc > 2 ? atof(argv[2]) : 0.5;
    load_openblas();
    const shape shapes[] = {
        {"256^3", 0, 0, 256, 256, 256},
        {"512^3", 0, 0, 512, 512, 512},
        {"1024^3", 0, 0, 1024, 1024, 1024},
        {"2048^3", 0, 0, 2048, 2048, 2048},
        {"2048^3 NT", 0, 1, 2048, 2048, 2048},
        {"lenet fc1 fwd 64x500x800 NT", 0, 1, 64, 500, 800},
        {"lenet fc1 dX 64x800x500 NN", 0, 0, 64, 800, 500},
        {"lenet fc1 dW 500x800x64 TN", 1, 0, 500, 800, 64},
        {"lenet conv2 50x4096x500 NN", 0, 0, 50, 4096, 500},
        {"lenet conv2 dcol 500x4096x50 TN", 1, 0, 500, 4096, 50},
        {"lenet conv2 dW 50x500x4096 NT", 0, 1, 50, 500, 4096},
        {"conv1 20x36864x25 NN", 0, 0, 20, 36864, 25},
        {"conv2 per image 50x64x500 NN", 0, 0, 50, 64, 500},
        {"conv2 4 images 50x256x500 NN", 0, 0, 50, 256, 500},
        {"conv2 8 images 50x512x500 NN", 0, 0, 50, 512, 500},
        {"conv2 dcol 1 image 500x64x50 TN", 1, 0, 500, 64, 50},
        {"conv2 dcol 8 images 500x512x50 TN", 1, 0, 500, 512, 50},
        {"conv2 dW 1 image 50x500x64 NT", 0, 1, 50, 500, 64},
        {"conv2 dW 8 images 50x500x512 NT", 0, 1, 50, 500, 512},
        {"conv1 per image 20x576x25 NN", 0, 0, 20, 576, 25},
        {"conv1 8 images 20x4608x25 NN", 0, 0, 20, 4608, 25},
        {"conv1 dW 1 image 20x25x576 NT", 0, 1, 20, 25, 576},
        {"conv1 dW 8 images 20x25x4608 NT", 0, 1, 20, 25, 4608},
    };
    enum { NSHAPES = sizeof shapes / sizeof shapes[0] };
    /* all edgetrain runs first, then all OpenBLAS runs: the two thread pools
     * spin-wait after a parallel call and would slow each other down */
    enum { NCOLS = 2 * (ET_ISA_COUNT_ + 1) };
    double gf[NSHAPES][NCOLS] = {{0}};
    for (int r = 0; r < nrows + (g_blas ? 1 : 0); r++) {
        const int blas = r == nrows;
        if (!blas) et_set_isa(rows[r]->head.isa);
        for (int i = 0; i < NSHAPES; i++)
            for (int nth = 1; nth <= 2; nth++)
                gf[i][2 * r + nth - 1] = bench_one(&shapes[i], nth, blas, max_s);
    }
    printf("openmp %d, %s\n", et_has_openmp(),
           g_blas ? "openblas loaded" : "no openblas (set ET_BENCH_OPENBLAS)");
    printf("%-34s", "shape (M x N x K, op)");
    for (int r = 0; r < nrows; r++) printf(" %7s 1t %7s 2t", rows[r]->head.name, rows[r]->head.name);
    if (g_blas) printf(" %7s 1t %7s 2t", "blas", "blas");
    printf("   GFLOP/s\n");
    for (int i = 0; i < NSHAPES; i++) {
        printf("%-34s", shapes[i].name);
        for (int c = 0; c < 2 * (nrows + (g_blas ? 1 : 0)); c++) printf(" %10.1f", gf[i][c]);
        printf("\n");
    }
    return 0;
}
