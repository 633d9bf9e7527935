/* edgetrain — memory: the allocation wrapper, persistent blocks, shape
 * inference over all programs, and the activation arena planner.
 *
 * Activations of one program share one arena: each ACT tensor lives from the
 * node that computes it to its last reader (program outputs to the end), and
 * tensors are placed largest first at the lowest 64-byte aligned offset that
 * does not overlap any already placed tensor whose lifetime overlaps. The
 * arena is the maximum over programs. A node's kernel workspace goes into the
 * arena too, at the lowest offset free of every activation alive at that node
 * (below the arena's top); the separate ws block is the largest workspace that
 * found no such room (often none).
 *
 * Gradients in the arena (m->grads_in_arena, decided at load: et_grads_arena_ok and
 * EDGETRAIN_GRADS_IN_ARENA != "0"): a GRAD tensor is written by one backward node of every
 * TRAIN/GRAD run and read after the run (get_gradients), so it is planned like an activation
 * living from its first writer to the end of the program. The program that owns the gradients
 * (TRAIN, else GRAD) places them first; every other program pins them at the same offsets, alive
 * from its own first write (GRAD) or for the whole program (EVAL), so no program overwrites the
 * last run's gradients. Otherwise they get the persistent GRAD block, as before.
 *
 * A reshape's output shares its input's bytes when both are activations each written once by
 * the program (reshape_run then copies nothing): the pair is one item living from the input's
 * writer to the last reader of either.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "runtime_internal.h"

/* ======================================================================= */
/* Allocation wrapper                                                       */
/* ======================================================================= */
#ifdef ET_DEBUG_ALLOC
static int64_t alloc_count = 0; /* process-wide, updated atomically */
static void count_alloc(void) { __atomic_fetch_add(&alloc_count, 1, __ATOMIC_RELAXED); }
int64_t et_debug_alloc_count(void) { return __atomic_load_n(&alloc_count, __ATOMIC_RELAXED); }
#else
static void count_alloc(void) {}
int64_t et_debug_alloc_count(void) { return -1; }
#endif

void *et_malloc(size_t bytes) {
    if (bytes == 0) bytes = 1;
    count_alloc();
    return malloc(bytes);
}

void *et_calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    if (count == 0 || size == 0) count = size = 1;
    count_alloc();
    return calloc(count, size);
}

void et_free(void *p) { free(p); }

void et_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0); /* also returns free pages inside the heap, not only its top */
#endif
}

/* 64-byte aligned and zeroed; the malloc'd base pointer is stored just before. */
void *et_aligned_calloc(size_t bytes) {
    if (bytes > SIZE_MAX - ET_ALIGN - sizeof(void *)) return NULL;
    uint8_t *base = (uint8_t *)et_calloc(bytes + ET_ALIGN + sizeof(void *), 1);
    if (!base) return NULL;
    uintptr_t a = ((uintptr_t)(base + sizeof(void *)) + (ET_ALIGN - 1)) & ~(uintptr_t)(ET_ALIGN - 1);
    memcpy((uint8_t *)a - sizeof(void *), &base, sizeof base);
    return (void *)a;
}

void et_aligned_free(void *p) {
    if (!p) return;
    void *base;
    memcpy(&base, (uint8_t *)p - sizeof(void *), sizeof base);
    free(base);
}

/* ======================================================================= */
/* Persistent blocks                                                        */
/* ======================================================================= */
static int block_of(const et_model *m, et_tensor_kind k) {
    if (k == ET_KIND_GRAD && m->grads_in_arena) return -1;
    switch (k) {
    case ET_KIND_PARAM:
    case ET_KIND_BUFFER: return ET_BLOCK_PARAMS;
    case ET_KIND_GRAD: return ET_BLOCK_GRADS;
    case ET_KIND_OPTSTATE: return ET_BLOCK_OPTIMIZER;
    case ET_KIND_CONST: return ET_BLOCK_CONSTS;
    default: return -1;
    }
}

/* Position key: params/consts in file order; grads and optimizer state in the
 * order of their owning PARAM (ties: file order), so all blocks line up. */
typedef struct persist_item { uint64_t key; uint32_t t; } persist_item;

static int cmp_persist_item(const void *a, const void *b) {
    const persist_item *x = (const persist_item *)a, *y = (const persist_item *)b;
    return x->key < y->key ? -1 : x->key > y->key;
}

uint64_t et_persist_total_bytes(const et_model *m) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (block_of(m, m->tensors[i].kind) >= 0) total += et_align_up(et_shape_bytes(&m->tensors[i].shape));
    return total;
}

et_status et_persist_build(const et_model *m, et_persist *p, char *err, size_t cap) {
    memset(p, 0, sizeof *p);
    persist_item *items = (persist_item *)et_calloc((size_t)m->n_tensors + 1, sizeof *items);
    size_t *off = (size_t *)et_calloc((size_t)m->n_tensors + 1, sizeof *off);
    p->ptr = (void **)et_calloc((size_t)m->n_tensors + 1, sizeof(void *));
    if (!items || !off || !p->ptr) goto nomem;
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const et_tensor_def *t = &m->tensors[i];
        if (block_of(m, t->kind) < 0) continue;
        uint64_t pos = (t->kind == ET_KIND_GRAD || t->kind == ET_KIND_OPTSTATE) ? t->owner : i;
        items[n].key = (pos << 32) | i;
        items[n++].t = i;
    }
    qsort(items, n, sizeof *items, cmp_persist_item);
    for (uint32_t k = 0; k < n; k++) {
        const et_tensor_def *t = &m->tensors[items[k].t];
        int b = block_of(m, t->kind);
        off[items[k].t] = p->bytes[b];
        p->bytes[b] += et_align_up(et_shape_bytes(&t->shape));
    }
    for (int b = 0; b < ET_BLOCK_COUNT_; b++)
        if (!(p->block[b] = (uint8_t *)et_aligned_calloc(p->bytes[b]))) goto nomem;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const et_tensor_def *t = &m->tensors[i];
        int b = block_of(m, t->kind);
        if (b < 0) continue;
        p->ptr[i] = p->block[b] + off[i];
        if (et_kind_has_data(t->kind)) memcpy(p->ptr[i], m->data + t->data_off, (size_t)t->data_size);
    }
    et_free(items);
    et_free(off);
    return ET_OK;
nomem:
    et_free(items);
    et_free(off);
    et_persist_free(p);
    et_msgf(err, cap, "out of memory for the model's parameters, gradients and optimizer state");
    return ET_ERR_NOMEM;
}

void et_persist_free(et_persist *p) {
    for (int b = 0; b < ET_BLOCK_COUNT_; b++) et_aligned_free(p->block[b]);
    et_free(p->ptr);
    memset(p, 0, sizeof *p);
}

