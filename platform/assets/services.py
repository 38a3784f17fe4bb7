"""Writes to assets: upload, classification change, delete (crypto-shredding), retention purge,
master key rotation. Each records its audit entry in the same transaction as the change.

``asset_upload`` is the one entry point for every upload path (portal, REST API, tests): it
takes a file-like object, an iterator of byte chunks, or a blob already staged by
``assets.upload_handlers.EncryptingUploadHandler``. It either stores everything (encrypted
blob, wrapped key, row, audit entry) or nothing, and answers a refusal with ``AssetRejected``
(a clear 400/413 for the view), audited as a failed upload.

Every upload is its uploader's own reference (one ``Asset`` row). Bytes the department already
holds are not stored again: the new row names the existing blob. Deleting a row (by its
uploader, with a conversation, by retention) removes that reference only; the blob is
crypto-shredded with the last one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, BinaryIO

from django.conf import settings
from django.db import models, transaction
from django.db.models import Max, Sum

from accounts.permissions import Action, allowed, authorize
from assets import content, keyring, rejections, text_crypto
from assets.documents.jobs import text_layer_create
from assets.documents.office import cache_forget as office_cache_forget
from assets.models import Asset
from assets.names import original_name_clean
from assets.rejections import AssetRejected
from assets.storage import StagedBlob, blob_delete, stage_stream
from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.models import Classification, Department
from departments.tenancy import all_departments, department_scope

logger = logging.getLogger(__name__)


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024


def department_usage_bytes(department: Department) -> int:
    """Bytes the department's blobs take: a blob that several uploads name counts once."""
    with department_scope(department):
        blobs = Asset.objects.order_by().values("storage_name").annotate(blob_size=Max("size"))
        return blobs.aggregate(total=Sum("blob_size"))["total"] or 0


def _department_lock(department: Department | int) -> None:
    """Serialise the department's uploads and deletions: the quota sum, the look-up of bytes
    already stored and the question whether a blob has references left all see committed rows."""
    department_id = getattr(department, "pk", department)
    Department.objects.select_for_update().filter(pk=department_id).first()


def asset_user_may_delete(*, asset: Asset, user: Any) -> bool:
    """The uploader, or an administrator of the asset's department (or, through the REST API,
    an API key of that department with the assets:write scope): ``Action.ASSET_DELETE``."""
    return allowed(user, Action.ASSET_DELETE, department=asset.department, owner_id=asset.uploaded_by_id)


def asset_upload_refused(
    *, department: Department, acting_user: Any, original_name: str, rejection: AssetRejected, size: int | None = None
) -> None:
    """Audit an upload refused before it reached ``asset_upload`` (e.g. by the upload handler
    while streaming), exactly as ``asset_upload`` audits its own refusals."""
    name = "".join(char for char in str(original_name) if char.isprintable())
    audit_record(
        event_type=EventType.ASSET_UPLOAD,
        outcome=Outcome.FAILURE,
        actor=acting_user,
        department=department,
        object_type="assets.asset",
        object_repr=name[:255],
        details={"reason": rejection.code, "size": size},
    )


def asset_upload(
    *,
    department: Department,
    uploaded_by: Any,
    stream: StagedBlob | BinaryIO | Iterable[bytes],
    original_name: str,
    acting_user: Any = None,
    expected_size: int | None = None,
) -> Asset:
    """Validate, hash, encrypt and store one file in ``department``; returns the asset (the
    existing one when the department already holds the same bytes)."""
    acting_user = acting_user if acting_user is not None else uploaded_by
    staged: StagedBlob | None = stream if isinstance(stream, StagedBlob) else None
    safe_name = original_name if isinstance(original_name, str) else ""
    try:
        name = original_name_clean(original_name)
        if staged is None:
            staged = stage_stream(stream, max_bytes=max_upload_bytes(), expected_size=expected_size)
        deidentified: dict[str, Any] | None = None
        if staged.kind is content.DICOM:
            # Patient identifiers go before anything is stored or shown: the de-identified bytes
            # are staged again (encrypted) and are what is checked, hashed and kept.
            from assets.documents.dicom import dicom_deidentify_staged

            uploaded_sha256 = staged.sha256
            staged, report = dicom_deidentify_staged(staged, department=department)
            deidentified = {"uploaded_sha256": uploaded_sha256, "deidentification": report.audit_details()}
        with staged.open_reader() as reader:
            info = content.inspect_content(staged.kind, reader, staged.size)
        return _store(
            department=department,
            uploaded_by=uploaded_by,
            staged=staged,
            name=name,
            info=info,
            acting_user=acting_user,
            deidentified=deidentified,
        )
    except AssetRejected as rejection:
        if staged is not None:
            staged.discard()
        asset_upload_refused(
            department=department,
            acting_user=acting_user,
            original_name=safe_name,
            rejection=rejection,
            size=staged.size if staged is not None else None,
        )
        raise
    except BaseException:
        if staged is not None:
            staged.uncommit()
            staged.discard()
        raise


