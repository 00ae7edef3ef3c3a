"""Depth renderer: hand-placed points must light exactly the pixels docs/method.md section 1 says."""

import math
from dataclasses import replace

import pytest
import torch

from clip2point.errors import ConfigError, InputError
from clip2point.render import (
    OPENAI_CLIP_NORM,
    DepthRenderer,
    RenderSettings,
    jitter_distance,
    official_normalise,
    official_views,
    to_clip_input,
)

S = 8  # small images: pixel centres at NDC +-1/8, +-3/8, ...
FRONT = (torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]))  # camera on +z, x_view = -x_world


def world_point(u: float, v: float, depth: float = 1.0) -> list[float]:
    """World point seen by the FRONT camera at continuous pixel (row v, col u) with view depth ``depth``.

    Inverts docs/method.md section 1.2: u = (1 - xf) S/2 - 0.5 with xf = view x = -world x; v likewise with yf = world y.
    """
    return [(2 * u + 1) / S - 1, 1 - (2 * v + 1) / S, 1 - depth]


def lit(raw: torch.Tensor) -> set[tuple[int, int]]:
    """Pixels (row, col) of a single (1, 1, S, S) raw depth map that are not background."""
    return {tuple(ij) for ij in (raw[0, 0] != -1).nonzero().tolist()}


def render_raw(points, **kwargs) -> torch.Tensor:
    return DepthRenderer(image_size=S, **kwargs).raw_depth(torch.tensor([points]), *FRONT)


def test_orientation_plus_x_is_right_plus_y_is_up():
    # World +x, +y (upper right as the front camera sees it) -> column > S/2, row < S/2.
    raw = render_raw([[0.375, 0.375, 0.0]], footprint="square", dilation=1)
    assert lit(raw) == {(2, 5)}
    raw = render_raw([[-0.375, -0.375, 0.0]], footprint="square", dilation=1)
    assert lit(raw) == {(5, 2)}


@pytest.mark.parametrize(
    ("dilation", "rows", "cols"),
    [
        (1, [3], [5]),  # ceil(u) only
        (2, [2, 3], [4, 5]),  # ceil(u) + k, k = -1, 0
        (3, [2, 3, 4], [4, 5, 6]),  # k = -1, 0, 1
        (4, [1, 2, 3, 4], [3, 4, 5, 6]),  # k = -2 .. 1
    ],
)
def test_square_footprint_lights_ceil_window(dilation, rows, cols):
    raw = render_raw([world_point(u=4.3, v=2.6)], footprint="square", dilation=dilation)
    assert lit(raw) == {(r, c) for r in rows for c in cols}


@pytest.mark.parametrize(
    ("radius", "expected"),
    [
        (0.25, {(2, 5)}),  # neighbours at exactly one pixel (0.25 NDC) are not strictly inside
        (0.3, {(2, 5), (1, 5), (3, 5), (2, 4), (2, 6)}),  # the plus: diagonals are at 0.354
        (0.36, {(r, c) for r in (1, 2, 3) for c in (4, 5, 6)}),
    ],
)
def test_disk_footprint_is_strict_circle_in_ndc(radius, expected):
    raw = render_raw([world_point(u=5, v=2)], footprint="disk", radius=radius)
    assert lit(raw) == expected


def test_disk_footprint_off_centre():
    # Point at NDC (x, y) = (-0.3, 0.3): pixel centres within 0.2 are cols 4, 5 (xf = 1/8, -1/8 ... ),
    # computed by hand: col 5 (xf=-0.375, dx=0.075), col 4 (xf=-0.125, dx=0.175); row 2 (yf=0.375, dy=0.075),
    # row 1 (yf=0.625, dy=0.325, out); row 3 (yf=0.125, dy=0.175). Keep dx^2 + dy^2 < 0.04.
    raw = DepthRenderer(image_size=S, footprint="disk", radius=0.2).raw_depth(
        torch.tensor([[[0.3, 0.3, 0.0]]]), *FRONT
    )
    assert lit(raw) == {(2, 5), (2, 4), (3, 5)}  # (3, 4): 0.175^2 * 2 = 0.06125 > 0.04


def test_nearest_point_wins_with_minimum_depth():
    near, far = world_point(5, 2, depth=0.5), world_point(5, 2, depth=1.3)
    for order in ([near, far], [far, near]):
        raw = render_raw(order, footprint="square", dilation=1, depth="minimum")
        assert raw[0, 0, 2, 5].item() == pytest.approx(0.5, abs=1e-6)


