"""Torch datasets over the on-disk layouts of docs/method.md section 5.

Every dataset serves dicts; ``points`` is a ``(N, 3)`` float32 tensor centred and scaled into the unit
sphere, ``label`` an int in the order of :mod:`clip2point.data.classnames`. The ShapeNet55 pre-training
pairs add ``image (3, S, S)`` (a CLIP-normalised RGB render), ``view`` (its index 0..9) and that view's
``azim``, ``elev`` (degrees) and ``dist`` from ``clip2point.render.official_views(10)``.

Common options:

- ``seed``: per-sample randomness (mesh surface sampling, the pre-training view) is drawn from
  ``numpy.random.default_rng((seed, record))`` (plus the epoch for views), so a sample is the same on
  every run, in every worker, with or without a cache.
- ``cache_dir``: preprocess once into a memory-mapped cache (:mod:`clip2point.data.cache`); the samples
  served are identical to the uncached ones.
- ``on_error``: ``"raise"`` (default) raises :class:`InputError` naming the bad file when it is read;
  ``"skip"`` reads every file up front (or while building the cache), leaves bad ones out, logs a warning
  and records them in ``dataset.skipped`` (``num_skipped`` counts them). No sample is ever silently wrong.
  Files a sample needs besides its cloud (the pre-training renders) are checked when the dataset is built:
  missing ones raise then (``"raise"``) or leave their sample out (``"skip"``), never in the middle of an
  epoch.
- ``sampling`` (ShapeNet55): ``"fps"`` reduces each stored cloud by farthest point sampling; ``"random"``
  draws a fresh random subset every epoch (:meth:`ShapeNet55.set_epoch`), seeded per
  ``(seed, epoch, record)``, as the authors' pre-training does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from clip2point.data import classnames
from clip2point.data.cache import Samples, check_on_error, compute_samples, fingerprint, load_or_build
from clip2point.data.files import read_h5, read_image, read_npy, read_off, read_ply
from clip2point.data.sampling import (
    KERNEL_EXCLUSION,
    check_points,
    normalize_unit_sphere,
    random_subset,
    resample,
    sample_surface,
)
from clip2point.errors import InputError
from clip2point.registry import DATASET_NAMES, DATASETS
from clip2point.render.cameras import align_modelnet, official_views
from clip2point.render.depth import OPENAI_CLIP_NORM

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
SAMPLINGS = ("fps", "random")


def _require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise InputError(f"data folder {path} not found; expected layout: {layout}")
    return path


def _check_split(split: str, allowed: Sequence[str] = SPLITS) -> None:
    if split not in allowed:
        raise InputError(f"split={split!r} is not allowed; use one of {', '.join(allowed)}")


class PointCloudDataset(Dataset):
    """Base class: ``records`` (one per source sample) -> ``{"points": (N, 3) float32, "label": int}``.

    Subclasses set ``sources``, ``labels (R,)``, ``class_names`` and implement :meth:`compute`; then call
    :meth:`_prepare`. ``len(dataset)`` counts the kept samples; ``dataset.labels (M,)`` their labels.
    ``per_epoch``: the samples change with the epoch (:meth:`set_epoch`), so none are stored or cached.
    """

    class_names: tuple[str, ...]
    per_epoch = False
    ALL_POINTS = False  # whether num_points=None (every point of each file) is allowed

    def __init__(self, name: str, num_points: int | None, seed: int, cache_dir, on_error: str) -> None:
        check_on_error(on_error)
        if num_points is None and not self.ALL_POINTS:
            raise InputError(
                f"{name}: num_points=None (every point of each file) applies to modelnet40_ply only; give a "
                "number of points (the authors use 1024)"
            )
        if num_points is not None and num_points < 1:
            raise InputError(f"num_points must be >= 1, got {num_points}")
        self.name, self.num_points, self.seed, self.epoch = name, num_points, seed, 0
        self.cache_dir, self.on_error = cache_dir, on_error
        self.sources: list[Path] = []
        self._samples: Samples | None = None
        self.skipped: list[tuple[str, str]] = []

    def compute(self, record: int) -> np.ndarray:
        """The processed cloud ``(num_points, 3)`` float32 of one record (``(N, 3)``, every point of the
        file, when ``num_points`` is None)."""
        raise NotImplementedError

    def source_of(self, record: int) -> str:
        """The file a record comes from (named in errors and ``skipped``)."""
        return str(self.sources[record])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the samples use (pre-training views, per-epoch subsets)."""
        self.epoch = epoch

    def settings(self) -> dict[str, Any]:
        """Every option that changes the samples (part of the cache fingerprint)."""
        return {"dataset": self.name, "num_points": self.num_points, "seed": self.seed}

    def fingerprint(self) -> str:
        """SHA-256 of the source files (paths, sizes, mtimes) and :meth:`settings`: equal fingerprints,
        equal samples. Keys the sample cache and the feature cache, and tags MLflow runs."""
        return fingerprint(self._fingerprint_sources, self.settings())

    def _prepare(self, labels: np.ndarray, fingerprint_sources: Sequence[Path]) -> None:
        self._fingerprint_sources = list(fingerprint_sources)
        self._all_labels = np.asarray(labels, dtype=np.int64)
        if len(self._all_labels) == 0:
            raise InputError(f"{self.name}: no samples found in {self.root}")
        if self.per_epoch:
            if self.on_error == "skip":  # find the bad files now; their samples differ every epoch
                self._samples = compute_samples(
                    self._all_labels, self.compute, "skip", f"checking {self.name}", keep_points=False
                )
        elif self.cache_dir is not None:
            self._samples = load_or_build(
                self.cache_dir, self.name, fingerprint_sources, self.settings(), self._all_labels,
                self.compute, self.on_error,
            )  # fmt: skip
        elif self.on_error == "skip":
            self._samples = compute_samples(self._all_labels, self.compute, "skip", f"reading {self.name}")
        if self._samples is not None:
            self.skipped = [(self.source_of(r), msg) for r, msg in self._samples.skipped]

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def records(self) -> np.ndarray:
        """``(M,)`` index of each served sample in the full record list."""
        return np.arange(len(self._all_labels)) if self._samples is None else self._samples.records

    @property
    def labels(self) -> np.ndarray:
        """``(M,)`` int64 labels of the served samples (for K-shot selection without reading points)."""
        return self._all_labels[self.records]

    def __len__(self) -> int:
        return len(self.records)

    def points(self, index: int) -> torch.Tensor:
        """The cloud ``(num_points, 3)`` float32 of served sample ``index``."""
        if self._samples is None or self._samples.points is None:
            return torch.from_numpy(self.compute(int(self.records[index])))
        return torch.from_numpy(np.array(self._samples.points[index], dtype=np.float32))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} of {len(self)} samples")
        index %= len(self)
        return {"points": self.points(index), "label": int(self.labels[index])}


