/* edgetrain — runtime tests: a small model written in memory by a tiny .etm
 * writer below, loaded, run (eval and train, checked against a by-hand
 * double-precision reference), resized, saved and reloaded, and a mutation
 * fuzz of the reader. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edgetrain/et_runtime.h"
#include "edgetrain/et_kernels.h"
#include "et_test.h"
#include "runtime_internal.h" /* ET_FORMAT_MINOR: the minor this reader knows */
#include "etm_fix_crcs.h"


/* ======================================================================= */
/* A byte buffer and a minimal .etm writer (mirrors edgetrain/fileformat.py) */
/* ======================================================================= */
typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = (uint8_t *)realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_zeros(bytes *b, size_t n) {
    static const uint8_t z[64];
    while (n) { size_t k = n < 64 ? n : 64; put(b, z, k); n -= k; }
}
static void pad64(bytes *b) { put_zeros(b, (64 - b->n % 64) % 64); }
static void put_u8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(bytes *b, uint16_t v) { put(b, &v, 2); } /* host is little-endian (x86, arm64) */
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_i32(bytes *b, int32_t v) { put(b, &v, 4); }
static void put_i64(bytes *b, int64_t v) { put(b, &v, 8); }
static void put_f32(bytes *b, float v) { put(b, &v, 4); }

typedef struct tt_tensor {
    const char *name;
    et_dtype dtype;
    et_tensor_kind kind;
    int ndim;
    int64_t shape[6];
    uint32_t owner;
    const void *data; /* for kinds with data */
} tt_tensor;

typedef struct tt_node {
    et_op op;
    int n_in, n_out, n_ia, n_fa;
    int32_t in[8], out[4];
    int64_t ia[16];
    float fa[8];
    const char *layer;
} tt_node;

typedef struct tt_prog {
    et_program_kind kind;
    int n_nodes;
    uint32_t nodes[32];
    int n_in;
    uint32_t in[4];
    int n_out;
    const char *out_name[4];
    uint32_t out_t[4];
} tt_prog;

typedef struct tt_model {
    int n_tensors, n_nodes, n_progs;
    tt_tensor t[32];
    tt_node nd[32];
    tt_prog pg[3];
    float base_lr;
    uint32_t sched_kind;
    float sched_f[6];
    int64_t sched_i[6];
    uint32_t warmup;
    uint64_t seed;
    uint32_t max_batch; /* non-zero: written as format minor 1 */
} tt_model;

