"""No migration takes the audit trail away outside the dev and test profiles (AU-3).

``manage.py migrate compliance zero`` would drop every audit table, and a migration that
removes or alters an audit table or field would destroy or rewrite what the chain covers. Like
``flush`` (compliance/management/commands/flush.py), such a plan is refused in the production
profile, before anything runs: ``migrate`` sends ``pre_migrate`` with its plan, and the receiver
below raises. It refuses:

- any migration of the audit app run backwards (``migrate compliance zero``, or to an earlier
  migration, or as the dependant of another app's reverse migration);
- forwards, any operation on an audit table that already exists other than the additive ones
  below: DeleteModel, RemoveField, AlterField, RenameField, RenameModel, AlterModelTable,
  RemoveConstraint, AlterUniqueTogether, … (an operation it does not know is refused too);
- ``RunSQL``, in any app and either direction, that names an audit table.

Allowed on an existing audit table: adding a field that is nullable or has a database default
(entries already written keep their bytes: a canonical format hashes only the fields it names),
indexes, constraints added, model options, and ``RunPython`` (whatever it does to rows, the
triggers refuse). On a new database the audit tables do not exist when the plan is made, so the
migrations that built them, altering fields of tables created earlier in the same plan, run as
always.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations import Migration, operations
from django.db.migrations.operations.base import Operation
from django.db.models import NOT_PROVIDED

from compliance.triggers import GUARDED_TABLES

AUDIT_APP = "compliance"
MIGRATION_REFUSED = (
    "This migration plan would remove or alter the audit trail; it is refused in the production profile (AU-3):"
)
# Operations that only add to an existing audit table, or change nothing in the database.
_ADDITIVE = (
    operations.AddIndex,
    operations.RemoveIndex,
    operations.RenameIndex,
    operations.AddConstraint,
    operations.AlterModelOptions,
    operations.AlterModelManagers,
    operations.RunPython,
)


def _database_operations(items: Iterable[Operation]) -> Iterator[Operation]:
    for operation in items:
        if isinstance(operation, operations.SeparateDatabaseAndState):
            yield from _database_operations(operation.database_operations)
        else:
            yield operation


def _sql_text(sql) -> str:
    if isinstance(sql, str):
        return sql
    if isinstance(sql, list | tuple):
        return "\n".join(_sql_text(item[0] if isinstance(item, list | tuple) else item) for item in sql)
    return ""


def _audit_table(app_label: str, operation: Operation) -> str | None:
    """The audit table a model operation of ``app_label`` works on, or None."""
    if app_label != AUDIT_APP:
        return None
    model = (
        getattr(operation, "model_name_lower", None)
        or getattr(operation, "old_name_lower", None)
        or getattr(operation, "name_lower", None)
    )
    table = f"{AUDIT_APP}_{model}"
    return table if model and table in GUARDED_TABLES else None


def _operation_refusal(app_label: str, operation: Operation, backwards: bool, existing: set[str]) -> str | None:
    if isinstance(operation, operations.RunSQL):
        text = _sql_text(operation.reverse_sql if backwards else operation.sql).lower()
        named = sorted(table for table in GUARDED_TABLES if table in text and table in existing)
        return f"runs SQL on {', '.join(named)}" if named else None
    table = _audit_table(app_label, operation)
    if backwards or table is None or table not in existing:
        return None
    if isinstance(operation, operations.AddField):
        field = operation.field
        if field.null or field.db_default is not NOT_PROVIDED:
            return None
        return f"{operation.describe()}: a field added to {table} must be nullable or have a database default"
    if isinstance(operation, _ADDITIVE):
        return None
    return f"{operation.describe()} on {table}"


def plan_refusals(plan: Iterable[tuple[Migration, bool]], existing_tables: Iterable[str]) -> list[str]:
    """Why ``plan`` (``migrate``'s list of (migration, backwards)) may not run; empty if it may."""
    existing = set(existing_tables)
    refusals = []
    for migration, backwards in plan:
        label = f"{migration.app_label}.{migration.name}"
        if backwards and migration.app_label == AUDIT_APP:
            refusals.append(f"{label}: reverses a migration of the audit trail")
            continue
        for operation in _database_operations(migration.operations):
            reason = _operation_refusal(migration.app_label, operation, backwards, existing)
            if reason:
                refusals.append(f"{label}: {reason}")
    return refusals


def migrate_guard(sender, *, plan=None, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """``pre_migrate`` receiver: refuse, in the production profile, a plan that takes the trail away."""
    if not settings.IS_PRODUCTION or not plan:
        return
    refusals = plan_refusals(plan, connections[using].introspection.table_names())
    if refusals:
        raise CommandError("\n  ".join([MIGRATION_REFUSED, *refusals]))
