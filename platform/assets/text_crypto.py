"""Business text at rest, sealed like files: a data key per object, wrapped by the master key ring.

A *key owner* (``TextKeyOwner``: a conversation, an extraction, an uploaded file's row) carries
its own random AES-256 data key, wrapped by the active master key (``assets.keyring``) and stored
in two columns of its own row: ``text_key_id`` (the master key's id) and ``text_key`` (a random
16-byte reference, then the wrapped key). The reference is the wrap's associated data, with the
model's label, so a wrapped key copied into another kind of row does not unwrap.

Sealed fields (``SealedTextField``, ``SealedCharField``, ``SealedJSONField``) keep only
ciphertext in the database: ``mmt1:`` + base64url(nonce (12) | AES-256-GCM ciphertext + tag).
Each value's associated data names the model, the field, the owner's key reference and, for rows
that share their owner's key (a conversation's messages), the row's own reference — a value moved
to another field, row or object does not decrypt. The model reads and writes plaintext:
values are sealed in ``pre_save`` and opened on first access.

Deleting the owner's row deletes its wrapped key: whatever a backup or a dump still holds of
the object's text no longer decrypts (crypto-shredding). Unwrapped keys are cached on the owner's
model instance only (gone with the request or turn that loaded it), never process-wide.

SQL cannot see through the ciphertext: lookups on sealed fields are refused (``FieldError``),
except ``isnull`` and, on ``SealedCharField``, ``icontains``, which decrypts the candidates
of the open department scope in Python (see ``SealedIContains``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.apps import apps
from django.core.exceptions import FieldError
from django.db import models
from django.db.models.lookups import Lookup
from django.db.models.query_utils import DeferredAttribute

from assets import keyring

SEAL_PREFIX = "mmt1:"
NONCE_SIZE = 12
REF_SIZE = 16
DATA_KEY_BITS = 256
_FIELD_CONTEXT = "mma-text|v1|"

SEALED_LOOKUP_REFUSED = (
    "{model}.{field} is encrypted at rest: SQL cannot filter, order or compare it ({lookup!r}). "
    "Filter in Python after reading (docs/encryption.md)."
)
PLAINTEXT_WRITE_REFUSED = (
    "{field} is encrypted at rest: plaintext cannot be written with a query; "
    "set the attribute and save() the row, which seals it"
)
TEXT_UNREADABLE = (
    "{model}.{field} of row {pk} does not decrypt (its key was shredded, or the value was altered or moved)"
)
NO_TEXT_KEY = "{model} row {pk} has no text key (run the migrations; a bulk insert bypasses save())"


class TextSealError(RuntimeError):
    """A sealed value does not open with its owner's key."""


@dataclass(frozen=True, slots=True)
class SealedValue:
    """A value as stored (ciphertext), not opened yet."""

    text: str

    def __str__(self) -> str:  # never shown by accident as if it were the text
        return "<sealed>"


def _wrap_binding(label: str, ref: bytes) -> str:
    return f"text|{label}|{ref.hex()}"


def text_key_new(label: str) -> tuple[str, bytes, AESGCM]:
    """A fresh data key for an object of model ``label``: (master key id, stored key, cipher)."""
    data_key = AESGCM.generate_key(bit_length=DATA_KEY_BITS)
    ref = os.urandom(REF_SIZE)
    key_id, wrapped = keyring.keyring_load().wrap(data_key, binding=_wrap_binding(label, ref))
    return key_id, ref + wrapped, AESGCM(data_key)


def text_key_open(label: str, key_id: str, stored: bytes) -> AESGCM:
    """The cipher of a stored key; ``keyring.KeyRingError`` when it does not unwrap."""
    stored = bytes(stored)
    ref = stored[:REF_SIZE]
    ring = keyring.keyring_for_unwrap()
    if key_id not in ring.key_ids:
        ring = keyring.keyring_load()  # a key added since the ring was last checked
    data_key = ring.unwrap(key_id, stored[REF_SIZE:], binding=_wrap_binding(label, ref))
    return AESGCM(data_key)


