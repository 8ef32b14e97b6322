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


STR, TXT, INT, FLT, BOOL, TIME, HASH, STAT = (
    Kind.STRING,
    Kind.TEXT,
    Kind.INTEGER,
    Kind.FLOAT,
    Kind.BOOLEAN,
    Kind.DATETIME,
    Kind.HASH,
    Kind.STATUS,
)
CLI, CRE, PRO, STA, MGR, IGN = (
    Access.CLIENT,
    Access.CREATE,
    Access.PROCESS,
    Access.STATUS,
    Access.MANAGER,
    Access.IGNORED,
)

_COMMON: dict[str, Attr] = {
    "uuid": Attr(STR, MGR),
    "owner_uuid": Attr(STR, MGR),
    # Arvados drops these four from every create and update body, whatever their value
    # (resource_attrs): a whole record read before someone else's change still saves.
    "created_at": Attr(TIME, IGN),
    "modified_at": Attr(TIME, IGN),
    "modified_by_client_uuid": Attr(STR, IGN),
    "modified_by_user_uuid": Attr(STR, IGN),
    "etag": Attr(STR, IGN, column=False),
    "kind": Attr(STR, IGN, column=False),
    "href": Attr(STR, IGN, column=False),
}

JOB_ATTRS: dict[str, Attr] = {
    **_COMMON,
    "submit_id": Attr(STR, CRE),
    "priority": Attr(INT, CLI),
    "script": Attr(STR, CLI, definition=True),
    "script_parameters": Attr(HASH, CLI, definition=True),
    "script_version": Attr(STR, CLI, definition=True),
    "repository": Attr(STR, CLI, definition=True),
    "runtime_constraints": Attr(HASH, CLI, definition=True),
    "cancelled_by_client_uuid": Attr(STR, MGR),
    "cancelled_by_user_uuid": Attr(STR, MGR),
    "cancelled_at": Attr(TIME, MGR),
    "started_at": Attr(TIME, MGR),
    "finished_at": Attr(TIME, MGR),
    "running": Attr(BOOL, MGR),
    "success": Attr(BOOL, MGR),
    "is_locked_by_uuid": Attr(STR, MGR),
    "output": Attr(TXT, MGR),
    "log": Attr(TXT, MGR),
    "tasks_summary": Attr(HASH, MGR, column=False),
    "status": Attr(STAT, STA),
    "state": Attr(STR, MGR),
    "failure_reason": Attr(HASH, MGR, column=False),
    "blocklist": Attr(HASH, MGR, column=False),
}

# Input spellings of the seeds, mapped to the attribute they stand for.
JOB_ALIASES = {"script_name": "script", "resource_limits": "runtime_constraints"}

TASK_ATTRS: dict[str, Attr] = {
    **_COMMON,
    "job_uuid": Attr(STR, CRE),
    "sequence": Attr(INT, CRE),
    "qsequence": Attr(INT, MGR),
    "parameters": Attr(HASH, CLI),
    "output": Attr(TXT, PRO),
    "progress": Attr(FLT, PRO),
    "success": Attr(BOOL, PRO),
    "created_by_job_task_uuid": Attr(STR, CRE),
    "runtime_constraints": Attr(HASH, CRE),
    "failed_count": Attr(INT, MGR),
    "failed_at": Attr(TIME, MGR),
    "failed_log": Attr(TXT, MGR),
    "log": Attr(TXT, MGR),
    "started_at": Attr(TIME, MGR),
    "finished_at": Attr(TIME, MGR),
    "status": Attr(STAT, STA),
    "worker_id": Attr(STR, MGR),
    "node_name": Attr(STR, MGR),
    "attempt": Attr(INT, MGR),
    "runnable_after": Attr(TIME, MGR),
    "failure_reason": Attr(HASH, MGR, column=False),
}

TASK_ALIASES: dict[str, str] = {}

# Where these tables deviate from the seeds, and why: docs/arvados-attributes.md (keep the
# two in step).
# A manager-set or creation-only attribute sent back unchanged (as it was read) is ignored,
# so whole records round-trip; a changed one is refused naming it (domain/updates.py).

RESOURCE_KEYS = (
    "min_nodes",
    "max_nodes",
    "max_tasks_per_node",
    "min_ram_per_task",
    "min_ram_per_node",
)
# Scheduling keys of runtime_constraints (jobtask.domain.scheduling).
SCHEDULING_KEYS = (
    "retry_backoff_base_seconds",
    "retry_backoff_max_seconds",
    "blocklist_threshold",
)
CONSTRAINT_KEYS = RESOURCE_KEYS + SCHEDULING_KEYS

# Bounds on stored sizes, so one request cannot bloat the database or the streams.
MAX_HASH_BYTES = 256 * 1024
MAX_TEXT_BYTES = 4 * 1024 * 1024
MAX_STRING_BYTES = 4096
