"""`python -m cdr_assets.simulator`: serve both simulated PBX APIs until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .config import SimulatorConfig, YeastarSimConfig, ZorioSimConfig
from .server import Simulator


def build_parser() -> argparse.ArgumentParser:
    y, z, c = YeastarSimConfig(), ZorioSimConfig(), SimulatorConfig()
    p = argparse.ArgumentParser(
        prog="python -m cdr_assets.simulator",
        description="Loopback simulator of the Yeastar P-Series and Zorio PBX APIs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed", type=int, default=c.seed)
    p.add_argument("--calls-per-day", type=int, default=c.calls_per_day)
    p.add_argument("--recording-ratio", type=float, default=c.recording_ratio)
    p.add_argument("--page-cache-mb", type=int, default=c.page_cache_mb,
                   help="memory bound of the rendered-page LRU (0: off)")
    p.add_argument("--yeastar-timezone", default=y.timezone)
    p.add_argument("--yeastar-date-format", default=y.date_format)
    p.add_argument("--yeastar-clock", type=int, choices=(12, 24), default=y.clock)
    p.add_argument("--yeastar-client-id", default=y.client_id)
    p.add_argument("--yeastar-client-secret", default=y.client_secret)
    p.add_argument("--yeastar-max-tokens", type=int, default=y.max_tokens)
    p.add_argument("--zorio-timezone", default=z.timezone)
    p.add_argument("--zorio-date-timezone", default=z.date_timezone)
    p.add_argument("--zorio-token", default=z.api_token)
    p.add_argument("--zorio-signing-key", default=z.signing_key)
    p.add_argument("--zorio-max-window-days", type=int, default=z.max_window_days)
    p.add_argument("--access-token-ttl", type=int, default=y.access_token_ttl)
    p.add_argument("--refresh-token-ttl", type=int, default=y.refresh_token_ttl)
    p.add_argument("--link-ttl", type=int, default=y.link_ttl, help="both vendors' link TTL")
    p.add_argument("--recording-format", choices=("wav", "mp3"), default=y.recording_format,
                   help="Yeastar recording format (Zorio always serves wav)")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        seed=args.seed,
        calls_per_day=args.calls_per_day,
        recording_ratio=args.recording_ratio,
        page_cache_mb=args.page_cache_mb,
        yeastar=YeastarSimConfig(
            timezone=args.yeastar_timezone,
            date_format=args.yeastar_date_format,
            clock=args.yeastar_clock,
            client_id=args.yeastar_client_id,
            client_secret=args.yeastar_client_secret,
            access_token_ttl=args.access_token_ttl,
            refresh_token_ttl=args.refresh_token_ttl,
            link_ttl=args.link_ttl,
            recording_format=args.recording_format,
            max_tokens=args.yeastar_max_tokens,
        ),
        zorio=ZorioSimConfig(
            timezone=args.zorio_timezone,
            date_timezone=args.zorio_date_timezone,
            api_token=args.zorio_token,
            link_ttl=args.link_ttl,
            max_window_days=args.zorio_max_window_days,
            signing_key=args.zorio_signing_key,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"invalid simulator option: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim = Simulator(config, host=args.host, port=args.port).start()
    print(f"simulator listening on {sim.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
