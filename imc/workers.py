"""Scenes side by side in worker processes (``runtime.workers``; ``auto``: one per GPU, e.g. Kaggle's T4 x2).

Each worker is a spawned process bound to one device, with its own networks, taking one scene at a
time from the parent; the parent hands the next scene (largest first) to whichever worker is free,
with its budget computed at that moment, and writes the CSV after every finished scene. Scenes are
independent and every random choice is seeded per scene, pair or mapper, so the CSV equals that of one
process. A worker that dies (e.g. killed for memory) costs its scene: the scene is reported failed and
the others carry on.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
from pathlib import Path
from typing import Any, Callable

import torch

from .budget import Budget
from .scenes import Scene

log = logging.getLogger(__name__)


def _worker(conf: dict[str, Any], device_name: str, index: int, inbox: Any, results: Any, budget: Budget,
            output: str) -> None:
    from .networks import Networks
    from .pipeline import run_scene
    from .registry import import_plugins

    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s worker {index} %(levelname)s %(name)s: %(message)s")
    import_plugins(conf.get("plugins") or [])
    device = torch.device(device_name)
    torch.manual_seed(int(conf["seed"]))
    if conf.get("torch_threads"):
        torch.set_num_threads(int(conf["torch_threads"]))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    networks = Networks(weights_dir=conf.get("weights_dir"), device=device)
    while (item := inbox.get()) is not None:
        scene, plan = item
        report, result = run_scene(conf, scene, plan, budget=budget, networks=networks, device=device,
                                   output=Path(output))
        results.put((index, report, result))


def run_parallel(conf: dict[str, Any], ordered: list[Scene], pending: list[int], *, budget: Budget,
                 devices: list[torch.device], output: Path, on_done: Callable[..., None]) -> None:
    """Run ``ordered`` scenes on one worker process per entry of ``devices``; ``on_done(report, result)`` in
    the parent as each finishes. ``pending[i]``: images of scenes i.. (their budget shares)."""
    from .pipeline import SceneReport, SceneResult

    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    results = ctx.Queue()
    inboxes = [ctx.Queue() for _ in devices]
    procs = [ctx.Process(target=_worker, args=(conf, str(dev), i, inboxes[i], results, budget, str(output)),
                         name=f"imc-worker-{i}", daemon=True) for i, dev in enumerate(devices)]
    for p in procs:
        p.start()
    log.info("workers: %s", ", ".join(f"{p.name} on {d}" for p, d in zip(procs, devices)))
    idle = list(range(len(procs)))
    in_flight: dict[int, Scene] = {}
    next_scene = 0
    try:
        while next_scene < len(ordered) or in_flight:
            while idle and next_scene < len(ordered):
                w = idle.pop(0)
                scene = ordered[next_scene]
                inboxes[w].put((scene, budget.for_scene(scene, pending[next_scene])))
                in_flight[w] = scene
                next_scene += 1
            try:
                w, report, result = results.get(timeout=2.0)
            except queue.Empty:
                for w, scene in list(in_flight.items()):
                    if not procs[w].is_alive():  # died mid-scene: that scene fails, the others go on
                        report = SceneReport(dataset=scene.dataset, scene=scene.scene, n_images=len(scene.image_paths),
                                             status="failed",
                                             error=f"worker process {w} on {devices[w]} died (exit code "
                                                   f"{procs[w].exitcode}; killed for memory?)")
                        log.error("scene %s: %s", scene.name, report.error)
                        del in_flight[w]
                        on_done(report, SceneResult())
                if not any(p.is_alive() for p in procs) and next_scene < len(ordered):
                    raise RuntimeError("every worker process died; see the scenes' reports")
                continue
            del in_flight[w]
            idle.append(w)
            on_done(report, result)
    finally:
        for inbox, p in zip(inboxes, procs):
            if p.is_alive():
                inbox.put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
