"""OAuth2 to a real RabbitMQ (issue 27), on 3.10 and 4.0: a node of its own
with rabbitmq_auth_backend_oauth2, whose signing key the test makes; tokens
signed by the test (RS256, PyJWT) and served by a token endpoint the test
starts (no identity server).  Publish, sendRpc and an inbound endpoint
across several token renewals under load (nothing lost, no connection
closed by the broker for an expired token); the endpoint down (701201 within
publishTimeout, then recovery), and refusing (said once)."""
import json
import os
import re
import threading
import time
import http.server

from harness import Cmi, check
from rabbitmq import RabbitNode, free_port, wait_for
from test_engine import Deployment
from test_publish import NS, RMQ_CONNECTORS, unique

CLIENT_SECRET = "client-secret-0815"
LIFETIME_S = 15  # 4.0 closes a connection at its token's exp: renewed at 60% (9 s)


class TokenEndpoint:
    """POST /token: an RS256 JWT for RabbitMQ's OAuth2 backend.  mode: "ok",
    "refuse" (401 invalid_client), or stopped (nothing listens)."""

    def __init__(self, key, lifetime=LIFETIME_S):
        import jwt  # noqa: F401 (checked here: the test needs it)
        self.key, self.lifetime, self.mode = key, lifetime, "ok"
        self.requests, self.port, self.server = [], free_port(), None

    def start(self, tls=None):
        """tls: (certificate, key) files: served over https."""
        ep = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                import jwt
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ep.requests.append((time.monotonic(), self.headers.get("Authorization", "")))
                if ep.mode == "refuse":
                    status, out = 401, {"error": "invalid_client", "error_description": "unknown client"}
                else:
                    now = int(time.time())
                    claims = {"sub": "cmi-app", "aud": ["rabbitmq"], "iat": now, "exp": now + ep.lifetime,
                              "scope": ["rabbitmq.configure:*/*", "rabbitmq.write:*/*", "rabbitmq.read:*/*"]}
                    token = jwt.encode(claims, ep.key, algorithm="RS256", headers={"kid": "cmi-key"})
                    status, out = 200, {"access_token": token, "expires_in": ep.lifetime, "token_type": "bearer"}
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        if tls is not None:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def oauth2_node(tls=False):
    """A node that takes the test's tokens (and guest, for the test's own
    look at it); tls: with RabbitNode's TLS listener too.  3.10's AMQP 1.0
    plugin logs each session in again by the user's name alone, which the OAuth2 backend refuses: there the token's
    user must also exist in the internal database (docs/limits.md)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    node = RabbitNode(name="cmioauth", plugins=["rabbitmq_auth_backend_oauth2"], tls=tls)
    with open(os.path.join(node.dir, "signing.pem"), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    node.conf += ("auth_backends.1 = rabbit_auth_backend_oauth2\nauth_backends.2 = rabbit_auth_backend_internal\n"
                 "auth_oauth2.resource_server_id = rabbitmq\nauth_oauth2.signing_keys.cmi-key = %s\n"
                 "auth_oauth2.default_key = cmi-key\n" % os.path.join(node.dir, "signing.pem"))
    node.start()
    if not node.broker.is4:
        node.api("PUT", "/api/users/cmi-app", {"password_hash": "", "tags": ""})
        node.api("PUT", "/api/permissions/%2F/cmi-app", {"configure": ".*", "write": ".*", "read": ".*"})
    return node, key


def oauth2_entry(node, endpoint, key="RMQ", extra="", url=None, servers=None):
    return ('<localEntry %s key="%s"><rabbitmq.init><connectionType>RABBITMQ</connectionType><name>%s</name>'
            '<serverUrls>%s</serverUrls><managementUrl>http://127.0.0.1:%d</managementUrl>'
            '<managementUsername>guest</managementUsername><managementPassword>guest</managementPassword>'
            '<oAuth2Enabled>true</oAuth2Enabled><tokenEndpoint>%s</tokenEndpoint>'
            '<grantType>client_credentials</grantType><clientId>cmi</clientId><clientSecret>%s</clientSecret>'
            '%s</rabbitmq.init></localEntry>'
            % (NS, key, key, servers or "127.0.0.1:%d" % node.amqp_port, node.mgmt_port,
               url or "http://127.0.0.1:%d/token" % endpoint.port, CLIENT_SECRET, extra))


def responder(node, endpoint, queue):
    """sendRpc's requests answered by an inbound endpoint logged in with OAuth2."""
    return ('<inboundEndpoint %s name="Responder" sequence="answer" onError="answerError" '
            'class="org.wso2.carbon.inbound.rabbitmq.RabbitMQListener" suspend="false"><parameters>'
            '<parameter name="rabbitmq.server.host.name">127.0.0.1</parameter>'
            '<parameter name="rabbitmq.server.port">%d</parameter>'
            '<parameter name="rabbitmq.connection.oauth2.enabled">true</parameter>'
            '<parameter name="rabbitmq.connection.oauth2.token.endpoint">http://127.0.0.1:%d/token</parameter>'
            '<parameter name="rabbitmq.connection.oauth2.client.id">cmi</parameter>'
            '<parameter name="rabbitmq.connection.oauth2.client.secret">%s</parameter>'
            '<parameter name="rabbitmq.management.url">http://127.0.0.1:%d</parameter>'
            '<parameter name="rabbitmq.management.username">guest</parameter>'
            '<parameter name="rabbitmq.management.password">guest</parameter>'
            '<parameter name="rabbitmq.queue.type">CLASSIC</parameter>'
            '<parameter name="rabbitmq.consumer.initial.credit">20</parameter>'
            '<parameter name="rabbitmq.message.receiver.thread.pool.size">20</parameter>'
            '<parameter name="rabbitmq.queue.name">%s</parameter></parameters></inboundEndpoint>'
            % (NS, node.amqp_port, endpoint.port, CLIENT_SECRET, node.mgmt_port, queue))


