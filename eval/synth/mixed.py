"""``eval synth --preset mixed``: several synthetic scenes plus outlier images in ONE dataset folder,
IMC 2025 style, for the clustering + registration metric (``python -m eval score --metric imc2025``).

Output (``<out>`` is owned by this preset; rendering replaces the dataset folder atomically):

* ``<out>/<dataset>/image_NNN.png``: every view of every scene and the outliers, shuffled with the
  seed so that names say nothing about scenes;
* ``<out>/train_labels.csv``: ``image_id,dataset,scene,image,rotation_matrix,translation_vector``
  (outliers: ``scene=outliers``, ``nan`` poses), world-to-camera like every synth label;
* ``<out>/train_thresholds.csv``: Kaggle's ``dataset,scene,thresholds`` format, one row per scene
  (the organisers' draft default 0.01;0.02;0.05;0.1;0.15;0.2 m; the scenes are metric, cameras
  4-6 m from the target);
* ``<out>/sample_submission.csv``: ``image_id,dataset,scene,image,...`` with every image, for the
  pipeline's input.

Each outlier is a single view of its own random scene (own layout seed), so it shares no geometry
with the scenes or with the other outliers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imc.io_utils import atomic_path, atomic_write_text, format_numbers

from .presets import SynthPreset, SynthScene, get_preset
from .scene import build_scene_model, encode_image, render_synthetic_view

LABEL_COLUMNS_2025 = ("image_id", "dataset", "scene", "image", "rotation_matrix", "translation_vector")
THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2)
OUTLIERS = "outliers"


class MixedOutputError(ValueError):
    """The output folder holds labels of another format (render the mixed preset into its own folder)."""


@dataclass(frozen=True, kw_only=True)
class MixedSpec:
    preset: str  # the SynthPreset (in PRESETS) whose scenes and camera rig are used
    n_outliers: int


MIXED: dict[str, MixedSpec] = {"mixed": MixedSpec(preset="mixed", n_outliers=5)}


@dataclass(frozen=True, kw_only=True)
class MixedLabel:
    image_id: str
    scene: str
    image: str
    R: np.ndarray
    t: np.ndarray


def render_mixed(name: str, seed: int, out_dir: str | os.PathLike, *, progress: bool = False) -> list[MixedLabel]:
    spec = MIXED[name]
    preset = get_preset(spec.preset)
    root = Path(out_dir)
    labels_path = root / "train_labels.csv"
    if labels_path.is_file():
        header = labels_path.read_text().splitlines()[:1]
        if not header or "image" not in header[0].split(","):
            raise MixedOutputError(f"{labels_path} holds labels of another format ({header}); "
                                   f"render --preset {name} into its own --out folder")
    jobs = []  # (scene name, model, view)
    for s in preset.scenes:
        model = build_scene_model(preset, seed, s.name)
        jobs += [(s.name, model, v) for v in model.views]
    layouts = [s.layout for s in preset.scenes]
    for k in range(spec.n_outliers):
        single = dataclasses.replace(
            preset, scenes=(SynthScene(name=f"outlier-{k}", layout=layouts[k % len(layouts)]),),
            camera=dataclasses.replace(preset.camera, n_images=1),
        )
        model = build_scene_model(single, seed + 7919 * (k + 1), f"outlier-{k}")
        jobs += [(OUTLIERS, model, v) for v in model.views]
    order = np.random.default_rng([seed, 2025]).permutation(len(jobs))
    ext = preset.image_format.value
    labels: list[MixedLabel] = []
    with atomic_path(root / preset.dataset) as tmp:
        tmp.mkdir(parents=True)
        items = list(enumerate(order))
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc=f"{preset.dataset} (mixed)", unit="img")
        for number, j in items:
            scene, model, view = jobs[j]
            image, _ = render_synthetic_view(model, view)
            name_ = f"image_{number:03d}.{ext}"
            (tmp / name_).write_bytes(encode_image(image, preset.image_format, preset.jpeg_quality))
            cam = view.draw.final
            labels.append(MixedLabel(image_id=f"{preset.dataset}_{number:03d}", scene=scene, image=name_, R=cam.R, t=cam.t))
    _write_outputs(root, preset, labels)
    return labels


def _write_outputs(root: Path, preset: SynthPreset, labels: list[MixedLabel]) -> None:
    nan_r, nan_t = ";".join(["nan"] * 9), ";".join(["nan"] * 3)
    buf, sample = io.StringIO(), io.StringIO()
    w, ws = csv.writer(buf, lineterminator="\n"), csv.writer(sample, lineterminator="\n")
    w.writerow(LABEL_COLUMNS_2025)
    ws.writerow(LABEL_COLUMNS_2025)
    for lab in labels:
        outlier = lab.scene == OUTLIERS
        w.writerow([lab.image_id, preset.dataset, lab.scene, lab.image,
                    nan_r if outlier else format_numbers(lab.R), nan_t if outlier else format_numbers(lab.t)])
        ws.writerow([lab.image_id, preset.dataset, OUTLIERS, lab.image, nan_r, nan_t])
    atomic_write_text(root / "train_labels.csv", buf.getvalue())
    atomic_write_text(root / "sample_submission.csv", sample.getvalue())
    th = ";".join(repr(v) for v in THRESHOLDS)
    rows = "".join(f"{preset.dataset},{s.name},{th}\n" for s in preset.scenes)
    atomic_write_text(root / "train_thresholds.csv", "dataset,scene,thresholds\n" + rows)
