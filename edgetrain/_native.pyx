# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Thin binding over the C runtime (kernels/include/edgetrain/et_runtime.h).

Converts arrays, checks dtypes and contiguity, releases the GIL while C runs and maps every
``et_status`` to an exception from :mod:`edgetrain.errors`. No logic lives here.
"""
from libc.stdint cimport int32_t, int64_t, uint64_t, uint32_t
from libc.stdlib cimport malloc, free
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

import os
import threading
import numpy as np
cimport numpy as cnp

from edgetrain._cnative cimport *
from edgetrain.errors import (error_for_status, NotFoundError, ShapeError, DTypeError,
                              InvalidArgumentError)

cnp.import_array()

KIND_NAMES = ("input", "param", "buffer", "grad", "optstate", "const", "act")
_NP_OF_DTYPE = {0: np.float32, 1: np.int32, 2: np.int64, 3: np.uint8, 4: np.int8}
PROGRAMS = {"eval": ET_PROGRAM_EVAL, "grad": ET_PROGRAM_GRAD, "train": ET_PROGRAM_TRAIN}
NONFINITE_POLICIES = ("raise", "skip", "off")  # enum et_nonfinite_policy


cdef _raise(et_status st, str context):
    raise error_for_status(<int>st, f"{context}: {et_status_str(st).decode()}")


# ---- library facts ------------------------------------------------------------------------
def op_names():
    """Names of the C op enum, in order (checked against edgetrain.ops)."""
    return [et_op_name(i).decode() for i in range(ET_OP_COUNT)]


def infer_shapes(int op, list inputs, list iattr, list fattr):
    """Output shapes of one node by the C planner's rule (et_op_infer).

    ``inputs``: per input slot ``(dtype_code, shape)`` or ``None`` (absent optional input).
    Returns ``[(dtype_code, shape), ...]`` for every output slot of the op; a bad node raises
    ShapeError (or InvalidArgumentError) with the C message.
    """
    cdef int n_in = len(inputs), n_i = len(iattr), n_f = len(fattr), n_out = 0, k, j
    cdef int in_dtype[8]
    cdef int in_ndim[8]
    cdef int64_t in_dims[8 * 6]
    cdef int64_t ia[16]
    cdef float fa[8]
    cdef int out_dtype[4]
    cdef int out_ndim[4]
    cdef int64_t out_dims[4 * 6]
    cdef char msg[512]
    if n_in > 8 or n_i > 16 or n_f > 8:
        raise ValueError(f"op {op}: too many inputs or attributes")
    for k in range(n_in):
        if inputs[k] is None:
            in_dtype[k], in_ndim[k] = -1, 0
            continue
        code, shape = inputs[k]
        if len(shape) > 6:
            raise ShapeError(f"input {k} has rank {len(shape)} > 6")
        in_dtype[k], in_ndim[k] = code, len(shape)
        for j in range(len(shape)):
            in_dims[k * 6 + j] = shape[j]
    for k in range(n_i):
        ia[k] = iattr[k]
    for k in range(n_f):
        fa[k] = fattr[k]
    msg[0] = 0
    cdef et_status st = et_op_infer(op, n_in, in_dtype, in_ndim, in_dims, n_i, ia, n_f, fa, &n_out,
                                    out_dtype, out_ndim, out_dims, msg, sizeof(msg))
    if st != ET_OK:
        raise error_for_status(<int>st, msg.decode("utf-8", "replace"))
    return [(out_dtype[k], tuple(out_dims[k * 6 + j] for j in range(out_ndim[k])))
            for k in range(n_out)]


def isa():
    return et_isa_name(et_get_isa()).decode()


def best_isa():
    return et_isa_name(et_cpu_best_isa()).decode()


def set_isa(str name):
    """Choose the SIMD variant set used by kernels ('ref', 'avx2', 'avx512', 'neon', 'avxvnni',
    'avx512vnni', 'neondot'; the last three add dot-product rows of the int8 GEMM to their base)."""
    names = {et_isa_name(<et_isa>i).decode(): i for i in range(<int>ET_ISA_COUNT_)}
    if name not in names:
        raise ValueError(f"unknown ISA {name!r}; one of {sorted(names)}")
    cdef et_status st = et_set_isa(<et_isa>names[name])
    if st != ET_OK:
        _raise(st, f"ISA {name!r} is not supported on this CPU/build")


def has_openmp():
    return bool(et_has_openmp())


def max_threads():
    return et_max_threads()


def thread_limit():
    """Largest thread count a session accepts (ET_MAX_THREADS_PER_CORE x online cores)."""
    return et_thread_limit()


def default_max_memory():
    """The memory limit of a session loaded without max_memory (half the physical memory)."""
    return et_default_max_memory()


def check_schedule(float base_lr, int kind, sched_f, sched_i, int warmup):
    """The runtime's whole-range check of a learning-rate schedule; raises InvalidArgumentError."""
    cdef float f[6]
    cdef int64_t i[6]
    cdef char err[512]
    for k in range(6):
        f[k] = sched_f[k]
        i[k] = sched_i[k]
    err[0] = 0
    cdef et_status st = et_schedule_check(base_lr, <uint32_t>kind, f, i, <uint32_t>warmup, err, sizeof(err))
    if st != ET_OK:
        raise error_for_status(<int>st, err.decode("utf-8", "replace"))


