"""Reloading under load against a real broker (issue 29; docs/operations.md,
"Reloading"): four HTTP clients publish through two connection configs
while two inbound endpoints consume, and the deployment reloads twenty
times: the publishing APIs change each time, connection config RMQ and
inbound endpoint In never change, connection config RMQ2 changes each time,
inbound endpoint In2 is removed and added again in turn; one more reload
finds a broken API and changes nothing.  Every request is
answered 200, every published message is consumed once (ids counted), RMQ
and In never reconnect nor redeliver (log and metrics)."""
import json
import re
import signal
import threading

from harness import check
from rabbitmq import wait_for
from test_engine import Deployment
from test_inbound import ON_ERROR, endpoint, sequence
from test_internal import parse, value
from test_publish import NS, RMQ_CONNECTORS, connection, unique
from harness import Cmi

RELOADS = 20


def pub_api(name, key, queue, generation):
    # each generation answers with its number: the clients see the reloads
    return ('<api %s name="%s" context="/%s"><resource methods="POST" uri-template="/"><inSequence>'
            '<rabbitmq.publishMessage configKey="%s"><queue>%s</queue><queueType>CLASSIC</queueType>'
            '<publishTimeout>10000</publishTimeout></rabbitmq.publishMessage>'
            '<payloadFactory media-type="json"><format>{"generation": %d}</format></payloadFactory><respond/>'
            '</inSequence></resource></api>' % (NS, name, name.lower(), key, queue, generation))


def files(node, q1, q2, generation):
    f = {
        "local-entries/rmq.xml": connection(node, "RMQ"),
        # RMQ2 changes with each generation (a new pool each time)
        "local-entries/rmq2.xml": connection(node, "RMQ2", "<connectionRecoveryInterval>%d"
                                             "</connectionRecoveryInterval>" % (500 + generation)),
        "api/pub.xml": pub_api("Pub", "RMQ", q1, generation),
        "api/pub2.xml": pub_api("Pub2", "RMQ2", q2, generation),
        "inbound-endpoints/in.xml": endpoint(node, q1, sequence="gotA"),
        "sequences/gotA.xml": sequence("gotA", "<log><message>gotA ${payload.id}</message></log><rabbitmq.accept/>"),
        "sequences/gotB.xml": sequence("gotB", "<log><message>gotB ${payload.id}</message></log><rabbitmq.accept/>"),
        "sequences/onError.xml": ON_ERROR,
    }
    if generation % 2 == 1:  # In2 in odd generations (the first and the last)
        f["inbound-endpoints/in2.xml"] = endpoint(node, q2, sequence="gotB").replace('name="In"', 'name="In2"', 1)
    return f


def deploy(d, fs):
    import os
    for path in set(os.listdir(os.path.join(d, "inbound-endpoints"))):
        if "inbound-endpoints/" + path not in fs:
            os.remove(os.path.join(d, "inbound-endpoints", path))
    for path, text in fs.items():
        full = os.path.join(d, path)
        with open(full + ".new", "w") as f:
            f.write(text)
        os.replace(full + ".new", full)


def metrics(cmi):
    status, _, body = cmi.internal("/metric-service/metrics")
    check(status == 200, "metrics: %s" % status)
    return parse(body.decode())[0]


