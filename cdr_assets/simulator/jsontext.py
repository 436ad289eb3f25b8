"""How a simulated server writes JSON bytes: compact Python, PHP's `json_encode`, pretty.

Owns the byte-level style of bodies only: `JsonStyle(php=..., pretty=...)` dumps objects and
assembles envelopes around record text that was rendered elsewhere (`Raw`), so list pages keep
their fast text path. PHP style is `json_encode`'s default (compact, every `/` as `\\/`,
non-ASCII as lowercase `\\uXXXX`); pretty is `JSON_PRETTY_PRINT` (4 spaces, `"key": value`).
It must not know records, vendors or HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_PRETTY = json.JSONEncoder(separators=(",", ": "), ensure_ascii=False, indent=4)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _u_escape(m: re.Match[str]) -> str:
    """One non-ASCII character as PHP writes it: \\uXXXX, a surrogate pair above the BMP."""
    c = ord(m.group())
    if c < 0x10000:
        return f"\\u{c:04x}"
    c -= 0x10000
    return f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}"


def php_escape(text: str) -> str:
    """JSON text written with ensure_ascii=False, escaped as PHP's json_encode escapes."""
    text = text.replace("/", "\\/")  # "/" only ever occurs inside JSON strings
    return text if text.isascii() else _NON_ASCII.sub(_u_escape, text)


class Raw(NamedTuple):
    """JSON text already written in the style it is spliced into, as byte pieces."""

    parts: tuple[bytes, ...]


@dataclass(frozen=True)
class JsonStyle:
    """One server's way of writing JSON. The default is `protocol.dumps`, byte for byte."""

    php: bool = False
    pretty: bool = False

    def dumps(self, obj: object) -> bytes:
        text = (_PRETTY if self.pretty else _COMPACT).encode(obj)
        return (php_escape(text) if self.php else text).encode()

    def compact(self, obj: object) -> bytes:
        """`obj` as compact JSON in this style's escaping (the form records are spliced in)."""
        if obj is None:
            return b"null"
        if type(obj) is int:
            return str(obj).encode()
        text = _COMPACT.encode(obj)
        return (php_escape(text) if self.php else text).encode()

    def escape(self, text: bytes) -> bytes:
        """Compact JSON text as `protocol.dumps` writes it, in this style's escaping."""
        return php_escape(text.decode()).encode() if self.php else text

    def body(self, entries: Iterable[tuple[str, object]]) -> bytes:
        """A JSON object of (key, value) pairs, in order; `Raw` values are spliced as they are."""
        parts: list[bytes] = [b"{"]
        for n, (key, value) in enumerate(entries):
            if n:
                parts.append(b",")
            parts.append(self.compact(key))
            parts.append(b":")
            if isinstance(value, Raw):
                parts.extend(value.parts)
            else:
                parts.append(self.compact(value))
        parts.append(b"}")
        text = b"".join(parts)
        return self.dumps(json.loads(text)) if self.pretty else text