static int64_t tt_numel(const tt_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static void str_ref(bytes *strings, const char *s, uint32_t *off, uint32_t *len) {
    *off = 0;
    *len = s ? (uint32_t)strlen(s) : 0;
    if (*len == 0) return;
    *off = (uint32_t)strings->n;
    put(strings, s, *len);
}

/* Serialises the model; the caller frees the returned buffer. */
static uint8_t *tt_write(const tt_model *m, size_t *size) {
    bytes str = {0}, ten = {0}, nod = {0}, pro = {0}, sta = {0}, dat = {0}, meta = {0}, out = {0};
    uint32_t off, len;
    put_u32(&ten, (uint32_t)m->n_tensors); put_u32(&ten, 0);
    for (int i = 0; i < m->n_tensors; i++) {
        const tt_tensor *t = &m->t[i];
        size_t bytes_n = (size_t)tt_numel(t) * et_dtype_size(t->dtype);
        uint64_t doff = 0, dsize = 0;
        if (t->data) {
            pad64(&dat);
            doff = dat.n;
            dsize = bytes_n;
            put(&dat, t->data, bytes_n);
        }
        str_ref(&str, t->name, &off, &len);
        put_u32(&ten, off); put_u32(&ten, len);
        put_u8(&ten, (uint8_t)t->dtype); put_u8(&ten, (uint8_t)t->kind); put_u8(&ten, (uint8_t)t->ndim);
        put_u8(&ten, t->kind == ET_KIND_PARAM ? 1 : 0);
        put_u32(&ten, t->owner);
        for (int d = 0; d < 6; d++) put_i64(&ten, d < t->ndim ? t->shape[d] : 0);
        put_u64(&ten, doff); put_u64(&ten, dsize);
        put_zeros(&ten, 16);
    }
    put_u32(&nod, (uint32_t)m->n_nodes); put_u32(&nod, 0);
    for (int i = 0; i < m->n_nodes; i++) {
        const tt_node *n = &m->nd[i];
        put_u16(&nod, (uint16_t)n->op);
        put_u8(&nod, (uint8_t)n->n_in); put_u8(&nod, (uint8_t)n->n_out);
        put_u8(&nod, (uint8_t)n->n_ia); put_u8(&nod, (uint8_t)n->n_fa);
        put_u16(&nod, 0);
        for (int k = 0; k < 8; k++) put_i32(&nod, k < n->n_in ? n->in[k] : -1);
        for (int k = 0; k < 4; k++) put_i32(&nod, k < n->n_out ? n->out[k] : -1);
        for (int k = 0; k < 16; k++) put_i64(&nod, n->ia[k]);
        for (int k = 0; k < 8; k++) put_f32(&nod, n->fa[k]);
        str_ref(&str, n->layer, &off, &len);
        put_u32(&nod, off); put_u32(&nod, len);
    }
    put_u32(&pro, (uint32_t)m->n_progs); put_u32(&pro, 0);
    for (int i = 0; i < m->n_progs; i++) {
        const tt_prog *p = &m->pg[i];
        put_u32(&pro, (uint32_t)p->kind); put_u32(&pro, (uint32_t)p->n_nodes);
        put_u32(&pro, (uint32_t)p->n_in); put_u32(&pro, (uint32_t)p->n_out);
        for (int k = 0; k < p->n_nodes; k++) put_u32(&pro, p->nodes[k]);
        for (int k = 0; k < p->n_in; k++) put_u32(&pro, p->in[k]);
        for (int k = 0; k < p->n_out; k++) {
            str_ref(&str, p->out_name[k], &off, &len);
            put_u32(&pro, off); put_u32(&pro, len); put_u32(&pro, p->out_t[k]);
        }
    }
    put_u64(&sta, 0); put_u64(&sta, 0); put_u64(&sta, m->seed); put_u64(&sta, 0);
    put_f32(&sta, m->base_lr); put_u32(&sta, m->sched_kind);
    for (int k = 0; k < 6; k++) put_f32(&sta, m->sched_f[k]);
    for (int k = 0; k < 6; k++) put_i64(&sta, m->sched_i[k]);
    put_u32(&sta, m->warmup); put_u32(&sta, 1); put_u32(&sta, m->max_batch); put_zeros(&sta, 4);
    put(&meta, "{\"test\": true}", 14);

    bytes *secs[7] = {&str, &ten, &nod, &pro, &sta, &dat, &meta};
    uint32_t types[7] = {1, 2, 3, 4, 5, 6, 7};
    uint8_t table[7 * 32];
    memset(table, 0, sizeof table);
    uint64_t pos = 64 + sizeof table;
    pos = (pos + 63) / 64 * 64;
    for (int i = 0; i < 7; i++) {
        uint8_t *e = table + 32 * i;
        uint64_t sz = secs[i]->n;
        uint32_t crc = et_crc32(0, secs[i]->p, secs[i]->n);
        memcpy(e, &types[i], 4); memcpy(e + 8, &pos, 8); memcpy(e + 16, &sz, 8); memcpy(e + 24, &crc, 4);
        pos = (pos + sz + 63) / 64 * 64;
    }
    uint8_t head[64];
    memset(head, 0, 64);
    memcpy(head, "EDGETRN", 8);
    uint32_t major = 1, minor = m->max_batch ? 1 : 0, nsec = 7, flags = 0, tcrc = et_crc32(0, table, sizeof table);
    memcpy(head + 8, &major, 4); memcpy(head + 12, &minor, 4); memcpy(head + 16, &pos, 8);
    memcpy(head + 24, &nsec, 4); memcpy(head + 28, &flags, 4); memcpy(head + 32, &tcrc, 4);
    uint32_t hcrc = et_crc32(0, head, 36);
    memcpy(head + 36, &hcrc, 4);
    put(&out, head, 64);
    put(&out, table, sizeof table);
    for (int i = 0; i < 7; i++) {
        pad64(&out);
        put(&out, secs[i]->p, secs[i]->n);
    }
    pad64(&out);
    for (int i = 0; i < 7; i++) free(secs[i]->p);
    *size = out.n;
    return out.p;
}

/* ======================================================================= */
/* The test model: a 2-layer MLP with softmax cross-entropy and SGD         */
/* ======================================================================= */
enum { N0 = 4, D = 3, H = 5, C = 3 };
enum { T_X, T_Y, T_W1, T_B1, T_W2, T_B2, T_HMM, T_HPRE, T_H, T_OMM, T_LOGITS, T_LOSS, T_PROBS, T_ONE,
       T_DLOGITS, T_GW2, T_GB2, T_DH, T_DHPRE, T_GW1, T_GB1, T_MOM1, T_COUNT };

static float init_w1[D * H], init_b1[H], init_w2[H * C], init_b2[C], init_mom1[D * H], one_value = 1.0f;

static void add_tensor(tt_model *m, int idx, const char *name, et_dtype dt, et_tensor_kind kind, int ndim,
                       int64_t d0, int64_t d1, uint32_t owner, const void *data) {
    tt_tensor *t = &m->t[idx];
    memset(t, 0, sizeof *t);
    t->name = name; t->dtype = dt; t->kind = kind; t->ndim = ndim;
    t->shape[0] = d0; t->shape[1] = d1; t->owner = owner; t->data = data;
    if (m->n_tensors <= idx) m->n_tensors = idx + 1;
}

static int add_node(tt_model *m, et_op op, const char *layer, int n_in, const int32_t *in, int n_out,
                    const int32_t *out) {
    tt_node *n = &m->nd[m->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op; n->layer = layer; n->n_in = n_in; n->n_out = n_out;
    for (int k = 0; k < n_in; k++) n->in[k] = in[k];
    for (int k = 0; k < n_out; k++) n->out[k] = out[k];
    return m->n_nodes++;
}

static void matmul_attrs(tt_model *m, int node, int ta, int tb) {
    m->nd[node].n_ia = 2; m->nd[node].ia[0] = ta; m->nd[node].ia[1] = tb;
}

static void build_mlp(tt_model *m) {
    memset(m, 0, sizeof *m);
    et_fill_random(init_w1, D * H, 1, -1.0f, 1.0f);
    et_fill_random(init_b1, H, 2, -0.5f, 0.5f);
    et_fill_random(init_w2, H * C, 3, -1.0f, 1.0f);
    et_fill_random(init_b2, C, 4, -0.5f, 0.5f);
    const uint32_t no = 0xFFFFFFFFu;
    add_tensor(m, T_X, "x", ET_F32, ET_KIND_INPUT, 2, N0, D, no, NULL);
    add_tensor(m, T_Y, "labels", ET_I32, ET_KIND_INPUT, 1, N0, 0, no, NULL);
    add_tensor(m, T_W1, "fc1.weight", ET_F32, ET_KIND_PARAM, 2, D, H, no, init_w1);
    add_tensor(m, T_B1, "fc1.bias", ET_F32, ET_KIND_PARAM, 1, H, 0, no, init_b1);
    add_tensor(m, T_W2, "fc2.weight", ET_F32, ET_KIND_PARAM, 2, H, C, no, init_w2);
    add_tensor(m, T_B2, "fc2.bias", ET_F32, ET_KIND_PARAM, 1, C, 0, no, init_b2);
    add_tensor(m, T_HMM, "", ET_F32, ET_KIND_ACT, 2, N0, H, no, NULL);
    add_tensor(m, T_HPRE, "fc1.out", ET_F32, ET_KIND_ACT, 2, N0, H, no, NULL);
    add_tensor(m, T_H, "", ET_F32, ET_KIND_ACT, 2, N0, H, no, NULL);
    add_tensor(m, T_OMM, "", ET_F32, ET_KIND_ACT, 2, N0, C, no, NULL);
    add_tensor(m, T_LOGITS, "logits", ET_F32, ET_KIND_ACT, 2, N0, C, no, NULL);
    add_tensor(m, T_LOSS, "loss", ET_F32, ET_KIND_ACT, 0, 0, 0, no, NULL);
    add_tensor(m, T_PROBS, "", ET_F32, ET_KIND_ACT, 2, N0, C, no, NULL);
    add_tensor(m, T_ONE, "one", ET_F32, ET_KIND_CONST, 0, 0, 0, no, &one_value);
    add_tensor(m, T_DLOGITS, "", ET_F32, ET_KIND_ACT, 2, N0, C, no, NULL);
    add_tensor(m, T_GW2, "fc2.weight.grad", ET_F32, ET_KIND_GRAD, 2, H, C, T_W2, NULL);
    add_tensor(m, T_GB2, "fc2.bias.grad", ET_F32, ET_KIND_GRAD, 1, C, 0, T_B2, NULL);
    add_tensor(m, T_DH, "", ET_F32, ET_KIND_ACT, 2, N0, H, no, NULL);
    add_tensor(m, T_DHPRE, "", ET_F32, ET_KIND_ACT, 2, N0, H, no, NULL);
    add_tensor(m, T_GW1, "fc1.weight.grad", ET_F32, ET_KIND_GRAD, 2, D, H, T_W1, NULL);
    add_tensor(m, T_GB1, "fc1.bias.grad", ET_F32, ET_KIND_GRAD, 1, H, 0, T_B1, NULL);
    add_tensor(m, T_MOM1, "fc1.weight.momentum", ET_F32, ET_KIND_OPTSTATE, 2, D, H, T_W1, init_mom1);

    int n;
    n = add_node(m, ET_OP_MATMUL, "fc1", 2, (int32_t[]){T_X, T_W1}, 1, (int32_t[]){T_HMM});
    matmul_attrs(m, n, 0, 0);
    add_node(m, ET_OP_ADD, "fc1", 2, (int32_t[]){T_HMM, T_B1}, 1, (int32_t[]){T_HPRE});
    n = add_node(m, ET_OP_ACT, "relu", 1, (int32_t[]){T_HPRE}, 1, (int32_t[]){T_H});
    m->nd[n].n_ia = 1; m->nd[n].ia[0] = ET_ACT_RELU; m->nd[n].n_fa = 1;
    n = add_node(m, ET_OP_MATMUL, "fc2", 2, (int32_t[]){T_H, T_W2}, 1, (int32_t[]){T_OMM});
    matmul_attrs(m, n, 0, 0);
    add_node(m, ET_OP_ADD, "fc2", 2, (int32_t[]){T_OMM, T_B2}, 1, (int32_t[]){T_LOGITS});
    add_node(m, ET_OP_SOFTMAX_XENT, "loss", 2, (int32_t[]){T_LOGITS, T_Y}, 2, (int32_t[]){T_LOSS, T_PROBS});
    add_node(m, ET_OP_SOFTMAX_XENT_BWD, "loss", 3, (int32_t[]){T_PROBS, T_Y, T_ONE}, 1, (int32_t[]){T_DLOGITS});
    n = add_node(m, ET_OP_REDUCE_SUM_TO, "fc2", 2, (int32_t[]){T_DLOGITS, T_B2}, 1, (int32_t[]){T_GB2});
    m->nd[n].n_fa = 1; m->nd[n].fa[0] = 1.0f;
    n = add_node(m, ET_OP_MATMUL, "fc2", 2, (int32_t[]){T_H, T_DLOGITS}, 1, (int32_t[]){T_GW2});
    matmul_attrs(m, n, 1, 0);
    n = add_node(m, ET_OP_MATMUL, "fc2", 2, (int32_t[]){T_DLOGITS, T_W2}, 1, (int32_t[]){T_DH});
    matmul_attrs(m, n, 0, 1);
    n = add_node(m, ET_OP_ACT_BWD, "relu", 2, (int32_t[]){T_DH, T_HPRE}, 1, (int32_t[]){T_DHPRE});
    m->nd[n].n_ia = 1; m->nd[n].ia[0] = ET_ACT_RELU; m->nd[n].n_fa = 1;
    n = add_node(m, ET_OP_REDUCE_SUM_TO, "fc1", 2, (int32_t[]){T_DHPRE, T_B1}, 1, (int32_t[]){T_GB1});
    m->nd[n].n_fa = 1; m->nd[n].fa[0] = 1.0f;
    n = add_node(m, ET_OP_MATMUL, "fc1", 2, (int32_t[]){T_X, T_DHPRE}, 1, (int32_t[]){T_GW1});
    matmul_attrs(m, n, 1, 0);
    /* sgd: w1 with momentum 0.9, the others plain */
    const int32_t params[4] = {T_W1, T_B1, T_W2, T_B2}, grads[4] = {T_GW1, T_GB1, T_GW2, T_GB2};
    for (int k = 0; k < 4; k++) {
        n = add_node(m, ET_OP_SGD_UPDATE, "optim", k == 0 ? 3 : 2, (int32_t[]){params[k], grads[k], T_MOM1}, 0, NULL);
        m->nd[n].n_ia = 2; m->nd[n].n_fa = 4;
        m->nd[n].fa[0] = 1.0f;                 /* lr_scale */
        m->nd[n].fa[1] = k == 0 ? 0.9f : 0.0f; /* momentum */
    }
    tt_prog *ev = &m->pg[0], *gr = &m->pg[1], *tr = &m->pg[2];
    ev->kind = ET_PROGRAM_EVAL; ev->n_nodes = 5; ev->n_in = 1; ev->in[0] = T_X;
    ev->n_out = 1; ev->out_name[0] = "output"; ev->out_t[0] = T_LOGITS;
    gr->kind = ET_PROGRAM_GRAD; gr->n_nodes = 13; gr->n_in = 2; gr->in[0] = T_X; gr->in[1] = T_Y;
    gr->n_out = 1; gr->out_name[0] = "loss"; gr->out_t[0] = T_LOSS;
    tr->kind = ET_PROGRAM_TRAIN; tr->n_nodes = 17; tr->n_in = 2; tr->in[0] = T_X; tr->in[1] = T_Y;
    tr->n_out = 2; tr->out_name[0] = "loss"; tr->out_t[0] = T_LOSS; tr->out_name[1] = "output"; tr->out_t[1] = T_LOGITS;
    for (int k = 0; k < 17; k++) ev->nodes[k] = gr->nodes[k] = tr->nodes[k] = (uint32_t)k;
    m->n_progs = 3;
    m->base_lr = 0.1f;
    m->sched_kind = 1; /* step: gamma 0.5 every step */
    m->sched_f[0] = 0.5f;
    m->sched_i[0] = 1;
    m->seed = 1234;
}

/* ======================================================================= */
/* Reference: one SGD step of the MLP in double precision                    */
/* ======================================================================= */
typedef struct ref_state {
    double w1[D * H], b1[H], w2[H * C], b2[C], mom1[D * H];
    int64_t step;
} ref_state;

static void ref_init(ref_state *r) {
    for (int i = 0; i < D * H; i++) { r->w1[i] = init_w1[i]; r->mom1[i] = 0; }
    for (int i = 0; i < H; i++) r->b1[i] = init_b1[i];
    for (int i = 0; i < H * C; i++) r->w2[i] = init_w2[i];
    for (int i = 0; i < C; i++) r->b2[i] = init_b2[i];
    r->step = 0;
}

/* Forward (logits, loss) and, if lr > 0, one SGD update. */
static double ref_step(ref_state *r, int n, const float *x, const int32_t *y, double lr, double *logits) {
    double hpre[16 * H], h[16 * H], dlog[16 * C], dh[16 * H], loss = 0;
    double gw1[D * H] = {0}, gb1[H] = {0}, gw2[H * C] = {0}, gb2[C] = {0};
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < H; j++) {
            double s = r->b1[j];
            for (int k = 0; k < D; k++) s += x[i * D + k] * r->w1[k * H + j];
            hpre[i * H + j] = s;
            h[i * H + j] = s > 0 ? s : 0;
        }
        double mx = -1e300, z = 0;
        for (int c = 0; c < C; c++) {
            double s = r->b2[c];
            for (int j = 0; j < H; j++) s += h[i * H + j] * r->w2[j * C + c];
            logits[i * C + c] = s;
            if (s > mx) mx = s;
        }
        for (int c = 0; c < C; c++) z += exp(logits[i * C + c] - mx);
        loss += -(logits[i * C + y[i]] - mx - log(z)) / n;
        for (int c = 0; c < C; c++) dlog[i * C + c] = (exp(logits[i * C + c] - mx) / z - (c == y[i])) / n;
    }
    if (lr <= 0) return loss;
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < C; c++) gb2[c] += dlog[i * C + c];
        for (int j = 0; j < H; j++) {
            double s = 0;
            for (int c = 0; c < C; c++) {
                gw2[j * C + c] += h[i * H + j] * dlog[i * C + c];
                s += dlog[i * C + c] * r->w2[j * C + c];
            }
            dh[i * H + j] = hpre[i * H + j] > 0 ? s : 0;
            gb1[j] += dh[i * H + j];
            for (int k = 0; k < D; k++) gw1[k * H + j] += x[i * D + k] * dh[i * H + j];
        }
    }
    for (int i = 0; i < D * H; i++) {
        r->mom1[i] = r->step == 0 ? gw1[i] : 0.9 * r->mom1[i] + gw1[i];
        r->w1[i] -= lr * r->mom1[i];
    }
    for (int i = 0; i < H; i++) r->b1[i] -= lr * gb1[i];
    for (int i = 0; i < H * C; i++) r->w2[i] -= lr * gw2[i];
    for (int i = 0; i < C; i++) r->b2[i] -= lr * gb2[i];
    r->step++;
    return loss;
}

