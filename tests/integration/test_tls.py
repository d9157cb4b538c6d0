"""TLS and SASL EXTERNAL to a real RabbitMQ (issue 27), on 3.10 and 4.0: the
run's node has a TLS listener (run.py: RabbitNode(tls=True), certificates
it made itself with openssl: a CA, a server certificate for localhost, a
client certificate for the user cmi-client).  Publish, sendRpc and the
inbound endpoint over TLS, with PLAIN and with EXTERNAL; failover with TLS;
each failure said once, naming the server and the reason; bad key and trust
stores refused at start-up."""
import json
import os
import re
import socket
import subprocess
import time

from harness import Cmi, check, run_cmi
from rabbitmq import free_port, wait_for
from test_engine import Deployment
from test_publish import NS, RMQ_CONNECTORS, unique
import pki

KEY_PASSWORD = "p12-secret-4711"
TRUST_PASSWORD = "trust-secret-4711"
WRONG_PASSWORD = "wrong-secret-0815"


def tls_entry(node, key, servers, extra, pool=2):
    return ('<localEntry %s key="%s"><rabbitmq.init><connectionType>RABBITMQ</connectionType><name>%s</name>'
            '<serverUrls>%s</serverUrls><managementUrl>http://127.0.0.1:%d</managementUrl>'
            '<connectionPoolSize>%d</connectionPoolSize>%s</rabbitmq.init></localEntry>'
            % (NS, key, key, servers, node.mgmt_port, pool, extra))


def p(node, name):
    return os.path.join(node.pki, name)


def plain_over_tls(node):
    """PLAIN over TLS: the trust store as PKCS#12 with its password, the key
    store as PKCS#12 (a client certificate the broker checks)."""
    return ("<username>guest</username><password>guest</password><sslEnabled>true</sslEnabled>"
            "<trustStoreLocation>%s</trustStoreLocation><trustStorePassword>%s</trustStorePassword>"
            "<keyStoreLocation>%s</keyStoreLocation><keyStorePassword>%s</keyStorePassword>"
            % (p(node, "ca.trust.p12"), TRUST_PASSWORD, p(node, "client.p12"), KEY_PASSWORD))


def external(node, keystore="client.both.pem", trust="ca.pem"):
    """EXTERNAL: the user is the certificate's common name (a PEM key store:
    certificate and key in one file); 3.x declares through the management
    API, which takes a password."""
    return ("<saslMechanism>EXTERNAL</saslMechanism><sslEnabled>true</sslEnabled>"
            "<trustStoreLocation>%s</trustStoreLocation><keyStoreLocation>%s</keyStoreLocation>"
            "<managementUsername>guest</managementUsername><managementPassword>guest</managementPassword>"
            % (p(node, trust), p(node, keystore)))


def inbound_external(node, queue):
    return ('<inboundEndpoint %s name="Responder" sequence="answer" onError="answerError" '
            'class="org.wso2.carbon.inbound.rabbitmq.RabbitMQListener" suspend="false"><parameters>'
            '<parameter name="rabbitmq.server.host.name">localhost</parameter>'
            '<parameter name="rabbitmq.server.port">%d</parameter>'
            '<parameter name="rabbitmq.connection.sasl.mechanism">EXTERNAL</parameter>'
            '<parameter name="rabbitmq.connection.ssl.enabled">true</parameter>'
            '<parameter name="rabbitmq.connection.ssl.keystore.location">%s</parameter>'
            '<parameter name="rabbitmq.connection.ssl.keystore.password">%s</parameter>'
            '<parameter name="rabbitmq.connection.ssl.keystore.type">PKCS12</parameter>'
            '<parameter name="rabbitmq.connection.ssl.truststore.location">%s</parameter>'
            '<parameter name="rabbitmq.management.url">http://127.0.0.1:%d</parameter>'
            '<parameter name="rabbitmq.management.username">guest</parameter>'
            '<parameter name="rabbitmq.management.password">guest</parameter>'
            '<parameter name="rabbitmq.queue.type">CLASSIC</parameter>'
            '<parameter name="rabbitmq.queue.name">%s</parameter></parameters></inboundEndpoint>'
            % (NS, node.amqps_port, p(node, "client.p12"), KEY_PASSWORD, p(node, "ca.pem"), node.mgmt_port,
               queue))


