"""Zorio CDR list records -> CDR_SCHEMA: the seed record, outcomes, ISO times, sip codes, errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cdr_assets.errors import RecordFormatError
from cdr_assets.normalize import normalize_zorio_records
from cdr_assets.schema import CDR_SCHEMA
from tests.normalize.seed_records import ZORIO_RECORD

NOW = datetime(2026, 6, 28, 1, 0, tzinfo=UTC)


def rows(records: list[Any], tz: str = "Asia/Ho_Chi_Minh") -> list[dict[str, Any]]:
    table = normalize_zorio_records(records, pbx="saigon", timezone=tz, ingested_at=NOW)
    assert table.schema.equals(CDR_SCHEMA)
    assert table.num_rows == len(records)
    return table.to_pylist()


def record(**fields: Any) -> dict[str, Any]:
    """The seed record with overrides; a value of `...` removes the field."""
    base = dict(ZORIO_RECORD)
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def one(**fields: Any) -> dict[str, Any]:
    return rows([record(**fields)])[0]


def test_seed_record_maps_every_column() -> None:
    row = rows([ZORIO_RECORD])[0]
    start = datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)
    assert row["pbx"] == "saigon" and row["vendor"] == "zorio"
    assert row["cdr_id"] == row["call_id"] == "65569ce0-0183-4f61-a3b2-0e433cfa4031"
    assert row["call_date"] == date(2026, 6, 27)
    assert row["start_time"] == start and row["answer_time"] == start
    assert row["end_time"] == start + timedelta(seconds=14)
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (14, 0, 14)
    assert row["direction"] == "outbound"
    assert (row["disposition"], row["disposition_raw"]) == ("answered", "answered")
    assert (row["caller_number"], row["caller_name"]) == ("0900000021", None)
    assert (row["callee_number"], row["callee_name"]) == ("0987654321", None)
    assert row["extension"] == "0900000021" and row["agent_extension"] is None
    assert row["did_number"] is None and row["dod_number"] is None
    assert row["trunk"] is None and row["queue_name"] is None and row["queue_wait_s"] is None
    assert row["transfer_count"] == 0
    assert row["hangup_cause"] == "NORMAL_CLEARING"
    assert row["sip_code"] is None
    assert row["source_type"] == "outbound_telesales"
    assert row["has_recording"] is True and row["recording_ref"] == ZORIO_RECORD["uuid"]
    assert json.loads(row["raw"]) == ZORIO_RECORD
    assert row["ingested_at"] == NOW


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("answered", "answered"),
        ("ANSWERED", "answered"),
        ("busy", "busy"),
        ("no_answer", "no_answer"),
        ("no answer", "no_answer"),
        ("No-Answer", "no_answer"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
        ("canceled", "cancelled"),
        ("rejected", "rejected"),
        (" voicemail ", "voicemail"),
        ("abandoned", "unknown"),
        (None, "unknown"),
    ],
)
def test_result_spellings_map_to_the_vocabulary(sent: str | None, expected: str) -> None:
    row = one(result=sent)
    assert row["disposition"] == expected
    assert row["disposition_raw"] == sent


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("inbound", "inbound"),
        ("outbound", "outbound"),
        ("internal", "internal"),
        ("LOCAL", "local"),
        ("sideways", "unknown"),
        (None, "unknown"),
    ],
)
def test_direction_is_kept_else_unknown(sent: str | None, expected: str) -> None:
    assert one(direction=sent)["direction"] == expected


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2026-06-27T08:15:42+00:00", datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
        ("2026-06-27T08:15:42Z", datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
        ("2026-06-27T15:15:42+07:00", datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
        ("2026-06-27T08:15:42.250Z", datetime(2026, 6, 27, 8, 15, 42, 250000, tzinfo=UTC)),
        ("2026-06-27T08:15:42.123456789Z", datetime(2026, 6, 27, 8, 15, 42, 123456, tzinfo=UTC)),
        ("2026-06-27 15:15:42+0700", datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
        ("2026-06-27 08:15:42", datetime(2026, 6, 27, 8, 15, 42, tzinfo=UTC)),
    ],
)
def test_iso_variants_become_utc_instants(sent: str, expected: datetime) -> None:
    assert one(start_time=sent)["start_time"] == expected


def test_offset_and_naive_times_mix_in_one_page() -> None:
    out = rows([record(start_time="2026-06-27T08:15:42Z"), record(start_time="2026-06-27 09:00")])
    assert out[1]["start_time"] == datetime(2026, 6, 27, 9, 0, tzinfo=UTC)


def test_unanswered_call_has_null_answer_time_and_ring_is_duration_minus_billsec() -> None:
    row = one(answer_time=None, duration=20, billsec=0, result="no_answer")
    assert row["answer_time"] is None
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (20, 20, 0)


def test_ring_never_negative_when_billsec_exceeds_duration() -> None:
    assert one(duration=10, billsec=12)["ring_s"] == 0


def test_missing_durations_are_zero() -> None:
    row = one(duration=..., billsec=None)
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (0, 0, 0)


def test_missing_end_time_falls_back_to_start_plus_duration() -> None:
    row = one(end_time=..., duration=30)
    assert row["end_time"] == row["start_time"] + timedelta(seconds=30)


def test_queue_and_transfer_fields_are_carried() -> None:
    row = one(queue_name="Sales", queue_wait_time=17, transfer_count=2, agent_extension="105")
    assert (row["queue_name"], row["queue_wait_s"], row["transfer_count"]) == ("Sales", 17, 2)
    assert row["agent_extension"] == "105"


@pytest.mark.parametrize(("sent", "expected"), [(486, "486"), ("487", "487"), (" ", None)])
def test_sip_code_is_text_even_when_an_int_arrives(sent: Any, expected: str | None) -> None:
    assert one(sip_response_code=sent)["sip_code"] == expected


def test_int_and_text_sip_codes_mix_in_one_page() -> None:
    out = rows([record(sip_response_code=200), record(sip_response_code="486"), record()])
    assert [r["sip_code"] for r in out] == ["200", "486", None]


def test_no_recording_means_no_ref() -> None:
    row = one(recording_available=False)
    assert row["has_recording"] is False and row["recording_ref"] is None
    assert one(recording_available=...)["has_recording"] is False


def test_blank_text_becomes_null() -> None:
    row = one(trunk_name=" ", queue_name="", extension_number="  ", hangup_cause=" ")
    assert row["trunk"] is None and row["queue_name"] is None
    assert row["extension"] is None and row["hangup_cause"] is None


def test_call_date_at_the_day_edges_in_singapore() -> None:
    out = rows(
        [
            record(uuid="a", start_time="2026-06-26T15:59:59Z"),  # 23:59:59 local, 26 June
            record(uuid="b", start_time="2026-06-26T16:00:00Z"),  # 00:00:00 local, 27 June
            record(uuid="c", start_time="2026-06-27T23:59:59+08:00"),
            record(uuid="d", start_time="2026-06-28T00:00:00+08:00"),
        ],
        tz="Asia/Singapore",
    )
    assert [r["call_date"] for r in out] == [
        date(2026, 6, 26), date(2026, 6, 27), date(2026, 6, 27), date(2026, 6, 28),
    ]  # fmt: skip


def test_fall_back_day_keeps_both_1_30s() -> None:
    out = rows(
        [
            record(uuid="a", start_time="2026-11-01T01:30:00-04:00"),  # first 01:30 (EDT)
            record(uuid="b", start_time="2026-11-01T01:30:00-05:00"),  # second 01:30 (EST)
            record(uuid="c", start_time="2026-11-01T23:59:59-05:00"),
            record(uuid="d", start_time="2026-11-02T05:00:00Z"),  # 00:00 EST, 2 Nov
        ],
        tz="America/New_York",
    )
    assert out[1]["start_time"] - out[0]["start_time"] == timedelta(hours=1)
    assert [r["call_date"] for r in out] == [
        date(2026, 11, 1), date(2026, 11, 1), date(2026, 11, 1), date(2026, 11, 2),
    ]  # fmt: skip


def test_spring_forward_day_starts_and_ends_at_local_midnight() -> None:
    out = rows(
        [
            record(uuid="a", start_time="2026-03-08T04:59:59Z"),  # 23:59:59 EST, 7 Mar
            record(uuid="b", start_time="2026-03-08T05:00:00Z"),  # 00:00 EST, 8 Mar
            record(uuid="c", start_time="2026-03-08T03:00:00-04:00"),  # just after the jump
            record(uuid="d", start_time="2026-03-09T03:59:59Z"),  # 23:59:59 EDT, 8 Mar
            record(uuid="e", start_time="2026-03-09T04:00:00Z"),  # 00:00 EDT, 9 Mar
        ],
        tz="America/New_York",
    )
    assert [r["call_date"] for r in out] == [
        date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 8), date(2026, 3, 8), date(2026, 3, 9),
    ]  # fmt: skip


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z", "27/06/2026 08:15"])
def test_unparseable_time_names_field_and_uuid(bad: str) -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uuid="ok"), record(uuid="bad-one", end_time=bad)])
    assert (info.value.field, info.value.record_id, info.value.index) == ("end_time", "bad-one", 1)
    assert bad in str(info.value)


def test_missing_start_time_names_the_record() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uuid="no-start", start_time=...)])
    assert (info.value.field, info.value.record_id) == ("start_time", "no-start")


def test_missing_uuid_is_a_format_error() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uuid=...)])
    assert info.value.field == "uuid"


def test_non_integer_billsec_names_field_and_uuid() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uuid="u-7", billsec="abc")])
    assert (info.value.field, info.value.record_id) == ("billsec", "u-7")


def test_numeric_strings_are_accepted_for_durations() -> None:
    row = one(duration="14", billsec="10", queue_wait_time="3")
    assert (row["duration_s"], row["ring_s"], row["talk_s"], row["queue_wait_s"]) == (14, 4, 10, 3)


def test_bad_recording_flag_names_the_field() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uuid="r-1", recording_available="maybe")])
    assert (info.value.field, info.value.record_id) == ("recording_available", "r-1")


def test_recording_flag_accepts_0_1_and_text() -> None:
    out = rows([record(recording_available=1), record(recording_available="false")])
    assert [r["has_recording"] for r in out] == [True, False]


def test_non_dict_record_is_a_format_error() -> None:
    with pytest.raises(RecordFormatError, match="JSON object"):
        rows([record(), "not a record"])
