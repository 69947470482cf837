"""Bad submissions / labels give one clear error naming the offending rows (and exit code 2 in the CLI)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from eval.score import main as score_main
from eval.score import score
from eval.submission import LabelsError, SubmissionError, SubmissionWarning, read_labels, read_submission
from eval.thresholds import thresholds_from_dict

COLUMNS = ["image_path", "dataset", "scene", "rotation_matrix", "translation_vector"]
THRESHOLDS = thresholds_from_dict(
    {"default": {"rotation_deg": {"linspace": [1, 10, 10]}, "translation_m": {"geomspace": [0.1, 2, 10]}}}
)


def fmt(values) -> str:
    return ";".join(repr(float(v)) for v in np.asarray(values).ravel())


def make_rows(dataset: str, scene: str, n: int, seed: int) -> list[dict]:
    R = Rotation.random(n, random_state=seed).as_matrix()
    t = np.random.default_rng(seed).normal(scale=3.0, size=(n, 3))
    return [
        {
            "image_path": f"{dataset}/{scene}/images/im{k}.jpg",
            "dataset": dataset,
            "scene": scene,
            "rotation_matrix": fmt(R[k]),
            "translation_vector": fmt(t[k]),
        }
        for k in range(n)
    ]


def write(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def labels_rows() -> list[dict]:
    return make_rows("ds", "alpha", 5, seed=1) + make_rows("ds", "beta", 4, seed=2)


@pytest.fixture
def labels(tmp_path, labels_rows) -> Path:
    return write(tmp_path / "labels.csv", labels_rows)


def submit(tmp_path: Path, rows: list[dict], labels: Path, columns=COLUMNS):
    sub = write(tmp_path / "sub.csv", rows, columns)
    return score(sub, labels, thresholds=THRESHOLDS)


def error_of(tmp_path, rows, labels, columns=COLUMNS) -> str:
    with pytest.raises(SubmissionError) as info:
        submit(tmp_path, rows, labels, columns)
    return str(info.value)


def test_valid_submission_scores(tmp_path, labels, labels_rows):
    assert submit(tmp_path, [dict(r) for r in labels_rows], labels).overall == 1.0


def test_missing_image_is_named(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows]
    gone = rows.pop(6)
    msg = error_of(tmp_path, rows, labels)
    assert gone["image_path"] in msg
    assert "'ds/beta': 1 of 4 labelled image(s) missing" in msg


def test_whole_scene_missing_is_named(tmp_path, labels, labels_rows):
    msg = error_of(tmp_path, [dict(r) for r in labels_rows[:5]], labels)
    assert "'ds/beta': 4 of 4 labelled image(s) missing" in msg


def test_duplicate_rows_are_named(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows] + [dict(labels_rows[2])]
    msg = error_of(tmp_path, rows, labels)
    assert f"line 11: duplicate image_path {labels_rows[2]['image_path']!r} (first at line 4)" in msg


@pytest.mark.parametrize(
    "column, value, fragment",
    [
        ("rotation_matrix", "1;0;0;0;1;0;0;0;nan", "rotation_matrix contains NaN or inf"),
        ("translation_vector", "1;inf;0", "translation_vector contains NaN or inf"),
        ("translation_vector", "1;-inf;0", "translation_vector contains NaN or inf"),
        ("rotation_matrix", "1;0;0;0;1;0;0;0", "rotation_matrix has 8 numbers, expected 9"),
        ("translation_vector", "1;2;3;4", "translation_vector has 4 numbers, expected 3"),
        ("rotation_matrix", "1;0;0;0;1;0;0;0;one", "rotation_matrix is not 9 ';'-separated numbers"),
        ("translation_vector", "[1 2 3]", "translation_vector is not 3 ';'-separated numbers"),
        ("rotation_matrix", "1.01;0;0;0;1;0;0;0;1", "rotation_matrix is not orthonormal"),
        ("rotation_matrix", "2;0;0;0;2;0;0;0;2", "rotation_matrix is not orthonormal"),
        ("rotation_matrix", "-1;0;0;0;1;0;0;0;1", "rotation_matrix is a reflection (det = -1 < 0)"),
        ("rotation_matrix", "", "empty or missing value(s) for ['rotation_matrix']"),
    ],
)
def test_malformed_pose_names_line_and_image(tmp_path, labels, labels_rows, column, value, fragment):
    rows = [dict(r) for r in labels_rows]
    rows[3][column] = value
    msg = error_of(tmp_path, rows, labels)
    assert f"line 5 ({rows[3]['image_path']!r}): {fragment}" in msg
    assert "1 problem(s)" in msg


def test_nearly_orthonormal_rotation_is_accepted(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows]
    R = np.array(rows[0]["rotation_matrix"].split(";"), float).reshape(3, 3)
    rows[0]["rotation_matrix"] = fmt(R + 1e-5 * np.random.default_rng(0).normal(size=(3, 3)))
    assert submit(tmp_path, rows, labels).overall == pytest.approx(1.0)


def test_all_problems_are_reported_together(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows]
    rows[1]["translation_vector"] = "nan;0;0"
    rows[7]["rotation_matrix"] = "x"
    msg = error_of(tmp_path, rows, labels)
    assert "2 problem(s)" in msg and "line 3 (" in msg and "line 9 (" in msg


def test_unknown_scene_is_named(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows] + make_rows("ds", "gamma", 2, seed=3) + make_rows("other", "x", 1, seed=4)
    msg = error_of(tmp_path, rows, labels)
    assert "unknown scene 'ds/gamma' (not in the labels) in 2 row(s): line 11 ('ds/gamma/images/im0.jpg'), line 12" in msg
    assert "unknown scene 'other/x'" in msg and "line 13" in msg


def test_image_filed_under_wrong_scene(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows]
    rows[0]["scene"] = "beta"
    msg = error_of(tmp_path, rows, labels)
    assert f"line 2: image_path {rows[0]['image_path']!r} is filed under 'ds/beta' but the labels put it in 'ds/alpha'" in msg


@pytest.mark.parametrize("drop", ["rotation_matrix", "image_path", "scene"])
def test_missing_column_is_named(tmp_path, labels, labels_rows, drop):
    columns = [c for c in COLUMNS if c != drop]
    msg = error_of(tmp_path, [dict(r) for r in labels_rows], labels, columns)
    assert f"missing column(s) ['{drop}']" in msg


def test_empty_file_is_an_error(tmp_path, labels):
    (tmp_path / "sub.csv").write_text("")
    with pytest.raises(SubmissionError, match="empty submission file"):
        score(tmp_path / "sub.csv", labels, thresholds=THRESHOLDS)


def test_missing_file_is_an_error(tmp_path, labels):
    with pytest.raises(SubmissionError, match="submission file not found"):
        score(tmp_path / "absent.csv", labels, thresholds=THRESHOLDS)


def test_extra_images_in_known_scene_are_ignored_with_warning(tmp_path, labels, labels_rows):
    extra = make_rows("ds", "alpha", 7, seed=9)[5:]  # im5, im6 of alpha: not labelled
    for k, r in enumerate(extra):
        r["image_path"] = f"ds/alpha/images/test_only_{k}.jpg"
    rows = [dict(r) for r in labels_rows] + extra
    with pytest.warns(SubmissionWarning, match="ignored 2 submission row"):
        report = submit(tmp_path, rows, labels)
    assert report.overall == 1.0
    assert report.scenes["ds/alpha"].n_images == 5
    assert any("test_only_0.jpg" in w for w in report.warnings)


def test_column_order_and_extra_columns_do_not_matter(tmp_path, labels, labels_rows):
    columns = ["scene", "translation_vector", "comment", "dataset", "rotation_matrix", "image_path"]
    rows = [dict(r, comment="x") for r in labels_rows]
    assert submit(tmp_path, rows, labels, columns).overall == 1.0


def test_image_path_match_is_exact(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows]
    rows[0]["image_path"] = rows[0]["image_path"].upper()
    msg = error_of(tmp_path, rows, labels)
    assert "'ds/alpha': 1 of 5 labelled image(s) missing: 'ds/alpha/images/im0.jpg'" in msg


def test_unregistered_images_are_counted(tmp_path, labels, labels_rows):
    rows = [dict(r) for r in labels_rows]
    for k in (0, 2):
        rows[k]["rotation_matrix"], rows[k]["translation_vector"] = fmt(np.eye(3)), "0;0;0"
    report = submit(tmp_path, rows, labels)
    assert report.scenes["ds/alpha"].n_registered == 3
    assert report.scenes["ds/beta"].n_registered == 4
    assert report.scenes["ds/alpha"].maa < 1.0


def test_malformed_labels_raise_labels_error(tmp_path, labels_rows):
    rows = [dict(r) for r in labels_rows]
    rows[4]["translation_vector"] = "1;2"
    with pytest.raises(LabelsError, match=r"line 6 \('ds/alpha/images/im4.jpg'\): translation_vector has 2 numbers"):
        read_labels(write(tmp_path / "labels.csv", rows))


def test_single_image_scene_in_labels_is_rejected(tmp_path, labels_rows):
    rows = [dict(r) for r in labels_rows] + make_rows("ds", "lonely", 1, seed=5)
    with pytest.raises(LabelsError, match=r"at least 2 labelled images.*ds/lonely \(1 image\)"):
        read_labels(write(tmp_path / "labels.csv", rows))


def test_unknown_selected_scene_is_rejected(tmp_path, labels, labels_rows):
    sub = write(tmp_path / "sub.csv", [dict(r) for r in labels_rows])
    with pytest.raises(LabelsError, match="'ds/nope'"):
        read_submission(sub, read_labels(labels), scenes=["ds/nope"])


def test_cli_exit_code_2_with_message(tmp_path, labels, labels_rows, capsys):
    rows = [dict(r) for r in labels_rows]
    rows[2]["rotation_matrix"] = "1;2;3"
    sub = write(tmp_path / "sub.csv", rows)
    assert score_main(["--submission", str(sub), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "line 4 ('ds/alpha/images/im2.jpg'): rotation_matrix has 3 numbers, expected 9" in err
