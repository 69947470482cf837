"""The IMC 2023 mAA: vectorised metric vs an independent per-pair loop, invariances, hand-computed cases."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from eval.__main__ import main as eval_main
from eval.metric import accuracy_curves, pair_errors, quaternion_from_matrix
from eval.score import main as score_main
from eval.score import score
from eval.thresholds import ThresholdsError, load_thresholds, thresholds_from_dict

REPO = Path(__file__).resolve().parents[1]
REAL_LABELS = REPO.parent / "shared" / "data" / "imc2023" / "train_labels.csv"
COLUMNS = ["image_path", "dataset", "scene", "rotation_matrix", "translation_vector"]
needs_real_labels = pytest.mark.skipif(
    not REAL_LABELS.is_file(), reason=f"real IMC 2023 labels not found at {REAL_LABELS} (../shared missing)"
)


# ----------------------------------------------------------------------------- helpers


def fmt(values) -> str:
    return ";".join(repr(float(v)) for v in np.asarray(values).ravel())


def write_poses(path: Path, dataset: str, scene: str, R, t, names=None) -> Path:
    names = names or [f"{dataset}/{scene}/images/img{k:03d}.jpg" for k in range(len(R))]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for name, Rk, tk in zip(names, R, t):
            w.writerow([name, dataset, scene, fmt(Rk), fmt(tk)])
    return path


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def random_scene(n: int, seed: int, spread: float = 5.0):
    """World-to-camera poses of n cameras with random orientation and centre."""
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    C = rng.normal(scale=spread, size=(n, 3))
    t = -np.einsum("nij,nj->ni", R, C)
    return R, t


def perturb(R, t, seed: int, rot_deg: float = 3.0, trans: float = 0.3):
    rng = np.random.default_rng(seed)
    dR = Rotation.from_rotvec(np.radians(rot_deg) * rng.normal(size=(len(R), 3))).as_matrix()
    return dR @ R, t + trans * rng.normal(size=t.shape)


def similarity(R, t, s: float, Q, u):
    """Poses after the world change x_w' = s·Q·x_w + u (the camera frames scale with the world).

    x_c = R x_w + t = R Qᵀ (x_w' − u)/s + t, so s·x_c = (R Qᵀ) x_w' + (s·t − R Qᵀ u):
    R' = R Qᵀ and t' = s·t − R Qᵀ u (the uniform factor s on x_c is the scale ambiguity).
    """
    R2 = R @ Q.T
    t2 = s * t - np.einsum("nij,j->ni", R2, u)
    return R2, t2


def reference_errors(R_gt, t_gt, R, t):
    """Straightforward per-pair loop, independent of eval.metric: angle from the trace, plain norms."""
    err_R, err_t = [], []
    n = len(R_gt)
    for i in range(n):
        for j in range(i + 1, n):
            dR_gt = R_gt[j] @ R_gt[i].T
            dT_gt = t_gt[j] - dR_gt @ t_gt[i]
            dR = R[j] @ R[i].T
            dT = t[j] - dR @ t[i]
            cos = (np.trace(dR @ dR_gt.T) - 1.0) / 2.0
            err_R.append(math.degrees(math.acos(min(1.0, max(-1.0, cos)))))
            gt_len = np.linalg.norm(dT_gt)
            dT_scaled = dT / np.linalg.norm(dT) * gt_len
            err_t.append(min(np.linalg.norm(dT_gt - dT_scaled), np.linalg.norm(dT_gt + dT_scaled)))
    return np.array(err_R), np.array(err_t)


def reference_maa(err_R, err_t, th_R, th_t) -> float:
    accs = []
    for a, b in zip(th_R, th_t):
        accs.append(sum(1 for eR, et in zip(err_R, err_t) if eR <= a and et <= b) / len(err_R))
    return sum(accs) / len(accs)


ONE_SCENE_THRESHOLDS = thresholds_from_dict(
    {"default": {"rotation_deg": {"linspace": [1, 10, 10]}, "translation_m": {"geomspace": [0.1, 2, 10]}}}
)


# ----------------------------------------------------------------------------- metric functions


def test_quaternion_matches_scipy_and_known_values():
    assert np.allclose(quaternion_from_matrix(np.eye(3)), [1, 0, 0, 0])
    theta = np.radians(40.0)
    Rz = Rotation.from_euler("z", theta).as_matrix()
    assert np.allclose(quaternion_from_matrix(Rz), [math.cos(theta / 2), 0, 0, math.sin(theta / 2)])
    rots = Rotation.random(500, random_state=1)
    q = quaternion_from_matrix(rots.as_matrix())
    xyzw = rots.as_quat()
    expected = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    expected *= np.where(expected[:, :1] < 0, -1.0, 1.0)
    assert q.shape == (500, 4)
    assert np.all(q[:, 0] >= 0)
    assert np.allclose(q, expected, atol=1e-12)


def test_vectorised_errors_match_per_pair_loop():
    R_gt, t_gt = random_scene(25, seed=3)
    R, t = perturb(R_gt, t_gt, seed=4, rot_deg=4.0, trans=1.0)
    err_R, err_t = pair_errors(R_gt, t_gt, R, t)
    ref_R, ref_t = reference_errors(R_gt, t_gt, R, t)
    assert err_R.shape == (25 * 24 // 2,)
    assert np.allclose(err_R, ref_R, atol=1e-6)
    assert np.allclose(err_t, ref_t, rtol=1e-9, atol=1e-9)
    th_R, th_t = np.linspace(1, 10, 10), np.geomspace(0.1, 2, 10)
    curves = accuracy_curves(err_R, err_t, th_R, th_t)
    assert 0.0 < curves.maa < 1.0
    assert curves.maa == pytest.approx(reference_maa(ref_R, ref_t, th_R, th_t), abs=1e-12)


def test_score_matches_loop_reference_end_to_end(tmp_path):
    R_gt, t_gt = random_scene(12, seed=5)
    R, t = perturb(R_gt, t_gt, seed=6)
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    sub = write_poses(tmp_path / "sub.csv", "d", "s", R, t)
    report = score(sub, labels, thresholds=ONE_SCENE_THRESHOLDS)
    ref_R, ref_t = reference_errors(R_gt, t_gt, R, t)
    expected = reference_maa(ref_R, ref_t, np.linspace(1, 10, 10), np.geomspace(0.1, 2, 10))
    assert 0.0 < expected < 1.0
    assert report.overall == pytest.approx(expected, abs=1e-12)
    s = report.scenes["d/s"]
    assert s.n_pairs == 66 and s.n_images == 12 and s.n_registered == 12
    assert s.median_err_R_deg == pytest.approx(np.median(ref_R), abs=1e-6)
    assert s.median_err_t_m == pytest.approx(np.median(ref_t), abs=1e-9)


def test_accuracy_thresholds_are_inclusive():
    err = np.array([1.0, 2.0, 3.0])
    curves = accuracy_curves(err, err, thresholds_R=[2.0, 3.0], thresholds_t=[2.0, 3.0])
    assert curves.acc.tolist() == [2 / 3, 1.0]


def test_inclusive_at_computed_boundary_end_to_end(tmp_path):
    """A one-pair scene with thresholds set exactly to that pair's errors counts as accurate."""
    R_gt, t_gt = random_scene(2, seed=7)
    R, t = perturb(R_gt, t_gt, seed=8)
    err_R, err_t = pair_errors(R_gt, t_gt, R, t)
    assert err_R[0] > 0.1 and err_t[0] > 0.01
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    sub = write_poses(tmp_path / "sub.csv", "d", "s", R, t)

    def at(eR: float, et: float) -> float:
        th = thresholds_from_dict(
            {"default": {"rotation_deg": {"values": [eR]}, "translation_m": {"values": [et]}}}
        )
        return score(sub, labels, thresholds=th).overall

    assert at(float(err_R[0]), float(err_t[0])) == 1.0
    assert at(float(np.nextafter(err_R[0], 0)), float(err_t[0])) == 0.0
    assert at(float(err_R[0]), float(np.nextafter(err_t[0], 0))) == 0.0


# ----------------------------------------------------------------------------- whole-score properties


def test_small_scene_gt_vs_itself_is_perfect(tmp_path):
    R, t = random_scene(8, seed=9)
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R, t)
    report = score(labels, labels, thresholds=ONE_SCENE_THRESHOLDS)
    assert report.overall == 1.0
    assert report.scenes["d/s"].maa_q == 1.0 and report.scenes["d/s"].maa_t == 1.0


