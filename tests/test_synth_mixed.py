"""``eval synth --preset mixed``: one dataset folder, 2 scenes + 5 outliers, 2025 labels that score 1 against themselves."""

from __future__ import annotations

import csv

import pytest

from eval.__main__ import main as eval_main
from eval.imc2025 import score

pytestmark = pytest.mark.slow


def test_mixed_preset_renders_one_folder_with_2025_labels(tmp_path):
    assert eval_main(["synth", "--preset", "mixed", "--out", str(tmp_path), "--seed", "1"]) == 0
    rows = list(csv.DictReader((tmp_path / "train_labels.csv").open()))
    assert list(rows[0]) == ["image_id", "dataset", "scene", "image", "rotation_matrix", "translation_vector"]
    scenes = [r["scene"] for r in rows]
    assert scenes.count("boxes") == 10 and scenes.count("courtyard") == 10 and scenes.count("outliers") == 5
    assert {r["dataset"] for r in rows} == {"mixed-synth"}
    assert sorted(p.name for p in (tmp_path / "mixed-synth").iterdir()) == sorted(r["image"] for r in rows)
    assert all(r["rotation_matrix"].startswith("nan") for r in rows if r["scene"] == "outliers")
    labels = tmp_path / "train_labels.csv"
    report = score(labels, labels, tmp_path / "train_thresholds.csv")
    assert report.overall == pytest.approx(1.0)
    # the sample submission (everything in `outliers`) scores 0
    assert score(tmp_path / "sample_submission.csv", labels, tmp_path / "train_thresholds.csv").overall == 0.0
