"""One benchmark contender per process: `python -m benchmarks.contenders NAME --url ... --json`.

Owns what each contender does and measures inside its own process: wall time of the work only
(imports and setup excluded), records or bytes handled, CPU seconds and peak RSS of this process
(and of its children). It prints one JSON object as its last stdout line for `run.py`. The dlt
contender lives in `dlt_contender.py` because it runs in its own virtualenv.

- ``floor``: `requests.Session` paging the list endpoint (Zorio `GET /api/pbx/cdr`, Yeastar
  `get_token` + `cdr/search` over the same window cdr_assets asks for) + stdlib `json.loads`,
  nothing else; `--workers N` pages with N threads (the warm-up pass only).
- ``cdr_assets``: `ingest_cdr_day` (passes until complete -> normalize with quarantine -> `cdr`
  and `cdr_rejects` Parquet) + `ensure_views`, after an unmeasured check that the client hands
  the pages over unparsed (the fast path); `--inflight N` passes `max_inflight_requests`.
- ``inproc_days``: `ingest_cdr_day` for each day of a range in this process, summed: the
  Dagster path's work without Dagster, one day at a time.
- ``inproc_range``: one `ingest_cdr_days` over the range in this process: a range run's step
  without Dagster.
- ``dagster``: `dg launch` of `<pbx>/cdr` for one partition or a partition range, with a real
  DAGSTER_HOME and config in a temp dir; wall time of the command.
- ``recordings``: `RecordingArchiver.archive_partition` over the given recording refs.
- ``plain_copy``: the same recordings with requests + threads at the same concurrency (detail
  call for the signed link, streamed download to a file), nothing else.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

TOKEN = "demo-token"
YEASTAR_ID, YEASTAR_SECRET = "demo-client", "demo-secret"
#: Pages the fast-path check looks at before the timed run.
FAST_PATH_PAGES = 5
#: The per-PBX key for pages in flight (issue 10, item 2); older code has no such key.
INFLIGHT_KEY = "max_inflight_requests"
ROOT = Path(__file__).resolve().parents[1]
PBX_NAME = "bench"


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


def inflight_supported() -> bool:
    """Whether this code has the per-PBX `max_inflight_requests` key (config and resources)."""
    from cdr_assets.config import YeastarPbxConfig, ZorioPbxConfig
    from cdr_assets.vendors import YeastarResource, ZorioResource

    return all(
        INFLIGHT_KEY in cls.model_fields
        for cls in (ZorioPbxConfig, YeastarPbxConfig, ZorioResource, YeastarResource)
    )


# ---------------------------------------------------------------------- the fetch floor


def yeastar_window(day: date) -> tuple[str, str]:
    """The `cdr/search` window cdr_assets asks for (display MM/DD/YYYY 24 h, 60 min margins)."""
    start = datetime.combine(day, datetime.min.time()) - timedelta(minutes=60)
    end = datetime.combine(day, datetime.max.time().replace(microsecond=0)) + timedelta(minutes=60)
    return start.strftime("%m/%d/%Y %H:%M:%S"), end.strftime("%m/%d/%Y %H:%M:%S")


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    import requests

    session = requests.Session()
    base_rss = rss_now_mb()
    cpu0 = usage()["cpu_s"]
    started = time.perf_counter()
    if args.vendor == "zorio":
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        url = f"{args.url}/api/pbx/cdr"
        base = {"from": args.day, "to": args.day, "per_page": args.page_size}

        def get(page: int) -> tuple[int, int, int]:
            response = session.get(url, params={**base, "page": page}, timeout=120)
            response.raise_for_status()
            payload = json.loads(response.content)
            return len(payload["data"]), payload["total"], payload["last_page"]
    else:
        api = f"{args.url}/openapi/v1.0"
        login = {"username": YEASTAR_ID, "password": YEASTAR_SECRET}
        token = json.loads(session.post(f"{api}/get_token", json=login, timeout=60).content)
        start, end = yeastar_window(date.fromisoformat(args.day))
        base = {
            "access_token": token["access_token"],
            "start_time": start,
            "end_time": end,
            "page_size": args.page_size,
        }

        def get(page: int) -> tuple[int, int, int]:
            response = session.get(f"{api}/cdr/search", params={**base, "page": page}, timeout=120)
            response.raise_for_status()
            payload = json.loads(response.content)
            if payload.get("errcode") != 0:
                raise RuntimeError(f"cdr/search page {page}: errcode {payload.get('errcode')}")
            total = payload["total_number"]
            return len(payload.get("data", [])), total, -(-total // args.page_size)

    records, total, last = get(1)
    pages = 1
    if args.workers > 1 and last > 1:
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            for n, _, _ in pool.map(get, range(2, last + 1)):
                records += n
        pages = last
    else:
        while pages < last:
            pages += 1
            n, total, last = get(pages)
            records += n
    wall = time.perf_counter() - started
    return {
        "records": records,
        "api_total": total,
        "pages": pages,
        "wall_s": wall,
        "work_cpu_s": usage()["cpu_s"] - cpu0,
        "base_rss_mb": base_rss,
    }


# ---------------------------------------------------------------------- cdr_assets


def pbx_block(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    """The PBX's entry in a `cdr_assets.yaml`, as a user writes it (secrets as env refs)."""
    block: dict[str, Any] = {
        "name": PBX_NAME,
        "vendor": args.vendor,
        "base_url": base_url,
        "timezone": args.timezone,
        "start_date": "2020-01-01",
        "timeout_s": 120,
    }
    if args.vendor == "zorio":
        block |= {
            "api_token": {"env": "BENCH_ZORIO_TOKEN"},
            "per_page": args.page_size,
            "query_timezone": args.timezone,
        }
    else:
        block |= {
            "client_id": {"env": "BENCH_YEASTAR_ID"},
            "client_secret": {"env": "BENCH_YEASTAR_SECRET"},
            "page_size": args.page_size,
        }
    if getattr(args, "inflight", 0):
        block[INFLIGHT_KEY] = args.inflight
    if getattr(args, "no_recordings", False):
        block["archive_recordings"] = False
    return block


