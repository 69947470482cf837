"""Networks: the device, strict weight loading, and a per-run cache of loaded models.

A model is built with random weights and loaded from a local file (kornia's own pretrained
constructors download); only buffers derived at construction may be absent from a checkpoint.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import torch

# Buffers computed at construction time, legitimately absent from the released checkpoints.
DERIVED_BUFFERS = {"dkd.hw_grid", "confidence_thresholds"}


class WeightsMismatchError(RuntimeError):
    pass


def load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, name: str) -> torch.nn.Module:
    result = model.load_state_dict(state_dict, strict=False)
    missing = set(result.missing_keys) - DERIVED_BUFFERS
    if missing or result.unexpected_keys:
        raise WeightsMismatchError(
            f"{name}: checkpoint does not fit the model: missing {sorted(missing)[:10]}, "
            f"unexpected {sorted(result.unexpected_keys)[:10]}"
        )
    return model.eval()


class Networks:
    """Loads each network once per run, on first use (a fully cached scene loads none)."""

    def __init__(self, *, weights_dir: str | os.PathLike | None, device: torch.device):
        self.weights_dir, self.device = weights_dir, device
        self._cache: dict[str, Any] = {}

    def get(self, key: str, conf: Any, load: Callable[..., Any], *, device: torch.device | None = None) -> Any:
        """``load(conf, weights_dir=..., device=...)`` once per (``key``, ``conf``, device); ``device``
        defaults to the run's (another one: e.g. the CPU after a CUDA out-of-memory error)."""
        device = self.device if device is None else torch.device(device)
        cache_key = f"{key}:{json.dumps(conf, sort_keys=True, default=str)}"
        if device != self.device:
            cache_key += f"@{device}"
        if cache_key not in self._cache:
            self._cache[cache_key] = load(conf, weights_dir=self.weights_dir, device=device)
        return self._cache[cache_key]
