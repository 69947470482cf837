"""Runs every scene through the stage table (``imc.stages``); writes the CSV after each scene,
reports and the summary."""

from __future__ import annotations

import json
import logging
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import csv_writer, stages
from .budget import Budget, FallBack, SceneBudget, SceneClock
from .config import ConfigError, apply_overrides, check_count, dump_config, read_yaml, validate
from .extract import image_sha1
from .fuse import read_images
from .h5io import clean_stale_tmp
from .io_utils import atomic_write_json, atomic_write_text, file_lock
from .memory import release_free_memory
from .networks import Networks
from .preflight import resolve_device
from .reconstruct import Pose, read_poses_csv
from .scenes import Competition, Scene, discover_scenes

log = logging.getLogger("imc")


@dataclass(kw_only=True)
class SceneReport:
    dataset: str
    scene: str
    n_images: int
    n_registered: int = 0
    n_models: int = 0
    model_sizes: list[int] = field(default_factory=list)
    cluster_sizes: list[int] = field(default_factory=list)  # imc2025: the clusters' sizes
    n_outliers: int = 0  # imc2025: images filed as outliers
    status: str = "pending"  # ok | failed | empty | skipped_budget
    error: str | None = None
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    paths: dict[str, str] = field(default_factory=dict)  # output key (stages.key) -> path
    fingerprints: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    # image -> {model, how (mapper | relocalised | merged | two_view), reprojection_error, num_observations}
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: list[str] = field(default_factory=list)  # what the time budget did: cap, fallbacks, stages cut short

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"


@dataclass(kw_only=True)
class SceneContext:
    """What a stage's ``run_stage`` needs: the config, the scene, where its outputs go, the networks."""

    conf: dict[str, Any]
    scene: Scene
    plan: stages.ScenePlan
    sha1s: dict[str, str]
    networks: Networks
    device: torch.device
    progress: bool = True
    budget_cap_s: float | None = None
    clock: SceneClock | None = None  # the scene's cap counted from its start (None: no budget)


def scene_context(conf: dict[str, Any], scene: Scene, networks: Networks, device: torch.device, *,
                  budget_cap_s: float | None = None, clock: SceneClock | None = None) -> SceneContext:
    sha1s = {p: image_sha1(scene.file(p)) for p in scene.image_paths}
    scene_dir = Path(conf["cache_dir"]) / scene.dataset / scene.scene
    plan = stages.plan(conf, scene_dir, sha1s)
    scene_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(scene_dir)
    stages.write_sidecars(conf, plan)
    return SceneContext(conf=conf, scene=scene, plan=plan, sha1s=sha1s, networks=networks, device=device,
                        progress=bool(conf.get("progress", True)), budget_cap_s=budget_cap_s, clock=clock)


def run_one(ctx: SceneContext, stage: stages.Stage, ext: str | None) -> tuple[Path, float]:
    """One stage output, under its inter-process lock (runs sharing a cache take turns); seconds."""
    t0 = time.perf_counter()
    path = ctx.plan.path(stage.name, ext)
    with file_lock(path):
        stage.load().run_stage(ctx, ext)
    release_free_memory()  # what a stage freed goes back to the OS before the next one
    return path, time.perf_counter() - t0


@dataclass
class _SceneLog:
    """Copies the ``imc`` loggers' INFO messages into a scene's ``log.txt`` while a scene runs."""

    path: Path
    handler: logging.Handler | None = None
    saved_level: int = logging.NOTSET

    def __enter__(self) -> "_SceneLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, mode="a")
        self.handler.setLevel(logging.INFO)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("imc")
        self.saved_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        logger = logging.getLogger("imc")
        logger.removeHandler(self.handler)
        logger.setLevel(self.saved_level)
        self.handler.close()


@dataclass(kw_only=True)
class SceneResult:
    poses: dict[str, Pose] = field(default_factory=dict)  # image_path -> pose written to the CSV
    labels: dict[str, str] = field(default_factory=dict)  # imc2025: image_path -> cluster name / outliers


