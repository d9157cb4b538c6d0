"""The RabbitMQ inbound endpoint and accept / discard / requeue against a
real RabbitMQ 3.10 (issue 8).  Messages are put in the queue by the test
itself (AMQP 1.0 or the management API); what cmi did is read back from the
queues and from cmi's log."""
import json
import os
import re
import signal
import subprocess
import time

from harness import Cmi, check, run_cmi
from rabbitmq import wait_for
from test_engine import Deployment
from test_failover import entry
from test_publish import NS, RMQ_CONNECTORS, unique


# What these tests give unless they say otherwise: the management API (3.x
# declares through it), a classic queue, and no bound on mediation beside
# the credit.  MI's own defaults (a quorum queue, one message in mediation)
# are tested by test_mi_defaults.
TEST_DEFAULTS = (("rabbitmq.queue.type", "CLASSIC"), ("rabbitmq.message.receiver.thread.pool.size", "100000"))


def endpoint(node, queue, extra=(), sequence="onMessage", on_error="onError", defaults=True):
    given = {k for k, _ in extra}
    if "rabbitmq.message.consumer.thread.pool.size" in given:
        given.add("rabbitmq.message.receiver.thread.pool.size")
    extra = list(extra)
    if "rabbitmq.management.url" not in given:
        extra.append(("rabbitmq.management.url", "http://127.0.0.1:%d" % node.mgmt_port))
    if defaults:
        extra += [kv for kv in TEST_DEFAULTS if kv[0] not in given]
    return ('<inboundEndpoint %s name="In" sequence="%s" onError="%s" '
            'class="org.wso2.carbon.inbound.rabbitmq.RabbitMQListener" suspend="false"><parameters>'
            '<parameter name="sequential">true</parameter><parameter name="coordination">true</parameter>'
            '<parameter name="rabbitmq.server.host.name">127.0.0.1</parameter>'
            '<parameter name="rabbitmq.server.port">%d</parameter>'
            '<parameter name="rabbitmq.server.user.name">guest</parameter>'
            '<parameter name="rabbitmq.server.password">guest</parameter>'
            '<parameter name="rabbitmq.queue.name">%s</parameter>%s</parameters></inboundEndpoint>'
            % (NS, sequence, on_error, node.amqp_port, queue, "".join(
                '<parameter name="%s">%s</parameter>' % kv for kv in extra)))


def sequence(name, body):
    return '<sequence %s name="%s">%s</sequence>' % (NS, name, body)


ON_ERROR = sequence("onError", '<log category="WARN"><message>fault: ${props.synapse.ERROR_MESSAGE}</message></log>')


def deployment(node, queue, body, params=(), more=None, defaults=True):
    files = {"inbound-endpoints/in.xml": endpoint(node, queue, params, defaults=defaults),
             "sequences/onMessage.xml": sequence("onMessage", body),
             "sequences/onError.xml": ON_ERROR}
    files.update(more or {})
    return Deployment(files)


def start(d, workers=2, env=None):
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    cmi = Cmi(d, workers=workers, env=dict({"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}, **(env or {}))).start()
    cmi.wait_log(r"\[rabbitmq:In\] connection 0: consuming from queue '[^']+' \(credit", 20)
    return cmi


def got_lines(cmi, pattern=r"got (\S+)"):
    return re.findall(pattern, cmi.log_text())


LOG_GOT = ('<log><message>got ${payload.n} redelivered ${headers["rabbitmq.message.redelivered"]} '
           'reply-to ${headers["RABBITMQ_REPLY_TO"]}</message></log>')


def test_accept_removes(node):
    q = unique("accept")
    with deployment(node, q, LOG_GOT + "<rabbitmq.accept/>") as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(5)])
            wait_for(lambda: len(got_lines(cmi)) == 5, 10, "5 messages mediated")
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
            info = node.queue(q)
            check(info.get("messages_unacknowledged", 0) == 0 or node.depth(q) == 0, "unacked %r" % info)
        finally:
            cmi.stop_clean()


def test_message_context(node):
    q = unique("context")
    body = ('<log><message>ctx type=${headers["Content-Type"]} id=${headers["rabbitmq.message.id"]} '
            'corr=${headers["rabbitmq.message.correlation.id"]} corrprop=${props.axis2["rabbitmq.message.correlation.id"]} '
            'app=${headers["x-origin"]} n=${payload.n}</message></log><rabbitmq.accept/>')
    with deployment(node, q, body) as d:
        cmi = start(d)
        try:
            from proton import Message
            from proton.utils import BlockingConnection
            conn = BlockingConnection("amqp://127.0.0.1:%d" % node.amqp_port, user="guest", password="guest",
                                      allowed_mechs="PLAIN", allow_insecure_mechs=True, virtual_host="/")
            snd = conn.create_sender("/amq/queue/" + q)
            snd.send(Message(body=b'{"n": 7}', content_type="application/json", id="m-1", correlation_id="c-1",
                             properties={"x-origin": "test"}, inferred=True, durable=True))
            conn.close()
            m = cmi.wait_log(r"ctx type=(\S+) id=(\S+) corr=(\S+) corrprop=(\S+) app=(\S+) n=(\d+)", 10)
            check(m.groups() == ("application/json", "m-1", "c-1", "c-1", "test", "7"), "context %r" % (m.groups(),))
        finally:
            cmi.stop_clean()


def test_discard_dead_letters(node):
    q, dlq = unique("discard"), unique("dlq")
    node.declare_queue(dlq)
    node.policy("dlx-" + q, "^%s$" % q, {"dead-letter-exchange": "", "dead-letter-routing-key": dlq})
    with deployment(node, q, LOG_GOT + "<rabbitmq.discard/>") as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(4)])
            wait_for(lambda: node.depth(dlq) == 4, 10, "4 dead-lettered (has %r)" % node.depth(dlq))
            check(node.depth(q) == 0, "the queue still holds %r" % node.depth(q))
        finally:
            cmi.stop_clean()
            node.ctl("clear_policy", "dlx-" + q)


