"""Profiles of the server under load, with py-spy (from PyPI, in the `bench` extra).

`python -m bench --profile DIR` records every jobtask server of the run with `py-spy record`
into DIR (collapsed stacks, one file per server), and prints the top frames of each:

    python -m bench.profile DIR/FILE.txt [N]    # the top N frames by own and total time
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PROFILE_DIR_ENV = "JOBTASK_BENCH_PROFILE_DIR"


def profile_dir() -> Path | None:
    value = os.environ.get(PROFILE_DIR_ENV)
    return Path(value) if value else None


@contextlib.contextmanager
def recording(pid: int, name: str) -> Iterator[Path | None]:
    """Samples process `pid` for the duration of the block, if profiling is on."""
    where = profile_dir()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if where is None or not Path(spy).exists():
        yield None
        return
    where.mkdir(parents=True, exist_ok=True)
    out = where / f"{name}.txt"
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-o",
            str(out),
            "--format",
            "raw",
            "-r",
            "200",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def summary(path: Path, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    # Lines end with "\n" only: frame names may hold other characters that splitlines()
    # would break on, and a stack py-spy read half-way may be garbled (skipped).
    for line in path.read_text(errors="replace").split("\n"):
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        samples += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{path.name}: {samples} samples"]
    lines.append("  own time:")
    lines += [f"    {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  total time (frame on the stack):")
    lines += [f"    {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
