"""Pinhole cameras for the synthetic scenes: look-at poses, quarter-turn rotations, camera paths.

Convention (OpenCV / COLMAP): camera x right, y down, z forward; world-to-camera
``x_cam = R @ x_world + t``; pixel coordinates put the CENTRE of pixel (0, 0) at (0, 0), so the
image spans [-0.5, W-0.5] x [-0.5, H-0.5] and the principal point is ((W-1)/2, (H-1)/2).
World frame of the scenes: z up, ground at z = 0, metres.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

WORLD_UP = np.array([0.0, 0.0, 1.0])


class CameraPathError(ValueError):
    """A camera path cannot be built from the given parameters."""


@dataclass(frozen=True, kw_only=True, eq=False)
class PinholeCamera:
    """Intrinsics ``K`` (3x3), world-to-camera ``R`` (3x3), ``t`` (3,), image size in pixels."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) and camera depths (N,)."""
        cam = np.asarray(points, dtype=np.float64) @ self.R.T + self.t
        depth = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uvw = cam @ self.K.T
            uv = uvw[:, :2] / uvw[:, 2:3]
        return uv, depth

    def backproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N, 2) with camera depths (N,) -> world points (N, 3)."""
        uv = np.asarray(uv, dtype=np.float64)
        homog = np.column_stack([uv, np.ones(len(uv))])
        cam = (homog @ np.linalg.inv(self.K).T) * np.asarray(depth, dtype=np.float64)[:, None]
        return (cam - self.t) @ self.R

    def supersampled(self, factor: int) -> "PinholeCamera":
        """The same camera rendering a ``factor``-times larger image (pixel-centre convention kept)."""
        scale = np.diag([factor, factor, 1.0])
        shift = np.array([[1.0, 0.0, 0.5 * (factor - 1)], [0.0, 1.0, 0.5 * (factor - 1)], [0.0, 0.0, 1.0]])
        return PinholeCamera(
            K=shift @ scale @ self.K, R=self.R, t=self.t, width=self.width * factor, height=self.height * factor
        )

    def rotated_quarter_turns(self, k: int) -> "PinholeCamera":
        """The camera that sees ``np.rot90(image, k)`` (counter-clockwise turns), labels kept exact.

        One turn maps pixel (x, y) to (y, W-1-x); the 3x3 pixel map M factors as
        ``M K = K' Q`` with Q a rotation about the optical axis, so R' = Q R, t' = Q t.
        """
        cam = self
        for _ in range(k % 4):
            w = cam.width
            pixel_map = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, w - 1.0], [0.0, 0.0, 1.0]])
            q = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
            k_new = pixel_map @ cam.K @ q.T
            k_new[np.abs(k_new) < 1e-12] = 0.0
            cam = PinholeCamera(K=k_new, R=q @ cam.R, t=q @ cam.t, width=cam.height, height=w)
        return cam


def intrinsics(focal_px: float, width: int, height: int) -> np.ndarray:
    """Square pixels, principal point at the image centre ((W-1)/2, (H-1)/2)."""
    return np.array([[focal_px, 0.0, (width - 1) / 2.0], [0.0, focal_px, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_at(center: np.ndarray, target: np.ndarray, *, roll_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) of a camera at ``center`` looking at ``target``, z-up world, rolled about its axis."""
    center = np.asarray(center, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, WORLD_UP)
    norm = np.linalg.norm(right)
    if norm < 1e-6:
        raise CameraPathError(f"camera at {center} looks straight up or down: its roll is undefined")
    right /= norm
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    a = np.deg2rad(roll_deg)
    roll = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rot = roll @ rot
    return rot, -rot @ center


class CameraPath(enum.Enum):
    """How camera centres are spread over the viewing sphere around the scene."""

    ARC = "arc"  # azimuths evenly spread over the arc (an orbit), elevation drawn per image
    RANDOM = "random"  # independent uniform draws on the sphere cap
    GROUPS = "groups"  # evenly spread inside each of ``CameraRig.groups`` (azimuth ranges): clusters, bridges


