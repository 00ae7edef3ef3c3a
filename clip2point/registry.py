"""The datasets by name: which reader serves each, with which fixed options, and which take the ModelNet
"rot" alignment. The one list that the config's allowed ``data.dataset`` values, :func:`build_dataset`
and the engines derive from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetSpec:
    """``title``: the name tables use; ``reader``: the class in :mod:`clip2point.data.datasets`; ``options``:
    its fixed keyword arguments; ``aligned``: the dataset is in ModelNet's frame and takes the "rot"
    alignment (``data.align``); ``pretraining``: ShapeNet55 clouds, sampled as ``pretrain.sampling`` says
    (FPS or per-epoch subsets); ``meshes``: clouds sampled from meshes, which can be sampled anew every
    epoch (``fewshot.resample``)."""

    title: str
    reader: str
    options: Mapping[str, Any] = field(default_factory=dict)
    aligned: bool = False
    pretraining: bool = False
    meshes: bool = False


PRETRAIN_PAIRS = "shapenet55_pretrain"
"""The pre-training pairs (clouds with their RGB renders), read by the pre-training and its data check."""

DATASETS: dict[str, DatasetSpec] = {
    "modelnet10": DatasetSpec("ModelNet10", "ModelNet", {"variant": "modelnet10"}, aligned=True, meshes=True),
    "modelnet40": DatasetSpec("ModelNet40", "ModelNet", {"variant": "modelnet40"}, aligned=True, meshes=True),
    "modelnet40_ply": DatasetSpec("ModelNet40 (.ply samples)", "ModelNet40Ply", aligned=True),
    "scanobjectnn_obj_only": DatasetSpec("ScanObjectNN OBJ_ONLY", "ScanObjectNN", {"variant": "obj_only"}),
    "scanobjectnn_obj_bg": DatasetSpec("ScanObjectNN OBJ_BG", "ScanObjectNN", {"variant": "obj_bg"}),
    "scanobjectnn_pb_t50_rs": DatasetSpec("ScanObjectNN PB_T50_RS", "ScanObjectNN", {"variant": "pb_t50_rs"}),
    "shapenet55": DatasetSpec("ShapeNet55", "ShapeNet55", pretraining=True),
    PRETRAIN_PAIRS: DatasetSpec("ShapeNet55 pairs", "ShapeNet55Pretrain", pretraining=True),
}
DATASET_NAMES = tuple(DATASETS)
PACK_LAYOUTS = ("shapenet55", "generic")  # what `clip2point data pack` reads (clip2point.data.pack_sources)