static int close_to_f32(const float *got, const double *want, int n, const char *what) {
    float w[64];
    for (int i = 0; i < n; i++) w[i] = (float)want[i];
    return et_allclose(got, w, n, 1e-4f, 1e-5f, what);
}

static float *tensor_f32(et_session *s, const char *name) {
    int i = et_session_find_tensor(s, name);
    return i < 0 ? NULL : (float *)et_session_tensor_data(s, i);
}

static float output_value(et_session *s, const char *name) {
    for (int i = 0; i < et_session_output_count(s); i++)
        if (strcmp(et_session_output_name(s, i), name) == 0)
            return *(float *)et_session_tensor_data(s, et_session_output_tensor(s, i));
    return NAN;
}

static void check_params(et_session *s, const ref_state *r, const char *when) {
    char what[64];
    snprintf(what, sizeof what, "fc1.weight %s", when);
    ET_CHECK(close_to_f32(tensor_f32(s, "fc1.weight"), r->w1, D * H, what), "%s", what);
    snprintf(what, sizeof what, "fc1.bias %s", when);
    ET_CHECK(close_to_f32(tensor_f32(s, "fc1.bias"), r->b1, H, what), "%s", what);
    snprintf(what, sizeof what, "fc2.weight %s", when);
    ET_CHECK(close_to_f32(tensor_f32(s, "fc2.weight"), r->w2, H * C, what), "%s", what);
    snprintf(what, sizeof what, "fc2.bias %s", when);
    ET_CHECK(close_to_f32(tensor_f32(s, "fc2.bias"), r->b2, C, what), "%s", what);
    snprintf(what, sizeof what, "fc1.weight.momentum %s", when);
    ET_CHECK(close_to_f32(tensor_f32(s, "fc1.weight.momentum"), r->mom1, D * H, what), "%s", what);
}

static void make_batch(int n, uint64_t seed, float *x, int32_t *y, int64_t *y64) {
    et_fill_random(x, n * D, seed, -2.0f, 2.0f);
    for (int i = 0; i < n; i++) { y[i] = (int32_t)((i * 7 + seed) % C); y64[i] = y[i]; }
}

static et_status feed(et_session *s, int n, const float *x, const int64_t *y64) {
    int64_t xs[2] = {n, D}, ys[1] = {n};
    et_status st = et_session_set_input(s, "x", ET_F32, x, 2, xs);
    if (st == ET_OK && et_session_program(s) != ET_PROGRAM_EVAL) st = et_session_set_input(s, "labels", ET_I64, y64, 1, ys);
    return st;
}

