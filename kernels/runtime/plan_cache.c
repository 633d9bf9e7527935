/* edgetrain — plans for several input shapes (a partial last batch, predict
 * on a few images, a resize back and forth).
 *
 * The session's current plan is a struct it owns; up to ET_PLAN_CACHE - 1
 * spare plans wait here, most recently used first. A plan is identified by the
 * shapes of the INPUT tensors (everything else follows from them). Using a
 * spare swaps it with the current plan: no allocation, no planning. A shape
 * not seen recently builds a plan; the current one becomes the first spare
 * and the least recently used spare is freed. Parameters and optimizer state
 * live in the persistent blocks and do not depend on a plan; gradients in the
 * activation arena (plan.c) are copied to the new current plan at each switch.
 */
#include <string.h>

#include "runtime_internal.h"

et_status et_plan_cache_init(et_plan_cache *c, const et_model *m, const et_plan *cur, char *err, size_t cap) {
    memset(c, 0, sizeof *c);
    size_t n = (size_t)m->n_tensors + 1;
    c->home = (et_tshape *)et_calloc(n, sizeof(et_tshape));
    c->scratch = (et_tshape *)et_calloc(n, sizeof(et_tshape));
    c->stale = (uint8_t *)et_calloc(n, 1);
    if (!c->home || !c->scratch || !c->stale) {
        et_plan_cache_free(c);
        et_msgf(err, cap, "out of memory for the session's plan cache");
        return ET_ERR_NOMEM;
    }
    memcpy(c->home, cur->shape, (size_t)m->n_tensors * sizeof(et_tshape));
    int64_t batch = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == ET_KIND_INPUT && cur->shape[i].ndim > 0 && cur->shape[i].dim[0] > batch)
            batch = cur->shape[i].dim[0];
    c->batch_limit = (int64_t)m->state.max_batch > batch ? (int64_t)m->state.max_batch : batch;
    return ET_OK;
}

void et_plan_cache_drop_spares(et_plan_cache *c) {
    for (int k = 0; k < ET_PLAN_CACHE - 1; k++) et_plan_free(&c->spare[k]);
}

void et_plan_cache_free(et_plan_cache *c) {
    et_plan_cache_drop_spares(c);
    et_free(c->home);
    et_free(c->scratch);
    et_free(c->stale);
    memset(c, 0, sizeof *c);
}

int et_plan_cache_count(const et_plan_cache *c) {
    int n = 0;
    for (int k = 0; k < ET_PLAN_CACHE - 1; k++) n += c->spare[k].shape != NULL;
    return n;
}

/* 1 if plan p was made for the INPUT shapes in base. */
static int same_inputs(const et_model *m, const et_plan *p, const et_tshape *base) {
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == ET_KIND_INPUT && !et_shape_equal(&p->shape[i], &base[i])) return 0;
    return 1;
}

/* Moves spare k to the current slot; the old current plan becomes spare 0. */
static void promote(et_plan_cache *c, int k, et_plan *cur) {
    et_plan old = *cur;
    *cur = c->spare[k];
    for (int j = k; j > 0; j--) c->spare[j] = c->spare[j - 1];
    c->spare[0] = old;
}

static uint64_t plan_bytes(const et_plan *p) {
    return p->shape ? (uint64_t)p->inputs_bytes + p->arena_bytes + p->ws_bytes : 0;
}

/* Frees spares, least recently used first, until the current plan and the spares fit `budget`. */
static void trim_to(et_plan_cache *c, const et_plan *cur, uint64_t budget) {
    uint64_t held = plan_bytes(cur);
    for (int k = 0; k < ET_PLAN_CACHE - 1; k++) held += plan_bytes(&c->spare[k]);
    for (int k = ET_PLAN_CACHE - 2; k >= 0 && held > budget; k--) {
        held -= plan_bytes(&c->spare[k]);
        et_plan_free(&c->spare[k]);
    }
}

et_status et_plan_cache_use(et_plan_cache *c, const et_model *m, const et_tshape *base, int nthreads,
                            et_plan_check_fn check, void *ctx, uint64_t budget, et_plan *cur, char *err,
                            size_t cap) {
    if (same_inputs(m, cur, base)) return ET_OK;
    for (int k = 0; k < ET_PLAN_CACHE - 1; k++) {
        if (c->spare[k].shape && same_inputs(m, &c->spare[k], base)) {
            promote(c, k, cur);
            et_plan_copy_grads(m, &c->spare[0], cur);
            trim_to(c, cur, budget);
            return ET_OK;
        }
    }
    et_plan fresh;
    et_status st = et_plan_build_checked(m, base, nthreads, check, ctx, &fresh, err, cap);
    if (st != ET_OK) return st;
    et_plan_free(&c->spare[ET_PLAN_CACHE - 2]); /* the least recently used */
    c->spare[ET_PLAN_CACHE - 2] = fresh;
    promote(c, ET_PLAN_CACHE - 2, cur);
    et_plan_copy_grads(m, &c->spare[0], cur);
    trim_to(c, cur, budget);
    return ET_OK;
}
