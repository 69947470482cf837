"""The viewer's page logic without a browser (streamlit.testing AppTest)."""

from __future__ import annotations

import json
import shutil
import sys

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from .conftest import REPO
from .viewer_support import SCENE, read_json

APP = str(REPO / "imc" / "viewer" / "app.py")


def run_app(monkeypatch, *args: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", *args])
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_no_folder_asks_for_one(monkeypatch):
    at = run_app(monkeypatch)
    assert "Enter the folder" in texts(at.info)


def test_missing_run_says_so(monkeypatch, tmp_path):
    at = run_app(monkeypatch, "--run", str(tmp_path / "no-such-run"))
    assert "does not exist" in texts(at.error) and "make demo" in texts(at.error)
    assert len(at.dataframe) == 0


def test_folder_without_run_says_so(monkeypatch, tmp_path):
    at = run_app(monkeypatch, "--run", str(tmp_path))
    assert "holds no run" in texts(at.warning)


def write_partial_run(folder) -> None:
    """A run killed during its second scene: one report, no summary.json, stage files gone."""
    report = {"dataset": "d", "scene": "done", "n_images": 3, "n_registered": 2, "n_models": 1, "status": "ok",
              "paths": {"pairs": "cache/pairs.txt", "features:aliked": "cache/f.h5", "fuse": "cache/m.h5",
                        "verified": "cache/v.h5", "sfm": "cache/sfm"}}
    (folder / "scenes" / "d" / "done").mkdir(parents=True)
    (folder / "scenes" / "d" / "done" / "report.json").write_text(json.dumps(report))
    rows = ["image_path,dataset,scene,rotation_matrix,translation_vector"]
    rows += [f"d/{s}/images/{i}.jpg,d,{s},1;0;0;0;1;0;0;0;1,0;0;0" for s in ("done", "todo") for i in range(3)]
    (folder / "submission.csv").write_text("\n".join(rows) + "\n")


def test_partial_run_warns_and_shows_what_exists(monkeypatch, tmp_path):
    write_partial_run(tmp_path)
    at = run_app(monkeypatch, "--run", str(tmp_path))
    warnings = texts(at.warning)
    assert "no summary.json" in warnings and "not processed" in warnings
    assert "no keypoints file" in warnings and "no reconstruction" in warnings and "no pairs file" in warnings
    table = at.dataframe[0].value
    assert list(table["scene"]) == ["d/done", "d/todo"]
    assert list(table["status"]) == ["ok", "not run"]
    assert len(at.error) == 0  # warnings, not failures


def test_sweep_shows_results_and_plots(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    (tmp_path / "results.csv").write_text("tag,features.aliked.max_num_keypoints,mAA\na,512,0.41\nb,1024,0.55\n")
    (tmp_path / "summary.md").write_text("# smoke sweep\nbest: b\n")
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([512, 1024], [0.41, 0.55])
    fig.savefig(tmp_path / "mAA_vs_features.aliked.max_num_keypoints.png")
    write_partial_run(tmp_path / "points" / "p1" / "demo")
    at = run_app(monkeypatch, "--run", str(tmp_path))
    results = at.dataframe[0].value
    assert list(results["mAA"]) == [0.41, 0.55]
    assert len(at.get("image")) == 1
    assert "smoke sweep" in texts(at.markdown)
    # the sweep's point runs can be opened below its table
    assert at.selectbox(key="sweep_run").value == str(tmp_path / "points" / "p1" / "demo")
    assert list(at.dataframe[1].value["scene"]) == ["d/done", "d/todo"]


def test_folder_of_runs_offers_a_choice(monkeypatch, tmp_path):
    write_partial_run(tmp_path / "a")
    write_partial_run(tmp_path / "b")
    at = run_app(monkeypatch, "--run", str(tmp_path))
    assert at.selectbox(key="folder_run").options == ["a", "b"]
    at.selectbox(key="folder_run").set_value(str(tmp_path / "b")).run()
    assert str(tmp_path / "b") in texts(at.caption)


@pytest.mark.slow
def test_real_run_page(monkeypatch, viewer_run):
    at = run_app(monkeypatch, "--run", str(viewer_run.run))
    assert len(at.error) == 0 and len(at.warning) == 0, (texts(at.error), texts(at.warning))
    table = at.dataframe[0].value.set_index("scene")
    score = read_json(viewer_run.run / "score.json")
    assert table.loc[SCENE, "status"] == "ok"
    assert table.loc[SCENE, "images"] == 4 and table.loc[SCENE, "registered"] >= 3
    assert table.loc[SCENE, "mAA"] == pytest.approx(score["scenes"][SCENE])
    assert at.metric[0].value == f"{score['overall']:.4f}"
    captions = texts(at.caption)
    assert "mAA from" in captions and "verified inliers" in captions and "keypoints" in captions
    assert "aligned to ground truth" not in captions  # no labels given, none next to the images
    assert len(at.get("image")) == 2  # keypoints and matches
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.slow
def test_labels_add_ground_truth_and_score(monkeypatch, viewer_run, tmp_path):
    shutil.copytree(viewer_run.run, tmp_path / "run")
    (tmp_path / "run" / "score.json").unlink()  # mAA must come from the labels now
    at = run_app(monkeypatch, "--run", str(tmp_path / "run"))
    assert pd.isna(at.dataframe[0].value.set_index("scene").loc[SCENE, "mAA"])  # no score yet
    at.sidebar.text_input(key="labels_path").set_value(str(viewer_run.labels)).run()
    assert not at.exception
    captions = texts(at.caption)
    assert "mAA computed from" in captions and "aligned to ground truth on" in captions
    expected = read_json(viewer_run.run / "score.json")["scenes"][SCENE]
    assert at.dataframe[0].value.set_index("scene").loc[SCENE, "mAA"] == pytest.approx(expected)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace.get("name", "") for trace in chart["data"]]
    assert any(n.startswith("ground truth") for n in names) and any(n.startswith("model 0") for n in names)
