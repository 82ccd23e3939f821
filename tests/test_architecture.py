"""The import structure: no circle, nothing imports the training orchestrator but the CLI, and every import
points down the layers that docs/ARCHITECTURE.md draws. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("rec_rl", "rewards", "retrievers")

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS = [
    ("base", ["rec_rl.fields", "rec_rl.text", "rec_rl.cache", "rec_rl.prompts", "rec_rl.tracking", "rec_rl.data",
              "rewards.parsing", "rewards.metrics", "rewards.config"]),
    ("config", ["rec_rl.config"]),
    ("shared machinery", ["rec_rl.index_cache", "rec_rl.embeddings", "rec_rl.codes", "rec_rl.policy"]),
    ("retrievers", ["retrievers"]),
    ("rewards", ["rewards.functions", "rewards"]),
    ("evaluation", ["rec_rl.evaluation"]),
    ("training", ["rec_rl.training", "rec_rl.ppo"]),
    ("orchestrators", ["rec_rl.training.run", "rec_rl.experiments"]),
    ("command line", ["rec_rl.cli", "rec_rl"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in it (`from a import b` names a.b when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= named & modules  # `from package import module` imports that module ...
            if named - modules:
                found.add(node.module)  # ... other names come from the module (or package face) itself
    return {name for name in found if name in modules}


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports(path, set(modules)) - {name} for name, path in modules.items()}


def layer_of(module: str) -> int:
    """The layer whose most specific prefix names `module`."""
    best = max(((len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md"
    return best[1]


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (depth-first search, ignoring a package's own __init__ re-exports)."""
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if node.startswith(nxt + "."):  # a module importing its own package's face is not a circle of code
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_faces(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges with each package `__init__` replaced by what it re-exports, so `from rewards import X` is
    judged by the module X lives in."""
    resolved = {}
    for module, targets in edges.items():
        out = set()
        for target in targets:
            if target in PACKAGES or (ROOT / target.replace(".", "/") / "__init__.py").exists():
                out |= {t for t in edges.get(target, ()) if t.startswith(target + ".")} or {target}
            else:
                out.add(target)
        resolved[module] = out
    return resolved


def test_no_import_circle():
    edges = package_faces(graph())
    assert cycle(edges) is None, f"import circle: {' -> '.join(cycle(edges))}"


def test_only_the_cli_imports_the_training_orchestrator():
    importers = sorted(m for m, targets in graph().items() if "rec_rl.training.run" in targets)
    assert importers == ["rec_rl.cli"], importers


def test_imports_point_down_the_layers():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in package_faces(graph()).items() for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert not upward, "imports running back up:\n" + "\n".join(upward)


def test_the_checks_catch_what_they_look_for():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("rec_rl.data.sequential") == 0 and layer_of("rewards.functions") > layer_of("retrievers.base")


def test_architecture_doc_names_only_what_exists():
    """docs/ARCHITECTURE.md stays true: every module or folder it names exists, and every layer it draws is LAYERS'."""
    import re

    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:rec_rl|rewards|retrievers|tests)/[\w/]*(?:\.py)?)`", text))
    assert len(named) > 20
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"docs/ARCHITECTURE.md names what is not there: {missing}"
    for name, prefixes in LAYERS[:-1]:
        assert f"| {name} |" in text, f"layer {name!r} is not in docs/ARCHITECTURE.md's table"
        for prefix in prefixes:
            path = prefix.replace(".", "/")
            assert f"`{path}.py`" in text or f"`{path}/`" in text, f"{prefix} missing from the {name} layer's row"
    # The names the doc uses for the plug-in points exist in the code.
    assert "RETRIEVER_BACKENDS: dict[str, Backend]" in (ROOT / "rec_rl" / "config.py").read_text()
    routes = (ROOT / "rec_rl" / "training" / "routes.py").read_text()
    assert all(f"class {cls}" in routes for cls in ("Route", "ImplicitRoute", "ExplicitRoute")) and "ROUTES" in routes


def test_a_backend_is_one_registry_entry_and_its_module(tiny_sequential, monkeypatch):
    """The worked example of docs/ARCHITECTURE.md: a new text backend, registered once, is usable by config alone
    and trained by the implicit route."""
    import sys
    import types

    from rec_rl.config import RETRIEVER_BACKENDS, Backend, load_config
    from rec_rl.data import load_task
    from rec_rl.training.routes import ImplicitRoute, route_of
    from retrievers import build_retriever
    from retrievers.bm25 import Bm25sBM25

    module = types.ModuleType("tests_splade")
    module.build = lambda catalog, config, codes: Bm25sBM25(catalog, config)  # stands in for a real new module
    monkeypatch.setitem(sys.modules, "tests_splade", module)
    monkeypatch.setitem(RETRIEVER_BACKENDS, "splade", Backend("tests_splade", reads="text"))
    config = load_config(None, [f"data.path={tiny_sequential}", "retriever.backend=splade"])
    assert isinstance(route_of(config), ImplicitRoute)
    catalog = load_task(config.data).catalog
    assert build_retriever(config.retriever, catalog).search(["mario kart"], k=3).item_ids(catalog)[0][0] == "2"
