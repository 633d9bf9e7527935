/* edgetrain — fp32 kernels (NCHW), forward and backward.
 *
 * Conventions (all kernels):
 *  - Names: et_<dtype>_<op>_<fwd|bwd...>. This header declares the dispatching
 *    entry points; SIMD variants (__ref, __avx2, __avx512, __neon) are declared
 *    in the family's internal header in src/ and tested against __ref.
 *  - Outputs come first after the parameter struct where practical; pointers are
 *    restrict-qualified in the implementation; sizes are int64_t.
 *  - Kernels never allocate. Scratch memory is passed as (ws, ws_bytes); the
 *    required size comes from the matching *_ws_bytes() query.
 *  - `nthreads` is decided by the caller; kernels parallelise with
 *    et_parallel_for (the edgetrain thread pool, see et_common.h) over chunks
 *    fixed by the shapes, so results are bit-identical for every thread count.
 *  - Backward kernels OVERWRITE their outputs (they do not accumulate); the
 *    autodiff inserts ADD nodes where a value has several consumers.
 *  - Every kernel returns et_status; invalid arguments give ET_ERR_ARG /
 *    ET_ERR_SHAPE, a label out of range ET_ERR_LABEL.
 */
#ifndef EDGETRAIN_ET_KERNELS_H
#define EDGETRAIN_ET_KERNELS_H

#include "et_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================= */
/* GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major.     */
/* op(A) = A (lda >= K) or A^T when trans_a (A stored K x M, lda >= M).      */
/* op(B) = B (ldb >= N) or B^T when trans_b (B stored N x K, ldb >= K).      */
/* beta == 0 means C is not read (may hold NaN).                              */
/* ======================================================================= */
size_t et_f32_gemm_ws_bytes(int64_t M, int64_t N, int64_t K, int nthreads);
et_status et_f32_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc,
                      void *ws, size_t ws_bytes, int nthreads);

/* Pre-packed A, for many products with the same op(A) (convolution weights
 * applied image after image): et_f32_gemm_pack_a packs op(A) once, for the
 * ISA chosen now, into pa (et_f32_gemm_pack_a_bytes(M, K) bytes, any
 * alignment); et_f32_gemm_pa then computes exactly what et_f32_gemm computes
 * (the same bits) without packing A again. A must still be passed and must
 * hold the values that were packed: when pa does not fit the call (other M,
 * K or trans_a, another ISA chosen since, NULL) or the product takes the
 * unpacked path, et_f32_gemm_pa packs A itself. Its workspace rule is
 * et_f32_gemm's. */
size_t et_f32_gemm_pack_a_bytes(int64_t M, int64_t K);
et_status et_f32_gemm_pack_a(int trans_a, int64_t M, int64_t K, const float *A, int64_t lda,
                             void *pa, size_t pa_bytes);
et_status et_f32_gemm_pa(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const void *pa,
                         const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc,
                         void *ws, size_t ws_bytes, int nthreads);

/* ======================================================================= */
/* Activations (elementwise). For the backward, `t` is the forward INPUT x   */
/* for relu, relu6, leaky_relu, hardswish and the forward OUTPUT y for       */
/* sigmoid and tanh. relu grad at 0 is 0 (PyTorch). relu6 grad is 1 on       */
/* (0, 6) exclusive. leaky_relu uses alpha as negative slope.                */
/* ======================================================================= */
typedef enum et_act {
    ET_ACT_NONE = 0,
    ET_ACT_RELU = 1,
    ET_ACT_RELU6 = 2,
    ET_ACT_LEAKY_RELU = 3,
    ET_ACT_SIGMOID = 4,
    ET_ACT_TANH = 5,
    ET_ACT_HARDSWISH = 6,
    ET_ACT_COUNT_
} et_act;

et_status et_f32_act_fwd(et_act act, float alpha, int64_t n, const float *x, float *y, int nthreads);
et_status et_f32_act_bwd(et_act act, float alpha, int64_t n, const float *t, const float *dy,
                         float *dx, int nthreads);
/* y may alias x in et_f32_act_fwd; dx may alias dy in et_f32_act_bwd. */

/* ======================================================================= */
/* Convolution 2-D, NCHW, weights [OC, C/groups, KH, KW].                   */
/* ======================================================================= */
typedef struct et_conv2d_params {
    int64_t n, c, h, w;               /* input */
    int64_t oc, kh, kw;               /* weights */
    int64_t stride_h, stride_w;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t dil_h, dil_w;
    int64_t groups;
    et_act act;                       /* fused activation after bias (fwd only); alpha below */
    float act_alpha;
    int64_t oh, ow;                   /* output, filled by et_conv2d_params_init */
    /* fused eval BatchNorm (fwd only; NULL = none): after the bias, y = y * bn_scale[o] +
     * bn_shift[o] (et_f32_bn_infer_factor's factors), then act: batchnorm_infer's bits. */
    const float *bn_scale, *bn_shift;
} et_conv2d_params;

/* Validates all fields (positive sizes, c and oc divisible by groups, output
 * at least 1x1) and computes oh, ow. */
et_status et_conv2d_params_init(et_conv2d_params *p);

size_t et_f32_conv2d_fwd_ws_bytes(const et_conv2d_params *p, int nthreads);
size_t et_f32_conv2d_bwd_input_ws_bytes(const et_conv2d_params *p, int nthreads);
size_t et_f32_conv2d_bwd_weight_ws_bytes(const et_conv2d_params *p, int nthreads);

