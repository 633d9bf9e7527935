/* edgetrain — tests of the thread pool (src/threadpool.c): every chunk runs exactly once for
 * awkward chunk counts and thread counts, tids stay below the thread count, two pthreads may
 * call at once and a body may call et_parallel_for (nested: it runs inline), and an idle pool
 * sleeps (CPU time of the process over 200 ms of idling < 1 % of a core). The kernels converted
 * from OpenMP give the same bytes at 1, 2, 3 and 5 threads (test_converted_bits), and the
 * spin before a thread sleeps is cut short while other threads need the cores (test_contention). */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edgetrain/et_kernels.h"
#include "et_test.h"

#define MAX_CHUNKS 1000

typedef struct count_job {
    int counts[MAX_CHUNKS];
    int nthreads;
    int bad_tid;
    int nested; /* each chunk runs a nested et_parallel_for of 3 chunks */
    int inner[MAX_CHUNKS];
} count_job;

static void inner_body(void *ctx, int64_t chunk, int tid) {
    (void)tid;
    __atomic_add_fetch((int *)ctx, (int)chunk + 1, __ATOMIC_RELAXED); /* 1 + 2 + 3 = 6 */
}

static void count_body(void *ctx, int64_t chunk, int tid) {
    count_job *j = (count_job *)ctx;
    __atomic_add_fetch(&j->counts[chunk], 1, __ATOMIC_RELAXED);
    if (tid < 0 || tid >= (j->nthreads < 1 ? 1 : j->nthreads))
        __atomic_store_n(&j->bad_tid, 1, __ATOMIC_RELAXED);
    if (j->nested) et_parallel_for(3, j->nthreads, inner_body, &j->inner[chunk]);
}

/* Runs n chunks on nth threads; returns 1 if every chunk ran exactly once. */
static int run_counts(int64_t n, int nth, int nested) {
    static count_job j; /* one caller at a time uses this one */
    memset(&j, 0, sizeof j);
    j.nthreads = nth;
    j.nested = nested;
    et_parallel_for(n, nth, count_body, &j);
    int ok = !j.bad_tid;
    for (int64_t c = 0; c < MAX_CHUNKS; c++) {
        ok &= j.counts[c] == (c < n ? 1 : 0);
        if (nested) ok &= j.inner[c] == (c < n ? 6 : 0);
    }
    return ok;
}

/* ---- two pthreads at once ------------------------------------------------------------- */
typedef struct caller_arg {
    int rounds, nth, ok;
    count_job job;
} caller_arg;

static void *caller_main(void *vp) {
    caller_arg *a = (caller_arg *)vp;
    a->ok = 1;
    for (int r = 0; r < a->rounds; r++) {
        memset(&a->job, 0, sizeof a->job);
        a->job.nthreads = a->nth;
        const int64_t n = 1 + (r * 37) % MAX_CHUNKS;
        et_parallel_for(n, a->nth, count_body, &a->job);
        a->ok &= !a->job.bad_tid;
        for (int64_t c = 0; c < MAX_CHUNKS; c++) a->ok &= a->job.counts[c] == (c < n ? 1 : 0);
    }
    return NULL;
}

/* ---- ranges ------------------------------------------------------------------------------ */
static void range_body(void *ctx, int64_t b, int64_t e, int tid) {
    (void)tid;
    int *seen = (int *)ctx;
    for (int64_t i = b; i < e; i++) __atomic_add_fetch(&seen[i], 1, __ATOMIC_RELAXED);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void spin_body(void *ctx, int64_t chunk, int tid) {
    (void)tid;
    volatile double *x = (volatile double *)ctx + chunk;
    for (int i = 0; i < 20000; i++) *x += 1.0; /* only burns time */
}

/* ---- kernels converted from OpenMP: the same bytes for every thread count ------------------ */
static void fill(float *x, int64_t n, unsigned seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) & 0xffff) / 8192.0f - 4.0f;
    }
}

#define NTH_CASES 4
static const int nth_cases[NTH_CASES] = {1, 2, 3, 5};

/* Runs CALL (which writes OUT, n floats, from fresh inputs) at every thread count `nth` and
 * compares the bytes with the nth = 1 run. */
