"""Read and validate the labels and submission CSVs into per-scene pose arrays.

Both files use Kaggle's encoding: ``rotation_matrix`` = 9 numbers (row-major), ``translation_vector``
= 3 numbers, ``;``-joined, world-to-camera. Extra columns are ignored; column order is free.
Every problem found is reported at once in a single exception whose message names the file, the
line (the header is line 1) and the image_path of each offending row.
"""

from __future__ import annotations

import csv
import enum
from dataclasses import dataclass
from typing import Iterator, Sequence
from pathlib import Path

import numpy as np

REQUIRED_COLUMNS = ("image_path", "dataset", "scene", "rotation_matrix", "translation_vector")
ORTHONORMAL_TOL = 1e-3
MAX_LISTED_PROBLEMS = 25
MAX_LISTED_IMAGES = 10


class SubmissionError(ValueError):
    """The submission cannot be scored; the message lists every offending row / image_path."""


class LabelsError(ValueError):
    """The ground-truth labels file is malformed; the message lists every offending row."""


class SubmissionWarning(UserWarning):
    """Something in the submission was ignored (e.g. images that are not in the labels)."""


class CsvKind(enum.Enum):
    LABELS = "labels"
    SUBMISSION = "submission"

    @property
    def error(self) -> type[ValueError]:
        return LabelsError if self is CsvKind.LABELS else SubmissionError


@dataclass(kw_only=True, frozen=True)
class PoseRow:
    line: int  # line number in the CSV file (header = line 1)
    image_path: str
    dataset: str
    scene: str
    R: np.ndarray  # (3, 3) world-to-camera rotation
    t: np.ndarray  # (3,) world-to-camera translation

    @property
    def scene_key(self) -> str:
        return f"{self.dataset}/{self.scene}"


@dataclass(kw_only=True, frozen=True)
class ScenePoses:
    """Poses of one scene: ``R[k], t[k]`` belong to ``image_paths[k]``."""

    dataset: str
    scene: str
    image_paths: tuple[str, ...]
    R: np.ndarray  # (N, 3, 3)
    t: np.ndarray  # (N, 3)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.scene}"


@dataclass(kw_only=True, frozen=True)
class Submission:
    """Submitted poses aligned to the labels (same scenes, same image order), plus ignored rows."""

    scenes: dict[str, ScenePoses]
    warnings: tuple[str, ...] = ()


