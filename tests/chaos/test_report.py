"""The chaos cells' table at the end of a run: each cell once, with and without pytest-xdist's
worker processes (`make test` runs two; tests/chaos/report.py says why it is a plugin)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT

pytest_plugins = ["pytester"]

CELLS = """
from tests.chaos import history
from tests.chaos.cell import RESULTS


def figures(name):
    return history.Figures(
        cell=name, tasks=3, lost=0, double=0, retried=0, extra_runs=0, recovery=None,
        before=1.0, during=None, after=1.0, watcher_breaks=0, problems=0,
    )


def test_one():
    RESULTS.append(figures("cell_one"))


def test_two():
    RESULTS.append(figures("cell_two"))


def test_none():
    pass
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_each_cell_is_in_the_table_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    pytester.makepyfile(test_cells=CELLS)
    pytester.makeini("[pytest]\n")  # not the project's settings (its testpaths, its timeout)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    result = pytester.runpytest_subprocess("-p", "tests.chaos.report", "-n", workers)
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert "chaos cells (short: 60 tasks a cell)" in out
    assert out.count("| cell_one | 3 |") == 1
    assert out.count("| cell_two | 3 |") == 1
