"""A task's script as a process group: started, read, stopped.

The script leads its own session (so its process group holds everything it starts), which
lets the worker stop the whole tree with one signal, and keeps a terminal's Ctrl-C, meant
for the worker, away from it. On Linux the script also dies with its worker
(PR_SET_PDEATHSIG): a worker killed with -9 leaves no script running unsupervised, whose
task another worker is about to run again.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

READ_CHUNK = 8192
# After the script exits, how long its output pipes may stay open (held by a straggler
# that escaped the process group) before we stop reading them.
DRAIN_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1
# The descriptor the script writes its reports to ($JOBTASK_REPORT_FD).
REPORT_FD = 3


@dataclass(frozen=True)
class Exit:
    """How the process ended: an exit status, or the signal that killed it."""

    exit_code: int | None = None
    signal: int | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> Exit:
        if returncode < 0:
            return cls(signal=-returncode)
        return cls(exit_code=returncode)

    def __str__(self) -> str:
        if self.signal is not None:
            try:
                return f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                return f"killed by signal {self.signal}"
        return f"exit code {self.exit_code}"


def _child_setup(report_write: int) -> Callable[[], None]:
    """Runs in the child between fork and exec."""

    def setup() -> None:
        # A fixed, single-digit descriptor: `>&"$JOBTASK_REPORT_FD"` in dash (/bin/sh)
        # accepts only 0-9. os.dup2 makes it inheritable; the original closes at exec.
        if report_write == REPORT_FD:
            os.set_inheritable(REPORT_FD, True)  # dup2 onto itself would keep close-on-exec
        else:
            os.dup2(report_write, REPORT_FD)
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return setup


async def _pump_text(stream: asyncio.StreamReader, sink: Callable[[str], None]) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(READ_CHUNK):
        sink(decoder.decode(chunk))
    sink(decoder.decode(b"", final=True))


async def _pump_lines(stream: asyncio.StreamReader, sink: Callable[[str], None]) -> None:
    while line := await stream.readline():
        sink(line.decode("utf-8", errors="replace"))


class ScriptProcess:
    """One running script. `output` receives stdout and stderr text as it comes; `report`
    receives each line written to the report descriptor ($JOBTASK_REPORT_FD)."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        readers: list[asyncio.Task[None]],
        report_pipe: asyncio.BaseTransport,
    ):
        self._proc = proc
        self._readers = readers
        self._report_pipe = report_pipe
        self._stopping: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        output: Callable[[str], None],
        report: Callable[[str], None],
    ) -> ScriptProcess:
        report_read, report_write = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**env, "JOBTASK_REPORT_FD": str(REPORT_FD)},
                cwd=cwd,
                # Python and gRPC open every descriptor close-on-exec, so only stdio and
                # the report descriptor reach the script; closing the rest in the child
                # would happen after _child_setup and close REPORT_FD too.
                close_fds=False,
                start_new_session=True,
                preexec_fn=_child_setup(report_write),
            )
        except BaseException:
            os.close(report_read)
            raise
        finally:
            # The child has its copy: ours must go, or the pipe never reaches end-of-file.
            os.close(report_write)
        loop = asyncio.get_running_loop()
        report_stream = asyncio.StreamReader(limit=1024 * 1024)
        report_pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(report_stream), os.fdopen(report_read, "rb", 0)
        )
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(_pump_text(proc.stdout, output)),
            asyncio.create_task(_pump_text(proc.stderr, output)),
            asyncio.create_task(_pump_lines(report_stream, report)),
        ]
        return cls(proc, readers, report_pipe)

    async def wait(self) -> Exit:
        """Waits for the script to end and its pipes to be read out; then kills whatever
        it left behind in its process group."""
        try:
            returncode = await self._proc.wait()
            self.signal_group(signal.SIGKILL)
            _, pending = await asyncio.wait(self._readers, timeout=DRAIN_SECONDS)
            for reader in pending:
                reader.cancel()
            for reader in self._readers:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if self._stopping is not None:
                self._stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._stopping
            return Exit.from_returncode(returncode)
        finally:
            # Closed here, not only at end-of-file: a reader given up on (or a wait
            # cancelled) left the report pipe open, and its descriptor was then closed by
            # the garbage collector with a ResourceWarning, in whatever ran at the time (a
            # CI run failed a later test with it).
            self._report_pipe.close()

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def terminate(self, grace: float = 2.0) -> None:
        """Stops the process group politely: SIGINT, then SIGTERM after `grace` seconds,
        then SIGKILL after `grace` more. Returns at once; `wait` reports the exit."""
        if self._stopping is None and self.running:
            self._stopping = asyncio.create_task(self._escalate(grace))

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)

    async def _escalate(self, grace: float) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.signal_group(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), grace)
                return
        self.signal_group(signal.SIGKILL)
