"""The `jobtask` command line (entry point: jobtask.cli.main:main)."""

import os
import re
import sys

# Set before gRPC loads: the worker forks scripts (fork, then exec) while gRPC's threads
# run; gRPC's fork handlers serve fork-without-exec and here only log warnings.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def _verbosity(argv: list[str]) -> int:
    """How many -v the command line gives, before its command and after it (argparse has not
    run yet). Argparse reads any such word as the flag (it takes no option's value), so all
    up to a `--` count."""
    count = 0
    args = iter(argv)
    for arg in args:
        if arg == "--verbose":
            count += 1
        elif re.fullmatch(r"-v+", arg):
            count += len(arg) - 1
        elif arg == "--log-format":
            next(args, None)
        elif arg == "--":
            break
    return count


# gRPC's C core reads GRPC_VERBOSITY once, when grpc is imported: later settings do nothing.
# Its INFO and DEBUG lines (transport chatter, GRPC_TRACE output) stay off unless -vvv or
# $GRPC_VERBOSITY asks for them. Only for this process: main() takes it out of the
# environment again once gRPC has read it, so scripts and other programs started from here
# see the user's own environment.
GRPC_VERBOSITY_SET = "GRPC_VERBOSITY" not in os.environ and _verbosity(sys.argv[1:]) < 3
if GRPC_VERBOSITY_SET:
    os.environ["GRPC_VERBOSITY"] = "ERROR"
