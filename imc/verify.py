"""Stage 4: RANSAC geometric verification of the matches → ``verified-<fp>.h5``.

Methods (``verification.method``): ``pycolmap`` (COLMAP's two-view geometry: E/F/H with
configuration), ``opencv_magsac`` (fundamental matrix, USAC MAGSAC++), ``none`` (all matches
kept as inliers of an UNCALIBRATED geometry). Pairs with fewer than ``matching.min_matches``
raw matches or ``verification.min_inliers`` inliers are stored empty (DEGENERATE).
"""

from __future__ import annotations

import enum
import logging
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycolmap
from tqdm.auto import tqdm

from .h5io import ResumableH5, pair_key

log = logging.getLogger(__name__)

TwoViewConfig = pycolmap.TwoViewGeometryConfiguration


class VerificationMethod(str, enum.Enum):
    PYCOLMAP = "pycolmap"
    OPENCV_MAGSAC = "opencv_magsac"
    NONE = "none"


def prior_camera(image_size: np.ndarray, focal_factor: float = 1.2, model: str = "SIMPLE_RADIAL") -> pycolmap.Camera:
    """A camera with the usual focal prior ``focal_factor * max(W, H)``, principal point at the centre."""
    w, h = int(image_size[0]), int(image_size[1])
    camera = pycolmap.Camera.create_from_model_name(0, model, focal_factor * max(w, h), w, h)
    camera.has_prior_focal_length = False
    return camera


def verify_pair(conf: dict[str, Any], f0: dict[str, Any], f1: dict[str, Any], matches: np.ndarray, *,
                seed: int = 0) -> dict[str, Any]:
    """``seed`` seeds COLMAP's RANSAC for this call alone: a pair's result does not depend on which pairs
    were verified before it in the process (a resumed run equals an uninterrupted one)."""
    method = VerificationMethod(conf["method"])
    empty = {"inliers": np.zeros((0, 2), np.int32), "config": int(TwoViewConfig.DEGENERATE), "F": np.zeros((3, 3))}
    if len(matches) < max(conf["min_inliers"], 8):
        return empty
    # COLMAP's pixel convention: centre of the top-left pixel at (0.5, 0.5).
    k0 = f0["keypoints"].astype(np.float64) + 0.5
    k1 = f1["keypoints"].astype(np.float64) + 0.5
    if method is VerificationMethod.NONE:
        return {"inliers": matches.astype(np.int32), "config": int(TwoViewConfig.UNCALIBRATED), "F": np.zeros((3, 3))}
    if method is VerificationMethod.OPENCV_MAGSAC:
        F, mask = cv2.findFundamentalMat(k0[matches[:, 0]], k1[matches[:, 1]], cv2.USAC_MAGSAC,
                                         conf["max_error_px"], conf["confidence"], conf["max_iterations"])
        if F is None or mask is None or F.shape != (3, 3):
            return empty
        inliers = matches[mask.ravel().astype(bool)].astype(np.int32)
        if len(inliers) < conf["min_inliers"]:
            return empty
        return {"inliers": inliers, "config": int(TwoViewConfig.UNCALIBRATED), "F": F}
    options = pycolmap.TwoViewGeometryOptions()
    options.ransac.max_error = conf["max_error_px"]
    options.ransac.confidence = conf["confidence"]
    options.ransac.max_num_trials = conf["max_iterations"]
    options.ransac.random_seed = seed  # -1 (COLMAP's default) continues one process-wide random sequence
    options.min_num_inliers = conf["min_inliers"]
    geom = pycolmap.estimate_two_view_geometry(
        prior_camera(f0["image_size"]), k0, prior_camera(f1["image_size"]), k1,
        matches.astype(np.uint32), options)
    inliers = np.asarray(geom.inlier_matches, dtype=np.int32).reshape(-1, 2)
    config = geom.config
    if config in (TwoViewConfig.UNDEFINED, TwoViewConfig.DEGENERATE) or len(inliers) < conf["min_inliers"]:
        return empty
    F = np.asarray(geom.F) if geom.F is not None else np.zeros((3, 3))
    return {"inliers": inliers, "config": int(config), "F": F}


def pair_seed(seed: int, key: str) -> int:
    """A RANSAC seed of its own for each pair (stable across processes, unlike ``hash``): every pair
    draws its own samples, and its result depends on ``seed`` and the pair only."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31


def main(conf: dict[str, Any], matches_path: Path, features: dict[str, dict[str, Any]], verified_path: Path, *,
         pairs: list[tuple[str, str]], min_matches: int, seed: int = 0, progress: bool = True,
         desc: str = "verify") -> Path:
    """Verify every listed pair that has matches (resumable per pair)."""
    matches_store = ResumableH5(matches_path)
    store = ResumableH5(verified_path)
    todo = []
    for a, b in pairs:
        key = pair_key(a, b)
        if a not in features or b not in features or key not in matches_store:
            continue
        sha = {"image_sha1_0": features[a]["image_sha1"], "image_sha1_1": features[b]["image_sha1"]}
        if not store.is_current(key, sha):
            todo.append((key, a, b, sha))
    log.info("verify: %d pairs to verify (%s) -> %s", len(todo), conf["method"], verified_path.name)
    for key, a, b, sha in tqdm(todo, desc=desc, unit="pair", disable=not progress):
        raw = matches_store.get(key)["matches"]
        if len(raw) >= min_matches:
            result = verify_pair(conf, features[a], features[b], raw, seed=pair_seed(seed, key))
        else:
            result = {"inliers": np.zeros((0, 2), np.int32), "config": int(TwoViewConfig.DEGENERATE),
                      "F": np.zeros((3, 3))}
        store.put(key, {"matches": result["inliers"], "F": result["F"]},
                  {"config": result["config"], "num_raw": len(raw), **sha})
    return store.finalize()
