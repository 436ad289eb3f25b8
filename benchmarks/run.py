"""`python -m benchmarks.run`: every table of issue 10 in one run, one Markdown report.

Owns the orchestration: a simulator per table in its own process (`serve.py`, page cache warmed
by an unmeasured pass so it costs the clients almost nothing, latency and bandwidth as a remote
PBX's), each contender in its own subprocess (`contenders.py`, or `dlt_contender.py` in the dlt
virtualenv), the simulator's CPU time read from /proc around each contender, the targets judged
from ratios of the same run, and the report (stdout, a dated file and `latest.md` in
`benchmarks/results/`, optionally the README's performance block). It never runs inside the
test suite and installs nothing except dlt into `benchmarks/.venv-dlt`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.contenders import environment
from benchmarks.dltenv import ensure_dlt_venv
from benchmarks.serve import DEFAULT_ENVELOPE, bench_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = ROOT / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
DAY = "2026-06-01"
ZONES = {"zorio": "Asia/Ho_Chi_Minh", "yeastar": "Asia/Singapore"}  # the simulator's zones
DEFAULT_PAGE = {"zorio": 200, "yeastar": 1000}
WAV_BYTES_PER_SECOND = 16_000  # 8 kHz mono 16-bit, as the simulator serves
CHILD_TIMEOUT_S = 3 * 3600
BYTES_PER_CACHED_RECORD = 600  # a record is ~540 bytes of JSON
WARMUP_WORKERS = 16
NA_INFLIGHT = "n/a (max_inflight_requests not available)"


@dataclass
class Result:
    """One contender run: what it measured (`data`) or why it has no figures."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    sim_cpu_s: float | None = None
    na: str | None = None  # a row that cannot run on this code, and why

    @property
    def ok(self) -> bool:
        return self.error is None and self.na is None

    @property
    def wall(self) -> float | None:
        return self.data.get("wall_s") if self.ok else None

    @property
    def above_imports(self) -> float | None:
        if not self.ok or "base_rss_mb" not in self.data:
            return None
        return self.data["peak_rss_mb"] - self.data["base_rss_mb"]


def log(msg: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- the simulator process


class SimulatorProcess:
    """`python -m benchmarks.serve` in a subprocess on a free loopback port; URL, CPU seconds."""

    def __init__(
        self,
        calls: int,
        *,
        cache_records: int = 0,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        bandwidth: int = 0,
        big: tuple[str, int] | None = None,
    ) -> None:
        cache_mb = math.ceil(cache_records * BYTES_PER_CACHED_RECORD / 2**20) + 64
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.serve",
            "--calls",
            str(calls),
            "--timezone",
            ZONES["zorio"],
            "--page-cache-mb",
            str(cache_mb),
            "--envelope",
            DEFAULT_ENVELOPE,
            "--latency-ms",
            str(latency_ms),
            "--jitter-ms",
            str(jitter_ms),
            "--bandwidth",
            str(bandwidth),
        ]
        if big is not None:
            cmd += ["--recording-seconds", f"{big[0]}={big[1]}"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("simulator listening on "):
            self.stop()
            raise RuntimeError(f"simulator did not start ({' '.join(cmd[2:])}): {line!r}")
        self.url = line.rsplit(" ", 1)[-1]

    def cpu_s(self) -> float:
        """utime + stime of the simulator process (Linux /proc)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_child(name: str, cmd: list[str], sim: SimulatorProcess) -> Result:
    """One contender process: its JSON result, or a clear error with its output's last lines."""
    log(f"running {name}")
    cpu0 = sim.cpu_s()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return Result(name, error=f"timed out after {CHILD_TIMEOUT_S} s")
    sim_cpu = sim.cpu_s() - cpu0
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        result = Result(name, error=f"exit {done.returncode}: {tail[:600]}", sim_cpu_s=sim_cpu)
    else:
        try:
            data = json.loads(lines[-1])
        except json.JSONDecodeError:
            return Result(name, error=f"no JSON result: {lines[-1][:300]}", sim_cpu_s=sim_cpu)
        result = Result(name, data, sim_cpu_s=sim_cpu)
        if "unsupported" in data:
            result.na = NA_INFLIGHT
    log(f"{name}: " + (result.error or result.na or f"{result.data['wall_s']:.2f} s"))
    return result


def best_of(repeat: int, once: Callable[[], Result]) -> Result:
    """Run `once` `repeat` times; keep the fastest successful run (noise only adds time)."""
    runs = [once() for _ in range(max(1, repeat))]
    ok = [r for r in runs if r.ok]
    if not ok:
        return runs[-1]
    best = min(ok, key=lambda r: r.data["wall_s"])
    if len(ok) > 1:
        best.data["runs_wall_s"] = [round(r.data["wall_s"], 2) for r in ok]
    return best


# ---------------------------------------------------------------------- the run


@dataclass
class Bench:
    """The run's settings, the dlt interpreter, and everything measured so far."""

    args: argparse.Namespace
    dlt_python: Path | None
    results: dict[str, Result] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)

    def me(
        self,
        contender: str,
        sim: SimulatorProcess,
        vendor: str = "zorio",
        page_size: int | None = None,
        **extra: Any,
    ) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.contenders",
            contender,
            "--url",
            sim.url,
            "--vendor",
            vendor,
            "--day",
            extra.pop("day", DAY),
            "--timezone",
            ZONES[vendor],
            "--page-size",
            str(page_size or DEFAULT_PAGE[vendor]),
        ]
        for key, value in extra.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        return cmd

    def run(
        self, key: str, name: str, cmd: list[str], sim: SimulatorProcess, repeat: int = 1
    ) -> Result:
        result = best_of(repeat, lambda: run_child(name, cmd, sim))
        self.results[key] = result
        return result

    def profile(self, key: str, name: str, cmd: list[str], sim: SimulatorProcess) -> None:
        """With `--profile`: one extra run under cProfile (its overhead stays out of the
        tables); the top functions go into the report."""
        if not self.args.profile:
            return
        path = Path(self.args.out_dir) / "profiles" / f"{key}.txt"
        result = run_child(f"{name} under cProfile", [*cmd, "--profile", str(path)], sim)
        if result.ok and path.exists():
            self.profiles[key] = profile_summary(path.read_text())
        else:
            self.profiles[key] = f"(profile failed: {result.error or result.na})"

    def warm(
        self, sim: SimulatorProcess, vendor: str, page_size: int | None = None, **extra: Any
    ) -> None:
        """Render every page into the simulator's cache (parallel, unmeasured)."""
        warm = run_child(
            f"warm-up {vendor}",
            self.me("floor", sim, vendor, page_size, workers=WARMUP_WORKERS, **extra),
            sim,
        )
        if not warm.ok:
            self.notes.append(f"warm-up of {vendor} failed: {warm.error}")

    def dlt(self, key: str, name: str, sim: SimulatorProcess, vendor: str) -> None:
        if self.dlt_python is None:
            self.results[key] = Result(name, na=self.args.dlt_note)
            return
        cmd = [
            str(self.dlt_python),
            str(HERE / "dlt_contender.py"),
            "--url",
            sim.url,
            "--vendor",
            vendor,
            "--day",
            DAY,
            "--per-page",
            str(DEFAULT_PAGE[vendor]),
            "--mode",
            "parquet",
        ]
        self.run(key, name, cmd, sim)


