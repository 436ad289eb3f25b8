"""Fixtures of the vendor-client tests: one resource per vendor on the `simulator` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdr_assets.vendors import YeastarResource, ZorioResource
from tests.vendors.simclients import yeastar_client, zorio_client


@pytest.fixture
def yeastar(simulator: Any) -> Iterator[YeastarResource]:
    client = yeastar_client(simulator)
    yield client
    client.close()


@pytest.fixture
def zorio(simulator: Any) -> Iterator[ZorioResource]:
    client = zorio_client(simulator)
    yield client
    client.close()
