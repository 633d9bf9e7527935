/* edgetrain — internal declarations of the tensor copy kernels (tensor.c): concat, strided
 * slice, transpose, pad, gather. Each has only a scalar __ref body (they are memory-bound
 * copies; a SIMD path would not pay); the entry points of et_kernels.h call it. Tests call the
 * __ref kernels directly. Shapes arrive validated by the op's shape rule (ops.c). */
#ifndef EDGETRAIN_TENSOR_INTERNAL_H
#define EDGETRAIN_TENSOR_INTERNAL_H
#include "edgetrain/et_kernels.h"

et_status et_f32_concat__ref(int n, const float *const *x, const int64_t *len, int64_t outer,
                             int64_t inner, float *y, int nthreads);
et_status et_f32_slice_fwd__ref(int64_t outer, int64_t dim, int64_t inner, int64_t start,
                                int64_t step, int64_t count, const float *x, float *y,
                                int nthreads);
et_status et_f32_slice_bwd__ref(int64_t outer, int64_t dim, int64_t inner, int64_t start,
                                int64_t step, int64_t count, const float *dy, float *dx,
                                int nthreads);
et_status et_f32_transpose__ref(int ndim, const int64_t *x_shape, const int *perm,
                                const float *x, float *y, int nthreads);
et_status et_f32_pad_fwd__ref(int ndim, const int64_t *x_shape, const int64_t *before,
                              const int64_t *after, et_pad_mode mode, float value,
                              const float *x, float *y, int nthreads);
et_status et_f32_pad_bwd__ref(int ndim, const int64_t *x_shape, const int64_t *before,
                              const int64_t *after, et_pad_mode mode, const float *dy,
                              float *dx, int nthreads);
et_status et_f32_gather_fwd__ref(int ndim, const int64_t *x_shape, const int64_t *idx_shape,
                                 int axis, int select, const float *x, const int32_t *index,
                                 float *y, int nthreads);
et_status et_f32_gather_bwd__ref(int ndim, const int64_t *x_shape, const int64_t *idx_shape,
                                 int axis, int select, const float *dy, const int32_t *index,
                                 float *dx, int nthreads);
#endif /* EDGETRAIN_TENSOR_INTERNAL_H */
