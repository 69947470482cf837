"""Where sweep tasks run: one after the other in this process, or as Ray tasks (local or a cluster).

Both honour the task dependencies (a task starts once the producers of its caches are done) and
call ``on_done(task, result)`` as each task finishes, in completion order.
"""

from __future__ import annotations

import enum
import logging
import math
import os
from typing import Any, Callable

from .spec import Resources
from .tasks import Task, execute

log = logging.getLogger("imc.sweep")

OnDone = Callable[[Task, dict[str, Any]], None]


class Backend(enum.Enum):
    SEQUENTIAL = "sequential"
    RAY = "ray"


class RayUnavailableError(RuntimeError):
    """``--ray`` was asked for but the ``ray`` package is not installed."""


def run_sequential(tasks: list[Task], on_done: OnDone, *, num_threads: int | None = None) -> None:
    """In order (producers come before the tasks that depend on them), in this process."""
    for task in tasks:
        on_done(task, execute(task.to_dict(), num_threads=num_threads))


def _ray_entry(task_dict: dict[str, Any], num_threads: int) -> dict[str, Any]:
    return execute(task_dict, num_threads=num_threads)


def init_ray(workers: int) -> bool:
    """Start (or join) Ray unless already initialised; return whether this call started it.

    ``RAY_ADDRESS`` set: join that cluster (``ray start --head`` elsewhere); otherwise start a local
    one with ``workers`` CPUs.
    """
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError("--ray needs the `ray` package: pip install 'imc[ray]'") from exc
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("sweep: joining the Ray cluster at %s", address)
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=workers, **quiet)
    return True


def run_ray(tasks: list[Task], on_done: OnDone, *, workers: int, resources: Resources) -> None:
    """One Ray task per sweep task; a task is submitted when its producers have finished."""
    import ray

    started = init_ray(workers)
    try:
        remote = ray.remote(_ray_entry)
        options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_retries": 0}
        threads = max(1, math.floor(resources.num_cpus))
        done: set[int] = set()
        submitted: dict[Any, int] = {}
        waiting = list(range(len(tasks)))
        while waiting or submitted:
            for i in [i for i in waiting if all(d in done for d in tasks[i].deps)]:
                waiting.remove(i)
                ref = remote.options(name=f"sweep:{tasks[i].name}", **options).remote(tasks[i].to_dict(), threads)
                submitted[ref] = i
            ready, _ = ray.wait(list(submitted), num_returns=1)
            for ref in ready:
                i = submitted.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker died (e.g. killed for memory)
                    result = {"status": "error", "error": f"ray task failed: {type(exc).__name__}: {exc}",
                              "rows": [], "config": tasks[i].conf, "point": tasks[i].point,
                              "variant": tasks[i].variant, "scene_set": tasks[i].scene_set,
                              "params": tasks[i].params, "labels": tasks[i].labels, "scenes": tasks[i].scenes}
                done.add(i)
                on_done(tasks[i], result)
    finally:
        if started:
            ray.shutdown()
