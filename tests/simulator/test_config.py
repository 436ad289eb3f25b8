"""Simulator config: switches off by default, named server styles, errors that name the key."""

from __future__ import annotations

import dataclasses

import pytest

from cdr_assets.simulator import SERVER_STYLES, SimulatorConfig, YeastarSimConfig, ZorioSimConfig


def _flat(config: SimulatorConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in dataclasses.asdict(value).items()})
        else:
            out[f.name] = value
    return out


def test_each_server_style_differs_from_the_default_in_one_switch():
    default = _flat(SimulatorConfig())
    assert SERVER_STYLES["default"] == {}
    assert set(SERVER_STYLES) == {
        "default",
        "laravel",
        "pretty",
        "extra_keys",
        "newest_first",
        "charset",
    }
    changed = {}
    for name, overrides in SERVER_STYLES.items():
        if name == "default":
            continue
        styled = _flat(SimulatorConfig().with_overrides(**overrides))
        diff = {k: v for k, v in styled.items() if v != default[k]}
        assert len(diff) == 1, (name, diff)
        changed.update(diff)
    assert changed == {
        "zorio.envelope": "laravel",
        "pretty": True,
        "extra_keys": True,
        "yeastar.order": "desc",
        "json_content_type": "application/json; charset=utf-8",
    }


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ZorioSimConfig(envelope="full"), "zorio.envelope"),
        (lambda: ZorioSimConfig(detail_recording="maybe"), "zorio.detail_recording"),
        (lambda: ZorioSimConfig(recording_base_url="127.0.0.2:80"), "zorio.recording_base_url"),
        (lambda: ZorioSimConfig(audio_redirect_base_url="cdn"), "zorio.audio_redirect_base_url"),
        (lambda: YeastarSimConfig(order="random"), "yeastar.order"),
        (lambda: YeastarSimConfig(reported_date_format="D/M/Y"), "yeastar.reported_date_format"),
        (lambda: YeastarSimConfig(record_file_suffix="mp4"), "yeastar.record_file_suffix"),
        (lambda: SimulatorConfig(audio_content_type="video"), "audio_content_type"),
        (lambda: SimulatorConfig(json_content_type=""), "json_content_type"),
    ],
)
def test_a_bad_switch_names_itself(make, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        make()


def test_record_file_names_end_with_the_download_format_unless_told_wav():
    assert YeastarSimConfig(recording_format="mp3").record_file_ext == "mp3"
    assert (
        YeastarSimConfig(recording_format="mp3", record_file_suffix="wav").record_file_ext == "wav"
    )