def profile_summary(text: str, lines: int = 14) -> str:
    """The first `lines` rows of a pstats table sorted by tottime (own time per function)."""
    rows = text.splitlines()
    start = next((i for i, r in enumerate(rows) if r.strip().startswith("ncalls")), None)
    if start is None:
        return text[:2000]
    total = next((r.strip() for r in rows if "function calls" in r), "")
    return "\n".join([total, *rows[start : start + 1 + lines]])


def table_loopback(bench: Bench) -> None:
    """Both vendors on loopback: floor vs cdr_assets; Yeastar at page_size 10,000 and 1,000."""
    a = bench.args
    cases = [("zorio", 200), ("yeastar", 10_000), ("yeastar", 1000)]
    for vendor in ("zorio", "yeastar"):
        sizes = [size for v, size in cases if v == vendor]
        log(f"loopback: {vendor}, {a.calls:,} calls")
        with SimulatorProcess(a.calls, cache_records=a.calls * len(sizes)) as sim:
            for size in sizes:
                bench.warm(sim, vendor, size)
                tag = f"loop/{vendor}/{size}"
                bench.run(
                    f"{tag}/floor",
                    "fetch floor",
                    bench.me("floor", sim, vendor, size),
                    sim,
                    a.repeat,
                )
                cmd = bench.me("cdr_assets", sim, vendor, size)
                bench.run(f"{tag}/cdr_assets", "cdr_assets", cmd, sim, a.repeat)
                bench.profile(f"{tag}/cdr_assets", "cdr_assets", cmd, sim)


def table_latency(bench: Bench) -> None:
    """Both vendors at each latency: sequential floor, cdr_assets at 1/4/8 in flight, dlt; and
    the long rows (1,000,000 Zorio calls at 150 ms: floor and cdr_assets at 8)."""
    a = bench.args
    for latency in a.latencies:
        fixed, jitter = latency * (1 - a.jitter / 2), latency * a.jitter
        log(f"latency {latency:g} ms: {a.latency_calls:,} calls per vendor")
        with SimulatorProcess(
            a.latency_calls,
            cache_records=2 * a.latency_calls,
            latency_ms=fixed,
            jitter_ms=jitter,
            bandwidth=a.bandwidth,
        ) as sim:
            for vendor in ("zorio", "yeastar"):
                tag = f"lat/{latency:g}/{vendor}/{a.latency_calls}"
                bench.warm(sim, vendor)
                bench.run(f"{tag}/floor", "sequential floor", bench.me("floor", sim, vendor), sim)
                for n in a.inflight:
                    cmd = bench.me("cdr_assets", sim, vendor, inflight=n)
                    result = bench.run(
                        f"{tag}/cdr_assets/{n}", f"cdr_assets, {n} in flight", cmd, sim
                    )
                    if result.na and n == 1:  # today's code pages sequentially: one in flight
                        cmd = bench.me("cdr_assets", sim, vendor)
                        result = bench.run(
                            f"{tag}/cdr_assets/{n}",
                            "cdr_assets, 1 in flight (sequential; key absent)",
                            cmd,
                            sim,
                        )
                    if n == max(a.inflight) and vendor == "zorio" and latency == max(a.latencies):
                        bench.profile(f"{tag}/cdr_assets/{n}", "cdr_assets", cmd, sim)
                bench.dlt(
                    f"{tag}/dlt", "dlt rest_api (page_number paginator, Parquet)", sim, vendor
                )
    if a.quick:
        bench.notes.append("long rows (1,000,000 Zorio calls at 150 ms) skipped (--quick)")
        return
    latency, n = max(a.latencies), max(a.inflight)
    log(f"long rows: {a.long_calls:,} Zorio calls at {latency:g} ms")
    fixed, jitter = latency * (1 - a.jitter / 2), latency * a.jitter
    with SimulatorProcess(
        a.long_calls,
        cache_records=a.long_calls,
        latency_ms=fixed,
        jitter_ms=jitter,
        bandwidth=a.bandwidth,
    ) as sim:
        tag = f"lat/{latency:g}/zorio/{a.long_calls}"
        bench.warm(sim, "zorio")
        bench.run(f"{tag}/floor", "sequential floor", bench.me("floor", sim, "zorio"), sim)
        bench.run(
            f"{tag}/cdr_assets/{n}",
            f"cdr_assets, {n} in flight",
            bench.me("cdr_assets", sim, "zorio", inflight=n),
            sim,
        )


