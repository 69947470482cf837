"""imc.cluster (graph -> clusters + outliers) and imc.formats (the IMC 2025 CSV writer)."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import pytest

from eval.imc2025 import score
from imc.cluster import ClusterInputError, ClusterOptions, cluster_images
from imc.formats import SampleRow, SampleSubmissionError, read_sample_submission_2025, write_imc2025_csv

IMAGES = [f"i{k}" for k in range(10)]


def test_components_min_inliers_and_min_size():
    g = {("i0", "i1"): 100, ("i1", "i2"): 50, ("i3", "i4"): 80, ("i4", "i5"): 20, ("i5", "i6"): 30,
         ("i7", "i8"): 200, ("i2", "i3"): 14, ("i9", "i0"): 3}
    c = cluster_images(IMAGES, g, options=ClusterOptions(min_inliers=15, min_cluster_size=3))
    assert c.clusters == (("i3", "i4", "i5", "i6"), ("i0", "i1", "i2"))  # largest first
    assert c.outliers == ("i7", "i8", "i9")  # a 2-image component is too small
    labels = c.labels()
    assert labels["i5"] == "cluster0" and labels["i0"] == "cluster1" and labels["i9"] == "outliers"
    c2 = cluster_images(IMAGES, g, options=ClusterOptions(min_inliers=10, min_cluster_size=2))
    assert c2.clusters[0] == ("i0", "i1", "i2", "i3", "i4", "i5", "i6") and c2.clusters[1] == ("i7", "i8")


def test_pair_order_does_not_matter_and_ties_follow_image_order():
    g = {("i0", "i1"): 20, ("i1", "i2"): 20, ("i5", "i4"): 20, ("i3", "i4"): 20}
    a = cluster_images(IMAGES, g)
    b = cluster_images(IMAGES, dict(reversed(list(g.items()))))
    assert a == b and a.clusters == (("i0", "i1", "i2"), ("i3", "i4", "i5"))


def test_submodels_take_precedence():
    g = {(f"i{k}", f"i{k + 1}"): 100 for k in range(9)}  # one chain: a single component
    c = cluster_images(IMAGES, g, submodels=[["i0", "i1", "i2", "i3"], ["i5", "i6", "i7", "i8", "i3"], ["i9"]])
    assert c.clusters[0] == ("i3", "i5", "i6", "i7", "i8")  # largest sub-model first, keeps i3
    assert c.clusters[1] == ("i0", "i1", "i2")
    assert c.outliers == ("i4", "i9")  # left over: i4 and i9 are not connected to each other


def test_unknown_images_refused():
    with pytest.raises(ClusterInputError, match="not in the image list"):
        cluster_images(IMAGES, {("i0", "x"): 100})


@dataclass
class P:
    R: np.ndarray
    t: np.ndarray


def test_writer_passes_image_id_writes_nan_and_outliers(tmp_path):
    sample = [SampleRow(image_id=f"id_{k}", dataset="ds", image=f"i{k}.png") for k in range(4)]
    labels = {("ds", "i0.png"): "cluster0", ("ds", "i1.png"): "cluster0", ("ds", "i2.png"): "cluster1"}
    poses = {("ds", "i0.png"): P(np.eye(3), np.array([1.0, 2, 3])), ("ds", "i1.png"): P(np.full((3, 3), np.nan), np.zeros(3)),
             ("ds", "i3.png"): P(np.eye(3), np.zeros(3))}
    path = write_imc2025_csv(sample, labels, poses, tmp_path / "s.csv")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["image_id", "dataset", "scene", "image", "rotation_matrix", "translation_vector"]
    assert [r["image_id"] for r in rows] == ["id_0", "id_1", "id_2", "id_3"]
    assert [r["scene"] for r in rows] == ["cluster0", "cluster0", "cluster1", "outliers"]
    assert rows[0]["translation_vector"] == "1.0;2.0;3.0"
    assert rows[1]["rotation_matrix"] == ";".join(["nan"] * 9)  # non-finite pose
    assert rows[2]["translation_vector"] == "nan;nan;nan"  # no pose
    assert rows[3]["rotation_matrix"] == ";".join(["nan"] * 9)  # outlier: pose not written


def test_written_csv_scores_with_the_2025_metric(tmp_path):
    rng = np.random.default_rng(0)
    images = [f"a{k}.png" for k in range(5)] + [f"o{k}.png" for k in range(2)]
    sample = [SampleRow(image_id=f"id{k}", dataset="ds", image=im) for k, im in enumerate(images)]
    c = rng.normal(size=(5, 3))
    poses = {("ds", f"a{k}.png"): P(np.eye(3), -c[k]) for k in range(5)}
    labels = {("ds", f"a{k}.png"): "cluster0" for k in range(5)}
    sub = write_imc2025_csv(sample, labels, poses, tmp_path / "sub.csv")
    gt = tmp_path / "gt.csv"
    gt_labels = {**labels, **{("ds", f"o{k}.png"): "outliers" for k in range(2)}}
    gt_labels = {k: ("scene_a" if v == "cluster0" else v) for k, v in gt_labels.items()}
    write_imc2025_csv(sample, gt_labels, poses, gt)
    th = tmp_path / "th.csv"
    th.write_text("dataset,scene,thresholds\nds,scene_a,0.01;0.02;0.05;0.1;0.15;0.2\n")
    assert score(sub, gt, th).overall == pytest.approx(1.0)


def test_sample_submission_reader(tmp_path):
    p = tmp_path / "sample.csv"
    p.write_text("image_id,dataset,scene,image,rotation_matrix,translation_vector\n"
                 "x1,ds,outliers,a.png,,\nx2,ds,outliers,b.png,,\nx3,ds,outliers,a.png,,\n")
    with pytest.raises(SampleSubmissionError, match="line 4: image 'a.png' of dataset 'ds' listed twice"):
        read_sample_submission_2025(p)
    p.write_text("image_id,dataset,image\nx1,ds,a.png\n")
    assert read_sample_submission_2025(p) == [SampleRow(image_id="x1", dataset="ds", image="a.png")]
