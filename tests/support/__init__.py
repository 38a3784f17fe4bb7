"""Harnesses the tests start and wait on: slapd, the live server, nginx, and condition waits.

Fixtures stay in the conftest files; what they drive lives here, importable by tests and
benchmarks alike.
"""
