"""Yeastar CDR_Details -> CDR_SCHEMA: the seed page's records, spellings, parsing, time, errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdr_assets.errors import RecordFormatError
from cdr_assets.normalize import normalize_yeastar_records
from cdr_assets.schema import CDR_SCHEMA
from tests.normalize.seed_records import YEASTAR_PAGE

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rows(records: list[Any], tz: str = "Asia/Singapore") -> list[dict[str, Any]]:
    table = normalize_yeastar_records(records, pbx="hq", timezone=tz, ingested_at=NOW)
    assert table.schema.equals(CDR_SCHEMA)
    assert table.num_rows == len(records)
    return table.to_pylist()


def record(**fields: Any) -> dict[str, Any]:
    """A minimal answered outbound record; keyword arguments override or add fields."""
    base: dict[str, Any] = {
        "uid": "UID1",
        "timestamp": 1653893749,
        "call_from": "Kristin Hale<2005>",
        "call_to": "21000",
        "duration": 54,
        "ring_duration": 2,
        "talk_duration": 52,
        "disposition": "ANSWERED",
        "call_type": "Outbound",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def one(**fields: Any) -> dict[str, Any]:
    return rows([record(**fields)])[0]


# -- the seed page ------------------------------------------------------------------------------


def test_seed_page_answered_call_maps_every_column() -> None:
    row = rows(YEASTAR_PAGE)[0]
    start = datetime(2022, 5, 30, 6, 53, 41, tzinfo=UTC)
    assert row["pbx"] == "hq" and row["vendor"] == "yeastar"
    assert row["cdr_id"] == "202205301453416CEAB"
    assert row["call_id"] == "1718690912.7"
    assert row["call_date"] == date(2022, 5, 30)
    assert row["start_time"] == start
    assert row["answer_time"] == start  # ring_duration absent -> 0
    assert row["end_time"] == start + timedelta(seconds=7)
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (7, 0, 7)
    assert row["direction"] == "outbound"
    assert (row["disposition"], row["disposition_raw"]) == ("answered", "ANSWERED")
    assert (row["caller_number"], row["caller_name"]) == ("2005", "Kristin Hale")
    assert (row["callee_number"], row["callee_name"]) == ("1000", None)
    assert row["extension"] == "2005" and row["agent_extension"] is None
    assert row["did_number"] is None and row["dod_number"] == "2005"
    assert row["trunk"] == "peer-to-34"
    assert row["hangup_cause"] == "src hangup"
    assert row["queue_name"] is None and row["queue_wait_s"] is None
    assert row["transfer_count"] is None and row["sip_code"] is None
    assert row["source_type"] is None
    assert row["has_recording"] is False and row["recording_ref"] is None
    assert row["ingested_at"] == NOW


def test_seed_page_unanswered_call_has_zero_durations_and_no_answer_time() -> None:
    row = rows(YEASTAR_PAGE)[1]
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (0, 0, 0)
    assert row["answer_time"] is None
    assert row["end_time"] == row["start_time"]
    assert (row["disposition"], row["disposition_raw"]) == ("no_answer", "NO ANSWER")
    assert row["hangup_cause"] == "dst extension_busy_no_forward"


def test_seed_page_recorded_call_keeps_record_file_as_ref() -> None:
    row = rows(YEASTAR_PAGE)[2]
    assert row["has_recording"] is True
    assert row["recording_ref"] == "20220530145555-1653893749.6-2005-21000-Outbound.wav"
    assert row["answer_time"] == row["start_time"] + timedelta(seconds=2)
    assert row["end_time"] == row["start_time"] + timedelta(seconds=54)
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (54, 2, 52)


def test_raw_is_the_record_as_json_with_keys_in_received_order() -> None:
    for row, original in zip(rows(YEASTAR_PAGE), YEASTAR_PAGE, strict=True):
        assert json.loads(row["raw"]) == original
        assert list(json.loads(row["raw"])) == list(original)


def test_raw_survives_a_value_containing_the_record_separator() -> None:
    tricky = record(uid="A", call_from_name='x"},{"y')
    out = rows([tricky, record(uid="B")])
    assert json.loads(out[0]["raw"]) == tricky
    assert json.loads(out[1]["raw"])["uid"] == "B"


def test_unknown_extra_fields_are_ignored_but_kept_in_raw() -> None:
    row = one(new_firmware_field={"nested": [1, 2]})
    assert json.loads(row["raw"])["new_firmware_field"] == {"nested": [1, 2]}


# -- enums ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("ANSWERED", "answered"),
        ("ANSWERD", "answered"),
        ("answered", "answered"),
        ("  Answered ", "answered"),
        ("NO ANSWER", "no_answer"),
        ("NO ANSWERED", "no_answer"),
        ("NOANSWER", "no_answer"),
        ("NO_ANSWER", "no_answer"),
        ("no  answer", "no_answer"),
        ("BUSY", "busy"),
        ("FAILED", "failed"),
        ("VOICEMAIL", "voicemail"),
        ("CONGESTION", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_disposition_spellings_map_to_the_vocabulary(sent: str | None, expected: str) -> None:
    row = one(disposition=sent)
    assert row["disposition"] == expected
    assert row["disposition_raw"] == sent


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("Inbound", "inbound"),
        ("OUTBOUND", "outbound"),
        ("internal", "internal"),
        ("Transfer", "unknown"),
        (None, "unknown"),
    ],
)
def test_call_type_maps_case_insensitively_else_unknown(sent: str | None, expected: str) -> None:
    row = one(call_type=sent)
    assert row["direction"] == expected
    assert json.loads(row["raw"])["call_type"] == sent


def test_answer_time_only_for_answered_calls() -> None:
    busy = one(disposition="BUSY", ring_duration=5)
    voicemail = one(disposition="VOICEMAIL", ring_duration=5)
    answered = one(disposition="ANSWERD", ring_duration=5)
    assert busy["answer_time"] is None and voicemail["answer_time"] is None
    assert answered["answer_time"] == answered["start_time"] + timedelta(seconds=5)


# -- parties -------------------------------------------------------------------------------------


def test_parties_parsed_from_name_number_when_number_fields_are_absent() -> None:
    row = one(call_from="Kristin Hale<2005>", call_to="Front Desk Team <1000>")
    assert (row["caller_number"], row["caller_name"]) == ("2005", "Kristin Hale")
    assert (row["callee_number"], row["callee_name"]) == ("1000", "Front Desk Team")


def test_plain_number_party_is_a_number_without_a_name() -> None:
    row = one(call_from="2005", call_to=" 1000 ")
    assert (row["caller_number"], row["caller_name"]) == ("2005", None)
    assert (row["callee_number"], row["callee_name"]) == ("1000", None)


def test_number_fields_win_over_parsed_party() -> None:
    row = one(call_from="Old Name<1>", call_from_number="2005", call_from_name="Kristin Hale")
    assert (row["caller_number"], row["caller_name"]) == ("2005", "Kristin Hale")


def test_blank_name_field_falls_back_to_the_parsed_name() -> None:
    row = one(call_to="Front Desk<1000>", call_to_number="1000", call_to_name=" ")
    assert row["callee_name"] == "Front Desk"


def test_name_without_number_in_brackets_gives_nulls() -> None:
    row = one(call_from="<>", call_to="<1000>")
    assert (row["caller_number"], row["caller_name"]) == (None, None)
    assert (row["callee_number"], row["callee_name"]) == ("1000", None)


def test_blank_strings_become_null() -> None:
    row = one(did_number="  ", dod_number="", reason="   ", record_file=" ", src_trunk="")
    assert row["did_number"] is None and row["dod_number"] is None
    assert row["hangup_cause"] is None
    assert row["has_recording"] is False and row["recording_ref"] is None


def test_extension_is_the_internal_party() -> None:
    inbound = one(call_type="Inbound", call_from="0912345678", call_to="Desk<1000>")
    outbound = one(call_type="Outbound", call_from="Agent<2005>", call_to="0912345678")
    internal = one(call_type="Internal", call_from="2005", call_to="2006")
    unknown = one(call_type="Weird", call_from="2005", call_to="2006")
    assert inbound["extension"] == "1000"
    assert outbound["extension"] == "2005"
    assert internal["extension"] == "2005"
    assert unknown["extension"] is None


def test_trunk_follows_direction() -> None:
    both = {"src_trunk": "in-trunk", "dst_trunk": "out-trunk"}
    assert one(call_type="Inbound", **both)["trunk"] == "in-trunk"
    assert one(call_type="Outbound", **both)["trunk"] == "out-trunk"
    assert one(call_type="Internal", dst_trunk="out-trunk")["trunk"] == "out-trunk"
    assert one(call_type="Internal", src_trunk=" ", dst_trunk="")["trunk"] is None


def test_call_id_falls_back_to_uid() -> None:
    assert one(uid="U9")["call_id"] == "U9"
    assert one(uid="U9", call_id=" ")["call_id"] == "U9"


# -- durations and lenient numbers --------------------------------------------------------------


def test_missing_durations_are_zero_never_null() -> None:
    row = one(duration=..., ring_duration=..., talk_duration=..., disposition="BUSY")
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (0, 0, 0)
    assert row["end_time"] == row["start_time"]


def test_null_durations_are_zero() -> None:
    row = one(duration=None, ring_duration=None, talk_duration=None)
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (0, 0, 0)


def test_numeric_strings_are_accepted_in_integer_fields() -> None:
    row = one(duration="54", ring_duration=" 2 ", talk_duration=52.0, timestamp="1653893749")
    assert (row["duration_s"], row["ring_s"], row["talk_s"]) == (54, 2, 52)
    assert row["start_time"] == datetime(2022, 5, 30, 6, 55, 49, tzinfo=UTC)


def test_blank_string_duration_counts_as_absent() -> None:
    assert one(duration=" ")["duration_s"] == 0


def test_fractional_float_durations_truncate_to_whole_seconds() -> None:
    row = one(duration=54.9, talk_duration="52")
    assert (row["duration_s"], row["talk_s"]) == (54, 52)


def test_integer_uid_is_read_as_text() -> None:
    assert one(uid=12345)["cdr_id"] == "12345"


# -- call_date ----------------------------------------------------------------------------------


def _epoch(local: datetime) -> int:
    return int(local.timestamp())


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (datetime(2026, 6, 1, 0, 0, 0), date(2026, 6, 1)),
        (datetime(2026, 6, 1, 23, 59, 59), date(2026, 6, 1)),
        (datetime(2026, 6, 2, 0, 0, 0), date(2026, 6, 2)),
        (datetime(2026, 5, 31, 23, 59, 59), date(2026, 5, 31)),
    ],
)
def test_call_date_at_the_day_edges_in_singapore(local: datetime, expected: date) -> None:
    ts = _epoch(local.replace(tzinfo=ZoneInfo("Asia/Singapore")))
    assert one(timestamp=ts)["call_date"] == expected


def test_call_date_uses_the_pbx_zone_not_utc() -> None:
    # 2026-06-01 16:30 UTC is 00:30 on 2 June in Singapore.
    ts = _epoch(datetime(2026, 6, 1, 16, 30, tzinfo=UTC))
    assert one(timestamp=ts)["call_date"] == date(2026, 6, 2)


def test_spring_forward_day_covers_its_23_hours() -> None:
    ny = ZoneInfo("America/New_York")
    first = _epoch(datetime(2026, 3, 8, 0, 0, tzinfo=ny))
    last = _epoch(datetime(2026, 3, 8, 23, 59, 59, tzinfo=ny))
    assert last - first == 23 * 3600 - 1
    before_jump = _epoch(datetime(2026, 3, 8, 1, 59, 59, tzinfo=ny))
    after_jump = before_jump + 1  # 03:00 EDT
    out = rows(
        [
            record(uid="a", timestamp=first - 1),
            record(uid="b", timestamp=first),
            record(uid="c", timestamp=before_jump),
            record(uid="d", timestamp=after_jump),
            record(uid="e", timestamp=last),
            record(uid="f", timestamp=last + 1),
        ],
        tz="America/New_York",
    )
    assert [r["call_date"] for r in out] == [
        date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 8),
        date(2026, 3, 8), date(2026, 3, 8), date(2026, 3, 9),
    ]  # fmt: skip


def test_fall_back_day_keeps_both_1_30s() -> None:
    ny = ZoneInfo("America/New_York")
    first_130 = _epoch(datetime(2026, 11, 1, 1, 30, tzinfo=ny, fold=0))  # EDT, 05:30 UTC
    second_130 = _epoch(datetime(2026, 11, 1, 1, 30, tzinfo=ny, fold=1))  # EST, 06:30 UTC
    assert second_130 - first_130 == 3600
    start = _epoch(datetime(2026, 11, 1, 0, 0, tzinfo=ny))
    end = _epoch(datetime(2026, 11, 2, 0, 0, tzinfo=ny))
    assert end - start == 25 * 3600
    out = rows(
        [
            record(uid="a", timestamp=start - 1),
            record(uid="b", timestamp=first_130),
            record(uid="c", timestamp=second_130),
            record(uid="d", timestamp=end - 1),
            record(uid="e", timestamp=end),
        ],
        tz="America/New_York",
    )
    assert [r["call_date"] for r in out] == [
        date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 1),
        date(2026, 11, 1), date(2026, 11, 2),
    ]  # fmt: skip


def test_timezone_may_be_a_zoneinfo() -> None:
    table = normalize_yeastar_records(
        [record()], pbx="hq", timezone=ZoneInfo("Asia/Singapore"), ingested_at=NOW
    )
    assert table.column("call_date").to_pylist() == [date(2022, 5, 30)]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "7.5", True, float("nan"), [7], {"s": 7}])
def test_non_integer_duration_names_field_and_uid(bad: Any) -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uid="GOOD"), record(uid="BAD-UID", duration=bad)])
    assert info.value.field == "duration"
    assert info.value.record_id == "BAD-UID"
    assert info.value.index == 1
    assert "BAD-UID" in str(info.value) and "duration" in str(info.value)


def test_missing_uid_names_the_field_and_carries_the_index() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(), record(uid=...)])
    assert info.value.field == "uid"
    assert info.value.record_id is None
    assert info.value.index == 1
    assert "item" not in str(info.value)  # the caller, who knows pages, names the position


def test_blank_uid_is_rejected() -> None:
    with pytest.raises(RecordFormatError, match="uid"):
        rows([record(uid="  ")])


def test_missing_timestamp_names_the_record() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uid="NO-TS", timestamp=...)])
    assert (info.value.field, info.value.record_id) == ("timestamp", "NO-TS")


def test_non_text_name_field_names_field_and_uid() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uid="X1", call_from_name=["a"])])
    assert (info.value.field, info.value.record_id) == ("call_from_name", "X1")


def test_duration_beyond_int32_is_a_format_error() -> None:
    with pytest.raises(RecordFormatError) as info:
        rows([record(uid="HUGE", duration=2**40)])
    assert (info.value.field, info.value.record_id) == ("duration", "HUGE")


@pytest.mark.parametrize("bad", [None, "uid", 7, ["uid", "x"]])
def test_non_dict_record_is_a_format_error(bad: Any) -> None:
    with pytest.raises(RecordFormatError, match="JSON object") as info:
        rows([record(), bad])
    assert (info.value.field, info.value.index) == ("<record>", 1)


def test_naive_ingested_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        normalize_yeastar_records(
            [record()], pbx="hq", timezone="UTC", ingested_at=datetime(2026, 1, 1)
        )


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        normalize_yeastar_records([record()], pbx="hq", timezone="Mars/Olympus", ingested_at=NOW)
