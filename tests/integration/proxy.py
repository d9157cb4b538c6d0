"""A TCP proxy in front of a broker that a test can break without touching
the broker: `stall()` stops passing bytes on the connections open now
(half-open: nothing arrives, nothing fails), `cut()` closes them at once;
connections made afterwards pass normally.  `lose_attach(marker)` drops the
client's attach frames that contain marker (the address they name) until
`lose_attach(None)`: the broker never sees them, as if it had lost them."""
import socket
import struct
import threading


class Proxy:
    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []  # [client, broker, stalled-event]
        self.accepted = 0
        self.marker = None  # bytes: the client's frames holding them are dropped
        self.lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            stalled = threading.Event()
            with self.lock:
                self.pairs.append((c, b, stalled))
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(c, b, stalled, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(b, c, stalled), daemon=True).start()

    def lose_attach(self, marker):
        with self.lock:
            self.marker = marker.encode() if marker else None

    ATTACH = b"\x00\x53\x12"  # an AMQP frame body's performative: described, smallulong 0x12

    def _lost(self, unit, marker):
        return marker is not None and unit[8:11] == self.ATTACH and marker in unit

    def _frames(self, buf):
        """Whole units of the client's stream (8-byte protocol headers,
        frames by their size) and what is left over."""
        out = []
        while len(buf) >= 8:
            n = 8 if buf[:4] == b"AMQP" else struct.unpack(">I", buf[:4])[0]
            if n < 8 or len(buf) < n:
                break
            out.append(buf[:n])
            buf = buf[n:]
        return out, buf

    def _pipe(self, src, dst, stalled, from_client=False):
        buf = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if stalled.is_set():
                    continue  # swallowed, both ways: a half-open connection
                if from_client:
                    units, buf = self._frames(buf + data)
                    with self.lock:
                        marker = self.marker
                    kept = [u for u in units if not self._lost(u, marker)]
                    with self.lock:
                        self.lost += len(units) - len(kept)
                    data = b"".join(kept)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not stalled.is_set():
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def stall(self):
        with self.lock:
            for _, _, stalled in self.pairs:
                stalled.set()
            self.pairs = []

    def cut(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for c, b, _ in pairs:
            for s in (c, b):
                try:
                    # linger 0: a reset, as a dead peer or middlebox gives
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.sock.close()
        self.cut()
