"""Stage ``sfm``: pycolmap database import + incremental mapping → ``sfm-<fp>/``.

Output folder (written under a temporary name, renamed when complete):
``database.db``, ``models/<k>/`` (every sub-model, COLMAP binary), ``poses.csv``
(``image_path,model,rotation_matrix,translation_vector``; each image from the largest model
that registered it), ``mapper.log`` (COLMAP's own log), ``run.json`` (the time cap the mapper ran
under, whether it hit it, and ``partial``: the upstream stages were cut short by the time budget; a
capped or partial result is recomputed when more time is given).
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
from .sfm.cameras import make_cameras
from .sfm.mapping import incremental_options, run_mapper
from .verify import prior_camera

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Pose:
    R: np.ndarray  # (3, 3) world-to-camera
    t: np.ndarray  # (3,)
    model: int
    how: str = "mapper"  # mapper | relocalised (imc.sfm.refine.How)
    reprojection_error: float = float("nan")
    num_observations: int = 0


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
                   pairs: list[tuple[str, str]], image_root: Path, *, cameras: dict[str, Any],
                   refined_focals: dict[str, float] | None = None) -> dict[str, int]:
    """Write cameras, images, keypoints, matches and two-view geometries; return name → image_id.
    ``refined_focals`` (``cameras.mode: auto``): per-image focals of a first pass (imc.sfm.cameras)."""
    db = pycolmap.Database.open(str(db_path))
    ids: dict[str, int] = {}
    names = [name for name, f in features.items() if len(f["keypoints"]) > 0]
    per_image, _, priors = make_cameras(names, {n: features[n]["image_size"] for n in names}, image_root, cameras,
                                        refined_focals=refined_focals)
    camera_ids: dict[int, int] = {}  # id(shared Camera object) -> database camera id
    for name in names:
        f = features[name]
        if id(per_image[name]) not in camera_ids:
            camera_ids[id(per_image[name])] = db.write_camera(per_image[name])
        camera_id = camera_ids[id(per_image[name])]
        if priors[name].from_exif or cameras["exif_prior"]:
            log.info("camera %s: focal prior %.0f px (%s)", name, priors[name].focal_px, priors[name].note)
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
    return incremental_options(conf, seed, max_runtime_seconds=max_runtime_seconds)


def by_size(models: dict[int, pycolmap.Reconstruction]) -> list[pycolmap.Reconstruction]:
    """Models largest first: index k here is ``model`` in poses.csv and the folder ``models/<k>/``."""
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


def refined_focals(ordered: list[pycolmap.Reconstruction]) -> dict[str, float]:
    """Each registered image's focal length (px), from the largest model that holds it."""
    out: dict[str, float] = {}
    for rec in ordered:
        for im in rec.images.values():
            if im.has_pose and im.name not in out:
                out[im.name] = float(rec.cameras[im.camera_id].mean_focal_length())
    return out


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


def refine_and_collect(ordered: list[pycolmap.Reconstruction], features: dict[str, dict[str, Any]],
                       verified_path: Path, conf: dict[str, Any], pairs: list[tuple[str, str]], *,
                       cameras: dict[str, Any]) -> tuple[ReconstructionResult, set[tuple[str, str]]]:
    """``imc.sfm.refine.refine_models`` (checks, relocalisation) on the models, then each image's pose, and the
    pairs the checks found wrong (re-posed images and the partners their new pose disagrees with)."""
    from .sfm.data import load_two_view_matches
    from .sfm.refine import refine_models

    matches = load_two_view_matches(verified_path, pairs, min_num_matches=conf["min_num_matches"])
    refined = refine_models(ordered, features, matches, conf, make_camera=lambda name: prior_camera(
        features[name]["image_size"], cameras["focal_prior_factor"], cameras["model"]))
    result = ReconstructionResult(model_sizes=[r.num_reg_images() for r in ordered])
    for name, (pose, k) in refined.poses.items():
        prov = refined.provenance[name]
        result.poses[name] = Pose(R=np.asarray(pose.rotation.matrix()), t=np.asarray(pose.translation), model=k,
                                  how=prov.how.value, reprojection_error=prov.reprojection_error,
                                  num_observations=prov.num_observations)
    return result, refined.pruned


def write_poses_csv(path: Path, result: ReconstructionResult) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "model", "rotation_matrix", "translation_vector", "how", "reprojection_error",
                    "num_observations"])
        for name, p in sorted(result.poses.items()):
            w.writerow([name, p.model, format_numbers(p.R), format_numbers(p.t), p.how,
                        f"{p.reprojection_error:.4f}", p.num_observations])


def read_poses_csv(path: Path) -> ReconstructionResult:
    result = ReconstructionResult()
    models: dict[int, int] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            R = parse_numbers(row["rotation_matrix"], (3, 3))
            t = parse_numbers(row["translation_vector"], (3,))
            k = int(row["model"])
            result.poses[row["image_path"]] = Pose(
                R=R, t=t, model=k, how=row.get("how") or "mapper",
                reprojection_error=float(row.get("reprojection_error") or "nan"),
                num_observations=int(row.get("num_observations") or 0))
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
    if info.get("partial"):
        return False  # its inputs were cut short: map again from what the stages have now
    if not info.get("hit_cap"):
        return True
    return cap is not None and cap <= float(info["cap_s"])


