"""Builders for the reliability tests: small real scenes and a corpus of bad inputs.

Everything is derived, in the test's ``tmp_path``, from a few real photos of ``../shared``
(Strecha fountain-P11: they register at the tiny test sizes). Nothing here runs the pipeline.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMC_SHARED", REPO.parent / "shared"))
FOUNTAIN = SHARED / "data" / "real" / "strecha" / "Benchmarking_Camera_Calibration_2008" / "fountain-P11" / "images"
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"

# Tiny sizes: ~1 s per image and ~0.5 s per pair on a shared 2-core CPU.
TINY = ["progress=false", "features.extractors=[aliked]", "features.aliked.resize_max=320",
        "features.aliked.max_num_keypoints=256"]


def fountain_files(n: int) -> list[Path]:
    """The first ``n`` views of fountain-P11 (3072x2048 JPEGs, consecutive views overlap well)."""
    files = sorted(FOUNTAIN.glob("*.jpg"))[:n] if FOUNTAIN.is_dir() else []
    if len(files) < n:
        pytest.skip(f"fountain-P11 images not found at {FOUNTAIN} (../shared missing)")
    return files


def small_rgb(path: Path, width: int = 640) -> np.ndarray:
    """A real photo, downscaled so that every derived variant stays cheap."""
    with Image.open(path) as img:
        img.draft("RGB", (width, width))
        img = img.convert("RGB")
        return np.asarray(img.resize((width, round(img.height * width / img.width)), Image.LANCZOS))


def make_scene(root: Path, dataset: str, scene: str) -> Path:
    images = root / dataset / scene / "images"
    images.mkdir(parents=True, exist_ok=True)
    return images


def copy_real_scene(root: Path, dataset: str, scene: str, n: int) -> list[str]:
    """``<root>/<dataset>/<scene>/images/`` with ``n`` real fountain views; returns their image_paths."""
    images = make_scene(root, dataset, scene)
    for f in fountain_files(n):
        shutil.copy(f, images / f.name)
    return sorted(p.relative_to(root).as_posix() for p in images.iterdir())


# ---------------------------------------------------------------------- bad files, one builder each
def save_jpeg(rgb: np.ndarray, path: Path, **kw) -> Path:
    Image.fromarray(rgb).save(path, "JPEG", quality=90, **kw)
    return path


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated_jpeg(rgb: np.ndarray, path: Path, keep: float = 0.4) -> Path:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def png_with_alpha(rgb: np.ndarray, path: Path) -> Path:
    h, w = rgb.shape[:2]
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 4] = 0  # a transparent band
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    return path


def grayscale_jpeg(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb).convert("L").save(path, "JPEG", quality=90)
    return path


def png_16bit(rgb: np.ndarray, path: Path) -> Path:
    gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(path)  # mode I;16
    return path


def cmyk_jpeg(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb).convert("CMYK").save(path, "JPEG", quality=90)
    return path


def exif_rotated_jpeg(rgb: np.ndarray, path: Path, orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation: 6 = display rotated 90° clockwise
    return save_jpeg(rgb, path, exif=exif.tobytes())


def resized_png(rgb: np.ndarray, path: Path, size: tuple[int, int]) -> Path:
    Image.fromarray(rgb).resize(size, Image.BILINEAR).save(path)
    return path


def huge_jpeg(rgb: np.ndarray, path: Path, size: tuple[int, int] = (6400, 4800)) -> Path:
    """Upscaled (cheap): > 6000 px on the long side, still a few MB."""
    Image.fromarray(rgb).resize(size, Image.NEAREST).save(path, "JPEG", quality=70)
    return path


def noise_png(path: Path, seed: int, size: tuple[int, int] = (480, 360)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------- the corpus
BAD_FILES = {  # file name -> what the pipeline must do with it
    "zero_bytes.jpg": "fallback",
    "truncated.jpg": "fallback",
    "alpha.png": "decoded",
    "gray.jpg": "decoded",
    "gray16.png": "decoded",
    "cmyk.jpg": "decoded",
    "exif6.jpg": "decoded",
    "tiny_40x30.png": "either",  # decodes; the detector may or may not find keypoints
    "tiny_10x10.png": "fallback",
    "huge_6400x4800.jpg": "decoded",
}


def build_bad_inputs(root: Path) -> dict[str, list[str]]:
    """The bad-input corpus under ``root`` (IMC layout); returns scene name -> image_paths.

    - ``bad/mixed``: 2 good views plus one file per entry of :data:`BAD_FILES`, each derived
      from another fountain view (so the decodable ones overlap with the good ones);
    - ``bad/single``: one image; ``bad/empty``: an empty ``images/`` folder;
    - ``bad/noise``: three random-noise images (nothing in common);
    - ``dup/a`` and ``dup/b``: the same file names (``0000.jpg``, ``0001.jpg``) in two scenes.
    """
    src = fountain_files(4)
    rgbs = [small_rgb(f) for f in src]
    mixed = make_scene(root, "bad", "mixed")
    save_jpeg(rgbs[0], mixed / "good_a.jpg")
    save_jpeg(rgbs[1], mixed / "good_b.jpg")
    zero_bytes(mixed / "zero_bytes.jpg")
    truncated_jpeg(rgbs[2], mixed / "truncated.jpg")
    png_with_alpha(rgbs[2], mixed / "alpha.png")
    grayscale_jpeg(rgbs[3], mixed / "gray.jpg")
    png_16bit(rgbs[2], mixed / "gray16.png")
    cmyk_jpeg(rgbs[3], mixed / "cmyk.jpg")
    exif_rotated_jpeg(rgbs[2], mixed / "exif6.jpg")
    resized_png(rgbs[3], mixed / "tiny_40x30.png", (40, 30))
    resized_png(rgbs[3], mixed / "tiny_10x10.png", (10, 10))
    huge_jpeg(rgbs[1], mixed / "huge_6400x4800.jpg")

    save_jpeg(rgbs[0], make_scene(root, "bad", "single") / "only.jpg")
    make_scene(root, "bad", "empty")
    noise = make_scene(root, "bad", "noise")
    for i in range(3):
        noise_png(noise / f"noise_{i}.png", seed=i)
    for scene, order in (("a", (0, 1)), ("b", (2, 3))):
        images = make_scene(root, "dup", scene)
        for name, k in zip(("0000.jpg", "0001.jpg"), order):
            save_jpeg(rgbs[k], images / name)
    return {f"{d.parent.parent.name}/{d.parent.name}": sorted(p.relative_to(root).as_posix() for p in d.iterdir())
            for d in sorted(root.glob("*/*/images"))}


def write_sample_submission(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Rows of ``(image_path, dataset, scene)``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "dataset", "scene"])
        w.writerows(rows)
    return path


# ---------------------------------------------------------------------- running the CLI
def cli_env() -> dict[str, str]:
    """One torch thread unless told otherwise: on a shared 2-core machine two OpenMP threads per
    process oversubscribe the cores and make LightGlue ~10x slower."""
    return {"OMP_NUM_THREADS": "1", **os.environ, "GLIBC_TUNABLES": GLIBC_TUNABLES, "PYTHONUNBUFFERED": "1"}


def cli_command(overrides: list[str], config: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "imc", "run"]
    if config:
        cmd += ["--config", config]
    return cmd + overrides


def run_cli(overrides: list[str], *, log_path: Path, config: str | None = None, timeout: float = 300) -> str:
    """``python -m imc run`` in a subprocess (from the repo root); returns its output, asserts exit 0."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.run(cli_command(overrides, config), cwd=REPO, env=cli_env(), stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout)
    text = log_path.read_text()
    assert proc.returncode == 0, f"imc run exited {proc.returncode}:\n{text[-3000:]}"
    return text


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def assert_complete_csv(csv_path: Path, expected_paths: list[str]) -> list[dict[str, str]]:
    """Every expected row once, 9 + 3 finite numbers each."""
    rows = read_rows(csv_path)
    got = [r["image_path"] for r in rows]
    assert sorted(got) == sorted(expected_paths), f"rows differ: missing {set(expected_paths) - set(got)}, " \
                                                  f"extra {set(got) - set(expected_paths)}"
    assert len(got) == len(set(got)), "duplicate rows"
    for r in rows:
        R = np.array([float(x) for x in r["rotation_matrix"].split(";")])
        t = np.array([float(x) for x in r["translation_vector"].split(";")])
        assert R.shape == (9,) and t.shape == (3,), r
        assert np.all(np.isfinite(R)) and np.all(np.isfinite(t)), f"non-finite pose in {r}"
    return rows
