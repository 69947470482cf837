"""Re-run only the mapping stage on a scene's cached features + verified matches, and score it.

    python -m imc.sfm.remap --run RUN_DIR --scene dataset/scene --out DIR [--labels L] [--thresholds T] \\
        [sfm.key=value ...]

``RUN_DIR`` is a finished ``python -m imc run`` output: its ``config.yaml`` and the scene's
``report.json`` name the cached stage files. The mapping writes ``DIR/sfm`` (``poses.csv``, models)
and ``DIR/submission.csv`` (this scene's rows); with ``--labels`` it prints the scene's mAA.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import yaml

from .. import config as config_mod
from .. import extract, reconstruct, submission
from ..io_utils import remove_path
from ..pairs import read_pairs
from ..scenes import discover_scenes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imc.sfm.remap", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--scene", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--labels", type=Path)
    ap.add_argument("--thresholds", type=Path)
    ap.add_argument("overrides", nargs="*", help="key=value on the run's config (sfm.* only matter)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    conf = config_mod.apply_overrides(yaml.safe_load((args.run / "config.yaml").read_text()), args.overrides,
                                      strict=False)
    dataset, scene_name = args.scene.split("/")
    report = json.loads((args.run / "scenes" / dataset / scene_name / "report.json").read_text())
    paths = {k: Path(v) for k, v in report["paths"].items()}
    scene = next(s for s in discover_scenes(root=conf["data"]["root"], sample_submission=conf["data"].get(
        "sample_submission")) if s.name == args.scene)
    features = {p: f for p, f in extract.load_all(paths["features"], scene.image_paths).items()
                if len(f["keypoints"]) > 0}
    sfm_dir = args.out / "sfm"
    remove_path(sfm_dir)
    t0 = time.perf_counter()
    reconstruct.main(conf["sfm"], features, paths["verified"], scene.root, sfm_dir, pairs=read_pairs(paths["pairs"]),
                     seed=int(conf["seed"]), progress=False)
    seconds = time.perf_counter() - t0
    result = reconstruct.read_poses_csv(sfm_dir / "poses.csv")
    csv_path = submission.main([scene], {scene.name: result.poses}, args.out / "submission.csv")
    line = {"scene": args.scene, "registered": result.n_registered, "images": len(scene.image_paths),
            "models": result.model_sizes, "seconds": round(seconds, 2),
            "how": {h: sum(p.how == h for p in result.poses.values()) for h in {p.how for p in result.poses.values()}}}
    if args.labels:
        from eval.score import score
        rep = score(csv_path, args.labels, args.thresholds, scenes=[args.scene])
        s = rep.scenes[args.scene]
        line.update(maa=round(s.maa, 4), maa_q=round(s.maa_q, 4), maa_t=round(s.maa_t, 4))
    print(json.dumps(line))
    (args.out / "result.json").write_text(json.dumps({**line, "overrides": args.overrides}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
