"""normalize_quarantined: bad records set aside exactly as received, good ones normalized, and a
changed format still fails."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from cdr_assets.errors import CdrAssetsError, RecordFormatError, TooManyRejectedRecords
from cdr_assets.normalize import (
    VENDOR_NORMALIZERS,
    normalize_quarantined,
    normalize_zorio_records,
)
from cdr_assets.normalize.yeastar import record_start as yeastar_start
from cdr_assets.normalize.zorio import record_start as zorio_start
from cdr_assets.records import JsonRecords
from cdr_assets.schema import CDR_SCHEMA
from cdr_assets.vendors.base import split_record_array
from tests.normalize.seed_records import YEASTAR_PAGE, ZORIO_RECORD

NOW = datetime(2026, 6, 28, 1, 0, tzinfo=UTC)
SAIGON = "Asia/Ho_Chi_Minh"


def zorio(uuid: Any = ..., **fields: Any) -> dict[str, Any]:
    record = {**ZORIO_RECORD, "uuid": uuid, **fields}
    return {k: v for k, v in record.items() if v is not ...}


def quarantine(vendor: str, records: Any, max_rejects: int = 100, tz: str = SAIGON) -> Any:
    return normalize_quarantined(
        vendor, records, pbx="saigon", timezone=tz, ingested_at=NOW, max_rejects=max_rejects
    )


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the Zorio normalizer's calls (the real one runs) and the records each got."""
    seen: list[int] = []
    entry = VENDOR_NORMALIZERS["zorio"]

    def counting(records: Any, **kwargs: Any) -> Any:
        seen.append(len(records))
        return entry.normalize(records, **kwargs)

    monkeypatch.setitem(VENDOR_NORMALIZERS, "zorio", dataclasses.replace(entry, normalize=counting))
    return seen


def compact_body(records: list[Any]) -> bytes:
    """A Zorio page as PHP's json_encode writes it: compact, `\\/` escaped, non-ASCII escaped."""
    text = json.dumps({"current_page": 1, "data": records}, separators=(",", ":"))
    return text.replace("/", "\\/").encode()


# -- the fast path ------------------------------------------------------------------------------


def test_a_clean_batch_costs_one_normalizer_call_and_rejects_nothing(calls: list[int]) -> None:
    records = [zorio(f"call-{i}") for i in range(50)]
    batch = quarantine("zorio", records)
    assert calls == [50]
    assert batch.rejects == []
    assert batch.table.equals(
        normalize_zorio_records(records, pbx="saigon", timezone=SAIGON, ingested_at=NOW)
    )


def test_k_bad_records_cost_k_plus_one_calls(calls: list[int]) -> None:
    records = [zorio(f"call-{i}") for i in range(20)]
    records[3]["billsec"] = "abc"
    records[11]["end_time"] = "yesterday"
    records[17]["duration"] = 2**40
    batch = quarantine("zorio", records)
    assert len(calls) == 4 and calls[0] == 20 and calls[-1] == 17
    assert [r.index for r in batch.rejects] == [3, 11, 17]


# -- what becomes a reject ----------------------------------------------------------------------


def test_each_kind_of_bad_record_is_rejected_and_the_good_ones_keep_their_order() -> None:
    records: list[Any] = [
        zorio("good-0"),
        zorio(...),  # no id at all
        zorio("   "),  # blank id
        zorio("bad-type", billsec="abc"),
        zorio("good-1"),
        zorio("bad-time", start_time="27/06/2026 08:15"),
        zorio("too-big", duration=2**40),
        ["not", "an", "object"],
        None,
        zorio("bad-flag", recording_available="maybe"),
        zorio("good-2"),
    ]
    batch = quarantine("zorio", records)
    assert batch.table.schema.equals(CDR_SCHEMA)
    assert batch.table.column("cdr_id").to_pylist() == ["good-0", "good-1", "good-2"]
    got = [(r.index, r.cdr_id, r.field) for r in batch.rejects]
    assert got == [
        (1, None, "uuid"),
        (2, None, "uuid"),
        (3, "bad-type", "billsec"),
        (5, "bad-time", "start_time"),
        (6, "too-big", "duration"),
        (7, None, "<record>"),
        (8, None, "<record>"),
        (9, "bad-flag", "recording_available"),
    ]
    by_index = {r.index: r for r in batch.rejects}
    assert "missing or blank" in by_index[1].reason
    assert "abc" in by_index[3].reason
    assert "27/06/2026 08:15" in by_index[5].reason
    assert "range" in by_index[6].reason or "32-bit" in by_index[6].reason
    assert "JSON object" in by_index[7].reason and "list" in by_index[7].reason
    for reject in batch.rejects:  # raw is the record, as compact JSON
        assert json.loads(reject.raw) == records[reject.index]
        assert reject.raw == orjson.dumps(records[reject.index]).decode()