BENCH_SECRETS = {
    "BENCH_ZORIO_TOKEN": TOKEN,
    "BENCH_YEASTAR_ID": YEASTAR_ID,
    "BENCH_YEASTAR_SECRET": YEASTAR_SECRET,
}


def config_dict(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    return {
        "storage": {
            "data_dir": str(root / "data"),
            "duckdb_path": str(root / "data" / "cdr.duckdb"),
            "recordings_dir": str(root / "recordings"),
        },
        "pbxs": [pbx_block(args, args.url)],
    }


def setup(args: argparse.Namespace, root: Path) -> tuple[Any, Any, Any]:
    """(vendor resource, pbx config, storage config) built from a config dict, as a user would."""
    from cdr_assets.config import parse_config
    from cdr_assets.vendors import YeastarResource, ZorioResource

    config = parse_config(config_dict(args, root), source="benchmark config")
    pbx = config.pbxs[0]
    settings = pbx.resource_settings()
    if args.vendor == "zorio":  # the env refs, resolved
        return ZorioResource(**{**settings, "api_token": TOKEN}), pbx, config.storage
    settings |= {"client_id": YEASTAR_ID, "client_secret": YEASTAR_SECRET}
    return YeastarResource(**settings), pbx, config.storage


class _Notes(logging.Handler):
    """Collects the messages a logger emits while attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "could not be cut" in record.getMessage():
            self.messages.append(record.getMessage())


def check_fast_path(args: argparse.Namespace, root: Path, day: date) -> dict[str, Any]:
    """Whether the first pages of the day reach the normalizer unparsed (`JsonRecords`).

    Unmeasured, with a client of its own so the timed run starts as cold as before; what the
    client logs about pages it had to parse whole is kept as the reason.
    """
    from cdr_assets.records import JsonRecords
    from cdr_assets.vendors import yeastar, zorio

    client, _, _ = setup(args, root)
    notes = _Notes()
    loggers = (zorio.logger, yeastar.logger)
    for logger in loggers:
        logger.addHandler(notes)
    try:
        pages = client.fetch_cdrs(day, day).windows[0].fetch_pass()
        kinds = [
            isinstance(page.records, JsonRecords)
            for _, page in zip(range(FAST_PATH_PAGES), pages, strict=False)
        ]
        pages.close()
    finally:
        for logger in loggers:
            logger.removeHandler(notes)
        client.close()
    return {
        "yes": bool(kinds) and all(kinds),
        "pages": len(kinds),
        "json_records": sum(kinds),
        "slow_reason": " | ".join(notes.messages),
    }


class Profiler:
    """cProfile around the timed work when `--profile PATH` is given; a summary at PATH."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.profile: Any = None

    def __enter__(self) -> Profiler:
        if self.path:
            import cProfile

            self.profile = cProfile.Profile()
            self.profile.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.profile is None:
            return
        import io
        import pstats

        self.profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(self.profile, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(out.getvalue())


def run_cdr_assets(args: argparse.Namespace) -> dict[str, Any]:
    from cdr_assets.ingest import ingest_cdr_day
    from cdr_assets.schema import TABLE_SCHEMAS
    from cdr_assets.storage.duckdb import ensure_views

    if args.inflight and not inflight_supported():
        return {"unsupported": f"{INFLIGHT_KEY} not available"}
    with tempfile.TemporaryDirectory(prefix="bench-cdr-") as tmp:
        day = date.fromisoformat(args.day)
        fast_path = check_fast_path(args, Path(tmp) / "check", day)
        client, pbx, storage = setup(args, Path(tmp))
        base_rss = rss_now_mb()
        cpu0 = usage()["cpu_s"]
        with Profiler(args.profile):
            started = time.perf_counter()
            stats = ingest_cdr_day(
                client, pbx, storage, day, ingested_at=datetime.now(UTC), run_id="benchmark"
            )
            fetched = time.perf_counter()
            ensure_views(storage.duckdb_path, storage.data_dir, TABLE_SCHEMAS)
            wall = time.perf_counter() - started
        work_cpu = usage()["cpu_s"] - cpu0
        client.close()
    return {
        "records": stats.rows,
        "api_total": stats.api_total,
        "fetched": stats.fetched,
        "passes": stats.passes,
        "complete": stats.complete,
        "rejected": stats.rejected,
        "outside_day": stats.outside_day,
        "fast_path": fast_path,
        "wall_s": wall,
        "work_cpu_s": work_cpu,
        "views_s": wall - (fetched - started),
        "base_rss_mb": base_rss,
        "arrow_peak_mb": _arrow_peak_mb(),
    }


def _arrow_peak_mb() -> float:
    """The most Arrow's default memory pool held at once in this process (batches, row groups)."""
    import pyarrow as pa

    return pa.default_memory_pool().max_memory() / 2**20


def days_of(args: argparse.Namespace) -> list[date]:
    first = date.fromisoformat(args.day)
    return [first + timedelta(days=i) for i in range(args.days)]


def _run_inproc(args: argparse.Namespace, *, one_range: bool) -> dict[str, Any]:
    """The days of `args` in this process: `ingest_cdr_day` for each, one after the other, or
    (`one_range`) one `ingest_cdr_days` over them all, as a range run's step calls it."""
    from cdr_assets.ingest import ingest_cdr_day, ingest_cdr_days

    with tempfile.TemporaryDirectory(prefix="bench-inproc-") as tmp:
        client, pbx, storage = setup(args, Path(tmp))
        base_rss = rss_now_mb()
        cpu0 = usage()["cpu_s"]
        now = datetime.now(UTC)
        with Profiler(args.profile):
            started = time.perf_counter()
            if one_range:
                ingests = list(
                    ingest_cdr_days(
                        client, pbx, storage, days_of(args), ingested_at=now, run_id="benchmark"
                    )
                )
            else:
                ingests = [
                    ingest_cdr_day(client, pbx, storage, day, ingested_at=now, run_id="benchmark")
                    for day in days_of(args)
                ]
            wall = time.perf_counter() - started
        client.close()
    return {
        "records": sum(i.rows for i in ingests),
        "wall_s": wall,
        "work_cpu_s": usage()["cpu_s"] - cpu0,
        "base_rss_mb": base_rss,
        "days": args.days,
    }


def run_inproc_days(args: argparse.Namespace) -> dict[str, Any]:
    """`ingest_cdr_day` for each day, one after the other in this process; the sum of walls."""
    return _run_inproc(args, one_range=False)


def run_inproc_range(args: argparse.Namespace) -> dict[str, Any]:
    """One `ingest_cdr_days` over the days in this process: what a range run's step does."""
    return _run_inproc(args, one_range=True)


#: `--executor in_process`: run config for the asset job's default executor (multiprocess or in
#: process): the run's one step in the run's own process, no step process to start.
IN_PROCESS_RUN_CONFIG = '{"execution": {"config": {"in_process": {}}}}'


def _instance_home(args: argparse.Namespace, home: Path, env: dict[str, str]) -> None:
    """An existing instance, as a deployment has one: the repository's `dagster.yaml` (SQLite
    under DAGSTER_HOME) or `docs/dagster.postgres.yaml` on a fresh database of the PostgreSQL
    server named by DAGSTER_PG_* (`--instance postgres`), its storage created before timing."""
    if args.instance == "postgres":
        import psycopg2

        name = f"bench_{uuid.uuid4().hex[:10]}"
        con = psycopg2.connect(
            host=env["DAGSTER_PG_HOST"],
            port=env["DAGSTER_PG_PORT"],
            user=env["DAGSTER_PG_USERNAME"],
            password=env["DAGSTER_PG_PASSWORD"],
            dbname="postgres",
        )
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        env["DAGSTER_PG_DB"] = name
        shutil.copyfile(ROOT / "docs" / "dagster.postgres.yaml", home / "dagster.yaml")
    else:
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    subprocess.run(
        [dagster, "instance", "migrate"], env=env, capture_output=True, check=True, timeout=300
    )


def run_dagster(args: argparse.Namespace) -> dict[str, Any]:
    """`dg launch --assets bench/cdr --partition(-range)` from the repository, its own instance."""
    from cdr_assets.storage.parquet import read_partition

    dg = shutil.which("dg", path=str(Path(sys.executable).parent)) or shutil.which("dg")
    if dg is None:
        raise RuntimeError("the `dg` command is missing from this environment")
    days = days_of(args)
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp:
        root = Path(tmp)
        home = root / "dagster_home"
        home.mkdir()
        args.no_recordings = True
        config_path = root / "cdr_assets.yaml"
        config_path.write_text(yaml.safe_dump(config_dict(args, root), sort_keys=False))
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            **BENCH_SECRETS,
            "DAGSTER_HOME": str(home),
            "CDR_ASSETS_CONFIG": str(config_path),
            "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": sys.prefix,
        }
        _instance_home(args, home, env)
        where = (
            ["--partition", days[0].isoformat()]
            if len(days) == 1
            else ["--partition-range", f"{days[0].isoformat()}...{days[-1].isoformat()}"]
        )
        cmd = [dg, "launch", "--assets", f"{PBX_NAME}/cdr", *where]
        if args.executor == "in_process":
            cmd += ["--config-json", IN_PROCESS_RUN_CONFIG]
        cpu0 = usage()["cpu_s"]
        started = time.perf_counter()
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=4 * 3600
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"dg launch exited {done.returncode}: {tail[:800]}")
        rows = 0
        for day in days:
            table = read_partition(str(root / "data"), "cdr", PBX_NAME, day)
            rows += 0 if table is None else table.num_rows
        events = _run_events(env)
    return {
        "records": rows,
        "wall_s": wall,
        "work_cpu_s": usage()["cpu_s"] - cpu0,
        "base_rss_mb": rss_now_mb(),
        "days": len(days),
        "events": events,
        "command": " ".join(cmd[1:]),
    }


