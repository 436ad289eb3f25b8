"""Zorio with `envelope="laravel"`: LengthAwarePaginator::toArray() written by json_encode."""

from __future__ import annotations

import json
from datetime import date

import pytest

from .conftest import ZorioClient

KEYS = [
    "current_page",
    "data",
    "first_page_url",
    "from",
    "last_page",
    "last_page_url",
    "links",
    "next_page_url",
    "path",
    "per_page",
    "prev_page_url",
    "to",
    "total",
]
DAY = date(2026, 6, 1)
N = 200
PREV, NEXT = "&laquo; Previous", "Next &raquo;"


@pytest.fixture
def laravel(make_simulator):
    return make_simulator(
        calls_per_day=N, zorio={"envelope": "laravel", "timezone": "UTC", "date_timezone": "UTC"}
    )


def _page(sim, page: int, per_page: int, **extra) -> tuple[bytes, dict]:
    r = ZorioClient(sim).get(
        "/api/pbx/cdr",
        **{"from": "2026-06-01", "to": "2026-06-01"},
        page=page,
        per_page=per_page,
        **extra,
    )
    assert r.status_code == 200, r.text
    return r.content, json.loads(r.content)


def _php(obj: object) -> bytes:
    """What PHP's json_encode($obj) writes: compact, `\\/`, non-ASCII as \\uXXXX."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def _labels(body: dict) -> list[str]:
    return [link["label"] for link in body["links"]]


def test_the_envelope_has_laravels_keys_in_order_written_by_json_encode(laravel):
    raw, body = _page(laravel, 2, 20)
    assert list(body) == KEYS
    assert raw == _php(body)  # compact, escaped slashes: byte for byte what PHP sends
    assert b"\\/api\\/pbx\\/cdr" in raw and b"://" not in raw and b"\n" not in raw
    path = f"{laravel.base_url}/api/pbx/cdr"
    assert body["path"] == path
    assert body["first_page_url"] == f"{path}?page=1"
    assert body["last_page_url"] == f"{path}?page=10"
    assert body["prev_page_url"] == f"{path}?page=1"
    assert body["next_page_url"] == f"{path}?page=3"
    assert (body["current_page"], body["per_page"], body["last_page"]) == (2, 20, 10)
    assert (body["from"], body["to"], body["total"]) == (21, 40, N)
    assert body["data"] == laravel.calls("zorio", DAY)[20:40]


def test_urls_follow_the_host_header_and_carry_only_page(laravel):
    r = ZorioClient(laravel).http.get(
        laravel.base_url + "/api/pbx/cdr",
        headers={"Host": "pbx.example.test:8080"},
        params={"from": "2026-06-01", "to": "2026-06-01", "per_page": 50, "direction": "inbound"},
        timeout=10,
    )
    body = r.json()
    assert body["path"] == "http://pbx.example.test:8080/api/pbx/cdr"
    assert body["first_page_url"] == "http://pbx.example.test:8080/api/pbx/cdr?page=1"
    assert all(d["direction"] == "inbound" for d in body["data"])


def test_the_ends_have_null_neighbours(laravel):
    _, first = _page(laravel, 1, 20)
    _, last = _page(laravel, 10, 20)
    assert first["prev_page_url"] is None and first["links"][0]["url"] is None
    assert last["next_page_url"] is None and last["links"][-1]["url"] is None
    assert last["to"] == N and len(last["data"]) == 20


def test_links_for_one_page(laravel):
    _, body = _page(laravel, 1, 200)
    assert body["links"] == [
        {"url": None, "label": PREV, "active": False},
        {"url": body["first_page_url"], "label": "1", "active": True},
        {"url": None, "label": NEXT, "active": False},
    ]
    assert body["last_page"] == 1 and len(body["data"]) == N


def test_links_for_five_pages(laravel):
    _, body = _page(laravel, 3, 40)
    assert _labels(body) == [PREV, "1", "2", "3", "4", "5", NEXT]
    assert [link["active"] for link in body["links"]] == [
        False,
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    assert body["links"][0]["url"] == body["prev_page_url"] == f"{body['path']}?page=2"
    assert body["links"][-1]["url"] == body["next_page_url"] == f"{body['path']}?page=4"
    assert [link["url"] for link in body["links"][1:-1]] == [
        f"{body['path']}?page={n}" for n in range(1, 6)
    ]


@pytest.mark.parametrize(
    ("page", "shown"),
    [
        (1, [*range(1, 11), None, 49, 50]),
        (7, [*range(1, 11), None, 49, 50]),
        (8, [1, 2, None, *range(5, 12), None, 49, 50]),
        (25, [1, 2, None, *range(22, 29), None, 49, 50]),
        (43, [1, 2, None, *range(40, 47), None, 49, 50]),
        (44, [1, 2, None, *range(41, 51)]),
        (50, [1, 2, None, *range(41, 51)]),
    ],
)
def test_links_for_fifty_pages_are_laravels_sliding_window(laravel, page, shown):
    _, body = _page(laravel, page, 4)
    assert body["last_page"] == 50
    middle = body["links"][1:-1]
    assert [None if link["label"] == "..." else int(link["label"]) for link in middle] == shown
    for link in middle:
        if link["label"] == "...":
            assert link["url"] is None and link["active"] is False
        else:
            assert link["url"] == f"{body['path']}?page={link['label']}"
            assert link["active"] is (int(link["label"]) == page)


def test_past_the_last_page_and_an_empty_window_give_empty_data(laravel, make_simulator):
    _, body = _page(laravel, 51, 4)
    assert body["data"] == [] and body["from"] is None and body["to"] is None
    assert body["next_page_url"] is None and body["prev_page_url"] == f"{body['path']}?page=50"
    assert not any(link["active"] for link in body["links"])
    empty = make_simulator(calls_per_day=0, zorio={"envelope": "laravel"})
    raw, body = _page(empty, 1, 50)
    assert b'"data":[]' in raw and list(body) == KEYS
    assert (body["total"], body["last_page"], body["from"], body["to"]) == (0, 1, None, None)
    assert _labels(body) == [PREV, "1", NEXT]


def test_every_zorio_reply_is_php_written_non_ascii_included(make_simulator):
    sim = make_simulator(extra_keys=True, zorio={"envelope": "laravel"})
    client = ZorioClient(sim)
    raw, body = _page(sim, 1, 50)
    assert raw.isascii() and b"Nguy\\u1ec5n" in raw and raw == _php(body)
    assert body["data"][0]["crm"]["contact"]["name"] == "Nguyễn Văn An"
    rec = next(c for c in sim.calls("zorio", DAY) if c["recording_available"])
    detail = client.get(f"/api/pbx/cdr/{rec['uuid']}")
    assert detail.content == _php(detail.json())
    assert b"http:\\/\\/" in detail.content
    for r in (client.get("/api/pbx/cdr", page="x"), ZorioClient(sim, "bad").get("/api/pbx/cdr")):
        assert r.status_code in (401, 422) and r.content == _php(r.json())
