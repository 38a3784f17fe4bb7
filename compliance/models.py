from __future__ import annotations

import json

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.events import ActorType, EventType, Outcome
from departments.tenancy import DepartmentScopedManager

GENESIS_HASH = "0" * 64


class CanonicalJSONField(models.TextField):
    """A JSON object stored as the exact canonical text that is hashed (``chain.canonical_json``).

    Not ``jsonb``: the database would re-render it (key order, spacing, number forms), and the
    verifier would have to parse and re-encode every entry. Stored as text, what is hashed is
    what is stored, byte for byte. Read back as a dict.
    """

    def from_db_value(self, value, expression, connection):
        return None if value is None else json.loads(value)

    def to_python(self, value):
        if isinstance(value, str):
            return json.loads(value)
        return value

    def get_prep_value(self, value):
        from compliance.chain import canonical_json

        return None if value is None else canonical_json(value)


class AuditFields(models.Model):
    """What an entry says; shared by a pending entry and a chained one.

    Strings are frozen copies (user name, department slug, object repr) so that the entry stays
    readable after the user or object is gone; nothing here is a foreign key that a deletion
    could cascade through.
    """

    timestamp = models.DateTimeField(_("time (UTC)"), db_index=True)
    actor_type = models.CharField(_("actor type"), max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(_("actor id"), max_length=64, blank=True)
    actor_name = models.CharField(_("actor"), max_length=150, blank=True)
    department_id = models.BigIntegerField(_("department id"), null=True, blank=True)
    department_slug = models.CharField(_("department"), max_length=50, blank=True)
    # No ``choices`` here on purpose: features append event types to the enum all the time, and
    # audit_record() already refuses unknown ones; the enum stays the single list (event_label).
    event_type = models.CharField(_("event type"), max_length=64)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    object_type = models.CharField(_("object type"), max_length=64, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=255, blank=True)
    # Text in the compressed form audit_record writes, so the stored text is the hashed text (an
    # ``inet`` column would re-render it). NULL when unknown, never empty: the hash tells them apart.
    source_ip = models.CharField(_("source address"), max_length=45, null=True, blank=True)  # noqa: DJ001
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True, db_index=True)
    details = CanonicalJSONField(_("details"), default=dict, blank=True)
    # The canonical format the entry is hashed in (compliance.chain's registry): its tag opens the
    # hashed bytes, so the version is covered by the hash. Entries from before the column are
    # audit-v2; audit_record writes chain.WRITE_VERSION.
    format_version = models.PositiveSmallIntegerField(_("format version"), db_default=2)

    class Meta:
        abstract = True

    @property
    def event_label(self) -> str:
        try:
            return str(EventType(self.event_type).label)
        except ValueError:
            return self.event_type


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("Audit entries are append-only: update() is refused")

    def delete(self):
        raise PermissionError("Audit entries are append-only: delete() is refused")

    def bulk_create(self, objs, *args, _from_sealer: bool = False, **kwargs):
        if not _from_sealer:
            raise PermissionError("Audit entries are chained only by compliance.sealing")
        return super().bulk_create(objs, *args, **kwargs)