/* ======================================================================= */
/* Shape inference                                                          */
/* ======================================================================= */
static void node_io_shapes(const et_model *m, const et_node_def *nd, const et_tshape *shape, et_node_io *io) {
    (void)m;
    memset(io, 0, sizeof *io);
    io->node = nd;
    for (int k = 0; k < ET_NODE_MAX_IN; k++) io->in[k] = nd->in[k] >= 0 ? &shape[nd->in[k]] : NULL;
    for (int k = 0; k < ET_NODE_MAX_OUT; k++) io->out[k] = nd->out[k] >= 0 ? &shape[nd->out[k]] : NULL;
}

/* The tensor in a node's slot j: inputs 0 .. ET_NODE_MAX_IN - 1, then the outputs (-1: none). */
static int32_t slot_tensor(const et_node_def *nd, int j) {
    return j < ET_NODE_MAX_IN ? nd->in[j] : nd->out[j - ET_NODE_MAX_IN];
}

static et_status node_error(const et_model *m, uint32_t ni, char *err, size_t cap, const char *detail) {
    const et_node_def *nd = &m->nodes[ni];
    et_msgf(err, cap, "node %u (%s in layer '%s'): %s", ni, et_op_name(nd->op), nd->layer, detail);
    return ET_ERR_SHAPE;
}

/* Stores a node's inferred outputs; a tensor computed before (by another
 * program's node, or a GRAD with its PARAM's shape) must agree. */
static et_status store_outputs(const et_model *m, uint32_t ni, const et_tshape *out, et_tshape *shape,
                               uint8_t *known, char *err, size_t cap) {
    const et_node_def *nd = &m->nodes[ni];
    char detail[ET_MSG_CAP], a[128], b[128];
    for (int k = 0; k < nd->n_out; k++) {
        int32_t t = nd->out[k];
        if (t < 0) continue;
        if (!et_shape_is_sane(&out[k])) {
            snprintf(detail, sizeof detail, "output %d would have %s, more than 2^40 bytes", k,
                     et_shape_str(&out[k], a, sizeof a));
            return node_error(m, ni, err, cap, detail);
        }
        if (known[t] && !et_shape_equal(&shape[t], &out[k])) {
            snprintf(detail, sizeof detail, "output %d (tensor %d '%s') is %s but the node computes %s", k, t,
                     m->tensors[t].name, et_shape_str(&shape[t], a, sizeof a), et_shape_str(&out[k], b, sizeof b));
            return node_error(m, ni, err, cap, detail);
        }
        shape[t] = out[k];
        known[t] = 1;
    }
    return ET_OK;
}

static et_status infer_node(const et_model *m, uint32_t ni, et_tshape *shape, uint8_t *known, char *err, size_t cap) {
    const et_node_def *nd = &m->nodes[ni];
    const et_op_desc *d = et_op_desc_get(nd->op);
    char detail[ET_MSG_CAP];
    et_node_io io;
    et_tshape out[ET_NODE_MAX_OUT];
    memset(out, 0, sizeof out);
    for (int k = 0; k < nd->n_in; k++) {
        if (nd->in[k] >= 0 && !known[nd->in[k]]) { /* excluded by the reader's dataflow check */
            snprintf(detail, sizeof detail, "input %d (tensor %d) has no shape yet", k, nd->in[k]);
            return node_error(m, ni, err, cap, detail);
        }
    }
    node_io_shapes(m, nd, shape, &io);
    detail[0] = '\0';
    if (d->infer(&io, out, detail, sizeof detail) != ET_OK) return node_error(m, ni, err, cap, detail);
    return store_outputs(m, ni, out, shape, known, err, cap);
}

static et_status infer_all(const et_model *m, et_tshape *shape, uint8_t *known, uint8_t *done, char *err, size_t cap) {
    for (uint32_t i = 0; i < m->n_tensors; i++) known[i] = m->tensors[i].kind != ET_KIND_ACT;
    memset(done, 0, m->n_nodes);
    for (int p = 0; p < ET_PROGRAM_COUNT_; p++) {
        const et_program_def *pg = &m->programs[p];
        if (!pg->present) continue;
        for (uint32_t k = 0; k < pg->n_nodes; k++) {
            uint32_t ni = pg->nodes[k];
            if (done[ni]) continue;
            et_status st = infer_node(m, ni, shape, known, err, cap);
            if (st != ET_OK) return st;
            done[ni] = 1;
        }
    }
    return ET_OK;
}

/* ======================================================================= */
/* Activation arena                                                         */
/* ======================================================================= */
typedef struct act_item {
    size_t size, off;
    int64_t first, last; /* node positions; outputs live to n_nodes */
    uint32_t t;
    int pinned;          /* a gradient at the owning program's offset (placed before the others) */
} act_item;

typedef struct span { size_t off, end; } span;

static int cmp_act_item(const void *a, const void *b) {
    const act_item *x = (const act_item *)a, *y = (const act_item *)b;
    if (x->pinned != y->pinned) return x->pinned ? -1 : 1;
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}