/* y[n,oc,oh,ow] = act(conv(x, w) + b); b may be NULL. */
et_status et_f32_conv2d_fwd(const et_conv2d_params *p, const float *x, const float *w,
                            const float *b, float *y, void *ws, size_t ws_bytes, int nthreads);
/* dx[n,c,h,w] from dy[n,oc,oh,ow] and w. */
et_status et_f32_conv2d_bwd_input(const et_conv2d_params *p, const float *dy, const float *w,
                                  float *dx, void *ws, size_t ws_bytes, int nthreads);
/* dw[oc,c/g,kh,kw] from dy and x. */
et_status et_f32_conv2d_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x,
                                   float *dw, void *ws, size_t ws_bytes, int nthreads);
/* db[oc] = sum over n, oh, ow of dy. */
et_status et_f32_conv2d_bwd_bias(const et_conv2d_params *p, const float *dy, float *db, int nthreads);

/* ======================================================================= */
/* Pooling 2-D, NCHW. Padding is symmetric (PyTorch). ceil_mode as PyTorch: */
/* the last window must start inside the input or the left padding.         */
/* Max pool: padded cells are -inf; backward recomputes the argmax from x   */
/* (first maximum wins, NaN propagates as in PyTorch) — no index storage.   */
/* ======================================================================= */
typedef struct et_pool2d_params {
    int64_t n, c, h, w;
    int64_t kh, kw;
    int64_t stride_h, stride_w;
    int64_t pad_h, pad_w;
    int64_t dil_h, dil_w;              /* max pool only; 1 for avg pool */
    int ceil_mode;
    int count_include_pad;            /* avg pool only */
    int64_t oh, ow;                   /* filled by et_pool2d_params_init */
} et_pool2d_params;

et_status et_pool2d_params_init(et_pool2d_params *p); /* validates; pad <= kernel/2 as PyTorch */

et_status et_f32_maxpool2d_fwd(const et_pool2d_params *p, const float *x, float *y, int nthreads);
et_status et_f32_maxpool2d_bwd(const et_pool2d_params *p, const float *x, const float *dy,
                               float *dx, int nthreads);
/* maxpool2d_bwd then act_bwd(act, ., x) in one pass: a window's gradient reaches its winning
 * cell only where the act passes gradient at the winner's value (relu: > 0, relu6: in (0, 6),
 * NaN passes); the same bits as the two ops. act: ET_ACT_NONE, ET_ACT_RELU or ET_ACT_RELU6. */
et_status et_f32_maxpool2d_act_bwd(const et_pool2d_params *p, et_act act, const float *x,
                                   const float *dy, float *dx, int nthreads);
et_status et_f32_avgpool2d_fwd(const et_pool2d_params *p, const float *x, float *y, int nthreads);
et_status et_f32_avgpool2d_bwd(const et_pool2d_params *p, const float *dy, float *dx, int nthreads);
/* Global average pool: x[n,c,hw] -> y[n,c]. */
et_status et_f32_global_avgpool_fwd(int64_t n, int64_t c, int64_t hw, const float *x, float *y,
                                    int nthreads);
et_status et_f32_global_avgpool_bwd(int64_t n, int64_t c, int64_t hw, const float *dy, float *dx,
                                    int nthreads);

/* ======================================================================= */
/* Broadcast binary ops and reductions. Shapes are given with the same rank */
/* ndim (<= ET_MAX_DIMS), right-aligned (numpy broadcasting), each input    */
/* dim equal to the output dim or 1.                                        */
/* ======================================================================= */
#define ET_MAX_DIMS 6
/* MAX / MIN propagate NaN; TIE_WEIGHT is 1 where a > b, 0.5 where a == b, else 0 (the gradient
 * share of maximum's a, PyTorch's even split at ties). */
typedef enum et_binop {
    ET_BIN_ADD = 0,
    ET_BIN_SUB = 1,
    ET_BIN_MUL = 2,
    ET_BIN_DIV = 3,
    ET_BIN_MAX = 4,
    ET_BIN_MIN = 5,
    ET_BIN_TIE_WEIGHT = 6,
    ET_BINOP_COUNT_
} et_binop;

et_status et_f32_binary(et_binop op, int ndim, const int64_t *y_shape,
                        const int64_t *a_shape, const float *a,
                        const int64_t *b_shape, const float *b,
                        float *y, int nthreads);
/* y = scale * sum of x over the dims where y_shape is 1 and x_shape is not
 * (y_shape broadcasts to x_shape). Covers sum/mean over any axes and the
 * gradient of a broadcast. */
et_status et_f32_reduce_sum_to(int ndim, const int64_t *x_shape, const float *x,
                               const int64_t *y_shape, float *y, float scale, int nthreads);
/* y = scale * broadcast(x) from x_shape to y_shape (gradient of a reduction). */
et_status et_f32_broadcast_to(int ndim, const int64_t *x_shape, const float *x,
                              const int64_t *y_shape, float *y, float scale, int nthreads);
/* y = alpha * x + beta (y may alias x). */
et_status et_f32_affine(int64_t n, float alpha, float beta, const float *x, float *y, int nthreads);
/* Elementwise math y = f(x; a, b) (y may alias x). Computed in double with libm and rounded to
 * float: sqrt is exact everywhere; exp/log/erf/pow are glibc's double routines (< 1 ulp), so x86
 * and aarch64 agree unless a double result lies within 1 double-ulp of a float rounding tie. */
