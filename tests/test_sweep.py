"""Sweeps: file validation, grid expansion, an end-to-end smoke sweep, resume, cache reuse, Ray."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from imc.sweeps.cli import main as sweep_main
from imc.sweeps.cli import plan, run_sweep
from imc.sweeps.executors import Backend
from imc.sweeps.spec import SweepError, expand_points, grid_cells, load_sweep
from imc.sweeps.tasks import RESULT_FILE, link_producers, load_result

from .conftest import DEMO, REPO

SMOKE = REPO / "configs" / "sweeps" / "smoke.yaml"
DEMO_LABELS = DEMO / "train_labels.csv"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # sweep files name data relative to the repository root


def write_sweep(tmp_path: Path, body: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"base_config: {REPO / 'configs' / 'demo.yaml'}\noutput_dir: {tmp_path / 'out'}\n" + body)
    return path


SCENES = f"scenes:\n  real:\n    - {{name: demo, root: {DEMO}, labels: {DEMO_LABELS}}}\n"


# ------------------------------------------------------------------------------------------ parsing
def test_grid_cells_cartesian_first_key_slowest():
    cells = grid_cells({"a": [1, 2, 3], "b": ["x", "y"]})
    assert len(cells) == 6
    assert cells[:3] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}]
    assert grid_cells({}) == [{}]


def test_grid_and_variants_expand_to_named_points(tmp_path):
    spec_path = write_sweep(tmp_path, SCENES + """
grid:
  features.aliked.max_num_keypoints: [1024, 2048, 4096]
  sfm.min_model_size: [3, 10]
variants:
  - {name: base, overrides: []}
  - {name: two, overrides: [sfm.max_num_models=2]}
""")
    spec = load_sweep(spec_path)
    tasks = plan(spec)
    assert len(tasks) == 2 * 3 * 2
    names = [t.point for t in tasks]
    assert names[0] == "base__max_num_keypoints-1024__min_model_size-3"
    assert names[-1] == "two__max_num_keypoints-4096__min_model_size-10"
    assert len(set(names)) == len(names)
    assert spec.swept_keys == ["features.aliked.max_num_keypoints", "sfm.min_model_size", "sfm.max_num_models"]
    last = tasks[-1]
    assert last.conf["features"]["aliked"]["max_num_keypoints"] == 4096 and last.conf["sfm"]["max_num_models"] == 2
    assert last.params == {"features.aliked.max_num_keypoints": 4096, "sfm.min_model_size": 10, "sfm.max_num_models": 2}
    assert last.conf["data"]["scenes"] == ["demo/boxes", "demo/courtyard"]
    assert last.conf["cache_dir"] == str((tmp_path / "out" / "cache").resolve())
    assert last.conf["progress"] is False
    # cache producers: points differing only in sfm.* depend on the first point with their features
    link_producers(tasks)
    by_name = {t.point: i for i, t in enumerate(tasks)}
    assert tasks[by_name["base__max_num_keypoints-1024__min_model_size-10"]].deps == [0]
    assert tasks[by_name["two__max_num_keypoints-2048__min_model_size-3"]].deps == [by_name[
        "base__max_num_keypoints-2048__min_model_size-3"]]
    assert tasks[by_name["base__max_num_keypoints-2048__min_model_size-3"]].deps == []


@pytest.mark.parametrize("body, message", [
    ("bogus: 1\n", r"unknown key\(s\) \['bogus'\] in the top level"),
    ("grid: {features.aliked.max_num_keypoint: [1, 2]}\n", r"unknown key 'features.aliked.max_num_keypoint'"),
    ("grid: {features.aliked.max_num_keypoints: []}\n", r"grid.features.aliked.max_num_keypoints must be a non-empty list"),
    ("grid: {data.root: [a, b]}\n", r"grid key 'data.root' is set by the sweep"),
    ("overrides: [cache_dir=/x]\n", r"sets 'cache_dir', which the sweep sets itself"),
    ("overrides: [sfm.nope=1]\n", r"unknown key 'sfm.nope'"),
    ("variants: [{name: a, overrides: [], extra: 1}]\n", r"unknown key\(s\) \['extra'\] in variants\[0\]"),
    ("variants: [{name: a}, {name: a}]\n", r"variant names must be unique, repeated: \['a'\]"),
    ("variants: [{name: 'a b'}]\n", r"name 'a b' must match"),
    ("resources: {num_gpu: 1}\n", r"unknown key\(s\) \['num_gpu'\] in resources"),
])
def test_invalid_sweep_files_name_the_key(tmp_path, body, message):
    with pytest.raises(SweepError, match=message):
        load_sweep(write_sweep(tmp_path, SCENES + body))


def test_invalid_scene_sets(tmp_path):
    with pytest.raises(SweepError, match=r"unknown key\(s\) \['lables'\] in scenes.real\[0\]"):
        load_sweep(write_sweep(tmp_path, "scenes:\n  real:\n    - {root: x, lables: y}\n"))
    with pytest.raises(SweepError, match="lists no scene set"):
        load_sweep(write_sweep(tmp_path, "scenes: {}\n"))
    no_base = tmp_path / "no_base.yaml"
    no_base.write_text(SCENES)
    with pytest.raises(SweepError, match="missing `base_config`"):
        load_sweep(no_base)
    missing = write_sweep(tmp_path, "scenes:\n  real:\n    - {name: gone, root: /nonexistent/x, labels: y}\n")
    with pytest.raises(SweepError, match="scene set 'gone': root /nonexistent/x is not a folder"):
        plan(load_sweep(missing))
    optional = write_sweep(tmp_path, SCENES + "    - {name: gone, root: /nonexistent/x, labels: y, optional: true}\n")
    assert {t.scene_set for t in plan(load_sweep(optional))} == {"demo"}


def test_scenes_without_images_are_skipped(tmp_path):
    """A labels file may list scenes whose images are absent (IMC 2023 train_labels beside kyiv)."""
    labels = tmp_path / "labels.csv"
    text = DEMO_LABELS.read_text()
    labels.write_text(text + "\n".join(line.replace("demo,boxes", "other,gone").replace("demo/boxes", "other/gone")
                                       for line in text.splitlines()[1:] if "demo,boxes" in line) + "\n")
    spec = load_sweep(write_sweep(tmp_path, f"scenes:\n  real:\n    - {{name: d, root: {DEMO}, labels: {labels}}}\n"))
    assert plan(spec)[0].scenes == ["demo/boxes", "demo/courtyard"]


def test_synthetic_scene_set_rendered_once(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, """
scenes:
  synthetic:
    - {preset: easy, seed: 3, scenes: [easy-boxes]}
