"""Immutability in the database itself (AU-3): triggers on the audit tables.

Model methods and querysets already refuse to change entries, but Django's admin bulk actions,
``QuerySet.update()`` on another model, raw SQL and a psql session never call them. These
triggers make the database refuse instead:

- ``compliance_auditentry``: UPDATE and TRUNCATE always fail. INSERT must extend the chain: the
  entry right after the head links to the head's hash, and each further entry the sealer inserts
  in the same transaction links to the one before it; and it must carry the database's own
  clock at sealing (``sealed_at`` within the inserting statement's lifetime, in a format that
  hashes it), so nobody with INSERT rights chooses an entry's sealing time. DELETE succeeds
  only for an entry that is older than the 180-day legal floor **and** covered by a complete
  recorded export (``compliance_auditarchive``) **and** at or below a recorded purge anchor
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

from compliance.chain import SEALED_AS, SEALING_CLOCK, clock_versions, formats, formats_fields

FLOOR_DAYS = 180  # must equal settings.AUDIT_RETENTION_FLOOR_DAYS; a test checks that
DELETE_REFUSED = (
    f"audit entries are append-only: DELETE refused (younger than {FLOOR_DAYS} days, "
    "or not exported and anchored by the retention purge)"
)
# What the other refusals say (the tests match these). ``{operation}`` is the refused statement
# (PostgreSQL: ``%``, its TG_OP), ``{table}`` the table (PostgreSQL: ``%``, its TG_TABLE_NAME).
ENTRY_APPEND_ONLY = "audit entries are append-only: {operation} refused"
# ``{sequence}``: PostgreSQL names the entry ("% "), SQLite's RAISE takes no arguments ("").
CHAIN_NOT_EXTENDED = "audit chain: entry {sequence}does not extend the chain"
HEAD_MOVES_FORWARD_ONLY = "audit chain head only moves forward to the newest entry"  # SQLite's UPDATE refusal
HEAD_REFUSED = HEAD_MOVES_FORWARD_ONLY + ": {operation} refused"  # PostgreSQL's, UPDATE and DELETE
HEAD_NOT_DELETED = "audit chain head cannot be deleted"  # SQLite's DELETE refusal
APPEND_ONLY = "{table} is append-only: {operation} refused"
# ``{sequence}`` as for CHAIN_NOT_EXTENDED. The message holds a quote: the SQL doubles it (_sql_text).
NOT_THE_DATABASE_CLOCK = "audit chain: entry {sequence}does not carry the database's clock at sealing"
PENDING_NOT_CHANGED = "pending audit entries cannot be changed: UPDATE refused"  # SQLite's (PostgreSQL's: APPEND_ONLY)
# A pending row deleted before it is chained. PostgreSQL's names the row (``{entry}``: ``%``, its id).
PENDING_NOT_CHAINED = "pending audit entry {entry}: DELETE refused (only the sealer removes it, once it is chained)"
PENDING_NOT_CHAINED_SQLITE = "pending audit entry: DELETE refused (only the sealer removes it, once chained)"
GUARDED_TABLES = (
    "compliance_auditentry",
    "compliance_auditpending",
    "compliance_auditchainhead",
    "compliance_auditarchive",
    "compliance_auditanchor",
)

_TEXT_TIMESTAMP = """to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
CLOCK_SLACK_SECONDS = 60  # a system clock stepped back (NTP) while a statement runs must not fail a seal


def _sql_text(message: str) -> str:
    """``message`` as the inside of an SQL string literal (each quote doubled)."""
    return message.replace("'", "''")


def _sealed_version_sql(column: str) -> str:
    """The version a pending entry of version ``column`` is chained in (chain.SEALED_AS)."""
    whens = " ".join(f"WHEN {old:d} THEN {new:d}" for old, new in sorted(SEALED_AS.items()))
    return f"CASE {column} {whens} ELSE {column} END" if whens else column


def _clock_versions_sql() -> str:
    return ", ".join(str(version) for version in clock_versions()) or "NULL"


