#!/usr/bin/env python3
"""Runs until stopped: starts a child `sleep`, writes both pids to JOB_PARAMETER_PIDFILE,
reports some progress, then waits. With JOB_PARAMETER_STUBBORN=true the script and its child
ignore SIGINT and SIGTERM, so only SIGKILL stops them."""

import os
import signal
import subprocess
import time

stubborn = os.environ.get("JOB_PARAMETER_STUBBORN") == "true"
if stubborn:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
# Ignored signals stay ignored across exec: a stubborn script's child ignores them too.
child = subprocess.Popen(["sleep", "300"])
pidfile = os.environ["JOB_PARAMETER_PIDFILE"]
with open(pidfile + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}\n")
os.rename(pidfile + ".tmp", pidfile)
os.write(int(os.environ["JOBTASK_REPORT_FD"]), b"progress 0.25\n")
print("sleeping", flush=True)
while True:
    time.sleep(1)
