/* edgetrain — the .etm reader and writer (docs/format.md).
 *
 * The reader trusts nothing: every offset, size, count and index is checked
 * before it is used, counts are compared with section sizes before anything
 * is allocated, and every failure is ET_ERR_FORMAT with a message naming the
 * section, record and field. Shapes are checked later by shape inference.
 * The writer produces the same layout, version 1.0 only, and replaces files
 * atomically through atomic_file.c.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime_internal.h"

static const char ET_MAGIC[8] = {'E', 'D', 'G', 'E', 'T', 'R', 'N', '\0'};
#define MAX_NAME_POOL ((uint64_t)64 << 20) /* names of one section, in bytes */

/* ---- little-endian field access ------------------------------------------ */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static int32_t rdi32(const uint8_t *p) { uint32_t u = rd32(p); int32_t v; memcpy(&v, &u, 4); return v; }
static int64_t rdi64(const uint8_t *p) { uint64_t u = rd64(p); int64_t v; memcpy(&v, &u, 8); return v; }
static float rdf32(const uint8_t *p) { uint32_t u = rd32(p); float v; memcpy(&v, &u, 4); return v; }

static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wri32(uint8_t *p, int32_t v) { uint32_t u; memcpy(&u, &v, 4); wr32(p, u); }
static void wri64(uint8_t *p, int64_t v) { uint64_t u; memcpy(&u, &v, 8); wr64(p, u); }
static void wrf32(uint8_t *p, float v) { uint32_t u; memcpy(&u, &v, 4); wr32(p, u); }

static const char *section_name(uint32_t type) {
    static const char *names[] = {"?", "STRINGS", "TENSORS", "NODES", "PROGRAMS", "STATE", "DATA", "META"};
    return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

/* ======================================================================= */
/* Reader                                                                   */
/* ======================================================================= */
typedef struct section_ref {
    int present;
    uint64_t off, size;
} section_ref;

typedef struct parse_ctx {
    const uint8_t *buf;
    size_t size;
    char *err;
    size_t cap;
    section_ref sec[ET_SEC_DATA + 1]; /* required sections by type */
    int strict;                       /* a minor this reader knows: reserved bytes and padding must be zero */
    uint32_t minor;                   /* the file's minor version */
} parse_ctx;

static et_status fail(parse_ctx *c, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static et_status fail(parse_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (c->err && c->cap) vsnprintf(c->err, c->cap, fmt, ap);
    va_end(ap);
    return ET_ERR_FORMAT;
}

static const uint8_t *sec_bytes(const parse_ctx *c, int type) { return c->buf + c->sec[type].off; }
static uint64_t sec_size(const parse_ctx *c, int type) { return c->sec[type].size; }

/* 1 if [off, off+len) lies inside STRINGS and holds no NUL byte. */
static int string_ok(const et_model *m, uint32_t off, uint32_t len) {
    if ((uint64_t)len > m->strings_size || (uint64_t)off > m->strings_size - len) return 0;
    return len == 0 || memchr(m->strings + off, 0, len) == NULL;
}

/* 1 if n bytes at p are all zero. */
static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Versions 1.0 and 1.1 define every byte: reserved fields, unused slots and the
 * padding between sections are zero (unused tensor slots -1). A later minor
 * may give reserved bytes a meaning, so these checks apply to the minors this
 * reader knows (up to ET_FORMAT_MINOR) only. */
static et_status check_zero(parse_ctx *c, const uint8_t *p, size_t n, const char *what) {
    if (c->strict && !all_zero(p, n)) return fail(c, "%s: reserved bytes are not zero", what);
    return ET_OK;
}

/* ---- header and section table ------------------------------------------- */
static et_status parse_header(parse_ctx *c, uint32_t *n_sections, uint32_t *flags) {
    const uint8_t *h = c->buf;
    if (c->size < ET_HEADER_BYTES)
        return fail(c, "file too small: %zu bytes (the header alone is %u)", c->size, ET_HEADER_BYTES);
    if (memcmp(h + ET_HDR_MAGIC, ET_MAGIC, 8) != 0) return fail(c, "not an edgetrain model: bad magic (expected \"EDGETRN\\0\")");
    uint32_t major = rd32(h + ET_HDR_MAJOR);
    if (major != ET_FORMAT_MAJOR)
        return fail(c, "unsupported format version %u.%u (this runtime reads version %u.x)", major,
                    rd32(h + ET_HDR_MINOR), ET_FORMAT_MAJOR);
    uint32_t crc = et_crc32(0, h, ET_HDR_CRC);
    if (crc != rd32(h + ET_HDR_CRC))
        return fail(c, "header CRC mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt",
                    rd32(h + ET_HDR_CRC), crc);
    uint64_t file_size = rd64(h + ET_HDR_FILE_SIZE);
    if (file_size != (uint64_t)c->size)
        return fail(c, "file size mismatch: header says %llu bytes, the file has %zu (truncated?)",
                    (unsigned long long)file_size, c->size);
    *n_sections = rd32(h + ET_HDR_NSECTIONS);
    *flags = rd32(h + ET_HDR_FLAGS);
    c->minor = rd32(h + ET_HDR_MINOR);
    c->strict = c->minor <= ET_FORMAT_MINOR;
    if (c->strict && (*flags & ~ET_HFLAG_KNOWN))
        return fail(c, "header: unknown flags 0x%x (version 1.%u defines bit 0 only)", *flags, c->minor);
    if (check_zero(c, h + ET_HDR_ZERO, ET_HEADER_BYTES - ET_HDR_ZERO, "header") != ET_OK) return ET_ERR_FORMAT;
    if (*n_sections < 1 || *n_sections > ET_MAX_SECTIONS)
        return fail(c, "section count %u out of range 1..%u", *n_sections, ET_MAX_SECTIONS);
    uint64_t table_end = ET_HEADER_BYTES + (uint64_t)*n_sections * ET_SECTION_ENTRY_BYTES;
    if (table_end > c->size)
        return fail(c, "section table (%u entries) extends past the end of the file", *n_sections);
    crc = et_crc32(0, h + ET_HEADER_BYTES, (size_t)(table_end - ET_HEADER_BYTES));
    if (crc != rd32(h + ET_HDR_TABLE_CRC))
        return fail(c, "section table CRC mismatch (stored 0x%08x, computed 0x%08x)", rd32(h + ET_HDR_TABLE_CRC),
                    crc);
    return ET_OK;
}

/* Bytes outside the header, the table and every section (alignment padding)
 * are zero. Sections are few (<= 64): walk them in offset order. */
static et_status check_padding(parse_ctx *c, uint64_t table_end, const uint64_t *offs, const uint64_t *sizes,
                               uint32_t n) {
    uint32_t order[ET_MAX_SECTIONS];
    if (!c->strict) return ET_OK;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = i;
        for (; k > 0 && offs[order[k - 1]] > offs[i]; k--) order[k] = order[k - 1];
        order[k] = i;
    }
    uint64_t pos = table_end;
    for (uint32_t k = 0; k <= n; k++) {
        uint64_t start = k < n ? offs[order[k]] : c->size;
        if (start > pos && !all_zero(c->buf + pos, (size_t)(start - pos)))
            return fail(c, "padding bytes [%llu, %llu) outside the sections are not zero", (unsigned long long)pos,
                        (unsigned long long)start);
        if (k < n && start + sizes[order[k]] > pos) pos = start + sizes[order[k]];
    }
    return ET_OK;
}

static et_status keep_extra_section(parse_ctx *c, et_model *m, uint32_t type, uint64_t off, uint64_t size) {
    et_extra_section *x = &m->extra[m->n_extra];
    x->type = type;
    x->size = size;
    x->bytes = (uint8_t *)et_malloc(size ? (size_t)size : 1);
    if (!x->bytes) return fail(c, "out of memory copying section %u (%llu bytes)", type, (unsigned long long)size);
    memcpy(x->bytes, c->buf + off, (size_t)size);
    m->n_extra++;
    return ET_OK;
}

static et_status parse_section_table(parse_ctx *c, et_model *m, uint32_t n) {
    uint64_t table_end = ET_HEADER_BYTES + (uint64_t)n * ET_SECTION_ENTRY_BYTES;
    uint64_t offs[ET_MAX_SECTIONS], sizes[ET_MAX_SECTIONS];
    uint32_t types[ET_MAX_SECTIONS];
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = c->buf + ET_HEADER_BYTES + (size_t)i * ET_SECTION_ENTRY_BYTES;
        uint32_t type = rd32(e + ET_SENT_TYPE);
        uint64_t off = rd64(e + ET_SENT_OFFSET), size = rd64(e + ET_SENT_SIZE);
        if (off % ET_ALIGN != 0)
            return fail(c, "section %u (%s): offset %llu is not 64-byte aligned", type, section_name(type),
                        (unsigned long long)off);
        if (off < table_end || off > c->size || size > c->size - off)
            return fail(c, "section %u (%s): bytes [%llu, +%llu) lie outside the file body [%llu, %zu)", type,
                        section_name(type), (unsigned long long)off, (unsigned long long)size,
                        (unsigned long long)table_end, c->size);
        for (uint32_t j = 0; j < i; j++) {
            if (types[j] == type) return fail(c, "section %u (%s) appears twice", type, section_name(type));
            if (off < offs[j] + sizes[j] && offs[j] < off + size)
                return fail(c, "section %u (%s) overlaps section %u (%s)", type, section_name(type), types[j],
                            section_name(types[j]));
        }
        if (c->strict && (rd32(e + ET_SENT_RESERVED) != 0 || rd32(e + ET_SENT_RESERVED2) != 0))
            return fail(c, "section table entry %u: reserved fields are not zero", i);
        uint32_t crc = et_crc32(0, c->buf + off, (size_t)size);
        if (crc != rd32(e + ET_SENT_CRC))
            return fail(c, "section %u (%s): CRC mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt",
                        type, section_name(type), rd32(e + ET_SENT_CRC), crc);
        types[i] = type;
        offs[i] = off;
        sizes[i] = size;
        if (type >= ET_SEC_STRINGS && type <= ET_SEC_DATA) {
            c->sec[type].present = 1;
            c->sec[type].off = off;
            c->sec[type].size = size;
        } else {
            et_status st = keep_extra_section(c, m, type, off, size);
            if (st != ET_OK) return st;
        }
    }
    for (uint32_t t = ET_SEC_STRINGS; t <= ET_SEC_DATA; t++)
        if (!c->sec[t].present) return fail(c, "required section %u (%s) is missing", t, section_name(t));
    return check_padding(c, table_end, offs, sizes, n);
}

