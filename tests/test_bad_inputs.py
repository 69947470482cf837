"""Bad inputs never cost a submission: every listed row is written, and the scene's report says why.

One ``python -m imc run`` (a real subprocess: exit code 0 is part of the contract) over the corpus
of :func:`tests.corpus.build_bad_inputs`, plus one run driven by a ``sample_submission.csv`` that
lists a missing file and a scene with no folder at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imc.h5io import ResumableH5, escape, read_features

from .corpus import BAD_FILES, TINY, assert_complete_csv, build_bad_inputs, run_cli, write_sample_submission


def scene_report(output: Path, name: str) -> dict:
    return json.loads((output / "scenes" / name / "report.json").read_text())


def scene_log(output: Path, name: str) -> str:
    return (output / "scenes" / name / "log.txt").read_text()


def registered(report: dict) -> set[str]:
    poses = Path(report["paths"]["sfm"]) / "poses.csv"
    if not poses.is_file():
        return set()
    return {line.split(",")[0] for line in poses.read_text().splitlines()[1:]}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs")
    scenes = build_bad_inputs(tmp / "data")
    output = tmp / "run"
    text = run_cli([f"data.root={tmp / 'data'}", f"output={output}", f"cache_dir={tmp / 'cache'}", *TINY],
                   log_path=tmp / "stdout.txt")
    return scenes, output, text


@pytest.mark.slow
def test_every_row_written_and_finite(corpus_run):
    scenes, output, _ = corpus_run
    assert set(scenes) == {"bad/mixed", "bad/single", "bad/empty", "bad/noise", "dup/a", "dup/b"}
    assert_complete_csv(output / "submission.csv", [p for paths in scenes.values() for p in paths])
    summary = json.loads((output / "summary.json").read_text())
    assert {s["dataset"] + "/" + s["scene"] for s in summary["scenes"]} == set(scenes)
    assert all(s["status"] in ("ok", "empty") for s in summary["scenes"]), summary["scenes"]


@pytest.mark.slow
def test_every_unposed_image_has_a_reason(corpus_run):
    """Registered or listed in ``fallbacks`` with a reason: never silently an identity row."""
    scenes, output, _ = corpus_run
    for name, paths in scenes.items():
        report = scene_report(output, name)
        explained = {f["image_path"] for f in report["fallbacks"] if f["reason"]}
        assert explained | registered(report) == set(paths), (name, report["fallbacks"])
        assert not explained & registered(report), name


@pytest.mark.slow
def test_unreadable_files_are_reported_with_their_cause(corpus_run):
    scenes, output, _ = corpus_run
    report = scene_report(output, "bad/mixed")
    reasons = {Path(f["image_path"]).name: f["reason"] for f in report["fallbacks"]}
    assert "empty file" in reasons["zero_bytes.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "too small (10x10" in reasons["tiny_10x10.png"]
    log = scene_log(output, "bad/mixed")
    for name in ("zero_bytes.jpg", "truncated.jpg", "tiny_10x10.png"):
        assert f"{name}:" in log and "WARNING" in log, name


@pytest.mark.slow
def test_odd_but_valid_images_are_decoded_and_used(corpus_run):
    """Alpha, grayscale, 16-bit, CMYK, EXIF-rotated and huge images yield features in stored-pixel
    coordinates and most of them register with the two good views."""
    scenes, output, _ = corpus_run
    report = scene_report(output, "bad/mixed")
    decoded = [n for n, what in BAD_FILES.items() if what == "decoded"]
    sizes = {}
    for name in decoded:
        key = f"bad/mixed/images/{name}"
        f = read_features(report["paths"]["features:aliked"], key)
        error = ResumableH5(report["paths"]["features:aliked"]).attrs(escape(key))["error"]
        assert not error and len(f["keypoints"]) > 50, (name, error)
        sizes[name] = tuple(int(v) for v in f["image_size"])
        assert f["keypoints"][:, 0].max() < sizes[name][0] and f["keypoints"][:, 1].max() < sizes[name][1], name
    assert sizes["huge_6400x4800.jpg"] == (6400, 4800)
    assert sizes["exif6.jpg"] == (640, 427)  # the stored grid, EXIF orientation ignored by default
    reg = {Path(p).name for p in registered(report)}
    assert {"good_a.jpg", "good_b.jpg"} <= reg, reg
    assert len(reg & set(decoded)) >= 4, reg


@pytest.mark.slow
def test_degenerate_scenes_are_reported(corpus_run):
    _, output, _ = corpus_run
    single = scene_report(output, "bad/single")
    assert single["status"] == "ok" and "nothing to reconstruct" in single["fallbacks"][0]["reason"]
    assert "nothing to reconstruct" in scene_log(output, "bad/single")
    empty = scene_report(output, "bad/empty")
    assert empty["status"] == "empty" and empty["n_images"] == 0
    assert "lists no images" in scene_log(output, "bad/empty")
    noise = scene_report(output, "bad/noise")
    assert noise["status"] == "ok" and noise["n_registered"] == 0
    assert all("not registered" in f["reason"] for f in noise["fallbacks"]) and len(noise["fallbacks"]) == 3


@pytest.mark.slow
def test_same_file_names_in_two_scenes_stay_apart(corpus_run):
    scenes, output, _ = corpus_run
    a, b = scene_report(output, "dup/a"), scene_report(output, "dup/b")
    assert Path(a["paths"]["features:aliked"]).parent != Path(b["paths"]["features:aliked"]).parent
    fa = read_features(a["paths"]["features:aliked"], "dup/a/images/0000.jpg")
    fb = read_features(b["paths"]["features:aliked"], "dup/b/images/0000.jpg")
    sha = [ResumableH5(r["paths"]["features:aliked"]).attrs(escape(k))["image_sha1"]
           for r, k in ((a, "dup/a/images/0000.jpg"), (b, "dup/b/images/0000.jpg"))]
    assert sha[0] != sha[1] and len(fa["keypoints"]) and len(fb["keypoints"])  # different photos, same name
    rows = assert_complete_csv(output / "submission.csv", [p for paths in scenes.values() for p in paths])
    assert {r["scene"] for r in rows if r["image_path"].endswith("/0000.jpg")} == {"a", "b"}


def test_sample_submission_with_missing_file_and_missing_scene(tmp_path):
    build_bad_inputs(tmp_path / "data")
    listed = [("dup/a/images/0000.jpg", "dup", "a"), ("dup/a/images/not-there.jpg", "dup", "a"),
              ("dup/a/images/0001.jpg", "dup", "a"), ("bad/single/images/only.jpg", "bad", "single"),
              ("ghost/scene/images/x.jpg", "ghost", "scene")]
    sub = write_sample_submission(tmp_path / "sample_submission.csv", listed)
    output = tmp_path / "run"
    run_cli([f"data.root={tmp_path / 'data'}", f"data.sample_submission={sub}", f"output={output}",
             f"cache_dir={tmp_path / 'cache'}", *TINY], log_path=tmp_path / "stdout.txt")
    rows = assert_complete_csv(output / "submission.csv", [p for p, _, _ in listed])
    assert [r["image_path"] for r in rows] == [p for p, _, _ in listed]  # the listed order, scene by scene
    reasons = {f["image_path"]: f["reason"] for f in scene_report(output, "dup/a")["fallbacks"]}
    assert "file not found" in reasons["dup/a/images/not-there.jpg"]
    ghost = scene_report(output, "ghost/scene")
    assert ghost["fallbacks"] == [{"image_path": "ghost/scene/images/x.jpg",
                                   "reason": ghost["fallbacks"][0]["reason"]}]
    assert "file not found" in ghost["fallbacks"][0]["reason"]