def _seal_encoding_sql() -> tuple[str, str]:
    """The sealer's canonical encoding, generated from compliance.chain's registry: (the text
    columns of every registered field, over pending row ``q``; the CASE that encodes row ``t``
    in the format its version names, NULL for a version that is not registered)."""
    timestamps = set().union(*(registered.timestamp_fields for registered in formats()))
    columns = []
    for name in formats_fields():
        if name == "sequence":  # what the sealer is about to give the entry
            text = "(first_sequence + row_number() OVER (ORDER BY q.id) - 1)::text"
        elif name == SEALING_CLOCK:  # the sealer's own clock, already in its canonical text
            text = "seal_clock_text"
        elif name in timestamps:
            text = _TEXT_TIMESTAMP.format(column=f'q."{name}"')
        else:
            text = f'q."{name}"::text'
        columns.append(f"{text} AS f_{name}")
    branches = []
    for registered in formats():
        lengths = "".join(
            f"\n                    || coalesce(int4send(octet_length(convert_to(t.f_{name}, 'UTF8'))), null_length)"
            for name in registered.fields
        )
        texts = ", ".join(f"t.f_{name}" for name in registered.fields)
        branches.append(
            f"WHEN {registered.version:d} THEN decode('{registered.tag.hex()}', 'hex'){lengths}"
            f"\n                    || convert_to(concat({texts}), 'UTF8')"
        )
    payload = "CASE t.entry_version\n                " + "\n                ".join(branches) + "\n            END"
    return ",\n               ".join(columns), payload


