"""The package's shape: the listed top-level modules and wings, imports only downward and never in a loop
(function-level imports counted), function-level imports only of heavy optional libraries, no method name
compared as a string outside the method table, no module over 300 lines, every lazy export resolvable."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tqstar"
TOP = {"__init__", "cli", "bench", "prompts", "jsonl", "errors", "options", "lazy"}
WINGS = {"models", "rewards", "decoding", "audit", "eval", "serve", "align"}
RANK = {"lazy": 0.0, "errors": 0.0, "jsonl": 0.1, "options": 0.2, "prompts": 0.3, "models": 1, "rewards": 2, "decoding": 3,
        "audit": 3.5, "eval": 4, "serve": 4, "align": 5, "bench": 5, "cli": 6}
HEAVY = {"torch", "transformers", "uvicorn", "ray", "trl", "peft", "datasets", "matplotlib"}
TABLE = "tqstar.decoding.methods"
NAME_TUPLES = {"METHODS"}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


MODULES = dict(_modules())


def _imports(name, path):
    """(target, line, inside_a_function) of every import outside ``if TYPE_CHECKING:`` blocks."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append((target, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return found


def _wing(module):
    return module.split(".")[1] if "." in module else "__init__"


def test_top_level_holds_only_the_listed_modules_and_wings():
    assert {p.stem for p in ROOT.glob("*.py")} == TOP
    assert {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} == WINGS


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_300_lines(module):
    assert len(MODULES[module].read_text().splitlines()) <= 300


def test_no_import_cycles_counting_function_level_imports():
    graph = {m: {t for t, _, _ in _imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state, stack = {}, []

    def walk(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            assert state.get(w) != 1, "cycle: " + " -> ".join(stack[stack.index(w):] + [w])
            if w not in state:
                walk(w)
        state[v] = 2
        stack.pop()

    for v in sorted(graph):
        if v not in state:
            walk(v)


def test_imports_inside_functions_are_only_of_heavy_optional_libraries():
    bad = [f"{p}:{line} {t}" for m, p in MODULES.items() for t, line, inside in _imports(m, p)
           if inside and t.split(".")[0] not in HEAVY]
    assert not bad, bad


def test_imports_go_downward_and_each_protocol_is_its_wings_bottom():
    faces = {f"tqstar.{w}" for w in WINGS} | {"tqstar"}
    bad = []
    for m, p in MODULES.items():
        if m in faces:
            continue  # faces import only tqstar.lazy, which imports each name's module on first access
        wing = _wing(m)
        for t, line, _ in _imports(m, p):
            if t in faces:
                bad.append(f"{p}:{line} imports the face {t}; import the module instead")
            elif t in MODULES:
                same = wing == _wing(t) and wing in WINGS
                if same and m.endswith(".protocol"):
                    bad.append(f"{p}:{line} {m} -> {t}: a protocol is the bottom of its wing")
                elif not same and not RANK.get(_wing(t), 99) < RANK.get(wing, -1):
                    bad.append(f"{p}:{line} {m} -> {t} does not point down")
    assert not bad, bad


def test_type_only_imports_are_the_two_known_ones():
    blocks = {m for m, p in MODULES.items() for n in ast.walk(ast.parse(p.read_text()))
              if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)}
    # models/protocol.py keeps torch off the protocol's import; decoding/methods.py names DecodeConfig and Roles,
    # which import the table at run time
    assert blocks <= {"tqstar.models.protocol", "tqstar.decoding.methods"}, blocks


def test_no_method_name_is_compared_as_a_string_outside_the_table():
    names = set(importlib.import_module(TABLE).METHODS)

    def is_method(e):
        if isinstance(e, ast.Constant) and e.value in names:
            return True
        if isinstance(e, (ast.Tuple, ast.List, ast.Set)):
            return any(is_method(x) for x in e.elts)
        if isinstance(e, ast.Attribute) and (e.attr == "method" or e.attr in NAME_TUPLES):
            return True
        if isinstance(e, ast.Name) and e.id in NAME_TUPLES:
            return True
        return isinstance(e, ast.Subscript) and isinstance(e.slice, ast.Constant) and e.slice.value == "method"

    bad = []
    for m, p in MODULES.items():
        if m == TABLE:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare) and any(is_method(e) for e in (node.left, *node.comparators)):
                bad.append(f"{p}:{node.lineno} {ast.unparse(node)}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("startswith", "endswith")
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "method"):
                bad.append(f"{p}:{node.lineno} {ast.unparse(node)}")
    assert not bad, bad


@pytest.mark.parametrize("package", ["tqstar", *sorted(f"tqstar.{w}" for w in WINGS)])
def test_every_lazy_export_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_the_shipped_adapters_are_found():
    from tqstar.models import shipped_adapters

    assert shipped_adapters() == ["bl-helpful-harmless", "bl-sentiment"]


def test_package_data_ships_every_data_file():
    """pyproject's package-data patterns match every file under the data folders (a fresh install has them)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    patterns = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = [p for folder in ("adapters", "data", "reward_models", "audit/static", "serve/static") for p in (ROOT / folder).rglob("*") if p.is_file()]
    assert data
    shipped = {p for pattern in patterns["tqstar"] for p in ROOT.glob(pattern) if p.is_file()}
    assert set(data) <= shipped, sorted(map(str, set(data) - shipped))
