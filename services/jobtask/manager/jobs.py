"""Job use cases, each one transaction: submit, read, list, update, and the status verbs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobtask.domain.access import may_read
from jobtask.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    each_request,
)
from jobtask.domain.query import ListQuery
from jobtask.domain.resources import JOB_ALIASES, JOB_ATTRS, Access
from jobtask.domain.rules import job_identity, submission_digest
from jobtask.domain.scripts import check_script
from jobtask.domain.statuses import JOB_TERMINAL, JobStatus, TaskStatus, check_job_move
from jobtask.domain.updates import (
    check_constraints,
    check_known,
    check_value,
    plan_update,
    resolve_aliases,
)
from jobtask.domain.uuids import JOB_INFIX, check_uuid, ordered_uuid
from jobtask.manager import lifecycle
from jobtask.manager.context import Caller, Settings, utcnow
from jobtask.observability import lifecycle as observe
from jobtask.store import feed, locks, row_cache
from jobtask.store import jobs as job_store
from jobtask.store.database import Database
from jobtask.store.grouped import GroupedTransactions
from jobtask.store.rows import JobRow, job_after, to_json
from sqlalchemy.ext.asyncio import AsyncConnection

J = JobStatus
# Statuses a person may ask for through UpdateJob's `status`; the rest follow from tasks.
_STATUS_VERBS = {
    J.CANCEL_REQUESTED: "cancel",
    J.CANCELED: "cancel",
    J.REQUEUEING: "requeue",
    J.PAUSE_REQUESTED: "pause",
    J.PAUSED: "pause",
    J.ACTIVE: "lock",
}
# Jobs that are running something and so cannot be deleted.
_BUSY = frozenset({J.ACTIVE, J.CANCEL_REQUESTED, J.PAUSE_REQUESTED})
# Jobs per BatchCreateJobs call: bounds one transaction.
MAX_BATCH_CREATE = 1000


@dataclass(frozen=True, slots=True)
class _Submission:
    """One checked CreateJob request: its spec, identity (duplicate detection) and digest
    (what a submit_id stands for)."""

    spec: dict[str, Any]
    identity: str
    digest: str
    allow_duplicate: bool


@dataclass(frozen=True)
class _Call:
    """One CreateJob (one submission) or BatchCreateJobs call, handed to the group commit."""

    caller: Caller
    submissions: list[_Submission]
    batch: bool


def check_readable(caller: Caller, job: JobRow) -> JobRow:
    if not may_read(caller, job.owner_uuid):
        raise NotFound(f"job {job.uuid} not found")
    return job


class JobManager:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # Submissions arriving together share a commit (jobtask.store.grouped), and
        # concurrent CreateJobs of one caller its statements (_submit_group).
        self._submissions: GroupedTransactions[_Call, list[JobRow]] = GroupedTransactions(
            db, self._submit_group
        )

    # -- submission ---------------------------------------------------------------------

    def _job_spec(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        spec = check_known(JOB_ATTRS, resolve_aliases(raw, JOB_ALIASES))
        for name, value in list(spec.items()):
            access = JOB_ATTRS[name].access
            if access in (Access.MANAGER, Access.STATUS):
                if value in (None, "", {}, False) or (name == "status" and value == J.QUEUED):
                    del spec[name]
                    continue
                raise InvalidArgument(name, "is set by the job manager, not on submission")
            spec[name] = check_value(name, JOB_ATTRS[name], value)
        spec["script"] = check_script(spec.get("script") or "")
        spec["runtime_constraints"] = check_constraints(
            spec.get("runtime_constraints") or {}, "runtime_constraints"
        )
        spec.setdefault("script_parameters", {})
        spec.setdefault("script_version", "")
        spec.setdefault("priority", 0)
        return spec

    def _submission(self, raw: Mapping[str, Any], allow_duplicate: bool) -> _Submission:
        spec = self._job_spec(raw)
        identity = job_identity(
            spec["script"],
            spec["script_version"],
            spec["script_parameters"],
            spec["runtime_constraints"],
        )
        digest = submission_digest({k: v for k, v in spec.items() if k != "submit_id"})
        return _Submission(spec, identity, digest, allow_duplicate)

    async def create(
        self, caller: Caller, raw: Mapping[str, Any], *, allow_duplicate: bool = False
    ) -> JobRow:
        """Submits a job seeded with its first task, unless a duplicate or an earlier
        submission with the same submit_id answers instead."""
        submission = self._submission(raw, allow_duplicate)
        return (await self._create(caller, [submission], batch=False))[0]

    async def create_many(
        self, caller: Caller, requests: Sequence[tuple[Mapping[str, Any], bool]]
    ) -> list[JobRow]:
        """BatchCreateJobs: (job, allow_duplicate) requests submitted in one transaction,
        all or none, each as `create` would in this order; the answers in request order.
        Errors name the request: requests[i].job.…"""
        if not requests:
            raise InvalidArgument("requests", "is required: at least one job")
        if len(requests) > MAX_BATCH_CREATE:
            raise InvalidArgument("requests", f"at most {MAX_BATCH_CREATE} jobs per call")
        submissions = each_request("job", requests, lambda r: self._submission(*r))
        return await self._create(caller, submissions, batch=True)

    async def _create(
        self, caller: Caller, submissions: list[_Submission], *, batch: bool
    ) -> list[JobRow]:
        call = _Call(caller, submissions, batch)
        try:
            return await self._submissions.run(call)
        except AlreadyExists:
            # Two submissions with one submit_id raced: the loser, run again, answers with
            # the winner's job (or hears of the conflict if the winner's differs).
            if not any(s.spec.get("submit_id") for s in submissions):
                raise
            return (await self.db.transact(lambda conn: self._submit_group(conn, [call])))[0]

    async def _submit_group(self, conn: AsyncConnection, calls: list[_Call]) -> list[list[JobRow]]:
        """A group's calls in order, each answered with its jobs. Consecutive CreateJobs of
        one caller are decided and written together, as one BatchCreateJobs of theirs
        would be (a later one sees an earlier one's new job, as a later transaction would):
        one INSERT of jobs and one of seeds and events for the run, not one each. A
        refusal of any of them fails the group, whose calls then run alone
        (jobtask.store.grouped), so each call still hears only its own error."""
        answers: list[list[JobRow]] = []
        i = 0
        while i < len(calls):
            call = calls[i]
            if call.batch:
                answers.append(await self._submit(conn, call.caller, call.submissions, batch=True))
                i += 1
                continue
            end = i + 1
            while end < len(calls) and not calls[end].batch and calls[end].caller == call.caller:
                end += 1
            run = [s for c in calls[i:end] for s in c.submissions]
            jobs = await self._submit(conn, call.caller, run, batch=False)
            answers.extend([job] for job in jobs)
            i = end
        return answers

    async def _submit(
        self, conn: AsyncConnection, caller: Caller, submissions: list[_Submission], *, batch: bool
    ) -> list[JobRow]:
        """Decides each submission in order -- its submit_id's earlier job, else (without
        allow_duplicate) the newest reusable duplicate, else a new job -- where a new job of
        an earlier submission counts as if it had been committed already; then inserts the
        new jobs, their events and seed tasks with one statement each."""
        submit_ids = {s.spec["submit_id"] for s in submissions if s.spec.get("submit_id")}
        by_submit_id: dict[str, JobRow | int] = dict(
            await job_store.jobs_by_submit_ids(conn, submit_ids)
        )
        wanted = {s.identity for s in submissions if not s.allow_duplicate}
        duplicates: dict[str, JobRow | int] = dict(
            await job_store.newest_duplicates(conn, caller, wanted)
        )
        now = utcnow()
        new_rows: list[dict[str, Any]] = []
        sources: list[int] = []  # the submission each new row answers
        # Per submission: the job found (a record) or the index of its row in new_rows.
        answers: list[JobRow | int] = []
        for i, s in enumerate(submissions):
            submit_id = s.spec.get("submit_id")
            earlier = by_submit_id.get(submit_id) if submit_id else None
            if earlier is not None:
                if isinstance(earlier, int):
                    digest, used_by = (
                        new_rows[earlier]["submit_digest"],
                        f"requests[{sources[earlier]}]",
                    )
                else:
                    digest, used_by = earlier.submit_digest, earlier.uuid
                if digest != s.digest:
                    field = f"requests[{i}].job.submit_id" if batch else "submit_id"
                    raise AlreadyExists(
                        f"{field} {submit_id!r} was used for a different job ({used_by})"
                    )
                answers.append(earlier)
                continue
            duplicate = None if s.allow_duplicate else duplicates.get(s.identity)
            if duplicate is not None:
                answers.append(duplicate)
                continue
            new_rows.append(self._new_job_row(caller, s, now))
            sources.append(i)
            answers.append(len(new_rows) - 1)
            duplicates[s.identity] = len(new_rows) - 1
            if submit_id:
                by_submit_id[submit_id] = len(new_rows) - 1
        created = await self._insert(conn, caller, new_rows, now)
        return [created[a] if isinstance(a, int) else a for a in answers]

    def _new_job_row(self, caller: Caller, s: _Submission, now: dt.datetime) -> dict[str, Any]:
        spec = s.spec
        return {
            "uuid": ordered_uuid(self.settings.cluster_id, JOB_INFIX),
            "owner_uuid": caller.user_uuid,
            "created_at": now,
            "modified_at": now,
            "modified_by_user_uuid": caller.user_uuid,
            "modified_by_client_uuid": caller.client_uuid,
            "submit_id": spec.get("submit_id"),
            "submit_digest": s.digest,
            "identity": s.identity,
            "priority": spec["priority"],
            "script": spec["script"],
            "script_parameters": spec["script_parameters"],
            "script_version": spec["script_version"],
            "repository": spec.get("repository"),
            "runtime_constraints": spec["runtime_constraints"],
            "status": J.QUEUED.value,
            "state": "Queued",
            "running": False,
            "n_queued": 1,
        }

    async def _insert(
        self, conn: AsyncConnection, caller: Caller, rows: list[dict[str, Any]], now: dt.datetime
    ) -> list[JobRow]:
        account = row_cache.tracked(conn)
        before = 0 if account is None else account.changes()
        jobs = await job_store.insert_jobs(conn, rows)
        job_events = [
            {
                "created_at": now,
                "job_uuid": job.uuid,
                "task_uuid": None,
                "type": feed.JOB_CHANGED,
                "payload": to_json(job),
            }
            for job in jobs
        ]
        observe.jobs_submitted(conn, jobs)
        # Seeds: "When a job starts, it is seeded with a job task with sequence=0 and an
        # empty parameters{} list" -- in the same transaction, so no job is ever without it
        # (counted by the job's n_queued=1 above). The jobs' events and the seeds' go out
        # in one statement, the jobs' first.
        seeds = [
            lifecycle.new_task_row(
                self.settings, job, status=TaskStatus.QUEUED, now=now, caller=caller
            )
            for job in jobs
        ]
        await lifecycle.insert_tasks(conn, seeds, now=now, before=job_events)
        # SQLite keeps the new jobs' rows for their claims (jobtask.store.row_cache).
        row_cache.inserted_jobs(conn, before, jobs)
        return jobs

    # -- reading ------------------------------------------------------------------------

    async def get(self, caller: Caller, uuid: str) -> JobRow:
        check_uuid(uuid, JOB_INFIX, "uuid")
        async with self.db.read() as conn:
            job = await job_store.job_by_uuid(conn, uuid)
        if job is None:
            raise NotFound(f"job {uuid} not found")
        return check_readable(caller, job)

    async def list(
        self, caller: Caller, query: ListQuery, *, queued_only: bool = False
    ) -> tuple[list[JobRow], int | None]:
        async with self.db.read() as conn:
            return await job_store.list_jobs(
                conn, caller, query, cluster_id=self.settings.cluster_id, queued_only=queued_only
            )

    async def queue_size(self) -> int:
        """Counts every queued job, readable or not (as Arvados did)."""
        async with self.db.read() as conn:
            return await job_store.count_queued(conn)

    # -- changes ------------------------------------------------------------------------

    async def update(self, caller: Caller, uuid: str, raw: Mapping[str, Any]) -> JobRow:
        check_uuid(uuid, JOB_INFIX, "uuid")
        changes = check_known(JOB_ATTRS, resolve_aliases(raw, JOB_ALIASES))
        status = changes.pop("status", None)
        for name, value in changes.items():
            changes[name] = check_value(name, JOB_ATTRS[name], value)
        if "script" in changes:
            changes["script"] = check_script(changes["script"])
        if "runtime_constraints" in changes:
            changes["runtime_constraints"] = check_constraints(
                changes["runtime_constraints"], "runtime_constraints"
            )

        async def run(conn: AsyncConnection) -> JobRow:
            now = utcnow()
            job = check_readable(caller, await locks.lock_job(conn, uuid=uuid))
            effective = plan_update(JOB_ATTRS, job, changes, locked=self._locked_for(caller, job))
            if effective:
                if {"script", "script_version", "script_parameters", "runtime_constraints"} & (
                    effective.keys()
                ):
                    merged = job_after(job, effective)
                    effective["identity"] = job_identity(
                        merged.script,
                        merged.script_version,
                        merged.script_parameters,
                        merged.runtime_constraints,
                    )
                job = await lifecycle.write_job(conn, job, effective, now=now, caller=caller)
            if status is not None and status != job.status:
                job = await self._request_status(conn, caller, job, JobStatus(status), now)
            return job

        return await self.db.transact(run)

    def _locked_for(self, caller: Caller, job: JobRow) -> bool:
        """Seeds: the system user locks a job when starting it "in order to prevent job
        attributes from being altered"; the locking user and the system still may."""
        locker = job.is_locked_by_uuid
        return locker is not None and not caller.is_system and caller.user_uuid != locker

    async def _request_status(
        self, conn: AsyncConnection, caller: Caller, job: JobRow, new: JobStatus, now: Any
    ) -> JobRow:
        current = job.status
        verb = _STATUS_VERBS.get(new)
        if new is J.QUEUED:
            verb = "resume" if current in (J.PAUSED, J.PAUSE_REQUESTED) else "requeue"
        if verb is None:
            check_job_move(current, new)
            raise FailedPrecondition(
                f"job status {new} follows from its tasks and cannot be set directly"
            )
        result: JobRow = await getattr(self, f"_{verb}")(conn, caller, job, now)
        return result

    async def delete(self, caller: Caller, uuid: str) -> JobRow:
        check_uuid(uuid, JOB_INFIX, "uuid")

        async def run(conn: AsyncConnection) -> JobRow:
            job = check_readable(caller, await locks.lock_job(conn, uuid=uuid))
            if job.status in _BUSY:
                raise FailedPrecondition(
                    f"job {uuid} is {job.status}: cancel it before deleting it"
                )
            await job_store.delete_job(conn, job.id)
            return job

        return await self.db.transact(run)

    async def _verb(self, caller: Caller, uuid: str, verb: str) -> JobRow:
        check_uuid(uuid, JOB_INFIX, "uuid")

        async def run(conn: AsyncConnection) -> JobRow:
            job = check_readable(caller, await locks.lock_job(conn, uuid=uuid))
            result: JobRow = await getattr(self, f"_{verb}")(conn, caller, job, utcnow())
            return result

        return await self.db.transact(run)

    async def cancel(self, caller: Caller, uuid: str) -> JobRow:
        return await self._verb(caller, uuid, "cancel")

    async def lock(self, caller: Caller, uuid: str) -> JobRow:
        return await self._verb(caller, uuid, "lock")

    async def requeue(self, caller: Caller, uuid: str) -> JobRow:
        return await self._verb(caller, uuid, "requeue")

    async def pause(self, caller: Caller, uuid: str) -> JobRow:
        return await self._verb(caller, uuid, "pause")

    async def resume(self, caller: Caller, uuid: str) -> JobRow:
        return await self._verb(caller, uuid, "resume")

    async def _move(
        self,
        conn: AsyncConnection,
        caller: Caller,
        job: JobRow,
        new: JobStatus,
        now: Any,
        locker: str | None = None,
    ) -> JobRow:
        return await lifecycle.move_job(
            conn, self.settings, job, new, now=now, caller=caller, locker_uuid=locker
        )

    async def _cancel(self, conn: AsyncConnection, caller: Caller, job: JobRow, now: Any) -> JobRow:
        current = job.status
        if current in (J.CANCELED, J.CANCEL_REQUESTED):
            return job  # Arvados: canceling a canceled job is a no-op
        return await self._move(conn, caller, job, J.CANCEL_REQUESTED, now)

    async def _lock(self, conn: AsyncConnection, caller: Caller, job: JobRow, now: Any) -> JobRow:
        if job.is_locked_by_uuid is not None:
            raise FailedPrecondition(f"job {job.uuid} is already locked")
        return await self._move(conn, caller, job, J.ACTIVE, now, locker=caller.user_uuid)

    async def _requeue(
        self, conn: AsyncConnection, caller: Caller, job: JobRow, now: Any
    ) -> JobRow:
        current = job.status
        if current not in JOB_TERMINAL and current is not J.PAUSED:
            check_job_move(current, J.REQUEUEING)
        return await self._move(conn, caller, job, J.REQUEUEING, now)

    async def _pause(self, conn: AsyncConnection, caller: Caller, job: JobRow, now: Any) -> JobRow:
        if job.status in (J.PAUSED, J.PAUSE_REQUESTED):
            return job
        return await self._move(conn, caller, job, J.PAUSE_REQUESTED, now)

    async def _resume(self, conn: AsyncConnection, caller: Caller, job: JobRow, now: Any) -> JobRow:
        current = job.status
        if current is J.PAUSED:
            return await self._move(conn, caller, job, J.QUEUED, now)
        if current is J.PAUSE_REQUESTED:
            target = J.ACTIVE if job.n_active else J.QUEUED
            return await self._move(conn, caller, job, target, now)
        raise FailedPrecondition(f"job {job.uuid} is {current}, not paused")
