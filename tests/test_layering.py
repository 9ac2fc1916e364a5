"""Imports flow one way (docs/architecture.md): a module imports only from layers below its
own, and siblings on one layer do not import each other. Checked on every import statement,
including the lazy ones inside functions."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nnctl"

LAYERS = [  # lowest first; names on one row are siblings
    {"errors", "jit", "extras", "runner"},  # runner: imports no nnctl module at all
    {"ops"},
    {"graph"},
    {"autodiff", "backend", "config", "threads"},
    {"distributed"},
    {"compile"},
    {"layers", "losses", "data", "optim", "metrics", "plot", "spans", "text_metrics", "decode",
     "comparator_metrics", "torch_weights"},
    {"step", "starter"},
    {"train", "gradcheck", "export", "summary", "catalog", "explain", "doctor"},
    {"tune"},
    {"cli"},
]
RANK = {name: i for i, row in enumerate(LAYERS) for name in row}

# No upward reference is sanctioned: Tensor.backward() calls a function that nnctl.autodiff
# installs when it is imported (graph.tensor.set_backward), so graph never imports autodiff.
ALLOWED: set[tuple[str, str]] = set()


def component(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "nnctl" and len(parts) > 1 else None


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "nnctl":
                yield from (f"nnctl.{a.name}" for a in node.names)


def test_every_package_module_is_placed_on_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or p.is_dir()) and p.name not in ("__init__.py", "__main__.py",
                                                                     "__pycache__")}
    assert names <= set(RANK), names - set(RANK)


def test_imports_only_reach_down():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        mine = component(".".join(rel.parts))
        if mine in (None, "__init__", "__main__"):  # the package root sits above everything
            continue
        for module in imports(path):
            theirs = component(module)
            if theirs in (None, "__version__") or theirs == mine or (mine, theirs) in ALLOWED:
                continue
            if theirs not in RANK or RANK[theirs] >= RANK[mine]:
                violations.append(f"{rel}: imports {module}")
    assert violations == []


def test_only_the_cli_imports_typer_or_rich_and_only_the_cupy_backend_imports_cupy():
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        roots = {m.split(".")[0] for m in imports(path)}
        if not rel.startswith("cli/"):
            assert not roots & {"typer", "rich"}, rel
        if rel not in ("backend/cupy_backend.py", "backend/nccl.py"):
            assert "cupy" not in roots or rel == "graph/tensor.py", rel
