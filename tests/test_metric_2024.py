"""The IMC 2024 metric: GT scores 1, similarity invariance, hand-computed counts, NaN rows, refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from eval.imc2024 import load_thresholds, score
from eval.score import main as score_main
from eval.submission import LabelsError, SubmissionError

COLUMNS = ["image_path", "dataset", "scene", "rotation_matrix", "translation_vector"]


def fmt(v) -> str:
    return ";".join(repr(float(x)) for x in np.asarray(v).ravel())


def make_gt(datasets=(("church", 10), ("transp_obj_glass_cup", 6)), seed=0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for d, n in datasets:
        c = rng.normal(size=(n, 3)) * (2.0 if d == "church" else 0.2)
        R = Rotation.random(n, random_state=seed).as_matrix()
        t = -np.einsum("nab,nb->na", R, c)
        rows += [dict(image_path=f"{d}/images/{k:03d}.png", dataset=d, scene=d, R=R[k], t=t[k]) for k in range(n)]
    return rows


def write(path: Path, rows) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r["image_path"], r["dataset"], r["scene"], fmt(r["R"]), fmt(r["t"])])
    return path


def run(tmp_path, gt, sub, th=None):
    return score(write(tmp_path / "sub.csv", sub), write(tmp_path / "gt.csv", gt), th)


def moved(rows, s, seed):
    Q = Rotation.random(random_state=seed).as_matrix()
    out = []
    for r in rows:
        c = s * Q @ (-r["R"].T @ r["t"]) + 7.0
        R2 = r["R"] @ Q.T
        out.append(dict(r, R=R2, t=-R2 @ c))
    return out


def test_published_thresholds_loaded():
    th = load_thresholds()
    assert th.datasets["church"] == (0.025, 0.05, 0.1, 0.2, 0.5, 1.0)
    assert th.datasets["transp_obj_glass_cylinder"] == (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)
    assert len(th.datasets) == 7


def test_ground_truth_and_similarity_score_one(tmp_path):
    gt = make_gt()
    assert run(tmp_path, gt, gt).overall == pytest.approx(1.0)
    assert run(tmp_path, gt, moved(gt, 0.01, 3)).overall == pytest.approx(1.0)


def test_hand_computed_nan_and_displaced_cameras(tmp_path):
    # church: 10 cameras; 2 nan, 1 displaced by 3 m (never within 1 m, even after a refit on all 8).
    # counts per threshold [7]*6 -> sum(max(c-3,0)) = 6*4 = 24; mAA = 24 / (6 * (10 - 3)).
    # cup: exact -> 1.  overall = mean.
    gt = make_gt()
    sub = [dict(r) for r in gt]
    for k in (0, 1):
        sub[k]["R"], sub[k]["t"] = np.full((3, 3), np.nan), np.full(3, np.nan)
    R = sub[2]["R"]
    sub[2]["t"] = sub[2]["t"] - R @ np.array([3.0, 0.0, 0.0])
    rep = run(tmp_path, gt, sub)
    church = next(v for k, v in rep.details.items() if v["dataset"] == "church")
    assert church["registered"] == [7] * 6
    assert rep.datasets["church"] == pytest.approx(24 / 42)
    assert rep.overall == pytest.approx((24 / 42 + 1.0) / 2)


def test_row_order_does_not_matter(tmp_path):
    gt = make_gt()
    sub = moved(gt, 2.0, 1)
    sub[3] = dict(sub[3], t=sub[3]["t"] + 1.0)
    a = run(tmp_path, gt, sub).overall
    b = run(tmp_path, gt, sub[::-1]).overall
    assert a == pytest.approx(b) and a < 1.0


def test_refusals_name_rows(tmp_path):
    gt = make_gt()
    with pytest.raises(SubmissionError, match=r"missing.*church/images/000.png"):
        run(tmp_path, gt, gt[1:])
    with pytest.raises(SubmissionError, match=r"line 3: duplicate image_path"):
        run(tmp_path, gt, [gt[0], gt[0]] + gt[1:])
    with pytest.raises(LabelsError, match="more than 3 images"):
        run(tmp_path, gt[:3], gt[:3])


def test_cli(tmp_path):
    gt = make_gt()
    out = tmp_path / "r.json"
    rc = score_main(["--metric", "imc2024", "--submission", str(write(tmp_path / "s.csv", gt)),
                     "--labels", str(write(tmp_path / "g.csv", gt)), "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["metric"] == "imc2024" and data["overall"] == pytest.approx(1.0)
    assert set(data["datasets"]) == {"church", "transp_obj_glass_cup"}
