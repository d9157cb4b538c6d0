"""rabbitmq.publishMessage against a real RabbitMQ 3.10 (issue 6): what
arrives is checked by clients that are not cmi (an AMQP 1.0 receiver and
the management API, which reads like an AMQP 0.9.1 client)."""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid

from harness import Cmi, TestFailure, check
from proxy import Proxy
from rabbitmq import wait_for
from test_engine import Deployment

RMQ_CONNECTORS = os.environ.get("CMI_RMQ_CONNECTORS", "")
NS = 'xmlns="http://ws.apache.org/ns/synapse"'


def connection(node, key="RMQ", extra="", servers=None):
    return ('<localEntry %s key="%s"><rabbitmq.init><connectionType>RABBITMQ</connectionType><name>%s</name>'
            '<serverUrls>%s</serverUrls><username>guest</username><password>guest</password>'
            '<managementUrl>http://127.0.0.1:%d</managementUrl>%s</rabbitmq.init></localEntry>'
            % (NS, key, key, servers or "127.0.0.1:%d" % node.amqp_port, node.mgmt_port, extra))


def api(resources):
    return '<api %s name="Pub" context="/pub">%s</api>' % (NS, resources)


def resource(template, publish, after='<payloadFactory media-type="json"><format>${vars.r.payload}</format>'
                                      '</payloadFactory><respond/>'):
    return ('<resource methods="POST" uri-template="%s"><inSequence>'
            '<rabbitmq.publishMessage configKey="RMQ">%s<responseVariable>r</responseVariable>'
            '</rabbitmq.publishMessage>%s</inSequence></resource>' % (template, publish, after))


def start(deploy_dir, workers=2):
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    cmi = Cmi(deploy_dir, workers=workers, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
    cmi.wait_log(r"\[rabbitmq:RMQ\] connection \d up: ", 20)
    return cmi


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def losses(lines, node):
    """The log's "connection N to ... down" lines, but for those of RabbitMQ
    4.0.5's concurrent-declaration bug (two connections of the pool
    declaring one queue at once: the broker ends a session with an internal
    error; cmi reconnects and sends again; see README)."""
    downs = [ln for ln in lines if re.search(r"connection \d to .* down", ln)]
    return [ln for ln in downs if not (node.broker.is4 and "amqp:internal-error" in ln and "badmatch" in ln)]


def concurrently(fn, args_list, timeout):
    """fn(*args) for each args at once, each on a thread of its own."""
    threads = [threading.Thread(target=fn, args=args) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


def post(cmi, path, body, headers=None, conn=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    status, hdrs, data = cmi.request("POST", path, json.dumps(body).encode(), h, conn=conn)
    return status, data


# ---- what arrives ------------------------------------------------------------


def test_classic_queue_body_properties_and_headers(node):
    q = unique("classic")
    files = {"local-entries/rmq.xml": connection(node),
             "api/pub.xml": api(resource("/q/{q}", "<queue>{${params.pathParams.q}}</queue>"
                                         '<headers>[["x-source","cmi"],{"Authorization":"named-so-sent"}]</headers>'))}
    with Deployment(files) as d:
        cmi = start(d)
        try:
            body = {"order": 42, "note": "caf\u00e9"}
            raw = json.dumps(body).encode()
            status, hdrs, data = cmi.request("POST", "/pub/q/" + q, raw,
                                             {"Content-Type": "application/json; charset=UTF-8",
                                              "X-Request-Id": "req-1", "Authorization": "Bearer secret",
                                              "Cookie": "a=b"})
            check(status == 200, "publish: %s %r" % (status, data))
            result = json.loads(data)
            check(result["success"] == "true" and result["messageId"].startswith("urn:uuid:"), "result %r" % result)
            mid = result["messageId"]
            # An AMQP 1.0 client of its own sees the bytes, ids and properties.
            (m,) = node.receive("/amq/queue/" + q)
            got = bytes(m.body) if not isinstance(m.body, (bytes, bytearray)) else bytes(m.body)
            check(got == raw, "AMQP 1.0 body %r, expected %r" % (got, raw))
            check(m.id == mid and m.correlation_id == mid, "ids %r %r" % (m.id, m.correlation_id))
            check(m.content_type == "application/json" and m.content_encoding == "UTF-8",
                  "content type %r/%r" % (m.content_type, m.content_encoding))
            check(m.durable, "not durable")
            props = m.properties or {}
            check(props.get("X-Request-Id") == "req-1" and props.get("x-source") == "cmi",
                  "application-properties %r" % props)
            check(props.get("Authorization") == "named-so-sent", "a header named in <headers> is sent: %r" % props)
            check("Cookie" not in props and "Host" not in props and "Content-Length" not in props,
                  "filtered headers were forwarded: %r" % props)
            # An AMQP 0.9.1 reader (the management API) gets the raw bytes.
            status, data = post(cmi, "/pub/q/" + q, body)
            check(status == 200, "second publish: %s %r" % (status, data))
            (g,) = node.get(q)
            check(base64.b64decode(g["payload"]) == raw, "0.9.1 payload %r" % g["payload"])
            p = g["properties"]
            check(p.get("content_type") == "application/json" and p.get("delivery_mode") == 2 and
                  p.get("message_id") == json.loads(data)["messageId"], "0.9.1 properties %r" % p)
            # Declared by attaching to /queue/NAME: durable, as everything cmi declares.
            info = node.queue(q)
            check(info["durable"] and not info["auto_delete"], "queue %r" % {k: info[k] for k in ("durable",
                                                                                            "auto_delete")})
        finally:
            cmi.stop_clean()


def test_text_body_from_the_mi_example(node):
    # The shape of MI's connector example: the queue and a TEXT body from
    # the payload, confirms, a filter on the result, payloadFactory, respond.
    q = unique("mi")
    publish = ("<queue>{${payload.queue}}</queue><requestBodyType>TEXT</requestBodyType>"
               "<requestBodyText>${payload.message}</requestBodyText><publisherConfirms>true</publisherConfirms>"
               "<overwriteBody>false</overwriteBody>")
    after = ('<filter xpath="${vars.r.payload.success == \'true\'}"><then><payloadFactory media-type="json">'
             '<format>{"sent": true, "id": "${vars.r.payload.messageId}"}</format></payloadFactory></then>'
             '<else><payloadFactory media-type="json"><format>{"sent": false}</format></payloadFactory></else>'
             '</filter><respond/>')
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(resource("/mi", publish, after))}) as d:
        cmi = start(d)
        try:
            status, data = post(cmi, "/pub/mi", {"queue": q, "message": "hello from MI"})
            check(status == 200 and json.loads(data)["sent"] is True, "MI example: %s %r" % (status, data))
            (g,) = node.get(q)
            check(base64.b64decode(g["payload"]) == b"hello from MI", "payload %r" % g)
            check(g["properties"].get("content_type") == "text/plain", "properties %r" % g["properties"])
        finally:
            cmi.stop_clean()


def test_quorum_queue_declared_through_the_management_api(node):
    q = unique("quorum")
    publish = "<queue>%s</queue><queueType>QUORUM</queueType><deliveryLimit>5</deliveryLimit>" % q
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(resource("/qq", publish))}) as d:
        cmi = start(d)
        try:
            # A static target: declared when the connections come up.
            info = wait_for(lambda: _queue_or_none(node, q), 10, "quorum queue declared at start-up")
            check(info["type"] == "quorum" and info["arguments"].get("x-delivery-limit") == 5,
                  "queue %r" % {k: info.get(k) for k in ("type", "arguments")})
            for i in range(3):
                status, data = post(cmi, "/pub/qq", {"i": i})
                check(status == 200 and json.loads(data)["success"] == "true", "publish %d: %r" % (i, data))
            # A quorum queue's count is reported a moment after the commit.
            wait_for(lambda: node.depth(q) == 3, 5, "3 messages in the quorum queue (has %r)" % node.depth(q))
        finally:
            cmi.stop_clean()


