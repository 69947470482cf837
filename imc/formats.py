"""The IMC 2025 submission CSV: read the sample submission, write the answer (the 2023 writer is imc/submission.py).

Columns ``image_id,dataset,scene,image,rotation_matrix,translation_vector``. ``image_id`` is passed
through from the sample submission, rows keep its order, ``scene`` is the image's cluster name or
``outliers``, and an image without a finite pose (unregistered, or an outlier) gets ``nan`` for all
12 numbers, as the official metric reads them (9 + 3 ``;``-joined values each, never a lone ``nan``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from .cluster import OUTLIERS
from .io_utils import atomic_write_text, format_numbers

HEADER_2025 = ["image_id", "dataset", "scene", "image", "rotation_matrix", "translation_vector"]
NAN_R = ";".join(["nan"] * 9)
NAN_T = ";".join(["nan"] * 3)


class SampleSubmissionError(ValueError):
    """The IMC 2025 sample submission is unusable (the message names the rows)."""


class PoseLike(Protocol):
    R: np.ndarray
    t: np.ndarray


@dataclass(kw_only=True, frozen=True)
class SampleRow:
    image_id: str
    dataset: str
    image: str


def read_sample_submission_2025(path: str | Path) -> list[SampleRow]:
    """Rows of an IMC 2025 ``sample_submission.csv`` (needs image_id, dataset, image)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("image_id", "dataset", "image") if c not in (reader.fieldnames or [])]
        if missing:
            raise SampleSubmissionError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        rows, problems, seen = [], [], {}
        for row in reader:
            line = reader.line_num
            values = {c: (row.get(c) or "").strip() for c in ("image_id", "dataset", "image")}
            if not all(values.values()):
                problems.append(f"line {line}: empty image_id, dataset or image")
                continue
            key = (values["dataset"], values["image"])
            if key in seen:
                problems.append(f"line {line}: image {key[1]!r} of dataset {key[0]!r} listed twice (first at line {seen[key]})")
                continue
            seen[key] = line
            rows.append(SampleRow(**values))
    if problems:
        raise SampleSubmissionError(f"{path}: " + "; ".join(problems[:25]))
    return rows


def rows_imc2025(
    sample: Sequence[SampleRow],
    labels: Mapping[tuple[str, str], str],
    poses: Mapping[tuple[str, str], PoseLike],
) -> list[list[str]]:
    """One row per sample row: ``labels[(dataset, image)]`` (default ``outliers``), pose or ``nan``."""
    out = []
    for row in sample:
        key = (row.dataset, row.image)
        scene = labels.get(key, OUTLIERS)
        pose = poses.get(key) if scene != OUTLIERS else None
        if pose is not None and np.all(np.isfinite(pose.R)) and np.all(np.isfinite(pose.t)):
            R, t = format_numbers(pose.R), format_numbers(pose.t)
        else:
            R, t = NAN_R, NAN_T
        out.append([row.image_id, row.dataset, scene, row.image, R, t])
    return out


def write_imc2025_csv(
    sample: Sequence[SampleRow],
    labels: Mapping[tuple[str, str], str],
    poses: Mapping[tuple[str, str], PoseLike],
    csv_path: str | Path,
) -> Path:
    """Write (atomically) the IMC 2025 submission for every sample row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER_2025)
    w.writerows(rows_imc2025(sample, labels, poses))
    return atomic_write_text(csv_path, buf.getvalue())
