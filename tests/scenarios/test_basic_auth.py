"""MI's basic authentication handler (RESTBasicAuthHandler in an API's
<handlers>) against cmi's <users>: what MI answers (401 with its realm and no
body, 403), the headers MI would fail on, the flow never reached by a
refused request, the verdict cache, HTTPS, and users written wrong."""
import base64
import ctypes
import http.client
import os
import shutil
import subprocess
import tempfile
import threading

import pki
from harness import SLOW, Cmi, check, raw_exchange, run_cmi

SECURE_API = """<api xmlns="http://ws.apache.org/ns/synapse" name="SecureAPI" context="/secure">
  <resource methods="GET" uri-template="/hello/{id}">
    <inSequence>
      <log level="custom"><property name="flow reached" expression="get-property('uri.var.id')"/></log>
      <payloadFactory media-type="json"><format>{"hello":"$1"}</format>
        <args><arg evaluator="xml" expression="get-property('uri.var.id')"/></args></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
  <handlers>
    <handler class="org.wso2.micro.integrator.security.handler.RESTBasicAuthHandler"/>
  </handlers>
</api>
"""

OPEN_API = """<api xmlns="http://ws.apache.org/ns/synapse" name="OpenAPI" context="/open">
  <resource methods="GET"><inSequence><payloadFactory media-type="json"><format>{"open":true}</format>
  </payloadFactory><respond/></inSequence></resource>
</api>
"""


_CRYPT_LOCK = threading.Lock()  # crypt() and crypt_gensalt() return static buffers; tests run in threads


def crypt(password, method):
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt_gensalt.restype = ctypes.c_char_p
    with _CRYPT_LOCK:
        salt = lib.crypt_gensalt(method.encode(), 0, None, 0)
        return lib.crypt(password.encode(), salt).decode()


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class Setup:
    def __init__(self, users_xml=None, https=False):
        self.dir = tempfile.mkdtemp(prefix="cmi-auth-")
        deploy = os.path.join(self.dir, "deploy", "api")
        os.makedirs(deploy)
        for name, text in (("secure.xml", SECURE_API), ("open.xml", OPEN_API)):
            with open(os.path.join(deploy, name), "w") as f:
                f.write(text)
        self.deploy = os.path.dirname(deploy)
        if users_xml is None:
            sha = subprocess.run(["openssl", "passwd", "-6", "s3cret:with:colons"], capture_output=True,
                                 text=True, check=True).stdout.strip()
            users_xml = ('<users><user name="admin" password="%s" roles="admin"/>'
                         '<user name="yes" password="%s"/></users>' % (sha, crypt("yes-pw", "$y$")))
        https_xml = ""
        if https:
            pki.make_ca(self.dir)
            cert, key = pki.make_cert(self.dir, "server")
            https_xml = '<https port="0" certificate="%s" key="%s"/>' % (cert, key)
        self.config = os.path.join(self.dir, "cmi.xml")
        with open(self.config, "w") as f:
            f.write("<cmi>%s%s</cmi>\n" % (users_xml, https_xml))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def flow_runs(cmi, mark, marker):
    return ("flow reached = %s" % marker) in "\n".join(cmi.log_text().splitlines()[mark:])


def test_basic_auth_as_mi():
    with Setup() as s:
        cmi = Cmi(s.deploy, workers=2, args=["--config", s.config]).start()
        try:
            # No credentials: 401, MI's realm, no body; the flow never runs.
            mark = cmi.log_mark()
            status, headers, body = cmi.request("GET", "/secure/hello/none")
            check(status == 401 and headers.get("www-authenticate") == 'Basic realm="WSO2 EI"' and body == b"",
                  "no credentials: %s %s %r" % (status, headers, body))
            # Good credentials (SHA-512 and yescrypt hashes; a password with ':').
            status, _, body = cmi.request("GET", "/secure/hello/good",
                                          headers={"Authorization": basic("admin", "s3cret:with:colons")})
            check(status == 200 and body == b'{"hello":"good"}', "good credentials: %s %r" % (status, body))
            status, _, body = cmi.request("GET", "/secure/hello/yes", headers={"Authorization": basic("yes", "yes-pw")})
            check(status == 200 and b"yes" in body, "yescrypt user: %s %r" % (status, body))
            status, _, _ = cmi.request("GET", "/secure/hello/lower",
                                       headers={"authorization": "basic " + basic("yes", "yes-pw")[6:]})
            check(status == 200, "header and scheme in lower case: %s" % status)
            # Wrong password, unknown user, empty user: 403, no challenge, no body.
            for user, pw, marker in (("admin", "wrong", "wrong"), ("nobody", "x", "nobody"), ("", "x", "empty")):
                status, headers, body = cmi.request("GET", "/secure/hello/" + marker,
                                                    headers={"Authorization": basic(user, pw)})
                check(status == 403 and "www-authenticate" not in headers and body == b"",
                      "%s: %s %s %r" % (marker, status, headers, body))
            # What is not Basic credentials: 401 with the challenge (MI fails
            # with a 500 on most of these).
            bad = {"bearer": "Bearer abc.def.ghi", "scheme-only": "Basic", "not-base64": "Basic !!!!",
                   "no-colon": "Basic " + base64.b64encode(b"admin").decode(),
                   "nul": "Basic " + base64.b64encode(b"admin\0:x").decode(),
                   "bad-padding": "Basic YWRtaW46eA", "oversized": "Basic " + "QUFB" * 1500}
            for marker, value in bad.items():
                status, headers, body = cmi.request("GET", "/secure/hello/" + marker, headers={"Authorization": value})
                check(status == 401 and headers.get("www-authenticate") == 'Basic realm="WSO2 EI"',
                      "%s: %s %s" % (marker, status, headers))
            # A header larger than the HTTP layer takes: refused there.
            resp = raw_exchange(cmi.port, b"GET /secure/hello/huge HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " +
                                b"Q" * 70000 + b"\r\n\r\n")
            check(not resp.startswith(b"HTTP/1.1 200"), "huge header: %r" % resp[:80])
            # Handlers run before the resource is chosen (as Synapse): a path
            # of the API no resource matches is 401 too.
            status, headers, _ = cmi.request("GET", "/secure/nothing")
            check(status == 401, "unmatched path of a protected API: %s" % status)
            status, _, _ = cmi.request("GET", "/open")
            check(status == 200, "an API without the handler: %s" % status)
            log = "\n".join(cmi.log_text().splitlines()[mark:])
            refused = ["none", "wrong", "nobody", "empty", "huge"] + list(bad)
            for marker in refused:
                check("flow reached = %s\n" % marker not in log + "\n", "the flow ran for a refused request: %s"
                      % marker)
            for marker in ("good", "yes", "lower"):
                check("flow reached = %s" % marker in log, "the flow did not run for %s" % marker)
            check("s3cret" not in log and "yes-pw" not in log and "YWRtaW4" not in log,
                  "credentials reached the log")
        finally:
            cmi.stop_clean()


