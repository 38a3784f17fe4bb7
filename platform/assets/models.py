from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from assets.content import KINDS
from departments.models import Classification, Department
from departments.tenancy import DepartmentScopedManager

MIME_CHOICES = [(mime, kind.name) for mime, kind in KINDS.items()]


class Asset(models.Model):
    """An uploaded image or PDF: metadata here, the encrypted blob in ``ASSET_STORAGE_DIR``.

    ``wrapped_key`` is the file's data key wrapped by master key ``key_id``; deleting the row
    (crypto-shredding) makes the blob unreadable even where a copy of it survives.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="assets")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Frozen at upload, so the list still says who uploaded after the account is gone.
    uploaded_by_name = models.CharField(_("uploaded by"), max_length=150, blank=True)
    storage_name = models.CharField(_("storage name"), max_length=32, unique=True, editable=False)
    original_name = models.CharField(_("file name"), max_length=255)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    content_type = models.CharField(_("type"), max_length=32, choices=MIME_CHOICES)
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    page_count = models.PositiveIntegerField(_("pages"), default=1)
    width = models.PositiveIntegerField(_("width"), default=0)
    height = models.PositiveIntegerField(_("height"), default=0)
    classification = models.PositiveSmallIntegerField(_("classification"), choices=Classification.choices)
    key_id = models.CharField(_("master key id"), max_length=32)
    wrapped_key = models.BinaryField(_("wrapped data key"), max_length=128, editable=False)
    created_at = models.DateTimeField(_("uploaded at"), auto_now_add=True, db_index=True)

    objects = DepartmentScopedManager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("file")
        verbose_name_plural = _("files")
        constraints = [
            models.UniqueConstraint(fields=["department", "sha256"], name="asset_unique_department_sha256"),
        ]
        indexes = [models.Index(fields=["department", "created_at"], name="asset_department_created")]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.sha256[:12]})"

    @property
    def is_pdf(self) -> bool:
        return self.content_type == "application/pdf"
