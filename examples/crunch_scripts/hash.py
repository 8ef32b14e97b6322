#!/usr/bin/env python3
"""Example crunch script (run by `jobtask worker`): the job's first task creates one task per
word of the job's `input` parameter (Arvados's one-task-per-input pattern); each of those
outputs the word's SHA-256. The job's output is their outputs, in creation order.

    jobtask submit hash.py -p input="alpha beta gamma"
"""

import hashlib
import os

from jobtask.sdk import Client

with Client.connect() as client:  # JOBTASK_* and the task's own token from the worker
    if os.environ["TASK_SEQUENCE"] == "0":
        for word in os.environ.get("JOB_PARAMETER_INPUT", "").split():
            client.create_child_task({"word": word}, sequence=1)
        client.set_output("")
    else:
        word = client.get_task(os.environ["TASK_UUID"]).parameters["word"]
        client.set_output(f"{word} {hashlib.sha256(word.encode()).hexdigest()}\n")
