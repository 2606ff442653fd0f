"""The package's shape: rooms whose imports point one way, no cycles, short functions, no JAX outside the engine."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hierpoly"
# What each room may import from the package. results sits beside the engine: neither knows the other.
# jobs reach the engine only through the runner; study asks jobs to run things and never touches the engine.
ROOMS = ("engine", "results", "jobs", "study", "views", "bench")
ALLOWED = {
    "foundation": {"foundation"},
    "engine": {"foundation", "engine"},
    "results": {"foundation", "results"},
    "jobs": {"foundation", "results", "jobs"},
    "study": {"foundation", "results", "jobs", "study"},
    "views": {"foundation", "results", "jobs", "study", "views"},
    "bench": {"foundation", "results", "jobs", "study", "views", "engine", "bench"},  # measures the engine and the app
    "face": {"foundation", "results", "jobs", "study", "views", "engine", "bench", "face"},  # cli/, __main__, __init__, api
}
ENGINE_GATES = {"hierpoly.jobs.runner"}  # the one module below the face that may call into the engine
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ROOMS:
        return parts[1]
    if module in ("hierpoly", "hierpoly.api", "hierpoly.cli", "hierpoly.__main__") or module.startswith("hierpoly.cli."):
        return "face"
    return "foundation"


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules imported anywhere in the file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    for name in graph:  # a package's __init__ is not an edge worth following
        graph[name] -= {"hierpoly", *(f"hierpoly.{room}" for room in ROOMS)}
    return graph


def test_imports_point_one_way_between_rooms():
    wrong = []
    for module, targets in _graph().items():
        room = _room(module)
        for target in targets:
            allowed = ALLOWED[room] | ({"engine"} if module in ENGINE_GATES else set())
            if _room(target) not in allowed:
                wrong.append(f"{module} ({room}) -> {target} ({_room(target)})")
    assert wrong == []


def test_the_runner_is_the_only_door_from_jobs_to_the_engine():
    callers = {module for module, targets in _graph().items()
               if _room(module) not in ("engine", "face", "bench") and any(_room(t) == "engine" for t in targets)}
    assert callers == ENGINE_GATES


def test_the_old_runs_package_is_gone_and_nothing_names_it():
    assert not (PACKAGE / "runs").exists()
    files = [*PACKAGE.rglob("*.py"), REPO / "app.py", *(REPO / "pages").glob("*.py"), *(REPO / "tests").glob("*.py"),
             REPO / "README.md"]
    pattern = "hierpoly" + r"[./]runs\b"  # split so this file does not name it either
    assert [str(path.relative_to(REPO)) for path in files if re.search(pattern, path.read_text())] == []


def test_no_import_cycles():
    graph, cycles = _graph(), []

    def visit(node, path, on_path):
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in done:
                visit(target, path + [target], on_path | {target})
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start})
    assert cycles == []


def test_no_function_over_the_line_limit():
    long = []
    for path in [*PACKAGE.rglob("*.py"), REPO / "app.py", *(REPO / "pages").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


# a rule written twice drifts: NaN -> None lives in jsonvalue.py, an error's first line in failure.py
WRITTEN_ONCE = {
    "NaN to None": (re.compile(r"None if .*is(nan|finite)|is(nan|finite)\(.*\) else None"), "hierpoly/jsonvalue.py"),
    "an error's first line": (re.compile(r"str\(\w+\)(\.strip\(\))?\.(splitlines\(|split\(.\\n)"), "hierpoly/failure.py"),
}


@pytest.mark.parametrize("rule", WRITTEN_ONCE)
def test_small_rules_are_written_once(rule):
    pattern, home = WRITTEN_ONCE[rule]
    files = [*PACKAGE.rglob("*.py"), REPO / "app.py", *(REPO / "pages").glob("*.py")]
    where = sorted({str(path.relative_to(REPO)) for path in files if pattern.search(path.read_text())})
    assert where == [home]


@pytest.mark.process
def test_everything_outside_the_engine_imports_without_jax():
    names = sorted(name for name in _modules() if _room(name) not in ("engine", "bench") and name != "hierpoly.__main__")
    code = f"import sys\nfor name in {names!r}:\n    __import__(name)\nprint(sorted(m for m in ('jax', 'jaxlib', 'optax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stderr


def test_docs_and_code_point_only_at_files_in_the_repository():
    mention = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:md|py|toml|txt|zip))\b")
    files = [*PACKAGE.rglob("*.py"), REPO / "app.py", *(REPO / "pages").glob("*.py"), REPO / "README.md",
             *REPO.glob("requirements*.txt"), REPO / ".streamlit" / "config.toml"]
    known = {str(p.relative_to(REPO)) for p in REPO.rglob("*") if ".git" not in p.parts} | {p.name for p in REPO.rglob("*")}
    missing = []
    for path in files:
        for match in mention.finditer(path.read_text()):
            name = match.group(1)
            if name.endswith(".zip"):  # bundles are named as outputs of example commands too
                continue
            if name not in known and not any(k.endswith("/" + name) for k in known):
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert missing == []


SPAWNS = re.compile(r"\bsubprocess\.|\bPopen\b|\bsys\.executable\b")


def _spawning_test_functions(path: Path) -> list[str]:
    """Tests in one file that start a process (directly, through a module-level helper or a fixture) without the mark."""
    src = path.read_text()
    tree = ast.parse(src)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    module_marked = re.search(r"^pytestmark = .*\b(process|browser)\b", src, re.M) is not None

    def spawns(node, seen=()) -> bool:
        body = ast.get_source_segment(src, node)
        if SPAWNS.search(body):
            return True
        called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        args = {a.arg for a in node.args.args}  # fixtures defined in this file
        return any(spawns(functions[name], (*seen, name)) for name in (called | args) - set(seen) - {node.name}
                   if name in functions)

    unmarked = []
    for name, node in functions.items():
        decorators = " ".join(ast.get_source_segment(src, d) for d in node.decorator_list)
        if not name.startswith("test_") or module_marked or re.search(r"\b(process|browser|on_cluster)\b", decorators):
            continue
        if spawns(node):
            unmarked.append(f"{path.name}::{name}")
    return unmarked


def test_every_test_that_starts_a_process_carries_the_process_mark():
    """The README's fast selection leaves out `process`: a test that spawns without the mark slows it unseen."""
    unmarked = [name for path in sorted((REPO / "tests").glob("test_*.py")) for name in _spawning_test_functions(path)]
    assert unmarked == []


