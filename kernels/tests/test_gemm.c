/* edgetrain — GEMM tests: every variant this CPU runs (ref's scalar config included) against
 * et_f32_gemm__ref at sizes equal to, one below, one above and not divisible
 * by the register tile (MR, NR) and the cache blocks (MC, KC, NC), with all
 * transposes, alpha / beta variants, padded leading dimensions, 1 and 2
 * threads; plus bitwise repeatability, workspace and argument checks and the
 * et_f32_gemm dispatch on every supported ISA. */
#include <stdlib.h>
#include <string.h>

#include "et_test.h"
#include "gemm_internal.h"

typedef et_status (*gemm_fn)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                             const float *, int64_t, float, float *, int64_t, void *, size_t, int);

/* One variant under test: a row of et_f32_gemm_variants (its isa and config). */
typedef et_f32_gemm_variant variant;

/* How a case is run. */
enum mode {
    MODE_PACKED = 0, /* et_f32_gemm_packed(cfg): packing at every size */
    MODE_RUN = 1,    /* et_f32_gemm_run(cfg): small / packed choice as shipped */
    MODE_PUBLIC = 2, /* et_f32_gemm after et_set_isa(isa) */
};

typedef struct gemm_case {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    int64_t pad; /* extra elements per row of A, B and C */
    int nthreads;
} gemm_case;

static float g_nan;

/* Runs one case for `v` in `mode`, compares with the reference and checks
 * that padding is untouched and C is not read when beta == 0. If `out` is
 * non-null the result (M x ldc) is copied there. Returns 1 on success. */
static int run_case(const variant *v, enum mode mode, gemm_case c, float *out) {
    const int64_t ar = c.ta ? c.K : c.M, ac = c.ta ? c.M : c.K; /* A stored ar x ac */
    const int64_t br = c.tb ? c.N : c.K, bc = c.tb ? c.K : c.N;
    const int64_t lda = ac + c.pad, ldb = bc + c.pad, ldc = c.N + c.pad;
    const int64_t na = ar * lda + 1, nb = br * ldb + 1, nc = c.M * ldc + 1;
    float *A = malloc(sizeof(float) * (size_t)na), *B = malloc(sizeof(float) * (size_t)nb);
    float *C = malloc(sizeof(float) * (size_t)nc), *R = malloc(sizeof(float) * (size_t)nc);
    float *G = malloc(sizeof(float) * (size_t)(c.M * c.N + 1));
    float *W = malloc(sizeof(float) * (size_t)(c.M * c.N + 1));
    /* NaN in every padding element of A and B: reading one poisons C */
    et_fill_random(A, na, (uint64_t)(c.M * 131 + c.K), -1.0f, 1.0f);
    et_fill_random(B, nb, (uint64_t)(c.N * 137 + c.K + 7), -1.0f, 1.0f);
    et_fill_random(C, nc, (uint64_t)(c.M + c.N * 3 + 11), -1.0f, 1.0f);
    for (int64_t i = 0; i < ar; i++)
        for (int64_t j = ac; j < lda; j++) A[i * lda + j] = g_nan;
    for (int64_t i = 0; i < br; i++)
        for (int64_t j = bc; j < ldb; j++) B[i * ldb + j] = g_nan;
    A[na - 1] = B[nb - 1] = g_nan;
    if (c.beta == 0.0f) /* C must not be read */
        for (int64_t i = 0; i < c.M; i++)
            for (int64_t j = 0; j < c.N; j++) C[i * ldc + j] = g_nan;
    memcpy(R, C, sizeof(float) * (size_t)nc);
    et_f32_gemm__ref(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, R, ldc);

    /* exact-size workspace, deliberately misaligned by 4 bytes */
    size_t ws_bytes = mode == MODE_PACKED
                          ? et_f32_gemm_packed_ws_bytes(v->cfg, c.M, c.N, c.K, c.nthreads)
                          : et_f32_gemm_ws_bytes(c.M, c.N, c.K, c.nthreads);
    char *ws_mem = malloc(ws_bytes + 8);
    void *ws = ws_mem + 4;
    et_status st;
    if (mode == MODE_PACKED)
        st = et_f32_gemm_packed(v->cfg, c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb,
                                c.beta, C, ldc, ws, ws_bytes, c.nthreads);
    else if (mode == MODE_RUN)
        st = et_f32_gemm_run(v->cfg, c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta,
                             C, ldc, ws, ws_bytes, c.nthreads);
    else
        st = et_f32_gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc, ws,
                         ws_bytes, c.nthreads);

    int ok = st == ET_OK;
    for (int64_t i = 0; i < c.M; i++) {
        memcpy(G + i * c.N, C + i * ldc, sizeof(float) * (size_t)c.N);
        memcpy(W + i * c.N, R + i * ldc, sizeof(float) * (size_t)c.N);
    }
    /* error of a k-long fp32 dot product grows about linearly in the worst case */
    const float atol = 2e-6f * (float)(c.K + 1) * (fabsf(c.alpha) + fabsf(c.beta));
    if (ok) ok = et_allclose(G, W, c.M * c.N, 1e-5f, atol, "C");
    /* padding columns of C and the element past the end are untouched */
    if (ok && memcmp(C + c.M * ldc, R + c.M * ldc, sizeof(float)) != 0) ok = 0;
    for (int64_t i = 0; ok && i < c.M; i++)
        if (memcmp(C + i * ldc + c.N, R + i * ldc + c.N, sizeof(float) * (size_t)c.pad) != 0)
            ok = 0;
    ET_CHECK(ok,
             "%s/%s mode %d: ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld nth=%d "
             "st=%d",
             et_isa_name(v->head.isa), v->cfg ? v->cfg->name : "-", (int)mode, c.ta, c.tb,
             (long long)c.M, (long long)c.N, (long long)c.K, (double)c.alpha, (double)c.beta,
             (long long)c.pad, c.nthreads, (int)st);
    if (out) memcpy(out, C, sizeof(float) * (size_t)nc);
    free(A), free(B), free(C), free(R), free(G), free(W), free(ws_mem);
    return ok;
}

static const float g_alpha[] = {1.0f, 1.0f, -0.5f, 2.0f, 1.0f};
static const float g_beta[] = {0.0f, 1.0f, 2.5f, 0.0f, -1.0f};
#define N_AB 5

/* All four transposes for (M, N, K); alpha/beta, padding and threads cycle
 * with `seed` so the combinations spread over the cases. */
static void run_all_trans(const variant *v, enum mode mode, int64_t M, int64_t N, int64_t K,
                          unsigned seed) {
    for (int t = 0; t < 4; t++) {
        const unsigned s = seed + (unsigned)t;
        gemm_case c = {t & 1, t >> 1, M, N, K, g_alpha[s % N_AB], g_beta[s % N_AB],
                       (s % 3 == 0) ? 3 : (s % 3 == 1 ? 0 : 17), 1 + (int)(s / 3 % 2)};
        run_case(v, mode, c, NULL);
    }
}

