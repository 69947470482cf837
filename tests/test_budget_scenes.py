"""Silent zeros of the time budget and the GPU: one slow scene starving the others, a scene cut short
by its cap, a CUDA out-of-memory error at extraction; scenes split over worker processes.

The extractors are ``tests/budget_extractors.py`` (toy corners: no network, so these run fast on CPU)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest

from imc.config import load_config
from imc.h5io import ResumableH5
from imc.pipeline import run

REPO = Path(__file__).resolve().parents[1]
BOXES = REPO / "imc" / "demo_data" / "demo" / "boxes" / "images"
PLUGIN = ["plugins=[tests.budget_extractors]"]


def scene_dir(root: Path, scene: str, n: int, scale: float = 1.0) -> None:
    out = root / "demo" / scene / "images"
    out.mkdir(parents=True)
    for p in sorted(BOXES.glob("*.jpg"))[:n]:
        if scale == 1.0:
            shutil.copy(p, out / p.name)
        else:
            img = cv2.imread(str(p))
            cv2.imwrite(str(out / p.name), cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))


def base(ext: str, root: Path, tmp: Path, name: str = "run") -> list[str]:
    return PLUGIN + [f"features.extractors=[{ext}]", f"matching.{ext}.matcher=nearest_neighbour",
                     f"data.root={root}", f"output={tmp / name}", f"cache_dir={tmp / 'cache'}", "progress=false",
                     "torch_threads=1"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def registered(path: Path, scene: str) -> int:
    return sum(r["scene"] == scene and r["translation_vector"] != "0.0;0.0;0.0" for r in rows(path))


def test_slow_scene_falls_back_and_leaves_time_for_the_next(tmp_path):
    """`big` (9 photos of 2560 px, 5 s each at full size: 44 s) runs first in a 30 s budget. Before, it used
    the whole budget and `small` got identity rows; now its cap is its share of the images (18 s), extraction
    sees it will not fit, the scene reruns on the fallback (320 px), and `small` is mapped."""
    root = tmp_path / "data"
    scene_dir(root, "big", 9, scale=4.0)
    scene_dir(root, "small", 6)
    conf = load_config(None, base("slow_toy", root, tmp_path) + [
        "features.slow_toy.resize_max=2560", "features.slow_toy.seconds_per_mpix=1.0", "budget.seconds=30",
        "budget.fallback_overrides=[features.slow_toy.resize_max=320]"])
    result = run(conf)
    reports = {r.scene: r for r in result.reports}
    assert [r.scene for r in result.reports] == ["big", "small"]
    big, small = reports["big"], reports["small"]
    assert big.status == "ok" and big.overrides == ["features.slow_toy.resize_max=320"], big
    assert any("features" in b and "rerun" in b for b in big.budget), big.budget
    assert small.status == "ok", small
    assert registered(result.submission, "small") >= 3, small
    assert result.seconds < 40
    # the full-size images extracted before the fallback stay in their own cache, resumed by a run with time
    full = {p.name.removesuffix(".parts") for p in (tmp_path / "cache" / "demo" / "big").glob("features-slow_toy-r2560-*")
            if p.name.endswith((".h5", ".h5.parts"))}
    assert len(full) == 1 and 1 <= len(ResumableH5(tmp_path / "cache" / "demo" / "big" / full.pop())) < 9


def test_scene_over_its_cap_keeps_what_was_mapped_and_is_not_reused(tmp_path):
    """No fallback left: extraction stops at its share of the cap, the mapper maps the images extracted
    (poses, not identity rows for all), run.json says partial, and a run with no budget redoes it all."""
    root = tmp_path / "data"
    scene_dir(root, "boxes", 9)
    opts = base("slow_toy", root, tmp_path) + ["features.slow_toy.seconds_per_mpix=3.0"]  # 0.9 s per image
    result = run(load_config(None, opts + ["budget.seconds=12"]))
    (report,) = result.reports
    assert report.status == "ok", report
    assert any(b.startswith("cut short: features") for b in report.budget), report.budget
    n_features = len(ResumableH5(report.paths["features:slow_toy"]))
    assert 3 <= n_features < 9
    assert 3 <= report.n_registered <= n_features and registered(result.submission, "boxes") == report.n_registered
    info = json.loads((Path(report.paths["sfm"]) / "run.json").read_text())
    assert info["partial"] and "features" in info["partial"][0]

    free = run(load_config(None, opts + [f"output={tmp_path / 'free'}"]))
    (again,) = free.reports
    assert again.fingerprints == report.fingerprints  # the budget never enters a fingerprint
    assert len(ResumableH5(again.paths["features:slow_toy"])) == 9 and again.budget == []
    assert "partial" not in json.loads((Path(again.paths["sfm"]) / "run.json").read_text())
    assert again.n_registered >= report.n_registered


def test_cuda_out_of_memory_at_extraction_retries_smaller_then_cpu(tmp_path):
    """The first image runs out of CUDA memory twice (full size, then half): it is extracted on the CPU,
    recorded as such, never cached as the image's error; the scene is mapped. Before, the scene failed."""
    root = tmp_path / "data"
    scene_dir(root, "boxes", 6)
    from tests import budget_extractors

    budget_extractors.OOM_CALLS["n"] = 0
    result = run(load_config(None, base("oom_toy", root, tmp_path) + ["features.oom_toy.oom_calls=2"]))
    (report,) = result.reports
    assert report.status == "ok", report
    store = ResumableH5(report.paths["features:oom_toy"])
    attrs = {k: store.attrs(k) for k in store.keys()}
    assert all(a["error"] == "" and a["num_keypoints"] > 0 for a in attrs.values()), attrs
    assert sorted(a.get("oom_fallback", "") for a in attrs.values()) == [""] * 5 + ["cpu"]
    assert report.n_registered >= 3

    budget_extractors.OOM_CALLS["n"] = 0
    result = run(load_config(None, base("oom_toy", root, tmp_path, "half") + ["features.oom_toy.oom_calls=1",
                                                                          f"cache_dir={tmp_path / 'c2'}"]))
    store = ResumableH5(result.reports[0].paths["features:oom_toy"])
    assert sorted(store.attrs(k).get("oom_fallback", "") for k in store.keys()) == [""] * 5 + ["resize_max=320"]


@pytest.mark.slow
def test_two_worker_processes_write_the_same_csv(tmp_path):
    """`runtime.workers=2` (two CPU processes here; one per GPU with `auto` on a T4 x2) splits the scenes
    and writes the CSV of one process, byte for byte."""
    root = tmp_path / "data"
    scene_dir(root, "a", 5)
    scene_dir(root, "b", 4)
    one = run(load_config(None, base("toy", root, tmp_path, "one") + ["plugins=[tests.toy_extractor]"]))
    two = run(load_config(None, base("toy", root, tmp_path, "two") + [
        "plugins=[tests.toy_extractor]", "runtime.workers=2", f"cache_dir={tmp_path / 'cache2'}"]))
    assert [r.status for r in two.reports] == ["ok", "ok"]
    assert json.loads((two.output / "summary.json").read_text())["workers"] == ["cpu", "cpu"]
    assert two.submission.read_bytes() == one.submission.read_bytes()
    assert registered(one.submission, "a") >= 3
