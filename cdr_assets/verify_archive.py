"""`cdr_assets verify-archive [--pbx NAME] [--from DAY] [--to DAY] [--sample N [--seed S]]
[--config PATH]`.

The command a compliance officer runs: every archived recording of the configured PBXs (or a
random sample) is read back and compared with its `recordings` manifest row (present, same
size and sha256, still audio of the manifest's format); every mismatch is listed, and the exit
status is 1 when there is one (0: all match, 2: a bad argument or config). The comparison is
`cdr_assets.storage.audit`; this module owns the command line only. Nothing is repaired: a
re-run of `<pbx>/recordings` for the listed days downloads what is gone.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from cdr_assets.config import load_config
from cdr_assets.errors import ConfigError
from cdr_assets.storage.audit import audit_archive


def main(argv: list[str] | None = None, prog: str = "cdr_assets verify-archive") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Read back archived recordings and compare them with the manifest.",
    )
    parser.add_argument("--pbx", action="append", help="only this PBX (repeatable)")
    parser.add_argument("--from", dest="first", type=date.fromisoformat, help="first day")
    parser.add_argument("--to", dest="last", type=date.fromisoformat, help="last day")
    parser.add_argument("--sample", type=int, help="re-read only this many, chosen at random")
    parser.add_argument(
        "--seed",
        help="seed of the random sample: a recordings_audit check's `seed` (with its days and "
        "sample) reads the same files again",
    )
    parser.add_argument(
        "--config", help="config file (default: $CDR_ASSETS_CONFIG, else ./cdr_assets.yaml)"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configured = [pbx.name for pbx in config.pbxs]
    unknown = sorted(set(args.pbx or []) - set(configured))
    if unknown:
        print(
            f"no PBX {', '.join(map(repr, unknown))} in the config (known: "
            f"{', '.join(configured)})",
            file=sys.stderr,
        )
        return 2
    if args.sample is not None and args.sample < 1:
        print("--sample must be at least 1", file=sys.stderr)
        return 2
    storage = config.storage
    audit = audit_archive(
        storage.data_dir,
        args.pbx or configured,
        first=args.first,
        last=args.last,
        sample=args.sample,
        seed=args.seed,
        recordings_storage_options=storage.recordings_storage_options,
    )
    print(
        f"checked {audit.checked} of {audit.archived} archived recordings in {audit.days} "
        f"day{'' if audit.days == 1 else 's'} ({audit.checked_bytes / 2**20:.1f} MiB read): "
        f"{len(audit.problems) or 'no'} problem{'' if len(audit.problems) == 1 else 's'}"
    )
    for problem in audit.problems:
        print(
            f"  {problem.pbx} {problem.call_date} {problem.cdr_id}: {problem.problem} "
            f"({problem.uri})"
        )
    return 1 if audit.problems else 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m cdr_assets.verify_archive"))
