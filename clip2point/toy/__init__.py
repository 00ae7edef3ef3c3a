"""The toy world: procedural furniture written in the real dataset formats, and the toy CLIP trained on it."""

from clip2point.toy.shapes import CLASSES, ToyMesh, make_shape
from clip2point.toy.world import SCANOBJECTNN_LABELS, SYNSETS, build_toy_world

__all__ = ["CLASSES", "SCANOBJECTNN_LABELS", "SYNSETS", "ToyMesh", "build_toy_world", "make_shape"]
