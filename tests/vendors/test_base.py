"""`split_record_array` on list bodies as real servers write them, and `CdrWindow` passes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdr_assets.vendors.base import CdrFetch, CdrWindow, FetchedPage, PassTotals, split_record_array

RECORDS = [
    {"uuid": f"call-{i}", "caller_number": "0900000021", "path": "a/b", "n": i} for i in range(3)
]


def laravel(records: list[dict[str, Any]], *, page: int = 1, last_page: int = 3) -> dict:
    """A Laravel LengthAwarePaginator page: every key, in Laravel's order."""
    url = "http://pbx.example/api/pbx/cdr"
    links = [{"url": None, "label": "&laquo; Previous", "active": False}]
    links += [
        {"url": f"{url}?page={n}", "label": str(n), "active": n == page}
        for n in range(1, last_page + 1)
    ]
    links.append({"url": f"{url}?page=2", "label": "Next &raquo;", "active": False})
    return {
        "current_page": page,
        "data": records,
        "first_page_url": f"{url}?page=1",
        "from": 1 if records else None,
        "last_page": last_page,
        "last_page_url": f"{url}?page={last_page}",
        "links": links,
        "next_page_url": f"{url}?page={page + 1}" if page < last_page else None,
        "path": url,
        "per_page": 3,
        "prev_page_url": None,
        "to": len(records) or None,
        "total": 9,
    }


def php_json(value: Any) -> bytes:
    """What PHP's json_encode writes by default: compact, `/` escaped, non-ASCII as \\uXXXX."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()


def test_laravel_envelope_is_cut_at_the_end_of_data_not_of_links() -> None:
    split = split_record_array(php_json(laravel(RECORDS)))
    assert isinstance(split, tuple)
    envelope, records = split
    assert envelope["last_page"] == 3 and envelope["total"] == 9 and envelope["data"] == []
    assert len(envelope["links"]) == 5
    assert len(records) == 3 and records.dicts() == RECORDS  # `\/` decodes to `/`


def test_unknown_keys_after_data_are_kept_in_the_envelope() -> None:
    page = {**laravel(RECORDS), "meta": {"request_id": "r-1", "tags": [{"a": 1}]}}
    split = split_record_array(php_json(page))
    assert isinstance(split, tuple) and split[0]["meta"]["request_id"] == "r-1"


def test_records_with_nested_arrays_of_objects_are_left_to_a_whole_parse() -> None:
    nested = [{**r, "tags": [{"id": 1}, {"id": 2}]} for r in RECORDS]
    split = split_record_array(php_json(laravel(nested)))
    # Either refused (so the caller parses the body) or cut exactly: never a wrong envelope.
    if isinstance(split, tuple):
        assert split[0]["last_page"] == 3 and split[1].dicts() == nested
    else:
        assert isinstance(split, str)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps(laravel(RECORDS), indent=4).encode(), str),  # pretty-printed
        (php_json(laravel([])), type(None)),  # `data: []`: nothing to cut
        (php_json(laravel(RECORDS))[:-40], str),  # truncated
        (b'{"data":[1,2,3],"total":3}', str),  # not objects
    ],
)
def test_bodies_that_cannot_be_cut_say_so(body: bytes, expected: type) -> None:
    assert isinstance(split_record_array(body), expected)


def test_each_pass_starts_from_page_one_and_reports_its_own_totals() -> None:
    totals_by_pass = iter([(5, 5), (5, 6)])

    def pager(totals: PassTotals):
        for number, total in enumerate(next(totals_by_pass), start=1):
            totals.see(total, 1)
            yield FetchedPage(number, [{"id": number}])

    window = CdrWindow("w", pager)
    fetch = CdrFetch(pbx="p", endpoint="/x", windows=[window])
    assert [p.number for p in window.fetch_pass()] == [1, 2]
    assert window.last_pass.stable and window.last_pass.last_total == 5
    assert len(list(fetch.pages())) == 2 and fetch.api_total == 6 and fetch.fetched == 2
    assert window.passes == 2 and not window.last_pass.stable