def debug_alloc_count():
    """Heap allocations made by the runtime so far (-1 when the build does not count)."""
    return et_debug_alloc_count()


def release_free_memory():
    """Give the C library's free heap pages back to the system (glibc; else a no-op)."""
    with nogil:
        et_release_free_memory()


# ---- kernels called directly (benchmarks and kernel tests) -----------------------------------
def gemm(cnp.ndarray a, cnp.ndarray b, cnp.ndarray c=None, bint trans_a=False,
         bint trans_b=False, float alpha=1.0, float beta=0.0, int threads=1):
    """C = alpha * op(A) @ op(B) + beta * C with the native SGEMM. Arrays: float32, C-contiguous."""
    for name, arr in (("a", a), ("b", b)):
        if arr.dtype != np.float32 or arr.ndim != 2 or not arr.flags.c_contiguous:
            raise DTypeError(f"gemm: {name} must be a C-contiguous 2-D float32 array")
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t K2 = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t N = b.shape[0] if trans_b else b.shape[1]
    if K != K2:
        raise ShapeError(f"gemm: inner dimensions differ ({K} vs {K2})")
    if c is None:
        c = np.zeros((M, N), np.float32)
    elif c.dtype != np.float32 or c.ndim != 2 or c.shape[0] != M or c.shape[1] != N \
            or not c.flags.c_contiguous:
        raise ShapeError(f"gemm: c must be a C-contiguous float32 array of shape ({M}, {N})")
    cdef size_t wsb = et_f32_gemm_ws_bytes(M, N, K, threads)
    cdef cnp.ndarray ws = np.empty(max(<size_t>1, wsb), np.uint8)
    cdef float *pa = <float *>cnp.PyArray_DATA(a)
    cdef float *pb = <float *>cnp.PyArray_DATA(b)
    cdef float *pc = <float *>cnp.PyArray_DATA(c)
    cdef void *pw = cnp.PyArray_DATA(ws)
    cdef int64_t lda = a.shape[1], ldb = b.shape[1], ldc = N
    cdef et_status st
    with nogil:
        st = et_f32_gemm(trans_a, trans_b, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc,
                         pw, wsb, threads)
    if st != ET_OK:
        _raise(st, "gemm")
    return c


