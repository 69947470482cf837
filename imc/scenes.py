"""Which images belong to which scene: the IMC folder layout and/or a sample_submission.csv."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class SceneListError(ValueError):
    """The scene listing (folder or CSV) is unusable."""


@dataclass(kw_only=True)
class Scene:
    dataset: str
    scene: str
    root: Path  # data.root: image_paths are relative to it
    image_paths: list[str] = field(default_factory=list)  # as listed, possibly missing on disk

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"

    def file(self, image_path: str) -> Path:
        return self.root / image_path


def scenes_from_layout(root: Path) -> list[Scene]:
    """``<root>/<dataset>/<scene>/images/*`` → scenes (empty ``images/`` folders included)."""
    scenes = []
    for images_dir in sorted(root.glob("*/*/images")):
        if not images_dir.is_dir():
            continue
        dataset, scene = images_dir.parent.parent.name, images_dir.parent.name
        names = sorted(
            p.relative_to(root).as_posix()
            for p in images_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        scenes.append(Scene(dataset=dataset, scene=scene, root=root, image_paths=names))
    return scenes


def scenes_from_csv(csv_path: Path, root: Path) -> list[Scene]:
    """Rows ``image_path,dataset,scene`` (any column order; extra columns ignored)."""
    if not csv_path.is_file():
        raise SceneListError(f"sample submission not found: {csv_path}")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image_path", "dataset", "scene"} - set(reader.fieldnames or [])
        if missing:
            raise SceneListError(f"{csv_path}: missing columns {sorted(missing)} (have {reader.fieldnames})")
        by_scene: dict[tuple[str, str], list[str]] = {}
        for line, row in enumerate(reader, start=2):
            if not row["image_path"] or not row["dataset"] or not row["scene"]:
                raise SceneListError(f"{csv_path}:{line}: empty image_path/dataset/scene in {row}")
            paths = by_scene.setdefault((row["dataset"], row["scene"]), [])
            if row["image_path"] not in paths:
                paths.append(row["image_path"])
    return [Scene(dataset=d, scene=s, root=root, image_paths=p) for (d, s), p in by_scene.items()]


def discover_scenes(*, root: str | os.PathLike, sample_submission: str | os.PathLike | None = None,
                    only: list[str] | None = None) -> list[Scene]:
    root = Path(root)
    if sample_submission:
        scenes = scenes_from_csv(Path(sample_submission), root)
    else:
        if not root.is_dir():
            raise SceneListError(f"data.root is not a folder: {root}")
        scenes = scenes_from_layout(root)
        if not scenes:
            raise SceneListError(f"no <dataset>/<scene>/images/ folders under {root}")
    if only:
        unknown = set(only) - {s.name for s in scenes}
        if unknown:
            raise SceneListError(f"data.scenes names unknown scenes {sorted(unknown)}")
        scenes = [s for s in scenes if s.name in set(only)]
    return scenes
