"""MI's own RabbitMQ (AMQP 1.0) examples, from its documentation, run as the
docs describe and checked for what the docs say happens (issue 20).

The artifacts under mi_docs/ are copied unchanged from the docs
(mi_docs/README.md says from where); the test edits only hosts and ports:
the broker's AMQP port, its management port (cmi's rabbitmq.management.url /
managementUrl, which 3.x needs for what it cannot declare over AMQP 1.0),
MI's HTTP port 8290 (cmi's here) and the backends' port 8280 (down, or a
real server the test starts).  The docs' manual set-up steps are done
through the broker's management API, as the docs do them by hand."""
import http.server
import json
import os
import re
import threading
import time
import urllib.parse

from harness import Cmi, check
from rabbitmq import NodeError, free_port, wait_for
from test_engine import Deployment
from test_publish import RMQ_CONNECTORS

MI_DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mi_docs")


class Example:
    """One or more of MI's examples deployed together in one cmi."""

    def __init__(self, node, *names, borrow=()):
        # borrow: (example, file) pairs taken from another example (the
        # connector example prints its connection only as UI values).
        self.node, self.names, self.borrow = node, names, borrow
        self.http_port, self.backend_port = free_port(), free_port()
        self.deployment = Deployment({})
        self.cmi = None

    def _edit(self, text):
        node = self.node
        text = text.replace("localhost:5672", "127.0.0.1:%d" % node.amqp_port)
        text = re.sub(r'(<parameter name="rabbitmq.server.host.name">)localhost<', r"\g<1>127.0.0.1<", text)
        text = re.sub(r'(<parameter name="rabbitmq.server.port">)5672<', r"\g<1>%d<" % node.amqp_port, text)
        text = text.replace("localhost:8290", "127.0.0.1:%d" % self.http_port)
        text = text.replace("localhost:8280", "127.0.0.1:%d" % self.backend_port)
        text = text.replace("</parameters>", '<parameter name="rabbitmq.management.url">http://127.0.0.1:%d'
                            "</parameter></parameters>" % node.mgmt_port)
        return text.replace("</rabbitmq.init>", "<managementUrl>http://127.0.0.1:%d</managementUrl></rabbitmq.init>"
                            % node.mgmt_port)

    def _names(self, what):
        return {x["name"] for x in self.node.api("GET", "/api/%s/%%2F" % what)}

    def __enter__(self):
        # The examples name their queues as MI's docs do (order-request, ...),
        # and so do cmi's samples: what an example made goes with it.
        self.before = {what: self._names(what) for what in ("queues", "exchanges")}
        d = self.deployment.__enter__()
        files = []
        for name in self.names:
            src = os.path.join(MI_DOCS, name)
            for folder, _, names in os.walk(src):
                files += [(src, os.path.relpath(os.path.join(folder, f), src)) for f in names if f.endswith(".xml")]
        files += [(os.path.join(MI_DOCS, name), rel) for name, rel in self.borrow]
        for src, rel in files:
            check(not os.path.exists(os.path.join(d, rel)), "two examples deploy %s" % rel)
            os.makedirs(os.path.join(d, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(src, rel), encoding="utf-8") as fh:
                text = fh.read()
            with open(os.path.join(d, rel), "w", encoding="utf-8") as fh:
                fh.write(self._edit(text))
        self.cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS},
                       args=("--http-port", str(self.http_port))).start()
        return self

    def __exit__(self, *exc):
        try:
            if self.cmi is not None:
                self.cmi.stop_clean()
        finally:
            self.deployment.__exit__(*exc)
            for what in ("queues", "exchanges"):
                for name in self._names(what) - self.before[what]:
                    self.node.api("DELETE", "/api/%s/%%2F/%s" % (what, urllib.parse.quote(name, safe="")))

    def post(self, path, body, content_type):
        return self.cmi.request("POST", path, body, {"Content-Type": content_type})

    def count(self, pattern):
        return len(re.findall(pattern, self.cmi.log_text()))

    def no_storm(self):
        # A refusal or a missing queue is logged once and retried on a
        # timer: never a reconnect loop.
        log = self.cmi.log_text()
        drops = len(re.findall(r"connection \d+ to \S+ down", log))
        check(drops == 0, "%d connection drops:\n%s" % (drops, log[-3000:]))


