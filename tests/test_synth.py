"""Synthetic scenes (eval.synth): the labels must describe the rendered pixels exactly."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from eval import synth
from eval.synth.cameras import CameraDraw, PinholeCamera, intrinsics, look_at
from eval.synth.labels import camera_from_row
from eval.synth.layouts import vertical_quad
from eval.synth.render import TexturedQuad, render_view
from eval.synth.scene import build_scene_model, render_synthetic_view

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "imc" / "demo_data"


def small_preset(name: str = "easy", **camera) -> synth.SynthPreset:
    """A registry preset shrunk for tests: few small views, coarse textures."""
    base = synth.get_preset(name)
    rig = dataclasses.replace(base.camera, **{"n_images": 3, "width": 320, "height": 240, **camera})
    return dataclasses.replace(base, camera=rig, texture_scale=0.4)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---- 1. projection of known 3D points onto the rendered pixels (independent of the renderer's depth)

DOTS_ST = [(0.5, 0.5), (0.42, 0.4), (0.6, 0.45), (0.47, 0.6), (0.57, 0.58), (0.38, 0.55)]


def dots_wall() -> tuple[TexturedQuad, np.ndarray]:
    """A 10 m x 6 m light wall with black discs; returns it and the discs' 3D centres."""
    quad = vertical_quad("dots", (0.0, 0.0, 0.0), (0.0, -1.0, 0.0), 10.0, 6.0, px_per_m=200.0)
    tex_w, tex_h = quad.texture_size
    cols, rows = np.meshgrid(np.arange(tex_w) + 0.5, np.arange(tex_h) + 0.5)  # texel centres
    texture = np.full((tex_h, tex_w), 235.0)
    for s, r in DOTS_ST:
        dist = np.hypot(cols - s * tex_w, rows - r * tex_h)
        texture = np.minimum(texture, 20.0 + 215.0 * np.clip(dist - 7.5, 0.0, 1.0))  # anti-aliased disc
    texture = np.repeat(texture[..., None], 3, axis=2).astype(np.uint8)
    return TexturedQuad.build(quad, texture), np.array([quad.point(s, r) for s, r in DOTS_ST])