#define SAME_BITS(name, out, nbytes, SETUP, CALL)                                               \
    do {                                                                                        \
        unsigned char *ref_ = malloc(nbytes);                                                   \
        for (int c_ = 0; c_ < NTH_CASES; c_++) {                                                \
            const int nth = nth_cases[c_];                                                      \
            SETUP;                                                                              \
            et_status st_ = (CALL);                                                             \
            ET_CHECK(st_ == ET_OK, "%s: status %d at %d threads", name, (int)st_, nth);         \
            if (c_ == 0) memcpy(ref_, out, nbytes);                                             \
            else ET_CHECK(memcmp(ref_, out, nbytes) == 0, "%s: bits differ at %d threads", name, nth); \
        }                                                                                       \
        free(ref_);                                                                             \
    } while (0)

static void test_converted_bits(void) {
    enum { N = 100003 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float)), *c = malloc(N * sizeof(float));
    float *d = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *z = malloc(N * sizeof(float));
    int32_t *idx = malloc(N * sizeof(int32_t));
    fill(a, N, 1);
    fill(b, N, 2);
    for (int64_t i = 0; i < N; i++) d[i] = b[i] * b[i];

    SAME_BITS("max_axis", idx, 5005 * sizeof(int32_t), (void)0,
              et_f32_max_axis(5, 3, 1001, 0, a, y, idx, nth));
    SAME_BITS("normalize_rows_fwd", y, 1003 * 37 * sizeof(float), (void)0,
              et_f32_normalize_rows_fwd(1003, 37, 1e-5f, a, y, z, nth));
    SAME_BITS("normalize_rows_bwd", z, 1003 * 37 * sizeof(float), (void)0,
              et_f32_normalize_rows_bwd(1003, 37, a, d, b, z, nth));
    double ss[NTH_CASES];
    for (int k = 0; k < NTH_CASES; k++) ss[k] = et_f32_sum_squares(N, a, nth_cases[k]);
    for (int k = 1; k < NTH_CASES; k++)
        ET_CHECK(memcmp(&ss[0], &ss[k], sizeof(double)) == 0, "sum_squares: bits differ at %d threads", nth_cases[k]);
    SAME_BITS("adagrad", y, 70001 * sizeof(float),
              (memcpy(y, a, 70001 * sizeof(float)), memcpy(z, d, 70001 * sizeof(float))),
              et_f32_adagrad_update(70001, y, b, z, NULL, 0.01f, 0.0f, 1e-10f, 0.0f, 0.0f, 1, nth));
    SAME_BITS("adaptive_avgpool2d_fwd", y, 13 * 4 * 5 * sizeof(float), (void)0,
              et_f32_adaptive_avgpool2d_fwd(13, 11, 9, 4, 5, a, y, nth));
    et_interp2d_params ip = {11, 5, 7, 13, 17, ET_INTERP_BILINEAR, 0, 0.0f, 0.0f};
    SAME_BITS("interp2d_bwd", y, 11 * 5 * 7 * sizeof(float), (void)0, et_f32_interp2d_bwd(&ip, a, y, nth));
    const int64_t ts[3] = {7, 9, 11};
    const int perm[3] = {2, 0, 1};
    SAME_BITS("transpose", y, 7 * 9 * 11 * sizeof(float), (void)0, et_f32_transpose(3, ts, perm, a, y, nth));
    const int64_t ps[2] = {9, 13}, pb[2] = {2, 3}, pa[2] = {1, 4};
    SAME_BITS("pad_bwd", y, 9 * 13 * sizeof(float), (void)0,
              et_f32_pad_bwd(2, ps, pb, pa, ET_PAD_REFLECT, a, y, nth));
    const int64_t yb[1] = {7};
    static unsigned char ws[1 << 20];
    SAME_BITS("bmm", y, 7 * 5 * 6 * sizeof(float), (void)0,
              et_f32_bmm(0, 1, 1, yb, yb, yb, 5, 6, 9, a, b, y, ws, et_f32_bmm_ws_bytes(7, 5, 6, 9, nth), nth));
    free(a), free(b), free(c), free(d), free(y), free(z), free(idx);
}

/* ---- a late worker (preempted while it holds a chunk) ------------------------------ */
static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct late_job {
    int64_t sleep_ns, spin_ns;
    int by_worker; /* chunks run by a tid other than 0 */
} late_job;

/* A worker's chunk sleeps (as if the OS had preempted it), the caller's chunks spin. */
static void late_body(void *ctx, int64_t chunk, int tid) {
    late_job *j = (late_job *)ctx;
    (void)chunk;
    if (tid != 0) {
        __atomic_add_fetch(&j->by_worker, 1, __ATOMIC_RELAXED);
        struct timespec ts = {0, (long)j->sleep_ns};
        if (j->sleep_ns) nanosleep(&ts, NULL);
        return;
    }
    const int64_t end = mono_ns() + j->spin_ns;
    while (mono_ns() < end) {
    }
}