/* ======================================================================= */
/* Tests                                                                    */
/* ======================================================================= */
static void test_crc_and_names(void) {
    ET_CHECK(et_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
    ET_CHECK(et_crc32(et_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u, "crc32 incremental");
    ET_CHECK(et_crc32(0, "", 0) == 0, "crc32 of nothing");
    ET_CHECK(strcmp(et_op_name(ET_OP_CONV2D_BWD_INPUT), "conv2d_bwd_input") == 0, "op name");
    ET_CHECK(strcmp(et_op_name(ET_OP_AFFINE), "affine") == 0, "last op name");
    ET_CHECK(et_op_name(ET_OP_COUNT) == NULL && et_op_name(-1) == NULL, "out-of-range op names");
    for (int op = 0; op < ET_OP_COUNT; op++) ET_CHECK(et_op_name(op) != NULL, "op %d has a name", op);
}

static void test_load_and_introspect(const uint8_t *img, size_t size) {
    et_session *s = NULL;
    et_status st = et_session_load_memory(img, size, 1, &s);
    ET_CHECK(st == ET_OK, "load: %s", et_load_error());
    if (!s) return;
    ET_CHECK(et_session_tensor_count(s) == T_COUNT, "tensor count");
    ET_CHECK(et_session_program(s) == ET_PROGRAM_TRAIN, "default program is train");
    ET_CHECK(et_session_node_count(s, ET_PROGRAM_EVAL) == 5 && et_session_node_count(s, ET_PROGRAM_TRAIN) == 17,
             "node counts");
    ET_CHECK(et_session_input_count(s) == 2 && et_session_input_tensor(s, 1) == T_Y, "program inputs");
    ET_CHECK(et_session_output_count(s) == 2 && strcmp(et_session_output_name(s, 1), "output") == 0, "outputs");
    et_tensor_info info;
    ET_CHECK(et_session_tensor_info(s, T_W1, &info) == ET_OK && info.trainable && info.numel == D * H &&
             info.kind == ET_KIND_PARAM && strcmp(info.name, "fc1.weight") == 0, "tensor info");
    ET_CHECK(et_session_tensor_info(s, T_COUNT, &info) == ET_ERR_ARG, "tensor info out of range");
    ET_CHECK(et_session_find_tensor(s, "nope") == -1, "find missing tensor");
    for (int i = 0; i < T_COUNT; i++) {
        void *p = et_session_tensor_data(s, i);
        ET_CHECK(p == NULL || ((uintptr_t)p % 64) == 0, "tensor %d is 64-byte aligned", i);
    }
    et_memory_info mi;
    ET_CHECK(et_session_memory_info(s, &mi) == ET_OK, "memory info");
    ET_CHECK(mi.params_bytes == 4 * 64 && mi.grads_bytes == 4 * 64 && mi.optimizer_bytes == 64, "persistent blocks");
    ET_CHECK(mi.activations_bytes > 0 && mi.activations_bytes < mi.activations_unplanned_bytes,
             "activations reuse memory (%zu planned, %zu unplanned)", mi.activations_bytes,
             mi.activations_unplanned_bytes);
    ET_CHECK(mi.workspace_bytes <= mi.workspace_unplanned_bytes, "workspace block %zu above the largest workspace %zu",
             mi.workspace_bytes, mi.workspace_unplanned_bytes);
    ET_CHECK(fabsf(et_session_lr(s) - 0.1f) < 1e-7f, "lr at step 0");
    et_session_set_step(s, 3);
    ET_CHECK(fabsf(et_session_lr(s) - 0.0125f) < 1e-7f, "step schedule lr at step 3: %g", (double)et_session_lr(s));
    ET_CHECK(et_session_set_program(s, ET_PROGRAM_EVAL) == ET_OK && et_session_input_count(s) == 1, "eval program");
    ET_CHECK(et_session_set_threads(s, 3) == ET_OK && et_session_threads(s) == 3, "threads");
    ET_CHECK(et_session_set_input(s, "fc1.weight", ET_F32, init_w1, 2, (int64_t[]){D, H}) == ET_ERR_ARG,
             "set_input on a parameter");
    ET_CHECK(et_session_set_input(s, "x", ET_F32, init_w1, 2, (int64_t[]){N0 + 1, D}) == ET_ERR_SHAPE,
             "set_input with the wrong shape");
    ET_CHECK(et_session_set_input(s, "missing", ET_F32, init_w1, 0, NULL) == ET_ERR_NOT_FOUND, "set_input unknown");
    et_session_free(s);
}

static void test_train_matches_reference(const uint8_t *img, size_t size) {
    et_session *s = NULL;
    if (et_session_load_memory(img, size, 2, &s) != ET_OK) { ET_CHECK(0, "load: %s", et_load_error()); return; }
    ref_state r;
    ref_init(&r);
    float x[N0 * D];
    int32_t y[N0];
    int64_t y64[N0];
    double logits[N0 * C];
    /* eval */
    make_batch(N0, 11, x, y, y64);
    et_session_set_program(s, ET_PROGRAM_EVAL);
    ET_CHECK(feed(s, N0, x, y64) == ET_OK && et_session_run(s) == ET_OK, "eval run: %s", et_session_error(s));
    ref_step(&r, N0, x, y, 0.0, logits);
    ET_CHECK(close_to_f32(tensor_f32(s, "logits"), logits, N0 * C, "eval logits"), "eval logits");
    ET_CHECK(et_session_step(s) == 0, "eval does not count steps");
    /* two train steps: lr 0.1 then 0.05 (step schedule) */
    et_session_set_program(s, ET_PROGRAM_TRAIN);
    int64_t before = et_debug_alloc_count();
    for (int it = 0; it < 2; it++) {
        make_batch(N0, 20 + it, x, y, y64);
        ET_CHECK(feed(s, N0, x, y64) == ET_OK, "feed: %s", et_session_error(s));
        ET_CHECK(et_session_run(s) == ET_OK, "train run: %s", et_session_error(s));
        double want = ref_step(&r, N0, x, y, it == 0 ? 0.1 : 0.05, logits);
        float got = output_value(s, "loss");
        ET_CHECK(fabs(got - want) < 1e-5 * (1 + fabs(want)), "loss at step %d: %g vs %g", it, (double)got, want);
    }
    ET_CHECK(before != 0, "ET_DEBUG_ALLOC counts the load's allocations");
    ET_CHECK(before < 0 || et_debug_alloc_count() == before, "runs allocate nothing (%lld allocations)",
             (long long)(et_debug_alloc_count() - before));
    check_params(s, &r, "after 2 steps");
    ET_CHECK(et_session_step(s) == 2, "step counter %llu", (unsigned long long)et_session_step(s));
    /* grad program: gradients only, rng counter moves, step does not */
    et_session_set_program(s, ET_PROGRAM_GRAD);
    ET_CHECK(feed(s, N0, x, y64) == ET_OK && et_session_run(s) == ET_OK, "grad run: %s", et_session_error(s));
    ET_CHECK(et_session_step(s) == 2, "grad program does not step");
    check_params(s, &r, "after a grad run");
    /* a label out of range fails in the kernel with a message, counters unchanged */
    et_session_set_program(s, ET_PROGRAM_TRAIN);
    y64[1] = 7;
    ET_CHECK(feed(s, N0, x, y64) == ET_OK, "feed out-of-range class");
    et_status st = et_session_run(s);
    ET_CHECK(st == ET_ERR_LABEL, "label out of range gives ET_ERR_LABEL, got %d", st);
    ET_CHECK(strstr(et_session_error(s), "label out of range") && strstr(et_session_error(s), "softmax_xent") &&
             strstr(et_session_error(s), "'loss'") && strstr(et_session_error(s), "'labels'"),
             "label message: %s", et_session_error(s));
    ET_CHECK(et_session_step(s) == 2, "a failed run does not step");
    y64[1] = (int64_t)1 << 40;
    ET_CHECK(feed(s, N0, x, y64) == ET_ERR_LABEL, "an int64 label beyond int32 is rejected");
    et_session_free(s);
}

static void test_resize_save_reload(const uint8_t *img, size_t size) {
    et_session *s = NULL;
    if (et_session_load_memory(img, size, 1, &s) != ET_OK) { ET_CHECK(0, "load: %s", et_load_error()); return; }
    ref_state r;
    ref_init(&r);
    enum { N1 = 7 };
    float x[N1 * D];
    int32_t y[N1];
    int64_t y64[N1];
    double logits[N1 * C];
    /* a bad resize changes nothing */
    const char *names[2] = {"x", "labels"};
    int nd[2] = {2, 1};
    int64_t bad_x[2] = {N1, D + 1}, good_x[2] = {N1, D}, good_y[1] = {N1};
    const int64_t *bad[2] = {bad_x, good_y}, *good[2] = {good_x, good_y};
    et_memory_info m0, m1;
    et_session_memory_info(s, &m0);
    et_status st = et_session_resize(s, 2, names, nd, bad);
    ET_CHECK(st == ET_ERR_SHAPE && strstr(et_session_error(s), "fc1"), "bad resize: %d %s", st, et_session_error(s));
    et_tensor_info info;
    et_session_tensor_info(s, T_X, &info);
    ET_CHECK(info.shape[0] == N0 && info.shape[1] == D, "failed resize keeps the shapes");
    ET_CHECK(et_session_resize(s, 2, names, nd, good) == ET_OK, "resize: %s", et_session_error(s));
    et_session_memory_info(s, &m1);
    ET_CHECK(m1.activations_bytes > m0.activations_bytes && m1.inputs_bytes >= m0.inputs_bytes, "resize re-plans");
    et_session_tensor_info(s, T_LOGITS, &info);
    ET_CHECK(info.shape[0] == N1 && info.shape[1] == C, "logits follow the batch size");
    make_batch(N1, 5, x, y, y64);
    ET_CHECK(feed(s, N1, x, y64) == ET_OK && et_session_run(s) == ET_OK, "train at batch 7: %s", et_session_error(s));
    double want = ref_step(&r, N1, x, y, 0.1, logits);
    ET_CHECK(fabs(output_value(s, "loss") - want) < 1e-5, "loss at batch 7");
    check_params(s, &r, "after a batch-7 step");

    /* save, reload, compare everything; saving the reloaded session gives the same bytes */
    char path[64], path2[64];
    snprintf(path, sizeof path, "/tmp/et_rt_test_%ld.etm", (long)getpid());
    snprintf(path2, sizeof path2, "/tmp/et_rt_test_%ld_b.etm", (long)getpid());
    et_session_set_seed(s, 99);
    et_session_set_epoch(s, 4);
    ET_CHECK(et_session_save_file(s, path) == ET_OK, "save: %s", et_session_error(s));
    et_session *s2 = NULL;
    ET_CHECK(et_session_load_file(path, 1, &s2) == ET_OK, "reload: %s", et_load_error());
    if (s2) {
        ET_CHECK(et_session_step(s2) == 1 && et_session_seed(s2) == 99 && et_session_epoch(s2) == 4, "state saved");
        ET_CHECK(et_session_lr(s2) == et_session_lr(s), "lr schedule saved");
        for (int i = 0; i < T_COUNT; i++) {
            et_tensor_info a, b;
            et_session_tensor_info(s, i, &a);
            et_session_tensor_info(s2, i, &b);
            ET_CHECK(a.ndim == b.ndim && memcmp(a.shape, b.shape, sizeof a.shape) == 0 && a.kind == b.kind,
                     "tensor %d shape survives the round trip", i);
            if (a.kind == ET_KIND_PARAM || a.kind == ET_KIND_OPTSTATE || a.kind == ET_KIND_CONST)
                ET_CHECK(memcmp(et_session_tensor_data(s, i), et_session_tensor_data(s2, i), (size_t)a.numel * 4) == 0,
                         "tensor %d data survives the round trip", i);
        }
        ET_CHECK(et_session_save_file(s2, path2) == ET_OK, "save again: %s", et_session_error(s2));
        FILE *f1 = fopen(path, "rb"), *f2 = fopen(path2, "rb");
        int same = f1 && f2;
        while (same) {
            int c1 = fgetc(f1), c2 = fgetc(f2);
            if (c1 != c2) same = 0;
            if (c1 == EOF) break;
        }
        if (f1) fclose(f1);
        if (f2) fclose(f2);
        ET_CHECK(same, "save(load(save(x))) is byte-identical");
        /* both continue training identically */
        make_batch(N1, 6, x, y, y64);
        feed(s, N1, x, y64);
        feed(s2, N1, x, y64);
        ET_CHECK(et_session_run(s) == ET_OK && et_session_run(s2) == ET_OK, "train after reload");
        ET_CHECK(output_value(s, "loss") == output_value(s2, "loss"), "reloaded session trains bit-identically");
        et_session_free(s2);
    }
    /* a save that cannot happen reports ET_ERR_IO and leaves no temp file */
    ET_CHECK(et_session_save_file(s, "/nonexistent-dir/model.etm") == ET_ERR_IO, "save to a missing directory");
    et_session_free(s);
    remove(path);
    remove(path2);
    ET_CHECK(et_session_load_file("/nonexistent-dir/model.etm", 1, &s) == ET_ERR_IO && s == NULL,
             "load of a missing file");
}

/* ---- batch sizes: automatic re-plan, cached plans, the limit -------------- */
static int64_t input_batch(et_session *s, int t) {
    et_tensor_info info;
    et_session_tensor_info(s, t, &info);
    return info.shape[0];
}

static void test_batch_switch(void) {
    tt_model m;
    build_mlp(&m);
    m.max_batch = 9;
    size_t size = 0;
    uint8_t *img = tt_write(&m, &size);
    et_session *s = NULL;
    et_status st = et_session_load_memory(img, size, 1, &s);
    free(img);
    ET_CHECK(st == ET_OK, "load a minor-1 file with max_batch: %s", et_load_error());
    if (!s) return;
    ET_CHECK(et_session_max_batch(s) == 9 && et_session_cached_plans(s) == 1, "max_batch from STATE");
    ref_state r;
    ref_init(&r);
    float x[9 * D];
    int32_t y[9];
    int64_t y64[9];
    double logits[9 * C];
    /* batches 4, 2 (partial), 9 (the limit), then 4 and 2 again from the cache */
    const int batches[5] = {N0, 2, 9, N0, 2};
    int64_t before = 0;
    for (int it = 0; it < 5; it++) {
        int n = batches[it];
        if (it == 3) before = et_debug_alloc_count();
        make_batch(n, 40 + it, x, y, y64);
        ET_CHECK(feed(s, n, x, y64) == ET_OK, "feed batch %d: %s", n, et_session_error(s));
        ET_CHECK(input_batch(s, T_X) == n && input_batch(s, T_Y) == n && input_batch(s, T_LOGITS) == n,
                 "every batch input and activation follows the batch %d", n);
        ET_CHECK(et_session_run(s) == ET_OK, "train at batch %d: %s", n, et_session_error(s));
        double lr = 0.1 * pow(0.5, it);
        double want = ref_step(&r, n, x, y, lr, logits);
        float got = output_value(s, "loss");
        ET_CHECK(fabs(got - want) < 1e-5 * (1 + fabs(want)), "loss (mean over the real batch %d): %g vs %g", n,
                 (double)got, want);
    }
    check_params(s, &r, "after 5 steps of 4 batch sizes");
    ET_CHECK(before < 0 || et_debug_alloc_count() == before, "steps on cached plans allocate nothing (%lld)",
             (long long)(et_debug_alloc_count() - before));
    ET_CHECK(et_session_cached_plans(s) == 3, "three plans cached: %d", et_session_cached_plans(s));
    /* a batch above the limit, another feature size, and a half-fed batch are errors */
    make_batch(9, 50, x, y, y64);
    ET_CHECK(et_session_set_input(s, "x", ET_F32, x, 2, (int64_t[]){10, D}) == ET_ERR_SHAPE &&
             strstr(et_session_error(s), "1..9"), "batch above max_batch: %s", et_session_error(s));
    ET_CHECK(et_session_set_input(s, "x", ET_F32, x, 2, (int64_t[]){2, D + 1}) == ET_ERR_SHAPE,
             "only dim 0 changes automatically");
    ET_CHECK(et_session_set_input(s, "x", ET_F32, x, 2, (int64_t[]){3, D}) == ET_OK, "feed x at batch 3");
    st = et_session_run(s);
    ET_CHECK(st == ET_ERR_SHAPE && strstr(et_session_error(s), "'labels'"), "labels still at the old batch: %d %s",
             st, et_session_error(s));
    ET_CHECK(et_session_step(s) == 5, "the refused run did not step");
    /* SaveToFile writes the shapes of the load, not of the last automatic batch */
    char path[64];
    snprintf(path, sizeof path, "/tmp/et_rt_batch_%ld.etm", (long)getpid());
    ET_CHECK(et_session_save_file(s, path) == ET_OK, "save: %s", et_session_error(s));
    et_session *s2 = NULL;
    ET_CHECK(et_session_load_file(path, 1, &s2) == ET_OK, "reload: %s", et_load_error());
    if (s2) {
        ET_CHECK(input_batch(s2, T_X) == N0 && et_session_max_batch(s2) == 9, "saved at batch %lld, limit %lld",
                 (long long)input_batch(s2, T_X), (long long)et_session_max_batch(s2));
        et_session_free(s2);
    }
    remove(path);
    /* a thread count change drops the spare plans (their workspace was sized for the old count) */
    ET_CHECK(et_session_set_threads(s, 2) == ET_OK && et_session_cached_plans(s) == 1, "spares dropped");
    et_session_free(s);
}

/* ---- the non-finite guard ---------------------------------------------------- */
typedef struct snapshot {
    float w[D * H + H + H * C + C + D * H];
    uint64_t step;
} snapshot;

static void take(et_session *s, snapshot *p) {
    memset(p, 0, sizeof *p); /* padding too: snapshots are compared with memcmp */
    float *o = p->w;
    const char *names[5] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc1.weight.momentum"};
    const int sizes[5] = {D * H, H, H * C, C, D * H};
    for (int k = 0; k < 5; k++) {
        memcpy(o, tensor_f32(s, names[k]), sizeof(float) * (size_t)sizes[k]);
        o += sizes[k];
    }
    p->step = et_session_step(s);
}

static void test_nonfinite_guard(const uint8_t *img, size_t size) {
    et_session *s = NULL;
    if (et_session_load_memory(img, size, 2, &s) != ET_OK) { ET_CHECK(0, "load: %s", et_load_error()); return; }
    float x[N0 * D];
    int32_t y[N0];
    int64_t y64[N0];
    make_batch(N0, 60, x, y, y64);
    ET_CHECK(feed(s, N0, x, y64) == ET_OK && et_session_run(s) == ET_OK, "a good step");
    ET_CHECK(et_session_nonfinite_policy(s) == ET_NONFINITE_RAISE, "raise by default");
    snapshot a, b;
    const float bad[2] = {NAN, INFINITY};
    for (int policy = 0; policy < 2; policy++) {
        for (int v = 0; v < 2; v++) {
            et_session_set_nonfinite_policy(s, (et_nonfinite_policy)policy);
            take(s, &a);
            float xb[N0 * D];
            memcpy(xb, x, sizeof xb);
            xb[D + 1] = bad[v];
            int64_t before = et_debug_alloc_count();
            ET_CHECK(feed(s, N0, xb, y64) == ET_OK, "feed a bad sample");
            et_status st = et_session_run(s);
            ET_CHECK(before < 0 || et_debug_alloc_count() == before, "the guard allocates nothing");
            take(s, &b);
            ET_CHECK(memcmp(&a, &b, sizeof a) == 0, "policy %d, %s: weights, momentum and step bit-identical", policy,
                     v ? "Inf" : "NaN");
            if (policy == ET_NONFINITE_RAISE) {
                ET_CHECK(st == ET_ERR_NONFINITE && strstr(et_session_error(s), "step 1:") &&
                         strstr(et_session_error(s), "not applied"), "raise: %d %s", st, et_session_error(s));
            } else {
                ET_CHECK(st == ET_OK && et_session_last_step_skipped(s), "skip: %d %s", st, et_session_error(s));
            }
        }
    }
    ET_CHECK(et_session_skipped_steps(s) == 2, "two skipped steps counted: %llu",
             (unsigned long long)et_session_skipped_steps(s));
    ET_CHECK(feed(s, N0, x, y64) == ET_OK && et_session_run(s) == ET_OK && !et_session_last_step_skipped(s) &&
             et_session_step(s) == 2, "a good step after the skipped ones");
    /* off: the NaN reaches the weights (what the guard prevents) */
    et_session_set_nonfinite_policy(s, ET_NONFINITE_OFF);
    x[0] = NAN;
    feed(s, N0, x, y64);
    ET_CHECK(et_session_run(s) == ET_OK && isnan(tensor_f32(s, "fc1.weight")[0]), "off: no check");
    ET_CHECK(et_session_set_nonfinite_policy(s, (et_nonfinite_policy)7) == ET_ERR_ARG, "unknown policy");
    et_session_free(s);
}

/* ---- targeted corruptions with the message they must produce ------------ */
static size_t section_offset(const uint8_t *b, uint32_t type) {
    uint32_t n;
    memcpy(&n, b + 24, 4);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t;
        uint64_t off;
        memcpy(&t, b + 64 + 32 * i, 4);
        memcpy(&off, b + 64 + 32 * i + 8, 8);
        if (t == type) return (size_t)off;
    }
    return 0;
}

static void expect_format_error(const uint8_t *img, size_t size, size_t at, const void *val, size_t n,
                                const char *needle) {
    uint8_t *b = (uint8_t *)malloc(size);
    memcpy(b, img, size);
    memcpy(b + at, val, n);
    etm_fix_crcs(b, size);
    et_session *s = NULL;
    et_status st = et_session_load_memory(b, size, 1, &s);
    ET_CHECK(st == ET_ERR_FORMAT && s == NULL && strstr(et_load_error(), needle),
             "corruption at %zu: status %d, message '%s' (want '%s')", at, st, et_load_error(), needle);
    et_session_free(s);
    free(b);
}

/* STATE byte 120 is max_batch from minor 1 on; reserved (zero) in minor 0; 124.. stay zero. */
static void test_max_batch_field(const uint8_t *img0, size_t size0) {
    size_t st0 = section_offset(img0, 5);
    const uint32_t seven = 7;
    expect_format_error(img0, size0, st0 + 120, &seven, 4, "reserved bytes are not zero");
    tt_model m;
    build_mlp(&m);
    m.max_batch = 6;
    size_t size = 0;
    uint8_t *img = tt_write(&m, &size);
    size_t st = section_offset(img, 5);
    expect_format_error(img, size, st + 124, &seven, 4, "reserved bytes are not zero");
    free(img);
}

static void test_targeted_corruptions(const uint8_t *img, size_t size) {
    size_t ten = section_offset(img, 2) + 8, nod = section_offset(img, 3) + 8;
    int32_t big = 9999;
    uint8_t bad_dtype = 9, ndim7 = 7;
    uint16_t bad_op = 999;
    int64_t neg = -5, huge = (int64_t)1 << 40;
    uint32_t absurd = 0xFFFFFFFFu;
    expect_format_error(img, size, nod + 12 * 224 + 8 + 4, &big, 4, "record 12 (matmul) input 1 refers to tensor 9999 of 22");
    expect_format_error(img, size, nod + 3 * 224, &bad_op, 2, "op 999 unknown");
    expect_format_error(img, size, ten + 2 * 96 + 8, &bad_dtype, 1, "record 2 dtype 9 unknown");
    expect_format_error(img, size, ten + 2 * 96 + 10, &ndim7, 1, "ndim 7");
    expect_format_error(img, size, ten + 2 * 96 + 16, &neg, 8, "dim 0 = -5");
    expect_format_error(img, size, ten + 2 * 96 + 16, &huge, 8, "out of range");
    expect_format_error(img, size, ten + 3 * 96 + 4, &absurd, 4, "not a valid string");
    expect_format_error(img, size, ten - 8, &absurd, 4, "do not fit its size");
    expect_format_error(img, size, 24, &absurd, 4, "section count");
    /* the activation 'logits' stored with a wrong shape */
    int64_t five = 5;
    expect_format_error(img, size, ten + T_LOGITS * 96 + 24, &five, 8, "graph computes [4,3] f32");
    /* a matmul that no longer fits: shape inference names the layer */
    int64_t trans = 1;
    expect_format_error(img, size, nod + 3 * 224 + 56, &trans, 8, "layer 'fc2'");
    /* CRC problems */
    uint8_t *b = (uint8_t *)malloc(size);
    memcpy(b, img, size);
    b[size - 70] ^= 1;
    et_session *s = NULL;
    ET_CHECK(et_session_load_memory(b, size, 1, &s) == ET_ERR_FORMAT && strstr(et_load_error(), "CRC"),
             "flipped bit detected: %s", et_load_error());
    ET_CHECK(et_session_load_memory(b, 10, 1, &s) == ET_ERR_FORMAT && strstr(et_load_error(), "too small"),
             "tiny file: %s", et_load_error());
    ET_CHECK(et_session_load_memory(NULL, 0, 1, &s) == ET_ERR_FORMAT, "NULL bytes");
    free(b);
}

/* ---- mutation fuzz --------------------------------------------------------- */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void exercise(et_session *s) {
    static float zeros[4096];
    for (int p = 0; p < ET_PROGRAM_COUNT_; p++) {
        if (et_session_set_program(s, (et_program_kind)p) != ET_OK) continue;
        for (int i = 0; i < et_session_input_count(s); i++) {
            et_tensor_info info;
            et_session_tensor_info(s, et_session_input_tensor(s, i), &info);
            if (info.numel * 4 <= (int64_t)sizeof zeros)
                et_session_set_input(s, info.name, info.dtype, zeros, info.ndim, info.shape);
        }
        et_session_run(s);
    }
}

static void test_fuzz(const uint8_t *img, size_t size) {
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    uint8_t *b = (uint8_t *)malloc(size);
    int loaded = 0, rejected = 0, other = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, img, size);
        size_t n = size;
        int kind = (int)(rng_next(&rng) % 4);
        size_t at = (size_t)(rng_next(&rng) % size);
        if (kind == 0) {
            n = at;
        } else if (kind == 1) {
            int flips = 1 + (int)(rng_next(&rng) % 8);
            for (int k = 0; k < flips; k++) b[rng_next(&rng) % size] ^= (uint8_t)(1u << (rng_next(&rng) % 8));
        } else if (kind == 2) {
            static const uint32_t vals[] = {0xFFFFFFFFu, 0x7FFFFFFFu, 0x80000000u, 0, 1, 64, 0xFFFFu};
            uint32_t v = vals[rng_next(&rng) % 7];
            at &= ~(size_t)3;
            if (at + 4 <= size) memcpy(b + at, &v, 4);
        } else {
            static const uint64_t vals[] = {1ull << 63, ~0ull, 1ull << 32, 1ull << 40, 0, 0x7FFFFFFFFFFFFFFFull};
            uint64_t v = vals[rng_next(&rng) % 6];
            at &= ~(size_t)7;
            if (at + 8 <= size) memcpy(b + at, &v, 8);
        }
        if (kind != 0 && (rng_next(&rng) & 1)) etm_fix_crcs(b, n); /* reach the checks behind the CRCs */
        et_session *s = NULL;
        et_status st = et_session_load_memory(b, n, 1, &s);
        if (st == ET_OK) {
            loaded++;
            exercise(s);
            et_session_free(s);
        } else if (st == ET_ERR_FORMAT) {
            rejected++;
            ET_CHECK(et_load_error()[0] != '\0', "a rejection has a message");
        } else {
            other++;
            ET_CHECK(0, "mutation %d (kind %d at %zu): unexpected status %d: %s", it, kind, at, st, et_load_error());
        }
    }
    printf("runtime fuzz: 3000 mutations, %d rejected, %d harmless (loaded and ran), %d other\n", rejected, loaded,
           other);
    free(b);
}