/* Tile and cache-block edges for one variant, always through the packed path. */
static void test_variant_edges(const variant *v) {
    const et_f32_gemm_config *g = v->cfg;
    const int64_t ms[] = {1, 2, g->mr - 1, g->mr, g->mr + 1, 2 * g->mr + 3};
    const int64_t ns[] = {1, 3, g->nr - 1, g->nr, g->nr + 1, 2 * g->nr + 5};
    const int64_t ks[] = {1, 2, 17, 64};
    unsigned seed = 0;
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++, seed += 4)
                run_all_trans(v, MODE_PACKED, ms[i], ns[j], ks[k], seed);
    /* cache blocks: MC, KC, NC equal, one below, one above, not divisible */
    const int64_t d[] = {-1, 0, 1, 7};
    for (int i = 0; i < 4; i++, seed += 4) {
        run_all_trans(v, MODE_PACKED, g->mc + d[i], g->nr + 3, 9, seed);
        run_all_trans(v, MODE_PACKED, g->mr + 2, g->nr + 1, g->kc + d[i], seed + 1);
        run_all_trans(v, MODE_PACKED, g->mr - 1, g->nc + d[i], 5, seed + 2);
    }
    run_all_trans(v, MODE_PACKED, 2 * g->mc + 5, 2 * g->nr + 1, 2 * g->kc + 3, seed);
    run_all_trans(v, MODE_PACKED, g->mr + 1, 2 * g->nc + 3, 3, seed + 1);
}

