/* edgetrain android — MNIST IDX reader, batch preprocessing and sample order (see mnist_idx.h). */
#include "mnist_idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define IDX_MAGIC_IMAGES 2051u /* 0x00000803: unsigned byte, 3 dims */
#define IDX_MAGIC_LABELS 2049u /* 0x00000801: unsigned byte, 1 dim */

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Read a whole file; -1 with a message on failure. */
static int read_all(const char *path, uint8_t **data, size_t *size, char *err, size_t errlen) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        snprintf(err, errlen, "%s: cannot seek (%s)", path, strerror(errno));
        fclose(f);
        return -1;
    }
    long end = ftell(f);
    if (end < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "%s: cannot determine the file size", path);
        fclose(f);
        return -1;
    }
    uint8_t *buf = (uint8_t *)malloc(end > 0 ? (size_t)end : 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory reading %ld bytes", path, end);
        fclose(f);
        return -1;
    }
    size_t got = end > 0 ? fread(buf, 1, (size_t)end, f) : 0;
    int bad = ferror(f) || got != (size_t)end;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: read error (%zu of %ld bytes)", path, got, end);
        free(buf);
        return -1;
    }
    *data = buf;
    *size = (size_t)end;
    return 0;
}

int et_idx_read(const char *path, uint32_t expect_magic, uint8_t **data, int *ndim,
                uint32_t dims[4], char *err, size_t errlen) {
    uint8_t *raw;
    size_t size;
    *data = NULL;
    *ndim = 0;
    if (read_all(path, &raw, &size, err, errlen) != 0) return -1;
    if (size >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        snprintf(err, errlen, "%s: gzip-compressed; et_train reads raw IDX files (gunzip it first)",
                 path);
        free(raw);
        return -1;
    }
    if (size < 4) {
        snprintf(err, errlen, "%s: too short for an IDX header (%zu bytes)", path, size);
        free(raw);
        return -1;
    }
    uint32_t magic = be32(raw);
    if (magic != expect_magic) {
        snprintf(err, errlen, "%s: bad magic number %u (0x%08x), expected %u (0x%08x); not an "
                 "IDX file of this kind", path, (unsigned)magic, (unsigned)magic,
                 (unsigned)expect_magic, (unsigned)expect_magic);
        free(raw);
        return -1;
    }
    int nd = raw[3];
    if (raw[2] != 0x08 || nd < 1 || nd > 4) {
        snprintf(err, errlen, "%s: unsupported IDX type 0x%02x with %d dimensions", path, raw[2],
                 nd);
        free(raw);
        return -1;
    }
    size_t header = 4 + 4 * (size_t)nd;
    if (size < header) {
        snprintf(err, errlen, "%s: truncated header: %zu bytes, an IDX file with %d dimensions "
                 "needs %zu", path, size, nd, header);
        free(raw);
        return -1;
    }
    uint64_t expected = 1;
    for (int k = 0; k < nd; k++) {
        dims[k] = be32(raw + 4 + 4 * k);
        expected *= dims[k];
        if (expected > ((uint64_t)1 << 40)) expected = (uint64_t)1 << 40; /* clamp: too big */
    }
    uint64_t got = size - header;
    if (got != expected) {
        snprintf(err, errlen, "%s: %s: header announces %llu data bytes but the file has %llu",
                 path, got < expected ? "truncated" : "unexpected trailing bytes",
                 (unsigned long long)expected, (unsigned long long)got);
        free(raw);
        return -1;
    }
    /* Keep the data in the same allocation: move it to the front. */
    memmove(raw, raw + header, (size_t)got);
    *data = raw;
    *ndim = nd;
    return 0;
}

int et_mnist_find(const char *root, const char *prefix, const char *kind, char *path,
                  size_t pathlen, char *err, size_t errlen) {
    if (!is_dir(root)) {
        snprintf(err, errlen, "%s: MNIST data folder not found", root);
        return -1;
    }
    char dotted[64];
    snprintf(dotted, sizeof dotted, "%s", kind);
    char *dash = strstr(dotted, "-idx");
    if (dash) *dash = '.';
    const char *sub = strcmp(prefix, "train") == 0 ? "train" : "test";
    const char *folders[3][2] = {{"", ""}, {"/", sub}, {"/", "MNIST/raw"}};
    const char *names[2] = {kind, dotted};
    for (int f = 0; f < 3; f++) {
        for (int n = 0; n < 2; n++) {
            int len = snprintf(path, pathlen, "%s%s%s/%s-%s", root, folders[f][0], folders[f][1],
                               prefix, names[n]);
            if (len > 0 && (size_t)len < pathlen && is_file(path)) return 0;
        }
    }
    /* Not found: say so, and point at a gzipped copy if there is one. */
    for (int f = 0; f < 3; f++) {
        int len = snprintf(path, pathlen, "%s%s%s/%s-%s.gz", root, folders[f][0], folders[f][1],
                           prefix, kind);
        if (len > 0 && (size_t)len < pathlen && is_file(path)) {
            snprintf(err, errlen, "%s: gzip-compressed; et_train reads raw IDX files (gunzip it "
                     "first, e.g. `gunzip -k %s`)", path, path);
            return -1;
        }
    }
    snprintf(err, errlen, "%s/%s-%s: MNIST file not found (looked in %s, %s/%s and %s/MNIST/raw)",
             root, prefix, kind, root, root, sub, root);
    return -1;
}