def test_classic_requeue_overridden_with_discard(node):
    # MI's rabbitmq.classic.override.requeue.with.discard: a classic queue
    # (no delivery limit) would redeliver a requeued message forever; with
    # it the requeue is a discard: dead-lettered once, never redelivered.
    q, dlq = unique("override"), unique("override-dlq")
    node.declare_queue(dlq)
    node.policy("dlx-" + q, "^%s$" % q, {"dead-letter-exchange": "", "dead-letter-routing-key": dlq})
    # Messages 0 and 1 are requeued by the flow, 2 ends without a decision.
    body = LOG_GOT + '<filter xpath="${payload.n == 2}"><then/><else><rabbitmq.requeue/></else></filter>'
    with deployment(node, q, body,
                    [("rabbitmq.queue.type", "CLASSIC"),
                     ("rabbitmq.classic.override.requeue.with.discard", "true")]) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(3)])
            wait_for(lambda: node.depth(dlq) == 3, 10, "3 dead-lettered (has %r)" % node.depth(dlq))
            check(node.depth(q) == 0, "the queue still holds %r" % node.depth(q))
            check(sorted(got_lines(cmi)) == ["0", "1", "2"], "each delivered once: %r" % got_lines(cmi))
        finally:
            cmi.stop_clean()
            node.ctl("clear_policy", "dlx-" + q)


def _queue_names(node):
    return [x["name"] for x in node.api("GET", "/api/queues/%2F")]


def test_exclusive_queue(node):
    # rabbitmq.queue.exclusive: on 4.x the queue is declared over
    # /management for the endpoint's own connection (exclusive, gone when
    # cmi stops); 3.x cannot declare one for an AMQP 1.0 client (its HTTP
    # API makes a transient, non-exclusive queue instead): the endpoint says
    # so once and retries quietly, never a reconnect loop.
    q = unique("exclusive")
    mgmt = ("rabbitmq.management.url", "http://127.0.0.1:%d" % node.mgmt_port)
    with deployment(node, q, LOG_GOT + "<rabbitmq.accept/>", [("rabbitmq.queue.exclusive", "true"), mgmt]) as d:
        cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            if node.broker.is4:
                cmi.wait_log(r"consuming from queue '%s'" % q, 20)
                check(node.queue(q)["exclusive"] is True, "the queue is exclusive: %r" % node.queue(q)["exclusive"])
                node.send("/amq/queue/" + q, [json.dumps({"n": 1})])
                wait_for(lambda: got_lines(cmi) == ["1"], 10, "the message mediated")
            else:
                said = r"cannot consume from queue '%s': an exclusive queue needs RabbitMQ 4\.x" % q
                # Retried every 2 s, said again only at debug level.
                wait_for(lambda: len(re.findall(said, cmi.log_text())) >= 3, 15, "two retries")
                log = cmi.log_text()
                check(len(re.findall(r"ERROR .*" + said, log)) == 1, "said once at error level")
                check(not re.search(r"connection \d+ to \S+ down", log), "no reconnect")
                check(q not in _queue_names(node), "no queue made")
        finally:
            cmi.stop_clean()
    if node.broker.is4:
        wait_for(lambda: q not in _queue_names(node), 10, "the exclusive queue gone with cmi's connection")


def test_requeue_redelivers(node):
    q = unique("requeue")
    body = (LOG_GOT + '<filter xpath="${headers[\'rabbitmq.message.redelivered\'] == \'true\'}">'
            '<then><log><message>second time ${payload.n}</message></log><rabbitmq.accept/></then>'
            '<else><rabbitmq.requeue/></else></filter>')
    with deployment(node, q, body) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": 1})])
            cmi.wait_log(r"second time 1", 10)
            check(got_lines(cmi, r"got 1 redelivered (\w+)") == ["false", "true"],
                  "deliveries %r" % got_lines(cmi, r"got 1 redelivered (\w+)"))
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
            # the internal port counts what happened: one requeue, one redelivery, one accept
            from test_internal import parse, value
            ib = {"inbound_endpoint": "In"}

            def counts():
                s = parse(cmi.internal("/metric-service/metrics")[2].decode())[0]
                return (value(s, "cmi_rabbitmq_deliveries_settled_total", decision="requeue", **ib),
                        value(s, "cmi_rabbitmq_redelivered_total", **ib),
                        value(s, "cmi_rabbitmq_deliveries_settled_total", decision="accept", **ib))
            wait_for(lambda: counts() == (1, 1, 1), 10, "requeue, redelivery and accept counted")
        finally:
            cmi.stop_clean()