def _finish(points: torch.Tensor, align: bool) -> np.ndarray:
    """Unit-sphere normalisation, then the optional ModelNet "rot" alignment; ``(N, 3)`` float32 numpy."""
    points = normalize_unit_sphere(points)
    return (align_modelnet(points) if align else points).numpy().astype(np.float32)


class ModelNet(PointCloudDataset):
    """ModelNet10 / ModelNet40 aligned: ``<root>/<folder>/<class>/<split>/*.off`` meshes.

    Each mesh is surface-sampled (area-weighted, seed ``(seed, record)``) to ``num_points``, normalised,
    and by default aligned with the official ModelNet "rot" (``align``). ``variant`` is "modelnet10"
    (folder ``ModelNet10``) or "modelnet40" (folder ``ModelNet40_manually_aligned``). ``resample``: sample
    every mesh anew for every epoch (:meth:`set_epoch`), seed ``(seed, epoch, record, 3)``, as the
    authors' few-shot script does on every load; such samples are not cached.
    """

    RESAMPLE_STREAM = 3  # seed-sequence word that sets the per-epoch samples apart from the fixed ones

    FOLDERS: ClassVar[dict[str, str]] = {
        "modelnet10": "ModelNet10",
        "modelnet40": "ModelNet40_manually_aligned",
    }

    def __init__(
        self, root, split="test", num_points=1024, variant="modelnet40", align=True, seed=0, cache_dir=None,
        on_error="raise", resample=False,
    ) -> None:  # fmt: skip
        if variant not in self.FOLDERS:
            raise InputError(f"ModelNet variant {variant!r} is not allowed; use {', '.join(self.FOLDERS)}")
        _check_split(split)
        super().__init__(f"{variant}-{split}", num_points, seed, cache_dir, on_error)
        self.per_epoch = resample
        self.class_names = classnames.class_names(variant)
        self.root, self.align = Path(root), align
        layout = f"{self.FOLDERS[variant]}/<class>/{{train,test}}/*.off"
        base = _require_dir(self.root / self.FOLDERS[variant], layout)
        labels = []
        for label, name in enumerate(self.class_names):
            files = sorted(_require_dir(base / name / split, layout).glob("*.off"))
            self.sources += files
            labels += [label] * len(files)
        self._prepare(np.asarray(labels), self.sources)

    def settings(self) -> dict[str, Any]:
        resampled = {"resample": True, "epoch": self.epoch} if self.per_epoch else {}
        return {**super().settings(), "align": self.align, **resampled}

    def compute(self, record: int) -> np.ndarray:
        vertices, faces = read_off(self.sources[record])
        seed = (
            (self.seed, self.epoch, record, self.RESAMPLE_STREAM) if self.per_epoch else (self.seed, record)
        )
        source = self.source_of(record)
        cloud = sample_surface(vertices, faces, self.num_points, seed, source=source)
        return _finish(torch.from_numpy(cloud), self.align)