class Backend:
    """A real HTTP backend on the port the examples' sequences call (8280 in the docs)."""

    def __init__(self, port):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'{"status": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _publishmessage(ex, queue, message):
    # The connector example's request: data.json posted to /publishmessage.
    status, _, body = ex.post("/publishmessage", json.dumps({"queue": queue, "message": message}),
                              "application/json")
    check(status == 200, "publishmessage: %s %r" % (status, body))
    return json.loads(body)


CONNECTION = ("point_to_point", "local-entries/RabbitMQConnection.xml")
XML_MESSAGE = "<Message>\n    <Name>John Doe</Name>\n    <Age>27</Age>\n</Message>"


def test_connector_example(node):
    # rabbitmq-amqp-1.0-connector-example.md: POST {"queue": "TestQueue",
    # "message": "Hello World!"}: "a 'success' response ... along with the
    # messageId"; the message is in TestQueue.  The docs give the connection
    # only as UI values, the same as point-to-point's local entry.
    with Example(node, "connector_example", borrow=[CONNECTION]) as ex:
        result = _publishmessage(ex, "TestQueue", "Hello World!")
        check(result.get("success") in ("true", True) and result.get("messageId"), "result %r" % result)
        ex.cmi.wait_log(r"Published message Successfully with message ID: %s" % re.escape(result["messageId"]), 5)
        wait_for(lambda: node.depth("TestQueue") == 1, 10, "TestQueue holds the message")
        got = node.drain("TestQueue")
        check(len(got) == 1 and b"Hello World!" in got[0], "TestQueue holds %r" % got)
        ex.no_storm()


def test_inbound_endpoint_example(node):
    # rabbitmq-amqp-1.0-inbound-endpoint-example.md, published with the
    # connector example's API: the endpoint logs the message and accepts it
    # (the queue is empty after).  The log line is the docs' own:
    # {"text":"Hello World!"} (MI holds a text message as a <text> element,
    # which ${payload} reads as JSON).
    with Example(node, "inbound_endpoint_example", "connector_example", borrow=[CONNECTION]) as ex:
        ex.cmi.wait_log(r"\[rabbitmq:RabbitMQInboundEP\] connection 0: consuming from queue 'notification-queue'", 20)
        _publishmessage(ex, "notification-queue", "Hello World!")
        ex.cmi.wait_log(r"\[mediation\] \{\"text\":\"Hello World!\"\}$", 10)
        wait_for(lambda: node.depth("notification-queue") == 0, 10, "notification-queue empty")
        ex.no_storm()


def test_point_to_point(node):
    # rabbitmq-amqp-1.0-point-to-point.md: the XML posted to /publishmessage
    # goes to queue1 and the inbound endpoint logs it and accepts it.
    with Example(node, "point_to_point") as ex:
        ex.cmi.wait_log(r"\[rabbitmq:RabbitMQInboundEP\] connection 0: consuming from queue 'queue1'", 20)
        status, _, body = ex.post("/publishmessage", XML_MESSAGE, "application/xml")
        check(status == 200 and json.loads(body).get("success") in ("true", True), "publish: %s %r" % (status, body))
        ex.cmi.wait_log(r"<Name>John Doe</Name>", 10)
        wait_for(lambda: node.depth("queue1") == 0, 10, "queue1 empty")
        ex.no_storm()