def _store(
    *,
    department: Department,
    uploaded_by: Any,
    staged: StagedBlob,
    name: str,
    info: content.ContentInfo,
    acting_user: Any,
    deidentified: dict[str, Any] | None = None,
) -> Asset:
    uploaded_sha256 = (deidentified or {}).get("uploaded_sha256", "")
    try:
        with transaction.atomic(), department_scope(department):
            # One upload at a time per department reaches this point: the quota sum and the
            # duplicate look-up below then see every committed file.
            _department_lock(department)
            existing = Asset.objects.filter(sha256=staged.sha256).order_by("created_at").first()
            reference = {
                "department": department,
                "uploaded_by": uploaded_by if getattr(uploaded_by, "is_authenticated", False) else None,
                "uploaded_by_name": uploaded_by.get_username() if hasattr(uploaded_by, "get_username") else "",
                "original_name": name,
                "classification": department.classification,
            }
            if existing is not None:
                # The bytes are stored already: this upload becomes its uploader's own reference
                # to that blob (and its key), so no other reference's deletion can take it away.
                asset = Asset(
                    **reference,
                    storage_name=existing.storage_name,
                    size=existing.size,
                    content_type=existing.content_type,
                    sha256=existing.sha256,
                    page_count=existing.page_count,
                    width=existing.width,
                    height=existing.height,
                    key_id=existing.key_id,
                    wrapped_key=existing.wrapped_key,
                    unusable_pages=existing.unusable_pages,
                    uploaded_sha256=uploaded_sha256,
                )
                # The text layer is copied from the other upload's once that one is done.
                _asset_record(
                    asset,
                    acting_user,
                    {"deduplicated": True, "name": name, "sha256": staged.sha256, "size": staged.size},
                    {"blob_of": str(existing.pk), "classification": asset.classification, **(deidentified or {})},
                )
                staged.discard()
                return asset
            quota = settings.DEPARTMENT_QUOTA_MB * 1024 * 1024
            if quota and department_usage_bytes(department) + staged.size > quota:
                raise rejections.quota_exceeded(quota)
            key_id, wrapped = keyring.keyring_load().wrap(staged.data_key, binding=staged.storage_name)
            asset = Asset(
                **reference,
                storage_name=staged.storage_name,
                size=staged.size,
                content_type=info.kind.mime,
                sha256=staged.sha256,
                page_count=info.page_count,
                width=info.width,
                height=info.height,
                key_id=key_id,
                wrapped_key=wrapped,
                uploaded_sha256=uploaded_sha256,
            )
            # The text layer is read in the background once the upload commits.
            _asset_record(
                asset,
                acting_user,
                {"name": name, "sha256": staged.sha256, "size": staged.size, "type": info.kind.mime},
                {"pages": info.page_count, "classification": asset.classification, **(deidentified or {})},
            )
            # Last step inside the transaction: if the rename fails, the row rolls back.
            staged.commit()
            return asset
    except BaseException:
        # The row did not commit (or the commit itself failed): the blob must not stay behind.
        staged.uncommit()
        staged.discard()
        raise


def _asset_record(asset: Asset, acting_user: Any, *details: dict) -> None:
    """Store a new upload's row, its text layer's job, and its ``asset.upload`` entry (the details
    merged in order)."""
    asset.full_clean()
    asset.save()
    text_layer_create(asset)
    audit_record(
        event_type=EventType.ASSET_UPLOAD,
        actor=acting_user,
        department=asset.department,
        obj=asset,
        details={key: value for part in details for key, value in part.items()},
    )


