"""The text layer of an uploaded file: one row per upload (``Asset``), made by the text-layer job.

The pages' text is business text: it lives only in ``pages``, sealed under the row's own text
key (``TextKeyOwner``), so a dump shows ciphertext and deleting the file (the row goes with it,
``on_delete=CASCADE``) shreds it. Everything else here is bookkeeping the portal and the API
show (status, progress, counts, a failure code) and holds no text of the document.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from assets.text_crypto import SealedJSONField, TextKeyOwner
from departments.tenancy import DepartmentScopedManager


class TextLayerStatus(models.TextChoices):
    PENDING = "pending", _("waiting to be read")
    RUNNING = "running", _("being read")
    DONE = "done", _("text ready")
    FAILED = "failed", _("text not read")


class TextLayer(TextKeyOwner):
    """The text of every page of one upload, with the job's status and progress."""

    id = models.UUIDField(_("ID"), primary_key=True, default=uuid.uuid4, editable=False)
    asset = models.OneToOneField(
        "assets.Asset", on_delete=models.CASCADE, related_name="text_layer", verbose_name=_("file")
    )
    department = models.ForeignKey(
        "departments.Department", on_delete=models.PROTECT, related_name="+", verbose_name=_("department")
    )
    status = models.CharField(
        _("status"), max_length=16, choices=TextLayerStatus.choices, default=TextLayerStatus.PENDING, db_index=True
    )
    pages_total = models.PositiveIntegerField(_("pages"), default=0)
    pages_done = models.PositiveIntegerField(_("pages read"), default=0)
    # Pages by where their text came from ({"pdf": n, "ocr": n, "none": n}): counts only.
    sources = models.JSONField(_("sources"), default=dict, blank=True)
    # Why the job failed: a code of ``text_layer.FAILURES`` and its numbers (never any text).
    failure = models.CharField(_("failure"), max_length=32, blank=True)
    failure_params = models.JSONField(_("failure details"), default=dict, blank=True)
    # [{"number", "source", "width", "height", "usable", "lines": [[text, [x0, y0, x1, y1], conf]]}]
    pages = SealedJSONField(_("pages"), null=True, blank=True)
    # The process running the job ("host:pid:token") and when it last said so: a job whose
    # runner is gone is picked up again (``jobs.text_layer_resume_abandoned``).
    runner = models.CharField(_("runner"), max_length=128, blank=True)
    heartbeat_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    objects = DepartmentScopedManager()

    class Meta:
        verbose_name = _("text layer")
        verbose_name_plural = _("text layers")
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="textlayer_status_heartbeat")]

    def __str__(self) -> str:
        return f"text layer of {self.asset_id} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        if not self.text_key and self.__dict__.get("pages") is None:
            # Nothing to seal yet (pending, running, failed): the key is made with the first pages.
            return super(TextKeyOwner, self).save(*args, **kwargs)
        return super().save(*args, **kwargs)

    @property
    def is_finished(self) -> bool:
        return self.status in (TextLayerStatus.DONE, TextLayerStatus.FAILED)
