"""The IMC 2024 metric: camera centres registered to GT per dataset, mAA over 6 metre thresholds.

Source: the IMC 2024 "3D metric evaluation example" notebook (``score`` -> ``evaluate_rec`` ->
``register_by_Horn`` + ``mAA_on_cameras``), rules written down in ``eval/METRICS.md``:

* the unit is the ``dataset`` column (one scene per dataset); rows are matched on ``image_path``;
  GT and submission rows of a dataset are sorted by ``image_path`` (this fixes the triplet order);
* camera centres c = -R^T t; a non-finite submitted centre is an unregistered camera;
* registration: :func:`eval.registration.register_cameras` (``inl_cf=0, strict_cf=-1``);
* mAA = sum_q max(#{err < th_q} - 3, 0) / (6 * (m - 3)), m = the dataset's GT image count, all 6
  thresholds used (``skip_top_thresholds=0``, ``to_dec=3``);
* final score = mean over datasets (a fraction; the official notebook returns it as is).

Refused (the official code would crash or silently mis-score): GT images missing from the
submission, duplicate ``image_path`` rows, malformed numbers, datasets with <= 3 GT images (the
official denominator m - 3 would be <= 0). Submission rows the labels do not list are ignored with a
warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from eval.centre_report import CentreScoreReport
from eval.centres import CentreRow, list_lines, read_centre_rows
from eval.registration import register_cameras
from eval.submission import CsvKind, LabelsError, SubmissionError, _format_problems
from eval.thresholds import ThresholdsError, _threshold_list, default_thresholds_path

KEY_COLUMNS = ("image_path", "dataset", "scene")
TO_DEC = 3  # cameras deducted per threshold (a similarity is fixed by 3 cameras)
SKIP_TOP_THRESHOLDS = 0


@dataclass(kw_only=True, frozen=True)
class Thresholds2024:
    datasets: dict[str, tuple[float, ...]]
    default: tuple[float, ...] | None
    path: str

    def for_dataset(self, dataset: str) -> tuple[tuple[float, ...], str]:
        if dataset in self.datasets:
            return self.datasets[dataset], "dataset"
        if self.default is None:
            raise ThresholdsError(
                f"{self.path}: no thresholds for dataset {dataset!r} and no 'default' entry; "
                f"add 'datasets: {{{dataset}: {{values: [...]}}}}' or a 'default'"
            )
        return self.default, "default"


def default_path() -> Path:
    return default_thresholds_path().parent / "thresholds_imc2024.yaml"


def load_thresholds(path: str | Path | None = None) -> Thresholds2024:
    """Per-dataset metre thresholds from YAML (``configs/thresholds_imc2024.yaml`` by default)."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise ThresholdsError(f"IMC 2024 thresholds file not found: {path} (pass --thresholds PATH)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise ThresholdsError(f"{path}: expected a mapping with a 'datasets' mapping (and optional 'default')")
    unknown = set(data) - {"datasets", "default"}
    if unknown:
        raise ThresholdsError(f"{path}: unknown top-level keys {sorted(unknown)}")
    datasets = {str(k): _threshold_list(v, where=f"{path}: datasets[{k!r}]") for k, v in data["datasets"].items()}
    default = _threshold_list(data["default"], where=f"{path}: default") if data.get("default") is not None else None
    lengths = {len(v) for v in datasets.values()} | ({len(default)} if default else set())
    if len(lengths) > 1:
        raise ThresholdsError(f"{path}: every threshold list must have the same length, got {sorted(lengths)}")
    return Thresholds2024(datasets=datasets, default=default, path=str(path))


def maa_on_cameras(err: np.ndarray, thresholds: np.ndarray, n_gt: int, skip: int, to_dec: int = TO_DEC) -> float:
    """Official ``mAA_on_cameras``: sum_q max(#{err[:, q] < th_q} - to_dec, 0) / (len(th[skip:]) * (n_gt - to_dec))."""
    th = np.asarray(thresholds, dtype=np.float64)[skip:]
    counts = np.sum(err[:, skip:] < th[None, :], axis=0)
    return float(np.sum(np.maximum(counts - to_dec, 0)) / (len(th) * (n_gt - to_dec)))