def inbound_no_host_check(node, queue):
    """An endpoint at 127.0.0.1 (a name proton does not find in the
    certificate) let in only by the host name switch, under the name MI's
    inbound code reads."""
    return ('<inboundEndpoint %s name="NoHostAlias" sequence="answerError" onError="answerError" '
            'class="org.wso2.carbon.inbound.rabbitmq.RabbitMQListener" suspend="false"><parameters>'
            '<parameter name="rabbitmq.server.host.name">127.0.0.1</parameter>'
            '<parameter name="rabbitmq.server.port">%d</parameter>'
            '<parameter name="rabbitmq.server.user.name">guest</parameter>'
            '<parameter name="rabbitmq.server.password">guest</parameter>'
            '<parameter name="rabbitmq.connection.ssl.enabled">true</parameter>'
            '<parameter name="rabbitmq.connection.ssl.truststore.location">%s</parameter>'
            '<parameter name="rabbitmq.connection.ssl.hostname.verify.enabled">false</parameter>'
            '<parameter name="rabbitmq.management.url">http://127.0.0.1:%d</parameter>'
            '<parameter name="rabbitmq.queue.type">CLASSIC</parameter>'
            '<parameter name="rabbitmq.queue.name">%s</parameter></parameters></inboundEndpoint>'
            % (NS, node.amqps_port, p(node, "ca.pem"), node.mgmt_port, queue))


def responder(queue_key="PlainTls"):
    return ('<sequence %s name="answer"><payloadFactory media-type="json">'
            '<format>{"echo": ${payload.n}, "by": "tls"}</format></payloadFactory>'
            '<rabbitmq.publishMessage configKey="%s"><queue>{${headers["RABBITMQ_REPLY_TO"]}}</queue>'
            '<responseVariable>p</responseVariable><allowDynamicAddress>true</allowDynamicAddress>'
            '</rabbitmq.publishMessage><rabbitmq.accept/></sequence>' % (NS, queue_key))


def api(q_plain, q_ext, q_rpc):
    def pub(path, key, q):
        return ('<resource methods="POST" uri-template="%s"><inSequence><rabbitmq.publishMessage configKey="%s">'
                '<queue>%s</queue><queueType>CLASSIC</queueType><responseVariable>r</responseVariable>'
                '</rabbitmq.publishMessage><payloadFactory media-type="json"><format>${vars.r.payload}</format>'
                '</payloadFactory><respond/></inSequence></resource>' % (path, key, q))
    rpc = ('<resource methods="POST" uri-template="/rpc"><inSequence><rabbitmq.sendRpc configKey="External">'
           '<queue>%s</queue><queueType>CLASSIC</queueType></rabbitmq.sendRpc><respond/></inSequence></resource>'
           % q_rpc)
    return ('<api %s name="Tls" context="/tls">%s%s%s</api>'
            % (NS, pub("/plain", "PlainTls", q_plain), pub("/external", "External", q_ext), rpc))


def post(cmi, path, body):
    status, _, data = cmi.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status, data


def other_ca(node):
    """A CA that signed nothing the broker shows (made once per node)."""
    path = p(node, "other.pem")
    if not os.path.exists(path):
        pki.make_ca(node.pki, name="other", cn="other CA")
    return path


