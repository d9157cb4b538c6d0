"""The broker SIGKILLed under publish load: nothing confirmed is lost from a
durable queue.

A RabbitMQ node of the test's own (the suite's shared node is left alone)
has its Erlang VM killed with SIGKILL while cmi publishes with confirms, and
is started again on the same data.  Three queues take the load, published
through the default deployment's `/publishmessage` (MI's example: the
request names the queue) and through an API of the test's:

- a classic queue declared durable ahead, through the management API, as
  docs/reliability.md asks users to;
- a queue that does not exist until the first publish: cmi's sender attach
  to `/queue/NAME` declares it;
- a quorum queue declared ahead, published by an API that names its type.

Before the kill each queue must be durable, not auto-delete, not exclusive
(a transient declaration by cmi would be caught here); after the restart
each must be there and hold every id that was confirmed, before the kill and
after the broker's return (cmi keeps running and re-sends what was in
flight).

RabbitMQ 3.x writes a queue's declaration to disk in two steps: the record
at once, the commit decision that makes it count asynchronously, within 2 s
(Mnesia logs it through disk_log's write cache).  Killed in between, the
broker comes back without the queue ("Recovering 0 queues") and without
the messages it had confirmed into it; docs/reliability.md, "A queue
declared just before the broker dies".  The test
does what those 2 s would do, a sync of the broker's log, before the kill:
it checks cmi and the queues users are told to declare, not that race."""
import json
import os
import re
import signal
import time

from harness import Cmi, TestFailure, check
from rabbitmq import RabbitNode, wait_for
from test_engine import Deployment
from test_failover import Load, explained, verify
from test_publish import NS, RMQ_CONNECTORS, unique

MI_PUBLISH_TIMEOUT_MS = 60000  # the default deployment names none: MI's default
TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class PublishMessageLoad(Load):
    """Load through the default deployment's /publishmessage: the body names
    the queue, the message text is the id as JSON."""

    def __init__(self, cmi, queue, clients=2, limit=3000):
        super().__init__(cmi, "/publishmessage", clients, limit)
        self.queue = queue

    def _client(self, n):
        conn = None
        for i in range(self.limit):
            if self.stop_evt.is_set():
                break
            ident = "%d-%d" % (n, i)
            body = json.dumps({"queue": self.queue, "message": json.dumps({"id": ident})}).encode()
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = self.cmi.connection(timeout=MI_PUBLISH_TIMEOUT_MS / 1000 + 30)
                status, _, data = self.cmi.request("POST", self.path, body, {"Content-Type": "application/json"},
                                                   conn=conn)
                if status == 200 and json.loads(data).get("success") != "true":
                    status = 299
            except (OSError, ValueError):
                status = 0
                conn = None
            with self.lock:
                self.records.append((ident, status, t0, time.monotonic()))
        if conn is not None:
            conn.close()


def deployment_files(node, quorum_queue):
    """synapse-configs/default pointed at the node, plus an API publishing to
    the quorum queue (declared ahead; the API names its type)."""
    files = {}
    src = os.path.join(TOP, "synapse-configs", "default")
    for root, _, names in os.walk(src):
        for name in names:
            full = os.path.join(root, name)
            with open(full) as f:
                files[os.path.relpath(full, src)] = f.read()
    key = os.path.join("local-entries", "RabbitMQConnection.xml")
    text = re.sub(r"<serverUrls>[^<]*</serverUrls>", "<serverUrls>127.0.0.1:%d</serverUrls>" % node.amqp_port,
                  files[key])
    files[key] = text.replace("</rabbitmq.init>", "<managementUrl>http://127.0.0.1:%d</managementUrl></rabbitmq.init>"
                              % node.mgmt_port)
    files["api/killq.xml"] = (
        '<api %s name="KillQuorum" context="/killq"><resource methods="POST"><inSequence>'
        '<rabbitmq.publishMessage configKey="RabbitMQConnection"><queue>%s</queue><queueType>QUORUM</queueType>'
        '<responseVariable>r</responseVariable></rabbitmq.publishMessage>'
        '<payloadFactory media-type="json"><format>${vars.r.payload}</format></payloadFactory><respond/>'
        '</inSequence></resource></api>' % (NS, quorum_queue))
    return files


def enough(load, q, count):
    """Waits for count confirmed publishes in all (bounded), and fails if the
    load ended without them."""
    load.wait_for_successes(count - load.ok_count(), 20)
    with load.lock:
        statuses = sorted({r[1] for r in load.records})
    check(load.ok_count() >= count, "%s: %d confirmed publishes, not %d (answers: %r)"
          % (q, load.ok_count(), count, statuses))


def record(node, q):
    try:
        return node.queue(q)
    except Exception:
        return None


