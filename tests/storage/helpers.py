"""Small builders shared by the storage tests: a compact CDR-like schema, full `cdr` and
`recordings` days written through the package's writer, WAV and MP3 bytes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import wave
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from cdr_assets.schema import CDR_SCHEMA, RECORDINGS_SCHEMA
from cdr_assets.storage.duckdb import allow_empty_scans, ensure_views
from cdr_assets.storage.parquet import PartitionWriter

SMALL_SCHEMA = pa.schema(
    [
        pa.field("pbx", pa.string(), nullable=False),
        pa.field("cdr_id", pa.string(), nullable=False),
        pa.field("call_date", pa.date32(), nullable=False),
        pa.field("start_time", pa.timestamp("us", tz="UTC")),
        pa.field("duration_s", pa.int32()),
        pa.field("answered", pa.bool_()),
        pa.field("raw", pa.string()),
    ]
)


def run_probe(script: str, *args: str) -> list[str]:
    """Run `script` in a Python process of its own (memory measured there sees no other test's
    threads or servers) with the repository importable; its stdout, split on whitespace."""
    path = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return result.stdout.split()


def views_see_first_files(db: object, data_dir: object, schemas: dict[str, pa.Schema]) -> None:
    """What the assets do after writing a table's first file: on DuckDB 2 (`allow_empty`) the
    views already read it and nothing is written; older engines rewrite the views, once."""
    assert ensure_views(str(db), str(data_dir), schemas) is (not allow_empty_scans())


def rows(pbx: str, day: date, ids: list[str], *, duration: int = 1) -> pa.Table:
    """A table in SMALL_SCHEMA with one row per id."""
    n = len(ids)
    return pa.table(
        {
            "pbx": [pbx] * n,
            "cdr_id": ids,
            "call_date": [day] * n,
            "start_time": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
            "duration_s": pa.array([duration] * n, pa.int32()),
            "answered": [True] * n,
            "raw": [f'{{"id": "{i}", "duration": {duration}}}' for i in ids],
        },
        schema=SMALL_SCHEMA,
    )


def make_wav(seconds: float = 1.5, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    """A real PCM WAV file written by the stdlib `wave` module."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(seconds * rate * channels * width / 2))
    return buf.getvalue()


MP3_FRAME_HEADER = bytes([0xFF, 0xFB, 0x90, 0x00])  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
MP3_FRAME_LEN = 144 * 128_000 // 44_100  # 417 bytes


def make_mp3(frames: int = 100, *, id3: bool = False) -> bytes:
    """Constant-bitrate MPEG-1 Layer III frames (silent payload), optionally after an ID3v2 tag."""
    body = (MP3_FRAME_HEADER + b"\x00" * (MP3_FRAME_LEN - 4)) * frames
    if not id3:
        return body
    payload = b"TIT2\x00\x00\x00\x05\x00\x00\x03call"  # one text frame
    size = len(payload)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x04\x00\x00" + syncsafe + payload + body


def chunked(data: bytes, size: int = 4096) -> list[bytes]:
    """`data` cut into chunks, as an HTTP body would arrive."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def cdr_table(pbx: str, day: date, calls: list[dict]) -> pa.Table:
    """Full `cdr` rows (CDR_SCHEMA) of one PBX and day: each dict gives `start_time` and the
    columns a test cares about; the rest get plausible defaults (an unanswered inbound call)."""
    filled = []
    for i, call in enumerate(calls):
        start = call.get("start_time", datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
        ring, talk = call.get("ring_s", 0), call.get("talk_s", 0)
        answered = call.get("disposition", "no_answer") == "answered"
        row = {
            "pbx": pbx,
            "vendor": "zorio",
            "cdr_id": f"{pbx}-{day}-{i}",
            "call_id": f"{pbx}-{day}-{i}",
            "call_date": day,
            "start_time": start,
            "answer_time": start + timedelta(seconds=ring) if answered else None,
            "end_time": start + timedelta(seconds=ring + talk),
            "duration_s": ring + talk,
            "ring_s": ring,
            "talk_s": talk,
            "direction": "inbound",
            "disposition": "no_answer",
            "has_recording": False,
            "raw": "{}",
            "ingested_at": datetime(2026, 12, 1, tzinfo=UTC),
        }
        row.update(call)
        row["disposition_raw"] = row["disposition"]
        filled.append(row)
    return pa.Table.from_pylist(filled, schema=CDR_SCHEMA)


def recordings_table(pbx: str, day: date, statuses: dict[str, str]) -> pa.Table:
    """`recordings` manifest rows (RECORDINGS_SCHEMA): cdr_id -> status."""
    rows = [
        {
            "pbx": pbx,
            "vendor": "zorio",
            "cdr_id": cdr_id,
            "call_date": day,
            "status": status,
            "attempts": 1,
        }
        for cdr_id, status in statuses.items()
    ]
    return pa.Table.from_pylist(rows, schema=RECORDINGS_SCHEMA)


def write_day(data_dir: str, table: str, day_rows: pa.Table) -> None:
    """Commit one (pbx, call_date) partition of `table` through PartitionWriter."""
    pbx, day = day_rows["pbx"][0].as_py(), day_rows["call_date"][0].as_py()
    with PartitionWriter(data_dir, table, pbx, day, day_rows.schema) as writer:
        writer.write(day_rows)
        writer.commit()