def test_publish_rpc_and_inbound_over_tls_with_plain_and_external(node):
    q_plain, q_ext, q_rpc = unique("tls-plain"), unique("tls-ext"), unique("tls-rpc")
    dead = free_port()  # the first server of PlainTls: failover over TLS servers
    files = {"local-entries/plain.xml": tls_entry(node, "PlainTls", "localhost:%d,localhost:%d"
                                                  % (dead, node.amqps_port), plain_over_tls(node)),
             "local-entries/ext.xml": tls_entry(node, "External", "localhost:%d" % node.amqps_port,
                                                external(node)),
             # MI's ways to give up checks (each with a warning), and TLS 1.3 only
             "local-entries/trustall.xml": tls_entry(node, "TrustAll", "127.0.0.1:%d" % node.amqps_port,
                                                     "<username>guest</username><password>guest</password>"
                                                     "<sslEnabled>true</sslEnabled><trustEverything>true"
                                                     "</trustEverything><trustStoreLocation>%s"
                                                     "</trustStoreLocation>" % other_ca(node), pool=1),
             # no trust store: the system's CAs (SSL_CERT_FILE below makes the test's CA one)
             "local-entries/system.xml": tls_entry(node, "SystemCAs", "localhost:%d" % node.amqps_port,
                                                   "<username>guest</username><password>guest</password>"
                                                   "<sslEnabled>true</sslEnabled>", pool=1),
             "local-entries/nohost.xml": tls_entry(node, "NoHostCheck", "127.0.0.1:%d" % node.amqps_port,
                                                   "<username>guest</username><password>guest</password>"
                                                   "<sslEnabled>true</sslEnabled><trustStoreLocation>%s"
                                                   "</trustStoreLocation><hostnameVerificationEnabled>false"
                                                   "</hostnameVerificationEnabled>" % p(node, "ca.pem"), pool=1),
             "local-entries/tls13.xml": tls_entry(node, "Tls13", "localhost:%d" % node.amqps_port,
                                                  "<username>guest</username><password>guest</password>"
                                                  "<sslEnabled>true</sslEnabled><trustStoreLocation>%s"
                                                  "</trustStoreLocation><sslVersion>TLSv1.3</sslVersion>"
                                                  % p(node, "ca.pem"), pool=1),
             "api/tls.xml": api(q_plain, q_ext, q_rpc),
             "sequences/answer.xml": responder(),
             "sequences/answerError.xml": '<sequence %s name="answerError"><rabbitmq.discard/></sequence>' % NS,
             "inbound-endpoints/responder.xml": inbound_external(node, q_rpc),
             "inbound-endpoints/alias.xml": inbound_no_host_check(node, unique("tls-alias"))}
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    with Deployment(files) as d:
        cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS,
                                     "SSL_CERT_FILE": p(node, "ca.pem")}).start()
        try:
            for key in ("PlainTls", "External"):
                for i in (0, 1):
                    cmi.wait_log(r"\[rabbitmq:%s\] connection %d up: localhost:%d " % (key, i, node.amqps_port), 30)
            cmi.wait_log(r"\[rabbitmq:Responder\] connection 0: consuming from", 30)
            # Another CA's trust store and 127.0.0.1 (not a name proton finds in the certificate): only
            # trustEverything lets it in; 127.0.0.1 with the right CA: only the host name switch does.
            cmi.wait_log(r"\[rabbitmq:TrustAll\] trustEverything: the broker's certificate is not checked", 5)
            cmi.wait_log(r"\[rabbitmq:TrustAll\] connection 0 up: ", 30)
            cmi.wait_log(r"\[rabbitmq:SystemCAs\] connection 0 up: ", 30)
            # MI's inbound code reads ...hostname.verify.enabled (its docs: ...verification.enabled)
            cmi.wait_log(r"\[rabbitmq:NoHostAlias\] hostnameVerificationEnabled is false", 5)
            cmi.wait_log(r"\[rabbitmq:NoHostAlias\] connection 0: consuming from", 30)
            cmi.wait_log(r"\[rabbitmq:NoHostCheck\] hostnameVerificationEnabled is false: any certificate", 5)
            cmi.wait_log(r"\[rabbitmq:NoHostCheck\] connection 0 up: 127\.0\.0\.1:", 30)
            cmi.wait_log(r"\[rabbitmq:Tls13\] connection 0 up: ", 30)
            for n in range(20):
                status, data = post(cmi, "/tls/plain", {"n": n})
                check(status == 200 and json.loads(data)["success"] == "true", "PLAIN over TLS: %s %r" % (status, data))
                status, data = post(cmi, "/tls/external", {"n": n})
                check(status == 200 and json.loads(data)["success"] == "true", "EXTERNAL: %s %r" % (status, data))
            for n in range(5):
                status, data = post(cmi, "/tls/rpc", {"n": n})
                check(status == 200 and json.loads(data) == {"echo": n, "by": "tls"},
                      "sendRpc over TLS, answered by the inbound endpoint over TLS: %s %r" % (status, data))
            got_plain = sorted(json.loads(b)["n"] for b in node.drain(q_plain))
            got_ext = sorted(json.loads(b)["n"] for b in node.drain(q_ext))
            check(got_plain == list(range(20)) and got_ext == list(range(20)),
                  "queued: %r / %r" % (got_plain, got_ext))
            def tls_conns():
                # The management API lists connections with its statistics
                # (every 5 s); 3.x lists an AMQP 1.0 connection once per
                # session (one name: "peer -> node").
                conns = {c["name"]: c for c in node.api("GET", "/api/connections")
                         if c.get("port") == node.amqps_port}
                return list(conns.values()) if len(conns) >= 10 else None
            conns = wait_for(tls_conns, 20, "cmi's ten TLS connections in the broker's list")
            users = sorted(c.get("user") for c in conns)
            # guest: PlainTls 2, TrustAll, SystemCAs, NoHostCheck, Tls13, NoHostAlias; cmi-client: External 2,
            # the endpoint
            check(len(conns) == 10 and all(c.get("ssl") for c in conns),
                  "TLS connections: %r" % [(c["name"], c.get("ssl"), c.get("user")) for c in conns])
            check(users.count("guest") == 7 and users.count("cmi-client") == 3,
                  "users of the TLS connections: %r" % users)
            log = cmi.log_text()
            for secret in (KEY_PASSWORD, TRUST_PASSWORD):
                check(secret not in log, "a store password is in the log")
            cmi.stop_clean()
        finally:
            if cmi.proc.poll() is None:
                cmi.proc.kill()


