"""Extractors and matchers are registries: a new one is one file plus a config entry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from imc.config import ConfigError, load_config
from imc.fuse import read_images
from imc.pipeline import run

from .conftest import DEMO


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown extractor 'siftt'; known: \[.*'aliked'"):
        load_config(None, ["features.extractors=[siftt]"])
    with pytest.raises(ConfigError, match=r"unknown matcher 'lightglu'"):
        load_config(None, ["matching.aliked.matcher=lightglu"])
    with pytest.raises(ConfigError, match=r"plugins: cannot import 'no_such_module'"):
        load_config(None, ["plugins=[no_such_module]"])


def test_toy_extractor_from_its_own_file_runs_the_demo(tmp_path):
    """tests/toy_extractor.py registers `toy`; only the config names it. The demo scene runs with it alone."""
    (tmp_path / "toy.yaml").write_text(
        "plugins: [tests.toy_extractor]\n"
        "features: {extractors: [toy], toy: {max_num_keypoints: 600}}\n"
        "matching: {toy: {matcher: nearest_neighbour}}\n")
    conf = load_config(tmp_path / "toy.yaml", [f"data.root={DEMO}", "data.scenes=[demo/boxes]",
                                                f"output={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}",
                                                "progress=false"])
    assert conf["features"]["toy"] == {"resize_max": 640, "max_num_keypoints": 600, "quality": 0.01}  # its defaults
    with pytest.raises(ConfigError, match=r"features\.toy\.qualiti"):
        load_config(tmp_path / "toy.yaml", ["features.toy.qualiti=1"])
    result = run(conf)
    (report,) = result.reports
    assert report.status == "ok", report
    assert Path(report.paths["features:toy"]).name.startswith("features-toy-r640-k600-")
    images = read_images(Path(report.paths["fuse"]))
    assert len(images) == 9 and all(0 < im["num_keypoints"] <= 600 for im in images.values())
    with open(result.submission, newline="") as f:
        assert len(list(csv.DictReader(f))) == 9
    assert report.n_registered >= 3, report  # corners and patches are enough on these renders
    saved = json.loads(Path(report.paths["matches:toy"] + ".config.json").read_text())
    assert saved["matching.toy"] == {"matcher": "nearest_neighbour"} and saved["matchers.nearest_neighbour"]
