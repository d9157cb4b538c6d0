"""Reloading the deployment (docs/operations.md, "Reloading"): SIGHUP
compiles the folder beside the running deployment; an error keeps the
running one; else new requests see the new one while those in flight end
on the one they began in, which is freed after its last message.
Connection configs and inbound endpoints that did not change keep running
(the echo connector logs each start and stop); changed ones are replaced;
removed ones stop.  The metrics of an API go on across reloads."""
import json
import os
import re
import signal
import threading

from harness import Cmi, check
from test_engine import Deployment, in_thread
from test_internal import NS, eventually, scrape, value


def api(version, slow_ms=1500):
    return ('<api %s name="A" context="/a">'
            '<resource methods="GET" uri-template="/x"><inSequence><payloadFactory media-type="json">'
            '<format>{"v": %d}</format></payloadFactory><respond/></inSequence></resource>'
            '<resource methods="GET" uri-template="/slow"><inSequence><testSuspend millis="%d"/>'
            '<payloadFactory media-type="json"><format>{"v": %d}</format></payloadFactory><respond/>'
            '</inSequence></resource></api>' % (NS, version, slow_ms, version))


B_API = ('<api %s name="B" context="/b"><resource methods="GET" uri-template="/"><inSequence>'
         '<payloadFactory media-type="json"><format>{"b": true}</format></payloadFactory><respond/>'
         '</inSequence></resource></api>' % NS)


def write(d, path, text):
    full = os.path.join(d, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full + ".tmp", "w") as f:
        f.write(text)
    os.replace(full + ".tmp", full)  # as an editor or a deploy tool would: never half a file


def reload(cmi, generation):
    mark = cmi.log_mark()
    cmi.proc.send_signal(signal.SIGHUP)
    cmi.wait_log(r"reload: generation %d serves" % generation, 10, start=mark)
    return mark


def body(cmi, path):
    status, _, data = cmi.request("GET", path)
    return status, json.loads(data) if status == 200 else data


def test_reload_swaps_the_apis_and_in_flight_requests_end_on_the_old_deployment():
    with Deployment({"api/a.xml": api(1)}) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            check(body(cmi, "/a/x") == (200, {"v": 1}), "generation 1")
            t, res = in_thread(lambda: cmi.request("GET", "/a/slow"))
            cmi.wait_log(r"GET /a/slow", 5)
            write(d, "api/a.xml", api(2))
            write(d, "api/b.xml", B_API)
            reload(cmi, 2)
            check(body(cmi, "/a/x") == (200, {"v": 2}) and body(cmi, "/b")[0] == 200,
                  "the new deployment: A changed, B added")
            t.join(10)
            check(res.get("value", (0,))[0] == 200 and json.loads(res["value"][2]) == {"v": 1},
                  "the request in flight ended on generation 1: %r" % (res,))
            cmi.wait_log(r"deployment generation 1: its last message has ended; freed", 5)
            os.remove(os.path.join(d, "api", "b.xml"))
            reload(cmi, 3)
            check(body(cmi, "/b")[0] == 404 and body(cmi, "/a/x") == (200, {"v": 2}), "B removed")
            cmi.wait_log(r"deployment generation 2: its last message has ended; freed", 5)
        finally:
            cmi.stop_clean()


def test_a_broken_deployment_changes_nothing():
    with Deployment({"api/a.xml": api(1)}) as d:
        cmi = Cmi(d).start()
        try:
            write(d, "api/a.xml", api(2).replace("<respond/>", "<respnd/>", 1))
            write(d, "api/b.xml", B_API)
            mark = cmi.log_mark()
            cmi.proc.send_signal(signal.SIGHUP)
            cmi.wait_log(r"reload: 1 error\(s\) in the deployment .*; generation 1 goes on serving", 10, start=mark)
            log = cmi.log_text(start=mark)
            check(re.search(r"api/a\.xml:1: error: .*respnd", log), "the error with its file and line: %s" % log)
            check(body(cmi, "/a/x") == (200, {"v": 1}) and body(cmi, "/b")[0] == 404, "generation 1 serves")
            write(d, "api/a.xml", api(2))
            reload(cmi, 2)
            check(body(cmi, "/a/x") == (200, {"v": 2}) and body(cmi, "/b")[0] == 200, "fixed: generation 2")
        finally:
            cmi.stop_clean()


