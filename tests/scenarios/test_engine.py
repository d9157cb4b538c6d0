"""Engine behaviour that a scenario file cannot express: concurrency while
suspended, client disconnects, draining on SIGTERM, start-up failures,
malformed HTTP and the command line."""
import os
import shutil
import signal
import socket
import tempfile
import threading
import time

from harness import SLOW, Cmi, TestFailure, check, raw_exchange, run_cmi

SLOW_API = """<api xmlns="http://ws.apache.org/ns/synapse" name="Slow" context="/slow">
  <resource methods="GET" uri-template="/timer">
    <inSequence>
      <log><message>slow request started</message></log>
      <testSuspend millis="%(millis)d"/>
      <log><message>slow request resumed</message></log>
      <payloadFactory media-type="text"><format>slow done</format></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
  <resource methods="GET" uri-template="/thread">
    <inSequence>
      <testSuspend millis="%(millis)d" from="thread"/>
      <payloadFactory media-type="text"><format>thread done</format></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
</api>
"""

FAST_API = """<api xmlns="http://ws.apache.org/ns/synapse" name="Fast" context="/fast">
  <resource methods="GET">
    <inSequence><payloadFactory media-type="text"><format>fast</format></payloadFactory><respond/></inSequence>
  </resource>
</api>
"""


class Deployment:
    def __init__(self, files):
        self.dir = tempfile.mkdtemp(prefix="cmi-eng-")
        for path, text in files.items():
            full = os.path.join(self.dir, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)

    def __enter__(self):
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def slow_deployment(millis):
    return Deployment({"api/slow.xml": SLOW_API % {"millis": millis}, "api/fast.xml": FAST_API})