def main(conf: dict[str, Any], fused_path: Path, verified_path: Path, pairs_path: Path, image_root: Path,
         sfm_dir: Path, *, cameras: dict[str, Any], seed: int = 0, budget_cap_s: float | None = None,
         partial: list[str] | None = None, progress: bool = True, desc: str = "mapping",
         image_sha1s: dict[str, str] | None = None) -> Path:
    """Reconstruct into ``sfm_dir`` unless a complete one exists; return ``sfm_dir``.

    ``budget_cap_s`` (the time budget's share) caps the mapper without entering the fingerprint; a
    result cut short by it is recorded in ``run.json`` and recomputed when a later run has more time.
    ``partial``: why the upstream stages are incomplete (stopped by the budget): recorded the same way.
    """
    cap = effective_cap(conf.get("max_runtime_seconds"), budget_cap_s)
    if is_complete(sfm_dir, cap):
        return sfm_dir
    images = read_images(fused_path)
    # The per-image caches keep entries of images a scene no longer lists (or that changed): only the
    # scene's current images, by content, are mapped.
    features = {name: f for name, f in images.items() if f["num_keypoints"] > 0
                and (image_sha1s is None or image_sha1s.get(name) == f["image_sha1"])}
    pairs = read_pairs(pairs_path)
    with atomic_path(sfm_dir) as tmp:
        tmp.mkdir(parents=True)
        models_dir = tmp / "models"
        models_dir.mkdir()
        mapper_dir = tmp / "mapper"
        mapper_dir.mkdir()

        def map_once(db_path: Path, first_pass: dict[str, float] | None, drop: set[tuple[str, str]] = frozenset()
                     ) -> tuple[dict[str, int], dict[int, pycolmap.Reconstruction]]:
            kept = [(a, b) for a, b in pairs if (a, b) not in drop and (b, a) not in drop]
            ids = build_database(db_path, features, verified_path, conf, kept, image_root, cameras=cameras,
                                 refined_focals=first_pass)
            if len(ids) < 2:
                return ids, {}
            bar = tqdm(total=len(ids), desc=desc, unit="img", disable=not progress)
            with capture_native_output(tmp / "mapper.log"):
                models = run_mapper(db_path, image_root, mapper_dir, conf, seed, num_images=len(ids), max_runtime_seconds=cap,
                                    callbacks={"initial_image_pair_callback": lambda: bar.update(2),
                                               "next_image_callback": lambda: bar.update(1)})
            bar.close()
            return ids, models

        t0 = time.perf_counter()
        grouped = cameras["mode"] == "auto"
        if grouped:  # per-image cameras first; groups confirmed by the refined focals
            ids1, first = map_once(tmp / "first_pass.db", None)
            first_focals = refined_focals(by_size(first))  # one per registered image
            ids, models = map_once(tmp / "database.db", first_focals)
            n_first, n_grouped = len(first_focals), len(refined_focals(by_size(models)))
            if n_grouped < n_first:  # Middlebury dino, default features: 15 registered per image, 9 grouped
                log.info("cameras auto: the grouped cameras registered %d images, the per-image first pass %d: "
                         "the first pass kept", n_grouped, n_first)
                ids, models, grouped = ids1, first, False
                os.replace(tmp / "first_pass.db", tmp / "database.db")
            else:
                remove_path(tmp / "first_pass.db")
        else:
            ids, models = map_once(tmp / "database.db", None)
        ordered = by_size(models)
        result, pruned = refine_and_collect(ordered, features, verified_path, conf, pairs, cameras=cameras)
        if pruned and conf["checks"].get("remap"):  # map again without the pairs the checks found wrong
            log.info("checks: mapping again without %d pair(s) of re-posed images: %s", len(pruned),
                     ", ".join(f"{a} / {b}" for a, b in sorted(pruned)))
            focals = refined_focals(ordered) if grouped else None
            ids2, models2 = map_once(tmp / "remap.db", focals, pruned)
            ordered2 = by_size(models2)
            result2, _ = refine_and_collect(ordered2, features, verified_path, conf, pairs, cameras=cameras)
            if result2.n_registered >= result.n_registered:
                ids, ordered, result = ids2, ordered2, result2
                os.replace(tmp / "remap.db", tmp / "database.db")  # the database of the models kept
            else:
                log.info("checks: the new mapping registered %d images, fewer than %d: the first kept",
                         result2.n_registered, result.n_registered)
                remove_path(tmp / "remap.db")
        seconds = time.perf_counter() - t0
        for k, rec in enumerate(ordered):
            (models_dir / str(k)).mkdir(exist_ok=True)
            rec.write(str(models_dir / str(k)))
        remove_path(mapper_dir)  # pycolmap's own numbering; models/ is sorted by size
        log.info("mapping: %d/%d images registered in %d model(s) %s", result.n_registered, len(ids),
                 result.n_models, result.model_sizes)
        write_poses_csv(tmp / "poses.csv", result)
        info: dict[str, Any] = {"cap_s": cap, "seconds": round(seconds, 3),
                                "hit_cap": bool(cap is not None and seconds >= 0.95 * cap)}
        if partial:
            info["partial"] = list(partial)
        atomic_write_json(tmp / "run.json", info)
    return sfm_dir


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    return main(ctx.conf["sfm"], ctx.plan.path("fuse"), ctx.plan.path("verified"), ctx.plan.path("screen"),
                ctx.scene.root, ctx.plan.path("sfm"), cameras=ctx.conf["cameras"], seed=int(ctx.conf["seed"]),
                budget_cap_s=ctx.clock.mapper_cap() if ctx.clock is not None else ctx.budget_cap_s,
                partial=list(ctx.clock.cut) if ctx.clock is not None else None, progress=ctx.progress,
                desc=f"mapping {ctx.scene.name}", image_sha1s=ctx.sha1s)
