"""Sweep tasks: one point x one scene set = one pipeline run, scored, written as one result file.

A task's folder ``<output_dir>/points/<point>/<scene set>/`` holds the usual run output plus
``sweep_result.json`` (written atomically when the run and its scoring finished) or
``sweep_error.json`` (the task crashed; it is retried on the next invocation). A task is finished
when its result file exists and records the same resolved config, labels and scenes.

Tasks that share a stage cache depend on the first task that uses it (its *producer*): the
producer computes the cache, the others only read it, so parallel workers never write the same
h5 file and a mapper-only point runs after the point whose features and matches it reuses.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import stages
from ..io_utils import atomic_write_json
from .scenesets import PreparedSet
from .spec import Point, SweepSpec, get_dotted

log = logging.getLogger("imc.sweep")

RESULT_FILE = "sweep_result.json"
ERROR_FILE = "sweep_error.json"
IGNORED_CONFIG_KEYS = ("progress",)  # may differ between a finished task and its rerun


@dataclass(kw_only=True)
class Task:
    point: str
    variant: str | None
    scene_set: str
    params: dict[str, Any]  # swept key -> value in this point's config
    conf: dict[str, Any]  # complete resolved run config
    labels: str
    scenes: list[str]
    run_dir: str
    deps: list[int] = field(default_factory=list)  # indices of producer tasks in the task list

    @property
    def name(self) -> str:
        return f"{self.point}/{self.scene_set}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_config(spec: SweepSpec, point: Point, scene_set: PreparedSet, run_dir: Path) -> dict[str, Any]:
    conf = json.loads(json.dumps(point.conf))  # deep copy, plain types
    conf["data"] = {**conf["data"], "root": str(scene_set.root),
                    "sample_submission": str(scene_set.sample_submission) if scene_set.sample_submission else None,
                    "scenes": list(scene_set.scenes)}
    conf["output"] = str(run_dir)
    conf["cache_dir"] = str(spec.cache_dir.resolve())
    conf["overwrite"] = True  # the sweep owns the folder; a changed point config reruns into it
    return conf


def build_tasks(spec: SweepSpec, points: list[Point], sets: list[PreparedSet]) -> list[Task]:
    """Every point x scene set, points slowest (``deps`` are set by :func:`link_producers`)."""
    tasks = []
    for point in points:
        for scene_set in sets:
            run_dir = (spec.points_dir / point.name / scene_set.name).resolve()
            tasks.append(Task(point=point.name, variant=point.variant, scene_set=scene_set.name,
                              params={k: get_dotted(point.conf, k) for k in spec.swept_keys},
                              conf=task_config(spec, point, scene_set, run_dir), labels=str(scene_set.labels),
                              scenes=list(scene_set.scenes), run_dir=str(run_dir)))
    return tasks


def link_producers(tasks: list[Task]) -> None:
    """Set each task's ``deps``: the earlier tasks that first use one of its stage caches."""
    producer: dict[tuple[str, str, str], int] = {}
    for i, task in enumerate(tasks):
        # Image hashes enter the fingerprints equally for every task of a scene set: leave them out.
        # Outputs that concurrent writers would corrupt (resumable h5 stores fold their parts at the end;
        # the sfm folder is replaced whole) get a producer; an atomic one (the pair list) needs none.
        fp = stages.fingerprints(task.conf, {})
        deps = set()
        for output_key in fp:
            if stages.BY_NAME[stages.split_key(output_key)[0]].atomic:
                continue
            key = (task.scene_set, output_key, fp[output_key])
            if key in producer:
                deps.add(producer[key])
            else:
                producer[key] = i
        task.deps = sorted(deps)


def _comparable(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in json.loads(json.dumps(conf, default=str)).items() if k not in IGNORED_CONFIG_KEYS}


