"""Stage ``verified``: RANSAC geometric verification of the fused matches → ``verified-<fp>.h5``.

Methods (``verification.method``): ``pycolmap`` (COLMAP's two-view geometry: E/F/H with
configuration, with the cameras of ``cameras:``, the same as mapping), ``opencv_magsac``
(fundamental matrix, USAC MAGSAC++), ``none`` (all matches kept as inliers of an UNCALIBRATED
geometry). Pairs with fewer than ``verification.min_matches`` raw matches or
``verification.min_inliers`` inliers are stored empty (DEGENERATE).
"""

from __future__ import annotations

import enum
import logging
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pycolmap
from tqdm.auto import tqdm

from .config import check_count
from .fuse import read_images
from .h5io import ResumableH5, pair_key
from .pairs import read_pairs

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)

TwoViewConfig = pycolmap.TwoViewGeometryConfiguration


class VerificationMethod(str, enum.Enum):
    PYCOLMAP = "pycolmap"
    OPENCV_MAGSAC = "opencv_magsac"
    NONE = "none"


def prior_camera(image_size: np.ndarray, focal_factor: float, model: str) -> pycolmap.Camera:
    """A camera with the usual focal prior ``focal_factor * max(W, H)``, principal point at the centre."""
    w, h = int(image_size[0]), int(image_size[1])
    camera = pycolmap.Camera.create_from_model_name(0, model, focal_factor * max(w, h), w, h)
    camera.has_prior_focal_length = False
    return camera


def magsac_fundamental(x0: np.ndarray, x1: np.ndarray, max_error_px: float, confidence: float, max_iterations: int
                       ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """OpenCV's USAC MAGSAC++ fundamental matrix, ``(F, inlier mask)``; ``(None, None)`` where it finds no model.
    OpenCV 5 raises ``!model.empty()`` instead on some near-degenerate sets (18 matches of an ETH3D pipes pair in
    the orient stage, kept in tests/test_determinism.py); that means no model, not a failed scene."""
    try:
        return cv2.findFundamentalMat(np.asarray(x0, np.float64), np.asarray(x1, np.float64), cv2.USAC_MAGSAC,
                                      max_error_px, confidence, max_iterations)
    except cv2.error as exc:
        log.debug("MAGSAC found no fundamental matrix for %d matches: %s", len(x0), str(exc).strip()[:200])
        return None, None


def verify_pair(conf: dict[str, Any], f0: dict[str, Any], f1: dict[str, Any], matches: np.ndarray, *,
                camera0: pycolmap.Camera, camera1: pycolmap.Camera, seed: int = 0) -> dict[str, Any]:
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
        F, mask = magsac_fundamental(k0[matches[:, 0]], k1[matches[:, 1]], conf["max_error_px"], conf["confidence"],
                                     conf["max_iterations"])
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
        camera0, k0, camera1, k1,
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


def main(conf: dict[str, Any], fused_path: Path, pairs_path: Path, verified_path: Path, *, cameras: dict[str, Any],
         image_root: Path, seed: int = 0, progress: bool = True, desc: str = "verify", threads: int = 1) -> Path:
    """Verify every listed pair that has fused matches (resumable per pair), with the cameras the mapper
    starts from (``cameras:``: EXIF priors and groups, imc/sfm/cameras.py; ``auto`` = its first pass), on
    ``threads`` threads (``runtime.verify_threads``: the same results)."""
    from .sfm.cameras import make_cameras

    fused = ResumableH5(fused_path)
    images = read_images(fused_path)
    store = ResumableH5(verified_path)
    expected = {}
    for a, b in read_pairs(pairs_path):
        key = pair_key(a, b)
        if a in images and b in images and key in fused:
            expected[key] = {"image_sha1_0": images[a]["image_sha1"], "image_sha1_1": images[b]["image_sha1"]}
    todo = store.pending(expected)
    log.info("verify: %d pairs to verify (%s) -> %s", len(todo), conf["method"], verified_path.name)
    names = {key: (a, b) for a, b in read_pairs(pairs_path) for key in [pair_key(a, b)]}
    needed = sorted({n for key in todo for n in names[key]})
    if conf["cameras"] == "mapping":  # the mapper's starting cameras (EXIF priors, groups)
        camera_of = make_cameras(needed, {n: images[n]["image_size"] for n in needed}, image_root, cameras)[0]
    elif conf["cameras"] == "prior":  # focal_prior_factor x max(W, H) for every image
        camera_of = {n: prior_camera(images[n]["image_size"], cameras["focal_prior_factor"], cameras["model"])
                     for n in needed}
    else:
        raise ValueError(f"verification.cameras must be prior or mapping, got {conf['cameras']!r}")
    def verify(key: str, item: dict[str, Any]) -> tuple[dict[str, Any], int]:
        a, b = names[key]
        raw = item["matches"]
        if conf["min_match_score"] > 0:  # the matcher's own confidence (LightGlue: match probability)
            raw = raw[np.asarray(item["scores"]) >= conf["min_match_score"]]
        if len(raw) >= conf["min_matches"]:
            return verify_pair(conf, images[a], images[b], raw, camera0=camera_of.get(a), camera1=camera_of.get(b),
                               seed=pair_seed(seed, key)), len(raw)
        return {"inliers": np.zeros((0, 2), np.int32), "config": int(TwoViewConfig.DEGENERATE),
                "F": np.zeros((3, 3))}, len(raw)

    # COLMAP's RANSAC releases the GIL and every pair has its own seed, so threads give the same results,
    # stored in the same order; the HDF5 reads and writes stay on this thread, a chunk at a time.
    todo = list(todo)
    threads = max(1, int(threads))
    with ThreadPoolExecutor(threads) as pool, tqdm(total=len(todo), desc=desc, unit="pair",
                                                   disable=not progress) as bar:
        for start in range(0, len(todo), 4 * threads):
            keys = todo[start:start + 4 * threads]
            items = [fused.get(key) for key in keys]
            for key, (result, num_raw) in zip(keys, pool.map(verify, keys, items)):
                store.put(key, {"matches": result["inliers"], "F": result["F"]},
                          {"config": result["config"], "num_raw": num_raw, **expected[key]})
                bar.update()
    return store.finalize()


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    return main(ctx.conf["verification"], ctx.plan.path("fuse"), ctx.plan.path("screen"), ctx.plan.path("verified"),
                cameras=ctx.conf["cameras"], image_root=ctx.scene.root, seed=int(ctx.conf["seed"]), progress=ctx.progress,
                desc=f"verify {ctx.scene.name}", threads=verify_threads(ctx.conf["runtime"]["verify_threads"]))


def verify_threads(value: Any) -> int:
    """``runtime.verify_threads``: a positive integer, or ``auto``: as many as torch uses (``torch_threads``, else
    torch's default, the machine's cores)."""
    check_count(value, "runtime.verify_threads")
    if value == "auto":
        import torch

        return max(1, torch.get_num_threads())
    return value