def test_a_quorum_queue_counts_requeues(node):
    # A flow's requeue is a failed delivery: RabbitMQ 4.x counts it in a
    # quorum queue's x-delivery-count, which the flow sees as the header
    # x-delivery-count (none on the first delivery); 3.10 gives no count.
    # The flow accepts once it has seen 3.
    q = unique("counted")
    body = ('<log><message>got ${payload.n} count ${headers["x-delivery-count"]}</message></log>'
            '<filter xpath="${headers[\'x-delivery-count\'] == 3 or (headers[\'x-delivery-count\'] == null'
            ' and headers[\'rabbitmq.message.redelivered\'] == \'true\')}"><then><rabbitmq.accept/></then>'
            '<else><rabbitmq.requeue/></else></filter>')
    params = [("rabbitmq.queue.type", "QUORUM"), ("rabbitmq.message.requeue.delay", "0")]
    with deployment(node, q, body, params) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": 1})])
            want = ["", "1", "2", "3"] if node.broker.is4 else ["", ""]
            wait_for(lambda: len(got_lines(cmi, r"got 1 count (\S*)")) >= len(want), 15, "%d deliveries" % len(want))
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
            check(got_lines(cmi, r"got 1 count (\S*)") == want, "counts %r" % got_lines(cmi, r"got 1 count (\S*)"))
        finally:
            cmi.stop_clean()


def test_throttle_fixed_interval(node):
    # rabbitmq.throttle.* FIXED_INTERVAL, 120 a minute: a message starts
    # every 500 ms, whatever the credit (10); the others stay in the broker
    # (credit is granted only for what may start), none waits in cmi.
    q = unique("throttle-fixed")
    params = [("rabbitmq.throttle.enabled", "true"), ("rabbitmq.throttle.mode", "FIXED_INTERVAL"),
              ("rabbitmq.throttle.timeUnit", "MINUTE"), ("rabbitmq.throttle.count", "120"),
              ("rabbitmq.consumer.initial.credit", "10")]
    with deployment(node, q, LOG_GOT + "<rabbitmq.accept/>", params) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(6)])
            held = []
            def all_in():
                held.append(_unacked(node, q)[1] or 0)
                return len(got_lines(cmi)) == 6
            wait_for(all_in, 15, "6 messages mediated")
            times = _log_times(cmi, "] got ")
            gaps = [b - a for a, b in zip(times, times[1:])]
            check(all(g >= 0.45 for g in gaps) and times[-1] - times[0] <= 4.0,
                  "gaps between starts %r" % ["%.3f" % g for g in gaps])
            check(max(held) <= 2, "cmi held up to %d messages unacknowledged" % max(held))
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
        finally:
            cmi.stop_clean()


def test_throttle_batch(node):
    # BATCH, 3 a minute: three start at once, the rest only when the next
    # minute begins (MI's docs: windows on the minute boundary; cmi's local
    # time is UTC here, as its log's), held in the broker meanwhile.
    q = unique("throttle-batch")
    params = [("rabbitmq.throttle.enabled", "true"), ("rabbitmq.throttle.mode", "BATCH"),
              ("rabbitmq.throttle.timeUnit", "MINUTE"), ("rabbitmq.throttle.count", "3"),
              ("rabbitmq.consumer.initial.credit", "10")]
    with deployment(node, q, LOG_GOT + "<rabbitmq.accept/>", params) as d:
        cmi = start(d, env={"TZ": "UTC"})
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(5)])
            wait_for(lambda: len(got_lines(cmi)) >= 3, 10, "the first 3 mediated")
            first = [line for line in cmi.log_text().splitlines() if "] got " in line]
            crossed = len({line[:16] for line in first}) > 1  # the first ones met a minute boundary
            if not crossed and len(first) == 3:
                time.sleep(1)  # nothing more may start inside this minute
                ready, unacked = _unacked(node, q)
                mediated = len(got_lines(cmi))
                # Only while that minute lasts: the second slept may have ended it.
                if time.strftime("%Y-%m-%dT%H:%M", time.gmtime()) == first[0][:16]:
                    check(mediated == 3 and (ready, unacked) == (2, 0),
                          "within the minute: %d mediated, the queue %r" % (mediated, (ready, unacked)))
            wait_for(lambda: len(got_lines(cmi)) == 5, 65, "all 5 mediated")
            starts = [line for line in cmi.log_text().splitlines() if "] got " in line]
            per_minute = {}
            for line in starts:
                per_minute[line[:16]] = per_minute.get(line[:16], 0) + 1
            check(max(per_minute.values()) <= 3, "starts per minute %r" % per_minute)
            fourth = float(starts[3][17:23])
            check(fourth < 1.5, "the 4th started %.3f s into its minute, not at its start" % fourth)
        finally:
            cmi.stop_clean()


def test_throttle_needs_a_count(node):
    # MI's docs: the count is required with throttling.
    q = unique("throttle-nocount")
    with deployment(node, q, "<rabbitmq.accept/>", [("rabbitmq.throttle.enabled", "true")]) as d:
        rc, out, err = run_cmi(["check", d], env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS})
        check(rc != 0 and "needs rabbitmq.throttle.count" in out + err, "cmi check: %d %s" % (rc, out + err))


