"""The benchmark table of one run: ``results.md``, ``results.csv``, ``results.json``."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..io_utils import atomic_write_json, atomic_write_text
from .runner import UnitResult
from .spec import Skipped


def stage_names(rows: list[UnitResult]) -> list[str]:
    """Stage names in the order the runs reported them (whatever stages the pipeline has)."""
    names: list[str] = []
    for r in rows:
        names += [s for s in (r.stages or r.seconds) if s not in names]
    return names


def _f(x: Any, fmt: str = ".4f") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _gb(mb: float | None) -> str:
    return _f(mb / 1024.0, ".2f") if mb is not None else "-"


def markdown(rows: list[UnitResult], skipped: list[Skipped], *, title: str, total_seconds: float) -> str:
    stages = stage_names(rows)
    head = (["config", "scene", "mAA", "mAA_q", "mAA_t", "registered", "thresholds"] + [f"{s} s" for s in stages]
            + ["stages s", "total s", "peak RSS GB", "status"])
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.variant, r.scene, _f(r.mAA), _f(r.mAA_q), _f(r.mAA_t), f"{r.n_registered}/{r.n_images}", r.thresholds]
        cells += [_f(r.seconds.get(s), ".1f") for s in stages]
        cells += [_f(r.stage_seconds, ".1f"), _f(r.wall_seconds, ".1f"), _gb(r.peak_rss_mb),
                  r.status + (f": {r.error[:120]}" if r.error else "")]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    variants = list(dict.fromkeys(r.variant for r in rows))
    lines += ["", "| config | scenes | mean mAA | seconds | max peak RSS GB |", "|---|---|---|---|---|"]
    for v in variants:
        vr = [r for r in rows if r.variant == v]
        maa = [r.mAA for r in vr if isinstance(r.mAA, (int, float)) and math.isfinite(r.mAA)]
        peak = max((r.peak_rss_mb for r in vr if r.peak_rss_mb is not None), default=None)
        lines.append(f"| {v} | {len(vr)} | {_f(sum(maa) / len(maa)) if maa else '-'} | "
                     f"{sum(r.wall_seconds for r in vr):.1f} | {_gb(peak)} |")
    if len(variants) > 1:
        lines += ["", "Side by side (mAA / seconds):", "",
                  "| scene | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        for scene in dict.fromkeys(r.scene for r in rows):
            by_v = {r.variant: r for r in rows if r.scene == scene}
            cells = [f"{_f(by_v[v].mAA)} / {by_v[v].wall_seconds:.0f} s" if v in by_v else "-" for v in variants]
            lines.append(f"| {scene} | " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Skipped:"] + [f"- {s.scene}: {s.reason}" for s in skipped]
    lines += ["", f"Total {total_seconds:.1f} s."]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[UnitResult]) -> str:
    stages = stage_names(rows)
    columns = (["variant", "entry", "dataset", "scene", "status", "mAA", "mAA_q", "mAA_t", "n_images", "n_registered",
                "n_models", "n_pairs", "median_err_R_deg", "median_err_t", "thresholds"]
               + [f"seconds_{s}" for s in stages]
               + ["stage_seconds", "run_seconds", "wall_seconds", "peak_rss_mb", "error", "run_dir"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        d = r.to_dict()
        dataset, scene = r.scene.split("/", 1)
        row = {k: d.get(k, "") for k in columns}
        row.update({"dataset": dataset, "scene": scene, "error": r.error.replace("\n", " ")[:300]})
        row.update({f"seconds_{s}": r.seconds.get(s, "") for s in stages})
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def write_tables(run_dir: Path, rows: list[UnitResult], skipped: list[Skipped], *, meta: dict[str, Any],
                 title: str, total_seconds: float) -> dict[str, Path]:
    paths = {"md": run_dir / "results.md", "csv": run_dir / "results.csv", "json": run_dir / "results.json"}
    atomic_write_text(paths["md"], markdown(rows, skipped, title=title, total_seconds=total_seconds))
    atomic_write_text(paths["csv"], csv_text(rows))
    atomic_write_json(paths["json"], {**meta, "total_seconds": round(total_seconds, 2),
                                      "rows": [r.to_dict() for r in rows],
                                      "skipped": [vars(s) for s in skipped]})
    return paths
