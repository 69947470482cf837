"""Stage ``sfm``: pycolmap database import + incremental mapping → ``sfm-<fp>/``.

Output folder (written under a temporary name, renamed when complete):
``database.db``, ``models/<k>/`` (every sub-model, COLMAP binary), ``poses.csv``
(``image_path,model,rotation_matrix,translation_vector``; each image from the largest model
that registered it), ``mapper.log`` (COLMAP's own log), ``run.json`` (the time cap the mapper ran
under and whether it hit it: a capped result is recomputed when more time is given).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pycolmap
from tqdm.auto import tqdm

from .fuse import read_images
from .h5io import ResumableH5, pair_key
from .io_utils import atomic_path, atomic_write_json, format_numbers, parse_numbers, remove_path
from .pairs import read_pairs
from .verify import prior_camera

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Pose:
    R: np.ndarray  # (3, 3) world-to-camera
    t: np.ndarray  # (3,)
    model: int


@dataclass(kw_only=True)
class ReconstructionResult:
    poses: dict[str, Pose] = field(default_factory=dict)
    model_sizes: list[int] = field(default_factory=list)

    @property
    def n_registered(self) -> int:
        return len(self.poses)

    @property
    def n_models(self) -> int:
        return len(self.model_sizes)


@contextlib.contextmanager
def capture_native_output(log_path: Path) -> Iterator[None]:
    """Send C++ stdout/stderr (glog) to ``log_path`` while the block runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def build_database(db_path: Path, features: dict[str, dict[str, Any]], verified_path: Path, conf: dict[str, Any],
                   pairs: list[tuple[str, str]], *, cameras: dict[str, Any]) -> dict[str, int]:
    """Write cameras, images, keypoints, matches and two-view geometries; return name → image_id."""
    db = pycolmap.Database.open(str(db_path))
    ids: dict[str, int] = {}
    shared_camera_id = None
    for name, f in features.items():
        if len(f["keypoints"]) == 0:
            continue
        if cameras["single_camera"] and shared_camera_id is not None:
            camera_id = shared_camera_id
        else:
            camera = prior_camera(f["image_size"], cameras["focal_prior_factor"], cameras["model"])
            camera_id = db.write_camera(camera)
            shared_camera_id = camera_id
        image_id = db.write_image(pycolmap.Image(name=name, camera_id=camera_id))
        db.write_keypoints(image_id, f["keypoints"].astype(np.float32) + 0.5)
        ids[name] = image_id
    store = ResumableH5(verified_path)
    for a, b in pairs:
        key = pair_key(a, b)
        if a not in ids or b not in ids or key not in store:
            continue
        item = store.get(key)
        inliers = item["matches"].astype(np.uint32)
        if len(inliers) < conf["min_num_matches"]:
            continue
        geom = pycolmap.TwoViewGeometry()
        geom.config = pycolmap.TwoViewGeometryConfiguration(int(store.attrs(key)["config"]))
        geom.inlier_matches = inliers
        if "F" in item and np.any(item["F"]):
            geom.F = item["F"]
        db.write_matches(ids[a], ids[b], inliers)
        db.write_two_view_geometry(ids[a], ids[b], geom)
    db.close()
    return ids


def mapper_options(conf: dict[str, Any], seed: int, *, max_runtime_seconds: float | None = None
                   ) -> pycolmap.IncrementalPipelineOptions:
    opts = pycolmap.IncrementalPipelineOptions()
    opts.min_model_size = conf["min_model_size"]
    opts.max_num_models = conf["max_num_models"]
    opts.min_num_matches = conf["min_num_matches"]
    opts.num_threads = conf["num_threads"]
    opts.random_seed = seed
    opts.multiple_models = True
    opts.ba_refine_principal_point = False
    opts.structure_less_registration_fallback = conf["structure_less_registration_fallback"]
    opts.max_runtime_seconds = max(1, int(max_runtime_seconds)) if max_runtime_seconds else -1
    for key, value in (conf.get("extra_options") or {}).items():
        target = opts
        *path, last = key.split(".")
        for p in path:
            target = getattr(target, p)
        setattr(target, last, value)
    return opts


def by_size(models: dict[int, pycolmap.Reconstruction]) -> list[pycolmap.Reconstruction]:
    """Models largest first: index k here is ``model`` in poses.csv and the folder ``models/<k>/``."""
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


def collect_poses(ordered: list[pycolmap.Reconstruction]) -> ReconstructionResult:
    """Each image's pose from the largest model that registered it (models stay separate)."""
    result = ReconstructionResult(model_sizes=[r.num_reg_images() for r in ordered])
    for k, rec in enumerate(ordered):
        for image in rec.images.values():
            if not image.has_pose or image.name in result.poses:
                continue
            pose = image.cam_from_world()
            result.poses[image.name] = Pose(R=np.asarray(pose.rotation.matrix()), t=np.asarray(pose.translation), model=k)
    return result


