"""Benchmarks of the SCIM endpoint (run as modules, e.g. ``python -m bench.users``)."""