/* ======================================================================= */
/* Limits (runtime/limits.c)                                                */
/* ======================================================================= */
et_status et_lr_check_step(double lr, uint64_t step, char *err, size_t cap); /* runtime internal */

static void test_memory_limit(const uint8_t *img, size_t size) {
    et_session *s = NULL;
    et_memory_info mi;
    ET_CHECK(et_session_load_memory(img, size, 1, &s) == ET_OK, "load: %s", et_load_error());
    et_session_memory_info(s, &mi);
    ET_CHECK(et_session_max_memory(s) == et_default_max_memory() && et_default_max_memory() > 0, "default limit");
    et_session_free(s);
    /* the limit is exact: the plan's total passes, one byte less is refused with a message */
    et_load_options opts = {1, mi.total_bytes};
    ET_CHECK(et_session_load_memory_ex(img, size, &opts, &s) == ET_OK, "limit == total: %s", et_load_error());
    et_session_free(s);
    s = NULL;
    opts.max_memory = mi.total_bytes - 1;
    ET_CHECK(et_session_load_memory_ex(img, size, &opts, &s) == ET_ERR_LIMIT && !s &&
             strstr(et_load_error(), "memory limit") && strstr(et_load_error(), "largest part"),
             "limit below total: %s", et_load_error());
    /* Resize above the limit: refused, nothing changes; set_max_memory below the plan: refused */
    opts.max_memory = mi.total_bytes + 256;
    ET_CHECK(et_session_load_memory_ex(img, size, &opts, &s) == ET_OK, "load: %s", et_load_error());
    if (!s) return;
    const char *names[2] = {"x", "labels"};
    int ndims[2] = {2, 1};
    int64_t xs[2] = {1000, D}, ys[1] = {1000};
    const int64_t *shapes[2] = {xs, ys};
    ET_CHECK(et_session_resize(s, 2, names, ndims, shapes) == ET_ERR_LIMIT && strstr(et_session_error(s), "memory limit"),
             "resize above the limit: %s", et_session_error(s));
    et_tensor_info ti;
    et_session_tensor_info(s, et_session_find_tensor(s, "x"), &ti);
    ET_CHECK(ti.shape[0] == N0, "a refused resize changes nothing");
    ET_CHECK(et_session_set_max_memory(s, 64) == ET_ERR_LIMIT && et_session_max_memory(s) == mi.total_bytes + 256,
             "set_max_memory below the plan");
    ET_CHECK(et_session_set_max_memory(s, 0) == ET_OK && et_session_max_memory(s) == et_default_max_memory(),
             "set_max_memory(0) restores the default");
    ET_CHECK(et_session_resize(s, 2, names, ndims, shapes) == ET_OK, "resize under the default: %s",
             et_session_error(s));
    et_session_free(s);
}