/* ---- STATE ------------------------------------------------------------------ */
static et_status parse_state(parse_ctx *c, et_train_state *st) {
    if (sec_size(c, ET_SEC_STATE) < ET_STATE_BYTES)
        return fail(c, "section 5 (STATE): %llu bytes, expected at least %u",
                    (unsigned long long)sec_size(c, ET_SEC_STATE), ET_STATE_BYTES);
    const uint8_t *p = sec_bytes(c, ET_SEC_STATE);
    st->step = rd64(p + ET_SREC_STEP);
    st->epoch = rd64(p + ET_SREC_EPOCH);
    st->seed = rd64(p + ET_SREC_SEED);
    st->rng_counter = rd64(p + ET_SREC_RNG_COUNTER);
    st->base_lr = rdf32(p + ET_SREC_BASE_LR);
    st->sched_kind = rd32(p + ET_SREC_SCHED_KIND);
    for (int i = 0; i < 6; i++) st->sched_f[i] = rdf32(p + ET_SREC_SCHED_F + 4 * i);
    for (int i = 0; i < 6; i++) st->sched_i[i] = rdi64(p + ET_SREC_SCHED_I + 8 * i);
    st->warmup = rd32(p + ET_SREC_WARMUP);
    st->opt_kind = rd32(p + ET_SREC_OPT_KIND);
    if (!isfinite(st->base_lr)) return fail(c, "section 5 (STATE): base learning rate is not finite");
    if (st->sched_kind >= ET_SCHED_COUNT_)
        return fail(c, "section 5 (STATE): scheduler kind %u unknown (0..%d)", st->sched_kind, ET_SCHED_COUNT_ - 1);
    for (int i = 0; i < 6; i++)
        if (!isfinite(st->sched_f[i])) return fail(c, "section 5 (STATE): scheduler float %d is not finite", i);
    if ((st->sched_kind == ET_SCHED_STEP || st->sched_kind == ET_SCHED_COSINE) && st->sched_i[0] <= 0)
        return fail(c, "section 5 (STATE): scheduler %s needs a positive %s, got %lld",
                    st->sched_kind == ET_SCHED_STEP ? "step" : "cosine",
                    st->sched_kind == ET_SCHED_STEP ? "step_size" : "t_max", (long long)st->sched_i[0]);
    if (st->opt_kind >= ET_OPTIM_COUNT_)
        return fail(c, "section 5 (STATE): optimizer kind %u unknown (0..%d)", st->opt_kind, ET_OPTIM_COUNT_ - 1);
    st->max_batch = 0;
    if (c->minor == 0) return check_zero(c, p + ET_SREC_MAX_BATCH, ET_STATE_BYTES - ET_SREC_MAX_BATCH, "section 5 (STATE)");
    st->max_batch = rd32(p + ET_SREC_MAX_BATCH); /* minor 1 */
    return check_zero(c, p + ET_SREC_ZERO, ET_STATE_BYTES - ET_SREC_ZERO, "section 5 (STATE)");
}

