/* edgetrain — runtime internals shared by crc32.c, ops.c, format.c, plan.c
 * and session.c. Not installed; the public API is et_runtime.h.
 *
 * Data flow:  bytes --format.c--> et_model (validated graph, names, state)
 *             et_model --plan.c--> et_persist (params/grads/optimizer/consts)
 *                                  et_plan (shapes, inputs, activation arena, workspace)
 *             session.c runs a program's nodes with the op table of ops.c.
 */
#ifndef EDGETRAIN_RUNTIME_INTERNAL_H
#define EDGETRAIN_RUNTIME_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "edgetrain/et_common.h"
#include "edgetrain/et_kernels.h"
#include "edgetrain/et_ops.h"
#include "edgetrain/et_runtime.h"

/* ---- limits of the file format (docs/format.md, docs/ops.md) ------------- */
#define ET_NODE_MAX_IN 8
#define ET_NODE_MAX_OUT 4
#define ET_NODE_MAX_IATTR 16
#define ET_NODE_MAX_FATTR 8
#define ET_FORMAT_MAJOR 1u
#define ET_FORMAT_MINOR 1u
#define ET_MAX_SECTIONS 64u
#define ET_ALIGN 64u
#define ET_MAX_DIM ((int64_t)1 << 31)        /* largest single dimension */
#define ET_MAX_BYTES ((uint64_t)1 << 40)     /* largest tensor / total tensor bytes */
#define ET_NO_OFFSET ((size_t)-1)
#define ET_MSG_CAP 512

enum et_section_type {
    ET_SEC_STRINGS = 1,
    ET_SEC_TENSORS = 2,
    ET_SEC_NODES = 3,
    ET_SEC_PROGRAMS = 4,
    ET_SEC_STATE = 5,
    ET_SEC_DATA = 6,
    ET_SEC_META = 7
};
#define ET_HEADER_BYTES 64u
#define ET_SECTION_ENTRY_BYTES 32u
#define ET_TENSOR_RECORD_BYTES 96u
#define ET_NODE_RECORD_BYTES 224u
#define ET_STATE_BYTES 128u
#define ET_PROGRAM_HEAD_BYTES 16u   /* a PROGRAMS record's head; its lists follow */
#define ET_PROGRAM_OUTPUT_BYTES 12u /* one entry of a program's output list */

/* Byte offsets of the fields inside each record (docs/format.md; edgetrain/fileformat.py mirrors
 * them without the ET_ prefix, checked by tests/test_mirrors.py). */
