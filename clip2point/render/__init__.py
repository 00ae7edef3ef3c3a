"""Rendering: cameras and view sets; point clouds -> depth maps; meshes -> RGB images."""

from clip2point.render.cameras import (
    align_modelnet,
    axis_rotation,
    jitter_distance,
    look_at_rotation,
    official_views,
    view_transform,
)

__all__ = [
    "align_modelnet",
    "axis_rotation",
    "jitter_distance",
    "look_at_rotation",
    "official_views",
    "view_transform",
]
