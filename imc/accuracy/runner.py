"""One benchmark unit (a config x one scene) in its own process: run, score, measure.

The parent writes ``<unit_dir>/task.json``, starts ``python -m imc accuracy --child task.json`` and
reaps it with ``os.wait4``, whose ``ru_maxrss`` is the peak resident memory of that process alone
(so every scene's figure is its own, not the largest seen so far). The child runs the pipeline into
``<unit_dir>/run`` and scores it against the labels with :mod:`eval.score`; stage seconds are read
from the run's ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io_utils import atomic_write_json

log = logging.getLogger("imc.accuracy")

TASK_FILE = "task.json"
RESULT_FILE = "result.json"
CHILD_LOG = "child.log"


@dataclass(kw_only=True)
class UnitResult:
    """One row of the benchmark table."""

    variant: str
    entry: str
    scene: str  # dataset/scene
    status: str  # ok | failed (pipeline or scoring raised) | crashed (the process died)
    error: str = ""
    mAA: float | None = None
    mAA_q: float | None = None
    mAA_t: float | None = None
    n_images: int = 0
    n_registered: int = 0
    n_models: int = 0
    n_pairs: int = 0  # image pairs scored
    median_err_R_deg: float | None = None
    median_err_t: float | None = None
    thresholds: str = ""  # "official" (the scene's own entry) or "relative x <distance>" (scale-relative)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, from summary.json
    stages: list[str] = field(default_factory=list)  # the pipeline's stage order (JSON files sort dict keys)
    stage_seconds: float = 0.0  # their sum
    run_seconds: float = 0.0  # pipeline.run wall time (loading networks included), from summary.json
    wall_seconds: float = 0.0  # the whole child process: imports, run, scoring
    peak_rss_mb: float | None = None  # ru_maxrss of the child process
    scene_status: str = ""  # the pipeline's scene status (ok, failed, empty, ...)
    run_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UnitResult":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def unit_config(base: dict[str, Any], *, root: Path, sample_submission: Path | None, scene: str, run_dir: Path,
                cache_dir: Path, progress: bool) -> dict[str, Any]:
    """The run config of one unit: the variant's config with the data, output and cache keys set."""
    conf = json.loads(json.dumps(base))  # deep copy, plain types
    conf["data"] = {**conf["data"], "root": str(root),
                    "sample_submission": str(sample_submission) if sample_submission else None, "scenes": [scene]}
    conf["output"] = str(run_dir)
    conf["cache_dir"] = str(cache_dir)
    conf["overwrite"] = True  # the benchmark owns the folder
    conf["progress"] = progress
    return conf