def dark_blob_centroids(image: np.ndarray) -> np.ndarray:
    grey = image.mean(axis=2)
    n, labels, stats, _ = cv2.connectedComponentsWithStats((grey < 128).astype(np.uint8))
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < 10 or x == 0 or y == 0 or x + w >= grey.shape[1] or y + h >= grey.shape[0]:
            continue
        ys, xs = np.mgrid[y - 2 : y + h + 2, x - 2 : x + w + 2]
        weight = np.clip(235.0 - grey[ys, xs], 0, None)
        out.append([(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()])
    return np.array(out)


@pytest.mark.parametrize("quarter_turns", [0, 1, 2, 3])
def test_known_points_project_onto_rendered_dots(quarter_turns):
    wall, centres = dots_wall()
    rot, trans = look_at(np.array([1.2, -4.5, 2.2]), np.array([0.2, 0.0, 2.9]), roll_deg=7.0)
    upright = PinholeCamera(K=intrinsics(610.0, 640, 480), R=rot, t=trans, width=640, height=480)
    result = render_view([wall], upright, quarter_turns)
    cam = CameraDraw(upright=upright, quarter_turns=quarter_turns).final
    assert result.image.shape == (cam.height, cam.width, 3)
    if quarter_turns % 2:
        assert (cam.width, cam.height) == (480, 640)
    projected, depth = cam.project(centres)
    assert np.all(depth > 0)
    found = dark_blob_centroids(result.image)
    assert len(found) == len(centres)
    errors = np.linalg.norm(projected[:, None, :] - found[None, :, :], axis=2).min(axis=1)
    assert errors.max() < 0.1, errors  # measured ~0.01 px; a half-pixel convention slip gives ~0.7 px


def test_principal_point_is_pixel_centre_convention():
    cam = PinholeCamera(K=intrinsics(500.0, 640, 480), R=np.eye(3), t=np.zeros(3), width=640, height=480)
    uv, _ = cam.project(np.array([[0.0, 0.0, 3.0]]))
    np.testing.assert_allclose(uv[0], [319.5, 239.5])
    turned = cam.rotated_quarter_turns(1)
    np.testing.assert_allclose(turned.K[:2, 2], [(480 - 1) / 2, (640 - 1) / 2])


# ---- 2. two views of a real scene: depth-buffer correspondences reproject consistently


@pytest.fixture(scope="module")
def easy_model():
    preset = synth.get_preset("easy")
    preset = dataclasses.replace(preset, camera=dataclasses.replace(preset.camera, n_images=3), texture_scale=0.6)
    return build_scene_model(preset, seed=3, scene="easy-boxes")


def bilinear(values: np.ndarray, uv: np.ndarray) -> np.ndarray:
    x0 = np.floor(uv[:, 0]).astype(int)
    y0 = np.floor(uv[:, 1]).astype(int)
    fx, fy = uv[:, 0] - x0, uv[:, 1] - y0
    v = values
    return ((1 - fx) * (1 - fy) * v[y0, x0] + fx * (1 - fy) * v[y0, x0 + 1]
            + (1 - fx) * fy * v[y0 + 1, x0] + fx * fy * v[y0 + 1, x0 + 1])


@pytest.mark.parametrize("turns_b", [0, 1, 2, 3])
def test_depth_correspondences_reproject_below_half_pixel(easy_model, turns_b):
    view_a, view_b = easy_model.views[0], easy_model.views[2]
    draw_a = view_a.draw
    draw_b = CameraDraw(upright=view_b.draw.upright, quarter_turns=turns_b)
    res_a = render_view(easy_model.quads, draw_a.upright, draw_a.quarter_turns)
    res_b = render_view(easy_model.quads, draw_b.upright, draw_b.quarter_turns)
    cam_a, cam_b = draw_a.final, draw_b.final

    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(res_a.quad_id >= 0)
    pick = rng.choice(len(xs), 3000, replace=False)
    uv_a = np.column_stack([xs[pick], ys[pick]]).astype(np.float64)
    ids_a = res_a.quad_id[ys[pick], xs[pick]]
    world = cam_a.backproject(uv_a, res_a.depth[ys[pick], xs[pick]])
    uv_b, z_b = cam_b.project(world)
    inside = (uv_b[:, 0] >= 0) & (uv_b[:, 1] >= 0) & (uv_b[:, 0] < cam_b.width - 1) & (uv_b[:, 1] < cam_b.height - 1)
    uv_a, uv_b, z_b, ids_a = uv_a[inside], uv_b[inside], z_b[inside], ids_a[inside]
    x0, y0 = np.floor(uv_b[:, 0]).astype(int), np.floor(uv_b[:, 1]).astype(int)
    same = np.ones(len(uv_b), bool)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        same &= res_b.quad_id[y0 + dy, x0 + dx] == ids_a  # the same surface is visible in B
    assert same.sum() > 500, same.sum()
    uv_a, uv_b, z_b = uv_a[same], uv_b[same], z_b[same]
    depth_b = 1.0 / bilinear(1.0 / res_b.depth.astype(np.float64), uv_b)  # 1/z is affine on a plane
    np.testing.assert_allclose(depth_b, z_b, rtol=2e-3)
    back = cam_a.project(cam_b.backproject(uv_b, depth_b))[0]
    errors = np.linalg.norm(back - uv_a, axis=1)
    assert np.median(errors) < 0.05 and errors.max() < 0.5, (np.median(errors), errors.max())


def test_sift_matches_satisfy_ground_truth_epipolar_geometry(easy_model):
    view_a, view_b = easy_model.views[0], easy_model.views[1]
    img_a, _ = render_synthetic_view(easy_model, view_a)
    img_b, _ = render_synthetic_view(easy_model, view_b)
    sift = cv2.SIFT_create(nfeatures=2000)
    kp_a, desc_a = sift.detectAndCompute(cv2.cvtColor(img_a, cv2.COLOR_RGB2GRAY), None)
    kp_b, desc_b = sift.detectAndCompute(cv2.cvtColor(img_b, cv2.COLOR_RGB2GRAY), None)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    good = [m for m, n in knn if m.distance < 0.75 * n.distance]
    assert len(good) > 200, len(good)
    pa = np.array([kp_a[m.queryIdx].pt for m in good])
    pb = np.array([kp_b[m.trainIdx].pt for m in good])

    cam_a, cam_b = view_a.draw.final, view_b.draw.final
    rel_r = cam_b.R @ cam_a.R.T
    rel_t = cam_b.t - rel_r @ cam_a.t
    skew = np.array([[0, -rel_t[2], rel_t[1]], [rel_t[2], 0, -rel_t[0]], [-rel_t[1], rel_t[0], 0]])
    fmat = np.linalg.inv(cam_b.K).T @ skew @ rel_r @ np.linalg.inv(cam_a.K)
    ha, hb = np.column_stack([pa, np.ones(len(pa))]), np.column_stack([pb, np.ones(len(pb))])
    lines_b, lines_a = ha @ fmat.T, hb @ fmat
    dist_b = np.abs((hb * lines_b).sum(1)) / np.hypot(lines_b[:, 0], lines_b[:, 1])
    dist_a = np.abs((ha * lines_a).sum(1)) / np.hypot(lines_a[:, 0], lines_a[:, 1])
    errors = 0.5 * (dist_a + dist_b)
    assert np.median(errors) < 1.0, np.median(errors)
    assert np.mean(errors < 2.0) > 0.8  # few wrong matches: the texture does not repeat


# ---- 3. written labels, rotations, determinism


def read_rows(root: Path) -> list[dict[str, str]]:
    with (root / "train_labels.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_render_scene_writes_imc_layout_and_exact_labels(tmp_path):
    preset = small_preset("hard", quarter_turn_fraction=1.0)
    labels = synth.render_scene(preset, 1, tmp_path, scene="hard-boxes")
    rows = read_rows(tmp_path)
    assert list(rows[0]) == ["dataset", "scene", "image_path", "rotation_matrix", "translation_vector",
                             "calibration_matrix", "width", "height"]
    assert len(rows) == len(labels.images) == 3
    for row, label in zip(rows, labels.images):
        assert row["dataset"] == "synth" and row["scene"] == "hard-boxes"
        assert row["image_path"] == label.image_path == f"synth/hard-boxes/images/{Path(label.image_path).name}"
        cam = camera_from_row(row)
        np.testing.assert_array_equal(cam.R, label.camera.R)  # repr round-trips exactly
        np.testing.assert_allclose(cam.R.T @ cam.R, np.eye(3), atol=1e-12)
        assert np.linalg.det(cam.R) == pytest.approx(1.0, abs=1e-12)
        image = cv2.imread(str(tmp_path / row["image_path"]))
        assert image.shape[:2] == (cam.height, cam.width)
        np.testing.assert_allclose(cam.K[:2, 2], [(cam.width - 1) / 2, (cam.height - 1) / 2])
    model = build_scene_model(preset, 1, "hard-boxes")
    turns = [v.draw.quarter_turns for v in model.views]
    assert all(k in (1, 2, 3) for k in turns)
    sizes = [(camera_from_row(r).width, camera_from_row(r).height) for r in rows]
    assert sizes == [(240, 320) if k % 2 else (320, 240) for k in turns]


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    preset = small_preset("medium", n_images=2)
    for sub in ("a", "b"):
        synth.render_scene(preset, 7, tmp_path / sub, scene="medium-courtyard")
    synth.render_scene(preset, 8, tmp_path / "c", scene="medium-courtyard")
    a, b, c = (tree_hashes(tmp_path / s) for s in "abc")
    assert a == b
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 2 and all(a[k] != c[k] for k in images)


def test_labels_merge_keeps_other_scenes(tmp_path):
    preset = small_preset("easy", n_images=1)
    synth.render_scene(preset, 0, tmp_path, scene="easy-boxes")
    synth.render_scene(preset, 0, tmp_path, scene="easy-courtyard")
    synth.render_scene(preset, 1, tmp_path, scene="easy-boxes")  # re-render replaces its own rows only
    rows = read_rows(tmp_path)
    assert sorted(r["scene"] for r in rows) == ["easy-boxes", "easy-courtyard"]


# ---- 4. presets and CLI


def test_presets_cover_easy_to_hard():
    p = synth.PRESETS
    assert {"easy", "medium", "hard", "large", "demo"} <= set(p)
    assert p["easy"].camera.quarter_turn_fraction == 0 and p["hard"].camera.quarter_turn_fraction > 0
    assert p["easy"].camera.arc_deg < p["medium"].camera.arc_deg < p["hard"].camera.arc_deg
    assert p["large"].camera.n_images == 150 and p["large"].camera.width == 480
    assert p["demo"].dataset == "demo" and [s.name for s in p["demo"].scenes] == ["boxes", "courtyard"]
    with pytest.raises(KeyError, match="unknown synth preset"):
        synth.get_preset("nope")


def test_grouped_presets_place_their_views_in_the_groups():
    """``pairs``: disjoint pairs 120 deg apart (azimuth about the target)."""
    from eval.synth.cameras import CameraPathError, CameraRig, CameraPath, sample_cameras

    for name, gaps in (("pairs", 2),):
        rig = synth.PRESETS[name].camera
        draws = sample_cameras(rig, target=np.zeros(3), spread_m=1.0, facing_azimuth_deg=0.0,
                               rng=np.random.default_rng(0))
        assert len(draws) == rig.n_images == sum(c for _, _, c in rig.groups)
        az = np.sort([np.degrees(np.arctan2(d.upright.center[0], -d.upright.center[1])) for d in draws])
        steps = np.diff(az)
        assert np.sum(steps > 25.0) == gaps, az  # the groups are apart ...
        for lo, hi, _ in rig.groups:  # ... and every group holds its views
            inside = np.sum((az >= lo - 3.0) & (az <= hi + 3.0))  # look-at jitter moves the centres a little
            assert inside == [c for a, b, c in rig.groups if (a, b) == (lo, hi)][0]
    with pytest.raises(CameraPathError, match="sum to n_images=5"):
        sample_cameras(CameraRig(n_images=5, path=CameraPath.GROUPS, groups=((0.0, 10.0, 2),)), target=np.zeros(3),
                       spread_m=1.0, facing_azimuth_deg=0.0, rng=np.random.default_rng(0))


def test_cli_renders_a_preset(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(synth.PRESETS, "tiny", dataclasses.replace(small_preset("easy", n_images=1), name="tiny"))
    assert synth.main(["--out", str(tmp_path), "--preset", "tiny", "--seed", "2", "--scene", "easy-boxes"]) == 0
    assert (tmp_path / "synth/easy-boxes/images/view_000.jpg").is_file()
    assert len(read_rows(tmp_path)) == 1
    assert synth.main(["--out", str(tmp_path), "--preset", "nope"]) == 2
    assert synth.main(["--list"]) == 0
    assert "demo" in capsys.readouterr().out


# ---- 5. the shipped demo data


def test_demo_data_is_complete_small_and_labelled():
    rows = read_rows(DEMO)
    assert {(r["dataset"], r["scene"]) for r in rows} == {("demo", "boxes"), ("demo", "courtyard")}
    files = sorted(p for p in DEMO.rglob("*") if p.is_file())
    assert sum(p.stat().st_size for p in files) < 2_000_000
    for row in rows:
        cam = camera_from_row(row)
        image = cv2.imread(str(DEMO / row["image_path"]))
        assert image is not None and image.shape[:2] == (cam.height, cam.width) == (480, 640)
    listed = {r["image_path"] for r in rows}
    on_disk = {str(p.relative_to(DEMO)) for p in DEMO.glob("*/*/images/*")}
    assert listed == on_disk


@pytest.mark.slow
def test_demo_data_is_reproducible_from_its_command(tmp_path):
    """imc/demo_data/README.md: ``python -m eval synth --out imc/demo_data --preset demo --seed 2023``."""
    synth.render_preset("demo", 2023, tmp_path)
    fresh_rows, shipped_rows = read_rows(tmp_path), read_rows(DEMO)
    assert [r["image_path"] for r in fresh_rows] == [r["image_path"] for r in shipped_rows]
    for fresh_row, shipped_row in zip(fresh_rows, shipped_rows):
        fresh_cam, shipped_cam = camera_from_row(fresh_row), camera_from_row(shipped_row)
        for name in ("K", "R", "t"):
            np.testing.assert_allclose(getattr(fresh_cam, name), getattr(shipped_cam, name), atol=1e-9)
    for row in read_rows(DEMO):
        shipped = cv2.imread(str(DEMO / row["image_path"])).astype(np.float32)
        fresh = cv2.imread(str(tmp_path / row["image_path"])).astype(np.float32)
        assert np.abs(shipped - fresh).mean() < 1.0, row["image_path"]  # same pixels up to the JPEG codec build
