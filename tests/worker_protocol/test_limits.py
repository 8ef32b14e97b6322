"""The seeds' five resource limits, with several workers on two node names."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

from jobtask.domain.limits import Limits
from jobtask.store.rows import task_from_json
from jobtask.store.schema import events, workers
from jobtask.v1 import job_pb2
from sqlalchemy import select

from tests.conftest import Cluster
from tests.core.helpers import add_task, create_job, get_job, job_status
from tests.polling import DEADLINE, eventually
from tests.worker_protocol.conftest import FAR
from tests.worker_protocol.helpers import Run, claim_as


async def job_with_tasks(cluster: Cluster, n: int, **limits: int) -> job_pb2.Job:
    """A job whose n tasks (the seed task and n - 1 more) may all run at once."""
    job = await cluster.jobs.CreateJob(
        create_job(script="work.py", runtime_constraints=limits, script_parameters={"n": n})
    )
    for i in range(n - 1):
        await add_task(cluster, job.uuid, sequence=0, parameters={"i": i})
    answer: job_pb2.Job = job
    return answer


async def finish(cluster: Cluster, assignment: Any) -> None:
    await Run(cluster, assignment).exit(progress=1.0, success=True)


async def test_max_tasks_per_node(cluster: Cluster) -> None:
    await job_with_tasks(cluster, 4, max_tasks_per_node=1)
    first = await claim_as(cluster, "w1", "nodeA")
    assert first is not None
    assert await claim_as(cluster, "w2", "nodeA") is None
    assert await claim_as(cluster, "w3", "nodeB") is not None
    assert await claim_as(cluster, "w4", "nodeB") is None
    await finish(cluster, first)
    assert await claim_as(cluster, "w2", "nodeA") is not None


async def test_max_nodes(cluster: Cluster) -> None:
    await job_with_tasks(cluster, 4, max_nodes=1)
    first = await claim_as(cluster, "w1", "nodeA")
    assert first is not None
    assert await claim_as(cluster, "w3", "nodeB") is None
    assert await claim_as(cluster, "w2", "nodeA") is not None  # same node: no new node
    # Other jobs are not held up by this one's limit.
    other = await cluster.jobs.CreateJob(create_job(script="other.py"))
    got = await claim_as(cluster, "w3", "nodeB")
    assert got is not None and got.job.uuid == other.uuid


async def test_min_ram_per_task_reserves_memory_on_the_node(cluster: Cluster) -> None:
    await job_with_tasks(cluster, 4, min_ram_per_task=1000)
    assert await claim_as(cluster, "w1", "nodeA", ram_kib=2500) is not None
    assert await claim_as(cluster, "w2", "nodeA", ram_kib=2500) is not None
    assert await claim_as(cluster, "w5", "nodeA", ram_kib=2500) is None  # 500 KiB left
    assert await claim_as(cluster, "w3", "nodeB", ram_kib=800) is None  # too small
    assert await claim_as(cluster, "w4", "nodeB") is None  # reports no memory


async def test_min_ram_per_node_and_task_overrides(cluster: Cluster) -> None:
    job = await cluster.jobs.CreateJob(
        create_job(script="big.py", runtime_constraints={"min_ram_per_node": 1000})
    )
    small = await add_task(
        cluster, job.uuid, sequence=0, runtime_constraints={"min_ram_per_node": 100}
    )
    got = await claim_as(cluster, "w3", "nodeB", ram_kib=500)
    assert got is not None and got.task.uuid == small.uuid  # its own limit wins
    assert await claim_as(cluster, "w4", "nodeB", ram_kib=500) is None
    big = await claim_as(cluster, "w1", "nodeA", ram_kib=4000)
    assert big is not None and big.task.uuid != small.uuid


async def test_min_nodes_waits_for_enough_live_nodes(cluster: Cluster) -> None:
    job = await job_with_tasks(cluster, 3, min_nodes=2)
    assert await claim_as(cluster, "w1", "nodeA") is None
    assert await claim_as(cluster, "w2", "nodeA") is None  # still one node
    assert (await get_job(cluster, job.uuid)).status == job_status("queued")
    # A worker on a second node: now the job starts, on both nodes.
    assert await claim_as(cluster, "w3", "nodeB") is not None
    assert await claim_as(cluster, "w1", "nodeA") is not None


async def _worker_known(cluster: Cluster, worker_id: str) -> bool:
    async with cluster.services.core.db.read() as conn:
        found = await conn.execute(
            select(workers.c.worker_id).where(workers.c.worker_id == worker_id)
        )
        return found.first() is not None


async def test_a_long_poll_claim_wakes_when_min_nodes_is_met(signalled: Cluster) -> None:
    """The waiting claim returns a task once a second node's claim meets min_nodes, long
    before its own wait ends: woken by that claim's change, not by its timer."""
    cluster = signalled
    await job_with_tasks(cluster, 2, min_nodes=2)
    waiting = asyncio.create_task(claim_as(cluster, "w1", "nodeA", wait=FAR))
    # Its first claim recorded nodeA's worker (committed) before the second node claims: a
    # fixed pause was too short on a loaded machine, and the second claim then saw one node.
    await eventually(lambda: _worker_known(cluster, "w1"))
    assert not waiting.done()
    assert await claim_as(cluster, "w3", "nodeB") is not None
    assert await asyncio.wait_for(waiting, DEADLINE) is not None