enum et_header_field {
    ET_HDR_MAGIC = 0,      /* u8[8] "EDGETRN\0" */
    ET_HDR_MAJOR = 8,      /* u32 */
    ET_HDR_MINOR = 12,     /* u32 */
    ET_HDR_FILE_SIZE = 16, /* u64 */
    ET_HDR_NSECTIONS = 24, /* u32 */
    ET_HDR_FLAGS = 28,     /* u32 */
    ET_HDR_TABLE_CRC = 32, /* u32, CRC32 of the section table */
    ET_HDR_CRC = 36,       /* u32, CRC32 of header bytes [0, ET_HDR_CRC) */
    ET_HDR_ZERO = 40       /* u8[24] */
};
enum et_section_entry_field {
    ET_SENT_TYPE = 0,       /* u32 */
    ET_SENT_RESERVED = 4,   /* u32, 0 */
    ET_SENT_OFFSET = 8,     /* u64 */
    ET_SENT_SIZE = 16,      /* u64 */
    ET_SENT_CRC = 24,       /* u32 */
    ET_SENT_RESERVED2 = 28  /* u32, 0 */
};
enum et_tensor_record_field {
    ET_TREC_NAME_OFF = 0,   /* u32 */
    ET_TREC_NAME_LEN = 4,   /* u32 */
    ET_TREC_DTYPE = 8,      /* u8 */
    ET_TREC_KIND = 9,       /* u8 */
    ET_TREC_NDIM = 10,      /* u8 */
    ET_TREC_FLAGS = 11,     /* u8 */
    ET_TREC_OWNER = 12,     /* u32 */
    ET_TREC_SHAPE = 16,     /* i64[6] */
    ET_TREC_DATA_OFF = 64,  /* u64 */
    ET_TREC_DATA_SIZE = 72, /* u64 */
    ET_TREC_ZERO = 80       /* u8[16] */
};
enum et_node_record_field {
    ET_NREC_OP = 0,          /* u16 */
    ET_NREC_N_IN = 2,        /* u8 */
    ET_NREC_N_OUT = 3,       /* u8 */
    ET_NREC_N_IATTR = 4,     /* u8 */
    ET_NREC_N_FATTR = 5,     /* u8 */
    ET_NREC_ZERO = 6,        /* u16 */
    ET_NREC_IN = 8,          /* i32[8] */
    ET_NREC_OUT = 40,        /* i32[4] */
    ET_NREC_IATTR = 56,      /* i64[16] */
    ET_NREC_FATTR = 184,     /* f32[8] */
    ET_NREC_LAYER_OFF = 216, /* u32 */
    ET_NREC_LAYER_LEN = 220  /* u32 */
};
enum et_program_head_field {
    ET_PREC_KIND = 0,      /* u32, et_program_kind */
    ET_PREC_N_NODES = 4,   /* u32; then u32[n_nodes] node indices */
    ET_PREC_N_INPUTS = 8,  /* u32; then u32[n_inputs] tensor indices */
    ET_PREC_N_OUTPUTS = 12 /* u32; then n_outputs entries of ET_PROGRAM_OUTPUT_BYTES */
};
enum et_program_output_field {
    ET_POUT_NAME_OFF = 0, /* u32 */
    ET_POUT_NAME_LEN = 4, /* u32 */
    ET_POUT_TENSOR = 8    /* u32 */
};
enum et_state_record_field {
    ET_SREC_STEP = 0,         /* u64 */
    ET_SREC_EPOCH = 8,        /* u64 */
    ET_SREC_SEED = 16,        /* u64 */
    ET_SREC_RNG_COUNTER = 24, /* u64 */
    ET_SREC_BASE_LR = 32,     /* f32 */
    ET_SREC_SCHED_KIND = 36,  /* u32 */
    ET_SREC_SCHED_F = 40,     /* f32[6] */
    ET_SREC_SCHED_I = 64,     /* i64[6] */
    ET_SREC_WARMUP = 112,     /* u32 */
    ET_SREC_OPT_KIND = 116,   /* u32 */
    ET_SREC_MAX_BATCH = 120,  /* u32, minor 1 (zero in minor 0) */
    ET_SREC_ZERO = 124        /* u8[4] */
};

#define ET_TFLAG_TRAINABLE 1u
#define ET_TFLAG_OUTPUT 2u
#define ET_TFLAG_KNOWN (ET_TFLAG_TRAINABLE | ET_TFLAG_OUTPUT) /* tensor flags of versions 1.0, 1.1 */
#define ET_HFLAG_INFERENCE_ONLY 1u
#define ET_HFLAG_KNOWN ET_HFLAG_INFERENCE_ONLY               /* header flags of versions 1.0, 1.1 */
#define ET_NO_OWNER 0xFFFFFFFFu

/* ---- allocation (the only place the runtime touches the heap) ------------ */
/* With -DET_DEBUG_ALLOC every allocation is counted (et_debug_alloc_count). */
void *et_malloc(size_t bytes);                 /* NULL for 0 bytes or failure */
void *et_calloc(size_t count, size_t size);    /* zeroed; overflow-checked */
void et_free(void *p);
void *et_aligned_calloc(size_t bytes);         /* 64-byte aligned, zeroed */
void et_aligned_free(void *p);

static inline size_t et_align_up(size_t n) { return (n + (ET_ALIGN - 1)) & ~(size_t)(ET_ALIGN - 1); }

