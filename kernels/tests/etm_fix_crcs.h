/* edgetrain — test helper: recompute the CRCs of an .etm image after a deliberate change, so
 * the reader's semantic checks are what a test (or the fuzzer) reaches. Shared by
 * kernels/tests/test_runtime.c and kernels/fuzz/fuzz_load.c; header-only. */
#ifndef EDGETRAIN_ETM_FIX_CRCS_H
#define EDGETRAIN_ETM_FIX_CRCS_H

#include <stdint.h>
#include <string.h>

#include "runtime_internal.h"

static void etm_fix_crcs(uint8_t *b, size_t size) {
    if (size < ET_HEADER_BYTES) return;
    uint32_t n;
    memcpy(&n, b + ET_HDR_NSECTIONS, 4);
    if (n >= 1 && n <= ET_MAX_SECTIONS && ET_HEADER_BYTES + (size_t)n * ET_SECTION_ENTRY_BYTES <= size) {
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *e = b + ET_HEADER_BYTES + ET_SECTION_ENTRY_BYTES * i;
            uint64_t off, sz;
            memcpy(&off, e + ET_SENT_OFFSET, 8);
            memcpy(&sz, e + ET_SENT_SIZE, 8);
            if (off <= size && sz <= size - off) {
                uint32_t crc = et_crc32(0, b + off, (size_t)sz);
                memcpy(e + ET_SENT_CRC, &crc, 4);
            }
        }
        uint32_t tcrc = et_crc32(0, b + ET_HEADER_BYTES, (size_t)n * ET_SECTION_ENTRY_BYTES);
        memcpy(b + ET_HDR_TABLE_CRC, &tcrc, 4);
    }
    uint32_t hcrc = et_crc32(0, b, ET_HDR_CRC);
    memcpy(b + ET_HDR_CRC, &hcrc, 4);
}

#endif /* EDGETRAIN_ETM_FIX_CRCS_H */