def _log_times(cmi, needle):
    """The times (s) of cmi's log lines that contain needle."""
    out = []
    for line in cmi.log_text().splitlines():
        if needle in line:
            t = line[:23]
            out.append(time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) + float(t[19:23]))
    return out


def test_requeue_waits_the_requeue_delay(node):
    # Issue 20: a flow that requeues every time (MI's "requeue messages with
    # errors") sent the message straight back: about 800 deliveries a
    # second and 6 MB of log in 14 s.  rabbitmq.requeue now waits
    # rabbitmq.message.requeue.delay, as MI's docs say: deliveries come
    # that far apart, and nothing is logged per requeue.
    q = unique("requeue-delay")
    with deployment(node, q, LOG_GOT + "<rabbitmq.requeue/>", [("rabbitmq.message.requeue.delay", "400")]) as d:
        cmi = start(d)
        try:
            mark = cmi.log_mark()
            node.send("/amq/queue/" + q, [json.dumps({"n": 1})])
            wait_for(lambda: len(got_lines(cmi)) >= 5, 10, "five deliveries")
            times = _log_times(cmi, "got 1 redelivered")[:5]
            gaps = [b - a for a, b in zip(times, times[1:])]
            print("      a message requeued by every flow: delivered again after %s s"
                  % ", ".join("%.2f" % g for g in gaps), flush=True)
            check(all(g >= 0.35 for g in gaps), "redelivered after %r s, the requeue delay is 0.4 s" % gaps)
            lines = cmi.log_text().splitlines()[mark:]
            noisy = [ln for ln in lines if " WARN " in ln or " ERROR " in ln]
            check(not noisy, "requeues logged: %s" % "\n".join(noisy[:5]))
        finally:
            cmi.stop_clean()
        check(node.depth(q) == 1, "the message is back in the queue after the stop (%r)" % node.depth(q))


def test_no_decision_requeues_after_the_delay(node):
    q = unique("nodecision")
    body = (LOG_GOT + '<filter xpath="${headers[\'rabbitmq.message.redelivered\'] == \'true\'}">'
            '<then><rabbitmq.accept/></then></filter>')
    with deployment(node, q, body, [("rabbitmq.message.requeue.delay", "700")]) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": 1})])
            wait_for(lambda: len(got_lines(cmi)) == 2, 10, "a second delivery")
            times = [l[:23] for l in cmi.log_text().splitlines() if "got 1 redelivered" in l]
            t0, t1 = (time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) + float(t[19:23]) for t in times)
            check(t1 - t0 >= 0.65, "redelivered %.3fs later, requeue delay is 0.7s" % (t1 - t0))
            cmi.wait_log(r"ended without accept, discard or requeue: the message is requeued in 700 ms", 1)
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
        finally:
            cmi.stop_clean()


def test_ack_wait_timeout_requeues(node):
    q = unique("ackwait")
    body = (LOG_GOT + '<filter xpath="${headers[\'rabbitmq.message.redelivered\'] == \'true\'}">'
            '<then><rabbitmq.accept/></then>'
            '<else><testSuspend millis="1500"/><log><message>late decision</message></log><rabbitmq.accept/>'
            '</else></filter>')
    with deployment(node, q, body, [("rabbitmq.ack.wait.time", "400"), ("rabbitmq.consumer.initial.credit", "2")]) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": 1})])
            cmi.wait_log(r"still in mediation after the ack wait time: requeued", 5)
            wait_for(lambda: got_lines(cmi, r"got 1 redelivered (\w+)") == ["false", "true"], 10,
                     "redelivery after the ack wait")
            cmi.wait_log(r"late decision", 5)  # ignored: the first decision (the timeout) stands
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
        finally:
            cmi.stop_clean()


def _consume_time(node, credit, count=20, millis=200):
    q = unique("credit%d" % credit)
    body = LOG_GOT + '<testSuspend millis="%d"/><log><message>done ${payload.n}</message></log><rabbitmq.accept/>' % millis
    with deployment(node, q, body, [("rabbitmq.consumer.initial.credit", str(credit))]) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(count)])
            t0 = time.monotonic()
            wait_for(lambda: len(re.findall(r"done \d+", cmi.log_text())) == count, 30, "%d flows done" % count)
            return time.monotonic() - t0
        finally:
            cmi.stop_clean()


def test_credit_bounds_concurrency(node):
    # Each flow suspends 200 ms (holding no thread): credit 1 serializes the
    # 20 messages, credit 50 mediates them at once.
    one, fifty = _consume_time(node, 1), _consume_time(node, 50)
    print("      20 flows of 200 ms: credit 1 took %.2fs, credit 50 took %.2fs" % (one, fifty), flush=True)
    check(one >= 3.5, "credit 1 took only %.2fs for 20 x 200 ms" % one)
    check(fifty < one / 3, "credit 50 took %.2fs, credit 1 %.2fs" % (fifty, one))


def _peak_in_mediation(log):
    peak = cur = 0
    for kind in re.findall(r"(got|done) \d+", log):
        cur += 1 if kind == "got" else -1
        peak = max(peak, cur)
    return peak


