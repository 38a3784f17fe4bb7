"""Department tenancy, decided in one place.

Models that belong to a department use ``DepartmentScopedManager`` as their default manager. Its
queries are filtered to the department whose scope is open and **raise** ``ScopeError`` when no
scope is open: a forgotten filter is a crash in tests, never a silent cross-department leak.

Scopes are opened once per request (``departments.middleware``), once per websocket, once per API
key. Code that must see every department (retention jobs, the administrators' console) says so
with ``all_departments(reason=...)`` — grep for it to review every escape hatch.

The scope lives in a ``contextvars.ContextVar``, so it follows asyncio tasks and is copied into
``sync_to_async`` threads.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from departments.models import Department

UNSCOPED_QUERY_MESSAGE = (
    "Query on {model} outside a department scope. Open one with department_scope(department) "
    "or, for a job that must see every department, all_departments(reason=...)."
)


class ScopeError(RuntimeError):
    """A department-scoped model was queried without an open scope."""


@dataclass(frozen=True)
class Scope:
    department_id: int | None  # None with all=True
    all: bool = False
    reason: str = ""


_current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("department_scope", default=None)


def current_scope() -> Scope | None:
    return _current_scope.get()


@contextmanager
def department_scope(department: Department | int) -> Iterator[Scope]:
    department_id = department if isinstance(department, int) else department.pk
    if department_id is None:
        raise ValueError("cannot open a scope for an unsaved department")
    token = _current_scope.set(Scope(department_id=department_id))
    try:
        yield _current_scope.get()
    finally:
        _current_scope.reset(token)


@contextmanager
def all_departments(*, reason: str) -> Iterator[Scope]:
    """Escape hatch: every department is visible. ``reason`` documents why, for review."""
    if not reason.strip():
        raise ValueError("all_departments() needs a reason")
    token = _current_scope.set(Scope(department_id=None, all=True, reason=reason))
    try:
        yield _current_scope.get()
    finally:
        _current_scope.reset(token)


class DepartmentScopedManager(models.Manager):
    """Default manager of department-owned models; refuses to run without a scope."""

    department_field = "department"

    def get_queryset(self) -> models.QuerySet:
        scope = _current_scope.get()
        if scope is None:
            raise ScopeError(UNSCOPED_QUERY_MESSAGE.format(model=self.model.__name__))
        queryset = super().get_queryset()
        if scope.all:
            return queryset
        return queryset.filter(**{f"{self.department_field}_id": scope.department_id})
