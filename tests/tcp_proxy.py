"""A TCP proxy in front of PostgreSQL that a test can cut, to lose connections at will.

`pg_terminate_backend` ends a backend politely (the server says why before closing); a network
failure does not: the socket just dies and new connections are refused for a while. The proxy
does the latter to the connections that pass through it, and to no one else's.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target`; `cut()` resets every connection through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._refuse_until = 0.0
        self._stopped = threading.Event()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def cut(self, refuse_seconds: float = 0.0) -> int:
        """Reset every open connection (RST, no goodbye); refuse new ones for a while."""
        self._refuse_until = time.monotonic() + refuse_seconds
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for sock in pair:
                _reset(sock)
        return len(pairs)

    def close(self) -> None:
        self._stopped.set()
        self._accepter.join(5)
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, server = pair
        for sock in pair:
            sock.setblocking(False)
        other = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            for sock in pair:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select(0.5):
                        sock: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError
                        other[sock].setblocking(True)
                        other[sock].sendall(data)
                        other[sock].setblocking(False)
                    with self._lock:
                        if pair not in self._pairs:
                            return
            except (OSError, ValueError):
                pass
            finally:
                with self._lock:
                    self._pairs.discard(pair)
                for sock in pair:
                    _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a dead network or host would look."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
