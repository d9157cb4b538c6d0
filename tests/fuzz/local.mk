# libFuzzer targets: the expression language, payload handling, the
# artifact loader and HTTP requests through the real listener, built from the engine's sources with clang, ASan and
# UBSan.  `make fuzz-smoke` runs each for FUZZ_SECONDS from the seed corpus
# (CI does); crashes leave their input in the build folder.
FUZZ_SECONDS = 30
FUZZ_TARGETS = tests/fuzz/fuzz_expr tests/fuzz/fuzz_payload tests/fuzz/fuzz_config tests/fuzz/fuzz_http
FUZZ_ENGINE_SRCS = $(addprefix $(srcdir)/,$(filter %.c,$(engine_libcmi_base_la_SOURCES) $(engine_libcmi_engine_la_SOURCES)))
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIBS = $(XML2_LIBS) $(XSLT_LIBS) $(H2O_LIBS) $(JANSSON_LIBS) $(CURL_LIBS) $(OPENSSL_LIBS) $(CRYPT_LIBS) -lm -lpthread
EXTRA_DIST += tests/fuzz
CLEANFILES += $(FUZZ_TARGETS)

if CMI_FUZZ
tests/fuzz/fuzz_%: $(srcdir)/tests/fuzz/fuzz_%.c $(FUZZ_ENGINE_SRCS)
	@mkdir -p tests/fuzz
	$(AM_V_CC)$(CLANG) $(FUZZ_FLAGS) $(DEFS) $(AM_CPPFLAGS) $(CPPFLAGS) -o $@ $^ $(FUZZ_LIBS)

fuzz-smoke: $(FUZZ_TARGETS)
	@for t in expr payload config http; do \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  mkdir -p tests/fuzz/work-$$t; \
	  ./tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    tests/fuzz/work-$$t $(srcdir)/tests/fuzz/corpus/$$t 2>tests/fuzz/fuzz_$$t.log || \
	    { tail -n 60 tests/fuzz/fuzz_$$t.log; exit 1; }; \
	  grep -E "stat::number_of_executed_units|Done" tests/fuzz/fuzz_$$t.log | tail -n 2; \
	done
else
fuzz-smoke:
	@echo "fuzz-smoke: clang with libFuzzer is needed (Debian packages clang, libclang-rt-14-dev)"; exit 1
endif
.PHONY: fuzz-smoke
