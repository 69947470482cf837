"""Configuration: YAML presets + ``key=value`` overrides, checked strictly, saved beside outputs.

A config is a plain nested dict. ``load_config(path, overrides)`` starts from
``configs/default.yaml`` (the one source of every default; shipped inside the package too, so an
installed wheel finds it), merges the file (which may name a ``base:`` file it extends, resolved
next to it) and applies ``a.b.c=value`` overrides (values parsed as YAML). Every key, from a file
or the command line, must exist in the defaults: a typo is an error naming the key and the file.
The open sections are ``features.<extractor>``, ``matching.<extractor>`` and ``matchers.<matcher>``:
their names must be registered (``imc/features``, ``imc/matchers`` or a ``plugins`` module) and
their keys are checked against the defaults of that extractor or matcher.
"""

from __future__ import annotations

import copy
import functools
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
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
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


# Sections whose sub-sections are named by registered extractors / matchers (checked by `validate`).
OPEN_SECTIONS = ("features", "matching", "matchers")


def apply_overrides(conf: Mapping[str, Any], overrides: Iterable[str], *, strict: bool = True) -> dict[str, Any]:
    """Apply ``a.b.c=value`` items. ``strict``: the key must exist, except inside the open sections
    (``features.disk.resize_max=...`` may add an extractor), whose keys :func:`validate` checks."""
    out = copy.deepcopy(dict(conf))
    for item in overrides:
        keys, value = parse_override(item)
        lenient = not strict or (keys[0] in OPEN_SECTIONS and len(keys) >= 2)
        node = out
        for depth, k in enumerate(keys[:-1]):
            if k not in node or not isinstance(node[k], dict):
                if not lenient:
                    raise ConfigError(f"override {item!r}: unknown section {'.'.join(keys[: depth + 1])!r}")
                node[k] = {}
            node = node[k]
        if not lenient and keys[-1] not in node:
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


def configs_dir() -> Path:
    """``configs/`` of the source tree, or its copy inside an installed package (``imc/configs``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "configs"):
        if (candidate / "default.yaml").is_file():
            return candidate
    raise ConfigError(f"configs/default.yaml not found next to {here} (a broken install? reinstall imc)")


def default_config_path() -> Path:
    return configs_dir() / "default.yaml"


@functools.lru_cache(maxsize=1)
def _default_template() -> dict[str, Any]:
    return read_yaml(default_config_path())


def default_template() -> dict[str, Any]:
    """``configs/default.yaml`` as read (a fresh copy)."""
    return copy.deepcopy(_default_template())


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The defaults, merged with ``path`` (a YAML preset), then ``key=value`` overrides; checked."""
    conf = default_template()
    if path is not None and Path(path).resolve() != default_config_path().resolve():
        conf = deep_merge(conf, read_yaml(path))
    where = str(path) if path is not None else str(default_config_path())
    try:
        conf = validate(conf)  # the file's own keys first, so an error names the file
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return validate(apply_overrides(conf, overrides))


