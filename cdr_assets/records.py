"""The two shapes a page of CDRs takes between a vendor client and a normalizer.

Neutral ground so that neither layer imports the other: clients produce these, normalizers
consume them. Knows JSON text, not HTTP and not the table schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

#: One page of CDRs parsed into dicts, exactly as the API sent them.
CdrPage = list[dict[str, Any]]


class JsonRecords:
    """Records exactly as the API sent them: compact JSON objects, one per line, not yet parsed.

    Parsing a page into dicts costs more than everything else the client does, and the
    normalizer can parse these lines straight into Arrow, so a client yields this instead of a
    `CdrPage` when the body has the compact shape `split_record_array` needs. `len()` is the
    number of lines; a line that is not exactly one object is found by whoever parses them, and
    `dicts()` is then the exact answer.
    """

    def __init__(self, lines: bytes, count: int) -> None:
        self.lines = lines
        self.count = count

    def __len__(self) -> int:
        return self.count

    def dicts(self) -> CdrPage:
        """The records parsed one by one (raises `orjson.JSONDecodeError` on a bad body)."""
        if not self.lines:
            return []
        records = orjson.loads(b"[" + self.lines.replace(b"}\n{", b"},{") + b"]")
        if not isinstance(records, list):
            raise orjson.JSONDecodeError("records are not a JSON array", "", 0)
        return records

    @classmethod
    def from_dicts(cls, records: Sequence[Any]) -> JsonRecords:
        """Records already parsed, as JSON lines again (orjson writes no newline in a value)."""
        return cls(b"\n".join(map(orjson.dumps, records)), len(records))

    @classmethod
    def join(cls, parts: list[JsonRecords]) -> JsonRecords:
        """Several pages' records as one (one copy of the text, so a batch is parsed at once)."""
        return cls(
            b"\n".join(part.lines for part in parts if part.count), sum(len(p) for p in parts)
        )
