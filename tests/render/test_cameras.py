"""Cameras: official view sets and look-at frames against rotation matrices derived by hand."""

import math

import pytest
import torch

from clip2point.errors import InputError
from clip2point.render import align_modelnet, axis_rotation, jitter_distance, official_views, view_transform

H = math.sqrt(0.5)  # cos 45 = sin 45

# Camera axes (x, y, z) in world coordinates, derived by hand from docs/method.md section 1.1:
# C = (cos e sin a, sin e, cos e cos a); z = -C; x = normalize((0,1,0) x z) = sign(cos e) (-cos a, 0, sin a);
# y = z x x. Top/bottom (cos e ~ -4.4e-8 in float32): x degenerates (|x| <= 5e-3 after the 1e-5 floor),
# y = normalize(z x x_degenerate), then x = y x z; worked through in the comments per view.
FRAMES_10 = [
    # elev 0, azim 0: camera on +z
    ((-1, 0, 0), (0, 1, 0), (0, 0, -1)),
    # elev 90: camera above (z = -y); x_degenerate ~ (+4e-3, 0, 0) -> y = (0, 0, 1), x = y x z = (1, 0, 0)
    ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    # elev 180: camera on -z, upright (cos e = -1 flips x)
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    # elev 270: camera below (z = +y); x_degenerate ~ (-4e-3, 0, 0) -> y = (0, 0, 1), x = (-1, 0, 0)
    ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    # elev 225, azim -45: C = (1/2, -H, -1/2)
    ((H, 0, H), (0.5, H, -0.5), (-0.5, H, 0.5)),
    # elev 225, azim 45: C = (-1/2, -H, -1/2)
    ((H, 0, -H), (-0.5, H, -0.5), (0.5, H, 0.5)),
    # elev 315, azim -45: C = (-1/2, -H, 1/2)
    ((-H, 0, -H), (-0.5, H, 0.5), (0.5, H, -0.5)),
    # elev 315, azim 45: C = (1/2, -H, 1/2)
    ((-H, 0, H), (0.5, H, 0.5), (-0.5, H, -0.5)),
    # elev 0, azim -90: camera on -x
    ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
    # elev 0, azim 90: camera on +x
    ((0, 0, 1), (0, 1, 0), (-1, 0, 0)),
]
FRAMES_6 = [
    FRAMES_10[0],
    FRAMES_10[9],
    # azim 180: camera on -z
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    # azim 270: camera on -x
    ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
    FRAMES_10[1],
    # elev -90, azim 180: camera below; x_degenerate ~ (-4e-3, 0, 0) -> y = (0, 0, 1), x = (-1, 0, 0)
    ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
]


def test_official_view_sets():
    azim, elev, dist = official_views(10)
    assert elev.tolist() == [0, 90, 180, 270, 225, 225, 315, 315, 0, 0]
    assert azim.tolist() == [0, 0, 0, 0, -45, 45, -45, 45, -90, 90]
    assert dist.tolist() == [1.0] * 10
    azim6, elev6, _ = official_views(6)
    assert elev6.tolist() == [0, 0, 0, 0, 90, -90]
    assert azim6.tolist() == [0, 90, 180, 270, 0, 180]
    assert azim.dtype == elev.dtype == dist.dtype == torch.float32
    with pytest.raises(InputError, match="num_views=8"):
        official_views(8)


@pytest.mark.parametrize(("num_views", "frames"), [(10, FRAMES_10), (6, FRAMES_6)])
def test_view_frames_match_hand_derived_rotations(num_views, frames):
    rot, trans = view_transform(*official_views(num_views))
    expected = torch.tensor(frames, dtype=torch.float32).transpose(1, 2)  # columns x, y, z
    torch.testing.assert_close(rot, expected, atol=1e-6, rtol=0)
    # Every camera sits at distance 1 looking at the origin: the origin lands at view (0, 0, 1).
    torch.testing.assert_close(trans, torch.tensor([[0.0, 0.0, 1.0]] * num_views), atol=1e-6, rtol=0)


def test_top_view_keeps_float32_residue_of_the_formula():
    """elev = 90 is not "fixed up": y carries cos(90 deg) in float32 (-4.37e-8), as PyTorch3D gives."""
    rot, _ = view_transform(torch.tensor([0.0]), torch.tensor([90.0]), torch.tensor([1.0]))
    cos90 = torch.cos(torch.tensor(math.pi / 180.0) * 90.0).item()
    assert cos90 != 0.0
    assert rot[0, 1, 1].item() == pytest.approx(-cos90, rel=1e-3)  # y axis: (0, -cos90, 1)


def test_frames_are_right_handed_rotations_for_arbitrary_views():
    gen = torch.Generator().manual_seed(1)
    azim = torch.rand(50, generator=gen) * 720 - 360
    elev = torch.rand(50, generator=gen) * 360 - 180
    rot, trans = view_transform(azim, elev, torch.full((50,), 2.5))
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(50, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(50), atol=1e-5, rtol=0)
    torch.testing.assert_close(trans[:, 2], torch.full((50,), 2.5), atol=1e-5, rtol=0)


def test_view_transform_broadcasts_batched_views():
    azim, elev, dist = official_views(10)
    rot, trans = view_transform(azim.expand(3, 10), elev.expand(3, 10), dist.expand(3, 10))
    assert rot.shape == (3, 10, 3, 3) and trans.shape == (3, 10, 3)
    torch.testing.assert_close(rot[2], view_transform(azim, elev, dist)[0])


def test_axis_rotations_are_right_handed():
    torch.testing.assert_close(
        axis_rotation("z", 90.0) @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-7, rtol=0
    )
    torch.testing.assert_close(
        axis_rotation("x", 90.0) @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]), atol=1e-7, rtol=0
    )
    torch.testing.assert_close(
        axis_rotation("y", 90.0) @ torch.tensor([0.0, 0, 1]), torch.tensor([1.0, 0, 0]), atol=1e-7, rtol=0
    )
    with pytest.raises(InputError, match="axis='w'"):
        axis_rotation("w", 10.0)


def test_align_modelnet_turns_z_up_into_y_up():
    # p @ Rx(90) @ Ry(-90), points as rows: hand-multiplied for the unit axes.
    points = torch.eye(3).unsqueeze(0)
    expected = torch.tensor([[[0.0, 0, -1], [-1, 0, 0], [0, 1, 0]]])
    torch.testing.assert_close(align_modelnet(points), expected, atol=1e-7, rtol=0)


def test_jitter_distance_is_within_ten_percent_and_seeded():
    dist = torch.ones(1000) * 2.0
    d1, d2 = jitter_distance(dist, torch.Generator().manual_seed(3))
    for d in (d1, d2):
        assert d.shape == dist.shape
        assert d.min() >= 1.8 and d.max() <= 2.2
        assert d.max() - d.min() > 0.35  # spans most of the +-10% range
    assert not torch.equal(d1, d2)
    again = jitter_distance(dist, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], d1) and torch.equal(again[1], d2)
