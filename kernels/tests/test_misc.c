/* placeholder: tests for misc pending */
#include "et_test.h"
void test_misc(void) {}