def _queue_or_none(node, q):
    try:
        return node.queue(q)
    except Exception:
        return None


def test_exchanges_direct_topic_fanout(node):
    d_x, t_x, f_x = unique("direct"), unique("topic"), unique("fanout")
    qd, qt, qf1, qf2 = unique("qd"), unique("qt"), unique("qf1"), unique("qf2")
    res = (
        # exchange + queue: declared, bound, published to the queue (as MI)
        resource("/direct", "<exchange>%s</exchange><exchangeType>DIRECT</exchangeType><queue>%s</queue>"
                            "<queueType>CLASSIC</queueType><routingKey>rk</routingKey>" % (d_x, qd)) +
        # exchange only: routed by the broker
        resource("/topic/{key}", "<exchange>%s</exchange><exchangeType>TOPIC</exchangeType>"
                                 "<routingKey>{${params.pathParams.key}}</routingKey>" % t_x) +
        resource("/fanout", "<exchange>%s</exchange><exchangeType>FANOUT</exchangeType>" % f_x))
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            status, data = post(cmi, "/pub/direct", {"to": "direct"})
            check(status == 200, "direct: %s %r" % (status, data))
            check(node.depth(qd) == 1, "direct queue depth %r" % node.depth(qd))
            bindings = node.api("GET", "/api/exchanges/%%2F/%s/bindings/source" % d_x)
            check(any(b["destination"] == qd and b["routing_key"] == "rk" for b in bindings), "binding %r" % bindings)
            # The topic exchange exists once cmi declared it (first publish,
            # which nothing routes yet).  An unroutable message is accepted
            # and dropped by RabbitMQ 3.x, `released` by 4.x: not a success.
            def unroutable(status, data, what):
                res = json.loads(data) if status == 200 else {}
                if node.broker.is4:
                    check(status == 200 and res.get("success") == "false" and res["error"]["code"] == "701203"
                          and "released" in res["error"]["detail"], "%s: %s %r" % (what, status, data))
                else:
                    check(status == 200 and res.get("success") == "true", "%s: %s %r" % (what, status, data))
            status, data = post(cmi, "/pub/topic/orders.eu", {"n": 0})
            unroutable(status, data, "topic, no binding yet")
            node.declare_queue(qt)
            node.bind(t_x, qt, "orders.*")
            for key, routed in (("orders.eu", True), ("orders.us", True), ("invoices.eu", False)):
                status, data = post(cmi, "/pub/topic/" + key, {"key": key})
                if routed:
                    check(status == 200 and json.loads(data)["success"] == "true",
                          "topic %s: %s %r" % (key, status, data))
                else:
                    unroutable(status, data, "topic %s" % key)
            check(node.depth(qt) == 2, "topic queue got %r, expected 2 of 3" % node.depth(qt))
            status, data = post(cmi, "/pub/fanout", {"n": 0})
            node.declare_queue(qf1)
            node.declare_queue(qf2)
            node.bind(f_x, qf1)
            node.bind(f_x, qf2)
            status, data = post(cmi, "/pub/fanout", {"n": 1})
            check(status == 200, "fanout: %s %r" % (status, data))
            check(node.depth(qf1) == 1 and node.depth(qf2) == 1, "fanout copies %r %r" % (node.depth(qf1),
                                                                                          node.depth(qf2)))
            x = node.api("GET", "/api/exchanges/%%2F/%s" % t_x)
            check(x["type"] == "topic" and x["durable"], "exchange %r" % x)
        finally:
            cmi.stop_clean()


# ---- failures ------------------------------------------------------------------


def test_full_reject_publish_queue(node):
    # A publish into a full reject-publish queue: RabbitMQ 4.0 answers
    # `rejected`, which cmi gives as a result (success "false", 701203) at
    # once.  RabbitMQ 3.10 drops the connection instead: cmi answers that
    # publish with an error within publishTimeout, other targets keep
    # working, and no reconnect storm follows.
    full, other = unique("full"), unique("other")
    res = (resource("/full", "<queue>%s</queue><queueType>CLASSIC</queueType><queueArguments>x-max-length=1</queueArguments>"
                             "<queueOverflowStrategy>REJECT_PUBLISH</queueOverflowStrategy>"
                             "<publishTimeout>8000</publishTimeout>" % full) +
           resource("/other", "<queue>%s</queue><queueType>CLASSIC</queueType>" % other))
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            status, data = post(cmi, "/pub/full", {"n": 1})
            check(status == 200 and json.loads(data)["success"] == "true", "first publish: %s %r" % (status, data))
            mark = cmi.log_mark()
            t0 = time.monotonic()
            status, data = post(cmi, "/pub/full", {"n": 2})
            took = time.monotonic() - t0
            if node.broker.is4:
                res = json.loads(data) if status == 200 else {}
                check(status == 200 and res.get("success") == "false" and res["error"]["code"] == "701203"
                      and "rejected" in res["error"]["detail"] and took < 2,
                      "publish into the full queue: %s %r after %.1fs" % (status, data, took))
            else:
                # Each copy sent kills its connection a few seconds later; after
                # three the publish fails (701203), or publishTimeout comes first
                # (701204): an error, in time, either way.
                check(status in (502, 504) and took < 8.8, "publish into the full queue: %s %r after %.1fs"
                      % (status, data, took))
                err = json.loads(data)["error"]
                check(err["code"] in (701203, 701204), "error %r" % err)
            status, data = post(cmi, "/pub/other", {"n": 3})
            check(status == 200 and json.loads(data)["success"] == "true", "other target: %s %r" % (status, data))
            time.sleep(2.0)  # a storm would show as a stream of reconnects now
            lines = cmi.log_text().splitlines()[mark:]
            if node.broker.is4:
                # 4.0 answers the message alone: no connection is lost for it.
                others = losses(lines, node)
                check(not others, "connection losses after a rejected message:\n%s" % "\n".join(others))
            else:
                downs = [ln for ln in lines if re.search(r"connection \d to .* down", ln)]
                check(len(downs) <= 4, "%d connection losses after one poison message" % len(downs))
            check(node.depth(full) == 1, "the full queue holds %r" % node.depth(full))
        finally:
            cmi.stop_clean()


