#!/usr/bin/env python3
"""Reports progress for JOB_PARAMETER_SECONDS seconds, then succeeds with the worker's id
in its output (so a test can tell which worker finished it)."""

import os
import time

fd = int(os.environ["JOBTASK_REPORT_FD"])
seconds = float(os.environ.get("JOB_PARAMETER_SECONDS", "1"))
steps = 10
for i in range(steps):
    time.sleep(seconds / steps)
    os.write(fd, f"progress {(i + 1) / steps * 0.9:.2f}\n".encode())
    print(f"step {i + 1}/{steps}", flush=True)
os.write(fd, f"output {os.environ['TASK_SLOT_NODE']}\nprogress 1\nsuccess true\n".encode())
