#!/usr/bin/env python3
"""Arvados's one-task-per-input pattern, through the SDK with the task's own token.

Sequence 0 (the job's seed task): creates one child task per word of JOB_PARAMETER_WORDS
(a JSON list) at sequence 1, then completes through UpdateTask with an empty output.
Sequence 1: upper-cases its word, reports progress and the output line through the report
descriptor ($JOBTASK_REPORT_FD), and completes.
"""

import json
import os
import time

from jobtask.sdk import Client


def report(line: str) -> None:
    os.write(int(os.environ["JOBTASK_REPORT_FD"]), (line + "\n").encode())


with Client.connect() as client:
    if os.environ["TASK_SEQUENCE"] == "0":
        words = json.loads(os.environ["JOB_PARAMETER_WORDS"])
        for word in words:
            client.create_child_task({"word": word}, sequence=1)
        print(f"created {len(words)} child tasks")
        client.set_output("")  # progress 1.0, success true, through the API
    else:
        task = client.get_task(os.environ["TASK_UUID"])
        word = str(task.parameters["word"])
        print(f"working on {word} in {os.environ['TASK_WORK']}")
        report("progress 0.5")
        time.sleep(float(os.environ.get("JOB_PARAMETER_DELAY", "0")))
        report(f"output_json {json.dumps(word.upper() + chr(10))}")
        report("progress 1")
        report("success true")
