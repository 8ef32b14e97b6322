"""`jobtask token create|list|revoke`, straight on the database (no token needed)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import grpc
import pytest
from jobtask.cli.tokens import add_token_commands, parse_expires, parse_scopes
from jobtask.domain.scopes import WORKER_SCOPES
from jobtask.store import migrate
from jobtask.store.database import Database
from jobtask.v1 import job_service_pb2, task_service_pb2
from jobtask.v1.job_service_pb2_grpc import JobServiceStub
from jobtask.v1.task_service_pb2_grpc import TaskServiceStub

from tests.auth.conftest import code_of
from tests.conftest import start_cluster, token_channel
from tests.core.helpers import create_job, worker


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jobtask")
    add_token_commands(top.add_subparsers(dest="command", required=True))
    return top


async def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> str:
    args = parser().parse_args(["token", argv[0], "--database-url", url, *argv[1:]])
    assert await args.run_server(args) == 0
    return capsys.readouterr().out


async def new_database(tmp_path: Path) -> str:
    """A migrated SQLite file, as `jobtask up` or `jobtask db upgrade` leaves one."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    db = Database(url)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()
    return url


async def test_token_commands_refuse_to_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run where no database is, `token create` says so instead of making an empty one (that a
    running `jobtask up` elsewhere would never read)."""
    missing = tmp_path / "cli.sqlite3"
    args = parser().parse_args(["token", "create", "--database-url", f"sqlite:///{missing}"])
    with pytest.raises(ValueError, match="no database at"):
        await args.run_server(args)
    assert not missing.exists()


async def test_token_commands_say_which_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await new_database(tmp_path)
    args = parser().parse_args(["token", "create", "--database-url", url])
    assert await args.run_server(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("v2/")
    assert f"database: {url}" in err


async def test_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = await new_database(tmp_path)
    admin = (await run(capsys, url, "create")).strip()
    worker_token = json.loads(await run(capsys, url, "create", "--worker", "--json"))
    assert worker_token["scopes"] == list(WORKER_SCOPES)
    reader = (
        await run(
            capsys,
            url,
            "create",
            "--user",
            "zzzzz-tpzed-a11ce0000000000",
            "--scopes",
            "GET /arvados/v1/jobs",
            "GET /arvados/v1/jobs/",
            "--expires",
            "1d",
        )
    ).strip()
    listing = await run(capsys, url, "list")
    assert listing.count("zzzzz-gj3su-") == 3
    for token in (admin, worker_token["api_token"], reader):
        assert token.rsplit("/", 1)[1] not in listing

    cluster = await start_cluster(url, root_token=None)
    channels: list[grpc.aio.Channel] = []

    def channel(addr: str, token: str) -> grpc.aio.Channel:
        channels.append(token_channel(addr, token))
        return channels[-1]

    try:
        as_admin = JobServiceStub(channel(cluster.jobs_addr, admin))
        as_reader = JobServiceStub(channel(cluster.jobs_addr, reader))
        created = await as_admin.CreateJob(create_job(script="cli.py"))
        # The reader is another user, with read scopes: the admin's job is not hers to see,
        # and canceling is outside her scopes.
        assert not (await as_reader.ListJobs(job_service_pb2.ListJobsRequest())).items
        code, _ = await code_of(
            as_reader.CancelJob(job_service_pb2.CancelJobRequest(uuid=created.uuid))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        # The worker token claims, and does nothing else.
        as_worker = TaskServiceStub(channel(cluster.tasks_addr, worker_token["api_token"]))
        claim = task_service_pb2.ClaimTaskRequest(worker=worker())
        assert len((await as_worker.ClaimTask(claim)).assignments) == 1
        code, _ = await code_of(as_worker.ListTasks(task_service_pb2.ListTasksRequest()))
        assert code == grpc.StatusCode.PERMISSION_DENIED

        assert worker_token["uuid"] in await run(capsys, url, "revoke", worker_token["uuid"])
        code, _ = await code_of(as_worker.ClaimTask(claim))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "REVOKED" in await run(capsys, url, "list", "--all")
        assert worker_token["uuid"] not in await run(capsys, url, "list")
    finally:
        for c in channels:
            await c.close(None)
        await cluster.close()


def test_parse_helpers() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert parse_expires("2d", now) == now + dt.timedelta(days=2)
    assert parse_expires("90m", now) == now + dt.timedelta(minutes=90)
    assert parse_expires("2031-01-01T00:00:00Z", now) == dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="--expires"):
        parse_expires("tomorrow", now)
    assert parse_scopes(None) is None
    assert parse_scopes([]) == []
    assert parse_scopes(['["all"]']) == ["all"]
    assert parse_scopes(["GET /arvados/v1/jobs"]) == ["GET /arvados/v1/jobs"]