def asset_classification_update(*, asset: Asset, classification: int, acting_user: Any) -> Asset:
    before = asset.classification
    if acting_user != "system":
        # Labels are security policy (AC-5, AC-7): a department administrator may raise its
        # files' labels, only the security administrator may lower one.
        authorize(acting_user, Action.ASSET_LABEL_RAISE, department=asset.department, obj=asset)
        if int(classification) < before:
            authorize(acting_user, Action.LABEL_MANAGE, obj=asset, requested=int(classification), before=before)
    with transaction.atomic():
        asset.classification = Classification(classification)
        asset.full_clean()
        asset.save(update_fields=["classification"])
        audit_record(
            event_type=EventType.ASSET_UPDATE,
            actor=acting_user,
            department=asset.department,
            obj=asset,
            details={"before": {"classification": before}, "after": {"classification": int(classification)}},
        )
        return asset


def _derived_rows(asset: Asset) -> dict[str, list[str]]:
    """What the row's deletion takes with it (``on_delete=CASCADE`` towards the asset: e.g. the
    extraction results and batch outputs read from this file), by model label, for the audit
    entry. Found through the relations themselves, so this app names no app above it."""
    derived: dict[str, list[str]] = {}
    for relation in Asset._meta.get_fields(include_hidden=True):
        if not (relation.auto_created and not relation.concrete and (relation.one_to_many or relation.one_to_one)):
            continue
        related = relation.related_model
        if related._meta.auto_created or relation.on_delete is not models.CASCADE:
            continue
        ids = related._base_manager.filter(**{relation.field.name: asset.pk}).values_list("pk", flat=True)
        ids = [str(pk) for pk in ids]
        if ids:
            derived[related._meta.label_lower] = ids
    return derived


def _shred(asset: Asset, *, acting_user: Any, reason: str) -> None:
    """Delete the reference (its wrapped keys with it: the blob's copy and the file name's own)
    and what was derived from it (extraction results, batch outputs: they follow their file);
    when it was the blob's last reference, once that committed, the blob. Runs inside the
    caller's transaction."""
    storage_name = asset.storage_name
    _department_lock(asset.department_id)
    references_left = Asset.objects.filter(storage_name=storage_name).exclude(pk=asset.pk).count()
    derived = _derived_rows(asset)
    audit_record(
        event_type=EventType.ASSET_DELETE,
        actor=acting_user,
        department=asset.department_id,
        obj=asset,
        details={
            "reason": reason,
            "sha256": asset.sha256,
            "size": asset.size,
            "crypto_shredded": references_left == 0,
            "references_left": references_left,
            # Deleted with the file, each with its own text key (extractions: fields, raw answer).
            "deleted_with": {label: {"count": len(ids), "ids": ids[:100]} for label, ids in derived.items()},
        },
    )
    Asset.objects.filter(pk=asset.pk).delete()
    if references_left:
        return  # other uploads of the same bytes keep the blob and their own keys

    def remove_blob() -> None:
        office_cache_forget(storage_name)  # this process's laid-out pages of the file (plaintext in memory)
        try:
            blob_delete(storage_name)
        except OSError:
            # The key is gone, so what remains is unreadable; the sweep removes it later.
            logger.exception("could not remove blob %s after deleting its key", storage_name)

    transaction.on_commit(remove_blob)


def asset_delete(*, asset: Asset, acting_user: Any) -> None:
    """Delete one upload (a reference) by its uploader or a department administrator; the blob is
    crypto-shredded with its last reference."""
    if acting_user != "system":
        authorize(
            acting_user, Action.ASSET_DELETE, department=asset.department, owner_id=asset.uploaded_by_id, obj=asset
        )
    with transaction.atomic(), department_scope(asset.department_id):
        _shred(asset, acting_user=acting_user, reason="deleted by user")


def asset_page_unusable_mark(*, asset: Asset, page: int) -> None:
    """Remember that ``page`` (1-based; 1 for a file that does not decode at all) failed to decode
    when it was used, on every upload of the same bytes; audited. A system action: nobody asked
    for it, the decoder found it. Its own transaction, so the mark stays whatever the caller does."""
    with transaction.atomic(), department_scope(asset.department_id):
        references = list(Asset.objects.select_for_update().filter(storage_name=asset.storage_name))
        for reference in references:
            if page not in reference.unusable_pages:
                reference.unusable_pages = sorted({*reference.unusable_pages, page})
                reference.save(update_fields=["unusable_pages"])
        audit_record(
            event_type=EventType.ASSET_UPDATE,
            actor="system",
            department=asset.department_id,
            obj=asset,
            details={"unusable_page": page, "reason": "the page did not decode when it was used"},
        )
    asset.unusable_pages = sorted({*asset.unusable_pages, page})


