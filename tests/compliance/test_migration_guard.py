"""AU-3: outside dev/test no migration plan removes or alters the audit trail (compliance/migration_guard.py).

The commands run for real, in the production profile, in subprocesses against a PostgreSQL
database of their own (the production profile refuses SQLite): ``migrate compliance zero`` on
the code before the guard dropped every audit table there, and ``--fake`` would have marked the
trail's migrations unapplied without a word. The operation rules are checked on the plans the
migration loader makes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import migrations, models

from compliance.migration_guard import MIGRATION_REFUSED, migrate_guard, plan_refusals
from compliance.triggers import GUARDED_TABLES
from tests.conftest import postgresql_database
from tests.support.production_keys import production_keys_write

ROOT = Path(__file__).resolve().parents[2]
AUDITED_COUNT = (
    "from compliance.models import AuditEntry, AuditChainHead; "
    "print(AuditEntry.objects.count(), AuditChainHead.objects.get().sequence)"
)


def production_env(directory: Path) -> dict[str, str]:
    """What the production profile requires to start, and nothing more."""
    directory.mkdir(parents=True)
    signing_key, master_keys = production_keys_write(directory, "k-guard")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DATA_DIR", "PLATFORM_"))}
    env.update(
        PLATFORM_PROFILE="production",
        DATA_DIR=str(directory / "data"),
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="localhost",
        ASSET_MASTER_KEY_FILE=str(master_keys),
        AUDIT_SIGNING_KEY_FILE=str(signing_key),
        AUDIT_CHECKPOINT_LOG=str(directory / "checkpoints.jsonl"),
        STATIC_ROOT=str(directory / "static"),
    )
    return env


@pytest.fixture
def production(tmp_path):
    env = production_env(tmp_path / "production")
    with postgresql_database("the production migration guard", "guard") as url:
        env["DATABASE_URL"] = url
        yield env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(ROOT / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_production_refuses_to_migrate_the_audit_app_backwards(production):
    installed = manage(production, "migrate", "--noinput", "-v", "0")  # a new database: every migration runs
    assert installed.returncode == 0, installed.stdout + installed.stderr
    audited = manage(
        production, "shell", "-c", "from compliance.checkpoints import checkpoint_create; checkpoint_create()"
    )
    assert audited.returncode == 0, audited.stderr
    before = manage(production, "shell", "-c", AUDITED_COUNT).stdout.split()
    assert int(before[0]) >= 1
    applied = manage(production, "showmigrations", "compliance").stdout
    assert "[X] 0008_audit_sealing_clock" in applied

    for arguments in (["zero"], ["0006"], ["zero", "--fake"]):
        refused = manage(production, "migrate", "compliance", *arguments, "--noinput")
        assert refused.returncode != 0
        assert MIGRATION_REFUSED in refused.stderr, refused.stdout + refused.stderr
        for migration in ("0007_audit_format_version", "0008_audit_sealing_clock"):
            assert f"compliance.{migration}: reverses a migration of the audit trail" in refused.stderr
        assert "Traceback" not in refused.stderr
    # An app the audit app depends on, taken back to zero, would take the audit app with it.
    refused = manage(production, "migrate", "departments", "zero", "--noinput")
    assert refused.returncode != 0 and MIGRATION_REFUSED in refused.stderr

    assert manage(production, "shell", "-c", AUDITED_COUNT).stdout.split() == before
    assert manage(production, "showmigrations", "compliance").stdout == applied  # nothing was unapplied
    assert manage(production, "audit_verify").returncode == 0


def _plan(app_label: str, *operations, backwards: bool = False, name: str = "9999_change"):
    migration = migrations.Migration(name, app_label)
    migration.operations = list(operations)
    return [(migration, backwards)]


EXISTING = set(GUARDED_TABLES) | {"departments_department"}


@pytest.mark.parametrize(
    "operation",
    [
        migrations.DeleteModel("AuditEntry"),
        migrations.RemoveField("auditentry", "user_agent"),
        migrations.AlterField("auditentry", "details", models.TextField()),
        migrations.RenameField("auditpending", "actor_name", "who"),
        migrations.RenameModel("AuditAnchor", "Anchor"),
        migrations.AlterModelTable("auditarchive", "elsewhere"),
        migrations.RemoveConstraint("auditentry", "audit_entry_source_ip_not_empty"),
        migrations.AddField("auditentry", "mandatory", models.IntegerField(default=0)),
        migrations.SeparateDatabaseAndState(database_operations=[migrations.DeleteModel("AuditChainHead")]),
    ],
    ids=lambda operation: type(operation).__name__,
)
def test_operations_that_remove_or_alter_an_audit_table_are_refused(operation):
    (refusal,) = plan_refusals(_plan("compliance", operation), EXISTING)
    assert refusal.startswith("compliance.9999_change: ")


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE compliance_auditentry",
        ["ALTER TABLE Compliance_AuditPending DISABLE TRIGGER USER"],
        [("DELETE FROM compliance_auditanchor WHERE id = %s", [1])],
    ],
)
def test_sql_naming_an_audit_table_is_refused_in_any_app_and_either_direction(sql):
    assert plan_refusals(_plan("departments", migrations.RunSQL(sql)), EXISTING)
    assert plan_refusals(_plan("departments", migrations.RunSQL("SELECT 1", sql), backwards=True), EXISTING)
    assert not plan_refusals(_plan("departments", migrations.RunSQL("SELECT 1", sql)), EXISTING)


def test_additive_changes_stay_allowed():
    allowed = _plan(
        "compliance",
        migrations.AddField("auditentry", "note", models.TextField(null=True)),
        migrations.AddField("auditpending", "level", models.SmallIntegerField(db_default=1)),
        migrations.AddIndex("auditentry", models.Index(fields=["event_type"], name="audit_event")),
        migrations.AlterModelOptions("auditentry", {"verbose_name": "entry"}),
        migrations.RunPython(migrations.RunPython.noop),
        migrations.AlterField("retentionpolicy", "legal_hold", models.BooleanField(default=True)),
    )
    assert plan_refusals(allowed, EXISTING) == []
    # Other apps' changes to their own tables are none of the guard's business.
    assert plan_refusals(_plan("departments", migrations.DeleteModel("Department"), backwards=True), EXISTING) == []


def test_a_new_database_builds_the_audit_tables_with_the_migrations_that_altered_them():
    """The tables do not exist yet when the plan is made: 0003 and 0005 alter fields of tables
    created earlier in the same plan."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    plan = [
        (loader.graph.nodes[key], False)
        for key in loader.graph.forwards_plan(("compliance", "0008_audit_sealing_clock"))
    ]
    assert plan_refusals(plan, set()) == []
    assert plan_refusals(plan, EXISTING)  # the same plan on an installed trail would not run


@pytest.mark.django_db
def test_the_guard_acts_in_the_production_profile_only(settings):
    plan = _plan("compliance", migrations.RunPython(migrations.RunPython.noop), backwards=True)
    settings.IS_PRODUCTION = False
    migrate_guard(SimpleNamespace(), plan=plan)
    settings.IS_PRODUCTION = True
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="reverses a migration of the audit trail"):
        migrate_guard(SimpleNamespace(), plan=plan)
