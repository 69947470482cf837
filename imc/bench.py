"""``python -m imc bench``: per-stage seconds and throughput on fixed scenes, cold caches.

Scenes: the shipped demo scenes and, when ``--shared`` holds them, the real IMC 2023
kyiv-puppet-theater photos (scored with the real metric). Writes ``<out>/bench.md`` (a table,
one row per scene × device) and ``bench.json``. Runs on CUDA too when present.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch

from . import stages
from .cli import setup_logging
from .config import load_config
from .io_utils import atomic_write_json, atomic_write_text
from .pairs import read_pairs

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]


def bench_targets(shared: Path | None) -> list[dict]:
    targets = [{"name": "demo", "root": REPO / "imc" / "demo_data", "labels": REPO / "imc" / "demo_data" / "train_labels.csv",
                "scenes": []}]
    kyiv_root = shared / "data" / "real" / "imc2023" / "train" if shared else None
    if kyiv_root is not None and (kyiv_root / "urban" / "kyiv-puppet-theater" / "images").is_dir():
        targets.append({"name": "kyiv", "root": kyiv_root, "labels": kyiv_root / "train_labels.csv",
                        "scenes": ["urban/kyiv-puppet-theater"]})
    return targets


def bench_one(target: dict, device: str, config: str | None, overrides: list[str], out: Path) -> list[dict]:
    from .pipeline import run

    work = Path(tempfile.mkdtemp(prefix="imc-bench-"))
    try:
        conf = load_config(config, [f"data.root={target['root']}", f"output={work / 'run'}", f"cache_dir={work / 'cache'}",
                                    f"device={device}", "progress=false", f"data.scenes={json.dumps(target['scenes'])}",
                                    *overrides])
        t0 = time.perf_counter()
        result = run(conf)
        wall = time.perf_counter() - t0
        scores = {}
        if Path(target["labels"]).is_file():
            from eval.score import score

            report = score(result.submission, target["labels"], scenes=[r.name for r in result.reports])
            scores = {name: s.maa for name, s in report.scenes.items()}
        rows = []
        for r in result.reports:
            n_pairs = len(read_pairs(Path(r.paths["pairs"]))) if Path(r.paths.get("pairs", "")).is_file() else 0
            s = r.seconds
            rows.append({
                "target": target["name"], "scene": r.name, "device": device, "images": r.n_images, "pairs": n_pairs,
                "registered": r.n_registered, "mAA": scores.get(r.name), **{f"{k}_s": v for k, v in s.items()},
                "images_per_s": r.n_images / s["features"] if s.get("features") else None,
                "pairs_per_s": n_pairs / s["matches"] if s.get("matches") else None,
                "total_s": round(sum(s.values()), 2), "wall_s": round(wall, 2),
                "extractors": " + ".join(stages.slug(conf, e) for e in stages.extractors(conf)),
            })
        shutil.copy(result.submission, out / f"submission-{target['name']}-{device}.csv")
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def to_markdown(rows: list[dict]) -> str:
    cols = ["scene", "device", "images", "pairs", "registered", "mAA", *(f"{s}_s" for s in stages.timed_names([])),
            "images_per_s", "pairs_per_s", "total_s", "extractors"]

    def fmt(v: object) -> str:
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m imc bench", description=__doc__)
    parser.add_argument("--shared", default="../shared", help="folder with data/real (the real scenes)")
    parser.add_argument("--config", default=None, help="pipeline config (default: configs/default.yaml)")
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--targets", default="demo,kyiv", help="comma-separated: demo, kyiv")
    parser.add_argument("--devices", default="auto", help="comma-separated: cpu, cuda, auto (= cpu, plus cuda if present)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    setup_logging()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else args.devices.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.targets.split(","))
    rows = []
    for target in bench_targets(Path(args.shared) if args.shared else None):
        if target["name"] not in wanted:
            continue
        for device in devices:
            log.info("bench: %s on %s", target["name"], device)
            rows.extend(bench_one(target, device, args.config, args.overrides, out))
    table = to_markdown(rows)
    atomic_write_text(out / "bench.md", table)
    atomic_write_json(out / "bench.json", rows)
    print(table)
    print(f"wrote {out / 'bench.md'}")
    return 0
