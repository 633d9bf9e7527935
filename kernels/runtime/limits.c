/* edgetrain — limits: what a session may use and what a file may ask for.
 *
 * Memory: every plan (persistent blocks + inputs + activation arena +
 * workspace) is totalled and compared with the session's limit before any
 * of it is allocated (et_plan_check_memory, called by plan.c between layout
 * and allocation). Threads: at most ET_MAX_THREADS_PER_CORE per online core.
 * Learning rates: a schedule is checked over its whole range (steps 0 ..
 * 2^64-1) at load and when the base rate changes, and the rate of each
 * training step is checked again before the step runs. A file is held to the
 * limits of the API (learning rate finite and >= 0, input dimensions >= 1).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "runtime_internal.h"

/* ======================================================================= */
/* Memory and threads                                                       */
/* ======================================================================= */
/* A byte count from a one-number file (cgroup limits); UINT64_MAX if absent or "max". */
static uint64_t read_limit_file(const char *path) {
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    int ok = f && fscanf(f, "%llu", &v) == 1;
    if (f) fclose(f);
    return ok && v > 0 ? (uint64_t)v : UINT64_MAX;
}

/* The rule: half of the smallest of physical memory, the address-space limit (RLIMIT_AS) and
 * the cgroup's memory limit (v2, then v1) -- the memory this process can actually get. */
uint64_t et_default_max_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t avail = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : (uint64_t)2 << 30;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < avail)
        avail = (uint64_t)rl.rlim_cur;
    uint64_t cg = read_limit_file("/sys/fs/cgroup/memory.max");
    if (cg == UINT64_MAX) cg = read_limit_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (cg < avail) avail = cg;
    return avail / 2;
}

int et_thread_limit(void) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (cores > 4096) cores = 4096;
    return ET_MAX_THREADS_PER_CORE * (int)cores;
}

et_status et_threads_check(int nthreads, char *err, size_t cap) {
    int limit = et_thread_limit();
    if (nthreads <= limit) return ET_OK;
    et_msgf(err, cap, "threads = %d is more than %d (%d per online core, %d cores)", nthreads, limit,
            ET_MAX_THREADS_PER_CORE, limit / ET_MAX_THREADS_PER_CORE);
    return ET_ERR_ARG;
}

/* "6400320064 bytes (5.96 GiB)" */
static const char *bytes_str(uint64_t n, char *buf, size_t cap) {
    snprintf(buf, cap, "%llu bytes (%.2f GiB)", (unsigned long long)n, (double)n / (double)(1u << 30));
    return buf;
}

/* Is tensor i allocated by this plan (a persistent, input, or planned activation tensor)? */
static int planned(const et_model *m, const et_plan *p, uint32_t i) {
    if (m->tensors[i].kind != ET_KIND_ACT) return 1;
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++)
        if (p->act_off[k] && p->act_off[k][i] != ET_NO_OFFSET) return 1;
    return 0;
}

/* ", output of node 7 (conv2d in layer 'conv1')" for a computed tensor, else "". */
static const char *producer_str(const et_model *m, uint32_t t, char *buf, size_t cap) {
    buf[0] = '\0';
    for (uint32_t n = 0; n < m->n_nodes; n++)
        for (int k = 0; k < m->nodes[n].n_out; k++)
            if (m->nodes[n].out[k] == (int32_t)t) {
                snprintf(buf, cap, ", output of node %u (%s in layer '%s')", n, et_op_name(m->nodes[n].op),
                         m->nodes[n].layer);
                return buf;
            }
    return buf;
}

et_status et_plan_check_memory(const et_model *m, const et_plan *p, size_t ws_bytes, uint64_t limit, char *err,
                               size_t cap) {
    uint64_t persist = et_persist_total_bytes(m);
    uint64_t total = persist + p->inputs_bytes + p->arena_bytes + ws_bytes;
    if (total <= limit) return ET_OK;
    uint64_t big = 0;
    uint32_t bi = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        uint64_t b = et_shape_bytes(&p->shape[i]);
        if (b > big && planned(m, p, i)) big = b, bi = i;
    }
    char t[64], l[160], d[64], sh[128], what[400];
    if (ws_bytes > big)
        snprintf(what, sizeof what, "the kernel workspace: %s", bytes_str(ws_bytes, d, sizeof d));
    else
        snprintf(what, sizeof what, "tensor %u ('%s', %s %s%s): %s", bi, m->tensors[bi].name,
                 et_kind_name(m->tensors[bi].kind), et_shape_str(&p->shape[bi], sh, sizeof sh),
                 producer_str(m, bi, l, sizeof l), bytes_str(big, d, sizeof d));
    et_msgf(err, cap, "the plan needs %s (persistent %llu, inputs %llu, activations %llu, workspace %llu), more than "
            "the memory limit of %s; the largest part is %s", bytes_str(total, t, sizeof t), (unsigned long long)persist,
            (unsigned long long)p->inputs_bytes, (unsigned long long)p->arena_bytes, (unsigned long long)ws_bytes,
            bytes_str(limit, d, sizeof d), what);
    return ET_ERR_LIMIT;
}

