"""data.competition: IMC 2024 roots found without a hand-set data.root, IMC 2025 datasets as one
scene each with image_id passed through, the stage table per competition, the 2025 CSV and checks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from imc import stages
from imc.config import load_config
from imc.csv_writer import write_submission
from imc.kaggle import checks
from imc.reconstruct import Pose
from imc.scenes import DATASET_SCENE, Competition, SceneListError, discover_scenes


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_imc2024_paths_are_relative_to_the_competition_folder(tmp_path):
    comp = tmp_path / "comp"
    touch(comp / "test" / "church" / "images" / "1.png")
    sample = touch(comp / "sample_submission.csv", "image_path,dataset,scene\ntest/church/images/1.png,church,church\n")
    for root in (None, tmp_path / "elsewhere"):  # null, or a default that holds none of the files
        (scene,) = discover_scenes(root=root, sample_submission=sample, competition="imc2024")
        assert scene.root == comp and scene.file(scene.image_paths[0]).is_file()
    (scene,) = discover_scenes(root=None, sample_submission=sample)  # imc2023 with a null root: also found
    assert scene.root == comp
    (scene,) = discover_scenes(root=tmp_path / "elsewhere", sample_submission=sample)  # imc2023: data.root as set
    assert scene.root == tmp_path / "elsewhere"


def test_imc2025_one_scene_per_dataset_with_image_ids(tmp_path):
    for d, names in (("ds1", ["b.png", "a.png"]), ("ds2", ["c.jpg"])):
        for n in names:
            touch(tmp_path / "test" / d / n)
    sample = touch(tmp_path / "sample_submission.csv", "image_id,dataset,scene,image,rotation_matrix,translation_vector\n"
                   "id_b,ds1,outliers,b.png,nan,nan\nid_c,ds2,outliers,c.jpg,nan,nan\nid_a,ds1,outliers,a.png,nan,nan\n")
    scenes = discover_scenes(root=None, sample_submission=sample, competition="imc2025")
    assert [(s.dataset, s.scene) for s in scenes] == [("ds1", DATASET_SCENE), ("ds2", DATASET_SCENE)]
    assert scenes[0].image_paths == ["ds1/b.png", "ds1/a.png"] and scenes[0].image_ids == ["id_b", "id_a"]
    assert all(s.file(p).is_file() for s in scenes for p in s.image_paths)
    from_layout = discover_scenes(root=tmp_path / "test", competition=Competition.IMC2025)
    assert from_layout[0].image_paths == ["ds1/a.png", "ds1/b.png"] and from_layout[0].image_ids == ["ds1_a", "ds1_b"]

    out = tmp_path / "submission.csv"
    pose = Pose(R=np.eye(3), t=np.array([1.0, 2.0, 3.0]), model=0)
    write_submission(Competition.IMC2025, scenes, {"ds1/all": {"ds1/a.png": pose, "ds1/b.png": pose}},
                     {"ds1/all": {"ds1/a.png": "cluster0"}}, out)
    rows = list(csv.DictReader(out.open()))
    assert [(r["image_id"], r["dataset"], r["scene"], r["image"]) for r in rows] == [
        ("id_b", "ds1", "outliers", "b.png"), ("id_a", "ds1", "cluster0", "a.png"), ("id_c", "ds2", "outliers", "c.jpg")]
    assert rows[1]["translation_vector"] == "1.0;2.0;3.0" and rows[0]["translation_vector"] == "nan;nan;nan"  # outlier: nan
    expected = checks.expected_keys(scenes, Competition.IMC2025)
    stats = checks.submission_stats(out, expected, Competition.IMC2025)
    assert stats.problems == [] and stats.n_identity == 2
    assert checks.submission_problems(out, expected[:2] + ["missing"], Competition.IMC2025)


def test_cluster_stage_runs_for_imc2025_only():
    conf = load_config(None)
    assert "cluster" not in [s.name for s in stages.active(conf)] and "cluster" not in stages.fingerprints(conf, {})
    conf25 = load_config(None, ["data.competition=imc2025", "cluster.min_cluster_size=4"])
    assert [s.name for s in stages.active(conf25)][-2:] == ["sfm", "cluster"]
    fp = stages.fingerprints(conf25, {})
    assert fp["sfm"] == stages.fingerprints(conf, {})["sfm"]  # the competition never enters the other stages
    assert fp["cluster"] != stages.fingerprints(load_config(None, ["data.competition=imc2025"]), {})["cluster"]


def test_unknown_competition_is_refused():
    with pytest.raises(SceneListError, match="imc2023"):
        discover_scenes(root="x", competition="imc2022")
