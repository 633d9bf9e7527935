/* edgetrain — the thread pool every parallel kernel loop runs on (see docs/threads.md).
 *
 * How a kernel parallelises: it splits its output into n_chunks pieces whose bounds depend on
 * the shapes only (never on the thread count), writes the loop body as a small static function
 * body(ctx, chunk, tid) plus a ctx struct, and calls
 *     et_parallel_for(n_chunks, nthreads, body, &ctx);
 * Chunks are handed out one at a time from an atomic counter, so a thread that another process
 * preempts delays the call by at most the chunk it holds; a chunk's result never depends on
 * which thread ran it, and reductions combine per-CHUNK partials in chunk order, so results are
 * bit-identical for every thread count. `tid` (0 = the calling thread, 1.. = workers, always
 * < nthreads) indexes per-thread workspace slots; it must not influence any result.
 *
 * Design: one process-wide pool of POSIX threads (no OpenMP; the user's OpenMP settings are
 * never touched). Workers are created lazily, up to the largest nthreads asked for (at most
 * ET_POOL_MAX_THREADS). Between jobs a worker spins for a bounded time (ET_POOL_SPIN_US, default
 * 300 µs, pausing the core each round; EDGETRAIN_SPIN_US overrides it) and then sleeps on its
 * own condition variable (a job wakes its team alone), so an idle session uses no CPU. The caller takes part as thread 0 and,
 * when the chunks are gone, waits (spin, then sleep) until the chunks in flight are done — never
 * for a worker that has not woken up yet.
 *
 * Why that long, and when shorter (contention): a worker that sleeps between two jobs of a run
 * costs the caller a futex wake on the next job, and on a VM an IPI to a halted vCPU; the job
 * then often runs late, the next gap is longer than a short spin again, and the run settles
 * at one-thread speed or worse (measured: a MobileNetV2 eval at 2 threads after a 50 ms pause
 * took 3.7 ms with 20 µs spins, 1.8 ms with long ones). But while other threads need the cores
 * (another process, the user's own threads), a spinning worker only takes time from them and
 * from our own caller. So the pool owner looks at the run queue (/proc/loadavg's running
 * count, at most every CONTEND_SAMPLE_NS) before its jobs: while at least CONTEND_HITS of the
 * last CONTEND_LOOKS looks find more runnable threads besides this pool's than the cores left
 * beside the team, and for CONTEND_HOLD_NS after, spins are cut to SHORT_SPIN_NS. (One look in
 * 25 to 30 finds a passing extra thread on an idle 2-vCPU guest -- kernel work, most likely --
 * and they come in bursts: two looks in a row, the rule until the fifteenth stop on issue 15,
 * put 8-14 % of an idle machine's MobileNetV2 steps in 500 ms spells of false contention.)
 * Where the run queue cannot be read, spins stay short. Spinning never changes a result.
 * While the same rule finds threads other than the team's needing the cores, the pool also
 * runs every call inline on the caller (same chunks, same bits): a worker that shares its core
 * with another process starts each job late or is preempted inside it, and each of a run's
 * many small jobs then waits for it (issue 15's seventeenth stop, one core kept busy,
 * threads=2 / threads=1 in four interleaved runs each: MobileNetV2 b32 train 1.14-1.19 with
 * short spins alone, 1.02-1.05 inline; its 28x28 eval 0.93-1.17 against 0.92-1.04; LeNet b64
 * 0.97-1.09 against 1.01-1.06). A team larger than the cores (the user's choice) only shortens
 * spins, and where the run queue cannot be read the workers run as before.
 *
 * Job hand-out: one 64-bit ticket = generation (24 bits) | team size (8) | lo (16) | hi (16).
 * The caller claims chunk `lo` and a worker chunk `hi - 1` by compare-and-swap while the
 * generation is its job's (chunks in address order stay with one thread per end), so a
 * late worker can never take a chunk of a newer job by mistake; the job's body and ctx are
 * read only after a successful claim, while the job cannot complete. The generation wraps
 * after 2^24 jobs; a worker stalled that long whose stale ticket then equals the current one
 * bit for bit (generation, team, lo, hi) claims a chunk the current job really has left, runs
 * the current body on it and is within its team: wrapping loses nothing.
 *
 * Two callers at once (two sessions run from two threads, or a body that calls
 * et_parallel_for): the pool serves one call at a time; a call that finds it busy runs its
 * chunks inline on the calling thread (same chunks, same bits) with tid 0 — tids index the
 * workspace passed to THIS call, and a nested call's workspace comes from its caller's chunk.
 * So a second concurrent session runs single-threaded instead of waiting, and nesting is safe.
 *
 * Late workers (another process on the worker's core): a worker that the OS preempts while it
 * holds a chunk makes the caller wait, after its own chunks, for the rest of the other
 * process's time slice (milliseconds) — on every job, so a step at 2 threads ends up slower
 * than at 1. The caller therefore times each job: when its wait for the chunks in flight
 * exceeds LATE_FACTOR of its own chunks' average time plus LATE_NS, the job counts as late and
 * the pool runs the following calls inline on the caller (same chunks, same bits) for a
 * backoff time: SOLO_MIN_NS at first, doubled (up to SOLO_MAX_NS) for each late job that
 * follows within SOLO_RECENT of the last backoff. When the other process stops, the first
 * call after the backoff uses the workers again.
 */
