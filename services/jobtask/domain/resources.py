"""The attributes of the Job and JobTask resources: their types and who may set them.

One table per resource drives input validation (unknown attribute, read-only attribute),
filters, order and select, so the rules are written once for gRPC and REST alike.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    HASH = "hash"
    STATUS = "status"


class Access(enum.Enum):
    # Settable by callers at any time (a locked job's definition excepted).
    CLIENT = "client"
    # Settable at creation only.
    CREATE = "create"
    # Settable by the task's own process, the manager and admins: progress, success, output.
    PROCESS = "process"
    # Moved through the status machine.
    STATUS = "status"
    # Set by the manager alone; a caller sending the current value back is ignored.
    MANAGER = "manager"
    # Always ignored on input (kind, etag, href).
    IGNORED = "ignored"


@dataclass(frozen=True)
class Attr:
    kind: Kind
    access: Access
    # Part of a job's definition: frozen once the job is locked.
    definition: bool = False
    # Stored in a column of its own (filterable, orderable).
    column: bool = True


S, X, I, F, B, D, H, ST = (
    Kind.STRING,
    Kind.TEXT,
    Kind.INTEGER,
    Kind.FLOAT,
    Kind.BOOLEAN,
    Kind.DATETIME,
    Kind.HASH,
    Kind.STATUS,
)
C, CR, P, STA, M, IG = (
    Access.CLIENT,
    Access.CREATE,
    Access.PROCESS,
    Access.STATUS,
    Access.MANAGER,
    Access.IGNORED,
)

_COMMON: dict[str, Attr] = {
    "uuid": Attr(S, M),
    "owner_uuid": Attr(S, M),
    "created_at": Attr(D, M),
    "modified_at": Attr(D, M),
    "modified_by_client_uuid": Attr(S, M),
    "modified_by_user_uuid": Attr(S, M),
    "etag": Attr(S, IG, column=False),
    "kind": Attr(S, IG, column=False),
    "href": Attr(S, IG, column=False),
}

JOB_ATTRS: dict[str, Attr] = {
    **_COMMON,
    "submit_id": Attr(S, CR),
    "priority": Attr(I, C),
    "script": Attr(S, C, definition=True),
    "script_parameters": Attr(H, C, definition=True),
    "script_version": Attr(S, C, definition=True),
    "repository": Attr(S, C, definition=True),
    "runtime_constraints": Attr(H, C, definition=True),
    "cancelled_by_client_uuid": Attr(S, M),
    "cancelled_by_user_uuid": Attr(S, M),
    "cancelled_at": Attr(D, M),
    "started_at": Attr(D, M),
    "finished_at": Attr(D, M),
    "running": Attr(B, M),
    "success": Attr(B, M),
    "is_locked_by_uuid": Attr(S, M),
    "output": Attr(X, M),
    "log": Attr(X, M),
    "tasks_summary": Attr(H, M, column=False),
    "status": Attr(ST, STA),
    "state": Attr(S, M),
}

# Input spellings of the seeds, mapped to the attribute they stand for.
JOB_ALIASES = {"script_name": "script", "resource_limits": "runtime_constraints"}

TASK_ATTRS: dict[str, Attr] = {
    **_COMMON,
    "job_uuid": Attr(S, CR),
    "sequence": Attr(I, CR),
    "qsequence": Attr(I, M),
    "parameters": Attr(H, CR),
    "output": Attr(X, P),
    "progress": Attr(F, P),
    "success": Attr(B, P),
    "created_by_job_task_uuid": Attr(S, CR),
    "runtime_constraints": Attr(H, CR),
    "failed_count": Attr(I, M),
    "failed_at": Attr(D, M),
    "failed_log": Attr(X, M),
    "log": Attr(X, M),
    "started_at": Attr(D, M),
    "finished_at": Attr(D, M),
    "status": Attr(ST, STA),
    "worker_id": Attr(S, M),
    "node_name": Attr(S, M),
    "attempt": Attr(I, M),
}

TASK_ALIASES: dict[str, str] = {}

CONSTRAINT_KEYS = (
    "min_nodes",
    "max_nodes",
    "max_tasks_per_node",
    "min_ram_per_task",
    "min_ram_per_node",
)

# Bounds on stored sizes, so one request cannot bloat the database or the streams.
MAX_HASH_BYTES = 256 * 1024
MAX_TEXT_BYTES = 4 * 1024 * 1024
MAX_STRING_BYTES = 4096
