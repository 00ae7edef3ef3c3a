"""Train the bundled toy CLIP ("ToyCLIP"): a small open_clip model that only ever saw toy RGB renders.

Data: a stream of fresh procedural objects (:class:`clip2point.toy.clip_data.TrainStream`): every batch holds
new objects (no object is seen twice), each rendered at a few jittered official or random views, with captions
such as "image of a chair" / "image of a red chair" / "a red chair". Never a depth map.
Renders are the toy world's RGB setting (lit, perspective, camera at distance 2), not the depth views'.
Loss: CLIP's symmetric contrastive loss with a learnable logit scale, where every caption in the batch that
is true of an image counts as its positive (uniform soft targets), since classes repeat in every batch, plus
a spread term that keeps the ten class prompts "image of a {class}" apart (:func:`prompt_spread`).

Rebuild the shipped weights (``ToyCLIP.safetensors``, fp16, beside the config ``ToyCLIP.json``) with::

    python -m clip2point.toy.train_clip --out clip2point/assets/toy_clip

The defaults of :class:`TrainSettings` are the run that produced them; at the end the command prints the
zero-shot report of :func:`held_out_report` (``pytest tests/toy/test_toy_clip.py -s`` prints the same).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from clip2point.models.backbone import toy_assets_dir
from clip2point.models.heads import cosine_logits
from clip2point.models.prompts import encode_prompts, prompt_texts
from clip2point.render.cameras import official_views
from clip2point.render.depth import DepthRenderer
from clip2point.toy.clip_data import TRAIN_STREAM, TrainStream, captions, render_objects
from clip2point.toy.shapes import CLASSES

MODEL_NAME = "ToyCLIP"
HELD_OUT_SEEDS = (12345, 12346, 12347)  # toy-world seeds of evaluation objects, never used for training
EVAL_PER_CLASS = 4  # held-out objects per class and seed: 40 objects, 400 renders
DEPTH_SETTINGS = {
    "disk": {"footprint": "disk", "radius": 0.02},
    "square2": {"footprint": "square", "dilation": 2},
}


def create_toy_clip(config_dir: Path | None = None):
    """A randomly initialised ToyCLIP (open_clip ``CLIP``) and its tokenizer, from
    ``<config_dir>/ToyCLIP.json`` (default: the package assets)."""
    import open_clip

    open_clip.add_model_config(Path(config_dir or toy_assets_dir()) / f"{MODEL_NAME}.json")
    return open_clip.create_model(MODEL_NAME), open_clip.get_tokenizer(MODEL_NAME)


def image_size(model) -> int:
    """The square input size S of the model's visual tower."""
    size = model.visual.image_size
    return int(size if isinstance(size, int) else size[0])


def contrastive_loss(
    image_f: torch.Tensor, text_f: torch.Tensor, scale: torch.Tensor, describes: torch.Tensor
):
    """Symmetric CLIP loss for L2-normalised ``(B, D)`` features; ``describes[i, j]`` marks text ``j`` as a
    positive of image ``i`` (each row and column needs one). Targets are uniform over the positives."""
    logits = scale * image_f @ text_f.T
    pos = describes.float()
    rows = F.cross_entropy(logits, pos / pos.sum(1, keepdim=True))
    cols = F.cross_entropy(logits.T, pos.T / pos.T.sum(1, keepdim=True))
    return (rows + cols) / 2


def prompt_spread(prompt_f: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean squared excess ``relu(cos - margin) ** 2`` over the off-diagonal pairs of L2-normalised class
    prompt features ``(K, C)``: zero once no two prompts have a cosine above ``margin``."""
    cos = prompt_f @ prompt_f.T
    off = ~torch.eye(len(cos), dtype=torch.bool, device=cos.device)
    return F.relu(cos[off] - margin).pow(2).mean()


@torch.no_grad()
def zero_shot(visual, text_encoder, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """Zero-shot logits ``(O, V, K)`` (cosine, no scale) of view images ``(O, V, 3, S, S)`` against the
    prompts "image of a {name}" of the toy classes; ``visual`` maps ``(M, 3, S, S)`` to features."""
    text = encode_prompts(text_encoder, CLASSES)
    flat = images.flatten(0, 1)
    feats = torch.cat([visual(flat[i : i + batch]) for i in range(0, len(flat), batch)])
    return cosine_logits(feats.reshape(*images.shape[:2], -1), text)


def accuracies(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 of per-view logits ``(O, V, K)`` against ``labels (O,)``: per view image, and per object with the
    zero-shot head's logits, the mean over the views."""
    per_view = logits.argmax(-1).eq(labels[:, None]).float().mean().item()
    per_object = logits.mean(1).argmax(-1).eq(labels).float().mean().item()
    return {"view": per_view, "object": per_object}


def text_encoder_of(model, tokenizer):
    """The training model's text path as :func:`clip2point.models.prompts.encode_prompts` wants it."""

    def encode(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts))

    return encode


