"""The settings the renderer and the adapters take, defined without torch: loading a config (and
``clip2point --help``) imports no model code.

:class:`RenderSettings`, how point clouds become depth maps, is the ``render`` section of the experiment
config, the options of ``clip2point render``, the argument of :class:`~clip2point.render.DepthRenderer` and
the cells of the rendering study; :meth:`RenderSettings.label` names a setting the same way in pictures,
tables and MLflow. The image size is not a setting: it is the backbone's input size (224 for ViT-B/32).
:class:`AdapterSettings`, the GDPA's switches, is the ``fewshot.adapter`` section and the argument of
:class:`~clip2point.models.GDPA`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clip2point.errors import ConfigError
from clip2point.schema import Settings, bounded, described

Variant = Literal["paper", "official"]  # an aggregator's form: the paper's or the authors' code's


@dataclass(frozen=True)
class RenderSettings(Settings):
    """Rendering of point clouds to depth maps (docs/method.md section 1); validated when made."""

    SECTION = "render"

    views: Literal[6, 10] = described(10, "official view set: 10 views or the 6 cube faces")
    footprint: Literal["disk", "square"] = described(
        "disk", "pixels a point covers: disk (the authors' code) or square (paper Eq. 9)"
    )
    radius: float = bounded(0.02, low=0.0, low_open=True, high=2.0, help="disk radius, NDC units")
    dilation: int = bounded(2, low=1, high=64, help="square footprint: dilation rate R (R x R pixels)")
    depth: Literal["minimum", "weighted"] = described(
        "minimum", "value of a pixel: nearest point (paper Eq. 10) or weighted mean (Eq. 8)"
    )
    projection: Literal["orthographic", "perspective"] = described(
        "orthographic", "camera model: orthographic (the authors' code) or perspective"
    )
    fov: float = bounded(60.0, low=1.0, high=179.0, help="perspective field of view, degrees")

    def label(self) -> str:
        """``"minimum square R=2"`` / ``"minimum disk r=0.02"`` (+ ``" perspective"``): the setting as
        pictures, tables and run names call it."""
        size = f"r={self.radius:g}" if self.footprint == "disk" else f"R={self.dilation}"
        extra = f" perspective fov={self.fov:g}" if self.projection == "perspective" else ""
        return f"{self.depth} {self.footprint} {size}{extra}"


# The settings of the paper's Table 5 (and Fig. 4): weighted / minimum depth x dilation R = 1, 2, 4 with the
# square footprint, then the authors' code's disk footprint (r = 0.02, minimum depth).
TABLE5_SETTINGS: tuple[RenderSettings, ...] = (
    *(
        RenderSettings(footprint="square", depth=depth, dilation=r)
        for depth in ("weighted", "minimum")
        for r in (1, 2, 4)
    ),
    RenderSettings(footprint="disk", depth="minimum", radius=0.02),
)


@dataclass(frozen=True)
class AdapterSettings(Settings):
    """The GDPA's switches (docs/method.md section 4), the config's ``fewshot.adapter`` section.

    ``path``: ``single`` (depth-encoder features only) or ``dual`` (plus CLIP's visual features);
    ``aggregator``: ``global`` (GDPA) or ``inter_view`` (PointCLIP's adapter);
    ``fusion`` (dual path): ``gate`` (paper), ``average`` (the authors' code) or ``none``; a single path
    takes ``none``. ``variant``: the ``paper`` form (the equations) or the ``official`` form (the authors'
    code) of either aggregator.
    """

    SECTION = "fewshot.adapter"

    path: Literal["single", "dual"] = described("dual", "depth features only, or depth and CLIP")
    aggregator: Literal["global", "inter_view"] = described("global", "global-view or inter-view adapter")
    fusion: Literal["gate", "average", "none"] = described("gate", "how the dual path's two features meet")
    variant: Variant = described("official", "the paper's or the authors' code's aggregator")

    def check(self) -> None:
        if self.path == "single" and self.fusion != "none":
            raise ConfigError(
                f"config key 'fewshot.adapter.fusion': {self.fusion!r} needs the dual path; a single path "
                "takes 'none'"
            )

    def label(self) -> str:
        """``"dual global-view gate (official)"``: the switches as tables name them."""
        aggregator = "global-view" if self.aggregator == "global" else "inter-view"
        return f"{self.path} {aggregator} {self.fusion} ({self.variant})"
