"""The commit-time debug run: a small subset of the competition's train set, scored with ``eval``,
so the competitor sees an mAA before submitting (never on the scoring rerun: it costs time there).

:func:`make_debug_subset` picks up to ``max_scenes`` scenes whose images are present (the smallest
first: fastest) and up to ``max_images`` images of each, and writes a ``sample_submission``-style
CSV (``image_path,dataset,scene``, paths relative to the train folder) and the matching labels.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

LABEL_COLUMNS = ("image_path", "dataset", "scene", "rotation_matrix", "translation_vector")


@dataclass(kw_only=True)
class DebugSubset:
    root: Path  # data.root: the train folder
    sample: Path  # image_path,dataset,scene
    labels: Path  # the same rows with their ground truth
    scenes: list[str]
    n_images: int


def make_debug_subset(labels_csv: str | os.PathLike, out_dir: str | os.PathLike, *, max_scenes: int = 1,
                      max_images: int = 8, root: str | os.PathLike | None = None) -> DebugSubset | None:
    """None when the labels are not in the IMC 2023 format or none of their images are present."""
    labels_csv = Path(labels_csv)
    root = Path(root) if root is not None else labels_csv.parent
    with open(labels_csv, newline="") as f:
        reader = csv.DictReader(f)
        if not set(LABEL_COLUMNS) <= set(reader.fieldnames or []):
            return None
        by_scene: dict[tuple[str, str], list[dict[str, str]]] = {}
        for row in reader:
            if (root / row["image_path"]).is_file():
                by_scene.setdefault((row["dataset"], row["scene"]), []).append(row)
    usable = sorted((rows for rows in by_scene.values() if len(rows) >= 2), key=lambda rows: (len(rows), rows[0]["scene"]))
    chosen = [sorted(rows, key=lambda r: r["image_path"])[:max_images] for rows in usable[:max_scenes]]
    if not chosen:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sample, labels = out_dir / "debug_sample_submission.csv", out_dir / "debug_labels.csv"
    with open(sample, "w", newline="") as fs, open(labels, "w", newline="") as fl:
        ws, wl = csv.writer(fs), csv.DictWriter(fl, fieldnames=list(LABEL_COLUMNS), extrasaction="ignore")
        ws.writerow(["image_path", "dataset", "scene"])
        wl.writeheader()
        for rows in chosen:
            for r in rows:
                ws.writerow([r["image_path"], r["dataset"], r["scene"]])
                wl.writerow(r)
    return DebugSubset(root=root, sample=sample, labels=labels, n_images=sum(map(len, chosen)),
                       scenes=[f"{rows[0]['dataset']}/{rows[0]['scene']}" for rows in chosen])
