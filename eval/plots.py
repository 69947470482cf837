"""Per-scene pose-error plots (histogram + CDF of err_R and err_t, thresholds marked)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from eval.score import SceneScore, ScoreReport


def plot_error_distributions(report: "ScoreReport", out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/<dataset>__<scene>.png`` for every scene; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [plot_scene_errors(s, out_dir / f"{_safe(s.dataset)}__{_safe(s.scene)}.png") for s in report.scenes.values()]


def plot_scene_errors(scene: "SceneScore", path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imc.io_utils import atomic_path

    path = Path(path)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [
        (scene.err_R_deg, scene.thresholds_R_deg, "rotation error (deg)", scene.acc_q),
        (scene.err_t_m, scene.thresholds_t_m, "translation error (m)", scene.acc_t),
    ]
    for col, (err, ths, label, acc) in enumerate(panels):
        cap = 2.0 * max(ths)
        clipped = np.minimum(err, cap)
        hist_ax, cdf_ax = axes[0, col], axes[1, col]
        hist_ax.hist(clipped, bins=50, range=(0.0, cap), color="tab:blue")
        hist_ax.set_title(f"{label}: median {np.median(err):.3g}, > {cap:.3g} clipped")
        hist_ax.set_ylabel("pairs")
        xs = np.sort(clipped)
        cdf_ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", color="tab:blue")
        for th in ths:
            cdf_ax.axvline(th, color="tab:red", alpha=0.3, lw=0.8)
        cdf_ax.plot(ths, acc, "o", color="tab:red", ms=3, label="accuracy at thresholds")
        cdf_ax.set_xlim(0.0, cap)
        cdf_ax.set_ylim(0.0, 1.02)
        cdf_ax.set_xlabel(label)
        cdf_ax.set_ylabel("share of pairs ≤ x")
        cdf_ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"{scene.name}: mAA {scene.maa:.4f} (q {scene.maa_q:.4f}, t {scene.maa_t:.4f}), "
        f"{scene.n_registered}/{scene.n_images} registered, {scene.n_pairs} pairs"
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