def test_weighted_depth_matches_formula():
    z1, z2, z3 = 0.5, 1.3, 0.9
    raw = render_raw(
        [world_point(5, 2, z1), world_point(5, 2, z2), world_point(5, 2, z3)],
        footprint="square",
        dilation=1,
        depth="weighted",
    )
    eps = 1e-12
    expected = sum(z / (z + eps) for z in (z1, z2, z3)) / sum(1 / (z + eps) for z in (z1, z2, z3))
    assert raw[0, 0, 2, 5].item() == pytest.approx(expected, rel=1e-6)
    assert lit(raw) == {(2, 5)}


def test_overlapping_footprints_take_per_pixel_minimum():
    # R = 2 windows of two points overlap on column 5: rows 2-3 of cols 4-5 (near) and cols 5-6 (far).
    near, far = world_point(4.5, 2.5, depth=0.4), world_point(5.5, 2.5, depth=0.8)
    raw = render_raw([near, far], footprint="square", dilation=2)
    assert raw[0, 0, 2:4, 4].tolist() == pytest.approx([0.4, 0.4])
    assert raw[0, 0, 2:4, 5].tolist() == pytest.approx([0.4, 0.4])
    assert raw[0, 0, 2:4, 6].tolist() == pytest.approx([0.8, 0.8])


def test_points_behind_camera_and_outside_image_are_dropped():
    behind = world_point(5, 2, depth=-0.5)
    outside = [5.0, 0.0, 0.0]
    border = world_point(-0.3, 2)  # R = 2 window: cols -1 (clipped) and 0
    raw = render_raw([behind, outside, border], footprint="square", dilation=2)
    assert lit(raw) == {(1, 0), (2, 0)}
    assert (raw[0, 0][raw[0, 0] != -1] == 1.0).all()


def test_background_is_minus_one_and_empty_image_normalises_to_white():
    raw = render_raw([[9.0, 9.0, 0.0]], footprint="square", dilation=1)
    assert (raw == -1).all()
    imgs = DepthRenderer(image_size=S).__call__(torch.tensor([[[9.0, 9.0, 0.0]]]), *FRONT)
    white = (1 - torch.tensor(OPENAI_CLIP_NORM.mean)) / torch.tensor(OPENAI_CLIP_NORM.std)
    torch.testing.assert_close(imgs[0, 0, :, 0, 0], white)
    assert torch.allclose(imgs, white.view(1, 1, 3, 1, 1).expand_as(imgs), atol=1e-6)


def test_official_normalisation_values():
    bg = -1.0
    # With background: mn = min(foreground, 1). Foreground 0.5 and 1.5: mx = 1.5, mn = 0.5.
    gray = official_normalise(torch.tensor([[0.5, 1.5, bg, bg]]))
    k = 200 / 255
    torch.testing.assert_close(gray, torch.tensor([[0.0, 1.0 / 1.5 * k, 1.0, 1.0]]))
    # Foreground all beyond 1 with background present: the background's 1 is the minimum (official quirk).
    gray = official_normalise(torch.tensor([[1.2, 1.6, bg]]))
    torch.testing.assert_close(gray, torch.tensor([[0.2 / 1.6 * k, 0.6 / 1.6 * k, 1.0]]))
    # No background: mn is the foreground minimum.
    gray = official_normalise(torch.tensor([[1.2, 1.6]]))
    torch.testing.assert_close(gray, torch.tensor([[0.0, 0.4 / 1.6 * k]]))
    # CLIP standardisation per channel.
    clip = to_clip_input(torch.tensor([[0.0, 1.0]]))
    assert clip.shape == (1, 3, 2)
    for c in range(3):
        assert clip[0, c, 0].item() == pytest.approx(
            -OPENAI_CLIP_NORM.mean[c] / OPENAI_CLIP_NORM.std[c], rel=1e-6
        )
        assert clip[0, c, 1].item() == pytest.approx(
            (1 - OPENAI_CLIP_NORM.mean[c]) / OPENAI_CLIP_NORM.std[c], rel=1e-6
        )


def test_rendered_image_normalisation_end_to_end():
    # Two lit pixels at depths 0.5 and 1.5 on the front view, the rest background.
    points = torch.tensor([[world_point(1, 1, 0.5), world_point(6, 6, 1.5)]])
    imgs = DepthRenderer(image_size=S, footprint="square", dilation=1)(points, *FRONT)
    k = 200 / 255
    gray = torch.ones(S, S)
    gray[1, 1], gray[6, 6] = 0.0, 1.0 / 1.5 * k
    expected = (gray - torch.tensor(OPENAI_CLIP_NORM.mean).view(3, 1, 1)) / torch.tensor(
        OPENAI_CLIP_NORM.std
    ).view(3, 1, 1)
    torch.testing.assert_close(imgs[0, 0], expected, atol=1e-6, rtol=0)