#include "edgetrain/et_common.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ET_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define ET_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define ET_CPU_RELAX() ((void)0)
#endif

#define GEN_BITS 24
#define END_BITS 16
#define TEAM_BITS 8
#define GEN_SHIFT (2 * END_BITS + TEAM_BITS)
#define END_MASK ((UINT64_C(1) << END_BITS) - 1)
#define TEAM_MASK ((UINT64_C(1) << TEAM_BITS) - 1)
#define GEN_MASK ((UINT32_C(1) << GEN_BITS) - 1)
#define MAX_JOB_CHUNKS ((int64_t)END_MASK)

/* lo: the next chunk from the front (taken by the caller), hi: one past the next chunk from
 * the back (taken by the workers); the job has hi - lo chunks left. */
static uint64_t ticket_make(uint32_t gen, int team, int64_t lo, int64_t hi) {
    return ((uint64_t)gen << GEN_SHIFT) | ((uint64_t)team << (2 * END_BITS)) |
           ((uint64_t)lo << END_BITS) | (uint64_t)hi;
}
static uint32_t ticket_gen(uint64_t t) { return (uint32_t)(t >> GEN_SHIFT); }
static int ticket_team(uint64_t t) { return (int)((t >> (2 * END_BITS)) & TEAM_MASK); }
static int64_t ticket_lo(uint64_t t) { return (int64_t)((t >> END_BITS) & END_MASK); }
static int64_t ticket_hi(uint64_t t) { return (int64_t)(t & END_MASK); }

static struct {
    pthread_mutex_t mu;     /* guards sleeping workers' wake-up and the caller's done wait */
    pthread_cond_t done;    /* caller: the last chunk finished */
    uint64_t ticket;        /* atomic: the current job (see the file-top note) */
    int64_t pending;        /* atomic: chunks of the current job not finished yet */
    int busy;               /* atomic: 1 while a call owns the pool */
    int caller_waiting;     /* under mu */
    int nworkers;           /* workers created (only the pool owner changes it) */
    uint64_t asleep;        /* a bit per worker tid waiting for a wake: changed under mu, read
                             * relaxed by the contention look */
    et_pool_body body;      /* the current job; stable while it has chunks pending */
    void *ctx;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, NULL, NULL};
/* Each worker sleeps on its own condition (initialised before the worker starts), so a job
 * wakes its own team alone: after a larger team grew the pool, a broadcast to every worker made
 * the ones outside a 2-thread team wake and spin on the same two cores, the team's worker ran
 * late, and the pool went inline for its backoffs (a 2-thread ViT step after an 8-thread
 * session: 55 ms, all on the caller, against 31 ms in a fresh process). */
static pthread_cond_t wake_of[ET_POOL_MAX_THREADS];

