"""The database's own guard of the separation of duties (SM-1..3, AC-4): an account holding an
administrator role holds no department membership and no live department API key.

The services, the console and the policy layer refuse it first (and record the refusal); these
triggers make it true for every write whatever its path — ``QuerySet.update()``,
``bulk_create``, raw SQL — and close the race between giving an account a membership and giving
it a role in two concurrent transactions (PostgreSQL): the membership and key triggers lock the
account's row ``FOR SHARE``, the role trigger locks it ``FOR UPDATE`` before it looks, so one of
the two waits for the other's commit and then sees its row. SQLite serialises writers.

"Holds an administrator role" is ``admin_role <> ''`` here: the ``user_admin_role_valid`` check
constraint leaves only the three roles besides the empty one.

A later migration that rebuilds one of these tables on SQLite (which drops its triggers) must
install them again (``install_migration``); ``manage.py compliance_report`` reports missing ones.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from compliance.triggers import statements_execute

REFUSED = "an administrator account holds no department membership and no department API key (SM-1..3)"

PG_TRIGGERS = {
    # trigger name: table
    "departments_membership_no_administrator": "departments_membership",
    "departments_apikey_no_administrator": "departments_apikey",
    "accounts_user_administrator_without_department_access": "accounts_user",
}

_PG_INSTALL = f"""
CREATE OR REPLACE FUNCTION departments_membership_no_administrator() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    role text;
BEGIN
    SELECT admin_role INTO role FROM accounts_user WHERE id = NEW.user_id FOR SHARE;
    IF role <> '' THEN
        RAISE EXCEPTION '{REFUSED}' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION departments_apikey_no_administrator() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    role text;
BEGIN
    IF NEW.department_id IS NOT NULL AND NEW.revoked_at IS NULL AND NEW.created_by_id IS NOT NULL THEN
        SELECT admin_role INTO role FROM accounts_user WHERE id = NEW.created_by_id FOR SHARE;
        IF role <> '' THEN
            RAISE EXCEPTION '{REFUSED}' USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION accounts_user_administrator_without_department_access() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Wait for any transaction that is giving this account access now (it holds FOR SHARE on
    -- the row); the checks below then see what it committed.
    PERFORM 1 FROM accounts_user WHERE id = NEW.id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM departments_membership WHERE user_id = NEW.id)
       OR EXISTS (SELECT 1 FROM departments_apikey WHERE created_by_id = NEW.id
                  AND department_id IS NOT NULL AND revoked_at IS NULL) THEN
        RAISE EXCEPTION '{REFUSED}' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS departments_membership_no_administrator ON departments_membership;
CREATE TRIGGER departments_membership_no_administrator
    BEFORE INSERT OR UPDATE OF user_id ON departments_membership
    FOR EACH ROW EXECUTE FUNCTION departments_membership_no_administrator();

DROP TRIGGER IF EXISTS departments_apikey_no_administrator ON departments_apikey;
CREATE TRIGGER departments_apikey_no_administrator
    BEFORE INSERT OR UPDATE OF created_by_id, department_id, revoked_at ON departments_apikey
    FOR EACH ROW EXECUTE FUNCTION departments_apikey_no_administrator();

DROP TRIGGER IF EXISTS accounts_user_administrator_without_department_access ON accounts_user;
CREATE TRIGGER accounts_user_administrator_without_department_access
    BEFORE UPDATE OF admin_role ON accounts_user
    FOR EACH ROW WHEN (NEW.admin_role <> '')
    EXECUTE FUNCTION accounts_user_administrator_without_department_access();
"""  # noqa: S608  (constants only, no input)

_PG_REMOVE = """
DROP TRIGGER IF EXISTS departments_membership_no_administrator ON departments_membership;
DROP TRIGGER IF EXISTS departments_apikey_no_administrator ON departments_apikey;
DROP TRIGGER IF EXISTS accounts_user_administrator_without_department_access ON accounts_user;
DROP FUNCTION IF EXISTS departments_membership_no_administrator();
DROP FUNCTION IF EXISTS departments_apikey_no_administrator();
DROP FUNCTION IF EXISTS accounts_user_administrator_without_department_access();
"""

_SQLITE_ADMINISTRATOR = "SELECT 1 FROM accounts_user WHERE id = NEW.{column} AND admin_role <> ''"
_SQLITE_HOLDS_ACCESS = (
    "EXISTS (SELECT 1 FROM departments_membership WHERE user_id = NEW.id) OR EXISTS (SELECT 1 FROM "
    "departments_apikey WHERE created_by_id = NEW.id AND department_id IS NOT NULL AND revoked_at IS NULL)"
)
_SQLITE_KEY_LIVE = "NEW.department_id IS NOT NULL AND NEW.revoked_at IS NULL"
# name: (event, table, condition)
_SQLITE_TRIGGERS = {
    "departments_membership_no_administrator_insert": (
        "INSERT",
        "departments_membership",
        f"EXISTS ({_SQLITE_ADMINISTRATOR.format(column='user_id')})",
    ),
    "departments_membership_no_administrator_update": (
        "UPDATE OF user_id",
        "departments_membership",
        f"EXISTS ({_SQLITE_ADMINISTRATOR.format(column='user_id')})",
    ),
    "departments_apikey_no_administrator_insert": (
        "INSERT",
        "departments_apikey",
        f"{_SQLITE_KEY_LIVE} AND EXISTS ({_SQLITE_ADMINISTRATOR.format(column='created_by_id')})",
    ),
    "departments_apikey_no_administrator_update": (
        "UPDATE OF created_by_id, department_id, revoked_at",
        "departments_apikey",
        f"{_SQLITE_KEY_LIVE} AND EXISTS ({_SQLITE_ADMINISTRATOR.format(column='created_by_id')})",
    ),
    "accounts_user_administrator_without_department_access": (
        "UPDATE OF admin_role",
        "accounts_user",
        f"NEW.admin_role <> '' AND ({_SQLITE_HOLDS_ACCESS})",
    ),
}


def _statements(connection: BaseDatabaseWrapper, *, install: bool) -> list[str]:
    if connection.vendor == "postgresql":
        return [_PG_INSTALL if install else _PG_REMOVE]
    if connection.vendor == "sqlite":
        statements = [f"DROP TRIGGER IF EXISTS {name}" for name in _SQLITE_TRIGGERS]
        if install:
            statements += [
                f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
                for name, (event, table, condition) in _SQLITE_TRIGGERS.items()
            ]
        return statements
    raise NotImplementedError(f"no separation-of-duties triggers for {connection.vendor}: use PostgreSQL or SQLite")


def triggers_install(connection: BaseDatabaseWrapper) -> None:
    statements_execute(connection, _statements(connection, install=True))


def triggers_remove(connection: BaseDatabaseWrapper) -> None:
    statements_execute(connection, _statements(connection, install=False))


def triggers_missing(connection: BaseDatabaseWrapper) -> list[str]:
    """The triggers of this module that the database does not have (enabled)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D' AND tgname = ANY(%s)",
                [list(PG_TRIGGERS)],
            )
            expected = PG_TRIGGERS
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            expected = _SQLITE_TRIGGERS
        present = {row[0] for row in cursor.fetchall()}
    return sorted(set(expected) - present)


def install_migration(apps, schema_editor) -> None:
    triggers_install(schema_editor.connection)


def remove_migration(apps, schema_editor) -> None:
    triggers_remove(schema_editor.connection)
