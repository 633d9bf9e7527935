/* placeholder: tests for gemm pending */
#include "et_test.h"
void test_gemm(void) {}
