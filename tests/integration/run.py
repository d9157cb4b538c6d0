#!/usr/bin/env python3
"""Integration tests against a real RabbitMQ: one node is started on
loopback for the whole run (tests use queues of their own), every
test_*(node) function of the test_*.py modules here runs against it with
the real cmi and the real connector module, then the node is stopped.

usage: run.py [-k SUBSTRING]
Exit status: the number of failures (0: all passed)."""
import argparse
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "scenarios"))

from rabbitmq import RabbitNode  # noqa: E402


def collect(filt):
    tests = []
    for mod in sorted(os.listdir(HERE)):
        if mod.startswith("test_") and mod.endswith(".py"):
            m = importlib.import_module(mod[:-3])
            for attr in sorted(dir(m)):
                if attr.startswith("test_") and callable(getattr(m, attr)):
                    name = "%s.%s" % (mod[:-3], attr)
                    if filt is None or filt in name:
                        tests.append((name, getattr(m, attr)))
    return tests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", dest="filter")
    args = ap.parse_args()
    tests = collect(args.filter)
    t0 = time.monotonic()
    node = RabbitNode()
    try:
        node.start()
    except Exception as e:
        node.stop()
        print("FAIL  cannot start RabbitMQ for the integration tests: %s" % e, flush=True)
        return 1
    print("RabbitMQ %s up on 127.0.0.1:%d (management %d) in %.1fs"
          % (node.api("GET", "/api/overview")["rabbitmq_version"], node.amqp_port, node.mgmt_port,
             time.monotonic() - t0), flush=True)
    failures = 0
    try:
        for name, fn in tests:
            t = time.monotonic()
            try:
                fn(node)
                print("ok    %-58s %6.2fs" % (name, time.monotonic() - t), flush=True)
            except Exception as e:
                failures += 1
                detail = str(e) if isinstance(e, AssertionError) or type(e).__name__ == "TestFailure" \
                    else traceback.format_exc()
                print("FAIL  %-58s %6.2fs\n      %s" % (name, time.monotonic() - t,
                                                        "\n      ".join(detail.splitlines())), flush=True)
    finally:
        node.stop()
    print("%d integration test(s), %d failed (%.0fs)" % (len(tests), failures, time.monotonic() - t0))
    return min(failures, 99)


if __name__ == "__main__":
    sys.exit(main())