static void test_thread_limit(const uint8_t *img, size_t size) {
    int limit = et_thread_limit();
    et_session *s = NULL;
    ET_CHECK(limit >= ET_MAX_THREADS_PER_CORE, "thread limit %d", limit);
    ET_CHECK(et_session_load_memory(img, size, limit + 1, &s) == ET_ERR_ARG && !s &&
             strstr(et_load_error(), "per online core"), "threads above the limit: %s", et_load_error());
    ET_CHECK(et_session_load_memory(img, size, 100000, &s) == ET_ERR_ARG, "threads = 100000");
    ET_CHECK(et_session_load_memory(img, size, limit, &s) == ET_OK, "threads = limit: %s", et_load_error());
    if (!s) return;
    ET_CHECK(et_session_set_threads(s, 100000) == ET_ERR_ARG && et_session_threads(s) == limit, "set_threads");
    et_session_free(s);
}

static void test_schedules_and_file_limits(tt_model *m) {
    char err[512];
    float f[6] = {0};
    int64_t i6[6] = {0};
    f[0] = 1e30f;
    ET_CHECK(et_schedule_check(0.1f, 3, f, i6, 0, err, sizeof err) == ET_ERR_ARG && strstr(err, "at step 2"),
             "exponential 1e30: %s", err);
    f[0] = -1.0f, f[1] = 0.75f;
    ET_CHECK(et_schedule_check(0.1f, 5, f, i6, 0, err, sizeof err) == ET_ERR_ARG, "inv gamma -1");
    f[0] = 0.5f;
    ET_CHECK(et_schedule_check(0.1f, 5, f, i6, 0, err, sizeof err) == ET_OK, "inv gamma 0.5: %s", err);
    ET_CHECK(et_schedule_check(-1.0f, 0, f, i6, 0, err, sizeof err) == ET_ERR_ARG, "negative base");
    f[0] = 10.0f, i6[0] = 2, i6[1] = 4;
    ET_CHECK(et_schedule_check(0.1f, 2, f, i6, 3, err, sizeof err) == ET_OK, "multistep, finite range: %s", err);
    /* the per-step check the runtime makes before a train run */
    ET_CHECK(et_lr_check_step(NAN, 5, err, sizeof err) == ET_ERR_STATE && strstr(err, "step 5"), "nan lr");
    ET_CHECK(et_lr_check_step(-0.5, 7, err, sizeof err) == ET_ERR_STATE && strstr(err, "-0.5"), "negative lr");
    ET_CHECK(et_lr_check_step(1e39, 7, err, sizeof err) == ET_ERR_STATE, "lr beyond float");
    ET_CHECK(et_lr_check_step(0.0, 7, err, sizeof err) == ET_OK, "lr 0");
    /* a file is held to the API's limits */
    size_t size;
    et_session *s = NULL;
    float lr = m->base_lr;
    m->base_lr = -1.0f;
    uint8_t *b = tt_write(m, &size);
    ET_CHECK(et_session_load_memory(b, size, 1, &s) == ET_ERR_FORMAT && strstr(et_load_error(), "STATE"),
             "file with lr -1: %s", et_load_error());
    free(b);
    m->base_lr = lr;
    int64_t batch = m->t[T_X].shape[0];
    m->t[T_X].shape[0] = 0;
    b = tt_write(m, &size);
    ET_CHECK(et_session_load_memory(b, size, 1, &s) == ET_ERR_FORMAT && strstr(et_load_error(), "dimension 0 is 0"),
             "file with batch 0: %s", et_load_error());
    free(b);
    m->t[T_X].shape[0] = batch;
    b = tt_write(m, &size);
    ET_CHECK(et_session_load_memory(b, size, 1, &s) == ET_OK, "restored model loads: %s", et_load_error());
    ET_CHECK(s && et_session_set_lr(s, -0.1f) == ET_ERR_ARG && et_session_set_lr(s, NAN) == ET_ERR_ARG, "set_lr");
    et_session_free(s);
    free(b);
}

/* A file of a later minor may set bits this version reserves; the reader accepts them, and the
 * writer (which writes ET_FORMAT_MINOR) must drop them so its file loads (regression: found by
 * kernels/fuzz). */
static void test_minor_version_roundtrip(const uint8_t *img, size_t size) {
    uint8_t *b = (uint8_t *)malloc(size);
    memcpy(b, img, size);
    uint32_t minor = ET_FORMAT_MINOR + 1, hflags = 0x10;
    memcpy(b + 12, &minor, 4);
    memcpy(b + 28, &hflags, 4);
    b[section_offset(b, 2) + 8 + 11] |= 0x80; /* tensor record 0: an unknown flag bit */
    etm_fix_crcs(b, size);
    et_session *s = NULL, *r = NULL;
    ET_CHECK(et_session_load_memory(b, size, 1, &s) == ET_OK, "later-minor file with reserved bits: %s", et_load_error());
    char path[64];
    snprintf(path, sizeof path, "/tmp/et_test_minor_%ld.etm", (long)getpid());
    if (s) {
        ET_CHECK(et_session_save_file(s, path) == ET_OK, "save: %s", et_session_error(s));
        ET_CHECK(et_session_load_file(path, 1, &r) == ET_OK, "the saved file loads: %s", et_load_error());
    }
    et_session_free(r);
    et_session_free(s);
    remove(path);
    free(b);
}

/* ======================================================================= */
/* The eval cache (runtime/eval_cache.c): a 1x1 conv with a fused BatchNorm  */
/* ======================================================================= */
enum { EC_N = 2, EC_C = 8, EC_HW = 5, EC_OC = 16 };
enum { E_X, E_W, E_G, E_B, E_M, E_V, E_Y };
static float ec_w[EC_OC * EC_C], ec_g[EC_OC], ec_b[EC_OC], ec_m[EC_OC], ec_v[EC_OC];

