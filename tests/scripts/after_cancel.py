#!/usr/bin/env python3
"""Waits to be canceled (the worker interrupts it), then calls the API with the task's token and
writes what it was told to the file JOB_PARAMETER_OUT."""

import os
import signal
import time

from jobtask.sdk import Client
from jobtask.sdk.errors import JobtaskError

stopping = False


def on_term(signum: int, frame: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
print("waiting to be canceled", flush=True)
while not stopping:
    time.sleep(0.05)
with Client.connect(timeout=10) as client:
    try:
        client.get_task(os.environ["TASK_UUID"])
        said = "no error"
    except JobtaskError as exc:
        said = f"{type(exc).__name__}: {exc}"
with open(os.environ["JOB_PARAMETER_OUT"], "w") as out:
    out.write(said)
