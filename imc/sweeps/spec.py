"""Sweep files (``configs/sweeps/*.yaml``): parsing, validation, expansion into points.

Format (every key but ``base_config`` and one of ``scenes.*`` is optional)::

    name: keypoints                   # default: the file's stem; outputs go to outputs/sweeps/<name>
    base_config: ../demo.yaml         # relative to the sweep file
    overrides: [features.aliked.resize_max=640]          # applied to the base config for every point
    output_dir: outputs/sweeps/keypoints          # default: outputs/sweeps/<name> (relative to the cwd)
    cache_dir: sweep                  # sweep: <output_dir>/cache | base: the base config's cache_dir | a path
    scenes:
      synthetic:                      # rendered once into <output_dir>/data/<name>
        - {preset: easy, seed: 0, scenes: [easy-boxes], name: synth-easy}
      real:                           # paths relative to the cwd, like `data.root` in run configs
        - {name: demo, root: imc/demo_data, labels: imc/demo_data/train_labels.csv,
           sample_submission: null, scenes: null, optional: false}
    grid:                             # cartesian product
      features.aliked.max_num_keypoints: [1024, 2048]
      sfm.min_model_size: [3, 10]
    variants:                         # named override lists (crossed with the grid when both are given)
      - {name: default, overrides: []}
      - {name: seed_best, overrides: [sfm.max_num_models=2]}
    resources: {num_cpus: 1, num_gpus: 0}         # per Ray task (one point x one scene set)

A point = one variant x one grid cell. Its config = base config, ``progress=false``, ``overrides``, the
variant's overrides, the grid values, then the keys the sweep owns (``data.*``, ``output``,
``cache_dir``, ``overwrite``); overriding those from the sweep file is an error.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..config import ConfigError, apply_overrides, load_config, parse_override
from ..io_utils import fingerprint


class SweepError(ConfigError):
    """The sweep file is invalid (the message names the file and the offending key)."""


TOP_KEYS = {"name", "description", "base_config", "overrides", "output_dir", "cache_dir", "scenes", "grid",
            "variants", "resources"}
SCENES_KEYS = {"synthetic", "real"}
SYNTHETIC_KEYS = {"name", "preset", "seed", "scenes"}
REAL_KEYS = {"name", "root", "labels", "sample_submission", "scenes", "optional"}
VARIANT_KEYS = {"name", "overrides", "description"}
RESOURCE_KEYS = {"num_cpus", "num_gpus"}
# Keys the sweep sets itself for every point.
MANAGED_PREFIXES = ("data", "output", "cache_dir", "overwrite")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=+-]*$")
MAX_NAME_LEN = 80


@dataclass(kw_only=True, frozen=True)
class SceneSet:
    """One data root scored against one labels file; a point runs once per scene set."""

    name: str
    root: Path
    labels: Path
    sample_submission: Path | None = None
    scenes: tuple[str, ...] | None = None  # None: every labelled scene with images on disk
    optional: bool = False  # missing root: skipped with a warning instead of an error
    synthetic: Mapping[str, Any] | None = None  # {preset, seed, scenes}: rendered into ``root`` first


@dataclass(kw_only=True, frozen=True)
class Resources:
    num_cpus: float = 1
    num_gpus: float = 0


@dataclass(kw_only=True)
class Point:
    """One configuration of the sweep: ``conf`` lacks only the per-scene-set keys."""

    name: str
    variant: str | None
    grid_values: dict[str, Any]
    conf: dict[str, Any]


@dataclass(kw_only=True)
class SweepSpec:
    path: Path
    name: str
    base_config: Path
    overrides: list[str]
    output_dir: Path
    cache_dir: Path
    scene_sets: list[SceneSet]
    grid: dict[str, list[Any]]
    variants: list[dict[str, Any]]
    resources: Resources
    description: str = ""
    swept_keys: list[str] = field(default_factory=list)  # grid keys, then keys any variant overrides

    @property
    def data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def points_dir(self) -> Path:
        return self.output_dir / "points"


# ---------------------------------------------------------------------------------------------- helpers
def _fail(path: Path, message: str) -> SweepError:
    return SweepError(f"{path}: {message}")


def _check_keys(path: Path, where: str, obj: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise _fail(path, f"{where} must be a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _fail(path, f"unknown key(s) {unknown} in {where} (allowed: {sorted(allowed)})")
    return dict(obj)


def _check_name(path: Path, where: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > MAX_NAME_LEN:
        raise _fail(path, f"{where}: name {name!r} must match {NAME_RE.pattern} and be at most "
                          f"{MAX_NAME_LEN} characters (it names a folder)")
    return name


def _string_list(path: Path, where: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, f"{where} must be a list of strings, got {value!r}")
    return list(value)


def is_managed(dotted: str) -> bool:
    return dotted.split(".")[0] in MANAGED_PREFIXES


def _check_override_keys(path: Path, where: str, overrides: list[str]) -> None:
    for item in overrides:
        try:
            keys, _ = parse_override(item)
        except ConfigError as exc:
            raise _fail(path, f"{where}: {exc}") from exc
        if is_managed(".".join(keys)):
            raise _fail(path, f"{where}: {item!r} sets {'.'.join(keys)!r}, which the sweep sets itself "
                              "(use `scenes:`, `output_dir:` or `cache_dir:`)")


def set_dotted(conf: dict[str, Any], dotted: str, value: Any) -> None:
    """``conf[a][b][c] = value`` for ``a.b.c``; the key must already exist (typos are errors)."""
    keys = dotted.split(".")
    node = conf
    for depth, k in enumerate(keys[:-1]):
        if not isinstance(node.get(k), dict):
            raise ConfigError(f"unknown section {'.'.join(keys[: depth + 1])!r} (from {dotted!r})")
        node = node[k]
    if keys[-1] not in node:
        raise ConfigError(f"unknown key {dotted!r}")
    node[keys[-1]] = copy.deepcopy(value)


def get_dotted(conf: Mapping[str, Any], dotted: str) -> Any:
    node: Any = conf
    for k in dotted.split("."):
        node = node[k]
    return node


def _value_label(value: Any) -> str:
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    text = text.removesuffix("...").strip()
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


# ---------------------------------------------------------------------------------------------- parsing
def _parse_scene_sets(path: Path, raw: Any, data_dir: Path) -> list[SceneSet]:
    scenes = _check_keys(path, "scenes", raw, SCENES_KEYS)
    sets: list[SceneSet] = []
    for i, entry in enumerate(scenes.get("synthetic") or []):
        where = f"scenes.synthetic[{i}]"
        entry = _check_keys(path, where, entry, SYNTHETIC_KEYS)
        if "preset" not in entry:
            raise _fail(path, f"{where}: missing `preset`")
        preset, seed = str(entry["preset"]), entry.get("seed", 0)
        if not isinstance(seed, int):
            raise _fail(path, f"{where}: seed must be an integer, got {seed!r}")
        only = _string_list(path, f"{where}.scenes", entry.get("scenes"))
        name = _check_name(path, where, entry.get("name", f"synth-{preset}-s{seed}"))
        sets.append(SceneSet(name=name, root=data_dir / name, labels=data_dir / name / "train_labels.csv",
                             synthetic={"preset": preset, "seed": seed, "scenes": only}))
    for i, entry in enumerate(scenes.get("real") or []):
        where = f"scenes.real[{i}]"
        entry = _check_keys(path, where, entry, REAL_KEYS)
        for key in ("root", "labels"):
            if not entry.get(key):
                raise _fail(path, f"{where}: missing `{key}`")
        root = Path(str(entry["root"]))
        name = _check_name(path, where, entry.get("name", root.name))
        sample = entry.get("sample_submission")
        only = entry.get("scenes")
        sets.append(SceneSet(name=name, root=root, labels=Path(str(entry["labels"])),
                             sample_submission=Path(str(sample)) if sample else None,
                             scenes=tuple(_string_list(path, f"{where}.scenes", only)) if only else None,
                             optional=bool(entry.get("optional", False))))
    if not sets:
        raise _fail(path, "`scenes` lists no scene set (give `scenes.synthetic` and/or `scenes.real`)")
    names = [s.name for s in sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(path, f"scene set names must be unique, repeated: {duplicates} (set `name:`)")
    return sets


def _parse_grid(path: Path, raw: Any) -> dict[str, list[Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _fail(path, f"grid must be a mapping of dotted key -> list of values, got {type(raw).__name__}")
    grid = {}
    for key, values in raw.items():
        if not isinstance(key, str) or not key:
            raise _fail(path, f"grid key {key!r} must be a dotted config key")
        if is_managed(key):
            raise _fail(path, f"grid key {key!r} is set by the sweep itself")
        if not isinstance(values, list) or not values:
            raise _fail(path, f"grid.{key} must be a non-empty list of values, got {values!r}")
        grid[key] = list(values)
    return grid


def _parse_variants(path: Path, raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise _fail(path, "variants must be a non-empty list of {name, overrides}")
    variants = []
    for i, entry in enumerate(raw):
        where = f"variants[{i}]"
        entry = _check_keys(path, where, entry, VARIANT_KEYS)
        name = _check_name(path, where, entry.get("name"))
        overrides = _string_list(path, f"{where}.overrides", entry.get("overrides"))
        _check_override_keys(path, f"{where}.overrides", overrides)
        variants.append({"name": name, "overrides": overrides})
    names = [v["name"] for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(path, f"variant names must be unique, repeated: {duplicates}")
    return variants


def _parse_resources(path: Path, raw: Any) -> Resources:
    if raw is None:
        return Resources()
    res = _check_keys(path, "resources", raw, RESOURCE_KEYS)
    for key, value in res.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise _fail(path, f"resources.{key} must be a number >= 0, got {value!r}")
    if res.get("num_cpus", 1) == 0:
        raise _fail(path, "resources.num_cpus must be > 0")
    return Resources(**res)


def load_sweep(path: str | os.PathLike, *, output_dir: str | os.PathLike | None = None) -> SweepSpec:
    """Read and validate a sweep file; every point's config is built once here, so a bad key fails early.

    ``output_dir`` replaces the file's ``output_dir`` (and so the default cache and data folders)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({exc})") from exc
    raw = _check_keys(path, "the top level", raw, TOP_KEYS)
    if "base_config" not in raw:
        raise _fail(path, "missing `base_config` (a run config, relative to the sweep file)")
    name = _check_name(path, "name", raw.get("name", path.stem))
    base_config = path.parent / str(raw["base_config"])
    if not base_config.is_file():
        raise _fail(path, f"base_config {base_config} not found")
    overrides = _string_list(path, "overrides", raw.get("overrides"))
    _check_override_keys(path, "overrides", overrides)
    output_dir = Path(output_dir or str(raw.get("output_dir") or Path("outputs") / "sweeps" / name))
    try:
        base = load_config(base_config)
    except ConfigError as exc:
        raise _fail(path, f"base_config: {exc}") from exc
    cache_raw = raw.get("cache_dir", "sweep")
    cache_dir = {"sweep": output_dir / "cache", "base": Path(str(base["cache_dir"]))}.get(
        str(cache_raw), Path(str(cache_raw)))
    grid = _parse_grid(path, raw.get("grid"))
    variants = _parse_variants(path, raw.get("variants"))
    swept = list(grid)
    for variant in variants:
        for item in variant["overrides"]:
            key = ".".join(parse_override(item)[0])
            if key not in swept:
                swept.append(key)
    spec = SweepSpec(path=path, name=name, base_config=base_config, overrides=overrides, output_dir=output_dir,
                     cache_dir=cache_dir, scene_sets=_parse_scene_sets(path, raw.get("scenes"), output_dir / "data"),
                     grid=grid, variants=variants, resources=_parse_resources(path, raw.get("resources")),
                     description=str(raw.get("description") or ""), swept_keys=swept)
    expand_points(spec)  # validates every key against the base config
    return spec