#: The instances the Dagster path runs on: (label, contender options). The first is what a
#: fresh checkout gets; the second what docs/deploy.md recommends for production.
DAGSTER_SETUPS: dict[str, tuple[str, dict[str, str]]] = {
    "sqlite": (
        "SQLite instance, multiprocess executor (the repository's `dagster.yaml`, defaults)",
        {"instance": "sqlite", "executor": "default"},
    ),
    "postgres": (
        "PostgreSQL instance (`docs/dagster.postgres.yaml`), in-process executor",
        {"instance": "postgres", "executor": "in_process"},
    ),
}


@contextlib.contextmanager
def postgres_for_dagster() -> Iterator[str]:
    """A PostgreSQL server on loopback for the `postgres` setup (the test suite's fixture:
    system binaries or the `pgserver` wheel's), its DAGSTER_PG_* variables in this process's
    environment, which the contender processes inherit; yields a note on what it is."""
    from tests.fixtures.postgres import PostgresDatabase, find_bin_dir, running_postgres

    # each contender makes a database of its own and names it in DAGSTER_PG_DB
    with (
        running_postgres(find_bin_dir()) as server,
        environment(PostgresDatabase(server, "postgres").env),
    ):
        yield f"PostgreSQL {server.version()} on loopback ({server.bin_dir})"


def table_dagster(bench: Bench) -> None:
    """One partition and a range through `dg launch` on each instance setup, against
    `ingest_cdr_day` (and one `ingest_cdr_days`) in process."""
    a = bench.args
    log(f"dagster: {a.dagster_days} days of {a.dagster_calls:,} Zorio calls")
    # A range run asks for its days in windows of up to 28 days, one day at a time asks for
    # each day: both shapes' pages are rendered before anything is measured.
    cache = 2 * a.dagster_calls * a.dagster_days
    cases = ((1, "one partition"), (a.dagster_days, f"{a.dagster_days}-day range"))
    with SimulatorProcess(a.dagster_calls, cache_records=cache) as sim:
        for name in ("inproc_days", "inproc_range"):
            run_child(f"warm-up ({name})", bench.me(name, sim, days=a.dagster_days), sim)
        for days, label in cases:
            cmd = bench.me("inproc_days", sim, days=days)
            bench.run(f"dag/{days}/inproc", f"{label}: in-process sum", cmd, sim)
        cmd = bench.me("inproc_range", sim, days=a.dagster_days)
        bench.run(f"dag/{a.dagster_days}/inrange", "range: in process, one call", cmd, sim)
        for setup, (_, options) in DAGSTER_SETUPS.items():
            try:
                server = postgres_for_dagster() if setup == "postgres" else contextlib.nullcontext()
                with server as note:
                    if note:
                        bench.notes.append(f"dagster/{setup}: {note}")
                    for days, label in cases:
                        cmd = bench.me("dagster", sim, days=days, **options)
                        bench.run(f"dag/{setup}/{days}", f"{label}: dg launch ({setup})", cmd, sim)
            except (RuntimeError, OSError) as exc:  # no PostgreSQL binaries, say
                bench.notes.append(f"dagster/{setup} not run: {exc}")


def recording_refs(calls: int, count: int) -> list[str]:
    """The first `count` + 1 Zorio uuids of the day with a recording."""
    from cdr_assets.simulator import Simulator

    zorio = Simulator(bench_config(calls, 1, ZONES["zorio"], 0)).zorio.calls
    day = date.fromisoformat(DAY)
    refs: list[str] = []
    for i in range(calls):
        gen = zorio.generate(day, i)
        if gen.recording_seconds:
            refs.append(gen.record["uuid"])
            if len(refs) > count:
                break
    return refs