def test_reloads_under_load_lose_and_duplicate_nothing(node):
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    q1, q2 = unique("reload-a"), unique("reload-b")
    with Deployment(files(node, q1, q2, 1)) as d:
        cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            cmi.wait_log(r"\[rabbitmq:In2\] connection 0: consuming from queue", 30)
            cmi.wait_log(r"\[rabbitmq:In\] connection 0: consuming from queue", 30)
            stop = threading.Event()
            lock = threading.Lock()
            sent = {"Pub": [], "Pub2": []}
            failures = []

            def client(k):
                c = cmi.connection(timeout=30)
                i = 0
                while not stop.is_set():
                    path = "Pub" if i % 2 == 0 else "Pub2"
                    ident = "%d-%d" % (k, i)
                    i += 1
                    try:
                        status, _, body = cmi.request("POST", "/" + path.lower(), json.dumps({"id": ident}).encode(),
                                                      {"Content-Type": "application/json"}, conn=c)
                    except Exception as e:  # noqa: BLE001 (reported below)
                        status, body = None, repr(e).encode()
                        c = cmi.connection(timeout=30)
                    with lock:
                        if status == 200:
                            sent[path].append(ident)
                        else:
                            failures.append((path, ident, status, body[:200]))
                c.close()
            threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
            for t in threads:
                t.start()
            answered = lambda: len(sent["Pub"]) + len(sent["Pub2"])  # noqa: E731
            wait_for(lambda: answered() >= 20, 30, "20 requests answered before the reloads")
            # (4.0.5 may end a session of two connections declaring one queue at
            # once, at the first publishes: README, "RabbitMQ 3.10 and 4.0")
            wait_for(lambda: value(metrics(cmi), "cmi_rabbitmq_connections_up", connection="RMQ") == 2, 10,
                     "RMQ's two connections up")
            first_reload = cmi.log_mark()
            reconnects = value(metrics(cmi), "cmi_rabbitmq_reconnects_total", connection="RMQ")
            for g in range(2, RELOADS + 2):
                before = answered()
                wait_for(lambda: answered() >= before + 20, 30, "20 requests answered before reload %d" % g)
                deploy(d, files(node, q1, q2, g))
                mark = cmi.log_mark()
                cmi.proc.send_signal(signal.SIGHUP)
                cmi.wait_log(r"reload: generation %d serves" % g, 30, start=mark)
                if g == RELOADS // 2:  # and one broken reload, which changes nothing
                    broken = dict(files(node, q1, q2, g))
                    broken["api/pub.xml"] = broken["api/pub.xml"].replace("<respond/>", "<respond>", 1)
                    deploy(d, broken)
                    mark = cmi.log_mark()
                    cmi.proc.send_signal(signal.SIGHUP)
                    cmi.wait_log(r"generation %d goes on serving" % g, 30, start=mark)
            before = answered()
            wait_for(lambda: answered() >= before + 20, 30, "20 requests answered after the last reload")
            stop.set()
            for t in threads:
                t.join(30)
            check(not failures, "%d failed request(s): %r" % (len(failures), failures[:5]))
            got_a = lambda: re.findall(r"gotA (\S+)$", cmi.log_text(), re.M)  # noqa: E731
            got_b = lambda: re.findall(r"gotB (\S+)$", cmi.log_text(), re.M)  # noqa: E731
            wait_for(lambda: set(got_a()) >= set(sent["Pub"]) and set(got_b()) >= set(sent["Pub2"]), 60,
                     "every published message consumed")
            a, b = got_a(), got_b()
            print("      %d requests, %d reloads: %d + %d messages consumed once each"
                  % (answered(), RELOADS, len(a), len(b)), flush=True)
            check(sorted(a) == sorted(sent["Pub"]) and sorted(b) == sorted(sent["Pub2"]),
                  "each message once: %d/%d and %d/%d, duplicates %r" % (
                      len(a), len(sent["Pub"]), len(b), len(sent["Pub2"]),
                      [x for x in set(a + b) if (a + b).count(x) > 1][:5]))
            log = cmi.log_text()
            ups = re.findall(r"\[rabbitmq:RMQ\] connection \d up: ", cmi.log_text(start=first_reload))
            check(not ups, "no connection of RMQ came up again during the reloads: %d" % len(ups))
            check(len(re.findall(r"\[rabbitmq:In\] connection 0: consuming from queue", log)) == 1,
                  "In consumed from one connection all along")
            check(len(re.findall(r"\[rabbitmq:In2\] connection 0: consuming from queue", log)) == RELOADS // 2 + 1,
                  "In2 started in each odd generation")
            s = metrics(cmi)
            check(value(s, "cmi_rabbitmq_reconnects_total", connection="RMQ") == reconnects and
                  value(s, "cmi_rabbitmq_redelivered_total", inbound_endpoint="In") == 0,
                  "no reconnect of RMQ, nothing redelivered to In")
            check(len(re.findall(r"reload: generation \d+ serves .*connection configs: 1 kept, 1 started",
                                 log)) == RELOADS, "each reload kept RMQ and started a new RMQ2")
        finally:
            cmi.stop_clean()