class ModelNet40Ply(PointCloudDataset):
    """The authors' fixed ModelNet40 test samples: ``<root>/ModelNet40_Ply/<label>_<anything>.ply``.

    ``<label>`` is the ModelNet40 class index. The ``x, y, z`` vertices are reduced to ``num_points`` by
    farthest point sampling (a file with fewer points is an error), normalised, and aligned if ``align``.
    ``num_points=None`` keeps every vertex of the file, as the authors' code does (files of different
    sizes then cannot share a batch). Only the ``test`` split exists.
    """

    ALL_POINTS = True

    def __init__(
        self, root, split="test", num_points=1024, align=True, seed=0, cache_dir=None, on_error="raise"
    ) -> None:
        _check_split(split, ("test",))
        super().__init__("modelnet40_ply-test", num_points, seed, cache_dir, on_error)
        self.class_names = classnames.MODELNET40
        self.root, self.align = Path(root), align
        base = _require_dir(self.root / "ModelNet40_Ply", "ModelNet40_Ply/<label>_<anything>.ply")
        self.sources = sorted(base.glob("*.ply"))
        labels = []
        for path in self.sources:
            head = path.name.split("_", 1)[0]
            if not (head.isdigit() and int(head) < len(self.class_names)):
                raise InputError(f"{path}: file name must start with a ModelNet40 label 0..39 and '_'")
            labels.append(int(head))
        self._prepare(np.asarray(labels), self.sources)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "align": self.align}

    def compute(self, record: int) -> np.ndarray:
        cloud = torch.from_numpy(read_ply(self.sources[record]).astype(np.float32))
        if self.num_points is not None:
            cloud = resample(cloud, self.num_points, source=self.source_of(record))
        return _finish(cloud, self.align)