/* conv2d x [2,8,5,5] * w [16,8,1,1], BatchNorm (weight, bias, running mean / var), relu6: the
 * eval program only (the pointwise path packs w: M 16, N 50, K 8). */
static void build_conv_bn(tt_model *m) {
    memset(m, 0, sizeof *m);
    et_fill_random(ec_w, EC_OC * EC_C, 31, -1.0f, 1.0f);
    et_fill_random(ec_g, EC_OC, 32, 0.5f, 1.5f);
    et_fill_random(ec_b, EC_OC, 33, -0.5f, 0.5f);
    et_fill_random(ec_m, EC_OC, 34, -0.5f, 0.5f);
    et_fill_random(ec_v, EC_OC, 35, 0.2f, 2.0f);
    const uint32_t no = 0xFFFFFFFFu;
    add_tensor(m, E_X, "x", ET_F32, ET_KIND_INPUT, 4, EC_N, EC_C, no, NULL);
    m->t[E_X].shape[2] = m->t[E_X].shape[3] = EC_HW;
    add_tensor(m, E_W, "conv.weight", ET_F32, ET_KIND_PARAM, 4, EC_OC, EC_C, no, ec_w);
    m->t[E_W].shape[2] = m->t[E_W].shape[3] = 1;
    add_tensor(m, E_G, "bn.weight", ET_F32, ET_KIND_PARAM, 1, EC_OC, 0, no, ec_g);
    add_tensor(m, E_B, "bn.bias", ET_F32, ET_KIND_PARAM, 1, EC_OC, 0, no, ec_b);
    add_tensor(m, E_M, "bn.running_mean", ET_F32, ET_KIND_BUFFER, 1, EC_OC, 0, no, ec_m);
    add_tensor(m, E_V, "bn.running_var", ET_F32, ET_KIND_BUFFER, 1, EC_OC, 0, no, ec_v);
    add_tensor(m, E_Y, "y", ET_F32, ET_KIND_ACT, 4, EC_N, EC_OC, no, NULL);
    m->t[E_Y].shape[2] = m->t[E_Y].shape[3] = EC_HW;
    int n = add_node(m, ET_OP_CONV2D, "conv", 7, (int32_t[]){E_X, E_W, -1, E_G, E_B, E_M, E_V}, 1,
                     (int32_t[]){E_Y});
    m->nd[n].n_ia = 10; /* stride 1, 1, pads 0, dilation 1, 1, groups 1, relu6 */
    m->nd[n].ia[0] = m->nd[n].ia[1] = m->nd[n].ia[6] = m->nd[n].ia[7] = m->nd[n].ia[8] = 1;
    m->nd[n].ia[9] = ET_ACT_RELU6;
    m->nd[n].n_fa = 2; m->nd[n].fa[1] = 1e-5f; /* act alpha, BatchNorm eps */
    tt_prog *ev = &m->pg[0];
    ev->kind = ET_PROGRAM_EVAL; ev->n_nodes = 1; ev->nodes[0] = 0; ev->n_in = 1; ev->in[0] = E_X;
    ev->n_out = 1; ev->out_name[0] = "output"; ev->out_t[0] = E_Y;
    m->n_progs = 1;
    m->base_lr = 0.1f;
}

static void ec_run(et_session *s, const float *x, float *y) {
    const int64_t shape[4] = {EC_N, EC_C, EC_HW, EC_HW};
    ET_CHECK(et_session_set_input(s, "x", ET_F32, x, 4, shape) == ET_OK && et_session_run(s) == ET_OK,
             "eval cache: run: %s", et_session_error(s));
    memcpy(y, et_session_tensor_read(s, et_session_output_tensor(s, 0)),
           sizeof(float) * EC_N * EC_OC * EC_HW * EC_HW);
}

/* Runs with the cache give the bits of runs without it (EDGETRAIN_EVAL_CACHE=0 at load); a write
 * through et_session_tensor_data (a weight, a running statistic) is seen by the next run; a
 * thread count change keeps the bits; memory_info reports the cache in the total. */
static void test_eval_cache(void) {
    tt_model m;
    build_conv_bn(&m);
    size_t size = 0;
    uint8_t *img = tt_write(&m, &size);
    et_session *on = NULL, *off = NULL;
    setenv("EDGETRAIN_EVAL_CACHE", "0", 1);
    ET_CHECK(et_session_load_memory(img, size, 2, &off) == ET_OK, "eval cache: load: %s", et_load_error());
    unsetenv("EDGETRAIN_EVAL_CACHE");
    ET_CHECK(et_session_load_memory(img, size, 2, &on) == ET_OK, "eval cache: load: %s", et_load_error());
    free(img);
    if (!on || !off) {
        et_session_free(on);
        et_session_free(off);
        return;
    }
    enum { NY = EC_N * EC_OC * EC_HW * EC_HW };
    static float x[EC_N * EC_C * EC_HW * EC_HW], a[NY], b[NY], prev[NY];
    et_fill_random(x, EC_N * EC_C * EC_HW * EC_HW, 36, -1.0f, 1.0f);
    et_memory_info mi;
    et_session_memory_info(on, &mi);
    ET_CHECK(mi.eval_cache_bytes == 0, "eval cache: none before the first run");
    for (int round = 0; round < 4; round++) {
        ec_run(on, x, a);
        ec_run(on, x, a); /* the run after the one that made it */
        ec_run(off, x, b);
        ET_CHECK(memcmp(a, b, sizeof a) == 0, "eval cache round %d: bits differ from a run without it", round);
        ET_CHECK(round == 0 || memcmp(a, prev, sizeof a) != 0, "eval cache round %d: the write was not seen",
                 round);
        memcpy(prev, a, sizeof a);
        et_session_memory_info(on, &mi);
        const size_t low = sizeof(float) * (EC_OC * EC_C + 2 * EC_OC);
        ET_CHECK(mi.eval_cache_bytes >= low &&
                     mi.total_bytes == mi.params_bytes + mi.grads_bytes + mi.optimizer_bytes + mi.const_bytes +
                                           mi.inputs_bytes + mi.activations_bytes + mi.workspace_bytes +
                                           mi.eval_cache_bytes,
                 "eval cache: memory_info %zu bytes (at least %zu), in the total", mi.eval_cache_bytes, low);
        /* the next round: a weight, a running variance, then a thread count change */
        if (round == 0 || round == 2) {
            float *wa = (float *)et_session_tensor_data(on, E_W), *wb = (float *)et_session_tensor_data(off, E_W);
            for (int i = 0; i < EC_OC * EC_C; i++) wa[i] *= -1.25f, wb[i] *= -1.25f;
        } else if (round == 1) {
            float *va = (float *)et_session_tensor_data(on, E_V), *vb = (float *)et_session_tensor_data(off, E_V);
            for (int i = 0; i < EC_OC; i++) va[i] *= 3.0f, vb[i] *= 3.0f;
        }
        if (round == 2) {
            et_session_set_threads(on, 1);
            et_session_set_threads(off, 1);
        }
    }
    et_session_free(on);
    et_session_free(off);
}

/* An image-first segment (et_segment, plan.c): x [4,16,192,192] (9.4 MB) -> 1x1 conv with bias
 * a -> relu b -> depthwise 3x3 c -> y = c + a, every node large. The eval program runs it image
 * by image: the same bits as the file resized to batch 1 and run image by image (no segment:
 * one image), for 1, 2 and 3 threads; a, b and c take no room in the arena. */
enum { SG_N = 4, SG_C = 16, SG_HW = 192 };
enum { S_X, S_W1, S_B1, S_A, S_R, S_W2, S_C, S_Y };
static float sg_w1[SG_C * SG_C], sg_b1[SG_C], sg_w2[SG_C * 9];

static void build_segment(tt_model *m, int pair) {
    memset(m, 0, sizeof *m);
    et_fill_random(sg_w1, SG_C * SG_C, 41, -0.5f, 0.5f);
    et_fill_random(sg_b1, SG_C, 42, -0.5f, 0.5f);
    et_fill_random(sg_w2, SG_C * 9, 43, -0.5f, 0.5f);
    const uint32_t no = 0xFFFFFFFFu;
    const int act4[] = {S_X, S_A, S_R, S_C, S_Y};
    const char *names[] = {"x", "a", "b", "c", "y"};
    for (int k = 0; k < 5; k++) {
        add_tensor(m, act4[k], names[k], ET_F32, k ? ET_KIND_ACT : ET_KIND_INPUT, 4, SG_N, SG_C, no, NULL);
        m->t[act4[k]].shape[2] = m->t[act4[k]].shape[3] = SG_HW;
    }
    add_tensor(m, S_W1, "pw.weight", ET_F32, ET_KIND_PARAM, 4, SG_C, SG_C, no, sg_w1);
    m->t[S_W1].shape[2] = m->t[S_W1].shape[3] = 1;
    add_tensor(m, S_B1, "pw.bias", ET_F32, ET_KIND_PARAM, 1, SG_C, 0, no, sg_b1);
    add_tensor(m, S_W2, "dw.weight", ET_F32, ET_KIND_PARAM, 4, SG_C, 1, no, sg_w2);
    m->t[S_W2].shape[2] = m->t[S_W2].shape[3] = 3;
    int n = add_node(m, ET_OP_CONV2D, "pw", 3, (int32_t[]){S_X, S_W1, S_B1}, 1, (int32_t[]){S_A});
    m->nd[n].n_ia = 10; /* stride 1, 1, pads 0, dilation 1, 1, groups 1, no act (pair: relu) */
    m->nd[n].ia[0] = m->nd[n].ia[1] = m->nd[n].ia[6] = m->nd[n].ia[7] = m->nd[n].ia[8] = 1;
    m->nd[n].ia[9] = pair ? ET_ACT_RELU : ET_ACT_NONE;
    m->nd[n].n_fa = 1;
    if (!pair) {
        n = add_node(m, ET_OP_ACT, "relu", 1, (int32_t[]){S_A}, 1, (int32_t[]){S_R});
        m->nd[n].n_ia = 1; m->nd[n].ia[0] = ET_ACT_RELU; m->nd[n].n_fa = 1;
    }
    n = add_node(m, ET_OP_CONV2D, "dw", 2, (int32_t[]){pair ? S_A : S_R, S_W2}, 1, (int32_t[]){S_C});
    m->nd[n].n_ia = 10; /* stride 1, 1, pads 1, dilation 1, 1, groups C */
    for (int k = 0; k < 8; k++) m->nd[n].ia[k] = 1;
    m->nd[n].ia[8] = SG_C;
    m->nd[n].n_fa = 1;
    add_node(m, ET_OP_ADD, "add", 2, (int32_t[]){S_C, pair ? S_X : S_A}, 1, (int32_t[]){S_Y});
    tt_prog *ev = &m->pg[0];
    ev->kind = ET_PROGRAM_EVAL; ev->n_nodes = pair ? 3 : 4;
    for (int k = 0; k < ev->n_nodes; k++) ev->nodes[k] = (uint32_t)k;
    ev->n_in = 1; ev->in[0] = S_X;
    ev->n_out = 1; ev->out_name[0] = "output"; ev->out_t[0] = S_Y;
    m->n_progs = 1;
    m->base_lr = 0.1f;
}