def _pg_install() -> str:
    seal_columns, seal_payload = _seal_encoding_sql()
    return f"""
-- INSERT must extend the chain: every new entry links to its predecessor, the head or an entry
-- inserted before it. Checked once per statement over all its rows (the sealer inserts a batch
-- at a time). The planner settings keep the cached plan an index look-up per new row, however
-- small the table was when it was planned (a plan made for a small table would scan it).
CREATE OR REPLACE FUNCTION compliance_audit_entry_insert_check() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $body$
DECLARE
    broken bigint;
BEGIN
    SELECT a.sequence INTO broken FROM added a
    CROSS JOIN (SELECT h.sequence, h.hash FROM compliance_auditchainhead h WHERE h.id = 1) hd
    LEFT JOIN compliance_auditentry e ON e.sequence = a.sequence - 1
    WHERE NOT coalesce(
        (a.sequence = hd.sequence + 1 AND a.prev_hash = hd.hash)
        OR (a.sequence > hd.sequence + 1 AND a.prev_hash = e.hash),
        false
    )
    LIMIT 1;
    IF broken IS NOT NULL THEN
        RAISE EXCEPTION '{CHAIN_NOT_EXTENDED.format(sequence="% ")}', broken;
    END IF;
    -- The sealing clock is the database's, read during this very statement (give or take a
    -- clock step), in a format that hashes it: whoever inserts cannot choose it, nor leave it out.
    SELECT a.sequence INTO broken FROM added a
    WHERE a.format_version NOT IN ({_clock_versions_sql()}) OR a.sealed_at IS NULL
       OR a.sealed_at < statement_timestamp() - interval '{CLOCK_SLACK_SECONDS} seconds'
       OR a.sealed_at > clock_timestamp()
    LIMIT 1;
    IF broken IS NOT NULL THEN
        RAISE EXCEPTION '{_sql_text(NOT_THE_DATABASE_CLOCK.format(sequence="% "))}', broken;
    END IF;
    RETURN NULL;
END
$body$;

CREATE OR REPLACE FUNCTION compliance_audit_entry_guard() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD."timestamp" < now() - interval '{FLOOR_DAYS} days'
           AND EXISTS (SELECT 1 FROM compliance_auditanchor a WHERE a.sequence >= OLD.sequence)
           AND EXISTS (SELECT 1 FROM compliance_auditarchive x
                       WHERE x.complete AND x.first_sequence <= OLD.sequence AND x.last_sequence >= OLD.sequence)
        THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'entry %: {DELETE_REFUSED}', OLD.sequence;
    END IF;
    RAISE EXCEPTION '{ENTRY_APPEND_ONLY.format(operation="%")}', TG_OP;
END
$body$;

CREATE OR REPLACE FUNCTION compliance_audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.sequence > OLD.sequence
       AND NEW.hash = (SELECT e.hash FROM compliance_auditentry e WHERE e.sequence = NEW.sequence) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '{HEAD_REFUSED.format(operation="%")}', TG_OP;
END
$body$;

-- A pending row may only go once the chain holds the same content, in an entry above the head:
-- one the deleting transaction itself has just chained (the sealer moves the head last). Checked
-- once per DELETE statement over all its rows, as one hash anti-join between the deleted rows
-- and the entries above the head (a primary-key range); the planner settings keep that plan
-- whatever the table's size when it was cached. Every column is compared exactly.
CREATE OR REPLACE FUNCTION compliance_audit_pending_delete_check() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_nestloop = off SET enable_mergejoin = off AS $body$
DECLARE
    unchained bigint;
BEGIN
    SELECT g.id INTO unchained FROM gone g
    WHERE NOT EXISTS (
        SELECT 1 FROM compliance_auditentry e
        WHERE e.sequence > (SELECT h.sequence FROM compliance_auditchainhead h WHERE h.id = 1)
          AND e."timestamp" = g."timestamp" AND e.actor_type = g.actor_type AND e.actor_id = g.actor_id
          AND e.actor_name = g.actor_name AND coalesce(e.department_id, -1) = coalesce(g.department_id, -1)
          AND e.department_slug = g.department_slug AND e.event_type = g.event_type
          AND e.outcome = g.outcome AND e.object_type = g.object_type AND e.object_id = g.object_id
          AND e.object_repr = g.object_repr AND coalesce(e.source_ip, '') = coalesce(g.source_ip, '')
          AND e.user_agent = g.user_agent AND e.request_id = g.request_id AND e.details = g.details
          AND e.format_version = {_sealed_version_sql("g.format_version")}
    )
    LIMIT 1;
    IF unchained IS NOT NULL THEN
        RAISE EXCEPTION '{PENDING_NOT_CHAINED.format(entry="%")}',
            unchained;
    END IF;
    RETURN NULL;
END
$body$;

CREATE OR REPLACE FUNCTION compliance_append_only_refuse() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY.format(table="%", operation="%")}', TG_TABLE_NAME, TG_OP;
END
$body$;

-- The highest pending id the last seal took (see compliance_audit_append). A sequence, so that
-- setting it takes no row lock and writes no row version.
CREATE SEQUENCE IF NOT EXISTS compliance_audit_sealed_mark MINVALUE 0 START WITH 0;

-- The sealer, server-side: chains up to ``batch`` pending entries in one call, so sealing costs
-- one round trip however many entries it covers. It encodes each entry in the format its
-- version names, generated from compliance/chain.py's registry when this was installed;
-- audit_verify recomputes every hash in Python, so the two implementations check each other
-- (the tests seal here and verify there). A version that was not registered then is refused.
CREATE OR REPLACE FUNCTION compliance_audit_seal(
    batch integer, lock_wait boolean DEFAULT false, want bigint DEFAULT NULL,
    OUT chained integer, OUT first_sequence bigint, OUT last_sequence bigint,
    OUT want_sequence bigint, OUT want_prev_hash varchar, OUT want_hash varchar
) LANGUAGE plpgsql AS $body$
DECLARE
    head_sequence bigint;
    head_hash varchar(64);
    ids bigint[];
    versions smallint[];
    payloads bytea[];
    prev_hashes varchar[] := ARRAY[]::varchar[];
    hashes varchar[] := ARRAY[]::varchar[];
    null_length constant bytea := decode('ffffffff', 'hex');
    seal_clock timestamptz;
    seal_clock_text text;
BEGIN
    chained := 0;
    IF lock_wait THEN
        SELECT h.sequence, h.hash INTO head_sequence, head_hash
        FROM compliance_auditchainhead h WHERE h.id = 1 FOR UPDATE;
    ELSE
        SELECT h.sequence, h.hash INTO head_sequence, head_hash
        FROM compliance_auditchainhead h WHERE h.id = 1 FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            chained := -1;  -- another transaction is sealing
            RETURN;
        END IF;
    END IF;
    first_sequence := head_sequence + 1;
    -- The database's clock at sealing (chain.SEALING_CLOCK), read once the head is ours and
    -- before the pending entries are: an entry this seal does not see committed after it.
    seal_clock := clock_timestamp();
    seal_clock_text := {_TEXT_TIMESTAMP.format(column="seal_clock")};
    -- The canonical bytes of the whole batch in one statement (the entry's tag, the header of its
    -- fields' lengths, -1 for null, then the texts); only the hashing itself is a loop, each hash
    -- needing the last.
    SELECT array_agg(t.id ORDER BY t.id), array_agg(t.entry_version ORDER BY t.id),
           array_agg(
            {seal_payload}
           ORDER BY t.id)
    INTO ids, versions, payloads
    FROM (
        SELECT q.id, {_sealed_version_sql("q.format_version")} AS entry_version,
               {seal_columns}
        FROM (SELECT * FROM compliance_auditpending ORDER BY id LIMIT batch) q
    ) t;
    chained := coalesce(array_length(ids, 1), 0);
    IF chained = 0 THEN
        first_sequence := NULL;
        RETURN;
    END IF;
    FOR i IN 1 .. chained LOOP
        IF payloads[i] IS NULL THEN
            RAISE EXCEPTION 'pending audit entry %: format version % is not registered', ids[i], versions[i];
        END IF;
        prev_hashes[i] := head_hash;
        head_hash := encode(sha256(decode(head_hash, 'hex') || payloads[i]), 'hex');
        hashes[i] := head_hash;
        IF ids[i] = want THEN
            want_sequence := first_sequence + i - 1;
            want_prev_hash := prev_hashes[i];
            want_hash := head_hash;
        END IF;
    END LOOP;
    head_sequence := first_sequence + chained - 1;
    -- One INSERT and one DELETE for the batch (the triggers still check every row).
    INSERT INTO compliance_auditentry (
        sequence, "timestamp", actor_type, actor_id, actor_name, department_id, department_slug, event_type,
        outcome, object_type, object_id, object_repr, source_ip, user_agent, request_id, details, format_version,
        sealed_at, prev_hash, hash
    )
    SELECT first_sequence + c.ordinality - 1, q."timestamp", q.actor_type, q.actor_id, q.actor_name,
           q.department_id, q.department_slug, q.event_type, q.outcome, q.object_type, q.object_id,
           q.object_repr, q.source_ip, q.user_agent, q.request_id, q.details, versions[c.ordinality],
           seal_clock, prev_hashes[c.ordinality], hashes[c.ordinality]
    FROM unnest(ids) WITH ORDINALITY AS c(pending_id, ordinality)
    JOIN compliance_auditpending q ON q.id = c.pending_id
    ORDER BY c.ordinality;
    DELETE FROM compliance_auditpending WHERE id = ANY(ids);
    UPDATE compliance_auditchainhead SET sequence = head_sequence, hash = head_hash WHERE id = 1;
    -- A hint for compliance_audit_append, not a guarantee: an entry below the mark may still be
    -- pending (committed after this batch was read); it is chained by the next seal all the same.
    PERFORM setval('compliance_audit_sealed_mark', ids[chained]);
    last_sequence := head_sequence;
END
$body$;

-- audit_record's one round trip: write the pending entry, then chain what is pending if the
-- head is free and nothing else waits (in the caller's transaction: it holds the head until it
-- commits). chained: -1 the head was busy, -2 left to the background sealers (a backlog).
CREATE OR REPLACE FUNCTION compliance_audit_append(
    entry json, batch integer, lock_wait boolean,
    OUT pending_id bigint, OUT chained integer, OUT first_sequence bigint, OUT last_sequence bigint,
    OUT entry_sequence bigint, OUT entry_prev_hash varchar, OUT entry_hash varchar
) LANGUAGE plpgsql AS $body$
BEGIN
    -- The content arrives as one JSON object (one parameter for the client to send, not fifteen).
    INSERT INTO compliance_auditpending (
        "timestamp", actor_type, actor_id, actor_name, department_id, department_slug, event_type, outcome,
        object_type, object_id, object_repr, source_ip, user_agent, request_id, details, format_version
    )
    SELECT r."timestamp", r.actor_type, r.actor_id, r.actor_name, r.department_id, r.department_slug,
           r.event_type, r.outcome, r.object_type, r.object_id, r.object_repr, r.source_ip, r.user_agent,
           r.request_id, r.details, r.format_version
    FROM json_populate_record(NULL::compliance_auditpending, entry) r
    RETURNING id INTO pending_id;
    -- Seal here only when nothing else is pending (a lone writer: its entry is chained at once).
    -- With a backlog, the background sealers chain it in a batch: per-seal costs are paid once
    -- for many entries instead of by every writer.
    -- Only the ids handed out since the last seal are looked at: below the mark, the index holds
    -- the rows sealers have just deleted, which every look-up from the low end would wade
    -- through (most of a writer's cost under load, before the mark).
    IF NOT lock_wait AND EXISTS (
        SELECT 1 FROM compliance_auditpending q
        WHERE q.id > (SELECT m.last_value FROM compliance_audit_sealed_mark m) AND q.id < pending_id
    ) THEN
        chained := -2;
        RETURN;
    END IF;
    SELECT s.chained, s.first_sequence, s.last_sequence, s.want_sequence, s.want_prev_hash, s.want_hash
    INTO chained, first_sequence, last_sequence, entry_sequence, entry_prev_hash, entry_hash
    FROM compliance_audit_seal(batch, lock_wait, pending_id) s;
END
$body$;

CREATE TRIGGER compliance_auditentry_guard BEFORE UPDATE OR DELETE ON compliance_auditentry
    FOR EACH ROW EXECUTE FUNCTION compliance_audit_entry_guard();
CREATE TRIGGER compliance_auditentry_insert AFTER INSERT ON compliance_auditentry
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION compliance_audit_entry_insert_check();
CREATE TRIGGER compliance_auditentry_truncate BEFORE TRUNCATE ON compliance_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditpending_guard BEFORE UPDATE ON compliance_auditpending
    FOR EACH ROW EXECUTE FUNCTION compliance_append_only_refuse();
CREATE TRIGGER compliance_auditpending_delete AFTER DELETE ON compliance_auditpending
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION compliance_audit_pending_delete_check();
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
"""  # noqa: S608  (constants and the registry's names only, no input)


