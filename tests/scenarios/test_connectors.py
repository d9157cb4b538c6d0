"""Connector modules through the real engine, beyond what a scenario file
can say: a suspended connector call holds no worker thread, secrets stay
out of logs, the drain waits for connector calls, a client that goes away
does not cancel one, `cmi describe`, and refused modules."""
import json
import os
import signal
import socket
import tempfile
import time

from harness import SLOW, Cmi, check, run_cmi
from test_engine import Deployment, in_thread

SECRET = "s3cr3t-Zq9-value"


def abi():
    """The connector ABI this cmi is built with, from its header: "1.5"."""
    import re
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with open(os.path.join(top, "engine", "include", "cmi", "connector.h")) as f:
        text = f.read()
    return "%s.%s" % tuple(re.search(r"#define CMI_CONNECTOR_ABI_%s (\d+)" % k, text).group(1)
                           for k in ("MAJOR", "MINOR"))

CONN = """<localEntry xmlns="http://ws.apache.org/ns/synapse" key="EchoConn">
  <echo.init><name>Conn</name><token>%s</token></echo.init>
</localEntry>
"""

API = """<api xmlns="http://ws.apache.org/ns/synapse" name="E" context="/e">
  <resource methods="GET" uri-template="/slow/{ms}">
    <inSequence>
      <log><message>slow echo started</message></log>
      <echo.echo configKey="EchoConn">
        <message>slow</message><delay>{${params.pathParams.ms}}</delay><overwriteBody>true</overwriteBody>
      </echo.echo>
      <log><message>slow echo resumed on ${payload.thread}</message></log>
      <respond/>
    </inSequence>
  </resource>
  <resource methods="GET" uri-template="/fast">
    <inSequence>
      <echo.echo configKey="EchoConn"><message>fast</message><overwriteBody>true</overwriteBody></echo.echo>
      <respond/>
    </inSequence>
  </resource>
</api>
"""


def echo_deployment(token="plain-token"):
    return Deployment({"local-entries/conn.xml": CONN % token, "api/e.xml": API})


def test_suspended_call_holds_no_worker():
    # One worker: a delayed echo (resumed from the connector's thread) must
    # not keep the worker from answering another request meanwhile.
    with echo_deployment() as d:
        cmi = Cmi(d, workers=1).start()
        try:
            t, slow = in_thread(lambda: (cmi.request("GET", "/e/slow/1500"), time.monotonic()))
            cmi.wait_log("slow echo started", 5)
            status, _, body = cmi.request("GET", "/e/fast")
            fast_done = time.monotonic()
            check(status == 200 and json.loads(body)["echo"] == "fast", "fast echo: %s %r" % (status, body))
            t.join(10 * SLOW)
            check("value" in slow, "slow echo failed: %r" % slow.get("error"))
            (s_status, _, s_body), slow_done = slow["value"]
            check(s_status == 200 and json.loads(s_body)["thread"] == "echo", "slow echo: %s %r" % (s_status, s_body))
            check(fast_done < slow_done, "the fast echo waited for the suspended one")
        finally:
            cmi.stop_clean()


def test_secrets_never_reach_the_log():
    with tempfile.NamedTemporaryFile("w", suffix=".secret", delete=False) as f:
        f.write(SECRET + "\n")
        path = f.name
    try:
        with echo_deployment("$FILE:" + path) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                status, _, body = cmi.request("GET", "/e/fast")
                check(status == 200 and json.loads(body)["tokenSet"] is True, "echo with a token: %s %r" % (status, body))
            finally:
                cmi.stop_clean()
            check(SECRET not in cmi.log_text(), "the secret reached the log")
        # A secret that cannot be read stops `run` with an error naming the
        # file; `cmi check` (a CI pipeline without the secrets) warns.
        os.unlink(path)
        with echo_deployment("$FILE:" + path) as d:
            rc, out, err = run_cmi(["run", d, "--http-port", "0"])
            check(rc == 1 and "error: <echo.init> in local entry 'EchoConn': parameter token: cannot read %s" % path
                  in err, "missing secret file, run: %d %s" % (rc, err))
            rc, out, err = run_cmi(["check", d])
            check(rc == 0 and "warning: <echo.init> in local entry 'EchoConn': parameter token: cannot read" in err,
                  "missing secret file, check: %d %s" % (rc, err))
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_drain_waits_for_a_connector_call():
    with echo_deployment() as d:
        cmi = Cmi(d, workers=1).start()
        try:
            t, slow = in_thread(lambda: cmi.request("GET", "/e/slow/800"))
            cmi.wait_log("slow echo started", 5)
            cmi.proc.send_signal(signal.SIGTERM)
            t.join(10 * SLOW)
            check("value" in slow, "the in-flight echo failed: %r" % slow.get("error"))
            check(slow["value"][0] == 200, "in-flight echo: %r" % (slow["value"],))
            rc = cmi.wait_exit()
            check(rc == 0, "exit status %s after the drain" % rc)
            cmi.wait_log(r"\[echo:EchoConn\] connection stopped", 1)
        finally:
            cmi.kill()


def test_client_gone_while_connector_call_suspended():
    with echo_deployment() as d:
        cmi = Cmi(d, workers=1).start()
        try:
            s = socket.create_connection(("127.0.0.1", cmi.port))
            s.sendall(b"GET /e/slow/300 HTTP/1.1\r\nHost: x\r\n\r\n")
            cmi.wait_log("slow echo started", 5)
            s.close()
            cmi.wait_log("slow echo resumed on echo", 5)
            status, _, _ = cmi.request("GET", "/e/fast")
            check(status == 200, "cmi stopped serving after a disconnect during a connector call")
        finally:
            cmi.stop_clean()


