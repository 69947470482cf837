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
        """A readable part of the cache name, e.g. ``aliked-n16-r1024-k2048`` (``r1024+1600``: two sizes)."""
        return f"{self.name}-r{size_slug(conf)}-k{conf['max_num_keypoints']}"

    @abc.abstractmethod
    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None,
             device: torch.device) -> Any: ...

    @abc.abstractmethod
    def extract(self, model: Any, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        """``rgb``: (H, W, 3) uint8, already resized to one of :func:`resize_sizes` (the features stage
        calls it once per size and merges the keypoints)."""


def resize_sizes(conf: dict[str, Any]) -> list[int]:
    """``resize_max`` of an extractor's section as a list: one long edge (an int) or several (a list,
    multi-resolution extraction, see ``imc.extract``)."""
    value = conf["resize_max"]
    sizes = value if isinstance(value, list) else [value]
    if (not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
            or len(set(sizes)) < len(sizes)):
        raise ValueError(f"resize_max must be a positive int or a non-empty list of distinct positive ints "
                         f"(e.g. [1024, 1600]), got {value!r}")
    return list(sizes)


def size_slug(conf: dict[str, Any]) -> str:
    return "+".join(str(s) for s in resize_sizes(conf))


EXTRACTORS: Registry[Extractor] = Registry("extractor", __name__)


def register(cls: type[Extractor]) -> type[Extractor]:
    EXTRACTORS.register(cls())
    return cls


def get(name: str) -> Extractor:
    return EXTRACTORS.get(name)
