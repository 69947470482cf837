"""``python -m imc oracle``: a mapped scene against its ground-truth poses, re-triangulated and bundle-adjusted."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pycolmap
import pytest

from imc.sfm.oracle import OracleError, main, oracle

from .test_sfm_refine import map_synthetic, perturb, stage_inputs, synthetic

COLUMNS = ["dataset", "scene", "image_path", "rotation_matrix", "translation_vector", "calibration_matrix"]


def write_labels(path, rec: pycolmap.Reconstruction, *, scene: str = "ring", calibration: bool = True):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS if calibration else COLUMNS[:5])
        w.writeheader()
        for im in sorted(rec.images.values(), key=lambda im: im.name):
            pose = im.cam_from_world()
            row = {"dataset": "synth", "scene": scene, "image_path": im.name,
                   "rotation_matrix": ";".join(map("{:.17g}".format, pose.rotation.matrix().ravel())),
                   "translation_vector": ";".join(map("{:.17g}".format, pose.translation))}
            if calibration:
                row["calibration_matrix"] = ";".join(map("{:.17g}".format, rec.cameras[im.camera_id].calibration_matrix().ravel()))
            w.writerow(row)
    return path


@pytest.fixture
def mapped(tmp_path):
    """A synthetic scene mapped by the sfm stage, its labels, and a copy of its sfm folder with one image turned 30°."""
    _, conf = stage_inputs(tmp_path)
    sfm_dir = map_synthetic(tmp_path, conf)
    truth, _, _ = synthetic(num_frames=8, seed=1)
    labels = write_labels(tmp_path / "labels.csv", truth)
    wrong = tmp_path / "sfm-wrong"
    shutil.copytree(sfm_dir, wrong)
    model = pycolmap.Reconstruction(wrong / "models" / "0")
    perturb(model, sorted(im.name for im in model.images.values())[3], 30.0)
    model.write(wrong / "models" / "0")
    return sfm_dir, wrong, labels, truth


def test_the_ground_truth_poses_rescore_a_model_with_a_wrong_pose(mapped, tmp_path):
    good, wrong, labels, truth = mapped
    before = {im.name: im.cam_from_world().matrix() for im in pycolmap.Reconstruction(wrong / "models" / "0").images.values()}
    rows = {(r.variant, r.intrinsics): r for r in oracle(wrong, labels).rows}
    assert rows[("mapper", "mapper")].maa < 0.8
    for intrinsics in ("mapper", "ground truth"):
        triangulated = rows[("ground-truth poses, triangulated", intrinsics)]
        adjusted = rows[("ground-truth poses, then bundle adjustment", intrinsics)]
        assert triangulated.maa == pytest.approx(1.0) and triangulated.observations > 1000
        assert adjusted.maa > 0.99 and adjusted.reprojection_px < 1.0
    assert oracle(good, labels).rows[0].maa > 0.99  # the untouched model scores as mapped
    after = pycolmap.Reconstruction(wrong / "models" / "0")  # the cached model is never changed
    assert all(np.allclose(im.cam_from_world().matrix(), before[im.name]) for im in after.images.values())


def test_labels_without_intrinsics_give_only_the_mapper_camera_rows(mapped, tmp_path, capsys):
    _, wrong, _, truth = mapped
    labels = write_labels(tmp_path / "plain.csv", truth, calibration=False)
    report = oracle(wrong, labels)
    assert {r.intrinsics for r in report.rows} == {"mapper"} and len(report.rows) == 3
    assert any("calibration_matrix" in n for n in report.notes)
    assert main([str(wrong), "--labels", str(labels)]) == 0
    assert "| mapper | " in capsys.readouterr().out


def test_labels_of_another_scene_and_a_folder_without_models_are_named(mapped, tmp_path, capsys):
    _, wrong, _, _ = mapped
    other, _, _ = synthetic(num_frames=4, seed=5)
    for im in other.images.values():
        im.name = "elsewhere/other_" + im.name
    labels = write_labels(tmp_path / "other.csv", other)
    with pytest.raises(OracleError, match="no labelled image"):
        oracle(wrong, labels)
    assert main([str(tmp_path), "--labels", str(labels)]) == 2
    assert "no models/<k> folder" in capsys.readouterr().err
