"""What a pack holds, object by object: the plan :mod:`clip2point.engine.pack` packs, from a data root.

Layouts:

- ``shapenet55``: the authors' ShapeNet55 pre-training layout (the toy world has it too): the clouds of a
  split list, their 10 official renders ``rendering/<synset>_<model>/<i>.png`` at the official views.
  Objects, records and skipped objects are exactly those of the raw pre-training pairs
  (:class:`~clip2point.data.datasets.ShapeNet55Pretrain`, same ``on_error``), so a pack serves the same
  samples as the raw files.
- ``generic``: any other render set, ``<root>/<class>/<object>/`` with ``cloud.npy`` (``(P, 3)``),
  renders ``0.png .. <V-1>.png`` and ``cameras.json``, a list of V ``{"azim", "elev", "dist"}`` (degrees,
  distance), one per render. Labels follow the sorted class folders.

Missing renders and bad clouds raise :class:`InputError` naming the file (``on_error="raise"``) or leave
the object out and list it in ``skipped`` (``"skip"``; the clouds are read once to find the bad ones, as
the raw files' path does). A ``cameras.json`` that cannot be read or does not match the renders is always
an error naming it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clip2point.data.datasets import ShapeNet55Pretrain
from clip2point.data.files import read_npy
from clip2point.errors import InputError
from clip2point.registry import PACK_LAYOUTS
from clip2point.render.cameras import official_views

log = logging.getLogger(__name__)

GENERIC_LAYOUT = "<root>/<class>/<object>/{cloud.npy, 0.png .. <V-1>.png, cameras.json}"


@dataclass(frozen=True)
class PackObject:
    """One object to pack: its served ``index``, source ``record``, ``label``, ``cloud`` file, ``renders``
    (V files) and ``cameras`` ``(V, 3)`` float32 (azimuth, elevation in degrees, distance)."""

    index: int
    record: int
    label: int
    cloud: str
    renders: tuple[str, ...]
    cameras: np.ndarray


@dataclass(frozen=True)
class PackPlan:
    layout: str
    root: str
    split: str
    class_names: tuple[str, ...]
    objects: list[PackObject]
    skipped: list[tuple[str, str]]


def plan_pack(layout: str, root: str | Path, split: str = "train", on_error: str = "raise") -> PackPlan:
    """The objects of ``root`` in ``layout`` (one of :data:`~clip2point.registry.PACK_LAYOUTS`) to pack."""
    if layout == "shapenet55":
        return _plan_shapenet(Path(root), split, on_error)
    if layout == "generic":
        return _plan_generic(Path(root), on_error)
    raise InputError(f"pack layout {layout!r} is not allowed; use one of {', '.join(PACK_LAYOUTS)}")


def _plan_shapenet(root: Path, split: str, on_error: str) -> PackPlan:
    # sampling="random" keeps the raw dataset from reducing every cloud up front; with on_error="skip" it
    # reads each once to find the bad ones, and its records (the per-epoch seeds) are the pack's.
    pairs = ShapeNet55Pretrain(root, split, num_points=1, on_error=on_error, sampling="random")
    azim, elev, dist = official_views(pairs.NUM_VIEWS)
    cameras = np.stack([azim.numpy(), elev.numpy(), dist.numpy()], axis=1)
    objects = []
    for index, (record, label) in enumerate(zip(pairs.records.tolist(), pairs.labels.tolist(), strict=True)):
        synset, model = pairs.model_ids[record]
        folder = pairs.render_root / f"{synset}_{model}"
        renders = tuple(str(folder / f"{i}.png") for i in range(pairs.NUM_VIEWS))
        objects.append(PackObject(index, record, label, str(pairs.sources[record]), renders, cameras))
    return PackPlan("shapenet55", str(root), split, pairs.class_names, objects, list(pairs.skipped))


def read_cameras(path: Path, renders: int) -> np.ndarray:
    """``cameras.json`` of a generic object with ``renders`` renders, as ``(V, 3)`` float32."""
    try:
        entries = json.loads(path.read_text())
        cameras = np.array([[e["azim"], e["elev"], e["dist"]] for e in entries], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read {path}: {exc}; expected a list of "
                         '{"azim": deg, "elev": deg, "dist": d}, one per render') from exc  # fmt: skip
    if len(cameras) != renders:
        raise InputError(f"{path} lists {len(cameras)} cameras for {renders} renders (0.png .. "
                         f"{renders - 1}.png in {path.parent}); expected one camera per render")  # fmt: skip
    if not np.isfinite(cameras).all() or (cameras[:, 2] <= 0).any():
        raise InputError(f"{path}: every camera needs finite angles and a distance > 0")
    return cameras


def _plan_generic(root: Path, on_error: str) -> PackPlan:
    if not root.is_dir():
        raise InputError(f"data folder {root} not found; expected layout: {GENERIC_LAYOUT}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    objects, skipped, record = [], [], 0
    for label, name in enumerate(classes):
        for folder in sorted(p for p in (root / name).iterdir() if p.is_dir()):
            cloud = folder / "cloud.npy"
            renders = []
            while (folder / f"{len(renders)}.png").is_file():
                renders.append(str(folder / f"{len(renders)}.png"))
            try:
                if not renders:
                    raise InputError(
                        f"{folder}: no renders 0.png, 1.png, ...; expected layout: {GENERIC_LAYOUT}"
                    )
                if on_error == "skip":
                    read_npy(cloud)  # find a bad cloud now, not in the middle of packing
                elif not cloud.is_file():
                    raise InputError(f"{cloud} not found; expected layout: {GENERIC_LAYOUT}")
            except InputError as exc:
                if on_error == "raise":
                    raise
                skipped.append((str(cloud), str(exc)))
                continue
            cameras = read_cameras(folder / "cameras.json", len(renders))
            objects.append(PackObject(len(objects), record, label, str(cloud), tuple(renders), cameras))
            record += 1
    if skipped:
        log.warning("%s: leaving out %d objects (on_error='skip'), first: %s", root, len(skipped), skipped[0])
    return PackPlan("generic", str(root), "train", tuple(classes), objects, skipped)
