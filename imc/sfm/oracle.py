"""How far a scene's mapping is from what its matches and cameras allow: ``python -m imc oracle SFM_DIR --labels CSV``.

The mapper's model is scored as it is, then the same database is re-triangulated from the ground-truth poses
(``pycolmap.triangulate_points``, the mapper's own cameras) and bundle-adjusted with those cameras fixed. When
the labels carry ``calibration_matrix`` the same is done once more with the ground-truth intrinsics. Reading
the rows (each: mAA, median rotation error, mean reprojection error, observations):

- the ground-truth poses bundle-adjust to a high mAA with the mapper's cameras: the matches and the camera model
  allow a good answer, and the mapper did not find it (initialisation, registration order);
- they drift away with the mapper's cameras and stay with the true ones: the camera model (a fixed centred
  principal point, one focal per group) is what stands between the matches and the poses;
- they drift with both: the matches themselves do not determine the poses.

An upper bound for research, not a scene step: it needs the labels, and it never changes the cached model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pycolmap


class OracleError(ValueError):
    """The sfm folder or the labels can't be used (the message names the file and the fix)."""


@dataclass(kw_only=True, frozen=True)
class OracleRow:
    variant: str
    maa: float
    median_err_R_deg: float
    registered: int
    n_images: int
    reprojection_px: float
    observations: int
    points: int
    intrinsics: str


@dataclass(kw_only=True, frozen=True)
class OracleReport:
    scene: str
    rows: tuple[OracleRow, ...]
    notes: tuple[str, ...] = ()

    def table(self) -> str:
        lines = [f"# {self.scene}", "",
                 "| variant | mAA | median rot. err ° | registered | reprojection px | observations | points | intrinsics |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.variant} | {r.maa:.3f} | {r.median_err_R_deg:.1f} | {r.registered}/{r.n_images} | "
                         f"{r.reprojection_px:.3f} | {r.observations} | {r.points} | {r.intrinsics} |")
        return "\n".join(lines + [""] + [f"- {n}" for n in self.notes])


def largest_model(sfm_dir: Path) -> Path:
    """``sfm_dir/models/<k>`` with the most registered images (or ``sfm_dir`` itself when it is a model)."""
    if (sfm_dir / "images.bin").is_file() or (sfm_dir / "images.txt").is_file():
        return sfm_dir
    models = sorted(p for p in (sfm_dir / "models").glob("*") if p.is_dir()) if (sfm_dir / "models").is_dir() else []
    if not models:
        raise OracleError(f"{sfm_dir}: no models/<k> folder: pass the sfm stage's output folder (cache "
                          f"<scene>/sfm-<fingerprint>) or a model folder")
    return max(models, key=lambda p: (pycolmap.Reconstruction(p).num_reg_images(), -int(p.name) if p.name.isdigit() else 0))


def _labels(labels_csv: Path):
    """The labelled scenes' poses (``eval.submission.read_labels``, the scorer's own reader)."""
    from eval.submission import LabelsError, SubmissionError, read_labels

    try:
        return read_labels(labels_csv)
    except (LabelsError, SubmissionError) as e:
        raise OracleError(f"{e}: pass an IMC labels CSV (dataset,scene,image_path,rotation_matrix,"
                          f"translation_vector[,calibration_matrix])") from e


def _match_scene(labels: dict, names: Sequence[str], labels_csv: Path):
    """The labelled scene holding the model's images: ``(its ScenePoses, {database image name: label index})``."""
    def index(key):
        hits: dict[str, list[tuple[str, int]]] = {}
        for scene, poses in labels.items():
            for k, path in enumerate(poses.image_paths):
                hits.setdefault(key(path), []).append((scene, k))
        return {n: hits[key(n)][0] for n in names if len(hits.get(key(n), [])) == 1}

    # by path; else by file name, when the database names are relative to another root
    found = index(lambda path: path) or index(lambda path: Path(path).name)
    scenes = {scene for scene, _ in found.values()}
    if len(scenes) != 1:
        raise OracleError(f"{labels_csv}: the model's images ({len(names)}, e.g. {list(names)[:2]}) match "
                          f"{'no labelled image' if not scenes else f'several scenes {sorted(scenes)}'}: pass the "
                          f"labels of this scene")
    return labels[scenes.pop()], {n: k for n, (_, k) in found.items()}


def _score(rec: pycolmap.Reconstruction, gt, found: dict[str, int], variant: str, intrinsics: str) -> OracleRow:
    from eval.score import score_scene
    from eval.submission import ScenePoses
    from eval.thresholds import load_thresholds

    R = np.tile(np.eye(3), (len(gt.image_paths), 1, 1))
    t = np.zeros((len(gt.image_paths), 3))
    for im in rec.images.values():
        if im.has_pose and im.name in found:
            pose = im.cam_from_world()
            R[found[im.name]], t[found[im.name]] = pose.rotation.matrix(), pose.translation
    s = score_scene(gt, ScenePoses(dataset=gt.dataset, scene=gt.scene, image_paths=gt.image_paths, R=R, t=t),
                    load_thresholds())
    return OracleRow(variant=variant, maa=s.maa, median_err_R_deg=s.median_err_R_deg, registered=s.n_registered,
                     n_images=s.n_images, reprojection_px=float(rec.compute_mean_reprojection_error()),
                     observations=int(rec.compute_num_observations()), points=int(rec.num_points3D()),
                     intrinsics=intrinsics)