def write_poses_csv(path: Path, result: ReconstructionResult) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "model", "rotation_matrix", "translation_vector"])
        for name, p in sorted(result.poses.items()):
            w.writerow([name, p.model, format_numbers(p.R), format_numbers(p.t)])


def read_poses_csv(path: Path) -> ReconstructionResult:
    result = ReconstructionResult()
    models: dict[int, int] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            R = parse_numbers(row["rotation_matrix"], (3, 3))
            t = parse_numbers(row["translation_vector"], (3,))
            k = int(row["model"])
            result.poses[row["image_path"]] = Pose(R=R, t=t, model=k)
            models[k] = models.get(k, 0) + 1
    result.model_sizes = [models[k] for k in sorted(models)]
    return result


def effective_cap(configured: float | None, budget_cap: float | None) -> float | None:
    caps = [c for c in (configured, budget_cap) if c]
    return min(caps) if caps else None


def is_complete(sfm_dir: Path, cap: float | None) -> bool:
    """A finished folder counts unless its mapper was stopped by a smaller time cap than ``cap``."""
    if not (sfm_dir / "poses.csv").is_file():
        return False
    run = sfm_dir / "run.json"
    info = json.loads(run.read_text()) if run.is_file() else {}
    if not info.get("hit_cap"):
        return True
    return cap is not None and cap <= float(info["cap_s"])


def main(conf: dict[str, Any], fused_path: Path, verified_path: Path, pairs_path: Path, image_root: Path,
         sfm_dir: Path, *, cameras: dict[str, Any], seed: int = 0, budget_cap_s: float | None = None,
         progress: bool = True, desc: str = "mapping") -> Path:
    """Reconstruct into ``sfm_dir`` unless a complete one exists; return ``sfm_dir``.

    ``budget_cap_s`` (the time budget's share) caps the mapper without entering the fingerprint; a
    result cut short by it is recorded in ``run.json`` and recomputed when a later run has more time.
    """
    cap = effective_cap(conf.get("max_runtime_seconds"), budget_cap_s)
    if is_complete(sfm_dir, cap):
        return sfm_dir
    images = read_images(fused_path)
    features = {name: f for name, f in images.items() if f["num_keypoints"] > 0}
    pairs = read_pairs(pairs_path)
    with atomic_path(sfm_dir) as tmp:
        tmp.mkdir(parents=True)
        ids = build_database(tmp / "database.db", features, verified_path, conf, pairs, cameras=cameras)
        models_dir = tmp / "models"
        models_dir.mkdir()
        mapper_dir = tmp / "mapper"
        mapper_dir.mkdir()
        models: dict[int, pycolmap.Reconstruction] = {}
        t0 = time.perf_counter()
        if len(ids) >= 2:
            bar = tqdm(total=len(ids), desc=desc, unit="img", disable=not progress)
            with capture_native_output(tmp / "mapper.log"):
                models = pycolmap.incremental_mapping(
                    str(tmp / "database.db"), str(image_root), str(mapper_dir),
                    mapper_options(conf, seed, max_runtime_seconds=cap),
                    initial_image_pair_callback=lambda: bar.update(2),
                    next_image_callback=lambda: bar.update(1))
            bar.close()
        seconds = time.perf_counter() - t0
        ordered = by_size(models)
        result = collect_poses(ordered)
        for k, rec in enumerate(ordered):
            (models_dir / str(k)).mkdir(exist_ok=True)
            rec.write(str(models_dir / str(k)))
        remove_path(mapper_dir)  # pycolmap's own numbering; models/ is sorted by size
        log.info("mapping: %d/%d images registered in %d model(s) %s", result.n_registered, len(ids),
                 result.n_models, result.model_sizes)
        write_poses_csv(tmp / "poses.csv", result)
        atomic_write_json(tmp / "run.json", {"cap_s": cap, "seconds": round(seconds, 3),
                                             "hit_cap": bool(cap is not None and seconds >= 0.95 * cap)})
    return sfm_dir


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    return main(ctx.conf["sfm"], ctx.plan.path("fuse"), ctx.plan.path("verified"), ctx.plan.path("screen"),
                ctx.scene.root, ctx.plan.path("sfm"), cameras=ctx.conf["cameras"], seed=int(ctx.conf["seed"]),
                budget_cap_s=ctx.budget_cap_s, progress=ctx.progress, desc=f"mapping {ctx.scene.name}")
