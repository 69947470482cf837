"""Shared fixtures. Tests run on CPU with small sizes; `slow` marks tests over ~30 s."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMC_SHARED", REPO.parent / "shared"))
KYIV = SHARED / "data" / "real" / "imc2023" / "train" / "urban" / "kyiv-puppet-theater" / "images"
TEMPLE = SHARED / "data" / "real" / "middlebury" / "templeSparseRing"
DEMO = REPO / "imc" / "demo_data"


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def kyiv_images() -> list[Path]:
    if not KYIV.is_dir():
        pytest.skip(f"real kyiv images not found at {KYIV} (../shared missing)")
    return sorted(KYIV.glob("*.jpg"))


@pytest.fixture
def tiny_scene_root(tmp_path: Path) -> Path:
    """IMC layout with 4 consecutive views of the Middlebury temple ring (640x480, real photos):
    ``<root>/middlebury/temple/images/*.png``. They register at the tiny test sizes."""
    if not TEMPLE.is_dir():
        pytest.skip(f"Middlebury temple images not found at {TEMPLE} (../shared missing)")
    images = tmp_path / "data" / "middlebury" / "temple" / "images"
    images.mkdir(parents=True)
    for i in range(1, 5):
        shutil.copy(TEMPLE / f"templeSR{i:04d}.png", images)
    return tmp_path / "data"


def tiny_overrides(root: Path, out: Path) -> list[str]:
    """Native 640 px (the temple views need it to register reliably); ~0.5 s per image, ~1 s per pair."""
    return [f"data.root={root}", f"output={out / 'run'}", f"cache_dir={out / 'cache'}", "progress=false",
            "features.extractors=[aliked]", "features.aliked.resize_max=640", "features.aliked.max_num_keypoints=1024",
            "torch_threads=1"]


@pytest.fixture(scope="session")
def viewer_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny finished real run (4 kyiv photos) with labels and score.json, for the viewer tests."""
    from .viewer_support import build_viewer_run

    return build_viewer_run(tmp_path_factory.mktemp("viewer"))
