"""Writes of conversations and their turns; each records its audit entry in the same transaction.

A turn (the user's message and the model's answer, complete, stopped or failed) is stored in one
transaction together with its ``inference.call`` entry (``inference.model_calls``, the one
vocabulary of every channel): prompt SHA-256, a masked preview, token counts, latency and
outcome. Files uploaded from the chat pane only for a conversation (``ChatUpload``) are deleted
with it, unless another conversation still uses them: each such file is its uploader's own
reference, so another upload of the same bytes (by anyone) keeps the blob.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from accounts.permissions import Action, authorize
from assets.models import Asset
from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.models import Department
from departments.tenancy import all_departments, department_scope
from inference.model_calls import (
    ModelCall,
    ModelCallResult,
    milliseconds,
    model_call_record,
    model_call_start_record,
)
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
TITLE_TOO_LONG = _("A title has at most 200 characters.")


def _title_from(text: str) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= AUTO_TITLE_CHARS else line[: AUTO_TITLE_CHARS - 1] + "…"


def _require_owner(conversation: Conversation, acting_user: Any) -> None:
    """Refused (404, recorded) unless ``acting_user`` owns the conversation: a service checks
    before it opens its transaction, so the refusal's entry outlives the refused action."""
    authorize(
        acting_user,
        Action.CONVERSATION_OWN,
        department=conversation.department,
        owner_id=conversation.owner_id,
        obj=conversation,
    )


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


def conversation_rename(*, conversation: Conversation, title: str, acting_user: Any) -> Conversation:
    _require_owner(conversation, acting_user)
    title = " ".join((title or "").split())
    if len(title) > TITLE_MAX:
        raise ValueError(TITLE_TOO_LONG)
    with transaction.atomic(durable=True), department_scope(conversation.department_id):
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


def conversation_delete(*, conversation: Conversation, acting_user: Any) -> None:
    """Delete a conversation, its messages and the files uploaded only for it (owner only)."""
    _require_owner(conversation, acting_user)
    with transaction.atomic(durable=True), department_scope(conversation.department_id):
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
    call: ModelCall,
    error_code: str = "",
    stopped_by: str = "",
    relay_seconds: dict[str, float] | None = None,
) -> tuple[ConversationMessage, ConversationMessage]:
    """Store one turn (user message + answer) and its ``inference.call`` entry, all or nothing.
    Without ``conversation`` a new one of ``user`` in ``department`` is created with it.
    ``call`` is what was submitted to the model (inference.model_calls); ``relay_seconds["total"]``
    is the turn's latency."""
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
            model_sha256=call.model_sha256 or None,  # the model version that answered
        )
        answered.full_clean()
        answered.save()
        fields = ["updated_at"]
        if not conversation.title:
            conversation.title = _title_from(prompt) or str(_("Images"))
            fields.append("title")
        conversation.save(update_fields=fields)
        model_call_record(
            call,
            ModelCallResult(
                outcome=Outcome.FAILURE if status == MessageStatus.FAILED else Outcome.SUCCESS,
                latency_ms=milliseconds((relay_seconds or {}).get("total")),
                finish_reason=finish_reason,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                time_to_first_token_ms=milliseconds(usage.get("time_to_first_token")),
                stopped_by=stopped_by,
                error=error_code,
            ),
            actor=user,
            department=conversation.department,
            obj=answered,
            object_repr=f"conversation {conversation.pk}",
        )
    return asked, answered


def inference_start_record(
    *, department: Department | int, user: Any, call: ModelCall, conversation: Any = None
) -> None:
    """Audit a streamed answer before its first token is sent (AU-4: if the audit write fails,
    the answer is never sent). The ``inference.call`` entry with the outcome follows at the end.

    A conversation's first turn starts before the conversation exists: its start entry carries
    the prompt's hash but no preview, which only its ``inference.call`` holds, sealed under the
    conversation's key — so deleting the conversation shreds every preview of it."""
    if conversation is None:
        call = dataclasses.replace(call, preview="")
    model_call_start_record(
        call,
        actor=user,
        department=department,
        object_type="inference.conversation",
        object_id=str(conversation.pk) if conversation is not None else "",
        object_repr=f"conversation {conversation.pk}" if conversation is not None else "",
    )


@transaction.atomic
def inference_refusal_record(*, department: Department | int, user: Any, reason: str, call: ModelCall) -> None:
    """Audit a turn that never reached the model (rate limit, busy engine, unloaded model):
    an ``inference.call`` with ``error`` = the reason and no attempt."""
    model_call_record(
        call,
        ModelCallResult(
            outcome=Outcome.DENIED if reason == "rate_limited" else Outcome.FAILURE,
            latency_ms=None,
            attempts=0,
            error=reason,
        ),
        actor=user,
        department=department,
        object_type="inference.conversation",
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


SCHEMA_INSTRUCTION = "Answer with JSON that matches this schema:"


def template_model_text(template: Any, text: str) -> str:
    """What the model is asked when a turn names a task template: the person's text (the
    template's instruction, perhaps edited) and, for a template with a JSON schema, the schema.
    The conversation stores and shows the person's text only."""
    if not template.json_schema:
        return text
    schema = json.dumps(template.json_schema, ensure_ascii=False, indent=1)
    return f"{text}\n\n{SCHEMA_INSTRUCTION}\n```json\n{schema}\n```"