/* Late-worker detection (see the file-top note); only the pool owner touches `solo`. */
#define LATE_NS INT64_C(200000)        /* a wait beyond the chunks' time by this much ... */
#define LATE_FACTOR 3                  /* ... and beyond this many average chunk times */
#define SOLO_MIN_NS INT64_C(2000000)   /* first backoff: 2 ms inline */
#define SOLO_MAX_NS INT64_C(1000000000) /* longest backoff: 1 s */
#define SOLO_RECENT 4                  /* a late job within 4 backoffs of the last doubles it */

static struct {
    int64_t until;    /* calls before this time run inline */
    int64_t backoff;  /* the last backoff */
    int64_t last_late;
} solo = {0, 0, 0};

/* The long spin budget (the file-top note), from EDGETRAIN_SPIN_US when set. */
static int64_t spin_ns(void) {
    static int64_t ns = -1;
    int64_t v = __atomic_load_n(&ns, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("EDGETRAIN_SPIN_US");
        long us = e && *e ? strtol(e, NULL, 10) : ET_POOL_SPIN_US;
        if (us < 0) us = 0;
        if (us > 100000) us = 100000;
        v = (int64_t)us * 1000;
        __atomic_store_n(&ns, v, __ATOMIC_RELAXED);
    }
    return v;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Contention: see the file-top note. Only the pool owner samples it; spinning threads read
 * the verdict (relaxed atomics: it steers spinning only, never a result). */
#define SHORT_SPIN_NS INT64_C(20000)       /* the spin budget while the cores look contended */
#define CONTEND_SAMPLE_NS INT64_C(5000000) /* look at the run queue at most every 5 ms; */
#define CONTEND_LOOKS 8                    /* contended when, of this many last looks, */
#define CONTEND_HITS 6                     /* at least this many say so, */
#define CONTEND_HOLD_NS INT64_C(500000000) /* until 500 ms after the last look that kept the count */
static int64_t contend_until = INT64_MAX; /* atomic; until the first look: short spins */
static int64_t others_until;              /* atomic; the same for other threads alone (inline) */
/* A bit per look, newest lowest: seen, more runnable threads than the cores left beside the
 * team; others, the same for teams no larger than the cores (a user's oversubscription
 * shortens spins, it does not go inline; and its workers between spin and sleep blur the
 * count). */
static struct { int64_t sampled; uint32_t seen, others; } contend;

/* Threads runnable on the machine right now other than this pool's (the caller and its awake
 * workers), from /proc/loadavg's "running/total" field; -1 when it cannot be read. */
static int other_runnable(void) {
    char b[128];
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0) return -1;
    b[n] = 0;
    const char *r = b;
    for (int f = 0; f < 3 && r; f++) r = strchr(r + 1, ' ');
    if (!r) return -1;
    long running = strtol(r + 1, NULL, 10);
    if (running <= 0) return -1;
    const int awake = __atomic_load_n(&P.nworkers, __ATOMIC_RELAXED) -
                      __builtin_popcountll(__atomic_load_n(&P.asleep, __ATOMIC_RELAXED));
    return (int)(running - 1 - awake);
}

/* One look at the run queue at time now: hit = it found the cores contended, others_hit = by
 * threads other than the team's (-1: a team larger than the cores, no look for them). */
static void contention_look(int64_t now, int hit, int others_hit) {
    const uint32_t mask = (1u << CONTEND_LOOKS) - 1u;
    contend.seen = ((contend.seen << 1) | (uint32_t)hit) & mask;
    if (__builtin_popcount(contend.seen) >= CONTEND_HITS)
        __atomic_store_n(&contend_until, now + CONTEND_HOLD_NS, __ATOMIC_RELAXED);
    else if (__atomic_load_n(&contend_until, __ATOMIC_RELAXED) == INT64_MAX) /* the first look */
        __atomic_store_n(&contend_until, 0, __ATOMIC_RELAXED);
    if (others_hit < 0) return; /* a team larger than the cores: no look at the others */
    contend.others = ((contend.others << 1) | (uint32_t)others_hit) & mask;
    if (__builtin_popcount(contend.others) >= CONTEND_HITS)
        __atomic_store_n(&others_until, now + CONTEND_HOLD_NS, __ATOMIC_RELAXED);
}

