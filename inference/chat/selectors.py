"""Reads of conversations, messages, templates and the chat policy; always relative to a requester.

A member sees their own conversations only; anything else (another member's conversation, another
department's, an unknown id) answers the same 404 and the denial is audited. The department
administrator sees every conversation's metadata, and their content only when the department's
chat policy allows it (``conversation_content_for_admin`` audits each viewing).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from accounts.permissions import Action, RefusedNotFound, object_not_found
from departments.models import Department
from departments.tenancy import department_scope
from inference.models import ChatPolicy, Conversation, ConversationMessage, MessageRole, MessageStatus, TaskTemplate


class ConversationNotFound(RefusedNotFound):
    pass


def conversation_list_for_owner(*, department: Department, user: Any) -> QuerySet[Conversation]:
    return Conversation.objects.filter(department=department, owner=user).order_by("-updated_at", "-pk")


def conversation_get_for_owner(
    *, department: Department, user: Any, conversation_id: Any, purpose: str
) -> Conversation:
    """The user's own conversation, or ConversationNotFound (404) with the denial audited."""
    try:
        pk = int(conversation_id)
    except (TypeError, ValueError):
        pk = None
    conversation = None
    if pk is not None:
        conversation = (
            Conversation.objects.filter(department=department, owner=user, pk=pk).select_related("department").first()
        )
    if conversation is None:
        raise object_not_found(
            action=Action.CONVERSATION_OWN,
            subject=user,
            model=Conversation,
            object_id=str(conversation_id)[:64],
            reason="no such conversation of this user",
            department=department,
            exception=ConversationNotFound,
            purpose=purpose,
        )
    return conversation


def conversation_messages(*, conversation: Conversation) -> QuerySet[ConversationMessage]:
    # Through the reverse manager, every message knows ``conversation`` (this very instance): the
    # conversation's text key is unwrapped once for all of them (assets.text_crypto).
    return conversation.messages.select_related(None).prefetch_related("assets").order_by("created_at", "pk")


def conversation_history(
    *, conversation: Conversation, turns: int
) -> list[tuple[ConversationMessage, ConversationMessage]]:
    """The last ``turns`` (question, answer) pairs whose answer did not fail, oldest first."""
    if turns <= 0:
        return []
    messages = list(conversation_messages(conversation=conversation))
    pairs = []
    for asked, answered in zip(messages, messages[1:], strict=False):
        if asked.role == MessageRole.USER and answered.role == MessageRole.ASSISTANT:
            if answered.status != MessageStatus.FAILED:
                pairs.append((asked, answered))
    return pairs[-turns:]


def conversation_list_for_admin(*, department: Department) -> QuerySet[Conversation]:
    """Metadata of every conversation of the department (owner, times, message count)."""
    return (
        Conversation.objects.filter(department=department)
        .select_related("owner")
        .annotate(message_count=Count("messages"))
        .order_by("-updated_at", "-pk")
    )


def chat_policy_admin_may_read(*, department: Department) -> bool:
    with department_scope(department):
        policy = ChatPolicy.objects.filter(department=department).first()
    return bool(policy and policy.admin_may_read_content)


def task_template_list_active(*, department: Department) -> QuerySet[TaskTemplate]:
    return TaskTemplate.objects.filter(department=department, is_active=True).order_by("name")


def task_template_list(*, department: Department) -> QuerySet[TaskTemplate]:
    return TaskTemplate.objects.filter(department=department).order_by("name")
