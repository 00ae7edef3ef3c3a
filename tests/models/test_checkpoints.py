"""Official checkpoint layouts (docs/method.md section 6): import, export, clear errors; safe local saving."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from clip2point.commands import import_official
from clip2point.errors import InputError
from clip2point.models import (
    GDPA,
    AdapterSettings,
    FewShotClassifier,
    export_official_depth,
    export_official_dpa,
    load_clip,
    load_module,
    load_official_depth,
    load_official_dpa,
    read_state_dict,
    save_module,
    save_torch,
)
from clip2point.models.checkpoints import OFFICIAL_DPA
from tests.models.official_files import (
    official_adapter,
    official_adapter_forward,
    official_depth_file,
    official_visual_shapes,
    random_official_visual,
)
from tests.tiny_clip import EMBED, SIZE, WIDTH, random_images


def test_open_clip_visual_keys_are_openai_names(tiny_bundle):
    ours = {k: tuple(v.shape) for k, v in tiny_bundle.visual.state_dict().items()}
    assert ours == official_visual_shapes()


def test_official_depth_file_loads_exactly(tiny_bundle, tmp_path):
    state = official_depth_file()
    path = save_torch(state, tmp_path / "best_eval.pth")
    encoder = tiny_bundle.depth_encoder()
    report = load_official_depth(path, encoder)
    assert report.balance == 0.75
    assert report.loaded == len(official_visual_shapes()) + 1
    assert "selector.view_selector.views_azim" in report.skipped
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[f"module.point_model.{key}"]), key
    image = tiny_bundle.depth_encoder()
    load_official_depth(path, tiny_bundle.depth_encoder(), image_encoder=image)
    assert torch.equal(image.proj, state["module.image_model.proj"])


def test_depth_export_round_trip_gives_identical_features(tiny_bundle, tmp_path):
    ours = tiny_bundle.depth_encoder()
    with torch.no_grad():
        ours.proj.mul_(3.0)  # differ from CLIP
    exported = export_official_depth(ours, tiny_bundle.visual, balance=1.5)
    expected_keys = {f"module.point_model.{k}" for k in official_visual_shapes()}
    expected_keys |= {f"module.image_model.{k}" for k in official_visual_shapes()} | {"module.weights"}
    assert set(exported) == expected_keys
    path = save_torch(exported, tmp_path / "ours_best_eval.pth")
    fresh = load_clip(tiny_bundle.name, None).depth_encoder()  # another random init
    report = load_official_depth(path, fresh)
    assert report.balance == 1.5
    x = random_images(2, seed=11)
    torch.testing.assert_close(fresh(x), ours(x), rtol=0, atol=0)


def test_mismatched_depth_file_lists_keys(tiny_bundle, tmp_path):
    state = official_depth_file()
    del state["module.point_model.ln_post.bias"]
    state["module.point_model.head.weight"] = torch.zeros(2)
    state["module.point_model.proj"] = torch.zeros(WIDTH, EMBED + 1)
    path = save_torch(state, tmp_path / "best_eval.pth")
    with pytest.raises(InputError, match=r"best_eval\.pth") as err:
        load_official_depth(path, tiny_bundle.depth_encoder())
    message = str(err.value)
    assert "missing: point_model.ln_post.bias" in message
    assert "unexpected: point_model.head.weight" in message
    assert (
        f"mis-shaped: point_model.proj (file ({WIDTH}, {EMBED + 1}), expected ({WIDTH}, {EMBED}))" in message
    )


def dpa_classifier(bundle, views: int) -> FewShotClassifier:
    adapter = GDPA(views, EMBED, OFFICIAL_DPA)
    return FewShotClassifier(bundle.depth_encoder(), adapter, bundle.depth_encoder())


def test_official_dpa_file_gives_the_official_logits(tiny_bundle, tmp_path):
    views = 6
    state = random_official_visual("pre_model.", 1) | random_official_visual("ori_model.", 2)
    state |= official_adapter("adapter1.", views, 3) | official_adapter("adapter2.", views, 4)
    path = save_torch(state, tmp_path / "best_test.pth")
    classifier = dpa_classifier(tiny_bundle, views)
    report = load_official_dpa(path, classifier)
    assert report.loaded == len(state)
    classifier.eval()
    images = torch.randn(2, views, 3, SIZE, SIZE)
    text = torch.randn(5, EMBED)
    pre, ori = tiny_bundle.depth_encoder().eval(), tiny_bundle.depth_encoder().eval()
    pre.load_state_dict({k[len("pre_model.") :]: v for k, v in state.items() if k.startswith("pre_model.")})
    ori.load_state_dict({k[len("ori_model.") :]: v for k, v in state.items() if k.startswith("ori_model.")})
    with torch.no_grad():
        f_pre = pre(images.flatten(0, 1)).reshape(2, views, EMBED)
        f_ori = ori(images.flatten(0, 1)).reshape(2, views, EMBED)
        fused = (
            official_adapter_forward(state, "adapter1.", f_pre)
            + official_adapter_forward(state, "adapter2.", f_ori)
        ) / 2
        expected = F.normalize(fused, dim=-1) @ F.normalize(text, dim=-1).T
        torch.testing.assert_close(classifier(images, text), expected, rtol=1e-4, atol=1e-5)
    selector = {f"selector.view_selector.views_{name}" for name in ("azim", "elev", "dist")}
    assert set(export_official_dpa(classifier)) == set(state) | selector


def module_with_layout(parameters: dict[str, tuple], buffers: dict[str, tuple]) -> torch.nn.Module:
    """A module holding exactly the given parameter and buffer names and shapes (zeros), nested by dots."""
    root = torch.nn.Module()
    for table, register in ((parameters, "param"), (buffers, "buffer")):
        for name, shape in table.items():
            *path, leaf = name.split(".")
            node = root
            for part in path:
                if not hasattr(node, part):
                    node.add_module(part, torch.nn.Module())
                node = getattr(node, part)
            if register == "param":
                node.register_parameter(leaf, torch.nn.Parameter(torch.zeros(shape)))
            else:
                node.register_buffer(
                    leaf, torch.zeros(shape, dtype=torch.long if leaf == "num_batches_tracked" else None)
                )
    return root


def authors_dpa_layout(views: int) -> torch.nn.Module:
    """The authors' DPA module as their code lays it out (docs/method.md section 6), from key names and
    shapes: ``selector.view_selector`` (three ``(V,)`` camera buffers), ``renderer`` (no state),
    ``pre_model``/``ori_model`` (OpenAI visual encoders) and ``adapter1``/``adapter2`` (SimplifiedAdapter:
    ``fusion_ratio``, BatchNorm ``global_f.0.bn``, Linear ``global_f.3``, BatchNorm ``global_f.4``, Linear
    ``global_f.7``)."""
    parameters, buffers = {}, {}
    for prefix in ("pre_model.", "ori_model."):
        parameters |= {prefix + k: shape for k, shape in official_visual_shapes().items()}
    for prefix in ("adapter1.", "adapter2."):
        parameters[prefix + "fusion_ratio"] = (views,)
        for bn in ("global_f.0.bn", "global_f.4"):
            parameters |= {f"{prefix}{bn}.weight": (EMBED,), f"{prefix}{bn}.bias": (EMBED,)}
            buffers |= {f"{prefix}{bn}.running_mean": (EMBED,), f"{prefix}{bn}.running_var": (EMBED,)}
            buffers[f"{prefix}{bn}.num_batches_tracked"] = ()
        parameters |= {
            f"{prefix}global_f.3.weight": (EMBED, views * EMBED),
            f"{prefix}global_f.3.bias": (EMBED,),
        }
        parameters |= {f"{prefix}global_f.7.weight": (EMBED, EMBED), f"{prefix}global_f.7.bias": (EMBED,)}
    buffers |= {f"selector.view_selector.views_{name}": (views,) for name in ("azim", "elev", "dist")}
    return module_with_layout(parameters, buffers)


@pytest.mark.parametrize("views", [10, 6])
def test_dpa_export_is_accepted_by_a_strict_load_into_the_authors_layout(tiny_bundle, views, tmp_path):
    classifier = dpa_classifier(tiny_bundle, views)
    with torch.no_grad():
        classifier.adapter.depth_adapter.view_weights.copy_(torch.linspace(0.1, 0.9, views))
    exported = export_official_dpa(classifier)
    authors = authors_dpa_layout(views)
    result = authors.load_state_dict(exported, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    state = authors.state_dict()
    # The cameras as the authors' ViewSelector registers them (docs/method.md section 1.1).
    elev = {10: (0, 90, 180, 270, 225, 225, 315, 315, 0, 0), 6: (0, 0, 0, 0, 90, -90)}[views]
    azim = {10: (0, 0, 0, 0, -45, 45, -45, 45, -90, 90), 6: (0, 90, 180, 270, 0, 180)}[views]
    assert state["selector.view_selector.views_elev"].tolist() == list(elev)
    assert state["selector.view_selector.views_azim"].tolist() == list(azim)
    assert state["selector.view_selector.views_dist"].tolist() == [1.0] * views
    assert all(exported[k].dtype == torch.float32 for k in exported if k.startswith("selector."))
    torch.testing.assert_close(state["adapter1.fusion_ratio"], torch.linspace(0.1, 0.9, views))
    torch.testing.assert_close(state["pre_model.proj"], classifier.depth.encoder.proj.detach())
    back = dpa_classifier(tiny_bundle, views)  # and our import reads it back (the cameras are skipped)
    report = load_official_dpa(save_torch(exported, tmp_path / "best_test.pth"), back)
    assert len(report.skipped) == 3
    for key, value in classifier.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    with pytest.raises(InputError, match=r"num_views=3 is not an official view set; allowed: 6, 10"):
        export_official_dpa(dpa_classifier(tiny_bundle, 3))


def test_mismatched_dpa_file_and_wrong_adapter(tiny_bundle, tmp_path):
    state = random_official_visual("pre_model.", 1) | random_official_visual("ori_model.", 2)
    state |= official_adapter("adapter1.", 4, 3) | official_adapter("adapter2.", 4, 4)
    del state["adapter2.global_f.7.bias"]
    path = save_torch(state, tmp_path / "best_test.pth")
    with pytest.raises(InputError, match=r"best_test\.pth") as err:
        load_official_dpa(path, dpa_classifier(tiny_bundle, 3))
    message = str(err.value)
    assert "missing: adapter2.global_f.7.bias" in message
    assert "adapter1.fusion_ratio (file (4,), expected (3,))" in message
    gated = FewShotClassifier(
        tiny_bundle.depth_encoder(),
        GDPA(3, EMBED, AdapterSettings("dual", variant="paper")),
        tiny_bundle.depth_encoder(),
    )
    with pytest.raises(InputError, match="fusion='average'"):
        load_official_dpa(path, gated)


class Payload:
    """A pickled object that weights_only loading must refuse."""


def test_safe_reading_and_atomic_saving(tiny_bundle, tmp_path):
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"evil\.pt.*weights_only"):
        read_state_dict(tmp_path / "evil.pt")
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"cannot read weights file .*garbage\.pt: Unsupported"):
        read_state_dict(tmp_path / "garbage.pt")
    with pytest.raises(InputError, match="not found"):
        read_state_dict(tmp_path / "absent.pt")
    encoder = tiny_bundle.depth_encoder()
    out = save_module(encoder, tmp_path / "sub" / "depth.safetensors", {"kind": "depth"})
    assert sorted(p.name for p in out.parent.iterdir()) == ["depth.safetensors"]  # no temp file left
    fresh = load_clip(tiny_bundle.name, None).depth_encoder()
    assert load_module(fresh, out) == {"kind": "depth"}
    x = random_images(1, seed=12)
    torch.testing.assert_close(fresh(x), encoder(x), rtol=0, atol=0)


def test_import_official_command(tiny_bundle, tmp_path, capsys):
    path = save_torch(official_depth_file(seed=5), tmp_path / "best_eval.pth")
    parser = argparse.ArgumentParser()
    import_official.add_arguments(parser)
    out = tmp_path / "depth.safetensors"
    args = parser.parse_args([str(path), "--out", str(out), "--model", tiny_bundle.name])
    assert import_official.run(args) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "balance s = 0.75" in printed
    encoder = tiny_bundle.depth_encoder()
    metadata = load_module(encoder, out)
    assert metadata["kind"] == "depth" and metadata["quick_gelu"] == "true"
    assert torch.equal(encoder.proj, official_depth_file(seed=5)["module.point_model.proj"])
    bad = parser.parse_args([str(path), "--out", str(out), "--kind", "dpa", "--model", tiny_bundle.name])
    with pytest.raises(InputError, match=r"missing: adapter1\.fusion_ratio"):
        import_official.run(bad)


def test_load_depth_encoder_reads_ours_and_the_official_file(tiny_bundle, tmp_path):
    from clip2point.models import load_depth_encoder, save_module

    ours = tiny_bundle.depth_encoder()
    with torch.no_grad():
        ours.proj.mul_(2.0)
    x = random_images(2, seed=5)
    official = save_torch(export_official_depth(ours, tiny_bundle.visual, 1.0), tmp_path / "best_eval.pth")
    native = save_module(ours, tmp_path / "depth.safetensors", {"kind": "depth"})
    for path in (official, native):
        loaded = load_depth_encoder(tiny_bundle, path)
        assert not loaded.training
        torch.testing.assert_close(loaded(x), ours(x), rtol=0, atol=0)
    with pytest.raises(InputError, match="missing"):
        save_torch({"proj": ours.proj.detach()}, tmp_path / "partial.pth")
        load_depth_encoder(tiny_bundle, tmp_path / "partial.pth")
