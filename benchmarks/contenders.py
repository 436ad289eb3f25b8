"""One benchmark contender per process: `python -m benchmarks.contenders NAME --url ... --json`.

Owns what each contender does and measures inside its own process: wall time of the work only
(imports and setup excluded), records or bytes handled, CPU seconds and peak RSS of this process
(and of its children). It prints one JSON object as its last stdout line for `run.py`. The dlt
contender lives in `dlt_contender.py` because it runs in its own virtualenv.

- ``floor``: `requests.Session` paging `GET /api/pbx/cdr` + stdlib `json.loads`, nothing else.
- ``cdr_assets``: `ingest_cdr_day` (ZorioResource -> passes until complete -> normalize with
  quarantine -> `cdr` and `cdr_rejects` Parquet) + `ensure_views` over `TABLE_SCHEMAS`, after an
  unmeasured check that the client hands this envelope's pages over unparsed (the fast path).
- ``recordings``: `RecordingArchiver.archive_partition` over the given recording refs.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

TOKEN = "demo-token"
#: Pages the fast-path check looks at before the timed run.
FAST_PATH_PAGES = 5


def usage() -> dict[str, float]:
    """CPU seconds and peak RSS (MB) of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_s": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_rss_mb": max(own.ru_maxrss, kids.ru_maxrss) / 1024,  # KiB on Linux
    }


def rss_now_mb() -> float:
    """Current resident set (MB) from /proc: what imports and setup already hold."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    url = f"{args.url}/api/pbx/cdr"
    base_rss = rss_now_mb()
    cpu0 = usage()["cpu_s"]
    started = time.perf_counter()
    records = total = 0
    page = 1
    while True:
        response = session.get(url, params={
            "from": args.day, "to": args.day, "page": page, "per_page": args.per_page,
        }, timeout=60)
        response.raise_for_status()
        payload = json.loads(response.content)
        records += len(payload["data"])
        total = payload["total"]
        if payload["current_page"] >= payload["last_page"]:
            break
        page += 1
    wall = time.perf_counter() - started
    return {"records": records, "api_total": total, "pages": page, "wall_s": wall,
            "work_cpu_s": usage()["cpu_s"] - cpu0, "base_rss_mb": base_rss}


def _zorio_setup(args: argparse.Namespace, root: Path) -> tuple[Any, Any, Any]:
    """(ZorioResource, pbx config, storage config) built from a config dict, as a user would."""
    from cdr_assets.config import parse_config
    from cdr_assets.vendors.zorio import ZorioResource

    config = parse_config({
        "storage": {
            "data_dir": str(root / "data"),
            "duckdb_path": str(root / "data" / "cdr.duckdb"),
            "recordings_dir": str(root / "recordings"),
        },
        "pbxs": [{
            "name": "bench", "vendor": "zorio", "base_url": args.url,
            "timezone": args.timezone, "query_timezone": args.timezone,
            "start_date": "2020-01-01", "api_token": {"env": "BENCH_ZORIO_TOKEN"},
            "per_page": args.per_page,
        }],
    }, source="benchmark config")
    pbx = config.pbxs[0]
    settings = {**pbx.resource_settings(), "api_token": TOKEN}  # the env ref, resolved
    return ZorioResource(**settings), pbx, config.storage


class _Notes(logging.Handler):
    """Collects the messages a logger emits while attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_fast_path(args: argparse.Namespace, root: Path, day: date) -> dict[str, Any]:
    """Whether the first pages of the day reach the normalizer unparsed (`JsonRecords`).

    Unmeasured, with a client of its own so the timed run starts as cold as before; what the
    client logs about pages it had to parse whole is kept as the reason.
    """
    from cdr_assets.records import JsonRecords
    from cdr_assets.vendors import zorio

    client, _, _ = _zorio_setup(args, root)
    notes = _Notes()
    zorio.logger.addHandler(notes)
    try:
        pages = client.fetch_cdrs(day, day).windows[0].fetch_pass()
        kinds = [isinstance(page.records, JsonRecords)
                 for _, page in zip(range(FAST_PATH_PAGES), pages, strict=False)]
        pages.close()
    finally:
        zorio.logger.removeHandler(notes)
        client.close()
    return {"yes": bool(kinds) and all(kinds), "pages": len(kinds), "json_records": sum(kinds),
            "slow_reason": " | ".join(notes.messages)}


