"""Build ``.dev/``: what a lent GPU machine needs for ``tests/device/gpu_stages.sh``, under its 64 MiB transfer limit.

The device machine has PyTorch, h5py, OpenCV and pytest, but no kornia, pycolmap or weights, and ``../shared``
does not travel. This writes the kornia wheel, fp16 copies of the weights (cast back to fp32 there), the kyiv
photos re-encoded as JPEG q85 (same size in pixels), two Middlebury temple views for ``tests/test_gpu.py``, and
import stubs for pycolmap and kornia_rs (the GPU stages import neither's functions). About 61 MB.

    .venv/bin/python tests/device/prepare_carry.py            # then, with the device tool:
    run(command="bash tests/device/gpu_stages.sh", carry=[".dev"], timeout_s=240)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "real"
KYIV = "imc2023/train/urban/kyiv-puppet-theater/images"
WEIGHTS = ("aliked-n16.pth", "disk-depth-save.pth", "aliked_lightglue.pth", "disk_lightglue.pth")
STUB = 'def __getattr__(name):\n    if name.startswith("__"):\n        raise AttributeError(name)\n    return type(name, (), {})\n'


def cast(o, dtype: torch.dtype):
    """A state dict's floating-point tensors as ``dtype`` (fp16 to travel, fp32 again on the device machine)."""
    if torch.is_tensor(o):
        return o.to(dtype) if o.is_floating_point() else o
    return {k: cast(v, dtype) for k, v in o.items()} if isinstance(o, dict) else o


def restore(src: Path, dst: Path) -> None:
    """On the device machine: the carried fp16 weights of ``src`` as fp32 files in ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.pth")):
        torch.save(cast(torch.load(f, map_location="cpu", weights_only=False), torch.float32), dst / f.name)
    print("weights", sorted(p.name for p in dst.iterdir()))


def main() -> None:
    from imc.weights import resolve_weights

    dev = REPO / ".dev"
    shutil.rmtree(dev, ignore_errors=True)
    exclude = REPO / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if "/.dev/" not in (exclude.read_text() if exclude.exists() else ""):
        with exclude.open("a") as f:
            f.write("/.dev/\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dev / "whl"), "kornia==0.9.0"],
                   check=True)
    (dev / "w").mkdir(parents=True)
    for name in WEIGHTS:
        torch.save(cast(torch.load(resolve_weights(name), map_location="cpu", weights_only=False), torch.float16),
                   dev / "w" / name)
    for mod in ("pycolmap", "kornia_rs"):
        (dev / "stub" / mod).mkdir(parents=True)
        (dev / "stub" / mod / "__init__.py").write_text(STUB)
    out = dev / "shared" / "data" / "real"
    (out / KYIV).mkdir(parents=True)
    shutil.copy(SHARED / "imc2023/train/train_labels.csv", out / "imc2023/train")
    for path in sorted((SHARED / KYIV).iterdir()):
        cv2.imwrite(str(out / KYIV / path.name), cv2.imread(str(path)), [cv2.IMWRITE_JPEG_QUALITY, 85])
    (out / "middlebury/templeSparseRing").mkdir(parents=True)
    for i in (1, 2):
        shutil.copy(SHARED / f"middlebury/templeSparseRing/templeSR{i:04d}.png", out / "middlebury/templeSparseRing")
    size = sum(p.stat().st_size for p in dev.rglob("*") if p.is_file())
    print(f"{dev}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--restore"]:  # tests/device/gpu_stages.sh, on the device machine
        restore(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
