"""The dlt contender: dlt's `rest_api` source over the simulated day into DuckDB.

Runs as a script in `benchmarks/.venv-dlt` (`python benchmarks/dlt_contender.py --url ...`), so
it imports only dlt and the standard library, never cdr_assets. Owns the dlt configuration a
user would write for the Zorio list endpoint (page_number paginator with `total_path`, bearer
auth, `data` selector) and measures like `contenders.py`: wall time of `pipeline.run` only, CPU
seconds and peak RSS of this process and its children, rows found in DuckDB afterwards. Prints
one JSON object as its last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def usage() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_s": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_rss_mb": max(own.ru_maxrss, kids.ru_maxrss) / 1024,
    }


def rss_now_mb() -> float:
    """Current resident set (MB) from /proc: what imports and setup already hold."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def yeastar_token(url: str) -> str:
    """An access token from `get_token` (what a dlt user does before building the source)."""
    body = json.dumps({"username": "demo-client", "password": "demo-secret"}).encode()
    request = urllib.request.Request(
        f"{url}/openapi/v1.0/get_token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["access_token"]


def yeastar_window(day: str) -> tuple[str, str]:
    """The window cdr_assets and the floor ask for (MM/DD/YYYY 24 h, 60 min margins)."""
    first = datetime.fromisoformat(day)
    start = first - timedelta(minutes=60)
    end = first + timedelta(days=1, minutes=59, seconds=59)
    return start.strftime("%m/%d/%Y %H:%M:%S"), end.strftime("%m/%d/%Y %H:%M:%S")


def source_config(args: argparse.Namespace) -> dict[str, Any]:
    """The `rest_api` config a user writes: one resource, its paginator, auth, data selector.

    dlt pages one endpoint sequentially (`parallelized` runs resources, not pages, side by
    side), so the best configuration for one day is this one resource with Parquet loading.
    """
    if args.vendor == "zorio":
        return {
            "client": {
                "base_url": args.url + "/",
                "auth": {"type": "bearer", "token": "demo-token"},
                "paginator": {
                    "type": "page_number",
                    "base_page": 1,
                    "page_param": "page",
                    # Laravel's number of pages; dlt stops once page >= last_page + base_page.
                    "total_path": "last_page",
                },
            },
            "resources": [
                {
                    "name": "cdr",
                    "endpoint": {
                        "path": "api/pbx/cdr",
                        "params": {"from": args.day, "to": args.day, "per_page": args.per_page},
                        "data_selector": "data",
                    },
                }
            ],
        }
    start, end = yeastar_window(args.day)
    return {
        "client": {
            "base_url": args.url + "/openapi/v1.0/",
            "auth": {
                "type": "api_key",
                "name": "access_token",
                "location": "query",
                "api_key": yeastar_token(args.url),
            },
            "paginator": {
                "type": "page_number",
                "base_page": 1,
                "page_param": "page",
                # total_number counts records, not pages: stop at the first empty page.
                "total_path": None,
                "stop_after_empty_page": True,
            },
        },
        "resources": [
            {
                "name": "cdr",
                "endpoint": {
                    "path": "cdr/search",
                    "params": {"start_time": start, "end_time": end, "page_size": args.per_page},
                    "data_selector": "data",
                },
            }
        ],
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    os.environ["DLT_DATA_DIR"] = str(root / "dlt-home")
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(source_config(args))
    pipeline = dlt.pipeline(
        pipeline_name="bench_cdr",
        pipelines_dir=str(root / "pipelines"),
        destination=dlt.destinations.duckdb(str(root / "cdr.duckdb")),
        dataset_name="bench",
        progress=None,
    )
    run_kwargs: dict[str, Any] = {}
    if args.mode == "parquet":
        run_kwargs["loader_file_format"] = "parquet"
    base_rss = rss_now_mb()
    cpu0 = usage()["cpu_s"]
    started = time.perf_counter()
    pipeline.run(source, **run_kwargs)
    wall = time.perf_counter() - started
    work_cpu = usage()["cpu_s"] - cpu0
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM cdr")[0][0]
    return {
        "records": int(rows),
        "wall_s": wall,
        "work_cpu_s": work_cpu,
        "base_rss_mb": base_rss,
        "dlt_version": dlt.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dlt_contender.py")
    p.add_argument("--url", required=True)
    p.add_argument("--day", required=True)
    p.add_argument("--per-page", type=int, default=200, help="per_page / page_size")
    p.add_argument("--vendor", choices=("zorio", "yeastar"), default="zorio")
    p.add_argument("--mode", choices=("parquet", "defaults"), required=True)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as tmp:
        result = run(args, Path(tmp))
    result.update(usage())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
