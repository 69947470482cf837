"""The benchmark's scene list (``configs/accuracy.yaml``): parsing, selection, resolution into units.

Format::

    shared_dir: ../../shared            # relative to this file; ``--shared DIR`` replaces it
    scenes:                             # entries, in table order
      - name: strecha                   # entry name (a folder name)
        source: shared                  # shared (paths relative to shared_dir) | repo (relative to this file)
        root: data/real                 # data.root of the runs
        labels: data/real/derived/gt_labels_imcformat.csv   # or a list: the first that exists
        images_from_labels: true        # the labels file lists the images (image_path relative to root)
        scenes: [strecha/Herz-Jesus-P8] # dataset/scene names; absent: every labelled scene with images
      - name: synth-easy
        synthetic: {preset: easy, seed: 0}   # rendered once into <output_dir>/data/<name>/
    subsets:                            # --scenes accepts subset names, entry names, dataset/scene names
      default: [kyiv, strecha, synth-easy]   # or scene names; `default` is what runs without --scenes

One *unit* = one ``dataset/scene``; every unit runs in its own process. A scene whose data is missing
(no shared folder, no images, no labels) is skipped with a note, never an error.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..config import ConfigError
from ..sweeps.scenesets import PreparedSet, labelled_scenes, prepare
from ..sweeps.spec import NAME_RE, SceneSet, SweepError

log = logging.getLogger("imc.accuracy")

TOP_KEYS = {"shared_dir", "scenes", "subsets", "description"}
ENTRY_KEYS = {"name", "source", "root", "labels", "images_from_labels", "scenes", "synthetic"}
SYNTHETIC_KEYS = {"preset", "seed", "scenes"}
DEFAULT_SUBSET = "default"


class AccuracySpecError(ConfigError):
    """The benchmark's scene list is invalid (the message names the file and the key)."""


class Source(str, enum.Enum):
    SHARED = "shared"  # paths relative to the shared data folder
    REPO = "repo"  # paths relative to the scene-list file
    SYNTHETIC = "synthetic"  # rendered by eval.synth into the benchmark's data folder


@dataclass(kw_only=True, frozen=True)
class SceneEntry:
    name: str
    source: Source
    root: str = ""
    labels: tuple[str, ...] = ()
    images_from_labels: bool = False
    scenes: tuple[str, ...] | None = None
    synthetic: Mapping[str, Any] | None = None  # {preset, seed, scenes}


@dataclass(kw_only=True)
class AccuracySpec:
    path: Path
    shared_dir: Path
    entries: list[SceneEntry]
    subsets: dict[str, list[str]] = field(default_factory=dict)
    description: str = ""

    def entry(self, name: str) -> SceneEntry:
        return next(e for e in self.entries if e.name == name)


@dataclass(kw_only=True, frozen=True)
class Unit:
    """One scene to run and score: ``data.root`` + labels (+ the CSV listing its images)."""

    entry: str
    scene: str  # dataset/scene
    root: Path
    labels: Path
    sample_submission: Path | None
    n_images: int

    @property
    def slug(self) -> str:
        return self.scene.replace("/", "__")


@dataclass(kw_only=True, frozen=True)
class Skipped:
    entry: str
    scene: str  # dataset/scene, or the entry name when the whole entry is missing
    reason: str


def _fail(path: Path, message: str) -> AccuracySpecError:
    return AccuracySpecError(f"{path}: {message}")


def _str_list(path: Path, where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, f"{where} must be a string or a list of strings, got {value!r}")
    return list(value)