/* ---- TENSORS ---------------------------------------------------------------- */
/* Checks a section that is `u32 count, u32 0, count * record` and returns count. */
static et_status record_count(parse_ctx *c, int type, uint32_t record_bytes, uint32_t *count) {
    uint64_t size = sec_size(c, type);
    if (size < 8) return fail(c, "section %d (%s): %llu bytes, too small for its count", type,
                              section_name((uint32_t)type), (unsigned long long)size);
    uint32_t n = rd32(sec_bytes(c, type));
    if ((uint64_t)n > (size - 8) / record_bytes || 8 + (uint64_t)n * record_bytes != size)
        return fail(c, "section %d (%s): %u records of %u bytes do not fit its size %llu", type,
                    section_name((uint32_t)type), n, record_bytes, (unsigned long long)size);
    if (n > (uint32_t)INT32_MAX) return fail(c, "section %d (%s): %u records is too many", type,
                                             section_name((uint32_t)type), n);
    *count = n;
    return check_zero(c, sec_bytes(c, type) + 4, 4, section_name((uint32_t)type));
}

static et_status parse_tensor_record(parse_ctx *c, et_model *m, uint32_t i, const uint8_t *r) {
    et_tensor_def *t = &m->tensors[i];
    t->name_off = rd32(r + ET_TREC_NAME_OFF);
    t->name_len = rd32(r + ET_TREC_NAME_LEN);
    uint8_t dtype = r[ET_TREC_DTYPE], kind = r[ET_TREC_KIND], ndim = r[ET_TREC_NDIM];
    t->flags = r[ET_TREC_FLAGS];
    t->owner = rd32(r + ET_TREC_OWNER);
    t->data_off = rd64(r + ET_TREC_DATA_OFF);
    t->data_size = rd64(r + ET_TREC_DATA_SIZE);
    if (!string_ok(m, t->name_off, t->name_len))
        return fail(c, "section 2 (TENSORS): record %u name [%u, +%u) is not a valid string in STRINGS (%llu bytes)",
                    i, t->name_off, t->name_len, (unsigned long long)m->strings_size);
    if (dtype >= ET_DTYPE_COUNT_) return fail(c, "section 2 (TENSORS): record %u dtype %u unknown", i, dtype);
    if (kind >= ET_KIND_COUNT_) return fail(c, "section 2 (TENSORS): record %u kind %u unknown", i, kind);
    if (ndim > ET_MAX_DIMS) return fail(c, "section 2 (TENSORS): record %u ndim %u > %d", i, ndim, ET_MAX_DIMS);
    t->kind = (et_tensor_kind)kind;
    t->shape.dtype = (et_dtype)dtype;
    t->shape.ndim = ndim;
    for (int d = 0; d < ET_MAX_DIMS; d++) t->shape.dim[d] = d < ndim ? rdi64(r + ET_TREC_SHAPE + 8 * d) : 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape.dim[d] < 0 || t->shape.dim[d] > ET_MAX_DIM)
            return fail(c, "section 2 (TENSORS): record %u dim %d = %lld out of range 0..2^31", i, d,
                        (long long)t->shape.dim[d]);
    if (!et_shape_is_sane(&t->shape))
        return fail(c, "section 2 (TENSORS): record %u is larger than 2^40 bytes", i);
    if (c->strict && ((t->flags & ~ET_TFLAG_KNOWN) || !all_zero(r + ET_TREC_SHAPE + 8 * ndim, 8 * (size_t)(ET_MAX_DIMS - ndim)) ||
                      !all_zero(r + ET_TREC_ZERO, ET_TENSOR_RECORD_BYTES - ET_TREC_ZERO) || (!et_kind_has_data(t->kind) && t->data_off != 0)))
        return fail(c, "section 2 (TENSORS): record %u has unknown flags or non-zero unused fields "
                    "(dims beyond ndim, data offset without data, reserved bytes)", i);
    if (t->name_len == 0 && (t->kind == ET_KIND_INPUT || t->kind == ET_KIND_PARAM || t->kind == ET_KIND_BUFFER ||
                             t->kind == ET_KIND_OPTSTATE))
        return fail(c, "section 2 (TENSORS): record %u (%s) must have a name", i, et_kind_name(t->kind));
    if (!et_kind_has_data(t->kind)) {
        if (t->data_size != 0)
            return fail(c, "section 2 (TENSORS): record %u (%s) carries no data but has data size %llu", i,
                        et_kind_name(t->kind), (unsigned long long)t->data_size);
        return ET_OK;
    }
    uint64_t want = (uint64_t)et_shape_bytes(&t->shape), data_sec = sec_size(c, ET_SEC_DATA);
    if (t->data_size != want)
        return fail(c, "section 2 (TENSORS): record %u data size %llu != numel x dtype size = %llu", i,
                    (unsigned long long)t->data_size, (unsigned long long)want);
    if (t->data_off % ET_ALIGN != 0)
        return fail(c, "section 2 (TENSORS): record %u data offset %llu is not 64-byte aligned", i,
                    (unsigned long long)t->data_off);
    if (t->data_off > data_sec || t->data_size > data_sec - t->data_off)
        return fail(c, "section 2 (TENSORS): record %u data [%llu, +%llu) lies outside DATA (%llu bytes)", i,
                    (unsigned long long)t->data_off, (unsigned long long)t->data_size,
                    (unsigned long long)data_sec);
    return ET_OK;
}

static et_status check_owner(parse_ctx *c, const et_model *m, uint32_t i) {
    const et_tensor_def *t = &m->tensors[i];
    if (t->kind != ET_KIND_GRAD && t->kind != ET_KIND_OPTSTATE) {
        if (t->owner != ET_NO_OWNER)
            return fail(c, "section 2 (TENSORS): record %u (%s) has owner %u; only GRAD/OPTSTATE tensors have one",
                        i, et_kind_name(t->kind), t->owner);
        return ET_OK;
    }
    if (t->owner >= m->n_tensors)
        return fail(c, "section 2 (TENSORS): record %u (%s) owner %u out of range (%u tensors)", i,
                    et_kind_name(t->kind), t->owner, m->n_tensors);
    const et_tensor_def *o = &m->tensors[t->owner];
    if (o->kind != ET_KIND_PARAM)
        return fail(c, "section 2 (TENSORS): record %u (%s) owner %u is a %s, not a PARAM", i,
                    et_kind_name(t->kind), t->owner, et_kind_name(o->kind));
    if (!et_shape_equal(&t->shape, &o->shape))
        return fail(c, "section 2 (TENSORS): record %u (%s) shape/dtype differs from its PARAM %u", i,
                    et_kind_name(t->kind), t->owner);
    return ET_OK;
}

/* Copies n validated (off, len) strings out of STRINGS into one new pool of
 * NUL-terminated names. The fields live in an array of records, so each is
 * given as the address of its first instance plus the record size (stride);
 * dst[i] receives the copy ("" for len 0). */