def _bundle_adjust(rec: pycolmap.Reconstruction) -> None:
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = opts.refine_principal_point = opts.refine_extra_params = False
    pycolmap.bundle_adjustment(rec, opts)


def _gt_intrinsics(rec: pycolmap.Reconstruction, gt, found: dict[str, int],
                  labels_csv: Path) -> tuple[dict[int, list[float]], str | None]:
    """Per camera of ``rec``: PINHOLE ``fx, fy, cx, cy`` from the labels' ``calibration_matrix``; or why not."""
    from eval.synth.labels import LabelsFileError, parse_numbers, read_label_rows

    calibration = {(r["dataset"], r["scene"], r["image_path"]): r.get("calibration_matrix")
                   for r in read_label_rows(labels_csv)}
    params: dict[int, list[float]] = {}
    for im in rec.images.values():
        if im.name not in found:
            continue
        text = calibration.get((gt.dataset, gt.scene, gt.image_paths[found[im.name]]))
        if not text:
            return {}, "the labels carry no calibration_matrix: no ground-truth-intrinsics rows"
        try:
            K = parse_numbers(text, 9, what=f"{labels_csv}: calibration_matrix").reshape(3, 3)
        except (LabelsFileError, ValueError) as e:
            raise OracleError(str(e)) from e
        p = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
        old = params.setdefault(im.camera_id, p)
        if not np.allclose(old, p, rtol=5e-3, atol=0.5):
            return {}, (f"camera {im.camera_id} is shared by images whose labelled intrinsics differ: no "
                        f"ground-truth-intrinsics rows")
    return params, None


def oracle(sfm_dir: str | Path, labels_csv: str | Path, *, image_root: str | Path | None = None) -> OracleReport:
    sfm_dir, labels_csv = Path(sfm_dir), Path(labels_csv)
    model_dir = largest_model(sfm_dir)
    database = next((p for p in (model_dir / "database.db", sfm_dir / "database.db") if p.is_file()), None)
    if database is None:
        raise OracleError(f"{sfm_dir}: no database.db beside the models: pass the sfm stage's output folder")
    mapped = pycolmap.Reconstruction(model_dir)
    gt, found = _match_scene(_labels(labels_csv), [im.name for im in mapped.images.values()], labels_csv)
    out = [_score(mapped, gt, found, "mapper", "mapper")]
    notes = [f"model {model_dir} ({mapped.num_reg_images()} registered), database {database}"]
    missing = [im.name for im in mapped.images.values() if im.name not in found]
    if missing:
        notes.append(f"{len(missing)} image(s) of the model are not labelled and keep the mapper's pose: {missing[:3]}")
    variants: list[tuple[str, dict[int, list[float]] | None]] = [("mapper", None)]
    gt_params, why = _gt_intrinsics(mapped, gt, found, labels_csv)
    if why:
        notes.append(why)
    else:
        variants.append(("ground truth", gt_params))
    from imc.reconstruct import capture_native_output

    with tempfile.TemporaryDirectory(prefix="imc-oracle-") as tmp, capture_native_output(Path(tmp) / "pycolmap.log"):
        tmp = Path(tmp)
        for intrinsics, params in variants:
            work = tmp / intrinsics.replace(" ", "-")
            work.mkdir()
            db = work / "database.db"
            shutil.copy(database, db)
            rec = pycolmap.Reconstruction(model_dir)
            if params:  # the database's cameras must have the reconstruction's model to triangulate
                d = pycolmap.Database.open(str(db))
                try:
                    for cam in d.read_all_cameras():
                        if cam.camera_id in params:
                            cam.model, cam.params = pycolmap.CameraModelId.PINHOLE, params[cam.camera_id]
                            d.update_camera(cam)
                finally:
                    d.close()
                for cid, p in params.items():
                    rec.cameras[cid].model, rec.cameras[cid].params = pycolmap.CameraModelId.PINHOLE, p
            for im in rec.images.values():
                if im.name in found and im.has_pose:
                    k = found[im.name]
                    rec.frames[im.frame_id].rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(gt.R[k]), gt.t[k])
            rec = pycolmap.triangulate_points(rec, str(db), str(Path(image_root) if image_root else tmp), str(work),
                                              clear_points=True, refine_intrinsics=False)
            out.append(_score(rec, gt, found, "ground-truth poses, triangulated", intrinsics))
            _bundle_adjust(rec)
            out.append(_score(rec, gt, found, "ground-truth poses, then bundle adjustment", intrinsics))
    return OracleReport(scene=gt.key, rows=tuple(out), notes=tuple(notes))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m imc oracle", description=__doc__.split("\n\n")[0])
    p.add_argument("sfm_dir", help="the sfm stage's output folder (<cache>/<scene>/sfm-<fingerprint>) or a model folder")
    p.add_argument("--labels", required=True, help="labels CSV with this scene's ground truth")
    p.add_argument("--image-root", default=None, help="image folder (only used for point colours)")
    args = p.parse_args(argv)
    try:
        report = oracle(args.sfm_dir, args.labels, image_root=args.image_root)
    except (OracleError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    return 0