def asset_purge_expired(*, department: Department, cutoff: datetime, dry_run: bool = False) -> int:
    """Delete the department's uploads made before ``cutoff`` (a blob is crypto-shredded with
    its last reference, so a recent upload of the same bytes keeps it); returns how many
    uploads (would be) removed. Called by ``purge_expired``, which decides the cutoff."""
    with department_scope(department):
        expired = list(Asset.objects.filter(created_at__lt=cutoff).order_by("created_at"))
        if dry_run:
            return len(expired)
        for asset in expired:
            with transaction.atomic():
                _shred(asset, acting_user="system", reason="retention")
    return len(expired)


def asset_master_key_rotate(*, acting_user: Any = "system", batch_size: int = 500) -> dict[str, int]:
    """Re-wrap every data key not wrapped by the active master key. Content is untouched.

    The text keys of conversations, extractions and file names (``assets.text_crypto``) are
    re-wrapped too: ``{"rewrapped": files' data keys, "text_rewrapped": text keys,
    "remaining": m}``; ``remaining`` counts keys (of either kind) that could not be unwrapped
    (their master key is missing from the ring) and is 0 after a good run.
    """
    ring = keyring.keyring_load()
    rewrapped = failed = 0
    with all_departments(reason="master key rotation re-wraps every file's data key"):
        pending = Asset.objects.exclude(key_id=ring.active_id).order_by("pk").values_list("pk", flat=True)
        ids = list(pending)
        for start in range(0, len(ids), batch_size):
            with transaction.atomic():
                for asset in Asset.objects.select_for_update().filter(pk__in=ids[start : start + batch_size]):
                    try:
                        data_key = ring.unwrap(asset.key_id, asset.wrapped_key, binding=asset.storage_name)
                    except keyring.KeyRingError:
                        failed += 1
                        logger.error("asset %s: data key does not unwrap with the key ring", asset.pk)
                        continue
                    asset.key_id, asset.wrapped_key = ring.wrap(data_key, binding=asset.storage_name)
                    asset.save(update_fields=["key_id", "wrapped_key"])
                    rewrapped += 1
        text_rewrapped, text_failed = _text_keys_rewrap(ring, batch_size=batch_size)
        failed += text_failed
        with transaction.atomic():
            audit_record(
                event_type=EventType.ASSET_KEY_ROTATE,
                outcome=Outcome.SUCCESS if failed == 0 else Outcome.FAILURE,
                actor=acting_user,
                object_type="assets.keyring",
                object_repr=ring.active_id,
                details={
                    "active_key_id": ring.active_id,
                    "rewrapped": rewrapped,
                    "text_keys_rewrapped": text_rewrapped,
                    "failed": failed,
                },
            )
    return {"rewrapped": rewrapped, "text_rewrapped": text_rewrapped, "remaining": failed}


def _text_keys_rewrap(ring: keyring.KeyRing, *, batch_size: int) -> tuple[int, int]:
    """Re-wrap every text key (one per conversation, extraction, file row) not wrapped by the
    active master key; (re-wrapped, failed). Runs inside ``all_departments``."""
    rewrapped = failed = 0
    for model in text_crypto.text_key_owner_models():
        label = model._meta.label_lower
        pending = model._base_manager.filter(text_key__isnull=False).exclude(text_key_id=ring.active_id)
        ids = list(pending.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), batch_size):
            with transaction.atomic():
                rows = model._base_manager.select_for_update().filter(pk__in=ids[start : start + batch_size])
                for pk, key_id, stored in rows.values_list("pk", "text_key_id", "text_key"):
                    try:
                        new_id, new_stored = text_crypto.text_key_rewrap(label, key_id, stored)
                    except keyring.KeyRingError:
                        failed += 1
                        logger.error("%s %s: text key does not unwrap with the key ring", label, pk)
                        continue
                    model._base_manager.filter(pk=pk).update(text_key_id=new_id, text_key=new_stored)
                    rewrapped += 1
    return rewrapped, failed
