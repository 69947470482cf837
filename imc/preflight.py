"""Pre-flight: can this machine run the pipeline, and on which device? Checked once, before any scene.

``torch.cuda.is_available()`` is True on a card the installed torch has no kernels for (torch
built for CUDA 12.8 ships none for the sm_60 P100): every scene would then fail at its first CUDA
operation and the run would end "complete" with identity rows only. :func:`preflight` compares the
GPU's compute capability with ``torch.cuda.get_arch_list()``, runs a tiny CUDA operation, imports
kornia and pycolmap and records the versions; :func:`resolve_device` turns ``device: auto`` into
CUDA only when that GPU can run, else CPU with one loud warning (``device: cuda`` on an unusable
GPU is an error naming the cause).

The GPU probe is injectable (``probe=``), so a test can present an unusable GPU on a CPU machine.
"""

from __future__ import annotations

import enum
import importlib
import logging
import platform
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

log = logging.getLogger("imc.preflight")

# Imported by the pipeline's stages; a missing one would fail every scene.
REQUIRED_MODULES = ("kornia", "pycolmap", "cv2", "h5py", "numpy")


class DeviceSetting(str, enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class PreflightError(RuntimeError):
    """The machine cannot run the pipeline as configured (the message names the cause and the fix)."""


class UnusableGpuWarning(RuntimeWarning):
    """``device: auto`` found a GPU this torch cannot run on, and falls back to the CPU."""


@dataclass(kw_only=True, frozen=True)
class GpuInfo:
    """What torch says about CUDA device 0."""

    name: str
    capability: tuple[int, int]  # (major, minor), e.g. (6, 0) for a P100
    arch_list: tuple[str, ...]  # torch.cuda.get_arch_list(), e.g. ("sm_70", ..., "compute_120")
    op_error: str | None = None  # the tiny CUDA operation's error, None when it ran
    count: int = 1

    @property
    def sm(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"


def _arch_number(tag: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(?:sm|compute)_(\d+)(\d)[a-z]?", tag)
    return (int(m.group(1)), int(m.group(2))) if m else None


def arch_supported(capability: tuple[int, int], arch_list: tuple[str, ...] | list[str]) -> bool:
    """Whether a torch built for ``arch_list`` has kernels for a GPU of ``capability``.

    ``sm_XY`` (a binary) runs on the same major version with an equal or higher minor one;
    ``compute_XY`` (PTX) is compiled by the driver for any capability >= XY.
    """
    major, minor = capability
    for tag in arch_list:
        number = _arch_number(tag)
        if number is None:
            continue
        if tag.startswith("sm_") and number[0] == major and number[1] <= minor:
            return True
        if tag.startswith("compute_") and number <= (major, minor):
            return True
    return False


def tiny_cuda_op(device: str = "cuda") -> None:
    """A matmul and a convolution on the GPU, synchronised: raises where kernels are missing."""
    x = torch.arange(16.0, device=device).reshape(1, 1, 4, 4)
    y = torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3, device=device)) @ torch.ones(2, 2, device=device)
    torch.cuda.synchronize()
    if not torch.isfinite(y).all().item():
        raise RuntimeError("the tiny CUDA test gave non-finite numbers")


def probe_gpu() -> GpuInfo | None:
    """Device 0 as torch sees it (None without CUDA); runs :func:`tiny_cuda_op` only when the arch fits."""
    if not torch.cuda.is_available():
        return None
    capability = tuple(torch.cuda.get_device_capability(0))
    arch_list = tuple(torch.cuda.get_arch_list())
    op_error = None
    if arch_supported(capability, arch_list):
        try:
            tiny_cuda_op()
        except Exception as exc:  # noqa: BLE001 - any failure here means the GPU is unusable
            op_error = f"{type(exc).__name__}: {exc}"
    return GpuInfo(name=torch.cuda.get_device_name(0), capability=capability, arch_list=arch_list,
                   op_error=op_error, count=torch.cuda.device_count())


def gpu_problem(gpu: GpuInfo) -> str | None:
    """Why this GPU cannot run the pipeline, or None when it can."""
    if not arch_supported(gpu.capability, gpu.arch_list):
        return (f"{gpu.name} has compute capability {gpu.capability[0]}.{gpu.capability[1]} ({gpu.sm}) but this torch "
                f"{torch.__version__} has kernels only for {' '.join(gpu.arch_list) or 'no GPU'}")
    if gpu.op_error:
        return f"a tiny CUDA operation failed on {gpu.name}: {gpu.op_error}"
    return None


@dataclass(kw_only=True)
class PreflightReport:
    requested: str  # the device setting
    device: str  # what the run will use: "cuda" or "cpu"
    versions: dict[str, str] = field(default_factory=dict)
    import_errors: dict[str, str] = field(default_factory=dict)
    gpu: GpuInfo | None = None
    gpu_problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.import_errors

    def raise_for_errors(self) -> None:
        if self.import_errors:
            raise PreflightError(
                "pre-flight: cannot import " + "; ".join(f"{m} ({e})" for m, e in self.import_errors.items())
                + ". Attach the imc-wheels dataset and install it (the notebook's install cell: pip install "
                  "--no-index --find-links <imc-wheels> -r requirements.txt)")

    def format(self) -> str:
        lines = ["pre-flight:"]
        lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        if self.gpu is None:
            lines.append("  gpu: none (torch.cuda.is_available() is False)")
        else:
            lines.append(f"  gpu: {self.gpu.count} x {self.gpu.name}, {self.gpu.sm}; torch arch list "
                         f"{' '.join(self.gpu.arch_list)}; {'UNUSABLE' if self.gpu_problem else 'usable'}")
        lines.append(f"  device: {self.requested} -> {self.device}")
        lines += [f"  ERROR import {m}: {e}" for m, e in self.import_errors.items()]
        lines += [f"  WARNING {w}" for w in self.warnings]
        return "\n".join(lines)


def module_versions(modules: tuple[str, ...] = REQUIRED_MODULES) -> tuple[dict[str, str], dict[str, str]]:
    """(versions, import errors) of python, torch and ``modules``."""
    from . import __version__

    versions = {"imc": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "torch.cuda": str(torch.version.cuda)}
    errors = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken compiled extension
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        versions[name] = str(getattr(module, "__version__", "?"))
    return versions, errors


_warned: set[str] = set()  # each fallback message once per process


def _warn_once(message: str) -> None:
    if message in _warned:
        return
    _warned.add(message)
    banner = "!" * 100
    log.warning("\n%s\n%s\n%s", banner, message, banner)
    warnings.warn(message, UnusableGpuWarning, stacklevel=3)


def preflight(device_setting: str = "auto", *, probe: Callable[[], GpuInfo | None] = probe_gpu,
              modules: tuple[str, ...] = REQUIRED_MODULES) -> PreflightReport:
    """Check versions, imports and the GPU; decide the device (see :func:`resolve_device`)."""
    try:
        setting = DeviceSetting(str(device_setting).split(":")[0])
    except ValueError:
        raise PreflightError(f"device={device_setting!r}: use auto, cpu, cuda or cuda:N") from None
    versions, import_errors = module_versions(modules)
    gpu = probe() if setting is not DeviceSetting.CPU else None
    problem = gpu_problem(gpu) if gpu is not None else None
    report = PreflightReport(requested=str(device_setting), device="cpu", versions=versions, import_errors=import_errors,
                             gpu=gpu, gpu_problem=problem)
    if setting is DeviceSetting.CPU:
        return report
    if gpu is not None and problem is None:
        report.device = str(device_setting) if setting is DeviceSetting.CUDA else "cuda"
    elif setting is DeviceSetting.CUDA:
        raise PreflightError(f"device=cuda but {problem or 'CUDA is not available'}; set device=auto (CPU fallback) "
                             "or device=cpu, or use a GPU this torch supports (Kaggle: GPU T4 x2)")
    elif problem is not None:
        message = (f"GPU UNUSABLE, RUNNING ON CPU (much slower): {problem}. Fix: choose another accelerator "
                   "(Kaggle: GPU T4 x2, not P100) or set device=cpu to silence this warning.")
        report.warnings.append(message)
        _warn_once(message)
    return report


def resolve_device(setting: str = "auto", *, probe: Callable[[], GpuInfo | None] = probe_gpu) -> torch.device:
    """The device a run uses: ``cpu``; ``cuda`` (an error when the GPU cannot run); ``auto``: CUDA when
    the GPU can run, else CPU with one loud warning."""
    report = preflight(setting, probe=probe, modules=())
    return torch.device(report.device)