# ---------------------------------------------------------------------------------------------- points
def grid_cells(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product, first key slowest: ``{a: [1, 2], b: [x]}`` -> ``[{a: 1, b: x}, {a: 2, b: x}]``."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _grid_label(cell: Mapping[str, Any]) -> str:
    leaves = [k.split(".")[-1] for k in cell]
    use_full = len(set(leaves)) < len(leaves)  # two keys share a leaf name: spell them out
    return "__".join(f"{k if use_full else k.split('.')[-1]}-{_value_label(v)}" for k, v in cell.items())


def base_point_config(spec: SweepSpec) -> dict[str, Any]:
    conf = load_config(spec.base_config)
    conf = apply_overrides(conf, ["progress=false"], strict=False)
    return apply_overrides(conf, spec.overrides)


def expand_points(spec: SweepSpec) -> list[Point]:
    """Variants x grid cells, in file order (variants slowest). Names are unique folder names."""
    try:
        base = base_point_config(spec)
    except ConfigError as exc:
        raise _fail(spec.path, f"overrides: {exc}") from exc
    variants = spec.variants or [None]
    cells = grid_cells(spec.grid) if spec.grid else [{}]
    points: list[Point] = []
    for variant, cell in itertools.product(variants, cells):
        conf = base
        if variant is not None:
            try:
                conf = apply_overrides(conf, variant["overrides"])
            except ConfigError as exc:
                raise _fail(spec.path, f"variant {variant['name']!r}: {exc}") from exc
        conf = copy.deepcopy(conf)
        for key, value in cell.items():
            try:
                set_dotted(conf, key, value)
            except ConfigError as exc:
                raise _fail(spec.path, f"grid: {exc}") from exc
        parts = ([variant["name"]] if variant is not None else []) + ([_grid_label(cell)] if cell else [])
        name = "__".join(parts) or "base"
        if len(name) > MAX_NAME_LEN:
            name = f"{name[: MAX_NAME_LEN - 13]}-{fingerprint([variant, cell])}"
        points.append(Point(name=name, variant=variant["name"] if variant else None, grid_values=dict(cell),
                            conf=conf))
    names = [p.name for p in points]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(spec.path, f"two points would share the folder name(s) {duplicates} (grid values that print "
                               "the same?)")
    return points
