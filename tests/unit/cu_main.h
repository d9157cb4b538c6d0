/* Shared main() for the CUnit runners: each runner defines its suites with
 * CU_SuiteInfo and calls cu_run; the exit status is the number of failed
 * assertions (0 = all passed), as `make check` expects. */
#ifndef CMI_TEST_CU_MAIN_H
#define CMI_TEST_CU_MAIN_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdio.h>

static inline int cu_run(CU_SuiteInfo *suites)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    if (CU_register_suites(suites) != CUE_SUCCESS) {
        fprintf(stderr, "cannot register suites: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures > 125 ? 125 : (int)failures;
}

#endif