def test_queue_existing_with_other_arguments(node):
    # A queue that exists with other arguments (here: transient, cmi
    # declares durable): RabbitMQ 3.10 answers the attach that declares it
    # by ending the attach's session, 4.0 answers the declaration over
    # /management with 409.  On both cmi answers the publish at once with
    # 701206 / 502 and the broker's reason; other targets of the config keep
    # working and no connection is lost (each sender has a session of its
    # own).  On 3.10 cmi stops attaching that address for a while.
    bad, good = unique("transient"), unique("good")
    node.api("PUT", "/api/queues/%2F/" + bad, {"durable": False, "arguments": {}})
    res = (resource("/bad", "<queue>%s</queue><queueType>CLASSIC</queueType>" % bad)
           + resource("/good", "<queue>%s</queue><queueType>CLASSIC</queueType>" % good))
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            t0 = time.monotonic()
            status, data = post(cmi, "/pub/bad", {"n": 1})
            took = time.monotonic() - t0
            check(status == 502 and took < 3, "publish to the conflicting queue: %s %r after %.1fs"
                  % (status, data, took))
            err = json.loads(data)["error"]
            check(err["code"] == 701206 and "inequivalent arg 'durable'" in err["detail"] and bad in err["detail"],
                  "error %r" % err)
            if node.broker.is4:
                check("/management answered 409" in err["detail"], "error %r" % err)
            else:
                check("PRECONDITION_FAILED" in err["detail"], "error %r" % err)
                cmi.wait_log(r"the broker ended the session of the sender to /queue/%s: .*PRECONDITION_FAILED.*"
                             r"publishes to it fail for the next 1000 ms" % bad, 5)
            for i in range(20):
                status, data = post(cmi, "/pub/good", {"n": i})
                check(status == 200, "publish %d to the other queue: %s %r" % (i, status, data))
                status, data = post(cmi, "/pub/bad", {"n": i})
                check(status == 502 and json.loads(data)["error"]["code"] == 701206,
                      "publish %d to the conflicting queue: %s %r" % (i, status, data))
            if not node.broker.is4:
                # Held, then tried again: each refusal holds it twice as long.
                def tried_again():
                    status, data = post(cmi, "/pub/bad", {"n": "again"})
                    check(status == 502, "after the hold: %s %r" % (status, data))
                    return re.search(r"sender to /queue/%s: .*for the next 2000 ms" % bad, cmi.log_text())
                wait_for(tried_again, 5, "a second refusal, held for 2 s")
            downs = losses(cmi.log_text().splitlines(), node)
            check(not downs, "connections lost:\n%s" % "\n".join(downs))
            check(node.depth(good) == 20, "the other queue holds %r" % node.depth(good))
        finally:
            cmi.stop_clean()


