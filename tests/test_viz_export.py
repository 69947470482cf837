"""`python -m imc viz`: match PNGs (valid images) and a self-contained plotly HTML of the model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imc.cli import main as cli_main

from .conftest import REPO
from .viewer_support import SCENE


def test_viz_missing_run_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["viz", "--run", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_viz_writes_match_pngs_and_model_html(viewer_run, tmp_path, capsys):
    out = tmp_path / "viz"
    assert cli_main(["viz", "--run", str(viewer_run.run), "--out", str(out), "--pairs", "2",
                     "--labels", str(viewer_run.labels)]) == 0
    scene_dir = out / SCENE
    matches = sorted(scene_dir.glob("matches_*.png"))
    assert [p.name[:10] for p in matches] == ["matches_01", "matches_02"]
    keypoints = sorted(scene_dir.glob("keypoints_*.png"))
    assert len(keypoints) == 1
    for png in matches + keypoints:
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width > 200 and img.height > 150
    for png in matches:  # inliers are drawn in green (INLIER_COLOR = #1fbf3f)
        rgb = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
        assert np.sum((rgb[:, 1] > 150) & (rgb[:, 0] < 100) & (rgb[:, 2] < 120)) > 50, png
    html = (scene_dir / "model.html").read_text()
    assert "plotly" in html.lower() and "scatter3d" in html
    assert "ground truth" in html  # labels given: ground-truth cameras overlaid
    assert "<script src=\"http" not in html and len(html) > 1_000_000  # plotly.js inlined: opens offline
    printed = capsys.readouterr().out.split()
    assert str(scene_dir / "model.html") in printed


@pytest.mark.slow
def test_viz_cli_default_folder_is_run_viz(viewer_run):
    proc = subprocess.run([sys.executable, "-m", "imc", "viz", "--run", str(viewer_run.run), "--scene", SCENE,
                           "--pairs", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    scene_dir = viewer_run.run / "viz" / SCENE
    assert len(list(scene_dir.glob("matches_01_*.png"))) == 1 and (scene_dir / "model.html").is_file()
    with Image.open(next(scene_dir.glob("matches_01_*.png"))) as img:
        img.verify()