def process_scene(ctx: SceneContext, report: SceneReport) -> SceneResult:
    """The scene's recipe: every stage of the table in order, then the report from their files."""
    report.fingerprints = dict(ctx.plan.fingerprints)
    report.paths = {k: str(p) for k, p in ctx.plan.paths.items()}
    if not ctx.scene.image_paths:
        report.status = "empty"
        log.warning("scene %s lists no images", ctx.scene.name)
        return SceneResult()
    for stage in stages.active(ctx.conf):
        for ext in (stages.extractors(ctx.conf) if stage.per_extractor else [None]):
            _, seconds = run_one(ctx, stage, ext)
            report.seconds[stage.name] = round(report.seconds.get(stage.name, 0.0) + seconds, 3)
    poses = collect_report(ctx, report)
    if not stages.BY_NAME["cluster"].runs_for(ctx.conf):
        return SceneResult(poses=poses)
    from .cluster_stage import read_result

    clusters = read_result(ctx.plan.path("cluster"), poses)
    report.cluster_sizes, report.n_outliers = clusters.sizes, clusters.n_outliers
    return SceneResult(poses=clusters.poses, labels=clusters.labels)


def collect_report(ctx: SceneContext, report: SceneReport) -> dict[str, Pose]:
    """Registered counts and, per image, why it has no pose (from the stage outputs)."""
    images = read_images(ctx.plan.path("fuse"))
    usable = [p for p in ctx.scene.image_paths if p in images and images[p]["num_keypoints"] > 0]
    for p in ctx.scene.image_paths:
        errors = images.get(p, {}).get("errors", {})
        if p not in usable:
            reason = "; ".join(errors.values()) or "no keypoints detected"
            report.fallbacks.append({"image_path": p, "reason": f"features: {reason}"})
        elif errors:  # some extractors failed, the others' keypoints are used
            for ext, error in errors.items():
                report.fallbacks.append({"image_path": p, "reason": f"features {ext}: {error} (the other extractors' "
                                                                    "keypoints are used)"})
    report.status = "ok"
    if len(usable) < 2:
        reason = f"scene has {len(usable)} usable image(s): nothing to reconstruct"
        report.fallbacks += [{"image_path": p, "reason": f"{reason}: identity/zero written"} for p in usable]
        log.warning("scene %s: %s", ctx.scene.name, reason)
        return {}
    result = read_poses_csv(ctx.plan.path("sfm") / "poses.csv")
    report.n_registered = result.n_registered
    report.n_models = result.n_models
    report.model_sizes = result.model_sizes
    report.provenance = {name: {"model": p.model, "how": p.how, "num_observations": p.num_observations,
                                "reprojection_error": None if np.isnan(p.reprojection_error) else p.reprojection_error}
                         for name, p in sorted(result.poses.items())}
    for p in usable:
        if p not in result.poses:
            report.fallbacks.append({"image_path": p, "reason": "not registered by the mapper: identity/zero written"})
    return result.poses


def versions() -> dict[str, str]:
    import cv2
    import h5py
    import kornia
    import numpy
    import pycolmap

    from . import __version__

    return {"imc": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "kornia": kornia.__version__, "pycolmap": pycolmap.__version__, "h5py": h5py.__version__,
            "numpy": numpy.__version__, "opencv": cv2.__version__}


def prepare_output(conf: dict[str, Any]) -> Path:
    """Create the run folder; refuse to reuse one made by another config unless ``overwrite``."""
    output = Path(conf["output"])
    output.mkdir(parents=True, exist_ok=True)
    saved = output / "config.yaml"
    ignore = {"progress", "overwrite", "runtime"}
    if saved.exists() and not conf.get("overwrite", False):
        previous = {k: v for k, v in read_yaml(saved).items() if k not in ignore}
        current = {k: v for k, v in json.loads(json.dumps(conf, default=str)).items() if k not in ignore}
        if previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise ConfigError(f"{output} holds a run made with another config (sections {changed} differ): "
                              "choose another `output=` or pass `overwrite=true`")
    atomic_write_text(saved, dump_config(conf))
    return output


@dataclass(kw_only=True)
class RunResult:
    output: Path
    submission: Path
    reports: list[SceneReport]
    seconds: float


def setup_torch(conf: dict[str, Any]) -> torch.device:
    device = resolve_device(conf.get("device", "auto"))
    torch.manual_seed(int(conf["seed"]))
    if conf.get("torch_threads"):
        torch.set_num_threads(int(conf["torch_threads"]))
    return device