def text_key_rewrap(label: str, key_id: str, stored: bytes) -> tuple[str, bytes]:
    """The same data key wrapped by the active master key (rotation); content is untouched."""
    stored = bytes(stored)
    ref = stored[:REF_SIZE]
    ring = keyring.keyring_load()
    data_key = ring.unwrap(key_id, stored[REF_SIZE:], binding=_wrap_binding(label, ref))
    new_id, wrapped = ring.wrap(data_key, binding=_wrap_binding(label, ref))
    return new_id, ref + wrapped


def _aad(label: str, field: str, owner_ref: bytes, row: str) -> bytes:
    return f"{_FIELD_CONTEXT}{label}.{field}|{owner_ref.hex()}|{row}".encode()


def seal_text(cipher: AESGCM, plaintext: str, *, label: str, field: str, owner_ref: bytes, row: str = "") -> str:
    nonce = os.urandom(NONCE_SIZE)
    sealed = cipher.encrypt(nonce, plaintext.encode("utf-8"), _aad(label, field, owner_ref, row))
    return SEAL_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_text(cipher: AESGCM, stored: str, *, label: str, field: str, owner_ref: bytes, row: str = "") -> str:
    """The plaintext of a sealed value; ``TextSealError`` when it does not authenticate."""
    if not stored.startswith(SEAL_PREFIX):
        raise TextSealError("not a sealed value")
    try:
        raw = base64.urlsafe_b64decode(stored[len(SEAL_PREFIX) :].encode("ascii"))
        plain = cipher.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], _aad(label, field, owner_ref, row))
    except (InvalidTag, ValueError, binascii.Error, UnicodeEncodeError):
        raise TextSealError("does not authenticate") from None
    return plain.decode("utf-8")


class TextKeyOwner(models.Model):
    """A row that holds the data key of its own (and its children's) sealed text."""

    text_key_id = models.CharField("text master key id", max_length=32, blank=True, editable=False)
    text_key = models.BinaryField("wrapped text data key", max_length=96, null=True, blank=True, editable=False)

    class Meta:
        abstract = True

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_text_cipher", None)  # a pickled row never carries its unwrapped key
        return state

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.text_key:
            self.text_cipher(create=True)  # a new object gets its key before any field is sealed
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "text_key_id", "text_key"}
        super().save(*args, **kwargs)

    def text_seal_context(self, field: str) -> tuple[TextKeyOwner, str]:
        """(the owner whose key seals ``field`` of this row, the row's own binding)."""
        return self, ""

    def text_cipher(self, *, create: bool = False) -> AESGCM:
        """This object's data key as a cipher, unwrapped once per model instance. ``save()``
        makes it (``create``) for a new object before any field is sealed; nothing else does, so
        a write that bypasses ``save()`` (``bulk_create``) fails instead of sealing under a key
        that would never be stored."""
        cipher = self.__dict__.get("_text_cipher")
        if cipher is not None:
            return cipher
        label = self._meta.label_lower
        if self.text_key:
            cipher = text_key_open(label, self.text_key_id, self.text_key)
        elif create:
            self.text_key_id, self.text_key, cipher = text_key_new(label)
        else:
            raise TextSealError(NO_TEXT_KEY.format(model=label, pk=self.pk))
        self.__dict__["_text_cipher"] = cipher
        return cipher

    @property
    def text_key_ref(self) -> bytes:
        self.text_cipher()
        return bytes(self.text_key)[:REF_SIZE]


def text_key_owner_models() -> list[type[TextKeyOwner]]:
    return [model for model in apps.get_models() if issubclass(model, TextKeyOwner)]


class SealedAttribute(DeferredAttribute):
    """Opens the stored ciphertext on first access and keeps the plaintext on the instance.
    A data descriptor (it has ``__set__``), so that reads never bypass it."""

    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, SealedValue):
            value = self.field.unseal(instance, value)
            instance.__dict__[self.field.attname] = value
        return value


