"""Relocalise an image against a model: 2D-3D from its verified matches to registered images' tracks,
then ``pycolmap.estimate_and_refine_absolute_pose``, accepted above an inlier threshold."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pycolmap

from .data import TwoViewMatches


@dataclass(kw_only=True, frozen=True)
class LocalizeOptions:
    max_error_px: float = 12.0       # COLMAP's abs_pose_max_error
    min_num_inliers: int = 30
    min_inlier_ratio: float = 0.25
    estimate_focal_length: bool = True

    @classmethod
    def from_conf(cls, conf: dict[str, Any]) -> "LocalizeOptions":
        return cls(**conf)


@dataclass(kw_only=True)
class Localization:
    cam_from_world: pycolmap.Rigid3d
    camera: pycolmap.Camera
    num_inliers: int
    num_correspondences: int
    point2D_idxs: np.ndarray   # keypoint index per inlier
    point3D_ids: np.ndarray    # 3D point id per inlier


def correspondences(rec: pycolmap.Reconstruction, name: str, matches: TwoViewMatches,
                    *, exclude: set[str] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """(keypoint indices of ``name``, 3D point ids): each keypoint matched to an observed track of a registered
    image; a keypoint seen in several tracks takes the one most of its matches vote for."""
    votes: dict[int, dict[int, int]] = {}
    for im in rec.images.values():
        if not im.has_pose or im.name == name or im.name in exclude:
            continue
        m = matches.get(name, im.name)
        if m is None:
            continue
        for k0, k1 in m:
            if k1 >= im.num_points2D():
                continue
            p = im.points2D[int(k1)]
            if p.has_point3D():
                d = votes.setdefault(int(k0), {})
                d[p.point3D_id] = d.get(p.point3D_id, 0) + 1
    kps = np.array(sorted(votes), dtype=np.int64)
    pids = np.array([max(votes[k].items(), key=lambda kv: kv[1])[0] for k in kps], dtype=np.int64)
    return kps, pids


def localize(rec: pycolmap.Reconstruction, name: str, keypoints: np.ndarray, camera: pycolmap.Camera,
             matches: TwoViewMatches, options: LocalizeOptions, *, exclude: set[str] = frozenset()) -> Localization | None:
    """Absolute pose of ``name`` (``keypoints`` in 0-based pixels) in ``rec``, or None when too few inliers."""
    kps, pids = correspondences(rec, name, matches, exclude=exclude)
    if len(kps) < max(options.min_num_inliers, 4):
        return None
    pts2d = keypoints[kps].astype(np.float64) + 0.5
    pts3d = np.array([rec.points3D[int(p)].xyz for p in pids], dtype=np.float64)
    camera = copy.deepcopy(camera)  # the refinement writes the focal into the camera it is given
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = options.max_error_px
    est.ransac.random_seed = 0
    est.estimate_focal_length = options.estimate_focal_length and not camera.has_prior_focal_length
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = options.estimate_focal_length and not camera.has_prior_focal_length
    ref.refine_extra_params = False
    result = pycolmap.estimate_and_refine_absolute_pose(pts2d, pts3d, camera, est, ref)
    if result is None:
        return None
    mask = np.asarray(result["inlier_mask"], dtype=bool)
    n = int(mask.sum())
    if n < options.min_num_inliers or n < options.min_inlier_ratio * len(kps):
        return None
    return Localization(cam_from_world=result["cam_from_world"], camera=camera, num_inliers=n,
                        num_correspondences=len(kps), point2D_idxs=kps[mask], point3D_ids=pids[mask])