def test_pub_sub(node):
    # rabbitmq-amqp-1.0-pub-sub.md: one message to the fanout exchange is
    # "broadcast to multiple ... Inbound Endpoints, each consuming from a
    # separate queue bound to the same exchange".
    with Example(node, "pub_sub") as ex:
        for ep, q in (("RabbitMQSubscriber1", "queue2"), ("RabbitMQSubscriber2", "queue3")):
            ex.cmi.wait_log(r"\[rabbitmq:%s\] connection 0: consuming from queue '%s'" % (ep, q), 20)
        status, _, body = ex.post("/publishmessage", XML_MESSAGE, "application/xml")
        check(status == 200, "publish: %s %r\n%s" % (status, body, ex.cmi.log_text()[-3000:]))
        wait_for(lambda: ex.count(r"<Name>John Doe</Name>") == 2, 10, "both subscribers log the message")
        for q in ("queue2", "queue3"):
            wait_for(lambda: node.depth(q) == 0, 10, "%s empty" % q)
        ex.no_storm()


ORDER = '{\n    "orderId": "1242",\n    "orderQty": 43,\n    "orderDate": "2020/07/22"\n    }'


def _request_response(node, example, then=None, server_first=False):
    with Example(node, example) as ex:
        if server_first:
            # This version's request queue is declared by the RPC server
            # only (sendRpc does not): the docs deploy, then send.  On 3.x
            # a request sent before the queue is there is accepted and
            # dropped as unroutable (README, "RabbitMQ 3.10 and 4.0").
            ex.cmi.wait_log(r"\[rabbitmq:RabbitMQRpcServerEP\] connection 0: consuming from queue 'order-request'", 20)
        status, _, body = ex.post("/orderrequest", ORDER, "application/json")
        check(status == 200 and json.loads(body) == {"message": "Order created"}, "reply: %s %r" % (status, body))
        ex.no_storm()
        if then is not None:
            then(ex)


def test_request_response(node):
    # rabbitmq-amqp-1.0-request-response.md: the order goes out on
    # order-request, the RPC server calls the orders backend and publishes
    # its answer to order-reply, which comes back as the HTTP reply.
    _request_response(node, "request_response")


def test_request_response_earlier_version(node):
    # The page's earlier version sets replyToQueueAutoDeclare false and
    # nothing declares order-reply: MI's code declares the reply queue
    # whatever that says, and so does cmi (said once at load).
    try:
        node.api("DELETE", "/api/queues/%2F/order-reply")  # none yet: the test starts without it
    except NodeError:
        pass
    def declared(ex):
        check(ex.count(r"replyToQueueAutoDeclare is false, but MI declares the reply queue") == 1,
              "the MI behaviour is said once")
        check(node.queue("order-reply")["durable"], "order-reply declared")
    _request_response(node, "request_response_3c1300e", declared, server_first=True)


def test_requeue_with_errors(node):
    # rabbitmq-amqp-1.0-requeue-msgs-with-errors.md: with the backend down,
    # "the message is requeued and redelivered until the endpoint becomes
    # available", rabbitmq.message.requeue.delay (6000 ms) apart: never a
    # redelivery storm.  Once the backend is up it is processed.
    with Example(node, "requeue_with_errors") as ex:
        ex.cmi.wait_log(r"\[rabbitmq:RabbitMQStudentRegEP\] connection 0: consuming from queue 'student-registration'",
                        20)
        node.send("/amq/queue/student-registration", [json.dumps({"student": "John Doe", "course": "WSO2"})])
        wait_for(lambda: ex.count(r"Could not process the student registration") >= 3, 20, "3 deliveries")
        stamps = [time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%S")) + float(ms) / 1000 for t, ms in re.findall(
            r"^(\S+?)\.(\d+)Z .*Could not process the student registration", ex.cmi.log_text(), re.M)]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        print("      deliveries %d, gaps %s s" % (len(stamps), ["%.1f" % g for g in gaps]), flush=True)
        check(all(g >= 5.5 for g in gaps), "redelivered sooner than the 6 s requeue delay: %r" % gaps)
        check(len(stamps) <= 4, "%d deliveries in about 12 s" % len(stamps))
        backend = Backend(ex.backend_port)
        try:
            ex.cmi.wait_log(r"Student registration processed successfully\.", 10)
            wait_for(lambda: node.depth("student-registration") == 0, 10, "the queue empty")
        finally:
            backend.close()
        lines = len(ex.cmi.log_text().splitlines())
        check(lines < 400, "%d log lines" % lines)
        ex.no_storm()


