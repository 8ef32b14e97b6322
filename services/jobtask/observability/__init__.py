"""Observability: Prometheus metrics, structured logs, access logs and request ids.

A leaf package: it imports nothing of jobtask's but the store's aggregate reads
(jobtask.store.stats), so every layer may record into it. docs/operations.md lists what it
exports."""
