"""The REST gateway in its own process, in front of a running bench.server.

python -m bench.gateway JOBS_ADDR TASKS_ADDR      # prints {"port": p}
"""

from __future__ import annotations

import asyncio
import logging
import sys

from jobtask.gateway.server import serve_gateway

from bench.harness import announce, wait_for_stdin_close


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    handle = await serve_gateway("127.0.0.1:0", sys.argv[1], sys.argv[2])
    announce(port=handle.port)
    try:
        await wait_for_stdin_close()
    finally:
        await handle.stop()


if __name__ == "__main__":
    asyncio.run(main())
