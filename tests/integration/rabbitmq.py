"""A real RabbitMQ node for the integration tests, started on loopback in a
temporary folder (own node name, ports and Erlang cookie) and stopped
afterwards; plus what the tests use to look at it independently of cmi:
the HTTP management API (which reads like an AMQP 0.9.1 client), an AMQP
1.0 receiver (python3-qpid-proton), and rabbitmqctl.

A node that cannot be started is a failure, never a skip."""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

BROKERS = ("3.10", "4.0")


class NodeError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """Where one RabbitMQ version's scripts are and how they run: 3.10 is
    Debian 12's package on the host; 4.0 is Debian 13's in the root that
    scripts/rabbitmq4-setup makes (CMI_RABBITMQ4_ROOT), run with chroot.
    Its nodes share a private epmd on loopback (a port of their own, so they
    never meet another run's nodes or a system epmd), killed with the last
    node."""

    BIN = "/usr/lib/rabbitmq/bin"  # the scripts that run as the calling user (not Debian's wrappers)

    def __init__(self, version):
        if version not in BROKERS:
            raise NodeError("unknown RabbitMQ version %r (known: %s)" % (version, ", ".join(BROKERS)))
        self.version = version
        self.is4 = version.startswith("4.")  # native AMQP 1.0: /management, v2 addresses, outcomes
        self.root = os.environ.get("CMI_RABBITMQ4_ROOT", "/opt/cmi-rabbitmq4") if version == "4.0" else None
        self.epmd_port = free_port()
        self.live = 0  # nodes started and not stopped

    def check(self):
        where = (self.root or "") + os.path.join(self.BIN, "rabbitmq-server")
        if not os.path.exists(where):
            raise NodeError("RabbitMQ %s is not installed (%s is missing): run %s" % (
                self.version, where, "scripts/deps.sh" if self.root is None else "scripts/rabbitmq4-setup"))
        if self.root is not None and os.getuid() != 0:
            raise NodeError("RabbitMQ 4.0 runs in a chroot: the tests need root")
        if self.root is not None and not os.path.ismount(os.path.join(self.root, "proc")):
            raise NodeError("%s/proc is not mounted (after a reboot): run scripts/rabbitmq4-setup" % self.root)

    def tmpdir(self, prefix):
        """A data folder the node can see by the same path."""
        base = os.path.join(self.root, "tmp") if self.root else None
        return tempfile.mkdtemp(prefix=prefix, dir=base)

    def env(self, extra):
        """The whole environment of a broker script: nothing of the caller's
        (the root has its own PATH and no pyenv), everything on loopback."""
        e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
             "ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_EPMD_PORT": str(self.epmd_port),
             "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
             "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}
        e.update(extra)
        return e

    def argv(self, script, *args):
        cmd = [os.path.join(self.BIN, script)] + list(args)
        return ["/usr/sbin/chroot", self.root] + cmd if self.root else cmd

    def node_started(self):
        self.live += 1

    def node_stopped(self):
        self.live -= 1
        if self.live <= 0:
            self.live = 0
            self.kill_epmd()

    def kill_epmd(self):
        epmd = ["epmd", "-port", str(self.epmd_port), "-kill"]
        subprocess.run(["/usr/sbin/chroot", self.root] + epmd if self.root else epmd, env=self.env({}),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


_current = None


def broker():
    """The broker of this run: CMI_RABBITMQ (3.10 or 4.0; run.py sets it for
    each of its runs), 3.10 when unset."""
    global _current
    version = os.environ.get("CMI_RABBITMQ", "3.10")
    if _current is None or _current.version != version:
        _current = Broker(version)
    return _current


def tls_conf(pki, is4):
    """rabbitmq.conf lines of a TLS listener on {amqps_port} with EXTERNAL
    beside the usual mechanisms (4.0 keeps its ANONYMOUS, which its tests
    use)."""
    conf = ("listeners.ssl.default = 127.0.0.1:{amqps_port}\n"
            "ssl_options.cacertfile = %s/ca.pem\nssl_options.certfile = %s/server.pem\n"
            "ssl_options.keyfile = %s/server.key\nssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = false\nssl_cert_login_from = common_name\n"
            "auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = AMQPLAIN\nauth_mechanisms.3 = EXTERNAL\n"
            % (pki, pki, pki))
    return conf + ("auth_mechanisms.4 = ANONYMOUS\n" if is4 else "")


def make_pki(d):
    """The certificates of a TLS node (tests/scenarios/pki.py)."""
    scenarios = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios")
    if scenarios not in sys.path:
        sys.path.insert(0, scenarios)
    import pki
    os.makedirs(d, exist_ok=True)
    pki.make_ca(d)
    pki.make_cert(d, "server")
    pki.make_cert(d, "client", cn="cmi-client", client=True)
    pki.pkcs12(d, "client", "p12-secret-4711")
    pki.pkcs12_trust(d, "ca", "trust-secret-4711")
    with open(os.path.join(d, "client.both.pem"), "w") as out:
        for part in ("client.pem", "client.key"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())


class RabbitNode:
    def __init__(self, name="cmitest", cookie=None, broker_=None, plugins=(), conf="", tls=False):
        """plugins: enabled beside AMQP 1.0 and management; conf: lines
        added to rabbitmq.conf ({amqps_port} is replaced by a free port,
        then in self.amqps_port).  tls: a TLS listener on amqps_port too
        (certificates the node makes in self.pki: ca.pem, server.pem for
        localhost, client.pem/.key/.p12 for the user cmi-client, whom
        EXTERNAL logs in by the certificate's common name), peers verified
        when they show a certificate."""
        self.broker = broker_ or broker()
        self.dir = self.broker.tmpdir("cmi-rabbit-")
        self.name = "%s%d@localhost" % (name, os.getpid())
        self.amqp_port = free_port()
        self.mgmt_port = free_port()
        self.dist_port = free_port()
        self.amqps_port = free_port()
        self.cookie = cookie  # nodes of one cluster share one
        self.plugins = list(plugins)
        self.tls = tls
        self.pki = os.path.join(self.dir, "pki")
        if tls:
            self.plugins.append("rabbitmq_auth_mechanism_ssl")
            conf += tls_conf(self.pki, self.broker.is4)
        self.conf = conf.replace("{amqps_port}", str(self.amqps_port))
        self.proc = None
        self.log = None

    # ---- lifecycle ----------------------------------------------------------

    def env(self):
        return self.broker.env({
            "HOME": os.path.join(self.dir, "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq"),
        })

    def start(self, timeout=120.0):
        self.broker.check()
        for d in ("home", "mnesia", "log"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        if self.cookie is not None:
            path = os.path.join(self.dir, "home", ".erlang.cookie")
            if os.path.exists(path):
                os.chmod(path, 0o600)
            with open(path, "w") as f:
                f.write(self.cookie)
            os.chmod(path, 0o400)
        if self.tls:
            make_pki(self.pki)
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[%s].\n" % ",".join(["rabbitmq_amqp1_0", "rabbitmq_management"] + self.plugins))
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.amqp_port)
            f.write("management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n" % self.mgmt_port)
            f.write("loopback_users = none\n")
            f.write(self.conf)
        self.log = open(os.path.join(self.dir, "server.out"), "ab")
        self.proc = subprocess.Popen(self.broker.argv("rabbitmq-server"), env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.broker.node_started()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeError("rabbitmq-server exited with %s:\n%s" % (self.proc.returncode, self.server_log()))
            try:
                self.api("GET", "/api/overview")
            except (OSError, urllib.error.URLError, NodeError):
                time.sleep(0.25)
                continue
            if self.tls:  # EXTERNAL's user: no password, the certificate is its credential
                self.api("PUT", "/api/users/cmi-client", {"password_hash": "", "tags": ""})
                self.api("PUT", "/api/permissions/%2F/cmi-client", {"configure": ".*", "write": ".*", "read": ".*"})
            return self
        raise NodeError("RabbitMQ did not come up within %.0fs:\n%s" % (timeout, self.server_log()))

    def server_log(self):
        try:
            with open(os.path.join(self.dir, "server.out"), "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def ctl(self, *args, timeout=60):
        p = subprocess.run(self.broker.argv("rabbitmqctl", "-n", self.name, *args), env=self.env(),
                           capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise NodeError("rabbitmqctl %s: %s" % (" ".join(args), (p.stdout + p.stderr).decode(errors="replace")))
        return p.stdout.decode()

    def kill(self):
        """Ends the node the hard way (SIGKILL to its Erlang VM), keeping its
        data so that start() brings it back as the same cluster member."""
        pid = int(self.ctl("eval", "list_to_integer(os:getpid()).").strip())
        os.kill(pid, signal.SIGKILL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        self.broker.node_stopped()
        self.log.close()
        self.log = None

    def stop_app(self):
        """The broker stops (every client connection drops), the node stays."""
        self.ctl("stop_app", timeout=120)

    def start_app(self, timeout=60.0):
        self.ctl("start_app", timeout=120)
        self.wait_up(timeout)

    def wait_up(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", "/api/overview")
                with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=1):
                    return
            except (OSError, urllib.error.URLError, NodeError):
                time.sleep(0.1)
        raise NodeError("RabbitMQ did not come back within %.0fs" % timeout)

    def stop(self):
        if self.proc is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        try:
            if self.proc.poll() is None:
                self.ctl("stop", timeout=60)
                self.proc.wait(30)
        except (NodeError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            self.proc = None
            self.broker.node_stopped()
            if self.log:
                self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- looking at it --------------------------------------------------------

    def api(self, method, path, body=None, timeout=10):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.mgmt_port, path), method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
                return json.loads(data) if data else None
        except urllib.error.HTTPError as e:
            raise NodeError("%s %s: HTTP %d %s" % (method, path, e.code, e.read().decode(errors="replace")))

    def queue(self, name):
        return self.api("GET", "/api/queues/%2F/" + urllib.parse.quote(name, safe=""))

    def depth(self, name):
        """Messages in the queue now (rabbitmqctl asks the queue itself; the
        management API's counts lag by up to 5 s)."""
        out = self.ctl("list_queues", "-p", "/", "name", "messages", "--no-table-headers", "--quiet")
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0] == name:
                return int(parts[1])
        return None

    def get(self, name, count=1):
        """Takes messages as an AMQP 0.9.1 client would see them.  The
        broker takes them one basic.get at a time (a quorum queue's are
        slow on a loaded machine), and a get cut short by the client's
        timeout has taken them all the same: the timeout is generous."""
        return self.api("POST", "/api/queues/%2F/" + urllib.parse.quote(name, safe="") + "/get",
                        {"count": count, "ackmode": "ack_requeue_false", "encoding": "base64"}, timeout=120)

    def publish(self, queue, payload, content_type=None, headers=None):
        """Publishes through the default exchange as an AMQP 0.9.1 client
        would (the management API)."""
        props = {"delivery_mode": 2, "headers": headers or {}}
        if content_type:
            props["content_type"] = content_type
        r = self.api("POST", "/api/exchanges/%2F/amq.default/publish",
                     {"properties": props, "routing_key": queue, "payload": payload, "payload_encoding": "string"})
        if not r.get("routed"):
            raise NodeError("message to %s was not routed" % queue)

    def send(self, address, bodies, content_type="application/json", unroutable=False):
        """Sends many messages with an AMQP 1.0 client of its own.
        unroutable: the messages go nowhere, which RabbitMQ 3.x accepts (and
        drops) and 4.x answers `released`: each must be answered so."""
        from proton import Delivery, Message
        from proton.utils import BlockingConnection, SendException
        conn = BlockingConnection("amqp://127.0.0.1:%d" % self.amqp_port, timeout=30, user="guest",
                                  password="guest", allowed_mechs="PLAIN", allow_insecure_mechs=True,
                                  virtual_host="/")
        try:
            snd = conn.create_sender(address)
            for b in bodies:
                msg = Message(body=b.encode() if isinstance(b, str) else b, content_type=content_type, durable=True,
                              inferred=True)
                if not (unroutable and self.broker.is4):
                    snd.send(msg)
                    continue
                try:
                    snd.send(msg)
                except SendException as e:
                    if e.state != Delivery.RELEASED:
                        raise
                else:
                    raise NodeError("RabbitMQ %s accepted an unroutable message" % self.broker.version)
        finally:
            conn.close()

    def policy(self, name, pattern, definition):
        self.ctl("set_policy", name, pattern, json.dumps(definition), "--apply-to", "queues")

    def declare_queue(self, name, arguments=None):
        self.api("PUT", "/api/queues/%2F/" + urllib.parse.quote(name, safe=""),
                 {"durable": True, "arguments": arguments or {}})

    def bind(self, exchange, queue, key="", arguments=None):
        self.api("POST", "/api/bindings/%%2F/e/%s/q/%s" % (urllib.parse.quote(exchange, safe=""),
                                                           urllib.parse.quote(queue, safe="")),
                 {"routing_key": key, "arguments": arguments or {}})

    def drain(self, name, batch=1000):
        """Takes every message of the queue (0.9.1 view): a list of bodies."""
        out = []
        while True:
            got = self.get(name, batch)
            out += [base64.b64decode(m["payload"]) for m in got]
            if len(got) < batch:
                return out

    def receive(self, address, count=1, timeout=10):
        """Takes messages with an AMQP 1.0 client of its own."""
        from proton.utils import BlockingConnection
        conn = BlockingConnection("amqp://127.0.0.1:%d" % self.amqp_port, timeout=timeout, user="guest",
                                  password="guest", allowed_mechs="PLAIN", allow_insecure_mechs=True,
                                  virtual_host="/")
        try:
            r = conn.create_receiver(address, credit=count)
            out = []
            for _ in range(count):
                out.append(r.receive(timeout=timeout))
                r.accept()
            return out
        finally:
            conn.close()


def wait_for(fn, timeout, what):
    """Polls fn until it returns something true; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("%s: not within %.1fs (last: %r)" % (what, timeout, last))


class RabbitCluster:
    """Three (or n) nodes on loopback in one cluster, one cookie."""

    def __init__(self, n=3):
        cookie = base64.b32encode(os.urandom(20)).decode()
        self.nodes = [RabbitNode(name="cmiclu%d-" % i, cookie=cookie) for i in range(n)]

    def start(self):
        self.nodes[0].start()
        for node in self.nodes[1:]:
            node.start()
            node.ctl("stop_app")
            node.ctl("join_cluster", self.nodes[0].name)
            node.ctl("start_app")
            node.wait_up()
        return self

    def stop(self):
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception:
                pass

    def alive(self):
        return [n for n in self.nodes if n.proc is not None]