def evaluate(
    visual,
    text_encoder,
    size: int,
    seed: int = HELD_OUT_SEEDS[0],
    per_class: int = EVAL_PER_CLASS,
    stream=None,
) -> dict:
    """Zero-shot top-1 on toy objects of ``seed`` (toy-world stream 'shapenet', or ``stream``) for an encoder
    of input size ``size``: RGB renders, and depth maps of 1,024-point clouds for each of
    :data:`DEPTH_SETTINGS`; official views.

    Returns ``{"rgb": {"view": top-1 per render, "object": top-1 of the view-averaged logits},
    "depth_disk": {...}, "depth_square2": {...}}``.
    """
    images, points, labels = render_objects(seed, per_class, size, stream=stream or "shapenet")
    out = {"rgb": accuracies(zero_shot(visual, text_encoder, images), labels)}
    for name, setting in DEPTH_SETTINGS.items():
        depth = DepthRenderer(image_size=size, **setting)(points, *official_views(10))
        out[f"depth_{name}"] = accuracies(zero_shot(visual, text_encoder, depth), labels)
    return out


def closest_prompts(text_encoder) -> tuple[float, str, str]:
    """The largest cosine between the prompt features of two different toy classes, and those classes."""
    text = encode_prompts(text_encoder, CLASSES)
    cos = (text @ text.T).fill_diagonal_(-math.inf)
    i, j = divmod(int(cos.argmax()), len(CLASSES))
    return cos[i, j].item(), CLASSES[i], CLASSES[j]


def held_out_report(
    visual, text_encoder, size: int, seeds=HELD_OUT_SEEDS, per_class: int = EVAL_PER_CLASS
) -> dict:
    """The closest pair of class prompts and :func:`evaluate` on ``per_class`` objects of each seed:
    ``{"closest_prompts": {"cosine": c, "pair": [a, b]}, "held_out": {seed: evaluate(...)}}``."""
    cosine, a, b = closest_prompts(text_encoder)
    return {
        "closest_prompts": {"cosine": cosine, "pair": [a, b]},
        "held_out": {seed: evaluate(visual, text_encoder, size, seed, per_class) for seed in seeds},
    }


def format_report(report: dict) -> str:
    """:func:`held_out_report` as text lines: top-1 per render / per object for each seed and input."""
    close = report["closest_prompts"]
    lines = [f"largest prompt cosine {close['cosine']:.3f} ({' / '.join(close['pair'])})"]
    for seed, acc in report["held_out"].items():
        cells = ", ".join(f"{name} {a['view']:.1%} / {a['object']:.1%}" for name, a in acc.items())
        lines.append(f"held-out seed {seed} (top-1 per render / per object): {cells}")
    return "\n".join(lines)


def _setting(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainSettings:
    """One training run; the defaults made the shipped weights."""

    seed: int = _setting(0, "seed of the weights, the training objects and the captions")
    steps: int = _setting(1500, "optimiser steps (batches)")
    objects: int = _setting(16, "fresh objects per batch")
    views: int = _setting(4, "random views per object")
    lr: float = _setting(3e-3, "peak learning rate of the one-cycle schedule")
    spread: float = _setting(1.0, "weight of the prompt-spread term")
    margin: float = _setting(0.8, "prompt cosine above which the prompt-spread term acts")


def train_toy_clip(
    out_dir: str | Path,
    settings: TrainSettings = TrainSettings(),
    config_dir: Path | None = None,
    progress: bool = True,
):
    """Train ToyCLIP for ``settings.steps`` batches of ``objects`` fresh objects x ``views`` views; write
    ``ToyCLIP.json`` and fp16 ``ToyCLIP.safetensors`` to ``out_dir``; return the model and tokenizer."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model, tokenizer = create_toy_clip(config_dir)
    stream = TrainStream(settings.seed, image_size(model), settings.objects, settings.views)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=settings.lr, total_steps=settings.steps, pct_start=0.1
    )
    prompts = tokenizer(prompt_texts(CLASSES))
    model.train()
    try:
        for step in (bar := tqdm(range(settings.steps), desc="train ToyCLIP", disable=not progress)):
            images, labels, colours = stream.batch(step)
            texts, describes = captions(labels, colours, gen)
            image_f = F.normalize(model.encode_image(images), dim=-1)
            text_f = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
            prompt_f = F.normalize(model.encode_text(prompts), dim=-1)
            loss = contrastive_loss(image_f, text_f, model.logit_scale.exp(), describes)
            loss = loss + settings.spread * prompt_spread(prompt_f, settings.margin)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        stream.release()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Path(config_dir or toy_assets_dir()) / f"{MODEL_NAME}.json"
    if config.resolve() != (out / config.name).resolve():
        shutil.copy(config, out / config.name)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / f"{MODEL_NAME}.safetensors")
    return model.eval(), tokenizer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for ToyCLIP.json and ToyCLIP.safetensors")
    parser.add_argument(
        "--config-dir", type=Path, default=None, help="folder of ToyCLIP.json (default: assets)"
    )
    for setting in dataclasses.fields(TrainSettings):
        parser.add_argument(
            f"--{setting.name}",
            type=type(setting.default),
            default=setting.default,
            help=f"{setting.metadata['help']} (default %(default)s)",
        )
    parser.add_argument("--threads", type=int, default=2)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)})
    start = time.time()
    model, tokenizer = train_toy_clip(args.out, settings, args.config_dir)
    print(f"trained in {time.time() - start:.0f} s with {settings}")
    encoders = (model.visual, text_encoder_of(model, tokenizer), image_size(model))
    train = evaluate(*encoders, seed=settings.seed, stream=TRAIN_STREAM)["rgb"]
    print(f"training objects, RGB top-1 per render / per object: {train['view']:.1%} / {train['object']:.1%}")
    print(format_report(held_out_report(*encoders)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
