"""``python -m eval synth --out DIR [--preset NAME] [--seed N] [--scene NAME]``: render synthetic scenes."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from .presets import PRESETS, UnknownPresetError, get_preset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval synth",
        description="Render textured box/courtyard scenes with exactly known cameras in the IMC layout "
        "(<out>/<dataset>/<scene>/images/*) and merge their poses into <out>/train_labels.csv.",
    )
    parser.add_argument("--out", help="output root (created; other scenes already there are kept)")
    parser.add_argument("--preset", default="easy", help=f"one of: {', '.join(PRESETS)} (default: easy)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same bytes)")
    parser.add_argument("--scene", action="append", help="render only this scene of the preset (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.list:
        for preset in PRESETS.values():
            cam = preset.camera
            scenes = ", ".join(s.name for s in preset.scenes)
            print(f"{preset.name:8s} {cam.n_images:4d} img/scene {cam.width}x{cam.height}  {preset.description}\n"
                  f"{'':8s} dataset {preset.dataset}: {scenes}")
        return 0
    if not args.out:
        print("error: --out is required", file=sys.stderr)
        return 2
    try:
        preset = get_preset(args.preset)
        names = args.scene or [s.name for s in preset.scenes]
        for name in names:
            preset.scene(name)
    except UnknownPresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .mixed import MIXED

    start = time.perf_counter()
    if preset.name in MIXED:
        if args.scene:
            print(f"error: --scene does not apply to --preset {preset.name} (its scenes share one folder)", file=sys.stderr)
            return 2
        from .mixed import MixedOutputError, render_mixed

        try:
            labels = render_mixed(preset.name, args.seed, args.out, progress=True)
        except MixedOutputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"rendered {len(labels)} images of preset {preset.name!r} (seed {args.seed}) into "
              f"{args.out}/{preset.dataset}/ in {time.perf_counter() - start:.1f} s; labels: {args.out}/train_labels.csv "
              f"(IMC 2025 columns), thresholds: {args.out}/train_thresholds.csv")
        return 0
    from .scene import render_scene

    n_images = 0
    for name in names:
        labels = render_scene(preset, args.seed, args.out, scene=name, progress=True)
        n_images += len(labels.images)
    seconds = time.perf_counter() - start
    print(f"rendered {n_images} images of preset {preset.name!r} (seed {args.seed}) into {args.out} "
          f"in {seconds:.1f} s; labels: {args.out}/train_labels.csv")
    return 0