class AuditEntry(AuditFields):
    """One link of the tamper-evident audit chain (AU-2, AU-3).

    Written only by the sealer (``compliance.sealing``), which chains pending entries in the
    order they committed: ``hash = SHA-256(prev_hash || canonical(entry))``.
    """

    sequence = models.PositiveBigIntegerField(_("sequence"), primary_key=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64, unique=True)
    # Not unique: the chain's guards are the primary key on sequence and the unique prev_hash
    # (two entries cannot follow the same one); one fewer index to maintain per entry.
    hash = models.CharField(_("hash"), max_length=64)
    # The database's clock when the sealer chained the entry (chain.SEALING_CLOCK), hashed from
    # audit-v4 on; empty for entries chained before. Set by the sealer only: the pending table
    # has no such column, and the database refuses an entry whose clock is not its own.
    sealed_at = models.DateTimeField(_("sealed at (database clock)"), null=True, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["sequence"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        indexes = [
            models.Index(fields=["department_id", "event_type", "timestamp"], name="audit_dept_event_time"),
            models.Index(fields=["actor_name", "timestamp"], name="audit_actor_time"),
        ]
        constraints = [
            models.CheckConstraint(condition=~models.Q(source_ip=""), name="audit_entry_source_ip_not_empty"),
        ]

    def __str__(self) -> str:
        # Codes and names only: the trail freezes this as the object name of an entry looked at
        # (audit.view), so it is in no reader's language ("#12 department.create:success a1").
        return f"#{self.sequence} {self.event_type}:{self.outcome} {self.actor_name or self.actor_type}"

    def save(self, *args, **kwargs):
        raise PermissionError("Audit entries are written only through compliance.services.audit_record")

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit entries are append-only: delete() is refused")


class AuditPendingQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("Pending audit entries cannot be changed: update() is refused")


class AuditPending(AuditFields):
    """An entry audit_record wrote in the action's transaction, waiting to be chained.

    Committed with the action (AU-4), then moved into the chain by the sealer, at once or within
    about 100 ms under load. Insert-only: the database refuses UPDATE, and DELETE of a row that
    is not already in the chain with the same content (compliance/triggers.py).
    """

    id = models.BigAutoField(primary_key=True)
    # The same columns without their indexes: this table stays small (rows leave when chained).
    timestamp = models.DateTimeField(_("time (UTC)"))
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    sequence = None  # not chained yet: the attribute reads as None, like an unsealed entry
    prev_hash = None
    hash = None

    objects = AuditPendingQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name = _("pending audit entry")
        verbose_name_plural = _("pending audit entries")
        constraints = [
            models.CheckConstraint(condition=~models.Q(source_ip=""), name="audit_pending_source_ip_not_empty"),
        ]

    def __str__(self) -> str:
        return f"pending {self.id} {self.event_type} {self.outcome} by {self.actor_name or self.actor_type}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Pending audit entries cannot be changed")
        if not kwargs.pop("_from_audit_record", False):
            raise PermissionError("Audit entries are written only through compliance.services.audit_record")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Pending audit entries are removed only by the sealer")


class AuditChainHead(models.Model):
    """The single row that holds the newest link; locked by the sealer so the chain never forks."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_singleton")]

    def __str__(self) -> str:
        return f"audit chain head #{self.sequence}"


class AuditArchive(models.Model):
    """One export of the trail: what it covered and the digest of the file written.

    Append-only (database triggers). The retention purge may only remove entries that a
    *complete* archive (every sequence of its range present, no department filter) covers.
    """

    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    actor_name = models.CharField(_("exported by"), max_length=150, blank=True)
    format = models.CharField(_("format"), max_length=8)
    file_name = models.CharField(_("file"), max_length=255)
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    entry_count = models.PositiveBigIntegerField(_("entries"))
    first_sequence = models.PositiveBigIntegerField(_("first sequence"), null=True, blank=True)
    last_sequence = models.PositiveBigIntegerField(_("last sequence"), null=True, blank=True)
    last_hash = models.CharField(_("hash of the last entry"), max_length=64, blank=True)
    complete = models.BooleanField(_("complete range"), default=False)
    filters = models.JSONField(_("filters"), default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("audit archive")
        verbose_name_plural = _("audit archives")

    def __str__(self) -> str:
        return f"archive {self.first_sequence}..{self.last_sequence} ({self.sha256[:12]})"


class AuditAnchor(models.Model):
    """Where a retention purge cut the chain: verification of what remains starts here.

    ``sequence``/``hash`` are those of the last purged entry, so the first remaining entry has
    ``prev_hash == hash``. Append-only; the same anchor is also signed into the checkpoint log.
    """

    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sequence = models.PositiveBigIntegerField(_("last purged sequence"), unique=True)
    hash = models.CharField(_("hash of the last purged entry"), max_length=64)
    archive = models.ForeignKey(AuditArchive, on_delete=models.PROTECT, related_name="anchors")
    removed = models.PositiveBigIntegerField(_("entries removed"))

    class Meta:
        ordering = ["-sequence"]
        verbose_name = _("audit purge anchor")
        verbose_name_plural = _("audit purge anchors")

    def __str__(self) -> str:
        return f"anchor #{self.sequence}"


class RetentionPolicy(models.Model):
    """How long a department keeps its business data (RI-2); edited by the security administrator."""

    department = models.OneToOneField(
        "departments.Department", on_delete=models.CASCADE, related_name="retention_policy"
    )
    conversation_days = models.PositiveIntegerField(
        _("keep conversations (days)"), null=True, blank=True, help_text=_("Empty: keep forever.")
    )
    file_days = models.PositiveIntegerField(
        _("keep files (days)"), null=True, blank=True, help_text=_("Empty: keep forever.")
    )
    legal_hold = models.BooleanField(
        _("legal hold"), default=False, help_text=_("While set, nothing of this department is purged.")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = DepartmentScopedManager()

    class Meta:
        verbose_name = _("retention policy")
        verbose_name_plural = _("retention policies")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(conversation_days__gte=1), name="retention_conversation_days_min"
            ),
            models.CheckConstraint(condition=models.Q(file_days__gte=1), name="retention_file_days_min"),
        ]

    def __str__(self) -> str:
        return f"retention policy of {self.department.slug}"


class ProcessHeartbeat(models.Model):
    """An app process saying it is alive (BR-3): written by the process itself every
    HEARTBEAT_SECONDS (compliance/report_heartbeat.py), read by the compliance report."""

    process_id = models.CharField(_("process"), max_length=64, primary_key=True)
    hostname = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    channel_layer = models.CharField(_("channel layer"), max_length=100, blank=True)
    started_at = models.DateTimeField(_("started at"))
    seen_at = models.DateTimeField(_("last seen"), db_index=True)

    class Meta:
        ordering = ["-seen_at"]
        verbose_name = _("process heartbeat")
        verbose_name_plural = _("process heartbeats")

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} seen {self.seen_at.isoformat()}"


class AuditForwardState(models.Model):
    """The last entry a SIEM target accepted, and the last failure (AU-5): written by
    compliance/forwarding.py after a send, read by the compliance report."""

    address = models.CharField(_("forwarding address"), max_length=255, primary_key=True)
    transport = models.CharField(_("transport"), max_length=8)
    last_success_at = models.DateTimeField(_("last accepted"), null=True, blank=True)
    last_success_sequence = models.PositiveBigIntegerField(_("last entry accepted"), null=True, blank=True)
    last_failure_at = models.DateTimeField(_("last failure"), null=True, blank=True)
    last_failure = models.CharField(_("failure"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("audit forwarding state")
        verbose_name_plural = _("audit forwarding states")

    def __str__(self) -> str:
        return f"forwarding to {self.address}"