def table_recordings(bench: Bench) -> None:
    """The archiver vs a plain parallel copy at the recordings latency; one big recording."""
    a = bench.args
    calls = max(3 * (a.recordings + 1), 100)
    refs = recording_refs(calls, a.recordings)
    if len(refs) <= a.recordings:
        bench.notes.append(f"only {len(refs)} recordings in {calls:,} calls")
    batch, big_ref = refs[: a.recordings], refs[-1]
    big = (big_ref, a.big_mb * 10**6 // WAV_BYTES_PER_SECOND) if a.big_mb else None
    log(f"recordings: {len(batch):,} at {a.recording_latency:g} ms, one of {a.big_mb} MB")
    with SimulatorProcess(
        calls, latency_ms=a.recording_latency, bandwidth=a.bandwidth, big=big
    ) as sim:
        joined = ",".join(batch)
        cmd = bench.me("recordings", sim, refs=joined)
        bench.run("rec/archiver", f"{len(batch):,} recordings: archiver", cmd, sim)
        bench.run(
            "rec/plain",
            f"{len(batch):,} recordings: plain parallel copy",
            bench.me("plain_copy", sim, refs=joined),
            sim,
        )
        bench.profile("rec/archiver", "archiver", cmd, sim)
        if big is not None:
            bench.run(
                "rec/big",
                f"one {a.big_mb} MB recording: archiver",
                bench.me("recordings", sim, refs=big_ref),
                sim,
            )


# ---------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _cells(r: Result, floor: Result | None) -> list[str]:
    """rows, wall s, × floor, speed-up, peak RSS, above imports, client CPU, simulator CPU."""
    if not r.ok:
        return [r.na or "failed (see notes)", *["-"] * 7]
    d = r.data
    return [
        f"{d['records']:,}",
        _fmt(d["wall_s"], 2),
        _fmt(_ratio(d["wall_s"], floor.wall if floor else None), 2, "×"),
        _fmt(_ratio(floor.wall if floor else None, d["wall_s"]), 1, "×"),
        _fmt(d["peak_rss_mb"], 0),
        _fmt(r.above_imports, 0),
        _fmt(d["work_cpu_s"], 1),
        _fmt(r.sim_cpu_s, 1),
    ]


CDR_HEAD = (
    "| rows | wall s | × floor | floor/wall | peak RSS MB | above imports MB "
    "| client CPU s | simulator CPU s |"
)


def _row_notes(bench: Bench, key: str, r: Result) -> None:
    if r.error:
        bench.notes.append(f"{key} ({r.name}): {r.error}")
        return
    d = r.data
    if "runs_wall_s" in d:
        bench.notes.append(f"{key}: best of {d['runs_wall_s']} s")
    fast = d.get("fast_path")
    if fast:
        how = f"{fast['json_records']}/{fast['pages']} first pages as unparsed `JsonRecords`"
        if fast.get("slow_reason"):
            how += f"; the client said: {fast['slow_reason']}"
        bench.notes.append(
            f"{key}: {d['passes']} pass(es), {'complete' if d['complete'] else 'INCOMPLETE'}, "
            f"API total {d['api_total']:,}, fetched {d['fetched']:,}, rejected "
            f"{d['rejected']:,}, outside the day {d['outside_day']:,}; fast path: "
            f"{'yes' if fast['yes'] else 'no'} ({how})"
        )


def render_loopback(bench: Bench) -> list[str]:
    a = bench.args
    out = [
        f"## 1. Loopback: {a.calls:,} calls per vendor",
        "",
        "One PBX-local day served on loopback (no latency), every page pre-rendered by an "
        "unmeasured warm-up. Zorio: Laravel envelope, 200 per page (its maximum); Yeastar: "
        "`cdr/search` over the window cdr_assets asks for (the day ± 60 min). Rows are what "
        "each contender kept: the floor counts every record fetched, cdr_assets the day's "
        "rows.",
        "",
        "| vendor | page size | contender " + CDR_HEAD,
        "|---|---:|---|" + "---:|" * 8,
    ]
    for vendor, size in (("zorio", 200), ("yeastar", 10_000), ("yeastar", 1000)):
        tag = f"loop/{vendor}/{size}"
        floor = bench.results.get(f"{tag}/floor")
        for kind in ("floor", "cdr_assets"):
            r = bench.results.get(f"{tag}/{kind}")
            if r is None:
                continue
            out.append(f"| {vendor} | {size:,} | {r.name} | " + " | ".join(_cells(r, floor)) + " |")
            _row_notes(bench, f"{tag}/{kind}", r)
    return out


def render_latency(bench: Bench) -> list[str]:
    a = bench.args
    out = [
        f"## 2. Remote PBX: {a.latency_calls:,} calls per vendor at "
        + " and ".join(f"{x:g} ms" for x in a.latencies)
        + " per request",
        "",
        f"Every request waits the latency (fixed {100 - 50 * a.jitter:g} % of it plus a "
        f"seeded uniform jitter up to {100 * a.jitter:g} %; requests in flight overlap), "
        + (f"bodies capped at {a.bandwidth:,} bytes/s; " if a.bandwidth else "no bandwidth cap; ")
        + "Zorio 200 per page, Yeastar `page_size` 1,000 (the defaults). floor/wall is the "
        "speed-up over the sequential floor. dlt: `rest_api_source` with a `page_number` "
        "paginator (Zorio `total_path: last_page`; Yeastar `stop_after_empty_page`, since "
        "`total_number` counts records), bearer / query `access_token` auth, "
        '`data_selector: data`, `loader_file_format="parquet"` (its fastest loader here); '
        "dlt pages one endpoint sequentially (`parallelized` runs resources, not pages, side "
        "by side), so there is no in-flight setting to give it.",
        "",
        "| latency | vendor | calls | contender " + CDR_HEAD,
        "|---:|---|---:|---|" + "---:|" * 8,
    ]
    groups = sorted(
        {"/".join(k.split("/")[:4]) for k in bench.results if k.startswith("lat/")},
        key=lambda g: (float(g.split("/")[1]), int(g.split("/")[3]), g.split("/")[2] != "zorio"),
    )
    for group in groups:
        _, latency, vendor, calls = group.split("/")
        floor = bench.results.get(f"{group}/floor")
        members = [
            f"{group}/floor",
            *[f"{group}/cdr_assets/{n}" for n in a.inflight],
            f"{group}/dlt",
        ]
        for key in members:
            r = bench.results.get(key)
            if r is None:
                continue
            out.append(
                f"| {latency} ms | {vendor} | {int(calls):,} | {r.name} | "
                + " | ".join(_cells(r, floor))
                + " |"
            )
            _row_notes(bench, key, r)
    return out


def render_dagster(bench: Bench) -> list[str]:
    a = bench.args
    out = [
        f"## 3. The whole Dagster path: Zorio, {a.dagster_calls:,} calls a day",
        "",
        "`dg launch --assets bench/cdr --partition D` (one partition) and `--partition-range "
        "A...B` (the asset's single-run backfill policy: one run for the range), from the "
        "repository with config in a temp dir and an existing instance (a fresh DAGSTER_HOME "
        "whose storage `dagster instance migrate` made before the clock starts), wall time of "
        "the command (process start, code loading, run, asset checks, event log); against "
        "`ingest_cdr_day` for the same days called one after the other in one process "
        "(imports excluded), summed. `ingest_cdr_days` in process is the range run's own call "
        "(windows of up to 28 days) without Dagster. Loopback, pages pre-rendered for both "
        "window shapes. Setups: "
        + "; ".join(f"{key}: {label}" for key, (label, _) in DAGSTER_SETUPS.items())
        + ".",
        "",
        "| setup | case | days | rows | Dagster wall s | in-process sum s | overhead | "
        "`ingest_cdr_days` in process s | Dagster peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setup in DAGSTER_SETUPS:
        for days in (1, a.dagster_days):
            dag = bench.results.get(f"dag/{setup}/{days}")
            inproc = bench.results.get(f"dag/{days}/inproc")
            if dag is None or inproc is None:
                continue
            inrange = bench.results.get(f"dag/{days}/inrange")
            for key, r in ((f"dag/{setup}/{days}", dag), (f"dag/{days}/inproc", inproc)):
                _row_notes(bench, key, r)
            label = "one partition" if days == 1 else f"{days}-day range"
            overhead = _ratio(dag.wall, inproc.wall)
            rows = dag.data.get("records") if dag.ok else None
            if dag.ok and inproc.ok and dag.data["records"] != inproc.data["records"]:
                bench.notes.append(
                    f"{setup} {label}: Dagster wrote {dag.data['records']:,} rows, "
                    f"in process {inproc.data['records']:,}"
                )
            out.append(
                f"| {setup} | {label} | {days} | {_fmt(rows, 0)} | {_fmt(dag.wall, 2)} | "
                f"{_fmt(inproc.wall, 2)} | "
                f"{_fmt(None if overhead is None else 100 * (overhead - 1), 0, ' %')} | "
                f"{_fmt(inrange.wall if inrange is not None else None, 2)} | "
                f"{_fmt(dag.data.get('peak_rss_mb') if dag.ok else None, 0)} |"
            )
    return out


def render_recordings(bench: Bench) -> list[str]:
    a = bench.args
    out = [
        f"## 4. Recordings at {a.recording_latency:g} ms per request",
        "",
        "The real `RecordingArchiver` with a `ZorioResource` (per recording a detail call "
        "that mints the signed link, a streamed WAV download, a verified write: size, "
        "header, SHA-256, into a local `RecordingArchive`), default concurrency; against a "
        "plain copy of the same URLs at the same concurrency (requests + threads: the detail "
        "call, the link streamed to a file, nothing else).",
        "",
        "| case | done | MB | wall s | MB/s | vs plain copy | peak RSS MB | above imports MB "
        "| client CPU s | simulator CPU s |",
        "|---|" + "---:|" * 9,
    ]
    plain = bench.results.get("rec/plain")
    for key in ("rec/archiver", "rec/plain", "rec/big"):
        r = bench.results.get(key)
        if r is None:
            continue
        _row_notes(bench, key, r)
        if not r.ok:
            out.append(f"| {r.name} | {r.na or 'failed (see notes)'} |" + " - |" * 8)
            continue
        d = r.data
        mb = d["bytes"] / 1e6
        vs = _ratio(plain.wall, d["wall_s"]) if plain and key == "rec/archiver" else None
        out.append(
            f"| {r.name} | {d['records']:,}/{d['asked']:,} | {_fmt(mb, 0)} | "
            f"{_fmt(d['wall_s'], 2)} | {_fmt(mb / d['wall_s'], 0)} | {_fmt(vs, 2, '×')} | "
            f"{_fmt(d['peak_rss_mb'], 0)} | {_fmt(r.above_imports, 0)} | "
            f"{_fmt(d['work_cpu_s'], 1)} | {_fmt(r.sim_cpu_s, 1)} |"
        )
        if d["records"] != d["asked"]:
            bench.notes.append(f"{r.name}: statuses {d['statuses']}")
    return out


@dataclass
class Target:
    what: str
    value: float | None  # the measured ratio or figure
    goal: float
    at_least: bool  # the goal is a minimum (speed-ups) or a maximum (times, memory)
    unit: str
    why: str = ""  # how it was measured, or why it could not be
    profile: str = ""  # the key of the profile that explains a miss

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.goal if self.at_least else self.value <= self.goal

    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        if self.met:
            return "met"
        off = (self.goal / self.value if self.at_least else self.value / self.goal) - 1
        return f"**missed** by {100 * off:.0f} %"


def targets(bench: Bench) -> list[Target]:
    a, res = bench.args, bench.results
    lat, n = max(a.latencies), max(a.inflight)
    found: list[Target] = []

    def wall(key: str) -> float | None:
        r = res.get(key)
        return r.wall if r else None

    def why_missing(*keys: str) -> str:
        for key in keys:
            r = res.get(key)
            if r is None:
                return f"{key} not run"
            if not r.ok:
                return r.na or f"{key} failed"
        return ""

    for calls in (a.latency_calls, a.long_calls):
        group = f"lat/{lat:g}/zorio/{calls}"
        fl, ca = f"{group}/floor", f"{group}/cdr_assets/{n}"
        why = (
            "long row skipped (--quick)"
            if calls == a.long_calls and a.quick
            else why_missing(fl, ca)
        )
        found.append(
            Target(
                f"Zorio {calls:,} calls at {lat:g} ms, {n} in flight: speed-up over the sequential "
                "floor",
                _ratio(wall(fl), wall(ca)),
                6,
                True,
                "×",
                why,
                ca,
            )
        )
    group = f"lat/{lat:g}/zorio/{a.latency_calls}"
    dlt, ca = f"{group}/dlt", f"{group}/cdr_assets/{n}"
    found.append(
        Target(
            f"Zorio {a.latency_calls:,} calls at {lat:g} ms, {n} in flight: speed-up over dlt",
            _ratio(wall(dlt), wall(ca)),
            7,
            True,
            "×",
            why_missing(dlt, ca),
            ca,
        )
    )
    for vendor, size in (("zorio", 200), ("yeastar", 10_000), ("yeastar", 1000)):
        tag = f"loop/{vendor}/{size}"
        found.append(
            Target(
                f"loopback {vendor} (page size {size:,}): cdr_assets over the floor",
                _ratio(wall(f"{tag}/cdr_assets"), wall(f"{tag}/floor")),
                1.3,
                False,
                "×",
                why_missing(f"{tag}/floor", f"{tag}/cdr_assets"),
                f"{tag}/cdr_assets",
            )
        )
    # Memory: cdr_assets' peak above its imports, and its growth from 100k to 1M calls.
    small = res.get(f"lat/{lat:g}/zorio/{a.latency_calls}/cdr_assets/{n}")
    small = (
        small
        if small and small.ok
        else res.get(f"lat/{lat:g}/zorio/{a.latency_calls}/cdr_assets/1")
    )
    big = res.get(f"lat/{lat:g}/zorio/{a.long_calls}/cdr_assets/{n}")
    big_note = f"{a.long_calls:,} at {lat:g} ms"
    if not (big and big.ok):
        big, big_note = res.get("loop/zorio/200/cdr_assets"), f"{a.calls:,} on loopback"
    peaks = {
        key: r
        for key, r in res.items()
        if r.ok and r.above_imports is not None and "fast_path" in r.data
    }
    top_key = max(peaks, key=lambda k: peaks[k].above_imports or 0) if peaks else None
    memory_why = "no cdr_assets row ran"
    if top_key is not None:
        top = peaks[top_key]
        memory_why = (
            f"{top_key}: of {top.above_imports:.0f} MB above the imports, Arrow's memory pool "
            f"(batches, row groups) held at most {top.data.get('arrow_peak_mb', 0):.0f} MB; the "
            "rest is native code and allocator arenas first touched by the work, which the "
            "allocator keeps (it hardly grows with the day's size: see the next row)"
        )
    found.append(
        Target(
            "cdr_assets peak RSS above the imports (largest CDR row)",
            peaks[top_key].above_imports if top_key else None,
            150,
            False,
            " MB",
            memory_why,
        )
    )
    growth = None
    if small and small.ok and big and big.ok and small.above_imports:
        growth = abs(big.data["peak_rss_mb"] / small.data["peak_rss_mb"] - 1) * 100
    found.append(
        Target(
            f"cdr_assets Zorio peak RSS, {a.latency_calls:,} at {lat:g} ms vs "
            f"{big_note}: difference",
            growth,
            10,
            False,
            " %",
            "" if growth is not None else "a row is missing",
        )
    )
    days = a.dagster_days
    for setup, (label, _) in DAGSTER_SETUPS.items():
        over = _ratio(wall(f"dag/{setup}/{days}"), wall(f"dag/{days}/inproc"))
        found.append(
            Target(
                f"Dagster {days}-day backfill over the in-process sum, {label}",
                None if over is None else 100 * (over - 1),
                20,
                False,
                " %",
                why_missing(f"dag/{setup}/{days}", f"dag/{days}/inproc"),
                f"dag/{setup}",
            )
        )
    found.append(
        Target(
            "recordings: archiver throughput over the plain parallel copy",
            _ratio(wall("rec/plain"), wall("rec/archiver")),
            0.9,
            True,
            "×",
            why_missing("rec/plain", "rec/archiver"),
            "rec/archiver",
        )
    )
    big_rec = res.get("rec/big")
    found.append(
        Target(
            f"one {a.big_mb} MB recording: archiver peak RSS above the imports",
            big_rec.above_imports if big_rec else None,
            50,
            False,
            " MB",
            why_missing("rec/big"),
        )
    )
    return found


def dagster_split(bench: Bench, setup: str) -> str:
    """The Dagster overhead of `setup` split into a fixed part (one partition's) and a
    per-day part."""
    res, days = bench.results, bench.args.dagster_days
    keys = (f"dag/{setup}/1", "dag/1/inproc", f"dag/{setup}/{days}", f"dag/{days}/inproc")
    walls = [res.get(k).wall if res.get(k) else None for k in keys]
    if None in walls or days <= 1:
        return ""
    one_dag, one_in, range_dag, range_in = walls
    fixed = one_dag - one_in
    per_day = (range_dag - range_in - fixed) / (days - 1)
    text = (
        f"a fixed {fixed:.1f} s per launch (one partition: {one_dag:.1f} s through dg, "
        f"{one_in:.1f} s in process: process start, code loading, run start) "
        f"and {per_day:.2f} s per further day ({days} days: {range_dag - range_in:.1f} s "
        "over the in-process sum)"
    )
    one = res[f"dag/{setup}/1"].data.get("events") or {}
    whole = res[f"dag/{setup}/{days}"].data.get("events") or {}
    extra = {k: (n - one.get(k, 0)) / (days - 1) for k, n in whole.items() if n > one.get(k, 0)}
    if extra:
        added = sum(whole.values()) - sum(one.values())
        per_event = (range_dag - range_in - fixed) / added
        kinds = ", ".join(f"{n:.1f} {k}" for k, n in sorted(extra.items(), key=lambda x: -x[1]))
        text += (
            f"; the range run stored {sum(whole.values()):,} events ({sum(one.values())} for "
            f"one partition), per further day {kinds}: {1000 * per_event:.0f} ms of overhead "
            "per event"
        )
    return text


def explain(bench: Bench, t: Target) -> str:
    """Why a target was missed, from what the run measured (CPU vs wall, the profile)."""
    if t.why or t.met is not False:
        return t.why
    r = bench.results.get(t.profile)
    parts = []
    if t.profile.startswith("dag/"):
        parts.append(dagster_split(bench, t.profile.split("/")[1]))
    elif r is not None and r.ok:
        d = r.data
        share = d["work_cpu_s"] / d["wall_s"] if d["wall_s"] else 0
        parts.append(
            f"client CPU {d['work_cpu_s']:.1f} s over {d['wall_s']:.1f} s wall "
            f"({100 * share:.0f} %: "
            + (
                "CPU-bound on this machine"
                if share > 0.8
                else "waiting: network, server or the machine's other processes"
            )
            + ")"
        )
    if t.profile in bench.profiles:
        parts.append(f"profile below ({t.profile})")
    elif t.profile and not t.profile.startswith("dag/"):
        parts.append("run with `--profile` for where the time goes")
    return "; ".join(parts)


def render_targets(bench: Bench) -> list[str]:
    out = [
        "## 5. Targets (issue 10, item 5): ratios from this run",
        "",
        "| target | measured | goal | verdict | why / how |",
        "|---|---:|---:|---|---|",
    ]
    for t in targets(bench):
        sign = "≥" if t.at_least else "≤"
        digits = 2 if t.unit == "×" else 0
        out.append(
            f"| {t.what} | {_fmt(t.value, digits, t.unit)} | {sign} {t.goal:g}{t.unit} "
            f"| {t.verdict()} | {explain(bench, t)} |"
        )
    return out


def machine_info(dlt_note: str) -> list[tuple[str, str]]:
    cpu, mem = "?", "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    versions = []
    for dist in ("cdr_assets", "requests", "pyarrow", "duckdb", "dagster"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    try:
        load = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{cpu}, {len(os.sched_getaffinity(0))} cores (os.cpu_count {os.cpu_count()})"),
        ("load average at the end (1/5/15 min)", load),
        ("memory", mem),
        ("commit", f"{commit or '?'}" + (" with uncommitted changes" if dirty else "")),
        ("os", platform.platform()),
        ("python", platform.python_version()),
        ("packages", ", ".join(versions)),
        ("dlt", dlt_note),
    ]


def render(bench: Bench, info: list[tuple[str, str]], seconds: float) -> str:
    a = bench.args
    info_map = dict(info)
    out = [
        f"# Benchmarks ({info_map['date']}, {info_map['cpu']})",
        "",
        "Each contender runs in its own subprocess against the simulator in another; "
        "ratios compare rows of this run only. The machine's cores are shared by both (and "
        "by anything else running).",
        "",
    ]
    sections = {
        "loopback": render_loopback,
        "latency": render_latency,
        "dagster": render_dagster,
        "recordings": render_recordings,
    }
    for name in a.tables:
        out += sections[name](bench) + [""]
    out += render_targets(bench) + [""]
    if bench.profiles:
        out += [
            "## Profiles (cProfile, an extra run each; own time per function)",
            "",
            "cProfile sees the main thread only: the archiver's downloads run in worker "
            "threads, so its profile shows the main thread waiting on them.",
            "",
        ]
        for key, text in bench.profiles.items():
            out += [f"`{key}`:", "", "```", text, "```", ""]
    notes = bench.notes + a.skipped
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    out += ["## Machine", ""] + [f"- {k}: {v}" for k, v in info] + [""]
    command = " ".join(["python -m benchmarks.run", *a.argv])
    out += [f"Command: `{command}` ({seconds / 60:.1f} min)", ""]
    return "\n".join(out)


def update_readme(report: str, dated: Path) -> None:
    """Replace the README's performance block with this report's tables, machine and date
    (between the markers; the profiles stay in the results file)."""
    text = README.read_text()
    if README_START not in text or README_END not in text:
        raise RuntimeError(f"README.md has no {README_START} ... {README_END} block")
    title, body = report.split("\n", 1)
    body = re.sub(r"\n## Profiles.*?(?=\n## )", "", body, flags=re.S)
    body = re.sub(r"^## ", "#### ", body, flags=re.M)
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    link = (
        f"**{title.lstrip('# ')}**, from "
        f"[`benchmarks/results/{dated.name}`](benchmarks/results/{dated.name}):"
    )
    README.write_text(f"{head}{README_START}\n{link}\n{body.strip()}\n{README_END}{tail}")


# ---------------------------------------------------------------------- main


TABLES = ("loopback", "latency", "dagster", "recordings")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="skip the long rows (1M calls at 150 ms)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, every table, no dlt install (checks the harness, ~1 min)",
    )
    p.add_argument(
        "--tables", default=",".join(TABLES), help="comma-separated subset of " + ", ".join(TABLES)
    )
    p.add_argument("--calls", type=int, default=1_000_000, help="loopback calls per vendor")
    p.add_argument("--latency-calls", type=int, default=100_000)
    p.add_argument("--long-calls", type=int, default=1_000_000)
    p.add_argument("--latencies", default="50,150", help="ms per request, comma-separated")
    p.add_argument(
        "--jitter",
        type=float,
        default=0.2,
        help="jitter as a fraction of the latency (the fixed part is the rest, so "
        "the mean is the latency)",
    )
    p.add_argument("--bandwidth", type=int, default=0, help="bytes/s per response (0: no cap)")
    p.add_argument("--inflight", default="1,4,8", help="cdr_assets max_inflight_requests rows")
    p.add_argument("--dagster-days", type=int, default=90)
    p.add_argument("--dagster-calls", type=int, default=20_000)
    p.add_argument("--recordings", type=int, default=2000)
    p.add_argument("--recording-latency", type=float, default=50)
    p.add_argument("--big-mb", type=int, default=500, help="the single big recording (0: none)")
    p.add_argument("--skip-dlt", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="loopback runs; the fastest counts")
    p.add_argument(
        "--profile",
        action="store_true",
        help="an extra cProfile run of the contenders behind each target; top "
        "functions in the report",
    )
    p.add_argument("--out-dir", default=str(RESULTS), help="where the reports go")
    p.add_argument(
        "--readme",
        action="store_true",
        help="also put the tables into README.md's performance block",
    )
    args = p.parse_args(argv)
    args.argv = argv
    args.skipped = []
    if args.smoke:
        args.calls, args.latency_calls, args.long_calls = 3000, 2000, 4000
        args.dagster_days, args.dagster_calls = 3, 500
        args.recordings, args.big_mb, args.skip_dlt, args.quick = 20, 5, True, True
        args.latencies = "5,15"
    args.tables = [t for t in args.tables.split(",") if t]
    unknown = set(args.tables) - set(TABLES)
    if unknown:
        p.error(f"unknown tables {sorted(unknown)}; choose from {', '.join(TABLES)}")
    args.latencies = [float(x) for x in args.latencies.split(",") if x]
    args.inflight = [int(x) for x in args.inflight.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    dlt_python: Path | None = None
    args.dlt_note = "skipped (--skip-dlt)"
    if "latency" in args.tables and not args.skip_dlt:
        dlt_python, args.dlt_note = ensure_dlt_venv(log=log)
        if dlt_python is None:
            args.skipped.append(f"dlt not run: {args.dlt_note}")
    bench = Bench(args, dlt_python)
    started = time.perf_counter()
    steps = {
        "loopback": table_loopback,
        "latency": table_latency,
        "dagster": table_dagster,
        "recordings": table_recordings,
    }
    for name in args.tables:
        try:
            steps[name](bench)
        except (RuntimeError, OSError) as exc:  # a simulator that did not start, a full disk
            bench.notes.append(f"table {name} stopped: {exc}")
            log(f"table {name} stopped: {exc}")
    seconds = time.perf_counter() - started
    info = machine_info(args.dlt_note)
    report = render(bench, info, seconds)
    print(report)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = "-smoke" if args.smoke else "-quick" if args.quick else ""
    dated = out_dir / f"{datetime.now(UTC):%Y-%m-%d-%H%M}{kind}.md"
    dated.write_text(report)
    (out_dir / "latest.md").write_text(report)
    if args.readme:
        update_readme(report, dated)
    log(f"wrote {dated} and latest.md in {seconds:.0f} s")
    failed = [k for k, r in bench.results.items() if r.error]
    return 1 if failed or any("stopped" in n for n in bench.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