/* After a job whose worker came back late, the next calls run inline on the caller; once the
 * backoff is over the workers take chunks again. Results never depend on it (same chunks). */
static void test_late_worker(void) {
    et_pool_ignore_contention_(1); /* a loaded machine (or the two callers above) would run inline */
    late_job j = {0};
    int tries = 0;
    do { /* until a worker took a chunk (it must wake up while the caller spins) */
        j.sleep_ns = 20 * 1000 * 1000, j.spin_ns = 300 * 1000, j.by_worker = 0;
        et_parallel_for(4, 2, late_body, &j);
    } while (j.by_worker == 0 && ++tries < 20);
    ET_CHECK(j.by_worker > 0, "late worker: no worker took a chunk in 20 tries");
    j.sleep_ns = 0, j.spin_ns = 100 * 1000, j.by_worker = 0;
    et_parallel_for(64, 2, late_body, &j); /* 6.4 ms: time enough for a worker to wake */
    ET_CHECK(j.by_worker == 0, "after a late worker the next call still used workers (%d chunks)",
             j.by_worker);
    int back = 0;
    for (int k = 0; k < 60 && !back; k++) { /* the backoff is at most 1 s */
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        j.by_worker = 0;
        et_parallel_for(64, 2, late_body, &j);
        back = j.by_worker > 0;
    }
    ET_CHECK(back, "the workers were not used again within 3 s of a late job");
    et_pool_ignore_contention_(0);
}

/* ---- spinning adapts to the machine's load ----------------------------------------------
 * While the cores are free an idle pool thread spins ET_POOL_SPIN_US before it sleeps; while
 * other threads need them (here: one busy thread per core, which the pool cannot tell from
 * another process's) the spin is cut short, and it grows back once they stop. Where the run
 * queue cannot be read (/proc/loadavg) the spin stays short. */
static int busy_stop;
static void *busy_main(void *arg) {
    (void)arg;
    volatile double x = 1;
    while (!__atomic_load_n(&busy_stop, __ATOMIC_RELAXED)) x = x * 1.0000001 + 1e-9;
    return NULL;
}

/* Small jobs 6 ms apart (the pool looks at the run queue at most every 5 ms) until the spin
 * budget is `want` (1) or not (0), for at most `ms`; returns whether it got there. */
