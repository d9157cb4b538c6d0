"""The call mediator against a real HTTP backend started by the test on
loopback (a threaded Python server): the response replaces the payload,
HTTP_SC holds the backend's status, headers go both ways, 4xx/5xx are
responses, and failures to get an answer are MI's faults (issue 10)."""
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import SLOW, Cmi, check
from test_engine import Deployment

NS = 'xmlns="http://ws.apache.org/ns/synapse"'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Backend", "py")
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the caller gave up (a timeout test)

    def do_GET(self):
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        if self.path.startswith("/status/"):
            self.answer(int(self.path[8:11]), json.dumps({"status": int(self.path[8:11])}))
        elif self.path == "/slow":
            time.sleep(2.0)
            self.answer(200, json.dumps({"slow": True}))
        elif self.path == "/headers":
            self.answer(200, json.dumps({k.lower(): v for k, v in self.headers.items()}))
        elif self.path == "/delay":
            with self.server.lock:
                self.server.in_flight += 1
            time.sleep(0.5)
            with self.server.lock:
                self.server.in_flight -= 1
            self.answer(200, json.dumps({"delayed": True}))
        elif self.path == "/close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.answer(200, json.dumps({"path": self.path, "trace": self.headers.get("X-Trace"),
                                         "port": self.server.server_address[1]}))

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode()
        self.server.seen.append((self.command, self.path, dict(self.headers, **{":version": self.request_version})))
        self.answer(201, json.dumps({"got": json.loads(body), "type": self.headers.get("Content-Type")}))


class Server(ThreadingHTTPServer):
    request_queue_size = 512  # 200 calls connect at once
    daemon_threads = True


class Backend:
    """A threaded HTTP server on loopback (127.0.0.1:port, 0: any) for a
    test's backend; handler: its request handler (this file's by default);
    server.seen collects what the handler records."""

    def __init__(self, port=0, handler=Handler):
        self.want = port
        self.handler = handler

    def __enter__(self):
        self.server = Server(("127.0.0.1", self.want), self.handler)
        self.server.lock = threading.Lock()
        self.server.in_flight = 0
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None
        self.server.seen = []
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def api(port, resources):
    return '<api %s name="Call" context="/c">%s</api>' % (NS, resources)


def resource(template, body, methods="GET"):
    return ('<resource methods="%s" uri-template="%s"><inSequence>%s</inSequence>'
            '<faultSequence><payloadFactory media-type="json"><format>{"code": "${props.synapse.ERROR_CODE}", '
            '"message": "${props.synapse.ERROR_MESSAGE}"}</format></payloadFactory>'
            '<property name="HTTP_SC" scope="axis2" value="502"/><respond/></faultSequence></resource>'
            % (methods, template, body))


def deployment(port, extra_files=None):
    base = "http://127.0.0.1:%d" % port
    files = {
        "endpoints/items.xml": '<endpoint %s name="ItemsEP"><http method="get" '
                               'uri-template="%s/items/{uri.var.id}?tag=${params.queryParams.tag}"/></endpoint>'
                               % (NS, base),
        "api/call.xml": api(port, "".join([
            resource("/items/{id}", '<header name="X-Trace" scope="transport" value="t-1"/>'
                     '<call><endpoint key="ItemsEP"/></call><respond/>'),
            resource("/echo", '<call blocking="true"><endpoint><http method="post" uri-template="%s/echo"/>'
                     '</endpoint></call><respond/>' % base, methods="POST"),
            resource("/status/{code}", '<call><endpoint><address uri="%s/status/{uri.var.code}"/></endpoint></call>'
                     '<log><message>status ${props.axis2.HTTP_SC}</message></log><respond/>' % base),
            resource("/slow", '<call><endpoint><http method="get" uri-template="%s/slow"><timeout>'
                     '<duration>500</duration><responseAction>fault</responseAction></timeout></http></endpoint>'
                     '</call><respond/>' % base),
            resource("/close", '<call><endpoint><http method="get" uri-template="%s/close"/></endpoint></call>'
                     '<respond/>' % base),
            resource("/refused", '<call><endpoint><http method="get" uri-template="http://127.0.0.1:%d/x"/>'
                     '</endpoint></call><respond/>' % closed_port()),
            resource("/slow2", '<call><endpoint><http method="get" uri-template="%s/slow"/></endpoint></call>'
                     '<respond/>' % base),
            resource("/fast", '<payloadFactory media-type="json"><format>{"fast": true}</format></payloadFactory>'
                     '<respond/>'),
        ])),
    }
    files.update(extra_files or {})
    return Deployment(files)


