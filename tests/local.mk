# Tests: `make check` runs the CUnit unit tests, the broken-deployment
# corpus and the scenario suite against the real cmi binary.

UNIT_CPPFLAGS = $(AM_CPPFLAGS) $(CUNIT_CFLAGS)
UNIT_LDADD = engine/libcmi-engine.la $(CUNIT_LIBS)

check_PROGRAMS += tests/unit/test_core tests/unit/test_dispatch tests/unit/test_runtime tests/unit/test_expr \
	tests/unit/test_plugin
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

check_PROGRAMS += tests/unit/test_httpclient tests/unit/test_tls tests/unit/test_jwk
tests_unit_test_tls_SOURCES = tests/unit/test_tls.c tests/unit/cu_main.h
tests_unit_test_tls_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_tls_LDADD = $(UNIT_LDADD)
tests_unit_test_jwk_SOURCES = tests/unit/test_jwk.c tests/unit/cu_main.h
tests_unit_test_jwk_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_jwk_LDADD = $(UNIT_LDADD) $(JWT_LIBS)
tests_unit_test_httpclient_SOURCES = tests/unit/test_httpclient.c tests/unit/cu_main.h
tests_unit_test_httpclient_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_httpclient_LDADD = $(UNIT_LDADD) -lpthread

tests_unit_test_plugin_SOURCES = tests/unit/test_plugin.c tests/unit/cu_main.h
tests_unit_test_plugin_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_plugin_LDADD = $(UNIT_LDADD)

# The RabbitMQ connector's socket-free parts.
check_PROGRAMS += tests/unit/test_rmq
tests_unit_test_rmq_SOURCES = tests/unit/test_rmq.c tests/unit/cu_main.h
tests_unit_test_rmq_CPPFLAGS = $(AM_CPPFLAGS) $(CUNIT_CFLAGS) $(PROTON_CFLAGS)
tests_unit_test_rmq_LDADD = connectors/rabbitmq/librmq-core.la $(PROTON_LIBS) $(JANSSON_LIBS) $(CUNIT_LIBS)

TESTS += tests/unit/test_core tests/unit/test_dispatch tests/unit/test_runtime tests/unit/test_expr \
	tests/unit/test_plugin tests/unit/test_rmq tests/unit/test_httpclient tests/unit/test_tls tests/unit/test_jwk

# Connector modules for tests, built as a connector author would build one:
# a libtool module exporting nothing but the cmi_connector descriptor.
TEST_MODULE_CFLAGS = $(AM_CFLAGS) -fvisibility=hidden
TEST_MODULE_LDFLAGS = $(AM_LDFLAGS) -module -avoid-version -shared -rpath /nowhere \
	-export-symbols-regex '^cmi_connector$$'
check_LTLIBRARIES = tests/connectors/echo/echo.la tests/connectors/badabi/badabi.la
tests_connectors_echo_echo_la_SOURCES = tests/connectors/echo/echo.c tests/connectors/echo/echo.h
tests_connectors_echo_echo_la_CFLAGS = $(TEST_MODULE_CFLAGS)
tests_connectors_echo_echo_la_LDFLAGS = $(TEST_MODULE_LDFLAGS)
tests_connectors_echo_echo_la_LIBADD = $(JANSSON_LIBS) -lpthread
tests_connectors_badabi_badabi_la_SOURCES = tests/connectors/badabi/badabi.c
tests_connectors_badabi_badabi_la_CFLAGS = $(TEST_MODULE_CFLAGS)
tests_connectors_badabi_badabi_la_LDFLAGS = $(TEST_MODULE_LDFLAGS)

# The echo module against the SDK's test host: no engine linked in.
check_PROGRAMS += tests/connectors/test_echo_module
tests_connectors_test_echo_module_SOURCES = tests/connectors/test_echo_module.c tests/unit/cu_main.h
tests_connectors_test_echo_module_CPPFLAGS = $(AM_CPPFLAGS) $(CUNIT_CFLAGS) -I$(top_srcdir)/tests/connectors/echo \
	-DECHO_MODULE='"$(abs_top_builddir)/tests/connectors/echo/.libs/echo.so"'
tests_connectors_test_echo_module_LDADD = engine/libcmi-testhost.la $(CUNIT_LIBS) $(JANSSON_LIBS) $(DL_LIBS) -lpthread
TESTS += tests/connectors/test_echo_module tests/connectors/test_install.sh tests/connectors/test_rmq_layers.sh
EXTRA_DIST += tests/connectors

# The deployment corpus and the scenario suite drive the built cmi.
TEST_EXTENSIONS = .py .sh
PY_LOG_COMPILER = $(PYTHON3)
SH_LOG_COMPILER = $(SHELL)
AM_TESTS_ENVIRONMENT = CMI_BIN='$(abs_top_builddir)/cmi'; export CMI_BIN; \
	CMI_TEST_CONNECTORS='$(abs_top_builddir)/tests/connectors/echo/.libs:$(abs_top_builddir)/connectors/rabbitmq/.libs'; \
	export CMI_TEST_CONNECTORS; \
	CMI_RMQ_CONNECTORS='$(abs_top_builddir)/connectors/rabbitmq/.libs'; export CMI_RMQ_CONNECTORS; \
	CMI_TEST_BADABI='$(abs_top_builddir)/tests/connectors/badabi/.libs'; export CMI_TEST_BADABI; \
	CMI_BUILDDIR='$(abs_top_builddir)'; export CMI_BUILDDIR; CMI_SRCDIR='$(abs_top_srcdir)'; export CMI_SRCDIR; \
	CMI_SAN_LDFLAGS='$(SAN_LDFLAGS)'; export CMI_SAN_LDFLAGS; \
	MAKE='$(MAKE)'; export MAKE; \
	UBSAN_OPTIONS='print_stacktrace=1:halt_on_error=1'; export UBSAN_OPTIONS; \
	TSAN_OPTIONS='halt_on_error=1:second_deadlock_stack=1'; export TSAN_OPTIONS;
TESTS += tests/config/run.py tests/mi-docs/run.py tests/scenarios/run.py tests/integration/run.py
EXTRA_DIST += tests/config tests/mi-docs tests/scenarios tests/integration

# The scenario suite under valgrind: fails on any memory error or leak
# reported in cmi (memcheck's exit status 99).
VALGRIND_CMD = valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect
check-valgrind: cmi $(check_LTLIBRARIES)
	CMI_BIN='$(abs_top_builddir)/cmi' CMI_WRAPPER='$(VALGRIND_CMD)' \
	CMI_TEST_CONNECTORS='$(abs_top_builddir)/tests/connectors/echo/.libs:$(abs_top_builddir)/connectors/rabbitmq/.libs' \
	CMI_TEST_BADABI='$(abs_top_builddir)/tests/connectors/badabi/.libs' \
	$(PYTHON3) $(top_srcdir)/tests/scenarios/run.py -j 2
.PHONY: check-valgrind