static int cmp_span(const void *a, const void *b) {
    const span *x = (const span *)a, *y = (const span *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

typedef struct plan_scratch {
    int64_t *first, *last; /* per tensor */
    int32_t *alias;        /* per tensor: the tensor whose bytes it shares (a reshape's input), or -1 */
    uint8_t *writes;       /* per tensor: how many nodes of the program write it (saturating) */
    act_item *items;       /* per tensor (at most) */
    span *busy;            /* per tensor (at most) */
    uint8_t *mark;         /* per tensor: read / written by the concurrent group being formed */
} plan_scratch;

/* The program whose plan places the gradients (TRAIN, else GRAD), -1 if none. */
static int grads_owner(const et_model *m) {
    if (!m->grads_in_arena) return -1;
    if (m->programs[ET_PROGRAM_TRAIN].present) return ET_PROGRAM_TRAIN;
    return m->programs[ET_PROGRAM_GRAD].present ? ET_PROGRAM_GRAD : -1;
}

/* 1 if tensor i is planned in the arena: an activation, or a gradient with grads_in_arena. */
static int in_arena(const et_model *m, uint32_t i) {
    return m->tensors[i].kind == ET_KIND_ACT || (m->tensors[i].kind == ET_KIND_GRAD && m->grads_in_arena);
}

/* Reshape outputs that can share their input's bytes (s->alias), the input's lifetime extended
 * over the output's. Only activations written exactly once, the input before the reshape: no
 * later write can then change one through the other (in-place updates only write persistent
 * tensors). A chain of reshapes shares the first input's bytes. */
static void alias_reshapes(const et_model *m, const et_program_def *pg, plan_scratch *s) {
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        const et_node_def *nd = &m->nodes[pg->nodes[k]];
        if (nd->op != ET_OP_RESHAPE || nd->n_in < 1 || nd->n_out < 1) continue;
        int32_t x = nd->in[0], y = nd->out[0];
        if (x < 0 || y < 0 || x == y || m->tensors[x].kind != ET_KIND_ACT || m->tensors[y].kind != ET_KIND_ACT)
            continue;
        if (s->writes[x] != 1 || s->writes[y] != 1 || s->first[x] >= (int64_t)k) continue;
        int32_t root = s->alias[x] >= 0 ? s->alias[x] : x;
        s->alias[y] = root;
        if (s->last[y] > s->last[root]) s->last[root] = s->last[y];
    }
}

/* The EVAL program's segments (sp: the plan holding them) in its lifetimes: every arena tensor a
 * segment reads or writes lives over the whole segment (its images run nodes in another order
 * than the program lists them), and an internal tensor has no place in the arena (first = -1). */
static void segment_lifetimes(const et_model *m, const et_program_def *pg, const et_plan *sp, plan_scratch *s) {
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (sp->seg_off[i] != ET_NO_OFFSET) s->first[i] = -1;
    for (uint32_t g = 0; g < sp->n_segs; g++) {
        const et_segment *sg = &sp->segs[g];
        for (uint32_t k = sg->from; k < sg->to; k++) {
            const et_node_def *nd = &m->nodes[pg->nodes[k]];
            for (int j = 0; j < ET_NODE_MAX_IN + ET_NODE_MAX_OUT; j++) {
                int32_t t = slot_tensor(nd, j);
                if (t < 0 || sp->seg_off[t] != ET_NO_OFFSET) continue;
                if (s->alias[t] >= 0) t = s->alias[t];
                if (s->first[t] > (int64_t)sg->from) s->first[t] = sg->from;
                if (s->last[t] < (int64_t)sg->to - 1) s->last[t] = sg->to - 1;
            }
        }
    }
}

/* A concurrent group's nodes run side by side in any order: every arena tensor one of them
 * reads or writes lives over the whole group, so no two of them share bytes. */
static void group_lifetimes(const et_model *m, const et_program_def *pg, const et_group_pos *gp, plan_scratch *s) {
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        if (!gp[k].to) continue;
        const et_node_def *nd = &m->nodes[pg->nodes[k]];
        for (int j = 0; j < ET_NODE_MAX_IN + ET_NODE_MAX_OUT; j++) {
            int32_t t = slot_tensor(nd, j);
            if (t < 0) continue;
            if (s->alias[t] >= 0) t = s->alias[t];
            if (s->first[t] < 0) continue; /* not computed by the program: no place */
            if (s->first[t] > (int64_t)gp[k].from) s->first[t] = gp[k].from;
            if (s->last[t] < (int64_t)gp[k].to - 1) s->last[t] = gp[k].to - 1;
        }
    }
}

/* Lifetimes of the program's activations (and gradients in the arena: from their first
 * writer, or the program's start when it writes none, to the end); returns how many.
 * p: the plan whose segments (program pi = EVAL) or concurrent groups the program runs, or
 * NULL for the plain node order. */
static uint32_t collect_lifetimes(const et_model *m, int pi, const et_tshape *shape, const et_plan *p,
                                  plan_scratch *s) {
    const et_program_def *pg = &m->programs[pi];
    for (uint32_t i = 0; i < m->n_tensors; i++) s->first[i] = s->last[i] = -1, s->alias[i] = -1, s->writes[i] = 0;
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        const et_node_def *nd = &m->nodes[pg->nodes[k]];
        for (int j = 0; j < nd->n_in; j++)
            if (nd->in[j] >= 0) s->last[nd->in[j]] = k;
        for (int j = 0; j < nd->n_out; j++) {
            int32_t t = nd->out[j];
            if (t < 0) continue;
            if (s->first[t] < 0) s->first[t] = k;
            if (s->last[t] < (int64_t)k) s->last[t] = k;
            if (s->writes[t] < 2) s->writes[t]++;
        }
    }
    for (uint32_t k = 0; k < pg->n_outputs; k++) s->last[pg->outputs[k].tensor] = pg->n_nodes;
    alias_reshapes(m, pg, s);
    if (p && pi == ET_PROGRAM_EVAL && p->n_segs) segment_lifetimes(m, pg, p, s);
    if (p && p->grp[pi]) group_lifetimes(m, pg, p->grp[pi], s);
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        if (!in_arena(m, i) || s->alias[i] >= 0) continue;
        if (m->tensors[i].kind == ET_KIND_GRAD) {
            if (s->first[i] < 0) s->first[i] = 0;
            s->last[i] = pg->n_nodes;
        }
        if (s->first[i] < 0) continue;
        size_t bytes = et_align_up(et_shape_bytes(&shape[i]));
        s->items[n] = (act_item){bytes ? bytes : ET_ALIGN, 0, s->first[i], s->last[i], i, 0};
        n++;
    }
    return n;
}

/* Lowest offset where `size` bytes overlap none of the nb busy spans. */
static size_t first_gap(span *busy, uint32_t nb, size_t size) {
    qsort(busy, nb, sizeof *busy, cmp_span);
    size_t off = 0;
    for (uint32_t j = 0; j < nb; j++) {
        if (off + size <= busy[j].off) break;
        if (busy[j].end > off) off = busy[j].end;
    }
    return off;
}

/* Lowest offset for item i that avoids every placed item alive at the same time. */
static size_t lowest_free_offset(const act_item *items, uint32_t i, span *busy) {
    uint32_t nb = 0;
    for (uint32_t j = 0; j < i; j++)
        if (items[j].first <= items[i].last && items[i].first <= items[j].last)
            busy[nb++] = (span){items[j].off, items[j].off + items[j].size};
    return first_gap(busy, nb, items[i].size);
}

/* pin: the gradients' offsets planned by their owning program, NULL when this is it. */
static void plan_program(const et_model *m, int pi, const et_tshape *shape, const size_t *pin, const et_plan *p,
                         plan_scratch *s, size_t *off, size_t *arena_bytes, size_t *unplanned) {
    uint32_t n = collect_lifetimes(m, pi, shape, p, s);
    for (uint32_t i = 0; pin && i < n; i++)
        if (m->tensors[s->items[i].t].kind == ET_KIND_GRAD) {
            s->items[i].pinned = 1;
            s->items[i].off = pin[s->items[i].t];
        }
    qsort(s->items, n, sizeof *s->items, cmp_act_item);
    size_t top = 0, sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!s->items[i].pinned) s->items[i].off = lowest_free_offset(s->items, i, s->busy);
        if (s->items[i].off + s->items[i].size > top) top = s->items[i].off + s->items[i].size;
        sum += s->items[i].size;
    }
    for (uint32_t i = 0; i < m->n_tensors; i++) off[i] = ET_NO_OFFSET;
    for (uint32_t i = 0; i < n; i++) off[s->items[i].t] = s->items[i].off;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (s->alias[i] >= 0) off[i] = off[s->alias[i]];
    *arena_bytes = top;
    *unplanned = sum;
}

