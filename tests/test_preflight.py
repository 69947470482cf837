"""Pre-flight: an unusable GPU means CPU with one loud warning, never a failure per scene.

There is no GPU here: the GPU is presented through the injectable probe with the capability and
arch list a real card / torch build reports (P100: sm_60; torch cu128 wheels: sm_70 and up).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from imc import preflight as pf

TORCH_CU128_ARCHS = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120")
P100 = pf.GpuInfo(name="Tesla P100-PCIE-16GB", capability=(6, 0), arch_list=TORCH_CU128_ARCHS)
T4 = pf.GpuInfo(name="Tesla T4", capability=(7, 5), arch_list=TORCH_CU128_ARCHS, count=2)


@pytest.fixture(autouse=True)
def fresh_warnings():
    pf._warned.clear()
    yield
    pf._warned.clear()


@pytest.mark.parametrize("capability, archs, ok", [
    ((6, 0), TORCH_CU128_ARCHS, False),          # P100 on a cu128 build
    ((7, 5), TORCH_CU128_ARCHS, True),           # T4
    ((8, 9), ("sm_80", "sm_86"), True),          # same major, higher minor: binary compatible
    ((8, 0), ("sm_86",), False),                 # lower minor: not
    ((9, 0), ("sm_80", "compute_80"), True),     # PTX compiles forward
    ((7, 5), ("sm_80", "compute_80"), False),    # PTX never backward
    ((12, 0), ("sm_90",), False),                # new major without PTX
    ((6, 0), (), False),
])
def test_arch_supported(capability, archs, ok):
    assert pf.arch_supported(capability, archs) is ok


def test_unusable_gpu_falls_back_to_cpu_with_one_loud_warning(caplog):
    with pytest.warns(pf.UnusableGpuWarning, match="GPU UNUSABLE, RUNNING ON CPU.*sm_60.*T4") as record:
        report = pf.preflight("auto", probe=lambda: P100)
        assert pf.resolve_device("auto", probe=lambda: P100) == torch.device("cpu")
        assert pf.resolve_device("auto", probe=lambda: P100) == torch.device("cpu")
    assert len(record) == 1  # once per process, however often the device is resolved
    assert report.device == "cpu" and report.gpu_problem and "sm_60" in report.gpu_problem
    assert "UNUSABLE" in report.format() and "auto -> cpu" in report.format()
    assert sum("GPU UNUSABLE" in r.message for r in caplog.records) == 1


def test_failing_cuda_op_is_unusable_too():
    broken = pf.GpuInfo(name="Tesla T4", capability=(7, 5), arch_list=TORCH_CU128_ARCHS,
                        op_error="RuntimeError: CUDA error: no kernel image is available for execution on the device")
    with pytest.warns(pf.UnusableGpuWarning, match="no kernel image"):
        assert pf.resolve_device("auto", probe=lambda: broken).type == "cpu"


def test_usable_gpu_and_explicit_settings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = pf.preflight("auto", probe=lambda: T4)
        assert report.device == "cuda" and report.gpu_problem is None and not report.warnings
        assert "2 x Tesla T4, sm_75" in report.format()
        assert pf.preflight("cuda:1", probe=lambda: T4).device == "cuda:1"
        assert pf.resolve_device("cpu", probe=lambda: P100) == torch.device("cpu")  # no probe, no warning
        assert pf.resolve_device("auto", probe=lambda: None) == torch.device("cpu")  # no GPU: quietly CPU
    with pytest.raises(pf.PreflightError, match="device=cuda but Tesla P100.*sm_60.*device=auto"):
        pf.resolve_device("cuda", probe=lambda: P100)
    with pytest.raises(pf.PreflightError, match="CUDA is not available"):
        pf.resolve_device("cuda", probe=lambda: None)
    with pytest.raises(pf.PreflightError, match="use auto, cpu, cuda"):
        pf.resolve_device("gpu")


def test_versions_imports_and_the_real_probe():
    report = pf.preflight("auto")  # the real probe: CPU here, CUDA where there is one
    assert report.ok and {"torch", "kornia", "pycolmap", "python", "imc"} <= set(report.versions)
    assert report.device == ("cuda" if report.gpu and not report.gpu_problem else "cpu")
    missing = pf.preflight("cpu", modules=("kornia", "no_such_module_xyz"))
    assert not missing.ok and "no_such_module_xyz" in missing.import_errors
    with pytest.raises(pf.PreflightError, match="no_such_module_xyz.*imc-wheels"):
        missing.raise_for_errors()


@pytest.mark.gpu
def test_real_gpu_runs_the_tiny_op():
    gpu = pf.probe_gpu()
    assert gpu is not None and gpu.op_error is None and pf.gpu_problem(gpu) is None
