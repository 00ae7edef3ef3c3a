"""Train the bundled toy CLIP ("ToyCLIP"): a small open_clip model that only ever saw toy RGB renders.

Data: the toy world's ShapeNet-part objects (``object_rng(seed, "shapenet", label, k)``, k < per_class),
rendered at the 10 official views, 224 x 224, normalised with CLIP's mean/std; captions such as
"image of a red chair" / "image of a chair" / "a red chair" (class names with underscores as spaces).
Loss: CLIP's symmetric contrastive loss with a learnable logit scale; pairs in a batch that share a caption
count as positives of one another (uniform soft targets), since ten classes repeat in every batch.

Run ``python -m clip2point.toy.train_clip --out clip2point/assets/toy_clip`` to rebuild the shipped weights
(``ToyCLIP.safetensors``, fp16, next to the model config ``ToyCLIP.json``).
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from clip2point.render.cameras import official_views
from clip2point.render.depth import CLIP_MEAN, CLIP_STD, DepthRenderer
from clip2point.render.mesh import MeshRenderer
from clip2point.toy.shapes import CLASSES, make_shape
from clip2point.toy.world import object_rng, sample_cloud

MODEL_NAME = "ToyCLIP"
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "toy_clip"
PROMPT = "image of a {}"


def class_names() -> list[str]:
    """The toy class names as prompts use them (underscores as spaces)."""
    return [c.replace("_", " ") for c in CLASSES]


def create_toy_clip(config_dir: Path = ASSET_DIR):
    """A randomly initialised ToyCLIP (open_clip ``CLIP``) and its tokenizer, from ``config_dir/ToyCLIP.json``."""
    import open_clip

    open_clip.add_model_config(Path(config_dir) / f"{MODEL_NAME}.json")
    return open_clip.create_model(MODEL_NAME), open_clip.get_tokenizer(MODEL_NAME)


def to_clip_images(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, S, S, 3)`` renders -> float ``(N, 3, S, S)`` normalised with CLIP's mean/std."""
    x = torch.as_tensor(rgb).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def render_objects(seed: int, per_class: int, first: int = 0, progress: bool = False):
    """Objects ``first .. first + per_class - 1`` of every class: RGB at the 10 official views and clouds.

    Returns ``rgb (O, 10, 224, 224, 3)`` uint8, ``points (O, 1024, 3)`` float32 (unit sphere, Y up),
    ``labels (O,)`` int64 and the colour word of each object.
    """
    renderer = MeshRenderer(image_size=224)
    views = official_views(10)
    rgb, points, labels, colours = [], [], [], []
    todo = [(label, k) for label in range(len(CLASSES)) for k in range(first, first + per_class)]
    try:
        for label, k in tqdm(todo, desc="render toy objects", disable=not progress):
            rng = object_rng(seed, "shapenet", label, k)
            mesh = make_shape(label, rng)
            rgb.append(renderer.render(mesh.vertices, mesh.faces, *views, face_colors=mesh.face_colors))
            points.append(sample_cloud(mesh, 1024, rng))
            labels.append(label)
            colours.append(mesh.colour)
    finally:
        renderer.release()
    return np.stack(rgb), np.stack(points), np.asarray(labels, dtype=np.int64), colours


def _captions(labels: np.ndarray, colours: list[str], gen: torch.Generator) -> list[str]:
    names = class_names()
    templates = ("image of a {c} {n}", "image of a {n}", "a {c} {n}", "a photo of a {c} {n}")
    picks = torch.randint(len(templates), (len(labels),), generator=gen).tolist()
    return [templates[p].format(c=c, n=names[lab]) for p, lab, c in zip(picks, labels, colours, strict=True)]


def contrastive_loss(image_f: torch.Tensor, text_f: torch.Tensor, scale: torch.Tensor, same: torch.Tensor):
    """Symmetric CLIP loss for L2-normalised ``(B, D)`` features; ``same (B, B)`` bool marks positives."""
    logits = scale * image_f @ text_f.T
    targets = same.float() / same.float().sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