class _Sealed:
    """What the sealed field classes share; the model must be (or belong to) a ``TextKeyOwner``."""

    descriptor_class = SealedAttribute

    def text_of(self, value: Any) -> str:
        return str(value)

    def value_of(self, text: str) -> Any:
        return text

    def is_empty(self, value: Any) -> bool:
        return value is None or value == ""

    def get_internal_type(self) -> str:
        return "TextField"

    def _context(self, instance) -> tuple[AESGCM, dict[str, Any]]:
        owner, row = instance.text_seal_context(self.name)
        return owner.text_cipher(), {
            "label": instance._meta.label_lower,
            "field": self.name,
            "owner_ref": owner.text_key_ref,
            "row": row,
        }

    def unseal(self, instance, value: SealedValue) -> Any:
        cipher, context = self._context(instance)
        try:
            return self.value_of(open_text(cipher, value.text, **context))
        except TextSealError:
            raise TextSealError(
                TEXT_UNREADABLE.format(model=instance._meta.label_lower, field=self.name, pk=instance.pk)
            ) from None

    def pre_save(self, model_instance, add):
        value = model_instance.__dict__.get(self.attname)
        if isinstance(value, SealedValue) or self.is_empty(value):
            return value
        cipher, context = self._context(model_instance)
        return SealedValue(seal_text(cipher, self.text_of(value), **context))

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return SealedValue(value)

    def to_python(self, value):
        if isinstance(value, SealedValue):
            return value
        return super().to_python(value)

    def get_prep_value(self, value):
        if isinstance(value, SealedValue):
            return value.text
        if self.is_empty(value):
            return None if value is None else ""
        if hasattr(value, "resolve_expression"):
            return value
        raise ValueError(PLAINTEXT_WRITE_REFUSED.format(field=self.name))

    def get_db_prep_value(self, value, connection, prepared=False):
        return value if prepared else self.get_prep_value(value)

    def get_lookup(self, lookup_name):
        if lookup_name in ("isnull", *self.sealed_lookups):
            return super().get_lookup(lookup_name)
        raise FieldError(
            SEALED_LOOKUP_REFUSED.format(model=self.model._meta.label, field=self.name, lookup=lookup_name)
        )

    def get_transform(self, lookup_name):
        raise FieldError(
            SEALED_LOOKUP_REFUSED.format(model=self.model._meta.label, field=self.name, lookup=lookup_name)
        )

    sealed_lookups: tuple[str, ...] = ()


class SealedTextField(_Sealed, models.TextField):
    pass


class SealedCharField(_Sealed, models.CharField):
    """A CharField (``max_length`` validates the plaintext) stored as sealed text."""

    sealed_lookups = ("icontains",)

    def db_type(self, connection):
        return connection.data_types["TextField"]

    def cast_db_type(self, connection):
        return self.db_type(connection)


class SealedJSONField(_Sealed, models.TextField):
    """A JSON value (dict, list, number, string) stored as sealed JSON text; ``None`` is NULL."""

    def text_of(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def value_of(self, text: str) -> Any:
        return json.loads(text)

    def is_empty(self, value: Any) -> bool:
        return value is None

    def to_python(self, value):
        return value  # any JSON value; sealing serialises it

    def from_db_value(self, value, expression, connection):
        return None if value is None else SealedValue(value)

    def formfield(self, **kwargs):
        from django import forms

        return super().formfield(**{"form_class": forms.JSONField, **kwargs})


@SealedCharField.register_lookup
class SealedIContains(Lookup):
    """``name__icontains=...`` on a sealed field, answered by decrypting: the rows of the open
    department scope are read and opened in Python, and the lookup becomes ``pk IN (matches)``.
    It costs one read of every row in scope (with one key unwrap each), not an index scan."""

    lookup_name = "icontains"
    prepare_rhs = False

    def get_db_prep_lookup(self, value, connection):
        return ("%s", [value])

    def as_sql(self, compiler, connection):
        field = self.lhs.output_field
        model = field.model
        needle = str(self.rhs).casefold()
        matches = [
            obj.pk
            for obj in model._default_manager.all().iterator(chunk_size=500)
            if needle in (getattr(obj, field.attname) or "").casefold()
        ]
        pk_column = (
            f"{compiler.quote_name_unless_alias(self.lhs.alias)}.{connection.ops.quote_name(model._meta.pk.column)}"
        )
        if not matches:
            return "1 = 0", []
        placeholders = ", ".join(["%s"] * len(matches))
        return f"{pk_column} IN ({placeholders})", [model._meta.pk.get_db_prep_value(pk, connection) for pk in matches]