/* The pool owner, before a job of `team` threads: with more runnable threads than the cores
 * left beside the team in CONTEND_HITS of CONTEND_LOOKS looks, spinning would only take time from them
 * (or from our own caller), so spins are cut to SHORT_SPIN_NS until CONTEND_HOLD_NS after the
 * last such look. */
static void sample_contention(int64_t now, int team) {
    if (now - contend.sampled < CONTEND_SAMPLE_NS) return;
    contend.sampled = now;
    const int others = other_runnable();
    if (others < 0) return; /* unknown: stays as it is (short spins from the start) */
    const int left = et_max_threads() - team; /* et_max_threads: the cores we may run on */
    contention_look(now, others > left, left >= 0 ? others > left : -1);
}

/* Whether the looks saw other threads needing the cores at time t (never while the run queue
 * is unknown: before the first look, or without one to read), or a test forces contention. */
static int force_contended, ignore_contention; /* atomic; tests */
static int others_contend(int64_t t) {
    if (__atomic_load_n(&ignore_contention, __ATOMIC_RELAXED)) return 0;
    return __atomic_load_n(&force_contended, __ATOMIC_RELAXED) ||
           t < __atomic_load_n(&others_until, __ATOMIC_RELAXED);
}

/* The spin budget in force at time t: the long one, or the short one while contended. */
static int64_t budget_at(int64_t t) {
    const int64_t budget = spin_ns();
    const int contended = t < __atomic_load_n(&contend_until, __ATOMIC_RELAXED);
    return contended && budget > SHORT_SPIN_NS ? SHORT_SPIN_NS : budget;
}

int et_pool_contention_look_(int hit, int others_hit) {
    const int64_t now = now_ns();
    contention_look(now, hit != 0, others_hit < 0 ? -1 : others_hit != 0);
    return others_contend(now);
}

int64_t et_pool_spin_ns(void) { return budget_at(now_ns()); }

void et_pool_force_contended_(int on) { __atomic_store_n(&force_contended, on, __ATOMIC_RELAXED); }
void et_pool_ignore_contention_(int on) { __atomic_store_n(&ignore_contention, on, __ATOMIC_RELAXED); }

int et_pool_contended(void) {
    return __atomic_load_n(&force_contended, __ATOMIC_RELAXED) ||
           now_ns() < __atomic_load_n(&contend_until, __ATOMIC_RELAXED);
}

/* Spins until pred(arg) holds or the spin budget is spent; returns the last pred value. */
static int spin_until(int (*pred)(const void *), const void *arg) {
    const int64_t t = now_ns(), budget = budget_at(t);
    if (budget == 0) return pred(arg);
    const int64_t end = t + budget;
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (pred(arg)) return 1;
            ET_CPU_RELAX();
        }
        if (now_ns() >= end) return pred(arg);
    }
}

/* Claims one chunk of job `gen`; returns its index or -1 when the job has none left. The
 * caller (tid 0) takes chunks from the front, the workers from the back: with two threads
 * each keeps to its own end of the chunk range, so consecutive kernels over the same memory
 * (chunks in address order) tend to find their part in their own core's cache. Which thread
 * runs a chunk never changes its result. */