typedef enum et_unary {
    ET_UN_EXP = 0,
    ET_UN_LOG = 1,
    ET_UN_SQRT = 2,
    ET_UN_RSQRT = 3,
    ET_UN_ABS = 4,
    ET_UN_ERF = 5,
    ET_UN_SIGN = 6,     /* -1, 0, 1 (NaN stays NaN) */
    ET_UN_POW = 7,      /* x^a */
    ET_UN_CLAMP = 8,    /* min(max(x, a), b); NaN stays NaN */
    ET_UN_IN_RANGE = 9, /* 1 if a <= x <= b else 0 (the clamp gradient mask) */
    ET_UNARY_COUNT_
} et_unary;
et_status et_f32_unary(et_unary fn, float a, float b, int64_t n, const float *x, float *y, int nthreads);

/* ======================================================================= */
/* Batch normalisation over (N, HW) per channel c. Works for BatchNorm1d    */
/* with hw = 1. Training uses batch statistics (biased variance for the     */
/* normalisation) and updates running stats in place with momentum:        */
/*   running = (1 - momentum) * running + momentum * batch (unbiased var).  */
/* save_mean / save_invstd [c] are kept for the backward.                   */
/* ======================================================================= */
et_status et_f32_batchnorm_train_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                     const float *gamma, const float *beta,
                                     float *running_mean, float *running_var,
                                     float momentum, float eps,
                                     float *y, float *save_mean, float *save_invstd, int nthreads);
et_status et_f32_batchnorm_infer_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                     const float *gamma, const float *beta,
                                     const float *running_mean, const float *running_var,
                                     float eps, float *y, int nthreads);
/* dgamma, dbeta may be NULL (frozen affine). */
et_status et_f32_batchnorm_bwd(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy,
                               const float *gamma, const float *save_mean, const float *save_invstd,
                               float *dx, float *dgamma, float *dbeta, int nthreads);
/* Frozen statistics (QAT freeze_bn_step): y = eval's, save_mean = running_mean, save_invstd =
 * 1 / sqrt(running_var + eps), running statistics untouched; the backward treats them as
 * constants: dx = dy * gamma * save_invstd, dgamma = sum(dy * xhat), dbeta = sum(dy). */
et_status et_f32_batchnorm_frozen_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                      const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var,
                                      float eps, float *y, float *save_mean, float *save_invstd,
                                      int nthreads);
et_status et_f32_batchnorm_frozen_bwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                      const float *dy, const float *gamma, const float *save_mean,
                                      const float *save_invstd, float *dx, float *dgamma,
                                      float *dbeta, int nthreads);

/* ======================================================================= */
/* Dropout with a counter-based RNG: element i keeps with probability 1-p,  */
/* decided by et_rng_u32(seed, offset + i) alone, so the mask is the same   */
/* on every platform and thread count and the backward recomputes it.      */
/* ======================================================================= */
uint32_t et_rng_u32(uint64_t seed, uint64_t counter);
et_status et_f32_dropout_fwd(int64_t n, float p, uint64_t seed, uint64_t offset,
                             const float *x, float *y, int nthreads);
et_status et_f32_dropout_bwd(int64_t n, float p, uint64_t seed, uint64_t offset,
                             const float *dy, float *dx, int nthreads);

/* ======================================================================= */
/* Softmax along an axis: data viewed as [outer, len, inner].               */
/* ======================================================================= */
et_status et_f32_softmax_fwd(int64_t outer, int64_t len, int64_t inner, int log_softmax,
                             const float *x, float *y, int nthreads);
/* dx from y (the forward output) and dy. */
et_status et_f32_softmax_bwd(int64_t outer, int64_t len, int64_t inner, int log_softmax,
                             const float *y, const float *dy, float *dx, int nthreads);

/* ======================================================================= */
/* Losses. All reduce to a scalar mean (PyTorch reduction='mean', KL:       */
/* 'batchmean'). Backward takes dloss (a scalar) and writes the gradient    */
/* of the first input.                                                      */
/* ======================================================================= */
/* Fused softmax + cross-entropy, integer labels in [0, c): ET_ERR_LABEL otherwise.
 * probs[n,c] (softmax of logits) is saved for the backward. */
et_status et_f32_softmax_xent_fwd(int64_t n, int64_t c, const float *logits, const int32_t *labels,
                                  float *loss, float *probs, int nthreads);
et_status et_f32_softmax_xent_bwd(int64_t n, int64_t c, const float *probs, const int32_t *labels,
                                  const float *dloss, float *dlogits, int nthreads);
/* Probability targets target[n,c] (rows need not be normalised; loss = -sum t*log_softmax / n). */
et_status et_f32_softmax_xent_prob_fwd(int64_t n, int64_t c, const float *logits, const float *target,
                                       float *loss, float *probs, int nthreads);
et_status et_f32_softmax_xent_prob_bwd(int64_t n, int64_t c, const float *probs, const float *target,
                                       const float *dloss, float *dlogits, int nthreads);
/* mean((pred - target)^2) over n elements. */
et_status et_f32_mse_fwd(int64_t n, const float *pred, const float *target, float *loss, int nthreads);
et_status et_f32_mse_bwd(int64_t n, const float *pred, const float *target, const float *dloss,
                         float *dpred, int nthreads);
/* mean(|pred - target|); gradient sign(pred - target), 0 at 0. */
et_status et_f32_l1_fwd(int64_t n, const float *pred, const float *target, float *loss, int nthreads);
et_status et_f32_l1_bwd(int64_t n, const float *pred, const float *target, const float *dloss,
                        float *dpred, int nthreads);
/* Multi-class hinge (PyTorch MultiMarginLoss, p=1): per row
 * sum_{i != y} max(0, margin - x[y] + x[i]) / c, then mean over rows. */
