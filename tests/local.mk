# Tests: `make check` runs the CUnit unit tests, the broken-deployment
# corpus and the scenario suite against the real cmi binary.

UNIT_CPPFLAGS = $(AM_CPPFLAGS) $(CUNIT_CFLAGS)
UNIT_LDADD = engine/libcmi-engine.la $(CUNIT_LIBS)

check_PROGRAMS += tests/unit/test_core tests/unit/test_dispatch tests/unit/test_runtime tests/unit/test_expr
tests_unit_test_core_SOURCES = tests/unit/test_core.c tests/unit/cu_main.h
tests_unit_test_core_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_core_LDADD = $(UNIT_LDADD)
tests_unit_test_dispatch_SOURCES = tests/unit/test_dispatch.c tests/unit/cu_main.h
tests_unit_test_dispatch_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_dispatch_LDADD = $(UNIT_LDADD)
tests_unit_test_runtime_SOURCES = tests/unit/test_runtime.c tests/unit/cu_main.h tests/unit/deploy.h
tests_unit_test_runtime_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_runtime_LDADD = $(UNIT_LDADD)
tests_unit_test_expr_SOURCES = tests/unit/test_expr.c tests/unit/cu_main.h
tests_unit_test_expr_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_expr_LDADD = $(UNIT_LDADD)

TESTS += tests/unit/test_core tests/unit/test_dispatch tests/unit/test_runtime tests/unit/test_expr

# The deployment corpus and the scenario suite drive the built cmi.
TEST_EXTENSIONS = .py
PY_LOG_COMPILER = $(PYTHON3)
AM_TESTS_ENVIRONMENT = CMI_BIN='$(abs_top_builddir)/cmi'; export CMI_BIN; \
	UBSAN_OPTIONS='print_stacktrace=1:halt_on_error=1'; export UBSAN_OPTIONS; \
	TSAN_OPTIONS='halt_on_error=1:second_deadlock_stack=1'; export TSAN_OPTIONS;
TESTS += tests/config/run.py tests/scenarios/run.py
EXTRA_DIST += tests/config tests/scenarios

# The scenario suite under valgrind: fails on any memory error or leak
# reported in cmi (memcheck's exit status 99).
VALGRIND_CMD = valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect
check-valgrind: cmi
	CMI_BIN='$(abs_top_builddir)/cmi' CMI_WRAPPER='$(VALGRIND_CMD)' $(PYTHON3) $(top_srcdir)/tests/scenarios/run.py -j 2
.PHONY: check-valgrind