def test_thread_pool_size_bounds_mediation(node):
    # MI's rabbitmq.message.receiver.thread.pool.size bounds the endpoint's
    # messages in mediation over all its receivers: two receivers with a
    # credit of 10 each hold 20, but only 3 flows run at once; with a pool
    # beyond the credit the credit alone bounds (here: all 20 at once).
    def peak(params):
        q = unique("pool")
        body = LOG_GOT + '<testSuspend millis="300"/><log><message>done ${payload.n}</message></log><rabbitmq.accept/>'
        with deployment(node, q, body, [("rabbitmq.consumer.initial.credit", "10"),
                                        ("rabbitmq.concurrent.consumers.count", "2")] + params) as d:
            cmi = start(d)
            try:
                wait_for(lambda: len(re.findall(r"consuming from queue", cmi.log_text())) == 2, 10, "2 receivers")
                node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(20)])
                wait_for(lambda: len(re.findall(r"done \d+", cmi.log_text())) == 20, 30, "20 flows done")
                wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
                return _peak_in_mediation(cmi.log_text())
            finally:
                cmi.stop_clean()
    bounded = peak([("rabbitmq.message.receiver.thread.pool.size", "3")])
    check(bounded == 3, "pool size 3: %d flows ran at once" % bounded)
    # MI's code reads rabbitmq.message.consumer.thread.pool.size: the same.
    check(peak([("rabbitmq.message.consumer.thread.pool.size", "2")]) == 2, "pool size 2 under MI's code's name")
    unbounded = peak([("rabbitmq.message.receiver.thread.pool.size", "100000")])
    check(unbounded > 10, "with a pool size beyond the credit only %d flows ran at once" % unbounded)


def _queue_type(node, q):
    return node.api("GET", "/api/queues/%2F/" + q).get("type")


def test_mi_defaults(node):
    # What an endpoint that names nothing but its queue gets, as MI's docs
    # give the defaults: a missing queue is declared a quorum queue (on
    # 3.10 through the management API), one that exists is consumed as it
    # is (a classic queue MI's code made), and one message is in mediation
    # at a time (rabbitmq.message.receiver.thread.pool.size 1) even with a
    # credit of 5.
    body = LOG_GOT + '<testSuspend millis="200"/><log><message>done ${payload.n}</message></log><rabbitmq.accept/>'
    fresh, existing = unique("defaults"), unique("made-by-mi")
    node.api("PUT", "/api/queues/%2F/" + existing, {"durable": True, "arguments": {}})
    for q, want in ((fresh, "quorum"), (existing, "classic")):
        with deployment(node, q, body, [("rabbitmq.consumer.initial.credit", "5")], defaults=False) as d:
            cmi = start(d)
            try:
                check(_queue_type(node, q) == want, "queue %s is %r, not %s" % (q, _queue_type(node, q), want))
                node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(6)])
                wait_for(lambda: len(re.findall(r"done \d+", cmi.log_text())) == 6, 30, "6 flows done")
                wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
                check(_peak_in_mediation(cmi.log_text()) == 1, "%d flows ran at once" % _peak_in_mediation(cmi.log_text()))
            finally:
                cmi.stop_clean()


def _unacked(node, q):
    out = node.ctl("list_queues", "-p", "/", "name", "messages", "messages_unacknowledged", "--no-table-headers",
                   "--quiet")
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == q:
            return int(parts[1]), int(parts[2])
    return None, None


def test_credit_holds_with_a_backlog(node):
    # RabbitMQ 3.x sends a little beyond the credit when a flow frame meets
    # messages already on their way.  proton's count of the credit then
    # goes below zero, and a flow frame carrying it went out as a huge
    # unsigned link-credit: the broker sent the whole queue to cmi (78,000
    # messages held for a credit of 100 in the bench; 2,650 of these 3,000
    # here).  With a credit of 10, the broker must never have more than a
    # few tens delivered and not accepted.
    q, total = unique("backlog"), 3000
    direct = os.path.join(os.path.dirname(os.environ["CMI_BIN"]), "bench", "rmq-direct")
    check(os.path.exists(direct), "%s is missing (built with cmi)" % direct)
    subprocess.run([direct, "send", "127.0.0.1:%d" % node.amqp_port, "/queue/" + q, str(total), "64", "200"],
                   check=True, timeout=120, capture_output=True)
    check(_unacked(node, q)[0] == total, "the queue holds %r" % (_unacked(node, q),))
    # Flows of 10 ms: a few hundred messages a second, which keeps the
    # broker's own backlog of dispositions (it counts as unacknowledged
    # too) out of the figure.
    body = '<testSuspend millis="10"/><rabbitmq.accept/>'
    with deployment(node, q, body, [("rabbitmq.consumer.initial.credit", "10")]) as d:
        cmi = start(d)
        try:
            peak, samples, deadline = 0, 0, time.monotonic() + 120
            while True:
                messages, unacked = _unacked(node, q)
                samples += 1
                peak = max(peak, unacked)
                if messages == 0:
                    break
                check(time.monotonic() < deadline, "%r messages still in the queue after 120 s" % messages)
            print("      3,000 messages, credit 10: at most %d delivered and not accepted (%d samples)"
                  % (peak, samples), flush=True)
            check(peak <= 200, "the broker had %d messages out to cmi at once for a credit of 10" % peak)
        finally:
            cmi.stop_clean()


