"""Run the mapper on a database: ``sfm.mapper: incremental | global``, with ``sfm.retries``.

``retries`` is a list of option overrides (``IncrementalPipelineOptions`` attribute paths, like
``extra_options``), tried in order while fewer than all images are registered; the result with the most
images in its largest model wins, then the one with the lower mean reprojection error. A retry that
raises keeps the best earlier result.
"""

from __future__ import annotations

import enum
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pycolmap

log = logging.getLogger(__name__)


class Mapper(str, enum.Enum):
    INCREMENTAL = "incremental"
    GLOBAL = "global"


def set_options(opts: Any, overrides: dict[str, Any]) -> Any:
    for key, value in (overrides or {}).items():
        target = opts
        *path, last = key.split(".")
        for p in path:
            target = getattr(target, p)
        if not hasattr(target, last):
            raise ValueError(f"unknown mapper option {key!r}: not an attribute of {type(target).__name__}")
        setattr(target, last, value)
    return opts


def incremental_options(conf: dict[str, Any], seed: int, overrides: dict[str, Any] | None = None, *,
                        max_runtime_seconds: float | None = None) -> pycolmap.IncrementalPipelineOptions:
    """``max_runtime_seconds``: the effective cap (``sfm.max_runtime_seconds`` and the time budget's share)."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.min_model_size = conf["min_model_size"]
    opts.max_num_models = conf["max_num_models"]
    opts.min_num_matches = conf["min_num_matches"]
    opts.num_threads = conf["num_threads"]
    opts.random_seed = seed
    opts.multiple_models = True
    opts.ba_refine_principal_point = False
    opts.structure_less_registration_fallback = conf["structure_less_registration_fallback"]
    opts.max_runtime_seconds = max(1, int(max_runtime_seconds)) if max_runtime_seconds else -1
    set_options(opts, conf.get("extra_options") or {})
    return set_options(opts, overrides or {})


def global_options(conf: dict[str, Any], seed: int, overrides: dict[str, Any] | None = None) -> pycolmap.GlobalPipelineOptions:
    opts = pycolmap.GlobalPipelineOptions()
    opts.min_model_size = conf["min_model_size"]
    opts.min_num_matches = conf["min_num_matches"]
    opts.num_threads = conf["num_threads"]
    opts.random_seed = seed
    opts.multiple_models = True
    opts.decompose_relative_pose = True
    opts.mapper.num_threads = conf["num_threads"]
    opts.mapper.random_seed = seed
    opts.mapper.global_positioning.use_gpu = False
    opts.mapper.bundle_adjustment.ceres.use_gpu = False
    return set_options(opts, overrides or {})


def score(models: dict[int, pycolmap.Reconstruction]) -> tuple[int, float]:
    """Sort key: (images in the largest model, -mean reprojection error of that model)."""
    if not models:
        return (0, 0.0)
    best = max(models.values(), key=lambda r: r.num_reg_images())
    return (best.num_reg_images(), -best.compute_mean_reprojection_error())


def run_mapper(database: Path, image_root: Path, work_dir: Path, conf: dict[str, Any], seed: int, *, num_images: int,
               max_runtime_seconds: float | None = None,
               callbacks: dict[str, Callable[[], None]] | None = None) -> dict[int, pycolmap.Reconstruction]:
    """The mapper, then ``sfm.retries`` while images are missing; every attempt within ``max_runtime_seconds``."""
    mapper = Mapper(conf["mapper"])
    attempts: list[dict[str, Any]] = [{}] + list(conf["retries"])
    best: dict[int, pycolmap.Reconstruction] = {}
    t0 = time.perf_counter()
    for k, overrides in enumerate(attempts):
        left = None if max_runtime_seconds is None else max_runtime_seconds - (time.perf_counter() - t0)
        if left is not None and left < 1 and k > 0:
            log.warning("mapping: no time left for retry %d (%s)", k, overrides)
            break
        out = work_dir / f"attempt{k}"
        out.mkdir(parents=True, exist_ok=True)
        try:
            if mapper is Mapper.GLOBAL:
                models = pycolmap.global_mapping(str(database), str(image_root), str(out),
                                                 global_options(conf, seed, overrides))
            else:
                models = pycolmap.incremental_mapping(str(database), str(image_root), str(out),
                                                      incremental_options(conf, seed, overrides, max_runtime_seconds=left),
                                                      **(callbacks or {}))
        except Exception as exc:  # a crashed retry keeps the best earlier result
            if k == 0:
                raise
            log.warning("mapping retry %d (%s) failed: %s; keeping the best earlier result", k, overrides, exc)
            continue
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if k > 0:
            log.info("mapping retry %d %s: largest model %d images (before: %d)", k, overrides, score(models)[0],
                     score(best)[0])
        if not best or score(models) > score(best):
            best = models
        if score(best)[0] >= num_images:
            break
    return best
