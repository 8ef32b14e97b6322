"""Generates the Python stubs under clients/python/jobtask/v1 from proto/.

Run it after changing anything in proto/: `python scripts/gen_protos.py`.
tests/test_generated_code.py fails when the committed stubs are stale.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE_DIR = "jobtask/v1"
OUTPUT_DIR = ROOT / "clients" / "python"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="write here instead of clients/python")
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


if __name__ == "__main__":
    main()