def _check_keys(node: Mapping[str, Any], template: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``node`` with missing keys filled from ``template``; unknown keys are errors (``{}`` = free)."""
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where or 'the top level'} must be a mapping, got {node!r}")
    unknown = sorted(set(node) - set(template))
    if unknown:
        near = {k: [t for t in template if _close(k, t)] for k in unknown}
        hint = "; ".join(f"did you mean {where + '.' if where else ''}{near[k][0]}?" for k in unknown if near[k])
        raise ConfigError(f"unknown key(s) {[f'{where}.{k}' if where else k for k in unknown]}"
                          + (f" ({hint})" if hint else "") + f"; known: {sorted(template)}")
    out = copy.deepcopy(dict(template))
    for k, v in node.items():
        t = template[k]
        if isinstance(t, Mapping) and t:  # a `{}` default (sfm.extra_options) takes any keys
            out[k] = _check_keys(v, t, f"{where}.{k}" if where else k)
        else:
            out[k] = v
    return out


def _close(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def validate(conf: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key against the defaults and the registries; fill plugin defaults; check that each
    extractor's matcher fits its descriptors. Returns the completed config."""
    from . import features as feature_registry
    from . import matchers as matcher_registry
    from .registry import UnknownNameError, import_plugins

    template = default_template()
    try:
        import_plugins(conf.get("plugins") or [])
    except ImportError as exc:
        raise ConfigError(f"plugins: cannot import {exc.name!r} ({exc})") from exc
    fixed = {k: v for k, v in conf.items() if k not in OPEN_SECTIONS}
    out = _check_keys(fixed, {k: v for k, v in template.items() if k not in OPEN_SECTIONS}, "")

    def entry_template(section: str, name: str, registry_get: Any) -> dict[str, Any]:
        if name in template[section]:
            return template[section][name]
        try:
            item = registry_get(name)
        except UnknownNameError as exc:
            raise ConfigError(f"{section}.{name}: {exc}") from None
        if item.default_conf is None:
            raise ConfigError(f"{section}.{name}: no defaults (neither in configs/default.yaml nor default_conf)")
        return item.default_conf

    feats = conf.get("features") or {}
    if not isinstance(feats, Mapping):
        raise ConfigError(f"features must be a mapping, got {feats!r}")
    common = ("extractors", "exif_transpose")
    out_features = {k: feats.get(k, template["features"][k]) for k in common}
    exts = out_features["extractors"]
    if not isinstance(exts, list) or not exts or not all(isinstance(e, str) for e in exts) or len(set(exts)) < len(exts):
        raise ConfigError(f"features.extractors must be a non-empty list of distinct extractor names, got {exts!r}")
    for name in sorted((set(feats) | set(template["features"]) | set(exts)) - set(common)):
        if name in template["features"]["aliked"] and name not in template["features"]:
            raise ConfigError(f"unknown key 'features.{name}': extractor settings moved under their extractor, "
                              f"e.g. features.aliked.{name}")
        tmpl = entry_template("features", name, feature_registry.get)
        out_features[name] = _check_keys(feats.get(name) or {}, tmpl, f"features.{name}")
        if "resize_max" in out_features[name]:
            try:
                feature_registry.resize_sizes(out_features[name])
            except ValueError as exc:
                raise ConfigError(f"features.{name}.{exc}") from None
    out["features"] = out_features

    matching = conf.get("matching") or {}
    out_matching: dict[str, Any] = {}
    for name in sorted(set(matching) | set(template["matching"]) | set(exts)):
        entry = dict(matching.get(name) or template["matching"].get(name) or {})
        if "matcher" not in entry:
            raise ConfigError(f"matching.{name}: no matcher named for extractor {name!r} "
                              f"(e.g. matching.{name}.matcher=nearest_neighbour)")
        try:
            matcher = matcher_registry.get(entry["matcher"])
        except UnknownNameError as exc:
            raise ConfigError(f"matching.{name}.matcher: {exc}") from None
        allowed = {"matcher", *matcher.entry_keys}
        inherited = template["matching"].get(name, {})
        if inherited.get("matcher") != entry["matcher"]:  # another matcher: the default matcher's keys do not apply
            entry = {k: v for k, v in entry.items() if k in allowed or inherited.get(k, object()) != v}
        extra, missing = sorted(set(entry) - allowed), sorted(allowed - set(entry))
        if extra or missing:
            raise ConfigError(f"matching.{name}: matcher {entry['matcher']!r} takes the keys {sorted(allowed)}; "
                              f"unknown {extra}, missing {missing}")
        out_matching[name] = entry
    out["matching"] = out_matching

    mconf = dict(conf.get("matchers") or {})
    used = {e["matcher"] for e in out_matching.values()}
    out["matchers"] = {name: _check_keys(mconf.get(name, {}), entry_template("matchers", name, matcher_registry.get),
                                         f"matchers.{name}")
                       for name in sorted(set(mconf) | set(template["matchers"]) | used)}

    for ext in out_features["extractors"]:
        check_pairing(out, ext)
    for key in ("workers", "verify_threads"):
        check_count(out["runtime"][key], f"runtime.{key}")
    return out


def check_count(value: Any, key: str) -> None:
    """A count setting (``runtime.workers``, ``runtime.verify_threads``): a positive integer or ``auto``."""
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{key} must be a positive integer or auto, got {value!r}")


def check_pairing(conf: Mapping[str, Any], ext: str) -> None:
    """Refuse an extractor/matcher combination that cannot work, naming both."""
    from . import features as feature_registry
    from . import matchers as matcher_registry

    if ext not in conf["matching"]:
        raise ConfigError(f"features.extractors lists {ext!r} but matching.{ext} is missing (its matcher)")
    extractor = feature_registry.get(ext)
    entry = conf["matching"][ext]
    matcher = matcher_registry.get(entry["matcher"])
    if matcher.name not in extractor.matchers:
        raise ConfigError(f"extractor {ext!r} cannot be matched by {matcher.name!r}; it fits {list(extractor.matchers)}")
    try:
        need = matcher.input_dim(entry)
    except ValueError as exc:
        raise ConfigError(f"matching.{ext}: {exc}") from None
    have = extractor.descriptor_dim(conf["features"][ext])
    if need is not None and need != have:
        raise ConfigError(f"features.{ext} ({conf['features'][ext].get('model', ext)}) gives {have}-d descriptors but "
                          f"matcher {matcher.name!r} with {entry} expects {need}-d: pick another model or matcher")


def dump_config(conf: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(conf), sort_keys=False)
