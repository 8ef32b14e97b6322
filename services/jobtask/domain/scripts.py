"""What a job's `script` may name: a file inside a worker's scripts directory (crunch's
`crunch_scripts/`), so a path that leads elsewhere is refused at submission rather than by every
worker that claims one of its tasks."""

from __future__ import annotations

import functools
from pathlib import PurePosixPath

from jobtask.domain.errors import InvalidArgument

__all__ = ["check_script"]


# Cached: a cluster runs few scripts, and the path's parsing cost a submission ~2 us a job
# (a refusal raises and is not cached).
@functools.lru_cache(maxsize=1024)
def check_script(value: str, field: str = "script") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if "\0" in value or "\\" in value:
        raise InvalidArgument(field, "must be a file name in the scripts directory")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise InvalidArgument(field, "must be relative to the scripts directory, not absolute")
    if ".." in path.parts:
        raise InvalidArgument(field, "must not lead out of the scripts directory (`..`)")
    if value.endswith("/") or path.name in ("", "."):
        raise InvalidArgument(field, "must name a file, not a directory")
    return value