def run_cdr_assets(args: argparse.Namespace) -> dict[str, Any]:
    from cdr_assets.ingest import ingest_cdr_day
    from cdr_assets.schema import TABLE_SCHEMAS
    from cdr_assets.storage.duckdb import ensure_views

    with tempfile.TemporaryDirectory(prefix="bench-cdr-") as tmp:
        day = date.fromisoformat(args.day)
        fast_path = check_fast_path(args, Path(tmp) / "check", day)
        client, pbx, storage = _zorio_setup(args, Path(tmp))
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        base_rss = rss_now_mb()
        cpu0 = usage()["cpu_s"]
        started = time.perf_counter()
        stats = ingest_cdr_day(client, pbx, storage, day, ingested_at=datetime.now(UTC),
                               run_id="benchmark")
        fetched = time.perf_counter()
        ensure_views(storage.duckdb_path, storage.data_dir, TABLE_SCHEMAS)
        wall = time.perf_counter() - started
        work_cpu = usage()["cpu_s"] - cpu0
        if profiler is not None:
            profiler.disable()
            _write_profile(profiler, Path(args.profile))
        cdr_files = Path(storage.data_dir, "cdr").rglob("*.parquet")
        parquet = sum(f.stat().st_size for f in cdr_files)
        client.close()
    return {
        "records": stats.rows, "api_total": stats.api_total, "fetched": stats.fetched,
        "passes": stats.passes, "complete": stats.complete, "rejected": stats.rejected,
        "outside_day": stats.outside_day, "fast_path": fast_path,
        "wall_s": wall, "work_cpu_s": work_cpu, "views_s": wall - (fetched - started),
        "parquet_mb": parquet / 1e6, "base_rss_mb": base_rss,
    }


def _write_profile(profiler: Any, path: Path) -> None:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue())


def run_recordings(args: argparse.Namespace) -> dict[str, Any]:
    from cdr_assets.recordings import RecordingArchiver, RecordingTask
    from cdr_assets.storage.archive import RecordingArchive

    refs = [r for r in args.refs.split(",") if r]
    day = date.fromisoformat(args.day)
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        client, pbx, storage = _zorio_setup(args, Path(tmp))
        archiver = RecordingArchiver(
            client, RecordingArchive(storage.recordings_dir), pbx=pbx.name,
            concurrency=pbx.recording_concurrency, max_attempts=pbx.recording_attempts,
            missing_rechecks=pbx.missing_rechecks, progress_every_s=3600,
        )
        tasks = [RecordingTask(cdr_id=ref, recording_ref=ref, call_date=day) for ref in refs]
        base_rss = rss_now_mb()
        cpu0 = usage()["cpu_s"]
        started = time.perf_counter()
        outcome = archiver.archive_partition(tasks, {})
        wall = time.perf_counter() - started
        work_cpu = usage()["cpu_s"] - cpu0
        client.close()
    counts = outcome.counts
    return {
        "records": counts.get("archived", 0), "asked": len(refs), "statuses": dict(counts),
        "bytes": outcome.bytes_downloaded, "wall_s": wall, "work_cpu_s": work_cpu,
        "concurrency": pbx.recording_concurrency, "base_rss_mb": base_rss,
    }


CONTENDERS = {"floor": run_floor, "cdr_assets": run_cdr_assets, "recordings": run_recordings}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contenders")
    p.add_argument("name", choices=sorted(CONTENDERS))
    p.add_argument("--url", required=True)
    p.add_argument("--day", required=True)
    p.add_argument("--timezone", required=True)
    p.add_argument("--per-page", type=int, default=200)
    p.add_argument("--refs", default="", help="recordings: comma-separated CDR uuids")
    p.add_argument("--profile", default="", help="cdr_assets: write a cProfile summary here")
    args = p.parse_args(argv)
    result = CONTENDERS[args.name](args)
    result.update(usage())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