def test_move_to_dlq(node):
    # rabbitmq-amqp-1.0-move-msgs-to-dlq.md: the queues and exchanges made
    # by hand first (orders a quorum queue dead-lettering to
    # orders-error-exchange); with the backend down "the failed message has
    # been moved to the orders-error queue via the dead letter exchange".
    try:
        for x in ("orders-exchange", "orders-error-exchange"):
            node.api("PUT", "/api/exchanges/%2F/" + x, {"type": "direct", "durable": True})
        node.api("PUT", "/api/queues/%2F/orders-error", {"durable": True})
        node.bind("orders-error-exchange", "orders-error", "orders-error")
        node.api("PUT", "/api/queues/%2F/orders", {"durable": True, "arguments": {
            "x-queue-type": "quorum", "x-dead-letter-exchange": "orders-error-exchange",
            "x-dead-letter-routing-key": "orders-error"}})
        node.bind("orders-exchange", "orders", "orders")
        with Example(node, "move_to_dlq") as ex:
            ex.cmi.wait_log(r"\[rabbitmq:RabbitMQOrdersEP\] connection 0: consuming from queue 'orders'", 20)
            node.send("/exchange/orders-exchange/orders", [json.dumps({"orderId": "A-1"})])
            ex.cmi.wait_log(r"Could not process the order\. Moving to dead letter queue\.", 10)
            wait_for(lambda: node.depth("orders-error") == 1, 10, "the order in orders-error")
            check(node.depth("orders") == 0, "orders empty")
            check(json.loads(node.drain("orders-error")[0]) == {"orderId": "A-1"}, "the dead-lettered order")
            ex.no_storm()
    finally:
        for what, name in (("queues", "orders"), ("queues", "orders-error"), ("exchanges", "orders-exchange"),
                           ("exchanges", "orders-error-exchange")):
            node.api("DELETE", "/api/%s/%%2F/%s" % (what, name))


PLACE_ORDER = ('<m:placeOrder xmlns:m="http://services.samples"><m:order><m:price>100</m:price>'
               '<m:quantity>20</m:quantity><m:symbol>RMQ</m:symbol></m:order></m:placeOrder>')


def test_legacy_rabbitmq_protocol(node):
    # inbound-endpoint-rabbitmq-protocol.md (older MI's protocol="rabbitmq"
    # endpoint): its Java client declares the durable queue `queue` and the
    # direct exchange `exchange` and publishes to the exchange with the
    # routing key `queue`; the endpoint (bound with its queue's name, as
    # older MI did) logs the message.  onError="fault" is MI's default.
    with Example(node, "legacy_rabbitmq_protocol") as ex:
        ex.cmi.wait_log(r"\[rabbitmq:test\] connection 0: consuming from queue 'queue'", 20)
        node.api("PUT", "/api/queues/%2F/queue", {"durable": True})  # the client's queueDeclare: equivalent
        node.api("PUT", "/api/exchanges/%2F/exchange", {"type": "direct", "durable": True})
        node.bind("exchange", "queue", "route")
        node.send("/exchange/exchange/queue", [PLACE_ORDER], content_type="application/xml")
        ex.cmi.wait_log(re.escape(PLACE_ORDER[:40]), 10)
        wait_for(lambda: node.depth("queue") == 0, 10, "queue empty")
        check(node.queue("queue")["arguments"].get("x-queue-type", "classic") == "classic", "a classic queue")
        ex.no_storm()
