/* edgetrain — tests of the thread pool (src/threadpool.c): every chunk runs exactly once for
 * awkward chunk counts and thread counts, tids stay below the thread count, two pthreads may
 * call at once and a body may call et_parallel_for (nested: it runs inline), and an idle pool
 * sleeps (CPU time of the process over 200 ms of idling < 1 % of a core). */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "edgetrain/et_common.h"
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

void test_threadpool(void) {
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
}