def random_clouds(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    pts = torch.nn.functional.normalize(torch.randn(batch, n, 3, generator=gen), dim=-1)
    return pts * torch.rand(batch, n, 1, generator=gen) ** (1 / 3)


SETTINGS = [
    dict(footprint="square", dilation=1, depth="minimum"),
    dict(footprint="square", dilation=2, depth="minimum"),
    dict(footprint="square", dilation=4, depth="weighted"),
    dict(footprint="disk", radius=0.02, depth="minimum"),
    dict(footprint="disk", radius=0.05, depth="weighted"),
    dict(footprint="square", dilation=2, depth="minimum", projection="perspective", fov=60.0),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_fused_output_equals_reference_normalisation(settings, device):
    renderer = DepthRenderer(image_size=32, **settings)
    points = random_clouds(3, 400).to(device)
    views = [t.to(device) for t in official_views(10)]
    raw = renderer.raw_depth(points, *views)
    assert raw.shape == (3, 10, 32, 32)
    assert ((raw == -1) | (raw >= 0)).all()
    reference = to_clip_input(official_normalise(raw.flatten(-2))).view(3, 10, 3, 32, 32)
    imgs = renderer(points, *views)
    assert imgs.shape == (3, 10, 3, 32, 32) and imgs.dtype == torch.float32
    torch.testing.assert_close(imgs, reference, atol=2e-6, rtol=0)
    if device.type == "cuda":
        torch.testing.assert_close(imgs.cpu(), renderer(points.cpu(), *official_views(10)), atol=1e-5, rtol=0)


def test_out_buffer_is_filled_and_returned():
    renderer = DepthRenderer(image_size=16, footprint="square", dilation=2)
    points = random_clouds(2, 200)
    fresh = renderer(points, *official_views(6))
    out = torch.full((2, 6, 3, 16, 16), 7.0)
    assert renderer(points, *official_views(6), out=out) is out
    torch.testing.assert_close(out, fresh, atol=0, rtol=0)
    with pytest.raises(InputError, match="out must be a contiguous float32 tensor of shape"):
        renderer(points, *official_views(6), out=torch.empty(2, 6, 3, 16, 15))


def test_shared_views_equal_per_sample_views():
    renderer = DepthRenderer(image_size=24, footprint="square", dilation=2)
    points = random_clouds(4, 300)
    azim, elev, dist = official_views(10)
    shared = renderer(points, azim, elev, dist)
    per_sample = renderer(points, azim.expand(4, 10), elev.expand(4, 10), dist.expand(4, 10))
    torch.testing.assert_close(shared, per_sample, atol=0, rtol=0)


def test_per_sample_distance_jitter_renders_each_sample_at_its_distance():
    renderer = DepthRenderer(image_size=24, footprint="square", dilation=2)
    points = random_clouds(2, 300)
    azim, elev = torch.zeros(2, 1), torch.zeros(2, 1)
    d1, _ = jitter_distance(torch.ones(2, 1), torch.Generator().manual_seed(0))
    both = renderer.raw_depth(points, azim, elev, d1)
    for b in range(2):
        alone = renderer.raw_depth(points[b : b + 1], azim[b], elev[b], d1[b])
        torch.testing.assert_close(both[b], alone[0], atol=0, rtol=0)


def test_orthographic_scales_cloud_by_inverse_distance():
    # dist 2: world (0.375, 0, 0.4) -> scaled (0.1875, 0, 0.2); view x = -0.1875 -> u = 4.25 -> col 5 (R=1);
    # the camera sits at z = 2, so the view depth is 2 - 0.2 = 1.8; row: v = 3.5 -> ceil 4.
    raw = DepthRenderer(image_size=S, footprint="square", dilation=1).raw_depth(
        torch.tensor([[[0.375, 0.0, 0.4]]]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.0])
    )
    assert lit(raw) == {(4, 5)}
    assert raw[0, 0, 4, 5].item() == pytest.approx(1.8, abs=1e-6)


def test_perspective_divides_by_depth():
    # fov 90 (focal 1), camera at z = 2: world (0.5, 0, 0) -> view (-0.5, 0, 2) -> NDC x = -0.25 -> u = 4.5
    # -> col 5 with R = 1; world (0.5, 0, 1) is nearer (z = 1): NDC x = -0.5 -> u = 5.5 -> col 6.
    renderer = DepthRenderer(image_size=S, footprint="square", dilation=1, projection="perspective", fov=90.0)
    dist = torch.tensor([2.0])
    far = renderer.raw_depth(torch.tensor([[[0.5, 0.0, 0.0]]]), FRONT[0], FRONT[1], dist)
    near = renderer.raw_depth(torch.tensor([[[0.5, 0.0, 1.0]]]), FRONT[0], FRONT[1], dist)
    assert lit(far) == {(4, 5)} and far[0, 0, 4, 5].item() == pytest.approx(2.0)
    assert lit(near) == {(4, 6)} and near[0, 0, 4, 6].item() == pytest.approx(1.0)


def test_renderer_accepts_float64_and_returns_float32():
    renderer = DepthRenderer(image_size=16)
    imgs = renderer(random_clouds(1, 50).double(), *official_views(6))
    assert imgs.dtype == torch.float32


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (torch.zeros(2, 0, 3), "points is empty"),
        (torch.zeros(0, 5, 3), "points is empty"),
        (torch.zeros(5, 3), r"shape \(B, N, 3\), got \(5, 3\)"),
        (torch.zeros(1, 5, 2), r"shape \(B, N, 3\), got \(1, 5, 2\)"),
        (torch.tensor([[[0.0, math.nan, 0.0]]]), "non-finite coordinates, first at cloud 0, point 0"),
        (
            torch.tensor([[[0.0, 0.0, 0.0], [math.inf, 0.0, 0.0]]]),
            "non-finite coordinates, first at cloud 0, point 1",
        ),
        (torch.zeros(1, 5, 3, dtype=torch.long), "floating-point"),
        ([[[0.0, 0.0, 0.0]]], "torch.Tensor"),
    ],
)
def test_bad_points_raise_clear_errors(points, message):
    with pytest.raises(InputError, match=message):
        DepthRenderer(image_size=S).raw_depth(points, *FRONT)


