"""On-disk cache of built indexes, keyed by what the index depends on, verified on every load.

An entry is a folder `<root>/<kind>-<catalog hash>-<settings hash>/` holding the index files and a
`manifest.json` with the catalog hash, the settings and the sha256 of every file. Only settings
that change the index belong in its key; search-time settings (k, threads) do not.

- Builds go to a temporary folder beside the entry and are renamed into place in one step, so a
  reader never sees half an index. When two processes build the same entry at once, the first
  rename wins and the other process uses the winner's entry.
- A load re-hashes the files; a truncated, corrupt or mismatched entry is reported with a
  warning naming the folder, set aside and rebuilt.

Example:
    >>> def build(folder):                     # writes the index files into `folder`
    ...     (folder / "vectors.npy").write_bytes(b"...")
    >>> path = cached_index("demo", catalog, {"dim": 3}, build)   # doctest: +SKIP
    >>> cached_index("demo", catalog, {"dim": 3}, build) == path  # loaded, not rebuilt  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rec_rl.cache import build_atomically, cache_root
from rec_rl.data.catalog import Catalog

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STALE_BUILD_SECONDS = 24 * 3600  # a temporary build folder this old belongs to a crashed build
_CHUNK = 1 << 20


def settings_hash(settings: dict) -> str:
    """A stable hash of JSON-able settings (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(kind: str, catalog: Catalog, settings: dict, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the index of `kind` over `catalog` built with `settings` is cached."""
    return cache_root(cache_dir) / f"{kind}-{catalog.content_hash[:16]}-{settings_hash(settings)[:16]}"


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (the manifest excluded), keyed by relative POSIX path."""
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == MANIFEST:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        hashes[relative] = digest.hexdigest()
    return hashes


def verify(folder: Path, catalog: Catalog, settings: dict) -> str | None:
    """None if `folder` holds a complete index for `catalog` and `settings`, else what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest.json"
    except (OSError, ValueError) as error:
        return f"unreadable manifest.json ({error})"
    if not isinstance(manifest, dict):
        return "manifest.json is not an object"
    if manifest.get("catalog_hash") != catalog.content_hash:
        return "built for a different catalog"
    if manifest.get("settings_hash") != settings_hash(settings):
        return "built with different settings"
    expected, found = manifest.get("files") or {}, file_hashes(folder)
    if not expected:
        return "manifest lists no files"
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            return f"{name} is missing"
        if name not in expected:
            return f"{name} is not in the manifest"
        if found[name] != expected[name]:
            return f"{name} does not match its content hash (truncated or corrupt)"
    return None


def _set_aside(folder: Path) -> None:
    """Move a bad entry out of the way (atomically) and delete it; another process may race us."""
    trash = folder.with_name(f".{folder.name}.bad-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(trash)
    except FileNotFoundError:
        return  # another process already moved it
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_builds(path: Path) -> None:
    """Delete temporary folders of builds of `path` that crashed more than a day ago."""
    for folder in path.parent.glob(f".{path.name}.*"):
        try:
            if time.time() - folder.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:
            pass  # another process removed it first


def _build_entry(path: Path, kind: str, catalog: Catalog, settings: dict,
                 build: Callable[[Path], None]) -> None:
    """Build the index with its manifest into `path`, atomically."""
    _remove_stale_builds(path)

    def build_with_manifest(folder: Path) -> None:
        started = time.perf_counter()
        build(folder)
        manifest = {"kind": kind, "catalog_hash": catalog.content_hash, "catalog_size": len(catalog),
                    "settings": settings, "settings_hash": settings_hash(settings),
                    "build_seconds": round(time.perf_counter() - started, 3), "files": file_hashes(folder)}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))

    build_atomically(path, build_with_manifest)


def cached_index(kind: str, catalog: Catalog, settings: dict, build: Callable[[Path], None],
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a verified index of `kind` over `catalog`, building it with `build` if needed.

    `build(folder)` writes the index files into the empty `folder`. `settings` must hold exactly
    what changes the index (and a format version), as JSON-able values.
    """
    path = entry_path(kind, catalog, settings, cache_dir)
    for attempt in range(3):
        if path.exists():
            problem = verify(path, catalog, settings)
            if problem is None:
                return path
            logger.warning("index cache entry %s is invalid (%s); rebuilding it", path, problem)
            _set_aside(path)
        else:
            logger.info("building %s index of %d items in %s", kind, len(catalog), path)
        _build_entry(path, kind, catalog, settings, build)
    problem = verify(path, catalog, settings)
    if problem is not None:
        raise RuntimeError(f"index cache entry {path} is still invalid after rebuilding: {problem}")
    return path
