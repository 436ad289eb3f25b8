"""`python -m cdr_assets.simulator`: serve both simulated PBX APIs until SIGTERM/SIGINT.

Owns the command line: one flag per config field (server-style switches included), flags that
arm runtime faults at start (on the root PBXs), and `--fleet FILE`, further PBXs each served
under `/pbx/<name>`; `--help` documents them, the faults in its epilog. It must not implement
any behaviour itself: it builds a `SimulatorConfig` (and a fleet) and calls `sim.faults`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .config import (
    AUDIO_CONTENT_TYPES,
    RECORD_FILE_SUFFIXES,
    RECORDING_FORMATS,
    YEASTAR_DATE_FORMATS,
    YEASTAR_ORDERS,
    ZORIO_DETAIL_RECORDINGS,
    ZORIO_ENVELOPES,
    SimulatorConfig,
    YeastarSimConfig,
    ZorioSimConfig,
)
from .faults import DELETE, Faults
from .fleet import load_fleet
from .server import Simulator

EPILOG = """\
runtime faults (`sim.faults`, thread-safe, all off by default; a flag arms one at start):
  fail_next(prefix, status, times=1, retry_after=None, body=None, content_type=...)
      the next requests under a path prefix get that status (and body): 429, 5xx, HTML pages
      e.g. sim.faults.fail_next("/api/pbx/cdr", 429, times=2, retry_after="1")
           --fail-next /api/pbx/cdr:429:2
  reset_next(prefix, times=1, after_bytes=64)
      headers with the full Content-Length, `after_bytes` of the body, then a TCP reset
      e.g. sim.faults.reset_next("/openapi/v1.0/cdr/search", after_bytes=100)
           --reset-next /openapi/v1.0/cdr/search:1:100
  delay_next(prefix, seconds, times=1)
      wait before answering (slower than the client's timeout)
      e.g. sim.faults.delay_next("/api/pbx/cdr", 5)        --delay-next /api/pbx/cdr:5
  truncate_body_next(prefix, times=1)
      a complete response whose body is the first half of the real one (truncated JSON, 200)
      e.g. sim.faults.truncate_body_next("/api/pbx/cdr")    --truncate-body-next /api/pbx/cdr
  drift(vendor, day, at_page=, action="insert"|"delete", where="ahead"|"behind", count=1)
      once, at the first list request for page at_page covering the PBX-local day, insert or
      delete calls of that day before (ahead: later pages shift) or after the page; persists,
      logged in `drift_log`, visible in sim.calls(vendor, day)
      e.g. sim.faults.drift("zorio", "2026-06-01", at_page=3, action="insert", where="ahead")
           --drift zorio:2026-06-01:3:insert:ahead:1
  drift_log
      what every drift did (DriftEvent: vendor, day, page, action, where, ids, positions,
      total_before, total_after)
      e.g. [event.ids for event in sim.faults.drift_log]
  repeat_across_pages(vendor, day, page=)
      once, page `page` starts with the last record of page - 1 (one record twice, one never)
      e.g. sim.faults.repeat_across_pages("yeastar", "2026-06-01", page=2)
           --repeat-across-pages yeastar:2026-06-01:2
  override_record(vendor, cdr_id, **fields | replace_with=value)
      list the record with that uid/uuid with fields replaced (DELETE removes one) or as any
      JSON value; also in sim.calls
      e.g. sim.faults.override_record("zorio", uuid, duration="forty", uuid=DELETE)
           --override-record 'zorio:<uuid>:duration="forty"'  (-FIELD removes, =JSON replaces)
  total_offset
      added to every reported total (count mismatch)
      e.g. sim.faults.total_offset = 3                     --total-offset 3
  expire_tokens()
      every Yeastar access token issued so far expires now (refresh tokens still work)
      e.g. sim.faults.expire_tokens()
  throttle_bytes_per_s
      cap on audio download speed
      e.g. sim.faults.throttle_bytes_per_s = 50_000        --throttle-bytes-per-s 50000
  truncate_next_recordings
      next N audio bodies stop after about half (full Content-Length, connection closed)
      e.g. sim.faults.truncate_next_recordings = 1         --truncate-next-recordings 1
  corrupt_next_recordings
      next N audio bodies get a garbage header (same length)
      e.g. sim.faults.corrupt_next_recordings = 1          --corrupt-next-recordings 1
  missing_recordings
      refs listed with a recording that cannot be downloaded
      e.g. sim.faults.missing_recordings.add(uuid)         --missing-recording <ref>
  withheld_recordings
      refs whose CDR shows no recording yet (remove them to make it "appear late")
      e.g. sim.faults.withheld_recordings.add(record_file) --withheld-recording <ref>
  recording_seconds
      ref -> recording length in seconds instead of the talk time
      e.g. sim.faults.recording_seconds[uuid] = 2000       --recording-seconds <ref>=2000
  clear()
      switch every fault off and undo drift
      e.g. sim.faults.clear()
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, the epilog as written."""


def build_parser() -> argparse.ArgumentParser:
    y, z, c = YeastarSimConfig(), ZorioSimConfig(), SimulatorConfig()
    p = argparse.ArgumentParser(
        prog="python -m cdr_assets.simulator",
        description="Loopback simulator of the Yeastar P-Series and Zorio PBX APIs. Every "
        "server-style switch is off by default (today's behaviour).",
        formatter_class=_HelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (any of 127/8 works)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--seed", type=int, default=c.seed, help="seed of the synthetic calls")
    p.add_argument(
        "--calls-per-day",
        type=int,
        default=c.calls_per_day,
        help="calls per PBX-local day, per vendor",
    )
    p.add_argument(
        "--recording-ratio",
        type=float,
        default=c.recording_ratio,
        help="fraction of answered calls with a recording",
    )
    p.add_argument(
        "--page-cache-mb",
        type=int,
        default=c.page_cache_mb,
        help="memory bound of the rendered-page LRU (0: off)",
    )
    p.add_argument(
        "--fleet",
        metavar="FILE",
        default=None,
        help="also serve the PBXs of this fleet file (YAML: `defaults`, `pbxs` of flat "
        "blocks), each at /pbx/<name> with its own seed, zone, credentials and "
        "format; e.g. examples/fleet/simulator.yaml. The other flags configure "
        "the root PBXs only",
    )

    s = p.add_argument_group("server styles (both vendors)")
    s.add_argument(
        "--pretty",
        action="store_true",
        help="JSON bodies pretty-printed as PHP's JSON_PRETTY_PRINT (4 spaces)",
    )
    s.add_argument(
        "--extra-keys",
        action="store_true",
        help="undocumented keys in list envelopes (Zorio meta, Yeastar request_id) "
        "and in every record (scalar, null, nested object, array of objects)",
    )
    s.add_argument(
        "--json-content-type",
        default=c.json_content_type,
        help="Content-Type of every JSON reply, e.g. 'application/json; charset=utf-8'",
    )
    s.add_argument(
        "--audio-content-type",
        choices=AUDIO_CONTENT_TYPES,
        default=c.audio_content_type,
        help="audio replies: audio/wav|audio/mpeg, application/octet-stream, or no "
        "Content-Type at all",
    )

    n = p.add_argument_group("network (a remote PBX)")
    n.add_argument(
        "--latency-ms",
        type=float,
        default=c.latency_ms,
        help="every request waits this long before its answer (requests overlap)",
    )
    n.add_argument(
        "--latency-jitter-ms",
        type=float,
        default=c.latency_jitter_ms,
        help="plus a uniform random 0..this (seeded by --seed)",
    )
    n.add_argument(
        "--bandwidth-bytes-per-s",
        type=int,
        default=c.bandwidth_bytes_per_s,
        help="cap on each response body's speed (0: unlimited)",
    )

    g = p.add_argument_group("Yeastar P-Series")
    g.add_argument("--yeastar-timezone", default=y.timezone, help="PBX zone (IANA)")
    g.add_argument(
        "--yeastar-date-format",
        choices=YEASTAR_DATE_FORMATS,
        default=y.date_format,
        help="display format cdr/search parses and CDR times show",
    )
    g.add_argument(
        "--yeastar-clock", type=int, choices=(12, 24), default=y.clock, help="12 adds AM/PM"
    )
    g.add_argument("--yeastar-client-id", default=y.client_id, help="get_token username")
    g.add_argument("--yeastar-client-secret", default=y.client_secret, help="get_token password")
    g.add_argument(
        "--yeastar-max-tokens", type=int, default=y.max_tokens, help="live access tokens per app"
    )
    g.add_argument(
        "--yeastar-max-auth-failures",
        type=int,
        default=y.max_auth_failures,
        help="consecutive failed logins before the IP is blocked",
    )
    g.add_argument(
        "--yeastar-list-days",
        type=int,
        default=y.list_days,
        help="PBX-local days cdr/list and recording/list cover",
    )
    g.add_argument(
        "--access-token-ttl",
        "--yeastar-access-token-ttl",
        dest="access_token_ttl",
        type=int,
        default=y.access_token_ttl,
        help="access token lifetime (s)",
    )
    g.add_argument(
        "--refresh-token-ttl",
        "--yeastar-refresh-token-ttl",
        dest="refresh_token_ttl",
        type=int,
        default=y.refresh_token_ttl,
        help="refresh token lifetime (s)",
    )
    g.add_argument(
        "--recording-format",
        "--yeastar-recording-format",
        dest="recording_format",
        choices=RECORDING_FORMATS,
        default=y.recording_format,
        help="Yeastar download format (Zorio always serves wav)",
    )
    g.add_argument(
        "--yeastar-order",
        choices=YEASTAR_ORDERS,
        default=y.order,
        help="cdr/search and cdr/list: oldest (asc) or newest (desc) first",
    )
    g.add_argument(
        "--yeastar-reported-date-format",
        choices=YEASTAR_DATE_FORMATS,
        default=y.reported_date_format,
        help="system/information reports this format while cdr/search still parses "
        "only --yeastar-date-format",
    )
    g.add_argument(
        "--yeastar-end-time-exclusive",
        action="store_true",
        help="cdr/search end_time excludes its own second",
    )
    g.add_argument(
        "--yeastar-record-file-suffix",
        choices=RECORD_FILE_SUFFIXES,
        default=y.record_file_suffix,
        help="record_file names end with the download format, or always .wav (MP3 "
        "bytes behind a .wav name with --recording-format mp3)",
    )
    g.add_argument(
        "--yeastar-link-ttl",
        type=int,
        default=None,
        help="download_resource_url lifetime (s); default --link-ttl",
    )

    g = p.add_argument_group("Zorio")
    g.add_argument("--zorio-timezone", default=z.timezone, help="PBX zone (IANA)")
    g.add_argument(
        "--zorio-date-timezone",
        default=z.date_timezone,
        help="zone the server reads from/to dates in",
    )
    g.add_argument(
        "--zorio-token",
        "--zorio-api-token",
        dest="zorio_token",
        default=z.api_token,
        help="bearer token",
    )
    g.add_argument("--zorio-signing-key", default=z.signing_key, help="HMAC key of signed URLs")
    g.add_argument(
        "--zorio-max-window-days",
        type=int,
        default=z.max_window_days,
        help="to - from must stay below this many days",
    )
    g.add_argument(
        "--zorio-envelope",
        choices=ZORIO_ENVELOPES,
        default=z.envelope,
        help="list envelope: the page's 5 keys, or Laravel's full paginator written "
        "by PHP's json_encode",
    )
    g.add_argument(
        "--zorio-detail-recording",
        choices=ZORIO_DETAIL_RECORDINGS,
        default=z.detail_recording,
        help="absent: detail says recording_available but has no recording object",
    )
    g.add_argument(
        "--zorio-file-size-delta",
        type=int,
        default=z.file_size_delta,
        help="detail recording.file_size is off by this many bytes",
    )
    g.add_argument(
        "--zorio-recording-base-url",
        default=z.recording_base_url,
        help="signed URLs point at this base instead of the request's Host",
    )
    g.add_argument(
        "--zorio-audio-redirect-base-url",
        default=z.audio_redirect_base_url,
        help="the signed audio endpoint 302s to this base (a CDN)",
    )
    g.add_argument(
        "--zorio-link-ttl",
        type=int,
        default=None,
        help="signed URL lifetime (s); default --link-ttl",
    )
    p.add_argument("--link-ttl", type=int, default=y.link_ttl, help="both vendors' link TTL")

    f = p.add_argument_group("runtime faults armed at start (repeatable; see below)")
    for flag, metavar, fault in (
        ("--fail-next", "PREFIX:STATUS[:TIMES]", "fail_next"),
        ("--reset-next", "PREFIX[:TIMES[:AFTER_BYTES]]", "reset_next"),
        ("--delay-next", "PREFIX:SECONDS[:TIMES]", "delay_next"),
        ("--truncate-body-next", "PREFIX[:TIMES]", "truncate_body_next"),
        ("--drift", "VENDOR:DAY:PAGE:ACTION[:WHERE[:COUNT]]", "drift"),
        ("--repeat-across-pages", "VENDOR:DAY:PAGE", "repeat_across_pages"),
        ("--override-record", "VENDOR:CDR_ID:FIELD=JSON|-FIELD|=JSON", "override_record"),
        ("--missing-recording", "REF", "missing_recordings"),
        ("--withheld-recording", "REF", "withheld_recordings"),
        ("--recording-seconds", "REF=SECONDS", "recording_seconds"),
    ):
        f.add_argument(flag, action="append", default=[], metavar=metavar, help=f"arm {fault}")
    for flag, fault, kind in (
        ("--total-offset", "total_offset", int),
        ("--throttle-bytes-per-s", "throttle_bytes_per_s", int),
        ("--truncate-next-recordings", "truncate_next_recordings", int),
        ("--corrupt-next-recordings", "corrupt_next_recordings", int),
    ):
        f.add_argument(flag, type=kind, default=getattr(Faults(), fault), help=f"set {fault}")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        seed=args.seed,
        calls_per_day=args.calls_per_day,
        recording_ratio=args.recording_ratio,
        page_cache_mb=args.page_cache_mb,
        pretty=args.pretty,
        extra_keys=args.extra_keys,
        json_content_type=args.json_content_type,
        audio_content_type=args.audio_content_type,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        bandwidth_bytes_per_s=args.bandwidth_bytes_per_s,
        yeastar=YeastarSimConfig(
            timezone=args.yeastar_timezone,
            date_format=args.yeastar_date_format,
            clock=args.yeastar_clock,
            client_id=args.yeastar_client_id,
            client_secret=args.yeastar_client_secret,
            access_token_ttl=args.access_token_ttl,
            refresh_token_ttl=args.refresh_token_ttl,
            link_ttl=args.link_ttl if args.yeastar_link_ttl is None else args.yeastar_link_ttl,
            recording_format=args.recording_format,
            max_tokens=args.yeastar_max_tokens,
            max_auth_failures=args.yeastar_max_auth_failures,
            list_days=args.yeastar_list_days,
            order=args.yeastar_order,
            reported_date_format=args.yeastar_reported_date_format,
            end_time_exclusive=args.yeastar_end_time_exclusive,
            record_file_suffix=args.yeastar_record_file_suffix,
        ),
        zorio=ZorioSimConfig(
            timezone=args.zorio_timezone,
            date_timezone=args.zorio_date_timezone,
            api_token=args.zorio_token,
            link_ttl=args.link_ttl if args.zorio_link_ttl is None else args.zorio_link_ttl,
            max_window_days=args.zorio_max_window_days,
            signing_key=args.zorio_signing_key,
            envelope=args.zorio_envelope,
            detail_recording=args.zorio_detail_recording,
            file_size_delta=args.zorio_file_size_delta,
            recording_base_url=args.zorio_recording_base_url,
            audio_redirect_base_url=args.zorio_audio_redirect_base_url,
        ),
    )


def _parts(value: str, least: int, most: int) -> list[str]:
    parts = value.split(":")
    if not least <= len(parts) <= most or not all(parts):
        raise ValueError(f"expected {least} to {most} ':'-separated parts")
    return parts


def _fail_next(faults: Faults, value: str) -> None:
    prefix, status, *rest = _parts(value, 2, 3)
    faults.fail_next(prefix, int(status), times=int(rest[0]) if rest else 1)


def _reset_next(faults: Faults, value: str) -> None:
    prefix, *rest = _parts(value, 1, 3)
    faults.reset_next(
        prefix, times=int(rest[0]) if rest else 1, after_bytes=int(rest[1]) if len(rest) > 1 else 64
    )


def _delay_next(faults: Faults, value: str) -> None:
    prefix, seconds, *rest = _parts(value, 2, 3)
    faults.delay_next(prefix, float(seconds), times=int(rest[0]) if rest else 1)


def _truncate_body_next(faults: Faults, value: str) -> None:
    prefix, *rest = _parts(value, 1, 2)
    faults.truncate_body_next(prefix, times=int(rest[0]) if rest else 1)


def _drift(faults: Faults, value: str) -> None:
    vendor, day, page, action, *rest = _parts(value, 4, 6)
    faults.drift(
        vendor,
        day,
        at_page=int(page),
        action=action,
        where=rest[0] if rest else "ahead",
        count=int(rest[1]) if len(rest) > 1 else 1,
    )


def _repeat_across_pages(faults: Faults, value: str) -> None:
    vendor, day, page = _parts(value, 3, 3)
    faults.repeat_across_pages(vendor, day, page=int(page))


def _override_record(faults: Faults, value: str) -> None:
    vendor, cdr_id, spec = (value.split(":", 2) + ["", ""])[:3]
    if not vendor or not cdr_id or not spec:
        raise ValueError("expected VENDOR:CDR_ID:SPEC")
    try:
        if spec.startswith("="):
            faults.override_record(vendor, cdr_id, replace_with=json.loads(spec[1:]))
        elif spec.startswith("-"):
            faults.override_record(vendor, cdr_id, **{spec[1:]: DELETE})
        else:
            name, sep, raw = spec.partition("=")
            if not sep or not name:
                raise ValueError("SPEC must be FIELD=JSON, -FIELD or =JSON")
            faults.override_record(vendor, cdr_id, **{name: json.loads(raw)})
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from exc


def _recording_seconds(faults: Faults, value: str) -> None:
    ref, sep, seconds = value.rpartition("=")
    if not sep or not ref:
        raise ValueError("expected REF=SECONDS")
    faults.recording_seconds[ref] = int(seconds)


_FAULT_FLAGS = (
    ("fail_next", _fail_next),
    ("reset_next", _reset_next),
    ("delay_next", _delay_next),
    ("truncate_body_next", _truncate_body_next),
    ("drift", _drift),
    ("repeat_across_pages", _repeat_across_pages),
    ("override_record", _override_record),
    ("recording_seconds", _recording_seconds),
)


def apply_fault_flags(faults: Faults, args: argparse.Namespace) -> None:
    """Arm the runtime faults the command line asks for (ValueError names the bad flag)."""
    for dest, arm in _FAULT_FLAGS:
        for value in getattr(args, dest):
            try:
                arm(faults, value)
            except ValueError as exc:
                raise ValueError(f"--{dest.replace('_', '-')} {value!r}: {exc}") from exc
    faults.total_offset = args.total_offset
    faults.throttle_bytes_per_s = args.throttle_bytes_per_s
    faults.truncate_next_recordings = args.truncate_next_recordings
    faults.corrupt_next_recordings = args.corrupt_next_recordings
    faults.missing_recordings.update(args.missing_recording)
    faults.withheld_recordings.update(args.withheld_recording)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fleet = load_fleet(args.fleet) if args.fleet else ()
        sim = Simulator(config_from_args(args), host=args.host, port=args.port, fleet=fleet)
        apply_fault_flags(sim.faults, args)
    except ValueError as exc:
        print(f"invalid simulator option: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    print(f"simulator listening on {sim.base_url}", flush=True)
    for pbx in sim.fleet.values():
        print(f"  {pbx.vendor} PBX {pbx.name!r} ({pbx.timezone}) at {pbx.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
