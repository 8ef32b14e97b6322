"""Whether a test's processes still run (the one helper for it)."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """A process exists and is not a zombie (reparented zombies may wait long for init).

    A process that ends while its stat is read makes the read fail with ESRCH
    (ProcessLookupError) rather than ENOENT: both mean it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
