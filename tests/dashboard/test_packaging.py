"""The dashboard ships inside the wheel: built offline (no build isolation, no index) from the
checkout, the wheel holds every file of jobtask/gateway/static/."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

STATIC = ROOT / "services" / "jobtask" / "gateway" / "static"


def test_the_wheel_holds_the_dashboards_static_files(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("jobtask-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        expected = sorted(p.name for p in STATIC.iterdir() if p.is_file())
        assert {"index.html", "app.js", "style.css"} <= set(expected)
        for name in expected:
            inside = f"jobtask/gateway/static/{name}"
            assert inside in names, sorted(names)
            assert archive.read(inside) == (STATIC / name).read_bytes()
        assert "jobtask/gateway/dashboard.py" in names
