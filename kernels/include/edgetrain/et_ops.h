/* edgetrain — the op enum. Mirrors edgetrain/ops.py (a test checks they agree).
 * Inputs, outputs and attributes of every op are specified in docs/ops.md.
 * Append new ops at the end (the numbers are stored in .etm files). */
#ifndef EDGETRAIN_ET_OPS_H
#define EDGETRAIN_ET_OPS_H

#include "et_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum et_op {
    ET_OP_CONV2D = 0,
    ET_OP_CONV2D_BWD_INPUT = 1,
    ET_OP_CONV2D_BWD_WEIGHT = 2,
    ET_OP_CONV2D_BWD_BIAS = 3,
    ET_OP_MATMUL = 4,
    ET_OP_ADD = 5,
    ET_OP_SUB = 6,
    ET_OP_MUL = 7,
    ET_OP_DIV = 8,
    ET_OP_REDUCE_SUM_TO = 9,
    ET_OP_REDUCE = 10,
    ET_OP_BROADCAST_TO = 11,
    ET_OP_RESHAPE = 12,
    ET_OP_ACT = 13,
    ET_OP_ACT_BWD = 14,
    ET_OP_MAXPOOL2D = 15,
    ET_OP_MAXPOOL2D_BWD = 16,
    ET_OP_AVGPOOL2D = 17,
    ET_OP_AVGPOOL2D_BWD = 18,
    ET_OP_GLOBAL_AVGPOOL = 19,
    ET_OP_GLOBAL_AVGPOOL_BWD = 20,
    ET_OP_BATCHNORM_TRAIN = 21,
    ET_OP_BATCHNORM_INFER = 22,
    ET_OP_BATCHNORM_BWD = 23,
    ET_OP_DROPOUT = 24,
    ET_OP_DROPOUT_BWD = 25,
    ET_OP_SOFTMAX = 26,
    ET_OP_SOFTMAX_BWD = 27,
    ET_OP_SOFTMAX_XENT = 28,
    ET_OP_SOFTMAX_XENT_BWD = 29,
    ET_OP_SOFTMAX_XENT_PROB = 30,
    ET_OP_SOFTMAX_XENT_PROB_BWD = 31,
    ET_OP_MSE = 32,
    ET_OP_MSE_BWD = 33,
    ET_OP_L1 = 34,
    ET_OP_L1_BWD = 35,
    ET_OP_HINGE = 36,
    ET_OP_HINGE_BWD = 37,
    ET_OP_KLDIV = 38,
    ET_OP_KLDIV_BWD = 39,
    ET_OP_SGD_UPDATE = 40,
    ET_OP_ADAM_UPDATE = 41,
    ET_OP_AFFINE = 42,
    ET_OP_UNARY = 43,
    ET_OP_EMBEDDING = 44,
    ET_OP_EMBEDDING_BWD = 45,
    ET_OP_BCE = 46,
    ET_OP_BCE_BWD = 47,
    ET_OP_BCE_LOGITS = 48,
    ET_OP_BCE_LOGITS_BWD = 49,
    ET_OP_HUBER = 50,
    ET_OP_HUBER_BWD = 51,
    ET_OP_NLL = 52,
    ET_OP_NLL_BWD = 53,
    ET_OP_RMSPROP_UPDATE = 54,
    ET_OP_ADAGRAD_UPDATE = 55,
    ET_OP_GRAD_NORM = 56,
    ET_OP_GRAD_ACCUMULATE = 57,
    ET_OP_ACCUM_STEP = 58,
    ET_OP_CONV_TRANSPOSE2D = 59,
    ET_OP_INTERPOLATE = 60,
    ET_OP_INTERPOLATE_BWD = 61,
    ET_OP_ADAPTIVE_AVGPOOL2D = 62,
    ET_OP_ADAPTIVE_AVGPOOL2D_BWD = 63,
    ET_OP_ADAPTIVE_MAXPOOL2D = 64,
    ET_OP_ADAPTIVE_MAXPOOL2D_BWD = 65,
    ET_OP_FAKE_QUANT = 66,
    ET_OP_FAKE_QUANT_BWD = 67,
    ET_OP_QUANT_OBSERVE = 68,
    ET_OP_NORMALIZE = 69,
    ET_OP_NORMALIZE_BWD = 70,
    ET_OP_MAXIMUM = 71,
    ET_OP_MINIMUM = 72,
    ET_OP_TIE_WEIGHT = 73,
    ET_OP_REDUCE_MAX = 74,
    ET_OP_ARGMAX = 75,
    ET_OP_BMM = 76,
    ET_OP_CONCAT = 77,
    ET_OP_SLICE = 78,
    ET_OP_SLICE_BWD = 79,
    ET_OP_TRANSPOSE = 80,
    ET_OP_PAD = 81,
    ET_OP_PAD_BWD = 82,
    ET_OP_GATHER = 83,
    ET_OP_GATHER_BWD = 84,
    ET_OP_EXPAND = 85,
    ET_OP_QUANTIZE = 86,
    ET_OP_DEQUANTIZE = 87,
    ET_OP_QPREP = 88,
    ET_OP_QCONV2D = 89,
    ET_OP_QLINEAR = 90,
    ET_OP_QMAXPOOL2D = 91,
    ET_OP_QRELU = 92,
    ET_OP_QADD = 93,
    ET_OP_QCLAMP = 94,
    ET_OP_QGLOBAL_AVGPOOL = 95,
    ET_OP_COUNT
} et_op;

/* Name of an op as in edgetrain/ops.py (lower case, e.g. "conv2d_bwd_input");
 * NULL for an out-of-range value. */
const char *et_op_name(int op);

/* Shape inference of one node, for graph builders (the Python tracer): the
 * same rule the planner applies to a loaded file, so the two cannot disagree.
 * Inputs k < n_in: in_dtype[k] (et_dtype, or -1 for an absent optional input),
 * in_ndim[k], dims in in_dims[k * 6 .. k * 6 + ndim). Attributes as stored in
 * the file. Fills out_dtype/out_ndim/out_dims (same layout) for every output
 * slot of the op and *n_out. On a bad node returns ET_ERR_SHAPE (or ET_ERR_ARG
 * for an unknown op or wrong counts) with the reason in msg. */
et_status et_op_infer(int op, int n_in, const int *in_dtype, const int *in_ndim, const int64_t *in_dims,
                      int n_iattr, const int64_t *iattr, int n_fattr, const float *fattr,
                      int *n_out, int *out_dtype, int *out_ndim, int64_t *out_dims, char *msg, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* EDGETRAIN_ET_OPS_H */