et_status et_f32_hinge_fwd(int64_t n, int64_t c, const float *x, const int32_t *labels, float margin,
                           float *loss, int nthreads);
et_status et_f32_hinge_bwd(int64_t n, int64_t c, const float *x, const int32_t *labels, float margin,
                           const float *dloss, float *dx, int nthreads);
/* KL divergence, input = log-probabilities, target = probabilities, both
 * [rows, cols]: sum(t * (log t - input)) / rows, with 0 where t == 0. */
et_status et_f32_kldiv_fwd(int64_t rows, int64_t cols, const float *input, const float *target,
                           float *loss, int nthreads);
et_status et_f32_kldiv_bwd(int64_t rows, int64_t cols, const float *target, const float *dloss,
                           float *dinput, int nthreads);

/* ======================================================================= */
/* Optimizer updates (flat loops over one parameter tensor, in place).      */
/* ======================================================================= */
/* PyTorch SGD semantics: g = grad (+ prox_mu * (p - prox_anchor)) + wd * (l1 ? sign(p) : p);
 * if momentum != 0: buf = first_step ? g : momentum * buf + (1 - dampening) * g;
 *                   g = nesterov ? g + momentum * buf : buf;
 * p -= lr * g. momentum_buf may be NULL when momentum == 0; prox_anchor (FedProx: the round's
 * global weights, the gradient of prox_mu/2 * ||p - anchor||^2) may be NULL when prox_mu == 0. */
et_status et_f32_sgd_update(int64_t n, float *param, const float *grad, float *momentum_buf,
                            const float *prox_anchor, float lr, float momentum, float dampening,
                            int nesterov, float weight_decay, int l1, float prox_mu, int first_step,
                            int nthreads);
/* PyTorch Adam / AdamW. step is 1-based (bias correction uses it). The FedProx term
 * g += prox_mu * (p - prox_anchor) comes first (p before the AdamW decay).
 * decoupled = 0: g += wd * p (Adam); decoupled = 1: p *= 1 - lr * wd (AdamW). */
et_status et_f32_adam_update(int64_t n, float *param, const float *grad, float *m, float *v,
                             const float *prox_anchor, float lr, float beta1, float beta2, float eps,
                             float weight_decay, int decoupled, float prox_mu, int64_t step,
                             int nthreads);
/* PyTorch RMSprop: g (+ prox) + wd * p; sq = alpha * sq + (1 - alpha) * g^2;
 * centered: grad_avg = lerp(grad_avg, g, 1 - alpha), avg = sqrt(sq - grad_avg^2) + eps, else
 * avg = sqrt(sq) + eps; momentum > 0: buf = momentum * buf + g / avg, p -= lr * buf; else
 * p -= lr * g / avg. grad_avg may be NULL unless centered, momentum_buf unless momentum > 0. */
et_status et_f32_rmsprop_update(int64_t n, float *param, const float *grad, float *square_avg,
                                float *grad_avg, float *momentum_buf, const float *prox_anchor, float lr,
                                float alpha, float eps, float weight_decay, float momentum, int centered,
                                float prox_mu, int nthreads);
/* PyTorch Adagrad: g (+ prox) + wd * p; sum += g^2; p -= clr * g / (sqrt(sum) + eps) with
 * clr = lr / (1 + (step - 1) * lr_decay); step is 1-based. */
et_status et_f32_adagrad_update(int64_t n, float *param, const float *grad, float *sum, const float *prox_anchor,
                                float lr, float lr_decay, float eps, float weight_decay, float prox_mu, int64_t step,
                                int nthreads);
/* Gradient clipping: the sum of the squares of x[0..n) in double, over a fixed partition
 * (bitwise the same for every thread count). */
double et_f32_sum_squares(int64_t n, const float *x, int nthreads);
/* Gradient accumulation: acc = scale * grad (first) or acc + scale * grad. */
et_status et_f32_grad_accumulate(int64_t n, float *acc, const float *grad, float scale, int first, int nthreads);

/* ======================================================================= */
/* More losses (loss_extra.c) and the embedding lookup (embedding.c).       */
/* ======================================================================= */
/* Reduction of the NLL op (PyTorch's reduction argument). */
typedef enum et_reduction { ET_REDUCTION_NONE = 0, ET_REDUCTION_SUM = 1, ET_REDUCTION_MEAN = 2 } et_reduction;

/* Elementwise losses over n elements, no reduction (loss[i]); backward: dx[i] from dl[i].
 * BCE on probabilities: -(y log x + (1 - y) log(1 - x)), logs clamped at -100 (PyTorch);
 * backward dl (x - y) / max(x (1 - x), 1e-12). */
et_status et_f32_bce_fwd__ref(int64_t n, const float *x, const float *y, float *loss, int nthreads);
et_status et_f32_bce_bwd__ref(int64_t n, const float *x, const float *y, const float *dl, float *dx,
                              int nthreads);
/* BCE on logits, stable: (1 - y) x + lw softplus(-x), lw = 1 + (pos_weight - 1) y per element
 * (NULL: 1); backward dl (lw sigmoid(x) + 1 - lw - y). */
et_status et_f32_bce_logits_fwd__ref(int64_t n, const float *x, const float *y, const float *lw,
                                     float *loss, int nthreads);
et_status et_f32_bce_logits_bwd__ref(int64_t n, const float *x, const float *y, const float *lw,
                                     const float *dl, float *dx, int nthreads);
/* Huber: scale * (|d| < delta ? d^2 / 2 : delta (|d| - delta / 2)), d = x - y (SmoothL1(beta):
 * delta = beta, scale = 1 / beta); backward dl scale clamp(d, -delta, delta). */
