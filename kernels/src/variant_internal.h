/* edgetrain — variant tables: one per kernel family (internal; tests and benchmarks read them).
 *
 * A family with SIMD variants lists them once, as a static const array of rows
 *     { {isa, name}, fn pointers... }
 * whose first row is the scalar __ref one (isa ET_ISA_REF) and whose last row is all zeros
 * (name NULL). Each row starts with an et_variant_head; the rest of the row is the family's
 * own (its kernels, or for GEMM its config). Only the rows compiled for this target exist.
 *   dispatch:    const family_variant *row = ET_VARIANT_PICK(table); row->fn(...)
 *   tests:       for (row = table; row->head.name; row++) if (et_isa_supported(row->head.isa))
 *                    compare row with table[0] (__ref) at sizes below, at, above and not
 *                    divisible by the SIMD width
 *   benchmarks:  the same loop, timing each row.
 * So a new variant is one row: it is dispatched, tested and benchmarked without other edits.
 *
 * Tables: et_f32_gemm_variants (gemm_internal.h), et_f32_act_variants, et_f32_dropout_variants,
 * et_f32_optim_variants (misc_internal.h), et_f32_dwconv2d_variants (conv_internal.h),
 * et_f32_maxpool2d_k2s2_variants (pool_internal.h), et_f32_unary_variants,
 * et_f32_softmax_rows_variants (misc_internal.h), et_f32_normrows_variants (norm_internal.h),
 * et_f32_bn_variants (norm_internal.h: the BatchNorm training kernels), et_f32_fq_variants
 * (quant_internal.h: fake quantization and the observers' min / max), et_q_gemm_variants,
 * et_q_conv2d_variants, et_q_dwconv2d_variants (qgemm_internal.h: the int8 kernels).
 */
#ifndef EDGETRAIN_VARIANT_INTERNAL_H
#define EDGETRAIN_VARIANT_INTERNAL_H
#include <stddef.h>

#include "edgetrain/et_common.h"

/* First member of every variant-table row. */
typedef struct et_variant_head {
    et_isa isa;       /* the ISA the row's kernels need (et_isa_supported) */
    const char *name; /* "ref", "avx2", ...; NULL ends the table */
} et_variant_head;

/* The row of `table` (rows of `row_size` bytes, see above) for the ISA chosen now
 * (et_get_isa()); else the row of its et_isa_parent (avx512vnni -> avx512, ...); else the
 * first row (__ref). */
const void *et_variant_pick(const void *table, size_t row_size);
#define ET_VARIANT_PICK(table) et_variant_pick((table), sizeof (table)[0])

#endif /* EDGETRAIN_VARIANT_INTERNAL_H */