def test_no_broker_fails_with_701201_and_engine_serves(node):
    port = _closed_port()
    res = (resource("/x", "<queue>nowhere</queue><publishTimeout>1500</publishTimeout>") +
           '<resource methods="GET" uri-template="/ping"><inSequence><payloadFactory media-type="text">'
           '<format>pong</format></payloadFactory><respond/></inSequence></resource>')
    files = {"local-entries/rmq.xml": connection(node, servers="127.0.0.1:%d" % port,
                                                 extra="<connectionEstablishRetryCount>1"
                                                       "</connectionEstablishRetryCount>"),
             "api/pub.xml": api(res)}
    with Deployment(files) as d:
        check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set")
        cmi = Cmi(d, workers=1, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            status, _, body = cmi.request("GET", "/pub/ping")
            check(status == 200 and body == b"pong", "cmi serves without a broker")
            t0 = time.monotonic()
            status, data = post(cmi, "/pub/x", {"n": 1})
            took = time.monotonic() - t0
            check(status == 503 and json.loads(data)["error"]["code"] == 701201, "no broker: %s %r" % (status, data))
            check(1.3 < took < 4.0, "answered after %.2fs, publishTimeout is 1.5s" % took)
            cmi.wait_log(r"no connection to 127\.0\.0\.1:%d after \d+ attempt" % port, 10)
        finally:
            cmi.stop_clean()


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class StallingProxy:
    """A TCP proxy to the broker that can stop passing the broker's bytes:
    the connection stays open, outcomes never arrive."""

    def __init__(self, port):
        self.target = port
        self.stalled = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [c, b]
            threading.Thread(target=self._pipe, args=(c, b, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(b, c, True), daemon=True).start()

    def _pipe(self, src, dst, from_broker):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_broker and self.stalled.is_set():
                    continue  # swallowed: the client hears nothing more
                dst.sendall(data)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def test_outcome_timeout_is_701204(node):
    proxy = StallingProxy(node.amqp_port)
    q = unique("stall")
    files = {"local-entries/rmq.xml": connection(node, servers="127.0.0.1:%d" % proxy.port,
                                                 extra="<connectionPoolSize>1</connectionPoolSize>"),
             "api/pub.xml": api(resource("/s", "<queue>%s</queue><publishTimeout>1200</publishTimeout>" % q))}
    try:
        with Deployment(files) as d:
            cmi = start(d, workers=1)
            try:
                status, data = post(cmi, "/pub/s", {"n": 1})
                check(status == 200, "before the stall: %s %r" % (status, data))
                proxy.stalled.set()
                t0 = time.monotonic()
                status, data = post(cmi, "/pub/s", {"n": 2})
                took = time.monotonic() - t0
                check(status == 504 and json.loads(data)["error"]["code"] == 701204,
                      "no outcome: %s %r" % (status, data))
                check(1.0 < took < 3.5, "answered after %.2fs, publishTimeout is 1.2s" % took)
            finally:
                cmi.stop_clean()
    finally:
        proxy.close()


# ---- load -------------------------------------------------------------------------


def test_thousand_concurrent_publishes_all_confirmed_and_present(node):
    q = unique("load")
    with Deployment({"local-entries/rmq.xml": connection(node),
                     "api/pub.xml": api(resource("/load", "<queue>%s</queue><queueType>CLASSIC</queueType>" % q))}) as d:
        cmi = start(d)
        try:
            results, errors = [], []
            lock = threading.Lock()

            def client(n):
                conn = cmi.connection()
                try:
                    for i in range(n):
                        status, data = post(cmi, "/pub/load", {"i": i}, conn=conn)
                        with lock:
                            if status == 200 and json.loads(data)["success"] == "true":
                                results.append(json.loads(data)["messageId"])
                            else:
                                errors.append((status, data))
                finally:
                    conn.close()

            t0 = time.monotonic()
            concurrently(client, [(25,)] * 40, 120)
            took = time.monotonic() - t0
            check(not errors, "%d publishes failed, first %r" % (len(errors), errors[:1]))
            check(len(results) == 1000 and len(set(results)) == 1000, "%d confirmed, %d distinct ids"
                  % (len(results), len(set(results))))
            depth = node.depth(q)
            check(depth == 1000, "the queue holds %r of 1000 confirmed messages" % depth)
            print("      1000 publishes from 40 clients confirmed in %.2fs (%.0f/s), all 1000 in the queue"
                  % (took, 1000 / took), flush=True)
        finally:
            cmi.stop_clean()


def test_one_declaration_of_a_name_at_a_time(node):
    # Issue 19: declarations are cluster-wide, so the pool makes one of a
    # name at a time and its other connections wait for its answer.  Every
    # connection of a pool of four publishing first to the same new queue
    # at once used to declare it four times at once, which RabbitMQ 4.0.5
    # answers by ending sessions (an internal error in its
    # rabbit_amqp_management).  Now: every publish succeeds at once, no
    # session ends, nothing is lost or doubled.
    names = [unique("first") for _ in range(12)]
    # x-max-priority: declared through the management API on 3.10 too.
    res = resource("/first", "<queue>{${payload.queue}}</queue><queueType>CLASSIC</queueType><maxPriority>5</maxPriority>")
    with Deployment({"local-entries/rmq.xml": connection(node, extra="<connectionPoolSize>4</connectionPoolSize>"),
                     "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            wait_for(lambda: len(re.findall(r"\[rabbitmq:RMQ\] connection \d up: ", cmi.log_text())) == 4, 20,
                     "four connections up")
            errors, lock = [], threading.Lock()

            def client(name, i):
                status, data = post(cmi, "/pub/first", {"queue": name, "i": i})
                if status != 200 or json.loads(data)["success"] != "true":
                    with lock:
                        errors.append((name, status, data))

            t0 = time.monotonic()
            for name in names:
                concurrently(client, [(name, i) for i in range(8)], 60)
            took = time.monotonic() - t0
            check(not errors, "%d publishes failed, first %r" % (len(errors), errors[:1]))
            text = cmi.log_text()
            check("ended the session" not in text and " down" not in text,
                  "a session or a connection ended: %s" % "\n".join(
                      ln for ln in text.splitlines() if "ended the session" in ln or " down" in ln)[:2000])
            for name in names:
                got = sorted(json.loads(b)["i"] for b in node.drain(name))
                check(got == list(range(8)), "%s holds %r, expected each of 8 publishes once" % (name, got))
            print("      12 new queues, 8 first publishes to each at once over 4 connections: all confirmed in "
                  "%.2fs, no session ended" % took, flush=True)
        finally:
            cmi.stop_clean()


def test_a_followed_declaration_whose_connection_drops(node):
    # Issue 19: the connection whose declaration others follow drops before
    # the answer: one of them declares itself, and every publish goes.
    # Connection 0 runs through a proxy that is then stalled, so its
    # declaration (over /management on 4.x) gets no answer; a second
    # publish goes to connection 1 and follows it; the idle timeout (2 s)
    # then ends connection 0.  Without the hand-over both would wait for the
    # declaration's 30 s deadline.  (On 3.10 the declaration goes over the
    # HTTP API, which the proxy does not carry: the same publishes must go,
    # nothing is followed.)
    proxy = Proxy(node.amqp_port)
    q = unique("followed")
    servers = "127.0.0.1:%d,127.0.0.1:%d" % (proxy.port, node.amqp_port)
    res = resource("/f", "<queue>{${payload.queue}}</queue><queueType>CLASSIC</queueType><maxPriority>5</maxPriority>"
                         "<publishTimeout>20000</publishTimeout>")
    try:
        with Deployment({"local-entries/rmq.xml": connection(node, servers=servers,
                                                             extra="<connectionIdleTimeout>2000</connectionIdleTimeout>"),
                         "api/pub.xml": api(res)}) as d:
            cmi = start(d)
            try:
                wait_for(lambda: len(re.findall(r"\[rabbitmq:RMQ\] connection \d up: ", cmi.log_text())) == 2, 20,
                         "both connections up")
                proxy.stall()
                answers = {}

                def publish(i):
                    status, data = post(cmi, "/pub/f", {"queue": q, "i": i})
                    answers[i] = (status, data)

                t0 = time.monotonic()
                first = threading.Thread(target=publish, args=(0,))
                first.start()
                time.sleep(0.3)  # connection 0 has it: the second goes to connection 1
                second = threading.Thread(target=publish, args=(1,))
                second.start()
                first.join(30)
                second.join(30)
                took = time.monotonic() - t0
                for i in (0, 1):
                    check(i in answers, "publish %d unanswered after %.1fs:\n%s" % (i, took, cmi.log_text()[-4000:]))
                    status, data = answers[i]
                    check(status == 200 and json.loads(data)["success"] == "true", "publish %d: %s %r" % (i, status, data))
                check(took < 10, "the publishes went after %.1fs" % took)
                got = sorted(json.loads(b)["i"] for b in node.drain(q))
                check(got == [0, 1], "the queue holds %r" % got)
                print("      both publishes confirmed %.2fs after the first, connection 0 lost to its idle timeout"
                      % took, flush=True)
            finally:
                cmi.stop_clean()
    finally:
        proxy.close()


def test_missing_queue_waits_for_its_declaration(node):
    # Issue 19.  A queue that must exist (queueAutoDeclare false) and does
    # not: RabbitMQ 4.x says 404 when cmi asks /management.  The publish
    # waits and asks again (25 ms, doubling to 400 ms) and goes as soon as
    # the queue is there; only after 2 s does it fail, 701206 / 502 with the
    # broker's answer.  Nothing ends a session.  RabbitMQ 3.10 accepts and drops a message for a
    # missing queue (documented): the publish says success.
    missing, late, gone = unique("missing"), unique("late"), unique("gone")
    res = (resource("/must", "<queue>{${payload.queue}}</queue><queueAutoDeclare>false</queueAutoDeclare>")
           + resource("/auto", "<queue>{${payload.queue}}</queue>"))
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            if not node.broker.is4:
                status, data = post(cmi, "/pub/must", {"queue": missing})
                check(status == 200 and json.loads(data)["success"] == "true", "3.10: %s %r" % (status, data))
                return
            t0 = time.monotonic()
            status, data = post(cmi, "/pub/must", {"queue": missing})
            took = time.monotonic() - t0
            check(status == 502 and 1.8 <= took < 5, "missing: %s %r after %.2fs" % (status, data, took))
            err = json.loads(data)["error"]
            check(err["code"] == 701206 and "404" in err["detail"] and "queue '%s'" % missing in err["detail"]
                  and "(asked for 2 s)" in err["detail"], "missing: error %r" % err)
            # Declared by someone else while the publish waits: it goes.
            result = {}

            def publish_late():
                t0 = time.monotonic()
                result["answer"] = post(cmi, "/pub/must", {"queue": late})
                result["took"] = time.monotonic() - t0

            waiter = threading.Thread(target=publish_late)
            waiter.start()
            time.sleep(0.3)
            node.declare_queue(late)
            waiter.join(10)
            status, data = result["answer"]
            check(status == 200 and json.loads(data)["success"] == "true" and 0.3 <= result["took"] < 1.8,
                  "declared after 0.3 s: %s %r after %.2fs" % (status, data, result["took"]))
            (g,) = node.get(late)
            # A queue deleted after cmi declared it is made again by the
            # next publish, at once.
            status, data = post(cmi, "/pub/auto", {"queue": gone})
            check(status == 200 and json.loads(data)["success"] == "true", "first to %s: %s %r" % (gone, status, data))
            node.api("DELETE", "/api/queues/%2F/" + gone)
            # (A publish racing the broker's detach of the deleted queue's
            # sender fails with it: the next one goes.)
            t0, answers = time.monotonic(), []
            while not answers or answers[-1] != 200:
                status, data = post(cmi, "/pub/auto", {"queue": gone})
                answers.append(status if status != 200 or json.loads(data)["success"] == "true" else data)
                check(time.monotonic() - t0 < 3, "after the delete: %r, last %r" % (answers, data))
            wait_for(lambda: node.depth(gone) == 1, 10, "the queue made again with the message")
            check("fail for the next" not in cmi.log_text(), "an address held as refused: %s" % cmi.log_text())
            print("      missing queue: 701206 after %.1fs; declared after 0.3 s: published after %.2fs; deleted "
                  "queue: made again, answers %r" % (took, result["took"], answers), flush=True)
        finally:
            cmi.stop_clean()


def test_names_from_requests_are_constrained(node):
    # Issue 19: a queue name from the request that starts with '/' is not
    # taken as an address (it reached another application's queue), names
    # that can never work (amq.*, over 255 bytes) are refused before
    # anything reaches the broker (an amq.* attach ended the session of
    # every other publish on it), and dynamicTargetPattern restricts what
    # a request may name.  allowDynamicAddress lets a responder publish to
    # the reply-to it received.
    victim, ok = unique("victim"), "ok." + uuid.uuid4().hex[:8]
    node.declare_queue(victim)
    address = ("/queues/%s" if node.broker.is4 else "/amq/queue/%s") % victim
    res = (resource("/any", "<queue>{${payload.queue}}</queue>")
           + resource("/pattern", "<queue>{${payload.queue}}</queue>"
                      "<dynamicTargetPattern>ok\\.[a-z0-9]+</dynamicTargetPattern>")
           + resource("/address", "<queue>{${payload.queue}}</queue><allowDynamicAddress>true</allowDynamicAddress>"))
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            def refused(path, name, why):
                status, data = post(cmi, path, {"queue": name})
                check(status == 500, "%s %r: %s %r" % (path, name[:40], status, data))
                err = json.loads(data)["error"]
                check(err["code"] == 701202 and why in err["detail"], "%s %r: error %r" % (path, name[:40], err))

            refused("/pub/any", address, "only with allowDynamicAddress true")
            refused("/pub/any", "/exchange/amq.direct/" + victim, "only with allowDynamicAddress true")
            refused("/pub/any", "amq.x1", "names starting with 'amq.' are the broker's")
            refused("/pub/any", "q" * 256, "256 bytes long: RabbitMQ takes at most 255")
            refused("/pub/pattern", "other", "does not match dynamicTargetPattern")
            refused("/pub/pattern", ok + "/x", "does not match dynamicTargetPattern")
            check(node.depth(victim) == 0, "the victim queue got %d messages" % node.depth(victim))
            # Nothing reached the broker: no session ended, every connection
            # stayed up, and the same connections publish at once.
            for path, name in (("/pub/any", unique("fine")), ("/pub/pattern", ok)):
                status, data = post(cmi, path, {"queue": name})
                check(status == 200 and json.loads(data)["success"] == "true", "%s %s: %s %r"
                      % (path, name, status, data))
            lost = losses(cmi.log_text().splitlines(), node)
            check(not lost, "connections lost: %r" % lost)
            check(not re.search(r"ended the session", cmi.log_text()), "a session ended: %s" % cmi.log_text()[-2000:])
            # The operation that allows it publishes to the address as given.
            status, data = post(cmi, "/pub/address", {"queue": address})
            check(status == 200 and json.loads(data)["success"] == "true", "address: %s %r" % (status, data))
            wait_for(lambda: node.depth(victim) == 1, 5, "the message at %s" % address)
        finally:
            cmi.stop_clean()


def _good_traffic(cmi, path, queue, clients, seconds, tag):
    """clients keep-alive clients publishing to queue for seconds: (ok
    message numbers, failures)."""
    oks, failures, lock = [], [], threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(k):
        conn = cmi.connection()
        try:
            i = 0
            while time.monotonic() < stop_at:
                n = "%s-%d-%d" % (tag, k, i)
                i += 1
                status, data = post(cmi, path, {"queue": queue, "n": n}, conn=conn)
                with lock:
                    if status == 200 and json.loads(data)["success"] == "true":
                        oks.append(n)
                    else:
                        failures.append((status, data[:300]))
        finally:
            conn.close()

    concurrently(client, [(k,) for k in range(clients)], seconds + 60)
    return oks, failures


def test_refused_names_do_not_hurt_other_traffic(node):
    # Issue 19: one client sends names the broker refuses (queues declared
    # elsewhere with other arguments: RabbitMQ 3.10 ends the session of the
    # attach that declares one; exchanges that must exist and do not: both
    # brokers refuse the attach, 4.0 by ending its session) and names cmi
    # refuses itself (amq.*), each new, about 23 a second, while 8 others
    # publish to a good queue.  The
    # others' throughput stays within 20% of runs without the bad client
    # (the mean of one before and one after, so that the machine's drift
    # cancels); none of their requests fails; nothing reaches the queue
    # twice.
    good = unique("good")
    taken = [unique("taken") for _ in range(150)]
    for q in taken:
        node.api("PUT", "/api/queues/%2F/" + q, {"durable": False, "arguments": {}})
    res = (resource("/any", "<queue>{${payload.queue}}</queue><queueType>CLASSIC</queueType>")
           + resource("/exchange", "<exchange>{${payload.exchange}}</exchange><exchangeAutoDeclare>false"
                      "</exchangeAutoDeclare><routingKey>k</routingKey>"))
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            post(cmi, "/pub/any", {"queue": good, "n": "first"})  # declared before the clock starts
            seconds = 4.0
            alone, failed = _good_traffic(cmi, "/pub/any", good, 8, seconds, "alone")
            check(not failed, "without the bad client %d publishes failed, first %r" % (len(failed), failed[:1]))
            bad = {"sent": 0, "answered": [], "stop": False}

            def bad_client():
                conn = cmi.connection()
                try:
                    i = 0
                    while not bad["stop"] and i < len(taken) * 3:
                        if i % 3 == 0:
                            path, body = "/pub/any", {"queue": taken[i // 3]}
                        elif i % 3 == 1:
                            path, body = "/pub/any", {"queue": "amq.bad-%d-%s" % (i, uuid.uuid4().hex[:6])}
                        else:
                            path, body = "/pub/exchange", {"exchange": unique("missing")}
                        i += 1
                        status, data = post(cmi, path, body, conn=conn)
                        bad["answered"].append((body, status, data[:200]))
                        time.sleep(0.04)
                finally:
                    conn.close()

            t = threading.Thread(target=bad_client)
            t.start()
            try:
                # Two windows beside the bad client (it runs for some 18 s),
                # the better one judged: a slowdown it causes shows in both,
                # a pause of the machine's (CI once saw one, 0.71 x against
                # 0.91-0.95 x in every other run) in one.
                mixed, failed = _good_traffic(cmi, "/pub/any", good, 8, seconds, "mixed")
                mixed2, failed2 = _good_traffic(cmi, "/pub/any", good, 8, seconds, "mixed2")
            finally:
                bad["stop"] = True
                t.join(30)
            after, failed_after = _good_traffic(cmi, "/pub/any", good, 8, seconds, "after")
            check(not failed_after, "without the bad client again %d publishes failed, first %r"
                  % (len(failed_after), failed_after[:1]))
            refused_by_broker = sum(1 for body, status, _ in bad["answered"]
                                    if (body.get("queue") in taken or "exchange" in body) and status == 502)
            got = [json.loads(b)["n"] for b in node.drain(good)]
            sent = ["first"] + alone + mixed + mixed2 + after
            failed += failed2
            windows = (len(mixed), len(mixed2))
            mixed = mixed if len(mixed) >= len(mixed2) else mixed2
            doubled = len(got) - len(set(got))
            base = (len(alone) + len(after)) / 2.0
            downs = losses(cmi.log_text().splitlines(), node)
            print("      alone: %.0f/s and %.0f/s; with a client sending %d refused names (%d refused by the broker): "
                  "%.0f/s and %.0f/s (the better %.2f x), %d failed, %d doubled, %d connection(s) lost"
                  % (len(alone) / seconds, len(after) / seconds, len(bad["answered"]), refused_by_broker,
                     windows[0] / seconds, windows[1] / seconds, len(mixed) / max(1, base), len(failed), doubled,
                     len(downs)), flush=True)
            check(not failed, "with the bad client %d of %d publishes failed, first %r"
                  % (len(failed), len(failed) + sum(windows), failed[:1]))
            check(all(status in (500, 502) for _, status, _ in bad["answered"]), "a refused name was answered %r"
                  % [a for a in bad["answered"] if a[1] not in (500, 502)][:3])
            check(refused_by_broker >= 30, "only %d names reached the broker's refusal: %r"
                  % (refused_by_broker, bad["answered"][:6]))
            check(not doubled, "%d messages reached the queue twice" % doubled)
            check(set(got) == set(sent), "the queue holds %d messages, %d were confirmed (%d missing)"
                  % (len(got), len(sent), len(set(sent) - set(got))))
            check(not downs, "connections lost: %s" % "\n".join(downs[:5]))
            # Under a sanitizer cmi's own work (the bad client's included)
            # costs several times more and the figure is noisier (0.75 x
            # once in an ASan CI run, 0.87-0.97 x in the others): the plain
            # build's run holds 0.8 x, and 0.6 x still catches what this test
            # is for (the shared session gave 0.27 x).
            floor = 0.6 if "sanitize" in os.environ.get("CMI_SAN_LDFLAGS", "") else 0.8
            check(len(mixed) >= floor * base, "throughput fell from %.0f/s to %.0f/s (below %.1f x)"
                  % (base / seconds, len(mixed) / seconds, floor))
        finally:
            cmi.stop_clean()


def test_an_attach_the_broker_never_answers(node):
    # Issue 19: should the broker lose a sender's attach (RabbitMQ 4.0.5
    # loses a session's begin on a channel it has not let go of; here a
    # proxy drops the attach), the connection closes after 5 s and its
    # publishes go again on the next, each counting an attempt: after three
    # they fail with 701203 instead of waiting forever; nothing else is
    # lost, and once attaches arrive again the address works.
    proxy = Proxy(node.amqp_port)
    lost, good = unique("lost"), unique("good")
    node.declare_queue(lost)
    res = resource("/any", "<queue>{${payload.queue}}</queue><publishTimeout>30000</publishTimeout>")
    try:
        with Deployment({"local-entries/rmq.xml": connection(node, servers="127.0.0.1:%d" % proxy.port),
                         "api/pub.xml": api(res)}) as d:
            cmi = start(d)
            try:
                proxy.lose_attach(lost)
                out = {}

                def publish_lost():
                    t0 = time.monotonic()
                    conn = cmi.connection(timeout=40)
                    try:
                        out["answer"] = post(cmi, "/pub/any", {"queue": lost, "n": 1}, conn=conn)
                    finally:
                        conn.close()
                    out["took"] = time.monotonic() - t0
                t = threading.Thread(target=publish_lost)
                t.start()
                for i in range(20):
                    status, data = post(cmi, "/pub/any", {"queue": good, "n": i})
                    check(status == 200, "publish %d to another queue: %s %r" % (i, status, data))
                t.join(40)
                status, data = out["answer"]
                print("      an attach lost 3 times: %s after %.1fs (%d attach frame(s) dropped)"
                      % (status, out["took"], proxy.lost), flush=True)
                check(status == 502 and json.loads(data)["error"]["code"] == 701203, "the lost publish: %s %r"
                      % (status, data))
                check("did not answer the attach of the sender to" in json.loads(data)["error"]["detail"],
                      "error %r" % json.loads(data)["error"])
                check(14 < out["took"] < 25, "answered after %.1fs (3 attaches of 5 s)" % out["took"])
                check(proxy.lost == 3, "%d attaches dropped" % proxy.lost)
                proxy.lose_attach(None)
                status, data = post(cmi, "/pub/any", {"queue": lost, "n": 2})
                check(status == 200, "once attaches arrive: %s %r" % (status, data))
                check([json.loads(b)["n"] for b in node.drain(lost)] == [2], "the queue's messages")
                check(node.depth(good) == 20, "the other queue holds %r" % node.depth(good))
                downs = losses(cmi.log_text().splitlines(), node)
                check(len(downs) == 3 and all("did not answer the attach" in ln for ln in downs),
                      "connections lost: %s" % "\n".join(downs[:5]))
            finally:
                cmi.stop_clean()
    finally:
        proxy.close()


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _client_ports(pid, port):
    """The local ports of process pid's TCP connections to port."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :%d )" % port], capture_output=True,
                         text=True, timeout=10, stdin=subprocess.DEVNULL).stdout
    return {ln.split()[2].rsplit(":", 1)[1] for ln in out.splitlines() if "pid=%d," % pid in ln}


def _sessions(node, pid):
    """The broker's count of AMQP sessions of each of process pid's
    connections, now: 4.0 counts them as its connections' channels; 3.10's
    plugin runs each session on an AMQP 0.9.1 channel of its own, named
    after the client connection ("127.0.0.1:5 -> 127.0.0.1:6 (1)")."""
    ports = _client_ports(pid, node.amqp_port)
    counts = {}
    if node.broker.is4:
        out = node.ctl("list_connections", "name", "channels", "--no-table-headers", "--quiet")
        for ln in out.splitlines():
            if "\t" in ln:
                name, n = ln.split("\t")[:2]
                counts[name.strip()] = int(n)
    else:
        for ln in node.ctl("list_channels", "name", "--no-table-headers", "--quiet").splitlines():
            if " -> " in ln:
                name = ln.rsplit(" (", 1)[0].strip()
                counts[name] = counts.get(name, 0) + 1
    return {name: n for name, n in counts.items() if name.split(" -> ")[0].rsplit(":", 1)[-1] in ports}


def test_two_thousand_names_keep_memory_and_links_bounded(node):
    # Issue 19: a request names each queue, 2,000 distinct names.  cmi keeps
    # a bounded number of senders (each with its session) per connection:
    # the least recently used idle one is closed past the limit (RabbitMQ
    # 4.0 allows 64 sessions per connection), and its memory does not grow
    # with the names once the limits are reached.
    res = resource("/any", "<queue>{${payload.queue}}</queue><queueType>CLASSIC</queueType>")
    prefix = unique("many")
    with Deployment({"local-entries/rmq.xml": connection(node), "api/pub.xml": api(res)}) as d:
        cmi = start(d)
        try:
            failures, lock = [], threading.Lock()

            def client(k, names):
                conn = cmi.connection()
                try:
                    for i in names:
                        if i % 8 != k:
                            continue
                        status, data = post(cmi, "/pub/any", {"queue": "%s-%d" % (prefix, i), "i": i}, conn=conn)
                        if status != 200 or json.loads(data)["success"] != "true":
                            with lock:
                                failures.append((i, status, data[:300]))
                finally:
                    conn.close()

            t0 = time.monotonic()
            concurrently(client, [(k, range(0, 500)) for k in range(8)], 300)
            rss_500 = _rss_kb(cmi.proc.pid)
            concurrently(client, [(k, range(500, 2000)) for k in range(8)], 600)
            took = time.monotonic() - t0
            rss_2000 = _rss_kb(cmi.proc.pid)
            # Every connection has used more names than it may have senders:
            # it has as many sessions as it may, no more (the broker's
            # sessions, or cmi's 256 senders, and the main session).
            limit = 64 if node.broker.is4 else 257
            sessions = _sessions(node, cmi.proc.pid)
            print("      2,000 names in %.1fs (%d failed); cmi's memory %d KB after 500 names, %d KB after 2,000; "
                  "sessions per connection %s" % (took, len(failures), rss_500, rss_2000, sorted(sessions.values())),
                  flush=True)
            check(not failures, "%d publishes failed, first %r" % (len(failures), failures[:1]))
            check(len(sessions) == 2 and all(n == limit for n in sessions.values()), "sessions %r (limit %d)"
                  % (sessions, limit))
            if "sanitize" in os.environ.get("CMI_SAN_LDFLAGS", ""):
                # ASan and TSan keep freed memory (quarantine, history): the
                # plain build's run of this test checks the figure.
                print("      memory not compared under a sanitizer", flush=True)
            else:
                check(rss_2000 - rss_500 < 4096, "cmi's memory grew by %d KB from 500 to 2,000 names"
                      % (rss_2000 - rss_500))
            for i in (0, 1999):
                got = node.get("%s-%d" % (prefix, i))
                check(len(got) == 1, "queue %d holds %r" % (i, got))
            downs = losses(cmi.log_text().splitlines(), node)
            check(not downs, "connections lost: %s" % "\n".join(downs[:5]))
        finally:
            cmi.stop_clean()


def test_default_deployment_example(node):
    # synapse-configs/default as the quickstart serves it, pointed at the
    # test's broker: the README's curl to /publishmessage.
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with Deployment({}) as d:
        shutil.rmtree(d)
        shutil.copytree(os.path.join(top, "synapse-configs", "default"), d)
        entry = os.path.join(d, "local-entries", "RabbitMQConnection.xml")
        with open(entry) as f:
            text = f.read()
        text = re.sub(r"<serverUrls>[^<]*</serverUrls>", "<serverUrls>127.0.0.1:%d</serverUrls>" % node.amqp_port,
                      text)
        text = re.sub(r"</rabbitmq.init>", "<managementUrl>http://127.0.0.1:%d</managementUrl></rabbitmq.init>"
                      % node.mgmt_port, text)
        with open(entry, "w") as f:
            f.write(text)
        cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            cmi.wait_log(r"\[rabbitmq:RabbitMQConnection\] connection \d up: ", 20)
            q = unique("readme")
            status, data = post(cmi, "/publishmessage", {"queue": q, "message": "Hello from cmi"})
            check(status == 200, "README example: %s %r" % (status, data))
            r = json.loads(data)
            check(r.get("success") == "true" and r.get("messageId"), "README example result %r" % r)
            (g,) = node.get(q)
            check(base64.b64decode(g["payload"]) == b"Hello from cmi", "message %r" % g)
            # Its dynamicTargetPattern: a request names a queue, not an address.
            status, data = post(cmi, "/publishmessage", {"queue": "/amq/queue/" + q, "message": "x"})
            check(status == 500, "an address from the request: %s %r" % (status, data))
            cmi.wait_log(r"701202.*the queue '/amq/queue/%s' comes from the message and starts with '/'" % q, 5)
            status, data = post(cmi, "/publishmessage", {"queue": "no spaces", "message": "x"})
            check(status == 500, "a name outside the pattern: %s %r" % (status, data))
            cmi.wait_log(r"701202.*the queue 'no spaces' comes from the message and does not match "
                         r"dynamicTargetPattern", 5)
            check(node.depth(q) == 0, "a message reached %s through an address" % q)
        finally:
            cmi.stop_clean()


def test_sasl_anonymous(node):
    # ANONYMOUS: the 3.x plugin logs the connection in as its default user.
    q = unique("anon")
    entry = ('<localEntry %s key="RMQ"><rabbitmq.init><name>anon</name><serverUrls>127.0.0.1:%d</serverUrls>'
             '<saslMechanism>ANONYMOUS</saslMechanism></rabbitmq.init></localEntry>' % (NS, node.amqp_port))
    with Deployment({"local-entries/rmq.xml": entry,
                     "api/pub.xml": api(resource("/a", "<queue>%s</queue><queueType>CLASSIC</queueType>" % q))}) as d:
        cmi = start(d, workers=1)
        try:
            status, data = post(cmi, "/pub/a", {"anonymous": True})
            check(status == 200 and json.loads(data)["success"] == "true", "ANONYMOUS publish: %s %r" % (status, data))
            check(node.depth(q) == 1, "queue depth %r" % node.depth(q))
        finally:
            cmi.stop_clean()


def test_small_max_in_flight_queues_and_drains(node):
    # maxInFlight 3 per connection: publishes beyond it wait in line and go
    # out as room comes, with confirms and without (a send without confirms
    # makes room at once; nothing must wait for an outcome that never comes).
    q1, q2 = unique("mif-confirm"), unique("mif-noconfirm")
    res = (resource("/c", "<queue>%s</queue><queueType>QUORUM</queueType><publishTimeout>8000</publishTimeout>" % q1)
           + resource("/n", "<queue>%s</queue><queueType>QUORUM</queueType><publisherConfirms>false"
                            "</publisherConfirms><publishTimeout>8000</publishTimeout>" % q2))
    files = {"local-entries/rmq.xml": connection(node, extra="<maxInFlight>3</maxInFlight>"),
             "api/pub.xml": api(res)}
    with Deployment(files) as d:
        cmi = start(d)
        try:
            for path, q in (("/pub/c", q1), ("/pub/n", q2)):
                errors, ok = [], []
                lock = threading.Lock()

                def client():
                    conn = cmi.connection()
                    try:
                        for i in range(10):
                            status, data = post(cmi, path, {"i": i}, conn=conn)
                            with lock:
                                (ok if status == 200 and json.loads(data)["success"] == "true" else errors).append(
                                    (status, data))
                    finally:
                        conn.close()

                threads = [threading.Thread(target=client) for _ in range(6)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                check(not errors and len(ok) == 60, "%s: %d ok, errors %r" % (path, len(ok), errors[:2]))
                wait_for(lambda: node.depth(q) == 60, 10, "60 messages in %s (has %r)" % (q, node.depth(q)))
        finally:
            cmi.stop_clean()


def test_password_from_the_secret_store(node):
    # MI's secure vault form in the connection's password: read from cmi's
    # secrets file (mode 600) at load; the connection comes up, so the value
    # reached the broker.
    q = unique("vault")
    conn = connection(node).replace("<password>guest</password>",
                                    "<password>{wso2:vault-lookup('rabbitmq_password')}</password>")
    publish = "<queue>%s</queue><publisherConfirms>true</publisherConfirms>" % q
    with Deployment({"local-entries/rmq.xml": conn, "api/pub.xml": api(resource("/v", publish))}) as d:
        secrets = os.path.join(d, "..", os.path.basename(d) + ".secrets")
        with open(secrets, "w") as f:
            f.write("# test secrets\nrabbitmq_password = guest\n")
        os.chmod(secrets, 0o600)
        config = secrets + ".xml"
        with open(config, "w") as f:
            f.write('<cmi><secrets file="%s"/></cmi>' % secrets)
        check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
        cmi = Cmi(d, workers=1, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}, args=["--config", config]).start()
        try:
            cmi.wait_log(r"\[rabbitmq:RMQ\] connection \d up: ", 20)
            status, data = post(cmi, "/pub/v", {"x": 1})
            check(status == 200, "publish with the vault password: %s %r" % (status, data))
            check(len(node.get(q)) == 1, "the message did not arrive")
        finally:
            cmi.stop_clean()
            os.unlink(secrets)
            os.unlink(config)