/* Shapes like the project's (small versions) through the shipped path. */
static void test_variant_shapes(const variant *v, enum mode mode) {
    const int64_t shapes[][3] = {
        {1, 300, 70},  {1, 1, 50},  {300, 1, 70}, {5, 5, 5},   {16, 16, 16},
        {20, 150, 25}, {64, 50, 80}, {50, 100, 60}, {97, 211, 129}, {300, 40, 90},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        run_all_trans(v, mode, shapes[i][0], shapes[i][1], shapes[i][2], (unsigned)i * 7);
    /* the thread grid in both directions */
    for (int nth = 1; nth <= 3; nth++) {
        gemm_case wide = {0, 1, 37, 530, 70, 1.0f, 0.5f, 1, nth};
        gemm_case tall = {1, 0, 530, 37, 70, 1.5f, 0.0f, 2, nth};
        run_case(v, mode, wide, NULL);
        run_case(v, mode, tall, NULL);
    }
}

/* Same thread count, same bits (the contract). The implementation also gives
 * the same bits for 1 and 2 threads (gemm_internal.h); checked too. */
static void test_repeatable(const variant *v) {
    const int64_t shapes[][3] = {{131, 257, 300}, {300, 40, 1000}, {1, 700, 90}, {10, 10, 10}};
    for (int s = 0; s < 4; s++) {
        float *r[3];
        for (int run = 0; run < 3; run++) {
            const int nth = run < 2 ? 2 : 1;
            gemm_case c = {0, s & 1, shapes[s][0], shapes[s][1], shapes[s][2], 0.75f, 0.5f, 2, nth};
            const size_t n = (size_t)(c.M * (c.N + c.pad) + 1);
            r[run] = malloc(n * sizeof(float));
            run_case(v, MODE_RUN, c, r[run]);
            if (run > 0)
                ET_CHECK(memcmp(r[0], r[run], n * sizeof(float)) == 0,
                         "%s: %lldx%lldx%lld not bitwise equal, 2 threads vs %d", v->cfg->name,
                         (long long)c.M, (long long)c.N, (long long)c.K, nth);
        }
        free(r[0]), free(r[1]), free(r[2]);
    }
}

/* K == 0, alpha == 0, M or N == 0, workspace and argument errors. */
static void test_edge_args(void) {
    float A[64], B[64], C[64], ws[1];
    et_fill_random(A, 64, 1, -1, 1);
    et_fill_random(B, 64, 2, -1, 1);
    for (int i = 0; i < 64; i++) C[i] = (float)i;
    /* K == 0: C = beta * C; beta == 0 writes zeros over NaN */
    ET_CHECK(et_f32_gemm(0, 0, 4, 4, 0, 1.0f, A, 0, B, 4, 2.0f, C, 4, NULL, 0, 2) == ET_OK, "K=0");
    ET_CHECK(C[5] == 10.0f && C[15] == 30.0f && C[16] == 16.0f, "K=0 beta=2 scales C");
    C[3] = g_nan;
    ET_CHECK(et_f32_gemm(0, 0, 4, 4, 0, 1.0f, A, 0, B, 4, 0.0f, C, 4, NULL, 0, 1) == ET_OK, "K=0");
    ET_CHECK(C[3] == 0.0f && C[15] == 0.0f && C[16] == 16.0f, "K=0 beta=0 zeroes C");
    /* alpha == 0 is C = beta * C as well */
    C[0] = 3.0f;
    ET_CHECK(et_f32_gemm(0, 0, 4, 4, 4, 0.0f, A, 4, B, 4, -1.0f, C, 4, NULL, 0, 1) == ET_OK, "a=0");
    ET_CHECK(C[0] == -3.0f, "alpha=0 gives beta*C");
    /* M == 0 / N == 0: nothing touched */
    C[0] = 7.0f;
    ET_CHECK(et_f32_gemm(0, 0, 0, 4, 4, 1.0f, A, 4, B, 4, 0.0f, C, 4, NULL, 0, 1) == ET_OK, "M=0");
    ET_CHECK(et_f32_gemm(0, 0, 4, 0, 4, 1.0f, A, 4, B, 0, 0.0f, C, 0, NULL, 0, 1) == ET_OK, "N=0");
    ET_CHECK(C[0] == 7.0f, "M=0 / N=0 leave C alone");
    /* bad arguments */
    ET_CHECK(et_f32_gemm(0, 0, -1, 4, 4, 1.0f, A, 4, B, 4, 0.0f, C, 4, NULL, 0, 1) == ET_ERR_ARG,
             "negative M");
    ET_CHECK(et_f32_gemm(0, 0, 4, 4, 4, 1.0f, A, 3, B, 4, 0.0f, C, 4, NULL, 0, 1) == ET_ERR_ARG,
             "lda < K");
    ET_CHECK(et_f32_gemm(1, 0, 4, 4, 4, 1.0f, A, 4, B, 4, 0.0f, C, 3, NULL, 0, 1) == ET_ERR_ARG,
             "ldc < N");
    ET_CHECK(et_f32_gemm(0, 0, 4, 4, 4, 1.0f, NULL, 4, B, 4, 0.0f, C, 4, NULL, 0, 1) == ET_ERR_ARG,
             "A null");
    /* tiny and vector problems need no workspace; bigger ones check it */
    ET_CHECK(et_f32_gemm_ws_bytes(1, 1000, 1000, 2) == 0, "M=1 needs no workspace");
    ET_CHECK(et_f32_gemm_ws_bytes(8, 8, 8, 1) == 0, "tiny needs no workspace");
    const size_t need = et_f32_gemm_ws_bytes(64, 64, 64, 2);
    ET_CHECK(need > 0 && need >= et_f32_gemm_ws_bytes(64, 64, 64, 1),
             "workspace grows with threads");
    float *big = calloc(3 * 64 * 64, sizeof(float));
    ET_CHECK(et_f32_gemm(0, 0, 64, 64, 64, 1.0f, big, 64, big + 4096, 64, 0.0f, big + 8192, 64, ws,
                         sizeof ws, 2) == ET_ERR_WORKSPACE,
             "small workspace rejected");
    ET_CHECK(et_f32_gemm(0, 0, 64, 64, 64, 1.0f, big, 64, big + 4096, 64, 0.0f, big + 8192, 64,
                         NULL, need, 2) == ET_ERR_WORKSPACE,
             "null workspace rejected");
    free(big);
}

/* ---- golden bits ------------------------------------------------------------
 * Every variant computes the same float expression (gemm_internal.h:
 * the same K split, FMA chains in k order, the same epilogue; the unpacked
 * path in plain C without contraction), so its output bits are the same on
 * x86 (AVX-512, AVX2), aarch64 (NEON) and ref (plain C fmaf). The hashes below were computed on
 * x86 with AVX-512; the same test binary checks them on every ISA it can run
 * (make -C kernels test, make -C kernels TARGET=aarch64 test under qemu). A
 * change of the arithmetic must update them on purpose. */
typedef struct golden_case {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    uint64_t hash; /* FNV-1a 64 of C's bits, M x N row-major */
} golden_case;

static const golden_case g_golden[] = {
    /* LeNet shapes: conv2 fwd per image, fc1 fwd / dX / dW, conv2 dcol / dW */
    {0, 0, 50, 64, 500, 1.0f, 0.0f, 0x679872a3a527740eULL},
    {0, 1, 64, 500, 800, 1.0f, 0.0f, 0x0bef4c3a1c98091cULL},
    {0, 0, 64, 800, 500, 1.0f, 0.0f, 0x656844d2a6dab9e0ULL},
    {1, 0, 500, 800, 64, 1.0f, 1.0f, 0xdf0162f56f3a44caULL},
    {1, 0, 500, 256, 50, 1.0f, 0.0f, 0xb565a2f0a137ba90ULL},
    {0, 1, 50, 500, 1600, 1.0f, 1.0f, 0xcb368f42113365d7ULL},
    /* several K blocks, odd edges, alpha / beta, transposed both */
    {1, 1, 37, 29, 2000, 0.75f, -0.5f, 0xb9875a1d6cb4082fULL},
    {0, 0, 131, 257, 769, -0.5f, 2.5f, 0xe40f15749aeb00c3ULL},
    /* the unpacked path: tiny, M == 1, N == 1 */
    {0, 0, 10, 10, 10, 1.0f, 0.0f, 0xb72f18e7be655ae6ULL},
    {0, 0, 1, 700, 90, 1.0f, 1.0f, 0xc11ffa9f155df0beULL},
    {1, 1, 1, 300, 1000, 0.5f, 0.0f, 0xd5772d12e6d36cd4ULL},
    {0, 1, 33, 1, 513, 1.0f, -1.0f, 0xdb52b0002feec770ULL},
    {1, 0, 20, 25, 8, 1.0f, 0.0f, 0x170f3b92a2a5664aULL},
    /* one B panel: A read in place where the ISA has the kernel (AVX-512), packed elsewhere;
     * LeNet conv1 dW per image (beta 1), the 6-row edge, two K blocks */
    {0, 0, 20, 32, 576, 1.0f, 1.0f, 0xdb846c8d912b0693ULL},
    {0, 0, 50, 20, 300, 1.0f, 0.0f, 0x915d2de4dfcebd8dULL},
    {0, 0, 9, 32, 1000, 0.5f, -1.0f, 0xcc6f047200e9d773ULL},
    /* at most MR columns times a transposed B: C^T where the ISA has the in-place kernel
     * (MobileNetV2's classifier at b32, LeNet's fc2 at b64 with beta 1) */
    {0, 1, 32, 10, 1280, 1.0f, 0.0f, 0xdc6fa89926da79b4ULL},
    {0, 1, 64, 10, 500, 1.0f, 1.0f, 0x298395a4dbc0b237ULL},
    /* at most MR columns times a transposed A: C^T with A read in place (LeNet's fc2 dW at
     * b64; two K blocks with a partial last panel and beta; B transposed, N == MR of
     * AVX-512; N within AVX2's MR; many panels over threads) */
    {1, 0, 500, 10, 64, 1.0f, 0.0f, 0x4fa88fed6a127655ULL},
    {1, 0, 97, 13, 800, 0.75f, -0.5f, 0x08aa0b653de270c3ULL},
    {1, 1, 70, 14, 300, 1.0f, 1.0f, 0x2dfb8e73d8ede8d8ULL},
    {1, 0, 200, 5, 40, 1.0f, 0.0f, 0x3f9ed8b9833e9895ULL},
    {1, 0, 700, 12, 200, 1.0f, 0.0f, 0x950a749b71c57587ULL},
};

static uint64_t fnv1a64(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* Runs every golden case through et_f32_gemm on the current ISA with
 * `nthreads` and checks the hash of the result bits. */
static void test_golden_bits(const char *isa_name, int nthreads) {
    for (size_t g = 0; g < sizeof g_golden / sizeof g_golden[0]; g++) {
        const golden_case *c = &g_golden[g];
        const int64_t na = c->M * c->K, nb = c->K * c->N, nc = c->M * c->N;
        float *A = malloc(sizeof(float) * (size_t)na), *B = malloc(sizeof(float) * (size_t)nb);
        float *C = malloc(sizeof(float) * (size_t)nc);
        et_fill_random(A, na, 100 + g, -1.0f, 1.0f);
        et_fill_random(B, nb, 200 + g, -1.0f, 1.0f);
        et_fill_random(C, nc, 300 + g, -1.0f, 1.0f);
        const size_t wsb = et_f32_gemm_ws_bytes(c->M, c->N, c->K, nthreads);
        void *ws = wsb ? malloc(wsb) : NULL;
        const et_status st = et_f32_gemm(c->ta, c->tb, c->M, c->N, c->K, c->alpha,
                                         A, c->ta ? c->M : c->K, B, c->tb ? c->K : c->N, c->beta,
                                         C, c->N, ws, wsb, nthreads);
        const uint64_t h = fnv1a64(C, sizeof(float) * (size_t)nc);
        ET_CHECK(st == ET_OK && h == c->hash,
                 "%s, %d threads: %s%s %lldx%lldx%lld alpha %g beta %g: bits hash 0x%016llxULL, "
                 "golden 0x%016llxULL",
                 isa_name, nthreads, c->ta ? "T" : "N", c->tb ? "T" : "N", (long long)c->M,
                 (long long)c->N, (long long)c->K, (double)c->alpha, (double)c->beta,
                 (unsigned long long)h, (unsigned long long)c->hash);
        free(A), free(B), free(C), free(ws);
    }
}

/* et_f32_gemm_pa with A packed once gives et_f32_gemm's bits, also when pa does not fit
 * (packed under another ISA, for another shape, or NULL) and when the product is tiny. */
static int pa_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float beta, int nth,
                   et_isa pack_isa, int64_t pack_m) {
    const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    const int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb, nc = M * ldc;
    float *A = malloc(sizeof(float) * (size_t)na), *B = malloc(sizeof(float) * (size_t)nb);
    float *C1 = malloc(sizeof(float) * (size_t)nc), *C2 = malloc(sizeof(float) * (size_t)nc);
    et_fill_random(A, na, (uint64_t)(M * 7 + K), -1.0f, 1.0f);
    et_fill_random(B, nb, (uint64_t)(N * 5 + K), -1.0f, 1.0f);
    et_fill_random(C1, nc, 3, -1.0f, 1.0f);
    memcpy(C2, C1, sizeof(float) * (size_t)nc);
    const size_t wsb = et_f32_gemm_ws_bytes(M, N, K, nth);
    const size_t pab = et_f32_gemm_pack_a_bytes(pack_m, K);
    char *ws = malloc(wsb + 1), *pa = malloc(pab + 5);
    const et_isa run_isa = et_get_isa();
    int ok = et_set_isa(pack_isa) == ET_OK;
    ok = ok && et_f32_gemm_pack_a(ta, pack_m, K, A, lda, pa + 5, pab) == ET_OK;
    ok = ok && et_set_isa(run_isa) == ET_OK;
    ok = ok && et_f32_gemm(ta, tb, M, N, K, 1.5f, A, lda, B, ldb, beta, C1, ldc, ws, wsb, nth) == ET_OK;
    ok = ok && et_f32_gemm_pa(ta, tb, M, N, K, 1.5f, A, lda, pa + 5, B, ldb, beta, C2, ldc, ws,
                              wsb, nth) == ET_OK;
    ok = ok && memcmp(C1, C2, sizeof(float) * (size_t)nc) == 0;
    ET_CHECK(ok, "gemm_pa %s (packed under %s, M %lld): ta=%d tb=%d M=%lld N=%lld K=%lld beta=%g nth=%d",
             et_isa_name(run_isa), et_isa_name(pack_isa), (long long)pack_m, ta, tb, (long long)M,
             (long long)N, (long long)K, (double)beta, nth);
    free(A), free(B), free(C1), free(C2), free(ws), free(pa);
    return ok;
}

static void test_pack_a(void) {
    static const int64_t shapes[][3] = {{50, 64, 500}, {500, 64, 50}, {20, 576, 25}, {15, 33, 1600},
                                        {29, 70, 769}, {1, 40, 30}, {3, 3, 3}, {130, 17, 9}};
    for (const variant *v = et_f32_gemm_variants; v->head.name; v++) {
        if (et_set_isa(v->head.isa) == ET_OK) {
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
                for (int t = 0; t < 4; t++)
                    for (int nth = 1; nth <= 2; nth++)
                        pa_case(t & 1, t >> 1, shapes[i][0], shapes[i][1], shapes[i][2],
                                nth == 1 ? 0.0f : 0.5f, nth, v->head.isa, shapes[i][0]);
            /* pa that does not fit: another shape, another ISA */
            pa_case(0, 0, 50, 64, 500, 1.0f, 1, v->head.isa, 49);
            for (const variant *u = et_f32_gemm_variants; u->head.name; u++)
                if (et_isa_supported(u->head.isa)) pa_case(1, 0, 500, 64, 50, 0.0f, 2, u->head.isa, 500);
        }
    }
    float a[4] = {1, 2, 3, 4}, pa[64];
    ET_CHECK(et_f32_gemm_pack_a(0, 2, 2, a, 2, pa, 8) == ET_ERR_WORKSPACE, "pack_a small buffer");
    ET_CHECK(et_f32_gemm_pack_a(0, 2, 2, a, 1, pa, sizeof pa) == ET_ERR_ARG, "pack_a lda");
    ET_CHECK(et_f32_gemm_pack_a(0, 0, 2, a, 2, pa, sizeof pa) == ET_ERR_ARG, "pack_a M = 0");
    ET_CHECK(et_f32_gemm_pa(0, 0, 2, 2, 2, 1.0f, a, 1, NULL, a, 2, 0.0f, pa, 2, NULL, 0, 1) ==
                 ET_ERR_ARG, "gemm_pa lda");
}

/* ---- et_f32_gemm_nchw: the packed path's bits over a batch of NCHW images ---------------- */
/* Test epilogue: c = c * 0.5 + row (elementwise, row-dependent). */
static void nchw_test_epi(void *ctx, int64_t row0, int64_t rows, float *c, int64_t ldc,
                          int64_t ncols) {
    (void)ctx;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < ncols; j++) c[r * ldc + j] = c[r * ldc + j] * 0.5f + (float)(row0 + r);
}

