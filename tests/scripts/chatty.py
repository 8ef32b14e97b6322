#!/usr/bin/env python3
"""Writes 2,000 progress reports and 2,000 log lines as fast as it can, then completes."""

import os

fd = int(os.environ["JOBTASK_REPORT_FD"])
for i in range(1, 2001):
    os.write(fd, f"progress {i / 2000 * 0.99:.4f}\n".encode())
    print(f"line {i:04d}")
os.write(fd, b"output chatty\nprogress 1\nsuccess true\n")