/* ---- messages ------------------------------------------------------------- */
void et_msgf(char *buf, size_t cap, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- CRC32 (IEEE, identical to zlib.crc32) ---------------------------------- */
uint32_t et_crc32(uint32_t crc, const void *p, size_t n);

/* ---- shapes ------------------------------------------------------------------ */
typedef struct et_tshape {
    et_dtype dtype;
    int ndim;
    int64_t dim[ET_MAX_DIMS];
} et_tshape;

/* numel of a validated shape (dims in [0, ET_MAX_DIM], bytes <= ET_MAX_BYTES). */
int64_t et_shape_numel(const et_tshape *s);
size_t et_shape_bytes(const et_tshape *s);
/* 1 if every dim is in [0, ET_MAX_DIM] and the byte size is at most ET_MAX_BYTES. */
int et_shape_is_sane(const et_tshape *s);
int et_shape_equal(const et_tshape *a, const et_tshape *b); /* dtype, rank and dims */
/* "[2,3,4] f32" into buf; returns buf. */
const char *et_shape_str(const et_tshape *s, char *buf, size_t cap);
const char *et_dtype_name(et_dtype t);
const char *et_kind_name(et_tensor_kind k);
const char *et_program_name(int kind);

/* ---- the model: what the file says, validated ------------------------------- */
typedef struct et_tensor_def {
    const char *name;          /* NUL-terminated copy; "" if unnamed */
    uint32_t name_off, name_len;
    et_tensor_kind kind;
    uint8_t flags;             /* ET_TFLAG_* */
    uint32_t owner;            /* PARAM index for GRAD/OPTSTATE, else ET_NO_OWNER */
    et_tshape shape;           /* shape stored in the file */
    uint64_t data_off, data_size; /* inside DATA, for kinds with data */
} et_tensor_def;

typedef struct et_node_def {
    int op;
    int n_in, n_out, n_iattr, n_fattr;
    int32_t in[ET_NODE_MAX_IN];    /* -1 = absent (also for slots >= n_in) */
    int32_t out[ET_NODE_MAX_OUT];
    int64_t iattr[ET_NODE_MAX_IATTR]; /* 0 beyond n_iattr */
    float fattr[ET_NODE_MAX_FATTR];   /* 0 beyond n_fattr */
    uint32_t layer_off, layer_len;
    const char *layer;             /* NUL-terminated copy; "" if none */
} et_node_def;

typedef struct et_output_def {
    uint32_t name_off, name_len;
    const char *name;
    uint32_t tensor;
} et_output_def;

typedef struct et_program_def {
    int present;
    uint32_t n_nodes, n_inputs, n_outputs;
    uint32_t *nodes;
    uint32_t *inputs;
    et_output_def *outputs;
} et_program_def;

typedef struct et_train_state {
    uint64_t step, epoch, seed, rng_counter;
    float base_lr;
    uint32_t sched_kind;
    float sched_f[6];
    int64_t sched_i[6];
    uint32_t warmup;
    uint32_t opt_kind;
    uint32_t max_batch;      /* minor 1: largest batch fed without an explicit resize; 0 = the file's batch */
} et_train_state;

enum { ET_SCHED_CONSTANT, ET_SCHED_STEP, ET_SCHED_MULTISTEP, ET_SCHED_EXPONENTIAL,
       ET_SCHED_COSINE, ET_SCHED_INV, ET_SCHED_COUNT_ };
/* STATE opt_kind: the optimizer the train program was exported with (informational) */
enum { ET_OPTIM_NONE, ET_OPTIM_SGD, ET_OPTIM_ADAM, ET_OPTIM_ADAMW, ET_OPTIM_RMSPROP, ET_OPTIM_ADAGRAD,
       ET_OPTIM_COUNT_ };
/* reduce op iattr[0] */
enum { ET_REDUCE_SUM, ET_REDUCE_MEAN, ET_REDUCE_COUNT_ };

typedef struct et_extra_section { /* META and unknown sections, kept verbatim */
    uint32_t type;
    uint64_t size;
    uint8_t *bytes;
} et_extra_section;

typedef struct et_model {
    uint32_t flags;                 /* header flags */
    uint8_t *strings;               /* copy of STRINGS */
    uint64_t strings_size;
    uint32_t n_tensors;
    et_tensor_def *tensors;
    uint32_t n_nodes;
    et_node_def *nodes;
    et_program_def programs[ET_PROGRAM_COUNT_];
    et_train_state state;
    uint32_t n_extra;
    et_extra_section extra[ET_MAX_SECTIONS];
    char *name_pool[2 + ET_PROGRAM_COUNT_]; /* name copies: tensors, nodes, outputs per program */
    const uint8_t *data;            /* DATA section inside the loaded bytes: valid during load only */
    uint64_t data_size;
    int grads_in_arena;             /* set by the session at load: GRAD tensors are planned in the
                                       activation arena, not the GRAD block (plan.c) */
    int no_groups;                  /* set by the session at load (EDGETRAIN_NODE_GROUPS=0): no
                                       concurrent groups (plan.c) */
    int no_pairs;                   /* set by the session at load (EDGETRAIN_SEGMENT_PAIRS=0): no
                                       channel-blocked pairs in segments (plan.c) */
} et_model;

static inline int et_kind_has_data(et_tensor_kind k) {
    return k == ET_KIND_PARAM || k == ET_KIND_BUFFER || k == ET_KIND_OPTSTATE || k == ET_KIND_CONST;
}

/* format.c: parse and validate the bytes (graph structure, not shapes). */
et_status et_model_parse(const uint8_t *buf, size_t size, et_model *m, char *err, size_t cap);
void et_model_free(et_model *m);
/* Write the model with current shapes, tensor data and state, atomically. */
et_status et_model_save(const et_model *m, const et_tshape *shapes, void *const *data,
                        const et_train_state *st, const char *path, char *err, size_t cap);

/* ---- replacing a file atomically (atomic_file.c) ----------------------------- */
/* Open a unique temporary file next to `path` (symlinks followed), write through a
 * buffer, then commit: fsync, rename over the target, fsync the folder. Any failure
 * leaves the target unchanged and no temporary behind; messages name `path`. */
typedef struct et_afile {
    int fd;
    char *shown;            /* the path as given: every message names it */
    char *target;           /* after following symlinks (== shown when there is none) */
    char *dir, *tmp;        /* target's folder; the temporary file */
    const char *base;       /* file name inside target */
    uint8_t *buf;
    size_t used;
    uint64_t pos;           /* bytes passed to et_afile_write so far */
    uint32_t crc;           /* running CRC32 of those bytes; the caller may reset it to 0 */
    int err;                /* first errno of writing (sticky) */
    const char *err_step;
    int fault_step, fault_errno; /* test hook EDGETRAIN_SAVE_FAULT */
} et_afile;

et_status et_afile_open(et_afile *f, const char *path, char *err, size_t cap);
void et_afile_write(et_afile *f, const void *data, size_t n);  /* copies, then checksums the copy */
void et_afile_pwrite(et_afile *f, uint64_t off, const void *data, size_t n); /* e.g. a header last */
et_status et_afile_commit(et_afile *f, char *err, size_t cap);  /* always releases f */
void et_afile_abort(et_afile *f);                                /* removes the temporary */

/* ---- the op table (ops.c) ------------------------------------------------------ */
typedef struct et_run_env {
    float lr;                 /* scheduled learning rate for this step */
    uint64_t step;            /* optimizer steps done before this run */
    uint64_t seed;            /* session RNG seed */
    uint64_t rng_counter;     /* session RNG counter */
    int nthreads;
    void *ws;
    size_t ws_bytes;
    const void *cache;        /* this node's entry of the eval cache (eval_cache.c), NULL: none */
    size_t cache_bytes;
} et_run_env;

/* A node's tensors: shapes (and, when running, data). Absent slots are NULL. */
typedef struct et_node_io {
    const et_node_def *node;
    const et_tshape *in[ET_NODE_MAX_IN];
    const et_tshape *out[ET_NODE_MAX_OUT];
    void *in_data[ET_NODE_MAX_IN];
    void *out_data[ET_NODE_MAX_OUT];
} et_node_io;

typedef struct et_op_desc {
    const char *name;
    uint8_t min_in, max_in;       /* slots in [min_in, max_in) are optional (-1) */
    uint8_t min_out, max_out;
    uint8_t min_iattr, max_iattr;
    uint8_t min_fattr, max_fattr;
    uint8_t mut_in_mask;          /* inputs written in place (must be persistent) */
    /* Computes out shapes from io->in; on error writes msg and returns ET_ERR_SHAPE. */
    et_status (*infer)(const et_node_io *io, et_tshape *out, char *msg, size_t cap);
    size_t (*ws_bytes)(const et_node_io *io, int nthreads); /* NULL: needs none */
    et_status (*run)(const et_node_io *io, const et_run_env *env);
    /* Data the op derives from its stored inputs in cache_in_mask (packed weights, BatchNorm
     * factors) on every run, kept by an EVAL program while they are unchanged (eval_cache.c):
     * its bytes for these shapes (0: none) and how to make it; run then finds it in
     * env->cache and must compute the same bits as without it. NULL: the op keeps none. */
    size_t (*cache_bytes)(const et_node_io *io);
    et_status (*cache_fill)(const et_node_io *io, void *cache, size_t bytes, int nthreads);
    uint8_t cache_in_mask;
} et_op_desc;

const et_op_desc *et_op_desc_get(int op); /* NULL if out of range */

/* ---- memory (plan.c) ------------------------------------------------------------ */
/* Persistent blocks, allocated once at load, 64-byte aligned, zeroed, then
 * filled from the file: params (PARAM + BUFFER, file order), grads (GRAD, in
 * the order of their PARAM owners; empty with m->grads_in_arena), optimizer
 * (OPTSTATE, same order), consts. */
enum { ET_BLOCK_PARAMS, ET_BLOCK_GRADS, ET_BLOCK_OPTIMIZER, ET_BLOCK_CONSTS, ET_BLOCK_COUNT_ };

typedef struct et_persist {
    uint8_t *block[ET_BLOCK_COUNT_];
    size_t bytes[ET_BLOCK_COUNT_];
    void **ptr;                        /* per tensor; NULL for INPUT and ACT */
} et_persist;

et_status et_persist_build(const et_model *m, et_persist *p, char *err, size_t cap);
void et_persist_free(et_persist *p);

/* An image-first segment of the EVAL program (plan.c): consecutive nodes that compute each
 * image from the same image only (conv2d on stored weights, add, act) on activations too large
 * for the cache. A run takes the batch through it image by image: one image per chunk, each
 * on one thread with single-thread kernels (or, with fewer images than threads, one image at a
 * time with every thread), so an image's tensors stay in the cache from node to node. Tensors
 * read only inside the segment ("internal") have no place in the arena: a slot per thread
 * holds one image of them (et_plan.seg_off) and then the nodes' workspace. Chosen from the
 * shapes only, so a run computes the same bits for every thread count. */
#define ET_SEGMENT_MIN_BYTES ((size_t)8 << 20) /* a node joins when its input or output (whole batch) has this many bytes */
/* Channel-blocked pairs inside a segment: a pointwise conv2d whose output only the next node, a
 * depthwise conv2d, reads runs with it a block of channels at a time (plan.c, pair_block): the
 * pointwise output of one block (at most ET_SEGMENT_PAIR_BYTES, a multiple of 8 channels, at
 * most 32) stays in the cache for the depthwise pass instead of a whole image of it going
 * through main memory. Each output channel of either conv depends on its own weights only, so
 * the blocks compute the bits of the whole image. */
#define ET_SEGMENT_PAIR_BYTES ((size_t)512 << 10)
typedef struct et_segment {
    uint32_t from, to;  /* node positions [from, to) of the EVAL program */
    int64_t batch;      /* dim 0 of every activation the segment reads or writes */
    size_t image_bytes; /* one image of the internal tensors, laid out by et_plan.seg_off */
} et_segment;

/* A concurrent group (plan.c) of the TRAIN or GRAD program: consecutive nodes none of which
 * writes a tensor another one reads or writes, each with no tensor over ET_GROUP_MAX_ELEMS
 * elements (a convolution's input and weight gradients at small planes, runs of small
 * optimizer updates). A run hands its nodes out as the chunks of one pool job: each node runs
 * on one thread with single-thread kernels, beside the others, in its own workspace (the
 * group's, at the first node's place in ws_at, ws_off into it). Every arena tensor a node of
 * the group reads or writes lives over the whole group. Chosen from the shapes only; a node's
 * kernels compute the same bits at every thread count, so a run does too. Per node position:
 * to == 0 outside groups. */
#define ET_GROUP_MAX_ELEMS ((int64_t)1 << 17)
#define ET_GROUP_MAX_NODES 4096
typedef struct et_group_pos {
    uint32_t from, to;       /* the group's node positions [from, to) */
    size_t ws_off, ws_bytes; /* this node's workspace inside the group's */
} et_group_pos;

/* What depends on the input shapes: every tensor's shape, the inputs block,
 * the activation arena (one layout per program) and the kernel workspace. */
typedef struct et_plan {
    et_tshape *shape;                          /* per tensor, current */
    size_t *act_off[ET_PROGRAM_COUNT_];        /* per tensor: arena offset, ET_NO_OFFSET if unused */
    size_t *input_off;                         /* per tensor: offset in the inputs block */
    uint8_t *inputs;
    size_t inputs_bytes;
    uint8_t *arena;
    size_t arena_bytes;                        /* max over programs */
    size_t *ws_at[ET_PROGRAM_COUNT_];          /* per node position k: [2k] arena offset of its workspace
                                                  (ET_NO_OFFSET: the ws block), [2k + 1] its bytes */
    uint8_t *ws;                               /* for the nodes whose workspace has no room in the arena */
    size_t ws_bytes;
    size_t act_unplanned_bytes;                /* max over programs of the sum of ACT sizes */
    size_t ws_unplanned_bytes;                 /* the largest workspace of any node */
    et_segment *segs;                          /* the EVAL program's image-first segments */
    uint32_t n_segs;
    size_t *seg_off;                           /* per tensor: an internal tensor's offset inside a slot,
                                                  ET_NO_OFFSET: not internal (NULL without segments) */
    uint32_t *seg_cb;                          /* per EVAL node position: the channel block of the
                                                  channel-blocked pair starting there, 0: none (NULL
                                                  without segments) */
    et_group_pos *grp[ET_PROGRAM_COUNT_];      /* per node position of the program: its concurrent
                                                  group (NULL: the program has none) */
} et_plan;

/* Infers every shape from `base` (shapes of all non-ACT tensors; ACT entries
 * are kept for activations no program computes), plans and allocates. On
 * error *out is untouched and err holds "node 17 (conv2d in layer 'x'): ...". */
et_status et_plan_build(const et_model *m, const et_tshape *base, int nthreads, et_plan *out, char *err, size_t cap);
/* et_plan_build with a check called after every shape and size is known and before any of
 * the plan's buffers is allocated (NULL: none); its failure is the build's. */
typedef et_status (*et_plan_check_fn)(const et_model *m, const et_plan *p, void *ctx, char *err, size_t cap);
et_status et_plan_build_checked(const et_model *m, const et_tshape *base, int nthreads, et_plan_check_fn check,
                                void *ctx, et_plan *out, char *err, size_t cap);
/* Bytes of the persistent blocks et_persist_build would allocate. */
uint64_t et_persist_total_bytes(const et_model *m);
/* Bytes of the ws block the plan's shapes need with nthreads threads (the workspaces with no
 * room in the arena). */
size_t et_plan_workspace_bytes(const et_model *m, const et_plan *p, int nthreads);
/* 1 if the gradients may live in the activation arena: the model has GRAD tensors, the
 * TRAIN (else GRAD) program writes each of them, and no program reads one before writing it. */
int et_grads_arena_ok(const et_model *m);
uint64_t et_grads_bytes(const et_model *m); /* every GRAD tensor, 64-byte aligned */
/* With grads_in_arena: copies the gradients from one plan's arena to another's (a re-plan keeps them). */
void et_plan_copy_grads(const et_model *m, const et_plan *from, et_plan *to);
/* Places every node's workspace for a new thread count; grows the ws block if needed. */
et_status et_plan_set_threads(const et_model *m, et_plan *p, int nthreads, char *err, size_t cap);
void et_plan_free(et_plan *p);
/* Bytes of the workspace of the concurrent group starting at node position `from`. */
size_t et_group_ws_bytes(const et_group_pos *gp, uint32_t from);
/* How a segment runs with nthreads threads: `slots` slots of slot_bytes (the EVAL workspace of
 * its first node: ws_at), each holding one image's internal tensors then, at ws_off, the
 * workspace of its nodes run with kthreads threads. */
typedef struct et_segment_slots {
    int slots, kthreads;
    size_t slot_bytes, ws_off;
} et_segment_slots;
void et_segment_slots_get(const et_model *m, const et_plan *p, const et_segment *g, int nthreads,
                          et_segment_slots *out);
/* Node ni of segment g for image img: shapes with dim 0 = 1 for the activations (kept in
 * img_shape) and data in the arena (ptr), or in `slot` for the internal tensors. */
void et_segment_io_bind(const et_model *m, const et_plan *p, void *const *ptr, const et_segment *g, uint32_t ni,
                        int64_t img, uint8_t *slot, et_tshape img_shape[ET_NODE_MAX_IN + ET_NODE_MAX_OUT],
                        et_node_io *io);
/* Channels [c0, c0 + cn) of the channel-blocked pair at node positions k, k + 1 of segment g
 * (et_plan.seg_cb[k] > 0) for image img: node copies in nd[2] (the depthwise one with groups =
 * cn), shapes in sh[2], io[2] reading and writing those channels (the pointwise output: the
 * block's buffer in `slot`). With slot NULL (and ptr NULL) only the shapes are set. */
void et_segment_pair_bind(const et_model *m, const et_plan *p, void *const *ptr, const et_segment *g, uint32_t k,
                          int64_t img, int64_t c0, int64_t cn, uint8_t *slot, et_node_def nd[2],
                          et_tshape sh[2][ET_NODE_MAX_IN + ET_NODE_MAX_OUT], et_node_io io[2]);

/* ---- limits (limits.c) ----------------------------------------------------------- */
/* ET_ERR_LIMIT if persistent blocks + the plan's inputs, arena and ws_bytes exceed limit. */
et_status et_plan_check_memory(const et_model *m, const et_plan *p, size_t ws_bytes, uint64_t limit, char *err,
                               size_t cap);
et_status et_threads_check(int nthreads, char *err, size_t cap); /* ET_ERR_ARG above et_thread_limit() */
double et_scheduled_lr(const et_train_state *st, uint64_t t);    /* lr of optimizer step t */
et_status et_state_check(const et_train_state *st, char *err, size_t cap); /* schedule, whole range */
et_status et_lr_check_step(double lr, uint64_t step, char *err, size_t cap); /* ET_ERR_STATE if unusable */
/* The file's state and inputs within the API's limits (ET_ERR_FORMAT). */
et_status et_model_check_limits(const et_model *m, char *err, size_t cap);

/* ---- plans for other batch sizes (plan_cache.c) ------------------------------ */
/* A session keeps its current plan plus up to ET_PLAN_CACHE - 1 spare plans for
 * other input shapes (most recently used first). Switching to a spare swaps two
 * structs and allocates nothing; a new shape builds a plan and frees the least
 * recently used spare. */
#define ET_PLAN_CACHE 4

typedef struct et_plan_cache {
    et_plan spare[ET_PLAN_CACHE - 1]; /* shape == NULL: empty slot */
    et_tshape *home;                  /* shapes SaveToFile writes: those of the load or the last resize */
    et_tshape *scratch;               /* per tensor: a key built without allocating */
    uint8_t *stale;                   /* per tensor: an INPUT not fed since an automatic re-plan */
    int64_t batch_limit;              /* largest batch an automatic re-plan accepts */
} et_plan_cache;

et_status et_plan_cache_init(et_plan_cache *c, const et_model *m, const et_plan *cur, char *err, size_t cap);
void et_plan_cache_free(et_plan_cache *c);
/* Makes *cur the plan for `base` (shapes of all tensors; only INPUT shapes are
 * compared): kept, swapped with a spare, or built (a new plan must pass `check`,
 * the session's memory limit). Spares are then freed, least recently used
 * first, until the current plan and the spares together fit `budget` bytes.
 * On error nothing changes. */
et_status et_plan_cache_use(et_plan_cache *c, const et_model *m, const et_tshape *base, int nthreads,
                            et_plan_check_fn check, void *ctx, uint64_t budget, et_plan *cur, char *err,
                            size_t cap);
void et_plan_cache_drop_spares(et_plan_cache *c); /* e.g. after the thread count grew the workspace */
int et_plan_cache_count(const et_plan_cache *c);   /* spare plans held */

/* ---- the EVAL program's cache of data derived from the weights (eval_cache.c) ---- */
/* A node's io (shapes and data) for the tensors' current shapes and pointers. */
void et_node_io_bind(const et_model *m, const et_tshape *shape, void *const *ptr, uint32_t ni,
                     et_node_io *io);

typedef struct et_eval_cache {
    uint8_t *block;    /* every entry, each 64-byte aligned; NULL: none */
    size_t bytes;
    size_t *off;       /* per node of the model: its entry's offset, ET_NO_OFFSET: none */
    size_t *len;       /* per node: its entry's bytes */
    uint64_t version;  /* the session's weight version the entries were made from */
    int isa;           /* and the ISA */
    int valid;         /* the entries (or no entries) match version and isa */
} et_eval_cache;

/* Lays out the entries of the EVAL program's nodes for the current shapes (c->off, c->len) and
 * returns the bytes of the block they need: 0 when nothing is cached (no op keeps data, an
 * input it derives from is not a stored tensor, or a node of the program writes stored
 * tensors). ET_NO_OFFSET on out of memory. */
size_t et_eval_cache_layout(et_eval_cache *c, const et_model *m, const et_tshape *shape,
                            void *const *ptr);
/* Allocates the block (kept when the size is unchanged) and fills every entry. On failure
 * the block is freed and no entry is used. */
et_status et_eval_cache_fill(et_eval_cache *c, const et_model *m, const et_tshape *shape,
                             void *const *ptr, size_t bytes, int nthreads);
/* Node ni's entry (NULL: none) and its bytes. */
const void *et_eval_cache_entry(const et_eval_cache *c, uint32_t ni, size_t *bytes);
void et_eval_cache_release(et_eval_cache *c); /* frees the block; the next run makes it again */
void et_eval_cache_free(et_eval_cache *c);

/* ---- the non-finite guard of a TRAIN step (guard.c) ---------------------------- */
/* Before the first node that updates a PARAM or OPTSTATE tensor, the loss and
 * the gradient block (or each gradient, when they are in the arena) are checked; BUFFER tensors the forward writes in place
 * (BatchNorm running statistics) are backed up at the start of the step into a
 * buffer allocated at load, and restored when the check fails. */
typedef struct et_guard {
    int policy;                /* et_nonfinite_policy */
    uint32_t at;               /* position in the TRAIN program of the first update node */
    int32_t loss;              /* the TRAIN program's "loss" output, -1 if none */
    uint32_t n_saved;
    uint32_t *saved;           /* BUFFER tensors written before `at` */
    uint8_t *backup;
    uint64_t skipped;          /* steps skipped under ET_NONFINITE_SKIP */
    int last_skipped;          /* the last TRAIN run was skipped */
    int32_t norm;              /* the TRAIN program's "grad_norm" output (clip_grad_norm), -1 if none */
    uint32_t norm_after;       /* position after the node that computes it */
    int32_t accum_count;       /* gradient accumulation: the counter accum_step writes, -1 if none */
    uint32_t accum_after;      /* position after the accum_step node */
    uint32_t n_grads;          /* GRAD tensors (scanned one by one when in the arena) */
    uint32_t *grads;
    size_t *grad_start;        /* n_grads + 1: value offset of each with the GRAD tensors side by side */
} et_guard;

et_status et_guard_init(et_guard *g, const et_model *m, char *err, size_t cap);
void et_guard_free(et_guard *g);
void et_guard_backup(const et_guard *g, const et_model *m, void *const *ptr);
void et_guard_restore(const et_guard *g, const et_model *m, void *const *ptr);
/* ET_OK when the loss and every gradient are finite; else ET_ERR_NONFINITE with
 * a message naming the loss value or the first non-finite gradient. The gradient block's scan
 * runs on up to nthreads threads of the pool. */
et_status et_guard_check(const et_guard *g, const et_model *m, const et_persist *p, void *const *ptr,
                         const et_tshape *shape, int nthreads, char *err, size_t cap);
/* ET_OK when the "grad_norm" output (if any) is finite, else ET_ERR_NONFINITE naming it. */
et_status et_guard_check_norm(const et_guard *g, void *const *ptr, char *err, size_t cap);

#endif /* EDGETRAIN_RUNTIME_INTERNAL_H */
