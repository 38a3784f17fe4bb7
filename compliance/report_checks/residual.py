"""The compliance report's checks: 剩余信息保护 residual information (RI-1, RI-2)."""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, control, line, not_applicable
from compliance.report_checks.live import (
    NONE,
    SESSION_SAMPLE,
    listing,
    users,
)


@control("RI-1", _("Authentication data cleared when released"))
def check_ri1() -> list[Evidence]:
    from django.contrib.sessions.models import Session

    now = timezone.now()
    if not Session.objects.exists():
        return [not_applicable(_("no sessions yet"))]
    expired = Session.objects.filter(expire_date__lt=now).count()
    live = list(Session.objects.filter(expire_date__gte=now).order_by("-expire_date")[:SESSION_SAMPLE])
    evidence = [line(expired < 1000, _("expired sessions awaiting clearsessions: {count}"), count=expired)]
    if not live:
        evidence.append(not_applicable(_("no live sessions to look at")))
        return evidence
    user_ids = {}
    for session in live:
        user_id = session.get_decoded().get("_auth_user_id")
        if user_id is not None:
            user_ids[session.pk] = str(user_id)
    active = {
        str(pk) for pk in users().filter(is_active=True, pk__in=list(user_ids.values())).values_list("pk", flat=True)
    }
    leftover = sorted({uid for uid in user_ids.values() if uid not in active})
    evidence.append(
        line(
            not leftover,
            _("{count} live sessions sampled; sessions of disabled or deleted accounts: {users}"),
            count=len(live),
            users=listing(leftover) or NONE,
        )
    )
    return evidence


@control("RI-2", _("Deleted or expired documents and conversations leave nothing readable"))
def check_ri2() -> list[Evidence]:
    from compliance.preview_crypto import audit_plaintext_previews_count
    from compliance.report_probes import BLOB_GRACE_SECONDS, residual_sample
    from compliance.retention import registered_purgers

    purgers = [p.name for p in registered_purgers()]
    sample = residual_sample()
    evidence = []
    if {"assets.files", "inference.conversations"} - set(purgers):
        evidence.append(line(False, _("retention purgers registered: {purgers}"), purgers=listing(purgers) or NONE))
    # Entries written before previews were sealed keep them readable (the trail is immutable):
    # a residue until they are purged after export, whatever else was deleted.
    legacy = audit_plaintext_previews_count()
    if legacy["total"] or sample.assets or sample.conversations:
        evidence.append(
            line(
                not legacy["total"],
                _(
                    "audit entries still holding a readable preview (written before previews were sealed): {total} "
                    "({prompts} prompt previews, {names} file names)"
                ),
                total=legacy["total"],
                prompts=legacy["prompt_previews"],
                names=legacy["file_names"],
            )
        )
    if not (sample.assets or sample.conversations):
        evidence.append(not_applicable(_("no file or conversation deleted or expired yet: no residue to look for")))
    if sample.assets:
        evidence.append(
            line(
                not (sample.asset_rows or sample.extraction_rows),
                _("{count} deleted files sampled: rows left {rows}; extraction results left {extractions}"),
                count=sample.assets,
                rows=listing(sample.asset_rows) or NONE,
                extractions=listing(sample.extraction_rows) or NONE,
            )
        )
    if sample.conversations:
        evidence.append(
            line(
                not (sample.conversation_rows or sample.message_rows),
                _("{count} deleted conversations sampled: rows left {rows}; messages left {messages}"),
                count=sample.conversations,
                rows=listing(sample.conversation_rows) or NONE,
                messages=sample.message_rows,
            )
        )
    if not sample.blobs_on_disk:
        evidence.append(not_applicable(_("no encrypted blob stored yet")))
        return evidence
    evidence.append(
        line(
            not sample.orphan_blobs,
            _("encrypted blobs no file refers to, older than {seconds} s: {blobs}"),
            seconds=BLOB_GRACE_SECONDS,
            blobs=listing(sample.orphan_blobs[:20]) or NONE,
        )
    )
    return evidence
