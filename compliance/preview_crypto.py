"""Business text in audit entries, sealed under the key of the object it belongs to.

An entry keeps its hashes, ids, sizes and outcomes in clear. Its *previews* are business text:
the masked prompt preview (``prompt_preview``), and, for entries about an object whose own text
is sealed at rest (``assets.text_crypto.TextKeyOwner``: a file, a conversation, an extraction),
whatever of that text the entry would repeat — the file name in an upload's details, an object
description (``object_repr``) made from the file name or the conversation's title, a sealed
field's before/after values. ``audit_record`` seals them here, before the entry's canonical text
is made, so the chain hashes the ciphertext: nothing in the trail changes when a key goes.

Which key:

- the object's own text key (``text_crypto``): the entry's ``obj`` if it is a key owner, the
  owner of its sealed text otherwise (a chat message: its conversation), or the key owner that
  ``object_type``/``object_id`` name (the chat's ``inference.start`` names its conversation);
- for an entry tied to no such object (a ``/v1`` call, a refused chat turn, a refused upload's
  file name): the key of its department and month (``AuditPreviewKey``, department 0 for
  platform entries).

In the entry, each sealed value is replaced in place by its ciphertext (``text_crypto``'s
``mmt1:`` form), ``object_repr`` keeps a neutral ``"<model> <id>"`` and its original goes into
``details["object_repr"]``, sealed; ``details["sealed"]`` names the key
(``{"owner": label, "id": pk, "fields": [paths]}``). Each value's associated data binds it to
the owner's key reference and to its path, so a value moved to another field does not open.

Deleting the object deletes its wrapped key (crypto-shredding): exactly its previews no longer
open, while ``audit_verify`` still passes (the ciphertext is still there, byte for byte). The
console opens previews for the audit administrator (``entry_previews_open``) and says when one
was shredded. Entries written before this change keep plaintext previews (the trail is
immutable): ``audit_plaintext_previews_count`` counts them, the residual of RI-2.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils.translation import gettext_lazy as _

from assets import keyring
from assets.text_crypto import TextKeyOwner, TextSealError, _Sealed, open_text, seal_text, text_key_new

SEALED = "sealed"  # the details key naming the key and the sealed paths
REPR_KEY = "object_repr"  # where a sealed object description goes in the details
PREVIEW_KEYS = ("prompt_preview",)  # sealed in every entry
# Free business text of a key owner, when the entry has no object at hand to compare with
# (a refused upload names the file it refused).
NAME_KEYS = ("name", "original_name", "title")
CHANGE_KEYS = ("before", "after")
_LABEL = "compliance.auditentry"
PLATFORM_DEPARTMENT = 0


class AuditPreviewKey(TextKeyOwner):
    """The key of the previews of one department and month that belong to no object."""

    department_id = models.BigIntegerField(_("department id"), default=PLATFORM_DEPARTMENT)
    month = models.CharField(_("month"), max_length=7)  # YYYY-MM (UTC)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        app_label = "compliance"
        verbose_name = _("audit preview key")
        verbose_name_plural = _("audit preview keys")
        constraints = [
            models.UniqueConstraint(fields=["department_id", "month"], name="audit_preview_key_department_month")
        ]

    def __str__(self) -> str:
        return f"preview key of department {self.department_id} for {self.month}"


class PreviewSealError(RuntimeError):
    """A preview could not be sealed (no key): the entry, hence the action, must not go ahead."""


@cache
def _owner_models() -> dict[str, type[TextKeyOwner]]:
    return {
        model._meta.label_lower: model
        for model in apps.get_models()
        if issubclass(model, TextKeyOwner) and model is not AuditPreviewKey
    }


def _sealed_field_names(model: type[models.Model]) -> frozenset[str]:
    return frozenset(f.name for f in model._meta.concrete_fields if isinstance(f, _Sealed))


def _owner_of(obj: Any) -> TextKeyOwner | None:
    """The key owner of an object's sealed text: itself, or the owner it names (a message's
    conversation); None for an object that seals nothing or is not saved yet."""
    if obj is None:
        return None
    owner = obj if isinstance(obj, TextKeyOwner) else None
    if owner is None and hasattr(obj, "text_seal_context"):
        candidate, _row = obj.text_seal_context("")
        owner = candidate if isinstance(candidate, TextKeyOwner) else None
    if owner is None or owner.pk is None or not owner.text_key:
        return None
    return owner


def _month_key(department_id: int | None, when: datetime) -> AuditPreviewKey:
    """The department-and-month key, made on first use (in the caller's transaction; a
    concurrent first use is resolved by the unique constraint, never by an error)."""
    department = int(department_id or PLATFORM_DEPARTMENT)
    month = f"{when:%Y-%m}"
    key = AuditPreviewKey.objects.filter(department_id=department, month=month).first()
    if key is not None:
        return key
    label = AuditPreviewKey._meta.label_lower
    key_id, stored, cipher = text_key_new(label)
    fresh = AuditPreviewKey(department_id=department, month=month, text_key_id=key_id, text_key=stored)
    # No save(): an insert that loses the race must not abort the caller's transaction.
    AuditPreviewKey.objects.bulk_create([fresh], ignore_conflicts=True)
    key = AuditPreviewKey.objects.get(department_id=department, month=month)
    if bytes(key.text_key) == stored:
        key.__dict__["_text_cipher"] = cipher
    return key


def _reveals(text: str, secrets: Iterable[str]) -> bool:
    return any(secret and secret in text for secret in secrets)


def _sealed_texts(obj: TextKeyOwner) -> list[str]:
    texts = []
    for name in _sealed_field_names(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, str) and value:
            texts.append(value)
    return texts


def _path_set(details: dict, path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if rest:
        details[head] = {**details[head], rest: value}
    else:
        details[head] = value


def _path_get(details: dict, path: str) -> Any:
    head, _, rest = path.partition(".")
    value = details.get(head)
    return value.get(rest) if rest and isinstance(value, dict) else value


def _aad_context(owner: TextKeyOwner, path: str) -> dict[str, Any]:
    return {"label": _LABEL, "field": path, "owner_ref": owner.text_key_ref, "row": owner._meta.label_lower}


def _seal(owner: TextKeyOwner, path: str, value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return seal_text(owner.text_cipher(), text, **_aad_context(owner, path))


def _owner_row(model: type[TextKeyOwner], object_id: str) -> TextKeyOwner | None:
    try:
        return model._base_manager.filter(pk=object_id).first()
    except (ValueError, TypeError, ValidationError):  # an id that cannot be this model's key
        return None


def _business_text(
    subject: TextKeyOwner | None,
    model: type[TextKeyOwner],
    object_id: str,
    object_repr: str,
    details: dict[str, Any],
    paths: dict[str, Any],
) -> None:
    """Add to ``paths`` what of an entry about a key owner is business text: what repeats the
    object's sealed text, sealed fields' values; without a stored object (a refused upload), its
    names and any description it does not state in clear anyway (a model's name)."""
    secrets = _sealed_texts(subject) if subject is not None else None
    sealed_names = _sealed_field_names(model)
    for key, value in details.items():
        if key in CHANGE_KEYS and isinstance(value, dict):
            paths.update({f"{key}.{name}": inner for name, inner in value.items() if name in sealed_names})
        elif key in sealed_names or (
            isinstance(value, str) and value and (_reveals(value, secrets) if secrets is not None else key in NAME_KEYS)
        ):
            paths[key] = value
    neutral = f"{model._meta.model_name} {object_id}".strip()
    clear = {value for key, value in details.items() if key not in paths and isinstance(value, str)}
    if (
        object_repr
        and object_repr != neutral
        and (_reveals(object_repr, secrets) if secrets is not None else object_repr not in clear)
    ):
        paths[REPR_KEY] = object_repr


def entry_seal(
    *,
    obj: Any,
    object_type: str,
    object_id: str,
    object_repr: str,
    department_id: int | None,
    timestamp: datetime,
    details: dict[str, Any] | None,
) -> tuple[str, dict[str, Any] | None]:
    """(the entry's ``object_repr``, its details) with every preview sealed (module docstring).
    Entries with nothing to seal come back as they were, at the cost of a few dict look-ups."""
    owner_model = _owner_models().get(object_type)
    paths: dict[str, Any] = {}
    if details:
        for key in PREVIEW_KEYS:
            if details.get(key) not in (None, ""):
                paths[key] = details[key]
    subject: TextKeyOwner | None = None
    if owner_model is not None and (paths or object_repr or details):
        subject = obj if isinstance(obj, owner_model) else _owner_row(owner_model, object_id) if object_id else None
        if subject is not None or not object_id:
            _business_text(subject, owner_model, object_id, object_repr, details or {}, paths)
            if REPR_KEY in paths:
                object_repr = f"{owner_model._meta.model_name} {object_id}".strip()
        # An id that names no row: nothing sealed there for the entry to repeat.
    if not paths:
        return object_repr, details
    details = dict(details or {})
    if SEALED in details or (REPR_KEY in paths and REPR_KEY in details):
        raise PreviewSealError(f"audit details may not carry {SEALED!r} or {REPR_KEY!r} of their own")
    owner = _owner_of(obj) or _owner_of(subject)
    if owner is None:
        owner = _month_key(department_id, timestamp)
    try:
        for path, value in paths.items():
            _path_set(details, path, _seal(owner, path, value))
    except (keyring.KeyRingError, TextSealError) as exc:
        raise PreviewSealError(
            f"the preview key of {owner._meta.label_lower} {owner.pk} cannot be used: {exc}"
        ) from exc
    details[SEALED] = {"owner": owner._meta.label_lower, "id": str(owner.pk), "fields": sorted(paths)}
    return object_repr, details


def preview_keys_purge(*, department: Any, cutoff: datetime, dry_run: bool = False) -> int:
    """Retention (``purge_expired``, with the department's ``conversation_days``): shred the
    department's month keys whose whole month lies before ``cutoff``. The previews tied to no
    object (``/v1`` prompts, refused turns and uploads, a conversation's first ``inference.start``)
    then expire like the conversations they resemble; the entries themselves stay and verify.
    Registered as the purger ``compliance.audit_previews`` (``days_field="conversation_days"``)."""
    keys = AuditPreviewKey.objects.filter(department_id=department.pk, month__lt=f"{cutoff:%Y-%m}")
    count = keys.count()
    if count and not dry_run:
        keys.delete()
    return count


# Reading back (the auditor console) --------------------------------------------------------

STATE_CLEAR = "clear"  # nothing sealed, and no plaintext preview either
STATE_OPEN = "open"  # sealed, opened with its key
STATE_SHREDDED = "shredded"  # the key was deleted with its object
STATE_UNREADABLE = "unreadable"  # the key is there but the value does not open
STATE_LEGACY = "legacy"  # written before previews were sealed: plaintext


@dataclass
class OpenedEntry:
    """An entry's details as the auditor reads them: sealed values opened (or not)."""

    state: str
    details: dict[str, Any]
    object_repr: str | None = None  # the sealed original description, opened
    owner_label: str = ""
    owner_id: str = ""
    fields: list[str] = field(default_factory=list)

    @property
    def plain_details(self) -> dict[str, Any]:
        """The details as the caller wrote them: opened values, without the sealing's bookkeeping
        (``sealed``; a sealed description is ``object_repr`` here, and in ``self.object_repr``)."""
        return {key: value for key, value in self.details.items() if key != SEALED}

    @property
    def month_key(self) -> bool:
        """Sealed under a department-and-month key (the entry belongs to no object)."""
        return self.owner_label == AuditPreviewKey._meta.label_lower


def _legacy(details: dict[str, Any]) -> bool:
    return any(details.get(key) not in (None, "") for key in PREVIEW_KEYS)


def entry_previews_open(entry: Any, owners: dict[tuple[str, str], Any] | None = None) -> OpenedEntry:
    """Open an entry's sealed previews for the audit administrator. ``owners`` caches key owners
    across the entries of one page (None: look each one up)."""
    details = dict(entry.details or {})
    sealed = details.get(SEALED)
    if not isinstance(sealed, dict):
        return OpenedEntry(STATE_LEGACY if _legacy(details) else STATE_CLEAR, details)
    label, pk, paths = str(sealed.get("owner", "")), str(sealed.get("id", "")), list(sealed.get("fields") or [])
    opened = OpenedEntry(STATE_OPEN, details, owner_label=label, owner_id=pk, fields=paths)
    cache_key = (label, pk)
    if owners is not None and cache_key in owners:
        owner = owners[cache_key]
    else:
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            model = None
        owner = (
            model._base_manager.filter(pk=pk).first() if model is not None and issubclass(model, TextKeyOwner) else None
        )
        if owners is not None:
            owners[cache_key] = owner
    if owner is None:
        opened.state = STATE_SHREDDED
        return opened
    plain: dict[str, Any] = {}
    try:
        for path in paths:
            stored = _path_get(details, path)
            plain[path] = json.loads(open_text(owner.text_cipher(), str(stored), **_aad_context(owner, path)))
    except (keyring.KeyRingError, TextSealError, ValueError):
        opened.state = STATE_UNREADABLE
        return opened
    for path, value in plain.items():
        if path == REPR_KEY:
            opened.object_repr = value
        _path_set(details, path, value)
    return opened


def forwarding_details(details: dict[str, Any]) -> dict[str, Any]:
    """The details as shipped to syslog: sealed previews as they are (ciphertext), and a preview
    that somehow is in clear (an entry that bypassed ``audit_record``) replaced by its SHA-256,
    so that a readable preview never leaves the platform."""
    sealed = details.get(SEALED)
    sealed_paths = set(sealed.get("fields") or []) if isinstance(sealed, dict) else set()
    clear = [key for key in PREVIEW_KEYS if details.get(key) not in (None, "") and key not in sealed_paths]
    if not clear:
        return details
    shipped = dict(details)
    for key in clear:
        text = json.dumps(shipped[key], ensure_ascii=False)
        shipped[key] = {"withheld_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    return shipped


def audit_plaintext_previews_count() -> dict[str, int]:
    """Entries of the trail that still hold a readable preview, written before previews were
    sealed (RI-2's residual: the trail is immutable, so they stay until purged after export).

    ``{"prompt_previews": n, "file_names": m, "total": entries}``: entries with an unsealed prompt
    preview; entries about a file (``assets.asset``) whose description or details name the file
    in clear. Counted in SQL on the stored canonical text (one pass per table), pending entries too.
    """
    from compliance.events import EventType
    from compliance.models import AuditEntry, AuditPending

    # The details column holds the canonical text itself: searched as text, not through the
    # field's own lookups (which would encode the needle as JSON first).
    unsealed = ~Q(details_text__contains=f'"{SEALED}":{{')
    prompt = (
        Q(details_text__contains='"prompt_preview":"') & ~Q(details_text__contains='"prompt_preview":""') & unsealed
    )
    asset_events = [value for value in EventType.values if value.startswith("asset.")]
    repr_names_file = (
        ~Q(object_repr="") & ~Q(object_repr="asset") & ~Q(object_repr=Concat(Value("asset "), "object_id"))
    )
    named = Q(object_type="assets.asset") & (
        repr_names_file | (Q(event_type__in=asset_events) & Q(details_text__contains='"name":"') & unsealed)
    )
    counts = {"prompt_previews": 0, "file_names": 0, "total": 0}
    for model in (AuditEntry, AuditPending):
        rows = model.objects.annotate(details_text=Cast("details", output_field=models.TextField())).filter(
            prompt | named
        )
        found = rows.aggregate(
            prompt_previews=Count("pk", filter=prompt), file_names=Count("pk", filter=named), total=Count("pk")
        )
        for name, value in found.items():
            counts[name] += value or 0
    return counts


__all__ = [
    "AuditPreviewKey",
    "OpenedEntry",
    "PreviewSealError",
    "audit_plaintext_previews_count",
    "entry_previews_open",
    "entry_seal",
    "forwarding_details",
    "preview_keys_purge",
]
