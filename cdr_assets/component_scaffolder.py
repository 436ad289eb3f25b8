"""What `dg scaffold defs cdr_assets.CdrAssetsComponent <path>` writes.

Owns the starter `defs.yaml`: one PBX with the same keys as `cdr_assets.yaml`, its secrets as
`'{{ env.NAME }}'` references (listed under `requirements.env`, so `dg list envs` and
`dg check yaml --validate-requirements` know them), and the storage paths. It writes only under
the target directory dg created, and never a secret's value.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import dagster as dg
import yaml
from pydantic import BaseModel, Field, ValidationError

from cdr_assets.config import CdrAssetsConfig, config_problems
from cdr_assets.errors import ConfigError

#: Where the starter PBX points until the user edits it (a documentation address, RFC 5737).
EXAMPLE_BASE_URLS = {"yeastar": "https://192.0.2.10:8088", "zorio": "https://app.zorio.vn"}
# The scaffold option each PBX key comes from, to name it in an error.
_OPTION_OF_KEY = {
    "name": "--pbx-name",
    "vendor": "--vendor",
    "base_url": "--base-url",
    "timezone": "--timezone",
    "start_date": "--start-date",
}


class CdrAssetsScaffoldParams(BaseModel):
    """`dg scaffold defs ... --pbx-name saigon --vendor zorio` (or `--json-params '{...}'`)."""

    pbx_name: str = Field(default="hq", description="name of the PBX (its asset key prefix)")
    vendor: Literal["yeastar", "zorio"] = Field(default="yeastar", description="the PBX's API")
    base_url: str | None = Field(
        default=None, description="the PBX API's scheme, host and port (default: an example)"
    )
    timezone: str = Field(default="Asia/Singapore", description="IANA zone of the PBX's clock")
    start_date: date | None = Field(
        default=None, description="first daily partition (default: the 1st of this month)"
    )
    data_dir: str = Field(
        default="./data", description="storage.data_dir, relative to the project root"
    )


def secret_env_names(pbx_name: str, vendor: str) -> dict[str, str]:
    """The scaffolded secret fields and the environment variables they reference."""
    prefix = pbx_name.upper()
    if vendor == "zorio":
        return {"api_token": f"{prefix}_ZORIO_TOKEN"}
    return {"client_id": f"{prefix}_CLIENT_ID", "client_secret": f"{prefix}_CLIENT_SECRET"}


def scaffold_attributes(params: CdrAssetsScaffoldParams) -> dict[str, Any]:
    """The `attributes` of the starter `defs.yaml`, checked with the config models so a bad
    `--timezone` or `--pbx-name` fails here, naming the option, not at the first load."""
    data_dir = params.data_dir.rstrip("/") or "."
    secrets = secret_env_names(params.pbx_name, params.vendor)
    pbx = {
        "name": params.pbx_name,
        "vendor": params.vendor,
        "base_url": params.base_url or EXAMPLE_BASE_URLS[params.vendor],
        "timezone": params.timezone,
        "start_date": (params.start_date or date.today().replace(day=1)).isoformat(),
        **{field: f"{{{{ env.{name} }}}}" for field, name in secrets.items()},
    }
    attributes = {
        "storage": {
            "data_dir": data_dir,
            "duckdb_path": f"{data_dir}/cdr.duckdb",
            "recordings_dir": f"{data_dir}/recordings",
        },
        "pbxs": [pbx],
    }
    try:
        CdrAssetsConfig.model_validate(attributes)
    except ValidationError as exc:
        lines = [
            f"{_OPTION_OF_KEY[p.path[-1]]}: {p.message}"
            if p.path and p.path[-1] in _OPTION_OF_KEY
            else str(p)
            for p in config_problems(exc)
        ]
        raise ConfigError("scaffold parameters are invalid:\n  " + "\n  ".join(lines)) from None
    return attributes


class CdrAssetsScaffolder(dg.Scaffolder[CdrAssetsScaffoldParams]):
    """Writes the starter `defs.yaml` (or dg's `component.py` stub with `--format python`)."""

    @classmethod
    def get_scaffold_params(cls) -> type[CdrAssetsScaffoldParams]:
        return CdrAssetsScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[CdrAssetsScaffoldParams]) -> None:
        params = request.params or CdrAssetsScaffoldParams()
        attributes = scaffold_attributes(params)
        dg.scaffold_component(request, attributes)
        if request.scaffold_format != "yaml":
            return
        defs_yaml = request.target_path if request.append else request.target_path / "defs.yaml"
        requirements = {"env": list(secret_env_names(params.pbx_name, params.vendor).values())}
        with open(defs_yaml, "a", encoding="utf-8") as file:
            file.write("\n" + yaml.safe_dump({"requirements": requirements}, sort_keys=False))