def test_call_named_endpoint_path_query_and_headers_both_ways():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, headers, data = cmi.request("GET", "/c/items/a%20b?tag=x%26y")
            check(status == 200, "status %d %r" % (status, data))
            body = json.loads(data)
            check(body.get("trace") == "t-1" and body.get("path") in ("/items/a%20b?tag=x&y", "/items/a%20b?tag=x%26y"),
                  "backend saw %r" % body)
            check(headers.get("x-backend") == "py", "response header from the backend: %r" % headers)
            check(headers.get("content-type", "").startswith("application/json"), "type %r" % headers)
        finally:
            cmi.stop_clean()


def test_call_post_body_and_backend_status():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/c/echo", json.dumps({"n": 7}).encode(),
                                          {"Content-Type": "application/json"})
            check(status == 201, "the backend's 201 is the answer's status: %d %r" % (status, data))
            check(json.loads(data) == {"got": {"n": 7}, "type": "application/json"}, "body %r" % data)
        finally:
            cmi.stop_clean()


def test_call_4xx_and_5xx_are_responses():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for code in (404, 503):
                status, _, data = cmi.request("GET", "/c/status/%d" % code)
                check(status == code and json.loads(data) == {"status": code}, "%d: %d %r" % (code, status, data))
            cmi.wait_log(r"status 503", 5)
        finally:
            cmi.stop_clean()


