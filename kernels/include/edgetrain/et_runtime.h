/* edgetrain — the C runtime: load an .etm, plan memory, run programs, save.
 *
 * The same code runs inside the Python extension and the Android trainer.
 * Errors: every call returns et_status; a human readable message for the
 * last failed call on a session is et_session_error(s) (for load failures,
 * et_load_error()). Nothing here calls exit() or prints.
 * Threads: different sessions may be used from different threads at once; one
 * session must not (Resize frees memory a run reads). Callers serialise the
 * calls on a session; the Python binding holds a per-session lock.
 */
#ifndef EDGETRAIN_ET_RUNTIME_H
#define EDGETRAIN_ET_RUNTIME_H

#include "et_common.h"
#include "et_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct et_session et_session;

typedef enum et_program_kind {
    ET_PROGRAM_EVAL = 0,
    ET_PROGRAM_GRAD = 1,
    ET_PROGRAM_TRAIN = 2,
    ET_PROGRAM_COUNT_
} et_program_kind;

typedef enum et_tensor_kind {
    ET_KIND_INPUT = 0,
    ET_KIND_PARAM = 1,
    ET_KIND_BUFFER = 2,
    ET_KIND_GRAD = 3,
    ET_KIND_OPTSTATE = 4,
    ET_KIND_CONST = 5,
    ET_KIND_ACT = 6,
    ET_KIND_COUNT_
} et_tensor_kind;

typedef struct et_tensor_info {
    const char *name;     /* "" if unnamed; valid while the session lives */
    et_dtype dtype;
    et_tensor_kind kind;
    int ndim;
    int64_t shape[6];
    int trainable;
    int64_t numel;
} et_tensor_info;

typedef struct et_memory_info {
    size_t params_bytes;      /* PARAM + BUFFER data */
    size_t grads_bytes;       /* gradients: the GRAD block, or their part of the activation arena */
    size_t optimizer_bytes;   /* OPTSTATE block */
    size_t const_bytes;
    size_t inputs_bytes;
    size_t activations_bytes; /* planned activation arena (max over programs), less the
                               * gradients it holds (grads_in_arena_bytes) */
    size_t workspace_bytes;   /* kernel scratch outside the arena (workspaces with no room in it) */
    size_t total_bytes;       /* sum of the above */
    size_t activations_unplanned_bytes; /* what activations would take without reuse */
    size_t workspace_unplanned_bytes;   /* the largest workspace of any node: the scratch block
                                           without workspaces in the arena */
    size_t eval_cache_bytes;  /* the EVAL program's packed weights and BatchNorm factors, kept
                               * between runs while the weights are unchanged (in total_bytes);
                               * made at the first EVAL run, freed by selecting another program */
    size_t grads_in_arena_bytes; /* of grads_bytes, those planned inside the activation arena (the
                                  * arena is activations_bytes + this); 0 with the GRAD block
                                  * (EDGETRAIN_GRADS_IN_ARENA=0 at load, or a model that reads a
                                  * gradient before writing it) */
} et_memory_info;

/* ---- lifetime ----------------------------------------------------------- */
et_status et_session_load_file(const char *path, int nthreads, et_session **out);
et_status et_session_load_memory(const void *data, size_t size, int nthreads, et_session **out);
const char *et_load_error(void); /* message of the last failed load on this thread */

/* ---- limits (runtime/limits.c) -------------------------------------------- */
/* Every plan (persistent blocks + inputs + activation arena + workspace) is
 * compared with the session's memory limit before anything is allocated, at
 * load, Resize and set_threads; above it the call fails with ET_ERR_LIMIT and
 * a message naming the total, the limit and the largest tensor. */
typedef struct et_load_options {
    int nthreads;        /* 0: every online core; at most et_thread_limit() */
    uint64_t max_memory; /* bytes; 0: et_default_max_memory() */
} et_load_options;

#define ET_MAX_THREADS_PER_CORE 4
/* Default memory limit: half of the smallest of physical memory, RLIMIT_AS and the cgroup limit. */
uint64_t et_default_max_memory(void);
/* Largest accepted thread count: ET_MAX_THREADS_PER_CORE x online cores. */
int et_thread_limit(void);

et_status et_session_load_file_ex(const char *path, const et_load_options *opts, et_session **out);
et_status et_session_load_memory_ex(const void *data, size_t size, const et_load_options *opts,
                                    et_session **out);
/* New limit (0: the default). ET_ERR_LIMIT, and no change, if the current plan is above it. */
et_status et_session_set_max_memory(et_session *s, uint64_t max_memory);
uint64_t et_session_max_memory(const et_session *s);
/* ET_OK if the schedule (kind, floats, ints, warmup as in the STATE section) gives a finite
 * learning rate >= 0 at every step 0 .. 2^64-1; else ET_ERR_ARG and a message in err. */
