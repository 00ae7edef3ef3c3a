"""Typed YAML configs: round trips, overrides, and clear errors naming key, value and what is allowed."""

import pytest

from clip2point.config import (
    ExperimentConfig,
    RenderConfig,
    flatten,
    from_dict,
    load_config,
    parse_override,
    save_config,
    to_dict,
    with_overrides,
)
from clip2point.errors import ConfigError


def test_defaults_and_yaml_round_trip(tmp_path):
    cfg = with_overrides(ExperimentConfig(), {"render.footprint": "square", "render.dilation": 4, "seed": 7})
    path = tmp_path / "run.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert load_config(None) == ExperimentConfig()


def test_yaml_values_are_converted_and_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("render:\n  radius: 1\n  views: 6\nmodel:\n  pretrained: null\n")
    cfg = load_config(path)
    assert cfg.render.radius == 1.0 and isinstance(cfg.render.radius, float)
    assert cfg.render.views == 6
    assert cfg.model.pretrained is None
    assert cfg.render.footprint == RenderConfig().footprint  # untouched keys keep defaults


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"render": {"footprnt": "disk"}},
            r"unknown config key 'render.footprnt'; allowed keys in render: image_size",
        ),
        ({"rendr": {}}, r"unknown config key 'rendr'; allowed keys in the top level: seed, device, render"),
        (
            {"render": {"footprint": "circle"}},
            r"'render.footprint': 'circle' is not allowed; expected one of 'disk', 'square'",
        ),
        ({"render": {"views": 8}}, r"'render.views': 8 is not allowed; expected one of 6, 10"),
        ({"render": {"dilation": 0}}, r"'render.dilation': 0 is out of range; allowed: >= 1 and <= 64"),
        ({"render": {"radius": 0}}, r"'render.radius': 0 is out of range; allowed: > 0.0 and <= 2.0"),
        ({"render": {"dilation": 2.5}}, r"'render.dilation': 2.5 is not allowed; expected an integer"),
        ({"render": {"dilation": True}}, r"'render.dilation': True is not allowed; expected an integer"),
        ({"seed": "one"}, r"'seed': 'one' is not allowed; expected an integer"),
        ({"render": 3}, r"'render': 3 is not allowed; expected a mapping with keys image_size"),
        ({"model": {"name": None}}, r"'model.name': None is not allowed; expected a string"),
    ],
)
def test_bad_keys_and_values_name_key_value_and_allowed(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(ExperimentConfig, data)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("render:\n  depth: median\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: config key 'render.depth': 'median'"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("render: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read config file .*missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_overrides_and_flatten():
    cfg = with_overrides(
        ExperimentConfig(), dict([parse_override("render.dilation=4"), parse_override("seed=3")])
    )
    assert cfg.render.dilation == 4 and cfg.seed == 3
    flat = flatten(cfg)
    assert flat["render.dilation"] == 4 and flat["seed"] == 3 and flat["model.pretrained"] == "openai"
    assert set(flat) == {
        f"{section}.{key}" if isinstance(value, dict) else section
        for section, value in to_dict(cfg).items()
        for key in (value if isinstance(value, dict) else [None])
    }
    with pytest.raises(ConfigError, match=r"unknown config key 'render.dilate'"):
        with_overrides(cfg, {"render.dilate": 2})
    with pytest.raises(ConfigError, match=r"unknown config key 'seed.x': 'seed' is not a section"):
        with_overrides(cfg, {"seed.x": 2})
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override("render.dilation")
    with pytest.raises(ConfigError, match=r"unknown config key 'rendr.dilation': no section 'rendr'"):
        with_overrides(cfg, {"rendr.dilation": 2})
