"""Which images belong to which scene: the IMC folder layout and/or a sample_submission.csv.

Three competitions (``data.competition``, :class:`Competition`):

- ``imc2023``: ``<root>/<dataset>/<scene>/images/*`` and/or ``image_path,dataset,scene`` rows,
  ``image_path`` relative to ``<competition>/test``;
- ``imc2024``: the same columns, ``image_path`` relative to the competition folder (the sample's own
  folder); :func:`data_root_for` finds the folder the listed paths are relative to;
- ``imc2025``: ``<root>/<dataset>/*`` (one folder of images of unknown scenes per dataset) and/or
  ``image_id,dataset,image`` rows (``image`` relative to ``<root>/<dataset>``). Each dataset is ONE
  :class:`Scene` named :data:`DATASET_SCENE`, split into clusters by the ``cluster`` stage; its
  ``image_ids`` are passed through to the CSV.
"""

from __future__ import annotations

import csv
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path

DATASET_SCENE = "all"  # the scene name of an IMC 2025 dataset before clustering (cache dir, reports)
DATA_ROOT_PROBE_ROWS = 50


class Competition(str, enum.Enum):
    IMC2023 = "imc2023"
    IMC2024 = "imc2024"
    IMC2025 = "imc2025"

    @classmethod
    def parse(cls, value: str) -> "Competition":
        try:
            return cls(value)
        except ValueError:
            raise SceneListError(f"data.competition is {value!r}; choose one of {[c.value for c in cls]}") from None


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class SceneListError(ValueError):
    """The scene listing (folder or CSV) is unusable."""


@dataclass(kw_only=True)
class Scene:
    dataset: str
    scene: str
    root: Path  # data.root: image_paths are relative to it
    image_paths: list[str] = field(default_factory=list)  # as listed, possibly missing on disk
    image_ids: list[str] = field(default_factory=list)  # IMC 2025: the sample's image_id per image_path

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"

    def image_name(self, image_path: str) -> str:
        """IMC 2025: the ``image`` column (the path inside the dataset folder)."""
        return image_path.split("/", 1)[1] if "/" in image_path else image_path

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


def datasets_from_layout(root: Path) -> list[Scene]:
    """IMC 2025: ``<root>/<dataset>/*`` → one scene per dataset; image_id = ``<dataset>_<image stem>``."""
    scenes = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if names:
            scenes.append(Scene(dataset=folder.name, scene=DATASET_SCENE, root=root,
                                image_paths=[f"{folder.name}/{n}" for n in names],
                                image_ids=[f"{folder.name}_{Path(n).stem}" for n in names]))
    return scenes


def datasets_from_csv(csv_path: Path, root: Path) -> list[Scene]:
    """IMC 2025: rows ``image_id,dataset,image`` (``scene`` and poses ignored) → one scene per dataset,
    datasets and images in the order of the file."""
    from .formats import SampleSubmissionError, read_sample_submission_2025

    if not csv_path.is_file():
        raise SceneListError(f"sample submission not found: {csv_path}")
    try:
        rows = read_sample_submission_2025(csv_path)
    except SampleSubmissionError as exc:
        raise SceneListError(f"{exc} (data.competition=imc2025 reads image_id,dataset,image)") from None
    by_dataset: dict[str, Scene] = {}
    for row in rows:
        scene = by_dataset.setdefault(row.dataset, Scene(dataset=row.dataset, scene=DATASET_SCENE, root=root))
        scene.image_paths.append(f"{row.dataset}/{row.image}")
        scene.image_ids.append(row.image_id)
    return list(by_dataset.values())


def listed_paths(sample_submission: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The image paths a sample submission lists (``image_path``, or IMC 2025's ``dataset/image``)."""
    with open(sample_submission, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = (r.get("image_path") or (f"{r['dataset']}/{r['image']}" if r.get("dataset") and r.get("image") else "")
                for r in reader)
        paths = [p for p in rows if p]
    return paths[:limit]


def data_root_for(candidates: list[str | os.PathLike], sample_submission: str | os.PathLike | None) -> Path:
    """The candidate folder holding the most of the sample's first listed files (the first on ties, and
    when none holds any: the input check then names the problem)."""
    roots = [Path(c) for c in candidates]
    if sample_submission is None or not Path(sample_submission).is_file():
        return roots[0]
    paths = listed_paths(sample_submission, DATA_ROOT_PROBE_ROWS)
    hits = [sum((root / p).is_file() for p in paths) for root in roots]
    return roots[hits.index(max(hits))] if max(hits) > 0 else roots[0]


def resolve_root(root: str | os.PathLike | None, sample_submission: str | os.PathLike | None,
                 competition: Competition) -> Path:
    """``data.root``, or where it is null (or, for IMC 2024, holds none of the listed files) the folder the
    sample's paths are relative to: ``<sample's folder>/test`` (IMC 2023/2025) or ``<sample's folder>``."""
    if sample_submission is None:
        if root is None:
            raise SceneListError("data.root is null and no data.sample_submission is given: set one of them")
        return Path(root)
    here = Path(sample_submission).parent
    auto = [here, here / "test"] if competition is Competition.IMC2024 else [here / "test", here]
    if root is None:
        return data_root_for(auto, sample_submission)
    if competition is Competition.IMC2024:
        return data_root_for([Path(root), *auto], sample_submission)
    return Path(root)


def discover_scenes(*, root: str | os.PathLike | None, sample_submission: str | os.PathLike | None = None,
                    only: list[str] | None = None, competition: str | Competition = Competition.IMC2023) -> list[Scene]:
    competition = Competition.parse(competition) if isinstance(competition, str) else competition
    root = resolve_root(root, sample_submission, competition)
    per_dataset = competition is Competition.IMC2025
    if sample_submission:
        scenes = (datasets_from_csv if per_dataset else scenes_from_csv)(Path(sample_submission), root)
    else:
        if not root.is_dir():
            raise SceneListError(f"data.root is not a folder: {root}")
        scenes = (datasets_from_layout if per_dataset else scenes_from_layout)(root)
        if not scenes:
            raise SceneListError(f"no {'<dataset>/ image folders' if per_dataset else '<dataset>/<scene>/images/ folders'} "
                                 f"under {root}")
    if only:
        unknown = set(only) - {s.name for s in scenes}
        if unknown:
            raise SceneListError(f"data.scenes names unknown scenes {sorted(unknown)}")
        scenes = [s for s in scenes if s.name in set(only)]
    return scenes