static et_status intern_strings(parse_ctx *c, et_model *m, size_t n, const uint32_t *off, size_t off_stride,
                                const uint32_t *len, size_t len_stride, const char **dst, size_t dst_stride,
                                char **pool_out, const char *what) {
    uint64_t total = 1;
    for (size_t i = 0; i < n; i++) {
        total += (uint64_t)*(const uint32_t *)((const char *)len + i * len_stride) + 1;
        if (total > MAX_NAME_POOL) return fail(c, "%s: names take more than %llu bytes", what,
                                               (unsigned long long)MAX_NAME_POOL);
    }
    char *pool = (char *)et_malloc((size_t)total);
    if (!pool) return fail(c, "%s: out of memory for names", what);
    *pool_out = pool;
    size_t pos = 1;
    pool[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        uint32_t o = *(const uint32_t *)((const char *)off + i * off_stride);
        uint32_t l = *(const uint32_t *)((const char *)len + i * len_stride);
        const char **d = (const char **)((char *)dst + i * dst_stride);
        if (l == 0) { *d = pool; continue; }
        memcpy(pool + pos, m->strings + o, l);
        pool[pos + l] = '\0';
        *d = pool + pos;
        pos += (size_t)l + 1;
    }
    return ET_OK;
}

static int cmp_name_ptr(const void *a, const void *b) {
    const et_tensor_def *x = *(const et_tensor_def *const *)a, *y = *(const et_tensor_def *const *)b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x < y ? -1 : x > y);
}

static et_status check_unique_names(parse_ctx *c, et_model *m) {
    const et_tensor_def **sorted = (const et_tensor_def **)et_calloc(m->n_tensors + 1, sizeof *sorted);
    if (!sorted) return fail(c, "out of memory checking tensor names");
    size_t n = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].name[0]) sorted[n++] = &m->tensors[i];
    qsort(sorted, n, sizeof *sorted, cmp_name_ptr);
    et_status st = ET_OK;
    for (size_t i = 1; i < n && st == ET_OK; i++)
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
            st = fail(c, "section 2 (TENSORS): tensor name '%s' is used by records %ld and %ld", sorted[i]->name,
                      (long)(sorted[i - 1] - m->tensors), (long)(sorted[i] - m->tensors));
    et_free((void *)sorted);
    return st;
}

static et_status parse_tensors(parse_ctx *c, et_model *m) {
    uint32_t n;
    et_status st = record_count(c, ET_SEC_TENSORS, ET_TENSOR_RECORD_BYTES, &n);
    if (st != ET_OK) return st;
    m->tensors = (et_tensor_def *)et_calloc((size_t)n + 1, sizeof *m->tensors);
    if (!m->tensors) return fail(c, "out of memory for %u tensor records", n);
    m->n_tensors = n;
    const uint8_t *base = sec_bytes(c, ET_SEC_TENSORS) + 8;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        st = parse_tensor_record(c, m, i, base + (size_t)i * ET_TENSOR_RECORD_BYTES);
        if (st != ET_OK) return st;
        total += et_align_up(et_shape_bytes(&m->tensors[i].shape));
        if (total > ET_MAX_BYTES) return fail(c, "section 2 (TENSORS): tensors need more than 2^40 bytes in total");
    }
    for (uint32_t i = 0; i < n; i++)
        if ((st = check_owner(c, m, i)) != ET_OK) return st;
    st = intern_strings(c, m, n, &m->tensors[0].name_off, sizeof(et_tensor_def), &m->tensors[0].name_len,
                        sizeof(et_tensor_def), &m->tensors[0].name, sizeof(et_tensor_def), &m->name_pool[0],
                        "section 2 (TENSORS)");
    if (st != ET_OK) return st;
    return check_unique_names(c, m);
}

/* ---- NODES ------------------------------------------------------------------ */
static et_status check_node_counts(parse_ctx *c, uint32_t i, const et_node_def *nd, const et_op_desc *d) {
    if (nd->n_in < d->min_in || nd->n_in > d->max_in)
        return fail(c, "section 3 (NODES): record %u (%s) has %d inputs, the op takes %d..%d", i, d->name,
                    nd->n_in, d->min_in, d->max_in);
    if (nd->n_out < d->min_out || nd->n_out > d->max_out)
        return fail(c, "section 3 (NODES): record %u (%s) has %d outputs, the op makes %d..%d", i, d->name,
                    nd->n_out, d->min_out, d->max_out);
    if (nd->n_iattr < d->min_iattr || nd->n_iattr > d->max_iattr)
        return fail(c, "section 3 (NODES): record %u (%s) has %d integer attributes, the op takes %d..%d", i,
                    d->name, nd->n_iattr, d->min_iattr, d->max_iattr);
    if (nd->n_fattr < d->min_fattr || nd->n_fattr > d->max_fattr)
        return fail(c, "section 3 (NODES): record %u (%s) has %d float attributes, the op takes %d..%d", i,
                    d->name, nd->n_fattr, d->min_fattr, d->max_fattr);
    return ET_OK;
}

/* Tensor slots: in range or -1 where optional; kinds fit the role. */
static et_status check_node_tensors(parse_ctx *c, const et_model *m, uint32_t i, const et_node_def *nd,
                                    const et_op_desc *d) {
    for (int k = 0; k < nd->n_in; k++) {
        int32_t t = nd->in[k];
        if (t == -1) {
            if (k < d->min_in) return fail(c, "section 3 (NODES): record %u (%s) input %d is required but absent",
                                           i, d->name, k);
            continue;
        }
        if (t < 0 || (uint32_t)t >= m->n_tensors)
            return fail(c, "section 3 (NODES): record %u (%s) input %d refers to tensor %d of %u", i, d->name, k,
                        t, m->n_tensors);
        et_tensor_kind kind = m->tensors[t].kind;
        if ((d->mut_in_mask >> k) & 1u) {
            if (kind != ET_KIND_PARAM && kind != ET_KIND_BUFFER && kind != ET_KIND_OPTSTATE)
                return fail(c, "section 3 (NODES): record %u (%s) updates input %d in place, but tensor %d is %s "
                            "(must be PARAM, BUFFER or OPTSTATE)", i, d->name, k, t, et_kind_name(kind));
        }
    }
    for (int k = 0; k < nd->n_out; k++) {
        int32_t t = nd->out[k];
        if (t == -1) {
            if (k < d->min_out)
                return fail(c, "section 3 (NODES): record %u (%s) output %d is required but absent", i, d->name, k);
            continue;
        }
        if (t < 0 || (uint32_t)t >= m->n_tensors)
            return fail(c, "section 3 (NODES): record %u (%s) output %d refers to tensor %d of %u", i, d->name, k,
                        t, m->n_tensors);
        et_tensor_kind kind = m->tensors[t].kind;
        if (kind != ET_KIND_ACT && kind != ET_KIND_GRAD)
            return fail(c, "section 3 (NODES): record %u (%s) output %d is tensor %d of kind %s (must be ACT or GRAD)",
                        i, d->name, k, t, et_kind_name(kind));
        for (int j = 0; j < nd->n_in; j++)
            if (nd->in[j] == t)
                return fail(c, "section 3 (NODES): record %u (%s) output %d is also its input %d (tensor %d)", i,
                            d->name, k, j, t);
        for (int j = 0; j < k; j++)
            if (nd->out[j] == t)
                return fail(c, "section 3 (NODES): record %u (%s) outputs %d and %d are the same tensor %d", i,
                            d->name, j, k, t);
    }
    return ET_OK;
}