et_status et_schedule_check(float base_lr, uint32_t kind, const float *sched_f, const int64_t *sched_i,
                            uint32_t warmup, char *err, size_t cap);
void et_session_free(et_session *s);
const char *et_session_error(const et_session *s);

/* ---- configuration ------------------------------------------------------ */
et_status et_session_set_threads(et_session *s, int nthreads);
int et_session_threads(const et_session *s);
/* Choose the program RunGraph runs (ET_ERR_STATE if the file lacks it). */
et_status et_session_set_program(et_session *s, et_program_kind kind);
et_program_kind et_session_program(const et_session *s);
int et_session_has_program(const et_session *s, et_program_kind kind);

/* New shapes for some INPUT tensors (by name); shapes of everything else are
 * re-inferred and memory re-planned. Atomic: on error nothing changes. */
et_status et_session_resize(et_session *s, int count, const char *const *names,
                            const int *ndims, const int64_t *const *shapes);

/* ---- tensors -------------------------------------------------------------- */
int et_session_tensor_count(const et_session *s);
int et_session_find_tensor(const et_session *s, const char *name); /* -1 if absent */
et_status et_session_tensor_info(const et_session *s, int index, et_tensor_info *info);
/* Pointer to the tensor's current data (planned arena / persistent block).
 * For ACT tensors the content is only meaningful right after a run. For a stored
 * tensor (PARAM, BUFFER, OPTSTATE, CONST) the call counts as a write: data the
 * eval program derives from the weights is made again at its next run, so after
 * a run get the pointer again before writing through it.
 * et_session_tensor_read: the same pointer, for reading only (not a write). */
void *et_session_tensor_data(et_session *s, int index);
const void *et_session_tensor_read(const et_session *s, int index);

/* Copy user data into an INPUT tensor. `dtype` may be ET_F32 for f32 inputs and
 * ET_I64 or ET_I32 for i32 label inputs (converted, range-checked: a label that
 * does not fit gives ET_ERR_LABEL).
 * The shape must equal the planned shape, except for dim 0 (the batch): a new
 * batch in 1..et_session_max_batch() re-plans automatically. Every INPUT whose
 * dim 0 was the old batch takes the new one, and the session switches to the
 * plan for those shapes: one of the cached plans (et_session_cached_plans, at
 * most 4, least recently used dropped; switching to a cached plan allocates
 * nothing) or a new one. After such a switch every input of a program must be
 * fed again before it runs (else et_session_run gives ET_ERR_SHAPE). Other
 * shape changes, or a larger batch, need et_session_resize. */
et_status et_session_set_input(et_session *s, const char *name, et_dtype dtype, const void *data,
                               int ndim, const int64_t *shape);

/* Program inputs and outputs by position. */
int et_session_input_count(const et_session *s);   /* of the current program */
int et_session_input_tensor(const et_session *s, int i);
int et_session_output_count(const et_session *s);
const char *et_session_output_name(const et_session *s, int i);
int et_session_output_tensor(const et_session *s, int i);

/* Largest batch an automatic re-plan accepts: the file's max_batch (STATE,
 * format minor 1), at least the batch of the inputs at load or of the largest
 * explicit resize. */
int64_t et_session_max_batch(const et_session *s);
int et_session_cached_plans(const et_session *s); /* plans held, the current one included (1..4) */

/* ---- running -------------------------------------------------------------- */
/* Run the current program once. Train: forward, backward, update; then step++
 * and rng_counter++. No heap allocation happens inside. A train run whose
 * scheduled learning rate is not finite or negative fails (ET_ERR_STATE)
 * before any node runs.
 * Non-finite guard (TRAIN only): after the backward pass and before the first
 * node that updates a parameter or optimizer state, the loss and every
 * gradient are checked. A NaN or Inf undoes the forward's in-place writes
 * (BatchNorm running statistics) and, by policy, returns ET_ERR_NONFINITE
 * naming the step (RAISE, the default) or returns ET_OK and counts the step as
 * skipped (SKIP). Either way weights, optimizer state, buffers, the step and
 * the RNG counter are unchanged. OFF runs without the check. */
et_status et_session_run(et_session *s);

typedef enum et_nonfinite_policy {
    ET_NONFINITE_RAISE = 0,
    ET_NONFINITE_SKIP = 1,
    ET_NONFINITE_OFF = 2,
    ET_NONFINITE_COUNT_
} et_nonfinite_policy;

et_status et_session_set_nonfinite_policy(et_session *s, et_nonfinite_policy policy);
et_nonfinite_policy et_session_nonfinite_policy(const et_session *s);
uint64_t et_session_skipped_steps(const et_session *s);       /* steps skipped under SKIP */
et_status et_session_set_skipped_steps(et_session *s, uint64_t n);
int et_session_last_step_skipped(const et_session *s);        /* 1 if the last run was skipped */

