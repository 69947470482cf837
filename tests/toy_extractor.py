"""A toy extractor registered from its own file (a `plugins:` module): Shi-Tomasi corners described by
their normalised 9x9 grey patch (81-d), matched by mutual nearest neighbours. It shows that a new
extractor is one file plus a config, and nothing else."""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
import torch

from imc.features import Extractor, Features, register

PATCH = 9


@register
class Toy(Extractor):
    name = "toy"
    default_conf = {"resize_max": 640, "max_num_keypoints": 1024, "quality": 0.01}
    matchers = ("nearest_neighbour",)

    def descriptor_dim(self, conf: dict[str, Any]) -> int:
        return PATCH * PATCH

    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None, device: torch.device) -> None:
        return None  # no network

    def extract(self, model: None, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        corners = cv2.goodFeaturesToTrack(grey, conf["max_num_keypoints"], conf["quality"], PATCH)
        kpts = np.zeros((0, 2), np.float32) if corners is None else corners.reshape(-1, 2).astype(np.float32)
        padded = cv2.copyMakeBorder(grey, PATCH, PATCH, PATCH, PATCH, cv2.BORDER_REFLECT).astype(np.float32)
        r = PATCH // 2
        desc = np.stack([padded[int(y) + PATCH - r:int(y) + PATCH + r + 1, int(x) + PATCH - r:int(x) + PATCH + r + 1]
                         .ravel() for x, y in kpts]) if len(kpts) else np.zeros((0, PATCH * PATCH), np.float32)
        desc = desc - desc.mean(axis=1, keepdims=True)
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-6)
        return Features(keypoints=kpts, descriptors=desc.astype(np.float32), scores=np.ones(len(kpts), np.float32))
