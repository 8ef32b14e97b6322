"""How the TypeScript client reaches the services. Over TLS: given $JOBTASK_TLS_CA it dials
`host:port` addresses with https and verifies the services by that CA; without it, a TLS-only
service refuses it. A list of replicas (which the Python SDK accepts) is refused by name."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.polyglot.conftest import ROOT_TOKEN, NodeBuild, free_port, jobtask_command
from tests.tls import self_signed

SCRIPT = """
import { JobtaskClient } from "%s";
const client = JobtaskClient.connect();
try {
  const answer = await client.jobs.queueSize({});
  console.log(`queue size ${answer.queueSize}`);
} finally {
  client.close();
}
"""


async def _node(build: NodeBuild, script: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        build.node,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_the_node_client_verifies_tls_services_by_the_given_ca(
    node_build: NodeBuild, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    jobs, tasks = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "up.log"
    env = {**os.environ, "JOBTASK_SYSTEM_ROOT_TOKEN": ROOT_TOKEN, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as out:
        up = await asyncio.create_subprocess_exec(
            *[
                *jobtask_command(),
                "up",
                "--no-gateway",
                "--database-url",
                f"sqlite:///{tmp_path / 'jobtask.sqlite3'}",
                "--jobs-listen",
                jobs,
                "--tasks-listen",
                tasks,
                "--grpc-tls-cert",
                str(cert),
                "--grpc-tls-key",
                str(key),
            ],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        for _ in range(600):
            if "press Ctrl-C to stop" in log_path.read_text(errors="replace"):
                break
            assert up.returncode is None, log_path.read_text(errors="replace")
            await asyncio.sleep(0.05)
        script = tmp_path / "queue-size.mjs"
        script.write_text(SCRIPT % (node_build.dir / "dist" / "src" / "index.js").as_uri())
        client_env = {
            **os.environ,
            "JOBTASK_JOBS_ADDR": jobs,
            "JOBTASK_TASKS_ADDR": tasks,
            "JOBTASK_TOKEN": ROOT_TOKEN,
        }
        client_env.pop("JOBTASK_TLS_CA", None)
        code, out_text = await _node(
            node_build, script, {**client_env, "JOBTASK_TLS_CA": str(cert)}
        )
        assert code == 0 and "queue size 0" in out_text, out_text
        code, out_text = await _node(node_build, script, client_env)
        assert code != 0 and "queue size" not in out_text, out_text
    finally:
        up.terminate()
        await asyncio.wait_for(up.wait(), 15)


async def test_the_node_client_refuses_a_list_of_replicas_by_name(
    node_build: NodeBuild, tmp_path: Path
) -> None:
    script = tmp_path / "queue-size.mjs"
    script.write_text(SCRIPT % (node_build.dir / "dist" / "src" / "index.js").as_uri())
    env = {**os.environ, "JOBTASK_JOBS_ADDR": "127.0.0.1:1,127.0.0.1:2", "JOBTASK_TOKEN": "t"}
    code, out = await _node(node_build, script, env)
    assert code != 0 and "JOBTASK_JOBS_ADDR=127.0.0.1:1,127.0.0.1:2" in out, out
    assert "takes one address" in out, out