def test_basic_auth_cache_and_concurrency():
    # yescrypt costs ~50 ms a check: 40 requests with the same credentials on
    # one keep-alive connection each would take 2 s of hashing per worker
    # without the cache.  The test asserts the verdicts, concurrently and
    # repeated (the cache's speed is the benchmark's business).
    with Setup() as s:
        cmi = Cmi(s.deploy, workers=2, args=["--config", s.config]).start()
        try:
            errors = []

            def client(user, pw, want):
                conn = cmi.connection()
                try:
                    for i in range(20):
                        status, _, _ = cmi.request("GET", "/secure/hello/c%d" % i, conn=conn,
                                                   headers={"Authorization": basic(user, pw)})
                        if status != want:
                            errors.append("%s/%s: %s, wanted %s" % (user, pw, status, want))
                finally:
                    conn.close()
            threads = [threading.Thread(target=client, args=a) for a in
                       (("yes", "yes-pw", 200), ("yes", "nope", 403), ("admin", "s3cret:with:colons", 200),
                        ("ghost", "x", 403))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60 * SLOW)
            check(not errors, "; ".join(errors[:5]))
            check(not any(t.is_alive() for t in threads), "a client hung")
        finally:
            cmi.stop_clean()


def test_basic_auth_client_gone_while_checking():
    # The client closes while its credentials are being checked: the answer
    # has nowhere to go and nothing breaks (ASan/valgrind runs of this).
    with Setup() as s:
        cmi = Cmi(s.deploy, workers=1, args=["--config", s.config]).start()
        try:
            for i in range(10):
                raw_exchange(cmi.port, ("GET /secure/hello/gone HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n"
                                        % basic("yes", "pw-%d" % i)).encode(), timeout=0.01)
            status, _, _ = cmi.request("GET", "/secure/hello/after", headers={"Authorization": basic("yes", "yes-pw")})
            check(status == 200, "after clients went away: %s" % status)
        finally:
            cmi.stop_clean()


def test_basic_auth_over_https():
    with Setup(https=True) as s:
        cmi = Cmi(s.deploy, args=["--config", s.config]).start()
        try:
            port = int(cmi.wait_log(r"listening on [^ ]+:(\d+) for HTTPS").group(1))
            import ssl
            ctx = ssl.create_default_context(cafile=os.path.join(s.dir, "ca.pem"))
            for auth, want in ((None, 401), (basic("admin", "bad"), 403), (basic("admin", "s3cret:with:colons"), 200)):
                conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10 * SLOW)
                conn.request("GET", "/secure/hello/tls", headers={"Authorization": auth} if auth else {})
                r = conn.getresponse()
                r.read()
                conn.close()
                check(r.status == want, "over HTTPS %s: %s" % (want, r.status))
        finally:
            cmi.stop_clean()


def test_basic_auth_users_written_wrong():
    cases = [
        ('<users><user name="admin" password="admin"/></users>', "cmi never keeps clear-text passwords"),
        ('<users><user name="admin" password="$6$"/></users>', "malformed"),
        ('<users><user name="a:b" password="%s"/></users>' % crypt("x", "$6$"), "without ':'"),
        ('<users><user name="admin" password="%s"/><user name="admin" password="%s"/></users>'
         % (crypt("x", "$6$"), crypt("y", "$6$")), "a second user of that name"),
        ('<users><admin/></users>', "only <user>"),
    ]
    for users, want in cases:
        with Setup(users_xml=users) as s:
            rc, _, err = run_cmi(["run", s.deploy, "--http-port", "0", "--http-host", "127.0.0.1", "--config",
                                  s.config], timeout=20)
            check(rc == 2 and want in err, "%s: expected exit 2 naming %r, got %s: %s" % (users, want, rc, err))
            check("password=\"admin\"" not in err or "clear-text" in err, "ok")
    # No users at all: a warning at start, and every request refused.
    with Setup(users_xml="") as s:
        cmi = Cmi(s.deploy, args=["--config", s.config]).start()
        try:
            cmi.wait_log(r"API SecureAPI asks for basic authentication and the server config has no <users>")
            status, _, _ = cmi.request("GET", "/secure/hello/x", headers={"Authorization": basic("admin", "admin")})
            check(status == 403, "no users: %s" % status)
        finally:
            cmi.stop_clean()
