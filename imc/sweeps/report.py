"""Sweep outputs rebuilt from the per-task result files: ``results.csv``, ``summary.md``, ``mAA_vs_<key>.png``."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io_utils import atomic_path, atomic_write_text
from .spec import SweepSpec
from ..stages import timed_names

STAGES = tuple(timed_names([]))  # the stages every competition runs (sweeps score IMC 2023)
from .tasks import Task

METRICS = ("mAA", "mAA_q", "mAA_t", "registered_share")
MAX_SCENE_COLUMNS = 6


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) or value is None else json.dumps(value)


def result_rows(spec: SweepSpec, tasks: list[Task], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point x scene (a crashed task: one row per scene with status ``error``)."""
    rows = []
    for task in tasks:
        result = results.get(task.name)
        if result is None:
            continue
        scene_rows = result.get("rows") or [
            {"dataset": s.split("/")[0], "scene": s.split("/", 1)[1], "status": "error", "error": result.get("error", ""),
             **{m: float("nan") for m in METRICS}, "n_images": "", "n_registered": "", "n_models": "", "seconds": {}}
            for s in task.scenes]
        for r in scene_rows:
            row = {"point": task.point, "variant": task.variant or "", "scene_set": task.scene_set,
                   "dataset": r["dataset"], "scene": r["scene"]}
            row.update({key: _cell(task.params.get(key)) for key in spec.swept_keys})
            row.update({m: r[m] for m in METRICS})
            row.update({"n_images": r["n_images"], "n_registered": r["n_registered"], "n_models": r["n_models"]})
            seconds = r.get("seconds") or {}
            row.update({f"seconds_{s}": seconds.get(s, "") for s in STAGES})
            row["seconds_stages"] = round(sum(seconds.values()), 3) if seconds else ""
            row["status"] = r["status"] if result["status"] == "ok" else "error"
            row["error"] = (r.get("error") or "").replace("\n", " ")[:300]
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def csv_columns(spec: SweepSpec) -> list[str]:
    return (["point", "variant", "scene_set", "dataset", "scene", *spec.swept_keys, *METRICS, "n_images",
             "n_registered", "n_models", *(f"seconds_{s}" for s in STAGES), "seconds_stages", "status", "error"])


@dataclass(kw_only=True)
class PointSummary:
    point: str
    params: dict[str, Any]
    means: dict[str, float]  # metric -> mean over scenes (missing / crashed scenes count as 0)
    scene_maa: dict[str, float]
    seconds: dict[str, float]  # stage -> sum over scenes
    status: str  # ok | incomplete | error | partial (some scenes failed)


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return v


def summarize(spec: SweepSpec, tasks: list[Task], rows: list[dict[str, Any]]) -> list[PointSummary]:
    """Points ranked by mean mAA over every scene of the sweep, best first."""
    scenes = list(dict.fromkeys(f"{r['dataset']}/{r['scene']}" for r in rows))
    points = list(dict.fromkeys(t.point for t in tasks))
    params = {t.point: t.params for t in tasks}
    summaries = []
    for point in points:
        own = {f"{r['dataset']}/{r['scene']}": r for r in rows if r["point"] == point}
        means = {}
        for m in METRICS:
            values = [_num(own[s][m]) if s in own else float("nan") for s in scenes]
            means[m] = sum(0.0 if math.isnan(v) else v for v in values) / len(values) if values else float("nan")
        statuses = {r["status"] for r in own.values()}
        if not own:
            status = "pending"
        elif "error" in statuses:
            status = "error"
        elif len(own) < len(scenes):
            status = "incomplete"
        elif statuses - {"ok"}:
            status = "partial: " + ",".join(sorted(statuses - {"ok"}))
        else:
            status = "ok"
        seconds = {s: sum(_num(r[f"seconds_{s}"]) for r in own.values() if r[f"seconds_{s}"] != "") for s in STAGES}
        summaries.append(PointSummary(point=point, params=params[point], means=means, status=status, seconds=seconds,
                                      scene_maa={s: _num(own[s]["mAA"]) for s in own}))
    return sorted(summaries, key=lambda p: (-p.means["mAA"] if not math.isnan(p.means["mAA"]) else math.inf))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(_cell(value)).replace("|", "\\|")