/* ======================================================================= */
/* Learning-rate schedules (docs/format.md, STATE)                          */
/* ======================================================================= */
double et_scheduled_lr(const et_train_state *st, uint64_t t) {
    const double pi = 3.14159265358979323846;
    double lr0 = st->base_lr, lr = lr0, gamma = st->sched_f[0];
    switch (st->sched_kind) {
    case ET_SCHED_STEP:
        lr = lr0 * pow(gamma, (double)(t / (uint64_t)st->sched_i[0]));
        break;
    case ET_SCHED_MULTISTEP: {
        int passed = 0;
        for (int k = 0; k < 6; k++) passed += st->sched_i[k] > 0 && (uint64_t)st->sched_i[k] <= t;
        lr = lr0 * pow(gamma, passed);
        break;
    }
    case ET_SCHED_EXPONENTIAL:
        lr = lr0 * pow(gamma, (double)t);
        break;
    case ET_SCHED_COSINE: {
        double tmax = (double)st->sched_i[0], tt = (double)t < tmax ? (double)t : tmax, eta_min = st->sched_f[0];
        lr = eta_min + (lr0 - eta_min) * (1.0 + cos(pi * tt / tmax)) / 2.0;
        break;
    }
    case ET_SCHED_INV:
        lr = lr0 * pow(1.0 + gamma * (double)t, -(double)st->sched_f[1]);
        break;
    default:
        break;
    }
    if (t < st->warmup) lr *= (double)(t + 1) / (double)st->warmup;
    return lr;
}

/* A learning rate the optimizer kernels accept: finite as a float, and >= 0. */
static int lr_ok(double lr) { return lr >= 0.0 && lr <= (double)FLT_MAX; }

et_status et_lr_check_step(double lr, uint64_t step, char *err, size_t cap) {
    if (lr_ok(lr)) return ET_OK;
    et_msgf(err, cap, "step %llu: the scheduled learning rate is %g, not a finite number >= 0; the step was not run",
            (unsigned long long)step, lr);
    return ET_ERR_STATE;
}

static const char *sched_name(uint32_t kind) {
    static const char *names[] = {"constant", "step", "multistep", "exponential", "cosine", "inv"};
    return kind < ET_SCHED_COUNT_ ? names[kind] : "unknown";
}

/* Parameters that make some rate negative or undefined, whatever the base rate. */
static et_status check_params(const et_train_state *st, char *err, size_t cap) {
    const char *name = sched_name(st->sched_kind);
    for (int i = 0; i < 6; i++)
        if (!isfinite(st->sched_f[i])) {
            et_msgf(err, cap, "%s schedule: parameter %d is %g, not finite", name, i, (double)st->sched_f[i]);
            return ET_ERR_ARG;
        }
    switch (st->sched_kind) {
    case ET_SCHED_STEP:
    case ET_SCHED_COSINE:
        if (st->sched_i[0] <= 0) {
            et_msgf(err, cap, "%s schedule: %s must be >= 1, got %lld", name,
                    st->sched_kind == ET_SCHED_STEP ? "step_size" : "t_max", (long long)st->sched_i[0]);
            return ET_ERR_ARG;
        }
        if (st->sched_kind == ET_SCHED_COSINE && st->sched_f[0] < 0) {
            et_msgf(err, cap, "cosine schedule: eta_min = %g < 0 gives negative learning rates",
                    (double)st->sched_f[0]);
            return ET_ERR_ARG;
        }
        break;
    case ET_SCHED_INV:
        if (st->sched_f[0] < 0) {
            et_msgf(err, cap, "inv schedule: gamma = %g < 0: 1 + gamma*t falls to 0 and below, where the learning "
                    "rate is infinite, negative or NaN", (double)st->sched_f[0]);
            return ET_ERR_ARG;
        }
        break;
    default:
        break;
    }
    if ((st->sched_kind == ET_SCHED_STEP || st->sched_kind == ET_SCHED_MULTISTEP ||
         st->sched_kind == ET_SCHED_EXPONENTIAL) && st->sched_f[0] < 0) {
        et_msgf(err, cap, "%s schedule: gamma = %g < 0 makes the learning rate alternate in sign", name,
                (double)st->sched_f[0]);
        return ET_ERR_ARG;
    }
    return ET_OK;
}