def run_scene(conf: dict[str, Any], scene: Scene, plan: SceneBudget, *, budget: Budget, networks: Networks,
              device: torch.device, output: Path) -> tuple[SceneReport, SceneResult]:
    """One scene within its budget: its stages, then once more with ``budget.fallback_overrides`` when
    extraction will not fit; a failure is recorded in the report, never raised."""
    report = SceneReport(dataset=scene.dataset, scene=scene.scene, n_images=len(scene.image_paths))
    if plan.skip_reason:
        report.status, report.error = "skipped_budget", plan.skip_reason
        log.warning("scene %s skipped: %s", scene.name, report.error)
        _write_report(output, report)
        return report, SceneResult()
    result = SceneResult()
    overrides = list(plan.overrides)
    clock = budget.clock(plan)
    with _SceneLog(output / "scenes" / scene.dataset / scene.scene / "log.txt"):
        log.info("scene %s: %d images%s", scene.name, len(scene.image_paths),
                 f", cap {plan.cap_s:.0f} s" if plan.cap_s is not None else "")
        if plan.cap_s is not None:
            report.budget.append(f"cap {plan.cap_s:.0f} s")
        if overrides:
            log.warning("scene %s: %.0f s left of the budget, using fallback %s", scene.name, budget.left(), overrides)
        while True:
            try:
                scene_conf = validate(apply_overrides(conf, overrides)) if overrides else conf
                report.overrides = list(overrides)
                ctx = scene_context(scene_conf, scene, networks, device, budget_cap_s=plan.cap_s, clock=clock)
                result = process_scene(ctx, report)
            except FallBack as exc:  # raised only while the fallback is still unused
                overrides = list(conf["budget"]["fallback_overrides"])
                assert clock is not None
                clock.can_fall_back = False
                report.budget.append(f"{exc}: scene rerun with {overrides}")
                report.fallbacks = []
                log.warning("scene %s: %s: rerunning it with %s", scene.name, exc, overrides)
                continue
            except Exception as exc:  # one scene's failure never costs the others their rows
                report.status = "failed"
                report.error = f"{type(exc).__name__}: {exc}"
                log.error("scene %s failed: %s\n%s", scene.name, report.error, traceback.format_exc())
            break
        if clock is not None and clock.cut:
            report.budget += [f"cut short: {c}" for c in clock.cut]
        log.info("scene %s: %s, %d/%d registered, %d model(s), seconds %s", scene.name, report.status,
                 report.n_registered, report.n_images, report.n_models, report.seconds)
    _write_report(output, report)
    return report, result


def competition(conf: dict[str, Any]) -> Competition:
    return Competition.parse(conf["data"]["competition"])


def scenes_of(conf: dict[str, Any]) -> list[Scene]:
    data = conf["data"]
    return discover_scenes(root=data["root"], sample_submission=data.get("sample_submission"),
                           only=data.get("scenes") or None, competition=competition(conf))


def run(conf: dict[str, Any]) -> RunResult:
    conf = validate(conf)
    budget = Budget(conf=conf["budget"])
    output = prepare_output(conf)
    scenes = scenes_of(conf)
    device = setup_torch(conf)
    workers = workers_for(conf, device)
    budget.workers = len(workers)
    poses_by_scene: dict[str, dict[str, Pose]] = {}
    labels_by_scene: dict[str, dict[str, str]] = {}
    reports: dict[str, SceneReport] = {}
    csv_path = output / "submission.csv"

    def write_csv() -> None:
        csv_writer.write_submission(competition(conf), scenes, poses_by_scene, labels_by_scene, csv_path)

    write_csv()  # complete from the start: placeholders everywhere
    log.info("run: %d scene(s), %d image(s), device %s, %d worker(s) -> %s", len(scenes),
             sum(len(s.image_paths) for s in scenes), device, len(workers), output)
    ordered = budget.order(scenes)
    pending = [sum(len(s.image_paths) for s in ordered[i:]) for i in range(len(ordered))]  # images not started yet

    def done(report: SceneReport, result: SceneResult) -> None:
        reports[report.name] = report
        poses_by_scene[report.name], labels_by_scene[report.name] = result.poses, result.labels
        write_csv()

    if len(workers) == 1:
        networks = Networks(weights_dir=conf.get("weights_dir"), device=device)
        for i, scene in enumerate(ordered):
            done(*run_scene(conf, scene, budget.for_scene(scene, pending[i]), budget=budget, networks=networks,
                            device=device, output=output))
    else:
        from .workers import run_parallel

        run_parallel(conf, ordered, pending, budget=budget, devices=workers, output=output, on_done=done)
    report_list = [reports[s.name] for s in ordered if s.name in reports]
    seconds = time.monotonic() - budget.t_start
    atomic_write_json(output / "summary.json", {
        "scenes": [asdict(r) for r in report_list], "seconds": round(seconds, 2), "versions": versions(),
        "device": str(device), "workers": [str(w) for w in workers], "submission": str(csv_path)})
    return RunResult(output=output, submission=csv_path, reports=report_list, seconds=seconds)


