"""Procedural toy furniture: one parametric assembly of boxes, cylinders and ovals per ModelNet10 class.

Classes that are alike in real life are kept apart by the features that tell them apart there: a bathtub is
an oval tub with a white basin (half of them on feet), a sofa a cushioned seat and back between two arms.

Every shape is a :class:`ToyMesh` in the Y-up frame the official views expect (ShapeNet's convention: +Y up,
front towards +Z), centred on its bounding box and scaled into the unit sphere. Proportions, colours and a
small pose jitter (yaw +-15 deg, pitch/roll +-2 deg) are drawn from a ``numpy.random.Generator``, so a
shape is a pure function of its generator's seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

from clip2point.errors import InputError

CLASSES = ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet")

# Colour words used in captions -> RGB (uint8).
PALETTE = {
    "red": (200, 40, 40),
    "green": (50, 160, 60),
    "blue": (40, 80, 200),
    "yellow": (230, 200, 40),
    "orange": (240, 130, 30),
    "purple": (130, 60, 170),
    "pink": (240, 140, 180),
    "brown": (120, 75, 40),
    "white": (235, 235, 235),
    "gray": (130, 130, 130),
    "black": (35, 35, 35),
}


@dataclass(frozen=True)
class ToyMesh:
    """A coloured triangle mesh: ``vertices (V, 3)`` float32, ``faces (F, 3)`` int64, ``face_colors (F, 3)``
    uint8; ``label`` indexes :data:`CLASSES`; ``colour`` is the caption word of its main colour."""

    vertices: np.ndarray
    faces: np.ndarray
    face_colors: np.ndarray
    label: int
    colour: str

    @property
    def name(self) -> str:
        return CLASSES[self.label]

    def trimesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, process=False)


class _Assembly:
    """Collects coloured parts (world units, Y up) and merges them into one mesh."""

    def __init__(self) -> None:
        self._parts: list[tuple[trimesh.Trimesh, tuple[int, int, int]]] = []

    def box(self, centre, size, colour) -> None:
        part = trimesh.creation.box(extents=size)
        part.apply_translation(centre)
        self._parts.append((part, colour))

    def cylinder(self, centre, radius: float, height: float, colour, axis: str = "y") -> None:
        part = trimesh.creation.cylinder(radius=radius, height=height, sections=20)  # along z
        if axis == "y":
            part.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
        elif axis == "x":
            part.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (0, 1, 0)))
        part.apply_translation(centre)
        self._parts.append((part, colour))

    def oval(self, centre, radii, height: float, flare: float, colour) -> None:
        """An upright elliptic frustum: semi-axes ``radii (rx, rz)`` at the bottom, ``flare`` times those at
        the top, ``height`` along y, centred on ``centre``."""
        part = trimesh.creation.cylinder(radius=1.0, height=height, sections=32)
        part.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
        v = np.asarray(part.vertices).copy()
        widen = 1 + (flare - 1) * (v[:, 1] / height + 0.5)  # 1 at the bottom, flare at the top
        v[:, 0] *= radii[0] * widen
        v[:, 2] *= radii[1] * widen
        self._parts.append((trimesh.Trimesh(v + np.asarray(centre), part.faces, process=False), colour))

    def merge(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vertices, faces, colours, offset = [], [], [], 0
        for part, colour in self._parts:
            vertices.append(np.asarray(part.vertices))
            faces.append(np.asarray(part.faces) + offset)
            colours.append(np.tile(np.asarray(colour, dtype=np.uint8), (len(part.faces), 1)))
            offset += len(part.vertices)
        return np.concatenate(vertices), np.concatenate(faces).astype(np.int64), np.concatenate(colours)


def _legs(a: _Assembly, xs, zs, height: float, thick: float, colour, round_legs: bool) -> None:
    """Four legs from the floor to ``height`` at x in ``xs``, z in ``zs``."""
    for x in xs:
        for z in zs:
            if round_legs:
                a.cylinder((x, height / 2, z), thick / 2, height, colour)
            else:
                a.box((x, height / 2, z), (thick, height, thick), colour)


def _bathtub(a: _Assembly, u, main, second) -> None:
    """An oval tub widening upwards, a white basin inside its rim, a tap; half of them stand on four feet."""
    w, d, h, flare, rim = u(1.5, 1.9), u(0.7, 0.9), u(0.45, 0.6), u(1.08, 1.2), u(0.05, 0.08)
    feet = u(0.08, 0.14) if u(0, 1) < 0.5 else 0.0
    rx, rz = w / 2 / flare, d / 2 / flare
    a.oval((0, feet + h / 2, 0), (rx, rz), h, flare, main)
    a.oval((0, feet + h + 0.005, 0), (w / 2 - rim, d / 2 - rim), 0.01, 1.0, PALETTE["white"])  # basin
    a.cylinder((-w / 2 + rim + 0.1, feet + h + 0.1, 0), 0.025, 0.2, PALETTE["gray"])  # tap
    if feet:
        _legs(a, (-rx * 0.7, rx * 0.7), (-rz * 0.6, rz * 0.6), feet, 0.07, second, True)


def _bed(a: _Assembly, u, main, second) -> None:
    w, length, leg, mat = u(1.1, 1.6), u(1.9, 2.2), u(0.12, 0.25), u(0.25, 0.4)
    a.box((0, leg + mat / 2, 0), (w, mat, length), main)
    a.box((0, u(0.8, 1.1) / 2, -length / 2 - 0.04), (w + 0.06, u(0.8, 1.1), 0.08), second)
    a.box((0, leg + mat + 0.06, -length / 2 + 0.25), (w * 0.7, 0.12, 0.3), PALETTE["white"])  # pillow
    _legs(a, (-w / 2 + 0.05, w / 2 - 0.05), (-length / 2 + 0.05, length / 2 - 0.05), leg, 0.08, second, False)


def _chair(a: _Assembly, u, main, second) -> None:
    s, seat_h, back = u(0.42, 0.55), u(0.42, 0.5), u(0.45, 0.65)
    a.box((0, seat_h, 0), (s, 0.06, s), main)
    a.box((0, seat_h + back / 2, -s / 2 + 0.03), (s, back, 0.06), main)
    _legs(
        a, (-s / 2 + 0.03, s / 2 - 0.03), (-s / 2 + 0.03, s / 2 - 0.03), seat_h, 0.05, second, u(0, 1) < 0.5
    )


def _desk(a: _Assembly, u, main, second) -> None:
    w, d, h = u(1.2, 1.6), u(0.6, 0.75), u(0.72, 0.78)
    pw = u(0.35, 0.45)
    a.box((0, h - 0.025, 0), (w, 0.05, d), main)
    a.box((w / 2 - pw / 2, (h - 0.05) / 2, 0), (pw, h - 0.05, d - 0.04), second)  # drawer pedestal
    for k in range(3):
        a.box((w / 2 - pw / 2, (h - 0.05) * (k + 0.5) / 3, d / 2 - 0.01), (pw - 0.06, 0.14, 0.02), main)
    _legs(a, (-w / 2 + 0.04,), (-d / 2 + 0.04, d / 2 - 0.04), h - 0.05, 0.05, second, False)
    a.box((0, h * 0.6, -d / 2 + 0.03), (w - pw, h * 0.5, 0.02), second)  # modesty panel


def _dresser(a: _Assembly, u, main, second) -> None:
    w, h, d = u(1.0, 1.5), u(0.8, 1.1), u(0.45, 0.55)
    rows = int(u(3, 5.99))
    a.box((0, h / 2 + 0.05, 0), (w, h, d), main)
    for k in range(rows):
        y = 0.05 + h * (k + 0.5) / rows
        for x in (-w / 4, w / 4):
            a.box((x, y, d / 2 + 0.01), (w / 2 - 0.06, h / rows - 0.05, 0.02), second)
    _legs(a, (-w / 2 + 0.04, w / 2 - 0.04), (-d / 2 + 0.04, d / 2 - 0.04), 0.05, 0.05, second, False)


def _monitor(a: _Assembly, u, main, second) -> None:
    w, h, neck = u(0.55, 0.75), u(0.32, 0.45), u(0.12, 0.2)
    a.box((0, 0.01, 0), (u(0.2, 0.3), 0.02, u(0.15, 0.2)), main)
    a.box((0, neck / 2, -0.02), (0.05, neck, 0.03), main)
    a.box((0, neck + h / 2, 0), (w, h, 0.04), main)
    a.box((0, neck + h / 2, 0.021), (w - 0.04, h - 0.04, 0.002), PALETTE["black"])  # screen
    a.box((0, neck + h / 2, -0.04), (w * 0.5, h * 0.5, 0.04), second)  # back housing


def _night_stand(a: _Assembly, u, main, second) -> None:
    w, h, d, leg = u(0.4, 0.55), u(0.4, 0.55), u(0.35, 0.45), u(0.08, 0.15)
    drawers = int(u(1, 2.99))
    a.box((0, leg + h / 2, 0), (w, h, d), main)
    for k in range(drawers):
        a.box((0, leg + h * (k + 0.5) / drawers, d / 2 + 0.01), (w - 0.06, h / drawers - 0.05, 0.02), second)
        a.cylinder((0, leg + h * (k + 0.5) / drawers, d / 2 + 0.04), 0.015, 0.04, PALETTE["gray"], axis="z")
    _legs(a, (-w / 2 + 0.03, w / 2 - 0.03), (-d / 2 + 0.03, d / 2 - 0.03), leg, 0.04, second, True)


def _sofa(a: _Assembly, u, main, second) -> None:
    """A base on short legs between two arms, 2-3 seat cushions, a back with as many back cushions."""
    w, d, seat, back, arm = u(1.6, 2.2), u(0.8, 0.95), u(0.38, 0.45), u(0.75, 0.9), u(0.55, 0.65)
    at, leg, seats = u(0.15, 0.22), u(0.05, 0.1), int(u(2, 3.99))
    inner, base = w - 2 * at, seat - 0.12 - leg
    a.box((0, leg + (back - leg) / 2, -d / 2 + 0.08), (inner, back - leg, 0.16), main)  # back frame
    a.box((0, leg + base / 2, 0.08), (inner, base, d - 0.16), second)  # base, in front of the frame
    for k in range(seats):
        x = -inner / 2 + inner * (k + 0.5) / seats
        a.box((x, seat - 0.06, 0.07), (inner / seats - 0.02, 0.12, d - 0.18), main)  # seat cushion
        a.box((x, (seat + back) / 2, -d / 2 + 0.22), (inner / seats - 0.02, back - seat - 0.08, 0.12), main)
    for x in (-w / 2 + at / 2, w / 2 - at / 2):
        a.box((x, leg + (arm - leg) / 2, 0), (at, arm - leg, d), second)
    _legs(a, (-w / 2 + 0.06, w / 2 - 0.06), (-d / 2 + 0.06, d / 2 - 0.06), leg, 0.05, second, False)


def _table(a: _Assembly, u, main, second) -> None:
    h = u(0.7, 0.76)
    if u(0, 1) < 0.5:  # rectangular top, four legs
        w, d = u(0.9, 1.6), u(0.7, 1.0)
        a.box((0, h - 0.025, 0), (w, 0.05, d), main)
        _legs(a, (-w / 2 + 0.05, w / 2 - 0.05), (-d / 2 + 0.05, d / 2 - 0.05), h - 0.05, 0.06, second, False)
    else:  # round top on a pedestal
        r = u(0.45, 0.6)
        a.cylinder((0, h - 0.025, 0), r, 0.05, main)
        a.cylinder((0, (h - 0.05) / 2, 0), 0.05, h - 0.05, second)
        a.cylinder((0, 0.02, 0), r * 0.5, 0.04, second)


def _toilet(a: _Assembly, u, main, second) -> None:
    r, h = u(0.18, 0.22), u(0.38, 0.42)
    a.cylinder((0, h * 0.35, 0.05), r * 0.6, h * 0.7, main)  # base
    a.cylinder((0, h * 0.85, 0.08), r, h * 0.3, main)  # bowl
    a.cylinder((0, h + 0.015, 0.08), r * 1.05, 0.03, second)  # seat
    a.box((0, h + 0.2, -r - 0.02), (r * 2.2, u(0.3, 0.4), 0.18), main)  # tank
    a.box((0, h * 0.5, -r + 0.02), (r * 1.2, h, 0.1), main)  # back of the bowl up to the tank


_BUILDERS: dict[str, Callable] = {
    "bathtub": _bathtub,
    "bed": _bed,
    "chair": _chair,
    "desk": _desk,
    "dresser": _dresser,
    "monitor": _monitor,
    "night_stand": _night_stand,
    "sofa": _sofa,
    "table": _table,
    "toilet": _toilet,
}


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation ``(3, 3)`` for row vectors: yaw about Y, then pitch about X, then roll about Z (radians)."""
    r = trimesh.transformations.euler_matrix(pitch, yaw, roll, axes="syxz")[:3, :3]
    return r.T


def make_shape(label: int, rng: np.random.Generator) -> ToyMesh:
    """A random instance of class ``CLASSES[label]``, centred and scaled into the unit sphere."""
    if not 0 <= label < len(CLASSES):
        raise InputError(f"label={label!r} is not a toy class index; allowed 0..{len(CLASSES) - 1}")
    names = list(PALETTE)
    main, second = rng.choice(len(names), size=2, replace=False)
    assembly = _Assembly()
    _BUILDERS[CLASSES[label]](assembly, rng.uniform, PALETTE[names[main]], PALETTE[names[second]])
    vertices, faces, colours = assembly.merge()
    jitter = np.radians(rng.uniform([-15, -2, -2], [15, 2, 2]))
    vertices = vertices @ _rotation(*jitter)
    vertices -= (vertices.min(0) + vertices.max(0)) / 2
    vertices /= np.linalg.norm(vertices, axis=1).max()
    return ToyMesh(vertices.astype(np.float32), faces, colours, label, names[main])
