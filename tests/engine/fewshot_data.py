"""Tiny few-shot problems for the adapter and feature-cache tests: every ModelNet10 class a distinct box."""

from __future__ import annotations

from pathlib import Path

from clip2point.data import MODELNET10
from tests.data.data_writers import box, write_off


def make_boxes(root: Path, train: int = 3, test: int = 1) -> Path:
    """``<root>/ModelNet10/<class>/{train,test}/*.off``: class c is a box whose aspect ratio grows with c
    (the samples of a class differ a little in size), so the classes can be told apart from depth maps."""
    for c, name in enumerate(MODELNET10):
        for split, count in (("train", train), ("test", test)):
            for i in range(count):
                scale = 1.0 + 0.1 * i + (0.05 if split == "test" else 0.0)
                vertices, quads = box(size=(scale, 0.3 + 0.25 * c, 1.0 + 0.1 * (c % 3)))
                write_off(root / "ModelNet10" / name / split / f"{name}_{i:04d}.off", vertices, quads)
    return root
