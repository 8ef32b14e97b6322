#!/usr/bin/env python3
"""Exits without deciding success (a temporary failure), or with `success false` when
JOB_PARAMETER_MODE=permanent."""

import os
import sys

print("about to fail", file=sys.stderr)
if os.environ.get("JOB_PARAMETER_MODE") == "permanent":
    os.write(int(os.environ["JOBTASK_REPORT_FD"]), b"success false\n")
sys.exit(3)