class ScanObjectNN(PointCloudDataset):
    """ScanObjectNN h5 files (keys ``data (M, 2048, 3)``, ``label (M,)``); no "rot".

    As the authors' code: each scan is normalised into the unit sphere on all its points, then reduced to
    ``num_points`` by farthest point sampling as their CUDA kernel does it (no point within
    ``sqrt(1e-3)`` of the centre is picked after the first), and not normalised again.

    ``variant``: "obj_only" (``main_split_nobg/``), "obj_bg" (``main_split/``) or "pb_t50_rs"
    (``main_split/*_augmentedrot_scale75.h5``). The split folder is looked for under ``<root>``,
    ``<root>/ScanObjectNN``, ``<root>/ScanObjectNN/h5_files`` and ``<root>/h5_files``, in this order.
    """

    VARIANTS: ClassVar[dict[str, tuple[str, str]]] = {
        "obj_only": ("main_split_nobg", ""),
        "obj_bg": ("main_split", ""),
        "pb_t50_rs": ("main_split", "_augmentedrot_scale75"),
    }

    def __init__(
        self, root, split="test", num_points=1024, variant="obj_only", seed=0, cache_dir=None,
        on_error="raise",
    ) -> None:  # fmt: skip
        if variant not in self.VARIANTS:
            allowed = ", ".join(self.VARIANTS)
            raise InputError(f"ScanObjectNN variant {variant!r} is not allowed; use one of {allowed}")
        _check_split(split)
        super().__init__(f"scanobjectnn_{variant}-{split}", num_points, seed, cache_dir, on_error)
        self.class_names = classnames.SCANOBJECTNN
        self.root = Path(root)
        folder, suffix = self.VARIANTS[variant]
        rel = Path(folder) / f"{'training' if split == 'train' else 'test'}_objectdataset{suffix}.h5"
        sub = self.root / "ScanObjectNN"
        bases = [self.root, sub, sub / "h5_files", self.root / "h5_files"]
        found = [b / rel for b in bases if (b / rel).is_file()]
        if not found:
            tried = ", ".join(str(b / rel) for b in bases)
            raise InputError(f"ScanObjectNN file not found; tried {tried}")
        self.path = found[0]
        self._data, labels = read_h5(self.path, check_finite=False)
        bad = (labels < 0) | (labels >= len(self.class_names))
        if bad.any():
            raise InputError(f"{self.path}: label {labels[bad][0]} out of range; allowed 0..14")
        self.sources = [self.path]
        self._prepare(labels, self.sources)
        if self._samples is not None:
            self._data = None  # served from the samples; free the raw clouds

    def source_of(self, record: int) -> str:
        return f"{self.path} sample {record}"

    def settings(self) -> dict[str, Any]:
        return super().settings() | {"fps_exclusion": KERNEL_EXCLUSION}

    def compute(self, record: int) -> np.ndarray:
        cloud, source = (
            torch.from_numpy(np.ascontiguousarray(self._data[record])).float(),
            self.source_of(record),
        )
        check_points(cloud, source)
        centred = normalize_unit_sphere(cloud)
        return resample(centred, self.num_points, source=source, exclude_below=KERNEL_EXCLUSION).numpy()


def _shapenet_taxonomy(path: Path) -> dict[str, str]:
    """``{synset id: class name}`` in label order: ``path`` (a custom taxonomy) if it exists, else ShapeNet55."""
    if not path.exists():
        return dict(classnames.SHAPENET55_SYNSETS)
    try:
        mapping = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the class taxonomy {path}: {exc}") from exc
    if (
        not isinstance(mapping, dict)
        or not mapping
        or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items())
    ):
        raise InputError(f'{path} must map synset ids to class names, e.g. {{"02691156": "airplane"}}')
    return {k: mapping[k] for k in sorted(mapping)}


# The authors' ShapeNet loader leaves out list entries whose "<synset>-<first part of the model id>" is here:
# eight chair models without renders (one in the test list); the table and ashcan entries match no line.
AUTHORS_DROPPED = frozenset(
    ("03001627-udf068a6b", "03001627-u6028f63e", "03001627-uca24feec", "04379243-", "02747177-",
     "03001627-u481ebf18", "03001627-u45c7b89f", "03001627-ub5d972a1", "03001627-u1e22cc04",
     "03001627-ue639c33f")
)  # fmt: skip