def test_describe():
    rc, out, err = run_cmi(["describe", "echo"])
    check(rc == 0, "describe echo: %d %s" % (rc, err))
    for want in ("echo 1.0.0 (connector ABI %s" % abi(), "Connection config: <localEntry key=\"KEY\"><echo.init>",
                 "Operation: <echo.echo configKey=\"KEY\">", "Operation: <echo.fail>",
                 "Inbound endpoint: <inboundEndpoint class=\"org.example.cmi.EchoTimer\"",
                 "(enum, default KEEP; one of KEEP, UPPER, LOWER)", "(string, secret)",
                 "709004  ECHO:TIMEOUT"):
        check(want in out, "describe output lacks %r:\n%s" % (want, out))
    rc, out, err = run_cmi(["describe", "nosuch"])
    check(rc == 1 and "no connector named 'nosuch'" in err and "loaded: echo" in err, "describe nosuch: %d %s" % (rc, err))


def test_wrong_abi_module_is_refused_at_start():
    badabi = os.environ.get("CMI_TEST_BADABI")
    check(badabi, "CMI_TEST_BADABI is not set (run through make check)")
    with echo_deployment() as d:
        rc, out, err = run_cmi(["run", d, "--http-port", "0", "--connectors", badabi])
        check(rc == 1, "cmi run with a wrong-ABI module exited %d" % rc)
        want = "badabi.so: error: connector module refused: built for connector ABI 2.0, but this cmi runs ABI %s" % abi()
        check(want in err, "refusal message: %s" % err)
        check("listening on" not in out + err, "a port was opened")


def test_missing_connectors_folder_is_an_error():
    with echo_deployment() as d:
        rc, out, err = run_cmi(["check", d, "--connectors", "/nonexistent/cmi-connectors"])
        check(rc == 1 and "/nonexistent/cmi-connectors: error: cannot open the connectors folder" in err,
              "missing folder: %d %s" % (rc, err))


def test_held_injections_run_at_the_release_in_order():
    # A listener thread that injects bursts under host->inject_hold: no
    # message of a burst runs before the release (the listener waits 100 ms
    # for one to end before it lets go, and logs what it saw), then every
    # one runs, in the order injected (one worker).
    files = {
        "local-entries/conn.xml": CONN % "t",
        "inbound-endpoints/burst.xml":
            '<inboundEndpoint xmlns="http://ws.apache.org/ns/synapse" name="Burst" '
            'class="org.example.cmi.EchoTimer" sequence="tick"><parameters>'
            '<parameter name="echo.interval">20</parameter><parameter name="echo.count">3</parameter>'
            '<parameter name="echo.burst">5</parameter></parameters></inboundEndpoint>',
        "sequences/tick.xml":
            '<sequence xmlns="http://ws.apache.org/ns/synapse" name="tick">'
            '<log><message>got tick ${payload.tick}</message></log></sequence>',
    }
    import re
    with Deployment(files) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            cmi.wait_log(r"all 15 ticks done", 10)
        finally:
            cmi.stop()
        log = cmi.log_text()
        bursts = re.findall(r"burst (\d+): (\d+) (held|injected \(no hold\)), (\d+) done before the release", log)
        check(bursts == [(str(b), "5", "held", "0") for b in (1, 2, 3)], "bursts: %s" % bursts)
        got = [int(t) for t in re.findall(r"got tick (\d+)", log)]
        check(got == list(range(1, 16)), "ran in the order %s" % got)


def _drain_runs_every_injected_message(params, delay_ms):
    """SIGTERM while the echo listener (params: its extra parameters)
    injects fast into flows that suspend delay_ms in a connector call:
    every message it was told it injected runs and is reported done, and
    cmi exits 0."""
    import re
    files = {
        "local-entries/conn.xml": CONN % "t",
        "inbound-endpoints/fast.xml":
            '<inboundEndpoint xmlns="http://ws.apache.org/ns/synapse" name="Fast" '
            'class="org.example.cmi.EchoTimer" sequence="slowTick"><parameters>'
            '<parameter name="echo.count">100000</parameter>%s</parameters></inboundEndpoint>'
            % "".join('<parameter name="%s">%s</parameter>' % kv for kv in params.items()),
        "sequences/slowTick.xml":
            '<sequence xmlns="http://ws.apache.org/ns/synapse" name="slowTick">'
            '<log><message>got tick ${payload.tick}</message></log>'
            '<echo.echo configKey="EchoConn"><message>x</message><delay>%d</delay></echo.echo></sequence>'
            % delay_ms,
    }
    with Deployment(files) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            cmi.wait_log(r"got tick 30\b", 10)
            cmi.proc.send_signal(signal.SIGTERM)
            rc = cmi.wait_exit()
            check(rc == 0, "exit status %s" % rc)
        finally:
            cmi.kill()
        log = cmi.log_text()
        got = set(re.findall(r"got tick (\d+)", log))
        done = set(re.findall(r"\[echo:Fast\] tick (\d+) done", log))
        check(len(got) >= 30, "only %d ticks ran" % len(got))
        check(got == done, "ticks that ran but were not reported done: %s; done but never ran: %s"
              % (sorted(got - done, key=int)[:10], sorted(done - got, key=int)[:10]))


def test_drain_runs_every_held_message():
    # As below, with bursts held by the listener's thread (the stop waits
    # for a release under way).
    _drain_runs_every_injected_message({"echo.interval": "2", "echo.burst": "7"}, 50)


def test_drain_runs_every_injected_message():
    # A listener injecting fast, flows that suspend in a connector call, and
    # SIGTERM in the middle: every message the listener was told it
    # injected runs to the end and the listener hears of it (done), then
    # cmi exits 0.  Injections after the stop are refused, not lost.
    _drain_runs_every_injected_message({"echo.interval": "3"}, 150)
