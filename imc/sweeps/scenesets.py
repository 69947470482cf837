"""Scene sets of a sweep made ready to run: synthetic ones rendered, scenes resolved against the labels.

A scene set runs the scenes that have images on disk and rows in the labels file (a labels file may
list scenes whose images were never downloaded, e.g. IMC 2023's ``train_labels.csv`` beside kyiv).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..io_utils import atomic_path, atomic_write_json, remove_path
from ..scenes import SceneListError, discover_scenes
from .spec import SceneSet, SweepError

log = logging.getLogger("imc.sweep")

SYNTH_MARKER = ".sweep-synth.json"


@dataclass(kw_only=True, frozen=True)
class PreparedSet:
    name: str
    root: Path  # absolute
    labels: Path  # absolute
    sample_submission: Path | None  # absolute
    scenes: tuple[str, ...]  # dataset/scene, each with images on disk and labels
    n_images: int


def render_synthetic(scene_set: SceneSet) -> None:
    """Render a synthetic set into its root once; a marker file records what was rendered."""
    want = dict(scene_set.synthetic or {})
    marker = scene_set.root / SYNTH_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == want and scene_set.labels.is_file():
        return
    try:
        from eval.synth import get_preset, render_scene
        from eval.synth.presets import UnknownPresetError
    except ImportError as exc:
        raise SweepError(f"scene set {scene_set.name!r}: synthetic scenes need the eval.synth renderer ({exc})") from exc
    try:
        preset = get_preset(want["preset"])
        names = want["scenes"] or [s.name for s in preset.scenes]
        for name in names:
            preset.scene(name)
    except UnknownPresetError as exc:
        raise SweepError(f"scene set {scene_set.name!r}: {exc}") from exc
    log.info("sweep: rendering synthetic set %s (preset %s, seed %d, %d scene(s)) into %s", scene_set.name,
             want["preset"], want["seed"], len(names), scene_set.root)
    remove_path(marker)
    with atomic_path(scene_set.root) as tmp:  # a half-rendered set never looks complete
        tmp.mkdir(parents=True)
        for name in names:
            render_scene(preset, int(want["seed"]), tmp, scene=name, progress=False)
    atomic_write_json(marker, want)


def labelled_scenes(labels: Path) -> dict[str, int]:
    """``dataset/scene`` -> number of labelled images."""
    if not labels.is_file():
        raise SweepError(f"labels file not found: {labels}")
    counts: dict[str, int] = {}
    with open(labels, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"dataset", "scene", "image_path"} - set(reader.fieldnames or [])
        if missing:
            raise SweepError(f"{labels}: missing columns {sorted(missing)}")
        for row in reader:
            key = f"{row['dataset']}/{row['scene']}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def prepare(scene_set: SceneSet) -> PreparedSet | None:
    """Resolve a scene set; ``None`` when it is optional and its root is missing."""
    if scene_set.synthetic is not None:
        render_synthetic(scene_set)
    root = scene_set.root.resolve()
    if not root.is_dir():
        if scene_set.optional:
            log.warning("sweep: scene set %s skipped: its root %s does not exist (optional)", scene_set.name, root)
            return None
        raise SweepError(f"scene set {scene_set.name!r}: root {root} is not a folder")
    labels = scene_set.labels.resolve()
    labelled = labelled_scenes(labels)
    sample = scene_set.sample_submission.resolve() if scene_set.sample_submission else None
    try:
        found = discover_scenes(root=root, sample_submission=sample)
    except SceneListError as exc:
        raise SweepError(f"scene set {scene_set.name!r}: {exc}") from exc
    with_images = {s.name: s for s in found if any(s.file(p).is_file() for p in s.image_paths)}
    if scene_set.scenes is not None:
        bad = {n: ("no images on disk" if n not in with_images else "no labels") for n in scene_set.scenes
               if n not in with_images or n not in labelled}
        if bad:
            raise SweepError(f"scene set {scene_set.name!r}: scenes cannot be scored: {bad}")
        names = list(scene_set.scenes)
    else:
        names = [n for n in with_images if n in labelled]
        skipped = sorted(set(labelled) - set(names))
        if skipped:
            log.info("sweep: scene set %s: %d labelled scene(s) without images skipped: %s", scene_set.name,
                     len(skipped), skipped)
    if not names:
        raise SweepError(f"scene set {scene_set.name!r}: no scene under {root} has both images and labels in {labels}")
    return PreparedSet(name=scene_set.name, root=root, labels=labels, sample_submission=sample, scenes=tuple(names),
                       n_images=sum(len(with_images[n].image_paths) for n in names))


def prepare_all(scene_sets: list[SceneSet]) -> list[PreparedSet]:
    prepared = [p for p in (prepare(s) for s in scene_sets) if p is not None]
    owner: dict[str, str] = {}
    for p in prepared:
        for scene in p.scenes:
            if scene in owner:
                raise SweepError(f"scene {scene!r} is in scene sets {owner[scene]!r} and {p.name!r}: their caches "
                                 "(<cache_dir>/<dataset>/<scene>) would collide; keep it in one set")
            owner[scene] = p.name
    if not prepared:
        raise SweepError("no scene set is available (all optional ones are missing)")
    return prepared
