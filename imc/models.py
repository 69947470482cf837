"""Building ALIKED and LightGlue (kornia) separately from loading their weights, strictly.

kornia's own ``from_pretrained`` / ``LightGlue("aliked")`` download; here the modules are
built with random weights and loaded from a local file. Only derived buffers may be absent
from a checkpoint; any other missing or unexpected key is an error.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .lean_aliked import make_lean
from .weights import resolve_weights

ALIKED_VARIANTS = ("aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16")
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


def build_aliked(*, model: str = "aliked-n16", max_num_keypoints: int = 2048,
                 detection_threshold: float = 0.01, nms_radius: int = 2) -> torch.nn.Module:
    from kornia.feature import ALIKED

    if model not in ALIKED_VARIANTS:
        raise ValueError(f"features.model must be one of {ALIKED_VARIANTS}, got {model!r}")
    return ALIKED(model, max_num_keypoints=max_num_keypoints, detection_threshold=detection_threshold,
                  nms_radius=nms_radius)


def load_aliked(conf: dict[str, Any], *, weights_dir: str | os.PathLike | None = None,
                device: torch.device | str = "cpu") -> torch.nn.Module:
    net = build_aliked(model=conf["model"], max_num_keypoints=conf["max_num_keypoints"],
                       detection_threshold=conf["detection_threshold"], nms_radius=conf.get("nms_radius", 2))
    path = resolve_weights(f"{conf['model']}.pth", weights_dir)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return make_lean(load_strict(net, state, name=str(path)).to(device))  # same outputs, a third of the peak memory


def rename_lightglue_keys(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Released LightGlue checkpoints name attention blocks ``self_attn.i``; kornia nests them."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("matcher.")
        for i in range(n_layers):
            key = key.replace(f"self_attn.{i}.", f"transformers.{i}.self_attn.")
            key = key.replace(f"cross_attn.{i}.", f"transformers.{i}.cross_attn.")
        out[key] = value
    return out


def build_lightglue(*, input_dim: int = 128, n_layers: int = 9, filter_threshold: float = 0.1,
                    depth_confidence: float = 0.95, width_confidence: float = 0.99,
                    flash: bool = False, mp: bool = False) -> torch.nn.Module:
    from kornia.feature import LightGlue

    # features=None: build from the keyword configuration, download nothing.
    return LightGlue(features=None, input_dim=input_dim, descriptor_dim=256, n_layers=n_layers, num_heads=4,
                     filter_threshold=filter_threshold, depth_confidence=depth_confidence,
                     width_confidence=width_confidence, flash=flash, mp=mp)


def load_lightglue(conf: dict[str, Any], *, weights_dir: str | os.PathLike | None = None,
                   device: torch.device | str = "cpu") -> torch.nn.Module:
    is_cuda = torch.device(device).type == "cuda"
    net = build_lightglue(filter_threshold=conf["filter_threshold"], depth_confidence=conf["depth_confidence"],
                          width_confidence=conf["width_confidence"], flash=is_cuda,
                          mp=bool(conf.get("mixed_precision", True)) and is_cuda)
    path = resolve_weights(conf.get("weights", "aliked_lightglue") + ".pth", weights_dir)
    state = rename_lightglue_keys(torch.load(path, map_location="cpu", weights_only=True), net.conf.n_layers)
    return load_strict(net, state, name=str(path)).to(device)


def pick_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but CUDA is not available")
    return torch.device(setting)