/* 1 if tensor t is an input of node nd (any slot). */
static int reads(const et_node_def *nd, int32_t t) {
    for (int j = 0; j < nd->n_in; j++)
        if (nd->in[j] == t) return 1;
    return 0;
}

/* 1 if tensor t is an output of node nd. */
static int writes(const et_node_def *nd, int32_t t) {
    for (int j = 0; j < nd->n_out; j++)
        if (nd->out[j] == t) return 1;
    return 0;
}

/* Position of the first node of pg that reads (*read = 1) or writes tensor t, or -1. */
static int64_t first_use(const et_model *m, const et_program_def *pg, int32_t t, int *read) {
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        const et_node_def *nd = &m->nodes[pg->nodes[k]];
        *read = reads(nd, t);
        if (*read || writes(nd, t)) return k;
    }
    return -1;
}

int et_grads_arena_ok(const et_model *m) {
    const int owner = m->programs[ET_PROGRAM_TRAIN].present ? ET_PROGRAM_TRAIN
                      : m->programs[ET_PROGRAM_GRAD].present ? ET_PROGRAM_GRAD : -1;
    int any = 0;
    for (uint32_t t = 0; t < m->n_tensors && owner >= 0; t++) {
        if (m->tensors[t].kind != ET_KIND_GRAD) continue;
        any = 1;
        for (int k = 0; k < ET_PROGRAM_COUNT_; k++) {
            if (!m->programs[k].present) continue;
            int read = 0;
            int64_t at = first_use(m, &m->programs[k], (int32_t)t, &read);
            if (read || (k == owner && at < 0)) return 0; /* a run would see the previous value */
        }
    }
    return any && owner >= 0;
}

uint64_t et_grads_bytes(const et_model *m) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == ET_KIND_GRAD) total += et_align_up(et_shape_bytes(&m->tensors[i].shape));
    return total;
}

void et_plan_copy_grads(const et_model *m, const et_plan *from, et_plan *to) {
    const int owner = grads_owner(m);
    if (owner < 0 || !from->arena || !to->arena) return;
    for (uint32_t t = 0; t < m->n_tensors; t++) {
        size_t a = from->act_off[owner][t], b = to->act_off[owner][t];
        if (m->tensors[t].kind == ET_KIND_GRAD && a != ET_NO_OFFSET && b != ET_NO_OFFSET)
            memcpy(to->arena + b, from->arena + a, et_shape_bytes(&m->tensors[t].shape));
    }
}

/* ======================================================================= */
/* Workspace, inputs, the whole plan                                        */
/* ======================================================================= */
static size_t node_ws_bytes(const et_model *m, const et_node_def *nd, const et_tshape *shape, int nthreads) {
    const et_op_desc *d = et_op_desc_get(nd->op);
    if (!d->ws_bytes) return 0;
    et_node_io io;
    node_io_shapes(m, nd, shape, &io);
    return d->ws_bytes(&io, nthreads);
}

/* ---- image-first segments of the EVAL program (et_segment) ---- */
static int batch_kind(const et_model *m, int32_t t) {
    return t >= 0 && (m->tensors[t].kind == ET_KIND_ACT || m->tensors[t].kind == ET_KIND_INPUT);
}

/* The batch of node nd if it may join a segment, else 0: conv2d of a 4-d f32 activation with
 * stored weights (and BatchNorm inputs), or add / act of activations shaped like the output;
 * one f32 output written once by the program; batch >= 2. Every such node computes image i of
 * its output from image i of its activation inputs alone. *big: input 0 or the output has at
 * least ET_SEGMENT_MIN_BYTES. */
static int64_t segment_batch(const et_model *m, const et_node_def *nd, const et_tshape *shape, const plan_scratch *s,
                             int *big) {
    if (nd->op != ET_OP_CONV2D && nd->op != ET_OP_ADD && nd->op != ET_OP_ACT) return 0;
    if (nd->n_out != 1 || et_op_desc_get(nd->op)->mut_in_mask) return 0;
    const int32_t y = nd->out[0], x = nd->in[0];
    if (y < 0 || m->tensors[y].kind != ET_KIND_ACT || s->writes[y] != 1 || !batch_kind(m, x)) return 0;
    const et_tshape *ys = &shape[y];
    if (ys->dtype != ET_F32 || ys->ndim < 2 || ys->dim[0] < 2) return 0;
    for (int j = 0; j < nd->n_in; j++) {
        const int32_t t = nd->in[j];
        if (t < 0) continue;
        if (nd->op == ET_OP_CONV2D) {
            if (j == 0 ? shape[t].ndim != 4 || shape[t].dtype != ET_F32 || shape[t].dim[0] != ys->dim[0]
                       : !et_kind_has_data(m->tensors[t].kind))
                return 0;
        } else if (!batch_kind(m, t) || !et_shape_equal(&shape[t], ys)) {
            return 0;
        }
    }
    *big = et_shape_bytes(&shape[x]) >= ET_SEGMENT_MIN_BYTES || et_shape_bytes(ys) >= ET_SEGMENT_MIN_BYTES;
    return ys->dim[0];
}

/* One image of an internal tensor: its place in a slot and its lifetime inside the segment. */
static size_t image_bytes(const et_tshape *sh) { return et_align_up(et_shape_bytes(sh) / (size_t)sh->dim[0]); }

/* The channel block (ET_SEGMENT_PAIR_BYTES) if the nodes at positions k, k + 1 of the EVAL
 * program form a channel-blocked pair, else 0: k a pointwise conv2d (1x1, stride 1, no
 * padding, one group) whose output y only k + 1 reads, as its input 0 alone; k + 1 a depthwise
 * conv2d of y; more channels than one block. Both must be in one segment (the caller's). */
static uint32_t pair_block(const et_model *m, const et_program_def *pg, const et_tshape *shape,
                           const plan_scratch *s, uint32_t k) {
    const et_node_def *a = &m->nodes[pg->nodes[k]], *b = &m->nodes[pg->nodes[k + 1]];
    if (a->op != ET_OP_CONV2D || b->op != ET_OP_CONV2D) return 0;
    const int64_t *ia = a->iattr, *ib = b->iattr;
    const int32_t y = a->out[0];
    if (y < 0 || b->in[0] != y || s->last[y] != (int64_t)k + 1 || a->in[1] < 0 || b->in[1] < 0) return 0;
    for (int j = 1; j < ET_NODE_MAX_IN; j++)
        if (b->in[j] == y) return 0;
    const et_tshape *wa = &shape[a->in[1]], *wb = &shape[b->in[1]], *ys = &shape[y];
    if (wa->ndim != 4 || wa->dim[2] != 1 || wa->dim[3] != 1 || ia[0] != 1 || ia[1] != 1 || ia[2] || ia[3] ||
        ia[4] || ia[5] || ia[8] != 1)
        return 0;
    const int64_t oc = ys->dim[1];
    if (wb->ndim != 4 || wb->dim[1] != 1 || ib[8] != oc || wb->dim[0] != oc) return 0;
    const size_t plane = (size_t)ys->dim[2] * (size_t)ys->dim[3] * sizeof(float);
    int64_t cb = 32;
    while (cb > 8 && (size_t)cb * plane > ET_SEGMENT_PAIR_BYTES) cb -= 8;
    return cb < oc ? (uint32_t)cb : 0;
}

