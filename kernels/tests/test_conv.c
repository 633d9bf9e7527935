/* placeholder: tests for conv pending */
#include "et_test.h"
void test_conv(void) {}
