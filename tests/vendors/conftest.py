"""Fixtures of the vendor-client tests: every test that talks to the simulator runs once per
server style (`SERVER_STYLES`: the pages' minimal shapes, Laravel's envelope, pretty-printed
bodies, unknown extra keys, newest-first Yeastar pages, a charset in Content-Type), because real
servers differ from the pages' examples in each of these ways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cdr_assets.simulator import SERVER_STYLES, Simulator, SimulatorConfig
from cdr_assets.vendors import YeastarResource, ZorioResource
from cdr_assets.vendors.auth_breaker import PROCESS_STORE
from tests.vendors.simclients import yeastar_client, zorio_client


@pytest.fixture(params=sorted(SERVER_STYLES))
def server_style(request: pytest.FixtureRequest) -> str:
    """The name of the server style this test runs against."""
    return request.param


@pytest.fixture
def simulator(server_style: str) -> Iterator[Simulator]:
    sim = Simulator(SimulatorConfig().with_overrides(**SERVER_STYLES[server_style])).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def make_simulator(server_style: str) -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def make(config: SimulatorConfig | None = None, **overrides: Any) -> Simulator:
        styled = (config or SimulatorConfig()).with_overrides(**SERVER_STYLES[server_style])
        sim = Simulator(styled.with_overrides(**overrides)).start()
        started.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in started:
            sim.stop()


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


@pytest.fixture(autouse=True)
def _forget_in_memory_breakers() -> Iterator[None]:
    """Breakers of resources without `auth_state_dir` live in this process: one test's refused
    credential must not make another's attempt fail fast."""
    yield
    for state in PROCESS_STORE.states():
        PROCESS_STORE.clear(state.pbx)


@pytest.fixture
def quick_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad bodies asked for again without the client's pause (the count is what is tested)."""
    monkeypatch.setattr("cdr_assets.vendors.resource.BAD_BODY_PAUSE_S", 0.01)
