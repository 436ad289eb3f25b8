"""The isolated virtualenv the dlt contender runs in (`benchmarks/.venv-dlt`, never committed).

Owns creating it and installing `dlt[duckdb,parquet]` into it, so dlt and its dependencies
never touch the project's own environment. It must not install anything anywhere else.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

VENV_DIR = Path(__file__).resolve().parent / ".venv-dlt"
REQUIREMENT = "dlt[duckdb,parquet]"


def venv_python(venv_dir: Path = VENV_DIR) -> Path:
    return venv_dir / "bin" / "python"


def dlt_version(python: Path) -> str | None:
    """The installed dlt version in that interpreter, or None."""
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import dlt, duckdb, pyarrow; print(dlt.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() or None if probe.returncode == 0 else None


def ensure_dlt_venv(venv_dir: Path = VENV_DIR, log=print) -> tuple[Path | None, str]:  # noqa: ANN001
    """(python of a venv with dlt, "dlt <version>") or (None, why it could not be made)."""
    python = venv_python(venv_dir)
    version = dlt_version(python)
    if version:
        return python, f"dlt {version}"
    try:
        if not python.exists():
            log(f"creating {venv_dir} ...")
            venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        log(f"installing {REQUIREMENT} into {venv_dir} (once) ...")
        pip = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                REQUIREMENT,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create the dlt venv: {exc}"
    if pip.returncode != 0:
        tail = (pip.stderr or pip.stdout).strip().splitlines()[-3:]
        return None, "pip install failed: " + " | ".join(tail)
    version = dlt_version(python)
    if not version:
        return None, "dlt installed but does not import"
    return python, f"dlt {version}"


if __name__ == "__main__":
    found, note = ensure_dlt_venv()
    print(found or "-", note)
    sys.exit(0 if found else 1)
