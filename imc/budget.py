"""The run's time budget (``budget:``): scene order, cheaper settings when time runs short, skipped
scenes once it is spent, and the cap handed to the mapper. None of it enters a fingerprint: the
cap is passed to the stages beside the config, never written into it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .scenes import Scene


@dataclass(kw_only=True, frozen=True)
class SceneBudget:
    skip_reason: str | None = None  # set: the budget is spent, the scene gets placeholder rows
    overrides: list[str] = field(default_factory=list)  # fallback settings for this scene
    cap_s: float | None = None  # seconds this scene's mapper may take


@dataclass(kw_only=True)
class Budget:
    conf: dict[str, Any]  # the `budget` section
    t_start: float = field(default_factory=time.perf_counter)

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
        return None if self.seconds is None else self.seconds - (time.perf_counter() - self.t_start)

    def for_scene(self) -> SceneBudget:
        left = self.left()
        if left is None:
            return SceneBudget()
        if left <= 0:
            return SceneBudget(skip_reason=f"time budget of {self.seconds:.0f} s used up before this scene")
        overrides: list[str] = []
        if left < self.conf["fallback_when_left_fraction"] * self.seconds and self.conf["fallback_overrides"]:
            overrides = list(self.conf["fallback_overrides"])
        return SceneBudget(overrides=overrides, cap_s=max(1.0, float(int(left))))
