"""Task templates, the stored results of structured extraction, and the batch jobs that produce
many of them.

Registered through ``inference.models``. All belong to a department and use the tenancy manager.
Template and key are referenced *and* frozen as strings, so a result stays readable after its
template is edited or its key is revoked. A result follows its file: deleting the file (by a
person, with a conversation, or by retention) deletes its extractions, batch outputs included.
What the model read from the file (fields, rule outcomes, problems, raw answer) is sealed under
the extraction's own data key (``assets.text_crypto``), shredded with the row.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from assets.text_crypto import SealedJSONField, SealedTextField, TextKeyOwner
from departments.tenancy import DepartmentScopedManager


class TaskTemplate(models.Model):
    """A prompt the department administrator defines: one-click in the chat, and the template of
    structured extraction in the API when it has a JSON schema."""

    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE, related_name="task_templates")
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("identifier"), max_length=50)
    instruction = models.TextField(_("instruction"))
    json_schema = models.JSONField(_("JSON schema of the result"), null=True, blank=True)
    # Checks on an extracted result, e.g. {"field": "total", "op": "gt", "value": 10000, "outcome": "second_approver"}
    rules = models.JSONField(_("rules"), default=list, blank=True)
    is_builtin = models.BooleanField(_("built in"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = DepartmentScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["department", "slug"], name="task_template_unique_slug")]
        verbose_name = _("task template")
        verbose_name_plural = _("task templates")

    def __str__(self) -> str:
        return self.name

    def _builtin_unchanged(self, field: str) -> bool:
        from inference.extraction.services import BUILTIN_TEMPLATES

        spec = BUILTIN_TEMPLATES.get(self.slug) if self.is_builtin else None
        return spec is not None and self.slug in BUILTIN_DISPLAY and getattr(self, field) == spec[field]

    @property
    def display_name(self) -> str:
        """The name as a reader sees it: a built-in template's in the reader's language (its
        stored name is bilingual), unless the department's administrator renamed it."""
        return str(BUILTIN_DISPLAY[self.slug][0]) if self._builtin_unchanged("name") else self.name

    @property
    def display_instruction(self) -> str:
        """What the template does, for the reader (the model is sent the stored instruction)."""
        return str(BUILTIN_DISPLAY[self.slug][1]) if self._builtin_unchanged("instruction") else self.instruction

    @property
    def display_prompt(self) -> str:
        """What the chat's template chip writes into the question box, in the reader's language
        for a built-in template (it is the question the reader sends: the schema goes with it);
        the stored instruction once the department's administrator edited it."""
        return str(BUILTIN_DISPLAY[self.slug][2]) if self._builtin_unchanged("instruction") else self.instruction


# The built-in rules' messages (stored in both languages in one string, as the rule was written)
# as a reader sees them, in the reader's language; a message the administrator wrote is shown as
# written.
BUILTIN_RULE_MESSAGES = {
    "价税合计超过 10000 元, 需要第二审批人 (above 10 000 yuan: a second approver signs)": _(
        "Above 10 000 yuan: a second approver signs."
    ),
    "销售方纳税人识别号格式不正确 (the seller's tax id is not a valid 18-character code)": _(
        "The seller's tax id is not a valid 18-character code."
    ),
    "存在严重异常, 需立即检修 (a high-severity anomaly: repair now)": _("A high-severity anomaly: repair now."),
}


# The built-in templates (inference.extraction.services.BUILTIN_TEMPLATES) as pages show them:
# (name, what it does, the question the chat's chip writes), each in the reader's language.
BUILTIN_DISPLAY = {
    "vat-invoice": (
        _("VAT invoice"),
        _(
            "Reads Chinese VAT invoices: type, code and number, date, seller and buyer with their tax ids, "
            "amount before tax, tax rate, tax and total."
        ),
        _(
            "Extract from this VAT invoice: the invoice type, code and number, the date, the seller and the buyer "
            "with their tax ids, the amount before tax, the tax rate and tax, and the total."
        ),
    ),
    "equipment-inspection": (
        _("Equipment inspection report"),
        _(
            "Reads equipment inspection reports: equipment id, each anomaly with its severity, meter readings "
            "and the recommendation."
        ),
        _(
            "Extract from this equipment inspection report: the equipment id, every anomaly (oil leak, rust, "
            "loose or broken parts, …) with its severity, every meter reading, and the recommendation."
        ),
    ),
}


class ExtractionStatus(models.TextChoices):
    VALID = "valid", _("Valid (matches the schema)")
    INVALID = "invalid", _("Invalid (no answer matched the schema)")
    FAILED = "failed", _("Failed (the model could not answer)")


class BatchStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")
    FAILED = "failed", _("Failed")