def summary_markdown(spec: SweepSpec, summaries: list[PointSummary], rows: list[dict[str, Any]]) -> str:
    scenes = list(dict.fromkeys(f"{r['dataset']}/{r['scene']}" for r in rows))
    per_scene = scenes if len(scenes) <= MAX_SCENE_COLUMNS else []
    head = ["rank", "point", *spec.swept_keys, "mean mAA", "mAA_q", "mAA_t", "registered",
            *(f"mAA {s}" for s in per_scene), "seconds", "status"]
    lines = [f"# Sweep `{spec.name}`", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    lines += [(f"{len(summaries)} point(s) x {len(scenes)} scene(s); ranked by mean mAA over the scenes "
               "(a crashed or missing scene counts as 0). `seconds`: sum of the stage seconds over the scenes."), "",
              "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for rank, p in enumerate(summaries, start=1):
        cells = [str(rank), f"`{p.point}`", *(_fmt(p.params.get(k)) for k in spec.swept_keys),
                 *(_fmt(p.means[m]) for m in METRICS), *(_fmt(p.scene_maa.get(s, float("nan"))) for s in per_scene),
                 f"{sum(p.seconds.values()):.1f}", p.status]
        lines.append("| " + " | ".join(cells) + " |")
    stage_head = ["point", *(f"{s} s" for s in STAGES), "total s"]
    lines += ["", "## Seconds per stage (sum over scenes)", "", "| " + " | ".join(stage_head) + " |",
              "|" + "|".join("---" for _ in stage_head) + "|"]
    for p in summaries:
        lines.append("| " + " | ".join([f"`{p.point}`", *(f"{p.seconds[s]:.1f}" for s in STAGES),
                                        f"{sum(p.seconds.values()):.1f}"]) + " |")
    if not per_scene:
        lines += ["", f"Per-scene mAA: see results.csv ({len(scenes)} scenes)."]
    return "\n".join(lines) + "\n"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_key(key: str, summaries: list[PointSummary], rows: list[dict[str, Any]], path: Path) -> Path:
    """mAA (mean over scenes) of every point against one swept key; thin lines: per scene, mean over points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [p.params.get(key) for p in summaries]
    numeric = all(_is_number(v) for v in values)
    labels = sorted({json.dumps(v, sort_keys=True) for v in values}, key=lambda s: (
        float(json.loads(s)) if numeric else 0, s))
    position = {s: (float(json.loads(s)) if numeric else i) for i, s in enumerate(labels)}

    def x_of(value: Any) -> float:
        return position[json.dumps(value, sort_keys=True)]

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    scenes = list(dict.fromkeys(f"{r['dataset']}/{r['scene']}" for r in rows))
    point_value = {p.point: p.params.get(key) for p in summaries}
    for scene in scenes:
        by_x: dict[float, list[float]] = {}
        for r in rows:
            if f"{r['dataset']}/{r['scene']}" == scene and r["point"] in point_value and not math.isnan(_num(r["mAA"])):
                by_x.setdefault(x_of(point_value[r["point"]]), []).append(_num(r["mAA"]))
        xs = sorted(by_x)
        ax.plot(xs, [sum(by_x[x]) / len(by_x[x]) for x in xs], lw=0.8, alpha=0.6, marker=".", label=scene)
    means: dict[float, list[float]] = {}
    for p in summaries:
        means.setdefault(x_of(p.params.get(key)), []).append(p.means["mAA"])
    ax.scatter([x_of(p.params.get(key)) for p in summaries], [p.means["mAA"] for p in summaries], color="black",
               zorder=3, s=18, label="points (mean over scenes)")
    xs = sorted(means)
    ax.plot(xs, [sum(means[x]) / len(means[x]) for x in xs], color="black", lw=2, label="mean over points")
    if numeric:
        positive = [x for x in xs if x > 0]
        if len(positive) == len(xs) and len(xs) > 1 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs])
    else:
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([str(json.loads(s)) for s in labels], rotation=20, ha="right")
    ax.set_xlabel(key)
    ax.set_ylabel("mAA")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plot_name(key: str) -> str:
    return f"mAA_vs_{key}.png"


def write_outputs(spec: SweepSpec, tasks: list[Task], results: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Rebuild results.csv, summary.md and the plots from ``results`` (task name -> result)."""
    out = spec.output_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = result_rows(spec, tasks, results)
    written = {"results": write_csv(out / "results.csv", rows, csv_columns(spec))}
    summaries = summarize(spec, tasks, rows)
    written["summary"] = atomic_write_text(out / "summary.md", summary_markdown(spec, summaries, rows))
    done = [p for p in summaries if p.status != "pending"]
    if done:
        for key in spec.swept_keys:
            written[f"plot:{key}"] = plot_key(key, done, rows, out / plot_name(key))
    return written
