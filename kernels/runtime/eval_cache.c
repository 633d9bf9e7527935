/* edgetrain — the EVAL program's cache of data derived from the weights.
 *
 * Some kernels derive data from their stored inputs on every call: conv2d packs its weights
 * into GEMM panels and computes its fused BatchNorm's per-channel factors. In the EVAL
 * program those inputs do not change between runs, so the session keeps that data: one block
 * holding every node's entry (each op's own packer fills it: et_op_desc.cache_fill), handed
 * to the node at run time (et_run_env.cache), so a run with the cache computes the same bits
 * as one without.
 * The block belongs to (weight version, ISA): the session bumps its version on every write of
 * a stored tensor (a TRAIN or GRAD run, et_session_tensor_data handing out a writable pointer)
 * and on every re-plan (Resize, a new batch); the first EVAL run after either makes the
 * entries again. It is allocated at the first EVAL run (checked against the memory limit),
 * freed when the session selects another program or closes. Nothing is cached for a program
 * whose nodes write stored tensors, nor for a node whose cached inputs are not stored tensors
 * (e.g. weights a fake-quant node computes).
 */
#include <string.h>

#include "runtime_internal.h"

#define EC_ALIGN 64

void et_node_io_bind(const et_model *m, const et_tshape *shape, void *const *ptr, uint32_t ni,
                     et_node_io *io) {
    const et_node_def *nd = &m->nodes[ni];
    io->node = nd;
    for (int j = 0; j < ET_NODE_MAX_IN; j++) {
        io->in[j] = nd->in[j] >= 0 ? &shape[nd->in[j]] : NULL;
        io->in_data[j] = nd->in[j] >= 0 ? ptr[nd->in[j]] : NULL;
    }
    for (int j = 0; j < ET_NODE_MAX_OUT; j++) {
        io->out[j] = nd->out[j] >= 0 ? &shape[nd->out[j]] : NULL;
        io->out_data[j] = nd->out[j] >= 0 ? ptr[nd->out[j]] : NULL;
    }
}

/* 1 if node nd writes a stored tensor (an input updated in place, or a stored output). */
static int writes_state(const et_model *m, const et_node_def *nd) {
    const uint8_t mask = et_op_desc_get(nd->op)->mut_in_mask;
    for (int k = 0; k < nd->n_in; k++)
        if (((mask >> k) & 1u) && nd->in[k] >= 0) return 1;
    for (int k = 0; k < ET_NODE_MAX_OUT; k++)
        if (nd->out[k] >= 0 && et_kind_has_data(m->tensors[nd->out[k]].kind)) return 1;
    return 0;
}

/* 1 if every input of nd in mask that is present is a stored tensor with data. */
static int inputs_stored(const et_model *m, const et_node_def *nd, void *const *ptr, uint8_t mask) {
    for (int k = 0; k < nd->n_in && k < 8; k++) {
        const int32_t t = nd->in[k];
        if (!((mask >> k) & 1u) || t < 0) continue;
        if (!et_kind_has_data(m->tensors[t].kind) || !ptr[t]) return 0;
    }
    return 1;
}

size_t et_eval_cache_layout(et_eval_cache *c, const et_model *m, const et_tshape *shape,
                            void *const *ptr) {
    const et_program_def *pg = &m->programs[ET_PROGRAM_EVAL];
    if (!pg->present) return 0;
    if (!c->off) {
        c->off = (size_t *)et_calloc((size_t)m->n_nodes + 1, sizeof(size_t));
        c->len = (size_t *)et_calloc((size_t)m->n_nodes + 1, sizeof(size_t));
        if (!c->off || !c->len) {
            et_free(c->off), et_free(c->len);
            c->off = c->len = NULL;
            return ET_NO_OFFSET;
        }
    }
    for (uint32_t i = 0; i < m->n_nodes; i++) c->off[i] = ET_NO_OFFSET, c->len[i] = 0;
    for (uint32_t k = 0; k < pg->n_nodes; k++)
        if (writes_state(m, &m->nodes[pg->nodes[k]])) return 0;
    size_t total = 0;
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        const uint32_t ni = pg->nodes[k];
        const et_op_desc *d = et_op_desc_get(m->nodes[ni].op);
        if (!d->cache_bytes || !d->cache_fill || !inputs_stored(m, &m->nodes[ni], ptr, d->cache_in_mask))
            continue;
        et_node_io io;
        et_node_io_bind(m, shape, ptr, ni, &io);
        const size_t b = d->cache_bytes(&io);
        if (!b || c->off[ni] != ET_NO_OFFSET) continue; /* a node listed twice keeps one entry */
        c->off[ni] = total;
        c->len[ni] = b;
        total += (b + EC_ALIGN - 1) & ~(size_t)(EC_ALIGN - 1);
    }
    return total;
}

et_status et_eval_cache_fill(et_eval_cache *c, const et_model *m, const et_tshape *shape,
                             void *const *ptr, size_t bytes, int nthreads) {
    if (c->block && c->bytes != bytes) et_eval_cache_release(c);
    if (!c->block) {
        c->block = (uint8_t *)et_aligned_calloc(bytes);
        if (!c->block) return ET_ERR_NOMEM;
        c->bytes = bytes;
    }
    const et_program_def *pg = &m->programs[ET_PROGRAM_EVAL];
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        const uint32_t ni = pg->nodes[k];
        if (c->off[ni] == ET_NO_OFFSET) continue;
        et_node_io io;
        et_node_io_bind(m, shape, ptr, ni, &io);
        et_status st = et_op_desc_get(m->nodes[ni].op)->cache_fill(&io, c->block + c->off[ni], c->len[ni],
                                                                     nthreads);
        if (st != ET_OK) {
            et_eval_cache_release(c);
            return st;
        }
    }
    return ET_OK;
}

const void *et_eval_cache_entry(const et_eval_cache *c, uint32_t ni, size_t *bytes) {
    if (!c->block || !c->off || c->off[ni] == ET_NO_OFFSET) return NULL;
    *bytes = c->len[ni];
    return c->block + c->off[ni];
}

void et_eval_cache_release(et_eval_cache *c) {
    et_aligned_free(c->block);
    c->block = NULL;
    c->bytes = 0;
    c->valid = 0;
}

void et_eval_cache_free(et_eval_cache *c) {
    et_eval_cache_release(c);
    et_free(c->off);
    et_free(c->len);
    c->off = c->len = NULL;
}
