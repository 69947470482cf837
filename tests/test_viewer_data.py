"""Viewer loaders and geometry: Umeyama alignment, frusta, run/sweep detection, partial runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from imc.viewer import data
from imc.viewer.figures import align_models
from imc.viewer.geometry import (
    AlignMethod,
    AlignmentError,
    Similarity,
    align_cameras,
    camera_center,
    frustum_corners,
    umeyama,
)

from .viewer_support import SCENE


def random_similarity(seed: int) -> Similarity:
    rng = np.random.default_rng(seed)
    return Similarity(scale=float(rng.uniform(0.2, 5)), R=Rotation.random(random_state=seed).as_matrix(),
                      t=rng.normal(size=3) * 10)


def test_umeyama_recovers_a_similarity():
    sim = random_similarity(1)
    src = np.random.default_rng(2).normal(size=(20, 3))
    est = umeyama(src, sim.apply(src))
    assert est.scale == pytest.approx(sim.scale, rel=1e-9)
    np.testing.assert_allclose(est.R, sim.R, atol=1e-9)
    np.testing.assert_allclose(est.t, sim.t, atol=1e-8)
    assert np.linalg.det(est.R) == pytest.approx(1.0)


def test_umeyama_never_returns_a_reflection():
    src = np.random.default_rng(3).normal(size=(10, 3))
    mirrored = src * [1, 1, -1]  # no rotation maps src onto its mirror image
    assert np.linalg.det(umeyama(src, mirrored).R) == pytest.approx(1.0)


def test_umeyama_rejects_too_few_or_coincident_points():
    with pytest.raises(AlignmentError, match="at least 3"):
        umeyama(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(AlignmentError, match="coincide"):
        umeyama(np.ones((4, 3)), np.random.default_rng(0).normal(size=(4, 3)))


def test_pose_transform_is_consistent_with_the_point_transform():
    sim = random_similarity(4)
    R, t = Rotation.random(random_state=5).as_matrix(), np.array([0.3, -1.0, 2.0])
    X = np.array([[1.0, 2.0, 3.0]])
    R2, t2 = sim.apply_to_pose(R, t)
    np.testing.assert_allclose(camera_center(R2, t2), sim.apply(camera_center(R, t))[0], atol=1e-9)
    # the same point seen by the same camera: camera coordinates scale with the world
    np.testing.assert_allclose(R2 @ sim.apply(X)[0] + t2, sim.scale * (R @ X[0] + t), atol=1e-9)


def test_align_cameras_moves_predictions_onto_ground_truth():
    sim = random_similarity(6)
    gt = {f"im{i}": (Rotation.random(random_state=10 + i).as_matrix(), np.random.default_rng(i).normal(size=3))
          for i in range(5)}
    inverse = Similarity(scale=1 / sim.scale, R=sim.R.T, t=-sim.R.T @ sim.t / sim.scale)
    pred = {k: inverse.apply_to_pose(R, t) for k, (R, t) in gt.items()}  # gt seen in another frame
    a = align_cameras(pred, gt)
    assert a.image_paths == sorted(gt) and a.median_error < 1e-8
    with pytest.raises(AlignmentError, match="only 2"):
        align_cameras({k: pred[k] for k in ("im0", "im1")}, gt)


def test_collinear_centres_take_the_rotation_from_the_cameras():
    sim = random_similarity(8)
    gt = {f"im{i}": (Rotation.random(random_state=20 + i).as_matrix(), None) for i in range(4)}
    gt = {k: (R, -R @ np.array([float(i), 0.0, 0.0])) for i, (k, (R, _)) in enumerate(gt.items())}  # on a line
    inverse = Similarity(scale=1 / sim.scale, R=sim.R.T, t=-sim.R.T @ sim.t / sim.scale)
    pred = {k: inverse.apply_to_pose(R, t) for k, (R, t) in gt.items()}
    a = align_cameras(pred, gt)
    assert a.method is AlignMethod.ROTATIONS and a.median_error < 1e-8
    np.testing.assert_allclose(a.transform.R, sim.R, atol=1e-9)


def test_frustum_apex_is_the_camera_centre():
    R, t = Rotation.random(random_state=7).as_matrix(), np.array([1.0, 2.0, 3.0])
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    corners = frustum_corners(R, t, K, 640, 480, size=2.0)
    np.testing.assert_allclose(corners[0], camera_center(R, t))
    dist = np.linalg.norm(corners[1:] - corners[0], axis=1)
    np.testing.assert_allclose(dist, 2.0)  # symmetric principal point: all corners equally far
    depth = (corners[1:] - corners[0]) @ R[2]  # in front of the camera (+z)
    assert np.all(depth > 0)


def test_output_kinds(tmp_path):
    assert data.output_kind(tmp_path / "nope") is data.OutputKind.MISSING
    assert data.output_kind(tmp_path) is data.OutputKind.EMPTY
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "results.csv").write_text("tag,mAA\na,0.5\n")
    assert data.output_kind(tmp_path / "sweep") is data.OutputKind.SWEEP
    (tmp_path / "runs" / "r1" / "scenes").mkdir(parents=True)
    assert data.output_kind(tmp_path / "runs" / "r1") is data.OutputKind.RUN
    assert data.output_kind(tmp_path / "runs") is data.OutputKind.FOLDER
    assert data.find_runs(tmp_path) == [tmp_path / "runs" / "r1"]


def test_load_run_errors_name_the_folder(tmp_path):
    with pytest.raises(data.ViewerDataError, match="does not exist"):
        data.load_run(tmp_path / "missing")
    with pytest.raises(data.ViewerDataError, match="not a run folder"):
        data.load_run(tmp_path)


def test_partial_run_reports_problems_instead_of_raising(tmp_path):
    report = {"dataset": "d", "scene": "s", "n_images": 3, "status": "ok",
              "paths": {"fuse": "cache/fused-x.h5", "pairs": "cache/pairs-x.txt"}}
    (tmp_path / "scenes" / "d" / "s").mkdir(parents=True)
    (tmp_path / "scenes" / "d" / "s" / "report.json").write_text(json.dumps(report))
    (tmp_path / "submission.csv").write_text("image_path,dataset,scene,rotation_matrix,translation_vector\n"
                                             "d/t/images/a.jpg,d,t,1;0;0;0;1;0;0;0;1,0;0;0\n")
    run = data.load_run(tmp_path)
    assert not run.complete
    assert [s.name for s in run.scenes] == ["d/s", "d/t"]
    assert run.scene("d/t").status == "not run"
    text = "\n".join(run.problems)
    assert "no summary.json" in text and "no config.yaml" in text and "not processed" in text
    s = run.scene("d/s")
    assert s.paths["fuse"] == tmp_path / "cache" / "fused-x.h5"  # relative paths: against the run
    assert s.path("fuse") is None  # not on disk
    with pytest.raises(data.ViewerDataError, match="no pairs file"):
        data.pair_table(s)
    with pytest.raises(data.ViewerDataError, match="no keypoints file"):
        data.load_keypoints(s, "d/s/images/a.jpg")


@pytest.mark.slow
def test_real_run_tables_pairs_and_models(viewer_run):
    run = data.load_run(viewer_run.run)
    assert run.complete and run.problems == [] and run.data_root == viewer_run.data_root
    score = json.loads((viewer_run.run / "score.json").read_text())
    table = data.scene_table(run)
    row = table.set_index("scene").loc[SCENE]
    assert row["status"] == "ok" and row["images"] == 4 and row["registered"] >= 3
    assert row["mAA"] == pytest.approx(score["scenes"][SCENE])

    scene = run.scene(SCENE)
    pairs = data.pair_table(scene)
    assert len(pairs) == 6 and (pairs["inliers"].fillna(0) <= pairs["matches"].fillna(0)).all()
    best = pairs.iloc[0]
    pair = data.load_pair(scene, best.image0, best.image1)
    assert len(pair.matches) == best.matches and len(pair.inliers) == best.inliers > 0
    assert pair.inlier_mask.sum() == len(pair.inliers)  # verified matches are raw matches
    flipped = data.load_pair(scene, best.image1, best.image0)
    np.testing.assert_array_equal(flipped.matches, pair.matches[:, ::-1])

    models = data.load_models(scene.path("sfm"))
    assert sum(len(m.cameras) for m in models) >= row["registered"]
    gt = data.load_gt_poses(viewer_run.labels, SCENE)
    view = align_models(models, gt)
    assert view.alignments and view.gt
    a = view.alignments[models[0].index]
    gt_centers = np.array([camera_center(*gt[p]) for p in a.image_paths])
    spread = max(np.linalg.norm(c - d) for c in gt_centers for d in gt_centers)
    assert a.median_error < 0.5 * spread, (a.center_errors, spread)  # 320 px photos: coarse positions
    for c in view.models[0].cameras:  # orientations in the ground-truth frame after alignment
        delta = c.R @ gt[c.image_path][0].T
        assert np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1))) < 10, c.image_path


@pytest.mark.slow
def test_score_run_from_labels_matches_score_json(viewer_run, tmp_path):
    shutil.copytree(viewer_run.run, tmp_path / "run")
    (tmp_path / "run" / "score.json").unlink()
    run = data.load_run(tmp_path / "run")
    assert all(s.maa is None for s in run.scenes)
    score = data.score_run(run, viewer_run.labels)
    data.apply_scores(run.scenes, score)
    expected = json.loads((viewer_run.run / "score.json").read_text())["scenes"][SCENE]
    assert run.scene(SCENE).maa == pytest.approx(expected)


@pytest.mark.slow
def test_images_ranked_by_error_worst_first_with_provenance(viewer_run, tmp_path):
    """Each image's median pair error against the ground truth, worst first, with how it got its pose;
    choosing one lists its pairs and partners."""
    import shutil as _shutil

    run = data.load_run(viewer_run.run)
    scene = run.scene(SCENE)
    table = data.image_errors(run, scene, viewer_run.labels)
    assert len(table) == 4 and set(table["how"]) <= {"mapper", "relocalised", "merged", "two_view", "not registered"}
    assert list(table["pairs accurate"]) == sorted(table["pairs accurate"])  # worst first
    registered = table[table["how"] != "not registered"]
    assert (registered["observations"] > 0).all()
    # an image whose pose is made wrong (turned by 90 deg) comes first, with every pair failing
    _shutil.copytree(viewer_run.run, tmp_path / "run")
    sub = tmp_path / "run" / "submission.csv"
    rows = sub.read_text().splitlines()
    victim = rows[1].split(",")[0]
    cells = rows[1].split(",")
    cells[3] = "0.0;-1.0;0.0;1.0;0.0;0.0;0.0;0.0;1.0"
    rows[1] = ",".join(cells)
    sub.write_text("\n".join(rows) + "\n")
    broken = data.load_run(tmp_path / "run")
    worst = data.image_errors(broken, broken.scene(SCENE), viewer_run.labels).iloc[0]
    assert worst["image"] == victim and worst["pairs accurate"] == 0 and worst["median err_R (deg)"] > 45
    pairs = data.pairs_of(data.pair_table(scene), victim)
    assert len(pairs) == 3 and victim not in set(pairs["partner"])