/* ---- row epilogues (et_f32_gemm_rowepi) ------------------------------------------------ */
/* The epilogue's definition written out again: the oracle of et_f32_gemm_rowepi_apply and of
 * every ukernel_epi. */
static float rowepi_ref(const et_f32_gemm_rowepi *e, int64_t o, float v) {
    const float bias = e->bias ? e->bias[o] : 0.0f;
    if (bias != 0.0f || e->bias_always) v = v + bias;
    if (e->scale) {
        v = v * e->scale[o];
        v = v + e->shift[o];
    }
    if (e->clamp == ET_GEMM_CLAMP_RELU && v < 0.0f) v = 0.0f;
    if (e->clamp == ET_GEMM_CLAMP_RELU6) v = v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v;
    if (e->clamp == ET_GEMM_CLAMP_RELU6_LE) v = v <= 0.0f ? 0.0f : v >= 6.0f ? 6.0f : v;
    return v;
}

/* Epilogue kind t (0 .. 31) for M rows, its arrays in buf (3 * M floats): t & 3 the clamp, t & 4
 * a BatchNorm affine, t & 8 a bias, t & 16 bias_always (with no bias: adds a zero). The values
 * reach the clamps' edges: zero biases; scales of both signs, one NaN; shifts -0, 0, 6, 7.
 * Row o = 1 (mod 12) of a zero row of A (acc +0): no bias, scale -1.5, shift -0, so -0 (relu
 * and relu6 keep it, relu6_le makes it +0); row 5: scale NaN. */
