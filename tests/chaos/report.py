"""The chaos cells' figures, printed as one table at the end of the run (and written to
$JOBTASK_CHAOS_REPORT: docs/reliability.md under `make chaos`).

A plugin named by tests/conftest.py's pytest_plugins rather than hooks in
tests/chaos/conftest.py: under pytest-xdist (`make test`) the cells run in worker processes,
and the process that prints the summary collects nothing, so it never loads a conftest below
tests/. In a worker, each cell's figures leave RESULTS with its test's report
(user_properties, which xdist sends back) and join the controller's RESULTS there; without
workers they stay where they were recorded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.chaos import history
from tests.chaos.cell import FULL, RESULTS, TASKS

_FIGURES = "chaos_figures"
_in_worker = False


def pytest_configure(config: pytest.Config) -> None:
    global _in_worker
    _in_worker = hasattr(config, "workerinput")  # set by xdist in its workers only


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    while _in_worker and RESULTS:
        report.user_properties.append((_FIGURES, dataclasses.asdict(RESULTS.pop(0))))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _in_worker:
        return  # the controller's RESULTS are the ones printed
    for name, value in report.user_properties:
        if name == _FIGURES:
            RESULTS.append(history.Figures(**cast(dict[str, Any], value)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    size = "full" if FULL else "short"
    text = history.table(RESULTS)
    terminalreporter.write_sep("=", f"chaos cells ({size}: {TASKS} tasks a cell)")
    terminalreporter.write_line(text)
    target = os.environ.get("JOBTASK_CHAOS_REPORT")
    if target:
        write_report(Path(target), text, size)


def write_report(path: Path, text: str, size: str) -> None:
    """Replaces the figures between the markers in docs/reliability.md."""
    begin, end = "<!-- chaos figures -->", "<!-- end chaos figures -->"
    page = path.read_text()
    head, _, rest = page.partition(begin)
    _, _, tail = rest.partition(end)
    day = dt.datetime.now(dt.UTC).date().isoformat()
    machine = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end"
    block = f"{begin}\n_{size} run, {TASKS} tasks a cell, {day} ({machine}):_\n\n{text}\n{end}"
    path.write_text(head + block + tail)
