"""The IMC 2025 metric: clustering and camera-centre registration scored together, per dataset.

Source: the official ``metric.py`` of the ``imc25-utils`` Kaggle dataset (``score`` with
``inl_cf=0, strict_cf=-1, skip_top_thresholds=2, to_dec=3, combo_mode='harmonic'``, no mask);
every rule is listed in ``eval/METRICS.md``. In short, per dataset (GT file order):

* GT scenes and submitted clusters (``scene`` column; ``outliers`` = no cluster) in file order;
* for each GT scene i and each submitted cluster j, unless either is named ``outliers``:
  overlap[i, j] = #GT images of i filed under j; the overlapping cameras are registered
  (:func:`eval.registration.register_cameras`, GT order) and
  mAA[i, j] = sum_{q>=2} max(#{err < th_q} - 3, 0) / (4 * (m_i - 3)), 0 when the numerator is 0;
* greedy, not one-to-one: GT scene i takes the cluster of largest overlap, ties by higher mAA,
  then first in the submission's file order (``np.lexsort((-mAA, -overlap))[0]``);
* the GT ``outliers`` scene is then dropped;
* mAA score = sum_i sum_{q>=2} max(#{err_i < th_q} - 3, 0) / max(0, 4 * (sum_i m_i - 3 k)),
  k = #GT scenes (pooled over the dataset); clusterness = sum_i overlap_i / sum_i |cluster_i|;
  dataset score = harmonic mean (0 when both are 0); final = 100 x mean over datasets.

Row-order quirk (reproduced): a GT scene with no image in any non-outlier cluster has an all-zero
row, so it takes the FIRST cluster of the submission. If that is ``outliers`` the official tables
hold nothing for it: its m_i is left out of the mAA denominator (but its 3 deducted cameras are
not) and its |cluster| out of the clusterness denominator, so the score can exceed 100. Each time
this fires a warning is logged and added to the report. If the first cluster is a real one, m_i
and that cluster's full size count, as the official code does.

Refused: a GT image missing from the submission, an image listed twice in a dataset, a submitted
image that is not in that GT dataset (the official ``check_data`` rejects all three), malformed
numbers. Submitted datasets absent from the labels are ignored with a warning. ``nan`` poses are
unregistered cameras. ``image_id`` is not read (the official metric does not read it either).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval.centre_report import CentreScoreReport
from eval.centres import CentreRow, list_lines, read_centre_rows
from eval.registration import Registration, register_cameras
from eval.submission import CsvKind, LabelsError, SubmissionError, _format_problems
from eval.thresholds import ThresholdsError, default_thresholds_path

log = logging.getLogger(__name__)

KEY_COLUMNS = ("dataset", "scene", "image")
OUTLIERS = "outliers"
TO_DEC = 3
SKIP_TOP_THRESHOLDS = 2
DEFAULT_KEY = ("default", "default")  # harness extension, from the organisers' tth_to_csv draft


@dataclass(kw_only=True, frozen=True)
class Thresholds2025:
    """``train_thresholds.csv``: ``dataset,scene,thresholds`` (``;``-joined metres), one length for all."""

    scenes: dict[tuple[str, str], tuple[float, ...]]
    path: str

    def for_scene(self, dataset: str, scene: str) -> tuple[tuple[float, ...], str]:
        if (dataset, scene) in self.scenes:
            return self.scenes[(dataset, scene)], "scene"
        if DEFAULT_KEY in self.scenes:
            return self.scenes[DEFAULT_KEY], "default"
        raise ThresholdsError(
            f"{self.path}: no thresholds for {dataset}/{scene} (the official metric would raise KeyError); "
            f"add a row '{dataset},{scene},t1;...;t6' or a 'default,default,...' row"
        )

    @property
    def n_thresholds(self) -> int:
        return len(next(iter(self.scenes.values())))


def default_path() -> Path:
    return default_thresholds_path().parent / "thresholds_imc2025.csv"


def load_thresholds(path: str | Path | None = None) -> Thresholds2025:
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise ThresholdsError(f"IMC 2025 thresholds file not found: {path} (pass --thresholds train_thresholds.csv)")
    scenes: dict[tuple[str, str], tuple[float, ...]] = {}
    problems = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("dataset", "scene", "thresholds") if c not in (reader.fieldnames or [])]
        if missing:
            raise ThresholdsError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        for row in reader:
            if not any((v or "").strip() for v in row.values()):
                continue
            try:
                values = tuple(float(x) for x in row["thresholds"].split(";"))
            except (ValueError, AttributeError):
                problems.append(f"line {reader.line_num}: thresholds {row['thresholds']!r} are not ';'-separated numbers")
                continue
            if not all(math.isfinite(v) and v > 0 for v in values):
                problems.append(f"line {reader.line_num}: thresholds must be finite and > 0, got {values}")
                continue
            scenes[(row["dataset"].strip(), row["scene"].strip())] = values
    if problems:
        raise ThresholdsError(_format_problems(f"{path}: invalid thresholds", problems))
    if not scenes:
        raise ThresholdsError(f"{path}: no threshold rows")
    lengths = sorted({len(v) for v in scenes.values()})
    if len(lengths) != 1:
        raise ThresholdsError(f"{path}: number of thresholds varies per scene: {lengths} (the official metric refuses this)")
    if lengths[0] <= SKIP_TOP_THRESHOLDS:
        raise ThresholdsError(f"{path}: need more than {SKIP_TOP_THRESHOLDS} thresholds per scene, got {lengths[0]}")
    return Thresholds2025(scenes=scenes, path=str(path))


# dataset -> scene/cluster -> image -> centre (3,), insertion order = file order
Centres = dict[str, dict[str, dict[str, np.ndarray]]]


@dataclass(kw_only=True, frozen=True)
class _Cell:
    overlap: int
    maa: float
    reg: Registration | None  # None: one side is `outliers` (the official empty model)
    gt_size: int
    cluster_size: int


def score_centres(gt: Centres, sub: Centres, thresholds: Thresholds2025) -> CentreScoreReport:
    """Score validated in-memory centres (see :func:`score` for the file front end)."""
    lt = thresholds.n_thresholds - SKIP_TOP_THRESHOLDS
    datasets: dict[str, float] = {}
    dataset_details: dict[str, dict[str, Any]] = {}
    scenes: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for dataset, gt_scenes in gt.items():
        clusters = sub.get(dataset, {})
        names = list(clusters)
        chosen: list[tuple[str, int, _Cell | None]] = []  # (gt scene, cluster index, cell)
        for gt_scene, gt_images in gt_scenes.items():
            row = [_cell(dataset, gt_scene, gt_images, name, clusters[name], thresholds) for name in names]
            if not row:  # no submitted cluster at all (only possible for an empty dataset)
                chosen.append((gt_scene, -1, None))
                continue
            overlap = np.array([c.overlap for c in row], dtype=np.float64)
            maa = np.array([c.maa for c in row], dtype=np.float64)
            best = int(np.lexsort((-maa, -overlap))[0])
            chosen.append((gt_scene, best, row[best]))
        chosen = _drop_first_outliers(chosen)
        a = 0.0
        n_gt = 0
        n_overlap = 0
        n_cluster = 0
        quirk = []
        for gt_scene, j, cell in chosen:
            th, source = thresholds.for_scene(dataset, gt_scene)
            th_arr = np.asarray(th)
            name = f"{dataset}/{gt_scene}"
            cluster = names[j] if j >= 0 else None
            if cell is None or cell.reg is None:
                quirk.append(gt_scene)
                msg = (f"imc2025 row-order quirk: {name}: none of its {len(gt_scenes[gt_scene])} images is in a "
                       f"non-outlier cluster and the submission's first cluster is {OUTLIERS!r}, so (as in the "
                       "official code) the scene drops out of the mAA and clusterness denominators; the score can exceed 1")
                log.warning(msg)
                warnings.append(msg)
                registered = [0] * len(th)
            else:
                counts = cell.reg.registered(th_arr)
                a += float(np.sum(np.maximum(counts[SKIP_TOP_THRESHOLDS:] - TO_DEC, 0)))
                n_gt += cell.gt_size
                n_overlap += cell.overlap
                n_cluster += cell.cluster_size
                registered = counts.tolist()
            scenes[name] = cell.maa if cell is not None else 0.0
            details[name] = {
                "dataset": dataset,
                "scene": gt_scene,
                "cluster": cluster,
                "n_images": len(gt_scenes[gt_scene]),
                "overlap": cell.overlap if cell is not None else 0,
                "cluster_size": len(clusters[cluster]) if cluster is not None else 0,
                "mAA": scenes[name],
                "registered": registered,
                "thresholds_m": list(th),
                "threshold_source": source,
                "quirk": gt_scene in quirk,
            }
        b = max(0.0, lt * (n_gt - len(chosen) * TO_DEC))
        maa_score = 0.0 if b == 0 else a / b
        clusterness = 0.0 if n_cluster == 0 else n_overlap / n_cluster
        combined = 0.0 if maa_score + clusterness == 0 else 2 * maa_score * clusterness / (maa_score + clusterness)
        datasets[dataset] = combined
        dataset_details[dataset] = {
            "score": combined, "mAA": maa_score, "clusterness": clusterness,
            "n_clusters": sum(1 for c in names if c != OUTLIERS), "n_outliers_submitted": len(clusters.get(OUTLIERS, {})),
            "quirk_scenes": quirk,
        }
    overall = float(np.mean(list(datasets.values()))) if datasets else math.nan
    extra = {
        "overall_percent": 100.0 * overall,
        "mAA": float(np.mean([d["mAA"] for d in dataset_details.values()])) if datasets else math.nan,
        "clusterness": float(np.mean([d["clusterness"] for d in dataset_details.values()])) if datasets else math.nan,
    }
    return CentreScoreReport(
        metric="imc2025", overall=overall, datasets=datasets, scenes=scenes, details=details,
        dataset_details=dataset_details, extra=extra, warnings=warnings, thresholds_path=thresholds.path,
    )


def _cell(dataset: str, gt_scene: str, gt_images: dict[str, np.ndarray], cluster: str,
          user_images: dict[str, np.ndarray], thresholds: Thresholds2025) -> _Cell:
    if gt_scene == OUTLIERS or cluster == OUTLIERS:
        return _Cell(overlap=0, maa=0.0, reg=None, gt_size=0, cluster_size=0)
    th = np.asarray(thresholds.for_scene(dataset, gt_scene)[0])
    good = [k for k in gt_images if k in user_images]  # GT order
    u = np.array([user_images[k] for k in good], dtype=np.float64).reshape(-1, 3)
    g = np.array([gt_images[k] for k in good], dtype=np.float64).reshape(-1, 3)
    reg = register_cameras(u, g, th)
    m = len(gt_images)
    counts = reg.registered(th)[SKIP_TOP_THRESHOLDS:]
    numerator = float(np.sum(np.maximum(counts - TO_DEC, 0)))
    maa = 0.0 if numerator == 0 else numerator / (len(counts) * (m - TO_DEC))
    return _Cell(overlap=len(good), maa=maa, reg=reg, gt_size=m, cluster_size=len(user_images))


def _drop_first_outliers(chosen: list) -> list:
    for i, (gt_scene, _, _) in enumerate(chosen):
        if gt_scene == OUTLIERS:
            return chosen[:i] + chosen[i + 1 :]
    return chosen


def read_centres(path: str | Path, kind: CsvKind) -> tuple[Centres, list[CentreRow]]:
    rows = read_centre_rows(path, kind, KEY_COLUMNS, "image")
    seen: dict[tuple[str, str], CentreRow] = {}
    dup = []
    out: Centres = {}
    for r in rows:
        key = (r.fields["dataset"], r.fields["image"])
        if key in seen:
            dup.append(f"line {r.line}: image {key[1]!r} listed twice in dataset {key[0]!r} "
                       f"(first at line {seen[key].line}, scene {seen[key].fields['scene']!r})")
            continue
        seen[key] = r
        out.setdefault(r.fields["dataset"], {}).setdefault(r.fields["scene"], {})[r.fields["image"]] = r.centre
    if dup:
        raise kind.error(_format_problems(f"{path}: invalid {kind.value}", dup))
    return out, rows


def score(submission_csv: str | Path, labels_csv: str | Path, thresholds_path: str | Path | None = None) -> CentreScoreReport:
    thresholds = load_thresholds(thresholds_path)
    gt, gt_rows = read_centres(labels_csv, CsvKind.LABELS)
    bad_gt = [r for r in gt_rows if r.fields["scene"] != OUTLIERS and not r.registered]
    if bad_gt:
        raise LabelsError(f"{labels_csv}: non-finite GT pose outside the {OUTLIERS!r} scene: {list_lines(bad_gt, 'image')}")
    for dataset, scenes_ in gt.items():  # every labelled scene needs thresholds before any work
        for scene in scenes_:
            if scene != OUTLIERS:
                thresholds.for_scene(dataset, scene)
    sub, sub_rows = read_centres(submission_csv, CsvKind.SUBMISSION)
    problems, warnings = [], []
    for dataset, scenes_ in gt.items():
        gt_images = {img for imgs in scenes_.values() for img in imgs}
        sub_by_image = {r.fields["image"]: r for r in sub_rows if r.fields["dataset"] == dataset}
        missing = [img for imgs in scenes_.values() for img in imgs if img not in sub_by_image]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            problems.append(f"dataset {dataset!r}: {len(missing)} GT image(s) missing: {shown}")
        extra = [r for img, r in sub_by_image.items() if img not in gt_images]
        if extra:
            problems.append(f"dataset {dataset!r}: image(s) not in this GT dataset: {list_lines(extra, 'image')}")
    unknown = [d for d in sub if d not in gt]
    for d in unknown:
        rows = [r for r in sub_rows if r.fields["dataset"] == d]
        warnings.append(f"dataset {d!r} is not in the labels: ignored its {len(rows)} row(s): {list_lines(rows, 'image')}")
    if problems:
        raise SubmissionError(_format_problems(f"{submission_csv}: submission cannot be scored", problems))
    report = score_centres(gt, {d: sub[d] for d in gt}, thresholds)
    report.warnings = warnings + report.warnings
    return report