/* Unused slots of a version 1.0 node record: tensors -1, attributes 0. */
static int node_slots_clean(const et_node_def *nd, const uint8_t *r) {
    if (rd16(r + ET_NREC_ZERO) != 0) return 0;
    for (int k = nd->n_in; k < ET_NODE_MAX_IN; k++)
        if (rdi32(r + ET_NREC_IN + 4 * k) != -1) return 0;
    for (int k = nd->n_out; k < ET_NODE_MAX_OUT; k++)
        if (rdi32(r + ET_NREC_OUT + 4 * k) != -1) return 0;
    return all_zero(r + ET_NREC_IATTR + 8 * nd->n_iattr, 8 * (size_t)(ET_NODE_MAX_IATTR - nd->n_iattr)) &&
           all_zero(r + ET_NREC_FATTR + 4 * nd->n_fattr, 4 * (size_t)(ET_NODE_MAX_FATTR - nd->n_fattr));
}

static et_status parse_node_record(parse_ctx *c, et_model *m, uint32_t i, const uint8_t *r) {
    et_node_def *nd = &m->nodes[i];
    nd->op = rd16(r + ET_NREC_OP);
    nd->n_in = r[ET_NREC_N_IN];
    nd->n_out = r[ET_NREC_N_OUT];
    nd->n_iattr = r[ET_NREC_N_IATTR];
    nd->n_fattr = r[ET_NREC_N_FATTR];
    const et_op_desc *d = et_op_desc_get(nd->op);
    if (!d) return fail(c, "section 3 (NODES): record %u op %d unknown (this runtime knows 0..%d)", i, nd->op,
                        ET_OP_COUNT - 1);
    if (nd->n_in > ET_NODE_MAX_IN || nd->n_out > ET_NODE_MAX_OUT || nd->n_iattr > ET_NODE_MAX_IATTR ||
        nd->n_fattr > ET_NODE_MAX_FATTR)
        return fail(c, "section 3 (NODES): record %u (%s) counts %d/%d/%d/%d exceed the limits 8/4/16/8", i,
                    d->name, nd->n_in, nd->n_out, nd->n_iattr, nd->n_fattr);
    et_status st = check_node_counts(c, i, nd, d);
    if (st != ET_OK) return st;
    for (int k = 0; k < ET_NODE_MAX_IN; k++) nd->in[k] = k < nd->n_in ? rdi32(r + ET_NREC_IN + 4 * k) : -1;
    for (int k = 0; k < ET_NODE_MAX_OUT; k++) nd->out[k] = k < nd->n_out ? rdi32(r + ET_NREC_OUT + 4 * k) : -1;
    for (int k = 0; k < ET_NODE_MAX_IATTR; k++) nd->iattr[k] = k < nd->n_iattr ? rdi64(r + ET_NREC_IATTR + 8 * k) : 0;
    for (int k = 0; k < ET_NODE_MAX_FATTR; k++) nd->fattr[k] = k < nd->n_fattr ? rdf32(r + ET_NREC_FATTR + 4 * k) : 0.0f;
    if (c->strict && !node_slots_clean(nd, r))
        return fail(c, "section 3 (NODES): record %u (%s) has non-zero padding or unused slots (inputs/outputs "
                    "beyond the count must be -1, attributes 0)", i, d->name);
    nd->layer_off = rd32(r + ET_NREC_LAYER_OFF);
    nd->layer_len = rd32(r + ET_NREC_LAYER_LEN);
    if (!string_ok(m, nd->layer_off, nd->layer_len))
        return fail(c, "section 3 (NODES): record %u (%s) layer name [%u, +%u) is not a valid string in STRINGS", i,
                    d->name, nd->layer_off, nd->layer_len);
    return check_node_tensors(c, m, i, nd, d);
}

static et_status parse_nodes(parse_ctx *c, et_model *m) {
    uint32_t n;
    et_status st = record_count(c, ET_SEC_NODES, ET_NODE_RECORD_BYTES, &n);
    if (st != ET_OK) return st;
    m->nodes = (et_node_def *)et_calloc((size_t)n + 1, sizeof *m->nodes);
    if (!m->nodes) return fail(c, "out of memory for %u node records", n);
    m->n_nodes = n;
    const uint8_t *base = sec_bytes(c, ET_SEC_NODES) + 8;
    for (uint32_t i = 0; i < n; i++)
        if ((st = parse_node_record(c, m, i, base + (size_t)i * ET_NODE_RECORD_BYTES)) != ET_OK) return st;
    return intern_strings(c, m, n, &m->nodes[0].layer_off, sizeof(et_node_def), &m->nodes[0].layer_len,
                          sizeof(et_node_def), &m->nodes[0].layer, sizeof(et_node_def), &m->name_pool[1],
                          "section 3 (NODES)");
}

/* ---- PROGRAMS ---------------------------------------------------------------- */
typedef struct cursor {
    const uint8_t *p;
    uint64_t pos, size;
} cursor;

static int take_u32s(cursor *cu, uint32_t count, uint32_t words_each, const uint8_t **out) {
    uint64_t left = cu->size - cu->pos;
    if ((uint64_t)count > left / (4u * words_each)) return 0;
    *out = cu->p + cu->pos;
    cu->pos += (uint64_t)count * 4u * words_each;
    return 1;
}

static et_status parse_program_lists(parse_ctx *c, et_model *m, et_program_def *pg, const char *pname,
                                     const uint8_t *nodes, const uint8_t *inputs, const uint8_t *outputs) {
    pg->nodes = (uint32_t *)et_calloc((size_t)pg->n_nodes + 1, sizeof(uint32_t));
    pg->inputs = (uint32_t *)et_calloc((size_t)pg->n_inputs + 1, sizeof(uint32_t));
    pg->outputs = (et_output_def *)et_calloc((size_t)pg->n_outputs + 1, sizeof(et_output_def));
    if (!pg->nodes || !pg->inputs || !pg->outputs) return fail(c, "out of memory for program %s", pname);
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        pg->nodes[k] = rd32(nodes + 4 * (size_t)k);
        if (pg->nodes[k] >= m->n_nodes)
            return fail(c, "section 4 (PROGRAMS): program %s position %u refers to node %u of %u", pname, k,
                        pg->nodes[k], m->n_nodes);
    }
    for (uint32_t k = 0; k < pg->n_inputs; k++) {
        uint32_t t = rd32(inputs + 4 * (size_t)k);
        if (t >= m->n_tensors)
            return fail(c, "section 4 (PROGRAMS): program %s input %u refers to tensor %u of %u", pname, k, t,
                        m->n_tensors);
        if (m->tensors[t].kind != ET_KIND_INPUT)
            return fail(c, "section 4 (PROGRAMS): program %s input %u is tensor '%s' of kind %s, not INPUT", pname,
                        k, m->tensors[t].name, et_kind_name(m->tensors[t].kind));
        pg->inputs[k] = t;
    }
    for (uint32_t k = 0; k < pg->n_outputs; k++) {
        et_output_def *o = &pg->outputs[k];
        const uint8_t *r = outputs + ET_PROGRAM_OUTPUT_BYTES * (size_t)k;
        o->name_off = rd32(r + ET_POUT_NAME_OFF);
        o->name_len = rd32(r + ET_POUT_NAME_LEN);
        o->tensor = rd32(r + ET_POUT_TENSOR);
        if (!string_ok(m, o->name_off, o->name_len))
            return fail(c, "section 4 (PROGRAMS): program %s output %u name is not a valid string in STRINGS", pname, k);
        if (o->tensor >= m->n_tensors)
            return fail(c, "section 4 (PROGRAMS): program %s output %u refers to tensor %u of %u", pname, k,
                        o->tensor, m->n_tensors);
    }
    return intern_strings(c, m, pg->n_outputs, &pg->outputs[0].name_off, sizeof(et_output_def),
                          &pg->outputs[0].name_len, sizeof(et_output_def), &pg->outputs[0].name,
                          sizeof(et_output_def), &m->name_pool[2 + (pg - m->programs)], "section 4 (PROGRAMS)");
}

