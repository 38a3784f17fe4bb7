"""Immutability in the database itself (AU-3): triggers on the audit tables.

Model methods and querysets already refuse to change entries, but Django's admin bulk actions,
``QuerySet.update()`` on another model, raw SQL and a psql session never call them. These
triggers make the database refuse instead:

- ``compliance_auditentry``: UPDATE and TRUNCATE always fail. INSERT must extend the chain: the
  entry right after the head links to the head's hash, and each further entry the sealer inserts
  in the same transaction links to the one before it. DELETE succeeds only for an entry that is
  older than the 180-day legal floor **and** covered by a complete recorded export
  (``compliance_auditarchive``) **and** at or below a recorded purge anchor
  (``compliance_auditanchor``): even raw SQL cannot delete a young or unexported entry.
- ``compliance_auditpending`` (entries written, not yet chained): UPDATE and TRUNCATE always
  fail; DELETE succeeds only once an entry with the same content is in the chain (the sealer
  moving it), so a committed entry never disappears unchained.
- ``compliance_auditchainhead``: only moves forward, to the hash of an existing entry; never
  deleted or truncated.
- ``compliance_auditarchive`` and ``compliance_auditanchor``: append-only.

The same rules exist for PostgreSQL (PL/pgSQL) and SQLite (``RAISE(ABORT)``). The floor is
written into the trigger, not read from settings: it is the law, not configuration.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

FLOOR_DAYS = 180  # must equal settings.AUDIT_RETENTION_FLOOR_DAYS; a test checks that
DELETE_REFUSED = (
    f"audit entries are append-only: DELETE refused (younger than {FLOOR_DAYS} days, "
    "or not exported and anchored by the retention purge)"
)
GUARDED_TABLES = (
    "compliance_auditentry",
    "compliance_auditpending",
    "compliance_auditchainhead",
    "compliance_auditarchive",
    "compliance_auditanchor",
)

_PG_INSTALL = f"""
CREATE OR REPLACE FUNCTION compliance_audit_entry_guard() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    head_sequence bigint;
    head_hash varchar(64);
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT h.sequence, h.hash INTO head_sequence, head_hash FROM compliance_auditchainhead h WHERE h.id = 1;
        -- Rows inserted earlier by the same statement or transaction are visible here, so a
        -- batch of the sealer is checked link by link from the head.
        IF (NEW.sequence = head_sequence + 1 AND NEW.prev_hash = head_hash)
           OR (NEW.sequence > head_sequence + 1 AND NEW.prev_hash =
               (SELECT e.hash FROM compliance_auditentry e WHERE e.sequence = NEW.sequence - 1)) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit chain: entry % does not extend the chain (head %)', NEW.sequence, head_sequence;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD."timestamp" < now() - interval '{FLOOR_DAYS} days'
           AND EXISTS (SELECT 1 FROM compliance_auditanchor a WHERE a.sequence >= OLD.sequence)
           AND EXISTS (SELECT 1 FROM compliance_auditarchive x
                       WHERE x.complete AND x.first_sequence <= OLD.sequence AND x.last_sequence >= OLD.sequence)
        THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'entry %: {DELETE_REFUSED}', OLD.sequence;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only: % refused', TG_OP;
END
$body$;

CREATE OR REPLACE FUNCTION compliance_audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.sequence > OLD.sequence
       AND NEW.hash = (SELECT e.hash FROM compliance_auditentry e WHERE e.sequence = NEW.sequence) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit chain head only moves forward to the newest entry: % refused', TG_OP;
END
$body$;

CREATE OR REPLACE FUNCTION compliance_audit_pending_guard() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM compliance_auditentry e
        WHERE e."timestamp" = OLD."timestamp" AND e.actor_type = OLD.actor_type AND e.actor_id = OLD.actor_id
          AND e.actor_name = OLD.actor_name AND e.department_id IS NOT DISTINCT FROM OLD.department_id
          AND e.department_slug = OLD.department_slug AND e.event_type = OLD.event_type
          AND e.outcome = OLD.outcome AND e.object_type = OLD.object_type AND e.object_id = OLD.object_id
          AND e.object_repr = OLD.object_repr AND e.source_ip IS NOT DISTINCT FROM OLD.source_ip
          AND e.user_agent = OLD.user_agent AND e.request_id = OLD.request_id AND e.details = OLD.details
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'pending audit entry %: % refused (only the sealer removes it, once it is chained)', OLD.id, TG_OP;
END
$body$;

