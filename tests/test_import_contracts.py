"""Import contracts: dependencies point one way (`cli -> service -> core <- worker -> dgm`).

Read from the source with `ast`, not by importing it, so lazy imports inside functions count too and
the check needs no database, broker or torch. Not seen: imports by string (`importlib.import_module`,
Celery's `-A worker.app`), which the project uses only to start a worker process.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"build", "var", "__pycache__"}  # plus hidden folders (.git, .venv) and *.egg-info


def python_files() -> list[Path]:
    return sorted(
        p
        for p in ROOT.rglob("*.py")
        if not any(
            part.startswith(".") or part in SKIP_DIRS or part.endswith(".egg-info")
            for part in p.relative_to(ROOT).parts[:-1]
        )
    )


def imports(path: Path) -> list[tuple[int, str]]:
    return imports_in(path.read_text(), path.relative_to(ROOT))


def imports_in(source: str, rel: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `source`, the text of file `rel` (relative to the root);
    relative imports resolved to absolute ones."""
    package = list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(source, str(rel))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.append((node.lineno, ".".join([*base, *filter(None, [node.module])])))
    return found


def top(path: Path) -> str:
    """The top-level folder a file lives in ('' for files at the root)."""
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else ""


# (name, the folders it applies to (None: every folder but the exempt ones), exempt folders, forbidden
# top-level modules, why)
CONTRACTS = [
    (
        "dgm_is_a_library",
        {"dgm"}, set(),
        {"service", "worker", "core", "cli", "benchmarks", "fastapi", "sqlalchemy", "celery", "kombu"},
        "the method runs and is tested without HTTP, SQL or a queue",
    ),
    (
        "core_is_the_bottom_layer",
        {"core"}, set(),
        {"torch", "dgm", "service", "worker", "cli", "benchmarks"},
        "everything imports core; the API process and `dgm --help` start without torch (dgm pulls it "
        "in); only dgm.shared, the torch-free input rules both sides apply, is allowed",
    ),
    (
        "service_does_not_import_worker",
        {"service"}, set(),
        {"worker"},
        "the API enqueues jobs by name (core.jobs) and never loads the job code",
    ),
    (
        "worker_does_not_import_service",
        {"worker"}, set(),
        {"service", "fastapi", "cli"},
        "a worker runs without the web app",
    ),
    (
        "nothing_imports_cli",
        None, {"cli", "tests"},
        {"cli"},
        "the CLI is the top of the house: it may import anything, nothing may depend on it",
    ),
    (
        "only_cli_and_tests_import_benchmarks",
        None, {"benchmarks", "cli", "tests"},
        {"benchmarks"},
        "benchmark scripts are not part of the service; only `dgm bench` dispatches to them",
    ),
]  # fmt: skip


# dgm.shared imports numpy and the standard library only, and dgm/__init__.py loads lazily, so importing
# it keeps torch out (test_shared_rules_load_without_torch): the one piece of dgm that core may use.
ALLOWED_EVERYWHERE = {"dgm.shared"}


def violations(applies: set[str] | None, exempt: set[str], forbidden: set[str]) -> list[str]:
    out = []
    for path in python_files():
        folder = top(path)
        if (applies is not None and folder not in applies) or folder in exempt:
            continue
        for line, module in imports(path):
            if module in ALLOWED_EVERYWHERE:
                continue
            if module.split(".")[0] in forbidden:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


@pytest.mark.parametrize(
    "applies, exempt, forbidden, why", [c[1:] for c in CONTRACTS], ids=[c[0] for c in CONTRACTS]
)
def test_import_contract_holds(applies, exempt, forbidden, why):
    found = violations(applies, exempt, forbidden)
    assert not found, f"forbidden imports ({why}):\n  " + "\n  ".join(found)


def test_import_contracts_scanner_sees_lazy_and_relative_imports():
    """The check is not vacuous: it reads every package, and sees imports inside functions."""
    folders = {top(p) for p in python_files()}
    assert {"dgm", "core", "service", "worker", "cli", "benchmarks", "tests"} <= folders
    serve = [m for _, m in imports(ROOT / "cli" / "server.py")]
    assert "service.app" in serve  # imported inside cmd_serve
    relative = imports_in("from . import layers\nfrom ..core import db\n", Path("dgm/__init__.py"))
    assert [m for _, m in relative] == ["dgm", "core"]


def test_shared_rules_load_without_torch():
    """core may import dgm.shared only because it stays torch-free; the API process depends on that."""
    probe = (
        "import sys, core.datasets, core.images, core.storage, dgm.shared; "
        "print(sorted(m for m in ('torch', 'dgm.learner') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    shared = {m.split(".")[0] for _, m in imports(ROOT / "dgm" / "shared.py")}
    assert shared <= {"__future__", "hashlib", "collections", "pathlib", "numpy"}, shared
