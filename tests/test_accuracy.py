"""The real-photo benchmark (``python -m imc accuracy``) and scale-relative thresholds."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from eval.score import score
from eval.thresholds import ThresholdsError, load_thresholds, mean_camera_distance, thresholds_from_dict
from imc.accuracy.cli import main as accuracy_main
from imc.accuracy.cli import parse_variants
from imc.accuracy.history import append_history, best_before, comparison_table, entry_for, plot_history, read_history
from imc.accuracy.runner import UnitResult
from imc.accuracy.spec import AccuracySpecError, load_spec, resolve_units, select

from .conftest import DEMO, REPO, SHARED

REAL_LABELS = SHARED / "data" / "real" / "derived" / "gt_labels_imcformat.csv"
RELATIVE = {"rotation_deg": {"linspace": [1, 10, 10]}, "translation_relative": {"geomspace": [0.02, 0.2, 10]}}


def fmt(values) -> str:
    return ";".join(repr(float(v)) for v in np.asarray(values).ravel())


def poses_from_centres(centres: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera poses of cameras at ``centres`` with random orientations (t = -R C)."""
    R = Rotation.random(len(centres), random_state=seed).as_matrix()
    return R, -np.einsum("nij,nj->ni", R, centres)


def write_labels(path: Path, R: np.ndarray, t: np.ndarray, dataset: str = "d", scene: str = "s") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "dataset", "scene", "rotation_matrix", "translation_vector"])
        for k in range(len(R)):
            w.writerow([f"{dataset}/{scene}/images/{k}.jpg", dataset, scene, fmt(R[k]), fmt(t[k])])
    return path


# ----------------------------------------------------------------------------------------- thresholds
def test_relative_thresholds_on_a_hand_example(tmp_path):
    """Cameras at (0,0,0), (3,0,0), (0,4,0): pairwise distances 3, 4, 5, mean 4 -> 0.08 ... 0.8 (10 steps)."""
    R, t = poses_from_centres(np.array([[0.0, 0, 0], [3, 0, 0], [0, 4, 0]]), seed=3)
    assert mean_camera_distance(R, t) == pytest.approx(4.0, abs=1e-12)
    th = thresholds_from_dict({"default": RELATIVE})
    entry = th.for_scene("d", "s")
    assert entry.is_relative and entry.translation_m == ()
    resolved = entry.resolve(R, t)
    assert resolved.reference_distance_m == pytest.approx(4.0)
    assert np.allclose(resolved.translation_m, np.geomspace(0.08, 0.8, 10), rtol=1e-12)
    assert np.allclose(resolved.rotation_deg, np.linspace(1, 10, 10))

    labels = write_labels(tmp_path / "labels.csv", R, t)
    report = score(labels, labels, thresholds=th)  # perfect poses
    s = report.scenes["d/s"]
    assert s.maa == 1.0 and s.reference_distance_m == pytest.approx(4.0)
    assert np.allclose(s.thresholds_t_m, np.geomspace(0.08, 0.8, 10))
    # gt_translation_scale scales the reference distance with the translations
    scaled = thresholds_from_dict({"default": RELATIVE, "scenes": {"d/s": {"gt_translation_scale": 2.0}}})
    s2 = score(labels, labels, thresholds=scaled).scenes["d/s"]
    assert s2.reference_distance_m == pytest.approx(8.0)
    assert np.allclose(s2.thresholds_t_m, np.geomspace(0.16, 1.6, 10))


