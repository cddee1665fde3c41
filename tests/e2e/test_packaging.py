"""A normal install works away from the checkout, and declares everything the packaged code imports.

The install test builds the project into a new virtual environment with `pip install --no-deps .`
(not editable, from a copy of the source) and runs `dgm migrate` and `dgm serve` there from another
folder: the Alembic scripts and the dashboard templates must come from the installed package. Trade-off,
to keep it under a minute: the new environment gets its dependencies by a .pth file that points at this
interpreter's site-packages instead of resolving them afresh (that takes minutes). A dependency missing
from pyproject.toml would therefore not fail here; it fails `.ci/run`, which installs into a new
environment on every run, and `test_packaged_code_imports_only_declared_dependencies` below.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from benchmarks.serve import start_serve
from tests.service.support import ADMIN, ROOT, TINY, auth, digits, npz_bytes, wait_job

PACKAGES = ("dgm", "core", "service", "worker", "cli", "benchmarks")  # what pyproject.toml ships
# Imported only by scripts that say how to get them; not by `dgm serve`, `dgm worker` or `dgm bench`.
OPTIONAL = {
    "selenium": "benchmarks/screenshot_dashboard.py, a maintainer's script that also needs chromium",
    "sklearn": "benchmarks/walkthrough.py --data digits only; scikit-learn comes with the test extra",
}
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "tests"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(path: Path) -> set[str]:
    """Top-level names of absolute imports, wherever they sit (lazy imports inside functions count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_packaged_code_imports_only_declared_dependencies():
    """Each third-party module the packaged code imports belongs to a distribution that pyproject.toml
    names itself, not one that only arrives through another package's requirements or the test extra."""
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {canonical(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    provides = packages_distributions()
    undeclared: dict[str, list[str]] = {}
    for path in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        for module in imported_modules(path) - set(sys.stdlib_module_names) - set(PACKAGES) - set(OPTIONAL):
            if not {canonical(d) for d in provides.get(module, [])} & declared:
                undeclared.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert "tests" not in undeclared, f"shipped code imports the test suite: {undeclared['tests']}"
    assert not undeclared, f"imported but not in [project.dependencies]: {undeclared}"


def test_readme_test_command_is_what_ci_runs():
    """.ci/run runs the README's command 2 verbatim, in the virtual environment that command makes."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = lines[lines.index("# The README's command 2, verbatim:") + 1]
    assert command.startswith("python3 -m venv .venv && ") and "python -m pytest" in command
    assert f"\n{command}\n" in (ROOT / "README.md").read_text()


def install_away(tmp_path: Path) -> Path:
    """`pip install --no-deps .` from a copy of the source into a new venv; returns the venv."""
    source, venv = tmp_path / "source", tmp_path / "venv"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORE)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(source)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # Only now, so that pip above saw an empty environment: the dependencies, from this interpreter.
    purelib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    here = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    (purelib / "suite_dependencies.pth").write_text("\n".join(here) + "\n")
    return venv


def away_env(data: Path) -> dict[str, str]:
    """No PYTHONPATH and no deployment settings: nothing points back at the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("DGM_")}
    env.update(
        DGM_DATA_DIR=str(data), DGM_ADMIN_KEY=ADMIN, DGM_DEVICE="cpu", DGM_TORCH_THREADS="1",
        DGM_PROGRESS_INTERVAL_S="0.2", DGM_REQUEUE_COUNTDOWN_S="0.5", DGM_SWEEP_INTERVAL_S="0",
    )  # fmt: skip
    return env


def test_wheel_install_migrates_and_serves_away_from_the_checkout(tmp_path):
    venv = install_away(tmp_path)
    dgm, away = str(venv / "bin" / "dgm"), tmp_path / "elsewhere"
    away.mkdir()
    env = away_env(away / "var")

    probe = f"import {', '.join(PACKAGES)}; print(*[m.__file__ for m in ({', '.join(PACKAGES)})])"
    where = subprocess.run(
        [venv / "bin" / "python", "-c", probe], cwd=away, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(where) == len(PACKAGES) and all(f.startswith(str(venv)) for f in where), where
    migrated = subprocess.run([dgm, "migrate"], cwd=away, env=env, capture_output=True, text=True)
    assert migrated.returncode == 0 and "database at head" in migrated.stdout, migrated.stderr
    bench = subprocess.run([dgm, "bench", "predict", "--help"], cwd=away, env=env, capture_output=True)
    assert bench.returncode == 0, bench.stderr

    proc, url = start_serve(away, env, dgm=[dgm])
    try:
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as c:
            assert c.post("/v1/learners", json={**TINY, "name": "away"}).status_code == 201
            x, y = digits([0, 1])
            r = c.post("/v1/learners/away/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))})
            assert r.status_code == 202, r.text
            assert wait_job(c, r.json()["job"]["id"])["state"] == "succeeded"  # the worker child trained it
            out = c.post("/v1/learners/away/predict", json={"images": x[:2].tolist()}).json()
            assert out["version"] == 1 and len(out["predictions"]) == 2
            login = c.get("/dashboard")  # no dashboard cookie: the login page, from the shipped templates
            assert login.status_code == 401 and 'id="login"' in login.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
    assert (away / "var" / "dgm.db").is_file() and (away / "var" / "artifacts" / "learners").is_dir()