def beam_pid(node):
    """The node's Erlang VM, from the pid file it writes at boot."""
    with open(os.path.join(node.dir, "mnesia", node.name + ".pid")) as f:
        return int(f.read().strip())


def sigkill(node, pid):
    """SIGKILL to the node's Erlang VM, at once (RabbitNode.kill asks
    rabbitmqctl for the pid first, a second or more); the data stays."""
    os.kill(pid, signal.SIGKILL)
    node.proc.wait(30)
    node.proc = None
    node.log.close()
    node.log = None


def sync_declarations(node):
    """Has the broker write what its last declarations still keep in memory:
    mnesia_recover logs each commit decision on a cast (the call below is
    answered after it), disk_log keeps it up to 2 s in its cache.  A broker
    without Mnesia (4.x on Khepri) has nothing of the kind to sync."""
    node.ctl("eval", "[catch sys:get_state(mnesia_recover), catch disk_log:sync(latest_log)].")


def broker_log(node):
    try:
        with open(os.path.join(node.dir, "log", node.name + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def test_broker_sigkill_durable_queues(_shared_node):
    node = RabbitNode(name="cmikill")
    loads = {}
    try:
        node.start()
        ahead, attach, quorum = unique("kill-ahead"), unique("kill-attach"), unique("kill-quorum")
        node.declare_queue(ahead)  # durable classic, as users should declare it
        node.declare_queue(quorum, {"x-queue-type": "quorum"})
        pid = beam_pid(node)
        with Deployment(deployment_files(node, quorum)) as d:
            cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS})
            passed = False
            try:
                cmi.start()
                cmi.wait_log(r"\[rabbitmq:RabbitMQConnection\] connection \d up: ", 30)
                loads[ahead] = PublishMessageLoad(cmi, ahead).start()
                loads[quorum] = Load(cmi, "/killq", clients=2, limit=3000).start()
                for q in (ahead, quorum):
                    enough(loads[q], q, 100)
                check(record(node, attach) is None, "queue %s exists before its first publish" % attach)
                loads[attach] = PublishMessageLoad(cmi, attach).start()
                wait_for(lambda: loads[attach].ok_count() > 0, 20, "the first publish to %s" % attach)
                declared = time.monotonic()
                enough(loads[attach], attach, 50)
                for q in (ahead, attach, quorum):
                    info = record(node, q) or {}
                    got = {k: info.get(k) for k in ("durable", "auto_delete", "exclusive")}
                    check(got == {"durable": True, "auto_delete": False, "exclusive": False},
                          "queue %s before the kill: %r" % (q, got))
                sync_declarations(node)
                check(all(loads[q].running() for q in loads), "a load ended before the kill (raise its limit)")
                mark = len(broker_log(node))
                sigkill(node, pid)
                killed = time.monotonic()
                confirmed_before = {q: loads[q].ok_count() for q in loads}
                print("      SIGKILL %.1fs after cmi's attach declared %s; confirmed by then: %s"
                      % (killed - declared, attach, ", ".join("%s %d" % (q, confirmed_before[q]) for q in loads)),
                      flush=True)
                node.start()
                node.wait_up()
                back = time.monotonic()
                try:  # the broker writes its log lazily: for the figures only
                    recovering = ", ".join("%s %s" % m for m in wait_for(
                        lambda: re.findall(r"Recovering (\d+) queues of type (\S+)", broker_log(node)[mark:]), 10,
                        "the broker's recovery log"))
                except AssertionError:
                    recovering = "no 'Recovering' line in its log"
                print("      broker back %.1fs after the kill: recovering %s" % (back - killed, recovering), flush=True)
                for q in loads:
                    wait_for(lambda: loads[q].resumed_after(back) is not None, 20, "publishing to %s again" % q)
                    enough(loads[q], q, loads[q].ok_count() + 50)
                for q in loads:
                    loads[q].finish()
                for q, what in ((ahead, "classic, declared ahead"), (attach, "classic, declared by cmi's attach"),
                                (quorum, "quorum, declared ahead")):
                    check(record(node, q) is not None, "queue %s (%s) is gone after the SIGKILL (broker: %s)"
                          % (q, what, recovering))
                    verify(loads[q], node.drain(q), what, MI_PUBLISH_TIMEOUT_MS)
                passed = True
            except (TestFailure, AssertionError) as e:
                raise explained(e, cmi) from None
            finally:
                for load in loads.values():
                    load.stop_evt.set()
                if passed:
                    cmi.stop_clean()
                else:
                    try:
                        cmi.stop()
                    except TestFailure:
                        pass
    finally:
        try:
            if node.proc is not None and node.proc.poll() is None:
                sigkill(node, beam_pid(node))  # a throwaway node: faster than rabbitmqctl stop
        except Exception:
            pass  # stop() below stops it the usual way
        node.stop()
