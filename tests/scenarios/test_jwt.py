"""The JWT handler (cmi.security.JwtAuthHandler, and io.integon.JwtAuthHandler
with that handler's properties): the attack corpus, each token made here with
keys made here (PyJWT and cryptography, independent of cmi's code), answered
401 before the flow runs; claims in the flow; jti replay; scopes; HMAC
secrets; JWKS endpoints that work, rotate, are down, slow or serve garbage."""
import base64
import http.server
import json
import os
import shutil
import tempfile
import threading
import time

import jwt
import pki
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from harness import SLOW, Cmi, check, run_cmi

API = """<api xmlns="http://ws.apache.org/ns/synapse" name="JwtAPI" context="/jwt">
  <resource methods="GET" uri-template="/hello/{id}">
    <inSequence>
      <log level="custom">
        <property name="flow reached" expression="get-property('uri.var.id')"/>
        <property name="sub" expression="${vars.jwt.sub}"/>
        <property name="xjwt" expression="get-property('X-JWT')"/>
      </log>
      <log level="headers"/>
      <payloadFactory media-type="json"><format>{"hello":"$1"}</format>
        <args><arg evaluator="xml" expression="get-property('uri.var.id')"/></args></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
  <resource methods="POST" uri-template="/orders">
    <inSequence><payloadFactory media-type="json"><format>{"ordered":true}</format></payloadFactory><respond/>
    </inSequence>
  </resource>
  <handlers>
    <handler class="%s">
%s
    </handler>
  </handlers>
</api>
"""

ISS = "https://idp.example.com"


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key, kid, alg=None):
    pub = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
    else:
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))
    d["kid"] = kid
    if alg:
        d["alg"] = alg
    return d


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def stray(last, n):
    """The last base64url character with an unused low bit set (n % 4 is 2 or 3)."""
    return B64URL[B64URL.index(last) | (1 if n % 4 == 3 else 8)]


