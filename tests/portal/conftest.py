"""Fixtures of the portal's navigation tests: the administrators come from tests/accounts."""

from tests.accounts.conftest import make_admin  # noqa: F401  (a fixture, re-exported)