def files(node, endpoint, q_pub, q_rpc):
    return {
        "local-entries/rmq.xml": oauth2_entry(node, endpoint),
        "api/api.xml": '<api %s name="O" context="/o">'
                       '<resource methods="POST" uri-template="/pub"><inSequence><rabbitmq.publishMessage '
                       'configKey="RMQ"><queue>%s</queue><queueType>CLASSIC</queueType><publishTimeout>2000'
                       '</publishTimeout><responseVariable>r</responseVariable></rabbitmq.publishMessage>'
                       '<payloadFactory media-type="json"><format>${vars.r.payload}</format></payloadFactory>'
                       '<respond/></inSequence></resource>'
                       '<resource methods="POST" uri-template="/rpc"><inSequence><rabbitmq.sendRpc configKey="RMQ">'
                       '<queue>%s</queue><queueType>CLASSIC</queueType><requestTimeout>5000</requestTimeout>'
                       '</rabbitmq.sendRpc><respond/></inSequence></resource></api>' % (NS, q_pub, q_rpc),
        "sequences/answer.xml": '<sequence %s name="answer"><payloadFactory media-type="json"><format>'
                                '{"echo": ${payload.n}}</format></payloadFactory><rabbitmq.publishMessage '
                                'configKey="RMQ"><queue>{${headers["RABBITMQ_REPLY_TO"]}}</queue><responseVariable>'
                                'p</responseVariable><allowDynamicAddress>true</allowDynamicAddress>'
                                '</rabbitmq.publishMessage><rabbitmq.accept/></sequence>' % NS,
        "sequences/answerError.xml": '<sequence %s name="answerError"><rabbitmq.discard/></sequence>' % NS,
        "inbound-endpoints/responder.xml": responder(node, endpoint, q_rpc),
    }


def post(cmi, path, body, conn=None):
    status, _, data = cmi.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"},
                                  conn=conn)
    return status, data


def test_oauth2_renewals_under_load_endpoint_down_and_refusing(node):
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    onode, key = oauth2_node()
    endpoint = TokenEndpoint(key)
    try:
        q_pub, q_rpc = unique("oauth-pub"), unique("oauth-rpc")
        # ---- 1. the endpoint is down at start: 701201 within publishTimeout, then recovery
        with Deployment(files(onode, endpoint, q_pub, q_rpc)) as d:
            cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
            try:
                t0 = time.monotonic()
                status, data = post(cmi, "/o/pub", {"n": -1})
                took = time.monotonic() - t0
                check(status == 503 and json.loads(data)["error"]["code"] == 701201 and took < 4.0,
                      "no token: %s %r after %.1fs" % (status, data, took))
                cmi.wait_log(r"\[rabbitmq:RMQ\] no OAuth2 token from http://127\.0\.0\.1:%d/token: token endpoint "
                             r"unreachable" % endpoint.port, 10)
                endpoint.start()
                cmi.wait_log(r"\[rabbitmq:RMQ\] connection \d up: ", 40)
                cmi.wait_log(r"\[rabbitmq:Responder\] connection 0: consuming from", 40)
                # ---- 2. publish and RPC through three renewals (4.0 closes at exp)
                sent, failed, lock = [], [], threading.Lock()
                stop = time.monotonic() + 3 * LIFETIME_S * 0.6 + 4

                def load(k):
                    conn = cmi.connection(timeout=10)
                    n = 0
                    while time.monotonic() < stop:
                        v = k * 100000 + n
                        path, body = ("/o/rpc", {"n": v}) if n % 5 == 4 else ("/o/pub", {"n": v})
                        status, data = post(cmi, path, body, conn=conn)
                        ok = status == 200 and (json.loads(data).get("echo") == v if path == "/o/rpc"
                                                else json.loads(data).get("success") == "true")
                        with lock:
                            (sent if ok and path == "/o/pub" else failed if not ok else []).append((v, status, data))
                        n += 1
                threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(120)
                check(not failed, "%d requests failed across renewals, e.g. %r" % (len(failed), failed[:3]))
                got = sorted(json.loads(b)["n"] for b in onode.drain(q_pub))
                want = sorted(v for v, _, _ in sent)
                check(set(want) <= set(got), "%d published messages missing" % len(set(want) - set(got)))
                log = cmi.log_text()
                retired = len(re.findall(r"\[rabbitmq:RMQ\] connection \d+ retired", log))
                check(retired >= 4, "%d connections renewed in %d s of 15 s tokens:\n%s"
                      % (retired, LIFETIME_S * 2, log[-2000:]))
                check("credential expired" not in log and not re.search(r"\[rabbitmq:RMQ\] connection \d+ to \S+ down: "
                                                                         r"the broker", log),
                      "a connection outlived its token:\n%s" % "\n".join(
                          ln for ln in log.splitlines() if " down:" in ln)[:2000])
                check(CLIENT_SECRET not in log, "the client secret is in the log")
                # ---- 3. the endpoint refuses: said once, the connections go on until their tokens expire
                endpoint.mode = "refuse"
                cmi.wait_log(r"no OAuth2 token from .*: the token endpoint refused \(HTTP 401\): invalid_client: "
                             r"unknown client", 30)
                time.sleep(4)
                log = cmi.log_text()
                for who in ("RMQ", "Responder"):  # each connection config has its tokens: one line each
                    refusals = re.findall(r"\[rabbitmq:%s\] no OAuth2 token from .*refused" % who, log)
                    check(len(refusals) <= 1, "%s: %d log lines for one refusal" % (who, len(refusals)))
                check(len(endpoint.requests) > 3, "the refused endpoint is asked again (back-off)")
            finally:
                cmi.stop_clean()
    finally:
        endpoint.stop()
        onode.stop()


