# What the engine shares with the connector test host (libcmi-testhost):
# the arena, the string parsers and static parameter values, so that a
# connector's unit test binds parameters with the engine's own code.
noinst_LTLIBRARIES += engine/libcmi-base.la
engine_libcmi_base_la_SOURCES = \
	engine/core/arena.c engine/core/arena.h engine/core/clock.h \
	engine/core/str.c engine/core/str.h \
	engine/core/secrets.c engine/core/secrets.h \
	engine/plugin/pvalue.c engine/plugin/pvalue.h
engine_libcmi_base_la_LIBADD = $(JANSSON_LIBS) $(OPENSSL_LIBS) -lm

# The engine: everything but main() is a convenience library, so that unit
# tests link the same objects the binary runs.
noinst_LTLIBRARIES += engine/libcmi-engine.la
engine_libcmi_engine_la_SOURCES = \
	engine/core/htab.c engine/core/htab.h \
	engine/core/log.c engine/core/log.h \
	engine/core/regex.c engine/core/regex.h \
	engine/config/api.c \
	engine/config/artifacts.c engine/config/artifacts.h \
	engine/config/compile.c engine/config/compile.h \
	engine/config/config.h \
	engine/config/diag.c engine/config/diag.h \
	engine/config/loader.c \
	engine/config/proxy.c \
	engine/config/template.c \
	engine/config/uri.c engine/config/uri.h \
	engine/config/wsdl.c engine/config/wsdl.h \
	engine/runtime/convert.c engine/runtime/convert.h engine/runtime/render.c \
	engine/runtime/errors.c engine/runtime/errors.h \
	engine/runtime/flow.c engine/runtime/flow.h \
	engine/runtime/msg.c engine/runtime/msg.h \
	engine/runtime/value.c engine/runtime/value.h \
	engine/runtime/worker.c engine/runtime/worker.h \
	engine/runtime/metrics.c engine/runtime/metrics.h \
	engine/mediators/registry.c engine/mediators/registry.h \
	engine/mediators/respond.c \
	engine/mediators/log.c \
	engine/mediators/property.c \
	engine/mediators/payload_factory.c \
	engine/mediators/header.c \
	engine/mediators/sequence.c \
	engine/mediators/variable.c \
	engine/mediators/filter.c \
	engine/mediators/switch.c \
	engine/mediators/enrich.c engine/mediators/enrich.h engine/mediators/enrich_edit.c \
	engine/mediators/direction.c engine/mediators/makefault.c \
	engine/mediators/call_template.c engine/mediators/throw_error.c \
	engine/mediators/freemarker.c engine/mediators/freemarker.h engine/mediators/xslt.c \
	engine/mediators/call.c engine/mediators/call.h engine/config/endpoint.c engine/config/endpoint.h \
	engine/runtime/endpoint.c engine/runtime/endpoint.h \
	engine/mediators/test_suspend.c \
	engine/plugin/plugin.h engine/plugin/loader.c engine/plugin/params.c engine/plugin/bind.c \
	engine/plugin/host.c engine/plugin/inject.c engine/plugin/lifecycle.c engine/plugin/report.c \
	engine/expr/ast.h engine/expr/expr.h \
	engine/expr/eval.c engine/expr/functions.c engine/expr/parser.c \
	engine/expr/template.c engine/expr/xpath.c engine/expr/locate.c \
	engine/http/client.c engine/http/client.h \
	engine/http/answer.h \
	engine/http/proxy.c engine/http/proxy.h \
	engine/http/dispatch.c engine/http/dispatch.h \
	engine/http/pathmatch.c engine/http/pathmatch.h \
	engine/http/server.c engine/http/server.h \
	engine/http/tls.c engine/http/tls.h \
	engine/http/internal.c engine/http/internal.h \
	engine/http/access_log.c engine/http/access_log.h \
	engine/http/basic_auth.c engine/http/basic_auth.h \
	engine/http/client_cert.c engine/http/client_cert.h \
	engine/http/jwk.c engine/http/jwk.h \
	engine/http/jwt.c engine/http/jwt.h \
	engine/http/jwks_fetch.c engine/http/jwks_fetch.h \
	engine/http/jwt_auth.c engine/http/jwt_auth.h \
	engine/config/jwt_handler.c \
	engine/engine.c engine/engine.h engine/deploy.c engine/watch.c engine/watch.h \
	engine/settings.c
engine_libcmi_engine_la_CPPFLAGS = $(AM_CPPFLAGS) -DCMI_CONNECTORS_DIR='"$(connectorsdir)"'
engine_libcmi_engine_la_LIBADD = engine/libcmi-base.la \
	$(XML2_LIBS) $(XSLT_LIBS) $(H2O_LIBS) $(JANSSON_LIBS) $(CURL_LIBS) $(OPENSSL_LIBS) $(CRYPT_LIBS) $(DL_LIBS) -lm -lpthread

bin_PROGRAMS += cmi
cmi_SOURCES = engine/main.c
cmi_CPPFLAGS = $(AM_CPPFLAGS) -DCMI_CONNECTORS_DIR='"$(connectorsdir)"' -DCMI_DEPLOY_DIR='"$(deploydir)"'
cmi_LDADD = engine/libcmi-engine.la

# The connector SDK (engine/include/cmi): installed headers and a pkg-config
# file, so that a connector can be built outside this tree.
connectorsdir = $(pkglibdir)/connectors
cmiincludedir = $(includedir)/cmi
cmiinclude_HEADERS = engine/include/cmi/connector.h engine/include/cmi/host.h \
	engine/include/cmi/params.h engine/include/cmi/types.h engine/include/cmi/testhost.h
pkgconfigdir = $(libdir)/pkgconfig
pkgconfig_DATA = engine/cmi-connector.pc engine/cmi-connector-test.pc
# configure reads the ABI version of the .pc files from connector.h.
CONFIG_STATUS_DEPENDENCIES = $(top_srcdir)/engine/include/cmi/connector.h

# The test host connector unit tests link instead of the engine
# (<cmi/testhost.h>, cmi-connector-test.pc); only cmi_test_* is exported.
lib_LTLIBRARIES = engine/libcmi-testhost.la
engine_libcmi_testhost_la_SOURCES = engine/plugin/testhost_int.h engine/plugin/testhost.c \
	engine/plugin/testhost_msg.c engine/plugin/testhost_call.c engine/plugin/testhost_listen.c \
	engine/plugin/testhost_bind.c
engine_libcmi_testhost_la_LIBADD = engine/libcmi-base.la $(JANSSON_LIBS) -lpthread
engine_libcmi_testhost_la_LDFLAGS = $(AM_LDFLAGS) -version-info 0:0:0 -export-symbols-regex '^cmi_test_'