def conn(key, name):
    return ('<localEntry %s key="%s"><echo.init><name>%s</name><mode>keep</mode></echo.init></localEntry>'
            % (NS, key, name))


def echo_api(key):
    return ('<api %s name="E%s" context="/e/%s"><resource methods="GET" uri-template="/"><inSequence>'
            '<echo.echo configKey="%s"><message>m</message><responseVariable>r</responseVariable></echo.echo>'
            '<payloadFactory media-type="json"><format>{"instance": "${vars.r.payload.instance}"}</format>'
            '</payloadFactory><respond/></inSequence></resource></api>' % (NS, key, key.lower(), key))


def ticks(name, seq, interval=150, count=100000):
    return ('<inboundEndpoint %s name="%s" class="org.example.cmi.EchoTimer" sequence="%s"><parameters>'
            '<parameter name="echo.interval">%d</parameter><parameter name="echo.count">%d</parameter>'
            '</parameters></inboundEndpoint>' % (NS, name, seq, interval, count))


def tick_seq(name, word):
    return ('<sequence %s name="%s"><log><message>%s ${payload.tick}</message></log></sequence>'
            % (NS, name, word))


def test_unchanged_connectors_keep_running_changed_ones_are_replaced():
    files = {
        "local-entries/one.xml": conn("One", "one-a"),
        "local-entries/two.xml": conn("Two", "two-a"),
        "api/one.xml": echo_api("One"),
        "api/two.xml": echo_api("Two"),
        "inbound-endpoints/t.xml": ticks("Ticks", "tick"),
        "sequences/tick.xml": tick_seq("tick", "before"),
    }
    with Deployment(files) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            check(body(cmi, "/e/one") == (200, {"instance": "one-a"}) and
                  body(cmi, "/e/two") == (200, {"instance": "two-a"}), "generation 1")
            cmi.wait_log(r"before 2\b", 10)
            write(d, "local-entries/two.xml", conn("Two", "two-b"))      # changed
            write(d, "sequences/tick.xml", tick_seq("tick", "after"))     # the listener's sequence only
            write(d, "inbound-endpoints/u.xml", ticks("Tocks", "tick"))   # added
            mark = reload(cmi, 2)
            line = cmi.wait_log(r"reload: generation 2 .*", 1, start=mark).group(0)
            check("connection configs: 1 kept, 1 started, 1 to stop once idle; inbound endpoints: 1 kept, 1 started, "
                  "0 stopped" in line, "what was kept: %s" % line)
            check(body(cmi, "/e/one") == (200, {"instance": "one-a"}) and
                  body(cmi, "/e/two") == (200, {"instance": "two-b"}), "Two replaced, One kept")
            cmi.wait_log(r"after \d+", 5, start=mark)
            cmi.wait_log(r"\[echo:Two\] connection stopped", 5, start=mark)
            log = cmi.log_text()
            check(len(re.findall(r"connection one-a started", log)) == 1, "One started once: %s" % log)
            check("[echo:One] connection stopped" not in log, "One never stopped")
            check(len(re.findall(r"inbound endpoint Ticks started", log)) == 1, "Ticks started once")
            # the ticks went on: one numbering across the reload, none twice
            numbers = [int(n) for n in re.findall(r"(?:before|after) (\d+)$", log, re.M)]
            check(numbers == sorted(set(numbers)) and numbers[0] == 1, "ticks in order, once each: %r" % numbers)
            os.remove(os.path.join(d, "inbound-endpoints", "u.xml"))
            mark = reload(cmi, 3)
            cmi.wait_log(r"inbound endpoint Tocks stopped taking messages", 5, start=mark)
            line = cmi.wait_log(r"reload: generation 3 .*", 1, start=mark).group(0)
            check("inbound endpoints: 1 kept, 0 started, 1 stopped" in line, "Tocks removed: %s" % line)
        finally:
            cmi.stop_clean()
        log = cmi.log_text()
        check(len(re.findall(r"\[echo:One\] connection stopped", log)) == 1, "One stopped at the end, once")