@needs_real_labels
def test_real_train_labels_vs_itself_is_perfect_and_fast(tmp_path):
    sub = write_rows(tmp_path / "sub.csv", read_rows(REAL_LABELS))
    start = time.perf_counter()
    report = score(sub, REAL_LABELS)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"scoring train_labels took {elapsed:.2f} s"
    assert report.overall == 1.0
    assert set(report.datasets) == {"haiper", "heritage", "urban"}
    assert len(report.scenes) == 7
    assert report.scenes["heritage/dioscuri"].n_pairs == 15051
    assert all(s.maa == 1.0 and s.n_registered == s.n_images for s in report.scenes.values())


@pytest.mark.parametrize("s", [3.7, 0.01])
def test_global_similarity_of_prediction_leaves_score_unchanged(tmp_path, s):
    R_gt, t_gt = random_scene(15, seed=10)
    R, t = perturb(R_gt, t_gt, seed=11, rot_deg=3.0, trans=0.5)
    Q = Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix()
    u = np.array([10.0, -4.0, 7.5])
    R2, t2 = similarity(R, t, s, Q, u)
    e1 = pair_errors(R_gt, t_gt, R, t)
    e2 = pair_errors(R_gt, t_gt, R2, t2)
    assert np.allclose(e1[0], e2[0], atol=1e-6) and np.allclose(e1[1], e2[1], atol=1e-9)
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    r1 = score(write_poses(tmp_path / "a.csv", "d", "s", R, t), labels, thresholds=ONE_SCENE_THRESHOLDS)
    r2 = score(write_poses(tmp_path / "b.csv", "d", "s", R2, t2), labels, thresholds=ONE_SCENE_THRESHOLDS)
    assert 0.0 < r1.overall < 1.0
    assert r2.overall == r1.overall


