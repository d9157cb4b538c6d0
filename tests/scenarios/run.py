#!/usr/bin/env python3
"""Runs the scenario suite: every cases/*.scn file and every test_* function
of the test_*.py modules here, each against a freshly started cmi.

usage: run.py [-k SUBSTRING] [-j JOBS]
Exit status: the number of failures (0: all passed)."""
import argparse
import concurrent.futures
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scenario  # noqa: E402
from harness import TestFailure  # noqa: E402


def collect(filt):
    tests = []
    cases = os.path.join(HERE, "cases")
    for name in sorted(os.listdir(cases)):
        if name.endswith(".scn"):
            path = os.path.join(cases, name)
            tests.append((name[:-4], lambda p=path: scenario.run_file(p)))
    for mod in sorted(os.listdir(HERE)):
        if mod.startswith("test_") and mod.endswith(".py"):
            m = importlib.import_module(mod[:-3])
            for attr in sorted(dir(m)):
                if attr.startswith("test_") and callable(getattr(m, attr)):
                    tests.append(("%s.%s" % (mod[:-3], attr), getattr(m, attr)))
    return [t for t in tests if filt is None or filt in t[0]]


def run_one(test):
    name, fn = test
    t0 = time.monotonic()
    try:
        fn()
        return name, None, time.monotonic() - t0
    except TestFailure as e:
        return name, str(e), time.monotonic() - t0
    except Exception:
        return name, traceback.format_exc(), time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", dest="filter")
    ap.add_argument("-j", dest="jobs", type=int, default=2)
    args = ap.parse_args()
    tests = collect(args.filter)
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        for name, err, secs in ex.map(run_one, tests):
            if err is None:
                print("ok    %-50s %5.2fs" % (name, secs), flush=True)
            else:
                failures.append((name, err))
                print("FAIL  %-50s %5.2fs\n      %s" % (name, secs, err.replace("\n", "\n      ")), flush=True)
    # Repeated last, so a log's tail (all CI shows) names what failed and why.
    for name, err in failures:
        lines = err.rstrip().split("\n")
        print("FAILED %s\n      %s" % (name, "\n      ".join(lines[-25:])))
    print("%d scenario test(s), %d failed" % (len(tests), len(failures)))
    return min(len(failures), 99)


if __name__ == "__main__":
    sys.exit(main())
