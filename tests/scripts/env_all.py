#!/usr/bin/env python3
"""Writes its whole environment as its output (JSON), and succeeds."""

import json
import os

fd = int(os.environ["JOBTASK_REPORT_FD"])
env = json.dumps(dict(os.environ))
os.write(fd, f"output_json {json.dumps(env)}\nprogress 1\nsuccess true\n".encode())
