"""The `jobtask` command line (entry point: jobtask.cli.main:main)."""

import os

# Set before gRPC loads: the worker forks scripts (fork, then exec) while gRPC's threads
# run; gRPC's fork handlers serve fork-without-exec and here only log warnings.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