static et_status parse_programs(parse_ctx *c, et_model *m) {
    cursor cu = {sec_bytes(c, ET_SEC_PROGRAMS), 0, sec_size(c, ET_SEC_PROGRAMS)};
    const uint8_t *head;
    if (!take_u32s(&cu, 2, 1, &head)) return fail(c, "section 4 (PROGRAMS): too small for its count");
    uint32_t count = rd32(head);
    if (check_zero(c, head + 4, 4, "section 4 (PROGRAMS)") != ET_OK) return ET_ERR_FORMAT;
    if (count < 1 || count > ET_PROGRAM_COUNT_)
        return fail(c, "section 4 (PROGRAMS): program count %u out of range 1..3", count);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *nodes, *inputs, *outputs;
        if (!take_u32s(&cu, ET_PROGRAM_HEAD_BYTES / 4, 1, &head)) return fail(c, "section 4 (PROGRAMS): program record %u is truncated", i);
        uint32_t kind = rd32(head + ET_PREC_KIND);
        if (kind >= ET_PROGRAM_COUNT_) return fail(c, "section 4 (PROGRAMS): program record %u kind %u unknown", i, kind);
        et_program_def *pg = &m->programs[kind];
        if (pg->present) return fail(c, "section 4 (PROGRAMS): program %s appears twice", et_program_name((int)kind));
        pg->present = 1;
        pg->n_nodes = rd32(head + ET_PREC_N_NODES);
        pg->n_inputs = rd32(head + ET_PREC_N_INPUTS);
        pg->n_outputs = rd32(head + ET_PREC_N_OUTPUTS);
        if (!take_u32s(&cu, pg->n_nodes, 1, &nodes) || !take_u32s(&cu, pg->n_inputs, 1, &inputs) ||
            !take_u32s(&cu, pg->n_outputs, ET_PROGRAM_OUTPUT_BYTES / 4, &outputs))
            return fail(c, "section 4 (PROGRAMS): program %s lists (%u nodes, %u inputs, %u outputs) run past the "
                        "section end", et_program_name((int)kind), pg->n_nodes, pg->n_inputs, pg->n_outputs);
        et_status st = parse_program_lists(c, m, pg, et_program_name((int)kind), nodes, inputs, outputs);
        if (st != ET_OK) return st;
    }
    if (cu.pos != cu.size)
        return fail(c, "section 4 (PROGRAMS): %llu unused bytes after the last program",
                    (unsigned long long)(cu.size - cu.pos));
    return ET_OK;
}

/* Every activation a node reads was computed earlier in the same program and
 * is computed only once there; a node runs at most once per program. */
static et_status check_program_dataflow(parse_ctx *c, const et_model *m, int kind, uint8_t *defined,
                                        uint8_t *node_seen) {
    const et_program_def *pg = &m->programs[kind];
    const char *pname = et_program_name(kind);
    memset(defined, 0, m->n_tensors);
    memset(node_seen, 0, m->n_nodes);
    for (uint32_t k = 0; k < pg->n_nodes; k++) {
        uint32_t ni = pg->nodes[k];
        const et_node_def *nd = &m->nodes[ni];
        const char *opn = et_op_name(nd->op);
        if (node_seen[ni]) return fail(c, "program %s: node %u (%s) is listed twice", pname, ni, opn);
        node_seen[ni] = 1;
        for (int j = 0; j < nd->n_in; j++) {
            int32_t t = nd->in[j];
            if (t >= 0 && m->tensors[t].kind == ET_KIND_ACT && !defined[t])
                return fail(c, "program %s: node %u (%s in layer '%s') reads activation %d ('%s') before any node "
                            "of the program computes it", pname, ni, opn, nd->layer, t, m->tensors[t].name);
        }
        for (int j = 0; j < nd->n_out; j++) {
            int32_t t = nd->out[j];
            if (t < 0 || m->tensors[t].kind != ET_KIND_ACT) continue;
            if (defined[t])
                return fail(c, "program %s: activation %d ('%s') is computed twice (again by node %u, %s)", pname, t,
                            m->tensors[t].name, ni, opn);
            defined[t] = 1;
        }
    }
    for (uint32_t k = 0; k < pg->n_outputs; k++) {
        uint32_t t = pg->outputs[k].tensor;
        if (m->tensors[t].kind == ET_KIND_ACT && !defined[t])
            return fail(c, "program %s: output '%s' is activation %u, which no node of the program computes", pname,
                        pg->outputs[k].name, t);
    }
    return ET_OK;
}

static et_status check_dataflow(parse_ctx *c, const et_model *m) {
    uint8_t *defined = (uint8_t *)et_calloc((size_t)m->n_tensors + 1, 1);
    uint8_t *seen = (uint8_t *)et_calloc((size_t)m->n_nodes + 1, 1);
    et_status st = (defined && seen) ? ET_OK : fail(c, "out of memory checking programs");
    for (int k = 0; k < ET_PROGRAM_COUNT_ && st == ET_OK; k++)
        if (m->programs[k].present) st = check_program_dataflow(c, m, k, defined, seen);
    et_free(defined);
    et_free(seen);
    return st;
}

static et_status parse_all(parse_ctx *c, et_model *m) {
    uint32_t n_sections = 0;
    et_status st = parse_header(c, &n_sections, &m->flags);
    if (st == ET_OK) st = parse_section_table(c, m, n_sections);
    if (st != ET_OK) return st;
    m->strings_size = sec_size(c, ET_SEC_STRINGS);
    m->strings = (uint8_t *)et_malloc(m->strings_size ? (size_t)m->strings_size : 1);
    if (!m->strings) return fail(c, "out of memory copying STRINGS");
    memcpy(m->strings, sec_bytes(c, ET_SEC_STRINGS), (size_t)m->strings_size);
    m->data = sec_bytes(c, ET_SEC_DATA);
    m->data_size = sec_size(c, ET_SEC_DATA);
    if ((st = parse_state(c, &m->state)) != ET_OK) return st;
    if ((st = parse_tensors(c, m)) != ET_OK) return st;
    if ((st = parse_nodes(c, m)) != ET_OK) return st;
    if ((st = parse_programs(c, m)) != ET_OK) return st;
    return check_dataflow(c, m);
}

