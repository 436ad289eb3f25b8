"""LinkPolicy: which hosts a recording link may lead to (the HTTP side is in test_zorio.py and
test_yeastar.py, where links are followed over loopback)."""

from __future__ import annotations

import pytest

from cdr_assets.vendors.links import HostEntry, LinkPolicy, origin_of, parse_host_entry

PBX = "https://pbx.example:8088"


def refused(policy: LinkPolicy, url: str, came_from: str | None = None) -> bool:
    return policy.refusal(url, came_from=came_from) is not None


def test_the_pbx_host_and_port_are_allowed_and_nothing_else() -> None:
    policy = LinkPolicy(PBX)
    assert not refused(policy, "https://pbx.example:8088/api/download/x.wav?sig=1")
    assert not refused(policy, "https://PBX.Example.:8088/x.wav")  # case, trailing dot
    assert refused(policy, "https://pbx.example/x.wav")  # port 443, not 8088
    assert refused(policy, "https://pbx.example.evil.test:8088/x.wav")
    assert refused(policy, "https://evil.test/x.wav")


def test_listed_hosts_are_allowed_with_any_port_or_the_one_given() -> None:
    policy = LinkPolicy(PBX, ["files.example", "cdn.example:8443", "[::1]:9000"])
    assert not refused(policy, "https://files.example/a.wav")
    assert not refused(policy, "https://files.example:4443/a.wav")
    assert not refused(policy, "https://cdn.example:8443/a.wav")
    assert refused(policy, "https://cdn.example/a.wav")
    assert not refused(policy, "https://[::1]:9000/a.wav")
    assert refused(policy, "https://sub.files.example/a.wav")


def test_https_to_http_is_refused_even_on_an_allowed_host() -> None:
    policy = LinkPolicy(PBX, ["files.example"])
    assert refused(policy, "http://pbx.example:8088/x.wav")  # the API is https
    assert refused(policy, "http://files.example/x.wav")
    hop = "https://files.example/x.wav"
    assert refused(policy, "http://files.example/y.wav", came_from=hop)
    plain = LinkPolicy("http://pbx.example:8088", ["files.example"])
    assert not refused(plain, "http://files.example/x.wav")
    assert not refused(plain, "https://files.example/x.wav")  # upgrading is fine
    assert refused(plain, "http://files.example/y.wav", came_from="https://files.example/x")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://pbx.example:8088/x.wav",
        "file:///etc/passwd",
        "/relative/path.wav",
        "https:///no-host",
        "https://pbx.example:8088\\@evil.test/x.wav",
        "https://pbx.example:notaport/x.wav",
    ],
)
def test_what_is_not_a_plain_http_url_is_refused(url: str) -> None:
    assert refused(LinkPolicy(PBX), url)


def test_the_reason_names_the_host_but_not_the_query() -> None:
    reason = LinkPolicy(PBX, ["files.example"]).refusal(
        "https://evil.test/rec/1.wav?signature=TOPSECRET"
    )
    assert reason is not None
    assert "evil.test:443" in reason and "files.example" in reason and "pbx.example:8088" in reason
    assert "TOPSECRET" not in reason and "/rec/1.wav" not in reason


def test_credentials_go_to_the_api_origin_only() -> None:
    policy = LinkPolicy(PBX, ["files.example"])
    assert policy.is_api_host("https://pbx.example:8088/api/download/x.wav")
    assert not policy.is_api_host("https://files.example/api/download/x.wav")
    assert not policy.is_api_host("http://pbx.example:8088/api/download/x.wav")
    assert not policy.is_api_host("https://pbx.example:8089/api/download/x.wav")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("files.example", HostEntry("files.example", None)),
        (" Files.Example:8443 ", HostEntry("files.example", 8443)),
        ("[2001:db8::1]:443", HostEntry("2001:db8::1", 443)),
        ("127.0.0.2", HostEntry("127.0.0.2", None)),
    ],
)
def test_host_entries_parse(entry: str, expected: HostEntry) -> None:
    assert parse_host_entry(entry) == expected


@pytest.mark.parametrize(
    "entry", ["https://files.example", "files.example/path", "u:p@files.example", "", ":80"]
)
def test_bad_host_entries_name_the_entry(entry: str) -> None:
    with pytest.raises(ValueError, match="recording_hosts entry"):
        parse_host_entry(entry)


def test_origin_uses_default_ports() -> None:
    assert str(origin_of("https://pbx.example/x")) == "pbx.example:443"
    assert str(origin_of("http://pbx.example/x")) == "pbx.example:80"
    assert origin_of("mailto:someone@pbx.example") is None
