# Mirrors kernels/include/edgetrain/et_common.h, et_runtime.h and the parts of et_kernels.h
# that Python calls directly (benchmarks). Keep in step with the C headers.
from libc.stdint cimport int32_t, int64_t, uint64_t, uint32_t

cdef extern from "edgetrain/et_common.h":
    ctypedef enum et_status:
        ET_OK
    ctypedef enum et_dtype:
        ET_F32
        ET_I32
        ET_I64
        ET_U8
        ET_I8
    ctypedef enum et_isa:
        ET_ISA_REF
        ET_ISA_AVX2
        ET_ISA_AVX512
        ET_ISA_NEON
        ET_ISA_AVXVNNI
        ET_ISA_AVX512VNNI
        ET_ISA_NEONDOT
        ET_ISA_COUNT_
    const char *et_status_str(et_status s)
    et_isa et_cpu_best_isa()
    int et_isa_supported(et_isa isa)
    et_isa et_get_isa()
    et_status et_set_isa(et_isa isa)
    const char *et_isa_name(et_isa isa)
    int et_has_openmp()
    int et_max_threads()

cdef extern from "edgetrain/et_ops.h":
    int ET_OP_COUNT
    const char *et_op_name(int op)
    et_status et_op_infer(int op, int n_in, const int *in_dtype, const int *in_ndim,
                          const int64_t *in_dims, int n_iattr, const int64_t *iattr, int n_fattr,
                          const float *fattr, int *n_out, int *out_dtype, int *out_ndim,
                          int64_t *out_dims, char *msg, size_t cap)

cdef extern from "edgetrain/et_kernels.h":
    size_t et_f32_gemm_ws_bytes(int64_t M, int64_t N, int64_t K, int nthreads)
    et_status et_f32_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                          float beta, float *C, int64_t ldc, void *ws, size_t ws_bytes,
                          int nthreads) nogil
    ctypedef enum et_act:
        ET_ACT_NONE
    ctypedef struct et_conv2d_params:
        int64_t n, c, h, w
        int64_t oc, kh, kw
        int64_t stride_h, stride_w
        int64_t pad_t, pad_l, pad_b, pad_r
        int64_t dil_h, dil_w
        int64_t groups
        et_act act
        float act_alpha
        int64_t oh, ow
    et_status et_conv2d_params_init(et_conv2d_params *p)
    size_t et_f32_conv2d_fwd_ws_bytes(const et_conv2d_params *p, int nthreads)
    size_t et_f32_conv2d_bwd_input_ws_bytes(const et_conv2d_params *p, int nthreads)
    size_t et_f32_conv2d_bwd_weight_ws_bytes(const et_conv2d_params *p, int nthreads)
    et_status et_f32_conv2d_fwd(const et_conv2d_params *p, const float *x, const float *w,
                                const float *b, float *y, void *ws, size_t ws_bytes,
                                int nthreads) nogil
    et_status et_f32_conv2d_bwd_input(const et_conv2d_params *p, const float *dy, const float *w,
                                      float *dx, void *ws, size_t ws_bytes, int nthreads) nogil
    et_status et_f32_conv2d_bwd_weight(const et_conv2d_params *p, const float *dy, const float *x,
                                       float *dw, void *ws, size_t ws_bytes, int nthreads) nogil