def test_malformed_payload_discarded_and_next_processed(node):
    q = unique("malformed")
    with deployment(node, q, LOG_GOT + "<rabbitmq.accept/>") as d:
        cmi = start(d)
        try:
            node.publish(q, "{not json", content_type="application/json")
            # Judged by the engine's readers: an entity bomb and an element
            # with 5,000 attributes (quadratic for libxml2) are refused
            # before a flow or libxml2 spends anything on them.
            node.publish(q, '<!DOCTYPE r [<!ENTITY e "%s">]><r>%s</r>' % ("A" * 1000, "&e;" * 1000),
                         content_type="application/xml")
            node.publish(q, "<r %s/>" % " ".join('a%d="1"' % i for i in range(5000)), content_type="application/xml")
            node.publish(q, '{"n": 2}', content_type="application/json")
            cmi.wait_log(r"is not valid application/json \(not valid JSON: .*\): discarded \(the consumer goes on\)",
                         10)
            cmi.wait_log(r"is not valid application/xml \(not valid XML: a DOCTYPE is not allowed.*\): discarded", 10)
            cmi.wait_log(r"is not valid application/xml \(not valid XML: an element has more than 1000 "
                         r"attributes\): discarded", 10)
            cmi.wait_log(r"got 2 ", 10)
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
        finally:
            cmi.stop_clean()


def test_shutdown_releases_what_is_unsettled(node):
    q = unique("shutdown")
    body = LOG_GOT + '<testSuspend millis="600"/>'  # no decision
    with deployment(node, q, body, [("rabbitmq.consumer.initial.credit", "5"),
                                    ("rabbitmq.message.requeue.delay", "60000")]) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(5)])
            wait_for(lambda: len(got_lines(cmi)) == 5, 10, "5 messages in mediation")
            cmi.proc.send_signal(signal.SIGTERM)
            check(cmi.wait_exit() == 0, "exit status")
        finally:
            cmi.kill()
        wait_for(lambda: node.depth(q) == 5, 10, "all 5 back in the queue (has %r)" % node.depth(q))


def test_shutdown_keeps_the_decisions_taken(node):
    # A stop while flows keep accepting: every accepted message is gone
    # from the queue (not released with the shutdown, which would deliver it
    # twice) and every other one is back in it (none lost).
    q, total = unique("stopdecided"), 300
    body = LOG_GOT + '<testSuspend millis="30"/><rabbitmq.accept/><log><message>accepted ${payload.n}</message></log>'
    with deployment(node, q, body, [("rabbitmq.consumer.initial.credit", "20")]) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(total)])
            wait_for(lambda: len(got_lines(cmi, r"accepted (\d+)")) >= 40, 20, "40 messages accepted")
            cmi.proc.send_signal(signal.SIGTERM)
            check(cmi.wait_exit() == 0, "exit status")
        finally:
            cmi.kill()
        accepted = [int(n) for n in got_lines(cmi, r"accepted (\d+)")]
        # The depth settles as soon as the connection is gone; a wrong
        # count is explained by the comparison below.
        wait_for(lambda: node.depth(q) >= total - len(accepted), 10,
                 "%d left in the queue (has %r)" % (total - len(accepted), node.depth(q)))
        left = [json.loads(b)["n"] for b in node.drain(q)]
        print("      %d accepted before the stop, %d back in the queue" % (len(accepted), len(left)), flush=True)
        check(not set(accepted) & set(left), "accepted and released: %r" % sorted(set(accepted) & set(left))[:10])
        check(sorted(accepted + left) == list(range(total)), "lost or duplicated: %d + %d of %d"
              % (len(accepted), len(left), total))


def _consumers(node, q):
    out = node.ctl("list_queues", "-p", "/", "name", "consumers", "--no-table-headers", "--quiet")
    return next((int(n) for name, n in (ln.split("\t") for ln in out.splitlines() if "\t" in ln) if name == q), None)


def test_exchange_binding_and_concurrent_consumers(node):
    # cmi declares the queue and a topic exchange and binds them; three
    # receivers share the queue; only what the binding routes arrives.
    q, x = unique("bound"), unique("orders-x")
    params = [("rabbitmq.exchange.name", x), ("rabbitmq.exchange.type", "TOPIC"),
              ("rabbitmq.routing.key", "orders.*"), ("rabbitmq.concurrent.consumers.count", "3"),
              ("rabbitmq.management.url", "http://127.0.0.1:%d" % node.mgmt_port)]
    with deployment(node, q, LOG_GOT + "<rabbitmq.accept/>", params) as d:
        cmi = start(d)
        try:
            wait_for(lambda: len(re.findall(r"consuming from queue", cmi.log_text())) == 3, 10, "3 receivers")
            wait_for(lambda: _consumers(node, q) == 3, 10, "3 consumers on the queue (has %r)" % _consumers(node, q))
            node.send("/exchange/%s/orders.eu" % x, [json.dumps({"n": i}) for i in range(6)])
            node.send("/exchange/%s/invoices.eu" % x, [json.dumps({"n": 100})], unroutable=True)
            wait_for(lambda: len(got_lines(cmi)) == 6, 10, "6 routed messages mediated")
            check(sorted(int(n) for n in got_lines(cmi)) == list(range(6)), "got %r" % got_lines(cmi))
            wait_for(lambda: node.depth(q) == 0, 10, "the queue empty")
        finally:
            cmi.stop_clean()


