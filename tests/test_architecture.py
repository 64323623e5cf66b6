"""The package's shape: an acyclic import graph, library first and commands as shells, a lazy command
table that keeps `xvjax --help` and every `xvjax CMD --help` free of JAX."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from xvjax import cli

PACKAGE = Path(__file__).resolve().parents[1] / "xvjax"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_shell(name: str) -> bool:
    """Command modules and the CLI: the edge where options are parsed and heavy imports deferred."""
    return name == "xvjax.cli" or "commands" in name.split(".")


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported xvjax module, at module level?) for every import statement of a module.

    `from a.b import c` counts as importing `a.b.c` when that is a module, else `a.b`.
    """
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        out += [(t, id(node) in top) for t in targets if t in MODULES and t != name]
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for dep, _ in GRAPH[m]:
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in GRAPH:
        if m not in state and (found := visit(m)):
            return found
    return None


def test_import_graph_is_acyclic():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_registration_imports():
    offenders = [str(p) for p in MODULES.values() if "noqa: E402" in p.read_text()]
    assert offenders == []


def test_recipe_uses_the_library_not_the_commands():
    bad = [
        (m, dep)
        for m, deps in GRAPH.items()
        if m.startswith("xvjax.recipe.") and not _is_shell(m)
        for dep, _ in deps
        if _is_shell(dep)
    ]
    assert bad == []


def test_library_modules_import_at_the_top():
    """Function-level imports belong to the command shells (so `--help` and the numpy-only tools
    start without JAX); library modules show their dependencies at the top."""
    inner = {
        m: sorted({dep for dep, at_top in deps if not at_top})
        for m, deps in GRAPH.items()
        if not _is_shell(m)
    }
    assert {m: deps for m, deps in inner.items() if deps} == {}


def test_command_table_matches_the_declarations():
    declared = {}
    for name in MODULES:
        if not _is_shell(name) or name == "xvjax.cli":
            continue
        module = __import__(name, fromlist=["_"])
        for attr, value in vars(module).items():
            cmd = getattr(value, "command", None)
            if isinstance(cmd, cli.Command):
                declared[cmd.name] = f"{name}:{attr}"
    assert declared == cli.COMMANDS


def test_help_never_imports_jax():
    code = (
        "import sys; from xvjax import cli; cli.load_commands(); "
        "print(sorted(m for m in ('jax', 'flax', 'optax', 'orbax', 'scipy', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("name", ["copy-feats", "nnet3-xvector-compute", "train", "demo"])
def test_command_help_is_fast_to_start(name):
    code = (
        f"import sys; from xvjax import cli; cli.run(['{name}', '--help']); "
        "print('jax' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "False"


def _class_defs() -> list[tuple[str, ast.ClassDef]]:
    return [
        (name, node)
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    ]


def test_one_trials_and_one_backend_system():
    """One `Trials` (the trial list every scorer, the recipe and the trainer read) and one backend
    system (a class that fits, adapts, projects and scores: mean -> LDA -> length norm -> PLDA)."""
    classes = _class_defs()
    trials = [m for m, node in classes if node.name == "Trials"]
    assert trials == ["xvjax.backend.trials"]
    system_methods = {"fit", "adapt", "project", "score"}
    systems = [
        f"{m}.{node.name}"
        for m, node in classes
        if system_methods <= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    ]
    assert systems == ["xvjax.backend.system.PldaBackend"]
