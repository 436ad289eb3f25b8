"""The simulator's request/reply values shared by the vendor handlers and the HTTP server.

Owns nothing but these shapes: vendor modules turn a `Request` into a `Reply`; `server.py`
puts replies on the wire (and applies transport-level faults).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: Mapping[str, str]  # case-insensitive (email.message.Message)
    body: bytes
    client_ip: str
    host: str  # Host header, else the server's own host:port
    endpoint: str = ""  # stats key, set by the router
    prefix: str = ""  # the fleet PBX's path prefix ("/pbx/<name>"), stripped from `path`

    @property
    def origin(self) -> str:
        """The URL the PBX answering this request lives at: links it hands out start here."""
        return f"http://{self.host}{self.prefix}"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"  # None: no Content-Type header
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: Iterator[bytes] | None = None  # streamed body of exactly `length` bytes
    length: int | None = None
    audio: bool = False  # audio faults (throttle, truncate, corrupt) apply
    on_close: Callable[[], None] | None = None  # always called once the reply is done


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_reply(status: int, obj: object, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, dumps(obj), "application/json", headers or [])
