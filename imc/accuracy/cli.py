"""``python -m imc accuracy --config C [--config D ...] [key=value ...] [--scenes ...] [--label NAME]``.

Runs each config over the benchmark's scenes (``configs/accuracy.yaml``: the real scenes of the
shared folder and the synthetic presets), one child process per config x scene, and writes under
``<output_dir>/runs/<run id>/``: ``results.md|csv|json`` (mAA, mAA_q, mAA_t, registered/total,
seconds per stage, peak RSS per scene) plus each unit's run folder. Appends every config's figures
to ``<output_dir>/history.jsonl``, prints them beside the best earlier result per scene and redraws
``<output_dir>/mAA_vs_seconds.png`` over the whole history.

Every config gets a fresh stage cache in its run folder (``--cache-dir`` shares one instead), so
seconds are end to end and code changes are measured, not hidden behind caches.
"""

from __future__ import annotations

import argparse
import logging
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, apply_overrides, load_config
from ..io_utils import file_sha1, fingerprint
from .history import HISTORY_FILE, append_history, comparison_table, entry_for, plot_history, read_history
from .report import write_tables
from .runner import UnitResult, child_main, run_unit, unit_config
from .spec import load_spec, resolve_units, select

log = logging.getLogger("imc.accuracy")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO / "configs" / "accuracy.yaml"
MANAGED_KEYS = ("data", "output", "cache_dir", "overwrite", "progress")  # set per unit, not part of a config's identity


@dataclass(kw_only=True)
class Variant:
    name: str
    config_path: str
    overrides: list[str]
    conf: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return fingerprint({k: v for k, v in self.conf.items() if k not in MANAGED_KEYS})


def parse_variants(configs: list[str], overrides: list[str]) -> list[Variant]:
    """``--config [NAME=]PATH`` items -> variants (name: NAME or the file's stem, made unique)."""
    variants: list[Variant] = []
    for item in configs or [str(REPO / "configs" / "default.yaml")]:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        name = name or Path(path).stem
        if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$", name):
            raise ConfigError(f"--config {item!r}: the name {name!r} must be a plain folder name")
        taken = {v.name for v in variants}
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}-{k}", k + 1
        conf = apply_overrides(load_config(path), overrides)
        variants.append(Variant(name=unique, config_path=path, overrides=list(overrides), conf=conf))
    return variants


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "branch": "", "dirty": None}


def thresholds_fingerprint() -> str:
    from eval.thresholds import default_thresholds_path

    path = default_thresholds_path()
    return file_sha1(path)[:12] if path.is_file() else "none"


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m imc accuracy", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], metavar="[NAME=]PATH",
                   help="a run config; repeat to compare configs side by side (default: configs/default.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every config")
    p.add_argument("--scenes", action="append", default=[],
                   help="subset, entry or scene names (comma-separated or repeated; default: the `default` subset)")
    p.add_argument("--label", default=None, help="names this run in the history (default: the config names)")
    p.add_argument("--spec", default=str(DEFAULT_SPEC), help="the scene list (default: configs/accuracy.yaml)")
    p.add_argument("--shared", default=None, help="the shared data folder (default: the scene list's shared_dir)")
    p.add_argument("--output-dir", default="outputs/accuracy", help="history, plots, runs/ (default: outputs/accuracy)")
    p.add_argument("--cache-dir", default=None,
                   help="share this stage cache between configs and runs (faster; seconds no longer end to end)")
    p.add_argument("--no-history", action="store_true", help="do not append this run to the history")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--quiet", action="store_true", help="the runs' output goes to their child.log only")
    p.add_argument("--list", action="store_true", help="print the selected scenes and exit")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_intermixed_args(argv)  # key=value overrides may come between options


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    from ..cli import quiet_console, setup_logging

    setup_logging(False)
    with quiet_console("imc.accuracy"):  # scene details go to each run's log.txt
        if args.child:
            return child_main(args.child)
        return run_benchmark(args)