class TlsServer:
    """openssl s_server with a certificate of the test's: a TLS peer that
    shows an expired certificate, or one for another name (the handshake
    fails before AMQP: no broker is needed to play it)."""

    def __init__(self, d, name, *args):
        self.port = free_port()
        self.proc = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % self.port, "-cert",
                                      os.path.join(d, name + ".pem"), "-key", os.path.join(d, name + ".key"),
                                      "-quiet", "-naccept", "1000"] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=d)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "openssl s_server on %d" % self.port)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def test_each_failure_said_once_with_its_reason(node):
    d = node.pki
    pki.make_cert(d, "expired", not_after="210101000000Z")
    pki.make_cert(d, "elsewhere", cn="elsewhere.example", names="DNS:elsewhere.example")
    pki.make_cert(d, "nobody", cn="nobody", client=True)
    other_ca(node)
    pki.make_cert(d, "stranger", ca="other", cn="cmi-client", client=True)
    for name in ("nobody", "stranger"):
        with open(os.path.join(d, name + ".both.pem"), "w") as out:
            for part in (".pem", ".key"):
                with open(os.path.join(d, name + part)) as f:
                    out.write(f.read())
    expired, elsewhere = TlsServer(d, "expired"), TlsServer(d, "elsewhere")
    tls12 = TlsServer(d, "server", "-tls1_2")  # a peer that stops at TLS 1.2
    trust = "<trustStoreLocation>%s</trustStoreLocation>" % p(node, "ca.pem")
    tls = "<sslEnabled>true</sslEnabled>" + trust
    guest = "<username>guest</username><password>guest</password>"
    amqps = "localhost:%d" % node.amqps_port
    # key: (servers, parameters, what the line must say)
    cases = {
        # The test's CA is a system CA here (SSL_CERT_FILE): the trust store, another CA's, must be all that counts.
        "Untrusted": (amqps, guest + "<sslEnabled>true</sslEnabled><trustStoreLocation>%s</trustStoreLocation>"
                      % p(node, "other.pem"), r"TLS: SSL certificate problem: (self.signed certificate in "
                      r"certificate chain|unable to get local issuer certificate)"),
        "Expired": ("localhost:%d" % expired.port, guest + tls, r"TLS: SSL certificate problem: certificate has "
                    r"expired"),
        "OtherName": ("localhost:%d" % elsewhere.port, guest + tls, r"TLS: .*no alternative certificate subject "
                      r"name matches target host name 'localhost'"),
        "IpAddress": ("127.0.0.1:%d" % node.amqps_port, guest + tls, r"does not name 127\.0\.0\.1 as a DNS name"),
        "StrangerCert": (amqps, external(node, keystore="stranger.both.pem"),
                         r"alert unknown ca \(the broker does not trust the issuer of cmi's client certificate"),
        "NoSuchUser": (amqps, external(node, keystore="nobody.both.pem"),
                       r"Authentication failed \[mech=EXTERNAL\] \(the broker found no user for cmi's client "
                       r"certificate"),
        "WrongPassword": (amqps, "<username>guest</username><password>%s</password>" % WRONG_PASSWORD + tls,
                          r"(Authentication failed|unauthorized).*check the user and password"),
        "PlainPort": ("localhost:%d" % node.amqp_port, guest + tls, r"wrong version number \(this port does not "
                      r"speak TLS"),
        "TlsPort": (amqps, guest, r"this port speaks TLS: set sslEnabled to true"),
        "Only13": ("localhost:%d" % tls12.port, guest + tls + "<sslVersion>TLSv1.3</sslVersion>",
                   r"SSL Failure: .*(protocol version|unsupported protocol)"),
    }
    fast = ("<connectionEstablishRetryCount>3</connectionEstablishRetryCount>"
            "<connectionEstablishRetryInterval>200</connectionEstablishRetryInterval>"
            "<connectionRecoveryInterval>200</connectionRecoveryInterval>")
    files = {"local-entries/%s.xml" % k: tls_entry(node, k, s, x + fast, pool=1) for k, (s, x, _) in cases.items()}
    check(RMQ_CONNECTORS, "CMI_RMQ_CONNECTORS is not set (run through make check)")
    try:
        with Deployment(files) as dep:
            cmi = Cmi(dep, workers=1, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS,
                                           "SSL_CERT_FILE": p(node, "ca.pem")}).start()
            try:
                for key, (servers, _, says) in cases.items():
                    m = cmi.wait_log(r"\[rabbitmq:%s\] connection 0 to (\S+) down: (.*)" % key, 30)
                    check(m.group(1) == servers and re.search(says, m.group(2)),
                          "%s: the line names %s and says %r; expected %s and /%s/"
                          % (key, m.group(1), m.group(2), servers, says))
                # Retries go on (4 attempts: the line below), each with the
                # same cause: no second line for any of them.
                for key, (servers, _, _) in cases.items():
                    cmi.wait_log(r"\[rabbitmq:%s\] no connection to %s after 4 attempt" % (key, re.escape(servers)),
                                 60)
                time.sleep(1.0)  # a few more attempts (every 200 ms; EXTERNAL refusals take 3 s on 3.10)
                log = cmi.log_text()
                for key in cases:
                    lines = re.findall(r"\[rabbitmq:%s\] connection 0 to .*down" % key, log)
                    check(len(lines) == 1, "%s: %d lines for one cause:\n%s" % (key, len(lines), "\n".join(lines)))
                check(WRONG_PASSWORD not in log, "a password is in the log")
            finally:
                cmi.stop_clean()
    finally:
        for server in (expired, elsewhere, tls12):
            server.stop()


