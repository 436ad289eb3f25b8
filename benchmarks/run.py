"""`python -m benchmarks.run`: every contender on the same simulated day, one Markdown report.

Owns the orchestration: the simulator in its own process (`serve.py`, one list envelope for every
contender, page cache warmed by an unmeasured pass so it costs the clients almost nothing), each
contender in its own subprocess
(`contenders.py`, or `dlt_contender.py` in the dlt virtualenv), the simulator's CPU time read
from /proc around each contender, and the report (stdout + `benchmarks/results/`). It never
runs inside the test suite and installs nothing except dlt into `benchmarks/.venv-dlt`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.dltenv import ensure_dlt_venv
from benchmarks.serve import DEFAULT_ENVELOPE, bench_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DAY = "2026-06-01"
TIMEZONE = "Asia/Ho_Chi_Minh"
WAV_BYTES_PER_SECOND = 16_000  # 8 kHz mono 16-bit, as the simulator serves
CHILD_TIMEOUT_S = 3 * 3600
BYTES_PER_CACHED_RECORD = 600  # a Zorio record is ~540 bytes of JSON
CDR_ASSETS = "cdr_assets `ingest_cdr_day`"
#: The Zorio list envelopes a run can serve (`serve.py --envelope`), as the report describes them.
ENVELOPES = {
    "laravel": "Laravel envelope (`LengthAwarePaginator::toArray()`: every paginator key, "
               "`links` after `data`, PHP `json_encode` with `\\/`), as a real Zorio server "
               "sends it",
    "minimal": "minimal envelope (`current_page`, `data`, `from`, `last_page`, `per_page`, "
               "`to`, `total`)",
}


@dataclass
class Result:
    name: str
    kind: str  # "cdr" | "recordings" | "info"
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    sim_cpu_s: float | None = None


def log(msg: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- the simulator process


class SimulatorProcess:
    """`python -m benchmarks.serve` in a subprocess; its URL and CPU seconds so far."""

    def __init__(self, calls: int, big: tuple[str, int] | None, envelope: str) -> None:
        cache_mb = math.ceil(calls * BYTES_PER_CACHED_RECORD / 2**20) + 64
        cmd = [sys.executable, "-m", "benchmarks.serve", "--calls", str(calls),
               "--timezone", TIMEZONE, "--page-cache-mb", str(cache_mb),
               "--envelope", envelope]
        if big is not None:
            cmd += ["--recording-seconds", f"{big[0]}={big[1]}"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("simulator listening on "):
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
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


def run_child(
    cmd: list[str], sim: SimulatorProcess
) -> tuple[dict[str, Any] | None, str | None, float]:
    """(JSON result, error, simulator CPU seconds spent meanwhile) of one contender process."""
    cpu0 = sim.cpu_s()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {CHILD_TIMEOUT_S} s", sim.cpu_s() - cpu0
    sim_cpu = sim.cpu_s() - cpu0
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        return None, f"exit {done.returncode}: {tail[:600]}", sim_cpu
    try:
        return json.loads(lines[-1]), None, sim_cpu
    except json.JSONDecodeError:
        return None, f"no JSON result: {lines[-1][:300]}", sim_cpu


def best_of(repeat: int, once: Callable[[], Result]) -> Result:
    """Run `once` `repeat` times; keep the fastest successful run (noise only adds time)."""
    runs = [once() for _ in range(max(1, repeat))]
    ok = [r for r in runs if r.error is None]
    if not ok:
        return runs[-1]
    best = min(ok, key=lambda r: r.data["wall_s"])
    if len(ok) > 1:
        best.data["runs_wall_s"] = [round(r.data["wall_s"], 2) for r in ok]
    return best


# ---------------------------------------------------------------------- inputs


def recording_refs(calls: int, count: int) -> tuple[list[str], str | None]:
    """The first `count` uuids of the day with a recording, and one more for the big file."""
    from cdr_assets.simulator import Simulator

    zorio = Simulator(bench_config(calls, 1, TIMEZONE, 0)).zorio.calls
    day = date.fromisoformat(DAY)
    refs: list[str] = []
    for i in range(calls):
        gen = zorio.generate(day, i)
        if gen.recording_seconds:
            refs.append(gen.record["uuid"])
            if len(refs) > count:
                break
    return refs[:count], refs[count] if len(refs) > count else None


def machine_info(dlt_note: str) -> list[tuple[str, str]]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 2**20:.1f} GiB"
    except OSError:
        mem = "?"
    versions = []
    for dist in ("cdr_assets", "requests", "pyarrow", "duckdb", "dagster"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("commit", f"{commit or '?'} (plus uncommitted changes, if any)"),
        ("nproc", f"{len(os.sched_getaffinity(0))} (os.cpu_count {os.cpu_count()})"),
        ("cpu", cpu),
        ("memory", mem),
        ("os", platform.platform()),
        ("python", platform.python_version()),
        ("packages", ", ".join(versions)),
        ("dlt", dlt_note),
    ]


# ---------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ingest_note(name: str, d: dict[str, Any]) -> str:
    """What the ingest saw (passes, completeness, rejects) and whether pages took the fast path."""
    fast = d["fast_path"]
    verdict = "yes" if fast["yes"] else "no"
    how = (f"{fast['json_records']}/{fast['pages']} of the first pages came as unparsed "
           "`JsonRecords`")
    if fast.get("slow_reason"):
        how += f"; the client said: {fast['slow_reason']}"
    return (f"{name}: {d['passes']} pass(es), {'complete' if d['complete'] else 'INCOMPLETE'}, "
            f"API total {d['api_total']:,}, fetched {d['fetched']:,}, rejected {d['rejected']:,}, "
            f"outside the day {d['outside_day']:,}; fast path: {verdict} ({how})")


def render(args: argparse.Namespace, results: list[Result], info: list[tuple[str, str]],
           warmup: Result | None) -> str:
    floor = next((r for r in results if r.name == "fetch floor" and r.error is None), None)
    floor_wall = floor.data["wall_s"] if floor else None
    out = [
        f"# Benchmarks: {args.calls:,} Zorio calls, {args.per_page} per page, "
        f"{args.envelope} envelope",
        "",
        f"One simulated PBX-local day ({DAY}, {TIMEZONE}; the server reads `from`/`to` in the "
        "same zone, so one local day is one server date for every contender) served on "
        "loopback by the simulator in its own process, every page pre-rendered by an "
        "unmeasured warm-up pass. Every contender gets the list pages in the "
        f"{ENVELOPES[args.envelope]}. Each contender runs in its own subprocess; the machine's "
        "cores are shared with the simulator.",
        "",
        "| contender | rows | wall s | rows/s | × floor | peak RSS MB | RSS before work MB "
        "| client CPU s | simulator CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    for r in results:
        if r.kind != "cdr":
            continue
        if r.error is not None:
            out.append(f"| {r.name} | - | - | - | - | - | - | - | - |")
            notes.append(f"{r.name}: {r.error}")
            continue
        d = r.data
        ratio = d["wall_s"] / floor_wall if floor_wall else None
        out.append(
            f"| {r.name} | {d['records']:,} | {_fmt(d['wall_s'], 2)} | "
            f"{_fmt(d['records'] / d['wall_s'], 0)} | {_fmt(ratio, 2)}× | "
            f"{_fmt(d['peak_rss_mb'], 0)} | {_fmt(d.get('base_rss_mb'), 0)} | "
            f"{_fmt(d['work_cpu_s'], 1)} | {_fmt(r.sim_cpu_s, 1)} |"
        )
        if d["records"] != args.calls:
            notes.append(f"{r.name}: {d['records']:,} rows, expected {args.calls:,}")
        if "runs_wall_s" in d:
            notes.append(f"{r.name}: best of {d['runs_wall_s']} s")
        if "views_s" in d:
            notes.append(f"{r.name}: includes `ensure_views` ({d['views_s']:.2f} s); "
                         f"Parquet {d['parquet_mb']:.0f} MB")
        if "fast_path" in d:
            notes.append(_ingest_note(r.name, d))
    rec = [r for r in results if r.kind == "recordings"]
    if rec:
        out += [
            "",
            "Recordings: the real `RecordingArchiver` with a `ZorioResource` (detail call to "
            "mint the signed link, streamed WAV download, verified write to a local archive), "
            "default concurrency.",
            "",
            "| case | archived | MB | wall s | MB/s | peak RSS MB | RSS before work MB "
            "| client CPU s | simulator CPU s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rec:
            if r.error is not None:
                out.append(f"| {r.name} | - | - | - | - | - | - | - | - |")
                notes.append(f"{r.name}: {r.error}")
                continue
            d = r.data
            mb = d["bytes"] / 1e6
            out.append(
                f"| {r.name} | {d['records']:,}/{d['asked']:,} | {_fmt(mb, 0)} | "
                f"{_fmt(d['wall_s'], 2)} | {_fmt(mb / d['wall_s'], 0)} | "
                f"{_fmt(d['peak_rss_mb'], 0)} | {_fmt(d.get('base_rss_mb'), 0)} | "
                f"{_fmt(d['work_cpu_s'], 1)} | {_fmt(r.sim_cpu_s, 1)} |"
            )
            if d["records"] != d["asked"]:
                notes.append(f"{r.name}: statuses {d['statuses']}")
    if warmup is not None:
        if warmup.error is None:
            w = warmup.data
            notes.append(
                f"warm-up (floor client against the cold simulator, not a contender): "
                f"{w['wall_s']:.2f} s, {w['wall_s'] / max(w['records'], 1) * 1e6:.1f} µs/record "
                f"end to end, simulator CPU {_fmt(warmup.sim_cpu_s)} s"
            )
        else:
            notes.append(f"warm-up failed: {warmup.error}")
    for reason in args.skipped:
        notes.append(reason)
    out += ["", "Notes:", ""] + [f"- {n}" for n in notes] if notes else []
    out += ["", "Machine:", ""] + [f"- {k}: {v}" for k, v in info]
    out += ["", f"Command: `python -m benchmarks.run {' '.join(args.argv)}`".rstrip() + "", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--calls", type=int, default=1_000_000, help="calls in the day")
    p.add_argument("--quick", action="store_true", help="shorthand for --calls 100000")
    p.add_argument("--per-page", type=int, default=200)
    p.add_argument("--envelope", choices=tuple(ENVELOPES), default=DEFAULT_ENVELOPE,
                   help="Zorio list envelope every contender gets (default: %(default)s)")
    p.add_argument("--recordings", type=int, default=1000, help="0 skips the recordings case")
    p.add_argument("--big-mb", type=int, default=200, help="0 skips the single big recording")
    p.add_argument("--skip-dlt", action="store_true")
    p.add_argument("--skip-dlt-defaults", action="store_true",
                   help="run dlt only with Parquet loading (its defaults take ~10 min per 1M)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs of the floor and of cdr_assets; the fastest is reported")
    p.add_argument("--profile", action="store_true",
                   help="also write a cProfile summary of cdr_assets to results/")
    p.add_argument("--out", default=None,
                   help="report file (default results/latest.md for 1,000,000 calls with the "
                        "default envelope, results/latest-<calls>[-<envelope>].md otherwise)")
    args = p.parse_args(argv)
    args.argv = argv
    args.skipped = []
    if args.quick:
        args.calls = 100_000
    if not 1 <= args.per_page <= 200:
        p.error("--per-page must be in 1..200 (the Zorio API's limit)")
    suffix = "" if args.envelope == DEFAULT_ENVELOPE else f"-{args.envelope}"
    out_path = Path(args.out) if args.out else RESULTS / (
        "latest.md" if args.calls == 1_000_000 and not suffix
        else f"latest-{args.calls}{suffix}.md")

    dlt_python: Path | None = None
    dlt_note = "skipped (--skip-dlt)"
    if not args.skip_dlt:
        dlt_python, dlt_note = ensure_dlt_venv(log=log)
        if dlt_python is None:
            args.skipped.append(f"dlt not run: {dlt_note}")
    info = machine_info(dlt_note)

    refs, big_ref = recording_refs(args.calls, args.recordings) if args.recordings or \
        args.big_mb else ([], None)
    big = (big_ref, args.big_mb * 10**6 // WAV_BYTES_PER_SECOND) if big_ref and args.big_mb \
        else None
    common = ["--url", "", "--day", DAY, "--timezone", TIMEZONE, "--per-page", str(args.per_page)]

    log(f"starting the simulator ({args.calls:,} calls per day)")
    sim = SimulatorProcess(args.calls, big, args.envelope)
    common[1] = sim.url
    me = [sys.executable, "-m", "benchmarks.contenders"]
    results: list[Result] = []

    def contender(name: str, kind: str, cmd: list[str]) -> Callable[[], Result]:
        def once() -> Result:
            log(f"running {name}")
            data, error, sim_cpu = run_child(cmd, sim)
            result = Result(name, kind, data or {}, error, sim_cpu)
            log(f"{name}: " + (error or f"{data['wall_s']:.2f} s"))  # type: ignore[index]
            return result
        return once

    try:
        started = time.perf_counter()
        warmup = contender("warm-up", "info", [*me, "floor", *common])()
        results.append(best_of(args.repeat,
                               contender("fetch floor", "cdr", [*me, "floor", *common])))
        results.append(best_of(args.repeat, contender(
            CDR_ASSETS, "cdr", [*me, "cdr_assets", *common])))
        if args.profile:  # an extra run: cProfile's overhead must not reach the table
            path = RESULTS / f"profile-cdr_assets-{args.calls}{suffix}.txt"
            prof = contender("cdr_assets under cProfile", "info",
                             [*me, "cdr_assets", *common, "--profile", str(path)])()
            args.skipped.append(f"cProfile summary of an extra cdr_assets run: {path.name}"
                                + (f" (failed: {prof.error})" if prof.error else ""))
        if dlt_python is not None:
            dlt_cmd = [str(dlt_python), str(HERE / "dlt_contender.py"), "--url", sim.url,
                       "--day", DAY, "--per-page", str(args.per_page)]
            results.append(contender("dlt rest_api, Parquet loading", "cdr",
                                     [*dlt_cmd, "--mode", "parquet"])())
            if args.skip_dlt_defaults:
                args.skipped.append("dlt with its defaults skipped (--skip-dlt-defaults)")
            else:
                results.append(contender("dlt rest_api, defaults", "cdr",
                                         [*dlt_cmd, "--mode", "defaults"])())
        if refs:
            results.append(contender(f"{len(refs):,} recordings", "recordings",
                                     [*me, "recordings", *common, "--refs", ",".join(refs)])())
        if big is not None:
            results.append(contender(f"one {args.big_mb} MB recording", "recordings",
                                     [*me, "recordings", *common, "--refs", big[0]])())
        log(f"all done in {time.perf_counter() - started:.0f} s")
    finally:
        sim.stop()

    report = render(args, results, info, warmup)
    print(report)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(report)
    log(f"wrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    return 0 if all(r.error is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