cdef extern from "edgetrain/et_runtime.h":
    ctypedef struct et_session:
        pass
    ctypedef enum et_program_kind:
        ET_PROGRAM_EVAL
        ET_PROGRAM_GRAD
        ET_PROGRAM_TRAIN
    ctypedef struct et_tensor_info:
        const char *name
        et_dtype dtype
        int kind
        int ndim
        int64_t shape[6]
        int trainable
        int64_t numel
    ctypedef struct et_memory_info:
        size_t params_bytes
        size_t grads_bytes
        size_t optimizer_bytes
        size_t const_bytes
        size_t inputs_bytes
        size_t activations_bytes
        size_t workspace_bytes
        size_t total_bytes
        size_t activations_unplanned_bytes
        size_t workspace_unplanned_bytes
        size_t eval_cache_bytes
        size_t grads_in_arena_bytes

    et_status et_session_load_file(const char *path, int nthreads, et_session **out) nogil
    et_status et_session_load_memory(const void *data, size_t size, int nthreads,
                                     et_session **out) nogil
    const char *et_load_error()
    ctypedef struct et_load_options:
        int nthreads
        uint64_t max_memory
    et_status et_session_load_file_ex(const char *path, const et_load_options *opts,
                                      et_session **out) nogil
    et_status et_session_load_memory_ex(const void *data, size_t size, const et_load_options *opts,
                                        et_session **out) nogil
    uint64_t et_default_max_memory()
    int et_thread_limit()
    et_status et_session_set_max_memory(et_session *s, uint64_t max_memory)
    uint64_t et_session_max_memory(const et_session *s)
    et_status et_schedule_check(float base_lr, uint32_t kind, const float *sched_f,
                                const int64_t *sched_i, uint32_t warmup, char *err, size_t cap)
    void et_session_free(et_session *s)
    const char *et_session_error(const et_session *s)
    et_status et_session_set_threads(et_session *s, int nthreads)
    int et_session_threads(const et_session *s)
    et_status et_session_set_program(et_session *s, et_program_kind kind)
    et_program_kind et_session_program(const et_session *s)
    int et_session_has_program(const et_session *s, et_program_kind kind)
    et_status et_session_resize(et_session *s, int count, const char *const *names,
                                const int *ndims, const int64_t *const *shapes)
    int et_session_tensor_count(const et_session *s)
    int et_session_find_tensor(const et_session *s, const char *name)
    et_status et_session_tensor_info(const et_session *s, int index, et_tensor_info *info)
    void *et_session_tensor_data(et_session *s, int index)
    const void *et_session_tensor_read(const et_session *s, int index)
    et_status et_session_set_input(et_session *s, const char *name, et_dtype dtype,
                                   const void *data, int ndim, const int64_t *shape)
    int et_session_input_count(const et_session *s)
    int et_session_input_tensor(const et_session *s, int i)
    int et_session_output_count(const et_session *s)
    const char *et_session_output_name(const et_session *s, int i)
    int et_session_output_tensor(const et_session *s, int i)
    et_status et_session_run(et_session *s) nogil
    float et_session_lr(const et_session *s)
    float et_session_base_lr(const et_session *s)
    et_status et_session_set_lr(et_session *s, float lr)
    uint64_t et_session_step(const et_session *s)
    et_status et_session_set_step(et_session *s, uint64_t step)
    uint64_t et_session_epoch(const et_session *s)
    et_status et_session_set_epoch(et_session *s, uint64_t epoch)
    uint64_t et_session_seed(const et_session *s)
    et_status et_session_set_seed(et_session *s, uint64_t seed)
    et_status et_session_save_file(et_session *s, const char *path) nogil
    et_status et_file_write_atomic(const char *path, const void *data, size_t size, char *err,
                                   size_t cap) nogil
    et_status et_session_memory_info(const et_session *s, et_memory_info *info)
    int et_session_node_count(const et_session *s, et_program_kind kind)
    ctypedef struct et_node_profile:
        int op
        const char *layer
        uint64_t ns
        uint64_t calls
    et_status et_session_set_profiling(et_session *s, int enabled)
    int et_session_profiling(const et_session *s)
    int et_session_profile(const et_session *s, et_node_profile *out, int cap)
    int et_session_eval_segments(const et_session *s, int32_t *out, int cap)
    int et_session_eval_pairs(const et_session *s, int32_t *out, int cap)
    int et_session_node_groups(const et_session *s, et_program_kind kind, int32_t *out, int cap)
    int64_t et_debug_alloc_count()
    void et_release_free_memory() nogil
    int64_t et_session_max_batch(const et_session *s)
    int et_session_cached_plans(const et_session *s)
    ctypedef enum et_nonfinite_policy:
        ET_NONFINITE_RAISE
        ET_NONFINITE_SKIP
        ET_NONFINITE_OFF
    et_status et_session_set_nonfinite_policy(et_session *s, et_nonfinite_policy policy)
    et_nonfinite_policy et_session_nonfinite_policy(const et_session *s)
    uint64_t et_session_skipped_steps(const et_session *s)
    et_status et_session_set_skipped_steps(et_session *s, uint64_t n)
    int et_session_last_step_skipped(const et_session *s)
