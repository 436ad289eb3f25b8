"""PBX API clients: one `dagster.ConfigurableResource` per vendor, all speaking `PbxClient`.

Adding a vendor: a new module with a `PbxResource` subclass (its credentials, endpoints and
quirks; the common settings, session lifecycle and HTTP plumbing are inherited) implementing
`PbxClient`, and one line in `VENDOR_RESOURCES`.
"""

from cdr_assets.vendors.base import CdrFetch, CdrPage, PbxClient, RecordingStream
from cdr_assets.vendors.resource import PbxResource
from cdr_assets.vendors.transport import build_session, install_log_redaction, redact_url
from cdr_assets.vendors.yeastar import YeastarDisplayFormat, YeastarResource
from cdr_assets.vendors.zorio import ZorioResource

#: Resource class per `vendor:` value of the config file.
VENDOR_RESOURCES: dict[str, type[YeastarResource] | type[ZorioResource]] = {
    "yeastar": YeastarResource,
    "zorio": ZorioResource,
}

__all__ = [
    "VENDOR_RESOURCES",
    "CdrFetch",
    "CdrPage",
    "PbxClient",
    "PbxResource",
    "RecordingStream",
    "YeastarDisplayFormat",
    "YeastarResource",
    "ZorioResource",
    "build_session",
    "install_log_redaction",
    "redact_url",
]
