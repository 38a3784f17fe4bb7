"""The chat's records: conversations, their messages, the department's chat policy, files
uploaded from the chat pane, and the stamps of the per-user turn limit.

Everything but the stamps belongs to a department and uses the tenancy manager: queries outside
a department scope raise. A message's images are references to department assets (never copies),
so the retention purge can remove the images that were uploaded only for a conversation.

A conversation's title and its messages' text are sealed under the conversation's own data key
(``assets.text_crypto``): deleting the conversation (by its owner or by retention) shreds them.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from assets.text_crypto import SealedCharField, SealedTextField, TextKeyOwner
from departments.tenancy import DepartmentScopedManager


class Conversation(TextKeyOwner):
    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE, related_name="conversations")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = SealedCharField(_("title"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_index=True)

    objects = DepartmentScopedManager()

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        indexes = [models.Index(fields=["department", "owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.title or f"conversation {self.pk}"


class MessageRole(models.TextChoices):
    USER = "user", _("User")
    ASSISTANT = "assistant", _("Assistant")


class MessageStatus(models.TextChoices):
    COMPLETE = "complete", _("Complete")
    STOPPED = "stopped", _("Stopped")
    FAILED = "failed", _("Failed")


class ConversationMessageManager(DepartmentScopedManager):
    """Messages come with their conversation, which holds the key of their sealed text: reading
    a message's content then needs no further query (also from async code)."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().select_related("conversation")


class ConversationMessage(models.Model):
    # The department is repeated here so that the tenancy manager can scope messages directly.
    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Binds the sealed content to this row (the key is the conversation's, shared by its messages).
    ref = models.UUIDField(default=uuid.uuid4, editable=False)
    role = models.CharField(_("role"), max_length=16, choices=MessageRole.choices)
    content = SealedTextField(_("content"), blank=True)
    status = models.CharField(_("status"), max_length=16, choices=MessageStatus.choices, default=MessageStatus.COMPLETE)
    assets = models.ManyToManyField("assets.Asset", blank=True, related_name="conversation_messages")
    # Generation figures of an assistant message: tokens, latency, finish reason, parameters.
    usage = models.JSONField(_("usage"), default=dict, blank=True)
    # The model version (manifest SHA-256) that wrote an assistant message; NULL: not recorded
    # (a user message, or an answer stored before model versions were recorded)
    model_sha256 = models.CharField(_("model version"), max_length=64, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = ConversationMessageManager()

    class Meta:
        ordering = ["conversation", "created_at", "pk"]
        verbose_name = _("message")
        verbose_name_plural = _("messages")

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"

    def text_seal_context(self, field: str) -> tuple[Conversation, str]:
        return self.conversation, f"{self.ref.hex}|{self.role}"


class ChatPolicy(models.Model):
    """A department's chat policy, set by the security administrator (not by the department's
    own administrator, who is the person it restrains)."""

    department = models.OneToOneField(
        "departments.Department", on_delete=models.CASCADE, related_name="chat_policy", verbose_name=_("department")
    )
    # Off by default: a department administrator sees who chatted when, not what was said.
    admin_may_read_content = models.BooleanField(_("department administrators may read message content"), default=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = DepartmentScopedManager()

    class Meta:
        verbose_name = _("chat policy")
        verbose_name_plural = _("chat policies")

    def __str__(self) -> str:
        return f"chat policy of department {self.department_id}"


class ChatUpload(models.Model):
    """Marks a file uploaded from the chat pane for a conversation: the retention purge and the
    deletion of a conversation shred such files with it, unless another conversation uses them."""

    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE, related_name="+")
    asset = models.OneToOneField("assets.Asset", on_delete=models.CASCADE, related_name="chat_upload")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = DepartmentScopedManager()

    class Meta:
        verbose_name = _("chat upload")
        verbose_name_plural = _("chat uploads")

    def __str__(self) -> str:
        return f"chat upload {self.asset_id}"


class ChatTurnStamp(models.Model):
    """One started chat turn, for the per-user rate limit. Not department-scoped: the limit is
    per person across departments, and the database makes it hold across server processes."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField(_("started at"))

    class Meta:
        indexes = [models.Index(fields=["user", "started_at"], name="chat_turn_stamp_user_time")]
        verbose_name = _("chat turn stamp")
        verbose_name_plural = _("chat turn stamps")

    def __str__(self) -> str:
        return f"chat turn of user {self.user_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"
