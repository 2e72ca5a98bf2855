// The one unit test binary: runs every group and fails if any test failed.
#include "tests.h"

int main(void) {
    int failed = 0;
    failed += run_wire_tests();
    failed += run_engine_tests();
    failed += run_boot_tests();
    failed += run_auth_tests();
    return failed == 0 ? 0 : 1;
}