def test_bad_views_raise_clear_errors():
    renderer = DepthRenderer(image_size=S)
    points = random_clouds(2, 10)
    azim, elev, dist = official_views(10)
    with pytest.raises(InputError, match=r"azim must have shape \(V,\) or \(B, V\) with B=2"):
        renderer(points, azim.expand(3, 10), elev, dist)
    with pytest.raises(InputError, match="disagree in shape"):
        renderer(points, azim[:6], elev, dist)
    with pytest.raises(InputError, match="dist must be > 0"):
        renderer(points, azim, elev, -dist)
    with pytest.raises(InputError, match="elev has non-finite"):
        renderer(points, azim, elev * math.nan, dist)


def test_unchecked_values_render_the_same_and_shapes_are_still_checked():
    renderer = DepthRenderer(image_size=S, footprint="square", dilation=2, depth="weighted")
    points, views = random_clouds(2, 40), official_views(6)
    assert torch.equal(renderer(points, *views, check_values=False), renderer(points, *views))
    assert torch.equal(
        renderer.raw_depth(points, *views, check_values=False), renderer.raw_depth(points, *views)
    )
    with pytest.raises(InputError, match="disagree in shape"):
        renderer(points, views.azim[:4], views.elev, views.dist, check_values=False)
    with pytest.raises(InputError, match=r"points must have shape \(B, N, 3\)"):
        renderer(points[0], *views, check_values=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(footprint="circle"),
            "'render.footprint': 'circle' is not allowed; expected one of 'disk', 'square'",
        ),
        (dict(depth="mean"), "'render.depth': 'mean' is not allowed; expected one of 'minimum', 'weighted'"),
        (dict(projection="fisheye"), "'render.projection': 'fisheye'"),
        (dict(dilation=0), "'render.dilation': 0 is out of range; allowed: >= 1"),
        (dict(radius=-0.1), "'render.radius': -0.1 is out of range"),
        (dict(fov=180), "'render.fov': 180 is out of range"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DepthRenderer(S, **kwargs)
    with pytest.raises(InputError, match="image_size=0 must be a positive integer"):
        DepthRenderer(0)


# For every setting the renderer reads: a base setting and a change of that one field.
FIELD_CHANGES = {
    "footprint": (RenderSettings(footprint="disk"), {"footprint": "square"}),
    "radius": (RenderSettings(footprint="disk"), {"radius": 0.3}),
    "dilation": (RenderSettings(footprint="square", dilation=1), {"dilation": 4}),
    "depth": (RenderSettings(footprint="square", dilation=4), {"depth": "weighted"}),
    "projection": (RenderSettings(), {"projection": "perspective"}),
    "fov": (RenderSettings(projection="perspective", radius=0.1), {"fov": 90.0}),
}


def test_every_render_setting_is_honoured():
    from dataclasses import fields

    # Every field of RenderSettings but the view set (views are passed per call) changes the depth maps.
    assert set(FIELD_CHANGES) == {f.name for f in fields(RenderSettings)} - {"views"}
    points = random_clouds(1, 300)
    views = official_views(10)
    for name, (base, change) in FIELD_CHANGES.items():
        before = DepthRenderer(16, base).raw_depth(points, *views)
        after = DepthRenderer(16, base, **change).raw_depth(points, *views)
        assert not torch.equal(before, after), name
        assert DepthRenderer(16, base, **change).settings == replace(base, **change)
