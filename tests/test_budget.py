"""The run's time budget: scenes skipped with identity rows when it is used up, fallback settings
applied when it runs short, the mapper capped by the time left (never above its configured cap)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from imc.config import load_config
from imc.pipeline import run

from .conftest import tiny_overrides

IDENTITY_R = "1.0;0.0;0.0;0.0;1.0;0.0;0.0;0.0;1.0"


@pytest.fixture
def two_scene_root(tmp_path: Path, kyiv_images: list[Path]) -> Path:
    """urban/big (2 photos, 1 pair) and urban/small (1 photo): largest-first runs big first."""
    root = tmp_path / "data"
    for scene, images in (("big", kyiv_images[:2]), ("small", kyiv_images[2:3])):
        (root / "urban" / scene / "images").mkdir(parents=True)
        for p in images:
            shutil.copy(p, root / "urban" / scene / "images" / p.name)
    return root


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stage_config(report, output_key: str) -> dict:
    return json.loads(Path(report.paths[output_key] + ".config.json").read_text())


def run_info(report) -> dict:
    return json.loads((Path(report.paths["sfm"]) / "run.json").read_text())


def test_used_up_budget_skips_the_remaining_scenes_with_identity_rows(tmp_path, two_scene_root):
    conf = load_config(None, tiny_overrides(two_scene_root, tmp_path) + ["budget.seconds=0.000001"])
    result = run(conf)
    reports = {r.scene: r for r in result.reports}
    assert [r.scene for r in result.reports] == ["big", "small"]  # largest first
    assert all(r.status == "skipped_budget" and "budget" in r.error for r in reports.values())
    saved = json.loads((result.output / "scenes" / "urban" / "small" / "report.json").read_text())
    assert saved["status"] == "skipped_budget"
    rows = read_rows(result.submission)
    listed = sorted(p.relative_to(two_scene_root).as_posix() for p in two_scene_root.rglob("*.jpg"))
    assert sorted(r["image_path"] for r in rows) == listed  # complete
    assert all(r["rotation_matrix"] == IDENTITY_R and r["translation_vector"] == "0.0;0.0;0.0" for r in rows)


def test_budget_cap_is_recorded_beside_the_model_never_in_a_fingerprint(tmp_path, two_scene_root):
    """The mapper of a budgeted scene is capped by its share of the time left; the cap is recorded in
    sfm-*/run.json, never in the config or the fingerprint (the caches stay reusable without a budget)."""
    budgeted = run(load_config(None, tiny_overrides(two_scene_root, tmp_path) + ["budget.seconds=3600",
                                                                                 "data.scenes=[urban/big]"]))
    (report,) = budgeted.reports
    assert report.status == "ok"
    assert stage_config(report, "sfm")["sfm"]["max_runtime_seconds"] is None
    assert 0 < run_info(report)["cap_s"] <= 3600
    free = run(load_config(None, tiny_overrides(two_scene_root, tmp_path) + [f"output={tmp_path / 'free'}",
                                                                             "data.scenes=[urban/big]"]))
    assert free.reports[0].fingerprints == report.fingerprints


def test_short_budget_applies_fallback_overrides(tmp_path, two_scene_root):
    overrides = tiny_overrides(two_scene_root, tmp_path) + [
        "data.scenes=[urban/small]", "budget.seconds=3600", "budget.fallback_when_left_fraction=1.0",
        "budget.fallback_overrides=[features.aliked.max_num_keypoints=128]", "sfm.max_runtime_seconds=20"]
    result = run(load_config(None, overrides))
    (report,) = result.reports
    assert report.overrides == ["features.aliked.max_num_keypoints=128"]
    assert report.status == "ok"
    assert stage_config(report, "features:aliked")["features.aliked"]["max_num_keypoints"] == 128  # the fallback ran
    # the configured 20 s cap is kept: the time left (about 3600 s) is larger
    assert stage_config(report, "sfm")["sfm"]["max_runtime_seconds"] == 20 and run_info(report)["cap_s"] == 20
    assert len(read_rows(result.submission)) == 1


def test_no_budget_no_overrides(tmp_path, two_scene_root):
    result = run(load_config(None, tiny_overrides(two_scene_root, tmp_path) + ["data.scenes=[urban/small]"]))
    (report,) = result.reports
    assert report.overrides == [] and report.status == "ok"
    assert stage_config(report, "sfm")["sfm"]["max_runtime_seconds"] is None and run_info(report)["cap_s"] is None
