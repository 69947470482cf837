"""``kill -9`` in the middle of a stage: the rerun resumes, recomputes nothing finished, and writes
the same CSV as an uninterrupted run.

Real subprocesses (``python -m imc run``), killed with SIGKILL as soon as the stage under test has
produced its first durable item (a part file under ``<stage>-<fp>.h5.parts/``) or, for mapping,
as soon as pycolmap's mapper runs inside the temporary ``sfm-<fp>.tmp-<pid>/`` folder. To start
a killed run right at the stage under test, its cache is a copy of the reference run's cache
holding only the earlier stages.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from imc.h5io import ResumableH5

from .corpus import REPO, TINY, cli_command, cli_env, copy_real_scene, run_cli

N_IMAGES = 6
N_PAIRS = N_IMAGES * (N_IMAGES - 1) // 2
SCENE = ("strecha", "fountain")
DETERMINISTIC = ["seed=0", "sfm.num_threads=1"]


def overrides(data: Path, run_dir: Path) -> list[str]:
    return [f"data.root={data}", f"output={run_dir / 'run'}", f"cache_dir={run_dir / 'cache'}", *TINY,
            *DETERMINISTIC]


def scene_cache(run_dir: Path) -> Path:
    return run_dir / "cache" / SCENE[0] / SCENE[1]


def store_path(run_dir: Path, stage: str) -> Path:
    """The stage's h5 (whether it is finished or only has parts so far)."""
    (path,) = {p.with_name(p.name.removesuffix(".parts")) for p in scene_cache(run_dir).glob(f"{stage}-*.h5*")
               if p.suffix in (".h5", ".parts")}
    return path


def parts(run_dir: Path, stage: str) -> list[Path]:
    return list(scene_cache(run_dir).glob(f"{stage}-*.h5.parts/*.h5"))


def mapper_running(run_dir: Path) -> bool:
    return any(scene_cache(run_dir).glob("sfm-*.tmp-*/mapper.log"))


def run_and_kill(run_dir: Path, data: Path, when: Callable[[], bool], timeout: float = 240) -> None:
    """Start ``imc run``; SIGKILL it the moment ``when()`` holds (polled every few ms)."""
    with open(run_dir / "killed_run.txt", "w") as log:
        proc = subprocess.Popen(cli_command(overrides(data, run_dir)), cwd=REPO, env=cli_env(), stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            while not when():
                if proc.poll() is not None:
                    pytest.fail(f"run ended (rc {proc.returncode}) before the kill point:\n"
                                f"{(run_dir / 'killed_run.txt').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail("kill point not reached in time")
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def resume(run_dir: Path, data: Path) -> str:
    return run_cli(overrides(data, run_dir), log_path=run_dir / "resumed_run.txt")


def count(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the log:\n{text[-3000:]}"
    return int(match.group(1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The scene, and one uninterrupted run of it (its CSV and its cache)."""
    tmp = tmp_path_factory.mktemp("interrupt")
    copy_real_scene(tmp / "data", *SCENE, n=N_IMAGES)
    ref = tmp / "reference"
    text = resume(ref, tmp / "data")
    assert f"features: {N_IMAGES}/{N_IMAGES} images to extract" in text
    csv_text = (ref / "run" / "submission.csv").read_text()
    assert csv_text.count("1.0;0.0;0.0;0.0;1.0;0.0;0.0;0.0;1.0") <= 2, "reference run registered too few images"
    return tmp / "data", ref, csv_text


def seed_cache(reference_dir: Path, run_dir: Path, stages: tuple[str, ...]) -> None:
    """A cache with only ``stages`` of the reference run (files, sidecars)."""
    target = scene_cache(run_dir)
    target.mkdir(parents=True)
    for p in scene_cache(reference_dir).iterdir():
        if p.name.split("-")[0] in stages:
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, target / p.name)


@pytest.mark.slow
def test_kill_during_feature_extraction(reference, tmp_path):
    data, _, ref_csv = reference
    run_and_kill(tmp_path, data, when=lambda: len(parts(tmp_path, "features")) >= 2)
    done = len(ResumableH5(store_path(tmp_path, "features")))
    assert 2 <= done < N_IMAGES, f"killed after {done} images: not inside the stage"
    # A torn part (impossible with the atomic renames, but a disk can fill up) is dropped, not read.
    features = store_path(tmp_path, "features")
    (features.with_name(features.name + ".parts") / "torn.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    text = resume(tmp_path, data)
    assert count(r"features: (\d+)/%d images to extract" % N_IMAGES, text) == N_IMAGES - done
    assert (tmp_path / "run" / "submission.csv").read_text() == ref_csv
    assert not list(scene_cache(tmp_path).rglob("*.tmp-*")), "temporary files left behind"


@pytest.mark.slow
def test_kill_during_matching(reference, tmp_path):
    data, ref_dir, ref_csv = reference
    seed_cache(ref_dir, tmp_path, ("features", "pairs"))
    run_and_kill(tmp_path, data, when=lambda: len(parts(tmp_path, "matches")) >= 2)
    done = len(ResumableH5(store_path(tmp_path, "matches")))
    assert 2 <= done < N_PAIRS, f"killed after {done} pairs: not inside the stage"
    text = resume(tmp_path, data)
    assert f"features: 0/{N_IMAGES} images to extract" in text
    assert count(r"matches: (\d+) pairs to match", text) == N_PAIRS - done
    assert (tmp_path / "run" / "submission.csv").read_text() == ref_csv


@pytest.mark.slow
def test_kill_during_mapping(reference, tmp_path):
    data, ref_dir, ref_csv = reference
    seed_cache(ref_dir, tmp_path, ("features", "pairs", "matches", "verified"))
    run_and_kill(tmp_path, data, when=lambda: mapper_running(tmp_path))
    assert list(scene_cache(tmp_path).glob("sfm-*.tmp-*")), "killed outside mapping"
    assert not [p for p in scene_cache(tmp_path).glob("sfm-*") if p.is_dir() and ".tmp-" not in p.name], \
        "a finished sfm folder exists after a kill during mapping"
    text = resume(tmp_path, data)
    assert f"features: 0/{N_IMAGES} images to extract" in text
    assert "matches: 0 pairs to match" in text and "verify: 0 pairs to verify" in text
    assert (tmp_path / "run" / "submission.csv").read_text() == ref_csv
    assert not list(scene_cache(tmp_path).glob("sfm-*.tmp-*")), "the killed run's folder was not cleaned"
