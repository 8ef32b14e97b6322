#!/usr/bin/env python3
"""The README's first job (run by `jobtask worker`): long enough to watch, about 30 seconds.

The job's first task splits the job's `steps` parameter (default 3) into that many child tasks;
each child counts to `seconds` (default 15), reporting its progress every half second through
the report descriptor, and outputs one line. `jobtask watch` shows the bars move.

    jobtask submit tutorial.py -p steps=3 -p seconds=15
    jobtask watch <job uuid>
"""

import json
import os
import signal
import sys
import time

from jobtask.sdk import Client


def report(line: str) -> None:
    """One line on the report descriptor: `progress 0.5`, `output ...`, `success true`."""
    os.write(int(os.environ["JOBTASK_REPORT_FD"]), f"{line}\n".encode())


def parameter(name: str, default: int) -> int:
    """A whole-number job parameter (JOB_PARAMETER_<NAME> holds its JSON)."""
    text = os.environ.get(f"JOB_PARAMETER_{name.upper()}", str(default))
    if not text.isdigit() or not 1 <= int(text) <= 3600:
        sys.exit(f"tutorial.py: parameter {name} must be a whole number from 1 to 3600")
    return int(text)


if os.environ["TASK_SEQUENCE"] == "0":
    steps = parameter("steps", 3)
    with Client.connect() as client:  # JOBTASK_* and the task's own token from the worker
        for step in range(1, steps + 1):
            client.create_child_task({"step": step}, sequence=1)
    print(f"created {steps} tasks")
    report("progress 1")
    report("success true")
else:
    # A canceled task's process is sent SIGINT first: end quietly (exit 130, as a shell
    # would) rather than with a KeyboardInterrupt traceback in the task's log.
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    seconds = parameter("seconds", 15)
    ticks = seconds * 2
    for tick in range(1, ticks + 1):
        time.sleep(0.5)
        report(f"progress {tick / ticks:.3f}")
        if tick % 4 == 0:
            print(f"task {os.environ['TASK_UUID']}: {tick / 2:.0f} of {seconds} seconds")
    with Client.connect() as client:
        step = int(client.get_task(os.environ["TASK_UUID"]).parameters["step"])
    # output_json: the job's output is its tasks' outputs joined, so each ends its own line.
    report("output_json " + json.dumps(f"step {step}: done after {seconds} s\n"))
    report("success true")
