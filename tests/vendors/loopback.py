"""Small loopback servers for what the simulator does not do: never answer, reset a connection
after the request, stand in for a foreign recording host (on 127.0.0.2) or redirect."""

from __future__ import annotations

import http.server
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

WAV_BODY = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + b"\0" * 28


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class RawServer:
    """A TCP server that reads each request's head, counts it, then `behaviour`s: "silent"
    (never answers, holds the connection), "reset" (closes with RST) or "cut" (answers 200 with
    a Content-Length of 1000, sends 10 bytes of JSON and closes)."""

    behaviour: str
    host: str = "127.0.0.1"
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind((self.host, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.close()
                    return
                head += chunk
        except OSError:
            conn.close()
            return
        with self._lock:
            self.requests.append(head)
        if self.behaviour == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        elif self.behaviour == "cut":
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"data":[{'
            )
            conn.close()
        else:
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        for conn in self._held:
            conn.close()


@contextmanager
def raw_server(behaviour: str, host: str = "127.0.0.1") -> Iterator[RawServer]:
    server = RawServer(behaviour, host)
    try:
        yield server
    finally:
        server.close()


@dataclass
class Seen:
    """One request an `HttpHost` received."""

    method: str
    path: str  # with query
    headers: dict[str, str]
    client_port: int


Responder = Callable[[Seen], tuple[int, list[tuple[str, str]], bytes]]


def wav(_: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [("Content-Type", "audio/wav")], WAV_BODY


class HttpHost:
    """A keep-alive HTTP/1.1 server on `host` that records every request and answers with
    `responder(seen) -> (status, headers, body)`."""

    def __init__(self, host: str = "127.0.0.1", responder: Responder = wav, port: int = 0) -> None:
        self.seen: list[Seen] = []
        self.responder = responder
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._answer()

            def _answer(self) -> None:
                seen = Seen(self.command, self.path, dict(self.headers), self.client_address[1])
                outer.seen.append(seen)
                status, headers, body = outer.responder(seen)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def http_host(host: str = "127.0.0.1", responder: Responder = wav) -> Iterator[HttpHost]:
    server = HttpHost(host, responder)
    try:
        yield server
    finally:
        server.close()
