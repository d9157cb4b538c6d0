"""Scenario files: a deployment and the requests it must answer.

A scenario file (*.scn) holds sections that start with a line "=== KIND ...":

  === options            key: value lines: workers, env (NAME=VALUE), args
  === file api/x.xml     the file's content follows, up to the next section
  === request GET /path  header lines, a blank line, then the body (if any)
  === expect 200         header checks, a blank line, then the body check
  === log REGEX          a log line matching REGEX appears (after the request)

Header checks: "Name: value" (exact), "Name: ~regex", "!Name" (absent).
Body checks: exact text; or a first line "@json" (compare as JSON),
"@contains TEXT", "@regex PATTERN", "@empty"; nothing: not checked.
Lines starting with "#" outside file sections are comments.
"""
import json
import os
import re
import shutil
import tempfile

from harness import Cmi, TestFailure, check


class Section:
    def __init__(self, kind, arg, line):
        self.kind, self.arg, self.line = kind, arg, line
        self.lines = []


def parse(path):
    sections = []
    cur = None
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if line.startswith("=== "):
                kind, _, arg = line[4:].partition(" ")
                cur = Section(kind.strip(), arg.strip(), n)
                sections.append(cur)
            elif cur is None:
                if line.strip() and not line.startswith("#"):
                    raise TestFailure("%s:%d: text before the first section" % (path, n))
            elif cur.kind != "file" and line.startswith("#"):
                continue
            else:
                cur.lines.append(line)
    return sections


def split_head_body(lines):
    head, body = [], []
    it = iter(lines)
    for line in it:
        if line == "":
            break
        head.append(line)
    body = list(it)
    while body and body[-1] == "":
        body.pop()
    return head, "\n".join(body)


def check_headers(where, checks, headers):
    for c in checks:
        if c.startswith("!"):
            check(c[1:].strip().lower() not in headers, "%s: header %s should be absent, got %r"
                  % (where, c[1:].strip(), headers.get(c[1:].strip().lower())))
            continue
        name, _, value = c.partition(":")
        name, value = name.strip().lower(), value.strip()
        got = headers.get(name)
        check(got is not None, "%s: header %s missing (have %s)" % (where, name, sorted(headers)))
        if value.startswith("~"):
            check(re.search(value[1:], got), "%s: header %s=%r does not match %s" % (where, name, got, value[1:]))
        else:
            check(got == value, "%s: header %s=%r, expected %r" % (where, name, got, value))


def check_body(where, spec, body):
    if spec == "":
        return  # no body given: not checked (use @empty for "no body")
    text = body.decode("utf-8", "replace")
    first, _, rest = spec.partition("\n")
    if first == "@json":
        try:
            got = json.loads(text)
        except ValueError:
            raise TestFailure("%s: body is not JSON: %r" % (where, text))
        check(got == json.loads(rest), "%s: JSON body %r, expected %r" % (where, got, json.loads(rest)))
    elif first.startswith("@contains "):
        check(first[10:] in text, "%s: body %r does not contain %r" % (where, text, first[10:]))
    elif first.startswith("@regex "):
        check(re.search(first[7:], text, re.S), "%s: body %r does not match %r" % (where, text, first[7:]))
    elif first == "@empty":
        check(text == "", "%s: body should be empty, got %r" % (where, text))
    else:
        check(text == spec, "%s: body %r, expected %r" % (where, text, spec))


def run_file(path):
    sections = parse(path)
    opts = {"workers": 1, "env": {}, "args": []}
    tmp = tempfile.mkdtemp(prefix="cmi-scn-")
    try:
        for s in sections:
            if s.kind == "options":
                for line in s.lines:
                    if not line.strip():
                        continue
                    k, _, v = line.partition(":")
                    k, v = k.strip(), v.strip()
                    if k == "workers":
                        opts["workers"] = int(v)
                    elif k == "env":
                        name, _, value = v.partition("=")
                        opts["env"][name] = value
                    elif k == "args":
                        opts["args"] += v.split()
                    else:
                        raise TestFailure("%s:%d: unknown option %s" % (path, s.line, k))
            elif s.kind == "file":
                dest = os.path.join(tmp, s.arg)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "w", encoding="utf-8") as f:
                    f.write("\n".join(s.lines) + "\n")
        cmi = Cmi(tmp, workers=opts["workers"], env=opts["env"], args=opts["args"]).start()
        try:
            conn = cmi.connection()
            last = None
            mark = 0
            for s in sections:
                where = "%s:%d" % (os.path.basename(path), s.line)
                if s.kind == "request":
                    method, _, target = s.arg.partition(" ")
                    head, body = split_head_body(s.lines)
                    headers = dict((h.partition(":")[0].strip(), h.partition(":")[2].strip()) for h in head)
                    mark = cmi.log_mark()
                    try:
                        last = cmi.request(method, target, body.encode() if body else None, headers, conn=conn)
                    except (ConnectionError, OSError):
                        conn.close()  # the server closed a kept-alive connection: once more on a new one
                        conn = cmi.connection()
                        last = cmi.request(method, target, body.encode() if body else None, headers, conn=conn)
                elif s.kind == "expect":
                    check(last is not None, "%s: expect without a request" % where)
                    status, headers, body = last
                    check(status == int(s.arg), "%s: status %d, expected %s (body %r)" % (where, status, s.arg, body))
                    head, spec = split_head_body(s.lines)
                    check_headers(where, head, headers)
                    check_body(where, spec, body)
                elif s.kind == "log":
                    cmi.wait_log(s.arg, 5.0, start=mark)
            conn.close()
            cmi.stop_clean()
        finally:
            cmi.kill()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
