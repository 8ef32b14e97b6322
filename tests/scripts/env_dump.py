#!/usr/bin/env python3
"""Writes the crunch environment it was given as its output (JSON), and succeeds."""

import json
import os

names = sorted(
    k
    for k in os.environ
    if k.startswith(("JOB_", "TASK_", "CRUNCH_", "JOBTASK_", "ARVADOS_")) or k == "HOME"
)
env = {k: os.environ[k] for k in names}
fd = int(os.environ["JOBTASK_REPORT_FD"])
os.write(fd, f"output_json {json.dumps(json.dumps(env))}\nprogress 1\nsuccess true\n".encode())
