#!/usr/bin/env python3
"""Fails (exits without deciding success) on the node named by JOB_PARAMETER_BAD_NODE;
elsewhere sleeps JOB_PARAMETER_SECONDS (default 0), waits until the file JOB_PARAMETER_GATE
exists (if given), and completes."""

import os
import sys
import time

fd = int(os.environ["JOBTASK_REPORT_FD"])
if os.environ.get("TASK_SLOT_NODE") == os.environ.get("JOB_PARAMETER_BAD_NODE"):
    print("this node is broken", file=sys.stderr)
    sys.exit(3)
time.sleep(float(os.environ.get("JOB_PARAMETER_SECONDS", "0")))
gate = os.environ.get("JOB_PARAMETER_GATE")
while gate and not os.path.exists(gate):
    time.sleep(0.05)
os.write(fd, b"progress 1\n")
os.write(fd, b"success true\n")
