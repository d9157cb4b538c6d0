"""The HTTPS listener with real clients (Python's ssl, curl, openssl
s_client): protocol versions, ALPN, resumption, certificate files good and
bad, a proxy that takes HTTPS only, and a certificate reload on SIGHUP.
Keys and certificates are made by the test (pki.py)."""
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile

import pki
from harness import SLOW, Cmi, check, run_cmi

API = """<api xmlns="http://ws.apache.org/ns/synapse" name="Hello" context="/hello">
  <resource methods="GET">
    <inSequence>
      <payloadFactory media-type="json"><format>{"hello":"tls"}</format></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
</api>
"""

HTTPS_ONLY_PROXY = """<proxy xmlns="http://ws.apache.org/ns/synapse" name="SecureOnly" transports="https">
  <target>
    <inSequence>
      <payloadFactory media-type="xml"><format><ok xmlns="">secure</ok></format></payloadFactory>
      <respond/>
    </inSequence>
  </target>
</proxy>
"""


class Setup:
    """A deployment, a CA and a server certificate in one temporary folder."""

    def __init__(self, https_attrs="", files=None):
        self.dir = tempfile.mkdtemp(prefix="cmi-tls-")
        self.ca = pki.make_ca(self.dir)
        self.cert, self.key = pki.make_cert(self.dir, "server", serial=1)
        deploy = os.path.join(self.dir, "deploy")
        for path, text in (files or {"api/hello.xml": API}).items():
            full = os.path.join(deploy, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        self.deploy = deploy
        self.config = self.write_config(https_attrs)

    def write_config(self, https_attrs, extra=""):
        path = os.path.join(self.dir, "cmi.xml")
        with open(path, "w") as f:
            f.write('<cmi><https port="0" certificate="%s" key="%s" %s/>%s</cmi>\n'
                    % (self.cert, self.key, https_attrs, extra))
        return path

    def start(self, workers=1):
        cmi = Cmi(self.deploy, workers=workers, args=["--config", self.config]).start()
        m = cmi.wait_log(r"listening on [^ ]+:(\d+) for HTTPS \(")
        cmi.https_port = int(m.group(1))
        return cmi

    def context(self, **kw):
        ctx = ssl.create_default_context(cafile=self.ca)
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def https_get(port, ctx, path="/hello", session=None):
    """(status, body, the TLS socket's facts) of one request on a new connection."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        head, _, body = data.partition(b"\r\n\r\n")
        facts = {"version": s.version(), "alpn": s.selected_alpn_protocol(), "session": s.session,
                 "reused": s.session_reused, "cert": s.getpeercert(binary_form=True)}
        return int(head.split(b" ")[1]), body, facts
    finally:
        s.close()


def s_client(port, *args):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost"] +
                       list(args), input="", capture_output=True, text=True, timeout=30 * SLOW)
    return p.returncode, p.stdout + p.stderr


def test_https_versions_alpn_resumption():
    with Setup() as s:
        cmi = s.start()
        try:
            port = cmi.https_port
            # TLS 1.3 and 1.2 both served, with the certificate verified
            # against the test's CA for the name localhost.
            status, body, f = https_get(port, s.context())
            check(status == 200 and b'"hello"' in body, "HTTPS GET: %s %r" % (status, body))
            check(f["version"] == "TLSv1.3", "default version: %s" % f["version"])
            ctx12 = s.context(maximum_version=ssl.TLSVersion.TLSv1_2)
            status, body, f = https_get(port, ctx12)
            check(status == 200 and f["version"] == "TLSv1.2", "TLS 1.2: %s %s" % (status, f["version"]))
            # Resumption: a second connection with the first one's session.
            status, _, f1 = https_get(port, ctx12)
            status, _, f2 = https_get(port, ctx12, session=f1["session"])
            check(status == 200 and f2["reused"], "TLS 1.2 session not resumed")
            ctx13 = s.context()
            _, _, f1 = https_get(port, ctx13)
            _, _, f2 = https_get(port, ctx13, session=f1["session"])
            check(f2["reused"], "TLS 1.3 session ticket not resumed")
            # TLS 1.0 and 1.1 refused: the client is allowed them (security
            # level 0), the server is not; the same client on 1.2 works.
            for flag in ("-tls1", "-tls1_1"):
                rc, out = s_client(port, flag, "-cipher", "DEFAULT@SECLEVEL=0")
                check(rc != 0 and "New, (NONE), Cipher is (NONE)" in out, "%s was not refused: %s" % (flag, out[-600:]))
            rc, out = s_client(port, "-tls1_2", "-cipher", "DEFAULT@SECLEVEL=0")
            check(rc == 0 and "New, TLSv1.2, Cipher is" in out, "control: TLS 1.2 with the same client: %s"
                  % out[-600:])
            # ALPN: h2 chosen when offered, HTTP/1.1 otherwise; curl speaks
            # HTTP/2 over it.
            ctx = s.context()
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                check(t.selected_alpn_protocol() == "h2", "ALPN: %s" % t.selected_alpn_protocol())
            ctx.set_alpn_protocols(["http/1.1"])
            raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                check(t.selected_alpn_protocol() == "http/1.1", "ALPN 1.1: %s" % t.selected_alpn_protocol())
            p = subprocess.run(["curl", "-s", "--http2", "--cacert", s.ca, "-w", " %{http_version} %{http_code}",
                                "https://localhost:%d/hello" % port], capture_output=True, text=True,
                               timeout=30 * SLOW)
            check(p.stdout.endswith(" 2 200") and '"hello"' in p.stdout, "curl --http2: %r" % p.stdout)
            # Plain HTTP on the HTTPS port is not served.
            raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
            raw.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.settimeout(10 * SLOW)
            got = raw.recv(4096)
            raw.close()
            check(b"200" not in got, "plain HTTP answered on the HTTPS port: %r" % got)
            # And the HTTP listener still serves in clear.
            status, _, body = cmi.request("GET", "/hello")
            check(status == 200, "HTTP next to HTTPS: %s" % status)
        finally:
            cmi.stop_clean()


def test_https_http2_off_and_protocols():
    with Setup('protocols="TLSv1.3" http2="false"') as s:
        cmi = s.start()
        try:
            ctx = s.context()
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            raw = socket.create_connection(("127.0.0.1", cmi.https_port), timeout=10 * SLOW)
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                check(t.selected_alpn_protocol() == "http/1.1", "http2=false: %s" % t.selected_alpn_protocol())
            try:
                https_get(cmi.https_port, s.context(maximum_version=ssl.TLSVersion.TLSv1_2))
                check(False, "TLS 1.2 served with protocols=TLSv1.3")
            except (ssl.SSLError, ConnectionError):
                pass
        finally:
            cmi.stop_clean()


def test_https_pkcs12_and_bad_files():
    with Setup() as s:
        d = s.dir
        p12 = pki.pkcs12(d, "server", "s3cret")
        legacy = pki.pkcs12(d, "server", "s3cret", legacy=True)
        # PKCS#12, the modern and the legacy (RC2) kind, start and serve.
        for path in (p12, legacy):
            with open(s.config, "w") as f:
                f.write('<cmi><https port="0" certificate="%s" password="s3cret"/></cmi>' % path)
            cmi = Cmi(s.deploy, args=["--config", s.config]).start()
            try:
                port = int(cmi.wait_log(r"listening on [^ ]+:(\d+) for HTTPS").group(1))
                status, _, _ = https_get(port, s.context())
                check(status == 200, "PKCS#12 %s: %s" % (path, status))
            finally:
                cmi.stop_clean()
        other_cert, other_key = pki.make_cert(d, "other", serial=9)
        jks = os.path.join(d, "keystore.jks")
        with open(jks, "wb") as f:
            f.write(b"\xfe\xed\xfe\xed" + b"\0" * 60)
        cases = [
            ('certificate="%s" password="wrong"' % p12, "password", 1),
            ('certificate="%s" key="%s"' % (s.cert, other_key), "does not match", 1),
            ('certificate="%s"' % jks, "keytool -importkeystore", 1),
            ('certificate="%s" key="%s"' % (os.path.join(d, "missing.pem"), s.key), "missing.pem", 1),
            ('certificate="%s" key="%s" protocols="TLSv1.1,TLSv1.2"' % (s.cert, s.key), "RFC 8996", 1),
            # The server config file's own errors: exit 2, as a bad flag.
            ('certificate="%s" key="%s" verifyClient="require"' % (s.cert, s.key), "caFile", 2),
            ('certificate="%s" key="%s" verifyClient="sometimes"' % (s.cert, s.key), "must be 'none'", 2),
        ]
        for attrs, want, want_rc in cases:
            with open(s.config, "w") as f:
                f.write('<cmi><https port="0" %s/></cmi>' % attrs)
            rc, out, err = run_cmi(["run", s.deploy, "--http-port", "0", "--http-host", "127.0.0.1", "--config",
                                    s.config], timeout=20)
            check(rc == want_rc and want in err, "%s: expected exit %d naming %r, got %s: %s"
                  % (attrs, want_rc, want, rc, err))
            check("s3cret" not in err and "wrong" not in err.replace("wrong password", ""),
                  "a password reached the log: %s" % err)


def test_https_only_proxy():
    files = {"api/hello.xml": API, "proxy-services/SecureOnly.xml": HTTPS_ONLY_PROXY}
    with Setup(files=files) as s:
        cmi = s.start()
        try:
            conn = http.client.HTTPSConnection("localhost", cmi.https_port, context=s.context(), timeout=10 * SLOW)
            conn.request("POST", "/services/SecureOnly", body="<a/>", headers={"Content-Type": "application/xml"})
            r = conn.getresponse()
            body = r.read()
            conn.close()
            check(r.status == 200 and b"secure" in body, "over HTTPS: %s %r" % (r.status, body))
            status, _, body = cmi.request("POST", "/services/SecureOnly", body="<a/>",
                                          headers={"Content-Type": "application/xml"})
            check(status == 500 and b"cannot be found for the endpoint reference" in body,
                  "over HTTP: %s %r" % (status, body))
            # Its WSDL names the HTTPS address.
            conn = http.client.HTTPSConnection("localhost", cmi.https_port, context=s.context(), timeout=10 * SLOW)
            conn.request("GET", "/services/SecureOnly?wsdl")
            r = conn.getresponse()
            wsdl = r.read()
            conn.close()
            check(("https://" + "").encode() in wsdl and (":%d/services/SecureOnly" % cmi.https_port).encode() in wsdl,
                  "WSDL addresses: %r" % wsdl[-400:])
        finally:
            cmi.stop_clean()


def test_https_sighup_reload():
    with Setup() as s:
        cmi = s.start(workers=2)
        try:
            port = cmi.https_port
            _, _, f = https_get(port, s.context())
            first = f["cert"]
            # A renewed certificate in the same files: new connections get it.
            pki.make_cert(s.dir, "server", serial=2)
            mark = cmi.log_mark()
            cmi.proc.send_signal(signal.SIGHUP)
            cmi.wait_log(r"HTTPS certificate reloaded", start=mark)
            for _ in range(4):  # both workers
                status, _, f = https_get(port, s.context())
                check(status == 200 and f["cert"] != first, "the old certificate after the reload")
            pem = ssl.DER_cert_to_PEM_cert(f["cert"])
            check(pki.serial_of(pem) == "serial=02", "serial after reload: %s" % pki.serial_of(pem))
            # A broken file: the running certificate stays.
            with open(s.key, "w") as fh:
                fh.write("not a key\n")
            mark = cmi.log_mark()
            cmi.proc.send_signal(signal.SIGHUP)
            cmi.wait_log(r"SIGHUP: HTTPS: .*the running certificate stays", start=mark)
            status, _, f2 = https_get(port, s.context())
            check(status == 200 and f2["cert"] == f["cert"], "serving after a failed reload: %s" % status)
        finally:
            cmi.stop_clean()


CERT_APIS = {
    "api/whoami.xml": """<api xmlns="http://ws.apache.org/ns/synapse" name="WhoAmI" context="/whoami">
  <resource methods="GET">
    <inSequence>
      <payloadFactory media-type="text"><format>$1|$2|$3</format>
        <args>
          <arg expression="get-property('axis2', 'ssl.client.auth.subject')"/>
          <arg expression="get-property('axis2', 'ssl.client.auth.issuer')"/>
          <arg expression="starts-with(get-property('axis2', 'ssl.client.auth.cert.X509'), '-----BEGIN CERTIFICATE-----')"/>
        </args>
      </payloadFactory>
      <respond/>
    </inSequence>
  </resource>
</api>
""",
    "api/alice.xml": """<api xmlns="http://ws.apache.org/ns/synapse" name="AliceOnly" context="/alice">
  <resource methods="GET">
    <inSequence>
      <log level="custom"><property name="alice flow" value="reached"/></log>
      <payloadFactory media-type="text"><format>hello alice</format></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
  <handlers>
    <handler class="cmi.security.ClientCertificateHandler">
      <property name="subjectPattern" value=".*CN=alice"/>
    </handler>
  </handlers>
</api>
""",
}


def tls_get(port, ctx, path):
    """(status, body) over a new TLS connection, or None when the server
    refused the handshake (libh2o 2.2.5 closes without an alert: with TLS
    1.3 the client learns it at its first read)."""
    try:
        status, body, _ = https_get(port, ctx, path)
        return status, body
    except (ssl.SSLError, ConnectionError, IndexError, ValueError, socket.timeout):
        return None


def client_context(s, name=None):
    ctx = s.context()
    if name is not None:
        ctx.load_cert_chain(os.path.join(s.dir, name + ".pem"), os.path.join(s.dir, name + ".key"))
    return ctx


def test_client_certificates():
    files = dict(CERT_APIS)
    with Setup(files=files) as s:
        d = s.dir
        clients_ca = pki.make_ca(d, "clients", cn="cmi clients CA")
        pki.make_cert(d, "alice", ca="clients", cn="alice", serial=11, client=True)
        pki.make_cert(d, "bob", ca="clients", cn="bob", serial=12, client=True)
        pki.make_cert(d, "old", ca="clients", cn="alice", serial=13, client=True, not_after="210101000000Z")
        pki.make_ca(d, "rogue", cn="rogue CA")
        pki.make_cert(d, "mallory", ca="rogue", cn="alice", serial=14, client=True)
        s.config = s.write_config('verifyClient="optional" caFile="%s"' % clients_ca)
        cmi = s.start()
        try:
            port = cmi.https_port
            mark = cmi.log_mark()
            # A verified certificate: its subject, issuer and PEM in the flow
            # (MI's axis2 property), and the per-API handler lets it in.
            got = tls_get(port, client_context(s, "alice"), "/whoami")
            check(got == (200, b"O=cmi tests,CN=alice|CN=cmi clients CA|true"), "alice /whoami: %r" % (got,))
            check(tls_get(port, client_context(s, "alice"), "/alice") == (200, b"hello alice"), "alice /alice")
            # Several requests on one connection: the certificate is read once
            # per connection and each message gets its own copy.
            conn = http.client.HTTPSConnection("localhost", port, context=client_context(s, "alice"),
                                               timeout=10 * SLOW)
            for path in ("/whoami", "/alice", "/whoami"):
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                check(r.status == 200 and (body.startswith(b"O=cmi tests,CN=alice|") or body == b"hello alice"),
                      "keep-alive %s: %s %r" % (path, r.status, body))
            conn.close()
            # Another subject: the API's pattern refuses it; other APIs serve it.
            check(tls_get(port, client_context(s, "bob"), "/alice") == (403, b""), "bob /alice")
            got = tls_get(port, client_context(s, "bob"), "/whoami")
            check(got is not None and got[1].startswith(b"O=cmi tests,CN=bob|"), "bob /whoami: %r" % (got,))
            # No certificate (optional): served, nothing in the flow, and
            # the handler refuses.
            check(tls_get(port, client_context(s), "/whoami") == (200, b"||false"), "no cert /whoami")
            check(tls_get(port, client_context(s), "/alice") == (403, b""), "no cert /alice")
            # Expired, or from a CA the listener does not trust (with alice's
            # name): the handshake is refused.
            for name in ("old", "mallory"):
                check(tls_get(port, client_context(s, name), "/whoami") is None, "%s's certificate accepted" % name)
            # Over plain HTTP the handler refuses.
            status, _, _ = cmi.request("GET", "/alice")
            check(status == 403, "/alice over HTTP: %s" % status)
            log = "\n".join(cmi.log_text().splitlines()[mark:])
            check(log.count("alice flow = reached") == 2, "the flow ran for a refused request:\n%s" % log[-2000:])
        finally:
            cmi.stop_clean()
        # require: no certificate, no connection; a good one works, resumed too.
        s.config = s.write_config('verifyClient="require" caFile="%s"' % clients_ca)
        cmi = s.start()
        try:
            port = cmi.https_port
            check(tls_get(port, client_context(s), "/whoami") is None, "require: served without a certificate")
            ctx = client_context(s, "alice")
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            status, body, f = https_get(port, ctx, "/whoami")
            check(status == 200 and body.startswith(b"O=cmi tests,CN=alice|"), "require + alice: %s %r" % (status, body))
            status, body, f2 = https_get(port, ctx, "/alice", session=f["session"])
            check(f2["reused"] and status == 200, "a resumed session keeps its certificate: %s %s" % (f2["reused"], status))
        finally:
            cmi.stop_clean()


def test_sighup_without_https():
    # SIGHUP with no HTTPS listener: the deployment reloads (test_reload.py),
    # no certificate is read.
    with Setup() as s:
        cmi = Cmi(s.deploy).start()
        try:
            mark = cmi.log_mark()
            cmi.proc.send_signal(signal.SIGHUP)
            cmi.wait_log(r"reload: generation 2 serves", start=mark)
            check("certificate" not in cmi.log_text(start=mark), "no certificate line")
            status, _, _ = cmi.request("GET", "/hello")
            check(status == 200, "after SIGHUP: %s" % status)
        finally:
            cmi.stop_clean()


def test_https_certificate_from_the_command_line():
    # <https> in the file, the certificate by flags (they are read after
    # the file); without any certificate the start stops.
    with Setup() as s:
        with open(s.config, "w") as f:
            f.write('<cmi><https port="0" protocols="TLSv1.3"/></cmi>')
        rc, _, err = run_cmi(["run", s.deploy, "--http-port", "0", "--http-host", "127.0.0.1", "--config", s.config],
                             timeout=20)
        check(rc == 1 and "HTTPS: no certificate" in err, "no certificate: %s %s" % (rc, err))
        cmi = Cmi(s.deploy, args=["--config", s.config, "--tls-cert", s.cert, "--tls-key", s.key]).start()
        try:
            port = int(cmi.wait_log(r"listening on [^ ]+:(\d+) for HTTPS \(TLSv1.3,").group(1))
            status, _, f = https_get(port, s.context())
            check(status == 200 and f["version"] == "TLSv1.3", "flags' certificate: %s %s" % (status, f["version"]))
        finally:
            cmi.stop_clean()
