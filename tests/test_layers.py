"""Data flows one way: program -> analysis -> plan -> launch -> runtime. The searches
(`tuning`) are pure functions; `plan` runs them with trial launches; `launch` only launches a
given plan. These tests read the imports of every module, so a circle fails here."""
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