static et_f32_gemm_rowepi rowepi_kind(int t, int64_t M, float *buf) {
    static const float shifts[] = {0.25f, -0.0f, 7.0f, 6.0f, 0.0f, -3.0f};
    float *bias = buf, *scale = buf + M, *shift = buf + 2 * M;
    for (int64_t o = 0; o < M; o++) {
        bias[o] = o % 3 == 1 ? 0.0f : (float)(o % 7) - 2.5f;
        scale[o] = o % 4 == 1 ? -1.5f : o % 4 == 2 ? 8.0f : 0.75f;
        shift[o] = shifts[o % 6];
    }
    if (M > 5) scale[5] = g_nan;
    et_f32_gemm_rowepi e = {(t & 8) ? bias : NULL, (t & 4) ? scale : NULL,
                            (t & 4) ? shift : NULL, (t & 16) != 0, t & 3};
    return e;
}
static float g_rowepi_buf[3 * 4096];

/* A config's ukernel_epi against its ukernel then rowepi_ref, for every row and column count
 * of the tile, beta 0 and 1 (C read: NaN, +-0, 6 and values near the edges in it), every
 * epilogue kind: bitwise equal, nothing outside the tile written. */
static void test_ukernel_epi(const variant *v) {
    const et_f32_gemm_config *cfg = v->cfg;
    if (!cfg->ukernel_epi) return;
    const int64_t MR = cfg->mr, NR = cfg->nr, kc = 37, ldc = NR + 3;
    static float a[64 * 37], b[37 * 64], c0[16 * 67], c1[16 * 67], c2[16 * 67];
    static const float specials[] = {-0.0f, 0.0f, 6.0f, -1e-30f, 6.000001f, 5.999999f};
    et_fill_random(a, kc * MR, 5, -1.0f, 1.0f);
    for (int64_t k = 0; k < kc; k++) /* odd rows zero: acc +0 (rowepi_kind's -0 rows) */
        for (int64_t r = 1; r < MR; r += 2) a[k * MR + r] = 0.0f;
    et_fill_random(b, kc * NR, 6, -1.0f, 1.0f);
    et_fill_random(c0, MR * ldc, 7, -8.0f, 8.0f);
    for (int64_t i = 0; i < MR * ldc; i += 5) c0[i] = specials[(i / 5) % 6];
    c0[7] = g_nan;
    int bad = 0;
    for (int t = 0; t < 32; t++) {
        const et_f32_gemm_rowepi e = rowepi_kind(t, 40, g_rowepi_buf);
        for (int64_t mr = 1; mr <= MR; mr++)
            for (int64_t nr = 1; nr <= NR; nr += nr < 3 || nr > NR - 3 ? 1 : 7)
                for (int beta = 0; beta <= 1; beta++) {
                    const int64_t row0 = (t * 3 + mr) % 20;
                    memcpy(c1, c0, sizeof(float) * (size_t)(MR * ldc));
                    memcpy(c2, c0, sizeof(float) * (size_t)(MR * ldc));
                    cfg->ukernel(kc, a, b, NR, c1, ldc, mr, nr, 1.0f, (float)beta);
                    for (int64_t r = 0; r < mr; r++)
                        for (int64_t j = 0; j < nr; j++)
                            c1[r * ldc + j] = rowepi_ref(&e, row0 + r, c1[r * ldc + j]);
                    cfg->ukernel_epi(kc, a, b, NR, c2, ldc, mr, nr, (float)beta, &e, row0);
                    bad += memcmp(c1, c2, sizeof(float) * (size_t)(MR * ldc)) != 0;
                }
    }
    ET_CHECK(bad == 0, "%s: ukernel_epi differs from ukernel + epilogue in %d tiles", cfg->name,
             bad);
}

/* 1 if image i's rows in y (stride ys) are C's columns [i * np, (i + 1) * np) bit for bit and
 * the padding after them is still NaN. */
static int nchw_same(const float *y, int64_t ys, const float *C, int64_t M, int64_t n,
                     int64_t np) {
    const int64_t N = n * np;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t r = 0; r < M; r++)
            if (memcmp(y + i * ys + r * np, C + r * N + i * np, sizeof(float) * (size_t)np)) return 0;
        for (int64_t t = M * np; t < ys; t++)
            if (y[i * ys + t] == y[i * ys + t]) return 0; /* not NaN */
    }
    return 1;
}

/* y_i = op(A) x_i for n images of np pixels (image strides with padding), against
 * et_f32_gemm_packed on the gathered [K, n*np] matrix: bitwise equal, padding untouched.
 * epi: 0 none, 1 nchw_test_epi, 2 + t the row epilogue rowepi_kind(t) (every fourth row of A
 * zero, from row 1), which a config with a ukernel_epi applies in registers. */