et_status et_model_parse(const uint8_t *buf, size_t size, et_model *m, char *err, size_t cap) {
    parse_ctx c;
    memset(&c, 0, sizeof c);
    memset(m, 0, sizeof *m);
    c.buf = buf;
    c.size = size;
    c.err = err;
    c.cap = cap;
    if (!buf) return fail(&c, "no model bytes given");
    et_status st = parse_all(&c, m);
    if (st != ET_OK) et_model_free(m);
    return st;
}

void et_model_free(et_model *m) {
    if (!m) return;
    et_free(m->strings);
    et_free(m->tensors);
    et_free(m->nodes);
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) {
        et_free(m->programs[k].nodes);
        et_free(m->programs[k].inputs);
        et_free(m->programs[k].outputs);
    }
    for (uint32_t i = 0; i < m->n_extra; i++) et_free(m->extra[i].bytes);
    for (int i = 0; i < 2 + ET_PROGRAM_COUNT_; i++) et_free(m->name_pool[i]);
    memset(m, 0, sizeof *m);
}

/* ======================================================================= */
/* Writer                                                                   */
/* ======================================================================= */
typedef struct out_section {
    uint32_t type;
    const uint8_t *bytes; /* NULL for DATA (streamed from tensor memory) */
    uint64_t size;
    uint64_t off;
    uint32_t crc;
} out_section;

/* DATA layout: tensors with data in file order, each 64-byte aligned. */
static uint64_t layout_data(const et_model *m, const et_tshape *shapes, uint64_t *offs) {
    uint64_t pos = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        offs[i] = 0;
        if (!et_kind_has_data(m->tensors[i].kind)) continue;
        offs[i] = pos;
        pos += et_align_up(et_shape_bytes(&shapes[i]));
    }
    return pos;
}

static uint8_t *build_tensors(const et_model *m, const et_tshape *shapes, const uint64_t *offs, uint64_t *size) {
    *size = 8 + (uint64_t)m->n_tensors * ET_TENSOR_RECORD_BYTES;
    uint8_t *b = (uint8_t *)et_calloc((size_t)*size, 1);
    if (!b) return NULL;
    wr32(b, m->n_tensors);
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const et_tensor_def *t = &m->tensors[i];
        const et_tshape *s = &shapes[i];
        uint8_t *r = b + 8 + (size_t)i * ET_TENSOR_RECORD_BYTES;
        wr32(r + ET_TREC_NAME_OFF, t->name_off);
        wr32(r + ET_TREC_NAME_LEN, t->name_len);
        r[ET_TREC_DTYPE] = (uint8_t)s->dtype;
        r[ET_TREC_KIND] = (uint8_t)t->kind;
        r[ET_TREC_NDIM] = (uint8_t)s->ndim;
        r[ET_TREC_FLAGS] = t->flags & ET_TFLAG_KNOWN; /* the bits this version defines */
        wr32(r + ET_TREC_OWNER, t->owner);
        for (int d = 0; d < s->ndim; d++) wri64(r + ET_TREC_SHAPE + 8 * d, s->dim[d]);
        if (et_kind_has_data(t->kind)) {
            wr64(r + ET_TREC_DATA_OFF, offs[i]);
            wr64(r + ET_TREC_DATA_SIZE, (uint64_t)et_shape_bytes(s));
        }
    }
    return b;
}

static uint8_t *build_nodes(const et_model *m, uint64_t *size) {
    *size = 8 + (uint64_t)m->n_nodes * ET_NODE_RECORD_BYTES;
    uint8_t *b = (uint8_t *)et_calloc((size_t)*size, 1);
    if (!b) return NULL;
    wr32(b, m->n_nodes);
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        const et_node_def *nd = &m->nodes[i];
        uint8_t *r = b + 8 + (size_t)i * ET_NODE_RECORD_BYTES;
        wr16(r + ET_NREC_OP, (uint16_t)nd->op);
        r[ET_NREC_N_IN] = (uint8_t)nd->n_in;
        r[ET_NREC_N_OUT] = (uint8_t)nd->n_out;
        r[ET_NREC_N_IATTR] = (uint8_t)nd->n_iattr;
        r[ET_NREC_N_FATTR] = (uint8_t)nd->n_fattr;
        for (int k = 0; k < ET_NODE_MAX_IN; k++) wri32(r + ET_NREC_IN + 4 * k, k < nd->n_in ? nd->in[k] : -1);
        for (int k = 0; k < ET_NODE_MAX_OUT; k++) wri32(r + ET_NREC_OUT + 4 * k, k < nd->n_out ? nd->out[k] : -1);
        for (int k = 0; k < nd->n_iattr; k++) wri64(r + ET_NREC_IATTR + 8 * k, nd->iattr[k]);
        for (int k = 0; k < nd->n_fattr; k++) wrf32(r + ET_NREC_FATTR + 4 * k, nd->fattr[k]);
        wr32(r + ET_NREC_LAYER_OFF, nd->layer_off);
        wr32(r + ET_NREC_LAYER_LEN, nd->layer_len);
    }
    return b;
}

static uint8_t *build_programs(const et_model *m, uint64_t *size) {
    uint64_t n = 8;
    uint32_t count = 0;
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) {
        const et_program_def *pg = &m->programs[k];
        if (!pg->present) continue;
        count++;
        n += ET_PROGRAM_HEAD_BYTES + 4 * ((uint64_t)pg->n_nodes + pg->n_inputs) +
             ET_PROGRAM_OUTPUT_BYTES * (uint64_t)pg->n_outputs;
    }
    uint8_t *b = (uint8_t *)et_calloc((size_t)n, 1);
    if (!b) return NULL;
    *size = n;
    wr32(b, count);
    uint8_t *p = b + 8;
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) {
        const et_program_def *pg = &m->programs[k];
        if (!pg->present) continue;
        wr32(p + ET_PREC_KIND, (uint32_t)k);
        wr32(p + ET_PREC_N_NODES, pg->n_nodes);
        wr32(p + ET_PREC_N_INPUTS, pg->n_inputs);
        wr32(p + ET_PREC_N_OUTPUTS, pg->n_outputs);
        p += ET_PROGRAM_HEAD_BYTES;
        for (uint32_t i = 0; i < pg->n_nodes; i++, p += 4) wr32(p, pg->nodes[i]);
        for (uint32_t i = 0; i < pg->n_inputs; i++, p += 4) wr32(p, pg->inputs[i]);
        for (uint32_t i = 0; i < pg->n_outputs; i++, p += ET_PROGRAM_OUTPUT_BYTES) {
            wr32(p + ET_POUT_NAME_OFF, pg->outputs[i].name_off);
            wr32(p + ET_POUT_NAME_LEN, pg->outputs[i].name_len);
            wr32(p + ET_POUT_TENSOR, pg->outputs[i].tensor);
        }
    }
    return b;
}