et_status et_f32_huber_fwd__ref(int64_t n, const float *x, const float *y, float delta, float scale,
                                float *loss, int nthreads);
et_status et_f32_huber_bwd__ref(int64_t n, const float *x, const float *y, float delta, float scale,
                                const float *dl, float *dx, int nthreads);
/* NLL of log-probabilities x[n, c, s] (s = product of trailing dims, 1 for [n, c]) with targets
 * t[n, s] in [0, c) or == ignore_index (ET_ERR_LABEL otherwise), optional class weights w[c],
 * label smoothing eps in [0, 1]: per counted target (1 - eps) w[t] (-x[t]) + eps/c sum_k w[k] (-x[k]).
 * reduction (et_reduction): NONE writes loss[n, s] (0 where ignored), SUM / MEAN one value; MEAN
 * divides by the summed w[t] of the counted targets (PyTorch). Backward: dl has the loss's shape. */
et_status et_f32_nll_fwd__ref(int64_t n, int64_t c, int64_t s, const float *x, const int32_t *target,
                              const float *weight, int64_t ignore_index, int reduction, float eps, float *loss,
                              int nthreads);
et_status et_f32_nll_bwd__ref(int64_t n, int64_t c, int64_t s, const int32_t *target, const float *weight,
                              int64_t ignore_index, int reduction, float eps, const float *dl, float *dx,
                              int nthreads);
/* Embedding: y[i, :] = weight[idx[i], :] (weight [v, d], n indices); ET_ERR_LABEL when an index
 * is outside [0, v). Backward: dw = 0, then dw[idx[i], :] += dy[i, :] in index order except
 * where idx[i] == padding_idx (< 0: none); bitwise identical for every thread count. */
et_status et_f32_embedding_fwd__ref(int64_t n, int64_t v, int64_t d, const float *weight, const int32_t *idx,
                                    float *y, int nthreads);
et_status et_f32_embedding_bwd__ref(int64_t n, int64_t v, int64_t d, const int32_t *idx, const float *dy,
                                    int64_t padding_idx, float *dw, int nthreads);

/* ======================================================================= */
/* Transposed convolution 2-D, NCHW (conv_transpose.c). PyTorch layout:     */
/* x[N,C,H,W], w[C, OC/groups, KH, KW], y[N,OC,OH,OW] with                  */
/* OH = (H-1)*stride_h - 2*pad_h + dil_h*(KH-1) + out_pad_h + 1.            */
/* It is the input gradient of the convolution et_conv_transpose2d_as_conv  */
/* describes (input shaped like y, output shaped like x, weight w), so the  */
/* forward runs conv2d's GEMM + col2im path; its gradients are conv2d ops.  */
/* ======================================================================= */
typedef struct et_conv_transpose2d_params {
    int64_t n, c, h, w;               /* input x */
    int64_t oc, kh, kw;               /* output channels, kernel */
    int64_t stride_h, stride_w, pad_h, pad_w, out_pad_h, out_pad_w, dil_h, dil_w, groups;
    int64_t oh, ow;                   /* output, filled by et_conv_transpose2d_params_init */
} et_conv_transpose2d_params;

/* Validates (positive sizes, channels divisible by groups, out_pad < stride, output at
 * least 1x1) and computes oh, ow. */
et_status et_conv_transpose2d_params_init(et_conv_transpose2d_params *p);
/* The convolution (input [n, oc, oh, ow], weight w, output [n, c, h, w]) whose input
 * gradient is this transposed convolution. */
et_status et_conv_transpose2d_as_conv(const et_conv_transpose2d_params *p, et_conv2d_params *conv);
size_t et_f32_conv_transpose2d_fwd_ws_bytes(const et_conv_transpose2d_params *p, int nthreads);
/* y = conv_transpose(x, w) + b; b may be NULL. */
et_status et_f32_conv_transpose2d_fwd(const et_conv_transpose2d_params *p, const float *x,
                                      const float *w, const float *b, float *y, void *ws,
                                      size_t ws_bytes, int nthreads);
/* Naive gather loop with double accumulation (the oracle). */
et_status et_f32_conv_transpose2d_fwd__ref(const et_conv_transpose2d_params *p, const float *x,
                                           const float *w, const float *b, float *y);

/* ======================================================================= */
/* Resampling 2-D, NCHW planes (resample.c; plain loops, the reference).    */
/* ======================================================================= */
/* PyTorch's F.interpolate on 4-D input. scale_h/scale_w are the user's scale_factor (used
 * in the source-index formulas as PyTorch does) or 0 to use in/out sizes.
 *   nearest:  src = min(floor(dst * (1/scale or in/out)), in - 1) (float, as PyTorch)
 *   bilinear: src = align_corners ? dst * (in-1)/(out-1) : max((dst + 0.5) * s - 0.5, 0)
 * Backward scatter-adds dy with the forward's weights (dx overwritten). */
typedef enum et_interp_mode {
    ET_INTERP_NEAREST = 0,
    ET_INTERP_BILINEAR = 1,
    ET_INTERP_COUNT_
} et_interp_mode;
typedef struct et_interp2d_params {
    int64_t nc, h, w, oh, ow;         /* planes (n*c), input and output sizes */
    et_interp_mode mode;
    int align_corners;                /* bilinear only */
    float scale_h, scale_w;           /* scale_factor, or 0 */
} et_interp2d_params;
et_status et_f32_interp2d_fwd(const et_interp2d_params *p, const float *x, float *y, int nthreads);
et_status et_f32_interp2d_bwd(const et_interp2d_params *p, const float *dy, float *dx, int nthreads);

