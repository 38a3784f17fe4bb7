"""Writes of conversations and their turns; each records its audit entry in the same transaction.

A turn (the user's message and the model's answer, complete, stopped or failed) is stored in one
transaction together with its ``inference.call`` entry: prompt SHA-256, a masked preview, token
counts, latency and outcome. Files uploaded from the chat pane only for a conversation
(``ChatUpload``) are crypto-shredded with it, unless another conversation still uses them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from assets.models import Asset
from compliance.events import EventType, Outcome
from compliance.masking import masked_preview
from compliance.services import audit_record
from departments.models import Department
from departments.tenancy import all_departments, department_scope
from inference.models import (
    ChatPolicy,
    ChatUpload,
    Conversation,
    ConversationMessage,
    MessageRole,
    MessageStatus,
)

logger = logging.getLogger(__name__)

TITLE_MAX = 200
AUTO_TITLE_CHARS = 60
NOT_OWNER = _("Only the owner of a conversation may change it.")
TITLE_TOO_LONG = _("A title has at most 200 characters.")


def _title_from(text: str) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= AUTO_TITLE_CHARS else line[: AUTO_TITLE_CHARS - 1] + "…"


def _require_owner(conversation: Conversation, acting_user: Any, action: str) -> None:
    if conversation.owner_id != getattr(acting_user, "pk", None):
        audit_record(
            event_type=EventType.ACCESS_DENIED,
            outcome=Outcome.DENIED,
            actor=acting_user,
            department=conversation.department_id,
            obj=conversation,
            details={"action": action, "reason": "not the owner of the conversation"},
        )
        raise PermissionDenied(NOT_OWNER)


@transaction.atomic
def conversation_create(*, department: Department, owner: Any, title: str = "", acting_user: Any) -> Conversation:
    with department_scope(department):
        conversation = Conversation(department=department, owner=owner, title=_title_from(title)[:TITLE_MAX])
        conversation.full_clean()
        conversation.save()
        audit_record(
            event_type=EventType.CONVERSATION_CREATE,
            actor=acting_user,
            department=department,
            obj=conversation,
            object_repr=f"conversation {conversation.pk}",  # titles are user text: kept out of the trail
        )
    return conversation


@transaction.atomic
def conversation_rename(*, conversation: Conversation, title: str, acting_user: Any) -> Conversation:
    _require_owner(conversation, acting_user, "conversation.rename")
    title = " ".join((title or "").split())
    if len(title) > TITLE_MAX:
        raise ValueError(TITLE_TOO_LONG)
    with department_scope(conversation.department_id):
        conversation.title = title
        conversation.full_clean()
        conversation.save(update_fields=["title", "updated_at"])
        audit_record(
            event_type=EventType.CONVERSATION_UPDATE,
            actor=acting_user,
            department=conversation.department_id,
            obj=conversation,
            object_repr=f"conversation {conversation.pk}",
            details={"changed": ["title"]},
        )
    return conversation


def _chat_only_assets(conversations: Iterable[Conversation]) -> list[Asset]:
    """Files uploaded from the chat pane for these conversations and used by no other one."""
    ids = [conversation.pk for conversation in conversations]
    if not ids:
        return []
    owners = {conversation.owner_id for conversation in conversations}
    # Only files the conversations' owners uploaded themselves: attaching another member's chat
    # upload to one's own conversation must not let one delete it.
    candidates = Asset.objects.filter(
        conversation_messages__conversation_id__in=ids, chat_upload__isnull=False, uploaded_by_id__in=owners
    ).distinct()
    used_elsewhere = set(
        ConversationMessage.assets.through.objects.filter(asset_id__in=candidates.values("pk"))
        .exclude(conversationmessage__conversation_id__in=ids)
        .values_list("asset_id", flat=True)
    )
    return [asset for asset in candidates if asset.pk not in used_elsewhere]


def _delete_with_uploads(conversations: list[Conversation], *, acting_user: Any, reason: str) -> int:
    from assets.services import asset_delete, asset_user_may_delete

    assets = _chat_only_assets(conversations)
    for conversation in conversations:
        audit_record(
            event_type=EventType.CONVERSATION_DELETE,
            actor=acting_user,
            department=conversation.department_id,
            obj=conversation,
            object_repr=f"conversation {conversation.pk}",
            details={
                "reason": reason,
                "owner": conversation.owner.get_username(),
                "messages": conversation.messages.count(),
            },
        )
    Conversation.objects.filter(pk__in=[c.pk for c in conversations]).delete()
    for asset in assets:
        # Retention shreds as the system; a person only shreds what the assets app lets them delete.
        if acting_user == "system":
            asset_delete(asset=asset, acting_user="system")
        elif asset_user_may_delete(asset=asset, user=acting_user):
            asset_delete(asset=asset, acting_user=acting_user)
    return len(conversations)


@transaction.atomic
def conversation_delete(*, conversation: Conversation, acting_user: Any) -> None:
    """Delete a conversation, its messages and the files uploaded only for it (owner only)."""
    _require_owner(conversation, acting_user, "conversation.delete")
    with department_scope(conversation.department_id):
        _delete_with_uploads([conversation], acting_user=acting_user, reason="deleted by its owner")


def conversation_purge_expired(*, department: Department, cutoff: datetime, dry_run: bool = False) -> int:
    """Retention: conversations untouched since before ``cutoff`` go, with their chat-only files.
    Called by ``compliance.retention.purge_expired`` inside its transaction."""
    with department_scope(department):
        expired = list(Conversation.objects.filter(updated_at__lt=cutoff).select_related("owner"))
        if dry_run or not expired:
            return len(expired)
        return _delete_with_uploads(expired, acting_user="system", reason="retention")


@transaction.atomic
def chat_upload_mark(*, department: Department, asset: Asset) -> ChatUpload:
    """Remember that ``asset`` was uploaded from the chat pane (not for a deduplicated file)."""
    with department_scope(department):
        upload, _created = ChatUpload.objects.get_or_create(department=department, asset=asset)
    return upload


def prompt_sha256(text: str) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


@transaction.atomic
def conversation_turn_record(
    *,
    conversation: Conversation | None,
    department: Department | None = None,
    user: Any,
    prompt: str,
    assets: list[Asset],
    answer: str,
    status: str,
    usage: dict[str, Any] | None,
    finish_reason: str,
    params: dict[str, Any],
    model: str,
    error_code: str = "",
    relay_seconds: dict[str, float] | None = None,
) -> tuple[ConversationMessage, ConversationMessage]:
    """Store one turn (user message + answer) and its ``inference.call`` entry, all or nothing.
    Without ``conversation`` a new one of ``user`` in ``department`` is created with it."""
    if status not in MessageStatus.values:
        raise ValueError(f"unknown message status {status!r}")
    if conversation is None:
        conversation = conversation_create(department=department, owner=user, title=prompt, acting_user=user)
    usage = dict(usage or {})
    with department_scope(conversation.department_id):
        asked = ConversationMessage(
            department_id=conversation.department_id,
            conversation=conversation,
            role=MessageRole.USER,
            content=prompt,
        )
        asked.full_clean()
        asked.save()
        if assets:
            asked.assets.set(assets)
        answered = ConversationMessage(
            department_id=conversation.department_id,
            conversation=conversation,
            role=MessageRole.ASSISTANT,
            content=answer,
            status=status,
            usage={
                **usage,
                "finish_reason": finish_reason,
                "params": params,
                "model": model,
                **({"error": error_code} if error_code else {}),
                **({"relay": relay_seconds} if relay_seconds else {}),
            },
        )
        answered.full_clean()
        answered.save()
        fields = ["updated_at"]
        if not conversation.title:
            conversation.title = _title_from(prompt) or str(_("Images"))
            fields.append("title")
        conversation.save(update_fields=fields)
        audit_record(
            event_type=EventType.INFERENCE,
            outcome=Outcome.FAILURE if status == MessageStatus.FAILED else Outcome.SUCCESS,
            actor=user,
            department=conversation.department,
            obj=answered,
            object_repr=f"conversation {conversation.pk}",
            details={
                "channel": "websocket",
                "conversation": conversation.pk,
                "prompt_sha256": prompt_sha256(prompt),
                "prompt_preview": masked_preview(prompt),
                "assets": [str(asset.pk) for asset in assets],
                "status": status,
                "finish_reason": finish_reason,
                "error": error_code,
                "model": model,
                "params": params,
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "latency": usage.get("latency"),
                "time_to_first_token": usage.get("time_to_first_token"),
            },
        )
    return asked, answered


def inference_start_record(
    *,
    department: Department | int,
    user: Any,
    channel: str,
    prompt: str,
    conversation: Any = None,
    assets: Any = (),
    model: str = "",
) -> None:
    """Audit a streamed answer before its first token is sent (AU-4: if the audit write fails,
    the answer is never sent). The ``inference.call`` entry with the outcome follows at the end."""
    audit_record(
        event_type=EventType.INFERENCE_START,
        actor=user,
        department=department,
        object_type="inference.conversation" if channel == "websocket" else "inference.model",
        object_id=str(conversation.pk) if conversation is not None else "",
        object_repr=model[:255],
        details={
            "channel": channel,
            "conversation": conversation.pk if conversation is not None else None,
            "prompt_sha256": prompt_sha256(prompt),
            "prompt_preview": masked_preview(prompt),
            "assets": [str(asset.pk) for asset in assets],
        },
    )


@transaction.atomic
def inference_refusal_record(*, department: Department | int, user: Any, reason: str, prompt: str = "") -> None:
    """Audit a turn that never reached the model (rate limit, busy engine, unloaded model)."""
    audit_record(
        event_type=EventType.INFERENCE,
        outcome=Outcome.DENIED if reason == "rate_limited" else Outcome.FAILURE,
        actor=user,
        department=department,
        object_type="inference.conversation",
        details={
            "channel": "websocket",
            "reason": reason,
            "prompt_sha256": prompt_sha256(prompt),
            "prompt_preview": masked_preview(prompt),
        },
    )


@transaction.atomic
def chat_policy_set(*, department: Department, admin_may_read_content: bool, acting_user: Any) -> ChatPolicy:
    """The security administrator's switch; audited with before/after."""
    with all_departments(reason="the security administrator sets a department's chat policy"):
        policy, _created = ChatPolicy.objects.select_for_update().get_or_create(department=department)
        before = policy.admin_may_read_content
        policy.admin_may_read_content = bool(admin_may_read_content)
        policy.full_clean()
        policy.save()
        audit_record(
            event_type=EventType.SECURITY_SETTING_CHANGE,
            actor=acting_user,
            department=department,
            obj=policy,
            details={
                "setting": "chat.admin_may_read_content",
                "before": before,
                "after": policy.admin_may_read_content,
            },
        )
    return policy