def in_thread(fn):
    result = {}

    def body():
        try:
            result["value"] = fn()
        except Exception as e:  # reported by the caller
            result["error"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, result


def test_second_request_answered_while_first_suspended():
    # One worker: both requests are on the same thread; the second must be
    # answered while the first is suspended, so that thread is not held.
    for path in ("/slow/timer", "/slow/thread"):
        with slow_deployment(1500) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                t_slow, slow = in_thread(lambda: (cmi.request("GET", path), time.monotonic()))
                cmi.wait_log(r"\(message urn:uuid:", 5)  # the slow request was dispatched
                status, _, body = cmi.request("GET", "/fast")
                fast_done = time.monotonic()
                check(status == 200 and body == b"fast", "fast request: %s %r" % (status, body))
                t_slow.join(10 * SLOW)
                check("value" in slow, "slow request failed: %r" % slow.get("error"))
                (s_status, _, s_body), slow_done = slow["value"]
                check(s_status == 200 and s_body.endswith(b"done"), "slow request: %s %r" % (s_status, s_body))
                check(fast_done < slow_done, "the fast request was answered after the suspended one")
            finally:
                cmi.stop_clean()


def test_client_disconnect_while_suspended():
    # The message completes; nothing touches the freed request (ASan and
    # valgrind runs of this test catch it if something does).  h2o notices
    # an HTTP/1 client's close only when it writes the response.
    with slow_deployment(400) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            s = socket.create_connection(("127.0.0.1", cmi.port))
            s.sendall(b"GET /slow/timer HTTP/1.1\r\nHost: x\r\n\r\n")
            cmi.wait_log("slow request started", 5)
            s.close()
            cmi.wait_log("slow request resumed", 5)
            status, _, body = cmi.request("GET", "/fast")
            check(status == 200 and body == b"fast", "cmi stopped serving after a disconnect")
        finally:
            cmi.stop_clean()


def test_drain_finishes_in_flight_then_exits():
    with slow_deployment(1200) as d:
        cmi = Cmi(d, workers=2).start()
        t, res = in_thread(lambda: cmi.request("GET", "/slow/timer"))
        cmi.wait_log("slow request started", 5)
        cmi.proc.send_signal(signal.SIGTERM)
        cmi.wait_log("SIGTERM received: draining", 5)
        cmi.wait_log("finishing 1 in-flight message", 5)
        # no new connections once draining
        refused = False
        deadline = time.monotonic() + 2 * SLOW
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", cmi.port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        check(refused, "cmi still accepted connections while draining")
        t.join(10 * SLOW)
        check("value" in res, "in-flight request failed during the drain: %r" % res.get("error"))
        status, _, body = res["value"]
        check(status == 200 and body == b"slow done", "in-flight request: %s %r" % (status, body))
        rc = cmi.wait_exit()
        check(rc == 0, "exit status %s after the drain" % rc)
        cmi.wait_log(r"\[engine\] stopped", 1)


def test_drain_is_bounded():
    with slow_deployment(60000) as d:
        cmi = Cmi(d, workers=1, args=["--drain-timeout", "300ms"]).start()
        t, res = in_thread(lambda: cmi.request("GET", "/slow/timer", timeout=30))
        cmi.wait_log("slow request started", 5)
        t0 = time.monotonic()
        rc = cmi.stop(timeout=10)
        check(rc == 0, "exit status %s after a bounded drain" % rc)
        check(time.monotonic() - t0 < 5 * SLOW, "the drain took longer than its bound")
        cmi.wait_log("still in flight when the drain time ran out", 1)


def test_idle_keepalive_connections_do_not_hold_the_drain():
    with slow_deployment(10) as d:
        cmi = Cmi(d, workers=1).start()
        conn = cmi.connection()
        for _ in range(3):
            status, _, _ = cmi.request("GET", "/fast", conn=conn)
            check(status == 200, "keep-alive request failed")
        t0 = time.monotonic()
        rc = cmi.stop(timeout=10)
        check(rc == 0 and time.monotonic() - t0 < 3 * SLOW, "an idle keep-alive connection delayed the exit")
        conn.close()


def test_keepalive_many_requests_one_connection():
    with slow_deployment(10) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            conn = cmi.connection()
            for i in range(200):
                status, headers, body = cmi.request("GET", "/fast", conn=conn)
                check(status == 200 and body == b"fast", "request %d: %s" % (i, status))
            conn.close()
        finally:
            cmi.stop_clean()


def test_parallel_clients():
    with slow_deployment(20) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            results = []
            lock = threading.Lock()

            def client():
                conn = cmi.connection()
                for _ in range(20):
                    r = cmi.request("GET", "/slow/thread", conn=conn)
                    with lock:
                        results.append(r[0] == 200 and r[2] == b"thread done")
                conn.close()
            threads = [threading.Thread(target=client) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60 * SLOW)
            check(len(results) == 320 and all(results), "%d of 320 requests answered right" % sum(results))
        finally:
            cmi.stop_clean()


def test_malformed_http_gets_400_and_server_keeps_serving():
    with slow_deployment(10) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            reply = raw_exchange(cmi.port, b"THIS IS NOT HTTP\r\n\r\n")
            check(reply.startswith(b"HTTP/1.1 400"), "malformed request answered %r" % reply[:40])
            reply = raw_exchange(cmi.port, b"GET /fast HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            check(reply.startswith(b"HTTP/1.1 400"), "bad Content-Length answered %r" % reply[:40])
            status, _, body = cmi.request("GET", "/fast")
            check(status == 200 and body == b"fast", "cmi stopped serving after malformed requests")
        finally:
            cmi.stop_clean()


def test_oversized_chunked_body_is_413():
    with slow_deployment(10) as d:
        cmi = Cmi(d, workers=1, args=["--max-body-size", "100"]).start()
        try:
            chunk = b"x" * 80
            data = (b"POST /fast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    b"50\r\n" + chunk + b"\r\n" + b"50\r\n" + chunk + b"\r\n0\r\n\r\n")
            reply = raw_exchange(cmi.port, data)
            check(reply.startswith(b"HTTP/1.1 413"), "oversized chunked body answered %r" % reply[:40])
        finally:
            cmi.stop_clean()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_broken_deployment_does_not_start():
    with Deployment({"api/bad.xml": "<api xmlns=\"http://ws.apache.org/ns/synapse\" name=\"B\" context=\"/b\">\n"
                                    "  <resource><inSequence><nosuchmediator/></inSequence></resource>\n</api>\n"}) as d:
        port = free_port()
        rc, out, err = run_cmi(["run", d, "--http-host", "127.0.0.1", "--http-port", str(port)], timeout=20)
        check(rc == 1, "exit status %s for a broken deployment" % rc)
        check("api/bad.xml:2: error: unknown mediator <nosuchmediator>" in err, "error line missing: %s" % err)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            raise TestFailure("a port was opened for a broken deployment")
        except OSError:
            pass


def test_port_in_use_is_a_clear_error():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        with slow_deployment(10) as d:
            rc, out, err = run_cmi(["run", d, "--http-host", "127.0.0.1", "--http-port", str(port)], timeout=20)
            check(rc == 1, "exit status %s when the port is taken" % rc)
            check("cannot listen on 127.0.0.1 port %d: the port is in use" % port in err, "no clear error: %s" % err)
    finally:
        blocker.close()


def test_command_line():
    rc, out, _ = run_cmi(["version"])
    check(rc == 0 and out.startswith("cmi "), "cmi version: %s %r" % (rc, out))
    rc, out, _ = run_cmi(["--help"])
    check(rc == 0 and "cmi check DIR" in out, "cmi --help: %s" % rc)
    rc, _, err = run_cmi(["frobnicate"])
    check(rc == 2 and "unknown command" in err, "unknown command: %s %r" % (rc, err))
    rc, _, err = run_cmi(["run", "--http-port", "99999"])
    check(rc == 2 and "not a port number" in err, "bad port: %s %r" % (rc, err))
    rc, _, err = run_cmi(["run", "--no-such-flag", "1"])
    check(rc == 2 and "unknown option" in err, "unknown option: %s %r" % (rc, err))
    rc, _, err = run_cmi(["check"])
    check(rc == 2 and "needs a deployment folder" in err, "check without DIR: %s %r" % (rc, err))
    rc, _, err = run_cmi(["check", "/nonexistent/deployment"])
    check(rc == 1 and "/nonexistent/deployment: error: cannot open the deployment folder" in err,
          "check of a missing folder: %s %r" % (rc, err))
    with slow_deployment(10) as d:
        rc, out, _ = run_cmi(["check", d])
        check(rc == 0 and "OK: 2 API(s)" in out, "check of a good deployment: %s %r" % (rc, out))
    for args in (["run", "--help"], ["check", "-h"], ["run", "--http-port", "1", "--help"]):
        rc, out, err = run_cmi(args)
        check(rc == 0 and "usage: cmi run" in out and not err, "%s: %s %r %r" % (" ".join(args), rc, out, err))
    # Without a folder: the current folder's synapse-configs/default, else the installed one.
    with tempfile.TemporaryDirectory() as cwd:
        rc, _, err = run_cmi(["run", "--http-port", "0"], cwd=cwd)
        check(rc == 1 and "etc/cmi/synapse-configs/default: error: cannot open the deployment folder" in err,
              "run without a folder, none here: %s %r" % (rc, err))
        os.makedirs(os.path.join(cwd, "synapse-configs", "default", "api"))
        with open(os.path.join(cwd, "synapse-configs", "default", "api", "a.xml"), "w") as f:
            f.write("<api")
        rc, _, err = run_cmi(["run", "--http-port", "0"], cwd=cwd)
        check(rc == 1 and "synapse-configs/default/api/a.xml" in err and "etc/cmi" not in err,
              "run without a folder, one here: %s %r" % (rc, err))


def test_server_config_file():
    with slow_deployment(10) as d:
        conf = os.path.join(d, "cmi.xml")
        with open(conf, "w") as f:
            f.write('<cmi>\n  <http host="127.0.0.1" port="1" workers="1" maxBodySize="64"/>\n'
                    '  <log level="debug" format="json"/>\n</cmi>\n')
        # --http-port 0 on the command line wins over port="1" in the file
        cmi = Cmi(d, workers=1, args=["--config", conf]).start()
        try:
            check('"component":"http"' in cmi.log_text(), "the file's log format was not applied")
            status, _, _ = cmi.request("POST", "/fast", body=b"y" * 100)
            check(status == 413, "the file's maxBodySize was not applied (status %s)" % status)
        finally:
            cmi.stop_clean()
        with open(conf, "w") as f:
            f.write('<cmi>\n  <http port="http" bogus="1" idleTimeout="0"/>\n  <nonsense/>\n</cmi>\n')
        rc, _, err = run_cmi(["run", d, "--config", conf])
        check(rc == 2, "bad server config: exit %s" % rc)
        for line in ('cmi.xml:2: error: <http>: unknown attribute \'bogus\'',
                     'cmi.xml:2: error: <http port="http">: not a port number',
                     'cmi.xml:2: error: <http idleTimeout="0">: not a positive duration',
                     'cmi.xml:3: error: unknown element <nonsense> in the server config'):
            check(line in err, "missing %r in %r" % (line, err))


def test_http2_client_reset_while_suspended():
    # Over HTTP/2 h2o disposes of a stream's request as soon as the client
    # gives up, before the message resumes: the message must complete
    # without touching it.
    import shutil as _sh
    import subprocess
    curl = _sh.which("curl")
    check(curl is not None, "curl is needed for the HTTP/2 test (Debian package curl)")
    with slow_deployment(600) as d:
        cmi = Cmi(d, workers=1, args=["--http2", "true"]).start()
        try:
            url = "http://127.0.0.1:%d" % cmi.port
            p = subprocess.run([curl, "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
                                url + "/fast"], capture_output=True, timeout=10 * SLOW)
            check(p.stdout == b"2", "HTTP/2 was not negotiated: %r" % p.stdout)
            subprocess.run([curl, "-s", "--http2-prior-knowledge", "-m", "0.3", url + "/slow/timer"],
                           capture_output=True, timeout=10 * SLOW)
            cmi.wait_log("client went away before the response", 5)
            status, _, body = cmi.request("GET", "/fast")
            check(status == 200 and body == b"fast", "cmi stopped serving after an HTTP/2 reset")
        finally:
            cmi.stop_clean()


def test_head_has_no_body_and_keeps_the_connection_usable():
    with Deployment({"api/h.xml": '<api xmlns="http://ws.apache.org/ns/synapse" name="H" context="/h">'
                                  '<resource methods="GET HEAD"><inSequence><payloadFactory media-type="json">'
                                  '<format>{"status": "UP"}</format></payloadFactory><respond/></inSequence>'
                                  '</resource></api>'}) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for path in ("/h", "/nothing-here"):
                s = socket.create_connection(("127.0.0.1", cmi.port), timeout=5 * SLOW)
                s.sendall(("HEAD %s HTTP/1.1\r\nHost: x\r\n\r\nGET /h HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
                data = b""
                deadline = time.monotonic() + 5 * SLOW
                while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b'{"status": "UP"}'):
                    check(time.monotonic() < deadline, "responses incomplete: %r" % data)
                    chunk = s.recv(4096)
                    check(chunk != b"", "connection closed early: %r" % data)
                    data += chunk
                s.close()
                head, get = data.split(b"HTTP/1.1 ")[1:3]
                check(b"content-length: " in head.lower(), "HEAD without Content-Length: %r" % head)
                check(head.endswith(b"\r\n\r\n"), "HEAD response carried a body: %r" % head)
                check(get.startswith(b"200") and get.endswith(b'{"status": "UP"}'), "GET after HEAD: %r" % get)
        finally:
            cmi.stop_clean()


def test_second_signal_stops_at_once():
    with slow_deployment(60000) as d:
        cmi = Cmi(d, workers=1).start()
        t, res = in_thread(lambda: cmi.request("GET", "/slow/timer", timeout=30))
        cmi.wait_log("slow request started", 5)
        cmi.proc.send_signal(signal.SIGTERM)
        cmi.wait_log("finishing 1 in-flight message", 5)
        t0 = time.monotonic()
        cmi.proc.send_signal(signal.SIGTERM)
        rc = cmi.wait_exit(10)
        check(rc == 1, "exit status %s after a second SIGTERM" % rc)
        check(time.monotonic() - t0 < 3 * SLOW, "a second SIGTERM did not stop cmi at once")
        cmi.wait_log("second SIGTERM: stopping without finishing the drain", 1)


def test_json_log_keeps_lines_with_odd_bytes():
    # Request text with invalid UTF-8 and control characters is logged as one
    # line, escaped, in both formats; nothing is dropped.
    api = ('<api xmlns="http://ws.apache.org/ns/synapse" name="L" context="/l"><resource methods="GET" '
           'uri-template="/{v}"><inSequence><log><message>v=${params.pathParams.v}</message></log><respond/>'
           '</inSequence></resource></api>')
    with Deployment({"api/l.xml": api}) as d:
        for fmt in ("json", "text"):
            cmi = Cmi(d, workers=1, args=["--log-format", fmt]).start()
            try:
                cmi.request("GET", "/l/%C3%28%0Aforged")
                line = cmi.wait_log("v=", 5).string
                check("\\n" in line or "\\\\n" in line, "the newline was not escaped: %r" % line)
                check("forged" in line and line.count("\n") == 0, "the log line was split: %r" % line)
            finally:
                cmi.stop_clean()


def test_uri_template_backtracking_is_bounded():
    api = ('<api xmlns="http://ws.apache.org/ns/synapse" name="D" context="/d"><resource methods="GET" '
           'uri-template="/{y}-{m}-{d}.json"><inSequence><respond/></inSequence></resource>'
           '<resource methods="GET" uri-template="/ok"><inSequence><respond/></inSequence></resource></api>')
    with Deployment({"api/d.xml": api}) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            t0 = time.monotonic()
            status, _, _ = cmi.request("GET", "/d/" + "-" * 8000)
            check(status == 404, "status %s" % status)
            check(time.monotonic() - t0 < 5 * SLOW, "a crafted path held the worker")  # unbounded: minutes
            status, _, _ = cmi.request("GET", "/d/2026-11-21.json")
            check(status == 200, "a normal dated path: %s" % status)
        finally:
            cmi.stop_clean()
