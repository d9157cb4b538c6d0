"""Drives the real cmi binary for scenario and engine tests.

Starts `cmi run` on a free loopback port (--http-port 0; the port is read
from cmi's "listening on" log line), collects its log, sends HTTP requests
and stops it.  Every wait is bounded.  With CMI_WRAPPER set (for example
"valgrind --error-exitcode=99 --leak-check=full"), cmi runs under it and
timeouts are stretched.
"""
import http.client
import os
import re
import shlex
import signal
import socket
import atexit
import shutil
import subprocess
import tempfile
import threading
import time

CMI_BIN = os.environ.get("CMI_BIN") or os.path.join(os.getcwd(), "cmi")
WRAPPER = shlex.split(os.environ.get("CMI_WRAPPER", ""))
# How much longer bounds and waits are: under valgrind, and under
# ThreadSanitizer (a build whose CPU-heavy paths run 20-50 times slower:
# an 8,000-character path that takes 0.08 s takes 4 s there).
SLOW = 10.0 if WRAPPER else 5.0 if "sanitize=thread" in os.environ.get("CMI_SAN_LDFLAGS", "") else 1.0


# What cmi keeps between runs (a stream consumer's offsets) goes to a
# folder of this test process unless a test gives its own: never the
# user's ~/.local/state/cmi.
_STATE = None


def state_dir():
    global _STATE
    if _STATE is None:
        _STATE = tempfile.mkdtemp(prefix="cmi-state-")
        atexit.register(shutil.rmtree, _STATE, True)
    return _STATE


class TestFailure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)


class Cmi:
    """One cmi process serving one deployment folder."""

    def __init__(self, deploy_dir, workers=1, env=None, args=()):
        self.deploy_dir = deploy_dir
        self.workers = workers
        self.env = dict(os.environ)
        self.env.setdefault("CMI_TEST_MEDIATORS", "1")
        self.env.setdefault("CMI_STATE_DIRECTORY", state_dir())
        # The test echo connector (tests/connectors/echo) is on the path.
        if os.environ.get("CMI_TEST_CONNECTORS"):
            self.env.setdefault("CMI_CONNECTORS_PATH", os.environ["CMI_TEST_CONNECTORS"])
        self.env.update(env or {})
        self.args = list(args)
        self.proc = None
        self.port = None
        self.internal_port = None
        self.lines = []
        self.cond = threading.Condition()
        self.reader = None

    def command(self):
        return WRAPPER + [CMI_BIN, "run", self.deploy_dir, "--http-host", "127.0.0.1", "--http-port", "0",
                          "--workers", str(self.workers), "--log-level", "debug"] + internal_port(self.args) + self.args

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=self.env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        m = self.wait_log(r"listening on [^ ]+:(\d+) \(", timeout)
        self.port = int(m.group(1))
        m = self.wait_log(r"internal port on [^ ]+:(\d+):|engine\] cmi \S+ ready", timeout)
        self.internal_port = int(m.group(1)) if m.group(1) else None
        return self

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_log(self, pattern, timeout=5.0, start=0):
        """Waits for a log line matching pattern (from line index start)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise TestFailure("no log line matching %r within %.1fs; log:\n%s"
                                      % (pattern, timeout * SLOW, "\n".join(self.lines[-30:])))
                self.cond.wait(min(left, 0.2))

    def log_mark(self):
        with self.cond:
            return len(self.lines)

    def log_text(self, start=0):
        """The log from line index start (a log_mark) on."""
        with self.cond:
            return "\n".join(self.lines[start:])

    def connection(self, timeout=10.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOW)

    def internal(self, path, method="GET", timeout=10.0):
        """A request to the internal port: (status, headers, body)."""
        check(self.internal_port, "cmi runs without its internal port")
        c = http.client.HTTPConnection("127.0.0.1", self.internal_port, timeout=timeout * SLOW)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def request(self, method, path, body=None, headers=None, conn=None, timeout=10.0):
        """Returns (status, {lower-case header: value}, body bytes)."""
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if own:
                c.close()

    def wait_exit(self, timeout=15.0):
        """Waits for cmi to exit on its own (after a signal already sent)."""
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("cmi did not exit within %.0fs" % (timeout * SLOW))
        self.reader.join(5)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Signals cmi and waits for it to exit; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            stacks = self.stacks()
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("cmi did not exit within %.0fs of signal %d; its threads:\n%s\nend of its log:\n%s"
                              % (timeout * SLOW, sig, stacks, "\n".join(self.log_text().splitlines()[-40:])))
        self.reader.join(5)
        return rc

    def stacks(self):
        """Every thread's stack of a cmi that hangs (gdb), for the failure's text."""
        try:
            p = subprocess.run(["gdb", "-p", str(self.proc.pid), "-batch", "-ex", "thread apply all bt"],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            return "\n".join(ln for ln in p.stdout.splitlines() if ln.startswith(("#", "Thread")))
        except (OSError, subprocess.TimeoutExpired) as e:
            return "(no stacks: %s)" % e

    def stop_clean(self, timeout=15.0):
        """stop(), and fail with the end of the log unless cmi exited 0."""
        rc = self.stop(timeout=timeout)
        if rc != 0:
            raise TestFailure("cmi exited with status %s; end of its log:\n%s"
                              % (rc, "\n".join(self.log_text().splitlines()[-40:])))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _exchange(port, data, timeout, done):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    chunks, closed = [], False
    try:
        s.sendall(data)
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                closed = True
                break
            chunks.append(b)
            if done(b"".join(chunks)):
                break
        return b"".join(chunks), closed
    finally:
        s.close()


def raw_exchange(port, data, timeout=5.0):
    """Sends raw bytes and returns what came back until the peer closed or
    the first response was complete enough to judge (for malformed HTTP)."""
    return _exchange(port, data, timeout, lambda got: b"\r\n\r\n" in got)[0]


def exchange_until_close(port, data, timeout=5.0):
    """Sends raw bytes and reads until the peer closes (or the timeout):
    (what came back, whether the peer closed)."""
    return _exchange(port, data, timeout, lambda got: False)


def internal_port(args):
    """--internal-port 0 unless args say otherwise: tests run side by side,
    and MI's 9201 may be taken."""
    return [] if any(a.startswith("--internal-port") for a in args) else ["--internal-port", "0"]


def run_cmi(args, cwd=None, env=None, timeout=30.0, internal=True):
    """Runs a cmi command to completion; returns (exit status, stdout, stderr).
    internal=False: no --internal-port 0 added to a run."""
    if args and args[0] == "run" and internal:
        args = list(args) + internal_port(args)
    e = dict(os.environ)
    e.setdefault("CMI_TEST_MEDIATORS", "1")
    if os.environ.get("CMI_TEST_CONNECTORS"):
        e.setdefault("CMI_CONNECTORS_PATH", os.environ["CMI_TEST_CONNECTORS"])
    e.update(env or {})
    p = subprocess.run(WRAPPER + [CMI_BIN] + list(args), cwd=cwd, env=e, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout * SLOW)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