async def test_limits_hold_under_four_concurrent_workers(cluster: Cluster) -> None:
    ram = 2500
    per_node = await job_with_tasks(cluster, 6, max_tasks_per_node=1)
    one_node = await job_with_tasks(cluster, 6, max_nodes=1)
    memory = await job_with_tasks(cluster, 6, min_ram_per_task=1000)
    jobs = [per_node.uuid, one_node.uuid, memory.uuid]

    async def all_done() -> bool:
        states = [(await get_job(cluster, j)).status for j in jobs]
        return all(s == job_status("completed") for s in states)

    async def work(worker_id: str, node: str) -> None:
        rng = random.Random(worker_id)
        while not await all_done():
            a = await claim_as(cluster, worker_id, node, ram_kib=ram, wait=0.2)
            if a is None:
                continue
            run = Run(cluster, a)
            await run.acked(await run.send(progress=0.5))
            await asyncio.sleep(rng.uniform(0.01, 0.08))
            await run.exit(progress=1.0, success=True)

    workers = [("w1", "nodeA"), ("w2", "nodeA"), ("w3", "nodeB"), ("w4", "nodeB")]
    await asyncio.wait_for(asyncio.gather(*(work(w, n) for w, n in workers)), 60)

    # Replay the feed in commit order: at no point was a limit exceeded.
    async with cluster.services.core.db.read() as conn:
        rows = list(
            await conn.execute(
                select(events.c.job_uuid, events.c.payload)
                .where(events.c.type == "task_changed")
                .order_by(events.c.seq)
            )
        )
    active: dict[str, tuple[str, str]] = {}  # task uuid -> (job uuid, node)
    peak_per_node = peak_nodes = peak_ram = 0
    for job_uuid, payload in rows:
        task = task_from_json(payload)
        if task.status == "active":
            active[task.uuid] = (job_uuid, task.node_name or "")
        else:
            active.pop(task.uuid, None)
        per_job_node: dict[tuple[str, str], int] = defaultdict(int)
        for j, n in active.values():
            per_job_node[(j, n)] += 1
        peak_per_node = max(
            [peak_per_node] + [c for (j, _), c in per_job_node.items() if j == per_node.uuid]
        )
        peak_nodes = max(peak_nodes, len({n for j, n in active.values() if j == one_node.uuid}))
        for node in ("nodeA", "nodeB"):
            reserved = sum(
                Limits(min_ram_per_task=1000).task_ram
                for j, n in active.values()
                if j == memory.uuid and n == node
            )
            peak_ram = max(peak_ram, reserved)
    assert peak_per_node == 1
    assert peak_nodes == 1
    assert 1000 <= peak_ram <= ram
