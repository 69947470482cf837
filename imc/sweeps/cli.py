"""``python -m imc sweep configs/sweeps/NAME.yaml [--ray] [--workers N]``: run, score and tabulate a sweep.

Every point x scene set runs the pipeline into ``<output_dir>/points/<point>/<set>/`` with one
shared ``cache_dir``; finished tasks (same resolved config) are skipped, so an interrupted sweep
resumes where it stopped. ``results.csv``, ``summary.md`` and ``mAA_vs_<key>.png`` are rebuilt
from the per-task result files after every finished task. See :mod:`imc.sweeps.spec` for the format.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .executors import Backend, RayUnavailableError, run_ray, run_sequential
from .report import write_outputs
from .scenesets import prepare_all
from .spec import SweepSpec, expand_points, load_sweep
from .tasks import Task, build_tasks, link_producers, load_error, load_result, record

log = logging.getLogger("imc.sweep")


@dataclass(kw_only=True)
class SweepOutcome:
    spec: SweepSpec
    tasks: list[Task]
    skipped: list[str] = field(default_factory=list)  # task names found finished
    ran: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def plan(spec: SweepSpec) -> list[Task]:
    """All tasks of the sweep (renders synthetic scene sets if needed)."""
    return build_tasks(spec, expand_points(spec), prepare_all(spec.scene_sets))


def run_sweep(spec: SweepSpec, *, backend: Backend = Backend.SEQUENTIAL, workers: int = 1,
              threads: int | None = None) -> SweepOutcome:
    """Run the unfinished tasks; ``threads``: torch threads of sequential tasks (Ray tasks use
    ``resources.num_cpus``)."""
    t0 = time.perf_counter()
    tasks = plan(spec)
    outcome = SweepOutcome(spec=spec, tasks=tasks)
    results: dict[str, dict[str, Any]] = {}
    todo: list[Task] = []
    for task in tasks:
        finished = load_result(task)
        if finished is not None:
            results[task.name] = finished
            outcome.skipped.append(task.name)
        else:
            error = load_error(task)
            if error is not None:  # shown until the retry below replaces it
                results[task.name] = error
            todo.append(task)
    link_producers(todo)
    log.info("sweep %s: %d point(s) x %d scene set(s) = %d task(s); %d finished before, %d to run (%s)",
             spec.name, len({t.point for t in tasks}), len({t.scene_set for t in tasks}), len(tasks),
             len(outcome.skipped), len(todo), backend.value)
    outcome.outputs = write_outputs(spec, tasks, results)

    def on_done(task: Task, result: dict[str, Any]) -> None:
        record(task, result)
        results[task.name] = result
        (outcome.ran if result["status"] == "ok" else outcome.failed).append(task.name)
        maa = [r["mAA"] for r in result.get("rows", [])]
        log.info("sweep %s: [%d/%d] %s %s in %.1f s%s", spec.name, len(outcome.ran) + len(outcome.failed),
                 len(todo), task.name, result["status"], result.get("seconds", 0.0),
                 f", mAA {sum(maa) / len(maa):.4f} (mean of {len(maa)})" if maa else f": {result.get('error')}")
        outcome.outputs = write_outputs(spec, tasks, results)

    if todo:
        if backend is Backend.RAY:
            run_ray(todo, on_done, workers=workers, resources=spec.resources)
        else:
            run_sequential(todo, on_done, num_threads=threads)
    outcome.outputs = write_outputs(spec, tasks, results)
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m imc sweep", description="run a hyperparameter sweep file")
    parser.add_argument("sweep", help="sweep file, e.g. configs/sweeps/smoke.yaml")
    parser.add_argument("--ray", action="store_true",
                        help="run the tasks on a local Ray instance (implied when RAY_ADDRESS is set: that cluster)")
    parser.add_argument("--workers", type=int, default=None,
                        help="CPUs of the local Ray instance (default: all cores); ignored without --ray")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for sequential runs (default: torch's; 1 helps on a busy machine)")
    parser.add_argument("--output-dir", default=None, help="replaces the sweep file's output_dir")
    parser.add_argument("--list", action="store_true", help="print the points and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the pipeline's logs")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    from ..cli import quiet_console, setup_logging

    setup_logging(args.verbose)
    with quiet_console("imc.sweep", enabled=not args.verbose):  # scene details go to their log.txt
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    for option in ("workers", "threads"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            print(f"error: --{option} must be >= 1", file=sys.stderr)
            return 2
    spec = load_sweep(args.sweep, output_dir=args.output_dir)
    if args.list:
        for point in expand_points(spec):
            print(point.name)
        return 0
    workers = args.workers or os.cpu_count() or 1
    use_ray = args.ray or bool(os.environ.get("RAY_ADDRESS"))
    try:
        outcome = run_sweep(spec, backend=Backend.RAY if use_ray else Backend.SEQUENTIAL, workers=workers,
                            threads=args.threads)
    except RayUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(outcome.outputs["summary"].read_text())
    print(f"sweep {spec.name}: ran {len(outcome.ran)}, skipped {len(outcome.skipped)} finished, "
          f"failed {len(outcome.failed)} in {outcome.seconds:.1f} s -> {spec.output_dir}")
    for name in outcome.failed:
        print(f"failed: {name} (see {spec.points_dir / name / 'sweep_error.json'})")
    return 1 if outcome.failed else 0