cdef class Conv2dKernel:
    """Direct access to the conv2d kernels for one fixed problem (benchmarks)."""
    cdef et_conv2d_params p
    cdef public int threads
    cdef cnp.ndarray ws

    def __init__(self, x_shape, w_shape, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                 int groups=1, int threads=1):
        self.p.n, self.p.c, self.p.h, self.p.w = x_shape
        self.p.oc, _, self.p.kh, self.p.kw = w_shape
        self.p.stride_h, self.p.stride_w = stride
        self.p.pad_t, self.p.pad_l, self.p.pad_b, self.p.pad_r = padding
        self.p.dil_h, self.p.dil_w = dilation
        self.p.groups = groups
        self.p.act = ET_ACT_NONE
        self.p.act_alpha = 0
        cdef et_status st = et_conv2d_params_init(&self.p)
        if st != ET_OK:
            _raise(st, "conv2d parameters")
        self.threads = threads
        cdef size_t n = max(et_f32_conv2d_fwd_ws_bytes(&self.p, threads),
                            et_f32_conv2d_bwd_input_ws_bytes(&self.p, threads),
                            et_f32_conv2d_bwd_weight_ws_bytes(&self.p, threads))
        self.ws = np.empty(max(<size_t>1, n), np.uint8)

    @property
    def out_shape(self):
        return (self.p.n, self.p.oc, self.p.oh, self.p.ow)

    def forward(self, cnp.ndarray x, cnp.ndarray w, cnp.ndarray y):
        cdef et_status st
        cdef float *px = <float *>cnp.PyArray_DATA(x)
        cdef float *pw = <float *>cnp.PyArray_DATA(w)
        cdef float *py = <float *>cnp.PyArray_DATA(y)
        cdef void *ws = cnp.PyArray_DATA(self.ws)
        cdef size_t wsb = self.ws.nbytes
        with nogil:
            st = et_f32_conv2d_fwd(&self.p, px, pw, NULL, py, ws, wsb, self.threads)
        if st != ET_OK:
            _raise(st, "conv2d forward")

    def backward_input(self, cnp.ndarray dy, cnp.ndarray w, cnp.ndarray dx):
        cdef et_status st
        cdef float *pdy = <float *>cnp.PyArray_DATA(dy)
        cdef float *pw = <float *>cnp.PyArray_DATA(w)
        cdef float *pdx = <float *>cnp.PyArray_DATA(dx)
        cdef void *ws = cnp.PyArray_DATA(self.ws)
        cdef size_t wsb = self.ws.nbytes
        with nogil:
            st = et_f32_conv2d_bwd_input(&self.p, pdy, pw, pdx, ws, wsb, self.threads)
        if st != ET_OK:
            _raise(st, "conv2d backward (input)")

    def backward_weight(self, cnp.ndarray dy, cnp.ndarray x, cnp.ndarray dw):
        cdef et_status st
        cdef float *pdy = <float *>cnp.PyArray_DATA(dy)
        cdef float *px = <float *>cnp.PyArray_DATA(x)
        cdef float *pdw = <float *>cnp.PyArray_DATA(dw)
        cdef void *ws = cnp.PyArray_DATA(self.ws)
        cdef size_t wsb = self.ws.nbytes
        with nogil:
            st = et_f32_conv2d_bwd_weight(&self.p, pdy, px, pdw, ws, wsb, self.threads)
        if st != ET_OK:
            _raise(st, "conv2d backward (weight)")


# ---- the session ---------------------------------------------------------------------------
def _fs_path(path, str what):
    """``os.fsencode(path)``, refusing an embedded NUL (C would silently cut the path there)."""
    cdef bytes b = os.fsencode(path)
    if b"\0" in b:
        raise InvalidArgumentError(f"{what}: the path {os.fsdecode(b)!r} contains a NUL byte")
    return b


def save_bytes_atomic(path, bytes data, str context="save"):
    """Replace ``path`` with ``data`` through the runtime's one atomic writer
    (``et_file_write_atomic``: unique temporary, fsync, rename, the real cause on failure)."""
    cdef bytes bpath = _fs_path(path, context)
    cdef const char *p = bpath
    cdef const char *d = PyBytes_AS_STRING(data)
    cdef size_t n = PyBytes_GET_SIZE(data)
    cdef char err[512]
    cdef et_status st
    err[0] = 0
    with nogil:
        st = et_file_write_atomic(p, d, n, err, sizeof(err))
    if st != ET_OK:
        raise error_for_status(<int>st, f"{context}: {err.decode('utf-8', 'replace')}")


def _locked(method):
    """Run a Session method holding the session's lock (see Session)."""
    def call(self, *args, **kwargs):
        lock = self.lock
        lock.acquire()
        try:
            return method(self, *args, **kwargs)
        finally:
            lock.release()
    call.__name__, call.__qualname__, call.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return call