def _run_events(env: dict[str, str]) -> dict[str, int]:
    """The events the instance of `env` stored for its one run (each a write), by type."""
    import dagster as dg

    with environment(env), dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        return dict(
            collections.Counter(
                entry.dagster_event_type.value if entry.dagster_event_type else "LOG"
                for entry in instance.all_logs(run.run_id)
            )
        )


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """This process's environment with `env` set, restored afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------------- recordings


def run_recordings(args: argparse.Namespace) -> dict[str, Any]:
    from cdr_assets.recordings import RecordingArchiver, RecordingTask
    from cdr_assets.storage.archive import RecordingArchive

    refs = [r for r in args.refs.split(",") if r]
    day = date.fromisoformat(args.day)
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        client, pbx, storage = setup(args, Path(tmp))
        archiver = RecordingArchiver(
            client,
            RecordingArchive(storage.recordings_dir),
            pbx=pbx.name,
            concurrency=pbx.recording_concurrency,
            max_attempts=pbx.recording_attempts,
            missing_rechecks=pbx.missing_rechecks,
            progress_every_s=3600,
        )
        tasks = [RecordingTask(cdr_id=ref, recording_ref=ref, call_date=day) for ref in refs]
        base_rss = rss_now_mb()
        cpu0 = usage()["cpu_s"]
        with Profiler(args.profile):
            started = time.perf_counter()
            outcome = archiver.archive_partition(tasks, {})
            wall = time.perf_counter() - started
        work_cpu = usage()["cpu_s"] - cpu0
        client.close()
    counts = outcome.counts
    return {
        "records": counts.get("archived", 0),
        "asked": len(refs),
        "statuses": dict(counts),
        "bytes": outcome.bytes_downloaded,
        "wall_s": wall,
        "work_cpu_s": work_cpu,
        "concurrency": pbx.recording_concurrency,
        "base_rss_mb": base_rss,
    }


def run_plain_copy(args: argparse.Namespace) -> dict[str, Any]:
    """The archiver's HTTP work with nothing around it: per recording the detail call that
    mints the signed link, then the link streamed to a file, `--concurrency` threads."""
    import requests

    from cdr_assets.config import PbxConfigBase

    refs = [r for r in args.refs.split(",") if r]
    concurrency = args.concurrency or PbxConfigBase.model_fields["recording_concurrency"].default
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:

        def copy(ref: str) -> int:
            detail = session().get(
                f"{args.url}/api/pbx/cdr/{ref}",
                timeout=120,
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            detail.raise_for_status()
            url = detail.json()["data"]["recording"]["url"]
            size = 0
            with session().get(url, stream=True, timeout=120) as audio:
                audio.raise_for_status()
                with open(Path(tmp) / f"{ref}.wav", "wb") as out:
                    for chunk in audio.iter_content(1 << 20):
                        out.write(chunk)
                        size += len(chunk)
            return size

        base_rss = rss_now_mb()
        cpu0 = usage()["cpu_s"]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            sizes = list(pool.map(copy, refs))
        wall = time.perf_counter() - started
    return {
        "records": len(sizes),
        "asked": len(refs),
        "bytes": sum(sizes),
        "wall_s": wall,
        "work_cpu_s": usage()["cpu_s"] - cpu0,
        "concurrency": concurrency,
        "base_rss_mb": base_rss,
        "statuses": {"copied": len(sizes)},
    }


CONTENDERS = {
    "floor": run_floor,
    "cdr_assets": run_cdr_assets,
    "inproc_days": run_inproc_days,
    "inproc_range": run_inproc_range,
    "dagster": run_dagster,
    "recordings": run_recordings,
    "plain_copy": run_plain_copy,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contenders")
    p.add_argument("name", choices=sorted(CONTENDERS))
    p.add_argument("--url", required=True)
    p.add_argument("--vendor", choices=("zorio", "yeastar"), default="zorio")
    p.add_argument("--day", required=True, help="the (first) PBX-local day")
    p.add_argument("--days", type=int, default=1, help="inproc_days/dagster: days from --day")
    p.add_argument("--timezone", required=True)
    p.add_argument("--page-size", type=int, default=200, help="Zorio per_page/Yeastar page_size")
    p.add_argument("--workers", type=int, default=1, help="floor: threads paging (warm-up)")
    p.add_argument(
        "--inflight", type=int, default=0, help=f"cdr_assets: {INFLIGHT_KEY} (0: leave the key out)"
    )
    p.add_argument("--concurrency", type=int, default=0, help="plain_copy: threads")
    p.add_argument("--refs", default="", help="recordings: comma-separated CDR uuids")
    p.add_argument("--profile", default="", help="write a cProfile summary of the work here")
    p.add_argument(
        "--instance", choices=("sqlite", "postgres"), default="sqlite", help="dagster: storage"
    )
    p.add_argument(
        "--executor", choices=("default", "in_process"), default="default", help="dagster: run's"
    )
    args = p.parse_args(argv)
    result = CONTENDERS[args.name](args)
    result.update(usage())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
