"""Stream queues on the inbound endpoint (issue 21): MI's offset parameters,
the offset cmi keeps itself (AMQP 1.0 has no server-side tracking) and
resumes from after a restart or a kill -9, and stream filters (RabbitMQ
4.x; 3.10's AMQP 1.0 plugin delivers nothing from a stream, which the
endpoint says)."""
import json
import os
import re
import shutil
import signal
import tempfile

from harness import check
from rabbitmq import wait_for
from test_inbound import deployment, got_lines, start
from test_publish import RMQ_CONNECTORS, unique

LOG_N = '<log><message>got ${payload.n}</message></log><rabbitmq.accept/>'


def _send(node, stream, items):
    """items: (n, filter value or None); published with the filter value as
    the x-stream-filter-value annotation (as MI's connector does)."""
    from proton import Message, symbol
    from proton.utils import BlockingConnection
    conn = BlockingConnection("amqp://127.0.0.1:%d" % node.amqp_port, timeout=30, user="guest", password="guest",
                              allowed_mechs="PLAIN", allow_insecure_mechs=True, virtual_host="/")
    try:
        snd = conn.create_sender("/queues/" + stream)
        for n, value in items:
            ann = {symbol("x-stream-filter-value"): value} if value is not None else None
            snd.send(Message(body=json.dumps({"n": n}).encode(), content_type="application/json", durable=True,
                             inferred=True, annotations=ann))
    finally:
        conn.close()


def _stream(node):
    s = unique("stream")
    node.declare_queue(s, {"x-queue-type": "stream"})
    return s


def _stored(state, stream):
    path = os.path.join(state, "rabbitmq", "In@%s.offset" % stream)
    with open(path, encoding="ascii") as f:
        return int(f.read())


def _ns(cmi):
    return [int(x) for x in got_lines(cmi, r"got (\d+)")]


STREAM = [("rabbitmq.queue.type", "STREAM"), ("rabbitmq.queue.auto.declare", "false")]


def test_stream_resumes_at_the_stored_offset(node):
    # FIRST the first time; then stopped (the offset saved as it stops),
    # started again: it reads on from there, not from the first.  Then
    # killed with SIGKILL after a save (flush interval 1 s): a restart reads
    # nothing it had saved as finished.
    if not node.broker.is4:
        return _refused_on_3x(node)
    s = _stream(node)
    state = tempfile.mkdtemp(prefix="cmi-streams-")
    env = {"CMI_STATE_DIRECTORY": state}
    params = STREAM + [("rabbitmq.stream.offset.starting.strategy", "FIRST"),
                       ("rabbitmq.stream.offset.tracker.flush.interval", "1"),
                       ("rabbitmq.stream.offset.tracker.shutdown.timeout", "2")]
    try:
        _send(node, s, [(i, None) for i in range(5)])
        with deployment(node, s, LOG_N, params) as d:
            cmi = start(d, env=env)
            try:
                wait_for(lambda: len(_ns(cmi)) == 5, 15, "5 messages")
                check(_ns(cmi) == [0, 1, 2, 3, 4], "from the first: %r" % _ns(cmi))
            finally:
                cmi.stop_clean()
            check(_stored(state, s) == 4, "offset 4 stored at the stop, not %r" % _stored(state, s))
            _send(node, s, [(i, None) for i in range(5, 10)])
            cmi = start(d, env=env)
            try:
                cmi.wait_log(r"resuming after offset 4, the last one finished", 5)
                wait_for(lambda: len(_ns(cmi)) == 5, 15, "5 more")
                check(_ns(cmi) == [5, 6, 7, 8, 9], "resumed at 5: %r" % _ns(cmi))
                wait_for(lambda: _stored(state, s) == 9, 5, "offset 9 saved by the flush")
                os.kill(cmi.proc.pid, signal.SIGKILL)
                cmi.proc.wait(10)
            finally:
                cmi.stop_clean() if cmi.proc.poll() is None else None
            _send(node, s, [(i, None) for i in range(10, 12)])
            cmi = start(d, env=env)
            try:
                wait_for(lambda: len(_ns(cmi)) == 2, 15, "the 2 after the kill")
                check(_ns(cmi) == [10, 11], "after the kill: %r" % _ns(cmi))
            finally:
                cmi.stop_clean()
            check(_stored(state, s) == 11, "offset 11 stored")
            print("      stored offsets: 4 at the first stop, 9 by the flush before the kill, 11 at the last stop; "
                  "restarts read 5-9 and 10-11", flush=True)
    finally:
        shutil.rmtree(state, ignore_errors=True)
        node.api("DELETE", "/api/queues/%2F/" + s)


