"""The package's import graph has no cycle, between modules or between packages, and each engine module imports alone.

Edges are read with ast from every module of git_theta/: imports at module level and inside functions (under
`if TYPE_CHECKING:` they are not run, so not edges). A function-level import that closes a cycle is allowed only
when listed in LAZY below with its reason: those are deferred on purpose (start-up time, or a heavy dependency),
and the list keeps new ones from hiding a cycle. A package is git_theta.X (a top-level module is its own).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "git_theta"

# (importer, imported) edges made inside a function on purpose; every one must exist and close a cycle.
LAZY = {
    # reading adapter_config.json belongs to side-loading, which imports the update plugins
    ("git_theta.updates.low_rank", "git_theta.sideload.lora_config"): "only when side-loading a LoRA file",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(name: str) -> dict[str, bool]:
    """Modules of git_theta that `name` imports -> True when only inside a function."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}

    def add(target: str, lazy: bool) -> None:
        if target in MODULES and target != name:
            found[target] = found.get(target, True) and lazy

    def visit(node: ast.AST, lazy: bool) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, lazy)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base, lazy)
        lazy = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(ast.parse(path.read_text()), False)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def package_of(name: str) -> str:
    return ".".join(name.split(".")[:2])


def edges(lazy_allowed: bool) -> dict[str, set[str]]:
    return {
        name: {target for target in targets if not (lazy_allowed and (name, target) in LAZY)}
        for name, targets in GRAPH.items()
    }


def test_no_cycle_between_modules() -> None:
    assert cycles(edges(lazy_allowed=True)) == []


def test_no_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for name, targets in edges(lazy_allowed=True).items():
        packages.setdefault(package_of(name), set()).update(
            package_of(target) for target in targets if package_of(target) != package_of(name)
        )
    assert cycles(packages) == []


def test_every_allowed_lazy_import_is_a_function_level_import_that_closes_a_cycle() -> None:
    for importer, imported in LAZY:
        assert GRAPH[importer].get(imported) is True, f"{importer} no longer imports {imported} in a function"
    packages: dict[str, set[str]] = {}
    for name, targets in edges(lazy_allowed=False).items():
        packages.setdefault(package_of(name), set()).update(package_of(t) for t in targets)
    for importer, imported in LAZY:
        back = cycles({**packages, package_of(importer): packages[package_of(importer)] | {package_of(imported)}})
        assert any(package_of(importer) in c and package_of(imported) in c for c in back), (importer, imported)


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


ENGINE = sorted(name for name in MODULES if package_of(name) in ("git_theta.update_engine", "git_theta.sideload"))


def test_each_update_module_imports_alone_in_a_fresh_interpreter() -> None:
    # One interpreter per module: an import that only works after another module was imported shows up here.
    script = "import importlib, sys; importlib.import_module(sys.argv[1])"
    for name in ENGINE:
        result = subprocess.run(
            [sys.executable, "-c", script, name], check=False, capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
