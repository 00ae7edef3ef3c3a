"""Typed YAML configs: round trips, overrides, and clear errors naming key, value and what is allowed."""

import re
from pathlib import Path

import pytest

from clip2point.config import ExperimentConfig, load_config, save_config
from clip2point.errors import ConfigError
from clip2point.models import AdapterSettings
from clip2point.render import RenderSettings
from clip2point.schema import flatten, from_dict, parse_override, with_overrides


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
    assert cfg.render.footprint == RenderSettings().footprint  # untouched keys keep defaults


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"render": {"footprnt": "disk"}},
            r"unknown config key 'render.footprnt'; allowed keys in render: views, footprint, radius",
        ),
        (
            {"rendr": {}},
            r"unknown config key 'rendr'; allowed keys in the top level: seed, device, storage, render",
        ),
        ({"render": {"image_size": 224}}, r"unknown config key 'render.image_size'"),
        (
            {"fewshot": {"adapter": {"path": "single"}}},
            r"'fewshot.adapter.fusion': 'gate' needs the dual path; a single path takes 'none'",
        ),
        (
            {"fewshot": {"adapter": {"aggregator": "inter_view", "variant": "pointclip"}}},
            r"'fewshot.adapter.variant': 'pointclip' is not allowed; expected one of 'paper', 'official'",
        ),
        ({"data": {"dataset": "modelnet"}}, r"'data.dataset': 'modelnet' is not allowed; expected one of"),
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
        ({"render": 3}, r"'render': 3 is not allowed; expected a mapping with keys views, footprint"),
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
    assert flat["render.dilation"] == 4 and flat["seed"] == 3 and flat["model.pretrained"] == "toy"
    assert flat["fewshot.adapter.path"] == "dual" and flat["fewshot.seeds"] == [0, 1, 2]
    assert "fewshot.adapter" not in flat and "render" not in flat  # leaves only
    assert with_overrides(ExperimentConfig(), flat) == cfg  # the flat view is complete
    with pytest.raises(ConfigError, match=r"unknown config key 'render.dilate'"):
        with_overrides(cfg, {"render.dilate": 2})
    with pytest.raises(ConfigError, match=r"unknown config key 'seed.x': 'seed' is not a section"):
        with_overrides(cfg, {"seed.x": 2})
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override("render.dilation")
    with pytest.raises(ConfigError, match=r"unknown config key 'rendr.dilation': no section 'rendr'"):
        with_overrides(cfg, {"rendr.dilation": 2})


def test_settings_are_validated_when_made_in_code_too():
    with pytest.raises(ConfigError, match=r"'render.footprint': 'circle' is not allowed"):
        RenderSettings(footprint="circle")
    with pytest.raises(
        ConfigError, match=r"'render.fov': 180.0 is out of range; allowed: >= 1.0 and <= 179.0"
    ):
        RenderSettings(fov=180.0)
    with pytest.raises(ConfigError, match=r"'fewshot.adapter.fusion': 'average' needs the dual path"):
        AdapterSettings(path="single", fusion="average")
    assert RenderSettings(radius=1).radius == 1.0 and isinstance(RenderSettings(radius=1).radius, float)
    assert RenderSettings(footprint="square", dilation=4).label() == "minimum square R=4"
    assert RenderSettings().label() == "minimum disk r=0.02"
    assert AdapterSettings().label() == "dual global-view gate (official)"


def test_layers_preset_then_file_then_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("render:\n  dilation: 4\npretrain:\n  epochs: 3\n")
    cfg = load_config(path, {"pretrain.epochs": 5}, preset="paper")
    assert cfg.model.name == "ViT-B-32" and cfg.model.pretrained == "openai"  # from the preset
    assert cfg.render.dilation == 4 and cfg.render.footprint == "disk"  # file on top, untouched keys kept
    assert cfg.pretrain.epochs == 5 and cfg.pretrain.batch_size == 256  # override on top
    with pytest.raises(ConfigError, match="unknown preset 'papr'; allowed: official-eval, paper"):
        load_config(preset="papr")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: the top level must be a mapping"):
        load_config(listing)


