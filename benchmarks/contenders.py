"""One benchmark contender per process: `python -m benchmarks.contenders NAME --url ... --json`.

Owns what each contender does and measures inside its own process: wall time of the work only
(imports and setup excluded), records or bytes handled, CPU seconds and peak RSS of this process
(and of its children). It prints one JSON object as its last stdout line for `run.py`. The dlt
contender lives in `dlt_contender.py` because it runs in its own virtualenv.

- ``floor``: `requests.Session` paging `GET /api/pbx/cdr` + stdlib `json.loads`, nothing else.
- ``cdr_assets``: `fetch_cdr_day` (ZorioResource -> normalize -> Parquet) + `ensure_views`.
- ``recordings``: `RecordingArchiver.archive_partition` over the given recording refs.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

TOKEN = "demo-token"


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


def run_cdr_assets(args: argparse.Namespace) -> dict[str, Any]:
    from cdr_assets.assets.cdr import VIEW_SCHEMAS, fetch_cdr_day
    from cdr_assets.storage.duckdb import ensure_views

    with tempfile.TemporaryDirectory(prefix="bench-cdr-") as tmp:
        client, pbx, storage = _zorio_setup(args, Path(tmp))
        day = date.fromisoformat(args.day)
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        base_rss = rss_now_mb()
        cpu0 = usage()["cpu_s"]
        started = time.perf_counter()
        stats = fetch_cdr_day(client, pbx, storage, day, preview=[])
        fetched = time.perf_counter()
        ensure_views(storage.duckdb_path, storage.data_dir, VIEW_SCHEMAS)
        wall = time.perf_counter() - started
        work_cpu = usage()["cpu_s"] - cpu0
        if profiler is not None:
            profiler.disable()
            _write_profile(profiler, Path(args.profile))
        parquet = sum(f.stat().st_size for f in Path(storage.data_dir).rglob("*.parquet"))
        client.close()
    return {
        "records": stats.rows, "api_total": stats.api_total, "fetched": stats.fetched,
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