def _layout_entries() -> dict[str, str]:
    """The README's Layout block: {folder: its text}, continuation lines joined."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("## Layout"):].split("\nImports point one way")[0]
    entries: dict[str, str] = {}
    last = None
    for line in block.splitlines():
        if not line.startswith("    "):
            continue
        if line[4] != " ":
            last, _, rest = line[4:].partition("  ")
            entries[last.strip()] = rest.strip()
        elif last is not None:
            entries[last] += " " + line.strip()
    return entries


def _named_modules(description: str) -> set[str]:
    """The first word of each top-level item after the first colon: 'a (x, y), b and c' names a, b and c."""
    listed, depth, flat = description.partition(":")[2], 0, ""
    for ch in listed:
        depth += ch == "("
        flat += ch if depth == 0 else ""
        depth -= ch == ")"
    items = [item for part in flat.split(",") for item in part.split(" and ")]
    return {item.split()[0] for item in items if item.split()}


def test_the_readme_layout_names_every_module_and_no_other():
    entries = _layout_entries()
    folders = {"hierpoly/": PACKAGE, **{f"hierpoly/{p.name}/": p for p in sorted(PACKAGE.iterdir())
                                        if p.is_dir() and (p / "__init__.py").exists()}}
    assert set(folders) <= set(entries), "a package folder missing from the README's Layout"
    wrong = {}
    for folder, path in folders.items():
        modules = {p.stem for p in path.glob("*.py") if not p.stem.startswith("__")}
        named = _named_modules(entries[folder])
        if named != modules:
            wrong[folder] = {"not named": sorted(modules - named), "named, not a module": sorted(named - modules)}
    assert wrong == {}