/* With parameters checked, every schedule is monotone or bounded by the base rate, so a bad
 * rate, if any, shows at a probe step, and bad steps of a growing schedule form a suffix. */
static et_status check_range(const et_train_state *st, char *err, size_t cap) {
    uint64_t probes[16];
    int n = 0;
    probes[n++] = 0;
    probes[n++] = UINT64_MAX;
    if (st->warmup) probes[n++] = st->warmup - 1, probes[n++] = st->warmup;
    for (int k = 0; k < 6; k++)
        if (st->sched_i[k] > 0) probes[n++] = (uint64_t)st->sched_i[k];
    for (int k = 0; k < n; k++) {
        uint64_t t = probes[k];
        if (lr_ok(et_scheduled_lr(st, t))) continue;
        uint64_t lo = 0; /* invariant: step lo is good, step t is bad */
        if (!lr_ok(et_scheduled_lr(st, 0))) t = 0;
        while (t - lo > 1) {
            uint64_t mid = lo + (t - lo) / 2;
            if (lr_ok(et_scheduled_lr(st, mid))) lo = mid;
            else t = mid;
        }
        et_msgf(err, cap, "%s schedule (base rate %g, parameters %g, %g) reaches the learning rate %g at step %llu; "
                "rates must stay finite and >= 0 at every step", sched_name(st->sched_kind), (double)st->base_lr,
                (double)st->sched_f[0], (double)st->sched_f[1], et_scheduled_lr(st, t), (unsigned long long)t);
        return ET_ERR_ARG;
    }
    return ET_OK;
}

static et_status check_schedule(const et_train_state *st, char *err, size_t cap) {
    if (!(st->base_lr >= 0.0f) || !isfinite(st->base_lr)) {
        et_msgf(err, cap, "base learning rate %g must be finite and >= 0", (double)st->base_lr);
        return ET_ERR_ARG;
    }
    if (st->sched_kind >= ET_SCHED_COUNT_) {
        et_msgf(err, cap, "scheduler kind %u unknown (0..%d)", st->sched_kind, ET_SCHED_COUNT_ - 1);
        return ET_ERR_ARG;
    }
    et_status s = check_params(st, err, cap);
    return s != ET_OK ? s : check_range(st, err, cap);
}

et_status et_schedule_check(float base_lr, uint32_t kind, const float *sched_f, const int64_t *sched_i,
                            uint32_t warmup, char *err, size_t cap) {
    et_train_state st;
    memset(&st, 0, sizeof st);
    if (!sched_f || !sched_i) {
        et_msgf(err, cap, "et_schedule_check: NULL parameters");
        return ET_ERR_ARG;
    }
    st.base_lr = base_lr;
    st.sched_kind = kind;
    memcpy(st.sched_f, sched_f, sizeof st.sched_f);
    memcpy(st.sched_i, sched_i, sizeof st.sched_i);
    st.warmup = warmup;
    return check_schedule(&st, err, cap);
}

et_status et_state_check(const et_train_state *st, char *err, size_t cap) { return check_schedule(st, err, cap); }

/* ======================================================================= */
/* A file is held to the limits of the API                                  */
/* ======================================================================= */
et_status et_model_check_limits(const et_model *m, char *err, size_t cap) {
    char msg[ET_MSG_CAP];
    if (check_schedule(&m->state, msg, sizeof msg) != ET_OK) {
        et_msgf(err, cap, "section 5 (STATE): %s", msg);
        return ET_ERR_FORMAT;
    }
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const et_tensor_def *t = &m->tensors[i];
        if (t->kind != ET_KIND_INPUT) continue;
        for (int d = 0; d < t->shape.ndim; d++)
            if (t->shape.dim[d] < 1) {
                et_msgf(err, cap, "tensor %u ('%s'): input dimension %d is %lld; inputs need every dimension >= 1 "
                        "(as Resize does)", i, t->name, d, (long long)t->shape.dim[d]);
                return ET_ERR_FORMAT;
            }
    }
    return ET_OK;
}
