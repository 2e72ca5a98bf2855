// The unit test groups, one per core module; test_main.c runs them all.
#ifndef TESTS_H
#define TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int run_wire_tests(void);
int run_engine_tests(void);
int run_boot_tests(void);
int run_auth_tests(void);

#endif
