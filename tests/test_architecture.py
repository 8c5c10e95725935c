"""Dependencies point down the data flow: no import cycles between the packages of `bot`.

The graph is read from the source with `ast` (nothing is imported). A node is a package of
`bot` (`bot.asr`, `bot.runtime`...) or a top-level module (`bot.config`, `bot.messages`...).
Every import counts, also one inside a function; only imports under `if TYPE_CHECKING:` do not
(they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

BOT = Path(__file__).resolve().parents[1] / "bot"


def _node(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _module_name(path: Path) -> str:
    parts = path.relative_to(BOT.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str) -> list[str]:
    """Absolute names of the modules `tree` imports when it runs."""
    found: list[str] = []
    package = module.split(".")

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + (1 if _is_package(module) else 0)]
                found.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.append(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_package(module: str) -> bool:
    return (BOT.parent / Path(*module.split(".")) / "__init__.py").exists()


def package_graph() -> dict[str, dict[str, set[str]]]:
    """node → imported node → the modules of the first node that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(BOT.rglob("*.py")):
        module = _module_name(path)
        source = _node(module)
        graph[source]  # every node appears, importing or not
        for name in _imports(ast.parse(path.read_text(encoding="utf-8")), module):
            if name.startswith("bot.") and _node(name) != source:
                graph[source][_node(name)].add(module)
    return graph


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    """One cycle of the graph as a path `a → b → ... → a`, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(graph: dict[str, dict[str, set[str]]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        for target in graph.get(node, {}):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _explain(graph: dict[str, dict[str, set[str]]], cycle: list[str]) -> str:
    steps = [f"{a} → {b} (in {', '.join(sorted(graph[a][b]))})" for a, b in zip(cycle, cycle[1:])]
    return "import cycle between packages:\n  " + "\n  ".join(steps)


def test_the_graph_reader_sees_a_cycle_and_the_imports_that_make_it() -> None:
    graph = {
        "bot.a": {"bot.b": {"bot.a.x"}},
        "bot.b": {"bot.c": {"bot.b.y"}},
        "bot.c": {"bot.a": {"bot.c.z"}},
    }
    assert find_cycle(graph) == ["bot.a", "bot.b", "bot.c", "bot.a"]
    assert "bot.c → bot.a (in bot.c.z)" in _explain(graph, ["bot.a", "bot.b", "bot.c", "bot.a"])
    del graph["bot.c"]["bot.a"]
    assert find_cycle(graph) is None


def test_relative_and_lazy_imports_count_but_type_checking_ones_do_not() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from .engine import Engine\n"
        "if TYPE_CHECKING:\n    from bot.config import Config\n"
        "def f():\n    from bot.streaming.stream import OnlineStream\n"
    )
    assert _imports(tree, "bot.asr.factory") == [
        "typing",
        "bot.asr.engine",
        "bot.streaming.stream",
    ]


def test_there_are_no_import_cycles_between_packages() -> None:
    graph = package_graph()
    assert {"bot.asr", "bot.streaming", "bot.runtime", "bot.outputs"} <= graph.keys()
    cycle = find_cycle(graph)
    assert cycle is None, _explain(graph, cycle)


def test_engines_know_nothing_of_the_streaming_policy_or_the_processes() -> None:
    graph = package_graph()
    above = {"bot.streaming", "bot.runtime", "bot.transcribe", "bot.eval", "bot.cli"}
    assert not (reachable(graph, "bot.asr") & above), {
        target: sorted(graph["bot.asr"][target]) for target in graph["bot.asr"]
    }


def test_the_running_bot_imports_nothing_of_the_evaluation() -> None:
    graph = package_graph()
    for part in ("bot.runtime", "bot.outputs", "bot.streaming", "bot.transcribe"):
        assert "bot.eval" not in reachable(graph, part), part