def test_a_file_may_build_on_a_preset(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("preset: paper\nfewshot:\n  seeds: [0, 1]\n")
    cfg = load_config(path, {"fewshot.lr": 0.01})
    assert cfg == load_config(None, {"fewshot.seeds": [0, 1], "fewshot.lr": 0.01}, preset="paper")
    assert load_config(path, preset="paper") == load_config(path)
    with pytest.raises(
        ConfigError, match=r"study.yaml builds on preset 'paper', but --preset 'official-eval'"
    ):
        load_config(path, preset="official-eval")
    path.write_text("preset: papr\n")
    with pytest.raises(
        ConfigError, match=r"study.yaml: unknown preset 'papr'; allowed: official-eval, paper"
    ):
        load_config(path)


# The paper's and the authors' pre-training and adapter recipe (docs/method.md sections 2 and 4), written
# out here so that neither the preset nor a sweep's paper YAML can drift from it unnoticed.
PAPER_RECIPE = {
    "model.name": "ViT-B-32", "model.pretrained": "openai", "precision": "tf32",
    "render.views": 10, "render.footprint": "disk", "render.radius": 0.02, "render.depth": "minimum",
    "render.projection": "orthographic", "data.prompts": "official",
    "pretrain.epochs": 100, "pretrain.batch_size": 256, "pretrain.lr": 0.006, "pretrain.weight_decay": 1e-4,
    "pretrain.restart_epochs": 2, "pretrain.eta_min": 1e-5, "pretrain.temperature": 0.07,
    "pretrain.optimizer": "lamb", "pretrain.sampling": "random", "pretrain.intra": True,
    "pretrain.export_official": True, "sweep.zeroshot_views": 6,
    "fewshot.shots": 16, "fewshot.epochs": 100, "fewshot.batch_size": 32, "fewshot.lr": 1e-3,
    "fewshot.weight_decay": 1e-4, "fewshot.dropout": 0.075,
}  # fmt: skip
PAPER_YAMLS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.paper.yaml"))


@pytest.mark.parametrize("path", [None, *PAPER_YAMLS], ids=lambda p: "preset" if p is None else p.name)
def test_paper_preset_and_every_paper_yaml_hold_the_paper_recipe(path):
    cfg = flatten(load_config(path, preset="paper" if path is None else None))
    assert {key: cfg[key] for key in PAPER_RECIPE} == PAPER_RECIPE
    # The paper's protocol (best test epoch) except in the search, which must not tune on test.
    expected = "val" if path is not None and path.name.startswith("hpo_") else "test"
    assert cfg["fewshot.selection"] == expected


def test_there_are_paper_yamls():
    assert [p.name for p in PAPER_YAMLS] == [
        "ablation_adapter.paper.yaml", "ablation_pretrain.paper.yaml", "ablation_rendering.paper.yaml",
        "hpo_fewshot.paper.yaml", "table1_zeroshot.paper.yaml", "table2_kshot.paper.yaml",
        "table3_supervised.paper.yaml",
    ]  # fmt: skip


def _cli(capsys, *argv: str) -> tuple[int, str]:
    """Run ``clip2point <argv>``; its exit status and stderr."""
    from clip2point.cli import main

    status = main(list(argv))
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "seed=!!python/object/apply:os.system ['echo hacked']",
            r"override .*: the value is not plain YAML \(.*could not determine a constructor for the tag "
            r"'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
        ("render.dilation=[1", r"override 'render.dilation=\[1': the value is not plain YAML"),
        ("pretrain.lr=.nan", r"config key 'pretrain.lr': nan is not allowed; expected a finite number"),
        ("render.radius=-.inf", r"config key 'render.radius': -inf is not allowed; expected a finite number"),
        ("pretrain.temperature=.inf", r"'pretrain.temperature': inf is not allowed; expected a finite"),
    ],
)
def test_bad_overrides_are_clean_errors_on_the_command_line(capsys, override, message):
    status, err = _cli(capsys, "pretrain", "-o", override)
    assert status == 2 and "Traceback" not in err
    assert re.search(message, err.splitlines()[0]), err


def test_binary_and_alias_bomb_config_files_give_short_errors_naming_the_file(tmp_path, capsys):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"seed: 1\n\x89PNG\r\n\x1a\n\xff\xfe")
    status, err = _cli(capsys, "pretrain", "--config", str(binary))
    assert status == 2
    assert err.startswith(f"clip2point pretrain: error: config file {binary} is not UTF-8 text (byte 8)")
    # 9 levels of 9 aliases: 9**8 leaves, whose repr alone would be gigabytes; the message stays short
    levels = ["&a [x,x,x,x,x,x,x,x,x]"] + [
        f"&{new} [{','.join([f'*{old}'] * 9)}]" for old, new in zip("abcdefg", "bcdefgh", strict=True)
    ]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"render:\n  dilation: [{', '.join(levels)}]\n")
    assert len(bomb.read_bytes()) < 400
    with pytest.raises(ConfigError) as info:
        load_config(bomb)
    assert re.fullmatch(
        rf"{re.escape(str(bomb))}: config key 'render.dilation': \[\['x', 'x', .*\.\.\. is not allowed; "
        "expected an integer",
        str(info.value),
    )
    assert len(str(info.value)) < 200 + len(str(bomb))