_PG_REMOVE = """
DROP TRIGGER IF EXISTS compliance_auditentry_guard ON compliance_auditentry;
DROP TRIGGER IF EXISTS compliance_auditentry_insert ON compliance_auditentry;
DROP TRIGGER IF EXISTS compliance_auditentry_truncate ON compliance_auditentry;
DROP TRIGGER IF EXISTS compliance_auditpending_guard ON compliance_auditpending;
DROP TRIGGER IF EXISTS compliance_auditpending_delete ON compliance_auditpending;
DROP TRIGGER IF EXISTS compliance_auditpending_truncate ON compliance_auditpending;
DROP TRIGGER IF EXISTS compliance_auditchainhead_guard ON compliance_auditchainhead;
DROP TRIGGER IF EXISTS compliance_auditchainhead_truncate ON compliance_auditchainhead;
DROP TRIGGER IF EXISTS compliance_auditarchive_guard ON compliance_auditarchive;
DROP TRIGGER IF EXISTS compliance_auditarchive_truncate ON compliance_auditarchive;
DROP TRIGGER IF EXISTS compliance_auditanchor_guard ON compliance_auditanchor;
DROP TRIGGER IF EXISTS compliance_auditanchor_truncate ON compliance_auditanchor;
DROP FUNCTION IF EXISTS compliance_audit_entry_guard();
DROP FUNCTION IF EXISTS compliance_audit_entry_insert_check();
DROP FUNCTION IF EXISTS compliance_audit_head_guard();
DROP FUNCTION IF EXISTS compliance_audit_pending_delete_check();
DROP FUNCTION IF EXISTS compliance_audit_append(json, integer, boolean);
DROP FUNCTION IF EXISTS compliance_audit_seal(integer, boolean, bigint);
DROP FUNCTION IF EXISTS compliance_append_only_refuse();
DROP SEQUENCE IF EXISTS compliance_audit_sealed_mark;
"""