@torch.no_grad()
def zero_shot_accuracy(
    model, tokenizer, images: torch.Tensor, labels: torch.Tensor, batch: int = 200
) -> float:
    """Top-1 accuracy of prompts "image of a {name}" on CLIP-normalised ``images (N, 3, 224, 224)``."""
    model.eval()
    text = F.normalize(model.encode_text(tokenizer([PROMPT.format(n) for n in class_names()])), dim=-1)
    correct = 0
    for i in range(0, len(images), batch):
        feats = F.normalize(model.encode_image(images[i : i + batch]), dim=-1)
        correct += (feats @ text.T).argmax(1).eq(labels[i : i + batch]).sum().item()
    return correct / len(images)


def evaluate(model, tokenizer, seed: int = 12345, per_class: int = 3) -> dict[str, float]:
    """Zero-shot top-1 of the toy CLIP on fresh toy objects (``seed``): per RGB render and per depth map
    (DepthRenderer, official disk footprint and normalisation, 1,024 points), all 10 official views."""
    rgb, points, labels, _ = render_objects(seed, per_class)
    views = official_views(10)
    per_view = torch.from_numpy(labels).repeat_interleave(10)
    depth = DepthRenderer(image_size=224)(torch.from_numpy(points), *views).flatten(0, 1)
    return {
        "rgb": zero_shot_accuracy(model, tokenizer, to_clip_images(rgb.reshape(-1, 224, 224, 3)), per_view),
        "depth": zero_shot_accuracy(model, tokenizer, depth, per_view),
    }


def train_toy_clip(
    out_dir: str | Path,
    seed: int = 0,
    per_class: int = 15,
    epochs: int = 40,
    batch_size: int = 128,
    lr: float = 3e-3,
    progress: bool = True,
) -> dict[str, float]:
    """Train ToyCLIP on ``per_class`` objects per class x 10 views; write ``ToyCLIP.json`` and fp16
    ``ToyCLIP.safetensors`` to ``out_dir``; return the held-out zero-shot accuracies of :func:`evaluate`."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model, tokenizer = create_toy_clip()
    rgb, _, labels, colours = render_objects(seed, per_class, progress=progress)
    images = rgb.reshape(-1, 224, 224, 3)
    image_labels = np.repeat(labels, 10)
    image_colours = [c for c in colours for _ in range(10)]
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    bar = tqdm(total=steps, desc="train ToyCLIP", disable=not progress)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), batch_size):
            idx = order[i : i + batch_size].numpy()
            captions = _captions(image_labels[idx], [image_colours[j] for j in idx], gen)
            ids = {c: n for n, c in enumerate(sorted(set(captions)))}
            cap = torch.tensor([ids[c] for c in captions])
            image_f = F.normalize(model.encode_image(to_clip_images(images[idx])), dim=-1)
            text_f = F.normalize(model.encode_text(tokenizer(captions)), dim=-1)
            loss = contrastive_loss(image_f, text_f, model.logit_scale.exp(), cap[:, None] == cap[None, :])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / f"{MODEL_NAME}.json").resolve() != (ASSET_DIR / f"{MODEL_NAME}.json").resolve():
        shutil.copy(ASSET_DIR / f"{MODEL_NAME}.json", out / f"{MODEL_NAME}.json")
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / f"{MODEL_NAME}.safetensors")
    return evaluate(model, tokenizer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for ToyCLIP.json and ToyCLIP.safetensors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=15, help="training objects per class (x 10 views)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle schedule)")
    args = parser.parse_args(argv)
    acc = train_toy_clip(args.out, seed=args.seed, per_class=args.per_class, epochs=args.epochs, lr=args.lr)
    print(f"held-out zero-shot top-1: RGB {acc['rgb']:.2%}, depth {acc['depth']:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
