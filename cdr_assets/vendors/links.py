"""Where a recording link may lead: the PBX's own host and the hosts the user listed.

This module owns the rule a download link (a signed URL, a `Location` header, any redirect hop)
is checked against before a byte is requested from it: the host (and port) must be the PBX's
`base_url` host or an entry of `recording_hosts`, the scheme http or https, and never https
followed by http. It also tells whether a URL is on the API host, where credentials may go. It
must not send requests or build error types: it answers with a reason, the resources raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class HostEntry:
    """One allowed host; `port` None means any port of that host."""

    host: str
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        return self.host == host and self.port in (None, port)

    def __str__(self) -> str:
        return self.host if self.port is None else f"{_bracket(self.host)}:{self.port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def normalize_host(host: str) -> str:
    """Lower-case, without a trailing dot, IDNA-encoded: the form hosts are compared in."""
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host


def parse_host_entry(entry: str) -> HostEntry:
    """A `recording_hosts` entry: `host` (any port) or `host:port` (IPv6 as `[::1]:8080`).

    Raises ValueError naming the entry when it has a scheme, a path, credentials or no host.
    """
    text = entry.strip()
    if not text or "/" in text or "@" in text or "?" in text or "#" in text:
        raise ValueError(
            f"recording_hosts entry {entry!r} must be a host or host:port (no scheme, path or "
            "credentials), e.g. 'recordings.example.com' or 'files.example.com:8443'"
        )
    try:
        parts = urlsplit(f"//{text}")
        host, port = parts.hostname, parts.port
        if not host:
            raise ValueError("no host")
        return HostEntry(normalize_host(host), port)
    except (ValueError, UnicodeError):
        raise ValueError(
            f"recording_hosts entry {entry!r} is not a valid host or host:port"
        ) from None


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a URL, in the form they are compared in."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{_bracket(self.host)}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The URL's origin, or None when it is not a plain http(s) URL with a host, or when the two
    URL parsers in play (the stdlib's and urllib3's, which connects) disagree on the host."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        host = normalize_host(parts.hostname)
        port = parts.port or DEFAULT_PORTS[scheme]
        connected = parse_url(url)
    except (ValueError, UnicodeError, LocationParseError):
        return None
    if not connected.host or normalize_host(connected.host.strip("[]")) != host:
        return None
    if (connected.port or DEFAULT_PORTS[scheme]) != port:
        return None
    return Origin(scheme, host, port)


class LinkPolicy:
    """The hosts one PBX's recording links may lead to, and the rule for following them."""

    def __init__(self, base_url: str, recording_hosts: Iterable[str] = ()) -> None:
        api = origin_of(base_url)
        if api is None:
            raise ValueError(f"base_url {base_url!r} is not an http(s) URL with a host")
        self.api = api
        self.extra = tuple(parse_host_entry(entry) for entry in recording_hosts)

    def is_api_host(self, url: str) -> bool:
        """True when `url` is on the PBX API's own scheme, host and port (credentials may go)."""
        return origin_of(url) == self.api

    def refusal(self, url: str, *, came_from: str | None = None) -> str | None:
        """Why `url` must not be requested, or None when it may be.

        `came_from` is the URL whose answer pointed here (the previous redirect hop); for the
        first hop the link came from the API, so the API's scheme is the one it must keep.
        The reason names the host, never the path or query (they carry signatures).
        """
        target = origin_of(url)
        if target is None:
            return "the link is not an http(s) URL with a host"
        source = origin_of(came_from) if came_from is not None else self.api
        if source is not None and source.scheme == "https" and target.scheme == "http":
            return f"the link to {target} goes from https down to http"
        if (target.host, target.port) == (self.api.host, self.api.port):
            return None
        if any(entry.matches(target.host, target.port) for entry in self.extra):
            return None
        allowed = ", ".join(str(entry) for entry in self.extra) or "none"
        return (
            f"host {target} is neither the PBX's own ({self.api}) nor listed in recording_hosts "
            f"({allowed}); add it there if it is where this PBX keeps its recordings"
        )
