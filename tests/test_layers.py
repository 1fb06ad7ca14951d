"""Imports flow one way (cli -> scan/demo -> pipeline/eval -> outputs -> store -> core -> engines), with no circle.

Every import in ``stream/`` and ``engines/`` counts, function-level ones included: a lazy import is still a
dependency. The checker is tested on small made-up graphs too, so this test can fail.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (rank, group, module prefixes). A module may import its own group or any group of a lower rank; a group of
# the same rank (pipeline vs eval, scan vs demo) or a higher one is off limits.
LAYERS: list[tuple[int, str, tuple[str, ...]]] = [
    (0, "engines.util", ("engines.files", "engines.image", "engines.detections", "engines.align", "engines.aggregate",
                         "engines.profiles", "engines.pinned_source", "engines.native_stderr")),
    (1, "engines.backends", ("engines.backends",)),
    (2, "engines.models", ("engines.face_model", "engines.embedder", "engines.detector", "engines.dlib_convert",
                           "engines.model_store", "engines.facenet", "engines.facenet_convert", "engines.facenet_source",
                           "engines.fusion", "engines.blazeface", "engines.arcface")),
    (3, "engines.compose", ("engines.factory", "engines.analyzer")),
    (10, "core", ("stream.records", "stream.config", "stream.config_docs", "stream.media")),
    (11, "loaders", ("stream.loaders",)),
    (20, "store", ("stream.store",)),
    (30, "outputs", ("stream.outputs",)),
    (35, "preflight", ("stream.preflight",)),
    (40, "pipeline", ("stream.pipeline",)),
    (40, "eval", ("stream.eval",)),
    (50, "scan", ("stream.scan",)),
    (50, "demo", ("stream.demo",)),
    (55, "api", ("stream.api",)),
    (60, "cli", ("stream.cli",)),
]
PACKAGE_ROOTS = ("stream", "engines")


def project_modules() -> dict[str, Path]:
    out = {}
    for root in PACKAGE_ROOTS:
        for p in (REPO / root).rglob("*.py"):
            parts = list(p.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Project modules ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    found: set[str] = set()
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t.split(".")[0] in PACKAGE_ROOTS:
                found.add(t)
    return found


def layer_of(module: str) -> tuple[int, str]:
    for rank, group, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank, group
    if module in PACKAGE_ROOTS or module.count(".") == 1 and module.endswith("__main__"):
        return 999, module  # package roots: import nothing, imported by nothing
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and the README's code map")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        rank, group = layer_of(mod)
        for dep in deps:
            drank, dgroup = layer_of(dep)
            if dgroup != group and drank >= rank:
                bad.append(f"{mod} ({group}) imports {dep} ({dgroup})")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def project_graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {name: imports_of(path, name, set(mods)) for name, path in mods.items()}


def test_no_import_circles():
    assert cycles(project_graph()) == []


def test_imports_flow_one_way():
    assert upward_imports(project_graph()) == []


def test_every_module_is_in_a_layer():
    for mod in project_graph():
        layer_of(mod)


def test_the_checker_catches_circles_and_upward_imports():
    assert cycles({"stream.pipeline.stage": {"stream.pipeline.detect"}, "stream.pipeline.detect": {"stream.pipeline.stage"}}) \
        == [["stream.pipeline.detect", "stream.pipeline.stage"]]
    assert upward_imports({"stream.store.gallery": {"stream.cli.common"}}) == \
        ["stream.store.gallery (store) imports stream.cli.common (cli)"]
    assert upward_imports({"stream.eval.verify": {"stream.pipeline.tracker"}})  # siblings of one rank
    assert upward_imports({"stream.cli.photos": {"stream.store.gallery", "engines.analyzer"}}) == []


def test_lazy_imports_count(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from stream.cli.common import emit\n")
    assert imports_of(mod, "stream.store.m", {"stream.cli.common", "stream.store.m"}) == {"stream.cli.common"}