def test_oauth2_https_endpoint_trusted_by_its_own_ca_file(node):
    """tokenEndpointCaFile: the endpoint's certificate checked against that CA
    alone (the test's CA is no system CA): with it, tokens and publishes;
    without it, the certificate is refused (said once) and publishes fail
    with 701201.  The broker is reached over TLS (its own CA, another than
    the endpoint's): OAuth2 and TLS together."""
    import pki
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    onode, key = oauth2_node(tls=True)
    endpoint = TokenEndpoint(key, lifetime=60)
    try:
        d = os.path.join(onode.dir, "endpoint-pki")
        os.makedirs(d)
        ca = pki.make_ca(d)
        cert, cert_key = pki.make_cert(d, "server")
        endpoint.start(tls=(cert, cert_key))
        url = "https://localhost:%d/token" % endpoint.port
        q = unique("oauth-https")
        api = ('<api %s name="O" context="/o"><resource methods="POST" uri-template="/pub"><inSequence>'
               '<rabbitmq.publishMessage configKey="%%s"><queue>%s</queue><queueType>CLASSIC</queueType>'
               '<publishTimeout>2000</publishTimeout><responseVariable>r</responseVariable>'
               '</rabbitmq.publishMessage><payloadFactory media-type="json"><format>${vars.r.payload}</format>'
               '</payloadFactory><respond/></inSequence></resource></api>' % (NS, q))
        tls = ("<sslEnabled>true</sslEnabled><trustStoreLocation>%s</trustStoreLocation>"
               % os.path.join(onode.pki, "ca.pem"))
        for trusted in (True, False):
            extra = tls + ("<tokenEndpointCaFile>%s</tokenEndpointCaFile>" % ca if trusted else "")
            files = {"local-entries/rmq.xml": oauth2_entry(onode, endpoint, extra=extra, url=url,
                                                           servers="localhost:%d" % onode.amqps_port),
                     "api/api.xml": api % "RMQ"}
            with Deployment(files) as dep:
                cmi = Cmi(dep, workers=1, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
                try:
                    if trusted:
                        cmi.wait_log(r"\[rabbitmq:RMQ\] connection \d up: ", 30)
                        status, data = post(cmi, "/o/pub", {"n": 1})
                        check(status == 200 and json.loads(data)["success"] == "true",
                              "publish with a token from the https endpoint: %s %r" % (status, data))

                        def tls_conn():
                            conns = [c for c in onode.api("GET", "/api/connections")
                                     if c.get("port") == onode.amqps_port]
                            return conns or None
                        conns = wait_for(tls_conn, 20, "cmi's connection in the broker's list")
                        check(all(c.get("ssl") and c.get("user") == "cmi-app" for c in conns),
                              "OAuth2 over TLS: %r" % [(c.get("ssl"), c.get("user")) for c in conns])
                    else:
                        cmi.wait_log(r"\[rabbitmq:RMQ\] no OAuth2 token from %s: token endpoint unreachable: "
                                     r"SSL certificate problem" % re.escape(url), 20)
                        status, data = post(cmi, "/o/pub", {"n": 2})
                        check(status == 503 and json.loads(data)["error"]["code"] == 701201,
                              "no token, untrusted endpoint: %s %r" % (status, data))
                        lines = re.findall(r"no OAuth2 token from", cmi.log_text())
                        check(len(lines) == 1, "%d lines for one cause" % len(lines))
                finally:
                    cmi.stop_clean()
        check(onode.depth(q) == 1, "one message published (the trusted run)")
    finally:
        endpoint.stop()
        onode.stop()