static int spin_becomes(int64_t long_ns, int want_long, int ms) {
    static double x[64];
    for (int k = 0; k < ms / 6; k++) {
        et_parallel_for(8, 2, spin_body, x);
        if ((et_pool_spin_ns() == long_ns) == want_long) return 1;
        struct timespec ts = {0, 6 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Records the largest tid that ran a chunk (work per chunk, so that a worker would join in). */
static void tid_body(void *ctx, int64_t chunk, int tid) {
    int *max_tid = (int *)ctx;
    volatile double x = 1.0;
    (void)chunk;
    for (int i = 0; i < 20000; i++) x = x * 1.0000001 + 1e-9;
    int seen = __atomic_load_n(max_tid, __ATOMIC_RELAXED);
    while (tid > seen && !__atomic_compare_exchange_n(max_tid, &seen, tid, 1, __ATOMIC_RELAXED,
                                                      __ATOMIC_RELAXED)) {
    }
}

/* The looks' rule: passing extra threads (an idle guest's kernel work, in bursts of a few
 * looks) never make the cores contended; 6 of the last 8 looks do, for 500 ms after, and
 * meanwhile every call runs inline on the caller. */
static void test_contention_window(void) {
    for (int i = 0; i < 8; i++) et_pool_contention_look_(0, 0);
    const int bursts[] = {1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0};
    int seen = 0, inl = 0;
    for (size_t i = 0; i < sizeof bursts / sizeof bursts[0]; i++) {
        inl |= et_pool_contention_look_(bursts[i], bursts[i]);
        seen |= et_pool_contended();
    }
    ET_CHECK(!seen && !inl,
             "contention: bursts of passing threads (at most 5 of 8 looks) made the cores contended");
    for (int i = 0; i < 5; i++) inl |= et_pool_contention_look_(1, 1);
    ET_CHECK(!et_pool_contended() && !inl, "contention: 5 looks of 8 made the cores contended");
    inl = et_pool_contention_look_(1, 1);
    ET_CHECK(et_pool_contended() && inl,
             "contention: 6 looks of 8 did not make the cores contended");
    for (int round = 0; round < 10; round++) {
        int max_tid = 0;
        et_parallel_for(64, 2, tid_body, &max_tid);
        ET_CHECK(max_tid == 0, "contention: a worker (tid %d) ran a chunk while contended", max_tid);
    }
    for (int i = 0; i < 8; i++) et_pool_contention_look_(0, 0);
    ET_CHECK(et_pool_contended(), "contention: ended before its hold time");
    struct timespec ts = {0, 520 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ET_CHECK(!et_pool_contended(), "contention: still contended 520 ms after the last such look");
    ET_CHECK(!et_pool_contention_look_(0, 0),
             "contention: calls still inline 520 ms after the last such look");

    /* A team larger than the cores does not look at the others: after a contended spell, its
     * looks must not keep calls inline (the others' history is left as it was, 6 hits). */
    for (int i = 0; i < 6; i++) inl = et_pool_contention_look_(0, 1);
    ET_CHECK(inl, "contention: 6 looks of 8 at the others did not make calls inline");
    nanosleep(&ts, NULL);
    inl = 0;
    for (int i = 0; i < 8; i++) inl |= et_pool_contention_look_(0, -1);
    ET_CHECK(!inl, "contention: looks of a team larger than the cores kept calls inline");
    for (int i = 0; i < 8; i++) et_pool_contention_look_(0, 0);
}

static void test_contention(void) {
    const char *e = getenv("EDGETRAIN_SPIN_US");
    const int64_t long_ns = e && *e ? -1 : (int64_t)ET_POOL_SPIN_US * 1000;
    if (long_ns < 0) {
        printf("  threadpool: contention test skipped (EDGETRAIN_SPIN_US is set)\n");
        return;
    }
    int fd = open("/proc/loadavg", O_RDONLY);
    const int readable = fd >= 0;
    if (fd >= 0) close(fd);
    const int cores = et_max_threads(); /* the pool's count of cores */
    if (!readable || cores < 2) { /* 2 threads on 1 core: always contended */
        ET_CHECK(!spin_becomes(long_ns, 1, 100), "%s, yet the spin grew long",
                 readable ? "one core" : "no run queue to read");
        return;
    }
    ET_CHECK(spin_becomes(long_ns, 1, 3000), "idle machine: the spin stayed short for 3 s (%lld ns)",
             (long long)et_pool_spin_ns());
    enum { MAX_BUSY = 64 };
    pthread_t th[MAX_BUSY];
    int n = cores > MAX_BUSY ? MAX_BUSY : cores, started = 0;
    __atomic_store_n(&busy_stop, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < n; i++) started += pthread_create(&th[i], NULL, busy_main, NULL) == 0;
    const int cut = spin_becomes(long_ns, 0, 1000);
    __atomic_store_n(&busy_stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    ET_CHECK(started == n, "could not start the busy threads");
    ET_CHECK(cut, "%d busy threads on %d cores: the spin stayed long for 1 s", n, cores);
    ET_CHECK(spin_becomes(long_ns, 1, 5000), "the busy threads stopped, yet the spin stayed short for 5 s");
}

/* ---- who takes which chunk ----------------------------------------------------------------
 * The caller (tid 0) takes chunks from the front, the workers from the back: the chunks tid 0
 * ran are a prefix of the job (whatever the timing, the backoff or a busy pool), and a job of
 * more chunks than one ticket holds (65535) still runs every chunk once. */
#define OWN_CHUNKS 70007
static int own_spin; /* work per chunk (a few us), so that the workers join in */
static void own_body(void *ctx, int64_t chunk, int tid) {
    int *who = (int *)ctx;
    volatile double x = 1.0;
    for (int i = 0; i < own_spin; i++) x = x * 1.0000001 + 1e-9;
    __atomic_add_fetch(&who[chunk], 1 + (tid == 0 ? 0 : 10), __ATOMIC_RELAXED);
}

static void test_chunk_ends(void) {
    static int who[OWN_CHUNKS];
    static const int64_t sizes[] = {2, 8, 64, OWN_CHUNKS};
    int64_t shared = 0; /* chunks the workers ran */
    for (int s = 0; s < 4; s++)
        for (int nth = 2; nth <= 3; nth++)
            for (int round = 0; round < 20; round++) {
                const int64_t n = sizes[s];
                memset(who, 0, sizeof who);
                own_spin = n > 64 ? 0 : 2000;
                et_parallel_for(n, nth, own_body, who);
                for (int64_t c = 0; c < n; c++) shared += who[c] == 11;
                int once = 1, prefix = 1, in_prefix = 1;
                for (int64_t c = 0; c < n && n <= 65535; c++) {
                    once &= who[c] == 1 || who[c] == 11;
                    if (who[c] != 1) in_prefix = 0;
                    else if (!in_prefix) prefix = 0;
                }
                for (int64_t c = 0; c < n && n > 65535; c++) once &= who[c] == 1 || who[c] == 11;
                ET_CHECK(once, "chunk ends n %lld nth %d: a chunk did not run exactly once",
                         (long long)n, nth);
                ET_CHECK(prefix, "chunk ends n %lld nth %d: the caller's chunks are not a prefix",
                         (long long)n, nth);
            }
    printf("  threadpool: workers ran %lld of the chunk-end test's chunks\n", (long long)shared);
}

void test_threadpool(void) {
    test_contention(); /* first: run alone, it also sees the pool's state before any look */
    test_contention_window();
    static const int64_t ns[] = {0, 1, 7, 1000};
    for (int k = 0; k < 4; k++)
        for (int nth = 1; nth <= 8; nth++)
            ET_CHECK(run_counts(ns[k], nth, 0), "n_chunks %lld threads %d: a chunk did not run exactly once",
                     (long long)ns[k], nth);
    ET_CHECK(run_counts(7, 4, 1), "nested calls: a chunk did not run exactly once");
    ET_CHECK(run_counts(1000, 3, 1), "nested calls (1000 chunks): a chunk did not run exactly once");
    ET_CHECK(et_pool_workers() >= 1 && et_pool_workers() <= 7, "workers created: %d (want 1..7)",
             et_pool_workers());

    /* ranges: every index once, for chunk counts below, equal to and above the total */
    static int seen[1000];
    static const int64_t totals[] = {1, 7, 1000}, chunks[] = {1, 3, 7, 64, 5000};
    for (int t = 0; t < 3; t++)
        for (int c = 0; c < 5; c++) {
            memset(seen, 0, sizeof seen);
            et_parallel_ranges(totals[t], chunks[c], 3, range_body, seen);
            int ok = 1;
            for (int64_t i = 0; i < 1000; i++) ok &= seen[i] == (i < totals[t] ? 1 : 0);
            ET_CHECK(ok, "ranges total %lld chunks %lld: an index did not run exactly once",
                     (long long)totals[t], (long long)chunks[c]);
        }
    ET_CHECK(et_split_chunks(0, 4) == 0 && et_split_chunks(10, 1) == 1 &&
             et_split_chunks(3, 4) == 3 && et_split_chunks(1000, 2) == 2 * ET_POOL_CHUNKS_PER_THREAD,
             "et_split_chunks");
    ET_CHECK(et_chunk_count(0, 8, 4) == 0 && et_chunk_count(17, 8, 0) == 3 &&
             et_chunk_count(1000, 8, 4) == 4, "et_chunk_count");

    /* two pthreads calling at once (one gets the pool, the other runs inline: same chunks) */
    static caller_arg a[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        a[i].rounds = 200;
        a[i].nth = 2 + i;
        ET_CHECK(pthread_create(&th[i], NULL, caller_main, &a[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ET_CHECK(a[0].ok && a[1].ok, "concurrent callers: a chunk did not run exactly once");

    /* an idle pool sleeps: wake every worker, then idle 200 ms */
    static double x[64];
    et_parallel_for(64, 8, spin_body, x);
    struct timespec pause = {0, 20 * 1000 * 1000}; /* let the bounded spin end */
    nanosleep(&pause, NULL);
    const double c0 = cpu_seconds();
    struct timespec idle = {0, 200 * 1000 * 1000};
    nanosleep(&idle, NULL);
    const double used = cpu_seconds() - c0;
    printf("  threadpool: %d workers, idle CPU %.3f ms over 200 ms\n", et_pool_workers(), used * 1e3);
    ET_CHECK(used < 0.002, "idle pool used %.3f ms of CPU in 200 ms (>= 1%% of a core)", used * 1e3);
    test_chunk_ends(); /* before the late-worker test's inline backoff */
    test_converted_bits();
    test_late_worker();
}