@needs_real_labels
def test_real_labels_transformed_by_similarity_still_perfect(tmp_path):
    rows = read_rows(REAL_LABELS)
    Q = Rotation.from_euler("xyz", [20, -50, 130], degrees=True).as_matrix()
    for row in rows:
        R = np.array(row["rotation_matrix"].split(";"), float).reshape(1, 3, 3)
        t = np.array(row["translation_vector"].split(";"), float).reshape(1, 3)
        R2, t2 = similarity(R, t, 0.37, Q, np.array([3.0, 100.0, -20.0]))
        row["rotation_matrix"], row["translation_vector"] = fmt(R2), fmt(t2)
    report = score(write_rows(tmp_path / "sub.csv", rows), REAL_LABELS)
    assert report.overall == 1.0


def test_shuffled_rows_leave_score_unchanged(tmp_path):
    R_gt, t_gt = random_scene(10, seed=12)
    R, t = perturb(R_gt, t_gt, seed=13)
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    sub = write_poses(tmp_path / "sub.csv", "d", "s", R, t)
    rows = read_rows(sub)
    shuffled = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))]
    assert shuffled != rows
    r1 = score(sub, labels, thresholds=ONE_SCENE_THRESHOLDS)
    r2 = score(write_rows(tmp_path / "shuffled.csv", shuffled), labels, thresholds=ONE_SCENE_THRESHOLDS)
    assert r1.to_dict() == r2.to_dict()


def test_first_image_rotated_by_known_angle(tmp_path):
    """Rotate camera 0 (first in the labels) by 4.5° about its own centre.

    R0' = Rx R0, t0' = Rx t0. Pairs (0, j): dR' = dR Rxᵀ → err_R = 4.5° exactly, and
    dT' = t_j − dR Rxᵀ Rx t0 = dT → err_t = 0. The other 6 of the 10 pairs are exact.
    With thresholds 1..10°, 4.5° fails at 1, 2, 3, 4 and passes at 5..10, so
    acc = [0.6]*4 + [1.0]*6 and mAA = (4·0.6 + 6)/10 = 0.84; mAA_t = 1.
    """
    R_gt, t_gt = random_scene(5, seed=14)
    Rx = Rotation.from_rotvec(np.radians(4.5) * np.array([1.0, 2.0, -0.5]) / math.sqrt(5.25)).as_matrix()
    R, t = R_gt.copy(), t_gt.copy()
    R[0], t[0] = Rx @ R_gt[0], Rx @ t_gt[0]
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    report = score(write_poses(tmp_path / "sub.csv", "d", "s", R, t), labels, thresholds=ONE_SCENE_THRESHOLDS)
    s = report.scenes["d/s"]
    assert s.acc == pytest.approx([0.6] * 4 + [1.0] * 6, abs=1e-12)
    assert s.maa == pytest.approx(0.84, abs=1e-12)
    assert s.maa_q == pytest.approx(0.84, abs=1e-12)
    assert s.maa_t == 1.0


