"""Per-scene mAA thresholds, loaded from YAML (``configs/thresholds.yaml``).

Format (see the file's header)::

    default: {rotation_deg: {linspace: [1, 10, 10]}, translation_m: {geomspace: [0.1, 2, 10]}}
    scenes:
      "heritage/wall": {rotation_deg: {linspace: [0.2, 10, 10]}, translation_m: {geomspace: [0.05, 1, 10]}}

A threshold list is ``{linspace: [a, b, n]}``, ``{geomspace: [a, b, n]}`` or ``{values: [...]}``.
Keys missing from a scene entry are taken from ``default``.

Translation thresholds are either absolute (``translation_m``, metres of the labels) or relative to the
scene (``translation_relative``: multiples of the scene's mean ground-truth pairwise camera distance,
resolved against the labels when a scene is scored, :meth:`SceneThresholds.resolve`). An entry gives
one of the two; a scene entry that gives either replaces the default's translation thresholds.

``gt_translation_scale`` (optional, per scene or default, 1.0 when absent) multiplies the ground-truth
translations before scoring. IMC 2022 shipped poses in SfM units plus a per-scene ``scaling_dict``;
the IMC 2023 ``train_labels.csv`` translations are already metric (the kyiv-puppet-theater camera
baselines are 25 m median / 61 m max as labelled, which would become 125 m / 312 m if its
``sfm/scale_factor.txt`` = 5.086 were applied again) and the official 2023 metric multiplies by
nothing, so the shipped config leaves it at 1.0 everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml


class ThresholdsError(ValueError):
    """The thresholds file is missing or malformed (the message names the file and the key)."""


@dataclass(kw_only=True, frozen=True)
class SceneThresholds:
    rotation_deg: tuple[float, ...]
    translation_m: tuple[float, ...]  # absolute; () until :meth:`resolve` when ``translation_relative`` is set
    gt_translation_scale: float = 1.0
    source: str = "default"  # "default" or "scene": where this scene's entry came from
    translation_relative: tuple[float, ...] = ()  # multiples of the mean GT pairwise camera distance
    reference_distance_m: float | None = None  # that distance, once resolved

    @property
    def is_relative(self) -> bool:
        return bool(self.translation_relative)

    def resolve(self, R: np.ndarray, t: np.ndarray, *, scene: str = "?") -> "SceneThresholds":
        """Absolute thresholds for a scene with ground-truth world-to-camera poses ``R`` (N,3,3), ``t`` (N,3)
        (already multiplied by ``gt_translation_scale``); unchanged when the thresholds are absolute."""
        if not self.is_relative:
            return self
        distance = mean_camera_distance(R, t)
        if not (math.isfinite(distance) and distance > 0):
            raise ThresholdsError(
                f"scene {scene}: relative translation thresholds need >= 2 ground-truth cameras at distinct "
                f"positions (mean pairwise camera distance is {distance}); give the scene absolute "
                "`translation_m` thresholds in the thresholds file"
            )
        return replace(self, translation_m=tuple(float(r * distance) for r in self.translation_relative),
                       reference_distance_m=float(distance))


@dataclass(kw_only=True, frozen=True)
class Thresholds:
    default: SceneThresholds
    scenes: Mapping[str, SceneThresholds] = field(default_factory=dict)
    path: str = "<dict>"

    def for_scene(self, dataset: str, scene: str) -> SceneThresholds:
        return self.scenes.get(f"{dataset}/{scene}", self.default)


_SPACINGS = {"linspace": np.linspace, "geomspace": np.geomspace}
_SCENE_KEYS = {"rotation_deg", "translation_m", "translation_relative", "gt_translation_scale"}


def camera_centres(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World positions ``C = -R^T t`` of world-to-camera poses ``R`` (N,3,3), ``t`` (N,3)."""
    return -np.einsum("nji,nj->ni", np.asarray(R, float), np.asarray(t, float))


def mean_camera_distance(R: np.ndarray, t: np.ndarray) -> float:
    """Mean distance between the camera centres over all unordered pairs (nan with fewer than 2 cameras)."""
    C = camera_centres(R, t)
    if len(C) < 2:
        return float("nan")
    i, j = np.triu_indices(len(C), k=1)
    return float(np.linalg.norm(C[i] - C[j], axis=1).mean())