cdef class Session:
    """One loaded training program (an ``et_session``).

    Thread safety: an ``et_session`` must not be used by two threads at once (a Resize frees
    memory a run reads). Every method and property takes ``lock``, a re-entrant lock; waiting
    for it releases the GIL. ``TrainSession`` holds the same lock across a whole RunGraph.
    """
    cdef et_session *s
    cdef readonly object lock

    def __cinit__(self):
        self.lock = threading.RLock()

    def __dealloc__(self):
        if self.s != NULL:
            et_session_free(self.s)
            self.s = NULL

    cdef _check(self, et_status st, str context):
        if st != ET_OK:
            msg = et_session_error(self.s).decode("utf-8", "replace")
            raise error_for_status(<int>st, f"{context}: {msg}" if msg else
                                   f"{context}: {et_status_str(st).decode()}")

    @staticmethod
    def from_bytes(data, int threads=0, uint64_t max_memory=0):
        """Load a model from ``data`` (bytes, a bytearray or any contiguous byte buffer);
        the runtime copies what it keeps, so ``data`` may be freed afterwards."""
        cdef Session self = Session.__new__(Session)
        cdef const unsigned char[::1] view = data
        cdef size_t n = view.shape[0]
        cdef const char *p = ""
        if n:
            p = <const char *>&view[0]
        cdef et_status st
        cdef et_load_options opts
        opts.nthreads = threads
        opts.max_memory = max_memory
        with nogil:
            st = et_session_load_memory_ex(p, n, &opts, &self.s)
        if st != ET_OK:
            raise error_for_status(<int>st, "cannot load model: " +
                                   et_load_error().decode("utf-8", "replace"))
        return self

    @staticmethod
    def from_file(path, int threads=0, uint64_t max_memory=0):
        cdef Session self = Session.__new__(Session)
        cdef bytes bpath = _fs_path(path, "cannot load model")
        cdef const char *p = bpath
        cdef et_status st
        cdef et_load_options opts
        opts.nthreads = threads
        opts.max_memory = max_memory
        with nogil:
            st = et_session_load_file_ex(p, &opts, &self.s)
        if st != ET_OK:
            raise error_for_status(<int>st, f"cannot load model {os.fsdecode(bpath)!r}: " +
                                   et_load_error().decode("utf-8", "replace"))
        return self

    # -- configuration ----------------------------------------------------------------------
    @property
    def threads(self):
        with self.lock:
            return et_session_threads(self.s)

    @threads.setter
    def threads(self, int n):
        with self.lock:
            self._check(et_session_set_threads(self.s, n), "set threads")

    @property
    def max_memory(self):
        return et_session_max_memory(self.s)

    @max_memory.setter
    def max_memory(self, uint64_t n):
        with self.lock:
            self._check(et_session_set_max_memory(self.s, n), "set max_memory")

    @_locked
    def has_program(self, str name):
        return bool(et_session_has_program(self.s, PROGRAMS[name]))

    @_locked
    def set_program(self, str name):
        self._check(et_session_set_program(self.s, PROGRAMS[name]), f"select {name} program")

    @property
    def program(self):
        cdef int k
        with self.lock:
            k = et_session_program(self.s)
        return ("eval", "grad", "train")[k]

    @_locked
    def resize(self, dict shapes):
        cdef int n = len(shapes), i = 0, j
        cdef const char **names = <const char **>malloc(n * sizeof(char *) + 1)
        cdef int *ndims = <int *>malloc(n * sizeof(int) + 1)
        cdef const int64_t **dims = <const int64_t **>malloc(n * sizeof(int64_t *) + 1)
        cdef int64_t *flat = <int64_t *>malloc(n * 6 * sizeof(int64_t) + 1)
        keep = []
        try:
            for name, shape in shapes.items():
                shape = tuple(int(d) for d in shape)
                if len(shape) > 6:
                    raise ShapeError(f"Resize: input {name!r} has rank {len(shape)} > 6")
                b = name.encode()
                keep.append(b)
                names[i] = b
                ndims[i] = len(shape)
                for j in range(len(shape)):
                    flat[i * 6 + j] = shape[j]
                dims[i] = &flat[i * 6]
                i += 1
            self._check(et_session_resize(self.s, n, names, ndims, dims), "Resize")
        finally:
            free(names); free(ndims); free(dims); free(flat)

    # -- tensors ----------------------------------------------------------------------------
    @_locked
    def tensor_count(self):
        return et_session_tensor_count(self.s)

    @_locked
    def find(self, str name):
        return et_session_find_tensor(self.s, name.encode())

    @_locked
    def info(self, int index):
        cdef et_tensor_info ti
        self._check(et_session_tensor_info(self.s, index, &ti), f"tensor {index}")
        return {"name": ti.name.decode("utf-8", "replace"), "dtype": int(ti.dtype),
                "kind": KIND_NAMES[ti.kind], "shape": tuple(ti.shape[k] for k in range(ti.ndim)),
                "trainable": bool(ti.trainable), "numel": ti.numel}

    @_locked
    def get(self, int index):
        """A copy of tensor ``index``'s current data."""
        cdef et_tensor_info ti
        self._check(et_session_tensor_info(self.s, index, &ti), f"tensor {index}")
        shape = tuple(ti.shape[k] for k in range(ti.ndim))
        out = np.empty(shape, _NP_OF_DTYPE[ti.dtype])
        cdef const void *src = et_session_tensor_read(self.s, index)
        if src == NULL:
            raise NotFoundError(f"tensor {ti.name.decode()!r} has no data")
        cdef char *dst = <char *>cnp.PyArray_DATA(out)
        cdef size_t nbytes = out.nbytes
        with nogil:
            memcpy_(dst, <const char *>src, nbytes)
        return out

    @_locked
    def set(self, int index, value):
        """Overwrite tensor ``index`` (same shape; converted to its dtype)."""
        cdef et_tensor_info ti
        self._check(et_session_tensor_info(self.s, index, &ti), f"tensor {index}")
        name = ti.name.decode()
        shape = tuple(ti.shape[k] for k in range(ti.ndim))
        arr = np.asarray(value)
        if arr.shape != shape:
            raise ShapeError(f"tensor {name!r}: expected shape {shape}, got {arr.shape}")
        if not np.can_cast(arr.dtype, _NP_OF_DTYPE[ti.dtype], "same_kind"):
            raise DTypeError(f"tensor {name!r}: cannot store {arr.dtype} as "
                             f"{np.dtype(_NP_OF_DTYPE[ti.dtype])}")
        cdef cnp.ndarray src = np.ascontiguousarray(arr, _NP_OF_DTYPE[ti.dtype])
        cdef void *dst = et_session_tensor_data(self.s, index)
        if dst == NULL:
            raise NotFoundError(f"tensor {name!r} has no data")
        memcpy_(<char *>dst, <const char *>cnp.PyArray_DATA(src), src.nbytes)

    @_locked
    def set_input(self, str name, cnp.ndarray arr):
        cdef et_dtype dt
        if arr.dtype == np.float32:
            dt = ET_F32
        elif arr.dtype == np.int64:
            dt = ET_I64
        elif arr.dtype == np.int32:
            dt = ET_I32
        else:
            raise DTypeError(f"input {name!r}: unsupported dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr)
        cdef int64_t shape[6]
        cdef int k
        if arr.ndim > 6:
            raise ShapeError(f"input {name!r}: rank {arr.ndim} > 6")
        for k in range(arr.ndim):
            shape[k] = arr.shape[k]
        self._check(et_session_set_input(self.s, name.encode(), dt, cnp.PyArray_DATA(arr),
                                         arr.ndim, shape), f"input {name!r}")

    @_locked
    def inputs(self):
        return [et_session_input_tensor(self.s, i) for i in range(et_session_input_count(self.s))]

    @_locked
    def outputs(self):
        return {et_session_output_name(self.s, i).decode(): et_session_output_tensor(self.s, i)
                for i in range(et_session_output_count(self.s))}

    @_locked
    def run(self):
        cdef et_status st
        with nogil:
            st = et_session_run(self.s)
        self._check(st, "RunGraph")

    # -- optimizer state --------------------------------------------------------------------
    @property
    def lr(self):
        with self.lock:
            return et_session_lr(self.s)

    @property
    def base_lr(self):
        with self.lock:
            return et_session_base_lr(self.s)

    @base_lr.setter
    def base_lr(self, float lr):
        with self.lock:
            self._check(et_session_set_lr(self.s, lr), "set learning rate")

    @property
    def step(self):
        with self.lock:
            return et_session_step(self.s)

    @step.setter
    def step(self, uint64_t v):
        with self.lock:
            self._check(et_session_set_step(self.s, v), "set step")

    @property
    def epoch(self):
        with self.lock:
            return et_session_epoch(self.s)

    @epoch.setter
    def epoch(self, uint64_t v):
        with self.lock:
            self._check(et_session_set_epoch(self.s, v), "set epoch")

    @property
    def seed(self):
        with self.lock:
            return et_session_seed(self.s)

    @seed.setter
    def seed(self, uint64_t v):
        with self.lock:
            self._check(et_session_set_seed(self.s, v), "set seed")

    @_locked
    def save(self, path):
        cdef bytes bpath = _fs_path(path, "SaveToFile")
        cdef const char *p = bpath
        cdef et_status st
        with nogil:
            st = et_session_save_file(self.s, p)
        self._check(st, "SaveToFile")

    @_locked
    def memory_info(self):
        cdef et_memory_info mi
        self._check(et_session_memory_info(self.s, &mi), "memory_info")
        return {"params": mi.params_bytes, "grads": mi.grads_bytes,
                "optimizer": mi.optimizer_bytes, "consts": mi.const_bytes,
                "inputs": mi.inputs_bytes, "activations": mi.activations_bytes,
                "workspace": mi.workspace_bytes, "total": mi.total_bytes,
                "activations_without_reuse": mi.activations_unplanned_bytes,
                "workspace_without_reuse": mi.workspace_unplanned_bytes,
                "eval_cache": mi.eval_cache_bytes,
                "grads_in_arena": mi.grads_in_arena_bytes}

    @_locked
    def node_count(self, str program):
        return et_session_node_count(self.s, PROGRAMS[program])

    # -- batch size and the non-finite guard -------------------------------------------------
    @property
    def max_batch(self):
        return et_session_max_batch(self.s)

    @property
    def cached_plans(self):
        return et_session_cached_plans(self.s)

    @property
    def nonfinite(self):
        return NONFINITE_POLICIES[<int>et_session_nonfinite_policy(self.s)]

    @nonfinite.setter
    def nonfinite(self, str policy):
        if policy not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {policy!r}")
        cdef int k = NONFINITE_POLICIES.index(policy)
        self._check(et_session_set_nonfinite_policy(self.s, <et_nonfinite_policy>k),
                    "nonfinite policy")

    @property
    def skipped_steps(self):
        return et_session_skipped_steps(self.s)

    @skipped_steps.setter
    def skipped_steps(self, uint64_t n):
        self._check(et_session_set_skipped_steps(self.s, n), "skipped_steps")

    @property
    def last_step_skipped(self):
        return bool(et_session_last_step_skipped(self.s))

    # -- profiling ----------------------------------------------------------------------------
    @property
    def profiling(self):
        with self.lock:
            return bool(et_session_profiling(self.s))

    @profiling.setter
    def profiling(self, bint on):
        """Switching on (again) zeroes the counters."""
        with self.lock:
            self._check(et_session_set_profiling(self.s, on), "profiling")

    @_locked
    def profile(self):
        """Per node (index = node id): (op name, layer, cumulative ns, calls)."""
        cdef int n = et_session_profile(self.s, NULL, 0), k
        if n <= 0:
            return []
        cdef et_node_profile *buf = <et_node_profile *>malloc(n * sizeof(et_node_profile))
        if buf == NULL:
            raise MemoryError()
        try:
            et_session_profile(self.s, buf, n)
            names = op_names()
            return [(names[buf[k].op], buf[k].layer.decode("utf-8", "replace"), buf[k].ns, buf[k].calls)
                    for k in range(n)]
        finally:
            free(buf)

    cdef int _node_runs(self, int what, et_program_kind kind, int32_t *out, int cap):
        if what == 1:
            return et_session_node_groups(self.s, kind, out, cap)
        if what == 2:
            return et_session_eval_pairs(self.s, out, cap)
        return et_session_eval_segments(self.s, out, cap)

    cdef list _node_run_list(self, int what, et_program_kind kind):
        """Three ints each: (first node id, last node id, node count) of each eval segment
        (what 0) or concurrent group (1); (pointwise node id, depthwise node id, channels a
        block) of each channel-blocked pair (2)."""
        cdef int n = self._node_runs(what, kind, NULL, 0), k
        if n <= 0:
            return []
        cdef int32_t *buf = <int32_t *>malloc(3 * n * sizeof(int32_t))
        if buf == NULL:
            raise MemoryError()
        try:
            self._node_runs(what, kind, buf, n)
            return [(buf[3 * k], buf[3 * k + 1], buf[3 * k + 2]) for k in range(n)]
        finally:
            free(buf)

    @_locked
    def eval_segments(self):
        """The eval program's image-first segments for the current shapes: (first node id, last
        node id, node count) each."""
        return self._node_run_list(0, ET_PROGRAM_EVAL)

    @_locked
    def eval_pairs(self):
        """The channel-blocked pairs inside the eval segments: (pointwise node id, depthwise
        node id, channels a block) each."""
        return self._node_run_list(2, ET_PROGRAM_EVAL)

    @_locked
    def node_groups(self, str name):
        """The concurrent groups of the named program (train or grad) for the current shapes:
        (first node id, last node id, node count) each."""
        return self._node_run_list(1, PROGRAMS[name])


cdef extern from "string.h":
    void *memcpy_ "memcpy"(void *dst, const void *src, size_t n) nogil
