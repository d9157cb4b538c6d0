#!/usr/bin/env python3
"""The deployment corpus: every folder under broken/ and warnings/ is a
deployment; `cmi check .` run inside it must print exactly the
diagnostic lines of its `expected` file, in order, and exit 1 when any of
them is an error (0 otherwise).  Exit status: the number of failing cases.

Connector modules: the test echo connector is on the path (CMI_TEST_CONNECTORS);
a case with a file `connectors` naming `badabi` gets the wrong-ABI module's
folder instead.  Module folders print as CONNECTORS in diagnostics, so that
expected files do not depend on where the tree was built."""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CMI_BIN = os.environ.get("CMI_BIN") or os.path.join(os.getcwd(), "cmi")
DIAG = re.compile(r"^[^ ]+(:\d+)?: (error|warning): ")


def run_case(path):
    with open(os.path.join(path, "expected"), encoding="utf-8") as f:
        expected = [line.rstrip("\n") for line in f if line.strip()]
    mods = os.environ.get("CMI_TEST_CONNECTORS", "")
    marker = os.path.join(path, "connectors")
    if os.path.exists(marker) and open(marker).read().strip() == "badabi":
        mods = os.environ.get("CMI_TEST_BADABI", "")
    env = dict(os.environ, CMI_CONNECTORS_PATH=mods)
    p = subprocess.run([CMI_BIN, "check", "."], cwd=path, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, env=env)
    err = p.stderr.decode("utf-8", "replace")
    if mods:
        err = err.replace(mods, "CONNECTORS")
    got = [line for line in err.splitlines() if DIAG.match(line)]
    want_rc = 1 if any(": error: " in line for line in expected) else 0
    problems = []
    if got != expected:
        problems.append("diagnostics differ:\n  expected:\n    %s\n  got:\n    %s"
                        % ("\n    ".join(expected), "\n    ".join(got)))
    if p.returncode != want_rc:
        problems.append("exit status %d, expected %d" % (p.returncode, want_rc))
    if p.returncode < 0 or "AddressSanitizer" in err or "runtime error" in err:
        problems.append("cmi crashed or a sanitizer fired:\n%s" % err)
    return problems


def main():
    cases = []
    for group in ("broken", "warnings"):
        base = os.path.join(HERE, group)
        cases += [os.path.join(base, d) for d in sorted(os.listdir(base))]
    failed = 0
    for c in cases:
        problems = run_case(c)
        name = os.path.relpath(c, HERE)
        if problems:
            failed += 1
            print("FAIL  %s\n      %s" % (name, "\n      ".join("\n".join(problems).splitlines())))
        else:
            print("ok    %s" % name)
    print("%d deployment(s) checked, %d failed" % (len(cases), failed))
    return min(failed, 99)


if __name__ == "__main__":
    sys.exit(main())
