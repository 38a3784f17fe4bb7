from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from compliance.events import ActorType, EventType, Outcome

GENESIS_HASH = "0" * 64


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("Audit entries are append-only: update() is refused")

    def delete(self):
        raise PermissionError("Audit entries are append-only: delete() is refused")


class AuditEntry(models.Model):
    """One link of the tamper-evident audit chain (AU-2, AU-3).

    Strings are frozen copies (user name, department slug, object repr) so that the entry stays
    readable after the user or object is gone; nothing here is a foreign key that a deletion
    could cascade through.
    """

    sequence = models.PositiveBigIntegerField(_("sequence"), primary_key=True)
    timestamp = models.DateTimeField(_("time (UTC)"), db_index=True)
    actor_type = models.CharField(_("actor type"), max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(_("actor id"), max_length=64, blank=True)
    actor_name = models.CharField(_("actor"), max_length=150, blank=True)
    department_id = models.BigIntegerField(_("department id"), null=True, blank=True)
    department_slug = models.CharField(_("department"), max_length=50, blank=True)
    event_type = models.CharField(_("event type"), max_length=64, choices=EventType.choices)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    object_type = models.CharField(_("object type"), max_length=64, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=255, blank=True)
    source_ip = models.GenericIPAddressField(_("source address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True, db_index=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64, unique=True)
    hash = models.CharField(_("hash"), max_length=64, unique=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["sequence"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        indexes = [
            models.Index(fields=["department_id", "event_type", "timestamp"], name="audit_dept_event_time"),
            models.Index(fields=["actor_name", "timestamp"], name="audit_actor_time"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.event_type} {self.outcome} by {self.actor_name or self.actor_type}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Audit entries are append-only: an existing entry cannot be saved again")
        if not kwargs.pop("_from_audit_record", False):
            raise PermissionError("Audit entries are written only through compliance.services.audit_record")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit entries are append-only: delete() is refused")


class AuditChainHead(models.Model):
    """The single row that holds the newest link; locked by every writer so the chain never forks."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_singleton")]

    def __str__(self) -> str:
        return f"audit chain head #{self.sequence}"
