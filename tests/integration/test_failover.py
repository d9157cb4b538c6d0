"""Failover and recovery under load (issue 7): nothing confirmed is ever
lost, publishing always resumes.  Each test publishes with many HTTP
clients, every message carrying a unique id, while the broker is broken in
some way; afterwards every id that got a 2xx must be in the queue, and the
figures (sent, confirmed, found, duplicated, longest outage seen by the
clients) are printed."""
import glob
import json
import os
import re
import threading
import time
import uuid

from harness import Cmi, TestFailure, check
from proxy import Proxy
from rabbitmq import RabbitCluster, wait_for
from test_engine import Deployment
from test_publish import NS, RMQ_CONNECTORS, api, resource, unique

PUBLISH_TIMEOUT_MS = 15000


class Load:
    """HTTP publishers: each request carries a unique id; every answer is
    recorded with its start and end time."""

    def __init__(self, cmi, path, clients=8, limit=2500):
        self.cmi, self.path, self.clients, self.limit = cmi, path, clients, limit
        self.stop_evt = threading.Event()
        self.lock = threading.Lock()
        self.records = []  # (id, status, t0, t1)
        self.threads = []

    def _client(self, n):
        conn = None
        for i in range(self.limit):
            if self.stop_evt.is_set():
                break
            ident = "%d-%d" % (n, i)
            body = json.dumps({"id": ident}).encode()
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = self.cmi.connection(timeout=PUBLISH_TIMEOUT_MS / 1000 + 20)
                status, _, data = self.cmi.request("POST", self.path, body, {"Content-Type": "application/json"},
                                                   conn=conn)
                if status == 200 and json.loads(data).get("success") != "true":
                    status = 299  # answered, but the broker said no
            except (OSError, ValueError):
                status = 0
                conn = None
            with self.lock:
                self.records.append((ident, status, t0, time.monotonic()))
        if conn is not None:
            conn.close()

    def start(self):
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(self.clients)]
        for t in self.threads:
            t.start()
        return self

    def wait_for_successes(self, count, timeout):
        """Waits for count more confirmed publishes (or for the load's end:
        it is bounded)."""
        start = self.ok_count()
        wait_for(lambda: self.ok_count() >= start + count or not any(t.is_alive() for t in self.threads), timeout,
                 "%d more confirmed publishes" % count)

    def running(self):
        return any(t.is_alive() for t in self.threads)

    def ok_count(self):
        with self.lock:
            return sum(1 for r in self.records if r[1] == 200)

    def finish(self):
        self.stop_evt.set()
        for t in self.threads:
            t.join(PUBLISH_TIMEOUT_MS / 1000 + 30)
        check(not any(t.is_alive() for t in self.threads), "a client is still waiting for an answer")

    def resumed_after(self, t):
        """Seconds from t to the first confirmed publish that ended after t."""
        with self.lock:
            ends = [r[3] for r in self.records if r[1] == 200 and r[3] >= t]
        return min(ends) - t if ends else None

    def longest_outage(self):
        with self.lock:
            ends = sorted(r[3] for r in self.records if r[1] == 200)
        return max((b - a for a, b in zip(ends, ends[1:])), default=0.0)

    def longest_request(self):
        with self.lock:
            return max((r[3] - r[2] for r in self.records), default=0.0)