void et_mnist_free(et_mnist_split *s) {
    free(s->images);
    free(s->labels);
    s->images = NULL;
    s->labels = NULL;
    s->count = 0;
}

int et_mnist_load(const char *root, int train, int64_t limit, et_mnist_split *out, char *err,
                  size_t errlen) {
    const char *prefix = train ? "train" : "t10k";
    memset(out, 0, sizeof *out);
    if (et_mnist_find(root, prefix, "images-idx3-ubyte", out->images_path,
                      sizeof out->images_path, err, errlen) != 0 ||
        et_mnist_find(root, prefix, "labels-idx1-ubyte", out->labels_path,
                      sizeof out->labels_path, err, errlen) != 0)
        return -1;
    int nd_img, nd_lbl;
    uint32_t dimg[4], dlbl[4];
    if (et_idx_read(out->images_path, IDX_MAGIC_IMAGES, &out->images, &nd_img, dimg, err,
                    errlen) != 0)
        return -1;
    if (et_idx_read(out->labels_path, IDX_MAGIC_LABELS, &out->labels, &nd_lbl, dlbl, err,
                    errlen) != 0) {
        et_mnist_free(out);
        return -1;
    }
    if (dimg[1] != ET_MNIST_SIDE || dimg[2] != ET_MNIST_SIDE) {
        snprintf(err, errlen, "%s: images are %ux%u, MNIST images are 28x28", out->images_path,
                 (unsigned)dimg[1], (unsigned)dimg[2]);
        et_mnist_free(out);
        return -1;
    }
    if (dimg[0] != dlbl[0]) {
        snprintf(err, errlen, "%s: %u labels but %s has %u images", out->labels_path,
                 (unsigned)dlbl[0], out->images_path, (unsigned)dimg[0]);
        et_mnist_free(out);
        return -1;
    }
    out->count = dimg[0];
    for (int64_t i = 0; i < out->count; i++) {
        if (out->labels[i] > 9) {
            snprintf(err, errlen, "%s: label %u at index %lld is not a digit 0-9", out->labels_path,
                     (unsigned)out->labels[i], (long long)i);
            et_mnist_free(out);
            return -1;
        }
    }
    if (limit >= 0 && limit < out->count) out->count = limit;
    return 0;
}

void et_mnist_make_lut(double mean, double std, float lut[256]) {
    for (int p = 0; p < 256; p++) lut[p] = (float)(((double)p / 255.0 - mean) / std);
}

/* Images order[0..n) through lut into x [n, 1, side, side]; the border of a padded input gets
 * lut[0] (the background). */
static void fill_planes(const et_mnist_split *s, const int64_t *order, int64_t n, const float lut[256],
                        int pad, float *x) {
    const int side = ET_MNIST_SIDE + 2 * pad;
    const size_t plane = (size_t)side * side;
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *src = s->images + (size_t)order[b] * ET_MNIST_PIXELS;
        float *dst = x + (size_t)b * plane;
        if (pad) {
            for (size_t k = 0; k < plane; k++) dst[k] = lut[0];
        }
        for (int r = 0; r < ET_MNIST_SIDE; r++) {
            float *row = dst + (size_t)(r + pad) * side + pad;
            for (int c = 0; c < ET_MNIST_SIDE; c++) row[c] = lut[src[r * ET_MNIST_SIDE + c]];
        }
    }
}

void et_mnist_fill_batch(const et_mnist_split *s, const int64_t *order, int64_t n,
                         const float lut[256], int pad, float *x, int32_t *y) {
    fill_planes(s, order, n, lut, pad, x);
    for (int64_t b = 0; b < n; b++) y[b] = s->labels[order[b]];
}

void et_mnist_fill_mask(const et_mnist_split *s, const int64_t *order, int64_t n, int pad,
                        float *m) {
    float lut[256]; /* digit where the raw byte >= ET_MNIST_MASK_MIN; lut[0] = 0: the border */
    for (int p = 0; p < 256; p++) lut[p] = p >= ET_MNIST_MASK_MIN ? 1.0f : 0.0f;
    fill_planes(s, order, n, lut, pad, m);
}

#define SPLITMIX64_GAMMA 0x9E3779B97F4A7C15ull

uint64_t et_splitmix64_next(uint64_t *state) {
    uint64_t z = (*state += SPLITMIX64_GAMMA);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void et_mnist_epoch_order(int64_t *order, int64_t n, int shuffle, uint64_t seed, uint64_t epoch) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle || n < 2) return;
    uint64_t state = seed + epoch * (uint64_t)(n - 1) * SPLITMIX64_GAMMA;
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = (int64_t)(et_splitmix64_next(&state) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}
