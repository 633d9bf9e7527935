/* edgetrain — pooling internals: the variant table of the 2x2 / stride 2 max-pool plane kernels
 * (pool2d.c). Not part of the public API; tests and benchmarks include it directly.
 *
 * et_f32_maxpool2d_fwd / _bwd take these kernels for every (n, c) plane when the window is
 * 2x2, stride 2, no padding, no dilation and every window lies inside the input (other
 * shapes use the general scalar loops, which have no SIMD variants). Every row computes the
 * bits of the __ref row (first maximum wins, the last NaN wins; see pool2d.c).
 */
#ifndef EDGETRAIN_POOL_INTERNAL_H
#define EDGETRAIN_POOL_INTERNAL_H
#include "edgetrain/et_kernels.h"
#include "variant_internal.h"

/* One plane: xp is h x w (row stride w), yp / gp are oh x ow; 2*oh <= h, 2*ow <= w.
 * fwd writes yp; bwd overwrites all of dp (h x w; cells no window covers get +0.0). bwd drops
 * (writes +0.0 for) the gradient of a window whose winning value v has v <= lo or v >= hi (ordered
 * compares, a NaN v keeps it): the fused relu / relu6 derivative, lo = hi = NaN for none. */
typedef void (*et_f32_maxpool2d_k2s2_fwd_fn)(const float *ET_RESTRICT xp, float *ET_RESTRICT yp,
                                             int64_t w, int64_t oh, int64_t ow);
typedef void (*et_f32_maxpool2d_k2s2_bwd_fn)(const float *ET_RESTRICT xp,
                                             const float *ET_RESTRICT gp,
                                             float *ET_RESTRICT dp, int64_t h, int64_t w,
                                             int64_t oh, int64_t ow, float lo, float hi);

typedef struct et_f32_maxpool2d_k2s2_variant {
    et_variant_head head;
    et_f32_maxpool2d_k2s2_fwd_fn fwd;
    et_f32_maxpool2d_k2s2_bwd_fn bwd;
} et_f32_maxpool2d_k2s2_variant;
extern const et_f32_maxpool2d_k2s2_variant et_f32_maxpool2d_k2s2_variants[];

#endif /* EDGETRAIN_POOL_INTERNAL_H */