/* Lays out one image of segment g's internal tensors (read by no node after it, not an
 * output): lowest free offset, largest first, as the arena (s: the EVAL lifetimes). The
 * output of a channel-blocked pair's first node takes one block. */
static void segment_layout(const et_model *m, const et_program_def *pg, et_plan *p, et_segment *g, plan_scratch *s) {
    uint32_t n = 0;
    for (uint32_t k = g->from; k < g->to; k++) {
        const int32_t y = m->nodes[pg->nodes[k]].out[0];
        if (s->last[y] >= (int64_t)g->to) continue;
        const et_tshape *ys = &p->shape[y];
        const size_t b = p->seg_cb[k] ? et_align_up(et_shape_bytes(ys) / (size_t)(ys->dim[0] * ys->dim[1]) *
                                                    p->seg_cb[k])
                                      : image_bytes(ys);
        s->items[n++] = (act_item){b, 0, k, s->last[y], (uint32_t)y, 0};
    }
    qsort(s->items, n, sizeof *s->items, cmp_act_item);
    size_t top = 0;
    for (uint32_t i = 0; i < n; i++) {
        s->items[i].off = lowest_free_offset(s->items, i, s->busy);
        p->seg_off[s->items[i].t] = s->items[i].off;
        if (s->items[i].off + s->items[i].size > top) top = s->items[i].off + s->items[i].size;
    }
    g->image_bytes = top;
}

/* Finds the EVAL program's segments: runs of consecutive nodes that may join one
 * (segment_batch) with the same batch, starting and ending on a large node, with at least two
 * of them; a small add / act (elementwise: as fast on one image as on the batch) between them
 * joins too. */
static et_status find_segments(const et_model *m, et_plan *p, plan_scratch *s) {
    const et_program_def *pg = &m->programs[ET_PROGRAM_EVAL];
    if (!pg->present) return ET_OK;
    collect_lifetimes(m, ET_PROGRAM_EVAL, p->shape, NULL, s);
    uint32_t n = 0;
    for (uint32_t k = 0; k < pg->n_nodes;) {
        int big = 0;
        const int64_t b = segment_batch(m, &m->nodes[pg->nodes[k]], p->shape, s, &big);
        uint32_t end = k + 1, nbig = 1;
        for (uint32_t e = k + 1; b && big && e < pg->n_nodes; e++) {
            const et_node_def *nd = &m->nodes[pg->nodes[e]];
            int large = 0;
            if (segment_batch(m, nd, p->shape, s, &large) != b || (!large && nd->op == ET_OP_CONV2D)) break;
            if (large) nbig++, end = e + 1;
        }
        if (!b || !big || nbig < 2) {
            k++;
            continue;
        }
        if (!p->segs && !(p->segs = (et_segment *)et_calloc(pg->n_nodes / 2 + 1, sizeof(et_segment))))
            return ET_ERR_NOMEM;
        p->segs[n++] = (et_segment){k, end, b, 0};
        k = end;
    }
    if (!n) return ET_OK;
    if (!(p->seg_off = (size_t *)et_calloc((size_t)m->n_tensors + 1, sizeof(size_t))) ||
        !(p->seg_cb = (uint32_t *)et_calloc((size_t)pg->n_nodes + 1, sizeof(uint32_t))))
        return ET_ERR_NOMEM;
    for (uint32_t i = 0; i <= m->n_tensors; i++) p->seg_off[i] = ET_NO_OFFSET;
    p->n_segs = n;
    for (uint32_t g = 0; g < n; g++)
        for (uint32_t k = p->segs[g].from; k + 1 < p->segs[g].to; k++)
            if (!m->no_pairs && (p->seg_cb[k] = pair_block(m, pg, p->shape, s, k))) k++;
    for (uint32_t g = 0; g < n; g++) segment_layout(m, pg, p, &p->segs[g], s);
    return ET_OK;
}

/* Node ni's shapes for one image of segment g: the activations with dim 0 = 1. */
static void segment_io_shapes(const et_model *m, const et_plan *p, uint32_t ni,
                              et_tshape img[ET_NODE_MAX_IN + ET_NODE_MAX_OUT], et_node_io *io) {
    const et_node_def *nd = &m->nodes[ni];
    node_io_shapes(m, nd, p->shape, io);
    for (int j = 0; j < ET_NODE_MAX_IN + ET_NODE_MAX_OUT; j++) {
        const int32_t t = slot_tensor(nd, j);
        if (!batch_kind(m, t)) continue;
        img[j] = p->shape[t];
        img[j].dim[0] = 1;
        if (j < ET_NODE_MAX_IN) io->in[j] = &img[j];
        else io->out[j - ET_NODE_MAX_IN] = &img[j];
    }
}

void et_segment_pair_bind(const et_model *m, const et_plan *p, void *const *ptr, const et_segment *g, uint32_t k,
                          int64_t img, int64_t c0, int64_t cn, uint8_t *slot, et_node_def nd[2],
                          et_tshape sh[2][ET_NODE_MAX_IN + ET_NODE_MAX_OUT], et_node_io io[2]) {
    const et_program_def *pg = &m->programs[ET_PROGRAM_EVAL];
    for (int j = 0; j < 2; j++) {
        const uint32_t ni = pg->nodes[k + (uint32_t)j];
        if (slot) et_segment_io_bind(m, p, ptr, g, ni, img, slot, sh[j], &io[j]);
        else segment_io_shapes(m, p, ni, sh[j], &io[j]);
        nd[j] = m->nodes[ni];
        io[j].node = &nd[j];
        for (int i = 1; i < ET_NODE_MAX_IN; i++) { /* weights, bias, BatchNorm: dim 0 is the channel */
            if (!io[j].in[i]) continue;
            sh[j][i] = *io[j].in[i];
            const int64_t per = et_shape_numel(&sh[j][i]) / sh[j][i].dim[0];
            sh[j][i].dim[0] = cn;
            io[j].in[i] = &sh[j][i];
            if (io[j].in_data[i]) io[j].in_data[i] = (float *)io[j].in_data[i] + c0 * per;
        }
    }
    sh[0][ET_NODE_MAX_IN].dim[1] = cn; /* the block's buffer */
    sh[1][0].dim[1] = cn;
    et_tshape *ys = &sh[1][ET_NODE_MAX_IN];
    ys->dim[1] = cn;
    if (io[1].out_data[0]) io[1].out_data[0] = (float *)io[1].out_data[0] + c0 * ys->dim[2] * ys->dim[3];
    nd[1].iattr[8] = cn;
}

