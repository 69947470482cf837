"""Configuration: YAML presets + ``key=value`` overrides, resolved config saved beside outputs.

A config is a plain nested dict. ``load_config(path, overrides)`` reads the YAML (which may name
a ``base:`` file it extends), applies ``a.b.c=value`` overrides (values parsed as YAML, so
``features.max_num_keypoints=4096`` is an int and ``data.sample_submission=null`` is None) and
checks every overridden key exists, so a typo is an error rather than a silently ignored key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class ConfigError(ValueError):
    """A config file or override is invalid."""


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is not None:
        data = deep_merge(read_yaml(path.parent / base), data)
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
    return keys, value


def apply_overrides(conf: Mapping[str, Any], overrides: Iterable[str], *, strict: bool = True) -> dict[str, Any]:
    out = copy.deepcopy(dict(conf))
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for depth, k in enumerate(keys[:-1]):
            if k not in node or not isinstance(node[k], dict):
                if strict:
                    raise ConfigError(f"override {item!r}: unknown section {'.'.join(keys[: depth + 1])!r}")
                node[k] = {}
            node = node[k]
        if strict and keys[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {'.'.join(keys)!r}")
        node[keys[-1]] = value
    return out


def get(conf: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = conf
    for k in dotted.split("."):
        if not isinstance(node, Mapping) or k not in node:
            return default
        node = node[k]
    return node


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


REQUIRED_SECTIONS = ("data", "output", "cache_dir", "pairs", "features", "matching", "verification", "sfm")


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Load a YAML config (default: the repository's ``configs/default.yaml``), follow its
    ``base:`` chain (relative to the file itself, so presets work wherever the project is
    installed) and apply ``key=value`` overrides."""
    conf = read_yaml(path if path is not None else default_config_path())
    missing = [k for k in REQUIRED_SECTIONS if k not in conf]
    if missing:
        raise ConfigError(f"{path}: missing sections {missing} (does it start with `base: default.yaml`?)")
    return apply_overrides(conf, overrides)


def dump_config(conf: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(conf), sort_keys=False)