def test_stream_starting_value_and_filters(node):
    # rabbitmq.stream.offset.starting.value 2 (at every start, as MI) and
    # rabbitmq.stream.filters red,green: only those values; with
    # filter.match.unfiltered true also the message without one.  A discard
    # on a stream is an accept (said once: a stream keeps its messages).
    if not node.broker.is4:
        return _refused_on_3x(node, [("rabbitmq.stream.filters", "red")])
    s = _stream(node)
    items = [(0, "red"), (1, "blue"), (2, "red"), (3, "blue"), (4, "green"), (5, None), (6, "red")]
    body = '<log><message>got ${payload.n}</message></log><rabbitmq.discard/>'
    try:
        _send(node, s, items)
        params = STREAM + [("rabbitmq.stream.offset.starting.value", "2"),
                           ("rabbitmq.stream.filters", "red, green")]
        with deployment(node, s, body, params) as d:
            cmi = start(d)
            try:
                wait_for(lambda: len(_ns(cmi)) == 3, 15, "3 messages")
                check(_ns(cmi) == [2, 4, 6], "from offset 2, red and green only: %r" % _ns(cmi))
                check(len(re.findall(r"is a stream, which keeps its messages: a discard is an accept",
                                     cmi.log_text())) == 1, "said once")
            finally:
                cmi.stop_clean()
        with deployment(node, s, LOG_N, params + [("rabbitmq.stream.filter.match.unfiltered", "true")]) as d:
            cmi = start(d)
            try:
                wait_for(lambda: len(_ns(cmi)) == 4, 15, "4 messages")
                check(_ns(cmi) == [2, 4, 5, 6], "and the unfiltered one: %r" % _ns(cmi))
            finally:
                cmi.stop_clean()
    finally:
        node.api("DELETE", "/api/queues/%2F/" + s)


def test_stream_strategies(node):
    # NEXT and LAST with nothing stored: NEXT reads only what comes after
    # the start, LAST the last chunk on (the last message at least, none
    # twice).
    if not node.broker.is4:
        print("      3.10: stream consumers refused (test_stream_resumes_at_the_stored_offset)", flush=True)
        return
    s = _stream(node)
    state = tempfile.mkdtemp(prefix="cmi-streams-")
    try:
        _send(node, s, [(i, None) for i in range(3)])
        with deployment(node, s, LOG_N, STREAM + [("rabbitmq.stream.offset.starting.strategy", "NEXT")]) as d:
            cmi = start(d)
            try:
                cmi.wait_log(r"no offset stored in \S+: starting at next", 5)
                _send(node, s, [(7, None)])
                wait_for(lambda: len(_ns(cmi)) >= 1, 15, "the new message")
                check(_ns(cmi) == [7], "only the new one: %r" % _ns(cmi))
            finally:
                cmi.stop_clean()
        # (Its own state folder: the NEXT run above stored offset 3, which a
        # restart of the same endpoint resumes after, whatever the strategy.)
        with deployment(node, s, LOG_N, STREAM + [("rabbitmq.stream.offset.starting.strategy", "LAST")]) as d:
            cmi = start(d, env={"CMI_STATE_DIRECTORY": state})
            try:
                wait_for(lambda: 7 in _ns(cmi), 15, "the last message")
                got = _ns(cmi)
                check(len(got) == len(set(got)) and got == sorted(got), "in order, once each: %r" % got)
            finally:
                cmi.stop_clean()
    finally:
        shutil.rmtree(state, ignore_errors=True)
        node.api("DELETE", "/api/queues/%2F/" + s)


def _refused_on_3x(node, extra=()):
    # 3.10's AMQP 1.0 plugin attaches to a stream and delivers nothing: the
    # endpoint says so once (and tries again every 2 s, quietly).
    s = _stream(node)
    try:
        with deployment(node, s, LOG_N, STREAM + list(extra)) as d:
            from harness import Cmi
            cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
            try:
                cmi.wait_log(r"cannot consume from queue '%s': a stream is consumed over AMQP 1\.0 from RabbitMQ 4\.x"
                             % s, 10)
                cmi.wait_log(r"\(again\)", 10)
                check(len(re.findall(r"ERROR .*cannot consume from", cmi.log_text())) == 1, "said once")
            finally:
                cmi.stop_clean()
    finally:
        node.api("DELETE", "/api/queues/%2F/" + s)
