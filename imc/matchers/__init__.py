"""Matchers: one file each (``imc/matchers/<name>.py``), registered by name.

``matching.<extractor>`` names the matcher of an extractor's features plus that matcher's
per-extractor keys (``entry_keys``, e.g. LightGlue's weights); ``matchers.<name>`` holds the
matcher's own parameters (an out-of-tree adapter brings them as ``default_conf``).
"""

from __future__ import annotations

import abc
import os
from typing import Any, ClassVar

import numpy as np
import torch

from ..registry import Registry


class Matcher(abc.ABC):
    name: ClassVar[str]
    default_conf: ClassVar[dict[str, Any] | None] = None  # None: matchers.<name> in configs/default.yaml
    entry_keys: ClassVar[tuple[str, ...]] = ()  # keys of matching.<extractor> besides `matcher`

    def input_dim(self, entry: dict[str, Any]) -> int | None:
        """The descriptor dimension the matcher needs with this entry (None: any)."""
        return None

    @abc.abstractmethod
    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None, device: torch.device) -> Any:
        """``conf``: ``matchers.<name>`` merged with the extractor's entry."""

    def prepare(self, f: dict[str, np.ndarray], device: torch.device) -> Any:
        """One image's features as ``match`` takes them, made once per scene and kept (e.g. tensors on the
        device across all the image's pairs). Default: the arrays themselves."""
        return f

    @abc.abstractmethod
    def match(self, model: Any, f0: Any, f1: Any, device: torch.device) -> dict[str, np.ndarray]:
        """Prepared features (:meth:`prepare` of keypoints in original pixels, descriptors, image_size) ->
        ``matches`` (M, 2) int32 and ``scores`` (M,) float32."""

    def batch_key(self, f: Any) -> Any:
        """Pairs whose two sides have equal keys may be matched in one call (None: never batched)."""
        return None

    def match_batch(self, model: Any, pairs: list[tuple[Any, Any]], device: torch.device) -> list[dict[str, np.ndarray]]:
        """Several pairs of equal :meth:`batch_key` at once; default: one at a time."""
        return [self.match(model, f0, f1, device) for f0, f1 in pairs]


MATCHERS: Registry[Matcher] = Registry("matcher", __name__)


def register(cls: type[Matcher]) -> type[Matcher]:
    MATCHERS.register(cls())
    return cls


def get(name: str) -> Matcher:
    return MATCHERS.get(name)


def no_matches() -> dict[str, np.ndarray]:
    return {"matches": np.zeros((0, 2), np.int32), "scores": np.zeros((0,), np.float32)}