def load_result(task: Task) -> dict[str, Any] | None:
    """The task's result if it finished with the same config, labels and scenes, else ``None``."""
    path = Path(task.run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (_comparable(saved.get("config", {})) == _comparable(task.conf) and saved.get("labels") == task.labels
            and saved.get("scenes") == task.scenes)
    return saved if same else None


def load_error(task: Task) -> dict[str, Any] | None:
    path = Path(task.run_dir) / ERROR_FILE
    try:
        saved = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return saved if saved is not None and _comparable(saved.get("config", {})) == _comparable(task.conf) else None


def _scene_rows(task: Task, run_result: Any, score_report: Any) -> list[dict[str, Any]]:
    reports = {r.name: r for r in run_result.reports}
    rows = []
    for name in task.scenes:
        report, scored = reports.get(name), score_report.scenes.get(name)
        n_images = scored.n_images if scored else (report.n_images if report else 0)
        rows.append({
            "dataset": name.split("/")[0], "scene": name.split("/", 1)[1],
            "status": report.status if report else "missing",
            "error": (report.error if report else "no scene report") or "",
            "mAA": scored.maa if scored else float("nan"),
            "mAA_q": scored.maa_q if scored else float("nan"),
            "mAA_t": scored.maa_t if scored else float("nan"),
            "n_images": n_images,
            "n_registered": scored.n_registered if scored else 0,
            "registered_share": (scored.n_registered / n_images) if scored and n_images else 0.0,
            "n_models": report.n_models if report else 0,
            "seconds": dict(report.seconds) if report else {},
            "paths": dict(report.paths) if report else {},
        })
    return rows


def execute(task_dict: dict[str, Any], num_threads: int | None = None) -> dict[str, Any]:
    """Run, score and record one task; never raises (a crash is returned and written as an error).

    ``num_threads``: torch's CPU threads during the task (restored afterwards); ``None`` leaves them."""
    import torch

    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(max(1, int(num_threads)))
    try:
        return _execute(Task(**task_dict))
    finally:
        torch.set_num_threads(previous)


def _execute(task: Task) -> dict[str, Any]:
    import torch
    from eval.score import score
    from eval.submission import SubmissionWarning

    from ..pipeline import run

    imc_log = logging.getLogger("imc")
    if imc_log.getEffectiveLevel() > logging.INFO:  # scene log.txt files want INFO (e.g. in Ray workers)
        imc_log.setLevel(logging.INFO)
    base = {"point": task.point, "variant": task.variant, "scene_set": task.scene_set, "params": task.params,
            "config": task.conf, "labels": task.labels, "scenes": task.scenes,
            "worker": {"host": platform.node(), "pid": os.getpid(), "torch_threads": torch.get_num_threads()},
            "started": time.time()}
    t0 = time.perf_counter()
    try:
        run_result = run(task.conf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SubmissionWarning)
            report = score(run_result.submission, task.labels, scenes=task.scenes)
        result = {**base, "status": "ok", "error": "", "seconds": round(time.perf_counter() - t0, 3),
                  "finished": time.time(), "rows": _scene_rows(task, run_result, report)}
        (Path(task.run_dir) / ERROR_FILE).unlink(missing_ok=True)
        atomic_write_json(Path(task.run_dir) / RESULT_FILE, result)
    except Exception as exc:  # one crashed point never stops the sweep
        result = {**base, "status": "error", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(), "seconds": round(time.perf_counter() - t0, 3),
                  "finished": time.time(), "rows": []}
        Path(task.run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(task.run_dir) / ERROR_FILE, result)
    return result


def record(task: Task, result: dict[str, Any]) -> None:
    """Write a result returned by a (possibly remote) worker on this machine too (idempotent)."""
    name = RESULT_FILE if result["status"] == "ok" else ERROR_FILE
    atomic_write_json(Path(task.run_dir) / name, result)
    if result["status"] == "ok":
        (Path(task.run_dir) / ERROR_FILE).unlink(missing_ok=True)