class ShapeNet55(PointCloudDataset):
    """ShapeNet55 clouds for zero-shot evaluation: ``{"points", "label"}``.

    ``<root>/ShapeNet55/ShapeNet-55/<split>.txt`` lists ``<synset>-<model>.npy`` files of
    ``<root>/ShapeNet55/shapenet_pc/`` (8,192 x 3 each); the label is the synset's index in the sorted
    ShapeNet55 synset ids. ``sampling``: ``"fps"`` reduces each cloud to ``num_points`` by farthest point
    sampling; ``"random"`` takes a random ``num_points`` of its points, drawn anew for every epoch
    (:meth:`set_epoch`) by ``numpy.random.default_rng((seed, epoch, record, 2, 1 + split index))`` (the
    authors' pre-training sampling; such samples are not cached). Either way the cloud is normalised after
    sampling. The ``test`` list serves as the validation split of pre-training. A custom taxonomy (another
    set of classes in the same layout, like the toy world's) is given by ``ShapeNet55/classes.json``, a
    mapping ``{synset id: class name}``; labels then follow its sorted synset ids.
    """

    LAYOUT = "ShapeNet55/ShapeNet-55/{train,test}.txt (lines <synset>-<model>.npy), ShapeNet55/shapenet_pc/"
    SUBSET_STREAM = 2  # seed-sequence word that sets the subsets' stream apart from the views'

    def __init__(
        self, root, split="test", num_points=1024, seed=0, cache_dir=None, on_error="raise", sampling="fps"
    ) -> None:
        _check_split(split)
        if sampling not in SAMPLINGS:
            raise InputError(f"sampling={sampling!r} is not allowed; use one of {', '.join(SAMPLINGS)}")
        super().__init__(f"shapenet55-{split}", num_points, seed, cache_dir, on_error)
        self.root, self.split, self.sampling = Path(root), split, sampling
        self.per_epoch = sampling == "random"
        synsets = _shapenet_taxonomy(self.root / "ShapeNet55" / "classes.json")
        self.class_names = tuple(synsets.values())
        lists = _require_dir(self.root / "ShapeNet55" / "ShapeNet-55", self.LAYOUT)
        clouds = _require_dir(self.root / "ShapeNet55" / "shapenet_pc", self.LAYOUT)
        list_file = lists / f"{split}.txt"
        try:
            lines = list_file.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read ShapeNet55 list {list_file}: {exc.strerror}") from exc
        synset_label = {s: i for i, s in enumerate(synsets)}
        labels, self.model_ids = [], []
        for lineno, line in enumerate(lines, start=1):
            name = line.strip()
            if not name:
                continue
            synset, _, model = name.removesuffix(".npy").partition("-")
            if synset not in synset_label or not model:
                raise InputError(f"{list_file}: line {lineno}: {name!r} is not '<synset>-<model>.npy' with a "
                                 "synset id of the class taxonomy")  # fmt: skip
            self.sources.append(clouds / name)
            self.model_ids.append((synset, model))
            labels.append(synset_label[synset])
        dropped = self._drop_incomplete()
        labels = [labels[i] for i in range(len(labels)) if i not in dropped]
        self._prepare(np.asarray(labels), [list_file, *self.sources])
        self.skipped = [*dropped.values(), *self.skipped]

    def _drop_incomplete(self) -> dict[int, tuple[str, str]]:
        """Remove the list entries that lack a file besides their cloud from ``sources``/``model_ids``;
        return them as ``{list index: (source, reason)}``. ShapeNet55 clouds need nothing else, but the
        entries on the authors' fixed list (:data:`AUTHORS_DROPPED`: models without renders, which their
        loader leaves out of both lists) are left out here too, so the validation split of pre-training
        has the authors' 10,517 models."""
        dropped = {
            i: (str(self.sources[i]), "left out by the authors' list (a model without renders)")
            for i, (synset, model) in enumerate(self.model_ids)
            if f"{synset}-{model.split('-')[0]}" in AUTHORS_DROPPED
        }
        if dropped:
            log.info("%s: %d models on the authors' list left out", self.name, len(dropped))
            self.sources = [s for i, s in enumerate(self.sources) if i not in dropped]
            self.model_ids = [m for i, m in enumerate(self.model_ids) if i not in dropped]
        return dropped

    def settings(self) -> dict[str, Any]:
        if not self.per_epoch:
            return super().settings()
        return {**super().settings(), "sampling": self.sampling, "epoch": self.epoch}

    def compute(self, record: int) -> np.ndarray:
        cloud = read_npy(self.sources[record])
        return shapenet_points(
            cloud, self.num_points, self.sampling, (self.seed, self.epoch, record), self.split,
            self.source_of(record),
        )  # fmt: skip


