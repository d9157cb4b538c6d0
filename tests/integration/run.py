#!/usr/bin/env python3
"""Integration tests against a real RabbitMQ, on each broker asked for: one
node is started on loopback for the whole run of a broker (tests use queues
of their own; some start nodes or clusters of their own), every
test_*(node) function of the test_*.py modules here runs against it with
the real cmi and the real connector module, then the node is stopped.

usage: run.py [-k SUBSTRING] [--broker 3.10|4.0 ...]
The brokers: --broker, else CMI_RABBITMQ (space- or comma-separated), else
both 3.10 and 4.0 (4.0 needs scripts/rabbitmq4-setup).  A test reads the
broker it runs on from CMI_RABBITMQ, which is set for each run.
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

from rabbitmq import BROKERS, RabbitNode, broker  # noqa: E402


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


def run_on(version, tests):
    """Every test against one broker; returns (tests run, [(name, detail)] of the failures)."""
    os.environ["CMI_RABBITMQ"] = version
    t0 = time.monotonic()
    node = RabbitNode(tls=True)  # a TLS listener beside the plain one (test_tls.py)
    try:
        node.start()
    except Exception as e:
        node.stop()
        print("FAIL  [%s] cannot start RabbitMQ for the integration tests: %s" % (version, e), flush=True)
        return len(tests), [("[%s] RabbitMQ" % version, "cannot start: %s" % e)]
    print("RabbitMQ %s (asked for %s) up on 127.0.0.1:%d (management %d, epmd %d) in %.1fs"
          % (node.api("GET", "/api/overview")["rabbitmq_version"], version, node.amqp_port, node.mgmt_port,
             broker().epmd_port, time.monotonic() - t0), flush=True)
    failures = []
    try:
        for name, fn in tests:
            t = time.monotonic()
            try:
                fn(node)
                print("ok    [%s] %-58s %6.2fs" % (version, name, time.monotonic() - t), flush=True)
            except Exception as e:
                detail = str(e) if isinstance(e, AssertionError) or type(e).__name__ == "TestFailure" \
                    else traceback.format_exc()
                print("FAIL  [%s] %-58s %6.2fs\n      %s" % (version, name, time.monotonic() - t,
                                                             "\n      ".join(detail.splitlines())), flush=True)
                failures.append(("[%s] %s" % (version, name), detail))
    finally:
        node.stop()
    print("RabbitMQ %s: %d integration test(s), %d failed (%.0fs)"
          % (version, len(tests), len(failures), time.monotonic() - t0), flush=True)
    return len(tests), failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", dest="filter")
    ap.add_argument("--broker", action="append", choices=BROKERS)
    args = ap.parse_args()
    versions = args.broker or os.environ.get("CMI_RABBITMQ", " ".join(BROKERS)).replace(",", " ").split()
    for v in versions:
        if v not in BROKERS:
            print("FAIL  unknown broker %r in CMI_RABBITMQ (known: %s)" % (v, " ".join(BROKERS)))
            return 1
    tests = collect(args.filter)
    t0 = time.monotonic()
    total, failures = 0, []
    for v in versions:
        n, f = run_on(v, tests)
        total += n
        failures += f
    # Repeated last, briefly: CI keeps only the tail of a long log.
    for name, detail in failures:
        lines = detail.splitlines()
        print("FAILED %s\n      %s" % (name, "\n      ".join(lines[-12:])))
    print("%d integration test run(s) on %s, %d failed (%.0fs)"
          % (total, " and ".join(versions), len(failures), time.monotonic() - t0))
    return min(len(failures), 99)


if __name__ == "__main__":
    sys.exit(main())
