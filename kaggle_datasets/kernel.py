"""``kernel-metadata.json`` for ``kaggle kernels push``: the submission notebook with its inputs.

The fields are the Kaggle CLI's (kaggle-api ``docs/kernels_metadata.md``): ``id`` ``<owner>/<slug>``,
``title`` (Kaggle links it to the slug: the slug is the title lowercased with dashes for spaces),
``code_file`` (relative to the metadata file), ``language``, ``kernel_type``, ``is_private``,
``enable_gpu``, ``enable_internet``, ``dataset_sources``, ``competition_sources``,
``kernel_sources``, ``model_sources``; plus ``machine_shape`` (the accelerator; the CLI's
``kernels pull`` writes it). For this submission :func:`submission_problems` also requires what
the competition and the pipeline need: internet off (code competitions refuse it), a GPU, and the
T4 (``NvidiaTeslaT4``, Kaggle's "GPU T4 x2"): the P100 (sm_60) has no kernels in current torch builds.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from imc.io_utils import atomic_path, atomic_write_json

from .metadata import OWNER_RE, MetadataError, read_json_file

KERNEL_METADATA_FILE = "kernel-metadata.json"
COMPETITION = "image-matching-challenge-2023"
MACHINE_SHAPE = "NvidiaTeslaT4"
KERNEL_SLUG = "imc-submission"
KERNEL_TITLE = "imc submission"
LANGUAGES = {"python", "r", "rmarkdown"}
KERNEL_TYPES = {"script": (".py", ".r", ".rmd"), "notebook": (".ipynb",)}
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{3,49}$")
LIST_FIELDS = ("dataset_sources", "competition_sources", "kernel_sources", "model_sources")
BOOL_FIELDS = ("is_private", "enable_gpu", "enable_internet")


def title_slug(title: str) -> str:
    """The slug Kaggle derives from a kernel title."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "", title.strip().lower().replace(" ", "-"))).strip("-")


def make_kernel_metadata(*, owner: str, datasets: list[str], competition: str = COMPETITION,
                         code_file: str = "submission.ipynb", slug: str = KERNEL_SLUG, title: str = KERNEL_TITLE,
                         machine_shape: str = MACHINE_SHAPE, private: bool = True) -> dict[str, Any]:
    return {"id": f"{owner}/{slug}", "title": title, "code_file": code_file, "language": "python",
            "kernel_type": "notebook", "is_private": private, "enable_gpu": True, "enable_internet": False,
            "machine_shape": machine_shape, "dataset_sources": [f"{owner}/{d}" for d in datasets],
            "competition_sources": [competition], "kernel_sources": [], "model_sources": []}


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):  # the CLI's documented example uses strings
        return value.lower() == "true"
    return None


def kernel_metadata_problems(meta: Any, folder: Path | None = None) -> list[str]:
    """Every reason ``kaggle kernels push`` would reject ``meta`` (``folder``: where ``code_file`` must exist)."""
    if not isinstance(meta, dict):
        return [f"top level must be a JSON object, got {type(meta).__name__}"]
    problems = []
    ident = meta.get("id")
    owner, sep, slug = ident.partition("/") if isinstance(ident, str) else ("", "", "")
    if not sep or not OWNER_RE.match(owner) or not SLUG_RE.match(slug):
        problems.append(f"id must be '<owner>/<slug>' with a slug of 4-50 characters [a-z0-9-], got {ident!r}")
    title = meta.get("title")
    if not isinstance(title, str) or not 5 <= len(title) <= 50:
        problems.append(f"title must be a string of 5-50 characters, got {title!r}")
    elif sep and title_slug(title) != slug:
        problems.append(f"title {title!r} gives the slug {title_slug(title)!r}, but the id's slug is {slug!r} "
                        "(Kaggle links them: change one)")
    if meta.get("language") not in LANGUAGES:
        problems.append(f"language must be one of {sorted(LANGUAGES)}, got {meta.get('language')!r}")
    kernel_type, code_file = meta.get("kernel_type"), meta.get("code_file")
    if kernel_type not in KERNEL_TYPES:
        problems.append(f"kernel_type must be one of {sorted(KERNEL_TYPES)}, got {kernel_type!r}")
    if not isinstance(code_file, str) or not code_file:
        problems.append(f"code_file must name the kernel's source, got {code_file!r}")
    else:
        if kernel_type in KERNEL_TYPES and not code_file.lower().endswith(KERNEL_TYPES[kernel_type]):
            problems.append(f"code_file {code_file!r} does not fit kernel_type {kernel_type!r}")
        if folder is not None and not (folder / code_file).is_file():
            problems.append(f"code_file {code_file!r} not found next to {KERNEL_METADATA_FILE} in {folder}")
    for name in BOOL_FIELDS:
        if name in meta and _as_bool(meta[name]) is None:
            problems.append(f"{name} must be true or false, got {meta[name]!r}")
    for name in LIST_FIELDS:
        value = meta.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.append(f"{name} must be a list of strings, got {value!r}")
    for source in meta.get("dataset_sources", []) if isinstance(meta.get("dataset_sources"), list) else []:
        if not isinstance(source, str) or source.count("/") != 1:
            problems.append(f"dataset source {source!r} must be '<owner>/<dataset-slug>'")
    if "machine_shape" in meta and (not isinstance(meta["machine_shape"], str) or not meta["machine_shape"]):
        problems.append(f"machine_shape must be a non-empty string, got {meta['machine_shape']!r}")
    return problems


def submission_problems(meta: dict[str, Any], *, competition: str = COMPETITION) -> list[str]:
    """What this competition and the pipeline need beyond a valid file."""
    problems = []
    if _as_bool(meta.get("enable_internet")) is not False:
        problems.append("enable_internet must be false: code competitions refuse notebooks with internet on")
    if _as_bool(meta.get("enable_gpu")) is not True:
        problems.append("enable_gpu must be true (the pipeline runs hours on CPU)")
    if meta.get("machine_shape") != MACHINE_SHAPE:
        problems.append(f"machine_shape must be {MACHINE_SHAPE!r} (GPU T4 x2), got {meta.get('machine_shape')!r}: "
                        "the P100 (sm_60) has no kernels in current torch builds")
    if competition not in (meta.get("competition_sources") or []):
        problems.append(f"competition_sources must include {competition!r}")
    return problems


def validate_kernel_metadata(path: str | Path, *, competition: str = COMPETITION) -> dict[str, Any]:
    """Read and check a ``kernel-metadata.json`` (or the folder holding one); return its content."""
    path, meta = read_json_file(path, KERNEL_METADATA_FILE)
    problems = kernel_metadata_problems(meta, path.parent)
    problems += submission_problems(meta, competition=competition) if not problems else []
    if problems:
        raise MetadataError(f"{path}: " + "; ".join(problems))
    return meta


def write_kernel_folder(folder: Path, *, notebook: Path, owner: str, datasets: list[str],
                        competition: str = COMPETITION) -> Path:
    """``folder/submission.ipynb`` + a validated ``kernel-metadata.json``: ``kaggle kernels push -p folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / notebook.name) as tmp:
        shutil.copyfile(notebook, tmp)
    meta = make_kernel_metadata(owner=owner, datasets=datasets, competition=competition, code_file=notebook.name)
    path = atomic_write_json(folder / KERNEL_METADATA_FILE, meta)
    validate_kernel_metadata(path, competition=competition)
    return path
