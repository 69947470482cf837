"""``dataset-metadata.json`` for ``kaggle datasets create``: build it, and check it before upload.

The rules are the Kaggle CLI's documented ones (kaggle-cli ``docs/datasets_metadata.md``): title
6-50 characters, id ``<owner>/<slug>`` with a 3-50 character slug, exactly one license whose
``name`` is one of :data:`KAGGLE_LICENSES`, optional subtitle 20-80 characters. Checking here
turns a rejected upload (after minutes of zipping) into an error at build time.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from imc.io_utils import atomic_write_json

METADATA_FILE = "dataset-metadata.json"
USERNAME_ENV = "KAGGLE_USERNAME"
USERNAME_PLACEHOLDER = "your-kaggle-username"

# Every license name the Kaggle CLI documents for datasets (case as documented).
KAGGLE_LICENSES = frozenset({
    "CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
    "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
    "CC-BY-3.0-IGO", "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0",
    "CDLA-Sharing-1.0", "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0",
    "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0", "GPL-3.0",
})
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SLUG_RE = re.compile(r"^[a-z0-9-]{3,50}$")


class MetadataError(ValueError):
    """A dataset-metadata.json that ``kaggle datasets create`` would reject."""


def kaggle_username() -> str:
    return os.environ.get(USERNAME_ENV) or USERNAME_PLACEHOLDER


def make_metadata(*, slug: str, title: str, license_name: str, subtitle: str | None = None,
                  description: str | None = None, owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"title": title, "id": f"{owner or kaggle_username()}/{slug}",
                            "licenses": [{"name": license_name}]}
    if subtitle is not None:
        meta["subtitle"] = subtitle
    if description is not None:
        meta["description"] = description
    return meta


def metadata_problems(meta: Any) -> list[str]:
    """Every reason ``meta`` would be rejected (empty list: valid)."""
    if not isinstance(meta, dict):
        return [f"top level must be a JSON object, got {type(meta).__name__}"]
    problems = []
    title = meta.get("title")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        problems.append(f"title must be a string of 6-50 characters, got {title!r}")
    subtitle = meta.get("subtitle")
    if subtitle is not None and (not isinstance(subtitle, str) or not 20 <= len(subtitle) <= 80):
        problems.append(f"subtitle (optional) must be a string of 20-80 characters, got {subtitle!r}")
    ident = meta.get("id")
    owner, sep, slug = ident.partition("/") if isinstance(ident, str) else ("", "", "")
    if not sep or not OWNER_RE.match(owner) or not SLUG_RE.match(slug):
        problems.append(f"id must be '<owner>/<slug>' with a slug of 3-50 characters [a-z0-9-], got {ident!r}")
    licenses = meta.get("licenses")
    if not isinstance(licenses, list) or len(licenses) != 1:
        problems.append(f"licenses must be a list with exactly one entry, got {licenses!r}")
    else:
        name = licenses[0].get("name") if isinstance(licenses[0], dict) else None
        if name not in KAGGLE_LICENSES:
            problems.append(f"license name {name!r} is not one Kaggle knows (e.g. 'apache-2.0', 'CC0-1.0', 'other')")
    return problems


def validate_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a ``dataset-metadata.json`` (or the folder holding one); return its content.

    Raises :class:`MetadataError` naming the file and every problem found.
    """
    path, meta = read_json_file(path, METADATA_FILE)
    problems = metadata_problems(meta)
    if problems:
        raise MetadataError(f"{path}: " + "; ".join(problems))
    return meta


def write_metadata(folder: Path, meta: dict[str, Any]) -> Path:
    """Write ``folder/dataset-metadata.json`` atomically, then validate what was written."""
    path = atomic_write_json(folder / METADATA_FILE, meta)
    validate_metadata(path)
    return path


def read_json_file(path: str | Path, filename: str) -> tuple[Path, dict[str, Any]]:
    """``path`` (or ``path/filename`` when it is a folder) and its JSON content; ``MetadataError`` names
    the file when it is missing or not JSON."""
    path = Path(path)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise MetadataError(f"{path}: not found")
    try:
        return path, json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path}: not valid JSON ({exc})") from exc
