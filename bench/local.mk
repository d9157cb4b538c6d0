# Benchmarks: bench/run is the one command; rmq-direct is the direct AMQP
# 1.0 client it measures cmi's RabbitMQ figures against.  Built with
# everything else so that it never rots.
noinst_PROGRAMS += bench/rmq-direct
bench_rmq_direct_SOURCES = bench/rmq-direct.c
bench_rmq_direct_CFLAGS = $(AM_CFLAGS) $(PROTON_CFLAGS)
bench_rmq_direct_LDADD = $(PROTON_LIBS)
EXTRA_DIST += bench/run
