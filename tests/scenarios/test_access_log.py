"""The access log (docs/operations.md, "Access log"): a line per request,
text to standard error or JSON to a file, with the request id that MI's
logMessageID="true" writes in the flow's own log lines."""
import json
import os
import re
import tempfile

from harness import Cmi, check, run_cmi
from test_engine import Deployment
from test_internal import NS

FILES = {
    "api/a.xml": '<api %s name="A" context="/a">'
                 '<resource methods="GET" uri-template="/ok"><inSequence><log logMessageID="true"><message>ok'
                 '</message></log><payloadFactory media-type="json"><format>{"ok": true}</format></payloadFactory>'
                 '<respond/></inSequence></resource>'
                 '<resource methods="GET" uri-template="/slow"><inSequence><testSuspend millis="300"/>'
                 '<respond/></inSequence></resource></api>' % NS,
}

TEXT = re.compile(r'^127\.0\.0\.1 (\S+) \[[^\]]+\] "(\S+) (\S+) HTTP/1\.1" (\d{3}) (\d+) ([\d.]+)$')


def test_text_access_log_to_stderr_with_the_flow_s_message_id():
    with Deployment(FILES) as d:
        cmi = Cmi(d, workers=2, args=["--access-log", "-"]).start()
        try:
            check(re.search(r"access log \(text\) to standard error", cmi.log_text()), "said at start")
            status, _, body = cmi.request("GET", "/a/ok?x=1")
            check(status == 200, "ok")
            check(cmi.request("GET", "/nowhere")[0] == 404, "404")
            check(cmi.request("GET", "/a/slow")[0] == 200, "slow")
            cmi.wait_log(r'"GET /a/slow HTTP/1\.1" 200', 5)
            lines = {m.group(3): m.groups() for m in (TEXT.match(ln) for ln in cmi.log_text().splitlines()) if m}
            ok = lines.get("/a/ok?x=1")
            check(ok and ok[3] == "200" and int(ok[4]) == len(body), "the ok line: %r" % (ok,))
            flow_id = re.search(r"\[api:A\] MessageID: (urn:uuid:[0-9a-f-]+)", cmi.log_text()).group(1)
            check(ok[0] == flow_id, "the access log's id is the flow's MessageID: %s / %s" % (ok[0], flow_id))
            check(lines.get("/nowhere", ())[:1] == ("-",), "no message, no id: %r" % (lines.get("/nowhere"),))
            check(float(lines["/a/slow"][5]) >= 0.29, "the slow one's latency: %r" % (lines["/a/slow"],))
        finally:
            cmi.stop_clean()


def test_json_access_log_to_a_file():
    with Deployment(FILES) as d, tempfile.TemporaryDirectory() as t:
        path = os.path.join(t, "access.json")
        cmi = Cmi(d, workers=1, args=["--access-log", path, "--access-log-format", "json"]).start()
        try:
            status, _, body = cmi.request("GET", '/a/ok?q=%22quoted%22')
            check(status == 200, "ok")
            check(cmi.request("GET", "/nowhere")[0] == 404, "404")
        finally:
            cmi.stop_clean()
        with open(path) as f:
            entries = [json.loads(line) for line in f]
        check(len(entries) == 2, "two lines: %r" % entries)
        ok, missing = entries
        check(ok["method"] == "GET" and ok["path"] == '/a/ok?q=%22quoted%22' and ok["status"] == 200
              and ok["bytes"] == len(body) and ok["client"] == "127.0.0.1" and ok["protocol"] == "HTTP/1.1"
              and ok["request_id"].startswith("urn:uuid:") and isinstance(ok["latency"], (int, float))
              and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$", ok["time"]), "fields: %r" % ok)
        check(missing["status"] == 404 and missing["request_id"] is None, "the 404: %r" % missing)


def test_log_levels_per_component():
    # warn by default, one API at debug: its flow's info line and the
    # dispatch debug line of its component are written, the engine's info
    # lines are not; a longer name wins over a shorter one.
    files = dict(FILES)
    files["api/b.xml"] = ('<api %s name="B" context="/b"><resource methods="GET" uri-template="/"><inSequence>'
                          '<log><message>b here</message></log><respond/></inSequence></resource></api>' % NS)
    with Deployment(files) as d:
        cmi = Cmi(d, args=["--log-level", "warn,api=error,api:A=debug,http=info"]).start()
        try:
            check(cmi.request("GET", "/a/ok")[0] == 200 and cmi.request("GET", "/b")[0] == 200, "served")
            cmi.wait_log(r"\[api:A\] MessageID: urn:uuid:", 5)
            log = cmi.log_text()
            check("listening on" in log, "http=info: its info lines")
            check("[engine]" not in log, "the default warn: no engine info line: %s" % log)
            check("b here" not in log, "api=error: B's info line is not written")
        finally:
            cmi.stop_clean()
    for spec, err in (("info,rabbitmq", "is not COMPONENT=LEVEL"), ("info,x=loud", "'loud' is not a log level"),
                      ("rabbitmq=debug", "the default level comes first")):
        rc, _, out = run_cmi(["run", "/nonexistent", "--log-level", spec])
        check(rc == 2 and err in out, "%s: %s %r" % (spec, rc, out))


def test_access_log_errors():
    with Deployment(FILES) as d:
        rc, _, err = run_cmi(["run", d, "--http-port", "0", "--access-log", "/nonexistent/dir/access.log"])
        check(rc == 1 and "cannot open the access log /nonexistent/dir/access.log" in err, "%s %r" % (rc, err))
        rc, _, err = run_cmi(["run", d, "--http-port", "0", "--access-log-format", "xml"])
        check(rc == 2 and "must be 'text' or 'json'" in err, "%s %r" % (rc, err))