# SQLite has no TRUNCATE: "DELETE FROM t" is its truncate, and a DELETE trigger turns off the
# truncate optimisation, so the row trigger below also covers it. Built when installed, like the
# PostgreSQL functions: the versions named come from compliance.chain's registry.
def _sqlite_statements() -> list[str]:
    return [
        f"""CREATE TRIGGER compliance_auditentry_no_update BEFORE UPDATE ON compliance_auditentry
    BEGIN SELECT RAISE(ABORT, '{ENTRY_APPEND_ONLY.format(operation="UPDATE")}'); END""",
        f"""CREATE TRIGGER compliance_auditentry_delete BEFORE DELETE ON compliance_auditentry
    WHEN NOT (
        OLD."timestamp" < datetime('now', '-{FLOOR_DAYS} days')
        AND EXISTS (SELECT 1 FROM compliance_auditanchor a WHERE a.sequence >= OLD.sequence)
        AND EXISTS (SELECT 1 FROM compliance_auditarchive x
                    WHERE x.complete = 1 AND x.first_sequence <= OLD.sequence AND x.last_sequence >= OLD.sequence)
    )
    BEGIN SELECT RAISE(ABORT, '{DELETE_REFUSED}'); END""",  # noqa: S608  (constants only, no input)
        f"""CREATE TRIGGER compliance_auditentry_insert BEFORE INSERT ON compliance_auditentry
    WHEN NOT COALESCE(
        (NEW.sequence IS (SELECT h.sequence + 1 FROM compliance_auditchainhead h WHERE h.id = 1)
         AND NEW.prev_hash IS (SELECT h.hash FROM compliance_auditchainhead h WHERE h.id = 1))
        OR (NEW.sequence > (SELECT h.sequence + 1 FROM compliance_auditchainhead h WHERE h.id = 1)
            AND NEW.prev_hash IS (SELECT e.hash FROM compliance_auditentry e WHERE e.sequence = NEW.sequence - 1)),
        0
    )
    BEGIN SELECT RAISE(ABORT, '{CHAIN_NOT_EXTENDED.format(sequence="")}'); END""",  # noqa: S608  (constants only, no input)
        # After the chain check (AFTER triggers run once every BEFORE trigger let the row in). SQLite
        # has no statement clock: the Python sealer reads 'now' just before it inserts.
        f"""CREATE TRIGGER compliance_auditentry_clock AFTER INSERT ON compliance_auditentry
    WHEN NEW.format_version NOT IN ({_clock_versions_sql()}) OR NEW.sealed_at IS NULL
        OR abs(julianday(NEW.sealed_at) - julianday('now')) * 86400 > {CLOCK_SLACK_SECONDS}
    BEGIN SELECT RAISE(ABORT, '{_sql_text(NOT_THE_DATABASE_CLOCK.format(sequence=""))}'); END""",
        f"""CREATE TRIGGER compliance_auditpending_update BEFORE UPDATE ON compliance_auditpending
    BEGIN SELECT RAISE(ABORT, '{PENDING_NOT_CHANGED}'); END""",
        f"""CREATE TRIGGER compliance_auditpending_delete BEFORE DELETE ON compliance_auditpending
    WHEN NOT EXISTS (
        SELECT 1 FROM compliance_auditentry e
        WHERE e."timestamp" = OLD."timestamp" AND e.actor_type = OLD.actor_type AND e.actor_id = OLD.actor_id
          AND e.actor_name = OLD.actor_name AND e.department_id IS OLD.department_id
          AND e.department_slug = OLD.department_slug AND e.event_type = OLD.event_type
          AND e.outcome = OLD.outcome AND e.object_type = OLD.object_type AND e.object_id = OLD.object_id
          AND e.object_repr = OLD.object_repr AND e.source_ip IS OLD.source_ip
          AND e.user_agent = OLD.user_agent AND e.request_id = OLD.request_id AND e.details = OLD.details
          AND e.format_version = {_sealed_version_sql("OLD.format_version")}
    )
    BEGIN SELECT RAISE(ABORT, '{PENDING_NOT_CHAINED_SQLITE}'); END""",  # noqa: S608  (the registry's numbers only, no input)
        f"""CREATE TRIGGER compliance_auditchainhead_update BEFORE UPDATE ON compliance_auditchainhead
    WHEN NOT (NEW.id = OLD.id AND NEW.sequence > OLD.sequence
              AND NEW.hash IS (SELECT e.hash FROM compliance_auditentry e WHERE e.sequence = NEW.sequence))
    BEGIN SELECT RAISE(ABORT, '{HEAD_MOVES_FORWARD_ONLY}'); END""",  # noqa: S608  (constants only, no input)
        f"""CREATE TRIGGER compliance_auditchainhead_delete BEFORE DELETE ON compliance_auditchainhead
    BEGIN SELECT RAISE(ABORT, '{HEAD_NOT_DELETED}'); END""",
        f"""CREATE TRIGGER compliance_auditarchive_update BEFORE UPDATE ON compliance_auditarchive
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY.format(table="compliance_auditarchive", operation="UPDATE")}'); END""",
        f"""CREATE TRIGGER compliance_auditarchive_delete BEFORE DELETE ON compliance_auditarchive
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY.format(table="compliance_auditarchive", operation="DELETE")}'); END""",
        f"""CREATE TRIGGER compliance_auditanchor_update BEFORE UPDATE ON compliance_auditanchor
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY.format(table="compliance_auditanchor", operation="UPDATE")}'); END""",
        f"""CREATE TRIGGER compliance_auditanchor_delete BEFORE DELETE ON compliance_auditanchor
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY.format(table="compliance_auditanchor", operation="DELETE")}'); END""",
    ]


