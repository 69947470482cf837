"""Command line: ``python -m imc <command> ...``.

Commands are an explicit registry of ``module:function`` taking ``argv`` and returning an exit
code, imported only when used (no heavy imports for ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from typing import Iterator

from .config import ConfigError, load_config

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("imc.cli:run_main", "photos -> submission.csv (python -m imc run --config C key=value ...)"),
    "stage": ("imc.cli:stage_main", "run one stage for every scene (python -m imc stage NAME --config C key=value ...)"),
    "sweep": ("imc.sweeps.cli:main", "run a hyperparameter sweep file (configs/sweeps/*.yaml)"),
    "viz": ("imc.viewer.export:main", "static exports of a run: match PNGs, 3D model HTML"),
    "bench": ("imc.bench:main", "per-stage seconds and throughput on a fixed scene"),
    "accuracy": ("imc.accuracy.cli:main", "real-photo benchmark: mAA, seconds, peak RSS per scene, history"),
    "oracle": ("imc.sfm.oracle:main", "a mapped scene against its ground-truth poses re-triangulated and adjusted"),
}


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


class _ConsoleFilter(logging.Filter):
    """Console: the command's own lines (logger ``prefix``) and every warning; scene details go to log.txt."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(self.prefix)


@contextlib.contextmanager
def quiet_console(prefix: str, *, enabled: bool = True) -> Iterator[None]:
    """While the block runs, the root handlers show only ``prefix``'s records and warnings; the filter
    is always removed afterwards (a caller's handlers, e.g. a test's log capture, are left as found)."""
    console_filter = _ConsoleFilter(prefix)
    handlers = list(logging.getLogger().handlers) if enabled else []
    for handler in handlers:
        handler.addFilter(console_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(console_filter)


def run_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m imc run", description="photos -> submission.csv")
    parser.add_argument("--config", default=None, help="YAML config (default: configs/default.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. features.aliked.max_num_keypoints=4096")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from .pipeline import run, summary_table

    conf = load_config(args.config, args.overrides)
    from .preflight import preflight

    check = preflight(conf.get("device", "auto"))
    logging.getLogger("imc").info("%s", check.format())
    check.raise_for_errors()
    result = run(conf)
    print(summary_table(result.reports))
    print(f"\nwrote {result.submission} ({sum(r.n_images for r in result.reports)} rows) in {result.seconds:.1f} s")
    failed = [r.name for r in result.reports if r.status == "failed"]
    if failed:
        print(f"failed scenes (identity rows written, see their log.txt): {failed}", file=sys.stderr)
    return 0


def stage_main(argv: list[str]) -> int:
    from . import stages

    table = "\n".join(f"  {s.name:<9} {s.doc} -> {s.output}" + (f" (reads {', '.join(s.upstream + s.reads)})" if s.upstream + s.reads else "")
                      for s in stages.STAGES)
    parser = argparse.ArgumentParser(
        prog="python -m imc stage", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one stage of the pipeline for every scene, reading its upstream stages' cached outputs "
                    "(which must exist: run those stages first). Stages, in the order `imc run` runs them:\n" + table)
    parser.add_argument("name", choices=stages.NAMES, help="the stage to run")
    parser.add_argument("--config", default=None, help="YAML config (default: configs/default.yaml)")
    parser.add_argument("--extractor", action="append", default=None,
                        help="per-extractor stages: only this extractor (repeatable; default: features.extractors)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. features.aliked.max_num_keypoints=4096")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_intermixed_args(argv)
    setup_logging(args.verbose)
    from .pipeline import run_stage_alone

    conf = load_config(args.config, args.overrides)
    for line in run_stage_alone(conf, args.name, extractors=args.extractor):
        print(line)
    return 0


def usage() -> str:
    lines = ["usage: python -m imc <command> [args]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func = COMMANDS[name][0].split(":")
    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
