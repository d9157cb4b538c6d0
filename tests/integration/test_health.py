"""The internal port against a real broker (issue 28): readiness follows
RabbitMQ (the broker stopped: /healthz answers 503 within a second, with
the connection config and the inbound endpoint as reasons; back to 200
when it returns), and the metrics count what the test sent: MI's API and
inbound endpoint families and cmi_rabbitmq_* gauges."""
import json
import time

from harness import check
from rabbitmq import wait_for
from test_failover import entry
from test_inbound import deployment, start
from test_publish import unique
from test_internal import parse, value


def publish_api(q):
    return ('<api xmlns="http://ws.apache.org/ns/synapse" name="Pub" context="/pub"><resource methods="POST" '
            'uri-template="/"><inSequence><rabbitmq.publishMessage configKey="RMQ"><queue>%s</queue>'
            '<queueType>CLASSIC</queueType><publishTimeout>2000</publishTimeout></rabbitmq.publishMessage>'
            '<respond/></inSequence></resource></api>' % q)


def health(cmi):
    status, _, body = cmi.internal("/healthz")
    return status, json.loads(body)


def metrics(cmi):
    status, _, body = cmi.internal("/metric-service/metrics")
    check(status == 200, "metrics: %s" % status)
    return parse(body.decode())[0]


def test_readiness_follows_the_broker_and_metrics_count_messages(node):
    q = unique("health")
    more = {"local-entries/rmq.xml": entry("127.0.0.1:%d" % node.amqp_port, "http://127.0.0.1:%d" % node.mgmt_port),
            "api/pub.xml": publish_api(q)}
    with deployment(node, q, "<rabbitmq.accept/>", more=more) as d:
        cmi = start(d)
        try:
            wait_for(lambda: health(cmi)[0] == 200, 30, "ready once connected and consuming")
            c = cmi.connection()
            for n in range(20):
                status, _, _ = cmi.request("POST", "/pub", json.dumps({"n": n}).encode(),
                                           {"Content-Type": "application/json"}, conn=c)
                check(status == 200, "publish %d: %s" % (n, status))
            c.close()
            ib = {"service_name": "In", "service_type": "inbound-endpoint"}
            wait_for(lambda: value(metrics(cmi), "wso2_integration_inbound_endpoint_request_count_total", **ib) == 20,
                     20, "the inbound endpoint counted the 20 messages")
            s = metrics(cmi)
            pub = {"service_name": "Pub", "service_type": "api",
                   "invocation_url": "http://127.0.0.1:%d/pub" % cmi.port}
            check(value(s, "wso2_integration_api_request_count_total", **pub) == 20
                  and value(s, "wso2_integration_api_request_count_error_total", **pub) == 0, "the API's counts")
            check(value(s, "wso2_integration_inbound_endpoint_request_count_error_total", **ib) == 0, "no errors")
            # (4.0.5 may end a session of two connections declaring one queue at once: the pool's
            # connection comes back at once, so its count is waited for; README, "RabbitMQ 3.10 and 4.0")
            wait_for(lambda: value(metrics(cmi), "cmi_rabbitmq_connections_up", connection="RMQ") == 2, 10,
                     "the pool's two connections up")
            s = metrics(cmi)
            check(value(s, "cmi_rabbitmq_connections", connection="RMQ") == 2, "poolSize")
            check(value(s, "cmi_rabbitmq_connections_up", inbound_endpoint="In") == 1
                  and value(s, "cmi_rabbitmq_receivers_consuming", inbound_endpoint="In") == 1
                  and value(s, "cmi_ready") == 1, "the endpoint's connection and receiver")
            check(value(s, "cmi_rabbitmq_published_total", connection="RMQ", outcome="accepted") == 20
                  and value(s, "cmi_rabbitmq_published_total", connection="RMQ", outcome="rejected") == 0
                  and value(s, "cmi_rabbitmq_confirm_seconds_count", connection="RMQ") == 20
                  and value(s, "cmi_rabbitmq_confirm_seconds_bucket", connection="RMQ", le="+Inf") == 20
                  and 0 < value(s, "cmi_rabbitmq_confirm_seconds_sum", connection="RMQ") < 20,
                  "20 confirmed publishes: %r" % {k: v for k, v in s.items() if "published" in k[0] or
                                                  "confirm" in k[0]})
            wait_for(lambda: value(metrics(cmi), "cmi_rabbitmq_deliveries_settled_total", inbound_endpoint="In",
                                   decision="accept") == 20, 10, "20 deliveries accepted")
            reconnects = value(s, "cmi_rabbitmq_reconnects_total", connection="RMQ")
            s = metrics(cmi)
            check(value(s, "cmi_rabbitmq_publishes_in_flight", connection="RMQ") == 0
                  and value(s, "cmi_rabbitmq_deliveries_in_mediation", inbound_endpoint="In") == 0
                  and value(s, "cmi_rabbitmq_redelivered_total", inbound_endpoint="In") == 0,
                  "nothing in flight or in mediation, nothing redelivered")
            # The broker stops: not ready within a second, both as reasons.
            t0 = time.monotonic()
            node.stop_app()
            stopped = time.monotonic()
            wait_for(lambda: health(cmi)[0] == 503, 5, "not ready once the broker is down")
            took = time.monotonic() - stopped
            status, doc = health(cmi)
            print("      not ready %.2fs after stop_app returned (%.2fs after it began)"
                  % (took, time.monotonic() - t0), flush=True)
            check(took <= 1.0, "not ready %.2fs after the broker stopped" % took)
            reasons = doc["reasons"]
            check(any(r.startswith("connection RMQ: no connection to RabbitMQ is up (127.0.0.1:%d" % node.amqp_port)
                      for r in reasons) and any(r.startswith("inbound endpoint In: no connection to RabbitMQ is up")
                                                for r in reasons), "reasons: %r" % reasons)
            s = metrics(cmi)
            check(value(s, "cmi_rabbitmq_connections_up", connection="RMQ") == 0 and value(s, "cmi_ready") == 0,
                  "gauges with the broker down")
            # A publish with no broker: answered as failed after publishTimeout (2 s), counted as timed out.
            status, _, _ = cmi.request("POST", "/pub", b'{"n": -1}', {"Content-Type": "application/json"})
            check(status >= 500, "a publish with the broker down: %s" % status)
            wait_for(lambda: value(metrics(cmi), "cmi_rabbitmq_published_total", connection="RMQ",
                                   outcome="timed_out") == 1, 5, "the publish with no broker counted as timed out")
            node.start_app()
            back = time.monotonic()
            wait_for(lambda: health(cmi)[0] == 200, 30, "ready again once the broker is back")
            print("      ready again %.2fs after the broker was back" % (time.monotonic() - back), flush=True)
            status, _, _ = cmi.request("POST", "/pub", b'{"n": 20}', {"Content-Type": "application/json"})
            check(status == 200, "publish after the return: %s" % status)
            s = metrics(cmi)
            check(value(s, "cmi_rabbitmq_reconnects_total", connection="RMQ") >= reconnects + 1
                  and value(s, "cmi_rabbitmq_published_total", connection="RMQ", outcome="accepted") == 21
                  and value(s, "cmi_rabbitmq_published_total", connection="RMQ", outcome="failed") == 0,
                  "reconnects counted, the 21st publish: %r" % value(s, "cmi_rabbitmq_reconnects_total",
                                                                    connection="RMQ"))
            wait_for(lambda: value(metrics(cmi), "wso2_integration_inbound_endpoint_request_count_total", **ib) == 21,
                     20, "the message after the return consumed")
        finally:
            cmi.stop_clean()
