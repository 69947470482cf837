"""Static exports of a run: ``python -m imc viz --run RUN [--scene dataset/scene] [--out DIR] [--pairs N]``.

Per scene, into ``RUN/viz/<dataset>/<scene>/`` by default:
``matches_<rank>_<image0>__<image1>.png`` for the top pairs by verified inliers (matches rejected by
verification in red, grey where a pair was never verified, inliers in green), ``keypoints_<image>.png``
for the first image, and ``model.html``: the sparse model with camera frusta, self-contained
(plotly.js inlined, opens offline), ground-truth cameras overlaid when ``--labels`` is given (or the
run's ``<data.root>/train_labels.csv`` exists).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io_utils import atomic_path
from . import data, figures

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ExportResult:
    scene: str
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what could not be drawn, and why


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)


def _write_png(png: bytes, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return path


def export_scene(run: data.RunInfo, scene: data.SceneInfo, out_dir: Path, *, n_pairs: int = 5,
                 labels: Path | None = None) -> ExportResult:
    """Write the match PNGs, a keypoints PNG and the model HTML of one scene; report what was skipped."""
    result = ExportResult(scene=scene.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        pairs = data.pair_table(scene)
    except data.ViewerDataError as exc:
        pairs = pd.DataFrame()
        result.skipped.append(f"matches: {exc}")
    top = pairs[pairs["matches"].fillna(0) > 0].head(n_pairs) if not pairs.empty else pairs
    for rank, row in enumerate(top.itertuples(), start=1):
        try:
            pair = data.load_pair(scene, row.image0, row.image1)
        except data.ViewerDataError as exc:
            result.skipped.append(f"pair {row.image0} - {row.image1}: {exc}")
            continue
        im0 = data.load_display_image(run, row.image0, pair.image_size0)
        im1 = data.load_display_image(run, row.image1, pair.image_size1)
        png = figures.figure_png(figures.matches_figure(im0, im1, pair))
        name = f"matches_{rank:02d}_{_safe(row.image0)}__{_safe(row.image1)}.png"
        result.files.append(_write_png(png, out_dir / name))
    images = data.feature_images(scene)
    if images:
        kps = data.load_keypoints(scene, images[0])
        image = data.load_display_image(run, images[0], kps.image_size)
        png = figures.figure_png(figures.keypoints_figure(image, kps))
        result.files.append(_write_png(png, out_dir / f"keypoints_{_safe(images[0])}.png"))
    else:
        result.skipped.append("keypoints: no features file or no image in it")
    sfm = scene.path("sfm")
    models = data.load_models(sfm) if sfm is not None else []
    if models:
        gt = data.load_gt_poses(labels, scene.name) if labels is not None else {}
        view = figures.align_models(models, gt)
        result.skipped += view.notes
        html = out_dir / "model.html"
        figures.write_model_html(figures.model_figure(view), html)
        result.files.append(html)
    else:
        result.skipped.append(f"3D model: no reconstruction ({scene.paths.get('sfm', 'not in the report')})")
    return result


def export_run(run_dir: str | Path, *, scene: str | None = None, out: str | Path | None = None, n_pairs: int = 5,
               labels: str | Path | None = None) -> list[ExportResult]:
    run = data.load_run(run_dir)
    for problem in run.problems:
        log.warning("%s", problem)
    scenes = [run.scene(scene)] if scene else [s for s in run.scenes if s.paths]
    if not scenes:
        raise data.ViewerDataError(f"no scene of {run.root} has stage outputs yet: nothing to export")
    labels_path = Path(labels) if labels else data.default_labels(run)
    out_root = Path(out) if out else run.root / "viz"
    return [export_scene(run, s, out_root / s.dataset / s.scene, n_pairs=n_pairs, labels=labels_path)
            for s in scenes]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m imc viz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder (the `output=` of `python -m imc run`)")
    parser.add_argument("--scene", default=None, help="only this dataset/scene (default: all)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/viz)")
    parser.add_argument("--pairs", type=int, default=5, help="number of top pairs (by inliers) to draw")
    parser.add_argument("--labels", default=None, help="labels CSV for ground-truth cameras in model.html")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from eval.submission import LabelsError

    try:
        results = export_run(args.run, scene=args.scene, out=args.out, n_pairs=args.pairs, labels=args.labels)
    except (data.ViewerDataError, LabelsError) as exc:
        print(f"viz: {exc}", file=sys.stderr)
        return 2
    for r in results:
        for f in r.files:
            print(f)
        for s in r.skipped:
            print(f"{r.scene}: {s}", file=sys.stderr)
    return 0 if any(r.files for r in results) else 1