def run_benchmark(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    started = time.time()
    items = [s.strip() for item in args.scenes for s in item.split(",") if s.strip()]
    spec = load_spec(args.spec, shared_dir=args.shared)
    variants = parse_variants(args.config, args.overrides)
    output_dir = Path(args.output_dir)
    chosen = select(spec, items)
    if args.list:
        for entry, scene in chosen:
            print(f"{entry}: {scene or '(all scenes)'}")
        return 0
    units, skipped = resolve_units(spec, chosen, output_dir / "data")
    label = args.label or "+".join(v.name for v in variants)
    run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + "-" + re.sub(r"[^A-Za-z0-9._+-]+", "_", label)[:60]
    run_dir = output_dir / "runs" / run_id
    git = git_state()
    th_fp = thresholds_fingerprint()
    print(f"accuracy {run_id}: {len(variants)} config(s) x {len(units)} scene(s)"
          + (f", {len(skipped)} skipped" if skipped else "") + f" -> {run_dir}", flush=True)
    for s in skipped:
        print(f"  skipped {s.scene}: {s.reason}", flush=True)
    rows: list[UnitResult] = []
    total = len(variants) * len(units)
    done = 0
    for variant in variants:
        cache_dir = Path(args.cache_dir) if args.cache_dir else run_dir / variant.name / "cache"
        for unit in units:
            done += 1
            unit_dir = run_dir / variant.name / unit.slug
            print(f"[{done}/{total}] {variant.name} {unit.scene} ({unit.n_images} images) ...", flush=True)
            conf = unit_config(variant.conf, root=unit.root, sample_submission=unit.sample_submission,
                               scene=unit.scene, run_dir=unit_dir / "run", cache_dir=cache_dir,
                               progress=not args.no_progress)
            row = run_unit(variant=variant.name, entry=unit.entry, scene=unit.scene, labels=unit.labels, conf=conf,
                           unit_dir=unit_dir, capture=args.quiet)
            rows.append(row)
            maa = f"mAA {row.mAA:.4f}" if row.mAA is not None else row.status
            print(f"[{done}/{total}] {variant.name} {unit.scene}: {maa}, {row.n_registered}/{row.n_images} registered, "
                  f"{row.wall_seconds:.1f} s, peak RSS {row.peak_rss_mb / 1024:.2f} GB"
                  + (f" ({row.status}: {row.error[:200]})" if row.status != "ok" else ""), flush=True)
    seconds = time.perf_counter() - t0
    meta = {"run_id": run_id, "label": label, "started": started, "git": git, "host": platform.node(),
            "spec": str(spec.path), "shared_dir": str(spec.shared_dir), "thresholds_fingerprint": th_fp,
            "cache_dir": args.cache_dir or "fresh per config", "scenes_selected": items or ["default"],
            "configs": [{"name": v.name, "path": v.config_path, "overrides": v.overrides, "fingerprint": v.fingerprint}
                        for v in variants]}
    paths = write_tables(run_dir, rows, skipped, meta=meta, title=f"accuracy {run_id}", total_seconds=seconds)
    history_path = output_dir / HISTORY_FILE
    history = read_history(history_path)
    print()
    print(paths["md"].read_text())
    print("Against the best earlier result per scene (same thresholds):\n")
    print(comparison_table(rows, history, th_fp))
    if not args.no_history:
        append_history(history_path, [
            entry_for(run_id=run_id, label=label, variant=v.name, config_path=v.config_path,
                      config_fingerprint=v.fingerprint, overrides=v.overrides, thresholds_fingerprint=th_fp, git=git,
                      host=platform.node(), started=started, rows=[r for r in rows if r.variant == v.name])
            for v in variants])
        history = read_history(history_path)
    plot = plot_history(history or [], output_dir / "mAA_vs_seconds.png", highlight_run=run_id)
    print(f"\nwrote {paths['md']}, {paths['csv'].name}, {paths['json'].name}"
          + ("" if args.no_history else f"; appended {len(variants)} line(s) to {history_path}")
          + (f"; plot {plot}" if plot else ""))
    return 0 if all(r.status != "crashed" for r in rows) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