def test_last_image_rotated_beyond_all_thresholds(tmp_path):
    """Cameras on the x axis, all looking along z; the last one is rotated 12° about x.

    Pairs (i, 4): err_R = 12° > 10° (fails everywhere); dT = R4 (C_i − C4) lies on the x axis,
    which the rotation about x keeps, so err_t = 0. 4 of 10 pairs fail: mAA = 0.6, mAA_t = 1.
    """
    n = 5
    R_gt = np.repeat(np.eye(3)[None], n, axis=0)
    C = np.array([[2.0 * k, 0.0, 0.0] for k in range(n)])
    t_gt = -C
    R, t = R_gt.copy(), t_gt.copy()
    Rx = Rotation.from_euler("x", 12.0, degrees=True).as_matrix()
    R[-1], t[-1] = Rx @ R_gt[-1], Rx @ t_gt[-1]
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    report = score(write_poses(tmp_path / "sub.csv", "d", "s", R, t), labels, thresholds=ONE_SCENE_THRESHOLDS)
    s = report.scenes["d/s"]
    assert s.maa == pytest.approx(0.6, abs=1e-12)
    assert s.maa_t == 1.0
    assert sorted(np.round(s.err_R_deg, 4)) == [0.0] * 6 + [12.0] * 4


def test_one_camera_moved_hand_computed_translation_errors(tmp_path):
    """Three cameras with R = I at C0=(0,0,0), C1=(2,0,0), C2=(0,2,0); C2 predicted at (0.2,2,0).

    dT(i,j) = C_i − C_j. Pair (0,1) exact. Pair (0,2): GT (0,−2,0) vs (−0.2,−2,0): angle
    atan(0.1), err = 2·2·sin(atan(0.1)/2) = 0.19926. Pair (1,2): GT (2,−2,0) (length 2√2) vs
    (1.8,−2,0): angle 45° − atan(1.8/2)... = atan(2/1.8) − 45°, err = 2·2√2·sin(angle/2) = 0.14868.
    Thresholds 0.1, 0.17, 0.3 m → accuracies 1/3, 2/3, 1 → mAA 2/3.
    """
    e02 = 4 * math.sin(math.atan(0.1) / 2)
    e12 = 4 * math.sqrt(2) * math.sin((math.atan(2 / 1.8) - math.pi / 4) / 2)
    assert 0.1 < e12 < 0.17 < e02 < 0.3
    R_gt = np.repeat(np.eye(3)[None], 3, axis=0)
    C = np.array([[0.0, 0, 0], [2.0, 0, 0], [0.0, 2, 0]])
    C_pred = C.copy()
    C_pred[2] = [0.2, 2.0, 0.0]
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, -C)
    sub = write_poses(tmp_path / "sub.csv", "d", "s", R_gt, -C_pred)
    th = thresholds_from_dict(
        {"default": {"rotation_deg": {"values": [1, 1, 1]}, "translation_m": {"values": [0.1, 0.17, 0.3]}}}
    )
    s = score(sub, labels, thresholds=th).scenes["d/s"]
    assert s.err_t_m == pytest.approx([0.0, e02, e12], abs=1e-12)
    assert s.acc == pytest.approx([1 / 3, 2 / 3, 1.0], abs=1e-12)
    assert s.maa == pytest.approx(2 / 3, abs=1e-12)


def _expected_all_identity_maa(R_gt, t_gt, th_R, th_t) -> float:
    """With every prediction (I, 0): dR = I → err_R = angle(dR_gt); dT = 0 → err_t = ‖dT_gt‖."""
    ok = []
    n = len(R_gt)
    for a, b in zip(th_R, th_t):
        hits = 0
        for i in range(n):
            for j in range(i + 1, n):
                dR = R_gt[j] @ R_gt[i].T
                angle = math.degrees(Rotation.from_matrix(dR).magnitude())
                dist = np.linalg.norm(t_gt[j] - dR @ t_gt[i])
                hits += angle <= a and dist <= b
        ok.append(hits / (n * (n - 1) / 2))
    return float(np.mean(ok))