def run_unit(*, variant: str, entry: str, scene: str, labels: Path, conf: dict[str, Any], unit_dir: Path,
             capture: bool = False) -> UnitResult:
    """Run one unit in a child process and return its row (never raises for a failing scene).

    ``capture``: the child's stdout/stderr go to ``<unit_dir>/child.log`` instead of this terminal."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    task = {"variant": variant, "entry": entry, "scene": scene, "labels": str(labels), "conf": conf,
            "unit_dir": str(unit_dir)}
    atomic_write_json(unit_dir / TASK_FILE, task)
    (unit_dir / RESULT_FILE).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "imc", "accuracy", "--child", str(unit_dir / TASK_FILE)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                       os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    with open(unit_dir / CHILD_LOG, "w") as logf:
        out = logf if capture else None
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: stop the child too
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    peak_mb = usage.ru_maxrss / 1024.0  # Linux: kilobytes
    result_path = unit_dir / RESULT_FILE
    if proc.returncode == 0 and result_path.is_file():
        result = UnitResult.from_dict(json.loads(result_path.read_text()))
    else:
        tail = (unit_dir / CHILD_LOG).read_text()[-2000:] if capture else "(see the output above)"
        result = UnitResult(variant=variant, entry=entry, scene=scene, status="crashed",
                            error=f"child process exited with {proc.returncode}: {tail.strip()[-500:]}")
    result.wall_seconds = round(wall, 2)
    result.peak_rss_mb = round(peak_mb, 1)
    atomic_write_json(result_path, result.to_dict())
    return result


def _threshold_label(score: Any) -> str:
    if score.reference_distance_m is not None:
        return f"relative x {score.reference_distance_m:.3g}"
    return "official" if score.thresholds_R_deg else ""


class RssSampler:
    """Samples this process's resident memory every ``interval`` s into ``<unit_dir>/rss.tsv`` (seconds, MB):
    set beside the run's log.txt timestamps, it shows which stage holds the memory."""

    def __init__(self, path: Path, interval: float = 0.5):
        self.path, self.interval = path, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.t0 = time.time()

    def _loop(self) -> None:
        with open(self.path, "w") as f:
            f.write(f"# started {self.t0:.3f} (unix time)\nseconds\trss_mb\n")
            while not self._stop.is_set():
                f.write(f"{time.time() - self.t0:.1f}\t{current_rss_mb():.1f}\n")
                f.flush()
                self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def child_main(task_path: str) -> int:
    """``python -m imc accuracy --child TASK``: run and score one unit, write ``result.json``."""
    task = json.loads(Path(task_path).read_text())
    unit_dir = Path(task["unit_dir"])
    with RssSampler(unit_dir / "rss.tsv"):
        return _child(task, unit_dir)


def _child(task: dict[str, Any], unit_dir: Path) -> int:
    conf = task["conf"]
    result = UnitResult(variant=task["variant"], entry=task["entry"], scene=task["scene"], status="failed",
                        run_dir=conf["output"])
    try:
        from eval.score import score
        from eval.submission import SubmissionWarning

        from .. import pipeline, stages

        run_result = pipeline.run(conf)
        summary = json.loads((Path(run_result.output) / "summary.json").read_text())
        scene_report = next((s for s in summary["scenes"] if f"{s['dataset']}/{s['scene']}" == task["scene"]), None)
        if scene_report is None:
            raise RuntimeError(f"summary.json of {run_result.output} has no report for {task['scene']}")
        seconds = scene_report.get("seconds", {})  # summary.json sorts keys: restore the pipeline's stage order
        order = [s for s in stages.NAMES if s in seconds] + sorted(set(seconds) - set(stages.NAMES))
        result.seconds = {k: float(seconds[k]) for k in order}
        result.stages = order
        result.stage_seconds = round(sum(result.seconds.values()), 3)
        result.run_seconds = float(summary.get("seconds", 0.0))
        result.n_models = int(scene_report.get("n_models", 0))
        result.scene_status = str(scene_report.get("status", ""))
        result.error = scene_report.get("error") or ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SubmissionWarning)
            report = score(run_result.submission, task["labels"], scenes=[task["scene"]])
        s = report.scenes[task["scene"]]
        result.mAA, result.mAA_q, result.mAA_t = s.maa, s.maa_q, s.maa_t
        result.n_images, result.n_registered, result.n_pairs = s.n_images, s.n_registered, s.n_pairs
        if "n_registered" in scene_report:  # the pipeline's count: a two-view model's first camera IS identity
            result.n_registered = int(scene_report["n_registered"])
        result.median_err_R_deg, result.median_err_t = s.median_err_R_deg, s.median_err_t_m
        result.thresholds = _threshold_label(s)
        atomic_write_json(unit_dir / "score.json", report.to_dict())
        result.status = "ok" if result.scene_status == "ok" else "failed"
    except Exception as exc:  # recorded in the row; the benchmark goes on with the next unit
        result.error = f"{type(exc).__name__}: {exc}"
        log.error("accuracy: %s failed: %s\n%s", task["scene"], result.error, traceback.format_exc())
    atomic_write_json(unit_dir / RESULT_FILE, result.to_dict())
    return 0
