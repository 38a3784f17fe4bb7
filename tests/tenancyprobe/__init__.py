"""A test-only app with one department-scoped model, to prove the tenancy manager by itself.

Installed only in the test profile (see config/settings.py).
"""
