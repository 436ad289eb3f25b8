"""Small HTTP helpers for the simulator tests (real requests over loopback)."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from typing import Any

import pytest
import requests

from cdr_assets.simulator import Simulator

API = "/openapi/v1.0/"
UA = {"User-Agent": "OpenAPI"}
BEARER = {"Authorization": "Bearer demo-token"}


class YeastarClient:
    """Just enough of a Yeastar client to drive the simulator in tests."""

    def __init__(
        self, sim: Simulator, client_id: str = "demo-client", client_secret: str = "demo-secret"
    ) -> None:
        self.sim = sim
        self.http = requests.Session()
        self.http.headers.update(UA)
        self.token = self.login(client_id, client_secret)["access_token"]

    def login(self, client_id: str = "demo-client", client_secret: str = "demo-secret") -> dict:
        return self.post("get_token", {"username": client_id, "password": client_secret})

    def post(self, name: str, body: dict) -> dict:
        r = self.http.post(self.sim.base_url + API + name, json=body, timeout=10)
        assert r.status_code == 200
        return r.json()

    def get(self, name: str, token: str | None = None, **params: Any) -> dict:
        params["access_token"] = self.token if token is None else token
        r = self.http.get(self.sim.base_url + API + name, params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def download(self, ref_param: dict, **kw: Any) -> requests.Response:
        link = self.get("recording/download", **ref_param)
        assert link["errcode"] == 0, link
        return self.http.get(
            self.sim.base_url + link["download_resource_url"],
            params={"access_token": self.token},
            timeout=10,
            **kw,
        )


class ZorioClient:
    def __init__(self, sim: Simulator, token: str = "demo-token") -> None:
        self.sim = sim
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(
            self.sim.base_url + path, params=params, timeout=10, allow_redirects=False
        )

    def cdr(self, **params: Any) -> dict:
        r = self.get("/api/pbx/cdr", **params)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def yeastar(simulator: Simulator) -> YeastarClient:
    return YeastarClient(simulator)


@pytest.fixture
def zorio(simulator: Simulator) -> ZorioClient:
    return ZorioClient(simulator)


def read_wav(data: bytes) -> tuple[wave._wave_params, bytes]:  # type: ignore[name-defined]
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getparams(), w.readframes(w.getnframes())


def all_pages(
    fetch: Callable[[int], tuple[list[dict], int]], max_pages: int = 1000
) -> tuple[list[dict], list[int]]:
    """Fetch pages 1.. until an empty page; returns (records, totals seen)."""
    records: list[dict] = []
    totals: list[int] = []
    for page in range(1, max_pages):
        data, total = fetch(page)
        totals.append(total)
        if not data:
            break
        records.extend(data)
    return records, totals


def walk_ids(
    fetch: Callable[[int], tuple[list[Any], int]], id_field: str
) -> tuple[list[str], list[int]]:
    """A plain page-by-page walk (page 1.. until an empty page): (ids in order, totals seen)."""
    records, totals = all_pages(fetch)
    return [r[id_field] for r in records], totals


def yeastar_day_pages(
    client: YeastarClient, day_mmddyyyy: str, page_size: int
) -> Callable[[int], tuple[list[dict], int]]:
    """fetch(page) of cdr/search over one whole day in the default MM/DD/YYYY format."""

    def fetch(page: int) -> tuple[list[dict], int]:
        body = client.get(
            "cdr/search",
            start_time=f"{day_mmddyyyy} 00:00:00",
            end_time=f"{day_mmddyyyy} 23:59:59",
            page=page,
            page_size=page_size,
        )
        assert body["errcode"] == 0, body
        return body["data"], body["total_number"]

    return fetch


def zorio_day_pages(
    client: ZorioClient, day_iso: str, per_page: int
) -> Callable[[int], tuple[list[dict], int]]:
    """fetch(page) of /api/pbx/cdr over one server date."""

    def fetch(page: int) -> tuple[list[dict], int]:
        body = client.cdr(**{"from": day_iso, "to": day_iso}, page=page, per_page=per_page)
        return body["data"], body["total"]

    return fetch