def default_thresholds_path() -> Path:
    """``configs/thresholds.yaml`` (of the source tree, or its copy in the installed package)."""
    from imc.config import configs_dir

    return configs_dir() / "thresholds.yaml"


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """Load a thresholds YAML file (default: :func:`default_thresholds_path`)."""
    path = Path(path) if path is not None else default_thresholds_path()
    if not path.is_file():
        raise ThresholdsError(
            f"thresholds file not found: {path} (pass --thresholds PATH, "
            "e.g. configs/thresholds.yaml of the imc repository)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"{path}: not valid YAML: {exc}") from exc
    return thresholds_from_dict(data, source=str(path))


def thresholds_from_dict(data: Any, *, source: str = "<dict>") -> Thresholds:
    """Build :class:`Thresholds` from the parsed YAML structure, validating every entry."""
    if not isinstance(data, dict) or "default" not in data:
        raise ThresholdsError(f"{source}: expected a mapping with a 'default' entry")
    unknown = set(data) - {"default", "scenes"}
    if unknown:
        raise ThresholdsError(f"{source}: unknown top-level keys {sorted(unknown)}")
    if (not isinstance(data["default"], dict) or "rotation_deg" not in data["default"]
            or not ({"translation_m", "translation_relative"} & set(data["default"]))):
        raise ThresholdsError(f"{source}: default needs rotation_deg and translation_m (or translation_relative)")
    default = _scene_entry(data["default"], None, where=f"{source}: default")
    scenes_raw = data.get("scenes") or {}
    if not isinstance(scenes_raw, dict):
        raise ThresholdsError(f"{source}: 'scenes' must be a mapping of 'dataset/scene' entries")
    scenes = {}
    for name, entry in scenes_raw.items():
        if not isinstance(name, str) or name.count("/") != 1:
            raise ThresholdsError(f"{source}: scene key {name!r} must be 'dataset/scene'")
        scenes[name] = _scene_entry(entry, default, where=f"{source}: scenes[{name!r}]")
    return Thresholds(default=default, scenes=scenes, path=source)


def _scene_entry(entry: Any, default: SceneThresholds | None, *, where: str) -> SceneThresholds:
    if not isinstance(entry, dict):
        raise ThresholdsError(f"{where}: expected a mapping, got {entry!r}")
    unknown = set(entry) - _SCENE_KEYS
    if unknown:
        raise ThresholdsError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_SCENE_KEYS)}")
    if "translation_m" in entry and "translation_relative" in entry:
        raise ThresholdsError(f"{where}: give translation_m (absolute) or translation_relative, not both")
    rot = _threshold_list(entry["rotation_deg"], where=f"{where}.rotation_deg") if "rotation_deg" in entry else None
    trans = _threshold_list(entry["translation_m"], where=f"{where}.translation_m") if "translation_m" in entry else None
    relative = (_threshold_list(entry["translation_relative"], where=f"{where}.translation_relative")
                if "translation_relative" in entry else None)
    if trans is None and relative is None and default is not None:
        trans, relative = default.translation_m, default.translation_relative
    trans, relative = trans or (), relative or ()
    scale = entry.get("gt_translation_scale", default.gt_translation_scale if default else 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise ThresholdsError(f"{where}.gt_translation_scale: expected a positive number, got {scale!r}")
    rot = rot if rot is not None else (default.rotation_deg if default else ())
    n_trans = len(relative or trans)
    if len(rot) != n_trans:
        raise ThresholdsError(
            f"{where}: {len(rot)} rotation thresholds vs {n_trans} translation thresholds"
        )
    return SceneThresholds(
        rotation_deg=rot,
        translation_m=trans,
        translation_relative=relative,
        gt_translation_scale=float(scale),
        source="scene" if default is not None else "default",
    )


def _threshold_list(spec: Any, *, where: str) -> tuple[float, ...]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ThresholdsError(
            f"{where}: expected one of {{linspace: [a, b, n]}}, {{geomspace: [a, b, n]}}, "
            f"{{values: [...]}}, got {spec!r}"
        )
    (kind, args), = spec.items()
    if kind == "values":
        if not isinstance(args, list) or not args or not all(_is_number(v) for v in args):
            raise ThresholdsError(f"{where}.values: expected a non-empty list of numbers, got {args!r}")
        values = [float(v) for v in args]
    elif kind in _SPACINGS:
        if (
            not isinstance(args, list)
            or len(args) != 3
            or not all(_is_number(v) for v in args)
            or not float(args[2]).is_integer()
            or args[2] < 1
        ):
            raise ThresholdsError(f"{where}.{kind}: expected [start, stop, num] with integer num >= 1, got {args!r}")
        if kind == "geomspace" and (args[0] <= 0 or args[1] <= 0):
            raise ThresholdsError(f"{where}.geomspace: start and stop must be > 0, got {args!r}")
        values = _SPACINGS[kind](float(args[0]), float(args[1]), int(args[2])).tolist()
    else:
        raise ThresholdsError(f"{where}: unknown spacing {kind!r}; use linspace, geomspace or values")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ThresholdsError(f"{where}: thresholds must be finite and >= 0, got {values}")
    return tuple(values)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