static int nchw_case(const variant *v, int ta, int64_t M, int64_t K, int64_t n, int64_t np,
                     int epi, int nth) {
    const int64_t N = n * np, lda = ta ? M : K, xs = K * np + 5, ys = M * np + 3;
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *x = malloc(sizeof(float) * (size_t)(n * xs));
    float *y = malloc(sizeof(float) * (size_t)(n * ys)), *X = malloc(sizeof(float) * (size_t)(K * N));
    float *C = malloc(sizeof(float) * (size_t)(M * N));
    et_fill_random(A, M * K, (uint64_t)(M * 3 + K), -1.0f, 1.0f);
    et_fill_random(x, n * xs, (uint64_t)(np * 11 + n), -1.0f, 1.0f);
    for (int64_t i = 0; i < n * ys; i++) y[i] = g_nan;
    et_f32_gemm_rowepi re = {NULL, NULL, NULL, 0, 0};
    et_f32_gemm_epilogue *epi_fn = epi == 1 ? nchw_test_epi : NULL;
    if (epi >= 2) {
        re = rowepi_kind(epi - 2, M, g_rowepi_buf);
        epi_fn = et_f32_gemm_rowepi_apply;
        for (int64_t r = 1; r < M; r += 4)
            for (int64_t k = 0; k < K; k++) A[ta ? k * M + r : r * K + k] = 0.0f;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++)
            memcpy(X + k * N + i * np, x + i * xs + k * np, sizeof(float) * (size_t)np);
    const size_t gwb = et_f32_gemm_packed_ws_bytes(v->cfg, M, N, K, nth);
    const size_t wsb = et_f32_gemm_nchw_ws_bytes(M, K, n, np, nth);
    const size_t pab = et_f32_gemm_pack_a_bytes(M, K);
    void *gws = malloc(gwb + 64), *ws = malloc(wsb + 1), *pa = malloc(pab);
    int ok = et_f32_gemm_packed(v->cfg, ta, 0, M, N, K, 1.0f, A, lda, X, N, 0.0f, C, N, gws, gwb,
                                nth) == ET_OK;
    if (epi == 1) nchw_test_epi(NULL, 0, M, C, N, N);
    for (int64_t r = 0; r < M && epi >= 2; r++)
        for (int64_t j = 0; j < N; j++) C[r * N + j] = rowepi_ref(&re, r, C[r * N + j]);
    ok = ok && et_f32_gemm_pack_a(ta, M, K, A, lda, pa, pab) == ET_OK;
    ok = ok && et_f32_gemm_nchw(ta, M, K, n, np, pa, x, xs, y, ys, epi_fn, &re, (char *)ws + 1,
                                wsb, nth) == ET_OK;
    ok = ok && nchw_same(y, ys, C, M, n, np);
    ET_CHECK(ok, "gemm_nchw %s: ta=%d M=%lld K=%lld n=%lld np=%lld epi=%d nth=%d", v->cfg->name, ta,
             (long long)M, (long long)K, (long long)n, (long long)np, epi, nth);
    /* A packed by the row tasks (when all of B is one block): the same bytes */
    const size_t awb = et_f32_gemm_nchw_a_ws_bytes(M, K, n, np, nth);
    if (awb) {
        void *aws = malloc(awb + 1);
        for (int64_t i = 0; i < n * ys; i++) y[i] = g_nan;
        int ok_a = et_f32_gemm_nchw_a(ta, M, K, n, np, A, lda, x, xs, y, ys, epi_fn, &re,
                                      (char *)aws + 1, awb, nth) == ET_OK &&
                   nchw_same(y, ys, C, M, n, np);
        ET_CHECK(ok_a, "gemm_nchw_a %s: ta=%d M=%lld K=%lld n=%lld np=%lld epi=%d nth=%d",
                 v->cfg->name, ta, (long long)M, (long long)K, (long long)n, (long long)np, epi,
                 nth);
        ET_CHECK(et_f32_gemm_nchw_a(ta, M, K, n, np, A, lda, x, xs, y, ys, NULL, NULL, aws,
                                    awb - 65, nth) == ET_ERR_WORKSPACE,
                 "gemm_nchw_a small workspace");
        ok = ok && ok_a;
        free(aws);
    }
    free(A), free(x), free(y), free(X), free(C), free(gws), free(ws), free(pa);
    return ok;
}

static void test_nchw(void) {
    /* {M, K, n, np}: tile edges in M, one and two K blocks, planes below / at / above NR,
     * panels across images, np == 1, in-place B (M <= 128) and packed B */
    static const int64_t shapes[][4] = {
        {14, 16, 2, 32},  {15, 7, 3, 33},  {5, 96, 4, 1},    {29, 24, 5, 4},  {130, 9, 2, 16},
        {24, 144, 3, 49}, {1, 5, 2, 300},  {40, 769, 2, 7},  {9, 3, 1, 64},   {160, 40, 3, 1},
        /* wide layers (MobileNetV2's last blocks at 32x32): A packed per row task, several
         * tasks, a partial last one, several K blocks */
        {320, 1280, 32, 1}, {1280, 320, 32, 1}, {160, 960, 32, 4}, {45, 3000, 3, 2},
        {960, 160, 32, 1},
        /* whole images in a panel (np divides NR: packed and scattered per image), a partial
         * last panel */
        {50, 40, 9, 8}, {29, 33, 20, 2}, {43, 70, 11, 4},
    };
    for (const variant *v = et_f32_gemm_variants; v->head.name; v++) {
        if (et_set_isa(v->head.isa) != ET_OK) continue;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int t = 0; t < 4; t++)
                nchw_case(v, t & 1, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], t >> 1,
                          1 + (int)((i + (size_t)t) % 3));
        /* every row epilogue kind, on shapes with M edges, two K blocks, panels across images */
        for (int t = 0; t < 32; t++) {
            const int64_t *sh = shapes[(size_t)t % (sizeof shapes / sizeof shapes[0])];
            nchw_case(v, t & 1, sh[0], sh[1], sh[2], sh[3], 2 + (t >> 1 | (t & 1) << 4),
                      1 + t % 3);
        }
    }
    /* the row-task packing holds a few hundred KiB, not all of A; none when B is not one block */
    ET_CHECK(et_f32_gemm_nchw_a_ws_bytes(320, 1280, 32, 1, 2) * 2 < et_f32_gemm_pack_a_bytes(320, 1280),
             "gemm_nchw_a workspace");
    ET_CHECK(et_f32_gemm_nchw_a_ws_bytes(64, 1280, 32, 16, 1) == 0, "gemm_nchw_a with a large B");
    /* bad arguments */
    float a[4] = {1, 2, 3, 4}, y[4], ws[64];
    /* a buffer that is not a packed A (as large as a packed header, which is read first) */
    static float unpacked[64] = {1, 2, 3, 4};
    if (et_set_isa(et_f32_gemm_variants[0].head.isa) == ET_OK)
        ET_CHECK(et_f32_gemm_nchw(0, 2, 2, 1, 2, unpacked, a, 4, y, 4, NULL, NULL, ws, sizeof ws, 1) ==
                     ET_ERR_ARG, "gemm_nchw with an unpacked A");
}

