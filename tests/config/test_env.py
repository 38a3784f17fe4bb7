import ipaddress

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_int, env_list, env_networks, env_secret


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)])
def test_env_bool_accepts_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG", not expected) is expected


def test_env_bool_rejects_garbage(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env_bool("X_FLAG", False)


def test_env_bool_default_when_unset(monkeypatch):
    monkeypatch.delenv("X_FLAG", raising=False)
    assert env_bool("X_FLAG", True) is True


def test_env_int_rejects_non_numbers_and_bounds(monkeypatch):
    monkeypatch.setenv("X_NUM", "12MB")
    with pytest.raises(ImproperlyConfigured, match="not a whole number"):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "5")
    with pytest.raises(ImproperlyConfigured, match="below the minimum of 10"):
        env_int("X_NUM", 20, minimum=10)
    with pytest.raises(ImproperlyConfigured, match="above the maximum of 3"):
        env_int("X_NUM", 1, maximum=3)
    assert env_int("X_NUM", 1, minimum=1, maximum=9) == 5


def test_env_list_and_empty_items(monkeypatch):
    monkeypatch.setenv("X_LIST", "a.example, b.example")
    assert env_list("X_LIST", []) == ["a.example", "b.example"]
    monkeypatch.setenv("X_LIST", "a,,b")
    with pytest.raises(ImproperlyConfigured, match="empty item"):
        env_list("X_LIST", [])


def test_env_networks(monkeypatch):
    monkeypatch.setenv("X_NETS", "10.0.0.0/8,::1")
    assert env_networks("X_NETS", []) == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]
    monkeypatch.setenv("X_NETS", "10.0.0.0/33")
    with pytest.raises(ImproperlyConfigured, match="is not an IP network"):
        env_networks("X_NETS", [])


def test_env_choice(monkeypatch):
    monkeypatch.setenv("X_MODE", "turbo")
    with pytest.raises(ImproperlyConfigured, match="is not one of: a, b"):
        env_choice("X_MODE", "a", ("a", "b"))


def test_env_secret_from_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    monkeypatch.delenv("X_SECRET", raising=False)
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env_secret("X_SECRET") == "s3cret-value"


def test_env_secret_refuses_both_missing_and_empty(monkeypatch, tmp_path):
    monkeypatch.setenv("X_SECRET", "a")
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "x"))
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("X_SECRET")
    monkeypatch.delenv("X_SECRET")
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_secret("X_SECRET")
    (tmp_path / "x").write_text("  \n")
    with pytest.raises(ImproperlyConfigured, match="is empty"):
        env_secret("X_SECRET")