def shapenet_points(
    cloud: np.ndarray, num_points: int, sampling: str, key: tuple[int, int, int], split: str, source: str
) -> np.ndarray:
    """A stored ShapeNet cloud ``(P, 3)`` float32 as served: ``(num_points, 3)`` float32, by farthest point
    sampling (``"fps"``) or the per-epoch random subset of ``key = (seed, epoch, record)`` (``"random"``),
    then normalised into the unit sphere. The raw files and a pack (:mod:`clip2point.data.pack`) both
    serve their clouds through it (a pack several at once: :func:`shapenet_points_batch`)."""
    return shapenet_points_batch([cloud], num_points, sampling, [key], split, [source])[0]


def shapenet_points_batch(
    clouds: Sequence[np.ndarray], num_points: int, sampling: str, keys: Sequence[tuple[int, int, int]],
    split: str, sources: Sequence[str],
) -> np.ndarray:  # fmt: skip
    """:func:`shapenet_points` of each cloud with its key and source, normalised together:
    ``(k, num_points, 3)`` float32, each cloud's exactly as one at a time."""
    if sampling == "fps":
        picked = [
            resample(torch.from_numpy(c), num_points, source=s) for c, s in zip(clouds, sources, strict=True)
        ]
    else:
        words = (ShapeNet55.SUBSET_STREAM, 1 + SPLITS.index(split))
        picked = [
            random_subset(torch.from_numpy(c), num_points, np.random.default_rng((*k, *words)), source=s)
            for c, k, s in zip(clouds, keys, sources, strict=True)
        ]
    return _finish(torch.stack(picked), align=False)


def pretrain_view(key: tuple[int, int, int], views: int) -> int:
    """The render a pre-training pair uses in an epoch: drawn from ``views`` by
    ``numpy.random.default_rng(key)``, ``key = (seed, epoch, record)`` (raw files and packs alike)."""
    return int(np.random.default_rng(key).integers(views))


def missing_renders(
    render_root: Path, model_ids: Sequence[tuple[str, str]], views: int
) -> dict[int, list[Path]]:
    """The renders ``<render_root>/<synset>_<model>/<i>.png`` (``i < views``) that do not exist, by model
    index (models with all of them are left out). One directory listing per model."""
    expected = [f"{i}.png" for i in range(views)]
    missing = {}
    for index, (synset, model) in enumerate(model_ids):
        folder = render_root / f"{synset}_{model}"
        try:
            present = set(os.listdir(folder))
        except OSError:
            present = set()
        lost = [folder / name for name in expected if name not in present]
        if lost:
            missing[index] = lost
    return missing