/* et_f32_gemm_nchw_wgrad against et_f32_gemm_packed(0, 1) on the gathered matrices. */
static int wgrad_case(const variant *v, int64_t M, int64_t N, int64_t n, int64_t np, int nth) {
    const int64_t K = n * np, ys = M * np + 2, xs = N * np + 3, ldc = N + 1;
    float *dy = malloc(sizeof(float) * (size_t)(n * ys)), *x = malloc(sizeof(float) * (size_t)(n * xs));
    float *DY = malloc(sizeof(float) * (size_t)(M * K)), *X = malloc(sizeof(float) * (size_t)(N * K));
    float *C1 = malloc(sizeof(float) * (size_t)(M * ldc)), *C2 = malloc(sizeof(float) * (size_t)(M * ldc));
    et_fill_random(dy, n * ys, (uint64_t)(M + np), -1.0f, 1.0f);
    et_fill_random(x, n * xs, (uint64_t)(N * 3 + n), -1.0f, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t r = 0; r < M; r++)
            memcpy(DY + r * K + i * np, dy + i * ys + r * np, sizeof(float) * (size_t)np);
        for (int64_t r = 0; r < N; r++)
            memcpy(X + r * K + i * np, x + i * xs + r * np, sizeof(float) * (size_t)np);
    }
    for (int64_t i = 0; i < M * ldc; i++) C1[i] = C2[i] = g_nan;
    const size_t gwb = et_f32_gemm_packed_ws_bytes(v->cfg, M, N, K, nth);
    const size_t wsb = et_f32_gemm_nchw_wgrad_ws_bytes(M, N, n, np, nth);
    void *gws = malloc(gwb + 64), *ws = malloc(wsb + 1);
    int ok = et_f32_gemm_packed(v->cfg, 0, 1, M, N, K, 1.0f, DY, K, X, K, 0.0f, C1, ldc, gws, gwb,
                                nth) == ET_OK;
    ok = ok && et_f32_gemm_nchw_wgrad(M, N, n, np, dy, ys, x, xs, C2, ldc, (char *)ws + 1, wsb,
                                      nth) == ET_OK;
    for (int64_t i = 0; ok && i < M * ldc; i++)
        ok = i % ldc == N ? C2[i] != C2[i] : memcmp(C1 + i, C2 + i, sizeof(float)) == 0;
    ET_CHECK(ok, "gemm_nchw_wgrad %s: M=%lld N=%lld n=%lld np=%lld nth=%d", v->cfg->name,
             (long long)M, (long long)N, (long long)n, (long long)np, nth);
    ET_CHECK(et_f32_gemm_nchw_wgrad(M, N, n, np, dy, ys, x, xs, C2, ldc, ws, wsb - 65, nth) ==
                 ET_ERR_WORKSPACE,
             "gemm_nchw_wgrad small workspace: nth=%d", nth);
    /* a workspace planned for nth threads serves one thread */
    ET_CHECK(et_f32_gemm_nchw_wgrad(M, N, n, np, dy, ys, x, xs, C2, ldc, ws, wsb, 1) == ET_OK,
             "gemm_nchw_wgrad on fewer threads than planned: nth=%d", nth);
    free(dy), free(x), free(DY), free(X), free(C1), free(C2), free(gws), free(ws);
    return ok;
}

static void test_nchw_wgrad(void) {
    /* {M, N, n, np}: np 1 (the copy pack), pieces of images inside K blocks, two K blocks;
     * MobileNetV2's at 32x32 (one column or one row of tiles, three K blocks; many tiles of
     * one K block; five K blocks): on 2 and 3 threads the tasks of wgrad_split_task (runs of
     * panels of the larger operand per K block, each thread packing the other one), each K
     * block's product apart and added in K order */
    static const int64_t shapes[][4] = {
        {24, 96, 32, 1},  {144, 24, 3, 4},  {15, 33, 5, 49},  {40, 70, 3, 300},
        {29, 17, 7, 16},  {200, 40, 9, 1},  {144, 24, 32, 64}, {24, 144, 32, 64},
        {960, 160, 32, 1}, {192, 64, 32, 4}, {16, 48, 8, 400},
        /* one K block: MobileNetV2's at 32x32 on 4x4, 2x2 and 1x1 planes; split by columns
         * and by rows, partial panels on both sides */
        {32, 144, 32, 16}, {32, 192, 32, 16}, {192, 32, 32, 16}, {96, 384, 32, 4},
        {576, 160, 32, 1}, {160, 960, 32, 1}, {45, 70, 5, 20}, {100, 20, 4, 30}};
    for (const variant *v = et_f32_gemm_variants; v->head.name; v++) {
        if (et_set_isa(v->head.isa) != ET_OK) continue;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int nth = 1; nth <= 3; nth++)
                wgrad_case(v, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], nth);
        float a[8] = {0}, c[8];
        ET_CHECK(et_f32_gemm_nchw_wgrad(2, 2, 1, 2, a, 4, a, 4, c, 2, c, sizeof c, 1) == ET_ERR_ARG,
                 "gemm_nchw_wgrad small problem");
    }
}

/* The C^T path of a transposed A with at most MR columns (plan.cta, gemm.c) against the same
 * product with A stored untransposed (which never takes it): byte for byte, every config, both
 * B layouts, 1-3 threads, alpha / beta, tile-unaligned M (partial last NR panel), N up to MR,
 * one or two K blocks, padded rows and a 4 KiB row stride of A (its panels then packed).
 * Also run against the reference at the same shapes (run_case). */
static void test_cta_bits(const variant *v) {
    const et_f32_gemm_config *g = v->cfg;
    const int64_t ms[] = {g->nr, g->nr + 1, 3 * g->nr + 5, 1024};
    const int64_t ns[] = {1, g->mr - 1, g->mr};
    const int64_t ks[] = {1, 17, ET_GEMM_KC + 3};
    unsigned seed = 0;
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++, seed++) {
                const int64_t M = ms[mi], N = ns[ni], K = ks[ki];
                if (M == 1024 && K > 17) continue; /* the stride case needs no long K */
                const int tb = (int)(seed & 1), nth = 1 + (int)(seed % 3);
                const float alpha = g_alpha[seed % N_AB], beta = g_beta[seed % N_AB];
                const int64_t pad = M == 1024 ? 0 : (int64_t)(seed % 2) * 3;
                const int64_t lda = M + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
                et_f32_gemm_plan plan;
                et_f32_gemm_plan_of(g, 1, tb, M, N, K, ldb, 0, nth, &plan);
                /* K = 1: C^T's tile buffer does not fit the workspace slice; the packed path */
                ET_CHECK(plan.cta == (K > 1), "%s cta %lldx%lldx%lld: plan.cta %d", g->name,
                         (long long)M, (long long)N, (long long)K, plan.cta);
                float *A = malloc(sizeof(float) * (size_t)(K * lda)); /* stored [K, M] */
                float *At = malloc(sizeof(float) * (size_t)(M * K));   /* the same, [M, K] */
                float *B = malloc(sizeof(float) * (size_t)((tb ? N : K) * ldb));
                float *C1 = malloc(sizeof(float) * (size_t)(M * ldc));
                float *C2 = malloc(sizeof(float) * (size_t)(M * ldc));
                et_fill_random(A, K * lda, 11 + seed, -1.0f, 1.0f);
                et_fill_random(B, (tb ? N : K) * ldb, 13 + seed, -1.0f, 1.0f);
                et_fill_random(C1, M * ldc, 17 + seed, -1.0f, 1.0f);
                memcpy(C2, C1, sizeof(float) * (size_t)(M * ldc));
                for (int64_t k = 0; k < K; k++)
                    for (int64_t i = 0; i < M; i++) At[i * K + k] = A[k * lda + i];
                const size_t wsb = et_f32_gemm_packed_ws_bytes(g, M, N, K, nth);
                void *ws = malloc(wsb);
                const et_status s1 = et_f32_gemm_packed(g, 1, tb, M, N, K, alpha, A, lda, B, ldb,
                                                        beta, C1, ldc, ws, wsb, nth);
                const et_status s2 = et_f32_gemm_packed(g, 0, tb, M, N, K, alpha, At, K, B, ldb,
                                                        beta, C2, ldc, ws, wsb, nth);
                ET_CHECK(s1 == ET_OK && s2 == ET_OK &&
                             memcmp(C1, C2, sizeof(float) * (size_t)(M * ldc)) == 0,
                         "%s cta %lldx%lldx%lld tb %d alpha %g beta %g pad %lld, %d threads: "
                         "bits differ from A untransposed (st %d %d)",
                         g->name, (long long)M, (long long)N, (long long)K, tb, (double)alpha,
                         (double)beta, (long long)pad, nth, (int)s1, (int)s2);
                gemm_case c = {1, tb, M, N, K, alpha, beta, pad, nth};
                run_case(v, MODE_PACKED, c, NULL);
                free(A), free(At), free(B), free(C1), free(C2), free(ws);
            }
}