def test_bad_key_and_trust_stores_refused_at_start(node):
    d = node.pki
    with open(os.path.join(d, "fake.jks"), "wb") as f:
        f.write(b"\xfe\xed\xfe\xed" + b"\x00" * 60)
    amqps = "localhost:%d" % node.amqps_port
    guest = "<username>guest</username><password>guest</password><sslEnabled>true</sslEnabled>"
    cases = [
        ("<keyStoreLocation>%s</keyStoreLocation><keyStorePassword>%s</keyStorePassword>"
         % (p(node, "client.p12"), WRONG_PASSWORD), r"keyStoreLocation .*client\.p12: wrong password"),
        ("<keyStoreLocation>%s</keyStoreLocation>" % p(node, "client.pem"),
         r"client\.pem holds no private key: give one PEM file with the certificate and its key"),
        ("<keyStoreLocation>%s</keyStoreLocation>" % p(node, "fake.jks"),
         r"is a Java keystore \(JKS\), which cmi does not read; convert it with `keytool"),
        ("<trustStoreLocation>%s</trustStoreLocation>" % p(node, "missing.pem"),
         r"trustStoreLocation .*missing\.pem: No such file or directory"),
        ("<trustStoreLocation>%s</trustStoreLocation>" % p(node, "client.key"),
         r"trustStoreLocation .*client\.key holds no certificate"),
        ("<trustStoreLocation>%s</trustStoreLocation><trustStorePassword>%s</trustStorePassword>"
         % (p(node, "ca.trust.p12"), WRONG_PASSWORD), r"trustStoreLocation .*ca\.trust\.p12: wrong password"),
    ]
    for extra, says in cases:
        files = {"local-entries/rmq.xml": tls_entry(node, "Bad", amqps, guest + extra, pool=1)}
        with Deployment(files) as dep:
            rc, out, err = run_cmi(["run", dep, "--http-host", "127.0.0.1", "--http-port", "0"],
                                   env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}, timeout=30)
            text = out + err
            check(rc == 1 and re.search(r"cannot start the connection config .*" + says, text),
                  "%s: exit %d, expected /%s/:\n%s" % (extra, rc, says, text[-1500:]))
            check(WRONG_PASSWORD not in text, "a password is in the output")
