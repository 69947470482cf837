"""Read IMC 2024 / IMC 2025 pose CSVs into camera centres (c = -R^T t), non-finite allowed.

Unlike the IMC 2023 reader (:mod:`eval.submission`), these metrics score camera centres only and
treat a non-finite centre (e.g. ``nan`` poses) as an unregistered camera, exactly as the official
``register_by_Horn`` does; rotations are not checked for orthonormality (the official code never
looks at them beyond computing c). Malformed numbers, wrong counts and empty key fields are refused,
every problem at once, each naming the file line and the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from eval.registration import camera_centres
from eval.submission import CsvKind, _format_problems, _short, iter_csv_rows

POSE_COLUMNS = ("rotation_matrix", "translation_vector")


@dataclass(kw_only=True, frozen=True)
class CentreRow:
    line: int  # header = line 1
    fields: dict[str, str]  # the required columns' values, stripped
    centre: np.ndarray  # (3,), non-finite when unregistered

    @property
    def registered(self) -> bool:
        return bool(np.all(np.isfinite(self.centre)))


def read_centre_rows(path: str | Path, kind: CsvKind, key_columns: Sequence[str], image_column: str) -> list[CentreRow]:
    """Rows of a pose CSV with ``key_columns`` + rotation/translation; raise ``kind.error`` listing all problems."""
    required = tuple(key_columns) + POSE_COLUMNS
    problems: list[str] = []
    rows: list[CentreRow] = []
    for line, values, col in iter_csv_rows(path, kind, required):
        fields = {c: (values[i].strip() if i < len(values) else "") for c, i in col.items()}
        where = f"line {line} ({fields[image_column]!r})" if fields[image_column] else f"line {line}"
        empty = [c for c in key_columns if not fields[c]]
        if empty:
            problems.append(f"{where}: empty or missing value(s) for {empty}")
            continue
        R = _numbers(fields["rotation_matrix"], 9, "rotation_matrix", where, problems)
        t = _numbers(fields["translation_vector"], 3, "translation_vector", where, problems)
        if R is None or t is None:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            centre = camera_centres(R.reshape(1, 3, 3), t.reshape(1, 3))[0]
        rows.append(CentreRow(line=line, fields={c: fields[c] for c in key_columns}, centre=centre))
    if problems:
        raise kind.error(_format_problems(f"{path}: invalid {kind.value}", problems))
    return rows


def _numbers(text: str, count: int, name: str, where: str, problems: list[str]) -> np.ndarray | None:
    try:
        numbers = np.array([float(p) for p in text.split(";")], dtype=np.float64)
    except ValueError:
        problems.append(f"{where}: {name} is not {count} ';'-separated numbers (write 'nan;nan;...' in full for an unregistered pose): {_short(text)}")
        return None
    if len(numbers) != count:
        problems.append(f"{where}: {name} has {len(numbers)} numbers, expected {count}: {_short(text)}")
        return None
    return numbers


def list_lines(rows: Sequence[CentreRow], image_column: str, limit: int = 10) -> str:
    shown = ", ".join(f"line {r.line} ({r.fields[image_column]!r})" for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")
