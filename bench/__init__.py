"""Benchmarks: refdesk measured against the homeserver it runs on (docs/BENCHMARKS.md)."""