def test_a_reject_knows_its_start_and_local_day_when_the_record_has_one() -> None:
    late = zorio("late", start_time="2026-06-27T17:30:00Z", billsec="x")  # 00:30 in Saigon
    no_start = zorio("no-start", start_time="whenever")
    batch = quarantine("zorio", [zorio("ok"), late, no_start])
    first, second = batch.rejects
    assert first.start == datetime(2026, 6, 27, 17, 30, tzinfo=UTC)
    assert first.call_date == date(2026, 6, 28)
    assert (second.start, second.call_date) == (None, None)


def test_yeastar_rejects_keep_uid_and_the_timestamp_day() -> None:
    page = [dict(r) for r in YEASTAR_PAGE]
    page[1]["duration"] = "seven"
    page[2]["timestamp"] = "1653893749"  # numeric text is accepted, the record stays good
    batch = quarantine("yeastar", page, tz="Asia/Singapore")
    assert batch.table.column("cdr_id").to_pylist() == [page[0]["uid"], page[2]["uid"]]
    (reject,) = batch.rejects
    assert (reject.index, reject.cdr_id, reject.field) == (1, "2022053014550020730", "duration")
    assert reject.start == datetime(2022, 5, 30, 6, 55, tzinfo=UTC)
    assert reject.call_date == date(2022, 5, 30)
    assert "seven" in reject.describe() and "2022053014550020730" in reject.describe()


# -- JSON text ------------------------------------------------------------------------------------


def test_json_lines_rejects_and_rows_keep_the_text_exactly_as_received() -> None:
    records = [
        zorio("good-0", hangup_cause='a "},{" inside a string', queue_name="Hàng đợi/1"),
        zorio("bad-0", billsec="abc", tags=[{"id": 3}, {"id": 5}]),  # `},{` between objects
        zorio("good-1", queue_name="Q/2"),
        zorio("bad-1", start_time="soon"),
    ]
    body = compact_body(records)
    split = split_record_array(body)
    assert split is not None
    batch = quarantine("zorio", split[1])
    array = body[body.index(b"[") + 1 : body.rindex(b"]")].decode()
    texts = [array[: array.index(',{"uuid":"bad-0"')]]  # the records as the body wrote them
    rest = array[len(texts[0]) + 1 :]
    texts.append(rest[: rest.index(',{"uuid":"good-1"')])
    rest = rest[len(texts[1]) + 1 :]
    texts += [rest[: rest.index(',{"uuid":"bad-1"')], rest[rest.index('{"uuid":"bad-1"') :]]
    assert [json.loads(t)["uuid"] for t in texts] == ["good-0", "bad-0", "good-1", "bad-1"]
    assert "\\/" in texts[0] and "\\u00e0" in texts[0]  # PHP's escapes, not re-serialized
    assert [r.raw for r in batch.rejects] == [texts[1], texts[3]]
    assert [r.cdr_id for r in batch.rejects] == ["bad-0", "bad-1"]
    assert batch.table.column("raw").to_pylist() == [texts[0], texts[2]]
    assert batch.table.column("queue_name").to_pylist() == ["Hàng đợi/1", "Q/2"]


