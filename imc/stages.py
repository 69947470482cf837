"""The stage table: every stage of a scene declared once.

Each :class:`Stage` names its module (which has ``main(conf, inputs, outputs) -> Path`` and the
adapter ``run_stage(ctx, extractor) -> Path``), the config sections it reads, its output pattern in
``<cache_dir>/<dataset>/<scene>/``, its upstream stages and a version. From this table come the
cache names, their fingerprints and config sidecars, the per-scene recipe (``imc.pipeline``), the
summary columns, the viewer's, sweep runner's and bench's stage lists, and ``python -m imc stage``.
Adding a stage is one entry here plus its module.

The pair list is read by matches, fuse and verified item by item (each pair keyed by its images'
content hashes), so a changed pair list re-matches only new pairs and enters the fingerprint of
the mapper alone.

Fingerprints: a stage's fingerprint hashes its config sections, its version, the run seed when
``seeded``, the scene's image contents when ``images``, and its upstream stages' fingerprints. A
changed parameter therefore renames exactly its stage's outputs and those downstream of it.
Per-extractor stages (``per_extractor``) have one output per entry of ``features.extractors``; a
scene-level stage downstream of them depends on all of them, in that order.

A stage with ``competitions`` runs only for those values of ``data.competition`` (``cluster``: IMC
2025, where a "scene" is a whole dataset of mixed images); elsewhere it has no output, no fingerprint
and no sidecar (:func:`active`), so the other competitions' caches are untouched by it.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .config import ConfigError, get
from .io_utils import atomic_write_json, fingerprint


@dataclass(frozen=True, kw_only=True)
class Stage:
    name: str
    module: str
    sections: tuple[str, ...]  # dotted config keys; "{ext}" is the extractor, "{matcher}" its matcher
    output: str  # "{fp}" the fingerprint, "{slug}" the extractor's slug
    upstream: tuple[str, ...] = ()  # stages whose outputs it reads and whose fingerprints enter its own
    reads: tuple[str, ...] = ()  # outputs it also reads, per item (keyed by content hashes), not fingerprinted
    version: int = 1
    per_extractor: bool = False
    images: bool = False  # the image contents enter the fingerprint
    seeded: bool = False  # the run seed enters the fingerprint
    atomic: bool = False  # one file written at once (no resumable parts): safe to share between writers
    competitions: tuple[str, ...] = ()  # runs only for these data.competition values (empty: always)
    switch: str | None = None  # a boolean config key: when false the stage is a cheap no-op and only the
    #                            switch (not its other settings) enters the fingerprint
    doc: str = ""

    def runs_for(self, conf: dict[str, Any]) -> bool:
        return not self.competitions or get(conf, "data.competition", "imc2023") in self.competitions

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


STAGES: tuple[Stage, ...] = (
    Stage(name="orient", module="imc.orient", sections=("orient",), output="orient-{fp}.json", version=2,
          atomic=True, switch="orient.enabled",
          doc="each image's in-plane turn (0/90/180/270 degrees) to upright, with its evidence"),
    Stage(name="features", module="imc.extract", sections=("features.exif_transpose", "features.{ext}"),
          output="features-{slug}-{fp}.h5", upstream=("orient",), version=1, per_extractor=True,
          doc="keypoints, descriptors and scores per image (extracted upright, stored in the stored pixel grid)"),
    Stage(name="pairs", module="imc.pairs", sections=("pairs",), output="pairs-{fp}.txt", version=2, images=True,
          atomic=True, doc="the image pairs to match"),
    Stage(name="screen", module="imc.screen", sections=("screening",), output="screen-{fp}.txt",
          upstream=("pairs", "features"), version=1, switch="screening.enabled",
          doc="the pairs kept by cheap matching (the pair list itself when screening is off)"),
    Stage(name="matches", module="imc.match", sections=("matching.{ext}", "matchers.{matcher}"),
          output="matches-{slug}-{fp}.h5", upstream=("features",), reads=("screen",), version=1, per_extractor=True,
          doc="raw matches per kept pair"),
    Stage(name="fuse", module="imc.fuse", sections=("fusion", "features.extractors"), output="fused-{fp}.h5",
          upstream=("features", "matches"), reads=("screen",), version=2,
          doc="one keypoint set per image, matches unioned per pair"),
    Stage(name="verified", module="imc.verify", sections=("verification", "cameras"), output="verified-{fp}.h5",
          upstream=("fuse",), reads=("screen",), version=3, seeded=True, doc="RANSAC inliers and two-view geometry per pair"),
    Stage(name="sfm", module="imc.reconstruct", sections=("sfm", "cameras"), output="sfm-{fp}",
          upstream=("verified", "screen"), version=6, seeded=True, doc="pycolmap models and poses.csv"),
    Stage(name="cluster", module="imc.cluster_stage", sections=("cluster",), output="clusters-{fp}.json",
          upstream=("verified", "sfm"), reads=("pairs",), version=1, atomic=True, competitions=("imc2025",),
          doc="a dataset's images split into clusters (scenes) and outliers"),
)
BY_NAME = {s.name: s for s in STAGES}
NAMES = tuple(BY_NAME)


def stage(name: str) -> Stage:
    if name not in BY_NAME:
        raise ConfigError(f"unknown stage {name!r}; stages: {list(NAMES)}")
    return BY_NAME[name]


def key(stage_name: str, ext: str | None = None) -> str:
    """The name of one output: ``sfm``, or ``features:aliked`` for a per-extractor stage."""
    return f"{stage_name}:{ext}" if ext else stage_name


def split_key(output_key: str) -> tuple[str, str | None]:
    name, _, ext = output_key.partition(":")
    return name, ext or None


def extractors(conf: dict[str, Any]) -> list[str]:
    return list(conf["features"]["extractors"])


def active(conf: dict[str, Any]) -> list[Stage]:
    """The stages that run under ``conf`` (its ``data.competition``), in order."""
    return [s for s in STAGES if s.runs_for(conf)]


def timed_names(seconds: list[dict[str, float]]) -> list[str]:
    """Stage names for a seconds table: every stage that always runs, and the others that ran."""
    return [s.name for s in STAGES if not s.competitions or any(s.name in row for row in seconds)]


def output_keys(conf: dict[str, Any]) -> list[str]:
    """Every output of a scene, in the order the stages run."""
    return [key(s.name, e) for s in active(conf) for e in (extractors(conf) if s.per_extractor else [None])]


def stage_conf(s: Stage, conf: dict[str, Any], ext: str | None = None) -> dict[str, Any]:
    """The part of the config the stage reads (saved beside its output). A switched-off stage reads only
    its switch: neither its other settings nor its version rename anything while it is off (its output is
    then the same no-op whatever the version; orient's version 2 once renamed every feature cache)."""
    if s.switch and not get(conf, s.switch):
        return {s.switch: False}
    names = {"ext": ext or ""}
    if ext:
        names["matcher"] = get(conf, f"matching.{ext}.matcher", "")
    out: dict[str, Any] = {section.format(**names): get(conf, section.format(**names)) for section in s.sections}
    out["version"] = s.version
    if s.seeded:
        out["seed"] = conf["seed"]
    return out


def fingerprints(conf: dict[str, Any], image_sha1s: dict[str, str]) -> dict[str, str]:
    """Output key -> fingerprint, for every output of a scene."""
    images = fingerprint(sorted(image_sha1s.items()))
    exts = extractors(conf)
    fps: dict[str, str] = {}
    for s in active(conf):
        for ext in (exts if s.per_extractor else [None]):
            ups = []
            for up in s.upstream:
                if BY_NAME[up].per_extractor:
                    ups += [fps[key(up, e)] for e in ([ext] if ext else exts)]
                else:
                    ups.append(fps[up])
            parts: list[Any] = [stage_conf(s, conf, ext), ups]
            if s.images:
                parts.append(images)
            fps[key(s.name, ext)] = fingerprint(parts)
    return fps


def slug(conf: dict[str, Any], ext: str) -> str:
    from .features import get as get_extractor

    return get_extractor(ext).slug(conf["features"][ext])


@dataclass(kw_only=True)
class ScenePlan:
    """Where every output of one scene lives, and its fingerprint."""

    scene_dir: Path
    fingerprints: dict[str, str]
    paths: dict[str, Path] = field(default_factory=dict)

    def path(self, stage_name: str, ext: str | None = None) -> Path:
        return self.paths[key(stage_name, ext)]


def plan(conf: dict[str, Any], scene_dir: Path, image_sha1s: dict[str, str]) -> ScenePlan:
    fps = fingerprints(conf, image_sha1s)
    paths = {}
    for output_key, fp in fps.items():
        name, ext = split_key(output_key)
        pattern = BY_NAME[name].output
        paths[output_key] = scene_dir / pattern.format(fp=fp, slug=slug(conf, ext) if ext else "")
    return ScenePlan(scene_dir=scene_dir, fingerprints=fps, paths=paths)


def check_sidecar(path: Path, stage_config: dict[str, Any]) -> None:
    """Save the stage config beside its output; refuse to reuse an output whose saved config differs."""
    sidecar = path.with_name(path.name + ".config.json")
    blob = json.loads(json.dumps(stage_config, sort_keys=True, default=str))
    if sidecar.exists():
        saved = json.loads(sidecar.read_text())
        if saved != blob:
            raise ConfigError(f"cache {path} was produced by a different config (fingerprint collision or a "
                              f"hand-edited cache); delete it. saved={saved} now={blob}")
    else:
        atomic_write_json(sidecar, blob)


def write_sidecars(conf: dict[str, Any], scene_plan: ScenePlan) -> None:
    for output_key, path in scene_plan.paths.items():
        name, ext = split_key(output_key)
        check_sidecar(path, stage_conf(BY_NAME[name], conf, ext))
