"""Data flows one way: program -> analysis -> plan -> launch -> runtime. The searches
(`tuning`) are pure functions; `plan` runs them with trial launches; `launch` only launches a
given plan. These tests read the imports of every module, so a circle fails here, between
layers or between two modules."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "parallax_nb"


def imported_modules(path: pathlib.Path):
    """Absolute names of the parallax_nb modules ``path`` imports (anywhere in the file)."""
    package = ".".join(("parallax_nb",) + path.relative_to(PACKAGE).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n and n.startswith("parallax_nb")}


def layer_imports(layer: str):
    return {(str(path.relative_to(PACKAGE)), name)
            for path in (PACKAGE / layer).rglob("*.py") for name in imported_modules(path)}


def test_the_import_reader_sees_relative_and_absolute_imports():
    found = imported_modules(PACKAGE / "plan" / "trials.py")
    assert "parallax_nb.launch" in found and "parallax_nb.tuning.mode_search" in found
    assert "parallax_nb.plan.progress" in found


@pytest.mark.parametrize("layer, forbidden", [
    ("launch", ("parallax_nb.plan", "parallax_nb.training", "parallax_nb.tuning.mode_search",
                "parallax_nb.notebook")),
    ("tuning", ("parallax_nb.launch", "parallax_nb.plan", "parallax_nb.training",
                "parallax_nb.notebook")),
    ("analysis", ("parallax_nb.launch", "parallax_nb.plan", "parallax_nb.tuning",
                  "parallax_nb.training", "parallax_nb.notebook")),
    ("runtime", ("parallax_nb.launch", "parallax_nb.plan", "parallax_nb.tuning",
                 "parallax_nb.training", "parallax_nb.notebook")),
])
def test_a_layer_never_imports_the_layers_above_it(layer, forbidden):
    wrong = sorted((module, name) for module, name in layer_imports(layer)
                   if any(name == f or name.startswith(f + ".") for f in forbidden))
    assert wrong == []


LAYERS = ("analysis", "tuning", "plan", "launch", "runtime", "cluster", "notebook")


def layer_graph():
    """layer -> the other layers its modules import."""
    graph = {}
    for layer in LAYERS:
        graph[layer] = {name.split(".")[1] for _, name in layer_imports(layer)
                        if len(name.split(".")) > 1} & set(LAYERS) - {layer}
    return graph


def test_the_layers_import_each_other_without_a_circle():
    graph = layer_graph()
    assert "launch" in graph["plan"] and "tuning" in graph["plan"]   # plan -> trials, searches

    def path_back(start, node, seen):
        for after in graph[node]:
            if after == start:
                return [node, after]
            if after not in seen:
                seen.add(after)
                rest = path_back(start, after, seen)
                if rest:
                    return [node] + rest
        return None

    circles = {layer: path_back(layer, layer, set()) for layer in LAYERS}
    assert {layer: path for layer, path in circles.items() if path} == {}


def module_graph():
    """module -> the parallax_nb modules it imports (``from . import x`` counts as x, not as
    the package it comes from)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("parallax_nb",) + path.relative_to(PACKAGE).with_suffix("").parts
        modules[".".join(parts[:-1] if path.name == "__init__.py" else parts)] = path
    graph = {}
    for module, path in modules.items():
        names = imported_modules(path)
        graph[module] = {n for n in names if n in modules and n != module
                         and not any(o.startswith(n + ".") and o in modules for o in names)}
    return graph


def circles_in(graph):
    """Every strongly connected group of more than one node (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for after in graph.get(node, ()):
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in on_stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back():
    assert circles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = module_graph()
    assert "parallax_nb.cluster.check.run" in graph["parallax_nb.cluster.connect"]
    assert circles_in(graph) == []
