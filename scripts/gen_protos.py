"""Generates the client code for proto/: the Python stubs under clients/python/jobtask/v1 and,
through buf.gen.yaml (protoc-gen-es), the TypeScript code under clients/typescript/src/gen.

Run it after changing anything in proto/: `python scripts/gen_protos.py` regenerates both. It runs
`npm ci` in clients/typescript first when that package's node_modules is missing or older than
its package-lock.json (buf and protoc-gen-es come from there).
`--out DIR` writes only the Python stubs, to DIR instead of clients/python.
tests/test_generated_code.py fails when the committed Python or TypeScript code is stale.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE_DIR = "jobtask/v1"
OUTPUT_DIR = ROOT / "clients" / "python"
TS_PACKAGE = ROOT / "clients" / "typescript"
TS_OUTPUT_DIR = TS_PACKAGE / "src" / "gen"
BUF = TS_PACKAGE / "node_modules" / ".bin" / "buf"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / PACKAGE_DIR).glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Writes jobtask/v1/*_pb2*.py(i) under out_dir."""
    wkt_include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt_include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_dir / PACKAGE_DIR / "__init__.py").write_text(
        '"""Generated from proto/jobtask/v1 by scripts/gen_protos.py: do not edit."""\n'
    )


def ensure_node_deps() -> Path:
    """Installs clients/typescript's locked node deps when missing or stale; returns buf's path."""
    lock = TS_PACKAGE / "package-lock.json"
    installed = TS_PACKAGE / "node_modules" / ".package-lock.json"
    if (
        not BUF.exists()
        or not installed.exists()
        or installed.stat().st_mtime < lock.stat().st_mtime
    ):
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm not found: Node.js (with npm) is needed to run buf")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TS_PACKAGE, check=True)
    return BUF


def generate_typescript(out_base: Path | None = None) -> None:
    """Runs `buf generate` with buf.gen.yaml. The output lands in clients/typescript/src/gen,
    or, with out_base, in out_base/clients/typescript/src/gen (buf's --output prefix)."""
    buf = ensure_node_deps()
    args = [str(buf), "generate", "--template", "buf.gen.yaml"]
    if out_base is not None:
        args += ["--output", str(out_base)]
    if subprocess.run(args, cwd=ROOT).returncode != 0:
        raise SystemExit("buf generate failed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write only the Python stubs, here instead of clients/python",
    )
    opts = parser.parse_args()
    if opts.out is not None:
        generate(opts.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        target = OUTPUT_DIR / PACKAGE_DIR
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(tmp) / PACKAGE_DIR, target)
    print(f"wrote {target.relative_to(ROOT)}", file=sys.stderr)
    generate_typescript()
    print(f"wrote {TS_OUTPUT_DIR.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
