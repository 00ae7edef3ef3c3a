"""Data: readers for the on-disk formats, point sampling, class names, K-shot selection, datasets, cache."""

from clip2point.data.cache import Samples, fingerprint, load_or_build
from clip2point.data.classnames import (
    MODELNET10,
    MODELNET40,
    SCANOBJECTNN,
    SHAPENET55,
    SHAPENET55_SYNSET_IDS,
    SHAPENET55_SYNSETS,
    class_names,
)
from clip2point.data.datasets import (
    ModelNet,
    ModelNet40Ply,
    PointCloudDataset,
    ScanObjectNN,
    ShapeNet55,
    ShapeNet55Pretrain,
    build_dataset,
)
from clip2point.data.files import (
    load_mesh,
    load_points,
    read_h5,
    read_image,
    read_npy,
    read_off,
    read_ply,
    read_ply_mesh,
)
from clip2point.data.kshot import select_k_shot, select_validation
from clip2point.data.sampling import farthest_point_sample, normalize_unit_sphere, resample, sample_surface
from clip2point.registry import DATASET_NAMES, DATASETS, DatasetSpec

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "MODELNET10",
    "MODELNET40",
    "SCANOBJECTNN",
    "SHAPENET55",
    "SHAPENET55_SYNSETS",
    "SHAPENET55_SYNSET_IDS",
    "DatasetSpec",
    "ModelNet",
    "ModelNet40Ply",
    "PointCloudDataset",
    "Samples",
    "ScanObjectNN",
    "ShapeNet55",
    "ShapeNet55Pretrain",
    "build_dataset",
    "class_names",
    "farthest_point_sample",
    "fingerprint",
    "load_mesh",
    "load_or_build",
    "load_points",
    "normalize_unit_sphere",
    "read_h5",
    "read_image",
    "read_npy",
    "read_off",
    "read_ply",
    "read_ply_mesh",
    "resample",
    "sample_surface",
    "select_k_shot",
    "select_validation",
]
