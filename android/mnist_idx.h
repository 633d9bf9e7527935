/* edgetrain android — MNIST from raw (un-gzipped) IDX files, and its batches.
 *
 * The C twin of edgetrain/data/mnist.py: the same file layouts, the same checks (magic, header
 * against length, 28x28 images, labels 0-9, equal counts) and the same preprocessing
 * x = (pixel/255 - mean)/std through a 256-entry table computed in double and rounded to float,
 * so a batch here is bit-identical to MnistDataset.get_batch(). Plain C99, no runtime calls.
 */
#ifndef EDGETRAIN_ANDROID_MNIST_IDX_H
#define EDGETRAIN_ANDROID_MNIST_IDX_H

#include <stddef.h>
#include <stdint.h>

#define ET_MNIST_SIDE 28
#define ET_MNIST_PIXELS (ET_MNIST_SIDE * ET_MNIST_SIDE)
#define ET_MNIST_PATH_MAX 4096
#define ET_MNIST_ERR_MAX (2 * ET_MNIST_PATH_MAX)

/* One split: images uint8 [count, 28, 28], labels uint8 [count] (0..9). */
typedef struct et_mnist_split {
    uint8_t *images;
    uint8_t *labels;
    int64_t count;
    char images_path[ET_MNIST_PATH_MAX];
    char labels_path[ET_MNIST_PATH_MAX];
} et_mnist_split;

/* Read one raw IDX file of unsigned bytes. Checks the magic (expect_magic, e.g. 2051 images,
 * 2049 labels), that the header's dimensions match the file length exactly, and rejects gzip
 * files with a hint. On success *data (malloc'ed, caller frees) holds the elements and
 * dims[0..*ndim-1] the dimensions (at most 4). Returns 0, or -1 with a message naming the path. */
int et_idx_read(const char *path, uint32_t expect_magic, uint8_t **data, int *ndim,
                uint32_t dims[4], char *err, size_t errlen);

/* Find "<prefix>-<kind>" (prefix "train" or "t10k"; kind "images-idx3-ubyte" or
 * "labels-idx1-ubyte", also spelt ".idx3-ubyte") in root, root/train|test (MindSpore's
 * MNIST_Data layout) or root/MNIST/raw. Returns 0 and the path, or -1 with a message. */
int et_mnist_find(const char *root, const char *prefix, const char *kind, char *path,
                  size_t pathlen, char *err, size_t errlen);

/* Load the train (train != 0) or test split from root, keeping the first `limit` samples
 * (limit < 0: all). Returns 0, or -1 with a message naming the offending path. */
int et_mnist_load(const char *root, int train, int64_t limit, et_mnist_split *out, char *err,
                  size_t errlen);
void et_mnist_free(et_mnist_split *s);

/* lut[p] = (float)((p / 255.0 - mean) / std), computed in double as numpy does. */
void et_mnist_make_lut(double mean, double std, float lut[256]);

/* Fill x (float32 [n, 1, side, side], side = 28 + 2*pad, border = lut[0]) and y (int32 [n])
 * with the samples order[0..n-1] of the split. */
void et_mnist_fill_batch(const et_mnist_split *s, const int64_t *order, int64_t n,
                         const float lut[256], int pad, float *x, int32_t *y);

/* The digit mask of a segmentation target (tests/families.py seg_target: the image > 0.5 on the
 * [0, 1] scale): 1 where pixel/255 > 0.5, i.e. pixel >= ET_MNIST_MASK_MIN, else 0. Decided on the
 * raw byte, so it does not depend on --mean/--std; with the default ones it is bit-identical to
 * seg_target of the normalised batch (tests/test_families_arm64.py checks all 256 values). */
#define ET_MNIST_MASK_MIN 128

/* Fill m (float32, laid out as et_mnist_fill_batch's x: [n, 1, side, side], border 0) with the
 * digit masks of the samples order[0..n-1]. */
void et_mnist_fill_mask(const et_mnist_split *s, const int64_t *order, int64_t n, int pad,
                        float *m);

/* ---- sample order -----------------------------------------------------------------------
 * splitmix64 (Steele, Lea, Flood 2014): state += 0x9E3779B97F4A7C15, then the output mix.
 * Epoch e of a shuffled run is a Fisher-Yates shuffle of the identity [0, n):
 *     for i = n-1 down to 1: j = splitmix64_next(&state) % (i + 1); swap(order[i], order[j])
 * with the state started at seed + e*(n-1)*0x9E3779B97F4A7C15 (mod 2^64), i.e. one generator
 * seeded with `seed` drawing n-1 numbers per epoch, epoch after epoch. Any epoch's order is
 * computed directly, so a resumed run sees the same data as an uninterrupted one. */
uint64_t et_splitmix64_next(uint64_t *state);
/* order[0..n-1] for `epoch`: identity if !shuffle, else the shuffle above. */
void et_mnist_epoch_order(int64_t *order, int64_t n, int shuffle, uint64_t seed, uint64_t epoch);

#endif /* EDGETRAIN_ANDROID_MNIST_IDX_H */