def iter_csv_rows(path: str | Path, kind: CsvKind,
                  required: Sequence[str]) -> Iterator[tuple[int, list[str], dict[str, int]]]:
    """``(line number, values, column index by name)`` of every non-blank data row of a pose CSV, after
    checking that the file exists and its header has the ``required`` columns (``kind.error`` otherwise).
    The one header reader of the 2023 and the camera-centre (2024/2025) CSVs."""
    path = Path(path)
    err = kind.error
    if not path.is_file():
        raise err(f"{kind.value} file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise err(f"{path}: empty {kind.value} file (expected a header with {','.join(required)})")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise err(f"{path}: missing column(s) {missing}; header is {header}")
        col = {c: header.index(c) for c in required}
        for values in reader:
            if not values or all(not v.strip() for v in values):
                continue
            yield reader.line_num, values, col


def read_pose_rows(path: str | Path, kind: CsvKind) -> list[PoseRow]:
    """Parse a labels or submission CSV; raise ``kind.error`` listing every malformed row."""
    problems: list[str] = []
    rows: list[PoseRow] = []
    first_line: dict[str, int] = {}
    for line, values, col in iter_csv_rows(path, kind, REQUIRED_COLUMNS):
        row = _parse_row(values, col, line, problems)
        if row is None:
            continue
        if row.image_path in first_line:
            problems.append(
                f"line {line}: duplicate image_path {row.image_path!r} "
                f"(first at line {first_line[row.image_path]})"
            )
            continue
        first_line[row.image_path] = line
        rows.append(row)
    if problems:
        raise kind.error(_format_problems(f"{path}: invalid {kind.value}", problems))
    return rows


def read_labels(path: str | Path) -> dict[str, ScenePoses]:
    """Ground-truth poses per ``dataset/scene``, scenes and images in file order."""
    rows = read_pose_rows(path, CsvKind.LABELS)
    grouped: dict[str, list[PoseRow]] = {}
    for row in rows:
        grouped.setdefault(row.scene_key, []).append(row)
    too_small = [f"{k} ({len(v)} image)" for k, v in grouped.items() if len(v) < 2]
    if too_small:
        raise LabelsError(f"{path}: scenes need at least 2 labelled images (no pairs otherwise): {too_small}")
    return {key: _scene_poses(group) for key, group in grouped.items()}


def read_submission(
    path: str | Path, labels: dict[str, ScenePoses], *, scenes: list[str] | None = None
) -> Submission:
    """Parse a submission and align it to ``labels``; raise :class:`SubmissionError` if it can't be scored.

    ``scenes`` (``dataset/scene`` names, all labelled scenes when None) selects the scenes to score;
    rows of the other labelled scenes are ignored with a warning.

    Errors: missing labelled images, rows of scenes that are not in the labels, an image_path filed
    under another scene than in the labels (plus every row-level error of :func:`read_pose_rows`).
    Rows of a labelled scene whose image_path is not labelled are ignored with a warning (Kaggle's
    test sets contain such images).
    """
    rows = read_pose_rows(path, CsvKind.SUBMISSION)
    selected = list(labels) if scenes is None else list(scenes)
    unknown_selected = [s for s in selected if s not in labels]
    if unknown_selected:
        raise LabelsError(f"scene(s) {unknown_selected} not in the labels; it has {list(labels)}")
    selected = [k for k in labels if k in set(selected)]  # label order
    label_scene = {p: key for key, sp in labels.items() for p in sp.image_paths}
    by_path = {row.image_path: row for row in rows}
    problems: list[str] = []
    warnings: list[str] = []
    unknown_scene: dict[str, list[PoseRow]] = {}
    extra: dict[str, list[PoseRow]] = {}
    unselected: dict[str, list[PoseRow]] = {}
    for row in rows:
        if row.scene_key not in labels:
            unknown_scene.setdefault(row.scene_key, []).append(row)
        elif label_scene.get(row.image_path, row.scene_key) != row.scene_key:
            problems.append(
                f"line {row.line}: image_path {row.image_path!r} is filed under {row.scene_key!r} "
                f"but the labels put it in {label_scene[row.image_path]!r}"
            )
        elif row.scene_key not in selected:
            unselected.setdefault(row.scene_key, []).append(row)
        elif row.image_path not in label_scene:
            extra.setdefault(row.scene_key, []).append(row)
    for key, bad in unknown_scene.items():
        problems.append(
            f"unknown scene {key!r} (not in the labels) in {len(bad)} row(s): "
            + _list_rows(bad)
        )
    for key in selected:
        sp = labels[key]
        missing = [p for p in sp.image_paths if p not in by_path]
        if missing:
            shown = ", ".join(repr(p) for p in missing[:MAX_LISTED_IMAGES])
            more = f" and {len(missing) - MAX_LISTED_IMAGES} more" if len(missing) > MAX_LISTED_IMAGES else ""
            problems.append(f"scene {key!r}: {len(missing)} of {len(sp.image_paths)} labelled image(s) missing: {shown}{more}")
    if problems:
        raise SubmissionError(_format_problems(f"{path}: submission cannot be scored", problems))
    for key, ignored in extra.items():
        warnings.append(
            f"scene {key!r}: ignored {len(ignored)} submission row(s) whose image_path is not in the labels: "
            + _list_rows(ignored)
        )
    for key, ignored in unselected.items():
        warnings.append(f"scene {key!r} not selected for scoring: ignored its {len(ignored)} row(s)")
    aligned = {
        key: ScenePoses(
            dataset=sp.dataset,
            scene=sp.scene,
            image_paths=sp.image_paths,
            R=np.stack([by_path[p].R for p in sp.image_paths]),
            t=np.stack([by_path[p].t for p in sp.image_paths]),
        )
        for key, sp in ((k, labels[k]) for k in selected)
    }
    return Submission(scenes=aligned, warnings=tuple(warnings))


def _parse_row(values: list[str], col: dict[str, int], line: int, problems: list[str]) -> PoseRow | None:
    def field(name: str) -> str | None:
        i = col[name]
        return values[i] if i < len(values) else None

    image_path = field("image_path")
    where = f"line {line} ({image_path!r})" if image_path else f"line {line}"
    empty = [c for c in REQUIRED_COLUMNS if field(c) is None or not field(c).strip()]
    if empty:
        problems.append(f"{where}: empty or missing value(s) for {empty}")
        return None
    R = _parse_numbers(field("rotation_matrix"), 9, "rotation_matrix", where, problems)
    t = _parse_numbers(field("translation_vector"), 3, "translation_vector", where, problems)
    if R is None or t is None:
        return None
    R = R.reshape(3, 3)
    deviation = float(np.abs(R.T @ R - np.eye(3)).max())
    if deviation > ORTHONORMAL_TOL:
        problems.append(f"{where}: rotation_matrix is not orthonormal (max |RᵀR − I| = {deviation:.3g} > {ORTHONORMAL_TOL})")
        return None
    det = float(np.linalg.det(R))
    if det < 0:
        problems.append(f"{where}: rotation_matrix is a reflection (det = {det:.3g} < 0)")
        return None
    return PoseRow(line=line, image_path=image_path, dataset=field("dataset"), scene=field("scene"), R=R, t=t)


def _parse_numbers(text: str, count: int, name: str, where: str, problems: list[str]) -> np.ndarray | None:
    parts = text.split(";")
    try:
        numbers = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        problems.append(f"{where}: {name} is not {count} ';'-separated numbers: {_short(text)}")
        return None
    if len(numbers) != count:
        problems.append(f"{where}: {name} has {len(numbers)} numbers, expected {count}: {_short(text)}")
        return None
    if not np.all(np.isfinite(numbers)):
        problems.append(f"{where}: {name} contains NaN or inf: {_short(text)}")
        return None
    return numbers


def _short(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _scene_poses(rows: list[PoseRow]) -> ScenePoses:
    return ScenePoses(
        dataset=rows[0].dataset,
        scene=rows[0].scene,
        image_paths=tuple(r.image_path for r in rows),
        R=np.stack([r.R for r in rows]),
        t=np.stack([r.t for r in rows]),
    )


def _list_rows(rows: list[PoseRow]) -> str:
    shown = ", ".join(f"line {r.line} ({r.image_path!r})" for r in rows[:MAX_LISTED_IMAGES])
    return shown + (f" and {len(rows) - MAX_LISTED_IMAGES} more" if len(rows) > MAX_LISTED_IMAGES else "")


def _format_problems(title: str, problems: list[str]) -> str:
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    tail = f"\n  ... and {more} more problem(s)" if more > 0 else ""
    return f"{title}: {len(problems)} problem(s):\n  - " + "\n  - ".join(listed) + tail
