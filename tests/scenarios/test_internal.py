"""The internal port (docs/operations.md, "Metrics and health"): MI's
Prometheus metrics checked against the requests the test made, /healthz
and /liveness as MI answers them, readiness from the connectors' report
hooks (the echo connector's), the options, and a strict reading of the
text format (every sample under its family's HELP and TYPE, no series
twice)."""
import json
import os
import re
import signal
import socket
import threading
import time

from harness import SLOW, Cmi, check, exchange_until_close, run_cmi
from test_engine import Deployment, in_thread

NS = 'xmlns="http://ws.apache.org/ns/synapse"'

FILES = {
    "api/a.xml": '<api %s name="A" context="/a">'
                 '<resource methods="GET" uri-template="/ok"><inSequence><payloadFactory media-type="json">'
                 '<format>{"ok": true}</format></payloadFactory><respond/></inSequence></resource>'
                 '<resource methods="GET" uri-template="/fail"><inSequence><throwError errorMessage="asked to"/>'
                 '</inSequence></resource>'
                 '<resource methods="GET" uri-template="/slow"><inSequence><testSuspend millis="3000"/>'
                 '<payloadFactory media-type="json"><format>{"slow": true}</format></payloadFactory><respond/>'
                 '</inSequence></resource></api>' % NS,
    "api/v.xml": '<api %s name="V" context="/v" version="1.0.0" version-type="url">'
                 '<resource methods="GET" uri-template="/q"><inSequence><payloadFactory media-type="json">'
                 '<format>{"v": 1}</format></payloadFactory><respond/></inSequence></resource></api>' % NS,
    "api/q.xml": '<api %s name="Q&quot;\\" context="/q"><resource methods="GET" uri-template="/"><inSequence>'
                 '<respond/></inSequence></resource></api>' % NS,
    "proxy-services/p.xml": '<proxy %s name="P" transports="http"><target><inSequence><payloadFactory '
                            'media-type="json"><format>{"p": 1}</format></payloadFactory><respond/></inSequence>'
                            '</target></proxy>' % NS,
    "sequences/fault.xml": '<sequence %s name="fault"><property name="HTTP_SC" value="500" scope="axis2"/>'
                           '<payloadFactory media-type="json"><format>{"fault": true}</format></payloadFactory>'
                           '<respond/></sequence>' % NS,
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')


def parse(text):
    """Prometheus text format 0.0.4, strictly: returns ({(name, labels): value}, {family: type})."""
    samples, types, helps, current = {}, {}, set(), None
    check(text.endswith("\n"), "the exposition ends with a newline")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            check(name not in helps, "HELP of %s twice" % name)
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            check(name in helps and name not in types, "TYPE of %s: after its HELP, once" % name)
            check(kind in ("counter", "gauge", "histogram"), "type %r" % kind)
            types[name], current = kind, name
            continue
        m = SAMPLE.match(line)
        check(m, "not a sample line: %r" % line)
        name, raw, value = m.groups()
        labels, pos = {}, 0
        for lm in LABEL.finditer(raw or ""):
            check(lm.start() == pos, "labels of %r" % line)
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        check(pos == len(raw or ""), "labels of %r" % line)
        family = name
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
                family = name[:-len(suffix)]
        check(family == current, "%s outside its family's block (in %s)" % (name, current))
        key = (name, tuple(sorted(labels.items())))
        check(key not in samples, "series twice: %r" % (key,))
        samples[key] = float(value)
    check_histograms(samples, types)
    return samples, types


def check_histograms(samples, types):
    """Each histogram series: buckets that never fall as le grows, and
    le="+Inf" equal to _count (also while workers count)."""
    for family in (f for f, t in types.items() if t == "histogram"):
        series = {}
        for (name, labels), v in samples.items():
            if name == family + "_bucket":
                rest = tuple(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((float("inf") if le == "+Inf" else float(le), v))
        for rest, buckets in series.items():
            counts = [v for _, v in sorted(buckets)]
            check(counts == sorted(counts), "%s%r: buckets fall: %r" % (family, rest, counts))
            check(counts[-1] == samples.get((family + "_count", rest)), "%s%r: +Inf %r, _count %r"
                  % (family, rest, counts[-1], samples.get((family + "_count", rest))))


def eventually(fn, timeout, what):
    """fn() true within timeout (x SLOW): counts land when a flow ends,
    just after its answer has been written."""
    deadline = time.monotonic() + timeout * SLOW
    while not fn():
        check(time.monotonic() < deadline, what)
        time.sleep(0.02)


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape(cmi):
    status, headers, body = cmi.internal("/metric-service/metrics")
    check(status == 200 and headers.get("content-type", "").startswith("text/plain"), "metrics: %s %r"
          % (status, headers))
    return parse(body.decode())


def test_metrics_count_what_the_test_sent():
    with Deployment(FILES) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            url = "http://127.0.0.1:%d" % cmi.port
            conns = [cmi.connection() for _ in range(3)]  # three keep-alive connections, both workers
            for i in range(12):
                check(cmi.request("GET", "/a/ok", conn=conns[i % 3])[0] == 200, "ok")
            for i in range(5):
                check(cmi.request("GET", "/a/fail", conn=conns[i % 3])[0] == 500, "fail")
            for _ in range(4):
                check(cmi.request("GET", "/v/1.0.0/q")[0] == 200, "versioned")
            for _ in range(3):
                check(cmi.request("POST", "/services/P", b"<a/>", {"Content-Type": "application/xml"})[0] == 200, "P")
            check(cmi.request("GET", "/nowhere")[0] == 404, "no API")
            check(cmi.request("GET", "/q")[0] == 200, "Q")
            # one slow request (3 s) in flight while scraped
            t, res = in_thread(lambda: cmi.request("GET", "/a/slow"))
            cmi.wait_log(r"GET /a/slow", 5)
            eventually(lambda: value(scrape(cmi)[0], "cmi_messages_in_flight") == 1, 2, "one message in flight")
            # the three held connections and the slow one (the one-shot ones close soon after their answer)
            eventually(lambda: value(scrape(cmi)[0], "cmi_http_connections") == 4, 2, "four open connections")
            t.join(10)
            check(res.get("value", (0,))[0] == 200, "slow: %r" % res)
            for c in conns:
                c.close()
            a = {"service_name": "A", "service_type": "api", "invocation_url": url + "/a"}
            eventually(lambda: value(scrape(cmi)[0], "wso2_integration_api_request_count_total", **a) == 18, 5,
                       "A's 18 requests counted")
            eventually(lambda: value(scrape(cmi)[0], "wso2_integration_proxy_request_count_total",
                                     service_name="P", service_type="proxy") == 3, 5, "P's 3 requests counted")
            s, types = scrape(cmi)
            check(value(s, "wso2_integration_api_request_count_total", **a) == 18,
                  "A's requests: %r" % value(s, "wso2_integration_api_request_count_total", **a))
            check(value(s, "wso2_integration_api_request_count_error_total", **a) == 5, "A's errors")
            check(value(s, "wso2_integration_api_request_count_total", service_name="A", service_type="api",
                        invocation_url="") == 0, "MI's series of every deployed API at 0")
            h = "wso2_integration_api_latency_seconds"
            check(value(s, h + "_count", **a) == 18, "histogram count")
            check(value(s, h + "_bucket", le="1.0", **a) == 17 and value(s, h + "_bucket", le="5.0", **a) == 18
                  and value(s, h + "_bucket", le="+Inf", **a) == 18, "the 3 s request between 1 and 5 s")
            les = ["0.19", "0.2", "0.25", "0.3", "0.35", "0.4", "0.5", "0.6", "1.0", "5.0", "+Inf"]
            counts = [value(s, h + "_bucket", le=le, **a) for le in les]
            check(counts == sorted(counts), "cumulative buckets, MI's bounds: %r" % counts)
            total = value(s, h + "_sum", **a)
            check(2.9 <= total < 5.0 * SLOW, "latency sum %r (a timer of the loop's clock: a ms early at most)" % total)
            q = {"service_name": 'Q\\"\\\\', "service_type": "api", "invocation_url": url + "/q"}
            check(value(s, "wso2_integration_api_request_count_total", **q) == 1, "a name with \" and \\ escaped")
            v = {"service_name": "V:v1.0.0", "service_type": "api", "invocation_url": url + "/v/1.0.0"}
            check(value(s, "wso2_integration_api_request_count_total", **v) == 4, "versioned API as MI names it")
            p = {"service_name": "P", "service_type": "proxy"}
            check(value(s, "wso2_integration_proxy_request_count_total", **p) == 3, "proxy requests")
            check(value(s, "wso2_integration_proxy_request_count_error_total", **p) == 0, "proxy errors")
            check(value(s, "wso2_integration_proxy_latency_seconds_count", **p) == 3, "proxy latency count")
            for name, kind in (("A", "api"), ("V:v1.0.0", "api"), ("P", "proxy")):
                up = value(s, "wso2_integration_service_up", service_name=name, service_type=kind)
                check(up and abs(up - time.time()) < 120, "service_up of %s: %r" % (name, up))
            check(value(s, "wso2_integration_server_version", version=cmi_version(), update_level="-"),
                  "server_version")
            check(types.get("wso2_integration_inbound_endpoint_latency_seconds") == "histogram", "inbound family")
            check(value(s, "cmi_messages_in_flight") == 0 and value(s, "process_resident_memory_bytes") > 1e6
                  and value(s, "process_open_fds") > 5 and value(s, "cmi_ready") == 1, "gauges")
        finally:
            cmi.stop_clean()


def cmi_version():
    rc, out, _ = run_cmi(["version"])
    return out.split()[1]


def test_healthz_liveness_and_the_drain():
    with Deployment(FILES) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            check(re.search(r"internal port on 127\.0\.0\.1:\d+: GET /metric-service/metrics, /healthz, /liveness",
                            cmi.log_text()), "the internal port is logged, on loopback by default")
            status, headers, body = cmi.internal("/healthz")
            check(status == 200 and body == b'{"version":"%s","update_level":"-","status":"ready"}'
                  % cmi_version().encode() and headers["content-type"] == "application/json", "ready: %r" % body)
            status, _, body = cmi.internal("/liveness")
            check(status == 200 and body == b'{"server" : "started"}', "liveness: MI's bytes: %r" % body)
            check(cmi.internal("/healthz/")[0] == 200 and cmi.internal("/healthz?x=1")[0] == 200, "MI's forms")
            raw, _ = exchange_until_close(cmi.internal_port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n"
                                                             b"Connection: close\r\n\r\n")
            head, _, rest = raw.partition(b"\r\n\r\n")
            check(head.startswith(b"HTTP/1.1 200") and b"content-length: 55" in head.lower() and rest == b"",
                  "HEAD: the headers, no body: %r" % raw)
            status, headers, _ = cmi.internal("/healthz", method="POST")
            check(status == 405 and headers.get("allow") == "GET, HEAD", "POST: %s" % status)
            for path in ("/", "/healthzz", "/metric-service", "/../healthz/x"):
                check(cmi.internal(path)[0] == 404, "%s: 404" % path)
            # SIGTERM with a request in flight: not ready (draining) while it ends
            t, res = in_thread(lambda: cmi.request("GET", "/a/slow"))
            cmi.wait_log(r"GET /a/slow", 5)
            cmi.proc.send_signal(signal.SIGTERM)
            cmi.wait_log(r"draining", 5)
            status, _, body = cmi.internal("/healthz")
            check(status == 503 and b'"status":"not ready"' in body and b"draining" in body, "draining: %r" % body)
            check(cmi.internal("/liveness")[0] == 200, "alive while draining")
            t.join(10)
            check(res.get("value", (0,))[0] == 200, "the request in flight is answered")
            check(cmi.wait_exit() == 0, "exit 0")
        finally:
            if cmi.proc.poll() is None:
                cmi.proc.kill()


def echo_files(unready=None, interval="100", count=12):
    extra = '<echo.unready>%s</echo.unready>' % unready if unready else ""
    return {
        "local-entries/conn.xml": '<localEntry %s key="Conn"><echo.init><name>c</name>%s'
                                  '</echo.init></localEntry>' % (NS, extra),
        "inbound-endpoints/t.xml": '<inboundEndpoint %s name="Ticks" class="org.example.cmi.EchoTimer" '
                                   'sequence="tick"><parameters><parameter name="echo.interval">%s</parameter>'
                                   '<parameter name="echo.count">%d</parameter></parameters></inboundEndpoint>'
                                   % (NS, interval, count),
        "sequences/tick.xml": '<sequence %s name="tick"><log><message>tick ${payload.tick}</message></log>'
                              '</sequence>' % NS,
    }


def test_readiness_and_metrics_from_connector_reports():
    # The echo connector reports: its config not ready when echo.unready is
    # set (a reason with quotes and a backslash: escaped in JSON), its
    # listener not ready before its first tick, a counter and a histogram.
    reason = 'broker "b\\1" unreachable'
    with Deployment(echo_files(unready=reason, interval=str(int(4000 * max(1, SLOW / 3))), count=2)) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, body = cmi.internal("/healthz")
            doc = json.loads(body)
            check(status == 503 and doc["status"] == "not ready" and doc["reasons"] == [
                "connection Conn: %s" % reason, "inbound endpoint Ticks: no tick done yet"], "not ready: %r" % body)
            s, _ = scrape(cmi)
            check(value(s, "cmi_ready") == 0 and value(s, "cmi_echo_instance_up", connection="Conn", mode="KEEP") == 1,
                  "cmi_ready 0, the instance's gauge with its labels")
            cmi.wait_log(r"all 2 ticks done", 30)
            status, _, body = cmi.internal("/healthz")
            check(status == 503 and json.loads(body)["reasons"] == ["connection Conn: %s" % reason],
                  "only the config is not ready now: %r" % body)
        finally:
            cmi.stop_clean()
    # What counts is configurable: connections do not, inbound endpoints do.
    with Deployment(echo_files(unready="down")) as d:
        cmi = Cmi(d, workers=1, args=["--readiness", "inbound-endpoints"]).start()
        try:
            cmi.wait_log(r"all 12 ticks done", 30)
            status, _, body = cmi.internal("/healthz")
            check(status == 200, "connections do not count: %s %r" % (status, body))
            s, types = scrape(cmi)
            ticks = {"inbound_endpoint": "Ticks"}
            check(value(s, "cmi_echo_ticks_done_total", **ticks) == 12 and types["cmi_echo_ticks_done_total"] ==
                  "counter", "the listener's counter")
            check([value(s, "cmi_echo_tick_numbers_bucket", le=le, **ticks) for le in ("1", "10", "+Inf")] ==
                  [1, 10, 12] and value(s, "cmi_echo_tick_numbers_sum", **ticks) == 78
                  and value(s, "cmi_echo_tick_numbers_count", **ticks) == 12, "the histogram, cumulated by the host")
            ib = {"service_name": "Ticks", "service_type": "inbound-endpoint"}
            check(value(s, "wso2_integration_inbound_endpoint_request_count_total", **ib) == 12
                  and value(s, "wso2_integration_inbound_endpoint_latency_seconds_count", **ib) == 12,
                  "MI's inbound endpoint metrics")
        finally:
            cmi.stop_clean()


def test_options_off_switches_and_errors():
    with Deployment(FILES) as d:
        cmi = Cmi(d, args=["--internal-port", "off"]).start()
        try:
            check(cmi.internal_port is None and "internal port" not in cmi.log_text(), "off: no internal port")
        finally:
            cmi.stop_clean()
        cmi = Cmi(d, args=["--metrics", "false"]).start()
        try:
            check(cmi.internal("/metric-service/metrics")[0] == 404 and cmi.internal("/healthz")[0] == 200,
                  "metrics off, health on")
            check(cmi.request("GET", "/a/ok")[0] == 200, "served without counting")
        finally:
            cmi.stop_clean()
        conf = os.path.join(d, "cmi.xml")
        with open(conf, "w") as f:
            f.write('<cmi><internal host="127.0.0.1" port="off"/></cmi>')
        rc, _, out = run_cmi(["run", d, "--http-port", "0", "--config", conf, "--drain-timeout", "x"], internal=False)
        check(rc == 2, "a bad flag after the file: %s" % rc)
    with Deployment(echo_files(unready="down")) as d:
        conf = os.path.join(d, "cmi.xml")
        with open(conf, "w") as f:
            f.write('<cmi><internal host="127.0.0.1" port="0" metrics="false" readiness="deployment"/></cmi>')
        cmi = Cmi(d, args=["--config", conf]).start()
        try:
            check(cmi.internal("/metric-service/metrics")[0] == 404, "the file's metrics=false")
            check(cmi.internal("/healthz")[0] == 200, "the file's readiness=deployment: the config's reason ignored")
        finally:
            cmi.stop_clean()
    with Deployment(FILES) as d:
        conf = os.path.join(d, "cmi.xml")
        for args, err in ((["--internal-port", "70000"], "not a port number"),
                          (["--internal-port", "-1"], "not a port number"),
                          (["--metrics", "maybe"], "must be 'true' or 'false'"),
                          (["--readiness", "connections,brokers"], "must list")):
            rc, _, out = run_cmi(["run", d, "--http-port", "0"] + args)
            check(rc == 2 and err in out, "%s: %s %r" % (args, rc, out))
        with open(conf, "w") as f:
            f.write('<cmi><internal port="x" colour="blue"/></cmi>')
        rc, _, out = run_cmi(["run", d, "--http-port", "0", "--config", conf])
        check(rc == 2 and "unknown attribute 'colour'" in out and "port=\"x\"" in out, "config errors: %r" % out)
        # the port taken: a clear error, no start
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            rc, _, out = run_cmi(["run", d, "--http-port", "0", "--internal-port", str(taken.getsockname()[1])])
            check(rc == 1 and "internal port" in out and "in use" in out, "port taken: %s %r" % (rc, out))
            with open(conf, "w") as f:  # the same, from the file's port
                f.write('<cmi><internal port="%d"/></cmi>' % taken.getsockname()[1])
            rc, _, out = run_cmi(["run", d, "--http-port", "0", "--config", conf], internal=False)
            check(rc == 1 and "in use" in out, "the file's port taken: %s %r" % (rc, out))
        finally:
            taken.close()


def test_scrapes_under_load_stay_consistent():
    # Two workers serving while a scraper reads: the counts only grow, and
    # at the end they equal what was sent (no count lost between shards).
    with Deployment(FILES) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            n, stop = 400, threading.Event()
            seen = []

            def scraper():  # parse() checks the histograms' invariants in every scrape
                while not stop.is_set():
                    s, _ = scrape(cmi)
                    seen.append(sum(v for (name, _), v in s.items()
                                    if name == "wso2_integration_api_request_count_total"))

            t = threading.Thread(target=scraper, daemon=True)
            t.start()
            clients = []
            for k in range(4):
                def client():
                    c = cmi.connection()
                    for _ in range(n // 4):
                        cmi.request("GET", "/a/ok", conn=c)
                    c.close()
                clients.append(threading.Thread(target=client))
                clients[-1].start()
            for c in clients:
                c.join(60)
            eventually(lambda: len(seen) > 2, 5, "three scrapes or more")
            stop.set()
            t.join(10)
            count = lambda: sum(v for (name, _), v in scrape(cmi)[0].items()  # noqa: E731
                                if name == "wso2_integration_api_request_count_total")
            eventually(lambda: count() == n, 5, "all %d counted" % n)
            check(seen == sorted(seen) and len(seen) > 2, "scrapes saw the counts grow: %r" % seen[:20])
        finally:
            cmi.stop_clean()


def test_backend_call_metrics():
    # The call mediator's backends, per endpoint: 3 answers 2xx and one 404
    # from the named ItemsEP, one 503 and a refused connection from inline
    # endpoints (file:line), a suspension of the refused one.
    from test_call import Backend, closed_port, deployment
    down = {"endpoints/down.xml": '<endpoint %s name="Down"><http method="get" uri-template="http://127.0.0.1:%d/x">'
                                  '<suspendOnFailure><initialDuration>60000</initialDuration></suspendOnFailure>'
                                  '</http></endpoint>' % (NS, closed_port()),
            "api/down.xml": '<api %s name="D" context="/d"><resource methods="GET" uri-template="/"><inSequence>'
                            '<call><endpoint key="Down"/></call><respond/></inSequence></resource></api>' % NS}
    with Backend() as b, deployment(b.port, down) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            for i in range(3):
                check(cmi.request("GET", "/c/items/%d?tag=x" % i)[0] == 200, "items")
            check(cmi.request("GET", "/c/status/404")[0] == 404, "404")
            check(cmi.request("GET", "/c/status/503")[0] == 503, "503")
            check(cmi.request("GET", "/c/refused")[0] == 502, "refused")
            check(cmi.request("GET", "/d")[0] >= 500 and cmi.request("GET", "/d")[0] >= 500, "Down twice")

            def calls(endpoint_re, status):
                s = scrape(cmi)[0]
                return sum(v for (name, labels), v in s.items() if name == "cmi_backend_calls_total"
                           and re.search(endpoint_re, dict(labels)["endpoint"]) and dict(labels)["status"] == status)
            check(calls("^ItemsEP$", "2xx") == 3 and calls("^ItemsEP$", "4xx") == 0, "ItemsEP's three 2xx")
            check(calls(r"call\.xml:\d+$", "4xx") == 1 and calls(r"call\.xml:\d+$", "5xx") == 1
                  and calls(r"call\.xml:\d+$", "error") == 1, "the inline endpoints' 404, 503 and refusal")
            s = scrape(cmi)[0]
            check(value(s, "cmi_backend_call_seconds_count", endpoint="ItemsEP") == 3
                  and value(s, "cmi_backend_call_seconds_bucket", endpoint="ItemsEP", le="+Inf") == 3, "latency")
            check(value(s, "cmi_backend_suspensions_total", endpoint="Down") == 1
                  and value(s, "cmi_backend_suspended", endpoint="Down") == 1
                  and value(s, "cmi_backend_calls_total", endpoint="Down", status="error") == 1,
                  "Down: refused once, suspended (the second call not made)")
        finally:
            cmi.stop_clean()