/* Adaptive average pooling to [oh, ow]: output cell (i, j) averages rows
 * [floor(i*h/oh), ceil((i+1)*h/oh)) and the same for columns (PyTorch's windows). */
et_status et_f32_adaptive_avgpool2d_fwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *x, float *y, int nthreads);
et_status et_f32_adaptive_avgpool2d_bwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *dy, float *dx, int nthreads);
/* Adaptive max pooling over the same windows: the first maximum (a NaN wins); the backward
 * recomputes that position from x and routes dy there. */
et_status et_f32_adaptive_maxpool2d_fwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *x, float *y, int nthreads);
et_status et_f32_adaptive_maxpool2d_bwd(int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        const float *x, const float *dy, float *dx, int nthreads);

/* ======================================================================= */
/* Fake quantization and observers (quant.c): x viewed as [outer, c, inner],  */
/* scale / zero_point (integer-valued floats) of c channels (c = 1: per tensor). */
/* ======================================================================= */
/* y = (clamp(nearbyint(x * (1 / s)) + zp, qmin, qmax) - zp) * s, round-half-even (PyTorch's
 * fake_quantize_per_tensor_affine / _per_channel_affine, bit for bit). */
et_status et_f32_fake_quant_fwd__ref(int64_t outer, int64_t c, int64_t inner, const float *x, const float *scale,
                                     const float *zero_point, int64_t qmin, int64_t qmax, float *y, int nthreads);
/* Straight-through: dx = dy * (qmin <= nearbyint(x * (1 / s)) + zp <= qmax). */
et_status et_f32_fake_quant_bwd__ref(int64_t outer, int64_t c, int64_t inner, const float *dy, const float *x,
                                     const float *scale, const float *zero_point, int64_t qmin, int64_t qmax,
                                     float *dx, int nthreads);
/* Observer step (torch.ao MinMaxObserver, ema: MovingAverageMinMaxObserver with
 * averaging_constant): updates min_val / max_val per channel (+inf / -inf: nothing observed
 * yet) and recomputes scale / zero_point (symmetric: zp = 0; affine: zp clamped to the range). */
et_status et_f32_quant_observe__ref(int64_t outer, int64_t c, int64_t inner, const float *x, float *min_val,
                                    float *max_val, float *scale, float *zero_point, int64_t qmin, int64_t qmax,
                                    int symmetric, int ema, float averaging_constant, int nthreads);

/* ======================================================================= */
/* Row normalisation (layernorm.c): x[rows, k] -> y = (x - mean) * invstd,  */
/* invstd[rows] = 1 / sqrt(biased var + eps); backward from y and invstd:   */
/* dx = invstd * (dy - mean(dy) - y * mean(dy * y)).                        */
/* ======================================================================= */
et_status et_f32_normalize_rows_fwd(int64_t rows, int64_t k, float eps, const float *x, float *y,
                                    float *invstd, int nthreads);
et_status et_f32_normalize_rows_bwd(int64_t rows, int64_t k, const float *y, const float *invstd,
                                    const float *dy, float *dx, int nthreads);

/* ======================================================================= */
/* Max / min reductions (reduce_max.c). One axis of the [outer, len, inner] */
/* view: values y and/or first extreme position idx (either may be NULL);    */
/* NaN is an extreme. Several axes: ys (same rank as xs) is 1 where reduced. */
/* ======================================================================= */
et_status et_f32_max_axis(int64_t outer, int64_t len, int64_t inner, int is_min, const float *x,
                          float *y, int32_t *idx, int nthreads);
et_status et_f32_reduce_max(int nd, const int64_t *xs, const float *x, const int64_t *ys, float *y,
                            int is_min);

/* ======================================================================= */
/* Batched matmul (bmm.c): y[batch, M, N] = op(a) op(b) per batch, batch     */
/* dims (nb of them) broadcast right-aligned; a, b, y contiguous. ws of     */
/* et_f32_bmm_ws_bytes(number of batches, M, N, K, nthreads).                */
/* ======================================================================= */
size_t et_f32_bmm_ws_bytes(int64_t batches, int64_t M, int64_t N, int64_t K, int nthreads);
et_status et_f32_bmm(int trans_a, int trans_b, int nb, const int64_t *y_batch,
                     const int64_t *a_batch, const int64_t *b_batch, int64_t M, int64_t N, int64_t K,
                     const float *a, const float *b, float *y, void *ws, size_t ws_bytes, int nthreads);

/* ======================================================================= */
/* Tensor copies (tensor.c): concat, slice, transpose, pad, gather.         */
/* ======================================================================= */
/* Padding modes of the pad op (edgetrain/ops.py PAD_*). */
typedef enum et_pad_mode {
    ET_PAD_CONSTANT = 0,   /* the value outside */
    ET_PAD_REFLECT = 1,    /* mirror without repeating the edge (pad < dim) */
    ET_PAD_REPLICATE = 2,  /* repeat the edge element */
    ET_PAD_MODE_COUNT_
} et_pad_mode;
/* n inputs viewed as [outer, len[k], inner] -> y [outer, sum len, inner]. */
et_status et_f32_concat(int n, const float *const *x, const int64_t *len, int64_t outer,
                        int64_t inner, float *y, int nthreads);
/* x [outer, dim, inner] -> y [outer, count, inner], y[o,j,i] = x[o, start + j*step, i]
 * (step >= 1, the last index < dim); the backward writes dy into zeros of x's shape. */
et_status et_f32_slice_fwd(int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t step,
                           int64_t count, const float *x, float *y, int nthreads);