def test_all_identity_prediction_small_scene(tmp_path):
    # Small rotations and baselines so that some pairs pass with the identity prediction.
    rng = np.random.default_rng(15)
    n = 12
    R_gt = Rotation.from_rotvec(np.radians(3.0) * rng.normal(size=(n, 3))).as_matrix()
    t_gt = rng.normal(scale=0.6, size=(n, 3))
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    ident = write_poses(tmp_path / "sub.csv", "d", "s", np.repeat(np.eye(3)[None], n, 0), np.zeros((n, 3)))
    s = score(ident, labels, thresholds=ONE_SCENE_THRESHOLDS).scenes["d/s"]
    expected = _expected_all_identity_maa(R_gt, t_gt, np.linspace(1, 10, 10), np.geomspace(0.1, 2, 10))
    assert 0.0 < expected < 1.0
    assert s.maa == pytest.approx(expected, abs=1e-12)
    assert s.n_registered == 0


@needs_real_labels
def test_all_identity_prediction_real_labels(tmp_path):
    rows = read_rows(REAL_LABELS)
    for row in rows:
        row["rotation_matrix"], row["translation_vector"] = fmt(np.eye(3)), fmt(np.zeros(3))
    report = score(write_rows(tmp_path / "sub.csv", rows), REAL_LABELS)
    th = load_thresholds()
    per_dataset: dict[str, list[float]] = {}
    by_scene: dict[tuple[str, str], list[dict]] = {}
    for row in read_rows(REAL_LABELS):
        by_scene.setdefault((row["dataset"], row["scene"]), []).append(row)
    for (d, sc), group in by_scene.items():
        R = np.stack([np.array(r["rotation_matrix"].split(";"), float).reshape(3, 3) for r in group])
        t = np.stack([np.array(r["translation_vector"].split(";"), float) for r in group])
        st = th.for_scene(d, sc)
        expected = _expected_all_identity_maa(R, t, st.rotation_deg, st.translation_m)
        assert report.scenes[f"{d}/{sc}"].maa == pytest.approx(expected, abs=1e-12)
        assert report.scenes[f"{d}/{sc}"].n_registered == 0
        per_dataset.setdefault(d, []).append(expected)
    overall = np.mean([np.mean(v) for v in per_dataset.values()])
    assert report.overall == pytest.approx(overall, abs=1e-12)
    assert report.overall < 0.1


def test_gt_translation_scale_multiplies_translation_errors(tmp_path):
    R_gt, t_gt = random_scene(6, seed=16)
    R, t = perturb(R_gt, t_gt, seed=17)
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    sub = write_poses(tmp_path / "sub.csv", "d", "s", R, t)
    base = {"rotation_deg": {"linspace": [1, 10, 10]}, "translation_m": {"geomspace": [0.1, 2, 10]}}
    scaled = thresholds_from_dict({"default": base, "scenes": {"d/s": {"gt_translation_scale": 2.5}}})
    s1 = score(sub, labels, thresholds=ONE_SCENE_THRESHOLDS).scenes["d/s"]
    s2 = score(sub, labels, thresholds=scaled).scenes["d/s"]
    assert s2.gt_translation_scale == 2.5
    assert np.allclose(s2.err_t_m, 2.5 * s1.err_t_m, rtol=1e-12)
    assert np.allclose(s2.err_R_deg, s1.err_R_deg, atol=1e-9)


# ----------------------------------------------------------------------------- thresholds config


