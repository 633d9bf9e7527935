# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Hot loops of the data pipeline (DESIGN.md decision 1: Cython for the Python-side loops).

``lut_gather_u8``: the rows ``idx`` of a uint8 image table mapped through a 256-entry float32
lookup table into a float32 batch, without the GIL. The values are the table's, so the result is
bit-for-bit ``lut[images[idx]]`` (numpy's fancy indexing makes an intp copy of every pixel first:
~5x the CPU time for an MNIST batch of 64). Arguments are checked here: the loop trusts them.
"""
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

cnp.import_array()

# A shuffled batch's rows lie anywhere in the set (MNIST: 47 MB), so their bytes are cache misses.
# Rows are first copied (memcpy, as many whole rows as fit in CHUNK bytes on the stack, or a long
# row CHUNK bytes at a time: the copies keep many misses in flight) and then converted from
# there; converting straight from the scattered rows waits for the misses and costs ~2x more.
cdef enum:
    CHUNK = 16384


def lut_gather_u8(cnp.ndarray images, cnp.ndarray idx, cnp.ndarray lut, cnp.ndarray out):
    """out[b, :] = lut[images[idx[b]].ravel()] for every b.

    images: uint8, C-contiguous, [N, ...]   # IN
    idx:    int64 [B], each in [0, N)       # IN
    lut:    float32 [256], contiguous       # IN
    out:    float32, C-contiguous, B * (images.size / N) elements   # OUT
    """
    if images.dtype != np.uint8 or not images.flags.c_contiguous or images.ndim < 1:
        raise TypeError("lut_gather_u8: images must be a C-contiguous uint8 array")
    if idx.dtype != np.int64 or idx.ndim != 1 or not idx.flags.c_contiguous:
        raise TypeError("lut_gather_u8: idx must be a contiguous int64 vector")
    if lut.dtype != np.float32 or lut.ndim != 1 or lut.shape[0] != 256 or \
            not lut.flags.c_contiguous:
        raise TypeError("lut_gather_u8: lut must be a contiguous float32 [256] table")
    if out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError("lut_gather_u8: out must be a writeable C-contiguous float32 array")
    cdef int64_t n = images.shape[0], b = idx.shape[0]
    cdef int64_t row = images.size // n if n > 0 else 0
    if out.size != b * row:
        raise ValueError(f"lut_gather_u8: out has {out.size} elements, {b} rows of {row} "
                         f"need {b * row}")
    cdef const int64_t *ip = <const int64_t *>cnp.PyArray_DATA(idx)
    cdef int64_t i
    for i in range(b):
        if ip[i] < 0 or ip[i] >= n:
            raise IndexError(f"lut_gather_u8: index {ip[i]} out of range for {n} rows")
    cdef const uint8_t *src = <const uint8_t *>cnp.PyArray_DATA(images)
    cdef const float *tab = <const float *>cnp.PyArray_DATA(lut)
    cdef float *dst = <float *>cnp.PyArray_DATA(out)
    cdef const uint8_t *r
    cdef uint8_t buf[CHUNK]
    cdef int64_t at, m, q, per = CHUNK // row if 0 < row <= CHUNK else 0
    with nogil:
        i = 0
        while per and i < b:  # rows that fit: `per` rows at a time
            m = per if b - i > per else b - i
            for q in range(m):
                memcpy(buf + q * row, src + ip[i + q] * row, <size_t>row)
            for q in range(m * row):
                dst[i * row + q] = tab[buf[q]]
            i += m
        while not per and i < b:  # longer rows: CHUNK bytes at a time
            r = src + ip[i] * row
            at = 0
            while at < row:
                m = row - at if row - at < CHUNK else CHUNK
                memcpy(buf, r + at, <size_t>m)
                for q in range(m):
                    dst[i * row + at + q] = tab[buf[q]]
                at += m
            i += 1
    return out