def claims(**over):
    now = int(time.time())
    c = {"iss": ISS, "sub": "alice", "aud": ["orders", "billing"], "iat": now - 10, "exp": now + 600,
         "jti": "jti-%d-%f" % (now, time.monotonic()), "scope": "orders.read profile"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def token(key, kid="k1", alg="RS256", headers=None, **over):
    h = {"kid": kid} if kid else {}
    h.update(headers or {})
    return jwt.encode(claims(**over), key, algorithm=alg, headers=h)


class Setup:
    def __init__(self, props, cls="io.integon.JwtAuthHandler", keys=None):
        self.dir = tempfile.mkdtemp(prefix="cmi-jwt-")
        self.rsa = rsa_key()
        self.ec = ec.generate_private_key(ec.SECP256R1())
        if keys is None:
            keys = [jwk_of(self.rsa, "k1"), jwk_of(self.ec, "e1")]
        self.jwks = os.path.join(self.dir, "jwks.json")
        with open(self.jwks, "w") as f:
            json.dump({"keys": keys}, f)
        deploy = os.path.join(self.dir, "deploy", "api")
        os.makedirs(deploy)
        with open(os.path.join(deploy, "jwt.xml"), "w") as f:
            f.write(API % (cls, props.replace("@JWKS@", self.jwks)))
        self.deploy = os.path.dirname(deploy)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def prop(name, value):
    return '      <property name="%s" value="%s"/>' % (name, value)


def flow_log(cmi, mark):
    return "\n".join(cmi.log_text().splitlines()[mark:]) + "\n"


def bearer(t, header="Authorization"):
    return {header: "Bearer " + t}


def test_jwt_attack_corpus():
    props = "\n".join([prop("jwtHeader", "Authorization"), prop("jwksEndpoint", "@JWKS@"),
                       prop("iatClaim", "1800"), prop("issClaim", "^https://idp\\.example\\.com$"),
                       prop("audClaim", "orders"), prop("subClaim", ""), prop("forwardToken", "true")])
    with Setup(props) as s:
        cmi = Cmi(s.deploy, workers=2).start()
        try:
            mark = cmi.log_mark()
            other = rsa_key()
            now = int(time.time())
            good = token(s.rsa)
            good_at = token(s.rsa, headers={"typ": "at+jwt"})
            good_es = token(s.ec, kid="e1", alg="ES256")
            good_nokid = token(s.rsa, kid=None)
            h, p, sig = good.split(".")
            tampered_payload = b64(json.dumps(claims(sub="mallory")).encode())
            none_header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
            confusion_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
            import hashlib
            import hmac as hm
            signing_input = (confusion_header + "." + p).encode()
            confusion = signing_input.decode() + "." + b64(hm.new(pem_public(s.rsa), signing_input,
                                                                   hashlib.sha256).digest())
            crit = token(s.rsa, headers={"crit": ["exp"], "exp": 1})
            # An ES256 token whose header says ES256 for the RSA key's kid.
            es_on_rsa_kid = token(s.ec, kid="k1", alg="ES256")
            corpus = {
                "expired": (token(s.rsa, exp=now - 300, iat=now - 900), "has expired"),
                "not-yet-valid": (token(s.rsa, nbf=now + 600), "not valid yet"),
                "too-old": (token(s.rsa, iat=now - 7200), "too old"),
                "issued-in-future": (token(s.rsa, iat=now + 900), "issued in the future"),
                "no-exp": (token(s.rsa, exp=None), "no exp"),
                "wrong-issuer": (token(s.rsa, iss="https://evil.example.com"), "issuer does not match"),
                "issuer-prefix": (token(s.rsa, iss=ISS + ".evil.com"), "issuer does not match"),
                "wrong-audience": (token(s.rsa, aud="payments"), "audience does not match"),
                "tampered-payload": (h + "." + tampered_payload + "." + sig, "does not verify"),
                "tampered-signature": (h + "." + p + "." + sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB"), "does not verify"),
                "wrong-key": (token(other), "does not verify"),
                "unknown-kid": (token(other, kid="nope"), "no key has the token's kid"),
                "alg-none": (none_header + "." + p + ".", "alg none"),
                "alg-none-with-sig": (none_header + "." + p + "." + sig, "alg none"),
                "hs256-with-rsa-public-key": (confusion, "no HMAC secret"),
                "es256-on-rsa-key": (es_on_rsa_kid, "does not fit"),
                "crit-header": (crit, "crit"),
                "oversized": (token(s.rsa, pad="x" * 9000), "too large"),
                "two-parts": (h + "." + p, "not a signed JWT"),
                "jwe-five-parts": (h + "." + p + ".a.b.c", "not a signed JWT"),
                "garbage": ("not-a-token", "not a signed JWT"),
                "bad-base64": (h + ".!!!." + sig, "does not verify"),
                # The same signature bytes spelled another way: '+' for '-', stray low bits.
                "plus-for-minus": (h + "." + p + "." + sig.replace("-", "+").replace("_", "/")
                                   if ("-" in sig or "_" in sig) else h + "." + p + ".+" + sig[1:],
                                   "not base64url"),
                "stray-bits": (h + "." + p + "." + sig[:-1] + stray(sig[-1], len(sig)), "not base64url"),
            }
            results = {}
            for name, (t, reason) in corpus.items():
                status, headers, body = cmi.request("GET", "/jwt/hello/" + name, headers=bearer(t))
                message = json.loads(body).get("message", "") if status == 401 else ""
                results[name] = "%s %s" % (status, message)
                check(status == 401 and headers.get("www-authenticate") == 'Bearer realm="cmi", error="invalid_token"'
                      and reason in message, "%s: %s %s %r (wanted %r)" % (name, status, headers, body, reason))
            # Headers that carry no bearer token.
            for name, hdrs, challenge in (("no-header", {}, 'Bearer realm="cmi"'),
                                          # RFC 6750 3.1: another scheme is no token: no error code.
                                          ("basic", {"Authorization": "Basic YWxhZGRpbjpvcGVu"},
                                           'Bearer realm="cmi"'),
                                          ("bearer-empty", {"Authorization": "Bearer "}, 'Bearer realm="cmi"')):
                status, headers, body = cmi.request("GET", "/jwt/hello/" + name, headers=hdrs)
                check(status == 401 and headers.get("www-authenticate") == challenge,
                      "%s: %s %s %r" % (name, status, headers, body))
            for name, t in (("good", good), ("good-at-jwt", good_at), ("good-es256", good_es),
                            ("good-no-kid", good_nokid), ("good-again", good)):
                status, _, body = cmi.request("GET", "/jwt/hello/" + name, headers=bearer(t))
                check(status == 200 and json.loads(body) == {"hello": name}, "%s: %s %r" % (name, status, body))
            status, _, _ = cmi.request("GET", "/jwt/hello/lower-scheme", headers={"authorization": "bearer " + good})
            check(status == 200, "scheme in lower case: %s" % status)
            log = flow_log(cmi, mark)
            for name in list(corpus) + ["no-header", "basic", "bearer-empty"]:
                check("flow reached = %s," % name not in log, "the flow ran for refused %s" % name)
            check("flow reached = good, sub = alice" in log, "the claims did not reach the flow: %s" % log[-2000:])
            check('"iss":"%s"' % ISS.replace("/", "\\/") in log or '"iss":"%s"' % ISS in log,
                  "X-JWT was not forwarded: %s" % log[-2000:])
            check(good.split(".")[2] not in log, "a token's signature reached the log")
            print("corpus:\n" + "\n".join("  %s: %s" % kv for kv in results.items()))
        finally:
            cmi.stop_clean()


def test_jwt_signature_checks_are_bounded():
    # A token without a kid is tried against the keys that fit, at most 8:
    # a JWKS of 12 keys and a token signed by the 12th without a kid is
    # refused; with its kid it passes.  (A token costs at most 8 checks.)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(12)]
    with Setup(prop("jwksEndpoint", "@JWKS@"), keys=[jwk_of(k, "e%d" % i) for i, k in enumerate(keys)]) as s:
        cmi = Cmi(s.deploy).start()
        try:
            status, _, _ = cmi.request("GET", "/jwt/hello/first-nokid", headers=bearer(token(keys[0], kid=None,
                                                                                             alg="ES256")))
            check(status == 200, "the first key without a kid: %s" % status)
            status, _, body = cmi.request("GET", "/jwt/hello/last-nokid", headers=bearer(token(keys[11], kid=None,
                                                                                              alg="ES256")))
            check(status == 401 and b"does not verify" in body, "the 12th key without a kid: %s %r" % (status, body))
            status, _, _ = cmi.request("GET", "/jwt/hello/last-kid", headers=bearer(token(keys[11], kid="e11",
                                                                                          alg="ES256")))
            check(status == 200, "the 12th key by its kid: %s" % status)
        finally:
            cmi.stop_clean()


def test_jwt_replay_scopes_and_hmac():
    secret = "0123456789abcdef0123456789abcdef-hmac"
    props = "\n".join([prop("jwksEndpoint", "@JWKS@"), prop("jtiClaim", "enabled"), prop("jwtHeader", "X-Token"),
                       prop("hmacSecret", "{wso2:vault-lookup('jwt_hmac')}"),
                       prop("scopes", "profile"), prop("scopes:/orders", "orders.write")])
    with Setup(props, cls="cmi.security.JwtAuthHandler") as s:
        cmi = Cmi(s.deploy, env={"CMI_SECRET_jwt_hmac": secret}).start()

        def xt(t):
            return bearer(t, "X-Token")
        try:
            t = token(s.rsa, jti="once")
            status, _, _ = cmi.request("GET", "/jwt/hello/first", headers=xt(t))
            check(status == 200, "first use: %s" % status)
            status, headers, body = cmi.request("GET", "/jwt/hello/replayed", headers=xt(t))
            check(status == 401 and b"used before" in body, "replayed jti: %s %r" % (status, body))
            status, _, _ = cmi.request("GET", "/jwt/hello/other", headers=xt(token(s.rsa, jti="twice")))
            check(status == 200, "another jti: %s" % status)
            status, _, body = cmi.request("GET", "/jwt/hello/nojti", headers=xt(token(s.rsa, jti=None)))
            check(status == 401, "no jti with jtiClaim: %s %r" % (status, body))
            # Scopes: every resource needs "profile"; POST /orders "orders.write" too.
            status, headers, _ = cmi.request("POST", "/jwt/orders", body=b"{}", headers=dict(
                xt(token(s.rsa, jti="s1")), **{"Content-Type": "application/json"}))
            check(status == 403 and 'error="insufficient_scope", scope="profile orders.write"' in headers.get(
                "www-authenticate", ""), "missing resource scope: %s %s" % (status, headers))
            status, _, _ = cmi.request("POST", "/jwt/orders", body=b"{}", headers=dict(
                xt(token(s.rsa, jti="s2", scope="profile orders.write")), **{"Content-Type": "application/json"}))
            check(status == 200, "resource scope granted: %s" % status)
            status, _, _ = cmi.request("GET", "/jwt/hello/noprofile", headers=xt(token(s.rsa, jti="s3",
                                                                                           scope="orders.read")))
            check(status == 403, "missing API scope: %s" % status)
            status, _, _ = cmi.request("GET", "/jwt/hello/scp", headers=xt(token(s.rsa, jti="s4", scope=None,
                                                                                     scp=["profile"])))
            check(status == 200, "scp array: %s" % status)
            # HMAC: the secret from the store; a token signed with another secret is refused.
            status, _, _ = cmi.request("GET", "/jwt/hello/hs256", headers=xt(token(secret, kid=None, alg="HS256",
                                                                                       jti="h1")))
            check(status == 200, "HS256 with the secret: %s" % status)
            status, _, _ = cmi.request("GET", "/jwt/hello/hs512", headers=xt(token(secret, kid=None, alg="HS512",
                                                                                       jti="h2")))
            check(status == 200, "HS512 with the secret: %s" % status)
            status, _, _ = cmi.request("GET", "/jwt/hello/hsbad", headers=xt(token("x" * 40, kid=None,
                                                                                       alg="HS256", jti="h3")))
            check(status == 401, "HS256 with another secret: %s" % status)
            # Algorithm confusion where an HMAC secret exists: the RSA public key as the HMAC key is not it.
            confusion = jwt.encode(claims(jti="h4"), "unused", algorithm="HS256", headers={"kid": "k1"})
            head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
            body = confusion.split(".")[1]
            import hashlib
            import hmac as hm
            mac = hm.new(pem_public(s.rsa), (head + "." + body).encode(), hashlib.sha256).digest()
            status, _, text = cmi.request("GET", "/jwt/hello/confusion", headers=xt(head + "." + body + "." +
                                                                                        b64(mac)))
            check(status == 401 and b"does not verify" in text, "HS256 signed with the RSA public key: %s %r" %
                  (status, text))
            # The token in the Authorization header: not this handler's header.
            status, headers, _ = cmi.request("GET", "/jwt/hello/wrongheader", headers=bearer(token(s.rsa, jti="w1")))
            check(status == 401 and headers.get("www-authenticate") == 'Bearer realm="cmi"',
                  "token in another header: %s %s" % (status, headers))
            # With jtiClaim, a token living longer than a day is refused (its jti would hold its place as long).
            status, _, text = cmi.request("GET", "/jwt/hello/longlived", headers=xt(token(
                s.rsa, jti="l1", exp=int(time.time()) + 2 * 86400)))
            check(status == 401 and b"24 hours" in text, "long-lived token with jti: %s %r" % (status, text))
            log = cmi.log_text()
            check(secret not in log, "the HMAC secret reached the log")
            check(t.split(".")[2] not in log and "x-token = *****" in log.lower(),
                  "the bearer token in X-Token was not masked by the full log")
        finally:
            cmi.stop_clean()


class JwksServer:
    """A JWKS endpoint: serves self.doc, or garbage, or answers slowly;
    over TLS with cert and key."""

    def __init__(self, cert=None, key=None):
        self.doc = b'{"keys": []}'
        self.delay = 0.0
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if outer.delay:
                    time.sleep(outer.delay)
                body = outer.doc
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if cert is not None:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = "%s://localhost:%d/jwks" % (scheme, self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_status(cmi, path, headers, want, timeout):
    deadline = time.monotonic() + timeout * SLOW
    status = None
    while time.monotonic() < deadline:
        status, _, _ = cmi.request("GET", path, headers=headers)
        if status == want:
            return status
        time.sleep(0.1)
    return status


def test_jwt_jwks_endpoint_rotation_down_garbage_slow():
    srv = JwksServer()
    props = "\n".join([prop("jwksEndpoint", srv.url), prop("jwksMinRefreshInterval", "1")])
    with Setup(props) as s:
        first, second = rsa_key(), rsa_key()
        srv.doc = b"this is not JSON"
        cmi = Cmi(s.deploy).start()
        try:
            # Garbage from the endpoint: no keys yet, 503 with Retry-After (never a hang), one error line.
            cmi.wait_log(r"JWKS endpoint .*not a JSON object", timeout=10 * SLOW)
            status, headers, _ = cmi.request("GET", "/jwt/hello/early", headers=bearer(token(first)))
            check(status == 503 and headers.get("retry-after") == "1", "no keys yet: %s %s" % (status, headers))
            # The endpoint fixed: the retry (backing off, 2 s) brings the keys.
            srv.doc = json.dumps({"keys": [jwk_of(first, "r1")]}).encode()
            check(wait_status(cmi, "/jwt/hello/fetched", bearer(token(first, kid="r1")), 200, 15) == 200,
                  "the keys never came")
            # Rotation: a new kid asks for a refresh; the next fetch brings it.
            srv.doc = json.dumps({"keys": [jwk_of(first, "r1"), jwk_of(second, "r2")]}).encode()
            check(wait_status(cmi, "/jwt/hello/rotated", bearer(token(second, kid="r2")), 200, 10) == 200,
                  "the rotated key never came")
            # Unknown kids in a flood: fetches stay at most one per jwksMinRefreshInterval.
            hits = srv.hits
            t0 = time.monotonic()
            for i in range(50):
                status, _, _ = cmi.request("GET", "/jwt/hello/flood", headers=bearer(token(second, kid="x%d" % i)))
                check(status == 401, "unknown kid: %s" % status)
            elapsed = time.monotonic() - t0
            check(srv.hits - hits <= elapsed / 1.0 + 2, "%d fetches in %.1f s for unknown kids" %
                  (srv.hits - hits, elapsed))
            # Slow endpoint: requests go on with the keys held (no worker waits).
            srv.delay = 20
            t0 = time.monotonic()
            for i in range(5):
                status, _, _ = cmi.request("GET", "/jwt/hello/slow", headers=bearer(token(first, kid="r1")))
                check(status == 200, "while the endpoint is slow: %s" % status)
                cmi.request("GET", "/jwt/hello/slowkid", headers=bearer(token(first, kid="new-%d" % i)))
            check(time.monotonic() - t0 < 5 * SLOW, "requests waited on the slow endpoint")
            log = cmi.log_text()
            check(log.count("not a JSON object") == 1, "the failure streak logged more than once")
        finally:
            srv.delay = 0
            cmi.stop_clean()
            srv.close()


def test_jwt_jwks_over_https_with_its_own_trust():
    # An https endpoint whose certificate a CA made here signed: trusted with
    # jwksCaFile; without it (the system's trust) the fetch fails, the
    # tokens get 503, and the error names the endpoint.
    d = tempfile.mkdtemp(prefix="cmi-jwks-tls-")
    try:
        ca = pki.make_ca(d)
        cert, key = pki.make_cert(d, "jwks")
        srv = JwksServer(cert, key)
        try:
            signer = rsa_key()
            srv.doc = json.dumps({"keys": [jwk_of(signer, "t1")]}).encode()
            for trust, want in ((prop("jwksCaFile", ca), 200), ("", 503)):
                with Setup(prop("jwksEndpoint", srv.url) + trust) as s:
                    cmi = Cmi(s.deploy).start()
                    try:
                        if want == 200:
                            got = wait_status(cmi, "/jwt/hello/tls", bearer(token(signer, kid="t1")), 200, 10)
                        else:
                            cmi.wait_log(r"JWKS endpoint https://localhost:\d+/jwks: .*certificate", timeout=10 * SLOW)
                            got, _, _ = cmi.request("GET", "/jwt/hello/untrusted", headers=bearer(token(signer,
                                                                                                         kid="t1")))
                        check(got == want, "trust %r: %s, wanted %s" % (trust, got, want))
                    finally:
                        cmi.stop_clean()
        finally:
            srv.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_jwt_jwks_endpoint_down():
    props = prop("jwksEndpoint", "http://127.0.0.1:9/jwks")  # discard port: refused
    with Setup(props) as s:
        cmi = Cmi(s.deploy).start()
        try:
            cmi.wait_log(r"JWKS endpoint http://127.0.0.1:9/jwks: .*no keys yet", timeout=10 * SLOW)
            status, headers, _ = cmi.request("GET", "/jwt/hello/down", headers=bearer(token(s.rsa)))
            check(status == 503 and headers.get("retry-after") == "1", "endpoint down: %s %s" % (status, headers))
            status, _, _ = cmi.request("GET", "/jwt/hello/none")
            check(status == 401, "no token, endpoint down: %s" % status)
        finally:
            cmi.stop_clean()


def test_jwt_handler_config_errors():
    cases = {
        "no keys": (prop("issClaim", "x"), "no keys"),
        "unknown property": (prop("jwksEndpoint", "@JWKS@") + prop("colour", "red"), 'no property "colour"'),
        "bad regex": (prop("jwksEndpoint", "@JWKS@") + prop("issClaim", "(?=x)a"), "issClaim"),
        "clear-text hmac": (prop("hmacSecret", "0123456789abcdef0123456789abcdef"), "vault-lookup"),
        "missing file": (prop("jwksEndpoint", "/nonexistent/jwks.json"), "/nonexistent/jwks.json"),
        "bad scheme": (prop("jwksEndpoint", "ftp://x/jwks"), "not an http(s) URL"),
        "credentials in URL": (prop("jwksEndpoint", "https://u:secret@idp/jwks"), "with credentials"),
        "scope of no resource": (prop("jwksEndpoint", "@JWKS@") + prop("scopes:/nothing", "a"), "/nothing"),
        "bad number": (prop("jwksEndpoint", "@JWKS@") + prop("iatClaim", "soon"), "iatClaim"),
        "a switch misspelt": (prop("jwksEndpoint", "@JWKS@") + prop("jtiClaim", "yes"),
                              'jtiClaim: "yes" is neither enabled nor disabled'),
        "CA file missing": (prop("jwksEndpoint", "https://idp.example.com/jwks") + prop("jwksCaFile", "/nonexistent/ca.pem"),
                            "jwksCaFile: /nonexistent/ca.pem"),
        "URL without host": (prop("jwksEndpoint", "https:///jwks"), "has no host"),
    }
    for name, (props, want) in cases.items():
        with Setup(props) as s:
            rc, out, err = run_cmi(["check", s.deploy])
            check(rc != 0 and want in out + err, "%s: rc %s, %s" % (name, rc, out + err))
    # An env: property whose variable is not set: a check not made, so cmi
    # does not start (cmi check only warns: a CI pipeline lacks the variables).
    with Setup(prop("jwksEndpoint", "@JWKS@") + prop("audClaim", "env:CMI_TEST_UNSET_AUD")) as s:
        rc, out, err = run_cmi(["check", s.deploy])
        check(rc == 0 and "CMI_TEST_UNSET_AUD is not set" in out + err, "check, env unset: %s %s" % (rc, out + err))
        rc, out, err = run_cmi(["run", s.deploy, "--http-port", "0", "--http-host", "127.0.0.1"])
        check(rc != 0 and "CMI_TEST_UNSET_AUD is not set" in out + err, "run, env unset: %s %s" % (rc, out + err))
        rc, out, err = run_cmi(["check", s.deploy], env={"CMI_TEST_UNSET_AUD": "orders"})
        check(rc == 0 and "not set" not in out + err, "env set: %s %s" % (rc, out + err))
    # Plain http for keys: a warning.
    with Setup(prop("jwksEndpoint", "http://idp.example.com/jwks")) as s:
        rc, out, err = run_cmi(["check", s.deploy])
        check(rc == 0 and "over plain http" in out + err, "http endpoint: %s %s" % (rc, out + err))
    # A JWKS file with a weak key and a private key: those skipped (warned), the good one used.
    with Setup(prop("jwksEndpoint", "@JWKS@")) as s:
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        with open(s.jwks, "w") as f:
            json.dump({"keys": [jwk_of(weak, "weak"), jwk_of(s.rsa, "k1")]}, f)
        rc, out, err = run_cmi(["check", s.deploy])
        check(rc == 0 and "1 keys skipped" in out + err, "weak key: %s %s" % (rc, out + err))
