"""Suite-wide: name, at the end of every run, each check that did not run and why.

A check that needs a tool the machine lacks (chromium, docker-compose, the Fashion-MNIST package) is
skipped with a reason that says how to install it; `.ci/run` installs them all, so in CI they run.
"""

from __future__ import annotations

import pytest


def skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    title = f"{len(skipped)} check{'s' if len(skipped) != 1 else ''} did not run"
    terminalreporter.section(title, sep="=", yellow=True, bold=True)
    for report in skipped:
        terminalreporter.line(f"NOT RUN {report.nodeid}: {skip_reason(report)}")