def test_metrics_go_on_across_reloads():
    with Deployment({"api/a.xml": api(1), "api/b.xml": B_API}) as d:
        cmi = Cmi(d).start()
        try:
            for _ in range(3):
                check(cmi.request("GET", "/a/x")[0] == 200, "A")
            url = "http://127.0.0.1:%d" % cmi.port
            a = {"service_name": "A", "service_type": "api", "invocation_url": url + "/a"}
            write(d, "api/a.xml", api(2))
            os.remove(os.path.join(d, "api", "b.xml"))
            reload(cmi, 2)
            for _ in range(2):
                check(cmi.request("GET", "/a/x")[0] == 200, "A")
            # (a count lands as its flow ends, just after the answer)
            eventually(lambda: value(scrape(cmi)[0], "wso2_integration_api_request_count_total", **a) == 5, 5,
                       "A's five requests, across the reload")
            s, _ = scrape(cmi)
            check(value(s, "wso2_integration_service_up", service_name="A", service_type="api") is not None and
                  value(s, "wso2_integration_service_up", service_name="B", service_type="api") is None,
                  "B is no longer deployed")
        finally:
            cmi.stop_clean()


def test_reloads_under_load_fail_no_request():
    # Four clients on keep-alive connections while the deployment reloads
    # ten times (A's answer changes each time): every request is answered,
    # with a version that never goes back on a connection.
    with Deployment({"api/a.xml": api(0)}) as d:
        cmi = Cmi(d, workers=2).start()
        try:
            stop = threading.Event()
            results = [[] for _ in range(4)]

            def client(k):
                c = cmi.connection()
                while not stop.is_set():
                    status, _, data = cmi.request("GET", "/a/x", conn=c)
                    results[k].append(json.loads(data)["v"] if status == 200 else ("status", status))
                c.close()
            threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
            for t in threads:
                t.start()
            for g in range(1, 11):
                write(d, "api/a.xml", api(g))
                reload(cmi, g + 1)
            eventually(lambda: all(r and r[-1] == 10 for r in results), 5, "every client sees version 10")
            stop.set()
            for t in threads:
                t.join(10)
            for k, r in enumerate(results):
                check(all(isinstance(v, int) for v in r), "client %d: failed requests %r" % (k, [v for v in r if
                                                                                              not isinstance(v, int)]))
                check(r == sorted(r) and r[-1] == 10, "client %d saw the versions in order up to 10: %r"
                      % (k, sorted(set(r))))
            check(sum(len(r) for r in results) > 40, "requests made: %d" % sum(len(r) for r in results))
        finally:
            cmi.stop_clean()


def test_watch_reloads_when_files_change():
    # --watch: a change reloads once the files have been still for the
    # delay; an editor's swap file alone does not; a broken file keeps the
    # running deployment, its fix reloads.
    with Deployment({"api/a.xml": api(1)}) as d:
        cmi = Cmi(d, args=["--watch", "true", "--watch-delay", "200ms"]).start()
        try:
            cmi.wait_log(r"watching .*: a change reloads it after 200 ms", 5)
            mark = cmi.log_mark()
            write(d, "api/.a.xml.swp", "<not xml")
            write(d, "api/a.xml", api(2))
            cmi.wait_log(r"reload: generation 2 serves", 10, start=mark)
            check(body(cmi, "/a/x") == (200, {"v": 2}), "the change is served")
            log = cmi.log_text(start=mark)
            check(len(re.findall(r"reloading the deployment", log)) == 1 and "files changed (a.xml" in log,
                  "one reload, for a.xml, none for the swap file: %s" % log)
            mark = cmi.log_mark()
            write(d, "api/b.xml", "<api")
            cmi.wait_log(r"generation 2 goes on serving", 10, start=mark)
            check(body(cmi, "/a/x") == (200, {"v": 2}), "the broken file changed nothing")
            write(d, "api/b.xml", B_API)
            cmi.wait_log(r"reload: generation 3 serves", 10, start=mark)
            check(body(cmi, "/b")[0] == 200, "the fix is served")
        finally:
            cmi.stop_clean()


