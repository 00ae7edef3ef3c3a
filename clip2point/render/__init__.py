"""Rendering: cameras and view sets; point clouds -> depth maps; meshes -> RGB images."""

from clip2point.render.cameras import (
    align_modelnet,
    axis_rotation,
    jitter_distance,
    look_at_rotation,
    official_views,
    view_transform,
)
from clip2point.render.depth import CLIP_MEAN, CLIP_STD, DepthRenderer, official_normalise, to_clip_input
from clip2point.render.mesh import MeshRenderer, triangle_soup

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DepthRenderer",
    "MeshRenderer",
    "align_modelnet",
    "axis_rotation",
    "jitter_distance",
    "look_at_rotation",
    "official_normalise",
    "official_views",
    "to_clip_input",
    "triangle_soup",
    "view_transform",
]
