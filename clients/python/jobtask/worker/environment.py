"""Where a task's script is, how it is run, and the environment Arvados's crunch-job gave a
task process (reference §5.6), so unmodified crunch scripts run here.

Scripts live in the scripts directory ($JOBTASK_SCRIPTS_DIR, like Arvados's crunch_scripts/);
a job's `script` names a file in it, and nothing outside it is ever run. As crunch-job did, an
executable script with a `#!` line runs as an executable: its `#!` line picks the interpreter
(a virtualenv's python with the Arvados SDK, say; the worker's interpreter directory is first
on PATH, so `#!/usr/bin/env python3` finds the worker's). A `.py` script without a `#!` line,
or not executable, runs under the worker's own interpreter (so the jobtask SDK the worker has
is importable); any other script must be executable.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from jobtask.sdk.messages import whole_numbers
from jobtask.v1 import task_service_pb2


class ScriptError(Exception):
    """The job's script cannot be run. `permanent`: no worker could run it (a name outside
    the scripts directory); otherwise another worker, set up differently, might."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def resolve_script(scripts_dir: Path, script: str) -> Path:
    """The script's file, refusing names that lead outside the scripts directory."""
    if not script or "\0" in script:
        raise ScriptError(f"invalid script name {script!r}", permanent=True)
    if Path(script).is_absolute() or ".." in Path(script).parts:
        raise ScriptError(
            f"script {script!r} is outside the scripts directory {scripts_dir}", permanent=True
        )
    root = scripts_dir.resolve()
    path = (root / script).resolve()
    if not path.is_relative_to(root):
        # A symbolic link leading out: refused like a `..` in the name.
        raise ScriptError(
            f"script {script!r} is outside the scripts directory {scripts_dir}", permanent=True
        )
    if not path.is_file():
        raise ScriptError(f"script {script!r} not found in {scripts_dir}", permanent=False)
    if path.suffix != ".py" and not os.access(path, os.X_OK):
        raise ScriptError(f"script {script!r} in {scripts_dir} is not executable", permanent=False)
    return path


def command_for(path: Path) -> list[str]:
    """The script's own `#!` interpreter when it is an executable with one; the worker's
    interpreter for any other `.py` script."""
    if path.suffix == ".py" and not (os.access(path, os.X_OK) and _has_shebang(path)):
        return [sys.executable, str(path)]
    return [str(path)]


def _has_shebang(path: Path) -> bool:
    try:
        with path.open("rb") as script:
            return script.read(2) == b"#!"
    except OSError:
        return False


def parameter_value(value: Any) -> str:
    """Strings as they are; anything else as JSON (whole numbers without a `.0`, which
    protobuf's Struct adds to every number)."""
    if isinstance(value, str):
        return value
    return json.dumps(whole_numbers(value), separators=(",", ":"))


@dataclass(frozen=True)
class TaskPlace:
    """Where a task runs: the worker's slot and the directories made for it."""

    node_name: str
    slot: int
    slots: int
    crunch_tmp: Path
    job_work: Path
    task_work: Path


@dataclass(frozen=True)
class Connection:
    """How the task's process reaches the services (with its own task token)."""

    jobs_addr: str
    tasks_addr: str
    gateway_addr: str | None


# What a task inherits from the worker's environment: the locale, the time zone, where
# temporary files go, and how to reach the services (never a credential).
INHERITED = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TMPDIR",
        "TZ",
        "ARVADOS_API_HOST",
        "ARVADOS_API_HOST_INSECURE",
        "JOBTASK_TLS_CA",
    }
)
INHERITED_PREFIXES = ("LC_",)
# Never passed, even when an operator names them: the worker's and the cluster's secrets.
WITHHELD = frozenset(
    {
        "JOBTASK_TOKEN",
        "ARVADOS_API_TOKEN",
        "JOBTASK_SYSTEM_ROOT_TOKEN",
        "JOBTASK_DATABASE_URL",
    }
)


def inherited(base: Mapping[str, str], pass_env: Iterable[str] = ()) -> dict[str, str]:
    """The part of the worker's environment a task may see: INHERITED, LC_*, and the names
    the operator passes (`--pass-env`), minus WITHHELD."""
    extra = set(pass_env)
    return {
        k: v
        for k, v in base.items()
        if (k in INHERITED or k.startswith(INHERITED_PREFIXES) or k in extra) and k not in WITHHELD
    }


def task_environment(
    assignment: task_service_pb2.TaskAssignment,
    place: TaskPlace,
    connection: Connection,
    base: Mapping[str, str],
    pass_env: Iterable[str] = (),
) -> dict[str, str]:
    """Crunch's task variables over an allow-listed part of the worker's environment
    (`base`, see `inherited`). The worker's own credentials never reach the task: the
    task gets its own token."""
    job, task, token = assignment.job, assignment.task, assignment.task_token
    env = {k: v for k, v in inherited(base, pass_env).items() if not k.startswith("JOB_PARAMETER_")}
    interpreter_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([interpreter_dir, base.get("PATH", os.defpath)])
    env.update(
        JOB_UUID=job.uuid,
        CRUNCH_JOB_UUID=job.uuid,
        TASK_UUID=task.uuid,
        TASK_SEQUENCE=str(task.sequence),
        TASK_QSEQUENCE=str(task.qsequence),
        TASK_ATTEMPT=str(task.attempt),
        JOB_SCRIPT=job.script,
        TASK_WORK=str(place.task_work),
        TASK_TMPDIR=str(place.task_work),
        HOME=str(place.task_work),
        JOB_WORK=str(place.job_work),
        CRUNCH_WORK=str(place.job_work),
        CRUNCH_TMP=str(place.crunch_tmp),
        TASK_SLOT_NODE=place.node_name,
        TASK_SLOT_NUMBER=str(place.slot),
        CRUNCH_NODE_SLOTS=str(place.slots),
        JOBTASK_JOBS_ADDR=connection.jobs_addr,
        JOBTASK_TASKS_ADDR=connection.tasks_addr,
        JOBTASK_TOKEN=token,
        # Live logs: Python scripts flush print() at once instead of at exit.
        PYTHONUNBUFFERED=base.get("PYTHONUNBUFFERED", "1"),
    )
    parameters = json_format.MessageToDict(job.script_parameters)
    for name, value in parameters.items():
        if "=" in name or "\0" in name:
            continue  # not expressible as an environment variable
        env[f"JOB_PARAMETER_{name.upper()}"] = parameter_value(value)
    env.pop("ARVADOS_API_TOKEN", None)
    if connection.gateway_addr:
        env["ARVADOS_API_HOST"] = connection.gateway_addr
    if env.get("ARVADOS_API_HOST"):
        env["ARVADOS_API_TOKEN"] = token
    return env
