"""The run's time budget (``budget:``): scene order, each scene's cap (its share of the images, within
the time left), the clock that extraction and matching check, cheaper settings when time runs short,
skipped scenes once it is spent, and the cap handed to the mapper.

None of it enters a fingerprint: caps and clocks are passed to the stages beside the config, never
written into it. A result cut short by them is recorded as such (``sfm-*/run.json``) and recomputed
by a later run with more time; items never computed (images not extracted, pairs not matched) are
simply missing from their resumable stores and are computed by the next run.

Within a scene (a :class:`SceneClock`):

- extraction may use ``features_share`` of the scene's time left when it starts. When its projected
  time exceeds that and ``fallback_overrides`` were not applied yet, it raises :class:`FallBack`: the
  pipeline restarts the scene with those overrides (smaller images; the full-size images already
  extracted stay in their own cache). Without a fallback left it stops at its allowance.
- matching may use ``matches_share`` of the time left when it starts; pairs are matched in order of
  each image's best partners first (a cheap descriptor similarity), so a cut keeps the strongest pairs.
- the mapper gets whatever is left of the scene's cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .scenes import Scene


def now() -> float:
    """A clock shared by every process of the machine (CLOCK_MONOTONIC): worker processes compare against
    the parent's start."""
    return time.monotonic()


class FallBack(Exception):
    """A stage will not fit the scene's time: rerun the scene with ``budget.fallback_overrides``."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage, self.reason = stage, reason


@dataclass(kw_only=True, frozen=True)
class SceneBudget:
    skip_reason: str | None = None  # set: the budget is spent, the scene gets placeholder rows
    overrides: list[str] = field(default_factory=list)  # fallback settings for this scene
    cap_s: float | None = None  # seconds this scene may take (every stage; the mapper gets what is left)


@dataclass(kw_only=True)
class StageClock:
    """One stage's allowance within its scene."""

    stage: str
    allowed_s: float
    can_fall_back: bool = False
    t0: float = field(default_factory=now)
    cut: str = ""  # set by the stage when it stopped before its last item: why

    def elapsed(self) -> float:
        return now() - self.t0

    def expired(self) -> bool:
        return self.elapsed() >= self.allowed_s

    def check(self, done: int, total: int) -> bool:
        """After ``done`` of ``total`` items: raise :class:`FallBack` when the projected time exceeds the
        allowance and a fallback is left; return True when the allowance is used up (stop here)."""
        elapsed = self.elapsed()
        if self.can_fall_back and done > 0 and done < total:
            projected = elapsed / done * total
            if projected > self.allowed_s:
                raise FallBack(self.stage, f"{done}/{total} items took {elapsed:.1f} s, projected {projected:.0f} s "
                                           f"> its {self.allowed_s:.0f} s share of the scene's cap")
        return elapsed >= self.allowed_s


@dataclass(kw_only=True)
class SceneClock:
    """A scene's cap, counted from its start; stages ask it for their allowance."""

    cap_s: float
    conf: dict[str, Any]  # the `budget` section
    can_fall_back: bool = False
    t_start: float = field(default_factory=now)
    cut: list[str] = field(default_factory=list)  # stages stopped before finishing their items

    def left(self) -> float:
        return self.cap_s - (now() - self.t_start)

    def stage(self, name: str) -> StageClock:
        share = float(self.conf[f"{name}_share"])
        return StageClock(stage=name, allowed_s=max(0.0, share * self.left()),
                          can_fall_back=self.can_fall_back and name == "features")

    def mapper_cap(self) -> float:
        return max(1.0, float(int(self.left())))


@dataclass(kw_only=True)
class Budget:
    conf: dict[str, Any]  # the `budget` section
    t_start: float = field(default_factory=now)
    workers: int = 1  # processes running scenes side by side, each with the whole time

    @property
    def seconds(self) -> float | None:
        return self.conf.get("seconds")

    def order(self, scenes: list[Scene]) -> list[Scene]:
        if self.conf["order"] == "largest_first":  # the expensive ones first, cheap ones can still run on a fallback
            return sorted(scenes, key=lambda s: -len(s.image_paths))
        if self.conf["order"] != "listed":
            raise ValueError(f"budget.order must be largest_first or listed, got {self.conf['order']!r}")
        return list(scenes)

    def left(self) -> float | None:
        return None if self.seconds is None else self.seconds - (now() - self.t_start)

    def for_scene(self, scene: Scene | None = None, pending_images: int | None = None) -> SceneBudget:
        """``scene``'s cap: the time left times its share of the images not started yet (``pending_images``,
        this scene's included), times the number of workers, never above the time left."""
        left = self.left()
        if left is None:
            return SceneBudget()
        if left <= 0:
            return SceneBudget(skip_reason=f"time budget of {self.seconds:.0f} s used up before this scene")
        overrides: list[str] = []
        if left < self.conf["fallback_when_left_fraction"] * self.seconds and self.conf["fallback_overrides"]:
            overrides = list(self.conf["fallback_overrides"])
        cap = left
        if scene is not None and pending_images:
            cap = min(left, left * self.workers * max(1, len(scene.image_paths)) / pending_images)
        return SceneBudget(overrides=overrides, cap_s=max(1.0, float(int(cap))))

    def clock(self, plan: SceneBudget) -> SceneClock | None:
        if plan.cap_s is None:
            return None
        return SceneClock(cap_s=plan.cap_s, conf=self.conf,
                          can_fall_back=bool(self.conf["fallback_overrides"]) and not plan.overrides)
