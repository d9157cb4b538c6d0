#!/usr/bin/env python3
"""Check whether cmi loads each MI documentation example in this folder.

For every example folder (a directory holding EXAMPLE.md) run
`$CMI_BIN check <folder>` with CMI_CONNECTORS_PATH set to "" and a 30 s
timeout, print `loads` or `refused` plus the first error line, then a summary
with a histogram of normalised first-error reasons.  Exit status 1 when an
example listed in loads.txt (next to this script; --expect names another
list) no longer loads: `make check` runs it so.  --write rewrites loads.txt
with the examples that load now (after cmi learnt something new).

usage: run.py [--expect FILE] [--write] [-v] [EXAMPLE ...]
"""
import argparse
import collections
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 30


def examples(names):
    all_ex = sorted(d for d in os.listdir(HERE)
                    if os.path.isfile(os.path.join(HERE, d, 'EXAMPLE.md')))
    if not names:
        return all_ex
    missing = [n for n in names if n not in all_ex]
    if missing:
        sys.exit('run.py: no such example: ' + ', '.join(missing))
    return names


ERR_RE = re.compile(r'^(?P<loc>\S+?:\d+:\s*)?(?:error|fatal):\s*(?P<msg>.*)$')


def error_lines(output):
    """The error messages of a `cmi check` output, file:line prefix removed."""
    errs = []
    for line in output.splitlines():
        line = line.strip()
        m = re.match(r'^(\S+?):(\d+):\s*error:\s*(.*)$', line)
        if m:
            errs.append((line, m.group(3)))
        elif re.match(r'^(\S+?):\s*error:\s*', line) or line.startswith('error:'):
            errs.append((line, re.sub(r'^(\S+?:\s*)?error:\s*', '', line)))
    return errs


def normalise(msg):
    """A reason without the example-specific parts (names, keys, values)."""
    s = msg
    # <tag attr="..."> -> <tag>
    s = re.sub(r'<([A-Za-z_][\w:.-]*)(\s[^>]*)?(/?)>', r'<\1\3>', s)
    s = re.sub(r'"[^"]*"', '"…"', s)
    s = re.sub(r", at '.*$", '', s)           # XPath error position
    s = re.sub(r"\bgot '.*'$", "got '…'", s)  # offending value
    s = re.sub(r'\b\d+\b', 'N', s)
    return s.strip()


def run_one(cmi, folder):
    env = dict(os.environ)
    env['CMI_CONNECTORS_PATH'] = ''
    try:
        p = subprocess.run([cmi, 'check', folder], env=env, cwd=HERE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, 'timeout after %d s' % TIMEOUT, 'timeout', []
    except OSError as e:
        return False, 'cannot run %s: %s' % (cmi, e), 'cannot run cmi', []
    out = p.stdout.decode('utf-8', 'replace')
    errs = error_lines(out)
    if p.returncode == 0:
        return True, '', '', errs
    if p.returncode < 0:
        first = 'killed by signal %d' % -p.returncode
        return False, first, 'crash (signal %d)' % -p.returncode, errs
    if errs:
        return False, errs[0][0], normalise(errs[0][1]), errs
    lines = [l for l in out.splitlines() if l.strip()]
    first = lines[0] if lines else 'exit status %d, no output' % p.returncode
    return False, first, normalise(first), errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--expect', metavar='FILE', default=os.path.join(HERE, 'loads.txt'),
                    help='exit 1 if an example listed in FILE does not load (default: loads.txt)')
    ap.add_argument('--write', action='store_true',
                    help='rewrite loads.txt with the examples that load now')
    ap.add_argument('-v', '--verbose', action='store_true',
                    help='print every error line of refused examples')
    ap.add_argument('names', nargs='*', metavar='EXAMPLE')
    a = ap.parse_args()
    cmi = os.environ.get('CMI_BIN') or os.path.join(os.getcwd(), 'cmi')
    exs = examples(a.names)
    width = max((len(e) for e in exs), default=10)
    loads, first_hist, all_hist = [], collections.Counter(), collections.Counter()
    for ex in exs:
        ok, first, reason, errs = run_one(cmi, ex)
        if ok:
            loads.append(ex)
            print('%-*s  loads' % (width, ex))
        else:
            print('%-*s  refused  %s' % (width, ex, first))
            first_hist[reason] += 1
            for r in set(normalise(m) for _, m in errs) or {reason}:
                all_hist[r] += 1
            if a.verbose:
                for line, _ in errs[1:]:
                    print('%-*s           %s' % (width, '', line))
    print()
    print('examples: %d, load: %d, refused: %d' % (len(exs), len(loads), len(exs) - len(loads)))
    if first_hist:
        print('first-error reasons:')
        for r, n in sorted(first_hist.items(), key=lambda kv: (-kv[1], kv[0])):
            print('  %3d  %s' % (n, r))
        print('all error reasons (examples having each):')
        for r, n in sorted(all_hist.items(), key=lambda kv: (-kv[1], kv[0])):
            print('  %3d  %s' % (n, r))
    if a.write and not a.names:
        with open(os.path.join(HERE, 'loads.txt'), 'w') as f:
            f.write(''.join(e + '\n' for e in loads))
    if a.expect:
        with open(a.expect) as f:
            want = [l.strip() for l in f if l.strip() and not l.startswith('#')]
        lost = [w for w in want if w not in loads]
        if lost:
            print('no longer load (listed in %s): %s' % (a.expect, ' '.join(lost)))
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
