"""Score a submission CSV against labels: ``python -m eval score [--metric imc2023|imc2024|imc2025]``.

``imc2023`` (the default) is implemented here; ``imc2024`` and ``imc2025`` (camera-centre metrics)
live in :mod:`eval.imc2024` and :mod:`eval.imc2025` and are dispatched through :data:`METRICS`.

scene mAA = mean accuracy over the scene's threshold pairs (:mod:`eval.metric`); dataset mAA = mean
of its scenes; overall = mean of the datasets. Thresholds come from ``configs/thresholds.yaml``
(:mod:`eval.thresholds`). Ground-truth translations are used as labelled (IMC 2023's are metric;
see :mod:`eval.thresholds` for the optional per-scene ``gt_translation_scale``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from eval.metric import accuracy_curves, pair_errors
from eval.submission import (
    LabelsError,
    ScenePoses,
    SubmissionError,
    SubmissionWarning,
    read_labels,
    read_submission,
)
from eval.thresholds import Thresholds, ThresholdsError, load_thresholds

EXIT_BAD_INPUT = 2
DEFAULT_METRIC = "imc2023"
# metric -> "module:function" scoring (submission, labels, thresholds_path) -> report; imported on use.
METRICS: dict[str, str] = {
    "imc2023": "eval.score:score",
    "imc2024": "eval.imc2024:score",
    "imc2025": "eval.imc2025:score",
}


def metric_function(name: str):
    """The scoring function of metric ``name`` (see :data:`METRICS`)."""
    import importlib

    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    module, func = METRICS[name].split(":")
    return getattr(importlib.import_module(module), func)


@dataclass(kw_only=True)
class SceneScore:
    dataset: str
    scene: str
    maa: float
    maa_q: float  # rotation-only mAA
    maa_t: float  # translation-only mAA
    n_images: int
    n_registered: int  # predicted pose is not exactly (identity R, zero t)
    n_pairs: int
    median_err_R_deg: float
    median_err_t_m: float
    acc: list[float]
    acc_q: list[float]
    acc_t: list[float]
    thresholds_R_deg: list[float]
    thresholds_t_m: list[float]
    gt_translation_scale: float
    reference_distance_m: float | None = None  # mean GT camera distance, when translation thresholds are relative
    err_R_deg: np.ndarray = field(repr=False)  # per pair (label order, i < j); not in the JSON
    err_t_m: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "scene": self.scene,
            "mAA": self.maa,
            "mAA_q": self.maa_q,
            "mAA_t": self.maa_t,
            "n_images": self.n_images,
            "n_registered": self.n_registered,
            "n_pairs": self.n_pairs,
            "median_err_R_deg": self.median_err_R_deg,
            "median_err_t_m": self.median_err_t_m,
            "acc": self.acc,
            "acc_q": self.acc_q,
            "acc_t": self.acc_t,
            "thresholds_R_deg": self.thresholds_R_deg,
            "thresholds_t_m": self.thresholds_t_m,
            "gt_translation_scale": self.gt_translation_scale,
            "reference_distance_m": self.reference_distance_m,
        }


@dataclass(kw_only=True)
class ScoreReport:
    overall: float
    datasets: dict[str, float]
    scenes: dict[str, SceneScore]  # keyed "dataset/scene", label order
    warnings: list[str] = field(default_factory=list)
    thresholds_path: str = ""

    def to_dict(self) -> dict:
        return {
            "overall": self.overall,
            "datasets": dict(self.datasets),
            "scenes": {name: s.maa for name, s in self.scenes.items()},
            "details": {name: s.to_dict() for name, s in self.scenes.items()},
            "warnings": list(self.warnings),
            "thresholds_path": self.thresholds_path,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def format_table(self) -> str:
        header = (
            f"{'dataset/scene':<34} {'images':>6} {'reg':>5} {'pairs':>6} "
            f"{'mAA':>7} {'mAA_q':>7} {'mAA_t':>7} {'med_eR°':>8} {'med_et':>8}"
        )
        lines = [header, "-" * len(header)]
        for dataset, maa in self.datasets.items():
            for s in (s for s in self.scenes.values() if s.dataset == dataset):
                lines.append(
                    f"{s.name:<34} {s.n_images:>6} {s.n_registered:>5} {s.n_pairs:>6} "
                    f"{s.maa:>7.4f} {s.maa_q:>7.4f} {s.maa_t:>7.4f} "
                    f"{s.median_err_R_deg:>8.3f} {s.median_err_t_m:>8.3f}"
                )
            lines.append(f"{dataset + ' (mean)':<34} {'':>6} {'':>5} {'':>6} {maa:>7.4f}")
        lines.append("-" * len(header))
        lines.append(f"{'overall':<34} {'':>6} {'':>5} {'':>6} {self.overall:>7.4f}")
        return "\n".join(lines)


def score(
    submission_csv: str | Path,
    labels_csv: str | Path,
    thresholds_path: str | Path | None = None,
    *,
    thresholds: Thresholds | None = None,
    scenes: Sequence[str] | None = None,
) -> ScoreReport:
    """Score ``submission_csv`` against ``labels_csv``.

    ``thresholds`` (already loaded) takes precedence over ``thresholds_path`` (default: the repo's
    ``configs/thresholds.yaml``). ``scenes`` restricts scoring to these ``dataset/scene`` names.
    Raises :class:`SubmissionError` / :class:`LabelsError` / :class:`ThresholdsError` on bad input;
    ignored submission rows are reported as :class:`SubmissionWarning` and in ``report.warnings``.
    """
    if thresholds is None:
        thresholds = load_thresholds(thresholds_path)
    labels = read_labels(labels_csv)
    submission = read_submission(submission_csv, labels, scenes=list(scenes) if scenes is not None else None)
    for message in submission.warnings:
        warnings.warn(message, SubmissionWarning, stacklevel=2)
    report = score_poses(
        {key: labels[key] for key in submission.scenes}, submission.scenes, thresholds
    )
    report.warnings = list(submission.warnings)
    return report


def score_poses(
    gt: dict[str, ScenePoses], pred: dict[str, ScenePoses], thresholds: Thresholds
) -> ScoreReport:
    """Score aligned in-memory poses (``pred[k]`` in the same image order as ``gt[k]``)."""
    scene_scores: dict[str, SceneScore] = {}
    for key, g in gt.items():
        p = pred[key]
        if p.image_paths != g.image_paths:
            raise ValueError(f"scene {key}: predicted images are not aligned with the labels")
        scene_scores[key] = score_scene(g, p, thresholds)
    by_dataset: dict[str, list[float]] = {}
    for s in scene_scores.values():
        by_dataset.setdefault(s.dataset, []).append(s.maa)
    datasets = {d: float(np.mean(v)) for d, v in by_dataset.items()}
    overall = float(np.mean(list(datasets.values()))) if datasets else float("nan")
    return ScoreReport(
        overall=overall, datasets=datasets, scenes=scene_scores, thresholds_path=thresholds.path
    )


def score_scene(gt: ScenePoses, pred: ScenePoses, thresholds: Thresholds) -> SceneScore:
    th = thresholds.for_scene(gt.dataset, gt.scene)
    gt_t = gt.t * th.gt_translation_scale
    th = th.resolve(gt.R, gt_t, scene=gt.key)  # relative translation thresholds -> metres of this scene
    err_R, err_t = pair_errors(gt.R, gt_t, pred.R, pred.t)
    curves = accuracy_curves(err_R, err_t, th.rotation_deg, th.translation_m)
    unregistered = np.all(pred.R == np.eye(3), axis=(1, 2)) & np.all(pred.t == 0, axis=1)
    return SceneScore(
        dataset=gt.dataset,
        scene=gt.scene,
        maa=curves.maa,
        maa_q=curves.maa_q,
        maa_t=curves.maa_t,
        n_images=len(gt.image_paths),
        n_registered=int(np.count_nonzero(~unregistered)),
        n_pairs=len(err_R),
        median_err_R_deg=float(np.median(err_R)),
        median_err_t_m=float(np.median(err_t)),
        acc=curves.acc.tolist(),
        acc_q=curves.acc_q.tolist(),
        acc_t=curves.acc_t.tolist(),
        thresholds_R_deg=list(th.rotation_deg),
        thresholds_t_m=list(th.translation_m),
        gt_translation_scale=th.gt_translation_scale,
        reference_distance_m=th.reference_distance_m,
        err_R_deg=err_R,
        err_t_m=err_t,
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eval score",
        description="Score a submission CSV against labels: IMC 2023 pairwise-pose mAA (default), or the "
        "IMC 2024 / IMC 2025 camera-centre metrics.",
    )
    parser.add_argument("--metric", choices=list(METRICS), default=DEFAULT_METRIC,
                        help="imc2023 (default), imc2024 (per-dataset centre mAA) or imc2025 (clusters + centres)")
    parser.add_argument("--submission", required=True, type=Path, help="submission CSV")
    parser.add_argument("--labels", required=True, type=Path, help="labels CSV (Kaggle train_labels format)")
    parser.add_argument("--thresholds", type=Path, default=None, help="thresholds file (default: configs/thresholds.yaml; imc2024: configs/thresholds_imc2024.yaml; "
                        "imc2025: configs/thresholds_imc2025.csv, Kaggle's train_thresholds.csv format)")
    parser.add_argument("--scenes", default=None, help="comma-separated dataset/scene names to score (default: all labelled)")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="write per-scene error plots (PNG) into this folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.metric != DEFAULT_METRIC:
        return _main_centres(args)
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()] if args.scenes else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SubmissionWarning)  # printed below from report.warnings
            report = score(args.submission, args.labels, args.thresholds, scenes=scenes)
    except (SubmissionError, LabelsError, ThresholdsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for message in report.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(report.format_table())
    if args.json is not None:
        from imc.io_utils import atomic_write_text

        atomic_write_text(args.json, report.to_json() + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        from eval.plots import plot_error_distributions

        paths = plot_error_distributions(report, args.plot)
        print(f"wrote {len(paths)} plot(s) to {args.plot}")
    return 0


def _main_centres(args: argparse.Namespace) -> int:
    """``--metric imc2024|imc2025``: score, print the table, write the JSON."""
    if args.scenes or args.plot:
        print(f"error: --scenes and --plot apply to imc2023 only, not {args.metric}", file=sys.stderr)
        return EXIT_BAD_INPUT
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        report = metric_function(args.metric)(args.submission, args.labels, args.thresholds)
    except (SubmissionError, LabelsError, ThresholdsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for message in report.warnings:
        if "quirk" not in message:  # the quirk is already logged by the metric
            print(f"warning: {message}", file=sys.stderr)
    print(report.format_table())
    if args.json is not None:
        from imc.io_utils import atomic_write_text

        atomic_write_text(args.json, report.to_json() + "\n")
        print(f"wrote {args.json}")
    return 0
