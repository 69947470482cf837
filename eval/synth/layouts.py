"""Scene geometry: textured rectangles (ground, walls, boxes) in metres, z up, ground at z = 0.

A ``Quad`` is the rectangle ``origin + s * u + r * v`` for s, r in [0, 1], seen from the side its
``normal`` points to; texture column follows ``u`` and row follows ``v`` (built as "right" and
"down" as seen from outside, so photos appear upright). Layouts are drawn from a seeded RNG.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

import numpy as np

UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True, kw_only=True, eq=False)
class Quad:
    """A one-sided textured rectangle; ``px_per_m`` is its texture resolution."""

    name: str
    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    px_per_m: float

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.v, self.u)
        return n / np.linalg.norm(n)

    @property
    def corners(self) -> np.ndarray:
        o, u, v = self.origin, self.u, self.v
        return np.stack([o, o + u, o + u + v, o + v])

    def point(self, s: float, r: float) -> np.ndarray:
        return self.origin + s * self.u + r * self.v

    @property
    def texture_size(self) -> tuple[int, int]:
        """(width, height) in texels."""
        width = max(4, round(np.linalg.norm(self.u) * self.px_per_m))
        return width, max(4, round(np.linalg.norm(self.v) * self.px_per_m))


@dataclass(frozen=True, kw_only=True, eq=False)
class SceneGeometry:
    """The quads plus where cameras should look: ``target``, ``spread_m`` (size of the interesting
    region, scales look-at jitter) and the azimuth cameras look from (0 = from -y towards +y)."""

    quads: tuple[Quad, ...]
    target: np.ndarray
    spread_m: float
    facing_azimuth_deg: float = 0.0


def vertical_quad(name: str, bottom_center, normal, width: float, height: float, px_per_m: float) -> Quad:
    """An upright rectangle standing on ``bottom_center`` whose front faces ``normal`` (horizontal)."""
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    right = np.cross(UP, n)
    origin = np.asarray(bottom_center, dtype=np.float64) - 0.5 * width * right + height * UP
    return Quad(name=name, origin=origin, u=width * right, v=-height * UP, px_per_m=px_per_m)


def ground_quad(name: str, x_range, y_range, px_per_m: float, z: float = 0.0) -> Quad:
    """A horizontal rectangle facing up (u along +x, v along -y)."""
    origin = np.array([x_range[0], y_range[1], z], dtype=np.float64)
    return Quad(name=name, origin=origin, u=np.array([x_range[1] - x_range[0], 0.0, 0.0]),
                v=np.array([0.0, -(y_range[1] - y_range[0]), 0.0]), px_per_m=px_per_m)


def box_quads(name: str, center_xy, size, yaw_deg: float, px_per_m: float, base_z: float = 0.0) -> list[Quad]:
    """The five visible faces (4 sides + top) of a box standing on the ground."""
    sx, sy, sz = size
    a = np.deg2rad(yaw_deg)
    ex, ey = np.array([np.cos(a), np.sin(a), 0.0]), np.array([-np.sin(a), np.cos(a), 0.0])
    c = np.array([center_xy[0], center_xy[1], base_z], dtype=np.float64)
    quads = [
        vertical_quad(f"{name}/front", c - 0.5 * sy * ey, -ey, sx, sz, px_per_m),
        vertical_quad(f"{name}/back", c + 0.5 * sy * ey, ey, sx, sz, px_per_m),
        vertical_quad(f"{name}/left", c - 0.5 * sx * ex, -ex, sy, sz, px_per_m),
        vertical_quad(f"{name}/right", c + 0.5 * sx * ex, ex, sy, sz, px_per_m),
    ]
    top_origin = c + sz * UP - 0.5 * sx * ex + 0.5 * sy * ey
    quads.append(Quad(name=f"{name}/top", origin=top_origin, u=sx * ex, v=-sy * ey, px_per_m=px_per_m))
    return quads


def _place_boxes(rng: np.random.Generator, n: int, *, x_range, y_range, size_range, height_range,
                 prefix: str, px_per_m: float) -> list[Quad]:
    """Non-overlapping boxes (footprint circles kept apart), random size and yaw."""
    placed: list[tuple[float, float, float]] = []
    quads: list[Quad] = []
    for _ in range(200 * n):
        if len(placed) == n:
            break
        sx, sy = rng.uniform(*size_range, 2)
        sz = rng.uniform(*height_range)
        x, y = rng.uniform(*x_range), rng.uniform(*y_range)
        radius = 0.5 * float(np.hypot(sx, sy))
        if any(np.hypot(x - px, y - py) < radius + pr + 0.25 for px, py, pr in placed):
            continue
        placed.append((x, y, radius))
        quads += box_quads(f"{prefix}{len(placed) - 1}", (x, y), (sx, sy, sz), rng.uniform(0.0, 90.0), px_per_m)
    return quads


def boxes_layout(rng: np.random.Generator) -> SceneGeometry:
    """Ground, one back wall, 4-6 boxes of 0.5-2 m."""
    quads = [ground_quad("ground", (-8.0, 8.0), (-7.0, 5.0), px_per_m=200.0)]
    quads.append(vertical_quad("wall/back", (0.0, 5.0, 0.0), (0.0, -1.0, 0.0), 16.0, 4.0, px_per_m=200.0))
    quads += _place_boxes(rng, int(rng.integers(4, 7)), x_range=(-2.6, 2.6), y_range=(-1.6, 2.8),
                          size_range=(0.5, 1.8), height_range=(0.4, 2.0), prefix="box", px_per_m=320.0)
    return SceneGeometry(quads=tuple(quads), target=np.array([0.0, 0.6, 0.6]), spread_m=2.5)


def courtyard_layout(rng: np.random.Generator) -> SceneGeometry:
    """Ground enclosed by three walls, a few boxes, pillars and a bench."""
    half_w, back, front = 5.5, 5.0, -3.0
    height = float(rng.uniform(3.0, 4.0))
    quads = [ground_quad("ground", (-8.0, 8.0), (-7.0, back), px_per_m=200.0)]
    quads.append(vertical_quad("wall/back", (0.0, back, 0.0), (0.0, -1.0, 0.0), 2 * half_w, height, 200.0))
    mid = 0.5 * (back + front)
    quads.append(vertical_quad("wall/left", (-half_w, mid, 0.0), (1.0, 0.0, 0.0), back - front, height, 200.0))
    quads.append(vertical_quad("wall/right", (half_w, mid, 0.0), (-1.0, 0.0, 0.0), back - front, height, 200.0))
    quads += _place_boxes(rng, int(rng.integers(2, 4)), x_range=(-3.0, 3.0), y_range=(-1.0, 3.5),
                          size_range=(0.6, 1.6), height_range=(0.5, 1.6), prefix="box", px_per_m=320.0)
    for i in range(int(rng.integers(1, 3))):
        x = rng.uniform(-4.0, 4.0)
        quads += box_quads(f"pillar{i}", (x, rng.uniform(1.0, 4.0)), (0.5, 0.5, rng.uniform(2.0, 2.8)),
                           rng.uniform(0.0, 90.0), 320.0)
    quads += box_quads("bench", (rng.uniform(-2.0, 2.0), rng.uniform(-2.2, -1.4)), (2.0, 0.5, 0.45),
                       rng.uniform(-10.0, 10.0), 320.0)
    return SceneGeometry(quads=tuple(quads), target=np.array([0.0, 1.0, 0.8]), spread_m=3.0)


class Layout(enum.Enum):
    BOXES = "boxes"
    COURTYARD = "courtyard"


LAYOUTS: dict[Layout, Callable[[np.random.Generator], SceneGeometry]] = {
    Layout.BOXES: boxes_layout,
    Layout.COURTYARD: courtyard_layout,
}
