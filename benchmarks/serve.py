"""The benchmark's simulator process: `python -m benchmarks.serve --calls N ...`.

Owns starting a `Simulator` with the benchmark's day (both Zorio zones equal, the list envelope
every contender gets, a page cache big enough for the whole day) and the faults the recording
benchmark needs (one long recording), printing its URL and serving until SIGTERM. It measures
nothing itself.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from cdr_assets.simulator import Simulator, SimulatorConfig
from cdr_assets.simulator.config import ZORIO_ENVELOPES

#: The list envelope benchmarked by default: what a real Zorio (Laravel) server sends.
DEFAULT_ENVELOPE = "laravel"


def bench_config(
    calls: int,
    seed: int,
    timezone: str,
    page_cache_mb: int,
    envelope: str = DEFAULT_ENVELOPE,
    *,
    latency_ms: float = 0.0,
    jitter_ms: float = 0.0,
    bandwidth: int = 0,
) -> SimulatorConfig:
    """The simulated PBXs of a benchmark: Zorio reads `from`/`to` in its own zone and writes
    its list pages in `envelope` ("laravel": the full paginator as PHP's json_encode writes it,
    "minimal": the page's five keys); every answer waits `latency_ms` (+ up to `jitter_ms`) and
    each body is sent at most at `bandwidth` bytes/s (0: unlimited), as a remote PBX's."""
    return SimulatorConfig(
        seed=seed,
        calls_per_day=calls,
        page_cache_mb=page_cache_mb,
        latency_ms=latency_ms,
        latency_jitter_ms=jitter_ms,
        bandwidth_bytes_per_s=bandwidth,
    ).with_overrides(zorio={"timezone": timezone, "date_timezone": timezone, "envelope": envelope})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    p.add_argument("--calls", type=int, required=True, help="calls per day")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timezone", required=True, help="Zorio PBX zone == its date_timezone")
    p.add_argument("--page-cache-mb", type=int, default=64)
    p.add_argument(
        "--envelope",
        choices=ZORIO_ENVELOPES,
        default=DEFAULT_ENVELOPE,
        help="Zorio list envelope (default: %(default)s)",
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="per request, fixed part")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="per request, uniform 0..N more")
    p.add_argument("--bandwidth", type=int, default=0, help="bytes/s per response (0: no cap)")
    p.add_argument(
        "--recording-seconds",
        action="append",
        default=[],
        metavar="REF=SECONDS",
        help="override a recording's length (repeatable)",
    )
    args = p.parse_args(argv)
    sim = Simulator(
        bench_config(
            args.calls,
            args.seed,
            args.timezone,
            args.page_cache_mb,
            args.envelope,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            bandwidth=args.bandwidth,
        )
    )
    for item in args.recording_seconds:
        ref, _, seconds = item.partition("=")
        sim.faults.recording_seconds[ref] = int(seconds)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    print(f"simulator listening on {sim.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        cache = sim.page_cache
        print(
            f"page cache: {len(cache)} pages, {cache.size / 2**20:.0f} MB, "
            f"{cache.hits} hits, {cache.misses} misses",
            file=sys.stderr,
            flush=True,
        )
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