class TemplateRun(models.Model):
    """What a batch job and an extraction both keep: the department, the template (referenced and
    frozen by slug), who asked (an API key, or a person in the portal) and when."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE, related_name="+")
    template = models.ForeignKey("inference.TaskTemplate", on_delete=models.SET_NULL, null=True, related_name="+")
    template_slug = models.CharField(_("template"), max_length=50)
    api_key = models.ForeignKey(
        "departments.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The person who asked in the portal (NULL: an API key, or stored before the portal had it)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    created_by_name = models.CharField(_("created by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = DepartmentScopedManager()

    class Meta:
        abstract = True


class BatchJob(TemplateRun):
    asset_ids = models.JSONField(_("files"), default=list)
    status = models.CharField(_("status"), max_length=16, choices=BatchStatus.choices, default=BatchStatus.QUEUED)
    total = models.PositiveIntegerField(_("total"), default=0)
    processed = models.PositiveIntegerField(_("processed"), default=0)
    succeeded = models.PositiveIntegerField(_("valid results"), default=0)
    failed = models.PositiveIntegerField(_("invalid or failed"), default=0)
    cancel_requested = models.BooleanField(_("cancellation requested"), default=False)
    error = models.CharField(_("error"), max_length=500, blank=True)
    # The model the batch runs on: named by its requester, else (blank until then) the one the
    # department's default resolved to when the runner took it up, kept for every file.
    model_name = models.CharField(_("model"), max_length=100, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("batch job")
        verbose_name_plural = _("batch jobs")
        indexes = [models.Index(fields=["department", "-created_at"], name="batch_department_recent")]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.template_slug}, {self.processed}/{self.total})"

    @property
    def is_finished(self) -> bool:
        return self.status in (BatchStatus.DONE, BatchStatus.CANCELLED, BatchStatus.FAILED)


class Extraction(TextKeyOwner, TemplateRun):
    """A template's structured result for one file. Its ``requested_by`` is the owner a member's
    correction needs."""

    # CASCADE: the result goes with its file. NULL only for a batch entry whose file never existed.
    asset = models.ForeignKey("assets.Asset", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    asset_ref = models.CharField(_("file id"), max_length=64)
    asset_sha256 = models.CharField(_("file SHA-256"), max_length=64, blank=True)
    batch = models.ForeignKey(BatchJob, on_delete=models.CASCADE, null=True, blank=True, related_name="extractions")
    status = models.CharField(_("status"), max_length=16, choices=ExtractionStatus.choices)
    result = SealedJSONField(_("result"), null=True, blank=True)
    rule_outcomes = SealedJSONField(_("rule outcomes"), default=list, blank=True)
    flags = SealedJSONField(_("raised outcomes"), default=list, blank=True)
    problems = SealedJSONField(_("validation problems"), default=list, blank=True)
    raw_answer = SealedTextField(_("the model's last answer"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    usage = models.JSONField(_("usage"), default=dict, blank=True)
    # The model version (manifest SHA-256) that produced it; NULL: not recorded (no model call,
    # or stored before model versions were recorded)
    model_sha256 = models.CharField(_("model version"), max_length=64, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("extraction")
        verbose_name_plural = _("extractions")
        indexes = [models.Index(fields=["department", "-created_at"], name="extraction_department_recent")]

    def __str__(self) -> str:
        return f"{self.template_slug} on {self.asset_ref} ({self.status})"

    @staticmethod
    def source_fields(template: TaskTemplate, asset) -> dict:
        """The fields that say what a result is of: its template, referenced and frozen by slug, and
        its file, referenced and frozen by id and SHA-256."""
        return {
            "template": template,
            "template_slug": template.slug,
            "asset": asset,
            "asset_ref": str(asset.pk),
            "asset_sha256": asset.sha256,
        }

    @property
    def status_label(self) -> str:
        """The status in a word, for badges (``get_status_display`` says why)."""
        return str(STATUS_SHORT.get(self.status, self.get_status_display()))


# A result's status in a word (the badges of the portal's lists and pages).
STATUS_SHORT = {
    ExtractionStatus.VALID: _("Valid"),
    ExtractionStatus.INVALID: _("Invalid"),
    ExtractionStatus.FAILED: _("Failed"),
}


class ExtractionCorrection(models.Model):
    """A reviewer's correction of one field of a stored result. The result itself never changes:
    the corrected value lives here, sealed under the extraction's own data key (so it is shredded
    with the result, and with the file), beside who corrected it and when. The latest correction
    of a field is the one that counts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE, related_name="+")
    extraction = models.ForeignKey(Extraction, on_delete=models.CASCADE, related_name="corrections")
    # Binds the sealed values to this row (the key is the extraction's, shared by its corrections).
    ref = models.UUIDField(default=uuid.uuid4, editable=False)
    field_path = models.CharField(_("field"), max_length=200)
    value = SealedJSONField(_("corrected value"), null=True, blank=True)
    note = SealedTextField(_("note"), blank=True)
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("corrected by"),
    )
    corrected_by_name = models.CharField(_("corrected by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = DepartmentScopedManager()

    class Meta:
        ordering = ["extraction", "created_at"]
        verbose_name = _("extraction correction")
        verbose_name_plural = _("extraction corrections")

    def __str__(self) -> str:
        return f"correction of {self.field_path} on extraction {self.extraction_id}"

    def text_seal_context(self, field: str) -> tuple[Extraction, str]:
        return self.extraction, self.ref.hex