def test_call_failures_are_faults_with_mi_codes():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            t0 = time.monotonic()
            status, _, data = cmi.request("GET", "/c/slow")
            took = time.monotonic() - t0
            check(status == 502 and json.loads(data)["code"] == "101504", "timeout: %d %r" % (status, data))
            check(took < 1.8 * SLOW, "a 500 ms timeout answered after %.1fs" % took)
            status, _, data = cmi.request("GET", "/c/refused")
            check(status == 502 and json.loads(data)["code"] == "101503", "refused: %d %r" % (status, data))
            status, _, data = cmi.request("GET", "/c/close")
            check(status == 502 and json.loads(data)["code"] == "101505", "closed: %d %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_a_slow_backend_does_not_hold_the_worker():
    # One worker: while a call waits 2 s for the backend, the same worker
    # answers other requests (and makes other calls) meanwhile.
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            out = {}
            t = threading.Thread(target=lambda: out.update(slow=cmi.request("GET", "/c/slow2")))
            t.start()
            deadline = time.monotonic() + 5
            while not any(p == "/slow" for _, p, _ in b.server.seen) and time.monotonic() < deadline:
                time.sleep(0.01)
            for i in range(10):
                check(cmi.request("GET", "/c/fast")[0] == 200, "fast request %d" % i)
                check(cmi.request("GET", "/c/status/200")[0] == 200, "call %d" % i)
            check("slow" not in out, "the slow call ended before the others were answered")
            t.join(10)
            check(out["slow"][0] == 200, "slow call: %r" % (out["slow"],))
        finally:
            cmi.stop_clean()


def test_unknown_endpoint_key_is_a_load_error():
    with Deployment({"api/a.xml": api(0, resource("/x", '<call><endpoint key="Nope"/></call>'))}) as d:
        from harness import run_cmi
        rc, out, err = run_cmi(["check", d])
        check(rc == 1 and 'no endpoint of that name in endpoints/' in out + err, "check: %d %s" % (rc, out + err))


def group_api(files):
    return Deployment(files)


def test_failover_group_moves_to_the_next_endpoint():
    dead = closed_port()
    with Backend() as b:
        api_xml = api(0, resource("/f", '<call><endpoint><failover>'
                                  '<endpoint name="dead"><http method="get" uri-template="http://127.0.0.1:%d/x"/>'
                                  '</endpoint><endpoint name="alive"><http method="get" '
                                  'uri-template="http://127.0.0.1:%d/items/1"/></endpoint></failover></endpoint>'
                                  '</call><respond/>' % (dead, b.port)))
        with Deployment({"api/a.xml": api_xml}) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                status, _, data = cmi.request("GET", "/c/f")
                check(status == 200 and json.loads(data)["port"] == b.port, "failover: %d %r" % (status, data))
                cmi.wait_log(r"endpoint dead failed \(101503\): trying the next", 5)
            finally:
                cmi.stop_clean()


def test_retry_config_decides_whether_a_group_goes_on():
    # <retryConfig> (issue 24): a code in disabledErrorCodes stops the
    # failover at that child (303000, the backend behind it is never
    # called); enabledErrorCodes lists the only codes that go on.
    dead = closed_port()

    def group(retry):
        return ('<call><endpoint><failover><endpoint name="dead"><http method="get" '
                'uri-template="http://127.0.0.1:%d/x"><retryConfig>%s</retryConfig></http></endpoint>'
                '<endpoint name="alive"><http method="get" uri-template="http://127.0.0.1:%%d/items/1"/></endpoint>'
                '</failover></endpoint></call><respond/>' % (dead, retry))
    with Backend() as b:
        api_xml = api(0, "".join([
            resource("/disabled", group("<disabledErrorCodes>101504, 101503</disabledErrorCodes>") % b.port),
            resource("/enabled", group("<enabledErrorCodes>101503</enabledErrorCodes>") % b.port),
            resource("/other", group("<enabledErrorCodes>101504</enabledErrorCodes>") % b.port),
        ]))
        with Deployment({"api/a.xml": api_xml}) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                status, _, data = cmi.request("GET", "/c/disabled")
                check(status == 502 and json.loads(data)["code"] == "303000", "disabled: %d %r" % (status, data))
                check(b.server.seen == [], "the next endpoint was called: %r" % b.server.seen)
                cmi.wait_log(r"endpoint dead failed with 101503, which its retryConfig does not retry", 5)
                status, _, data = cmi.request("GET", "/c/enabled")
                check(status == 200 and json.loads(data)["port"] == b.port, "enabled: %d %r" % (status, data))
                status, _, data = cmi.request("GET", "/c/other")
                check(status == 502 and json.loads(data)["code"] == "303000", "not enabled: %d %r" % (status, data))
                check(len(b.server.seen) == 1, "only /enabled went on: %r" % b.server.seen)
            finally:
                cmi.stop_clean()


def test_timeout_computed_per_call_and_discard():
    # <duration>{get-property('timeout')}</duration> (issue 24): 300 ms
    # from a property times /slow out (2 s), 5000 ms lets it answer; a value
    # that is not a number falls back to the default with one warning;
    # <responseAction>discard</responseAction> ends the flow (202), no fault.
    with Backend() as b:
        ep = ('<call><endpoint name="%s"><http method="get" uri-template="http://127.0.0.1:%d/slow"><timeout>'
              '<duration>{get-property(\'timeout\')}</duration><responseAction>%s</responseAction></timeout>'
              '</http></endpoint></call><respond/>')
        api_xml = api(0, "".join([
            resource("/t/{ms}", '<property name="timeout" expression="get-property(\'uri.var.ms\')"/>' +
                     ep % ("computed", b.port, "fault")),
            resource("/d", '<property name="timeout" value="300"/>' + ep % ("discarding", b.port, "discard")),
        ]))
        with Deployment({"api/a.xml": api_xml}) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                t0 = time.monotonic()
                status, _, data = cmi.request("GET", "/c/t/300")
                check(status == 502 and json.loads(data)["code"] == "101504", "300 ms: %d %r" % (status, data))
                check(time.monotonic() - t0 < 1.8, "the 300 ms timeout took %.1f s" % (time.monotonic() - t0))
                status, _, data = cmi.request("GET", "/c/t/5000")
                check(status == 200 and json.loads(data) == {"slow": True}, "5000 ms: %d %r" % (status, data))
                for _ in range(2):
                    status, _, data = cmi.request("GET", "/c/t/soon")
                    check(status == 200, "not a number: the default (60 s) applies: %d %r" % (status, data))
                log = cmi.log_text()
                check(len(re.findall(r"WARN .*timeout get-property\('timeout'\) is 'soon'", log)) == 1,
                      "one warning for a timeout that is not a number:\n%s" % log)
                status, _, data = cmi.request("GET", "/c/d")
                check(status == 202 and data == b"", "discard: %d %r" % (status, data))
                check("ERROR_CODE" not in cmi.log_text() and '"code"' not in data.decode(), "no fault ran")
            finally:
                cmi.stop_clean()


def test_endpoint_by_key_expression_and_default_endpoint():
    # <endpoint key-expression> (issue 24): the endpoint the message names,
    # among those deployed only; <default/>: the To address the flow set,
    # never one from the request.
    with Backend() as b:
        files = {
            "endpoints/one.xml": '<endpoint %s name="one"><http method="get" uri-template="http://127.0.0.1:%d/items/1"/>'
                                 '</endpoint>' % (NS, b.port),
            "endpoints/two.xml": '<endpoint %s name="two"><http method="get" uri-template="http://127.0.0.1:%d/items/2"/>'
                                 '</endpoint>' % (NS, b.port),
            "api/a.xml": api(0, "".join([
                resource("/k/{name}", '<call><endpoint key-expression="${params.pathParams.name}"/></call><respond/>'),
                resource("/legacy", '<property name="ep" value="two"/>'
                         '<call><endpoint key-expression="get-property(\'ep\')"/></call><respond/>'),
                resource("/default", '<header name="To" value="http://127.0.0.1:%d/items/9"/>'
                         '<call><endpoint><default/></endpoint></call><respond/>' % b.port),
                resource("/default-unset", '<call><endpoint><default/></endpoint></call><respond/>'),
            ])),
        }
        with Deployment(files) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                for path, want in (("/c/k/one", "/items/1"), ("/c/k/two", "/items/2"), ("/c/legacy", "/items/2"),
                                   ("/c/default", "/items/9")):
                    status, _, data = cmi.request("GET", path)
                    check(status == 200 and json.loads(data)["path"] == want, "%s: %d %r" % (path, status, data))
                status, _, data = cmi.request("GET", "/c/k/nothing")
                check(status == 502 and json.loads(data)["code"] == "101500", "unknown: %d %r" % (status, data))
                cmi.wait_log(r"no endpoint named 'nothing' is deployed", 5)
                status, _, data = cmi.request("GET", "/c/default-unset", headers={"To": "http://127.0.0.1:%d/x" % b.port})
                check(status == 502 and json.loads(data)["code"] == "101500", "no To set: %d %r" % (status, data))
                check(len(b.server.seen) == 4, "the client's To was not called: %r" % b.server.seen)
            finally:
                cmi.stop_clean()


def test_loadbalance_spreads_round_robin():
    with Backend() as b1, Backend() as b2:
        api_xml = api(0, resource("/lb", '<call><endpoint><loadbalance '
                                  'algorithm="org.apache.synapse.endpoints.algorithms.RoundRobin">'
                                  '<endpoint><http method="get" uri-template="http://127.0.0.1:%d/items/1"/></endpoint>'
                                  '<endpoint><http method="get" uri-template="http://127.0.0.1:%d/items/2"/></endpoint>'
                                  '</loadbalance></endpoint></call><respond/>' % (b1.port, b2.port)))
        with Deployment({"api/a.xml": api_xml}) as d:
            cmi = Cmi(d, workers=2).start()
            try:
                ports = [json.loads(cmi.request("GET", "/c/lb")[2])["port"] for _ in range(10)]
                check(ports.count(b1.port) == 5 and ports.count(b2.port) == 5, "spread %r" % ports)
            finally:
                cmi.stop_clean()


def test_suspension_and_its_end():
    # A refused backend is suspended for 1 s (not tried meanwhile: 303001),
    # then tried again; once it answers it is active again.
    port = closed_port()
    api_xml = api(0, resource("/s", '<call><endpoint name="flaky"><http method="get" '
                              'uri-template="http://127.0.0.1:%d/items/3"><suspendOnFailure>'
                              '<errorCodes>101503</errorCodes><initialDuration>1000</initialDuration>'
                              '<progressionFactor>2</progressionFactor><maximumDuration>4000</maximumDuration>'
                              '</suspendOnFailure></http></endpoint></call><respond/>' % port))
    with Deployment({"api/a.xml": api_xml}) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("GET", "/c/s")
            check(json.loads(data)["code"] == "101503", "first: %d %r" % (status, data))
            cmi.wait_log(r"endpoint flaky suspended for 1000 ms after error 101503", 5)
            status, _, data = cmi.request("GET", "/c/s")
            check(json.loads(data)["code"] == "303001", "while suspended: %d %r" % (status, data))
            with Backend(port) as b:
                deadline = time.monotonic() + 5 * SLOW
                while time.monotonic() < deadline:
                    status, _, data = cmi.request("GET", "/c/s")
                    if status == 200:
                        break
                    check(json.loads(data)["code"] == "303001", "after the backend came: %d %r" % (status, data))
                    time.sleep(0.1)
                check(status == 200 and json.loads(data)["port"] == b.port, "after the suspension: %d %r"
                      % (status, data))
                cmi.wait_log(r"endpoint flaky answers again: active", 5)
        finally:
            cmi.stop_clean()


def test_two_hundred_calls_in_flight_while_the_worker_answers():
    with Backend() as b, deployment(b.port, {"api/d.xml": '<api %s name="D" context="/d">%s</api>' % (
            NS, resource("/delay", '<call><endpoint><http method="get" uri-template="http://127.0.0.1:%d/delay"/>'
                         '</endpoint></call><respond/>' % b.port))}) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            out, lock = [], threading.Lock()

            def one():
                r = cmi.request("GET", "/d/delay", timeout=30)
                with lock:
                    out.append(r[0])
            threads = [threading.Thread(target=one) for _ in range(200)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10 * SLOW
            while b.server.in_flight < 50 and time.monotonic() < deadline:
                time.sleep(0.01)
            peak = b.server.in_flight
            fast = [cmi.request("GET", "/c/fast")[0] for _ in range(10)]
            during = b.server.in_flight
            for t in threads:
                t.join(60)
            check(out.count(200) == 200, "200 calls: %r" % {s: out.count(s) for s in set(out)})
            check(fast == [200] * 10, "other requests: %r" % fast)
            check(peak >= 50 and during > 0, "calls in flight at the backend: %d, while answering others: %d"
                  % (peak, during))
        finally:
            cmi.stop_clean()


def test_source_and_target_forms():
    # <source type="custom"> sends part of the payload; <target type="variable">
    # and type="property" keep the response out of the payload.
    with Backend() as b:
        base = "http://127.0.0.1:%d" % b.port
        api_xml = api(0, "".join([
            resource("/var", '<call><source type="custom" contentType="application/json">${payload.inner}</source>'
                     '<target type="variable">resp</target><endpoint><http method="post" uri-template="%s/echo"/>'
                     '</endpoint></call><payloadFactory media-type="json"><format>{"kept": ${payload.keep}, '
                     '"backend": ${vars.resp.got}, "sc": ${props.axis2.HTTP_SC}}</format></payloadFactory><respond/>'
                     % base, methods="POST"),
            resource("/prop", '<call><source type="inline" contentType="application/json">{"fixed": 1}</source>'
                     '<target type="property">raw</target><endpoint><http method="post" uri-template="%s/echo"/>'
                     '</endpoint></call><payloadFactory media-type="json"><format>{"raw": "${props.synapse.raw}"}'
                     '</format></payloadFactory><respond/>' % base, methods="POST"),
        ]))
        with Deployment({"api/a.xml": api_xml}) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                status, _, data = cmi.request("POST", "/c/var", json.dumps({"keep": 1, "inner": {"n": 5}}).encode(),
                                              {"Content-Type": "application/json"})
                # HTTP_SC is the backend's status (201), which respond sends, as in MI.
                check(status == 201 and json.loads(data) == {"kept": 1, "backend": {"n": 5}, "sc": 201},
                      "variable target: %d %r" % (status, data))
                status, _, data = cmi.request("POST", "/c/prop", b"{}", {"Content-Type": "application/json"})
                raw = json.loads(json.loads(data)["raw"])
                check(status == 201 and raw == {"got": {"fixed": 1}, "type": "application/json"},
                      "property target: %d %r" % (status, data))
            finally:
                cmi.stop_clean()


def test_request_headers_forwarded_but_accept_encoding():
    # Transport headers go to the backend; Accept-Encoding does not (curl
    # does not decode: the payload would be compressed bytes).
    with Backend() as b:
        api_xml = api(0, resource("/h", '<property name="X-Fine" scope="transport" value="ok"/>'
                                  '<call><endpoint><http method="get" uri-template="http://127.0.0.1:%d/headers"/>'
                                  '</endpoint></call><respond/>' % b.port))
        with Deployment({"api/a.xml": api_xml}) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                status, _, data = cmi.request("GET", "/c/h", headers={"Accept-Encoding": "gzip", "X-Client": "c1"})
                seen = json.loads(data)
                check(status == 200 and seen.get("x-fine") == "ok" and seen.get("x-client") == "c1",
                      "backend saw %r" % seen)
                check("gzip" not in seen.get("accept-encoding", ""), "Accept-Encoding forwarded: %r" % seen)
            finally:
                cmi.stop_clean()


def test_a_dot_segment_value_stays_in_its_segment():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("GET", "/c/items/%2E%2E?tag=t")
            check(status == 200 and json.loads(data)["path"] == "/items/%2E%2E?tag=t", "backend saw %r" % data)
        finally:
            cmi.stop_clean()


def test_concurrent_failures_suspend_once():
    port = closed_port()
    api_xml = api(0, resource("/s", '<call><endpoint name="flaky"><http method="get" '
                              'uri-template="http://127.0.0.1:%d/x"><suspendOnFailure><initialDuration>2000'
                              '</initialDuration><progressionFactor>2</progressionFactor></suspendOnFailure></http>'
                              '</endpoint></call><respond/>' % port))
    with Deployment({"api/a.xml": api_xml}) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            threads = [threading.Thread(target=lambda: cmi.request("GET", "/c/s")) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            lines = [ln for ln in cmi.log_text().splitlines() if "endpoint flaky suspended" in ln]
            check(len(lines) == 1 and "for 2000 ms" in lines[0], "suspensions: %r" % lines)
        finally:
            cmi.stop_clean()
