"""Master key ring (generation, production requirement, rotation), crypto-shredding retention."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils import timezone

from assets import keyring
from assets.chunk_format import BlobIntegrityError
from assets.models import Asset
from assets.reading import asset_plaintext_chunks, asset_verify
from assets.services import asset_purge_expired
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from tests.assets import samples
from tests.assets.conftest import stored_files

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def test_key_ring_is_generated_once_outside_production_with_mode_0600(settings):
    path = Path(settings.ASSET_MASTER_KEY_FILE)
    assert not path.exists()
    first = keyring.keyring_load()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert keyring.keyring_load() == first and len(first.keys) == 1


def test_production_never_generates_a_key_ring(settings):
    settings.IS_PRODUCTION = True
    with pytest.raises(ImproperlyConfigured, match="does not exist"):
        keyring.keyring_load()
    assert not Path(settings.ASSET_MASTER_KEY_FILE).exists()


def test_production_refuses_to_start_without_the_key_ring_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "ASSET_", "ALLOWED_HOSTS"))}
    env.update(
        PLATFORM_PROFILE="production",
        SECRET_KEY="s" * 60,
        ALLOWED_HOSTS="ai.example.internal",
        DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"], capture_output=True, text=True, env=env, timeout=180
    )
    assert result.returncode != 0
    assert "ASSET_MASTER_KEY_FILE is required in production" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("# only a comment\n", "holds no key"),
        ("k1:" + base64.urlsafe_b64encode(b"short").decode(), "line 1"),
        ("bad id!:" + base64.urlsafe_b64encode(b"k" * 32).decode(), "line 1"),
        ("no-colon", "line 1"),
        (
            "k1:"
            + base64.urlsafe_b64encode(b"a" * 32).decode()
            + "\nk1:"
            + base64.urlsafe_b64encode(b"b" * 32).decode(),
            "twice",
        ),
    ],
)
def test_malformed_key_ring_fails_loudly(text, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        keyring.parse_keyring(text, path="ring")


def test_wrapped_key_is_bound_to_its_blob():
    ring = keyring.parse_keyring("k1:" + base64.urlsafe_b64encode(b"m" * 32).decode())
    key_id, wrapped = ring.wrap(b"d" * 32, binding="a" * 32)
    assert ring.unwrap(key_id, wrapped, binding="a" * 32) == b"d" * 32
    with pytest.raises(keyring.KeyRingError):
        ring.unwrap(key_id, wrapped, binding="b" * 32)  # moved onto another asset's row
    with pytest.raises(keyring.KeyRingError):
        ring.unwrap("k2", wrapped, binding="a" * 32)


def test_rotation_rewraps_keys_without_touching_content(upload, personas, asset_storage, settings):
    assets = [upload(samples.image_bytes("PNG", (10 + n, 10)), f"f{n}.png") for n in range(3)]
    old_id = keyring.keyring_load().active_id
    blobs_before = {path: path.read_bytes() for path in stored_files(asset_storage)}

    call_command("assets_rotate_master_key", "--new-key", "--retire", stdout=io.StringIO())

    ring = keyring.keyring_load()
    assert ring.active_id != old_id and ring.key_ids == (ring.active_id,)  # the old key is retired
    assert {path: path.read_bytes() for path in stored_files(asset_storage)} == blobs_before
    with department_scope(personas.department_a):
        for asset in assets:
            fresh = Asset.objects.get(pk=asset.pk)
            assert fresh.key_id == ring.active_id and bytes(fresh.wrapped_key) != bytes(asset.wrapped_key)
            assert b"".join(asset_plaintext_chunks(fresh)).startswith(b"\x89PNG")
            # The file name's own text key was re-wrapped too: it still opens, the old key retired.
            assert fresh.text_key_id == ring.active_id and fresh.original_name == asset.original_name
    entry = AuditEntry.objects.filter(event_type=EventType.ASSET_KEY_ROTATE).get()
    assert entry.details == {"active_key_id": ring.active_id, "rewrapped": 3, "text_keys_rewrapped": 3, "failed": 0}


def test_rotation_keeps_old_keys_while_a_data_key_cannot_be_rewrapped(upload, settings):
    upload(samples.image_bytes("PNG"), "a.png")
    with all_departments(reason="test"):
        Asset.objects.update(wrapped_key=b"\x00" * 60)  # simulate a damaged wrapped key
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="could not be re-wrapped"):
        call_command("assets_rotate_master_key", "--new-key", "--retire", stdout=io.StringIO())
    assert len(keyring.keyring_load().keys) == 2


def test_tampered_blob_fails_to_decrypt(upload, personas, asset_storage):
    asset = upload(samples.image_bytes("PNG", (100, 100)), "a.png")
    (blob,) = stored_files(asset_storage)
    data = bytearray(blob.read_bytes())
    data[40] ^= 0x01
    blob.write_bytes(bytes(data))
    with department_scope(personas.department_a), pytest.raises(BlobIntegrityError):
        asset_verify(asset)


def test_retention_purge_crypto_shreds_only_expired_files_of_the_department(
    upload, personas, asset_storage, django_capture_on_commit_callbacks
):
    old = upload(samples.image_bytes("PNG", (11, 11)), "old.png")
    new = upload(samples.image_bytes("PNG", (12, 12)), "new.png")
    other = upload(
        samples.image_bytes("PNG", (13, 13)), "b.png", user=personas.outsider, department=personas.department_b
    )
    with all_departments(reason="test"):
        Asset.objects.filter(pk__in=[old.pk, other.pk]).update(created_at=timezone.now() - timedelta(days=400))
    cutoff = timezone.now() - timedelta(days=365)

    assert asset_purge_expired(department=personas.department_a, cutoff=cutoff, dry_run=True) == 1
    assert len(stored_files(asset_storage)) == 3
    with django_capture_on_commit_callbacks(execute=True):  # the blob goes once the row's deletion commits
        assert asset_purge_expired(department=personas.department_a, cutoff=cutoff, dry_run=False) == 1
    with all_departments(reason="test"):
        assert set(Asset.objects.values_list("pk", flat=True)) == {new.pk, other.pk}
    names = {path.name for path in stored_files(asset_storage)}
    assert old.storage_name not in names and {new.storage_name, other.storage_name} <= names
    entry = AuditEntry.objects.filter(event_type=EventType.ASSET_DELETE).get()
    assert entry.object_id == str(old.pk) and entry.details["reason"] == "retention" and entry.actor_name == "system"


def test_init_creates_the_ring_in_production_and_refuses_to_overwrite_it(settings):
    from django.core.management.base import CommandError

    settings.IS_PRODUCTION = True
    call_command("assets_rotate_master_key", "--init", stdout=io.StringIO())
    path = Path(settings.ASSET_MASTER_KEY_FILE)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and len(keyring.keyring_load().keys) == 1
    with pytest.raises(CommandError, match="already exists"):
        call_command("assets_rotate_master_key", "--init", stdout=io.StringIO())


@pytest.mark.parametrize("legal_hold", [False, True])
def test_purge_expired_shreds_files_per_department_policy(
    upload, personas, asset_storage, django_capture_on_commit_callbacks, legal_hold
):
    from compliance.models import RetentionPolicy
    from compliance.retention import purge_expired

    old = upload(samples.image_bytes("PNG", (14, 14)), "old.png")
    with all_departments(reason="test"):
        Asset.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    with department_scope(personas.department_a):
        RetentionPolicy.objects.create(department=personas.department_a, file_days=30, legal_hold=legal_hold)
    with django_capture_on_commit_callbacks(execute=True):
        report = purge_expired(include_audit=False)
    with all_departments(reason="test"):
        assert Asset.objects.filter(pk=old.pk).exists() is legal_hold
    assert (old.storage_name in {path.name for path in stored_files(asset_storage)}) is legal_hold
    assert report.business == ({} if legal_hold else {"finance": {"assets.files": 1}})
