"""The package's shape: sub-packages by concept, imports that point one way, no cycle.

The import graph is read with `ast` from every module of `hlp`, including imports inside
functions, so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import hlp

PACKAGE = Path(hlp.__file__).parent
# Each part may import only parts of a lower rank (and itself): the order of hlp/__init__.py.
RANK = {"models": 0, "interrupts": 0, "storage": 1, "tracking": 1, "plots": 1, "cluster": 1, "config": 2, "data": 3, "placement": 3,
        "evaluate": 4, "extract": 5, "train": 6, "sweep": 7, "predict": 7, "reproduce": 7, "cli": 8}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(modules: dict[str, Path]) -> dict[str, list[tuple[str, int, bool]]]:
    """module -> [(imported hlp module, line, at module top)]."""
    graph: dict[str, list[tuple[str, int, bool]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        top = {id(node) for node in tree.body}
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                assert not isinstance(node, ast.ImportFrom), f"{path}:{node.lineno}: relative import"
                continue
            for target in targets:
                found = _resolve(target, modules) if target.split(".")[0] == "hlp" else None
                if found and found != name and found != "hlp":
                    edges.append((found, node.lineno, id(node) in top))
        graph[name] = edges
    return graph


def _part(module: str) -> str:
    return module.split(".")[1]


def test_the_import_graph_has_no_cycle():
    graph = {m: {t for t, _, _ in edges} for m, edges in _imports(_modules()).items()}
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path[path.index(nxt):], nxt])
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_imports_point_from_commands_down_to_models():
    wrong = [f"{m} imports {t} (line {line})" for m, edges in _imports(_modules()).items() if m != "hlp"
             for t, line, _ in edges if _part(m) != _part(t) and RANK[_part(t)] >= RANK[_part(m)]]
    assert not wrong, "\n".join(wrong)


def test_every_part_is_ranked_and_no_folder_is_a_long_list():
    modules = _modules()
    assert {_part(m) for m in modules if m != "hlp"} == set(RANK)
    per_folder = Counter(path.parent for path in modules.values() if path.name != "__init__.py")
    assert max(per_folder.values()) <= 15, per_folder


def test_deferred_imports_of_hlp_modules_are_few():
    """Outside the CLI (which checks a config before torch, Ray and MLflow load), hlp modules are
    imported at the top; each deferred one carries its reason on the line above."""
    modules = _modules()
    deferred = [(m, t, line) for m, edges in _imports(modules).items() if m != "hlp.cli"
                for t, line, at_top in edges if not at_top]
    assert len(deferred) <= 20, deferred
    for module, target, line in deferred:
        lines = modules[module].read_text().splitlines()
        above = line - 2
        while lines[above].strip().startswith(("from ", "import ")):  # a group shares one reason
            above -= 1
        assert lines[above].strip().startswith("#") or "#" in lines[line - 1], \
            f"{module}:{line} imports {target} inside a function without a reason"


def test_every_sub_package_says_what_it_holds_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc and ("May import" in doc or init.parent.name == "models"), init


def test_the_config_loads_without_torch_ray_or_mlflow():
    """`hlp` reports a config error in a moment: the config and the settings it takes from
    hlp.models import none of the heavy libraries."""
    code = "import sys, hlp.config; print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
