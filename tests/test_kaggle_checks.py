"""The Kaggle notebook's functions (imc.kaggle): input discovery in every mount layout, weights over
several folders, the commit-time silent-zero checks, the CSV published whatever kills the run, the
debug subset. Runs of ``imc run`` here are real subprocesses on the shipped demo scenes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imc.config import load_config
from imc.kaggle import checks, debug, discover, runner
from imc.scenes import discover_scenes
from imc.weights import WeightsNotFoundError, resolve_weights

from .conftest import DEMO, REPO

RUN_ENV = dict(os.environ, PYTHONPATH=str(REPO), GLIBC_TUNABLES=(
    "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"))


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fake_inputs(root: Path, layout: str) -> dict[str, Path]:
    """The competition, the three datasets and Kaggle Models inputs in ``layout`` (contents faked)."""
    if layout == "classic":
        comp, data = root / "image-matching-challenge-2023", root
    else:
        comp, data = root / "competitions" / "image-matching-challenge-2023", root / "datasets" / "someone"
    touch(comp / "sample_submission.csv", "image_path,dataset,scene\n")
    touch(comp / "test" / "a" / "b" / "images" / "x.png")
    touch(comp / "train" / "train_labels.csv")
    touch(data / "imc-wheels" / "requirements.txt", "kornia==0.9.0\n")
    touch(data / "imc-wheels" / "kornia-0.9.0-py3-none-any.whl")
    touch(data / "imc-project" / "imc-0.1.0-py3-none-any.whl")
    touch(data / "imc-project" / "configs" / "kaggle.yaml")
    touch(data / "imc-weights" / "aliked_lightglue.pth")
    touch(root / "aliked" / "pytorch" / "aliked-n16" / "1" / "aliked-n16.pth")  # Kaggle Models
    touch(root / "dinov2" / "pytorch" / "base" / "1" / "config.json", json.dumps({"model_type": "dinov2"}))
    touch(root / "other-model" / "config.json", json.dumps({"model_type": "bert"}))
    touch(root / "some-other-comp" / "sample_submission.csv", "id\n")
    return {"competition": comp, "wheels": data / "imc-wheels", "project": data / "imc-project",
            "weights": [root / "aliked" / "pytorch" / "aliked-n16" / "1", data / "imc-weights"],
            "dinov2": root / "dinov2" / "pytorch" / "base" / "1"}


@pytest.mark.parametrize("layout", ["classic", "nested"])
def test_find_inputs_in_every_layout(tmp_path, layout):
    want = fake_inputs(tmp_path, layout)
    found = discover.find_inputs(tmp_path)
    assert found.competition == want["competition"]  # the image-matching one, not some-other-comp
    assert found.wheels == want["wheels"] and found.project == want["project"] and found.dinov2 == want["dinov2"]
    assert sorted(found.weights) == sorted(want["weights"])
    assert found.sample_submission == want["competition"] / "sample_submission.csv"
    assert found.train_labels == want["competition"] / "train" / "train_labels.csv"
    found.require("competition", "wheels", "project", "weights")
    text = found.format()
    assert "NOT FOUND" not in text and "some-other-comp" in text  # the other candidate is shown


def test_missing_inputs_name_the_parameter(tmp_path):
    found = discover.find_inputs(tmp_path / "nothing-here")
    with pytest.raises(discover.DiscoveryError, match="competition, project.*COMPETITION_DIR, PROJECT_DIR"):
        found.require("competition", "project")


def test_data_root_follows_the_listed_paths(tmp_path):
    comp = tmp_path / "comp"
    touch(comp / "test" / "church" / "images" / "1.png")
    sample = touch(comp / "sample_submission.csv", "image_path,dataset,scene\nchurch/images/1.png,d,church\n")
    assert discover.data_root_for(comp, sample) == comp / "test"  # IMC 2023: relative to test/
    sample.write_text("image_path,dataset,scene\ntest/church/images/1.png,d,church\n")
    assert discover.data_root_for(comp, sample) == comp  # IMC 2024: relative to the competition
    sample.write_text("image_path,dataset,scene\nnowhere/1.png,d,church\n")
    assert discover.data_root_for(comp, sample) == comp / "test"  # neither: the check will say so


def test_weights_from_several_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("IMC_WEIGHTS_DIR", raising=False)
    a, b = touch(tmp_path / "a" / "aliked-n16.pth").parent, touch(tmp_path / "b" / "x.pth").parent
    assert resolve_weights("aliked-n16.pth", [b, a]) == a / "aliked-n16.pth"
    assert resolve_weights("x.pth", [str(b), str(a)]) == b / "x.pth"
    monkeypatch.setenv("IMC_WEIGHTS_DIR", os.pathsep.join([str(a), str(b)]))
    assert resolve_weights("x.pth") == b / "x.pth"
    monkeypatch.delenv("IMC_WEIGHTS_DIR")
    with pytest.raises(WeightsNotFoundError, match=str(a)):
        resolve_weights("nope.pth", [a, b])
    conf = load_config(REPO / "configs" / "kaggle.yaml", [f"weights_dir={json.dumps([str(a), str(b)])}"])
    assert conf["weights_dir"] == [str(a), str(b)]  # the notebook's override parses to a list


def demo_scenes(root: Path) -> list:
    return discover_scenes(root=root)


def test_missing_images_fail_at_commit_only(tmp_path, capsys):
    sample = touch(tmp_path / "sample_submission.csv",
                   "image_path,dataset,scene\n" + "".join(f"demo/boxes/images/view_00{i}.jpg,demo,boxes\n" for i in range(3)))
    wrong_root = discover_scenes(root=tmp_path / "test", sample_submission=sample)  # the files are elsewhere
    problems = checks.input_problems(wrong_root)
    assert len(problems) == 1 and "none of the 3 listed images exist" in problems[0] and "DATA_ROOT" in problems[0]
    with pytest.raises(checks.SilentZeroError, match="none of the 3 listed images exist"):
        checks.enforce(problems, rerun=checks.is_rerun({}))
    checks.enforce(problems, rerun=checks.is_rerun({checks.RERUN_ENV: "True"}))  # rerun: warn, go on
    assert "WARNING" in capsys.readouterr().out
    assert checks.input_problems(discover_scenes(root=DEMO, sample_submission=sample)) == []


def imc_run(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imc", "run", "--config", str(REPO / "configs" / "demo.yaml"),
            f"data.root={DEMO}", f"output={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", "device=cpu",
            "progress=false", "torch_threads=1", "features.aliked.resize_max=160", "features.aliked.max_num_keypoints=128", *extra]


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """A real run in which every scene fails: a corrupt ALIKED checkpoint is found first."""
    tmp = tmp_path_factory.mktemp("failed")
    bad = touch(tmp / "bad-weights" / "aliked-n16.pth", "not a checkpoint").parent
    proc = subprocess.run(imc_run(tmp, f"weights_dir={bad}"), env=RUN_ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # the run itself "succeeds": the silent zero
    return tmp


def test_every_scene_failed_is_a_commit_error(failed_run):
    scenes = demo_scenes(DEMO)
    run_dir = failed_run / "run"
    assert checks.submission_problems(run_dir / "submission.csv", checks.expected_paths(scenes)) == []  # complete
    problems = checks.run_problems(run_dir, run_dir / "submission.csv", checks.expected_paths(scenes))
    assert any(p.startswith("every scene failed (2)") and "OVERRIDES=['device=cpu']" in p for p in problems), problems
    assert any("18/18 rows (100%) have identity/zero poses" in p and "MAX_IDENTITY_SHARE" in p for p in problems)
    with pytest.raises(checks.SilentZeroError, match="every scene failed"):
        checks.enforce(problems, rerun=False)
    (run_dir / "summary.json").rename(run_dir / "summary.json.bak")  # a run that died before its summary
    try:
        assert any("every scene failed (2)" in p for p in checks.run_problems(run_dir, run_dir / "submission.csv",
                                                                                checks.expected_paths(scenes)))
    finally:
        (run_dir / "summary.json.bak").rename(run_dir / "summary.json")
    relaxed = checks.run_problems(run_dir, run_dir / "submission.csv", checks.expected_paths(scenes),
                                  max_identity_share=1.0)
    assert not any("identity" in p for p in relaxed)


def test_identity_share_and_malformed_rows(tmp_path):
    scenes = demo_scenes(DEMO)
    expected = checks.expected_paths(scenes)
    out = tmp_path / "s.csv"
    from imc.csv_writer import main as write_csv

    write_csv(scenes, {}, out)
    stats = checks.submission_stats(out, expected)
    assert (stats.n_rows, stats.n_identity, stats.problems) == (18, 18, [])
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1] + [lines[-1].replace("1.0;0.0;0.0", "nan;0.0;0.0", 1)]) + "\n")
    assert any("bad pose" in p for p in checks.submission_problems(out, expected))
    out.write_text("\n".join(lines[:-1]) + "\n")
    assert checks.submission_problems(out, expected)[0] == "17 rows, expected 18"


def test_a_run_killed_after_its_csv_is_written_still_publishes_it(failed_run, tmp_path):
    """``imc run`` completes its CSV, then the process is SIGKILLed (as by the OOM killer): today's
    notebook copied the CSV only after exit code 0; the finally-copy publishes it."""
    scenes = demo_scenes(DEMO)
    dest = touch(tmp_path / "working" / "submission.csv", "image_path\nstale\n")  # an old, incomplete file
    bad = failed_run / "bad-weights"
    cmd = ["sh", "-c", " ".join(f"'{c}'" for c in imc_run(tmp_path, f"weights_dir={bad}")) + "; kill -9 $$"]
    outcome = runner.run_and_publish(cmd, run_csv=tmp_path / "run" / "submission.csv", destination=dest,
                                     scenes=scenes, env=RUN_ENV)
    assert outcome.returncode == -9 and not outcome.ok
    assert outcome.published is runner.Published.RUN
    assert dest.read_bytes() == (tmp_path / "run" / "submission.csv").read_bytes()
    assert checks.submission_problems(dest, checks.expected_paths(scenes)) == []


def test_a_run_dying_before_any_csv_keeps_the_last_complete_one(tmp_path):
    scenes = demo_scenes(DEMO)
    dest = tmp_path / "working" / "submission.csv"
    die = [sys.executable, "-c", "import sys; print('late import error'); sys.exit(1)"]
    first = runner.run_and_publish(die, run_csv=tmp_path / "none.csv", destination=dest, scenes=scenes)
    assert first.returncode == 1 and first.published is runner.Published.PLACEHOLDER
    assert checks.submission_stats(dest, checks.expected_paths(scenes)).n_identity == 18
    lines = dest.read_text().splitlines()
    dest.write_text("\n".join(lines[:-1] + [lines[-1].replace("0.0;0.0;0.0", "1.0;2.0;3.0")]) + "\n")  # "a real pose"
    kept = dest.read_text()
    torn = touch(tmp_path / "run.csv", "image_path,dataset\ndemo/boxes/images/view_000.jpg,demo\n")
    second = runner.run_and_publish(die, run_csv=torn, destination=dest, scenes=scenes)
    assert second.published is runner.Published.KEPT and dest.read_text() == kept


def test_debug_subset_of_the_train_labels(tmp_path):
    train = tmp_path / "train"
    shutil.copytree(DEMO / "demo", train / "demo")
    shutil.copy(DEMO / "train_labels.csv", train / "train_labels.csv")
    (train / "demo" / "courtyard" / "images" / "view_008.jpg").unlink()  # courtyard: 8 present, boxes: 9
    subset = debug.make_debug_subset(train / "train_labels.csv", tmp_path / "debug", max_scenes=1, max_images=3)
    assert subset is not None and subset.scenes == ["demo/courtyard"] and subset.n_images == 3
    assert subset.root == train
    with open(subset.sample, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image_path"] for r in rows] == [f"demo/courtyard/images/view_00{i}.jpg" for i in range(3)]
    scenes = discover_scenes(root=subset.root, sample_submission=subset.sample)
    assert checks.input_problems(scenes) == []
    with open(subset.labels, newline="") as f:
        assert [r["image_path"] for r in csv.DictReader(f)] == [r["image_path"] for r in rows]
    assert debug.make_debug_subset(touch(tmp_path / "other.csv", "image_id,x\n1,2\n"), tmp_path / "d2") is None