static int64_t claim(uint32_t gen, int tid) {
    uint64_t t = __atomic_load_n(&P.ticket, __ATOMIC_ACQUIRE);
    for (;;) {
        const int64_t lo = ticket_lo(t), hi = ticket_hi(t);
        if (ticket_gen(t) != gen || hi <= lo) return -1;
        const uint64_t next = tid == 0 ? t + (UINT64_C(1) << END_BITS) : t - 1;
        if (__atomic_compare_exchange_n(&P.ticket, &t, next, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return tid == 0 ? lo : hi - 1;
    }
}

/* Runs chunks of job `gen` until none are left; returns how many this thread ran. */
static int64_t work(uint32_t gen, int tid) {
    int64_t c, ran = 0;
    while ((c = claim(gen, tid)) >= 0) {
        ran++;
        P.body(P.ctx, c, tid);
        if (__atomic_sub_fetch(&P.pending, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&P.mu);
            if (P.caller_waiting) pthread_cond_signal(&P.done);
            pthread_mutex_unlock(&P.mu);
        }
    }
    return ran;
}

typedef struct { uint32_t seen; } gen_wait;
static int gen_changed(const void *a) {
    const gen_wait *g = (const gen_wait *)a;
    return ticket_gen(__atomic_load_n(&P.ticket, __ATOMIC_ACQUIRE)) != g->seen;
}

static void *worker_main(void *arg) {
    const int tid = (int)(intptr_t)arg;
    gen_wait g = {ticket_gen(__atomic_load_n(&P.ticket, __ATOMIC_ACQUIRE))};
    const uint64_t bit = UINT64_C(1) << tid;
    int spin = 1; /* 0 after a job outside its team: back to sleep without spinning */
    for (;;) {
        if (!spin || !spin_until(gen_changed, &g)) {
            pthread_mutex_lock(&P.mu);
            while (!gen_changed(&g)) { /* counted asleep only while it waits */
                __atomic_store_n(&P.asleep, P.asleep | bit, __ATOMIC_RELAXED);
                pthread_cond_wait(&wake_of[tid], &P.mu);
            }
            __atomic_store_n(&P.asleep, P.asleep & ~bit, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&P.mu);
        }
        uint64_t t = __atomic_load_n(&P.ticket, __ATOMIC_ACQUIRE);
        g.seen = ticket_gen(t);
        spin = tid < ticket_team(t);
        if (spin) (void)work(g.seen, tid);
    }
    return NULL;
}

static int pending_zero(const void *a) {
    (void)a;
    return __atomic_load_n(&P.pending, __ATOMIC_ACQUIRE) == 0;
}

/* Creates workers up to team - 1; returns the team size actually available. */
static int grow(int team) {
    while (P.nworkers < team - 1) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_cond_init(&wake_of[P.nworkers + 1], NULL);
        int rc = pthread_create(&th, &at, worker_main, (void *)(intptr_t)(P.nworkers + 1));
        pthread_attr_destroy(&at);
        if (rc != 0) break;
        __atomic_store_n(&P.nworkers, P.nworkers + 1, __ATOMIC_RELAXED);
    }
    return team < P.nworkers + 1 ? team : P.nworkers + 1;
}

/* tid 0: the call's own workspace slot 0 (a nested call gets its workspace from its caller's
 * chunk, so slot 0 of it is free). */
static void run_inline(int64_t n_chunks, et_pool_body body, void *ctx) {
    for (int64_t c = 0; c < n_chunks; c++) body(ctx, c, 0);
}

/* One job of at most MAX_JOB_CHUNKS chunks, offset by `first` (the caller owns the pool). */
typedef struct { et_pool_body body; void *ctx; int64_t first; } offset_job;
static void offset_body(void *ctx, int64_t chunk, int tid) {
    const offset_job *o = (const offset_job *)ctx;
    o->body(o->ctx, o->first + chunk, tid);
}

/* After a job: the caller waited `wait` ns for the chunks in flight, its own chunks took
 * `per_chunk` ns each on average. A late job starts (or lengthens) an inline backoff. */
static void note_wait(int64_t now, int64_t wait, int64_t per_chunk) {
    if (wait <= LATE_NS + LATE_FACTOR * per_chunk) return;
    int64_t b = solo.backoff;
    b = b > 0 && now - solo.last_late < SOLO_RECENT * b ? 2 * b : SOLO_MIN_NS;
    if (b > SOLO_MAX_NS) b = SOLO_MAX_NS;
    solo.backoff = b;
    solo.last_late = now;
    solo.until = now + b;
}

static void run_job(int64_t n_chunks, int team, et_pool_body body, void *ctx) {
    P.body = body;
    P.ctx = ctx;
    __atomic_store_n(&P.pending, n_chunks, __ATOMIC_RELAXED);
    uint32_t gen = (ticket_gen(__atomic_load_n(&P.ticket, __ATOMIC_RELAXED)) + 1) & GEN_MASK;
    __atomic_store_n(&P.ticket, ticket_make(gen, team, 0, n_chunks), __ATOMIC_RELEASE);
    pthread_mutex_lock(&P.mu);
    for (int w = 1; w < team; w++) /* the team's sleeping workers; the others sleep on */
        if (P.asleep >> w & 1u) {
            __atomic_store_n(&P.asleep, P.asleep & ~(UINT64_C(1) << w), __ATOMIC_RELAXED);
            pthread_cond_signal(&wake_of[w]);
        }
    pthread_mutex_unlock(&P.mu);
    const int64_t t0 = now_ns();
    const int64_t mine = work(gen, 0);
    const int64_t t1 = now_ns();
    if (!spin_until(pending_zero, NULL)) {
        pthread_mutex_lock(&P.mu);
        P.caller_waiting = 1;
        while (!pending_zero(NULL)) pthread_cond_wait(&P.done, &P.mu);
        P.caller_waiting = 0;
        pthread_mutex_unlock(&P.mu);
    }
    const int64_t t2 = now_ns();
    if (mine > 0) note_wait(t2, t2 - t1, (t1 - t0) / mine);
}

void et_parallel_for(int64_t n_chunks, int nthreads, et_pool_body body, void *ctx) {
    if (n_chunks <= 0) return;
    if (nthreads > ET_POOL_MAX_THREADS) nthreads = ET_POOL_MAX_THREADS;
    int team = (int64_t)nthreads < n_chunks ? nthreads : (int)n_chunks;
    int expected = 0;
    if (team <= 1 ||
        !__atomic_compare_exchange_n(&P.busy, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        run_inline(n_chunks, body, ctx);
        return;
    }
    team = grow(team);
    const int64_t now = now_ns();
    sample_contention(now, team);
    if (team <= 1 || now < solo.until || others_contend(now)) { /* the file-top note */
        run_inline(n_chunks, body, ctx);
    } else if (n_chunks <= MAX_JOB_CHUNKS) {
        run_job(n_chunks, team, body, ctx);
    } else {
        for (int64_t first = 0; first < n_chunks; first += MAX_JOB_CHUNKS) {
            offset_job o = {body, ctx, first};
            int64_t n = n_chunks - first < MAX_JOB_CHUNKS ? n_chunks - first : MAX_JOB_CHUNKS;
            run_job(n, team, offset_body, &o);
        }
    }
    __atomic_store_n(&P.busy, 0, __ATOMIC_RELEASE);
}

int et_pool_workers(void) {
    return __atomic_load_n(&P.nworkers, __ATOMIC_RELAXED);
}

int64_t et_chunk_count(int64_t total, int64_t grain, int64_t max_chunks) {
    if (total <= 0) return 0;
    if (grain < 1) grain = 1;
    int64_t n = (total + grain - 1) / grain;
    if (max_chunks >= 1 && n > max_chunks) n = max_chunks;
    return n;
}

int64_t et_split_chunks(int64_t n, int nthreads) {
    if (n <= 0) return 0;
    if (nthreads <= 1) return 1;
    const int64_t c = (int64_t)nthreads * ET_POOL_CHUNKS_PER_THREAD;
    return n < c ? n : c;
}

typedef struct { int64_t total, n_chunks; et_range_body body; void *ctx; } range_job;
static void range_chunk(void *ctx, int64_t chunk, int tid) {
    const range_job *r = (const range_job *)ctx;
    int64_t b, e;
    et_thread_range(r->total, (int)chunk, (int)r->n_chunks, &b, &e);
    if (e > b) r->body(r->ctx, b, e, tid);
}

void et_parallel_ranges(int64_t total, int64_t n_chunks, int nthreads, et_range_body body,
                        void *ctx) {
    if (total <= 0 || n_chunks <= 0) return;
    if (n_chunks > total) n_chunks = total;
    if (n_chunks > INT32_MAX) n_chunks = INT32_MAX;
    if (n_chunks == 1) {
        body(ctx, 0, total, 0);
        return;
    }
    range_job r = {total, n_chunks, body, ctx};
    et_parallel_for(n_chunks, nthreads, range_chunk, &r);
}