def test_relative_thresholds_decide_accuracy(tmp_path):
    """The same translation error passes in a scene twice as large and fails in the small one."""
    centres = np.array([[0.0, 0, 0], [3, 0, 0], [0, 4, 0]])
    th = thresholds_from_dict({"default": {"rotation_deg": {"values": [10.0]},
                                           "translation_relative": {"values": [0.1]}}})
    maa = {}
    for scale in (1.0, 2.0):
        R, t = poses_from_centres(centres * scale, seed=4)
        labels = write_labels(tmp_path / f"labels{scale}.csv", R, t)
        # camera 1 moved 0.2 (same rotation): a translation-direction error, same for both scales in metres
        t_pred = t.copy()
        t_pred[1] = -R[1] @ (centres[1] * scale + np.array([0, 0.6, 0]))
        sub = write_labels(tmp_path / f"sub{scale}.csv", R, t_pred)
        maa[scale] = score(sub, labels, thresholds=th).scenes["d/s"].maa
    assert maa[1.0] < maa[2.0]


def test_relative_threshold_entries_are_validated():
    with pytest.raises(ThresholdsError, match="not both"):
        thresholds_from_dict({"default": {**RELATIVE, "translation_m": {"geomspace": [0.1, 2, 10]}}})
    with pytest.raises(ThresholdsError, match="9 translation"):
        thresholds_from_dict({"default": {"rotation_deg": {"linspace": [1, 10, 10]},
                                          "translation_relative": {"geomspace": [0.02, 0.2, 9]}}})
    th = thresholds_from_dict({"default": RELATIVE, "scenes": {
        "a/abs": {"translation_m": {"geomspace": [0.5, 5, 10]}}, "a/rot": {"rotation_deg": {"linspace": [2, 20, 10]}}}})
    assert not th.for_scene("a", "abs").is_relative  # an absolute scene entry replaces the relative default
    assert th.for_scene("a", "rot").is_relative  # a rotation-only entry keeps the default's translation rule
    same_place = np.zeros((3, 3))
    with pytest.raises(ThresholdsError, match="translation_m"):
        th.for_scene("a", "rot").resolve(np.stack([np.eye(3)] * 3), same_place, scene="a/rot")


def test_repo_thresholds_official_for_imc_relative_elsewhere():
    th = load_thresholds()
    kyiv = th.for_scene("urban", "kyiv-puppet-theater")
    assert not kyiv.is_relative and np.allclose(kyiv.translation_m, np.geomspace(0.5, 5, 10))
    other = th.for_scene("strecha", "Herz-Jesus-P8")
    assert other.is_relative and np.allclose(other.translation_relative, np.geomspace(0.02, 0.2, 10))


@pytest.mark.skipif(not REAL_LABELS.is_file(), reason="../shared real labels missing")
def test_relative_thresholds_on_the_shared_labels():
    from eval.submission import read_labels

    labels = read_labels(REAL_LABELS)
    herz = labels["strecha/Herz-Jesus-P8"]
    resolved = load_thresholds().for_scene("strecha", "Herz-Jesus-P8").resolve(herz.R, herz.t)
    centres = -np.einsum("nji,nj->ni", herz.R, herz.t)
    expected = np.mean([np.linalg.norm(centres[i] - centres[j]) for i in range(8) for j in range(i + 1, 8)])
    assert resolved.reference_distance_m == pytest.approx(expected)
    assert resolved.translation_m[0] == pytest.approx(0.02 * expected)


