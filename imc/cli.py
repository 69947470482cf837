"""Command line: ``python -m imc run --config configs/default.yaml key=value ...``."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError, load_config


def _run(args: argparse.Namespace) -> int:
    from .pipeline import run, summary_table

    conf = load_config(args.config, args.overrides)
    result = run(conf)
    print(summary_table(result.reports))
    print(f"\nwrote {result.submission} ({sum(r.n_images for r in result.reports)} rows) in {result.seconds:.1f} s")
    failed = [r.name for r in result.reports if r.status == "failed"]
    if failed:
        print(f"failed scenes (identity rows written, see their log.txt): {failed}", file=sys.stderr)
    return 0


COMMANDS = {"run": _run}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="photos -> submission.csv")
    p.add_argument("--config", default=None, help="YAML config (default: configs/default.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. features.max_num_keypoints=4096")
    p.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
