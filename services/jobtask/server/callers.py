"""Who is calling: resolved from the request's metadata once per call.

Until API tokens exist (the auth issue), a call without a token acts as the cluster's
admin user; a call bearing a claimed task's own token acts as that task's process, which is
how UpdateTask is tied to the lease.
"""

from __future__ import annotations

from typing import Any

import grpc
from jobtask.domain.statuses import TaskStatus
from jobtask.manager.claims import token_digest
from jobtask.manager.context import Caller, Settings
from jobtask.store.database import Database
from jobtask.store.schema import job_tasks
from sqlalchemy import select


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() in ("bearer", "oauth2") and token:
                return token.strip()
    return None


def admin_user(settings: Settings) -> str:
    return f"{settings.cluster_id}-tpzed-000000000000001"


class CallerResolver:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def __call__(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        token = bearer_token(context)
        if token:
            async with self.db.read() as conn:
                row = (
                    await conn.execute(
                        select(job_tasks.c.uuid, job_tasks.c.owner_uuid).where(
                            job_tasks.c.token_digest == token_digest(token),
                            job_tasks.c.status == TaskStatus.ACTIVE.value,
                        )
                    )
                ).first()
            if row is not None:
                return Caller(user_uuid=row.owner_uuid, task_uuid=row.uuid)
        return Caller(user_uuid=admin_user(self.settings), is_admin=True)
