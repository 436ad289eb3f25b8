"""The `Simulator`: one loopback HTTP/1.1 server speaking both vendor APIs.

Owns the wire: routing by path to the vendor handlers, keep-alive with exact Content-Length,
streamed bodies, a remote network's latency and bandwidth (`SimulatorConfig.latency_ms`, ...),
transport-level faults (injected failures, delayed answers, connections reset mid-body, halved
bodies, throttled / truncated / corrupted audio), request statistics, and the server's
lifecycle. It binds any loopback address (`host="127.0.0.2"` for a second host).
Record contents live in `data.py`, vendor semantics in `yeastar.py` / `zorio.py`. Nothing
here logs query strings or secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .audio import corrupt, iter_audio
from .config import SimulatorConfig
from .data import parse_day
from .faults import YEASTAR_API_PREFIX, Faults, Stats, TransportRule
from .pagecache import PageCache
from .protocol import Reply, Request, json_reply
from .yeastar import YeastarApi
from .zorio import ZorioApi

VENDORS = ("yeastar", "zorio")
_THROTTLE_CHUNK = 8 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sim: Simulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cdr-assets-simulator"

    def version_string(self) -> str:
        return self.server_version
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are dropped after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sim._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silent: request lines carry tokens and signatures."""

    def _dispatch(self) -> None:
        sim = self.server.sim
        sim.stats.enter()
        try:
            self._serve(sim)
        finally:
            sim.stats.leave()

    def _serve(self, sim: Simulator) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        host = self.headers.get("Host") or f"{sim.host}:{sim.port}"
        delay = sim.faults.take_transport("delay", url.path)
        wait = sim.network_latency_s() + (delay.amount if delay is not None else 0.0)
        if wait and sim._stopping.wait(wait):
            self.close_connection = True
            return
        req = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=self.headers,  # type: ignore[arg-type]
            body=body,
            client_ip=self.client_address[0],
            host=host,
        )
        try:
            reply = sim._route(req)
        except Exception:  # a bug must not kill the connection silently
            reply = json_reply(500, {"message": "Simulator error."})
        # Recorded before the reply goes out, so a client that has its answer sees it counted.
        # A Yeastar download path is itself a credential: record only the endpoint.
        path = req.endpoint if req.endpoint == "/api/download" else req.path
        sim.stats.record(req.method, path, req.endpoint or req.path, reply.status)
        self._write(sim, reply, req.path)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch  # noqa: N815

    def _write(self, sim: Simulator, reply: Reply, path: str) -> None:
        faults = sim.faults
        reset = faults.take_transport("reset", path)
        halve = faults.take_transport("truncate_body", path) is not None
        try:
            if reply.stream is None:
                body = reply.body[: len(reply.body) // 2] if halve else reply.body
                self._headers(reply, len(body))
                if self.command == "HEAD":
                    return
                if reset is not None:
                    self.wfile.write(body[: int(reset.amount)])
                    self._reset()
                    return
                self._paced_write(body, sim.config.bandwidth_bytes_per_s)
                return
            self._stream(sim, reply, halve, reset)
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            if reply.on_close is not None:
                reply.on_close()

    def _paced_write(self, data: bytes, rate: float) -> None:
        """Write `data`, at most `rate` bytes a second when `rate` is set (0: at once)."""
        if not rate:
            self.wfile.write(data)
            return
        for k in range(0, len(data), _THROTTLE_CHUNK):
            piece = data[k : k + _THROTTLE_CHUNK]
            time.sleep(len(piece) / rate)  # before the write: no pause after the last byte
            self.wfile.write(piece)

    def _headers(self, reply: Reply, length: int) -> None:
        self.send_response(reply.status)
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(length))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0, no FIN first)."""
        self.close_connection = True
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # its reference would keep the descriptor open
        sock.close()

    def _stream(
        self, sim: Simulator, reply: Reply, halve: bool, reset: TransportRule | None
    ) -> None:
        assert reply.stream is not None and reply.length is not None
        chunks: Iterator[bytes] = reply.stream
        length = reply.length // 2 if halve else reply.length  # what Content-Length says
        limit = length
        faults = sim.faults
        if reply.audio and reply.status == 200:
            if faults.take_corrupt():
                chunks = corrupt(chunks)
            if faults.take_truncate():
                limit = length // 2
                self.close_connection = True
        if reset is not None:
            limit = min(limit, int(reset.amount))
        self._headers(reply, length)
        sent = 0
        for chunk in chunks:
            if sent >= limit:
                break
            if sent + len(chunk) > limit:
                chunk = chunk[: limit - sent]
            rates = [sim.config.bandwidth_bytes_per_s,
                     faults.throttle_bytes_per_s if reply.audio else None]
            self._paced_write(chunk, min((r for r in rates if r), default=0))
            sent += len(chunk)
        if reply.audio:
            sim.stats.add_audio_bytes(sent)
        if reset is not None:
            self._reset()
        elif sent < length:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


class Simulator:
    """Both vendor APIs on one loopback port, from deterministic synthetic data.

    >>> with Simulator(SimulatorConfig(seed=7, calls_per_day=200)) as sim:
    ...     url = sim.base_url  # "http://127.0.0.1:<port>"
    """

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self.faults = Faults()
        self.stats = Stats()
        self.page_cache = PageCache(self.config.page_cache_mb * 2**20)
        self.yeastar = YeastarApi(
            self.config, self.faults, self.stats, secrets.token_bytes(32), self.page_cache
        )
        self.zorio = ZorioApi(self.config, self.faults, self.stats, self.page_cache)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # wakes requests held by delay_next
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._jitter = random.Random(self.config.seed)
        self._jitter_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Simulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02},
            name=f"cdr-simulator-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def network_latency_s(self) -> float:
        """How long the next request waits before it is answered: the configured latency plus
        a seeded uniform jitter."""
        latency, jitter = self.config.latency_ms, self.config.latency_jitter_ms
        if jitter:
            with self._jitter_lock:
                latency += self._jitter.uniform(0.0, jitter)
        return latency / 1000.0

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}"

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # ------------------------------------------------------------------ routing

    def _route(self, req: Request) -> Reply:
        path = req.path
        if path.startswith(YEASTAR_API_PREFIX):
            req.endpoint = path[len(YEASTAR_API_PREFIX):]
        elif path.startswith("/api/download/"):
            req.endpoint = "/api/download"
        rule = self.faults.take_failure(path, req.query)
        if rule is not None:
            headers = [("Retry-After", rule.retry_after)] if rule.retry_after else []
            return Reply(rule.status, rule.body or b"", rule.content_type, headers)
        if req.endpoint:
            return self.yeastar.handle(req)
        if path.startswith(("/api/pbx/", "/api/public/")) or path.rstrip("/") == "/api/pbx":
            return self.zorio.handle(req)
        return json_reply(404, {"message": "Not found."})

    # ------------------------------------------------------------------ test helpers

    def _api(self, vendor: str) -> YeastarApi | ZorioApi:
        if vendor == "yeastar":
            return self.yeastar
        if vendor == "zorio":
            return self.zorio
        raise ValueError(f"vendor must be one of {VENDORS}, not {vendor!r}")

    def calls(self, vendor: str, local_day: date | str) -> list[Any]:
        """Every record of a PBX-local day, exactly as list pages serve them now (small days):
        in time order (whatever `yeastar.order`), with drift, overrides and extra keys."""
        return self._api(vendor).day_records(parse_day(local_day))

    def _recording_chunks(self, vendor: str, recording_ref: str) -> Iterator[bytes]:
        api = self._api(vendor)
        found = api.recording(recording_ref)
        if found is None:
            raise KeyError(f"no downloadable {vendor} recording {recording_ref!r}")
        d, i, _, seconds = found
        fmt = self.config.yeastar.recording_format if vendor == "yeastar" else "wav"
        return iter_audio(fmt, api.audio_key(d, i), seconds)

    def recording_bytes(self, vendor: str, recording_ref: str) -> bytes:
        """What the audio endpoint serves for a recording (Yeastar record_file / Zorio uuid)."""
        return b"".join(self._recording_chunks(vendor, recording_ref))

    def recording_sha256(self, vendor: str, recording_ref: str) -> str:
        """Hex SHA-256 of a recording, streamed (fine for 200 MB)."""
        h = hashlib.sha256()
        for chunk in self._recording_chunks(vendor, recording_ref):
            h.update(chunk)
        return h.hexdigest()

    def recording_size(self, vendor: str, recording_ref: str) -> int:
        """Byte length of a recording as served."""
        return sum(len(c) for c in self._recording_chunks(vendor, recording_ref))

    def unblock_ips(self) -> None:
        """Lift Yeastar IP blocks (what the PBX admin does under Security > Blocked IPs)."""
        self.yeastar.unblock_ips()