def test_a_json_element_that_is_not_an_object_is_rejected_as_sent() -> None:
    body = compact_body([zorio("a"), 5, "text", zorio("b")])
    split = split_record_array(body)
    assert split is not None
    batch = quarantine("zorio", split[1])
    assert batch.table.column("cdr_id").to_pylist() == ["a", "b"]
    assert [(r.index, r.field, r.raw) for r in batch.rejects] == [
        (1, "<record>", "5"),
        (2, "<record>", '"text"'),
    ]


def test_json_text_that_is_broken_as_a_whole_is_not_quarantined(calls: list[int]) -> None:
    broken = JsonRecords(orjson.dumps(zorio("a")) + b"\n" + orjson.dumps(zorio("b"))[:-9], 2)
    with pytest.raises(RecordFormatError, match="not valid JSON") as caught:
        quarantine("zorio", broken)
    assert caught.value.index is None
    assert len(calls) == 1


# -- limits ---------------------------------------------------------------------------------------


def test_more_rejects_than_allowed_fail_the_batch_naming_count_and_first_reasons() -> None:
    records = [zorio(f"call-{i}", billsec="abc" if i % 2 else 10) for i in range(10)]
    with pytest.raises(TooManyRejectedRecords) as caught:
        quarantine("zorio", records, max_rejects=2)
    error = caught.value
    assert isinstance(error, CdrAssetsError)
    assert (error.rejected, error.total, error.max_rejects) == (3, 10, 2)
    text = str(error)
    assert "saigon" in text and "zorio" in text and "3 of 10" in text and "2 allowed" in text
    assert "'call-1'" in text and "'call-3'" in text and "billsec" in text
    assert isinstance(error.__cause__, RecordFormatError)


def test_exactly_max_rejects_is_still_quarantined() -> None:
    records = [zorio("a"), zorio("b", billsec="x"), zorio("c", duration="y")]
    assert len(quarantine("zorio", records, max_rejects=2).rejects) == 2
    with pytest.raises(TooManyRejectedRecords):
        quarantine("zorio", records, max_rejects=1)


def test_max_rejects_zero_is_strict_and_negative_is_refused() -> None:
    with pytest.raises(TooManyRejectedRecords):
        quarantine("zorio", [zorio("a", billsec="x")], max_rejects=0)
    with pytest.raises(ValueError, match="max_rejects"):
        quarantine("zorio", [zorio("a")], max_rejects=-1)


def test_a_batch_of_only_bad_records_gives_an_empty_table() -> None:
    batch = quarantine("zorio", [zorio(...), 7])
    assert batch.table.num_rows == 0 and batch.table.schema.equals(CDR_SCHEMA)
    assert [r.index for r in batch.rejects] == [0, 1]


# -- start instants of rejected records ----------------------------------------------------


def test_an_unknown_vendor_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'avaya'.*yeastar, zorio"):
        quarantine("avaya", [])


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"timestamp": 1653893621}, datetime(2022, 5, 30, 6, 53, 41, tzinfo=UTC)),
        ({"timestamp": " 1653893621 "}, datetime(2022, 5, 30, 6, 53, 41, tzinfo=UTC)),
        ({"timestamp": "05/30/2022"}, None),
        ({"timestamp": True}, None),
        ({"timestamp": 10**30}, None),
        ({}, None),
        ("not a record", None),
    ],
)
def test_yeastar_record_start(record: Any, expected: datetime | None) -> None:
    assert yeastar_start(record) == expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"start_time": "2026-06-27T08:15:42+00:00"}, datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
        ({"start_time": "2026-06-27T15:15:42+07:00"}, datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
        ({"start_time": "2026-06-27 08:15:42"}, datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
        ({"start_time": "2026-06-27T08:15:42.5Z"}, datetime(2026, 6, 27, 8, 15, 42, 500000, UTC)),
        ({"start_time": "yesterday"}, None),
        ({"start_time": ""}, None),
        ({"start_time": 1653893621}, None),
        ([], None),
    ],
)
def test_zorio_record_start(record: Any, expected: datetime | None) -> None:
    assert zorio_start(record) == expected
