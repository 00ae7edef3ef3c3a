"""Toy RGB renders for the toy CLIP: a fresh-object training stream, fixed object sets, captions.

Renders are made as the toy world's ``rendering/`` PNGs are (:func:`clip2point.render.mesh.rgb_renderer`: lit,
perspective, camera at distance :data:`~clip2point.render.mesh.RGB_DISTANCE`), at 224 x 224, and resized with
PIL's bicubic filter to the encoder's input size, exactly as :func:`clip2point.data.files.read_image` resizes
the toy world's PNGs, then normalised with CLIP's mean/std. Never a depth map.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from clip2point.render.cameras import official_views
from clip2point.render.depth import OPENAI_CLIP_NORM
from clip2point.render.mesh import rgb_renderer
from clip2point.toy.shapes import CLASSES, PALETTE, make_shape
from clip2point.toy.world import object_rng, render_rgb, sample_cloud

RENDER_SIZE = 224
TRAIN_STREAM = 4  # seed-stream id of CLIP training objects (the toy world uses 1-3)
COLOURS = tuple(PALETTE)
TEMPLATES = ("image of a {n}", "image of a {c} {n}", "a {c} {n}", "a photo of a {c} {n}", "a {n}")
PLAIN_SHARE = 0.5  # share of captions that are the zero-shot prompt itself, TEMPLATES[0]


def class_names() -> list[str]:
    """The toy class names as prompts use them (underscores as spaces)."""
    return [c.replace("_", " ") for c in CLASSES]


def to_clip_images(rgb: np.ndarray, size: int) -> torch.Tensor:
    """uint8 renders ``(N, H, W, 3)`` -> ``(N, 3, size, size)`` float32, bicubic-resized, CLIP-normalised."""
    if rgb.shape[1:3] != (size, size):
        rgb = np.stack(
            [np.asarray(Image.fromarray(x).resize((size, size), Image.Resampling.BICUBIC)) for x in rgb]
        )
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0
    mean, std = OPENAI_CLIP_NORM.tensors(x)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def render_objects(seed: int, per_class: int, size: int, first: int = 0, stream: str | int = "shapenet"):
    """Objects ``first .. first + per_class - 1`` of every class at the 10 official views.

    ``stream`` is a toy-world part name (objects of :func:`clip2point.toy.world.object_rng`) or the integer
    :data:`TRAIN_STREAM` (the training objects of :class:`TrainStream`). Returns CLIP inputs
    ``images (O, 10, 3, size, size)``, clouds ``points (O, 1024, 3)`` float32 (unit sphere, Y up) and
    ``labels (O,)`` int64, object-major, classes in order.
    """
    renderer = rgb_renderer(image_size=RENDER_SIZE)
    views = official_views(10)
    images, points, labels = [], [], []
    try:
        for label in range(len(CLASSES)):
            for k in range(first, first + per_class):
                rng = _rng(seed, stream, label, k)
                mesh = make_shape(label, rng)
                images.append(to_clip_images(render_rgb(renderer, mesh, *views), size))
                points.append(sample_cloud(mesh, 1024, rng))
                labels.append(label)
    finally:
        renderer.release()
    return torch.stack(images), torch.from_numpy(np.stack(points)), torch.tensor(labels, dtype=torch.int64)


def _rng(seed: int, stream: str | int, label: int, k: int) -> np.random.Generator:
    if isinstance(stream, str):
        return object_rng(seed, stream, label, k)
    return np.random.default_rng([seed, stream, label, k])


class TrainStream:
    """Batches of never-repeating training objects, each at ``views`` random cameras.

    Batch ``b`` holds the objects ``g = b * per_batch + i``: object ``g // 10`` of class ``g % 10`` in stream
    :data:`TRAIN_STREAM` (as :func:`render_objects` numbers them), so every batch is class-balanced and no
    object is seen twice. Each object gets ``views`` cameras: a random official view with azim/elev jitter of
    +-``jitter`` degrees (probability ``1 - p_random``) or a uniformly random direction, at view distance
    ``U(0.9, 1.15)`` (the RGB camera is :data:`~clip2point.render.mesh.RGB_DISTANCE` times as far, see
    :func:`~clip2point.toy.world.render_rgb`). Deterministic by ``seed``.
    """

    def __init__(
        self, seed: int, size: int, per_batch: int, views: int, jitter: float = 10.0, p_random: float = 0.1
    ):
        self.seed, self.size, self.per_batch, self.views = seed, size, per_batch, views
        self.jitter, self.p_random = jitter, p_random
        self._official = torch.stack(official_views(10)[:2], dim=1).numpy()  # (10, 2) azim, elev
        self._renderer = rgb_renderer(image_size=RENDER_SIZE)

    def release(self) -> None:
        self._renderer.release()

    def _cameras(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        picks = self._official[rng.integers(10, size=self.views)] + rng.uniform(
            -self.jitter, self.jitter, (self.views, 2)
        )
        direction = rng.normal(size=(self.views, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        uniform = np.stack(
            [
                np.degrees(np.arctan2(direction[:, 0], direction[:, 2])),
                np.degrees(np.arcsin(direction[:, 1])),
            ],
            1,
        )
        cams = np.where(rng.random((self.views, 1)) < self.p_random, uniform, picks)
        return cams[:, 0], cams[:, 1], rng.uniform(0.9, 1.15, self.views)

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Batch ``index``: images ``(per_batch * views, 3, size, size)``, labels and main-colour words."""
        images, labels, colours = [], [], []
        for i in range(self.per_batch):
            label, k = divmod(index * self.per_batch + i, len(CLASSES))[::-1]
            rng = _rng(self.seed, TRAIN_STREAM, label, k)
            mesh = make_shape(label, rng)
            images.append(to_clip_images(render_rgb(self._renderer, mesh, *self._cameras(rng)), self.size))
            labels += [label] * self.views
            colours += [mesh.colour] * self.views
        return torch.cat(images), torch.tensor(labels), colours


def captions(
    labels: torch.Tensor, colours: list[str], gen: torch.Generator
) -> tuple[list[str], torch.Tensor]:
    """A random caption per image (the plain prompt with probability :data:`PLAIN_SHARE`) and ``describes
    (B, B)`` bool: caption ``j`` is true of image ``i`` (same class, and the same main colour when the
    caption names one)."""
    names = class_names()
    plain = torch.rand(len(labels), generator=gen) < PLAIN_SHARE
    picks = torch.randint(1, len(TEMPLATES), (len(labels),), generator=gen).masked_fill(plain, 0).tolist()
    texts = [
        TEMPLATES[p].format(c=c, n=names[lab])
        for p, lab, c in zip(picks, labels.tolist(), colours, strict=True)
    ]
    coloured = torch.tensor(["{c}" in TEMPLATES[p] for p in picks])
    colour_ids = torch.tensor([COLOURS.index(c) for c in colours])
    same_class = labels[:, None] == labels[None, :]
    same_colour = colour_ids[:, None] == colour_ids[None, :]
    return texts, same_class & (~coloured[None, :] | same_colour)
