"""Test extractors (a `plugins:` module) for the budget and out-of-memory paths, on top of the toy
extractor (corners + patches, no network):

- ``slow_toy``: takes ``seconds_per_mpix`` per megapixel it is given, like a network whose cost grows with
  the pixels; smaller images (the budget's fallback) are proportionally cheaper.
- ``oom_toy``: raises ``torch.cuda.OutOfMemoryError`` on its first ``oom_calls`` calls in the process, as a
  GPU out of memory would, then works.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from imc.features import Features, register

from .toy_extractor import Toy

OOM_CALLS = {"n": 0}


@register
class SlowToy(Toy):
    name = "slow_toy"
    default_conf = {**Toy.default_conf, "seconds_per_mpix": 1.0}

    def extract(self, model: None, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        time.sleep(conf["seconds_per_mpix"] * rgb.shape[0] * rgb.shape[1] / 1e6)
        return super().extract(model, rgb, conf, device)


@register
class OomToy(Toy):
    name = "oom_toy"
    default_conf = {**Toy.default_conf, "oom_calls": 0}

    def extract(self, model: None, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        OOM_CALLS["n"] += 1
        if OOM_CALLS["n"] <= conf["oom_calls"]:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated, call {OOM_CALLS['n']}, "
                                               f"{rgb.shape[1]}x{rgb.shape[0]} px on {device})")
        return super().extract(model, rgb, conf, device)