void et_segment_slots_get(const et_model *m, const et_plan *p, const et_segment *g, int nthreads,
                          et_segment_slots *out) {
    const et_program_def *pg = &m->programs[ET_PROGRAM_EVAL];
    const int wide = g->batch >= nthreads; /* an image per thread, else every thread on each image */
    out->slots = wide ? nthreads : 1;
    out->kthreads = wide ? 1 : nthreads;
    size_t ws = 0;
    for (uint32_t k = g->from; k < g->to; k++) {
        et_tshape img[2][ET_NODE_MAX_IN + ET_NODE_MAX_OUT];
        et_node_io io[2];
        et_node_def nd[2];
        if (p->seg_cb[k]) { /* a pair: its blocks (the last one may be narrower) */
            const int64_t oc = p->shape[m->nodes[pg->nodes[k]].out[0]].dim[1], cb = p->seg_cb[k];
            for (int64_t cn = cb; cn; cn = cn == cb && oc % cb ? oc % cb : 0) {
                et_segment_pair_bind(m, p, NULL, g, k, 0, 0, cn, NULL, nd, img, io);
                for (int j = 0; j < 2; j++) {
                    const et_op_desc *d = et_op_desc_get(nd[j].op);
                    size_t b = d->ws_bytes ? d->ws_bytes(&io[j], out->kthreads) : 0;
                    if (b > ws) ws = b;
                }
            }
            k++;
            continue;
        }
        const et_op_desc *d = et_op_desc_get(m->nodes[pg->nodes[k]].op);
        segment_io_shapes(m, p, pg->nodes[k], img[0], &io[0]);
        size_t b = d->ws_bytes ? d->ws_bytes(&io[0], out->kthreads) : 0;
        if (b > ws) ws = b;
    }
    out->ws_off = et_align_up(g->image_bytes);
    out->slot_bytes = out->ws_off + et_align_up(ws ? ws : 1);
}

void et_segment_io_bind(const et_model *m, const et_plan *p, void *const *ptr, const et_segment *g, uint32_t ni,
                        int64_t img, uint8_t *slot, et_tshape img_shape[ET_NODE_MAX_IN + ET_NODE_MAX_OUT],
                        et_node_io *io) {
    const et_node_def *nd = &m->nodes[ni];
    segment_io_shapes(m, p, ni, img_shape, io);
    for (int j = 0; j < ET_NODE_MAX_IN + ET_NODE_MAX_OUT; j++) {
        const int32_t t = slot_tensor(nd, j);
        void *d = NULL;
        if (t >= 0 && p->seg_off[t] != ET_NO_OFFSET) d = slot + p->seg_off[t];
        else if (batch_kind(m, t)) d = (uint8_t *)ptr[t] + (size_t)img * (et_shape_bytes(&p->shape[t]) / (size_t)g->batch);
        else if (t >= 0) d = ptr[t];
        if (j < ET_NODE_MAX_IN) io->in_data[j] = d;
        else io->out_data[j - ET_NODE_MAX_IN] = d;
    }
}

/* ---- concurrent groups of the TRAIN and GRAD programs (et_group_pos) ---- */
#define GROUP_READ 1u
#define GROUP_WRITE 2u

/* 1 if node nd may join a group: not a reshape (its output may share its input's bytes), and
 * no tensor larger than ET_GROUP_MAX_ELEMS (such a node gains more from every thread). */
static int group_node_ok(const et_node_def *nd, const et_tshape *shape) {
    if (nd->op == ET_OP_RESHAPE) return 0;
    for (int j = 0; j < ET_NODE_MAX_IN + ET_NODE_MAX_OUT; j++) {
        const int32_t t = slot_tensor(nd, j);
        if (t >= 0 && et_shape_numel(&shape[t]) > ET_GROUP_MAX_ELEMS) return 0;
    }
    return 1;
}

/* 1 if node nd writes nothing the marked nodes read or write (its outputs and the inputs it
 * updates in place) and reads nothing they write. */
static int group_fits(const et_node_def *nd, const uint8_t *mark) {
    const uint8_t mut = et_op_desc_get(nd->op)->mut_in_mask;
    for (int j = 0; j < nd->n_in; j++) {
        const int32_t t = nd->in[j];
        if (t >= 0 && (mark[t] & GROUP_WRITE || ((mut >> j) & 1u && mark[t]))) return 0;
    }
    for (int j = 0; j < nd->n_out; j++)
        if (nd->out[j] >= 0 && mark[nd->out[j]]) return 0;
    return 1;
}

/* Marks node nd's reads and writes in mark (or clears them with on = 0). */
static void group_mark(const et_node_def *nd, uint8_t *mark, int on) {
    const uint8_t mut = et_op_desc_get(nd->op)->mut_in_mask;
    for (int j = 0; j < nd->n_in; j++)
        if (nd->in[j] >= 0) mark[nd->in[j]] = on ? mark[nd->in[j]] | ((mut >> j) & 1u ? GROUP_WRITE : GROUP_READ) : 0;
    for (int j = 0; j < nd->n_out; j++)
        if (nd->out[j] >= 0) mark[nd->out[j]] = on ? mark[nd->out[j]] | GROUP_WRITE : 0;
}

size_t et_group_ws_bytes(const et_group_pos *gp, uint32_t from) {
    const et_group_pos *last = &gp[gp[from].to - 1];
    return last->ws_off + et_align_up(last->ws_bytes);
}

/* Finds the concurrent groups of the TRAIN and GRAD programs: maximal runs of consecutive
 * nodes that may join one (group_node_ok), each independent of the ones before it in the run
 * (group_fits), at least two; each node's workspace for one thread after the previous one's. */
