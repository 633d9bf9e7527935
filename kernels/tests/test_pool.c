/* placeholder: tests for pool pending */
#include "et_test.h"
void test_pool(void) {}
