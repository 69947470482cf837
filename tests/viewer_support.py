"""A tiny real run for the viewer tests: 4 overlapping kyiv photos at 320 px, 512 keypoints, labels and score.json.

Built once per pytest session by the ``viewer_run`` fixture of ``conftest.py``.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import KYIV, SHARED

SCENE = "urban/kyiv-puppet-theater"
# Four photos that overlap pairwise (the first photo of the scene matches nothing at this size).
IMAGES = ("IMG_20220127_165418.jpg", "IMG_20220127_165549.jpg", "IMG_20220127_165608.jpg",
          "IMG_20220127_165612.jpg")
LABELS = SHARED / "data" / "real" / "imc2023" / "train" / "train_labels.csv"


@dataclass(kw_only=True)
class ViewerRun:
    run: Path  # the run folder (output=)
    labels: Path  # labels of the 4 images
    data_root: Path
    cache: Path


def build_viewer_run(base: Path) -> ViewerRun:
    from eval.score import score
    from imc.config import load_config
    from imc.io_utils import atomic_write_json
    from imc.pipeline import run

    done = ViewerRun(run=base / "run", labels=base / "labels.csv", data_root=base / "data", cache=base / "cache")
    missing = [name for name in IMAGES if not (KYIV / name).is_file()]
    if missing or not LABELS.is_file():
        pytest.skip(f"real kyiv images or labels not found under {SHARED} (../shared missing): {missing}")
    images = done.data_root / SCENE / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        shutil.copy(KYIV / name, images / name)
    wanted = {f"{SCENE}/images/{name}" for name in IMAGES}
    with open(LABELS, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image_path"] in wanted]
    with open(done.labels, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    conf = load_config(None, [f"data.root={done.data_root}", f"output={done.run}", f"cache_dir={done.cache}",
                              "progress=false", "features.aliked.resize_max=320", "features.aliked.max_num_keypoints=512"])
    result = run(conf)
    if result.reports[0].n_registered < 3:
        raise RuntimeError(f"the viewer's test run registered too few images: {result.reports[0]}")
    atomic_write_json(done.run / "score.json", score(result.submission, done.labels).to_dict())
    return done


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
