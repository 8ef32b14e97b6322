"""Generated from proto/jobtask/v1 by scripts/gen_protos.py: do not edit."""
