"""Extractors: one file each (``imc/features/<name>.py``), registered by name.

An adapter declares its descriptor dimension, its weight files, the matchers that fit it and a
readable slug for its cache file; it builds its network apart from loading the weights, and turns
one image into a typed :class:`Features`. Its parameters are ``features.<name>`` in
``configs/default.yaml`` (an out-of-tree adapter brings them as ``default_conf``).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..registry import Registry


@dataclass(kw_only=True)
class Features:
    """One image's features, keypoints in the pixels of the image given to ``extract`` (centres at
    integers)."""

    keypoints: np.ndarray  # (N, 2) float32
    descriptors: np.ndarray  # (N, D) float32
    scores: np.ndarray  # (N,) float32

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        if self.keypoints.shape != (n, 2) or len(self.descriptors) != n or len(self.scores) != n:
            raise ValueError(f"inconsistent features: keypoints {self.keypoints.shape}, descriptors "
                             f"{self.descriptors.shape}, scores {self.scores.shape}")


class Extractor(abc.ABC):
    name: ClassVar[str]
    default_conf: ClassVar[dict[str, Any] | None] = None  # None: features.<name> in configs/default.yaml
    matchers: ClassVar[tuple[str, ...]]  # the matchers its descriptors fit

    @abc.abstractmethod
    def descriptor_dim(self, conf: dict[str, Any]) -> int: ...

    def weight_files(self, conf: dict[str, Any]) -> list[str]:
        return []

    def slug(self, conf: dict[str, Any]) -> str:
        """A readable part of the cache name, e.g. ``aliked-n16-r1024-k2048``."""
        return f"{self.name}-r{conf['resize_max']}-k{conf['max_num_keypoints']}"

    @abc.abstractmethod
    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None,
             device: torch.device) -> Any: ...

    @abc.abstractmethod
    def extract(self, model: Any, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        """``rgb``: (H, W, 3) uint8, already resized to ``conf['resize_max']``."""


EXTRACTORS: Registry[Extractor] = Registry("extractor", __name__)


def register(cls: type[Extractor]) -> type[Extractor]:
    EXTRACTORS.register(cls())
    return cls


def get(name: str) -> Extractor:
    return EXTRACTORS.get(name)
