"""The competition CSV, one row per listed image, always complete.

IMC 2023 / 2024 (:func:`main`): ``image_path,dataset,scene,rotation_matrix,translation_vector``, never
NaN (identity / zero for the unregistered). IMC 2025 (:func:`write_submission` with
``Competition.IMC2025``, via :mod:`imc.formats`): ``image_id,dataset,scene,image,...``, ``scene`` the
cluster or ``outliers``, ``nan`` poses for the unregistered; rows in the order of the scenes' images
(the sample's order when it lists each dataset's rows together).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .io_utils import atomic_write_text, format_numbers
from .scenes import Competition, Scene

if TYPE_CHECKING:  # not at run time: imc.kaggle writes placeholder CSVs without pycolmap
    from .reconstruct import Pose

HEADER = ["image_path", "dataset", "scene", "rotation_matrix", "translation_vector"]
IDENTITY_R = np.eye(3)
ZERO_T = np.zeros(3)


def pose_is_finite(pose: Pose) -> bool:
    return bool(np.all(np.isfinite(pose.R)) and np.all(np.isfinite(pose.t)))


def rows_for_scene(scene: Scene, poses: dict[str, Pose]) -> list[list[str]]:
    """Registered images get their pose; every other listed image gets identity / zero."""
    rows = []
    for image_path in scene.image_paths:
        pose = poses.get(image_path)
        if pose is not None and pose_is_finite(pose):
            R, t = pose.R, pose.t
        else:
            R, t = IDENTITY_R, ZERO_T
        rows.append([image_path, scene.dataset, scene.scene, format_numbers(R), format_numbers(t)])
    return rows


def main(scenes: list[Scene], poses_by_scene: dict[str, dict[str, Pose]], csv_path: Path) -> Path:
    """Write (atomically) the CSV for all ``scenes``; scenes without poses get placeholder rows."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for scene in scenes:
        w.writerows(rows_for_scene(scene, poses_by_scene.get(scene.name, {})))
    return atomic_write_text(csv_path, buf.getvalue())


def sample_rows_2025(scenes: list[Scene]) -> list:
    """IMC 2025 rows (``formats.SampleRow``) of every scene's images, with their image_id."""
    from .formats import SampleRow

    rows = []
    for scene in scenes:
        ids = scene.image_ids or [f"{scene.dataset}_{Path(p).stem}" for p in scene.image_paths]
        rows += [SampleRow(image_id=i, dataset=scene.dataset, image=scene.image_name(p))
                 for i, p in zip(ids, scene.image_paths)]
    return rows


def write_submission(competition: Competition, scenes: list[Scene], poses_by_scene: dict[str, dict[str, Pose]],
                     labels_by_scene: dict[str, dict[str, str]], csv_path: Path) -> Path:
    """The CSV of ``competition``: :func:`main` (2023, 2024) or the 2025 columns, where
    ``labels_by_scene[scene][image_path]`` is the cluster name (missing: ``outliers``)."""
    if competition is not Competition.IMC2025:
        return main(scenes, poses_by_scene, csv_path)
    from .formats import write_imc2025_csv

    labels, poses = {}, {}
    for scene in scenes:
        for p, label in labels_by_scene.get(scene.name, {}).items():
            labels[(scene.dataset, scene.image_name(p))] = label
        for p, pose in poses_by_scene.get(scene.name, {}).items():
            poses[(scene.dataset, scene.image_name(p))] = pose
    return write_imc2025_csv(sample_rows_2025(scenes), labels, poses, csv_path)
