"""Ground-truth labels of rendered scenes and the ``train_labels.csv`` they are written to.

Columns: ``dataset,scene,image_path,rotation_matrix,translation_vector,calibration_matrix,width,height``;
world-to-camera ``x_cam = R x_world + t``, matrices row-major ``;``-joined, ``image_path``
relative to the output root. Numbers are written with ``repr`` (shortest exact round trip).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from imc.io_utils import atomic_write_text, format_numbers

from .cameras import PinholeCamera

LABEL_COLUMNS = ("dataset", "scene", "image_path", "rotation_matrix", "translation_vector",
                 "calibration_matrix", "width", "height")
LABELS_FILE = "train_labels.csv"


class LabelsFileError(ValueError):
    """An existing labels file cannot be merged with."""


@dataclass(frozen=True, kw_only=True, eq=False)
class ImageLabel:
    image_path: str
    camera: PinholeCamera


@dataclass(frozen=True, kw_only=True, eq=False)
class SceneLabels:
    """Exact cameras of one rendered scene (``image_path`` relative to ``root``)."""

    dataset: str
    scene: str
    root: Path
    images: tuple[ImageLabel, ...]

    def rows(self) -> list[dict[str, str]]:
        return [
            {
                "dataset": self.dataset,
                "scene": self.scene,
                "image_path": label.image_path,
                "rotation_matrix": format_numbers(label.camera.R),
                "translation_vector": format_numbers(label.camera.t),
                "calibration_matrix": format_numbers(label.camera.K),
                "width": str(label.camera.width),
                "height": str(label.camera.height),
            }
            for label in self.images
        ]


def parse_numbers(text: str, count: int, *, what: str) -> np.ndarray:
    parts = text.replace(" ", ";").split(";")
    parts = [p for p in parts if p]
    if len(parts) != count:
        raise LabelsFileError(f"{what}: expected {count} numbers, got {len(parts)} in {text!r}")
    return np.array([float(p) for p in parts], dtype=np.float64)


def camera_from_row(row: dict[str, str]) -> PinholeCamera:
    """The exact camera of one labels row (needs the calibration/width/height columns)."""
    where = f"labels row {row.get('image_path')!r}"
    return PinholeCamera(
        K=parse_numbers(row["calibration_matrix"], 9, what=where).reshape(3, 3),
        R=parse_numbers(row["rotation_matrix"], 9, what=where).reshape(3, 3),
        t=parse_numbers(row["translation_vector"], 3, what=where),
        width=int(row["width"]),
        height=int(row["height"]),
    )


def read_label_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LABEL_COLUMNS[:5] if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelsFileError(f"{path}: missing columns {missing} (has {reader.fieldnames})")
        return list(reader)


def merge_labels(root: str | os.PathLike, scenes: Iterable[SceneLabels]) -> Path:
    """Write ``root/train_labels.csv``: rows of other scenes already there are kept, rows of
    ``scenes`` replace theirs. Sorted by dataset, scene, image_path; written atomically."""
    path = Path(root) / LABELS_FILE
    new_rows = [row for labels in scenes for row in labels.rows()]
    replaced = {(r["dataset"], r["scene"]) for r in new_rows}
    old_rows = read_label_rows(path) if path.is_file() else []
    kept = [r for r in old_rows if (r["dataset"], r["scene"]) not in replaced]
    rows = sorted(kept + new_rows, key=lambda r: (r["dataset"], r["scene"], r["image_path"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LABEL_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) or "" for c in LABEL_COLUMNS})
    return atomic_write_text(path, buf.getvalue())
