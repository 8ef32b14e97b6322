"""The committed generated code matches proto/, and the proto checks (buf lint, buf breaking) pass.

When a staleness test fails, run `python scripts/gen_protos.py` and commit the result.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GEN_PROTOS = ROOT / "scripts" / "gen_protos.py"
PROTO_CHECKS = ROOT / "scripts" / "proto_checks.sh"
PYTHON_STUBS = ROOT / "clients" / "python" / "jobtask" / "v1"
TS_PACKAGE = ROOT / "clients" / "typescript"
TS_GEN = TS_PACKAGE / "src" / "gen"
BUF = TS_PACKAGE / "node_modules" / ".bin" / "buf"
SKIPPED_NAMES = {"__pycache__"}


def _files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not SKIPPED_NAMES.intersection(p.relative_to(root).parts)
    }


def _stale(committed: Path, fresh: Path) -> list[str]:
    """Names the files of `committed` that differ from the freshly generated `fresh`."""
    have, want = _files(committed), _files(fresh)
    problems = [f"missing (not committed): {name}" for name in sorted(want - have)]
    problems += [f"extra (no longer generated): {name}" for name in sorted(have - want)]
    problems += [
        f"differs: {name}"
        for name in sorted(have & want)
        if not filecmp.cmp(committed / name, fresh / name, shallow=False)
    ]
    return problems


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def buf() -> Path:
    """buf from clients/typescript's devDependencies, installed with `npm ci` when missing."""
    installed = TS_PACKAGE / "node_modules" / ".package-lock.json"
    lock = TS_PACKAGE / "package-lock.json"
    if (
        not BUF.exists()
        or not installed.exists()
        or installed.stat().st_mtime < lock.stat().st_mtime
    ):
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install buf (clients/typescript)"
        result = _run([npm, "ci", "--no-audit", "--no-fund"], cwd=TS_PACKAGE)
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}{result.stderr}"
    return BUF


def test_python_stubs_are_fresh(tmp_path: Path) -> None:
    result = _run([sys.executable, str(GEN_PROTOS), "--out", str(tmp_path)])
    assert result.returncode == 0, f"gen_protos.py failed:\n{result.stdout}{result.stderr}"
    problems = _stale(PYTHON_STUBS, tmp_path / "jobtask" / "v1")
    assert not problems, (
        "clients/python/jobtask/v1 is stale; run `python scripts/gen_protos.py`:\n  "
        + "\n  ".join(problems)
    )


def test_typescript_code_is_fresh(buf: Path, tmp_path: Path) -> None:
    # --output prefixes the template's out dir: the code lands in tmp_path/clients/typescript/...
    result = _run([str(buf), "generate", "--template", "buf.gen.yaml", "--output", str(tmp_path)])
    assert result.returncode == 0, f"buf generate failed:\n{result.stdout}{result.stderr}"
    fresh = tmp_path / TS_GEN.relative_to(ROOT)
    assert _files(fresh), "buf generate wrote no TypeScript file"
    problems = _stale(TS_GEN, fresh)
    assert not problems, (
        "clients/typescript/src/gen is stale; run `python scripts/gen_protos.py`:\n  "
        + "\n  ".join(problems)
    )


def test_proto_checks_pass(buf: Path) -> None:
    result = _run(["bash", str(PROTO_CHECKS)])
    assert result.returncode == 0, (
        f"scripts/proto_checks.sh failed (buf lint / buf breaking):\n{result.stdout}{result.stderr}"
    )


def _scratch_copy(tmp_path: Path) -> Path:
    """The proto checks' inputs, copied: proto/ (with the published image), buf.yaml, the script,
    and clients/typescript's lock file and node_modules (linked)."""
    scratch = tmp_path / "repo"
    shutil.copytree(ROOT / "proto", scratch / "proto")
    shutil.copy2(ROOT / "buf.yaml", scratch / "buf.yaml")
    (scratch / "scripts").mkdir()
    shutil.copy2(PROTO_CHECKS, scratch / "scripts" / PROTO_CHECKS.name)
    (scratch / "clients" / "typescript").mkdir(parents=True)
    shutil.copy2(TS_PACKAGE / "package-lock.json", scratch / "clients" / "typescript")
    os.symlink(TS_PACKAGE / "node_modules", scratch / "clients" / "typescript" / "node_modules")
    return scratch


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A field renamed: wire-compatible, but it breaks generated code and JSON.
        (
            "string script_version = 15;",
            "string script_revision = 15;",
            'changed name from "script_version" to "script_revision"',
        ),
        # A field removed: its number is not reserved.
        ("  string script_version = 15;\n", "", 'Previously present field "15"'),
        # A lint violation.
        ("string script_version = 15;", "string scriptVersion = 15;", "lower_snake_case"),
    ],
)
def test_proto_checks_catch_a_bad_change(
    buf: Path, tmp_path: Path, old: str, new: str, expected: str
) -> None:
    scratch = _scratch_copy(tmp_path)
    job_proto = scratch / "proto" / "jobtask" / "v1" / "job.proto"
    text = job_proto.read_text()
    assert text.count(old) == 1, f"job.proto no longer has {old!r}: update this test"
    job_proto.write_text(text.replace(old, new))
    result = _run(["bash", str(scratch / "scripts" / PROTO_CHECKS.name)], cwd=scratch)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"proto_checks.sh accepted {new!r}:\n{output}"
    assert re.search(re.escape(expected), output), output
