"""Rendering: settings, cameras and view sets; point clouds -> depth maps; meshes -> RGB images."""

from clip2point.render.cameras import (
    Views,
    align_modelnet,
    axis_rotation,
    jitter_distance,
    look_at_rotation,
    official_views,
    view_transform,
)
from clip2point.render.depth import (
    OPENAI_CLIP_NORM,
    DepthRenderer,
    ImageNorm,
    official_normalise,
    to_clip_input,
)
from clip2point.render.mesh import RGB_DISTANCE, MeshRenderer, rgb_renderer, triangle_soup
from clip2point.settings import TABLE5_SETTINGS, RenderSettings

__all__ = [
    "OPENAI_CLIP_NORM",
    "RGB_DISTANCE",
    "TABLE5_SETTINGS",
    "DepthRenderer",
    "ImageNorm",
    "MeshRenderer",
    "RenderSettings",
    "Views",
    "align_modelnet",
    "axis_rotation",
    "jitter_distance",
    "look_at_rotation",
    "official_normalise",
    "official_views",
    "rgb_renderer",
    "to_clip_input",
    "triangle_soup",
    "view_transform",
]
