"""`python -m cdr_assets.auth_breaker show|reset [--pbx NAME] [--config PATH]`.

The command an operator runs when a PBX refused its credential: `show` prints each PBX's auth
breaker (state, when it opened, when the cool-down ends, the endpoint, errcode and reason) and
`reset` closes it so the next run tries at once. It reads `storage.state_dir` from the config
file (`--config`, else `$CDR_ASSETS_CONFIG`, else ./cdr_assets.yaml). This module owns the
command line only; the breaker itself is `cdr_assets.vendors.auth_breaker`. It prints no secret
and no more of a credential's fingerprint than a short prefix.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from cdr_assets.config import load_config
from cdr_assets.errors import ConfigError
from cdr_assets.vendors.auth_breaker import (
    FINGERPRINT_SHOWN,
    BreakerState,
    format_utc,
    list_states,
    reset,
)


def describe(state: BreakerState, now: datetime) -> list[str]:
    """The lines `show` prints for one open (or half-open) breaker."""
    label = state.label(now)
    then = (
        "no attempt until then"
        if label == "open"
        else "over: the next attempt goes to the PBX, once"
    )
    codes = ", ".join(
        part
        for part in (
            f"HTTP {state.http_status}" if state.http_status is not None else "",
            f"errcode {state.errcode}" if state.errcode is not None else "",
        )
        if part
    )
    return [
        f"{state.pbx}: {label}",
        f"  opened at        {format_utc(state.opened_at)}",
        f"  cool-down ends   {format_utc(state.cooldown_until)} ({then})",
        f"  endpoint         {state.endpoint}{f' ({codes})' if codes else ''}",
        f"  reason           {state.reason}",
        f"  credential       fingerprint {state.fingerprint[:FINGERPRINT_SHOWN]}... (a changed "
        "credential is tried at once)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdr_assets.auth_breaker",
        description="Show or reset the auth breakers that stop a refused PBX credential from "
        "being retried (and the PBX from blocking this machine's IP).",
    )
    parser.add_argument("action", choices=("show", "reset"))
    parser.add_argument("--pbx", help="only this PBX (its name in the config file)")
    parser.add_argument(
        "--config", help="config file (default: $CDR_ASSETS_CONFIG, else ./cdr_assets.yaml)"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    state_dir = config.storage.state_dir
    configured = [pbx.name for pbx in config.pbxs]
    states = {state.pbx: state for state in list_states(state_dir)}
    names = list(dict.fromkeys([*configured, *states]))
    if args.pbx is not None:
        if args.pbx not in names:
            print(
                f"no PBX {args.pbx!r} in {state_dir} or the config (known: "
                f"{', '.join(names) or 'none'})",
                file=sys.stderr,
            )
            return 2
        names = [args.pbx]
    now = datetime.now(UTC)
    print(f"auth breakers in {state_dir}")
    for name in names:
        state = states.get(name)
        if args.action == "reset":
            print(f"{name}: {'reset' if reset(state_dir, name) else 'was closed'}")
        elif state is None:
            print(f"{name}: closed")
        else:
            print("\n".join(describe(state, now)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
