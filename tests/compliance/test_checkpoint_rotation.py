"""Rotating the checkpoint signing key: a new key signs from a point on, checkpoints
signed before still verify, a retired key signs nothing after its rotation, and a line signed by a
key no rotation leads to is a ``bad_signature`` break."""

from __future__ import annotations

import base64
import json
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance import checkpoints
from compliance.checkpoints import (
    KIND_ROTATION,
    Checkpoint,
    checkpoint_create,
    checkpoint_key_rotate,
    checkpoints_read,
    key_id,
    log_path,
    signing_key,
)
from compliance.events import EventType
from compliance.models import AuditChainHead, AuditEntry
from compliance.services import audit_record
from compliance.verification import BreakKind, audit_chain_verify

pytestmark = pytest.mark.django_db


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def lines() -> list[dict]:
    return [json.loads(text) for text in log_path().read_text().splitlines() if text.strip()]


def forged_line(key: Ed25519PrivateKey, *, sequence: int, hash: str) -> None:
    """A checkpoint line signed properly, by ``key``, appended as the platform would."""
    unsigned = Checkpoint(
        kind="checkpoint", sequence=sequence, hash=hash, time="2026-01-01T00:00:00.000000Z",
        key_id=key_id(key.public_key()), signature="",
    )  # fmt: skip
    signature = base64.b64encode(key.sign(unsigned.signed_message())).decode()
    with log_path().open("a") as handle:
        handle.write(json.dumps({**unsigned.as_json(), "signature": signature}, sort_keys=True) + "\n")


def head() -> AuditChainHead:
    return AuditChainHead.objects.get()


def test_a_rotated_key_signs_from_its_rotation_on_and_old_checkpoints_still_verify(system_context):
    audit_record(event_type=EventType.LOGIN)
    old = signing_key()
    old_id = key_id(old.public_key())
    before = checkpoint_create()
    assert before.key_id == old_id

    out = StringIO()
    call_command("audit_key_rotate", stdout=out)
    new_id = key_id(signing_key().public_key())
    assert new_id != old_id and f"signing key {old_id} retired" in out.getvalue()
    # The key file now holds the new key: the old private key is gone from it.
    assert pem(signing_key()) == checkpoints._key_path().read_bytes() != pem(old)
    rotated = AuditEntry.objects.filter(event_type=EventType.AUDIT_CHECKPOINT).order_by("-sequence").first()
    assert rotated.details == {"reason": "key_rotation", "key_id": old_id, "new_key_id": new_id}

    audit_record(event_type=EventType.LOGIN)
    after = checkpoint_create()
    assert after.key_id == new_id

    written = lines()
    # Every line names its key: the old key's checkpoints, its last one of the rotation entry,
    # the rotation line (signed by both), then the new key's.
    assert [(line["kind"], line["key_id"]) for line in written] == [
        ("checkpoint", old_id),
        ("checkpoint", old_id),
        (KIND_ROTATION, new_id),
        ("checkpoint", new_id),
    ]
    assert written[1]["sequence"] == written[2]["sequence"] == rotated.sequence
    assert written[2]["previous_key_id"] == old_id and written[2]["previous_signature"]
    assert "previous_key_id" not in written[0]  # ordinary lines keep their format
    assert all(checkpoint.valid for checkpoint in checkpoints_read())

    result = audit_chain_verify()
    assert result.ok, result.message
    assert result.checkpoints_valid == 4 and result.latest_checkpoint.sequence == after.sequence


def test_two_rotations_in_a_row_still_verify_from_the_first_key(system_context):
    keys = [key_id(signing_key().public_key())]
    checkpoint_create()
    for _ in range(2):
        replacement = Ed25519PrivateKey.generate()
        rotation = checkpoint_key_rotate(new_key_pem=pem(replacement))
        assert rotation.key_id == key_id(replacement.public_key()) == key_id(signing_key().public_key())
        keys.append(rotation.key_id)
        audit_record(event_type=EventType.LOGIN)
        checkpoint_create()
    assert len(set(keys)) == 3
    assert {line["key_id"] for line in lines()} == set(keys)
    result = audit_chain_verify()
    assert result.ok, result.message
    assert result.checkpoints_valid == len(lines())


def test_a_checkpoint_signed_by_an_unknown_key_is_a_bad_signature(system_context):
    audit_record(event_type=EventType.LOGIN)
    checkpoint_create()
    checkpoint_key_rotate()
    entry = audit_record(event_type=EventType.LOGIN, wait_for_chain=True)
    forged_line(Ed25519PrivateKey.generate(), sequence=entry.sequence, hash=entry.hash)
    result = audit_chain_verify()
    assert not result.ok and result.break_kind == BreakKind.BAD_SIGNATURE
    assert f"line {len(lines())} " in result.message


def test_a_retired_key_signs_nothing_after_its_rotation(system_context):
    audit_record(event_type=EventType.LOGIN)
    checkpoint_create()
    retired = signing_key()  # a copy of the key kept somewhere, then leaked
    checkpoint_key_rotate()
    entry = audit_record(event_type=EventType.LOGIN, wait_for_chain=True)
    forged_line(retired, sequence=entry.sequence, hash=entry.hash)
    result = audit_chain_verify()
    assert not result.ok and result.break_kind == BreakKind.BAD_SIGNATURE


def test_a_rotation_line_not_signed_by_the_configured_key_vouches_for_nothing(system_context):
    """Someone with write access to the log adds a rotation from their own key to another of
    theirs: neither is trusted, so the line and their checkpoints are bad signatures."""
    audit_record(event_type=EventType.LOGIN)
    checkpoint_create()
    mallory_old, mallory_new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    current = head()
    unsigned = Checkpoint(
        kind=KIND_ROTATION, sequence=current.sequence, hash=current.hash, time="2026-01-01T00:00:00.000000Z",
        key_id=key_id(mallory_new.public_key()), signature="",
        public_key=base64.b64encode(checkpoints._raw(mallory_new.public_key())).decode(),
        previous_key_id=key_id(mallory_old.public_key()),
        previous_public_key=base64.b64encode(checkpoints._raw(mallory_old.public_key())).decode(),
    )  # fmt: skip
    message = unsigned.signed_message()
    line = {
        **unsigned.as_json(),
        "signature": base64.b64encode(mallory_new.sign(message)).decode(),
        "previous_signature": base64.b64encode(mallory_old.sign(message)).decode(),
    }
    with log_path().open("a") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")
    assert [checkpoint.valid for checkpoint in checkpoints_read()] == [True, False]
    result = audit_chain_verify()
    assert not result.ok and result.break_kind == BreakKind.BAD_SIGNATURE


def test_the_command_refuses_the_key_in_use_and_a_file_that_is_not_a_key(system_context, tmp_path):
    current = tmp_path / "current.pem"
    current.write_bytes(pem(signing_key()))
    with pytest.raises(CommandError, match="nothing to rotate"):
        call_command("audit_key_rotate", new_key=current)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(CommandError, match="not an Ed25519 private key"):
        call_command("audit_key_rotate", new_key=garbage)
    with pytest.raises(CommandError, match="--new-key"):
        call_command("audit_key_rotate", new_key=tmp_path / "missing.pem")
    assert not [entry for entry in AuditEntry.objects.all() if entry.details.get("reason") == "key_rotation"]
    assert not list(tmp_path.glob("keys/.*.new"))