@dataclass(frozen=True, kw_only=True)
class CameraRig:
    """Declarative camera-path parameters of a preset (angles in degrees, distances in metres)."""

    n_images: int
    width: int = 640
    height: int = 480
    path: CameraPath = CameraPath.ARC
    arc_deg: float = 40.0  # total azimuth spread: the baseline
    elevation_deg: tuple[float, float] = (18.0, 30.0)
    distance_m: tuple[float, float] = (4.5, 5.5)  # from the look-at target
    overlap: float = 0.95  # 1: every view looks at the scene centre; lower: look-at points spread out
    focal_px: tuple[float, float] = (600.0, 600.0)
    roll_jitter_deg: float = 0.0  # uniform in [-x, x]: small in-plane rotation
    quarter_turn_fraction: float = 0.0  # fraction of views rotated by 90/180/270 degrees (np.rot90)
    groups: tuple[tuple[float, float, int], ...] = ()  # GROUPS path: (from_deg, to_deg, views) each; arc_deg unused


@dataclass(frozen=True, kw_only=True, eq=False)
class CameraDraw:
    """One sampled view before rendering: the upright camera and the quarter turns applied after."""

    upright: PinholeCamera
    quarter_turns: int

    @property
    def final(self) -> PinholeCamera:
        return self.upright.rotated_quarter_turns(self.quarter_turns)


def sample_cameras(
    rig: CameraRig, *, target: np.ndarray, spread_m: float, facing_azimuth_deg: float, rng: np.random.Generator
) -> list[CameraDraw]:
    """Camera poses around ``target``; ``spread_m`` scales the look-at jitter (lower overlap -> more)."""
    if rig.n_images < 1:
        raise CameraPathError(f"n_images must be >= 1, got {rig.n_images}")
    if not 0.0 < rig.overlap <= 1.0:
        raise CameraPathError(f"overlap must be in (0, 1], got {rig.overlap}")
    n = rig.n_images
    half = rig.arc_deg / 2.0
    if rig.path is CameraPath.ARC:
        step = rig.arc_deg / max(n - 1, 1)
        azimuths = np.linspace(-half, half, n) + rng.uniform(-0.2, 0.2, n) * step
    elif rig.path is CameraPath.GROUPS:
        counts = [count for _, _, count in rig.groups]
        if sum(counts) != n or min(counts, default=0) < 1:
            raise CameraPathError(f"GROUPS path: the groups' view counts {counts} must be >= 1 each and sum to "
                                  f"n_images={n}")
        azimuths = np.concatenate([np.linspace(a, b, count) for a, b, count in rig.groups])
    else:
        azimuths = rng.uniform(-half, half, n)
    azimuths = azimuths + facing_azimuth_deg
    elevations = rng.uniform(*rig.elevation_deg, n)
    distances = rng.uniform(*rig.distance_m, n)
    focals = rng.uniform(*rig.focal_px, n)
    rolls = rng.uniform(-rig.roll_jitter_deg, rig.roll_jitter_deg, n)
    jitter_radius = (1.0 - rig.overlap) * spread_m
    radii = jitter_radius * np.sqrt(rng.uniform(0.0, 1.0, n))
    angles = rng.uniform(0.0, 2 * np.pi, n)
    heights = rng.uniform(-0.3, 0.3, n) * jitter_radius
    turned = rng.uniform(0.0, 1.0, n) < rig.quarter_turn_fraction
    turns = np.where(turned, rng.integers(1, 4, n), 0)

    draws = []
    for i in range(n):
        az, el = np.deg2rad(azimuths[i]), np.deg2rad(elevations[i])
        look = target + np.array([radii[i] * np.cos(angles[i]), radii[i] * np.sin(angles[i]), heights[i]])
        direction = np.array([np.cos(el) * np.sin(az), -np.cos(el) * np.cos(az), np.sin(el)])
        center = look + distances[i] * direction
        rot, trans = look_at(center, look, roll_deg=rolls[i])
        cam = PinholeCamera(K=intrinsics(focals[i], rig.width, rig.height), R=rot, t=trans,
                            width=rig.width, height=rig.height)
        draws.append(CameraDraw(upright=cam, quarter_turns=int(turns[i])))
    return draws