def verify(load, bodies, what, publish_timeout_ms=PUBLISH_TIMEOUT_MS):
    """Every confirmed id is in the queue, no request outlasted the
    publishTimeout by much; prints the figures."""
    found = {}
    for b in bodies:
        try:
            ident = json.loads(b)["id"]
        except (ValueError, KeyError, TypeError):
            continue
        found[ident] = found.get(ident, 0) + 1
    confirmed = {r[0] for r in load.records if r[1] == 200}
    failed = sum(1 for r in load.records if r[1] != 200)
    missing = sorted(confirmed - set(found))
    dups = sum(n - 1 for n in found.values() if n > 1)
    print("      %s: sent %d, confirmed %d, failed or refused %d, found %d (%d distinct), duplicated %d, "
          "missing %d, longest outage seen by clients %.2fs, longest request %.2fs"
          % (what, len(load.records), len(confirmed), failed, len(bodies), len(found), dups, len(missing),
             load.longest_outage(), load.longest_request()), flush=True)
    check(not missing, "%s: %d confirmed message(s) are not in the queue, e.g. %r" % (what, len(missing), missing[:5]))
    check(load.longest_request() <= publish_timeout_ms / 1000 + 3.0,
          "%s: a request took %.1fs with publishTimeout %ds" % (what, load.longest_request(), publish_timeout_ms // 1000))
    check(len(confirmed) > 0, "nothing was confirmed")


def entry(servers, mgmt, extra=""):
    return ('<localEntry %s key="RMQ"><rabbitmq.init><name>RMQ</name><serverUrls>%s</serverUrls>'
            '<username>guest</username><password>guest</password><managementUrl>%s</managementUrl>'
            '<connectionRecoveryPolicyType>FIXED_WITH_INITIAL_DELAY</connectionRecoveryPolicyType>'
            '<connectionRecoveryInitialDelay>100</connectionRecoveryInitialDelay>'
            '<connectionRecoveryInterval>500</connectionRecoveryInterval>%s</rabbitmq.init></localEntry>'
            % (NS, servers, mgmt, extra))


def start_cmi(d, workers=2):
    cmi = Cmi(d, workers=workers, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
    cmi.wait_log(r"\[rabbitmq:RMQ\] connection \d up: ", 30)
    return cmi


def explained(e, cmi, more=""):
    """The failure with the connector's part of cmi's log: a fault test that
    fails once in a while cannot be diagnosed without it."""
    lines = [ln for ln in cmi.log_text().splitlines() if "[rabbitmq" in ln]
    return TestFailure("%s\ncmi's rabbitmq log, last 60 lines:\n%s%s" % (e, "\n".join(lines[-60:]), more))


def cluster_state(cluster, q, load):
    """What the brokers and the clients saw, for a failure report."""
    out = []
    with load.lock if load else threading.Lock():
        statuses = {}
        for r in (load.records[-300:] if load else []):
            statuses[r[1]] = statuses.get(r[1], 0) + 1
    out.append("last 300 client answers by status: %r" % statuses)
    for n in cluster.alive():
        info = _queue_info(n, q) or {}
        out.append("%s: leader %s, online %s" % (n.name, info.get("leader"), info.get("online")))
        for path in glob.glob(os.path.join(n.dir, "log", "*.log")):
            try:
                with open(path, "rb") as f:
                    text = f.read()[-200000:].decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            hits = [ln for ln in text if re.search(r"error|leader|election|quorum|nodedown|partition", ln, re.I)]
            out.append("  %s, last 25 lines of note:\n    %s" % (os.path.basename(path), "\n    ".join(hits[-25:])))
    return "\n" + "\n".join(out)


def test_broker_restart_under_load(node):
    q = unique("restart")
    files = {"local-entries/rmq.xml": entry("127.0.0.1:%d" % node.amqp_port, "http://127.0.0.1:%d" % node.mgmt_port),
             "api/pub.xml": api(resource("/r", "<queue>%s</queue><publishTimeout>%d</publishTimeout>"
                                         % (q, PUBLISH_TIMEOUT_MS)))}
    with Deployment(files) as d:
        cmi = start_cmi(d)
        try:
            load = Load(cmi, "/pub/r", clients=5, limit=4000).start()  # at most 20,000
            load.wait_for_successes(200, 20)
            for round_ in (1, 2):
                node.stop_app()
                time.sleep(2.0)  # publishes wait meanwhile
                node.start_app()
                back = time.monotonic()
                wait_for(lambda: load.resumed_after(back) is not None, 10, "publishing after restart %d" % round_)
                resumed = load.resumed_after(back)
                print("      restart %d: publishing resumed %.2fs after the broker came back" % (round_, resumed),
                      flush=True)
                check(resumed < 5.0, "publishing resumed %.1fs after the broker's return" % resumed)
                load.wait_for_successes(100, 20)
            load.finish()
            verify(load, node.drain(q), "broker restarted twice")
            # What users care about is above: every confirmed message is in
            # the queue.  The log says each state change once, however many
            # attempts a reconnect took: every "down" has its "up", and there
            # is no storm.  Per restart each of the two connections goes down;
            # RabbitMQ 4.0.5 may also end a session over two connections
            # declaring the queue at once (its bug: see README), which cmi
            # survives with one more down and up.
            log = cmi.log_text()
            downs = len(re.findall(r"\[rabbitmq:RMQ\] connection \d to \S+ down", log))
            ups = len(re.findall(r"\[rabbitmq:RMQ\] connection \d up", log))
            check(4 <= downs <= 8 and ups == 2 + downs,
                  "%d 'down' and %d 'up' lines for 2 restarts of 2 connections:\n%s"
                  % (downs, ups, "\n".join(l for l in log.splitlines() if "[rabbitmq:RMQ]" in l)))
        except (TestFailure, AssertionError) as e:
            raise explained(e, cmi) from None
        finally:
            cmi.stop_clean()


def test_network_faults_half_open_and_reset(node):
    # No broker is harmed: a proxy stalls the connections (half-open: only
    # the idle timeout can tell), then resets them.
    proxy = Proxy(node.amqp_port)
    q = unique("netfault")
    files = {"local-entries/rmq.xml": entry("127.0.0.1:%d" % proxy.port, "http://127.0.0.1:%d" % node.mgmt_port,
                                            "<connectionIdleTimeout>2000</connectionIdleTimeout>"),
             "api/pub.xml": api(resource("/n", "<queue>%s</queue><publishTimeout>%d</publishTimeout>"
                                         % (q, PUBLISH_TIMEOUT_MS)))}
    try:
        with Deployment(files) as d:
            cmi = start_cmi(d)
            try:
                load = Load(cmi, "/pub/n", clients=6).start()
                load.wait_for_successes(200, 20)
                for fault in ("stall", "cut"):
                    mark = cmi.log_mark()
                    getattr(proxy, fault)()
                    t = time.monotonic()
                    if fault == "stall":
                        cmi.wait_log(r"idle", 10, start=mark)  # proton: local-idle-timeout expired
                    wait_for(lambda: load.resumed_after(t + 0.05) is not None, 15, "publishing after the %s" % fault)
                    resumed = load.resumed_after(t + 0.05)
                    print("      %s: publishing resumed %.2fs after the fault" % (fault, resumed), flush=True)
                    check(resumed < 5.0, "publishing resumed %.1fs after the %s" % (resumed, fault))
                    load.wait_for_successes(200, 20)
                load.finish()
                verify(load, node.drain(q), "half-open connections, then resets")
            except (TestFailure, AssertionError) as e:
                raise explained(e, cmi) from None
            finally:
                cmi.stop_clean()
    finally:
        proxy.close()


def test_cluster_failover(node):
    # Three nodes, a quorum queue, connections to all three: the node that
    # holds connections (the queue's first leader) is killed, then the
    # leader that followed it.
    cluster = RabbitCluster(3).start()
    try:
        nodes = cluster.nodes
        q = unique("cluster")
        servers = ",".join("127.0.0.1:%d" % n.amqp_port for n in nodes)
        mgmt = ",".join("http://127.0.0.1:%d" % n.mgmt_port for n in nodes)
        files = {"local-entries/rmq.xml": entry(servers, mgmt, "<connectionPoolSize>3</connectionPoolSize>"),
                 "api/pub.xml": api(resource("/c", "<queue>%s</queue><queueType>QUORUM</queueType>"
                                             "<initialMemberCount>3</initialMemberCount>"
                                             "<publishTimeout>%d</publishTimeout>" % (q, PUBLISH_TIMEOUT_MS)))}
        with Deployment(files) as d:
            cmi = start_cmi(d)
            load = None
            try:
                info = wait_for(lambda: _queue_info(nodes[0], q), 15, "quorum queue declared")
                check(len(info.get("members", [])) == 3, "quorum members %r" % info.get("members"))
                # Each round waits for a node to rejoin (up to a minute):
                # the load must outlast both rounds.
                load = Load(cmi, "/pub/c", clients=6, limit=10000).start()
                load.wait_for_successes(200, 30)
                for round_ in (1, 2):
                    alive = cluster.alive()
                    leader = _queue_info(alive[0], q)["leader"]
                    victim = next(n for n in alive if n.name == leader) if round_ == 2 else nodes[0]
                    check(load.running(), "the load ended before kill %d (raise its limit)" % round_)
                    victim.kill()
                    t = time.monotonic()
                    wait_for(lambda: load.resumed_after(t) is not None, 20, "publishing after killing %s" % victim.name)
                    resumed = load.resumed_after(t)
                    print("      kill %d (%s, leader %s): publishing continued %.2fs later"
                          % (round_, victim.name.split("@")[0], leader.split("@")[0], resumed), flush=True)
                    check(resumed < 5.0, "publishing continued %.1fs after the kill" % resumed)
                    load.wait_for_successes(100, 30)
                    victim.start()
                    wait_for(lambda: len(_queue_info(victim, q).get("online", [])) == 3, 60,
                             "%s back in the quorum" % victim.name)
                    load.wait_for_successes(100, 30)
                load.finish()
                verify(load, nodes[0].drain(q), "cluster, two nodes killed one after the other")
            except (TestFailure, AssertionError) as e:
                raise explained(e, cmi, cluster_state(cluster, q, load)) from None
            finally:
                cmi.stop_clean()
    finally:
        cluster.stop()


def _queue_info(node, q):
    try:
        return node.queue(q)
    except Exception:
        return None
