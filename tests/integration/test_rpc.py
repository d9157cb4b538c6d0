"""sendRpc against a real RabbitMQ 3.10 (issue 9): requests through cmi's
HTTP API, answered by a responder that is itself a cmi inbound endpoint
(publishMessage to the RABBITMQ_REPLY_TO it received, then accept)."""
import json
import re
import signal
import threading
import time

from harness import Cmi, TestFailure, check, run_cmi
from rabbitmq import wait_for
from test_engine import Deployment
from test_failover import entry, explained
from test_publish import NS, RMQ_CONNECTORS, unique


def rpc_api(queue, extra="", after="<respond/>"):
    return ('<api %s name="Rpc" context="/rpc"><resource methods="POST" uri-template="/call"><inSequence>'
            '<rabbitmq.sendRpc configKey="RMQ"><queue>%s</queue>%s</rabbitmq.sendRpc>%s'
            '</inSequence></resource></api>' % (NS, queue, extra, after))


def responder(queue, delay_ms=0, reply_to='{${headers["RABBITMQ_REPLY_TO"]}}'):
    # Answers {"echo": n, "by": responder}, with an application-property, to
    # where the request asked.
    wait = '<testSuspend millis="%d"/>' % delay_ms if delay_ms else ""
    seq = ('<sequence %s name="answer">%s'
           '<payloadFactory media-type="json"><format>{"echo": ${payload.n}, "by": "responder"}</format>'
           '</payloadFactory><header name="x-answered-by" value="cmi-responder" scope="transport"/>'
           '<rabbitmq.publishMessage configKey="RMQ"><queue>%s</queue><responseVariable>p</responseVariable>'
           '<allowDynamicAddress>true</allowDynamicAddress></rabbitmq.publishMessage><rabbitmq.accept/></sequence>'
           % (NS, wait, reply_to))
    return seq


def inbound(node, queue, credit=50):
    return ('<inboundEndpoint %s name="Responder" sequence="answer" onError="answerError" '
            'class="org.wso2.carbon.inbound.rabbitmq.RabbitMQListener" suspend="false"><parameters>'
            '<parameter name="rabbitmq.server.host.name">127.0.0.1</parameter>'
            '<parameter name="rabbitmq.server.port">%d</parameter>'
            '<parameter name="rabbitmq.server.user.name">guest</parameter>'
            '<parameter name="rabbitmq.server.password">guest</parameter>'
            '<parameter name="rabbitmq.consumer.initial.credit">%d</parameter>'
            '<parameter name="rabbitmq.message.receiver.thread.pool.size">%d</parameter>'
            '<parameter name="rabbitmq.management.url">http://127.0.0.1:%d</parameter>'
            '<parameter name="rabbitmq.queue.name">%s</parameter></parameters></inboundEndpoint>'
            % (NS, node.amqp_port, credit, credit, node.mgmt_port, queue))


ANSWER_ERROR = '<sequence %s name="answerError"><rabbitmq.discard/></sequence>' % NS


def rmq_entry(node):
    return entry("127.0.0.1:%d" % node.amqp_port, "http://127.0.0.1:%d" % node.mgmt_port)


def client_files(node, queue, extra="", after="<respond/>"):
    return {"local-entries/rmq.xml": rmq_entry(node), "api/rpc.xml": rpc_api(queue, extra, after)}


def responder_files(node, queue, delay_ms=0):
    return {"local-entries/rmq.xml": rmq_entry(node), "sequences/answer.xml": responder(queue, delay_ms),
            "sequences/answerError.xml": ANSWER_ERROR, "inbound-endpoints/responder.xml": inbound(node, queue)}