static et_status find_groups(const et_model *m, et_plan *p, plan_scratch *s) {
    static const int progs[] = {ET_PROGRAM_TRAIN, ET_PROGRAM_GRAD};
    if (m->no_groups) return ET_OK;
    for (size_t q = 0; q < sizeof progs / sizeof progs[0]; q++) {
        const et_program_def *pg = &m->programs[progs[q]];
        if (!pg->present) continue;
        et_group_pos *gp = NULL;
        for (uint32_t k = 0; k < pg->n_nodes;) {
            uint32_t e = k;
            while (e < pg->n_nodes && e - k < ET_GROUP_MAX_NODES) {
                const et_node_def *nd = &m->nodes[pg->nodes[e]];
                if (!group_node_ok(nd, p->shape) || !group_fits(nd, s->mark)) break;
                group_mark(nd, s->mark, 1);
                e++;
            }
            for (uint32_t j = k; j < e; j++) group_mark(&m->nodes[pg->nodes[j]], s->mark, 0);
            if (e - k < 2) {
                k++;
                continue;
            }
            if (!gp && !(gp = (et_group_pos *)et_calloc((size_t)pg->n_nodes + 1, sizeof *gp))) return ET_ERR_NOMEM;
            size_t off = 0;
            for (uint32_t j = k; j < e; j++) {
                const size_t b = node_ws_bytes(m, &m->nodes[pg->nodes[j]], p->shape, 1);
                gp[j] = (et_group_pos){k, e, off, b};
                off += et_align_up(b);
            }
            k = e;
        }
        p->grp[progs[q]] = gp;
    }
    return ET_OK;
}

/* The workspace node position k of program pi needs and the positions it is used over
 * ([k, *until]): its own, or at the first node of an EVAL segment the segment's slots (none at
 * the segment's other nodes). */
static size_t node_ws_need(const et_model *m, const et_plan *p, int pi, uint32_t k, int nthreads, int64_t *until) {
    const et_program_def *pg = &m->programs[pi];
    *until = k;
    if (p->grp[pi] && p->grp[pi][k].to) { /* at its first node: the group's nodes' workspaces */
        const et_group_pos *g = &p->grp[pi][k];
        if (k != g->from) return 0;
        *until = g->to - 1;
        size_t b = et_group_ws_bytes(p->grp[pi], g->from); /* side by side, one thread each */
        for (uint32_t j = g->from; j < g->to; j++) {      /* or one after another, every thread */
            const size_t one = node_ws_bytes(m, &m->nodes[pg->nodes[j]], p->shape, nthreads);
            if (one > b) b = one;
        }
        return b;
    }
    if (pi == ET_PROGRAM_EVAL && p->n_segs) {
        for (uint32_t g = 0; g < p->n_segs; g++) {
            const et_segment *sg = &p->segs[g];
            if (k < sg->from || k >= sg->to) continue;
            if (k != sg->from) return 0;
            et_segment_slots sl;
            et_segment_slots_get(m, p, sg, nthreads, &sl);
            *until = sg->to - 1;
            return (size_t)sl.slots * sl.slot_bytes;
        }
    }
    return node_ws_bytes(m, &m->nodes[pg->nodes[k]], p->shape, nthreads);
}

/* Largest workspace any node (or segment) of any program needs (a node listed by several
 * programs is simply asked again). */
static size_t workspace_bytes(const et_model *m, const et_plan *p, int nthreads) {
    size_t ws = 0;
    int64_t until;
    for (int pi = 0; pi < ET_PROGRAM_COUNT_; pi++) {
        for (uint32_t k = 0; k < m->programs[pi].n_nodes; k++) {
            size_t b = node_ws_need(m, p, pi, k, nthreads, &until);
            if (b > ws) ws = b;
        }
    }
    return ws;
}

/* Arena offset for `bytes` of workspace over node positions [k0, k1]: the lowest gap among
 * the activations alive there (items: the program's, with their offsets) if it ends below the
 * arena's top, else ET_NO_OFFSET. */
static size_t workspace_gap(const act_item *items, uint32_t n, int64_t k0, int64_t k1, size_t bytes, size_t arena,
                            span *busy) {
    uint32_t nb = 0;
    for (uint32_t j = 0; j < n; j++)
        if (items[j].first <= k1 && k0 <= items[j].last) busy[nb++] = (span){items[j].off, items[j].off + items[j].size};
    size_t off = first_gap(busy, nb, bytes);
    return off + bytes <= arena ? off : ET_NO_OFFSET;
}

/* Places every node's workspace for nthreads threads (ws_at: per program, 2 entries per node,
 * or NULL to measure only); returns the bytes of the ws block: the largest workspace without
 * room in the arena. */
static size_t place_workspaces(const et_model *m, const et_plan *p, int nthreads, plan_scratch *s,
                               size_t *const *ws_at) {
    size_t block = 0;
    for (int pi = 0; pi < ET_PROGRAM_COUNT_; pi++) {
        const et_program_def *pg = &m->programs[pi];
        if (!pg->present) continue;
        uint32_t n = collect_lifetimes(m, pi, p->shape, p, s);
        for (uint32_t i = 0; i < n; i++) s->items[i].off = p->act_off[pi][s->items[i].t];
        for (uint32_t k = 0; k < pg->n_nodes; k++) {
            int64_t until;
            size_t b = node_ws_need(m, p, pi, k, nthreads, &until), off = ET_NO_OFFSET;
            if (b) off = workspace_gap(s->items, n, k, until, et_align_up(b), p->arena_bytes, s->busy);
            if (off == ET_NO_OFFSET && b > block) block = b;
            if (ws_at) {
                ws_at[pi][2 * k] = off;
                ws_at[pi][2 * k + 1] = b;
            }
        }
    }
    return block;
}

static et_status scratch_alloc(const et_model *m, plan_scratch *s) {
    size_t n = (size_t)m->n_tensors + 1;
    s->first = (int64_t *)et_calloc(n, sizeof(int64_t));
    s->last = (int64_t *)et_calloc(n, sizeof(int64_t));
    s->items = (act_item *)et_calloc(n, sizeof(act_item));
    s->busy = (span *)et_calloc(n, sizeof(span));
    s->alias = (int32_t *)et_calloc(n, sizeof(int32_t));
    s->writes = (uint8_t *)et_calloc(n, sizeof(uint8_t));
    s->mark = (uint8_t *)et_calloc(n, sizeof(uint8_t));
    return s->first && s->last && s->items && s->busy && s->alias && s->writes && s->mark ? ET_OK : ET_ERR_NOMEM;
}

static void scratch_free(plan_scratch *s) {
    et_free(s->first);
    et_free(s->last);
    et_free(s->items);
    et_free(s->busy);
    et_free(s->alias);
    et_free(s->writes);
    et_free(s->mark);
}

/* Per program: 2 entries per node (workspace offset, bytes); ET_OK or ET_ERR_NOMEM. */
static et_status ws_at_alloc(const et_model *m, size_t **ws_at) {
    et_status st = ET_OK;
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) {
        ws_at[k] = (size_t *)et_calloc(2 * (size_t)m->programs[k].n_nodes + 1, sizeof(size_t));
        if (!ws_at[k]) st = ET_ERR_NOMEM;
    }
    return st;
}

static void ws_at_free(size_t **ws_at) {
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) {
        et_free(ws_at[k]);
        ws_at[k] = NULL;
    }
}

