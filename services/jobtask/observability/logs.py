"""Log output: text (the default) or one JSON object per line, lifecycle events, request ids.

`configure()` is called once by the CLI. Lifecycle events go to the `jobtask.events` logger
with their fields in `extra={"fields": {...}}`: the JSON formatter puts them at the top
level, the text formatter after the message as `key=value`. Access lines go to
`jobtask.access` the same way. No field ever holds a token."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

__all__ = [
    "ACCESS",
    "CALLER_KEY",
    "EVENTS",
    "REQUEST_ID_KEY",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "emit",
    "given_request_id",
    "new_request_id",
    "refused_token",
    "request_id",
]

EVENTS = logging.getLogger("jobtask.events")
ACCESS = logging.getLogger("jobtask.access")
FORMATS = ("text", "json")
# gRPC trailing metadata in which the services name an authenticated call's user uuid (never
# a token), so the gateway's access line for the HTTP request can name its caller too.
CALLER_KEY = "x-jobtask-caller"
# The id of the HTTP request (or gRPC call) being served, for access lines and events.
request_id: ContextVar[str | None] = ContextVar("jobtask_request_id", default=None)
# gRPC metadata with a call's request id: the gateway forwards its HTTP request's in the
# call's, and the services answer each call's (the caller's, else one made) in its trailers.
REQUEST_ID_KEY = "x-request-id"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_REQUEST_ID = 1024
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord attributes that are not the caller's `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    out: dict[str, Any] = dict(fields) if isinstance(fields, dict) else {}
    rid = request_id.get()
    if rid and "request_id" not in out:
        out["request_id"] = rid
    return out


class JsonFormatter(logging.Formatter):
    """time, level, logger, event (the message), then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return line


def configure(level: int, log_format: str | None = None) -> None:
    """Root logging on stderr in `log_format` ($JOBTASK_LOG_FORMAT; text or json). gRPC's
    C-core logging is set where the CLI starts (jobtask.cli), before grpc is imported."""
    chosen = (log_format or os.environ.get("JOBTASK_LOG_FORMAT") or "text").lower()
    if chosen not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {chosen!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def new_request_id() -> str:
    """`req-` + 20 base-36 characters, the form Arvados's clients and servers generate."""
    return "req-" + "".join(secrets.choice(_BASE36) for _ in range(20))


def given_request_id(value: object) -> str | None:
    """A client's request id if it is 1..1024 printable ASCII characters (it goes on to gRPC
    metadata, which allows nothing else), else None."""
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_REQUEST_ID:
        return None
    return value if all(" " <= ch <= "~" for ch in value) else None


def emit(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One lifecycle event (`job_submitted`, `task_claimed`, ...)."""
    if EVENTS.isEnabledFor(level):
        EVENTS.log(
            level, event, extra={"fields": {k: v for k, v in fields.items() if v is not None}}
        )


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token in logs: 8 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


class _RefusalLog:
    """One line per refused token per REPEAT_SECONDS, not one per retry."""

    REPEAT_SECONDS = 300.0
    MAX_REMEMBERED = 4096

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, method: str, token: str | None) -> None:
        key = fingerprint(token) if token else "-"
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.REPEAT_SECONDS:
            return
        if len(self._last) >= self.MAX_REMEMBERED:
            self._last.clear()
        self._last[key] = now
        reason = "invalid token" if token else "no token"
        fields = {"method": method, "token_sha256_prefix": key if token else None}
        logging.getLogger("jobtask.server.auth").warning(
            "refused a call: %s (repeats are not logged for %d s)",
            reason,
            int(self.REPEAT_SECONDS),
            extra={"fields": {k: v for k, v in fields.items() if v is not None}},
        )


refused_token = _RefusalLog()
