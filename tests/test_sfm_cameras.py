"""imc.sfm.cameras: EXIF focal priors (plausible, lying, missing) and camera grouping."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imc.config import load_config
from imc.sfm.cameras import CameraMode, ExifInfo, camera_prior, group_key, make_cameras, read_exif

from .conftest import KYIV

CONF = {**load_config()["cameras"], "exif_prior": True}


def write_jpeg(path: Path, *, f35: float | None, focal: float | None = 4.0, size=(400, 300), model="X1") -> Path:
    exif = Image.Exif()
    exif[0x010F] = "Acme"
    exif[0x0110] = model
    sub = exif.get_ifd(0x8769)
    if focal is not None:
        sub[0x920A] = focal
    if f35 is not None:
        sub[0xA405] = int(f35)
    Image.new("RGB", size, (120, 90, 60)).save(path, exif=exif)
    return path


def test_read_exif_and_prior_from_35mm(tmp_path):
    exif = read_exif(write_jpeg(tmp_path / "a.jpg", f35=28))
    assert exif.make == "Acme" and exif.model == "X1" and exif.focal_35mm == 28 and exif.focal_mm == 4.0
    prior = camera_prior(exif, np.array([400, 300]), focal_prior_factor=1.2, use_exif=True)
    assert prior.from_exif and prior.focal_px == pytest.approx(28 / 43.27 * 500)


@pytest.mark.parametrize("f35, why", [(None, "no FocalLengthIn35mmFilm"), (0, "no FocalLengthIn35mmFilm"),
                                      (3, "implausible"), (2000, "implausible")])
def test_lying_or_missing_exif_falls_back_to_the_default_prior(tmp_path, f35, why):
    exif = read_exif(write_jpeg(tmp_path / "a.jpg", f35=f35))
    prior = camera_prior(exif, np.array([400, 300]), focal_prior_factor=1.2, use_exif=True)
    assert not prior.from_exif and prior.focal_px == pytest.approx(480) and why in prior.note


def test_unreadable_file_has_no_exif(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert read_exif(tmp_path / "broken.jpg") == ExifInfo()


def test_exif_mode_groups_identical_exif_only(tmp_path):
    for name, model in (("a.jpg", "X1"), ("b.jpg", "X1"), ("c.jpg", "X2")):
        write_jpeg(tmp_path / name, f35=28, model=model)
    names = ["a.jpg", "b.jpg", "c.jpg"]
    sizes = {n: np.array([400, 300]) for n in names}
    cams, groups, priors = make_cameras(names, sizes, tmp_path, {**CONF, "mode": "exif"})
    assert cams["a.jpg"] is cams["b.jpg"] and cams["a.jpg"] is not cams["c.jpg"]
    assert cams["a.jpg"].has_prior_focal_length and all(p.from_exif for p in priors.values())
    cams, _, _ = make_cameras(names, sizes, tmp_path, {**CONF, "exif_prior": False})
    assert len({id(c) for c in cams.values()}) == 3 and not cams["a.jpg"].has_prior_focal_length
    assert cams["a.jpg"].mean_focal_length() == pytest.approx(480)
    assert group_key(CameraMode.EXIF, "z.jpg", ExifInfo(), np.array([4, 3])) == "z.jpg"


def test_kyiv_exif_priors_are_plausible():
    if not KYIV.is_dir():
        pytest.skip("kyiv images not found (../shared missing)")
    names = sorted(p.name for p in KYIV.glob("*.jpg"))
    sizes = {n: np.array(Image.open(KYIV / n).size) for n in names}
    _, groups, priors = make_cameras(names, sizes, KYIV, {**CONF, "mode": "exif"})
    assert all(p.from_exif for p in priors.values())
    # two lenses (f35 10 and 25 mm) and two image sizes: 3 groups, although GT focals form 3 other clusters (crops)
    assert len(set(groups.values())) == 3
    assert all(300 < p.focal_px < 1300 for p in priors.values()) and not math.isnan(priors[names[0]].focal_px)


def test_confirm_groups_splits_crops_of_one_exif_group():
    from imc.sfm.cameras import confirm_groups

    groups = {"a": "g", "b": "g", "c": "g", "d": "g", "e": "h"}
    focals = {"a": 1160.0, "b": 1180.0, "c": 2350.0, "d": 2340.0}  # kyiv: identical EXIF, crops at 2x
    out = confirm_groups(groups, focals, 0.1)
    assert out["a"] == out["b"] and out["c"] == out["d"] and out["a"] != out["c"]
    assert out["e"] == "e"  # no refined focal: its own camera


def test_confirm_groups_leaves_a_zoom_apart_and_lets_a_failed_focal_join_one_camera():
    from imc.sfm.cameras import confirm_groups

    # synth `hard`: 20 views, focals 450-800 px, steps under 10 %: a chain, not one camera
    zoom = {f"z{i}": 450.0 + 350.0 * i / 19 for i in range(20)}
    out = confirm_groups({n: "no-exif|640x480" for n in zoom}, zoom, 0.1, max_spread=0.25)
    assert len(set(out.values())) == 20
    assert len(set(confirm_groups({n: "g" for n in zoom}, zoom, 0.1).values())) == 1  # without the spread rule
    # temple: 15 views at 1517-1687 px share one camera; the 16th's refinement failed (1.5e7 px): it joins
    temple = {f"t{i}": 1517.0 + 170.0 * i / 14 for i in range(15)} | {"bad": 1.5e7}
    groups = {n: "no-exif|640x480" for n in temple}
    out = confirm_groups(groups, temple, 0.1, max_spread=0.25, failed={"bad"})
    assert len(set(out.values())) == 1
    # a plausible lone view off the rest (temple's first pass: 944 px) joins too, in a group without EXIF only
    temple["bad"] = 944.0
    assert len(set(confirm_groups(groups, temple, 0.1, max_spread=0.25).values())) == 1
    out = confirm_groups({n: "Mi|9|4.74|size" for n in temple}, temple, 0.1, max_spread=0.25)
    assert out["bad"] != out["t0"] and len(set(out.values())) == 2
    two = {**temple, "bad2": 3000.0}  # two strays without EXIF: not one clear camera, every view its own
    out = confirm_groups({n: "no-exif|640x480" for n in two}, two, 0.1, max_spread=0.25)
    assert len(set(out.values())) == 17
    # synth `hard`: first-pass focals in clusters (each within the spread): with EXIF crops of one lens, shared
    # per cluster; without EXIF a zoom, every view its own
    clusters = {f"c{i}": f for i, f in enumerate([720, 730, 740, 750, 600, 610, 620, 630, 500, 505, 510, 515])}
    assert len(set(confirm_groups({n: "Mi|9|4.74|size" for n in clusters}, clusters, 0.1, max_spread=0.25).values())) == 3
    assert len(set(confirm_groups({n: "no-exif|640x480" for n in clusters}, clusters, 0.1,
                                  max_spread=0.25).values())) == 12
    # a failed focal in a group that splits (kyiv's crops at 2x) cannot tell which camera: its own
    kyiv = {"a": 1160.0, "b": 1180.0, "c": 2350.0, "d": 2340.0, "bad": 10.0}
    out = confirm_groups({n: "g" for n in kyiv}, kyiv, 0.1, max_spread=0.25, failed={"bad"})
    assert out["bad"] == "bad" and out["a"] == out["b"] != out["c"] == out["d"]


def test_auto_groups_images_without_exif_by_size_only_where_the_first_pass_agrees(tmp_path):
    """Middlebury-like: PNGs without EXIF. ``exif`` keeps them apart; ``auto`` groups one size and confirms the
    group by the refined focals: one clear camera with a lone stray is shared (the stray joins, its focal left out
    of the starting focal); two strays leave every view its own camera; the other size stays apart."""
    names = ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    for n in names:
        Image.new("RGB", (64, 48) if n != "e.png" else (48, 64)).save(tmp_path / n)
    sizes = {n: np.array(Image.open(tmp_path / n).size) for n in names}
    assert group_key(CameraMode.AUTO, "a.png", ExifInfo(), sizes["a.png"]) == "no-exif|64x48"
    assert group_key(CameraMode.AUTO, "a.png", ExifInfo(), sizes["a.png"], group_without_exif=False) == "a.png"
    cams, _, _ = make_cameras(names, sizes, tmp_path, {**CONF, "mode": "exif"})
    assert len({id(c) for c in cams.values()}) == 6
    focals = {"a.png": 150.0, "b.png": 152.0, "c.png": 149.0, "d.png": 250.0, "e.png": 151.0, "f.png": 148.0}
    cams, groups, _ = make_cameras(names, sizes, tmp_path, {**CONF, "mode": "auto", "group_without_exif": True}, refined_focals=focals)
    assert cams["a.png"] is cams["b.png"] is cams["c.png"] is cams["f.png"] is cams["d.png"]  # d: the lone stray
    assert cams["e.png"] is not cams["a.png"]
    assert cams["a.png"].mean_focal_length() == pytest.approx(149.5)  # the median of a, b, c, f (not d)
    cams, _, _ = make_cameras(names, sizes, tmp_path, {**CONF, "mode": "auto", "group_without_exif": True}, refined_focals={**focals, "f.png": 100.0})
    assert len({id(c) for c in cams.values()}) == 6  # two strays (d, f): not one clear camera
    # d's first-pass focal implausible for a 64-px image (400 > 5 x 64): a failed refinement, it joins the camera
    cams, _, _ = make_cameras(names, sizes, tmp_path, {**CONF, "mode": "auto", "group_without_exif": True}, refined_focals={**focals, "d.png": 400.0})
    assert cams["d.png"] is cams["a.png"] and cams["a.png"].mean_focal_length() == pytest.approx(149.5)


def test_an_unstable_first_pass_without_exif_shares_one_camera_from_its_sane_focals(tmp_path):
    """Middlebury dino (640x480, GT focal 3310 px = 5.2 x the long edge): a narrow field of view leaves per-image
    focals free, and the first pass refined -1144 to 1.1e6 px. A group without EXIF with a quarter or more of its
    focals outside 0.1-10 x the long edge shares one camera, started from the median of the sane ones (the
    plausible range 0.3-5 x alone would leave out the right ones above 3200 px); with EXIF, or with fewer
    insane focals, the usual rules apply."""
    from imc.sfm.cameras import unstable_groups

    names = [f"d{i}.png" for i in range(8)]
    for n in names:
        Image.new("RGB", (640, 480)).save(tmp_path / n)
    sizes = {n: np.array([640, 480]) for n in names}
    dino = dict(zip(names, [-1144.0, 1.13e6, 3600.0, 3744.0, 3846.0, 4285.0, 1829.0, 18572.0]))
    conf = {**CONF, "mode": "auto", "group_without_exif": True}
    groups = {n: "no-exif|640x480" for n in names}
    assert unstable_groups(groups, dino, sizes, 0.25) == {"no-exif|640x480": (3, 8)}  # 3 of 8 outside 64-6400 px
    assert unstable_groups({n: "Mi|9|4.74|640x480" for n in names}, dino, sizes, 0.25) == {}  # EXIF: never
    assert unstable_groups(groups, dino, sizes, 0.5) == {}
    cams, _, _ = make_cameras(names, sizes, tmp_path, conf, refined_focals=dino)
    assert len({id(c) for c in cams.values()}) == 1
    assert cams[names[0]].mean_focal_length() == pytest.approx(3744.0)  # median of the 5 sane focals
    assert cams[names[0]].model.name == "SIMPLE_PINHOLE"  # no distortion to drift with the free focal
    # the remap after the checks starts from the grouped model's focals: one shared value (implausible: 5.6 x) stays
    # one pinhole camera
    again = {n: 3569.0 for n in names}
    cams, _, _ = make_cameras(names, sizes, tmp_path, conf, refined_focals=again)
    assert len({id(c) for c in cams.values()}) == 1 and cams[names[0]].model.name == "SIMPLE_PINHOLE"
    assert cams[names[0]].mean_focal_length() == pytest.approx(3569.0)
    # without the rule (fraction > 1) the scattered focals keep every view apart
    cams, _, _ = make_cameras(names, sizes, tmp_path, {**conf, "unstable_fraction": 2.0}, refined_focals=dino)
    assert len({id(c) for c in cams.values()}) == 8
    # one insane focal is a failed refinement, not an unstable scene: the usual rules (temple: it joins the
    # confirmed camera, which starts from the others' median)
    one_bad = {**dict(zip(names, [1500.0, 1540, 1520, 1510, 1530, 1560, 1550])), names[7]: -5.0}
    assert unstable_groups(groups, one_bad, sizes, 0.1) == {}
    cams, _, _ = make_cameras(names, sizes, tmp_path, conf, refined_focals=one_bad)
    assert len({id(c) for c in cams.values()}) == 1 and cams[names[0]].mean_focal_length() == pytest.approx(1530.0)
    assert cams[names[0]].model.name == CONF["model"]
