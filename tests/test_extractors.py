"""DISK and SIFT adapters, multi-resolution extraction, and an extractor failing on one image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imc.config import ConfigError, load_config
from imc.extract import MULTISCALE_MERGE_PX, extract_one
from imc.features import get as get_extractor
from imc.fuse import read_images
from imc.matchers import get as get_matcher
from imc.matchers.lightglue import rename_keys
from imc.pipeline import run

from .conftest import DEMO, tiny_overrides

CPU = torch.device("cpu")
VIEW = DEMO / "demo" / "boxes" / "images" / "view_000.jpg"


def loaded(name: str, *overrides: str):
    torch.set_num_threads(1)
    conf = load_config(None, list(overrides))
    adapter = get_extractor(name)
    return adapter, adapter.load(conf["features"][name], weights_dir=None, device=CPU), conf


def test_disk_loads_from_the_wheel_and_its_lightglue_fits():
    disk, model, conf = loaded("disk", "features.disk.max_num_keypoints=300", "features.disk.resize_max=320")
    out = extract_one(disk, model, VIEW, conf["features"]["disk"], CPU)
    assert 0 < len(out["keypoints"]) <= 300 and out["descriptors"].shape == (len(out["keypoints"]), 128)
    assert np.all(np.diff(out["scores"]) <= 0)  # strongest first, not kornia's raster order
    assert np.allclose(np.linalg.norm(out["descriptors"], axis=1), 1, atol=1e-4)
    entry = {**conf["matchers"]["lightglue"], **conf["matching"]["disk"]}
    lightglue = get_matcher("lightglue")
    net = lightglue.load(entry, weights_dir=None, device=CPU)  # strict: the inert log_assignment.i.r dropped
    res = lightglue.match(net, out, out, CPU)
    assert len(res["matches"]) > 0.8 * len(out["keypoints"])  # an image matches itself
    with pytest.raises(ValueError, match=r"log_assignment\.0\.r"):
        rename_keys({"log_assignment.0.r": torch.tensor([2.0])}, 9)


def test_disk_refuses_an_image_too_small_with_the_size():
    disk, model, conf = loaded("disk")
    with pytest.raises(ValueError, match="image too small for DISK: 16x16"):
        disk.extract(model, np.full((16, 16, 3), 128, np.uint8), conf["features"]["disk"], CPU)


def test_sift_rootsift_strongest_first():
    sift, model, conf = loaded("sift", "features.sift.max_num_keypoints=200", "features.sift.resize_max=480")
    out = extract_one(sift, model, VIEW, conf["features"]["sift"], CPU)
    assert len(out["keypoints"]) == 200 and out["descriptors"].shape == (200, 128)
    assert np.all(np.diff(out["scores"]) <= 0) and np.all(out["descriptors"] >= 0)
    assert np.allclose(np.linalg.norm(out["descriptors"], axis=1), 1, atol=1e-4)  # RootSIFT: unit L2
    assert conf["matching"]["sift"] == {"matcher": "nearest_neighbour"}
    with pytest.raises(ConfigError, match="cannot be matched by 'lightglue'"):
        load_config(None, ["features.extractors=[sift]", "matching.sift.matcher=lightglue",
                           "matching.sift.weights=sift_lightglue"])


def test_multi_resolution_concatenates_and_deduplicates():
    sift, model, conf = loaded("sift", "features.sift.max_num_keypoints=300", "features.sift.resize_max=[240, 480]")
    c = conf["features"]["sift"]
    assert sift.slug(c) == "sift-r240+480-k300"
    both = extract_one(sift, model, VIEW, c, CPU)
    small, large = (extract_one(sift, model, VIEW, {**c, "resize_max": s}, CPU) for s in (240, 480))
    n = len(both["keypoints"])
    assert max(len(small["keypoints"]), len(large["keypoints"])) < n < len(small["keypoints"]) + len(large["keypoints"])
    k = len(small["keypoints"])  # the first size's keypoints come first, unchanged
    assert np.array_equal(both["keypoints"][:k], small["keypoints"]) and np.array_equal(both["scores"][:k], small["scores"])
    radius = MULTISCALE_MERGE_PX * max(Image.open(VIEW).size) / 240
    added = both["keypoints"][k:]
    dist = np.linalg.norm(added[:, None] - small["keypoints"][None], axis=2).min(axis=1)
    assert np.all(dist >= radius)  # none of the second size's keypoints duplicates one of the first
    assert both["descriptors"].shape == (n, 128) and len(both["scores"]) == n
    for bad in ("[]", "[240,240]", "0"):
        with pytest.raises(ConfigError, match="features.sift.resize_max must be"):
            load_config(None, [f"features.sift.resize_max={bad}"])


@pytest.mark.slow  # ~60 s on the loaded 2-core machine (DISK and two LightGlues)
def test_an_extractor_failing_on_one_image_costs_only_its_keypoints(tmp_path, tiny_scene_root):
    """A 16x16 image is too small for DISK but ALIKED finds keypoints: the fused set keeps ALIKED's and
    the report names DISK's failure; the other images keep both extractors' keypoints."""
    images = tiny_scene_root / "middlebury" / "temple" / "images"
    noise = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)  # ALIKED finds 2 corners here
    Image.fromarray(noise).save(images / "tiny.png")
    (images / "templeSR0004.png").unlink()
    conf = load_config(None, tiny_overrides(tiny_scene_root, tmp_path) + [
        "features.extractors=[aliked,disk]", "features.aliked.resize_max=320", "features.aliked.max_num_keypoints=256",
        "features.disk.resize_max=320", "features.disk.max_num_keypoints=256"])
    (report,) = run(conf).reports
    assert report.status == "ok", report
    fused = read_images(Path(report.paths["fuse"]))
    small = fused["middlebury/temple/images/tiny.png"]
    assert 0 < small["num_keypoints"] and set(small["source"].tolist()) == {0}  # ALIKED's only
    assert list(small["errors"]) == ["disk"] and "image too small for DISK" in small["errors"]["disk"]
    for name in ("templeSR0001.png", "templeSR0002.png", "templeSR0003.png"):
        assert set(fused[f"middlebury/temple/images/{name}"]["source"].tolist()) == {0, 1}
    reasons = [f["reason"] for f in report.fallbacks if f["image_path"].endswith("tiny.png")]
    assert any(r.startswith("features disk: image too small for DISK") and "other extractors' keypoints are used" in r
               for r in reasons), report.fallbacks
    saved = json.loads((Path(report.paths["fuse"]).parent / (Path(report.paths["fuse"]).name + ".config.json")).read_text())
    assert saved["features.extractors"] == ["aliked", "disk"]


def test_fusion_merges_close_keypoints_and_keeps_matches_one_to_one():
    from imc.fuse import fuse_keypoints, union_matches

    a = np.array([[10, 10], [50, 50]], np.float32)
    b = np.array([[10.5, 10], [11, 10.5], [80, 80]], np.float32)  # two close to a[0], one new
    kpts, source, maps, new = fuse_keypoints([a, b], radius=2.0)
    assert kpts.tolist() == [[10, 10], [50, 50], [80, 80]] and source.tolist() == [0, 0, 1]
    assert maps[1].tolist() == [0, 0, 2] and new[1].tolist() == [False, False, True]
    other = [np.arange(2), np.arange(3)]  # the other image: each extractor's index is its fused index
    out = union_matches([(np.array([[0, 0], [1, 1]], np.int32), np.ones(2, np.float32)),
                         (np.array([[0, 1], [1, 0], [2, 2]], np.int32), np.full(3, 0.5, np.float32))],
                        maps, other)
    # b[0]->0 and b[1]->0 both map to fused 0, already matched by ALIKED: dropped; b[2] is new
    assert out["matches"].tolist() == [[0, 0], [1, 1], [2, 2]] and out["scores"].tolist() == [1, 1, 0.5]
    _, _, maps0, _ = fuse_keypoints([a, b], radius=0)  # no radius: disjoint index ranges, nothing dropped
    assert maps0[1].tolist() == [2, 3, 4]