class ShapeNet55Pretrain(ShapeNet55):
    """ShapeNet55 pre-training pairs: a cloud and one of its 10 RGB renders (docs/method.md section 2).

    Item: ``points (N, 3)``, ``image (3, S, S)`` float32 (``<render_root>/<synset>_<model>/<view>.png``
    resized to ``image_size`` and standardised with the encoder's ``norm``), ``view`` (int), ``azim``,
    ``elev``, ``dist`` (float tensors of that official view) and ``label``. The view index is drawn per
    item by ``numpy.random.default_rng((seed, epoch, record))``; call :meth:`set_epoch` to draw new views
    (and, with ``sampling="random"``, new point subsets). ``render_root`` defaults to
    ``<root>/rendering``. Renders are read per item (not cached); that all 10 exist for every model is
    checked when the dataset is built: models without them raise :class:`InputError` then (naming the first
    missing files and the count) or, with ``on_error="skip"``, are left out with a warning and listed in
    ``skipped`` (the authors' lists name a few models that have no renders).
    """

    NUM_VIEWS = 10

    def __init__(
        self, root, split="train", num_points=1024, image_size=224, norm=OPENAI_CLIP_NORM, render_root=None,
        seed=0, cache_dir=None, on_error="raise", sampling="fps",
    ) -> None:  # fmt: skip
        self.render_root = _require_dir(
            Path(render_root) if render_root is not None else Path(root) / "rendering",
            "rendering/<synset>_<model>/<i>.png, i = 0..9",
        )
        super().__init__(root, split, num_points, seed, cache_dir, on_error, sampling)
        self.image_size, self.norm = image_size, norm
        self._azim, self._elev, self._dist = official_views(self.NUM_VIEWS)

    def _drop_incomplete(self) -> dict[int, tuple[str, str]]:
        """Models without all 10 renders: an error now (``on_error="raise"``), or left out with a warning."""
        missing = missing_renders(self.render_root, self.model_ids, self.NUM_VIEWS)
        if not missing:
            return {}
        total, files = len(self.model_ids), [str(f) for lost in missing.values() for f in lost]
        summary = (
            f"{self.name}: {len(missing)} of {total} models have no complete set of renders "
            f"<synset>_<model>/0..{self.NUM_VIEWS - 1}.png in {self.render_root} ({len(files)} files "
            f"missing; first: {', '.join(files[:3])})"
        )
        if self.on_error == "raise":
            raise InputError(f"{summary}; data.on_error: skip leaves those models out")
        log.warning("%s; leaving them out (on_error='skip')", summary)
        dropped = {
            i: (str(self.sources[i]), f"missing renders: {', '.join(str(f) for f in lost)}")
            for i, lost in missing.items()
        }
        self.sources = [s for i, s in enumerate(self.sources) if i not in missing]
        self.model_ids = [m for i, m in enumerate(self.model_ids) if i not in missing]
        return dropped

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        record = int(self.records[index % len(self)])
        view = pretrain_view((self.seed, self.epoch, record), self.NUM_VIEWS)
        synset, model = self.model_ids[record]
        image = read_image(self.render_root / f"{synset}_{model}" / f"{view}.png", self.image_size, self.norm)
        return {
            **item, "image": image, "view": view,
            "azim": self._azim[view], "elev": self._elev[view], "dist": self._dist[view],
        }  # fmt: skip


_READERS = {
    cls.__name__: cls for cls in (ModelNet, ModelNet40Ply, ScanObjectNN, ShapeNet55, ShapeNet55Pretrain)
}


def build_dataset(
    name: str, root: str | Path, split: str = "test", num_points: int = 1024, **options: Any
) -> PointCloudDataset:
    """The dataset called ``name`` (one of :data:`DATASET_NAMES`) over ``root``.

    Names: modelnet10, modelnet40, modelnet40_ply (test only), scanobjectnn_obj_only, scanobjectnn_obj_bg,
    scanobjectnn_pb_t50_rs, shapenet55 (clouds + labels, zero-shot evaluation), shapenet55_pretrain (cloud
    and RGB render pairs). ``options`` go to the dataset class: ``seed``, ``cache_dir``, ``on_error`` for
    all; ``align`` for the ModelNet ones, ``resample`` for those read from meshes; ``image_size``, ``norm``,
    ``render_root`` for shapenet55_pretrain.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; allowed: {', '.join(DATASET_NAMES)}")
    spec = DATASETS[name]
    return _READERS[spec.reader](root, split, num_points, **spec.options, **options)
