#!/usr/bin/env python3
"""Why two rendering settings of Table 5 tie in zero-shot: per-object agreement of their predictions.

    python scripts/table5_agreement.py                  # toy ModelNet10 test split, the bundled toy CLIP
    python scripts/table5_agreement.py --config my.yaml -o data.dataset=modelnet40

For every setting of Table 5 (``clip2point.render.TABLE5_SETTINGS``) it prints the zero-shot top-1 of CLIP's
visual encoder (no pre-training), how many objects were predicted as each class, and for every pair of
settings the share of objects with the same prediction; then, for each dilation R, the share of drawn pixels
whose depth differs between the weighted and the minimum depth (Eq. 8 vs Eq. 10: they differ only where two
or more points fall on one pixel). Features come from the feature cache the rendering study uses, so after
``python sweeps/ablation_rendering.py`` this takes seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

import torch

from clip2point.commands.common import add_config_arguments, config_from_args
from clip2point.config import ExperimentConfig
from clip2point.engine.context import Experiment
from clip2point.models.heads import zero_shot_logits
from clip2point.prepare import prepare
from clip2point.render import TABLE5_SETTINGS, DepthRenderer, RenderSettings

PIXEL_SAMPLES = 64  # clouds whose depth maps are compared pixel by pixel


def predictions(config: ExperimentConfig, settings: RenderSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-shot class index ``(M,)`` of every test object rendered with ``settings`` (at the config's
    views), and the labels ``(M,)``."""
    render = dataclasses.replace(settings, views=config.render.views)
    experiment = Experiment.from_config(dataclasses.replace(config, render=render), "cpu")
    dataset = experiment.dataset("test")
    cached = experiment.features(experiment.bundle.visual, dataset, progress=False)
    text = experiment.text_features(dataset.class_names)
    return zero_shot_logits(cached.features, text).argmax(-1), cached.labels


def differing_pixels(experiment: Experiment, dilation: int) -> float:
    """Share (%) of pixels drawn by either depth mode whose raw depth differs, weighted vs minimum, over the
    first :data:`PIXEL_SAMPLES` test clouds at every view."""
    dataset = experiment.dataset("test")
    points = torch.stack([dataset[i]["points"] for i in range(min(PIXEL_SAMPLES, len(dataset)))])
    depth = {}
    for mode in ("weighted", "minimum"):
        settings = RenderSettings(footprint="square", dilation=dilation, depth=mode)
        renderer = DepthRenderer(experiment.bundle.image_size, settings, norm=experiment.bundle.norm)
        depth[mode] = renderer.raw_depth(points, *experiment.views)
    drawn = (depth["weighted"] >= 0) | (depth["minimum"] >= 0)
    differ = drawn & ~torch.isclose(depth["weighted"], depth["minimum"], rtol=0, atol=1e-6)
    return 100.0 * differ.sum().item() / max(drawn.sum().item(), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/table5_agreement.py", description=__doc__.split("\n")[0]
    )
    add_config_arguments(parser)
    config = prepare(config_from_args(parser.parse_args(argv)))
    experiment = Experiment.from_config(config, "cpu")
    names = experiment.dataset("test").class_names
    print(
        f"zero-shot on {config.data.dataset} test, {config.model.name} ({config.model.pretrained}), CLIP's encoder"
    )
    predicted = {}
    for settings in TABLE5_SETTINGS:
        pred, labels = predictions(config, settings)
        predicted[settings.label()] = pred
        counts = torch.bincount(pred, minlength=len(names)).tolist()
        top = ", ".join(f"{names[k]} {c}" for k, c in sorted(enumerate(counts), key=lambda kc: -kc[1]) if c)
        accuracy = 100.0 * (pred == labels).float().mean().item()
        print(f"  {settings.label():22s} top-1 {accuracy:6.2f}%  predicted as: {top}")
    print("same prediction, share of objects:")
    for a, b in itertools.combinations(predicted, 2):
        same = 100.0 * (predicted[a] == predicted[b]).float().mean().item()
        print(f"  {a:22s} vs {b:22s} {same:6.2f}%")
    print(f"drawn pixels whose depth differs, weighted vs minimum ({PIXEL_SAMPLES} clouds, every view):")
    for dilation in (1, 2, 4):
        print(f"  square R={dilation}: {differing_pixels(experiment, dilation):6.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