def workers_for(conf: dict[str, Any], device: torch.device) -> list[torch.device]:
    """The device of each worker process: ``runtime.workers`` N (the run's device N times; CUDA: spread over
    the visible GPUs) or ``auto`` (one per visible GPU on CUDA, else one)."""
    n = conf["runtime"]["workers"]
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    check_count(n, "runtime.workers")
    if n == "auto":
        n = max(1, gpus)
    if device.type == "cuda" and n > 1:
        return [torch.device("cuda", i % gpus) for i in range(n)]
    return [device] * n


def run_stage_alone(conf: dict[str, Any], name: str, *, extractors: list[str] | None = None) -> list[str]:
    """``python -m imc stage NAME``: that stage for every scene, from its upstream stages' outputs."""
    conf = validate(conf)
    stage = stages.stage(name)
    exts = stages.extractors(conf)
    unknown = sorted(set(extractors or []) - set(exts))
    if unknown:
        raise ConfigError(f"--extractor {unknown} not in features.extractors {exts}")
    if not stage.runs_for(conf):
        raise ConfigError(f"stage {name!r} runs only for data.competition in {list(stage.competitions)}, "
                          f"not {conf['data']['competition']!r}")
    scenes = scenes_of(conf)
    device = setup_torch(conf)
    networks = Networks(weights_dir=conf.get("weights_dir"), device=device)
    lines = []
    for scene in scenes:
        ctx = scene_context(conf, scene, networks, device)
        for ext in ((extractors or exts) if stage.per_extractor else [None]):
            for up in stage.upstream + stage.reads:
                for up_ext in ([ext] if ext else exts) if stages.BY_NAME[up].per_extractor else [None]:
                    if not ctx.plan.path(up, up_ext).exists():
                        raise ConfigError(f"scene {scene.name}: stage {name!r} needs the output of {up!r}"
                                          f"{f' ({up_ext})' if up_ext else ''}, {ctx.plan.path(up, up_ext)}, which "
                                          f"does not exist: run `python -m imc stage {up}` with the same config first")
            path, seconds = run_one(ctx, stage, ext)
            lines.append(f"{scene.name}: {stages.key(name, ext)} -> {path} ({seconds:.1f} s)")
    return lines


def _write_report(output: Path, report: SceneReport) -> None:
    atomic_write_json(output / "scenes" / report.dataset / report.scene / "report.json", asdict(report))


def summary_table(reports: list[SceneReport]) -> str:
    names = stages.timed_names([r.seconds for r in reports])
    clustered = any(r.cluster_sizes or r.n_outliers for r in reports)
    extra = ["clusters", "outliers"] if clustered else []
    cols = ["scene", "images", "registered", "models", "status"] + extra + [f"{s}_s" for s in names]
    rows = []
    for r in reports:
        rows.append([r.name, str(r.n_images), str(r.n_registered), str(r.n_models), r.status]
                    + ([str(len(r.cluster_sizes)), str(r.n_outliers)] if clustered else [])
                    + [f"{r.seconds[s]:.1f}" if s in r.seconds else "-" for s in names])
    total = ["TOTAL", str(sum(r.n_images for r in reports)), str(sum(r.n_registered for r in reports)),
             str(sum(r.n_models for r in reports)), ""] + (
        [str(sum(len(r.cluster_sizes) for r in reports)), str(sum(r.n_outliers for r in reports))] if clustered else []) + [
        f"{sum(r.seconds.get(s, 0.0) for r in reports):.1f}" for s in names]
    rows.append(total)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])
