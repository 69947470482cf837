"""``python -m eval speed``: how long the IMC 2025 metric takes on a labels file of the competition's size.

The registration of the 2024/2025 metrics is an exhaustive search over camera triplets, so its cost
grows with the fourth power of a scene's camera count (C(n,3) triplet models, each checked against
n cameras) and with how noisy the submission is (each distinct inlier set is refitted once). This
command writes a labels file and a submission shaped like the IMC 2025 training set and times
``eval.imc2025.score`` on it, per GT scene.

* **Labels:** :data:`SCENE_SIZES` — 13 datasets, 30 scenes of 14 to 200 images plus outliers, 1,945
  images in all, the size and spread of Kaggle's IMC 2025 ``train_labels.csv`` (per-scene counts
  are approximate: the exact file is not in this repository). GT cameras lie on a noisy orbit of
  radius 4 m around each scene's centre.
* **Submission (``--noise``):** each scene is its own cluster, the poses are the GT ones under a random
  similarity, with ``noise`` x 1 m of Gaussian jitter on every centre and ``--displaced`` of the images
  moved far away (wrong registrations). That is the hard case for the search: many distinct inlier
  sets. A perfect submission (``--noise 0 --displaced 0``) deduplicates to one set per threshold.

The files are written under ``--out`` (default: a temporary folder) so ``python -m eval score
--metric imc2025`` can be run on them by hand.
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from eval.synth.mixed import LABEL_COLUMNS_2025, OUTLIERS, THRESHOLDS
from imc.io_utils import format_numbers

# dataset -> {scene: image count}: the IMC 2025 training set's shape (approximate counts, 1,945 images).
SCENE_SIZES: dict[str, dict[str, int]] = {
    "amy_gardens": {"peach": 200},
    "ETs": {"ET": 22, "another_ET": 20, OUTLIERS: 5},
    "fbk_vineyard": {"vineyard_split_1": 58, "vineyard_split_2": 57, "vineyard_split_3": 48},
    "imc2023_haiper": {"bike": 15, "chairs": 16, "fountain": 23},
    "imc2023_heritage": {"cyprus": 30, "dioscuri": 174, "wall": 43},
    "imc2023_theather_imc2024_church": {"kyiv-puppet-theater": 26, "church": 50},
    "imc2024_dioscuri_baalshamin": {"dioscuri": 96, "baalshamin": 42},
    "imc2024_lizard_pond": {"lizard": 130, "pond": 69},
    "pt_brandenburg_british_buckingham": {"brandenburg": 75, "british": 75, "buckingham": 75},
    "pt_piazzasanmarco_grandplace": {"piazzasanmarco": 84, "grandplace": 84},
    "pt_sacrecoeur_trevi_tajmahal": {"sacrecoeur": 70, "trevi": 70, "tajmahal": 70},
    "pt_stpeters_stpauls": {"stpeters": 90, "stpauls": 90},
    "stairs": {"stairs_split_1": 14, "stairs_split_2": 24, OUTLIERS: 0},
}


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation of a camera at ``centre`` looking at ``target`` (z forward)."""
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def write_files(out: Path, *, noise: float, displaced: float, seed: int,
                sizes: dict[str, dict[str, int]] | None = None) -> tuple[Path, Path, Path, int]:
    """Writes ``labels.csv``, ``submission.csv`` and ``thresholds.csv`` under ``out``; returns them and
    the image count."""
    sizes = SCENE_SIZES if sizes is None else sizes
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    labels, submission = [], []
    for dataset, scenes in sizes.items():
        for scene, count in scenes.items():
            sim_R, sim_s, sim_t = _rotation(rng), float(rng.uniform(0.3, 3.0)), rng.normal(size=3) * 10
            angles = np.sort(rng.uniform(0, 2 * np.pi, count))
            for k, a in enumerate(angles):
                image = f"{scene}_{k:04d}.png"
                image_id = f"{dataset}_{image}"
                if scene == OUTLIERS:
                    labels.append((image_id, dataset, scene, image, None, None))
                    submission.append((image_id, dataset, scene, image, None, None))
                    continue
                c = np.array([4 * np.cos(a), 4 * np.sin(a), rng.uniform(-0.5, 1.0)]) + rng.normal(scale=0.3, size=3)
                R = _look_at(c, np.zeros(3))
                labels.append((image_id, dataset, scene, image, R, -R @ c))
                c_sub = c + rng.normal(scale=noise, size=3)
                if rng.random() < displaced:
                    c_sub = c_sub + rng.normal(scale=3.0, size=3)
                # the submission's frame: x_sub = s R x + t, so c_sub' = s R c_sub + t, R_sub = R R_sim^T
                c_frame = sim_s * sim_R @ c_sub + sim_t
                R_sub = R @ sim_R.T
                submission.append((image_id, f"{dataset}", f"cluster_{scene}", image, R_sub, -R_sub @ c_frame))
    paths = out / "labels.csv", out / "submission.csv", out / "thresholds.csv"
    for path, rows in zip(paths[:2], (labels, submission)):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(LABEL_COLUMNS_2025)
            for image_id, dataset, scene, image, R, t in rows:
                rot = "nan;" * 8 + "nan" if R is None else format_numbers(R.reshape(-1))
                tra = "nan;nan;nan" if t is None else format_numbers(t)
                w.writerow((image_id, dataset, scene, image, rot, tra))
    paths[2].write_text("dataset,scene,thresholds\ndefault,default," + ";".join(map(str, THRESHOLDS)) + "\n")
    return (*paths, len(labels))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, default=0.02, help="centre jitter in metres (default 0.02)")
    parser.add_argument("--displaced", type=float, default=0.2, help="fraction of wrongly placed images (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--largest", type=int, default=None,
                        help="only scenes up to this many images (a quicker look)")
    parser.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from eval.imc2025 import score

    sizes = SCENE_SIZES
    if args.largest is not None:
        sizes = {d: {s: n for s, n in sc.items() if n <= args.largest} for d, sc in SCENE_SIZES.items()}
        sizes = {d: sc for d, sc in sizes.items() if any(s != OUTLIERS for s in sc)}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out if args.out is not None else Path(tmp)
        labels, submission, thresholds, n_images = write_files(out, noise=args.noise, displaced=args.displaced,
                                                               seed=args.seed, sizes=sizes)
        start, cpu = time.perf_counter(), time.process_time()
        report = score(submission, labels, thresholds)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    n_scenes = sum(1 for scenes in sizes.values() for name in scenes if name != OUTLIERS)
    print(f"{n_images} images, {n_scenes} scenes in {len(sizes)} datasets "
          f"(noise {args.noise} m, {args.displaced:.0%} displaced)")
    largest = sorted(report.details.values(), key=lambda d: -d["n_images"])[:5]
    for d in largest:
        print(f"  {d['dataset']}/{d['scene']}: {d['n_images']} images, mAA {d['mAA']:.3f}")
    print(f"score {report.extra['overall_percent']:.2f} (mAA {report.extra['mAA']:.3f}, "
          f"clusterness {report.extra['clusterness']:.3f}) in {wall:.1f} s ({cpu:.1f} CPU-s)")
    return 0
