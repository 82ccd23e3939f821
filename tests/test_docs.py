"""The README cites only what the repository holds: every repo path it names is tracked in git."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Paths into the project's own folders; `runs/...` are what commands write, not what the repo ships.
CITED = re.compile(r"(?<![\w./-])((?:docs|bench|configs|scripts|rec_rl|rewards|retrievers|tests|\.ci)/[\w./*-]*[\w*])")


# Names that look like paths but are not files: logged metric keys.
NOT_PATHS = {"rewards/query_length/mean"}


def cited_paths(text: str) -> set[str]:
    """Repo paths named in `text`, trailing punctuation dropped.

    Example:
        >>> sorted(cited_paths("see `docs/runs/default/results.md`, and bench/step_cost.py."))
        ['bench/step_cost.py', 'docs/runs/default/results.md']
    """
    return {match.rstrip(".") for match in CITED.findall(text)} - NOT_PATHS


def tracked_files() -> set[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(listing.splitlines())


def is_tracked(path: str, files: set[str]) -> bool:
    """A tracked file, a folder holding tracked files, or a glob matching one."""
    if "*" in path:
        pattern = re.compile(re.escape(path).replace(r"\*", "[^/]*"))
        return any(pattern.fullmatch(f) for f in files)
    return path in files or any(f.startswith(path.rstrip("/") + "/") for f in files)


def test_every_path_the_readme_cites_is_tracked():
    files = tracked_files()
    cited = cited_paths((ROOT / "README.md").read_text())
    assert len(cited) > 20, "the README names the project's files"
    missing = sorted(path for path in cited if not is_tracked(path, files))
    assert not missing, f"README.md cites paths that are not in git: {missing}"


def test_the_check_catches_an_untracked_path():
    files = {"docs/runs/default/results.md", "bench/results/step_cost.json"}
    assert is_tracked("docs/runs/default", files) and is_tracked("bench/results/*.json", files)
    assert not is_tracked("docs/runs/implicit_long/results.md", files)
