"""The package's layering: imports point down, never around in a circle.

Every ``import``/``from ... import`` in ``bnnc/`` counts — at module level, inside functions, and
under ``if TYPE_CHECKING:`` — so a cycle can't hide behind a late import. Importing ``a.b.c`` from
outside the package ``a.b`` also runs ``a/b/__init__.py`` first, so that counts as an import of
``a.b`` too. The root ``bnnc/__init__.py`` is the public facade: it may name every module (lazily),
and no module of the package may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "bnnc"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the bnnc modules it imports (see the module docstring for what counts)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names)
        edges: set[str] = set()
        for target in targets:
            while target and target not in files:  # `import bnnc.x.y` of a name inside a module
                target = target.rpartition(".")[0]
            if not target.startswith("bnnc") or target == name:
                continue
            edges.add(target)
            parent = target.rpartition(".")[0]
            while parent.count(".") >= 1 and not (name + ".").startswith(parent + "."):
                edges.add(parent)   # a subpackage's __init__ runs before its module
                parent = parent.rpartition(".")[0]
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (as the list of modules around it), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_bnnc_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "bnnc.loading" in graph and "bnnc.checkpoint" in graph["bnnc.loading"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_module_imports_the_package_facade() -> None:
    users = sorted(name for name, edges in import_graph().items() if "bnnc" in edges and name != "bnnc.__main__")
    assert users == [], f"these modules import the root package (its names are lazy re-exports): {users}"


@pytest.mark.parametrize("late", [True, False])
def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path: Path, late: bool) -> None:
    """The detector itself can fail: a cycle through a function-level (or a package __init__) import."""
    pkg = tmp_path / "bnnc"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from bnnc.sub.b import f\n")
    (pkg / "sub" / "__init__.py").write_text("" if late else "from bnnc.sub.c import g\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from bnnc.a import x\n" if late else "def f():\n    pass\n")
    (pkg / "sub" / "c.py").write_text("from bnnc import a\n")
    cycle = find_cycle(import_graph(pkg))
    assert cycle is not None and "bnnc.a" in cycle


def test_the_readme_module_map_names_every_module() -> None:
    """The README's module map (the Development section) is kept true: every module of the package is in it."""
    readme = (ROOT.parent / "README.md").read_text()
    section = readme[readme.index("## Development"):]
    block = section[section.index("```text"):section.index("```", section.index("```text") + 7)]
    missing = [str(p.relative_to(ROOT)) for p in sorted(ROOT.rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and p.name not in block]
    assert missing == [], f"modules missing from the README's module map: {missing}"