def test_a_jwks_api_answers_across_reloads():
    # The JWT checker is the deployment's: a reload makes a new one, which
    # serves once its JWKS endpoint has given its keys (never a 503 for a
    # good token meanwhile).
    from test_jwt import JwksServer, Setup, bearer, jwk_of, prop, rsa_key, token
    srv = JwksServer()
    key = rsa_key()
    srv.doc = json.dumps({"keys": [jwk_of(key, "r1")]}).encode()
    srv.delay = 0.3  # each fetch takes a while
    try:
        with Setup(prop("jwksEndpoint", srv.url)) as s:
            cmi = Cmi(s.deploy).start()
            try:
                auth = bearer(token(key, kid="r1"))
                eventually(lambda: cmi.request("GET", "/jwt/hello/x", headers=auth)[0] == 200, 10, "the first keys")
                statuses = []
                stop = threading.Event()

                def client():
                    c = cmi.connection()
                    while not stop.is_set():
                        statuses.append(cmi.request("GET", "/jwt/hello/y", headers=auth, conn=c)[0])
                    c.close()
                t = threading.Thread(target=client, daemon=True)
                t.start()
                for g in range(2, 5):
                    reload(cmi, g)
                stop.set()
                t.join(10)
                check(statuses and set(statuses) == {200}, "answers across 3 reloads: %r" % sorted(set(statuses)))
                check(srv.hits >= 4, "each deployment fetched its keys: %d fetches" % srv.hits)
            finally:
                cmi.stop_clean()
    finally:
        srv.close()


def test_a_changed_certificate_file_replaces_its_connection_config():
    # A parameter that names a file (CMI_PARAM_FILE: the RabbitMQ stores,
    # the echo connector's certificate): the file's content counts.
    with Deployment({}) as d:
        cert = os.path.join(d, "cert.pem")
        write(d, "cert.pem", "one")
        write(d, "local-entries/c.xml", '<localEntry %s key="C"><echo.init><name>c</name><certificate>%s'
                                        '</certificate></echo.init></localEntry>' % (NS, cert))
        cmi = Cmi(d).start()
        try:
            mark = reload(cmi, 2)
            check("connection configs: 1 kept, 0 started" in cmi.log_text(start=mark), "the same file: kept")
            write(d, "cert.pem", "two")
            mark = reload(cmi, 3)
            check("connection configs: 0 kept, 1 started" in cmi.log_text(start=mark), "a new file: started anew")
            cmi.wait_log(r"\[echo:C\] connection stopped", 5, start=mark)
        finally:
            cmi.stop_clean()


def test_the_server_config_reloads_its_log_levels_and_users():
    # --config read again: the users and the log levels change now (a
    # verdict cached for a removed user is void), a changed port is said to
    # need a restart.
    from test_basic_auth import SECURE_API, basic, crypt
    ann, bob = crypt("ann-pw", "$6$"), crypt("bob-pw", "$6$")

    def server_config(level, users, body="10MiB"):
        return ('<cmi><http maxBodySize="%s"/><log level="%s"/><users>%s</users></cmi>'
                % (body, level, "".join('<user name="%s" password="%s"/>' % u for u in users)))

    class FileLevels(Cmi):  # the levels of the file, not the harness's --log-level flag
        def command(self):
            c = Cmi.command(self)
            i = c.index("--log-level")
            return c[:i] + c[i + 2:]
    with Deployment({"api/secure.xml": SECURE_API}) as d:
        conf = os.path.join(d, "..", os.path.basename(d) + "-cmi.xml")
        with open(conf, "w") as f:
            f.write(server_config("debug", [("ann", ann)]))
        cmi = FileLevels(d, args=["--config", conf]).start()
        try:
            auth_ann, auth_bob = {"Authorization": basic("ann", "ann-pw")}, {"Authorization": basic("bob", "bob-pw")}
            check(cmi.request("GET", "/secure/hello/1", headers=auth_ann)[0] == 200, "ann at first")
            check(cmi.request("GET", "/secure/hello/2", headers=auth_bob)[0] == 403, "bob unknown at first")
            cmi.wait_log(r"flow reached", 5)
            with open(conf, "w") as f:
                f.write(server_config("info,api:SecureAPI=warn", [("bob", bob)], body="1MiB"))
            mark = reload(cmi, 2)
            log = cmi.log_text(start=mark)
            check("reload: log levels info,api:SecureAPI=warn" in log and "reload: 1 user(s)" in log, log)
            check(re.search(r"the server config changes HTTP limits: that takes a restart", log), log)
            check(cmi.request("GET", "/secure/hello/3", headers=auth_ann)[0] == 403, "ann removed: 403")
            check(cmi.request("GET", "/secure/hello/4", headers=auth_bob)[0] == 200, "bob added: 200")
            mark = cmi.log_mark()
            check(cmi.request("GET", "/secure/hello/5", headers=auth_bob)[0] == 200, "bob again")
            check("flow reached" not in cmi.log_text(start=mark) and "DEBUG" not in cmi.log_text(start=mark),
                  "the API's info lines and the debug lines are off now")
        finally:
            cmi.stop_clean()
            os.remove(conf)
