"""The house rules of prvr's code, checked on its sources: every package says what it owns, imports only
point down the layers (function-level imports included), no module or package imports itself back
through others, no file is much over 350 lines, and prvr/data holds only the dataset and batching."""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

PRVR = Path(__file__).resolve().parents[1] / "prvr"
MAX_LINES = 360  # "no file much over 350 lines"
# top to bottom; a unit may import its own layer or any layer below it, never one above
LAYERS = [
    {"cli"},
    {"stages", "pipeline"},
    {"reporting"},
    {"search"},
    {"checkpoints"},
    {"training"},
    {"losses", "evaluation", "features"},
    {"models", "data"},
    {"sources", "demo"},
    {"video", "store"},
    {"provenance", "config", "config_checks", "config_data", "config_losses", "config_sources", "dataclass_dict",
     "yaml_files", "io", "errors", "allocator", "prvr"},
]


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of prvr."""
    found = {}
    for path in PRVR.rglob("*.py"):
        name = ".".join(path.relative_to(PRVR.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the prvr modules it imports anywhere in its file (top level or inside a function)."""
    mods, graph = modules(), defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import (the house uses absolute imports)")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prvr"):
                # `from pkg import module` imports the module; `from module import name`, the module
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in mods else node.module
                           for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def unit(module: str) -> str:
    """The package (or top-level module) a module belongs to: prvr.store.splits -> store."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "prvr"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(graph) | {n for targets in graph.values() for n in targets}):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_circle_and_only_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) == []


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_no_package_imports_itself_back():
    packages = defaultdict(set)
    for source, targets in import_graph().items():
        packages[unit(source)] |= {unit(t) for t in targets} - {unit(source)}
    assert cycles(packages) == []


def test_imports_point_down_the_layers():
    rank = {name: depth for depth, layer in enumerate(LAYERS) for name in layer}
    units = {unit(m) for m in modules()}
    assert units <= set(rank), f"packages with no layer: {sorted(units - set(rank))}"
    upward = [f"{source} imports {target}" for source, targets in import_graph().items() for target in targets
              if rank[unit(target)] < rank[unit(source)]]
    assert upward == []


@pytest.mark.parametrize("package", sorted(p.parent.name for p in PRVR.glob("*/__init__.py")))
def test_every_package_says_what_it_owns(package):
    docstring = ast.get_docstring(ast.parse((PRVR / package / "__init__.py").read_text()))
    assert docstring and len(docstring) > 30, f"prvr/{package}/__init__.py has no docstring saying what it owns"


def test_no_file_much_over_350_lines():
    long = {str(p.relative_to(PRVR.parent)): n for p in PRVR.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_data_holds_only_the_dataset_and_batching():
    """The dataset, its batching and DL-DKD's teacher read beside it; readers and stores live elsewhere."""
    names = sorted(p.name for p in (PRVR / "data").iterdir() if p.name != "__pycache__")
    assert names == ["__init__.py", "dataset.py", "teacher.py"]


def _prvr_imports(path: Path):
    """(line, dotted name) of every prvr import in a Python file, and of every `name` of `from prvr.x import name`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prvr"):
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("prvr"):
                    yield node.lineno, alias.name, []


def test_every_prvr_import_names_a_module_that_exists():
    """A module moved without its importers fails here, not in the middle of a DAG (function-level imports
    included: a late import runs only when its branch does)."""
    root, mods = PRVR.parent, modules()
    files = [p for folder in ("prvr", "workflow", "bench", "tests") for p in (root / folder).rglob("*.py")]
    missing = []
    for path in files:
        for line, module, names in _prvr_imports(path):
            where = f"{path.relative_to(root)}:{line}"
            if module not in mods:
                missing.append(f"{where} imports {module}")
                continue
            is_package = mods[module].name == "__init__.py"
            for name in names:
                if f"{module}.{name}" in mods:
                    continue
                tree = ast.parse(mods[module].read_text())
                defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
                defined |= {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
                defined |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                            if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
                if name not in defined and not (is_package and name == "*"):
                    missing.append(f"{where} imports {name} from {module}, which does not define it")
    assert missing == []
