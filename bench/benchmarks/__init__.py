"""Benchmarks and one-off studies: scripts that print figures (speed, cache savings, the
cold-start study, chaos runs). Nothing here is imported by the harness; each runs as
``python -m bench.benchmarks.<name>`` (``bench speed`` forwards to ``speed``)."""