/* pair = 1: the model without the relu node (pw's epilogue applies it) and y = c + x: pw and
 * dw then form a channel-blocked pair (8 channels a block, two blocks), whose bits must equal
 * the images run one by one and the segment run without pairs (EDGETRAIN_SEGMENT_PAIRS=0). */
static void test_segments(int pair) {
    tt_model m;
    build_segment(&m, pair);
    size_t size = 0;
    uint8_t *img = tt_write(&m, &size);
    enum { IMG = SG_C * SG_HW * SG_HW };
    float *x = (float *)malloc(sizeof(float) * SG_N * IMG), *ref = (float *)malloc(sizeof(float) * SG_N * IMG);
    et_fill_random(x, SG_N * IMG, 44, -1.0f, 1.0f);
    et_session *one = NULL;
    ET_CHECK(et_session_load_memory(img, size, 1, &one) == ET_OK, "segments: load: %s", et_load_error());
    const int64_t shape1[4] = {1, SG_C, SG_HW, SG_HW}, shape[4] = {SG_N, SG_C, SG_HW, SG_HW};
    for (int i = 0; one && i < SG_N; i++) { /* batch 1: no segment */
        ET_CHECK(et_session_set_input(one, "x", ET_F32, x + (size_t)i * IMG, 4, shape1) == ET_OK &&
                     et_session_run(one) == ET_OK,
                 "segments: batch-1 run: %s", et_session_error(one));
        memcpy(ref + (size_t)i * IMG, et_session_tensor_read(one, S_Y), sizeof(float) * IMG);
    }
    et_session_free(one);
    /* a few values by hand: y = dw(relu(a)) + a, a = w1 x + b1, at image 3 channel 5 (pair:
     * y = dw(relu(a)) + x) */
    for (int p = 0; p < 3; p++) {
        const int i = 3, o = 5, h = p * 95, w = SG_HW - 1 - p * 40;
        double acc = 0, av = 0;
        for (int dh = -1; dh <= 1; dh++)
            for (int dw = -1; dw <= 1; dw++) {
                const int hh = h + dh, ww = w + dw;
                if (hh < 0 || ww < 0 || hh >= SG_HW || ww >= SG_HW) continue;
                double a = sg_b1[o];
                for (int c = 0; c < SG_C; c++)
                    a += (double)sg_w1[o * SG_C + c] * x[(size_t)i * IMG + ((size_t)c * SG_HW + hh) * SG_HW + ww];
                if (!dh && !dw) av = a;
                acc += (double)sg_w2[o * 9 + (dh + 1) * 3 + dw + 1] * (a > 0 ? a : 0);
            }
        if (pair) av = x[(size_t)i * IMG + ((size_t)o * SG_HW + h) * SG_HW + w];
        const float got = ref[(size_t)i * IMG + ((size_t)o * SG_HW + h) * SG_HW + w];
        ET_CHECK(fabs(got - (acc + av)) < 1e-4 * (1 + fabs(acc + av)), "segments: y at (%d,%d) %g, by hand %g", h,
                 w, got, acc + av);
    }
    for (int variant = 0; variant < 4; variant++) { /* 1, 2, 3 threads; 2 threads without pairs */
        const int threads = variant < 3 ? variant + 1 : 2;
        et_session *s = NULL;
        if (variant == 3) setenv("EDGETRAIN_SEGMENT_PAIRS", "0", 1);
        ET_CHECK(et_session_load_memory(img, size, threads, &s) == ET_OK, "segments: load: %s", et_load_error());
        unsetenv("EDGETRAIN_SEGMENT_PAIRS");
        if (!s) continue;
        ET_CHECK(et_session_set_input(s, "x", ET_F32, x, 4, shape) == ET_OK && et_session_run(s) == ET_OK,
                 "segments: run (%d threads): %s", threads, et_session_error(s));
        ET_CHECK(memcmp(et_session_tensor_read(s, S_Y), ref, sizeof(float) * SG_N * IMG) == 0,
                 "segments: pair %d variant %d: bits differ from the images run one by one", pair, variant);
        ET_CHECK(et_session_tensor_read(s, S_A) == NULL && et_session_tensor_read(s, S_C) == NULL,
                 "segments: the internal tensors have arena places");
        int32_t pr[3] = {-1, -1, -1};
        const int np = et_session_eval_pairs(s, pr, 1), want = pair && variant < 3;
        ET_CHECK(np == want && (!want || (pr[0] == 0 && pr[1] == 1 && pr[2] == 8)),
                 "segments: pair %d variant %d: %d pairs, [%d, %d] x%d", pair, variant, np, pr[0], pr[1], pr[2]);
        et_memory_info mi;
        et_session_memory_info(s, &mi);
        ET_CHECK(mi.activations_bytes == sizeof(float) * SG_N * IMG, "segments: %zu bytes of activations, want y's %zu",
                 mi.activations_bytes, sizeof(float) * SG_N * IMG);
        et_session_free(s);
    }
    free(x);
    free(ref);
    free(img);
}

/* Concurrent groups (plan.c): the MLP's train program has three -- fc2's bias, weight and input
 * gradients, fc1's bias and weight gradients, the four updates -- and the grad program the
 * first two. Five steps give the same bits at 1, 2 and 3 threads as without groups, and at 2
 * threads on contended cores (the nodes one after another, each on every thread). */
static void test_groups(const uint8_t *img, size_t size) {
    snapshot ref, got;
    for (int variant = 0; variant < 5; variant++) { /* no groups at 2 threads, 1, 2, 3 threads, contended */
        const int threads = variant == 0 || variant == 4 ? 2 : variant;
        et_pool_force_contended_(variant == 4);
        if (variant == 0) setenv("EDGETRAIN_NODE_GROUPS", "0", 1);
        et_session *s = NULL;
        et_status st = et_session_load_memory(img, size, threads, &s);
        unsetenv("EDGETRAIN_NODE_GROUPS");
        if (st != ET_OK) { ET_CHECK(0, "groups: load: %s", et_load_error()); return; }
        int32_t g[3 * 4];
        const int n = et_session_node_groups(s, ET_PROGRAM_TRAIN, g, 4);
        if (variant == 0) {
            ET_CHECK(n == 0, "groups: %d train groups with EDGETRAIN_NODE_GROUPS=0", n);
        } else {
            ET_CHECK(n == 3 && g[0] == 7 && g[1] == 9 && g[2] == 3 && g[3] == 11 && g[4] == 12 && g[5] == 2 &&
                         g[6] == 13 && g[7] == 16 && g[8] == 4,
                     "groups: train groups %d: [%d..%d] x%d, [%d..%d] x%d, [%d..%d] x%d", n, g[0], g[1], g[2], g[3],
                     g[4], g[5], g[6], g[7], g[8]);
            const int ng = et_session_node_groups(s, ET_PROGRAM_GRAD, g, 4);
            ET_CHECK(ng == 2 && g[2] == 3 && g[5] == 2, "groups: %d grad groups", ng);
            ET_CHECK(et_session_node_groups(s, ET_PROGRAM_EVAL, NULL, 0) == 0, "groups: the eval program has none");
            ET_CHECK(et_session_node_groups(NULL, ET_PROGRAM_TRAIN, NULL, 0) == -1 &&
                         et_session_node_groups(s, (et_program_kind)9, NULL, 0) == -1 &&
                         et_session_node_groups(s, ET_PROGRAM_TRAIN, NULL, 2) == -1,
                     "groups: bad arguments give -1");
        }
        for (int step = 0; step < 5; step++) {
            float x[N0 * D];
            int32_t y[N0];
            int64_t y64[N0];
            make_batch(N0, 70 + (uint64_t)step, x, y, y64);
            ET_CHECK(feed(s, N0, x, y64) == ET_OK && et_session_run(s) == ET_OK, "groups: step %d (%d threads): %s",
                     step, threads, et_session_error(s));
        }
        take(s, variant == 0 ? &ref : &got);
        if (variant > 0)
            ET_CHECK(memcmp(&ref, &got, sizeof ref) == 0,
                     "groups: %d threads%s: bits differ from the run without groups", threads,
                     variant == 4 ? " (contended)" : "");
        et_session_free(s);
    }
    ET_CHECK(et_pool_contended(), "groups: a forced contention is seen");
    et_pool_force_contended_(0);
}

void test_runtime(void) {
    tt_model m;
    build_mlp(&m);
    size_t size = 0;
    uint8_t *img = tt_write(&m, &size);
    test_crc_and_names();
    test_load_and_introspect(img, size);
    test_train_matches_reference(img, size);
    test_resize_save_reload(img, size);
    test_batch_switch();
    test_max_batch_field(img, size);
    test_nonfinite_guard(img, size);
    test_targeted_corruptions(img, size);
    test_fuzz(img, size);
    test_minor_version_roundtrip(img, size);
    test_memory_limit(img, size);
    test_thread_limit(img, size);
    test_schedules_and_file_limits(&m);
    test_eval_cache();
    test_segments(0);
    test_segments(1);
    test_groups(img, size);
    free(img);
}
