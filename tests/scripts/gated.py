#!/usr/bin/env python3
"""Waits (reporting progress) until the file JOB_PARAMETER_GATE exists, then succeeds: a
test decides when the task ends."""

import os
import time

fd = int(os.environ["JOBTASK_REPORT_FD"])
gate = os.environ["JOB_PARAMETER_GATE"]
os.write(fd, b"progress 0.1\n")
while not os.path.exists(gate):
    time.sleep(0.1)
os.write(fd, b"output gated\nprogress 1\nsuccess true\n")