CREATE OR REPLACE FUNCTION compliance_append_only_refuse() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$body$;

CREATE TRIGGER compliance_auditentry_guard BEFORE INSERT OR UPDATE OR DELETE ON compliance_auditentry
    FOR EACH ROW EXECUTE FUNCTION compliance_audit_entry_guard();
CREATE TRIGGER compliance_auditentry_truncate BEFORE TRUNCATE ON compliance_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditpending_guard BEFORE UPDATE OR DELETE ON compliance_auditpending
    FOR EACH ROW EXECUTE FUNCTION compliance_audit_pending_guard();
CREATE TRIGGER compliance_auditpending_truncate BEFORE TRUNCATE ON compliance_auditpending
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditchainhead_guard BEFORE UPDATE OR DELETE ON compliance_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION compliance_audit_head_guard();
CREATE TRIGGER compliance_auditchainhead_truncate BEFORE TRUNCATE ON compliance_auditchainhead
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditarchive_guard BEFORE UPDATE OR DELETE ON compliance_auditarchive
    FOR EACH ROW EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditarchive_truncate BEFORE TRUNCATE ON compliance_auditarchive
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditanchor_guard BEFORE UPDATE OR DELETE ON compliance_auditanchor
    FOR EACH ROW EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditanchor_truncate BEFORE TRUNCATE ON compliance_auditanchor
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only_refuse();
"""  # noqa: S608  (constants only, no input)

_PG_REMOVE = """
DROP TRIGGER IF EXISTS compliance_auditentry_guard ON compliance_auditentry;
DROP TRIGGER IF EXISTS compliance_auditentry_truncate ON compliance_auditentry;
DROP TRIGGER IF EXISTS compliance_auditpending_guard ON compliance_auditpending;
DROP TRIGGER IF EXISTS compliance_auditpending_truncate ON compliance_auditpending;
DROP TRIGGER IF EXISTS compliance_auditchainhead_guard ON compliance_auditchainhead;
DROP TRIGGER IF EXISTS compliance_auditchainhead_truncate ON compliance_auditchainhead;
DROP TRIGGER IF EXISTS compliance_auditarchive_guard ON compliance_auditarchive;
DROP TRIGGER IF EXISTS compliance_auditarchive_truncate ON compliance_auditarchive;
DROP TRIGGER IF EXISTS compliance_auditanchor_guard ON compliance_auditanchor;
DROP TRIGGER IF EXISTS compliance_auditanchor_truncate ON compliance_auditanchor;
DROP FUNCTION IF EXISTS compliance_audit_entry_guard();
DROP FUNCTION IF EXISTS compliance_audit_head_guard();
DROP FUNCTION IF EXISTS compliance_audit_pending_guard();
DROP FUNCTION IF EXISTS compliance_append_only_refuse();
"""

# SQLite has no TRUNCATE: "DELETE FROM t" is its truncate, and a DELETE trigger turns off the
# truncate optimisation, so the row trigger below also covers it.
_SQLITE_STATEMENTS = [
    """CREATE TRIGGER compliance_auditentry_no_update BEFORE UPDATE ON compliance_auditentry
    BEGIN SELECT RAISE(ABORT, 'audit entries are append-only: UPDATE refused'); END""",
    f"""CREATE TRIGGER compliance_auditentry_delete BEFORE DELETE ON compliance_auditentry
    WHEN NOT (
        OLD."timestamp" < datetime('now', '-{FLOOR_DAYS} days')
        AND EXISTS (SELECT 1 FROM compliance_auditanchor a WHERE a.sequence >= OLD.sequence)
        AND EXISTS (SELECT 1 FROM compliance_auditarchive x
                    WHERE x.complete = 1 AND x.first_sequence <= OLD.sequence AND x.last_sequence >= OLD.sequence)
    )
    BEGIN SELECT RAISE(ABORT, '{DELETE_REFUSED}'); END""",  # noqa: S608  (constants only, no input)
    """CREATE TRIGGER compliance_auditentry_insert BEFORE INSERT ON compliance_auditentry
    WHEN NOT COALESCE(
        (NEW.sequence IS (SELECT h.sequence + 1 FROM compliance_auditchainhead h WHERE h.id = 1)
         AND NEW.prev_hash IS (SELECT h.hash FROM compliance_auditchainhead h WHERE h.id = 1))
        OR (NEW.sequence > (SELECT h.sequence + 1 FROM compliance_auditchainhead h WHERE h.id = 1)
            AND NEW.prev_hash IS (SELECT e.hash FROM compliance_auditentry e WHERE e.sequence = NEW.sequence - 1)),
        0
    )
    BEGIN SELECT RAISE(ABORT, 'audit chain: entry does not extend the chain'); END""",
    """CREATE TRIGGER compliance_auditpending_update BEFORE UPDATE ON compliance_auditpending
    BEGIN SELECT RAISE(ABORT, 'pending audit entries cannot be changed: UPDATE refused'); END""",
    """CREATE TRIGGER compliance_auditpending_delete BEFORE DELETE ON compliance_auditpending
    WHEN NOT EXISTS (
        SELECT 1 FROM compliance_auditentry e
        WHERE e."timestamp" = OLD."timestamp" AND e.actor_type = OLD.actor_type AND e.actor_id = OLD.actor_id
          AND e.actor_name = OLD.actor_name AND e.department_id IS OLD.department_id
          AND e.department_slug = OLD.department_slug AND e.event_type = OLD.event_type
          AND e.outcome = OLD.outcome AND e.object_type = OLD.object_type AND e.object_id = OLD.object_id
          AND e.object_repr = OLD.object_repr AND e.source_ip IS OLD.source_ip
          AND e.user_agent = OLD.user_agent AND e.request_id = OLD.request_id AND e.details = OLD.details
    )
    BEGIN SELECT RAISE(ABORT, 'pending audit entry: DELETE refused (only the sealer removes it, once chained)'); END""",
    """CREATE TRIGGER compliance_auditchainhead_update BEFORE UPDATE ON compliance_auditchainhead
    WHEN NOT (NEW.id = OLD.id AND NEW.sequence > OLD.sequence
              AND NEW.hash IS (SELECT e.hash FROM compliance_auditentry e WHERE e.sequence = NEW.sequence))
    BEGIN SELECT RAISE(ABORT, 'audit chain head only moves forward to the newest entry'); END""",
    """CREATE TRIGGER compliance_auditchainhead_delete BEFORE DELETE ON compliance_auditchainhead
    BEGIN SELECT RAISE(ABORT, 'audit chain head cannot be deleted'); END""",
    """CREATE TRIGGER compliance_auditarchive_update BEFORE UPDATE ON compliance_auditarchive
    BEGIN SELECT RAISE(ABORT, 'compliance_auditarchive is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER compliance_auditarchive_delete BEFORE DELETE ON compliance_auditarchive
    BEGIN SELECT RAISE(ABORT, 'compliance_auditarchive is append-only: DELETE refused'); END""",
    """CREATE TRIGGER compliance_auditanchor_update BEFORE UPDATE ON compliance_auditanchor
    BEGIN SELECT RAISE(ABORT, 'compliance_auditanchor is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER compliance_auditanchor_delete BEFORE DELETE ON compliance_auditanchor
    BEGIN SELECT RAISE(ABORT, 'compliance_auditanchor is append-only: DELETE refused'); END""",
]
SQLITE_TRIGGER_NAMES = [statement.split()[2] for statement in _SQLITE_STATEMENTS]


class UnsupportedDatabase(RuntimeError):
    pass


def _statements(connection: BaseDatabaseWrapper, *, install: bool) -> list[str]:
    if connection.vendor == "postgresql":
        return [_PG_INSTALL if install else _PG_REMOVE]
    if connection.vendor == "sqlite":
        if install:
            return list(_SQLITE_STATEMENTS)
        return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGER_NAMES]
    raise UnsupportedDatabase(f"no audit immutability triggers for {connection.vendor}: use PostgreSQL or SQLite")


def triggers_install(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection, install=True):
            cursor.execute(statement)


def triggers_remove(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection, install=False):
            cursor.execute(statement)


def install_migration(apps, schema_editor) -> None:
    triggers_install(schema_editor.connection)


def remove_migration(apps, schema_editor) -> None:
    triggers_remove(schema_editor.connection)
