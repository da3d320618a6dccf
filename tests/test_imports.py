"""The package's import graph: every module imports on its own, imports flow one way down the layers, and
no modules import each other in a circle. Read with `ast` (function-level lazy imports included, imports
under `if TYPE_CHECKING:` left out: they never run)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genlab"

# Top to bottom: a module may import from its own layer or any layer below, never from one above.
LAYERS: list[tuple[str, ...]] = [
    ("genlab.cli", "genlab.__main__"),
    ("genlab.commands", "genlab.api"),
    ("genlab.runtime",),
    ("genlab.callbacks", "genlab.report", "genlab.study", "genlab.anomaly", "genlab.loggers"),
    ("genlab.models", "genlab.metrics", "genlab.data", "genlab.latent", "genlab.console"),
    ("genlab.nets", "genlab.losses", "genlab.errors", "genlab.plain", "genlab.plugins", "genlab"),
]
# Within a layer: the training procedure gets what it needs through its config and its callbacks, so a
# model never reaches into the metrics, the data modules or the callbacks.
FORBIDDEN = {"genlab.models": ("genlab.metrics", "genlab.data", "genlab.callbacks")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def owner(module: str, groups: tuple[str, ...]) -> str | None:
    """The longest group name `module` belongs to (genlab.runtime.x is in genlab.runtime). The package root
    `genlab` holds only genlab/__init__.py: a new top-level module must be placed in LAYERS."""
    found = [g for g in groups if module == g or (g != "genlab" and module.startswith(g + "."))]
    return max(found, key=len, default=None)


ALL_GROUPS = tuple(g for layer in LAYERS for g in layer)


def layer_of(module: str) -> int:
    group = owner(module, ALL_GROUPS)
    assert group is not None, f"{module} is in no layer of tests/test_imports.py: add it to LAYERS"
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    return skipped


def imports_of(module: str) -> set[str]:
    """The genlab modules `module` imports anywhere in its file (resolved to modules of the package)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_blocks(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != module and target.startswith("genlab"):
                found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def upward_imports() -> list[str]:
    wrong = []
    for module, targets in GRAPH.items():
        for target in sorted(targets):
            if layer_of(target) < layer_of(module):
                wrong.append(
                    f"{module} -> {target} (layer {layer_of(module)} imports layer {layer_of(target)})"
                )
            source = owner(module, tuple(FORBIDDEN))
            if source and owner(target, FORBIDDEN[source]):
                wrong.append(
                    f"{module} -> {target} ({source} must not import {owner(target, FORBIDDEN[source])})"
                )
    return wrong


def cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_imports_flow_down_the_layers():
    assert upward_imports() == []


def test_no_import_cycles():
    # a package importing its own submodules (genlab.models -> genlab.models.base) is not a cycle unless
    # one of them imports the package back
    assert cycles() == []


def test_the_graph_sees_lazy_imports():
    # the commands import their heavy dependencies inside functions; the graph must still see them
    assert "genlab.runtime.launch" in GRAPH["genlab.commands.train"]
    assert "genlab.runtime.distributed" in GRAPH["genlab.commands.train"]


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    # In one fresh interpreter, each module is imported with every genlab module forgotten first, so no
    # module works only because another one imported something before it. (Third-party packages stay
    # loaded: a fresh interpreter per module would re-import torch ~60 times.)
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m == 'genlab' or m.startswith('genlab.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    names = [m for m in MODULES if m != "genlab.__main__"]  # __main__ runs the CLI
    proc = subprocess.run(
        [sys.executable, "-c", script, *names],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PACKAGE.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


# Private names of Hydra and Lightning used where no public API exists (each one says why in a comment).
FRAMEWORKS = ("hydra", "pytorch_lightning", "lightning")
PRIVATE_ALLOWED = {
    # runtime/distributed.py: Lightning 2.6 has no public way to ask how a strategy starts its ranks
    "pytorch_lightning.strategies.launchers.subprocess_script._SubprocessScriptLauncher",
}


def test_no_private_hydra_or_lightning_imports():
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                private = any(part.startswith("_") for part in name.split(".")[1:])
                if (
                    top in ("hydra", "pytorch_lightning", "lightning")
                    and private
                    and name not in PRIVATE_ALLOWED
                ):
                    found.append(f"{module}: {name}")
    assert found == []
