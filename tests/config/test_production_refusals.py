"""The production profile refuses SQLite, and an in-memory channel layer for several app processes.

Settings are read once at start-up: each case starts ``manage.py check`` in a fresh interpreter
(tests/config/test_settings_profiles.py's helpers); none of them connects to a database.
"""

from __future__ import annotations

from config.production import IN_MEMORY_LAYER_REFUSED, SQLITE_REFUSED
from tests.config.test_settings_profiles import production_env, run_manage

POSTGRES = "postgres://platform@127.0.0.1:9/platform"  # never connected to by `check`


def test_production_refuses_sqlite(tmp_path):
    result = run_manage(tmp_path, "check", **production_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}"))
    assert result.returncode != 0
    assert SQLITE_REFUSED in result.stderr


def test_sqlite_stays_the_embedded_default_outside_production(tmp_path):
    result = run_manage(tmp_path, "check", PLATFORM_PROFILE="dev", APP_PROCESSES="1")
    assert result.returncode == 0, result.stderr


def test_several_app_processes_need_the_redis_channel_layer(tmp_path):
    refused = run_manage(tmp_path, "check", **production_env(DATABASE_URL=POSTGRES, APP_PROCESSES="2", REDIS_URL=""))
    assert refused.returncode != 0
    assert IN_MEMORY_LAYER_REFUSED.format(processes=2) in refused.stderr
    single = run_manage(tmp_path, "check", **production_env(DATABASE_URL=POSTGRES, APP_PROCESSES="1", REDIS_URL=""))
    assert single.returncode == 0, single.stderr
    shared = run_manage(
        tmp_path,
        "check",
        **production_env(DATABASE_URL=POSTGRES, APP_PROCESSES="2", REDIS_URL="redis://127.0.0.1:9/0"),
    )
    assert shared.returncode == 0, shared.stderr


def test_app_processes_is_a_whole_number_of_at_least_one(tmp_path):
    result = run_manage(tmp_path, "check", PLATFORM_PROFILE="dev", APP_PROCESSES="0")
    assert result.returncode != 0
    assert "APP_PROCESSES=0 is below the minimum of 1" in result.stderr