grid: {sfm.min_model_size: [3]}
"""))
    tasks = plan(spec)
    root = tmp_path / "out" / "data" / "synth-easy-s3"
    assert tasks[0].scene_set == "synth-easy-s3" and tasks[0].conf["data"]["root"] == str(root.resolve())
    assert tasks[0].scenes == ["synth/easy-boxes"] and tasks[0].labels == str((root / "train_labels.csv").resolve())
    images = sorted((root / "synth" / "easy-boxes" / "images").glob("*.jpg"))
    assert len(images) == 10
    stamp = images[0].stat().st_mtime_ns
    plan(spec)
    assert images[0].stat().st_mtime_ns == stamp, "the synthetic set was rendered again"
    with pytest.raises(SweepError, match="nope"):
        plan(load_sweep(write_sweep(tmp_path, "scenes:\n  synthetic:\n    - {preset: nope}\ngrid: {seed: [0]}\n",
                                    name="bad.yaml")))


def test_shipped_sweep_files_are_valid():
    for path in sorted((REPO / "configs" / "sweeps").glob("*.yaml")):
        spec = load_sweep(path)
        assert spec.scene_sets and spec.swept_keys, path
    seed = load_sweep(REPO / "configs" / "sweeps" / "seed_best.yaml")
    assert [v["name"] for v in seed.variants] == ["default", "seed_best"]


# ------------------------------------------------------------------------------------------ running
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The shipped smoke sweep, sequential, into a temporary folder (through the CLI). One torch thread:
    on a busy 2-core machine two threads are several times slower (they wait for each other)."""
    out = tmp_path_factory.mktemp("smoke") / "out"
    old = os.getcwd()
    os.chdir(REPO)
    try:
        t0 = time.perf_counter()
        rc = sweep_main([str(SMOKE), "--output-dir", str(out), "--threads", "1"])
        seconds = time.perf_counter() - t0
    finally:
        os.chdir(old)
    return rc, out, seconds


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # shares the smoke sweep (30-60 s)
def test_smoke_sweep_writes_csv_markdown_plots(smoke_run):
    rc, out, _ = smoke_run
    assert rc == 0
    spec = load_sweep(SMOKE, output_dir=out)
    rows = _rows(out)
    n_points = len(grid_cells(spec.grid))
    assert len(rows) == n_points * 2  # x 2 demo scenes
    for row in rows:
        assert row["status"] == "ok", row
        assert 0.0 <= float(row["mAA"]) <= 1.0 and 0.0 <= float(row["registered_share"]) <= 1.0
        assert row["features.aliked.max_num_keypoints"] in {str(v) for v in spec.grid["features.aliked.max_num_keypoints"]}
        assert row["sfm.max_num_models"] in {str(v) for v in spec.grid["sfm.max_num_models"]}
        assert float(row["seconds_stages"]) > 0
    assert any(float(r["mAA"]) > 0 for r in rows), "no point registered anything on the demo scenes"
    summary = (out / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == n_points
    means = [float(line.split("|")[5]) for line in table]
    assert means == sorted(means, reverse=True), "summary not ranked by mean mAA"
    for key in spec.swept_keys:
        png = out / f"mAA_vs_{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in rows:
        run_dir = out / "points" / row["point"] / "demo"
        assert (run_dir / "submission.csv").is_file() and (run_dir / RESULT_FILE).is_file()


def _full_and_mapper_only_points(out: Path) -> tuple[str, str]:
    """The first point and the point that differs from it in sfm.* only (it runs after it)."""
    points = expand_points(load_sweep(SMOKE, output_dir=out))
    full = points[0]
    mapper = next(p for p in points[1:] if {k: v for k, v in p.conf.items() if k != "sfm"}
                  == {k: v for k, v in full.conf.items() if k != "sfm"})
    return full.name, mapper.name


@pytest.mark.slow  # shares the smoke sweep (30-60 s)
def test_mapper_only_point_reuses_features_and_matches(smoke_run):
    _, out, _ = smoke_run
    full_name, mapper_name = _full_and_mapper_only_points(out)
    for scene in ("boxes", "courtyard"):
        full, mapper = (json.loads((out / "points" / p / "demo" / "scenes" / "demo" / scene / "report.json").read_text())
                        for p in (full_name, mapper_name))
        for stage in ("features:aliked", "pairs", "matches:aliked", "fuse", "verified"):
            assert full["paths"][stage] == mapper["paths"][stage]
        assert full["paths"]["sfm"] != mapper["paths"]["sfm"]
        log = (out / "points" / mapper_name / "demo" / "scenes" / "demo" / scene / "log.txt").read_text()
        assert "features: 0/9 images to extract" in log and "matches: 0 pairs to match" in log
        upstream = {name: r["seconds"]["features"] + r["seconds"]["matches"] for name, r in (("full", full),
                                                                                              ("mapper", mapper))}
        assert upstream["mapper"] < 0.5 * upstream["full"]  # what is left is loading the two networks


@pytest.mark.slow  # shares the smoke sweep (30-60 s)
def test_rerun_skips_finished_points_and_resumes(smoke_run):
    _, out, _ = smoke_run
    spec = load_sweep(SMOKE, output_dir=out)
    point_dirs = sorted((out / "points").glob("*/demo"))
    stamps = {p: (p / "summary.json").stat().st_mtime_ns for p in point_dirs}
    t0 = time.perf_counter()
    outcome = run_sweep(spec)
    assert time.perf_counter() - t0 < 20
    assert outcome.ran == [] and len(outcome.skipped) == len(point_dirs)
    assert {p: (p / "summary.json").stat().st_mtime_ns for p in point_dirs} == stamps, "a finished point re-ran"
    # interrupted sweep: one point lost its result and results.csv is gone -> only that point runs
    _, mapper_name = _full_and_mapper_only_points(out)
    (out / "points" / mapper_name / "demo" / RESULT_FILE).unlink()
    (out / "results.csv").unlink()
    outcome = run_sweep(spec)
    assert outcome.ran == [f"{mapper_name}/demo"]
    assert len(_rows(out)) == len(point_dirs) * 2
    # a changed resolved config is not "finished"
    task = plan(spec)[0]
    assert load_result(task) is not None
    task.conf["matching"]["filter_threshold"] = 0.5
    assert load_result(task) is None


def test_ray_two_workers(tmp_path):
    """Two points with different features run as two parallel Ray tasks (2 local CPUs)."""
    ray = pytest.importorskip("ray")
    data = tmp_path / "data"
    shutil.copytree(DEMO / "demo" / "boxes", data / "demo" / "boxes", ignore=shutil.ignore_patterns("*.json"))
    for extra in sorted((data / "demo" / "boxes" / "images").glob("*.jpg"))[4:]:
        extra.unlink()
    lines = DEMO_LABELS.read_text().splitlines()
    kept = [line for line in lines[1:] if line.startswith("demo,boxes,") and any(
        f"/{p.name}," in line for p in (data / "demo" / "boxes" / "images").glob("*.jpg"))]
    (data / "labels.csv").write_text("\n".join([lines[0], *kept]) + "\n")
    spec_path = write_sweep(tmp_path, f"""
overrides: [features.aliked.resize_max=256]
scenes:
  real:
    - {{name: tiny, root: {data}, labels: {data / 'labels.csv'}}}
grid:
  features.aliked.max_num_keypoints: [128, 192]
resources: {{num_cpus: 1}}
""")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_sweep(load_sweep(spec_path), backend=Backend.RAY, workers=2)
    finally:
        ray.shutdown()
    assert outcome.failed == [] and len(outcome.ran) == 2
    rows = _rows(tmp_path / "out")
    assert {r["features.aliked.max_num_keypoints"] for r in rows} == {"128", "192"}
    assert all(r["status"] == "ok" and r["n_images"] == "4" for r in rows)
    results = [json.loads((tmp_path / "out" / "points" / r["point"] / "tiny" / RESULT_FILE).read_text()) for r in rows]
    assert len({r["worker"]["pid"] for r in results}) == 2 and os.getpid() not in {r["worker"]["pid"] for r in results}
    assert all(r["worker"]["torch_threads"] == 1 for r in results)
    (a0, a1), (b0, b1) = [(r["started"], r["finished"]) for r in results]
    assert a0 < b1 and b0 < a1, "the two Ray tasks did not run at the same time"
    for r in rows:
        log = tmp_path / "out" / "points" / r["point"] / "tiny" / "scenes" / "demo" / "boxes" / "log.txt"
        assert "features: 4/4 images to extract" in log.read_text()