et_status et_f32_slice_bwd(int64_t outer, int64_t dim, int64_t inner, int64_t start, int64_t step,
                           int64_t count, const float *dy, float *dx, int nthreads);
/* y dim d = x dim perm[d] (perm a permutation of 0..ndim-1, ndim <= 6). */
et_status et_f32_transpose(int ndim, const int64_t *x_shape, const int *perm, const float *x,
                           float *y, int nthreads);
/* y dim d = before[d] + x dim d + after[d]; backward sums every dy element into the x element
 * it was copied from (a fixed order per element: bitwise identical for any thread count). */
et_status et_f32_pad_fwd(int ndim, const int64_t *x_shape, const int64_t *before, const int64_t *after,
                         et_pad_mode mode, float value, const float *x, float *y, int nthreads);
et_status et_f32_pad_bwd(int ndim, const int64_t *x_shape, const int64_t *before, const int64_t *after,
                         et_pad_mode mode, const float *dy, float *dx, int nthreads);
/* select = 0 (torch.gather): index has x's rank, each dim <= x's off the axis, y has index's
 * shape, y[c] = x[c with c[axis] = index[c]]. select = 1 (torch.index_select): index is 1-D
 * [L], y is x with dim axis = L, y[.., j, ..] = x[.., index[j], ..]. An index outside
 * [0, x dim axis) returns ET_ERR_ARG. The backward scatter-adds dy into zeros of x's shape,
 * each dx element summed in a fixed order (bitwise identical for any thread count). */
et_status et_f32_gather_fwd(int ndim, const int64_t *x_shape, const int64_t *idx_shape, int axis,
                            int select, const float *x, const int32_t *index, float *y, int nthreads);
et_status et_f32_gather_bwd(int ndim, const int64_t *x_shape, const int64_t *idx_shape, int axis,
                            int select, const float *dy, const int32_t *index, float *dx, int nthreads);

/* ======================================================================= */
/* int8 inference (src/qgemm.c): u8 activations with a zero point, i8 weights per output  */
/* channel (zero point 0), i32 bias, one fp32 requantize multiplier per output channel.     */
/* ======================================================================= */
#define ET_Q_MAX_K 65536 /* longest dot product: 65536 * 255 * 128 < 2^31 */
et_status et_q_quantize__ref(int64_t n, const float *x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                             uint8_t *y, int nthreads);
et_status et_q_dequantize__ref(int64_t n, const uint8_t *x, float scale, int32_t zp, float *y, int nthreads);
/* y[m * y_rs + n * y_cs] = requant(sum_k (a[m,k] - a_zp) * w[n,k] + bias[n], mult[n]); bias may be NULL. */
et_status et_q_gemm_requant__ref(int64_t M, int64_t N, int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w,
                                 const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                                 uint8_t *y, int64_t y_rs, int64_t y_cs, int nthreads);
/* the same, dispatched to the variant of et_get_isa() (identical bytes) */
et_status et_q_gemm_requant(int64_t M, int64_t N, int64_t K, const uint8_t *a, int32_t a_zp, const int8_t *w,
                            const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                            uint8_t *y, int64_t y_rs, int64_t y_cs, int nthreads);
size_t et_q_conv2d_ws_bytes(const et_conv2d_params *p);
et_status et_q_conv2d(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w, const int32_t *bias,
                      const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y, void *ws,
                      size_t ws_bytes, int nthreads);
et_status et_q_conv2d__ref(const et_conv2d_params *p, const uint8_t *x, int32_t x_zp, const int8_t *w,
                           const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                           uint8_t *y, void *ws, size_t ws_bytes, int nthreads);
et_status et_q_maxpool2d__ref(const et_pool2d_params *p, const uint8_t *x, uint8_t *y, int nthreads);
et_status et_q_relu__ref(int64_t n, const uint8_t *x, int32_t zp, uint8_t *y, int nthreads);
/* wq = clamp(nearbyint(w * (1/w_scale[c])), wqmin, wqmax), bq = nearbyint(b / (s_in * w_scale[c])),
 * mult = s_in * w_scale[c] / s_out (w as [oc, k]; b, bq may be NULL). */
et_status et_q_prep_weights__ref(int64_t oc, int64_t k, const float *w, const float *w_scale, const float *b,
                                 float s_in, float s_out, int32_t wqmin, int32_t wqmax, int8_t *wq, int32_t *bq,
                                 float *mult);
/* y = clamp(nearbyint(((a - a_zp) * a_s + (b - b_zp) * b_s) * (1/y_s)) + y_zp, qmin, qmax), each step in float */
et_status et_q_add__ref(int64_t n, const uint8_t *a, float a_s, int32_t a_zp, const uint8_t *b, float b_s,
                        int32_t b_zp, float y_s, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y, int nthreads);
/* y = clamp(x, Q(lo), Q(hi)), Q = quantize's level on (scale, zp, qmin, qmax); lo finite <= hi (hi may be +inf) */
et_status et_q_clamp__ref(int64_t n, const uint8_t *x, float scale, int32_t zp, int32_t qmin, int32_t qmax, float lo,
                          float hi, uint8_t *y, int nthreads);
/* y[p] = clamp(zp + round_half_even(sum_i (x[p, i] - zp) / hw), qmin, qmax) in integers; x [planes, hw], hw >= 1 */
et_status et_q_global_avgpool__ref(int64_t planes, int64_t hw, const uint8_t *x, int32_t zp, int32_t qmin,
                                   int32_t qmax, uint8_t *y, int nthreads);