static size_t layout_inputs(const et_model *m, const et_tshape *shape, size_t *off) {
    size_t pos = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        off[i] = ET_NO_OFFSET;
        if (m->tensors[i].kind != ET_KIND_INPUT) continue;
        off[i] = pos;
        pos += et_align_up(et_shape_bytes(&shape[i]));
    }
    return pos;
}

static et_status plan_memory(const et_model *m, int nthreads, et_plan_check_fn check, void *ctx, et_plan *p,
                             char *err, size_t cap) {
    plan_scratch s;
    size_t n = (size_t)m->n_tensors + 1;
    et_status st = ET_ERR_NOMEM;
    if (scratch_alloc(m, &s) != ET_OK || ws_at_alloc(m, p->ws_at) != ET_OK || find_segments(m, p, &s) != ET_OK ||
        find_groups(m, p, &s) != ET_OK)
        goto done;
    const int owner = grads_owner(m);
    for (int j = -1; j < ET_PROGRAM_COUNT_; j++) { /* the gradients' owner first */
        const int k = j < 0 ? owner : j;
        if (k < 0 || (j >= 0 && k == owner)) continue;
        if (!(p->act_off[k] = (size_t *)et_calloc(n, sizeof(size_t)))) goto done;
        for (size_t i = 0; i < n; i++) p->act_off[k][i] = ET_NO_OFFSET;
        if (!m->programs[k].present) continue;
        size_t bytes, unplanned;
        const size_t *pin = owner < 0 || k == owner ? NULL : p->act_off[owner];
        plan_program(m, k, p->shape, pin, p, &s, p->act_off[k], &bytes,
                     &unplanned);
        if (bytes > p->arena_bytes) p->arena_bytes = bytes;
        if (unplanned > p->act_unplanned_bytes) p->act_unplanned_bytes = unplanned;
    }
    if (!(p->input_off = (size_t *)et_calloc(n, sizeof(size_t)))) goto done;
    p->inputs_bytes = layout_inputs(m, p->shape, p->input_off);
    p->ws_bytes = place_workspaces(m, p, nthreads, &s, p->ws_at);
    p->ws_unplanned_bytes = workspace_bytes(m, p, nthreads);
    if ((uint64_t)p->arena_bytes + p->inputs_bytes + p->ws_bytes > ET_MAX_BYTES) {
        et_msgf(err, cap, "the plan needs %llu bytes of activations, inputs and workspace, more than 2^40",
                (unsigned long long)((uint64_t)p->arena_bytes + p->inputs_bytes + p->ws_bytes));
        st = ET_ERR_NOMEM;
        goto out;
    }
    if (check && (st = check(m, p, ctx, err, cap)) != ET_OK) goto out;
    st = ET_ERR_NOMEM;
    p->inputs = (uint8_t *)et_aligned_calloc(p->inputs_bytes);
    p->arena = (uint8_t *)et_aligned_calloc(p->arena_bytes);
    p->ws = (uint8_t *)et_aligned_calloc(p->ws_bytes);
    if (p->inputs && p->arena && p->ws) st = ET_OK;
done:
    if (st == ET_ERR_NOMEM)
        et_msgf(err, cap, "out of memory planning %llu bytes of activations, %llu of inputs and %llu of workspace",
                (unsigned long long)p->arena_bytes, (unsigned long long)p->inputs_bytes, (unsigned long long)p->ws_bytes);
out:
    scratch_free(&s);
    return st;
}

et_status et_plan_build(const et_model *m, const et_tshape *base, int nthreads, et_plan *out, char *err, size_t cap) {
    return et_plan_build_checked(m, base, nthreads, NULL, NULL, out, err, cap);
}

et_status et_plan_build_checked(const et_model *m, const et_tshape *base, int nthreads, et_plan_check_fn check,
                                void *ctx, et_plan *out, char *err, size_t cap) {
    et_plan p;
    memset(&p, 0, sizeof p);
    uint8_t *known = (uint8_t *)et_calloc((size_t)m->n_tensors + 1, 1);
    uint8_t *done = (uint8_t *)et_calloc((size_t)m->n_nodes + 1, 1);
    p.shape = (et_tshape *)et_calloc((size_t)m->n_tensors + 1, sizeof(et_tshape));
    et_status st = ET_ERR_NOMEM;
    if (!known || !done || !p.shape) {
        et_msgf(err, cap, "out of memory for shape inference");
    } else {
        memcpy(p.shape, base, (size_t)m->n_tensors * sizeof(et_tshape));
        st = infer_all(m, p.shape, known, done, err, cap);
        if (st == ET_OK) st = plan_memory(m, nthreads, check, ctx, &p, err, cap);
    }
    et_free(known);
    et_free(done);
    if (st != ET_OK) {
        et_plan_free(&p);
        return st;
    }
    *out = p;
    return ET_OK;
}

size_t et_plan_workspace_bytes(const et_model *m, const et_plan *p, int nthreads) {
    plan_scratch s;
    size_t ws = workspace_bytes(m, p, nthreads); /* without scratch: no workspace in the arena */
    if (scratch_alloc(m, &s) == ET_OK) ws = place_workspaces(m, p, nthreads, &s, NULL);
    scratch_free(&s);
    return ws;
}

et_status et_plan_set_threads(const et_model *m, et_plan *p, int nthreads, char *err, size_t cap) {
    plan_scratch s;
    size_t *ws_at[ET_PROGRAM_COUNT_] = {NULL}, ws = 0;
    uint8_t *buf = NULL;
    et_status st = ET_ERR_NOMEM;
    if (scratch_alloc(m, &s) == ET_OK && ws_at_alloc(m, ws_at) == ET_OK) {
        ws = place_workspaces(m, p, nthreads, &s, ws_at);
        if (ws <= p->ws_bytes || (buf = (uint8_t *)et_aligned_calloc(ws))) st = ET_OK;
    }
    scratch_free(&s);
    if (st != ET_OK) {
        ws_at_free(ws_at);
        et_msgf(err, cap, "out of memory for a %llu byte workspace (%d threads)", (unsigned long long)ws, nthreads);
        return st;
    }
    ws_at_free(p->ws_at);
    memcpy(p->ws_at, ws_at, sizeof ws_at);
    p->ws_unplanned_bytes = workspace_bytes(m, p, nthreads);
    if (buf) {
        et_aligned_free(p->ws);
        p->ws = buf;
        p->ws_bytes = ws;
    }
    return ET_OK;
}

void et_plan_free(et_plan *p) {
    et_free(p->shape);
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) et_free(p->act_off[k]);
    ws_at_free(p->ws_at);
    et_free(p->input_off);
    et_aligned_free(p->inputs);
    et_aligned_free(p->arena);
    et_aligned_free(p->ws);
    et_free(p->segs);
    et_free(p->seg_off);
    et_free(p->seg_cb);
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) et_free(p->grp[k]);
    memset(p, 0, sizeof *p);
}
