"""The pipeline end to end on 4 real photos: complete CSV, caches reused, downstream-only recompute."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from imc.config import ConfigError, load_config
from imc.pipeline import run
from imc.reconstruct import Pose
from imc.scenes import Scene
from imc.csv_writer import HEADER, main as write_submission

from .conftest import tiny_overrides


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_complete_with_unregistered_and_nan(tmp_path):
    scene = Scene(dataset="d", scene="s", root=tmp_path, image_paths=["d/s/images/a.jpg", "d/s/images/b.jpg",
                                                                      "d/s/images/c.jpg"])
    poses = {"d/s/images/a.jpg": Pose(R=np.eye(3)[[1, 0, 2]] * [[1], [1], [-1]], t=np.array([1.0, 2, 3]), model=0),
             "d/s/images/b.jpg": Pose(R=np.full((3, 3), np.nan), t=np.zeros(3), model=0)}
    other = Scene(dataset="d", scene="never-run", root=tmp_path, image_paths=["d/never-run/images/x.jpg"])
    rows = read_csv(write_submission([scene, other], {"d/s": poses}, tmp_path / "sub.csv"))
    assert [r["image_path"] for r in rows] == scene.image_paths + other.image_paths
    assert list(rows[0]) == HEADER
    assert rows[0]["translation_vector"] == "1.0;2.0;3.0"
    for r in rows[1:]:  # NaN pose, unregistered image, scene never processed: identity / zero
        assert r["rotation_matrix"] == "1.0;0.0;0.0;0.0;1.0;0.0;0.0;0.0;1.0"
        assert r["translation_vector"] == "0.0;0.0;0.0"
    assert "nan" not in (tmp_path / "sub.csv").read_text().lower()


@pytest.mark.slow
def test_run_reuses_caches_and_recomputes_downstream_only(tmp_path, tiny_scene_root, caplog):
    overrides = tiny_overrides(tiny_scene_root, tmp_path)
    first = run(load_config(None, overrides))
    report = first.reports[0]
    assert report.status == "ok" and report.n_images == 4
    assert report.n_registered >= 3, report
    rows = read_csv(first.submission)
    assert len(rows) == 4 and all(len(r["rotation_matrix"].split(";")) == 9 for r in rows)
    summary = json.loads((first.output / "summary.json").read_text())
    assert summary["scenes"][0]["paths"]["features:aliked"].endswith(".h5")
    assert (first.output / "scenes" / "middlebury" / "temple" / "log.txt").read_text().count("registered") >= 1

    caplog.set_level("INFO", logger="imc")
    caplog.clear()
    second = run(load_config(None, overrides))
    assert "features: 0/4 images to extract" in caplog.text and "matches: 0 pairs to match" in caplog.text
    feat_match = lambda r: r.seconds["features"] + r.seconds["matches"]  # noqa: E731
    assert feat_match(second.reports[0]) < 0.1 * feat_match(report)
    assert read_csv(second.submission) == rows

    caplog.clear()
    with pytest.raises(ConfigError, match="another config"):
        run(load_config(None, overrides + ["features.aliked.max_num_keypoints=256"]))
    third = run(load_config(None, overrides + ["features.aliked.max_num_keypoints=256", f"output={tmp_path / 'run2'}"]))
    assert "features: 4/4 images to extract" in caplog.text and "matches: 6 pairs to match" in caplog.text
    assert third.reports[0].paths["pairs"] == report.paths["pairs"]  # pairs reused
    assert third.reports[0].paths["features:aliked"] != report.paths["features:aliked"]


def test_missing_listed_image_still_gets_a_row(tmp_path, tiny_scene_root):
    sub = tmp_path / "sample_submission.csv"
    listed = sorted(p.relative_to(tiny_scene_root).as_posix() for p in tiny_scene_root.rglob("*.png"))[:2]
    with open(sub, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "dataset", "scene"])
        for p in listed + ["middlebury/temple/images/does-not-exist.jpg"]:
            w.writerow([p, "middlebury", "temple"])
    result = run(load_config(None, tiny_overrides(tiny_scene_root, tmp_path) + [f"data.sample_submission={sub}"]))
    rows = read_csv(result.submission)
    assert [r["image_path"] for r in rows] == listed + ["middlebury/temple/images/does-not-exist.jpg"]
    reasons = {f["image_path"]: f["reason"] for f in result.reports[0].fallbacks}
    assert "not found" in reasons["middlebury/temple/images/does-not-exist.jpg"]
    shutil.rmtree(tmp_path / "cache")