/* ---- optimizer state ------------------------------------------------------ */
float et_session_lr(const et_session *s);             /* lr for the next step (schedule applied) */
float et_session_base_lr(const et_session *s);
et_status et_session_set_lr(et_session *s, float lr);  /* sets the base learning rate (finite, >= 0, schedule checked) */
uint64_t et_session_step(const et_session *s);
et_status et_session_set_step(et_session *s, uint64_t step);
uint64_t et_session_epoch(const et_session *s);
et_status et_session_set_epoch(et_session *s, uint64_t epoch);
uint64_t et_session_seed(const et_session *s);
et_status et_session_set_seed(et_session *s, uint64_t seed); /* also resets the RNG counter */

/* Gradient accumulation (a TRAIN program exported with accumulate=k): returns k (1 without
 * accumulation) and, in *micro (may be NULL), the micro-batches accumulated since the last
 * update (0..k-1). A TRAIN run that is not the k-th leaves the step counter unchanged. */
int et_session_accumulation(const et_session *s, int *micro);

/* ---- saving --------------------------------------------------------------- */
/* Full training state, atomically (temp file, fsync, rename). The input shapes
 * written are those of the load or of the last et_session_resize, not of an
 * automatic batch change. */
et_status et_session_save_file(et_session *s, const char *path);

/* Replace `path` with `size` bytes atomically: a unique temporary file in the
 * target's folder (O_EXCL|O_NOFOLLOW), fsync, rename, fsync of the folder. A
 * symlink is written through to its target; the target's permission bits are
 * kept. On failure (ET_ERR_IO, message in err naming the cause) the old file is
 * unchanged. Every save of the runtime goes through this writer. */
et_status et_file_write_atomic(const char *path, const void *data, size_t size, char *err, size_t cap);

/* ---- introspection -------------------------------------------------------- */
et_status et_session_memory_info(const et_session *s, et_memory_info *info);
int et_session_node_count(const et_session *s, et_program_kind kind);

/* ---- profiling ------------------------------------------------------------ */
/* Opt-in per-node timing (off by default; also switched on at load when the
 * environment variable EDGETRAIN_PROFILE is set to a non-empty value other
 * than "0"). Enabling allocates the counters (outside any step) and zeroes
 * them; while on, et_session_run adds each node's wall time (monotonic clock)
 * and one call to its counters. Off costs one branch per node. */
typedef struct et_node_profile {
    int op;               /* et_op */
    const char *layer;    /* the node's layer name ("" if none); valid while the session lives */
    uint64_t ns;          /* cumulative wall time in nanoseconds */
    uint64_t calls;       /* number of times the node ran */
} et_node_profile;

et_status et_session_set_profiling(et_session *s, int enabled);
int et_session_profiling(const et_session *s);
/* Fills out[0 .. min(cap, node count)) with the counters of the model's nodes
 * (all programs; index = node id); returns the node count (-1 on error). */
int et_session_profile(const et_session *s, et_node_profile *out, int cap);

/* The EVAL program's image-first segments for the current input shapes (docs/threads.md: runs
 * of large convolutions, adds and activations that each image goes through before the next):
 * for k < cap, out[3k] is segment k's first node id, out[3k + 1] its last node id and
 * out[3k + 2] its number of nodes. Returns the number of segments (-1 on error). */
int et_session_eval_segments(const et_session *s, int32_t *out, int cap);
/* The channel-blocked pairs inside those segments (docs/threads.md: a pointwise convolution
 * and the depthwise one reading its output, run a block of channels at a time): for k < cap,
 * out[3k] is pair k's pointwise node id, out[3k + 1] its depthwise node id and out[3k + 2] the
 * channels of a block. Returns the number of pairs (-1 on error). */
int et_session_eval_pairs(const et_session *s, int32_t *out, int cap);
/* The concurrent groups of program `kind` (TRAIN or GRAD) for the current input shapes
 * (docs/threads.md: independent small nodes, each on one thread beside the others): for
 * k < cap, out[3k] is group k's first node id, out[3k + 1] its last node id and out[3k + 2] its
 * number of nodes. Returns the number of groups (-1 on error). */
int et_session_node_groups(const et_session *s, et_program_kind kind, int32_t *out, int cap);

/* Debug build (ET_DEBUG_ALLOC): number of heap allocations made by the runtime
 * so far (process-wide). Returns -1 when not counting. */
int64_t et_debug_alloc_count(void);

/* Gives the C library's free heap pages back to the system (glibc: malloc_trim; a no-op
 * elsewhere). Called after a session is built, so that the transient buffers of its
 * construction do not stay in the process's resident set. Changes no setting. */
void et_release_free_memory(void);

#ifdef __cplusplus
}
#endif
#endif /* EDGETRAIN_ET_RUNTIME_H */