def _declared(node, what, name):
    return node.api("GET", "/api/%s/%%2F/%s" % (what, name))


def test_every_queue_and_exchange_option_reaches_the_broker(node):
    # Issue 20: the inbound endpoint's queue and exchange options, each with
    # a value other than its default, under MI's names (and cmi's earlier
    # names of the connection parameters MI names otherwise), show on the
    # broker as the declaration's arguments; MI's generic inbound.behavior
    # is accepted (it means nothing to cmi).
    mgmt = ("rabbitmq.management.url", "http://127.0.0.1:%d" % node.mgmt_port)
    classic, quorum, stream, x = unique("classic"), unique("quorum"), unique("stream"), unique("hdr-x")
    endpoints = {
        classic: [("inbound.behavior", "eventBased"), ("rabbitmq.classic.max.priority", "7"),
                  ("rabbitmq.classic.version", "V2"), ("rabbitmq.queue.overflow.strategy", "REJECT_PUBLISH"),
                  ("rabbitmq.queue.arguments", "x-message-ttl=60000"), ("rabbitmq.queue.auto.delete", "true"),
                  ("rabbitmq.exchange.name", x), ("rabbitmq.exchange.type", "HEADERS"),
                  ("rabbitmq.exchange.arguments", "alternate-exchange=amq.fanout"),
                  ("rabbitmq.exchange.auto.delete", "true"),
                  ("rabbitmq.header.exchange.binding.arguments", "x-match=any,kind=a"),
                  ("rabbitmq.connection.establish.retry.count", "2"),
                  ("rabbitmq.connection.recovery.interval", "500"), mgmt],
        quorum: [("rabbitmq.queue.type", "QUORUM"), ("rabbitmq.quorum.initial.member.count", "1"),
                 ("rabbitmq.quorum.delivery.limit", "5"), ("rabbitmq.quorum.dead.letter.strategy", "AT_LEAST_ONCE"),
                 ("rabbitmq.queue.overflow.strategy", "REJECT_PUBLISH"),
                 ("rabbitmq.connection.recovery.retry.interval", "500"), mgmt],
        stream: [("rabbitmq.queue.type", "STREAM"), ("rabbitmq.stream.initial.member.count", "1"),
                 ("rabbitmq.stream.max.age", "7D"), ("rabbitmq.stream.max.segment.size", "1000000"), mgmt],
    }
    files = {"sequences/onMessage.xml": sequence("onMessage", LOG_GOT + "<rabbitmq.accept/>"),
             "sequences/onError.xml": ON_ERROR}
    for i, (q, params) in enumerate(endpoints.items()):
        files["inbound-endpoints/in%d.xml" % i] = endpoint(node, q, params).replace('name="In"', 'name="In%d"' % i)
    with Deployment(files) as d:
        cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            wait_for(lambda: all(_consumers(node, q) == 1 for q in (classic, quorum)), 20,
                     "consumers on the classic and the quorum queue")
            wait_for(lambda: node.queue(stream) is not None, 20, "the stream declared")
            args = {q: _declared(node, "queues", q)["arguments"] for q in endpoints}
            print("      declared: %s" % json.dumps(args, sort_keys=True), flush=True)
            want = {"x-max-priority": 7, "x-queue-version": 2, "x-overflow": "reject-publish", "x-message-ttl": 60000}
            if node.broker.is4:
                want["x-queue-type"] = "classic"  # 4.0 records every queue's type itself
            check(args[classic] == want, "classic %r" % args[classic])
            check(_declared(node, "queues", classic)["auto_delete"] is True, "the classic queue is not auto-delete")
            check(args[quorum] == {"x-queue-type": "quorum", "x-quorum-initial-group-size": 1, "x-delivery-limit": 5,
                                   "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"},
                  "quorum %r" % args[quorum])
            check(args[stream] == {"x-queue-type": "stream", "x-initial-cluster-size": 1, "x-max-age": "7D",
                                   "x-stream-max-segment-size-bytes": 1000000}, "stream %r" % args[stream])
            ex = _declared(node, "exchanges", x)
            check(ex["type"] == "headers" and ex["auto_delete"] is True and
                  ex["arguments"] == {"alternate-exchange": "amq.fanout"}, "exchange %r" % ex)
            binds = node.api("GET", "/api/bindings/%%2F/e/%s/q/%s" % (x, classic))
            check([b["arguments"] for b in binds] == [{"x-match": "any", "kind": "a"}], "bindings %r" % binds)
            text = cmi.log_text()
            check("inbound.behavior has no effect in cmi" in text, "no debug line for inbound.behavior")
        finally:
            cmi.stop_clean()