def test_repo_thresholds_are_the_official_ones():
    th = load_thresholds()
    wall = th.for_scene("heritage", "wall")
    assert np.allclose(wall.rotation_deg, np.linspace(0.2, 10, 10))
    assert np.allclose(wall.translation_m, np.geomspace(0.05, 1, 10))
    kyiv = th.for_scene("urban", "kyiv-puppet-theater")
    assert np.allclose(kyiv.rotation_deg, np.linspace(1, 10, 10))
    assert np.allclose(kyiv.translation_m, np.geomspace(0.5, 5, 10))
    for scene in ("bike", "chairs", "fountain"):
        assert np.allclose(th.for_scene("haiper", scene).translation_m, np.geomspace(0.05, 0.5, 10))
    for scene in ("cyprus", "dioscuri"):
        assert np.allclose(th.for_scene("heritage", scene).translation_m, np.geomspace(0.1, 2, 10))
    other = th.for_scene("strecha", "fountain-P11")
    assert other.source == "default"
    assert np.allclose(other.rotation_deg, np.linspace(1, 10, 10))
    assert other.is_relative and other.translation_m == ()  # scale-relative, resolved against the labels
    assert np.allclose(other.translation_relative, np.geomspace(0.02, 0.2, 10))
    assert all(th.for_scene(*k.split("/")).gt_translation_scale == 1.0 for k in th.scenes)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"scenes": {}}, "default"),
        ({"default": {"rotation_deg": {"linspace": [1, 10, 10]}}}, "translation_m"),
        (
            {"default": {"rotation_deg": {"linspace": [1, 10, 10]}, "translation_m": {"geomspace": [0.1, 2, 9]}}},
            "10 rotation thresholds vs 9",
        ),
        (
            {"default": {"rotation_deg": {"lnspace": [1, 10, 10]}, "translation_m": {"geomspace": [0.1, 2, 10]}}},
            "unknown spacing 'lnspace'",
        ),
        (
            {
                "default": {"rotation_deg": {"linspace": [1, 10, 10]}, "translation_m": {"geomspace": [0.1, 2, 10]}},
                "scenes": {"a/b": {"rotation_degs": {"values": [1]}}},
            },
            "unknown keys ['rotation_degs']",
        ),
        (
            {
                "default": {"rotation_deg": {"linspace": [1, 10, 10]}, "translation_m": {"geomspace": [0.1, 2, 10]}},
                "scenes": {"nodataset": {}},
            },
            "'dataset/scene'",
        ),
    ],
)
def test_bad_thresholds_config_is_rejected(data, fragment):
    with pytest.raises(ThresholdsError) as info:
        thresholds_from_dict(data)
    assert fragment in str(info.value)


def test_missing_thresholds_file_is_a_clear_error(tmp_path):
    with pytest.raises(ThresholdsError, match="thresholds file not found"):
        load_thresholds(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- CLI


def test_cli_prints_table_and_writes_json_and_plots(tmp_path, capsys):
    R_gt, t_gt = random_scene(6, seed=18)
    R, t = perturb(R_gt, t_gt, seed=19)
    labels = write_poses(tmp_path / "labels.csv", "d", "s", R_gt, t_gt)
    sub = write_poses(tmp_path / "sub.csv", "d", "s", R, t)
    out = tmp_path / "out" / "score.json"
    rc = eval_main(
        ["score", "--submission", str(sub), "--labels", str(labels), "--json", str(out), "--plot", str(tmp_path / "plots")]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "d/s" in printed and "overall" in printed
    data = json.loads(out.read_text())
    assert set(data) >= {"overall", "datasets", "scenes", "details"}
    assert data["scenes"]["d/s"] == data["overall"] == data["datasets"]["d"]
    assert data["details"]["d/s"]["n_pairs"] == 15
    assert (tmp_path / "plots" / "d__s.png").stat().st_size > 1000


def test_dispatcher_rejects_unknown_command(capsys):
    assert eval_main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert eval_main(["--help"]) == 0
    assert "score" in capsys.readouterr().out


def test_cli_score_with_scene_selection(tmp_path, capsys):
    R_gt, t_gt = random_scene(4, seed=20)
    labels = tmp_path / "labels.csv"
    rows_a = read_rows(write_poses(tmp_path / "a.csv", "d", "a", R_gt, t_gt))
    rows_b = read_rows(write_poses(tmp_path / "b.csv", "d", "b", R_gt, t_gt))
    write_rows(labels, rows_a + rows_b)
    sub = write_rows(tmp_path / "sub.csv", rows_a)
    assert score_main(["--submission", str(sub), "--labels", str(labels)]) == 2
    assert "'d/b': 4 of 4 labelled image(s) missing" in capsys.readouterr().err
    assert score_main(["--submission", str(sub), "--labels", str(labels), "--scenes", "d/a"]) == 0
