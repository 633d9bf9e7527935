/* edgetrain — libFuzzer harness over the whole runtime path of an .etm file:
 * load from memory, plan, one run of each present program with zeroed inputs,
 * resize to another batch (and run again), save to a temporary file and reload.
 *
 * The section CRCs of the input are recomputed first, so mutations reach the
 * semantic checks behind them (the CRC check itself is covered by the C
 * tests). Each session gets a small memory limit, so hostile shapes are
 * refused by the limit rather than allocated. Findings are crashes and
 * sanitizer reports, plus two contract checks that abort():
 *   - a failed load always has a message;
 *   - a model that loaded, saves, and the saved file loads again.
 * Build and run: make -C kernels fuzz (or make fuzz at the top level).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edgetrain/et_runtime.h"
#include "../tests/etm_fix_crcs.h"


#define FUZZ_MAX_MEMORY ((uint64_t)64 << 20)

static void contract_broken(const char *what, const char *msg) {
    fprintf(stderr, "fuzz_load: contract broken: %s: %s\n", what, msg ? msg : "");
    abort();
}

/* Zeroes every input of the current program and runs it once. */
static void run_zeroed(et_session *s) {
    for (int k = 0; k < et_session_input_count(s); k++) {
        et_tensor_info info;
        if (et_session_tensor_info(s, et_session_input_tensor(s, k), &info) != ET_OK) continue;
        void *p = et_session_tensor_data(s, et_session_input_tensor(s, k));
        size_t bytes = (size_t)info.numel * et_dtype_size(info.dtype);
        if (p && bytes) memset(p, 0, bytes);
    }
    et_session_run(s);
}

/* Every input with a batch dimension gets another batch size. */
static void resize_batch(et_session *s) {
    const char *names[16];
    int ndims[16];
    int64_t dims[16][6];
    const int64_t *shapes[16];
    int n = 0;
    for (int i = 0; i < et_session_tensor_count(s) && n < 16; i++) {
        et_tensor_info info;
        if (et_session_tensor_info(s, i, &info) != ET_OK || info.kind != ET_KIND_INPUT || info.ndim < 1) continue;
        names[n] = info.name;
        ndims[n] = info.ndim;
        memcpy(dims[n], info.shape, sizeof dims[n]);
        dims[n][0] = info.shape[0] > 1 ? info.shape[0] - 1 : 2;
        shapes[n] = dims[n];
        n++;
    }
    if (n && et_session_resize(s, n, names, ndims, shapes) == ET_OK) run_zeroed(s);
}

static void save_and_reload(et_session *s) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/et_fuzz_%ld.etm", (long)getpid());
    if (et_session_save_file(s, path) != ET_OK) contract_broken("a loaded model does not save", et_session_error(s));
    et_session *r = NULL;
    et_load_options opts = {1, FUZZ_MAX_MEMORY};
    if (et_session_load_file_ex(path, &opts, &r) != ET_OK)
        contract_broken("the saved file does not load", et_load_error());
    et_session_free(r);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = (uint8_t *)malloc(size ? size : 1);
    if (!b) return 0;
    if (size) memcpy(b, data, size);
    etm_fix_crcs(b, size);
    et_session *s = NULL;
    et_load_options opts = {1, FUZZ_MAX_MEMORY};
    et_status st = et_session_load_memory_ex(b, size, &opts, &s);
    free(b);
    if (st != ET_OK) {
        if (!et_load_error()[0]) contract_broken("a rejection without a message", et_status_str(st));
        return 0;
    }
    for (int k = 0; k < ET_PROGRAM_COUNT_; k++) {
        if (!et_session_has_program(s, (et_program_kind)k)) continue;
        et_session_set_program(s, (et_program_kind)k);
        run_zeroed(s);
    }
    resize_batch(s);
    save_and_reload(s);
    et_session_free(s);
    return 0;
}