def score(submission_csv: str | Path, labels_csv: str | Path, thresholds_path: str | Path | None = None) -> CentreScoreReport:
    thresholds = load_thresholds(thresholds_path)
    gt_rows = read_centre_rows(labels_csv, CsvKind.LABELS, KEY_COLUMNS, "image_path")
    sub_rows = read_centre_rows(submission_csv, CsvKind.SUBMISSION, KEY_COLUMNS, "image_path")
    gt = _group(gt_rows, CsvKind.LABELS, labels_csv)
    sub = _group(sub_rows, CsvKind.SUBMISSION, submission_csv)
    small = [f"{d} ({len(rows)} images)" for d, rows in gt.items() if len(rows) <= TO_DEC]
    if small:
        raise LabelsError(f"{labels_csv}: datasets need more than {TO_DEC} images (the mAA divides by m - 3): {small}")
    gt_dataset_of = {r.fields["image_path"]: d for d, rows in gt.items() for r in rows}
    problems, warnings = [], []
    for dataset, rows in gt.items():
        have = {r.fields["image_path"] for r in sub.get(dataset, [])}
        missing = [r for r in rows if r.fields["image_path"] not in have]
        if missing:
            problems.append(f"dataset {dataset!r}: {len(missing)} of {len(rows)} labelled image(s) missing: "
                            + list_lines(missing, "image_path"))
    for dataset, rows in sub.items():
        misfiled = [r for r in rows if gt_dataset_of.get(r.fields["image_path"], dataset) != dataset]
        if misfiled:
            problems.append(f"dataset {dataset!r}: row(s) whose image_path the labels file under another dataset: "
                            + list_lines(misfiled, "image_path"))
        extra = [r for r in rows if r.fields["image_path"] not in gt_dataset_of]
        if extra:
            warnings.append(f"dataset {dataset!r}: ignored {len(extra)} row(s) not in the labels: "
                            + list_lines(extra, "image_path"))
    if problems:
        raise SubmissionError(_format_problems(f"{submission_csv}: submission cannot be scored", problems))
    datasets: dict[str, float] = {}
    scenes: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    for dataset, rows in gt.items():
        th, source = thresholds.for_dataset(dataset)
        th_arr = np.asarray(th)
        rows = sorted(rows, key=lambda r: r.fields["image_path"])
        user = {r.fields["image_path"]: r for r in sub[dataset]}
        u = np.stack([user[r.fields["image_path"]].centre for r in rows])
        g = np.stack([r.centre for r in rows])
        reg = register_cameras(u, g, th_arr)
        m = len(rows)
        maa = maa_on_cameras(reg.err, th_arr, m, SKIP_TOP_THRESHOLDS)
        scene_names = sorted({r.fields["scene"] for r in rows})
        key = f"{dataset}/{'+'.join(scene_names)}"
        datasets[dataset] = maa
        scenes[key] = maa
        details[key] = {
            "dataset": dataset,
            "scene": "+".join(scene_names),
            "mAA": maa,
            "n_images": m,
            "n_finite": int(reg.valid.sum()),
            "registered": reg.registered(th_arr).tolist(),
            "thresholds_m": list(th),
            "threshold_source": source,
            "candidate_inlier_sets": reg.n_candidate_sets,
        }
    overall = float(np.mean(list(datasets.values()))) if datasets else math.nan
    return CentreScoreReport(
        metric="imc2024", overall=overall, datasets=datasets, scenes=scenes, details=details,
        dataset_details={d: {"mAA": v} for d, v in datasets.items()}, warnings=warnings,
        thresholds_path=thresholds.path,
    )


def _group(rows: list[CentreRow], kind: CsvKind, path: str | Path) -> dict[str, list[CentreRow]]:
    first: dict[str, CentreRow] = {}
    dup = []
    grouped: dict[str, list[CentreRow]] = {}
    for r in rows:
        name = r.fields["image_path"]
        if name in first:
            dup.append(f"line {r.line}: duplicate image_path {name!r} (first at line {first[name].line})")
            continue
        first[name] = r
        grouped.setdefault(r.fields["dataset"], []).append(r)
    if dup:
        raise kind.error(_format_problems(f"{path}: invalid {kind.value}", dup))
    return grouped