/* The thread split of LeNet's fc1 products (b64) for every config compiled in: at 2 threads
 * fine tasks (a late worker or a preempted thread then leaves the other at most a task of ~1 M
 * multiply-adds to finish, where 2 tasks per thread left it a quarter of the product); op(A)
 * packed once when the tasks share rows of it; at 1 thread a single task. The bits of every
 * split are pinned by test_golden_bits. */
static void test_thread_plan(void) {
    static const struct { int ta, tb; int64_t M, N, K; } fc1[] = {
        {0, 1, 64, 500, 800}, /* forward x W^T */
        {0, 0, 64, 800, 500}, /* dX = dY W */
        {1, 0, 500, 800, 64}, /* dW = dY^T X */
    };
    for (const variant *v = et_f32_gemm_variants; v->head.name; v++) {
        const et_f32_gemm_config *cfg = v->cfg;
        for (size_t s = 0; s < sizeof fc1 / sizeof fc1[0]; s++) {
            const int64_t M = fc1[s].M, N = fc1[s].N, K = fc1[s].K;
            const int64_t ldb = fc1[s].tb ? K : N;
            et_f32_gemm_plan p1, p2;
            et_f32_gemm_plan_of(cfg, fc1[s].ta, fc1[s].tb, M, N, K, ldb, 0, 1, &p1);
            et_f32_gemm_plan_of(cfg, fc1[s].ta, fc1[s].tb, M, N, K, ldb, 0, 2, &p2);
            ET_CHECK(p1.nthreads == 1 && p1.tm == 1 && p1.tn == 1 && !p1.shared_a,
                     "%s fc1 %lldx%lldx%lld, 1 thread: %d threads, grid %dx%d, shared A %d",
                     cfg->name, (long long)M, (long long)N, (long long)K, p1.nthreads, p1.tm,
                     p1.tn, p1.shared_a);
            const int64_t tasks = (int64_t)p2.tm * p2.tn;
            /* the C^T path: tasks of 2 MR tiles (each thread packs A^T once for its tasks) */
            const int64_t want = p2.ct ? (N + 2 * cfg->mr - 1) / (2 * cfg->mr) : 24;
            ET_CHECK(p2.nthreads == 2 && (p2.ct ? tasks == want : tasks >= want && p2.shared_a),
                     "%s fc1 %lldx%lldx%lld, 2 threads: %d threads, ct %d, grid %dx%d (want %s%lld "
                     "tasks), shared A %d",
                     cfg->name, (long long)M, (long long)N, (long long)K, p2.nthreads, p2.ct,
                     p2.tm, p2.tn, p2.ct ? "" : ">= ", (long long)want, p2.shared_a);
        }
        /* AVX-512 (the in-place A kernel) runs the forward on the C^T path */
        et_f32_gemm_plan p;
        et_f32_gemm_plan_of(cfg, 0, 1, 64, 500, 800, 800, 0, 2, &p);
        ET_CHECK(p.ct == (cfg->ukernel_sa != NULL), "%s fc1 forward: ct %d", cfg->name, p.ct);
        /* and a classifier's (10 columns: at most MR), whose bits test_golden_bits pins */
        et_f32_gemm_plan_of(cfg, 0, 1, 32, 10, 1280, 1280, 0, 1, &p);
        ET_CHECK(p.ct == (cfg->ukernel_sa != NULL), "%s classifier forward: ct %d", cfg->name,
                 p.ct);
        /* LeNet's fc2 weight gradient (dY^T H, 10 columns) on the C^T path where MR >= 10 */
        et_f32_gemm_plan_of(cfg, 1, 0, 500, 10, 64, 10, 0, 1, &p);
        ET_CHECK(p.cta == (cfg->mr >= 10), "%s fc2 dW: cta %d", cfg->name, p.cta);
    }
}

void test_gemm(void) {
    const uint32_t nan_bits = 0x7fc00000u;
    memcpy(&g_nan, &nan_bits, sizeof g_nan);
    const et_isa saved = et_get_isa();
    test_edge_args();
    et_check_variant_table("gemm", et_f32_gemm_variants, sizeof et_f32_gemm_variants[0]);
    for (const variant *v = et_f32_gemm_variants; v->head.name; v++) {
        if (!et_isa_supported(v->head.isa)) {
            printf("  gemm: %s not supported here, skipped\n", v->cfg->name);
            continue;
        }
        test_variant_edges(v);
        test_ukernel_epi(v);
        test_cta_bits(v);
        test_variant_shapes(v, MODE_RUN);
        test_repeatable(v);
    }
    /* the public entry point on every ISA */
    for (const variant *v = et_f32_gemm_variants; v->head.name; v++)
        if (et_set_isa(v->head.isa) == ET_OK) test_variant_shapes(v, MODE_PUBLIC);
    test_pack_a();
    test_nchw();
    test_nchw_wgrad();
    test_thread_plan();
    /* the same bits on every ISA (ref's scalar config too) and architecture, any thread count */
    for (const variant *v = et_f32_gemm_variants; v->head.name; v++) {
        if (et_set_isa(v->head.isa) != ET_OK) continue;
        ET_CHECK(v->cfg->kc == ET_GEMM_KC, "%s: kc %lld is not the shared ET_GEMM_KC",
                 v->cfg->name, (long long)v->cfg->kc);
        test_golden_bits(v->cfg->name, 1);
        test_golden_bits(v->cfg->name, 2);
        test_golden_bits(v->cfg->name, 3); /* 6 tasks; A packed once, shared by them */
    }
    et_set_isa(saved);
}
