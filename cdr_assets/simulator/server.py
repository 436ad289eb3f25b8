"""The `Simulator`: one loopback HTTP/1.1 server speaking both vendor APIs, for one PBX of each
vendor at the root and for any number of fleet PBXs, each under `/pbx/<name>` (`HostedPbx`).

Owns the wire: routing by path to the PBX and its vendor handlers, keep-alive with exact
Content-Length, streamed bodies, a remote network's latency and bandwidth
(`SimulatorConfig.latency_ms`, ...), transport-level faults (injected failures, delayed answers,
connections reset mid-body, halved bodies, throttled / truncated / corrupted audio), request
statistics, and the server's lifecycle. It binds any loopback address (`host="127.0.0.2"` for a
second host).
A fleet PBX has its own config (seed, volume, zone, credentials, format, network), faults and
stats; `sim.stats` counts every request the server answers. Record contents live in `data.py`,
vendor semantics in `yeastar.py` / `zorio.py`. Nothing here logs query strings or secrets.
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
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .api import VendorApi
from .audio import corrupt, iter_audio
from .config import FLEET_PATH_PREFIX, FleetPbxConfig, SimulatorConfig, check_fleet
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
        url = urlsplit(self.path)
        tenant, path = sim._tenant_of(url.path)
        for stats in tenant.counters:
            stats.enter()
        try:
            self._serve(sim, tenant, path, url.query)
        finally:
            for stats in tenant.counters:
                stats.leave()

    def _serve(self, sim: Simulator, tenant: _Tenant, path: str, query: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        host = self.headers.get("Host") or f"{sim.host}:{sim.port}"
        delay = tenant.faults.take_transport("delay", path)
        wait = tenant.latency_s() + (delay.amount if delay is not None else 0.0)
        if wait and sim._stopping.wait(wait):
            self.close_connection = True
            return
        req = Request(
            method=self.command,
            path=path,
            query=dict(parse_qsl(query, keep_blank_values=True)),
            headers=self.headers,  # type: ignore[arg-type]
            body=body,
            client_ip=self.client_address[0],
            host=host,
            prefix=tenant.prefix,
        )
        try:
            reply = tenant.route(req)
        except Exception:  # a bug must not kill the connection silently
            reply = json_reply(500, {"message": "Simulator error."})
        # Recorded before the reply goes out, so a client that has its answer sees it counted.
        # A Yeastar download path is itself a credential: record only the endpoint. The server's
        # stats see a fleet PBX's requests with its prefix, the PBX's own stats without.
        shown = req.endpoint if req.endpoint == "/api/download" else req.path
        endpoint = req.endpoint or req.path
        for stats in tenant.counters:
            prefix = tenant.prefix if stats is sim.stats else ""
            stats.record(req.method, prefix + shown, endpoint, reply.status)
        self._write(tenant, reply, req.path)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch  # noqa: N815

    def _write(self, tenant: _Tenant, reply: Reply, path: str) -> None:
        faults = tenant.faults
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
                self._paced_write(body, tenant.config.bandwidth_bytes_per_s)
                return
            self._stream(tenant, reply, halve, reset)
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
        self, tenant: _Tenant, reply: Reply, halve: bool, reset: TransportRule | None
    ) -> None:
        assert reply.stream is not None and reply.length is not None
        chunks: Iterator[bytes] = reply.stream
        length = reply.length // 2 if halve else reply.length  # what Content-Length says
        limit = length
        faults = tenant.faults
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
            rates = [
                tenant.config.bandwidth_bytes_per_s,
                faults.throttle_bytes_per_s if reply.audio else None,
            ]
            self._paced_write(chunk, min((r for r in rates if r), default=0))
            sent += len(chunk)
        if reply.audio:
            for stats in tenant.counters:
                stats.add_audio_bytes(sent)
        if reset is not None:
            self._reset()
        elif sent < length:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


class _Tenant:
    """What answers a request: a config, faults, stats and vendor handlers (the root pair of
    PBXs, or one fleet PBX)."""

    def __init__(
        self,
        prefix: str,
        config: SimulatorConfig,
        faults: Faults,
        counters: tuple[Stats, ...],
        apis: Mapping[str, VendorApi],
    ) -> None:
        self.prefix = prefix
        self.config = config
        self.faults = faults
        self.counters = counters  # every Stats that counts this tenant's requests
        self.apis = apis
        self._jitter = random.Random(config.seed)
        self._jitter_lock = threading.Lock()

    def latency_s(self) -> float:
        """How long the next request waits before it is answered: the configured latency plus
        a seeded uniform jitter."""
        latency, jitter = self.config.latency_ms, self.config.latency_jitter_ms
        if jitter:
            with self._jitter_lock:
                latency += self._jitter.uniform(0.0, jitter)
        return latency / 1000.0

    def route(self, req: Request) -> Reply:
        path = req.path
        if path.startswith(YEASTAR_API_PREFIX):
            req.endpoint = path[len(YEASTAR_API_PREFIX) :]
        elif path.startswith("/api/download/"):
            req.endpoint = "/api/download"
        rule = self.faults.take_failure(path, req.query)
        if rule is not None:
            headers = [("Retry-After", rule.retry_after)] if rule.retry_after else []
            return Reply(rule.status, rule.body or b"", rule.content_type, headers)
        if req.endpoint:
            api = self.apis.get("yeastar")
        elif path.startswith(("/api/pbx/", "/api/public/")) or path.rstrip("/") == "/api/pbx":
            api = self.apis.get("zorio")
        else:
            api = None
        return api.handle(req) if api is not None else json_reply(404, {"message": "Not found."})


def _recording_chunks(api: VendorApi, recording_ref: str) -> Iterator[bytes]:
    found = api.recording(recording_ref)
    if found is None:
        raise KeyError(f"no downloadable {api.vendor} recording {recording_ref!r}")
    d, i, _, seconds = found
    fmt = api.cfg.recording_format if isinstance(api, YeastarApi) else "wav"
    return iter_audio(fmt, api.audio_key(d, i), seconds)


def _sha256(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


class HostedPbx(_Tenant):
    """A fleet PBX the simulator hosts under `/pbx/<name>`: one vendor's API with its own
    config, `faults` and `stats` (requests to it are also counted in the server's `stats`).

    >>> pbx = sim.pbx("kathmandu")
    >>> pbx.base_url  # "http://127.0.0.1:<port>/pbx/kathmandu", the PBX's base_url
    """

    def __init__(self, sim: Simulator, spec: FleetPbxConfig) -> None:
        self.name = spec.name
        self.vendor = spec.vendor
        self.stats = Stats()
        faults = Faults()
        cache = PageCache(spec.config.page_cache_mb * 2**20)
        api: YeastarApi | ZorioApi
        if spec.vendor == "yeastar":
            api = YeastarApi(spec.config, faults, self.stats, secrets.token_bytes(32), cache)
        else:
            api = ZorioApi(spec.config, faults, self.stats, cache)
        self.api = api
        self._sim = sim
        super().__init__(
            spec.prefix, spec.config, faults, (sim.stats, self.stats), {spec.vendor: api}
        )

    @property
    def base_url(self) -> str:
        """What the PBX's `base_url` in `cdr_assets.yaml` is."""
        return f"{self._sim.base_url}{self.prefix}"

    @property
    def timezone(self) -> str:
        return self.api.cfg.timezone

    def calls(self, local_day: date | str) -> list[Any]:
        """Every record of a PBX-local day, exactly as its list pages serve them now."""
        return self.api.day_records(parse_day(local_day))

    def recording_bytes(self, recording_ref: str) -> bytes:
        return b"".join(_recording_chunks(self.api, recording_ref))

    def recording_sha256(self, recording_ref: str) -> str:
        return _sha256(_recording_chunks(self.api, recording_ref))

    def recording_size(self, recording_ref: str) -> int:
        return sum(len(c) for c in _recording_chunks(self.api, recording_ref))

    def unblock_ips(self) -> None:
        if isinstance(self.api, YeastarApi):
            self.api.unblock_ips()


class Simulator:
    """Both vendor APIs on one loopback port, from deterministic synthetic data: one PBX of
    each vendor at the root, and the fleet's PBXs under `/pbx/<name>` (`sim.pbx(name)`).

    >>> with Simulator(SimulatorConfig(seed=7, calls_per_day=200)) as sim:
    ...     url = sim.base_url  # "http://127.0.0.1:<port>"
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        fleet: Iterable[FleetPbxConfig] = (),
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
        self._root = _Tenant(
            "",
            self.config,
            self.faults,
            (self.stats,),
            {"yeastar": self.yeastar, "zorio": self.zorio},
        )
        specs = tuple(fleet)
        check_fleet(specs)
        self.fleet: Mapping[str, HostedPbx] = {spec.name: HostedPbx(self, spec) for spec in specs}

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
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"cdr-simulator-{self.port}",
            daemon=True,
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
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def network_latency_s(self) -> float:
        """How long the next request to the root PBXs waits before it is answered: the
        configured latency plus a seeded uniform jitter."""
        return self._root.latency_s()

    def pbx(self, name: str) -> HostedPbx:
        """The fleet PBX `name`."""
        try:
            return self.fleet[name]
        except KeyError:
            raise KeyError(f"no fleet PBX {name!r}; hosted: {sorted(self.fleet)}") from None

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

    def _tenant_of(self, path: str) -> tuple[_Tenant, str]:
        """Who answers `path`, and the path as that PBX sees it (without a fleet prefix). An
        unknown fleet name goes to the root, which answers 404."""
        if path.startswith(FLEET_PATH_PREFIX):
            name, _, rest = path[len(FLEET_PATH_PREFIX) :].partition("/")
            pbx = self.fleet.get(name)
            if pbx is not None:
                return pbx, "/" + rest
        return self._root, path

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
        return _recording_chunks(self._api(vendor), recording_ref)

    def recording_bytes(self, vendor: str, recording_ref: str) -> bytes:
        """What the audio endpoint serves for a recording (Yeastar record_file / Zorio uuid)."""
        return b"".join(self._recording_chunks(vendor, recording_ref))

    def recording_sha256(self, vendor: str, recording_ref: str) -> str:
        """Hex SHA-256 of a recording, streamed (fine for 200 MB)."""
        return _sha256(self._recording_chunks(vendor, recording_ref))

    def recording_size(self, vendor: str, recording_ref: str) -> int:
        """Byte length of a recording as served."""
        return sum(len(c) for c in self._recording_chunks(vendor, recording_ref))

    def unblock_ips(self) -> None:
        """Lift Yeastar IP blocks (what the PBX admin does under Security > Blocked IPs)."""
        self.yeastar.unblock_ips()
