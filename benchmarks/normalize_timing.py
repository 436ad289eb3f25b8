"""Quick timing, not a test: stdlib `json.loads` of a page vs normalizing the decoded records.

Run: `.venv/bin/python -m benchmarks.normalize_timing [n_records] [page_size]`.
The design target is conversion cheaper than the JSON decode that produced the records; this
prints both for synthetic Yeastar- and Zorio-shaped pages.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cdr_assets.normalize import batch_pages, normalize_yeastar_records, normalize_zorio_records

Record = dict[str, Any]


def yeastar_records(n: int, seed: int = 1) -> list[Record]:
    """Records shaped like the seed page: durations absent on unanswered calls, some recordings."""
    rnd = random.Random(seed)
    base = 1772953200
    out: list[Record] = []
    for i in range(n):
        answered = rnd.random() < 0.7
        call_type = rnd.choice(["Inbound", "Outbound", "Internal"])
        ext = str(2000 + i % 100)
        record: Record = {
            "id": i,
            "time": "03/08/2026 14:53:41",
            "call_from": f"Kristin Hale<{ext}>",
            "call_to": str(1000 + i % 50),
            "timestamp": base + i,
            "uid": f"20260308{i:012d}",
            "src_addr": "",
            ("src_trunk" if call_type == "Inbound" else "dst_trunk"): "peer-to-34",
        }
        if answered:
            record.update(duration=54, ring_duration=2, talk_duration=52)
        record.update(
            disposition="ANSWERED" if answered else rnd.choice(["NO ANSWER", "BUSY", "FAILED"]),
            call_type=call_type,
            dod_number="2005",
            reason="dst hangup    ",
            call_from_number=ext,
            call_from_name="Kristin Hale",
            call_to_number=str(1000 + i % 50),
            call_to_name=" ",
            call_id=f"1718689653.{i}",
        )
        if answered and i % 3 == 0:
            record["record_file"] = f"20260308145555-1653893749.{i}-{ext}-21000-Outbound.wav"
        out.append(record)
    return out


def zorio_records(n: int, seed: int = 1) -> list[Record]:
    """Records shaped like the Zorio page's example, with varied outcomes and SIP codes."""
    rnd = random.Random(seed)
    base = datetime(2026, 6, 27, tzinfo=UTC)
    out: list[Record] = []
    for i in range(n):
        answered = rnd.random() < 0.7
        start = base + timedelta(seconds=i / 3)
        out.append(
            {
                "uuid": str(uuid.UUID(int=rnd.getrandbits(128))),
                "direction": rnd.choice(["inbound", "outbound", "internal", "local"]),
                "source_type": "outbound_telesales",
                "caller_number": "0900000021",
                "destination_number": "0987654321",
                "extension_number": "0900000021",
                "agent_extension": None,
                "start_time": start.isoformat(timespec="seconds"),
                "answer_time": start.isoformat(timespec="seconds") if answered else None,
                "end_time": (start + timedelta(seconds=14)).isoformat(timespec="seconds"),
                "duration": 14,
                "billsec": 14 if answered else 0,
                "queue_name": None,
                "queue_wait_time": None,
                "trunk_name": None,
                "transfer_count": 0,
                "result": "answered" if answered else "no_answer",
                "hangup_cause": "NORMAL_CLEARING",
                "sip_response_code": None if answered else "486",
                "recording_available": answered,
                "created_at": "2026-06-27 08:15:56",
            }
        )
    return out


def _best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(n: int = 200_000, page_size: int = 10_000, repeats: int = 5) -> None:
    ingested = datetime.now(UTC)
    cases: list[tuple[str, list[Record], Callable[..., object]]] = [
        ("yeastar", yeastar_records(n), normalize_yeastar_records),
        ("zorio", zorio_records(n), normalize_zorio_records),
    ]
    for vendor, records, normalize in cases:
        bodies = [json.dumps(records[i : i + page_size]).encode() for i in range(0, n, page_size)]
        pages = [json.loads(body) for body in bodies]
        decode = _best_of(repeats, lambda b=bodies: [json.loads(x) for x in b])
        convert = _best_of(
            repeats,
            lambda p=pages, f=normalize: [
                f(x, pbx="bench", timezone="America/New_York", ingested_at=ingested) for x in p
            ],
        )
        batched = _best_of(
            repeats,
            lambda p=pages, f=normalize: [
                f(x, pbx="bench", timezone="America/New_York", ingested_at=ingested)
                for x in batch_pages(p, 10_000)
            ],
        )
        mb = sum(len(b) for b in bodies) / 1e6
        print(
            f"{vendor}: {n} records, pages of {page_size}, {mb:.0f} MB JSON | "
            f"json.loads {decode:.3f} s | normalize per page {convert:.3f} s "
            f"({convert / decode:.2f}x) | batched to 10k {batched:.3f} s ({batched / decode:.2f}x)"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
