"""The benchmark's memory: ``history.jsonl`` (one line per config per run), comparison, mAA-vs-seconds plot.

A line records the run (id, label, time, git commit, host), the config (path, fingerprint, overrides),
the thresholds file's fingerprint and, per scene, the figures of its row. A scene is compared with
the best earlier line for the same scene scored with the same thresholds (best = highest mAA, then
fewest seconds).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .runner import UnitResult

HISTORY_FILE = "history.jsonl"
SCENE_FIELDS = ("mAA", "mAA_q", "mAA_t", "n_images", "n_registered", "n_models", "stage_seconds", "wall_seconds",
                "peak_rss_mb", "status", "seconds")


def entry_for(*, run_id: str, label: str, variant: str, config_path: str, config_fingerprint: str,
              overrides: list[str], thresholds_fingerprint: str, git: dict[str, Any], host: str, started: float,
              rows: Iterable[UnitResult]) -> dict[str, Any]:
    rows = list(rows)
    return {
        "run_id": run_id, "label": label, "variant": variant, "config": config_path,
        "config_fingerprint": config_fingerprint, "overrides": list(overrides),
        "thresholds_fingerprint": thresholds_fingerprint, "git": git, "host": host, "started": started,
        "total_wall_seconds": round(sum(r.wall_seconds for r in rows), 2),
        "scenes": {r.scene: {k: getattr(r, k) for k in SCENE_FIELDS} for r in rows},
    }


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every line of the history file (a torn last line from a killed run is ignored)."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def append_history(path: Path, entries: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for entry in entries:
            f.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
        f.flush()


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass(kw_only=True, frozen=True)
class Best:
    label: str
    variant: str
    run_id: str
    commit: str
    mAA: float
    wall_seconds: float | None


def best_before(history: list[dict[str, Any]], scene: str, thresholds_fingerprint: str) -> Best | None:
    """The best earlier result for ``scene`` with these thresholds, ``None`` when there is none."""
    best: tuple[float, float] | None = None
    found: Best | None = None
    for entry in history:
        fig = entry.get("scenes", {}).get(scene)
        if (not fig or entry.get("thresholds_fingerprint") != thresholds_fingerprint or fig.get("status") != "ok"
                or not _finite(fig.get("mAA"))):
            continue
        seconds = fig.get("wall_seconds") if _finite(fig.get("wall_seconds")) else math.inf
        key = (float(fig["mAA"]), -seconds)
        if best is None or key > best:
            best = key
            found = Best(label=entry.get("label", ""), variant=entry.get("variant", ""), run_id=entry.get("run_id", ""),
                         commit=(entry.get("git") or {}).get("commit", "")[:10], mAA=float(fig["mAA"]),
                         wall_seconds=None if seconds == math.inf else seconds)
    return found


def comparison_table(rows: list[UnitResult], history: list[dict[str, Any]], thresholds_fingerprint: str) -> str:
    """Markdown: each row of this run beside the best earlier result for its scene."""
    lines = ["| config | scene | mAA | best before | Δ mAA | seconds | seconds then | best run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = best_before(history, r.scene, thresholds_fingerprint)
        now = f"{r.mAA:.4f}" if _finite(r.mAA) else r.status
        if b is None:
            lines.append(f"| {r.variant} | {r.scene} | {now} | (none) | | {r.wall_seconds:.1f} | | |")
            continue
        delta = f"{r.mAA - b.mAA:+.4f}" if _finite(r.mAA) else ""
        then = f"{b.wall_seconds:.1f}" if b.wall_seconds is not None else ""
        lines.append(f"| {r.variant} | {r.scene} | {now} | {b.mAA:.4f} | {delta} | {r.wall_seconds:.1f} | {then} "
                     f"| {b.label}/{b.variant} {b.commit} |")
    return "\n".join(lines)


def plot_history(history: list[dict[str, Any]], path: Path, *, highlight_run: str | None = None) -> Path | None:
    """mAA against wall seconds, one panel per scene, one point per history line (this run's in red)."""
    scenes: list[str] = []
    for entry in history:
        scenes += [s for s in entry.get("scenes", {}) if s not in scenes]
    if not scenes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(scenes))
    rows_n = math.ceil(len(scenes) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
    for ax, scene in zip(axes.ravel(), scenes):
        for entry in history:
            fig_ = entry.get("scenes", {}).get(scene)
            if not fig_ or not _finite(fig_.get("mAA")) or not _finite(fig_.get("wall_seconds")):
                continue
            current = entry.get("run_id") == highlight_run
            ax.scatter(fig_["wall_seconds"], fig_["mAA"], s=36 if current else 18,
                       c="tab:red" if current else "tab:blue", alpha=1.0 if current else 0.6, zorder=3 if current else 2)
            if current:
                ax.annotate(entry.get("variant", ""), (fig_["wall_seconds"], fig_["mAA"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_title(scene, fontsize=9)
        ax.set_xlabel("seconds (scene, end to end)", fontsize=8)
        ax.set_ylabel("mAA", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(scenes):]:
        ax.axis("off")
    fig.suptitle("mAA vs seconds over the benchmark history (red: this run)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