SQLITE_TRIGGER_NAMES = [statement.split()[2] for statement in _sqlite_statements()]


class UnsupportedDatabase(RuntimeError):
    pass


def _statements(connection: BaseDatabaseWrapper, *, install: bool) -> list[str]:
    if connection.vendor == "postgresql":
        return [_pg_install() if install else _PG_REMOVE]
    if connection.vendor == "sqlite":
        if install:
            return _sqlite_statements()
        return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGER_NAMES]
    raise UnsupportedDatabase(f"no audit immutability triggers for {connection.vendor}: use PostgreSQL or SQLite")


def statements_execute(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    """Run each statement in order (the trigger modules' install and remove)."""
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def triggers_install(connection: BaseDatabaseWrapper) -> None:
    statements_execute(connection, _statements(connection, install=True))


def triggers_remove(connection: BaseDatabaseWrapper) -> None:
    statements_execute(connection, _statements(connection, install=False))


def install_migration(apps, schema_editor) -> None:
    triggers_install(schema_editor.connection)


def remove_migration(apps, schema_editor) -> None:
    triggers_remove(schema_editor.connection)


def reinstall_migration(apps, schema_editor) -> None:
    """The current definitions in place of whatever an earlier migration installed."""
    triggers_remove(schema_editor.connection)
    triggers_install(schema_editor.connection)
