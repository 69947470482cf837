"""Camera geometry for display: centres, frusta, similarity alignment (Umeyama) of a model to ground truth.

Poses are world-to-camera (``x_cam = R @ x_world + t``), as in COLMAP and the IMC CSVs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class AlignmentError(ValueError):
    """Too few or degenerate correspondences to estimate a similarity transform."""


@dataclass(kw_only=True)
class Similarity:
    """``x' = scale * R @ x + t``."""

    scale: float
    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return self.scale * points @ self.R.T + self.t

    def apply_to_pose(self, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The world-to-camera pose of the same camera in the transformed world (camera units scaled too)."""
        R_new = np.asarray(R) @ self.R.T
        t_new = self.scale * np.asarray(t) - R_new @ self.t
        return R_new, t_new


def camera_center(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return -np.asarray(R).T @ np.asarray(t)


def umeyama(src: np.ndarray, dst: np.ndarray, *, with_scale: bool = True) -> Similarity:
    """Least-squares similarity mapping ``src`` (N,3) onto ``dst`` (N,3) (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if len(src) != len(dst):
        raise AlignmentError(f"umeyama: {len(src)} source points but {len(dst)} target points")
    if len(src) < 3:
        raise AlignmentError(f"umeyama: need at least 3 correspondences, got {len(src)}")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = float((src_c ** 2).sum() / len(src))
    if var_src < 1e-12:
        raise AlignmentError("umeyama: source points coincide (no spread to estimate a scale from)")
    cov = dst_c.T @ src_c / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    scale = float(np.trace(np.diag(D) @ S) / var_src) if with_scale else 1.0
    t = mu_dst - scale * R @ mu_src
    return Similarity(scale=scale, R=R, t=t)


def rotation_mean(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of (N, 3, 3) rotations (projection of their sum onto SO(3))."""
    U, _, Vt = np.linalg.svd(np.sum(rotations, axis=0))
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ S @ Vt


def similarity_from_rotations(src: np.ndarray, dst: np.ndarray, rotations: np.ndarray) -> Similarity:
    """Rotation from the cameras' orientations (``rotations`` (N,3,3): each ``R_gt.T @ R_pred``),
    then scale and translation from the centres by least squares."""
    R = rotation_mean(rotations)
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    denom = float((src_c ** 2).sum())
    scale = float(np.sum(dst_c * (src_c @ R.T)) / denom) if denom > 1e-12 else 1.0
    return Similarity(scale=scale, R=R, t=dst.mean(0) - scale * R @ src.mean(0))


class AlignMethod(enum.Enum):
    UMEYAMA = "umeyama on camera centres"
    ROTATIONS = "camera orientations + centres (centres nearly collinear)"


@dataclass(kw_only=True)
class CameraAlignment:
    """A model aligned to ground truth on the images both have."""

    transform: Similarity  # predicted world -> ground-truth world
    method: AlignMethod
    image_paths: list[str]  # common images used
    center_errors: dict[str, float] = field(default_factory=dict)  # image_path -> |C_pred' - C_gt|

    @property
    def median_error(self) -> float:
        return float(np.median(list(self.center_errors.values()))) if self.center_errors else float("nan")


COLLINEAR_RATIO = 0.1  # second / first singular value of the centred camera centres


def align_cameras(pred: dict[str, tuple[np.ndarray, np.ndarray]],
                  gt: dict[str, tuple[np.ndarray, np.ndarray]]) -> CameraAlignment:
    """Similarity taking predicted camera centres onto ground-truth centres (images in both).

    Umeyama on the centres; when the centres are (nearly) collinear the rotation about their line
    is undetermined by them, so it comes from the cameras' orientations instead.
    """
    common = sorted(set(pred) & set(gt))
    if len(common) < 3:
        raise AlignmentError(f"only {len(common)} registered image(s) have ground truth (need 3)")
    src = np.stack([camera_center(*pred[p]) for p in common])
    dst = np.stack([camera_center(*gt[p]) for p in common])
    sv = np.linalg.svd(src - src.mean(0), compute_uv=False)
    if sv[0] > 1e-12 and sv[1] / sv[0] >= COLLINEAR_RATIO:
        sim, method = umeyama(src, dst), AlignMethod.UMEYAMA
    else:
        rotations = np.stack([np.asarray(gt[p][0]).T @ np.asarray(pred[p][0]) for p in common])
        sim, method = similarity_from_rotations(src, dst, rotations), AlignMethod.ROTATIONS
    moved = sim.apply(src)
    errors = {p: float(np.linalg.norm(a - b)) for p, a, b in zip(common, moved, dst)}
    return CameraAlignment(transform=sim, method=method, image_paths=common, center_errors=errors)


def frustum_corners(R: np.ndarray, t: np.ndarray, K: np.ndarray, width: float, height: float,
                    size: float) -> np.ndarray:
    """(5, 3) world points: the centre, then the image corners at depth ``size`` (TL, TR, BR, BL)."""
    corners_px = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    rays = corners_px @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T  # depth 1
    rays *= size / np.max(np.linalg.norm(rays, axis=1))
    R = np.asarray(R, dtype=np.float64)
    center = camera_center(R, t)
    return np.vstack([center, center + rays @ R])  # camera -> world: R.T @ x


def frustum_segments(corners: np.ndarray) -> np.ndarray:
    """Polyline through the frustum edges (NaN rows separate it from the next one)."""
    c, tl, tr, br, bl = corners
    path = [c, tl, tr, c, br, bl, c, tl, bl, br, tr]
    return np.vstack(path + [np.full(3, np.nan)])


def robust_extent(points: np.ndarray) -> float:
    """Diagonal of the 5-95 percentile box of ``points`` (1.0 when empty or degenerate)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < 2:
        return 1.0
    lo, hi = np.percentile(points, [5, 95], axis=0)
    extent = float(np.linalg.norm(hi - lo))
    return extent if extent > 1e-9 else 1.0


def inlier_points_mask(points: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """Drop far-away points (distance to the median beyond ``factor`` x its 90th percentile)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) < 10:
        return np.ones(len(points), dtype=bool)
    dist = np.linalg.norm(points - np.median(points, axis=0), axis=1)
    return dist <= factor * max(float(np.percentile(dist, 90)), 1e-12)