/* Fake quantization and observers dispatched to the et_f32_fq_variants row of et_get_isa()
 * (quant_simd.c): the same arguments and the same bits as the __ref versions above. */
et_status et_f32_fake_quant_fwd(int64_t outer, int64_t c, int64_t inner, const float *x, const float *scale,
                                const float *zero_point, int64_t qmin, int64_t qmax, float *y, int nthreads);
et_status et_f32_fake_quant_bwd(int64_t outer, int64_t c, int64_t inner, const float *dy, const float *x,
                                const float *scale, const float *zero_point, int64_t qmin, int64_t qmax, float *dx,
                                int nthreads);
et_status et_f32_quant_observe(int64_t outer, int64_t c, int64_t inner, const float *x, float *min_val,
                               float *max_val, float *scale, float *zero_point, int64_t qmin, int64_t qmax,
                               int symmetric, int ema, float averaging_constant, int nthreads);
/* The workspace of et_q_conv2d for up to nthreads threads (the tiled rows use one slot per
 * thread; with fewer slots they run on fewer threads, same bytes). */
size_t et_q_conv2d_ws_bytes_nt(const et_conv2d_params *p, int nthreads);
/* qlinear y[N, OC] = requant(x[N, K] . w[OC, K]^T + b): the tiled conv row (1x1) when the ISA
 * has one and ws holds et_q_linear_ws_bytes, else the GEMM row; the same bytes either way. */
size_t et_q_linear_ws_bytes(int64_t N, int64_t OC, int64_t K, int nthreads);
et_status et_q_linear(int64_t N, int64_t OC, int64_t K, const uint8_t *x, int32_t x_zp, const int8_t *w,
                      const int32_t *bias, const float *mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y,
                      void *ws, size_t ws_bytes, int nthreads);
/* qclamp's bounds: the quantize levels Q(lo), Q(hi) on the grid (scale, zp, [qmin, qmax]); lo
 * finite <= hi (hi may be +inf). A qconv2d / qlinear with a fused clamp requantizes into
 * [Q(lo), Q(hi)] (the same bytes as the op followed by qclamp). */
et_status et_q_clamp_levels(float scale, int32_t zp, int32_t qmin, int32_t qmax, float lo, float hi, int32_t *qlo,
                            int32_t *qhi);

/* The eval BatchNorm of channel ch as y = x * a + sh (one float mul, one float add): in double
 * a = invstd * gamma, sh = beta - mean * a, each rounded to float once; gamma / beta may be
 * NULL (1 / 0). batchnorm_infer and conv2d's fused BatchNorm both use it (same bits). */
void et_f32_bn_infer_factor(const float *gamma, const float *beta, const float *mean,
                            const float *var, float eps, int64_t ch, float *a, float *sh);

/* 1 if pa holds op(A) packed by et_f32_gemm_pack_a(trans_a, M, K, ...) for the ISA in use (so
 * et_f32_gemm_pa would read it rather than pack A itself). */
int et_f32_gemm_pa_current(const void *pa, int trans_a, int64_t M, int64_t K);

/* The convolution forward with its weights packed before the call, for callers that run it
 * many times with unchanged weights (an eval program, kernels/runtime/eval_cache.c).
 * et_f32_conv2d_fwd_packed_bytes: bytes of the packed weights, 0 when this forward packs
 * none (depthwise, small products); they do not depend on the
 * thread count. et_f32_conv2d_fwd_pack packs w into pk (the layout et_f32_conv2d_fwd packs
 * into its workspace on every call; the same bytes for every thread count at the same
 * address alignment: the panels start on a cache line after a header).
 * et_f32_conv2d_fwd_packed computes exactly et_f32_conv2d_fwd (the same bits, the same
 * workspace rule) reading pk instead of packing w: w must still hold the values that were
 * packed; when pk is NULL or was packed for other shapes or another ISA, it packs w itself. */
size_t et_f32_conv2d_fwd_packed_bytes(const et_conv2d_params *p);
et_status et_f32_conv2d_fwd_pack(const et_conv2d_params *p, const float *w, void *pk,
                                 size_t pk_bytes, int nthreads);
et_status et_f32_conv2d_fwd_packed(const et_conv2d_params *p, const float *x, const float *w,
                                   const void *pk, const float *b, float *y, void *ws,
                                   size_t ws_bytes, int nthreads);

/* BatchNorm training with a fused relu / relu6 (batchnorm_train / batchnorm_bwd's act; act
 * ET_ACT_NONE is the plain kernel): the forward writes y = act(x * alpha + shift) with the act
 * op's comparisons, the bits of et_f32_batchnorm_train_fwd then et_f32_act_fwd; the backward
 * reads the act's output y and masks dy as et_f32_act_bwd does (+0 where y <= 0, relu6: or
 * y >= 6) inside its sums and its dx pass, the bits of et_f32_act_bwd then
 * et_f32_batchnorm_bwd. Any other act is ET_ERR_ARG. */
et_status et_f32_batchnorm_train_act_fwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                         const float *gamma, const float *beta,
                                         float *running_mean, float *running_var, float momentum,
                                         float eps, et_act act, float *y, float *save_mean,
                                         float *save_invstd, int nthreads);
et_status et_f32_batchnorm_act_bwd(int64_t n, int64_t c, int64_t hw, const float *x,
                                   const float *y, const float *dy, et_act act,
                                   const float *gamma, const float *save_mean,
                                   const float *save_invstd, float *dx, float *dgamma,
                                   float *dbeta, int nthreads);

#ifdef __cplusplus
}
#endif
#endif /* EDGETRAIN_ET_KERNELS_H */
