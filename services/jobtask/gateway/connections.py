"""The gateway's guard against half-open and piled-up connections (issue 13, item 3).

uvicorn has a keep-alive idle timeout but no limit on how long a client may take to send a
request's header, and no limit on how many connections it holds: a few hundred clients that
send half a header and wait use up the process's descriptors, and JobService and TaskService
(in the same `jobtask up` process) stop answering. GuardedH11Protocol, uvicorn's h11 protocol
with both limits, closes a connection whose request header is not complete within the header
timeout, and closes a new connection at once while the gateway holds its maximum. Each
condition is logged once per period with a count, never once per connection; asyncio's own
"accept() out of system resource" line is throttled the same way."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "ConnectionLimits",
    "guarded_protocol",
    "throttle_accept_errors",
]

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 5
DEFAULT_MAX_CONNECTIONS = 1000
LOG_PERIOD = 60.0


def descriptor_limit() -> int:
    """The process's soft RLIMIT_NOFILE (a large number when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY and soft > 0 else 1 << 20


class Throttled:
    """Logs a condition at most once per period, with how often it happened since."""

    def __init__(self, message: str, period: float = LOG_PERIOD) -> None:
        self.message = message
        self.period = period
        self.count = 0
        self.last = -float("inf")

    def hit(self, *args: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.period:
            if self.last == -float("inf"):
                log.warning(self.message, *args)
            else:
                since = " (%d times in the last %.0f s)"
                log.warning(self.message + since, *args, self.count, now - self.last)
            self.last, self.count = now, 0


@dataclass
class ConnectionLimits:
    """header_timeout: seconds a client has for a whole request header, from the connection
    (or the end of the previous response); max_connections: connections held at once, at
    most half of RLIMIT_NOFILE so the gRPC services of the same process keep theirs."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    full: Throttled = field(init=False)
    slow: Throttled = field(init=False)

    def __post_init__(self) -> None:
        if self.header_timeout <= 0:
            raise ValueError("the gateway header timeout must be positive")
        if self.max_connections <= 0:
            raise ValueError("the gateway connection limit must be positive")
        self.max_connections = min(self.max_connections, max(1, descriptor_limit() // 2))
        self.full = Throttled("gateway: connection limit (%d) reached; closing new connections")
        self.slow = Throttled("gateway: closed connections that sent no whole header in %g s")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection limit."""

    limits = ConnectionLimits()

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.limits
        if len(self.connections) >= limits.max_connections:
            self.transport = transport
            transport.abort()  # closed at once: neither held nor read
            limits.full.hit(limits.max_connections)
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a whole request header arrived
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        # The next request's header has its own deadline (the idle timeout, shorter, still
        # closes a connection that sends nothing at all).
        if not self.transport.is_closing():
            self._arm_header_timer()
        super().on_response_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.limits.slow.hit(self.limits.header_timeout)
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn's Config(http=...) takes, bound to `limits`."""
    return type("GatewayProtocol", (GuardedH11Protocol,), {"limits": limits})


class _AcceptErrors(logging.Filter):
    """Lets asyncio's "socket.accept() out of system resource" through once per period."""

    def __init__(self) -> None:
        super().__init__()
        self.throttle = Throttled("gateway: accept() failed, out of descriptors")

    def filter(self, record: logging.LogRecord) -> bool:
        if "out of system resource" not in str(record.msg):
            return True
        self.throttle.hit()
        return False


_accept_filter = _AcceptErrors()


def throttle_accept_errors() -> None:
    """Installs the accept-error throttle on asyncio's logger (once per process)."""
    logger = logging.getLogger("asyncio")
    if _accept_filter not in logger.filters:
        logger.addFilter(_accept_filter)
