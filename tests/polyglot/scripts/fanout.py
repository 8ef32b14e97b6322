"""Arvados's one-task-per-input pattern, for a mixed fleet of workers.

Sequence 0 (the job's seed task): creates $JOB_PARAMETER_TASKS child tasks at sequence 1
through the Python SDK with the task's own token ($JOBTASK_TOKEN), then completes.
Sequence 1: reports progress, sleeps $JOB_PARAMETER_DELAY seconds and outputs its order of
arrival ($TASK_QSEQUENCE: 1 for the first child) on one line, through the report descriptor.
"""

import json
import os
import time


def report(line: str) -> None:
    os.write(int(os.environ["JOBTASK_REPORT_FD"]), (line + "\n").encode())


if os.environ["TASK_SEQUENCE"] == "0":
    from jobtask.sdk import Client  # only the seed task needs the API

    count = int(os.environ["JOB_PARAMETER_TASKS"])
    with Client.connect() as client:
        for index in range(count):
            client.create_child_task({"index": index}, sequence=1)
    print(f"created {count} child tasks")
    report("progress 1")
    report("success true")
else:
    report("progress 0.5")
    time.sleep(float(os.environ.get("JOB_PARAMETER_DELAY", "0")))
    print(f"task {os.environ['TASK_QSEQUENCE']} on {os.environ['TASK_SLOT_NODE']}")
    report("output_json " + json.dumps(f"{os.environ['TASK_QSEQUENCE']}\n"))
    report("progress 1")
    report("success true")
