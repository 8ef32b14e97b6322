"""The worker's settings: flags (keyword arguments) over JOBTASK_* variables over defaults."""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobtask.sdk.config import ClientConfig


def detect_ram_kib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    except (ValueError, OSError):
        return 0


def new_worker_id(node_name: str) -> str:
    """Stable for the life of this process, unique across restarts and machines."""
    return f"{node_name}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerConfig:
    client: ClientConfig
    scripts_dir: Path
    node_name: str
    worker_id: str
    slots: int = 1
    ram_kib: int = 0
    cores: int = 1
    tags: tuple[str, ...] = ()
    # Base of the per-worker CRUNCH_TMP (which holds JOB_WORK and the TASK_WORKs).
    work_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    # The REST gateway, given to scripts as ARVADOS_API_HOST.
    gateway_addr: str | None = None
    # Long-poll length of one ClaimTask call.
    claim_wait: float = 10.0
    # Log forwarding: flush after this long or this many bytes, whichever comes first.
    log_flush_seconds: float = 0.5
    log_flush_bytes: int = 8192
    # Cancel: SIGINT, then SIGTERM after this long, then SIGKILL after as long again.
    kill_grace: float = 2.0
    # Variables of the worker's environment its tasks also see, beyond the allow-list
    # (jobtask.worker.environment.INHERITED); secrets are withheld even when named.
    pass_env: tuple[str, ...] = ()
    # "session": one WorkerSession stream for all tasks (the default); "stream": ClaimTask
    # long polls and one RunTask stream per task (servers older than WorkerSession).
    protocol: str = "session"
    # In-process tasks: script names served by Python functions (jobtask.worker.functions).
    functions: Any = None

    @property
    def crunch_tmp(self) -> Path:
        return self.work_root / f"jobtask-worker-{self.worker_id}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WorkerConfig:
        """Keyword arguments that are not None win over the environment:
        JOBTASK_JOBS_ADDR, JOBTASK_TASKS_ADDR, JOBTASK_TOKEN, JOBTASK_WORKER_SLOTS,
        JOBTASK_NODE_NAME, JOBTASK_SCRIPTS_DIR, JOBTASK_WORK_DIR, JOBTASK_GATEWAY_ADDR,
        JOBTASK_WORKER_RAM_KIB, JOBTASK_WORKER_CORES, JOBTASK_WORKER_TAGS,
        JOBTASK_WORKER_PASS_ENV (comma-separated) and JOBTASK_WORKER_PROTOCOL."""
        env = os.environ if environ is None else environ
        given = {k: v for k, v in overrides.items() if v is not None}

        def pick(name: str, var: str, default: Any) -> Any:
            if name in given:
                return given.pop(name)
            return env.get(var) or default

        client = ClientConfig.from_env(
            given.pop("jobs_addr", None),
            given.pop("tasks_addr", None),
            given.pop("token", None),
            environ=env,
        )
        node_name = str(pick("node_name", "JOBTASK_NODE_NAME", socket.gethostname()))
        tags = pick("tags", "JOBTASK_WORKER_TAGS", ())
        if isinstance(tags, str):
            tags = tuple(t.strip() for t in tags.split(",") if t.strip())
        pass_env = pick("pass_env", "JOBTASK_WORKER_PASS_ENV", ())
        if isinstance(pass_env, str):
            pass_env = tuple(n.strip() for n in pass_env.split(",") if n.strip())
        config = cls(
            client=client,
            scripts_dir=Path(pick("scripts_dir", "JOBTASK_SCRIPTS_DIR", "crunch_scripts")),
            node_name=node_name,
            worker_id=str(pick("worker_id", "JOBTASK_WORKER_ID", "") or new_worker_id(node_name)),
            slots=int(pick("slots", "JOBTASK_WORKER_SLOTS", 1)),
            ram_kib=int(pick("ram_kib", "JOBTASK_WORKER_RAM_KIB", 0) or detect_ram_kib()),
            cores=int(pick("cores", "JOBTASK_WORKER_CORES", 0) or os.cpu_count() or 1),
            tags=tuple(tags),
            pass_env=tuple(pass_env),
            protocol=str(pick("protocol", "JOBTASK_WORKER_PROTOCOL", "session")),
            work_root=Path(pick("work_root", "JOBTASK_WORK_DIR", tempfile.gettempdir())),
            gateway_addr=pick("gateway_addr", "JOBTASK_GATEWAY_ADDR", None),
            **given,
        )
        if config.protocol not in ("session", "stream"):
            raise ValueError("JOBTASK_WORKER_PROTOCOL must be 'session' or 'stream'")
        if config.slots < 1:
            raise ValueError("the worker needs at least one slot (JOBTASK_WORKER_SLOTS)")
        return config