def _entry(path: Path, i: int, raw: Any) -> SceneEntry:
    where = f"scenes[{i}]"
    if not isinstance(raw, Mapping):
        raise _fail(path, f"{where} must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        raise _fail(path, f"{where}: unknown key(s) {unknown} (allowed: {sorted(ENTRY_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(path, f"{where}: name {name!r} must match {NAME_RE.pattern}")
    scenes = tuple(_str_list(path, f"{where}.scenes", raw["scenes"])) if raw.get("scenes") is not None else None
    for s in scenes or ():
        if s.count("/") != 1:
            raise _fail(path, f"{where}.scenes: {s!r} is not a dataset/scene name")
    if "synthetic" in raw:
        synth = raw["synthetic"]
        if not isinstance(synth, Mapping) or "preset" not in synth or set(synth) - SYNTHETIC_KEYS:
            raise _fail(path, f"{where}.synthetic must be {{preset, seed, scenes}}, got {synth!r}")
        extra = sorted(set(raw) - {"name", "synthetic"})
        if extra:
            raise _fail(path, f"{where}: a synthetic entry takes only name and synthetic, not {extra}")
        seed = synth.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise _fail(path, f"{where}.synthetic.seed must be an integer, got {seed!r}")
        only = _str_list(path, f"{where}.synthetic.scenes", synth["scenes"]) if synth.get("scenes") else []
        return SceneEntry(name=name, source=Source.SYNTHETIC,
                          synthetic={"preset": str(synth["preset"]), "seed": seed, "scenes": only})
    try:
        source = Source(raw.get("source", Source.SHARED.value))
    except ValueError:
        raise _fail(path, f"{where}.source must be 'shared' or 'repo', got {raw.get('source')!r}") from None
    if source is Source.SYNTHETIC:
        raise _fail(path, f"{where}: give `synthetic: {{preset: ...}}` instead of source: synthetic")
    for key in ("root", "labels"):
        if not raw.get(key):
            raise _fail(path, f"{where}: missing `{key}`")
    if not isinstance(raw["root"], str):
        raise _fail(path, f"{where}.root must be a path string, got {raw['root']!r}")
    return SceneEntry(name=name, source=source, root=raw["root"],
                      labels=tuple(_str_list(path, f"{where}.labels", raw["labels"])),
                      images_from_labels=bool(raw.get("images_from_labels", False)), scenes=scenes)


def load_spec(path: str | os.PathLike, *, shared_dir: str | os.PathLike | None = None) -> AccuracySpec:
    """Read and validate a scene-list file; ``shared_dir`` replaces the file's ``shared_dir``."""
    path = Path(path)
    if not path.is_file():
        raise AccuracySpecError(f"scene list not found: {path} (the benchmark's scenes, e.g. configs/accuracy.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({exc})") from exc
    if not isinstance(raw, Mapping):
        raise _fail(path, "the top level must be a mapping")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise _fail(path, f"unknown top-level key(s) {unknown} (allowed: {sorted(TOP_KEYS)})")
    if not isinstance(raw.get("scenes"), list) or not raw["scenes"]:
        raise _fail(path, "`scenes` must be a non-empty list of scene entries")
    entries = [_entry(path, i, e) for i, e in enumerate(raw["scenes"])]
    names = [e.name for e in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise _fail(path, f"entry names must be unique, repeated: {repeated}")
    subsets_raw = raw.get("subsets") or {}
    if not isinstance(subsets_raw, Mapping):
        raise _fail(path, "`subsets` must be a mapping of name -> list of entry or scene names")
    subsets = {str(k): _str_list(path, f"subsets.{k}", v) for k, v in subsets_raw.items()}
    clash = sorted(set(subsets) & set(names))
    if clash:
        raise _fail(path, f"subset names {clash} are also entry names; rename one")
    shared = Path(shared_dir) if shared_dir is not None else path.parent / str(raw.get("shared_dir", "../../shared"))
    spec = AccuracySpec(path=path, shared_dir=shared, entries=entries, subsets=subsets,
                        description=str(raw.get("description") or ""))
    for subset, items in subsets.items():  # every subset item must name something
        for item in items:
            _match(spec, item, where=f"subsets.{subset}")
    return spec


def _match(spec: AccuracySpec, item: str, *, where: str) -> list[tuple[str, str | None]]:
    """``(entry, scene or None for the whole entry)`` pairs named by one selection item."""
    if item in spec.subsets:
        return [m for sub in spec.subsets[item] for m in _match(spec, sub, where=f"subset {item}")]
    if any(e.name == item for e in spec.entries):
        return [(item, None)]
    hits = [(e.name, s) for e in spec.entries for s in (e.scenes or ())
            if item == s or item == s.split("/", 1)[1]]
    if not hits:
        known = sorted(spec.subsets) + [e.name for e in spec.entries] + [s for e in spec.entries for s in (e.scenes or ())]
        raise AccuracySpecError(f"{spec.path}: {where}: {item!r} names no subset, entry or scene (known: {known})")
    return hits


def select(spec: AccuracySpec, items: list[str] | None) -> list[tuple[str, str | None]]:
    """The chosen ``(entry, scene)`` pairs in file order; ``None``: the ``default`` subset, else every entry."""
    if not items:
        items = [DEFAULT_SUBSET] if DEFAULT_SUBSET in spec.subsets else [e.name for e in spec.entries]
    chosen: dict[str, set[str | None]] = {}
    for item in items:
        for entry, scene in _match(spec, item, where="--scenes"):
            chosen.setdefault(entry, set()).add(scene)
    out = []
    for e in spec.entries:
        if e.name in chosen:
            picks = chosen[e.name]
            out += [(e.name, None)] if None in picks else [(e.name, s) for s in (e.scenes or ()) if s in picks]
    return out


def _resolve(base: Path, rel: str) -> Path:
    return (base / rel).resolve()


def _scene_set(spec: AccuracySpec, entry: SceneEntry, data_dir: Path, scenes: tuple[str, ...] | None) -> SceneSet:
    if entry.source is Source.SYNTHETIC:
        root = data_dir / entry.name
        return SceneSet(name=entry.name, root=root, labels=root / "train_labels.csv", synthetic=entry.synthetic)
    base = spec.shared_dir if entry.source is Source.SHARED else spec.path.parent
    labels = [_resolve(base, p) for p in entry.labels]
    found = next((p for p in labels if p.is_file()), labels[0])
    return SceneSet(name=entry.name, root=_resolve(base, entry.root), labels=found,
                    sample_submission=found if entry.images_from_labels else None, scenes=scenes, optional=True)


def _missing_reason(spec: AccuracySpec, entry: SceneEntry, scene_set: SceneSet) -> str | None:
    if entry.source is Source.SYNTHETIC:
        return None
    where = f"shared data at {spec.shared_dir} (pass --shared DIR)" if entry.source is Source.SHARED else spec.path
    if not scene_set.root.is_dir():
        return f"data root {scene_set.root} not found; {where}"
    if not scene_set.labels.is_file():
        return f"labels {scene_set.labels} not found; {where}"
    return None


def resolve_units(spec: AccuracySpec, chosen: list[tuple[str, str | None]], data_dir: Path
                  ) -> tuple[list[Unit], list[Skipped]]:
    """Units to run (synthetic entries rendered into ``data_dir`` once) and the scenes skipped, with why."""
    units: list[Unit] = []
    skipped: list[Skipped] = []
    by_entry: dict[str, list[str | None]] = {}
    for entry_name, scene in chosen:
        by_entry.setdefault(entry_name, []).append(scene)
    for entry_name, picks in by_entry.items():
        entry = spec.entry(entry_name)
        wanted = (entry.scenes if None in picks else tuple(s for s in picks if s)) or None
        requests = [None] if wanted is None else [(s,) for s in wanted]  # one scene set per scene: skipped alone
        for only in requests:
            label = only[0] if only else entry.name
            scene_set = _scene_set(spec, entry, data_dir, only)
            reason = _missing_reason(spec, entry, scene_set)
            prepared: PreparedSet | None = None
            if reason is None:
                try:
                    prepared = prepare(scene_set)
                except SweepError as exc:
                    reason = str(exc)
                if prepared is None and reason is None:
                    reason = f"data root {scene_set.root} not found"
            if prepared is None:
                log.warning("accuracy: %s skipped: %s", label, reason)
                skipped.append(Skipped(entry=entry.name, scene=label, reason=str(reason)))
                continue
            counts = labelled_scenes(prepared.labels)
            units += [Unit(entry=entry.name, scene=s, root=prepared.root, labels=prepared.labels,
                           sample_submission=prepared.sample_submission, n_images=counts.get(s, 0))
                      for s in prepared.scenes]
    return units, skipped