def start(d, workers=2, endpoint=False):
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    cmi = Cmi(d, workers=workers, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
    cmi.wait_log(r"\[rabbitmq:RMQ\] connection \d up: ", 20)
    if endpoint:
        cmi.wait_log(r"\[rabbitmq:Responder\] connection 0: consuming from", 20)
    return cmi


def call(cmi, n, conn=None, timeout=20.0):
    status, headers, data = cmi.request("POST", "/rpc/call", json.dumps({"n": n}).encode(),
                                        {"Content-Type": "application/json"}, conn=conn, timeout=timeout)
    return status, headers, data


def concurrent_calls(cmi, ns, clients=20, timeout=20.0):
    """Runs the calls from `clients` threads; returns {n: (status, headers, body, seconds)}."""
    results, lock, todo = {}, threading.Lock(), list(ns)

    def worker():
        conn = cmi.connection(timeout=timeout)
        while True:
            with lock:
                if not todo:
                    break
                n = todo.pop()
            t0 = time.monotonic()
            try:
                status, headers, data = call(cmi, n, conn=conn, timeout=timeout)
            except OSError as e:
                status, headers, data = 0, {}, str(e).encode()
                conn = cmi.connection(timeout=timeout)
            with lock:
                results[n] = (status, headers, data, time.monotonic() - t0)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    check(not any(t.is_alive() for t in threads), "a client is still waiting for an answer")
    return results


def echo_of(data):
    try:
        return json.loads(data).get("echo")
    except ValueError:
        return None


def late_count(cmi):
    counts = [int(n) for n in re.findall(r"accepted and dropped \((\d+) so far", cmi.log_text())]
    return max(counts) if counts else 0


def test_hundred_concurrent_rpcs_each_get_their_own_reply(node):
    q = unique("rpc")
    with Deployment(dict(client_files(node, q), **responder_files(node, q, delay_ms=50))) as d:
        cmi = start(d, endpoint=True)
        try:
            cmi.wait_log(r"replies to sendRpc come to queue 'cmi-rpc-", 10)
            t0 = time.monotonic()
            res = concurrent_calls(cmi, range(100), clients=100)
            took = time.monotonic() - t0
            bad = {n: r[:3] for n, r in res.items() if r[0] != 200 or echo_of(r[2]) != n}
            print("      100 concurrent RPCs (responder 50 ms each, credit 50) answered in %.2fs" % took, flush=True)
            check(len(res) == 100 and not bad, "wrong or missing replies: %r" % list(bad.items())[:5])
            # The reply's application-properties are the transport headers now.
            check(all(r[1].get("x-answered-by") == "cmi-responder" for r in res.values()),
                  "reply header missing: %r" % res[0][1])
            check(took < 5.0, "100 RPCs of 50 ms took %.1fs: they were not concurrent" % took)
            check(late_count(cmi) == 0, "late replies counted: %d" % late_count(cmi))
        except (TestFailure, AssertionError) as e:
            raise explained(e, cmi) from None
        finally:
            cmi.stop_clean()


def test_timeout_is_exact_and_a_late_reply_is_dropped_and_counted(node):
    q = unique("rpcslow")
    with Deployment(dict(client_files(node, q, "<requestTimeout>700</requestTimeout>"),
                         **responder_files(node, q, delay_ms=2000))) as d:
        cmi = start(d, endpoint=True)
        try:
            t0 = time.monotonic()
            status, _, data = call(cmi, 7)
            took = time.monotonic() - t0
            print("      requestTimeout 700 ms: answered %d after %.2fs" % (status, took), flush=True)
            check(status == 504 and b"701204" in data, "timeout answer: %d %r" % (status, data))
            check(0.65 <= took < 1.5, "requestTimeout 700 ms answered after %.2fs" % took)
            # The responder answers 2 s after the request: accepted, dropped, counted.
            wait_for(lambda: late_count(cmi) == 1, 10, "the late reply counted")
            wait_for(lambda: node.depth(cmi_reply_queue(cmi)) == 0, 10, "the late reply taken off the queue")
        except (TestFailure, AssertionError) as e:
            raise explained(e, cmi) from None
        finally:
            cmi.stop_clean()


def cmi_reply_queue(cmi):
    return re.search(r"replies to sendRpc come to queue '([^']+)'", cmi.log_text()).group(1)


def test_no_responder_times_out_with_701204(node):
    q = unique("rpcnobody")
    with Deployment(client_files(node, q, "<requestTimeout>500</requestTimeout>")) as d:
        cmi = start(d)
        try:
            status, _, data = call(cmi, 1)
            check(status == 504 and b"701204" in data, "answer: %d %r" % (status, data))
            wait_for(lambda: node.depth(q) == 1, 10, "the request waiting in its queue")
        finally:
            cmi.stop_clean()


def test_response_variable_keeps_the_payload_and_reply_queue_options(node):
    # replyToQueue with its options: declared with them; responseVariable:
    # the reply goes there and the payload stays.
    q, rq = unique("rpcvar"), unique("rpcreply")
    extra = ("<replyToQueue>%s</replyToQueue><replyToQueueArguments>x-max-length=1000</replyToQueueArguments>"
             "<replyToQueueType>CLASSIC</replyToQueueType><replyToQueueMaxPriority>5</replyToQueueMaxPriority>"
             "<responseVariable>r</responseVariable>" % rq)
    after = ('<payloadFactory media-type="json"><format>{"sent": ${payload.n}, "reply": ${vars.r.payload}}'
             '</format></payloadFactory><respond/>')
    with Deployment(dict(client_files(node, q, extra, after), **responder_files(node, q))) as d:
        cmi = start(d, endpoint=True)
        try:
            status, _, data = call(cmi, 5)
            check(status == 200, "answer: %d %r" % (status, data))
            body = json.loads(data)
            check(body == {"sent": 5, "reply": {"echo": 5, "by": "responder"}}, "body %r" % body)
            args = node.queue(rq)["arguments"]
            check(args.get("x-max-length") == 1000 and args.get("x-max-priority") == 5, "reply queue args %r" % args)
        finally:
            cmi.stop_clean()


def test_first_request_at_start_up_waits_for_its_reply_queue(node):
    # The request goes out only once the reply queue is declared on its
    # connection (the instance's own queue needs the management API on
    # 3.x): a request made the moment cmi is up still gets its reply.
    q = unique("rpcearly")
    with Deployment(client_files(node, q)) as dc, Deployment(responder_files(node, q)) as dr:
        resp = start(dr, endpoint=True)
        cmi = Cmi(dc, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            status, _, data = call(cmi, 3)
            check(status == 200 and echo_of(data) == 3, "first RPC: %d %r" % (status, data))
        except (TestFailure, AssertionError) as e:
            raise explained(e, cmi) from None
        finally:
            cmi.stop_clean()
            resp.stop_clean()


def test_one_reply_queue_with_two_sets_of_options_is_refused(node):
    q, rq = unique("rpcclash"), unique("rpcclashreply")
    api = ('<api %s name="Rpc" context="/rpc"><resource methods="POST" uri-template="/a"><inSequence>'
           '<rabbitmq.sendRpc configKey="RMQ"><queue>%s</queue><replyToQueue>%s</replyToQueue></rabbitmq.sendRpc>'
           '</inSequence></resource><resource methods="POST" uri-template="/b"><inSequence>'
           '<rabbitmq.sendRpc configKey="RMQ"><queue>%s</queue><replyToQueue>%s</replyToQueue>'
           '<replyToQueueType>QUORUM</replyToQueueType></rabbitmq.sendRpc></inSequence></resource></api>'
           % (NS, q, rq, q, rq))
    with Deployment({"local-entries/rmq.xml": rmq_entry(node), "api/rpc.xml": api}) as d:
        rc, out, err = run_cmi(["run", d, "--http-host", "127.0.0.1", "--http-port", "0"],
                               env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS})
        check(rc == 1, "cmi run exited %d" % rc)
        check("is declared with other replyToQueue* options" in out + err, "output: %s" % (out + err)[-800:])


def test_overwrite_body_makes_the_reply_the_payload(node):
    q = unique("rpcover")
    extra = "<responseVariable>r</responseVariable><overwriteBody>true</overwriteBody>"
    after = '<property name="sent" expression="${vars.r.payload.echo}"/><respond/>'
    with Deployment(dict(client_files(node, q, extra, after), **responder_files(node, q))) as d:
        cmi = start(d, endpoint=True)
        try:
            status, _, data = call(cmi, 9)
            check(status == 200 and json.loads(data) == {"echo": 9, "by": "responder"}, "answer %d %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_two_instances_share_a_request_queue(node):
    # Without replyToQueue each instance has a reply queue of its own: every
    # reply reaches the instance that asked, none is stolen or dropped.
    q = unique("rpcshared")
    with Deployment(dict(client_files(node, q), **responder_files(node, q, delay_ms=20))) as da, \
            Deployment(client_files(node, q)) as db:
        a, b = start(da, endpoint=True), start(db)
        try:
            check(cmi_reply_queue(a) != cmi_reply_queue(b), "both instances use %s" % cmi_reply_queue(a))
            out = {}
            ta = threading.Thread(target=lambda: out.update(a=concurrent_calls(a, range(0, 100), clients=20)))
            tb = threading.Thread(target=lambda: out.update(b=concurrent_calls(b, range(100, 200), clients=20)))
            ta.start(), tb.start(), ta.join(120), tb.join(120)
            for name, res in out.items():
                bad = {n: r[:3] for n, r in res.items() if r[0] != 200 or echo_of(r[2]) != n}
                check(len(res) == 100 and not bad, "instance %s: wrong or missing replies %r" % (name, bad))
            check(late_count(a) == 0 and late_count(b) == 0, "replies dropped: %d, %d" % (late_count(a), late_count(b)))
            print("      two instances, 200 RPCs on one request queue: every reply to its asker", flush=True)
        finally:
            a.stop_clean()
            b.stop_clean()


def test_responder_restart_mid_load(node):
    # The responder (another cmi) is killed and started again while RPCs
    # go on: each request is answered or times out, none hangs.
    q = unique("rpcresp")
    with Deployment(client_files(node, q, "<requestTimeout>3000</requestTimeout>")) as dc, \
            Deployment(responder_files(node, q, delay_ms=10)) as dr:
        client = start(dc)
        resp = start(dr, endpoint=True)
        try:
            stop, res, lock = threading.Event(), [], threading.Lock()

            def load(k):
                conn = client.connection(timeout=20)
                i = 0
                while not stop.is_set():
                    n = k * 100000 + i
                    i += 1
                    t0 = time.monotonic()
                    try:
                        status, _, data = call(client, n, conn=conn, timeout=20)
                    except OSError:
                        status, data, conn = 0, b"", client.connection(timeout=20)
                    with lock:
                        res.append((n, status, echo_of(data), time.monotonic() - t0, time.monotonic()))
            threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(8)]
            for t in threads:
                t.start()
            wait_for(lambda: sum(1 for r in res if r[1] == 200) >= 100, 20, "100 answered")
            resp.proc.send_signal(signal.SIGKILL)
            resp.wait_exit()
            killed = time.monotonic()
            time.sleep(1.0)
            resp = start(dr, endpoint=True)
            wait_for(lambda: any(r[1] == 200 and r[4] > killed + 1.0 for r in res), 20, "answers after the restart")
            stop.set()
            for t in threads:
                t.join(30)
            check(not any(t.is_alive() for t in threads), "a client still waits")
            ok = [r for r in res if r[1] == 200]
            timeouts = [r for r in res if r[1] == 504]
            other = [r for r in res if r[1] not in (200, 504)]
            wrong = [r for r in ok if r[2] != r[0]]
            print("      responder killed and restarted: %d answered, %d timed out (701204), %d other, longest %.2fs"
                  % (len(ok), len(timeouts), len(other), max(r[3] for r in res)), flush=True)
            check(not other and not wrong, "other answers %r, wrong replies %r" % (other[:3], wrong[:3]))
            check(max(r[3] for r in res) < 3.0 + 2.0, "a request waited %.1fs (timeout 3 s)" % max(r[3] for r in res))
        except (TestFailure, AssertionError) as e:
            raise explained(e, client) from None
        finally:
            client.stop_clean()
            resp.kill()


def test_broker_restart_rpcs_resume(node):
    q = unique("rpcrestart")
    with Deployment(dict(client_files(node, q, "<requestTimeout>4000</requestTimeout>"),
                         **responder_files(node, q))) as d:
        cmi = start(d, endpoint=True)
        try:
            first = call(cmi, 1)
            check(first[0] == 200, "first RPC: %s %r" % (first[0], first[2]))
            node.stop_app()
            time.sleep(1.0)
            node.start_app()
            back = time.monotonic()
            # The reply consumer comes back with the pool; RPCs work again.
            def works():
                status, _, data = call(cmi, 2, timeout=10)
                return status == 200 and echo_of(data) == 2
            wait_for(works, 30, "an RPC answered after the broker's return")
            print("      broker restarted: RPCs answered again %.1fs after its return" % (time.monotonic() - back),
                  flush=True)
            res = concurrent_calls(cmi, range(50), clients=10)
            bad = {n: r[:3] for n, r in res.items() if r[0] != 200 or echo_of(r[2]) != n}
            check(not bad, "after the restart: %r" % list(bad.items())[:5])
        except (TestFailure, AssertionError) as e:
            raise explained(e, cmi) from None
        finally:
            cmi.stop_clean()


def test_a_reply_queue_that_cannot_be_had_fails_at_once(node):
    # Issue 20: the reply queue exists with other arguments (made by hand)
    # and sendRpc must declare it otherwise: the broker refuses the
    # declaration.  The request fails at once with the broker's reason
    # (never at its 60 s timeout), the reply consumer says so once and
    # retries on its timer, and no connection is ever dropped over it.
    q, reply = unique("rpc-req"), unique("rpc-refused-reply")
    node.declare_queue(reply, {"x-max-length": 5})
    extra = ("<replyToQueue>%s</replyToQueue><replyToQueueAutoDeclare>true</replyToQueueAutoDeclare>"
             "<replyToQueueArguments>x-max-length=10</replyToQueueArguments>" % reply)
    with Deployment(client_files(node, q, extra)) as d:
        cmi = start(d)
        try:
            t0 = time.monotonic()
            status, _, data = call(cmi, 1)
            took = time.monotonic() - t0
            check(status == 502 and b"701206" in data, "the request: %s %r" % (status, data))
            check(took < 5, "failed after %.1f s" % took)
            said = r"cannot consume from queue '%s'" % reply
            wait_for(lambda: len(re.findall(said, cmi.log_text())) >= 3, 15, "the reply consumer retried twice")
            log = cmi.log_text()
            check(len(re.findall(r"(ERROR|WARN) .*" + said, log)) == 1, "said once above debug level")
            check(not re.search(r"connection \d+ to \S+ down", log), "no connection dropped")
            status, _, data = call(cmi, 2)
            check(status == 502, "a second request: %s %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_a_reply_queue_declared_otherwise_costs_only_its_receiver(node):
    # The reply queue exists with other arguments (made by hand) and
    # sendRpc names it as a plain classic queue.  RabbitMQ 3.x refuses its receiver by ending
    # the receiver's session (4.x answers the declaration with 409): the
    # receiver has a session of its own, so the refusal costs only it.  It
    # is said once and retried on a timer, no connection ever drops (before:
    # every connection of the config reconnected each second), and the
    # config's publishes go on.
    q, reply, other = unique("rpc-req"), unique("rpc-plain-reply"), unique("rpc-other")
    node.declare_queue(reply, {"x-max-length": 5})
    extra = ("<replyToQueue>%s</replyToQueue><replyToQueueType>CLASSIC</replyToQueueType>"
             "<requestTimeout>2000</requestTimeout>" % reply)
    publish = ('<api %s name="Pub" context="/pub"><resource methods="POST"><inSequence>'
               '<rabbitmq.publishMessage configKey="RMQ"><queue>%s</queue></rabbitmq.publishMessage><respond/>'
               '</inSequence></resource></api>' % (NS, other))
    files = client_files(node, q, extra)
    files["api/pub.xml"] = publish
    with Deployment(files) as d:
        cmi = start(d)
        try:
            said = r"(consume from|on) queue '%s'" % reply
            wait_for(lambda: len(re.findall(said, cmi.log_text())) >= 3, 15, "the reply receiver retried twice")
            for n in range(3):
                status, _, data = cmi.request("POST", "/pub", json.dumps({"n": n}), {"Content-Type": "application/json"})
                check(status == 200, "publish %d: %s %r" % (n, status, data))
            wait_for(lambda: node.depth(other) == 3, 10, "the publishes in their queue")
            log = cmi.log_text()
            check(len(re.findall(r"(ERROR|WARN) .*" + said, log)) == 1, "said once above debug level")
            check(not re.search(r"connection \d+ to \S+ down", log), "no connection dropped:\n" + log[-3000:])
        finally:
            cmi.stop_clean()
