"""The competition CSV, one row per listed image, always complete, never NaN."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .io_utils import atomic_write_text, format_numbers
from .scenes import Scene

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