def test_auto_ack_settles_on_arrival(node):
    # Auto-ack: the broker forgets the message when it is delivered, so
    # nothing is unacknowledged while flows are suspended, a flow without a
    # decision is not requeued, and shutdown has nothing to release.
    q = unique("autoack")
    body = LOG_GOT + '<testSuspend millis="1500"/><log><message>done ${payload.n}</message></log>'
    with deployment(node, q, body, [("rabbitmq.auto.ack.enabled", "true"),
                                    ("rabbitmq.consumer.initial.credit", "5")]) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(5)])
            wait_for(lambda: len(got_lines(cmi)) == 5, 10, "5 messages in mediation")
            check(len(re.findall(r"done \d+", cmi.log_text())) == 0, "flows finished too early for the test")
            check(node.depth(q) == 0, "auto-ack: the broker still holds %r" % node.depth(q))
            wait_for(lambda: len(re.findall(r"done \d+", cmi.log_text())) == 5, 10, "5 flows done")
            check("requeued" not in cmi.log_text(), "auto-acked messages requeued")
            node.send("/amq/queue/" + q, [json.dumps({"n": 9})])
            wait_for(lambda: len(got_lines(cmi)) == 6, 10, "one more in mediation")
            cmi.proc.send_signal(signal.SIGTERM)
            check(cmi.wait_exit() == 0, "exit status")
        finally:
            cmi.kill()
        check(node.depth(q) == 0, "auto-acked message back in the queue after shutdown")


def test_on_error_sequence_decides(node):
    # A flow that fails runs the endpoint's onError sequence, whose
    # decision (discard: dead-lettered by a policy) is applied.
    q, dlq = unique("onerror"), unique("onerror-dlq")
    node.declare_queue(dlq)
    node.policy("dlx-" + q, "^%s$" % q, {"dead-letter-exchange": "", "dead-letter-routing-key": dlq})
    on_error = sequence("onError", '<log category="WARN"><message>fault: ${props.synapse.ERROR_MESSAGE}</message>'
                                   '</log><rabbitmq.discard/>')
    body = LOG_GOT + '<testSuspend millis="10" fail="true"/><log><message>not reached</message></log>'
    with deployment(node, q, body, more={"sequences/onError.xml": on_error}) as d:
        cmi = start(d)
        try:
            node.send("/amq/queue/" + q, [json.dumps({"n": 1})])
            cmi.wait_log(r"fault: ", 10)
            wait_for(lambda: node.depth(dlq) == 1, 10, "dead-lettered by onError's discard")
            check(node.depth(q) == 0, "the queue still holds %r" % node.depth(q))
            check("not reached" not in cmi.log_text(), "the flow went on after its fault")
        finally:
            cmi.stop_clean()
            node.ctl("clear_policy", "dlx-" + q)


def test_broker_restart_mid_stream(node):
    # Every message is processed at least once (each flow republishes its
    # id to a results queue before accepting), none lost.
    q, results = unique("stream"), unique("results")
    total = 2000
    body = (LOG_GOT + '<testSuspend millis="40"/>'
            '<rabbitmq.publishMessage configKey="RMQ"><queue>%s</queue><publishTimeout>20000</publishTimeout>'
            '<responseVariable>r</responseVariable></rabbitmq.publishMessage><rabbitmq.accept/>' % results)
    more = {"local-entries/rmq.xml": entry("127.0.0.1:%d" % node.amqp_port, "http://127.0.0.1:%d" % node.mgmt_port)}
    # The messages are all queued before cmi starts consuming them.
    node.declare_queue(q)
    node.send("/amq/queue/" + q, [json.dumps({"n": i}) for i in range(total)])
    with deployment(node, q, body, [("rabbitmq.consumer.initial.credit", "10"),
                                    ("rabbitmq.connection.recovery.interval", "500")], more) as d:
        cmi = start(d)
        try:
            # cmi's log, not rabbitmqctl (a second per call), says when.
            wait_for(lambda: len(got_lines(cmi)) >= 200, 20, "consumption under way")
            left = total - len(got_lines(cmi))
            node.stop_app()
            at_stop = len(got_lines(cmi))
            time.sleep(1.5)
            node.start_app()
            back = time.monotonic()
            # The flows cut off by the restart end as soon as their publishes
            # go through; their slots must come back to the new receiver then,
            # not when something else wakes its connection (the publish
            # timeout, 20 s, would hide a stall here).
            wait_for(lambda: len(got_lines(cmi)) >= at_stop + 50, 12, "consumption resumed after the restart")
            wait_for(lambda: node.depth(q) == 0, 60, "the source queue consumed (has %r)" % node.depth(q))
            took = time.monotonic() - back
            bodies = node.drain(results)
            seen = {}
            for b in bodies:
                n = json.loads(b)["n"]
                seen[n] = seen.get(n, 0) + 1
            missing = [n for n in range(total) if n not in seen]
            dups = sum(c - 1 for c in seen.values())
            print("      %d messages, %d still queued at the restart; processed %d times (%d distinct), duplicates "
                  "%d, missing %d; consumption finished %.1fs after the broker's return"
                  % (total, left, len(bodies), len(seen), dups, len(missing), took), flush=True)
            check(left > 1000, "the restart came too late to test anything (%d left)" % left)
            check(not missing, "%d messages never processed, e.g. %r" % (len(missing), missing[:5]))
        finally:
            cmi.stop_clean()
