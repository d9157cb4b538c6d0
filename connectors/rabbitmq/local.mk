# The RabbitMQ connector: a libtool module installed on the connectors path,
# exporting only its cmi_connector descriptor.  The parts that need no
# socket (addresses, messages, /management requests) are a convenience
# library shared with their unit tests.
RMQ_CFLAGS = $(AM_CFLAGS) -fvisibility=hidden $(PROTON_CFLAGS)

noinst_LTLIBRARIES += connectors/rabbitmq/librmq-core.la
connectors_rabbitmq_librmq_core_la_SOURCES = connectors/rabbitmq/rmq.h connectors/rabbitmq/rmq_alloc.c \
	connectors/rabbitmq/rmq_params.h connectors/rabbitmq/rmq_params.c connectors/rabbitmq/rmq_address.c connectors/rabbitmq/rmq_names.c connectors/rabbitmq/rmq_message.c connectors/rabbitmq/rmq_v2mgmt.c \
	connectors/rabbitmq/rmq_refused.c connectors/rabbitmq/rmq_throttle.c connectors/rabbitmq/rmq_offsets.c
connectors_rabbitmq_librmq_core_la_CFLAGS = $(RMQ_CFLAGS)

connectors_LTLIBRARIES = connectors/rabbitmq/rabbitmq.la
connectors_rabbitmq_rabbitmq_la_SOURCES = connectors/rabbitmq/rmq.h connectors/rabbitmq/rmq_module.c \
	connectors/rabbitmq/rmq_core.h connectors/rabbitmq/rmq_pub.c connectors/rabbitmq/rmq_conn.c \
	connectors/rabbitmq/rmq_declare.c connectors/rabbitmq/rmq_send.c connectors/rabbitmq/rmq_pool.c \
	connectors/rabbitmq/rmq_mgmt.c connectors/rabbitmq/rmq_consume.h connectors/rabbitmq/rmq_consume_int.h connectors/rabbitmq/rmq_consume.c \
	connectors/rabbitmq/rmq_delivery.c connectors/rabbitmq/rmq_final.c connectors/rabbitmq/rmq_stream.c \
	connectors/rabbitmq/rmq_ops.h connectors/rabbitmq/rmq_publish.c connectors/rabbitmq/rmq_listener.c \
	connectors/rabbitmq/rmq_rpc.c connectors/rabbitmq/rmq_tls.h connectors/rabbitmq/rmq_tls.c \
	connectors/rabbitmq/rmq_failure.c connectors/rabbitmq/rmq_oauth2.h connectors/rabbitmq/rmq_oauth2.c connectors/rabbitmq/rmq_rotate.c \
	connectors/rabbitmq/rmq_report.c
connectors_rabbitmq_rabbitmq_la_CFLAGS = $(RMQ_CFLAGS) $(OPENSSL_CFLAGS)
connectors_rabbitmq_rabbitmq_la_LDFLAGS = $(AM_LDFLAGS) -module -avoid-version -shared \
	-export-symbols-regex '^cmi_connector$$'
connectors_rabbitmq_rabbitmq_la_LIBADD = connectors/rabbitmq/librmq-core.la $(PROTON_LIBS) $(JANSSON_LIBS) \
	$(CURL_LIBS) $(OPENSSL_LIBS) -lpthread -lm