static void build_state(const et_train_state *st, uint8_t *p) {
    memset(p, 0, ET_STATE_BYTES);
    wr64(p + ET_SREC_STEP, st->step);
    wr64(p + ET_SREC_EPOCH, st->epoch);
    wr64(p + ET_SREC_SEED, st->seed);
    wr64(p + ET_SREC_RNG_COUNTER, st->rng_counter);
    wrf32(p + ET_SREC_BASE_LR, st->base_lr);
    wr32(p + ET_SREC_SCHED_KIND, st->sched_kind);
    for (int i = 0; i < 6; i++) wrf32(p + ET_SREC_SCHED_F + 4 * i, st->sched_f[i]);
    for (int i = 0; i < 6; i++) wri64(p + ET_SREC_SCHED_I + 8 * i, st->sched_i[i]);
    wr32(p + ET_SREC_WARMUP, st->warmup);
    wr32(p + ET_SREC_OPT_KIND, st->opt_kind);
    wr32(p + ET_SREC_MAX_BATCH, st->max_batch);
}

static const uint8_t zeros64[64];

static void w_pad_to(et_afile *f, uint64_t off) {
    while (!f->err && f->pos < off) {
        uint64_t gap = off - f->pos;
        et_afile_write(f, zeros64, gap < sizeof zeros64 ? (size_t)gap : sizeof zeros64);
    }
}

static void w_data(et_afile *f, const et_model *m, const et_tshape *shapes, void *const *data) {
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        if (!et_kind_has_data(m->tensors[i].kind)) continue;
        size_t bytes = et_shape_bytes(&shapes[i]);
        et_afile_write(f, data[i], bytes);
        et_afile_write(f, zeros64, et_align_up(bytes) - bytes);
    }
}

/* Version 1.0 header. Only the flag bits 1.0 defines are written: a file of a later
 * minor may set others, and this writer stamps minor 0, whose reader rejects them. */
static void make_header(uint8_t *h, uint64_t file_size, uint32_t n_sections, uint32_t flags, uint32_t table_crc) {
    memset(h, 0, ET_HEADER_BYTES);
    memcpy(h + ET_HDR_MAGIC, ET_MAGIC, 8);
    wr32(h + ET_HDR_MAJOR, ET_FORMAT_MAJOR);
    wr32(h + ET_HDR_MINOR, ET_FORMAT_MINOR);
    wr64(h + ET_HDR_FILE_SIZE, file_size);
    wr32(h + ET_HDR_NSECTIONS, n_sections);
    wr32(h + ET_HDR_FLAGS, flags & ET_HFLAG_KNOWN);
    wr32(h + ET_HDR_TABLE_CRC, table_crc);
    wr32(h + ET_HDR_CRC, et_crc32(0, h, ET_HDR_CRC));
}

/* Streams the sections after a zeroed header and table, each CRC taken over the bytes as
 * written (tensor data may change meanwhile: the file still checks), then writes the real
 * header and table at offset 0. */
static void write_body(et_afile *f, const et_model *m, const et_tshape *shapes, void *const *data, out_section *secs,
                       uint32_t ns, uint8_t *head, size_t head_bytes) {
    et_afile_write(f, head, head_bytes);
    for (uint32_t i = 0; i < ns; i++) {
        w_pad_to(f, secs[i].off);
        f->crc = 0;
        if (secs[i].bytes) et_afile_write(f, secs[i].bytes, (size_t)secs[i].size);
        else w_data(f, m, shapes, data);
        secs[i].crc = f->crc;
        uint8_t *e = head + ET_HEADER_BYTES + (size_t)i * ET_SECTION_ENTRY_BYTES;
        wr32(e + ET_SENT_TYPE, secs[i].type);
        wr64(e + ET_SENT_OFFSET, secs[i].off);
        wr64(e + ET_SENT_SIZE, secs[i].size);
        wr32(e + ET_SENT_CRC, secs[i].crc);
    }
    make_header(head, f->pos, ns, m->flags, et_crc32(0, head + ET_HEADER_BYTES, (size_t)ns * ET_SECTION_ENTRY_BYTES));
    et_afile_pwrite(f, 0, head, head_bytes);
}

et_status et_model_save(const et_model *m, const et_tshape *shapes, void *const *data, const et_train_state *st,
                        const char *path, char *err, size_t cap) {
    out_section secs[ET_MAX_SECTIONS + 6];
    uint8_t state[ET_STATE_BYTES];
    uint64_t *offs = (uint64_t *)et_calloc((size_t)m->n_tensors + 1, sizeof(uint64_t));
    uint64_t tsz = 0, nsz = 0, psz = 0;
    uint8_t *tens = NULL, *nodes = NULL, *progs = NULL, *head = NULL;
    et_status rc = ET_ERR_NOMEM;
    uint64_t data_size = offs ? layout_data(m, shapes, offs) : 0;
    if (offs) tens = build_tensors(m, shapes, offs, &tsz);
    nodes = build_nodes(m, &nsz);
    progs = build_programs(m, &psz);
    build_state(st, state);
    uint32_t ns = 0;
    secs[ns++] = (out_section){ET_SEC_STRINGS, m->strings, m->strings_size, 0, 0};
    secs[ns++] = (out_section){ET_SEC_TENSORS, tens, tsz, 0, 0};
    secs[ns++] = (out_section){ET_SEC_NODES, nodes, nsz, 0, 0};
    secs[ns++] = (out_section){ET_SEC_PROGRAMS, progs, psz, 0, 0};
    secs[ns++] = (out_section){ET_SEC_STATE, state, ET_STATE_BYTES, 0, 0};
    for (uint32_t i = 0; i < m->n_extra && ns < ET_MAX_SECTIONS - 1; i++)
        secs[ns++] = (out_section){m->extra[i].type, m->extra[i].bytes, m->extra[i].size, 0, 0};
    secs[ns++] = (out_section){ET_SEC_DATA, NULL, data_size, 0, 0};
    size_t head_bytes = ET_HEADER_BYTES + (size_t)ns * ET_SECTION_ENTRY_BYTES;
    head = (uint8_t *)et_calloc(head_bytes, 1);
    if (!offs || !tens || !nodes || !progs || !head) {
        et_msgf(err, cap, "cannot save '%s': out of memory preparing the file; the old file, if any, is unchanged",
                path);
        goto done;
    }
    uint64_t pos = head_bytes;
    for (uint32_t i = 0; i < ns; i++) {
        secs[i].off = et_align_up((size_t)pos);
        pos = secs[i].off + secs[i].size;
    }
    et_afile f; /* CRCs, table and header are filled in while writing */
    rc = et_afile_open(&f, path, err, cap);
    if (rc != ET_OK) goto done;
    write_body(&f, m, shapes, data, secs, ns, head, head_bytes);
    rc = et_afile_commit(&f, err, cap);
done:
    et_free(offs);
    et_free(tens);
    et_free(nodes);
    et_free(progs);
    et_free(head);
    return rc;
}
