"""The `cdr_assets` console command: `cdr_assets verify-archive ...`, `cdr_assets auth-breaker ...`.

Only dispatches to the modules that own each command (`verify_archive`, `auth_breaker`), so
each stays runnable as `python -m cdr_assets.<module>` too.
"""

from __future__ import annotations

import sys

from cdr_assets import auth_breaker, verify_archive

COMMANDS = {
    "verify-archive": "read back archived recordings and compare them with the manifest",
    "auth-breaker": "show or reset the auth breakers of refused credentials (show|reset)",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print("usage: cdr_assets COMMAND [options]\n\ncommands:", file=sys.stderr)
        for name, summary in COMMANDS.items():
            print(f"  {name:16} {summary}", file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    command, rest = args[0], args[1:]
    if command == "verify-archive":
        return verify_archive.main(rest)
    return auth_breaker.main(rest)


if __name__ == "__main__":
    sys.exit(main())