# ----------------------------------------------------------------------------------------- scene list
def write_spec(tmp_path: Path, *, demo_labels: Path, shared: Path) -> Path:
    spec = {"shared_dir": str(shared), "scenes": [
        {"name": "tiny", "source": "repo", "root": str(DEMO), "labels": str(demo_labels), "images_from_labels": True,
         "scenes": ["demo/boxes"]},
        {"name": "gone", "root": "data/real", "labels": "data/real/derived/nothing.csv", "images_from_labels": True,
         "scenes": ["strecha/Herz-Jesus-P8"]},
    ], "subsets": {"fast": ["tiny", "gone"]}}
    path = tmp_path / "accuracy.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def demo_subset_labels(tmp_path: Path, n: int) -> Path:
    """The first ``n`` labelled views of demo/boxes (image_path relative to the demo data root)."""
    with open(DEMO / "train_labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["scene"] == "boxes"][:n]
    path = tmp_path / "labels.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_missing_scene_is_skipped_with_a_note(tmp_path):
    spec = load_spec(write_spec(tmp_path, demo_labels=demo_subset_labels(tmp_path, 4), shared=tmp_path / "no-shared"))
    units, skipped = resolve_units(spec, select(spec, ["fast"]), tmp_path / "data")
    assert [u.scene for u in units] == ["demo/boxes"] and units[0].n_images == 4
    assert [s.scene for s in skipped] == ["strecha/Herz-Jesus-P8"]
    assert "not found" in skipped[0].reason and "--shared" in skipped[0].reason


def test_repo_scene_list_and_selection():
    spec = load_spec(REPO / "configs" / "accuracy.yaml")
    names = {e.name for e in spec.entries}
    assert {"kyiv", "strecha", "eth3d", "middlebury", "synth-easy", "synth-hard", "demo"} <= names
    assert select(spec, ["small"]) == [("strecha", "strecha/Herz-Jesus-P8")]
    assert select(spec, ["Herz-Jesus-P8", "demo"]) == [("strecha", "strecha/Herz-Jesus-P8"), ("demo", None)]
    assert ("kyiv", None) in select(spec, None) and ("demo", None) not in select(spec, None)
    with pytest.raises(AccuracySpecError, match="names no subset"):
        select(spec, ["no-such-scene"])


def test_several_configs_get_distinct_names():
    variants = parse_variants([str(REPO / "configs" / "default.yaml"), f"new={REPO / 'configs' / 'default.yaml'}",
                               str(REPO / "configs" / "default.yaml")], ["features.aliked.max_num_keypoints=512"])
    assert [v.name for v in variants] == ["default", "new", "default-2"]
    assert all(v.conf["features"]["aliked"]["max_num_keypoints"] == 512 for v in variants)
    assert len({v.fingerprint for v in variants}) == 1  # same resolved config


# ----------------------------------------------------------------------------------------- history
def row(variant: str, scene: str, maa: float, seconds: float, status: str = "ok") -> UnitResult:
    return UnitResult(variant=variant, entry="e", scene=scene, status=status, mAA=maa, n_images=4, n_registered=4,
                      wall_seconds=seconds, peak_rss_mb=900.0, seconds={"features": 1.0})


def history_entry(run_id: str, variant: str, rows: list[UnitResult], th: str = "th1") -> dict:
    return entry_for(run_id=run_id, label=run_id, variant=variant, config_path="c.yaml", config_fingerprint="fp",
                     overrides=[], thresholds_fingerprint=th, git={"commit": "abc123"}, host="h", started=time.time(),
                     rows=rows)


def test_history_append_compare_and_plot(tmp_path):
    path = tmp_path / "history.jsonl"
    append_history(path, [history_entry("r1", "old", [row("old", "a/x", 0.60, 100.0), row("old", "a/y", 0.9, 10.0)])])
    append_history(path, [history_entry("r2", "new", [row("new", "a/x", 0.70, 50.0), row("new", "a/y", 0.5, 5.0)]),
                          history_entry("r3", "other-thresholds", [row("z", "a/x", 0.99, 1.0)], th="th2")])
    with path.open("a") as f:
        f.write('{"torn": ')  # a run killed while appending
    history = read_history(path)
    assert [e["run_id"] for e in history] == ["r1", "r2", "r3"]
    best_x = best_before(history, "a/x", "th1")
    assert (best_x.mAA, best_x.label, best_x.wall_seconds) == (0.70, "r2", 50.0)  # r3 used other thresholds
    assert best_before(history, "a/y", "th1").mAA == 0.9
    assert best_before(history, "a/none", "th1") is None
    table = comparison_table([row("now", "a/x", 0.75, 40.0), row("now", "a/new", 0.5, 1.0)], history, "th1")
    assert "| now | a/x | 0.7500 | 0.7000 | +0.0500 | 40.0 | 50.0 | r2/new abc123 |" in table
    assert "| now | a/new | 0.5000 | (none) |" in table
    png = plot_history(history, tmp_path / "plot.png", highlight_run="r2")
    assert png.is_file() and png.stat().st_size > 5000


# ----------------------------------------------------------------------------------------- end to end
def test_tiny_accuracy_run_end_to_end(tmp_path, capsys):
    """4 demo views at 320 px / 256 keypoints in a child process, scored, tabulated, appended to the history."""
    spec = write_spec(tmp_path, demo_labels=demo_subset_labels(tmp_path, 4), shared=tmp_path / "no-shared")
    out = tmp_path / "acc"
    t0 = time.perf_counter()
    rc = accuracy_main(["--spec", str(spec), "--scenes", "fast", "--output-dir", str(out), "--label", "tiny",
                        "--no-progress", "--quiet", "torch_threads=1", "features.aliked.resize_max=320",
                        "features.aliked.max_num_keypoints=256", "sfm.min_model_size=2"])
    seconds = time.perf_counter() - t0
    assert rc == 0
    (run_dir,) = (out / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    (r,) = result["rows"]
    assert r["scene"] == "demo/boxes" and r["status"] == "ok", r["error"]
    assert r["n_images"] == 4 and r["n_pairs"] == 6 and 0.0 <= r["mAA"] <= 1.0
    assert r["n_registered"] >= 3 and r["mAA"] > 0.5
    assert r["thresholds"].startswith("relative x")
    assert {"features", "matches", "sfm"} <= set(r["seconds"]) and r["wall_seconds"] >= r["stage_seconds"] > 0
    assert 100 < r["peak_rss_mb"] < 4096
    assert [s["scene"] for s in result["skipped"]] == ["strecha/Herz-Jesus-P8"]
    assert result["git"]["commit"] and result["configs"][0]["name"] == "default"
    md = (run_dir / "results.md").read_text()
    assert "| default | demo/boxes |" in md and "Skipped:" in md
    assert r["stages"].index("features") < r["stages"].index("matches") < r["stages"].index("sfm")
    assert md.index("| features s |") < md.index("| matches s |")  # the pipeline's order, not sorted
    with open(run_dir / "results.csv", newline="") as f:
        (csv_row,) = list(csv.DictReader(f))
    assert float(csv_row["mAA"]) == pytest.approx(r["mAA"]) and csv_row["seconds_features"]
    (entry,) = read_history(out / "history.jsonl")
    assert entry["label"] == "tiny" and entry["scenes"]["demo/boxes"]["mAA"] == pytest.approx(r["mAA"])
    assert (out / "mAA_vs_seconds.png").is_file()
    assert "(none)" in capsys.readouterr().out  # compared with an empty history
    assert seconds < 60, f"took {seconds:.0f} s"


def test_side_by_side_table_for_several_configs():
    from imc.accuracy.report import csv_text, markdown
    from imc.accuracy.spec import Skipped

    rows = [row("old", "a/x", 0.60, 100.0), row("old", "a/y", 0.9, 10.0), row("new", "a/x", 0.70, 50.0),
            row("new", "a/y", float("nan"), 5.0, status="failed")]
    md = markdown(rows, [Skipped(entry="kyiv", scene="urban/kyiv-puppet-theater", reason="no shared data")],
                  title="t", total_seconds=165.0)
    assert "| scene | old | new |" in md
    assert "| a/x | 0.6000 / 100 s | 0.7000 / 50 s |" in md
    assert "| a/y | 0.9000 / 10 s | - / 5 s |" in md
    assert "| old | 2 | 0.7500 | 110.0 | 0.88 |" in md and "| new | 2 | 0.7000 | 55.0 | 0.88 |" in md
    assert "- urban/kyiv-puppet-theater: no shared data" in md
    lines = csv_text(rows).splitlines()
    assert lines[0].startswith("variant,entry,dataset,scene,status,mAA") and len(lines) == 5
