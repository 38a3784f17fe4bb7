from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from assets.content import KINDS
from assets.text_crypto import SealedCharField, TextKeyOwner
from departments.models import Classification, Department
from departments.tenancy import DepartmentScopedManager

# Office formats by a name a reader knows (the bare extension reads as an English word in zh).
_TYPE_LABELS = {
    "DOCX": _("Word document (DOCX)"),
    "XLSX": _("Excel workbook (XLSX)"),
    "PPTX": _("PowerPoint presentation (PPTX)"),
}
MIME_CHOICES = [(mime, _TYPE_LABELS.get(kind.name, kind.name)) for mime, kind in KINDS.items()]


class Asset(TextKeyOwner):
    """One upload of an image or PDF: metadata here, the encrypted blob in ``ASSET_STORAGE_DIR``.

    Each upload is its uploader's own reference. Identical bytes uploaded again in the same
    department are stored once: the new row names the same blob (``storage_name``) and carries
    its own copy of the wrapped data key. ``wrapped_key`` is the file's data key wrapped by
    master key ``key_id``; the blob goes, crypto-shredded, when its last row is deleted.
    The file name is business text: sealed under this row's own text key (``TextKeyOwner``),
    shredded with the row even when other uploads keep the blob.
    """

    id = models.UUIDField(_("ID"), primary_key=True, default=uuid.uuid4, editable=False)
    department = models.ForeignKey(
        Department, on_delete=models.PROTECT, related_name="assets", verbose_name=_("department")
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("uploader's account"),
    )
    # Frozen at upload, so the list still says who uploaded after the account is gone.
    uploaded_by_name = models.CharField(_("uploaded by"), max_length=150, blank=True)
    # Shared by every upload of the same bytes in the department (see ``assets.services``).
    storage_name = models.CharField(_("storage name"), max_length=32, editable=False, db_index=True)
    original_name = SealedCharField(_("file name"), max_length=255)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    content_type = models.CharField(_("type"), max_length=100, choices=MIME_CHOICES)
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    # A DICOM file as it was uploaded, before its de-identification (``sha256`` is the stored,
    # de-identified file's); empty for every other type.
    uploaded_sha256 = models.CharField(_("SHA-256 as uploaded"), max_length=64, blank=True, default="")
    page_count = models.PositiveIntegerField(_("pages"), default=1)
    width = models.PositiveIntegerField(_("width"), default=0)
    height = models.PositiveIntegerField(_("height"), default=0)
    classification = models.PositiveSmallIntegerField(_("classification"), choices=Classification.choices)
    key_id = models.CharField(_("master key id"), max_length=32)
    wrapped_key = models.BinaryField(_("wrapped data key"), max_length=128, editable=False)
    # 1-based pages that failed to decode when used (a file that fails as a whole: page 1);
    # every later use refuses them without decoding again.
    unusable_pages = models.JSONField(_("unusable pages"), default=list, blank=True, editable=False)
    created_at = models.DateTimeField(_("uploaded at"), auto_now_add=True, db_index=True)

    objects = DepartmentScopedManager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("file")
        verbose_name_plural = _("files")
        indexes = [
            models.Index(fields=["department", "created_at"], name="asset_department_created"),
            models.Index(fields=["department", "sha256"], name="asset_department_sha256"),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.sha256[:12]})"

    @property
    def is_pdf(self) -> bool:
        return self.content_type == "application/pdf"


from assets.documents.models import TextLayer  # noqa: E402,F401  (the text layer: assets.documents)
