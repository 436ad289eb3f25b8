"""Records handed over as unparsed JSON lines (`JsonRecords`) normalize exactly like dicts
(Zorio list pages, and Yeastar `cdr/search` pages as every server style writes them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest
import requests

from cdr_assets.errors import RecordFormatError
from cdr_assets.normalize import batch_pages, normalize_yeastar_records, normalize_zorio_records
from cdr_assets.records import JsonRecords
from cdr_assets.simulator import SERVER_STYLES, Simulator, SimulatorConfig
from cdr_assets.vendors.base import split_record_array
from tests.normalize.seed_records import ZORIO_RECORD

NOW = datetime(2026, 6, 28, 1, 0, tzinfo=UTC)


def body(records: list[dict[str, Any]], **dumps: Any) -> bytes:
    envelope = {"current_page": 1, "data": records, "last_page": 1, "per_page": 20}
    return json.dumps({**envelope, "total": len(records)}, **dumps).encode()


def compact(records: list[dict[str, Any]]) -> bytes:
    return body(records, separators=(",", ":"), ensure_ascii=False)


def normalize(records: Any) -> list[dict[str, Any]]:
    table = normalize_zorio_records(records, pbx="saigon", timezone="UTC", ingested_at=NOW)
    return table.to_pylist()


def variants(n: int) -> list[dict[str, Any]]:
    return [{**ZORIO_RECORD, "uuid": f"call-{i}", "queue_name": f"Q{i}é"} for i in range(n)]


def test_compact_body_splits_into_one_line_per_record_and_keeps_the_envelope() -> None:
    envelope, records = split_record_array(compact(variants(3)))
    assert envelope == {"current_page": 1, "data": [], "last_page": 1, "per_page": 20, "total": 3}
    assert len(records) == 3 and records.dicts() == variants(3)


@pytest.mark.parametrize(
    "text",
    [
        body(variants(2), indent=2),  # pretty-printed: newlines between records
        compact([]),  # nothing to split
        b'{"current_page":1,"data":[{"a":1}]',  # truncated
    ],
)
def test_other_bodies_are_left_to_a_whole_parse(text: bytes) -> None:
    assert not isinstance(split_record_array(text), tuple)


def test_json_lines_give_the_same_rows_as_dicts_with_raw_exactly_as_received() -> None:
    records = variants(5)
    split = split_record_array(compact(records))
    assert split is not None
    rows = normalize(split[1])
    assert rows == normalize(records)
    assert [row["raw"] for row in rows] == [orjson.dumps(r).decode() for r in records]


def test_a_value_containing_the_record_separator_falls_back_to_the_exact_records() -> None:
    records = variants(3)
    records[1]["hangup_cause"] = 'x},{"uuid":"fake"'
    split = split_record_array(compact(records))
    assert split is not None and len(split[1]) == 4  # the cheap count is fooled ...
    rows = normalize(split[1])  # ... the parse is not
    assert [row["cdr_id"] for row in rows] == ["call-0", "call-1", "call-2"]
    assert json.loads(rows[1]["raw"]) == records[1]


def test_lenient_values_take_the_dict_path_with_its_conversions() -> None:
    records = variants(2)
    records[0]["sip_response_code"] = 486
    records[1]["duration"] = "75"
    rows = normalize(split_record_array(compact(records))[1])
    assert (rows[0]["sip_code"], rows[1]["duration_s"]) == ("486", 75)


def test_a_wrong_type_names_field_and_record() -> None:
    records = variants(2)
    records[1]["billsec"] = "abc"
    with pytest.raises(RecordFormatError, match="billsec") as caught:
        normalize(split_record_array(compact(records))[1])
    assert (caught.value.record_id, caught.value.index) == ("call-1", 1)


def test_text_that_is_not_json_as_a_whole_blames_no_record() -> None:
    broken = JsonRecords(b'{"uuid":"a"}\n{"uuid":"b",', 2)
    with pytest.raises(RecordFormatError, match="not valid JSON") as caught:
        normalize(broken)
    assert caught.value.index is None


def test_batches_join_text_pages_and_serialize_dict_pages_among_them() -> None:
    records = variants(6)
    pages = [split_record_array(compact(records[:3]))[1], records[3:]]
    (batch,) = batch_pages(pages, min_records=100)
    assert isinstance(batch, JsonRecords) and len(batch) == 6
    assert normalize(batch) == normalize(records)


# -- Yeastar `cdr/search` pages: the bodies every server style writes -------------------------


def yeastar_search_bodies(style: str, page_size: int = 10) -> list[bytes]:
    """The raw `cdr/search` bodies of one day, as a simulator in `style` writes them."""
    sim = Simulator(SimulatorConfig(calls_per_day=25).with_overrides(**SERVER_STYLES[style]))
    sim.start()
    try:
        api = f"{sim.base_url}/openapi/v1.0"
        with requests.Session() as session:
            cfg = sim.config.yeastar
            login = {"username": cfg.client_id, "password": cfg.client_secret}
            token = session.post(f"{api}/get_token", json=login, timeout=10).json()
            bodies = []
            for page in (1, 2, 3):
                params = {
                    "access_token": token["access_token"],
                    "start_time": "06/14/2026 23:00:00",
                    "end_time": "06/16/2026 00:59:59",
                    "page": page,
                    "page_size": page_size,
                }
                reply = session.get(f"{api}/cdr/search", params=params, timeout=10)
                reply.raise_for_status()
                bodies.append(reply.content)
            return bodies
    finally:
        sim.stop()


def normalize_yeastar(records: Any) -> pa.Table:
    return normalize_yeastar_records(records, pbx="hq", timezone="Asia/Singapore", ingested_at=NOW)


@pytest.mark.parametrize("style", sorted(SERVER_STYLES))
def test_yeastar_pages_of_every_server_style_normalize_alike_as_lines_and_dicts(
    style: str,
) -> None:
    for body in yeastar_search_bodies(style):
        records = orjson.loads(body)["data"]
        assert records
        expected = normalize_yeastar(records)
        split = split_record_array(body)
        if style in ("pretty", "extra_keys"):  # left to a whole parse by the client
            assert not isinstance(split, tuple)
        else:
            assert isinstance(split, tuple) and split[0]["total_number"] >= len(records)
            assert normalize_yeastar(split[1]).equals(expected)
        # What `batch_pages` makes of a dict page among unparsed ones.
        assert normalize_yeastar(JsonRecords.from_dicts(records)).equals(expected)
        assert [json.loads(raw) for raw in expected.column("raw").to_pylist()] == records
