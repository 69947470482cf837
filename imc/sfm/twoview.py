"""Two-view fallback: images no model holds are paired greedily by verified inliers (each image in one pair
at most), and each pair gets the relative pose of its inliers (LO-RANSAC, prior cameras): the first image
at the origin, the second at ``cam2_from_cam1``. Every such pair is its own model; for the IMC 2023/2024
metric its inner pair scores, where identity rows never do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pycolmap

from .data import TwoViewMatches


@dataclass(kw_only=True)
class TwoViewPose:
    a: str
    b: str
    b_from_a: pycolmap.Rigid3d
    num_inliers: int


def two_view_poses(names: set[str], features: dict[str, dict[str, Any]], matches: TwoViewMatches,
                   make_camera: Callable[[str], pycolmap.Camera], *, min_num_inliers: int = 30,
                   max_error_px: float = 4.0) -> list[TwoViewPose]:
    candidates = sorted(((len(m), a, b) for (a, b), m in matches.pairs.items() if a in names and b in names),
                        reverse=True)
    used: set[str] = set()
    out = []
    for n, a, b in candidates:
        if n < min_num_inliers or a in used or b in used:
            continue
        m = matches.get(a, b)
        ransac = pycolmap.RANSACOptions()
        ransac.max_error = max_error_px
        ransac.random_seed = 0
        ransac.min_num_trials = 50  # verified inliers: few samples needed (1000 by default)
        ransac.max_num_trials = 1000
        est = pycolmap.estimate_relative_pose(
            make_camera(a), features[a]["keypoints"][m[:, 0]].astype(np.float64) + 0.5,
            make_camera(b), features[b]["keypoints"][m[:, 1]].astype(np.float64) + 0.5, ransac)
        if est is None or int(np.sum(est["inlier_mask"])) < min_num_inliers:
            continue
        used |= {a, b}
        out.append(TwoViewPose(a=a, b=b, b_from_a=est["cam2_from_cam1"], num_inliers=int(np.sum(est["inlier_mask"]))))
    return out
