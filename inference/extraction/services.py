"""Structured extraction: a department's template (instruction + JSON schema + rules) applied to
one of its files, giving a stored result that validated against the schema, with rule outcomes.

Rules (``TaskTemplate.rules``) are a JSON list of checks on the extracted value, each raising an
*outcome* (a word the calling OA/ERP system acts on) when its condition holds::

    {"field": "total_amount", "op": "gt", "value": 10000, "outcome": "second_approver",
     "message": "above 10 000 yuan: a second approver signs"}
    {"field": "seller_tax_id", "op": "not_matches", "value": "^[0-9A-Z]{18}$", "outcome": "invalid_tax_id"}
    {"field": "anomalies[*].severity", "op": "contains", "value": "high", "outcome": "urgent_repair"}

``field`` is a dotted path; ``[*]`` collects a value from every element of a list. Operators:
``gt gte lt lte eq ne`` (numbers compare as decimals, so "12,800.00" and "¥12800" work),
``matches`` / ``not_matches`` (a regular expression, full match), ``contains``, ``in``,
``missing`` (the field is absent or empty). A comparison on a missing field does not raise its
outcome but is reported with ``"missing": true`` — add a ``missing`` rule to require the field.
``grounded`` requires the field's value to be found in the document's text
(``assets.documents.grounding``): its outcome (``ungrounded`` unless named) is raised when the
value, or any value under a ``[*]`` path, is missing or written nowhere in the document::

    {"field": "total_amount", "op": "grounded", "outcome": "total_not_found"}
"""

from __future__ import annotations

import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from assets.content import MODEL_PAGES_PER_FILE
from assets.documents.grounding import ground_fields
from assets.documents.model_pages import pages_choose, pages_cost, pages_images
from assets.documents.pages import DocumentText
from assets.documents.selectors import document_text
from assets.models import Asset
from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.models import Department
from departments.tenancy import department_scope
from inference.engine.errors import EngineBusy, GenerationFailed, InferenceError
from inference.engine.inputs import Message
from inference.engine.structured import SchemaInvalid, instruction_for, schema_check, structured_generate
from inference.extraction.models import Extraction, ExtractionStatus
from inference.extraction.templates import template_saved
from inference.image_budget import ImageBudget
from inference.model_calls import (
    Channel,
    ModelCall,
    ModelCallResult,
    error_code,
    milliseconds,
    model_call_record,
    prompt_of,
)
from inference.models import TaskTemplate

OPERATORS = (
    "gt",
    "gte",
    "lt",
    "lte",
    "eq",
    "ne",
    "matches",
    "not_matches",
    "contains",
    "in",
    "missing",
    "grounded",
)
GROUNDED_OUTCOME = "ungrounded"  # the outcome of a ``grounded`` rule that names none
# The message of a ``grounded`` rule that has none (translated when the rule is evaluated).
GROUNDED_MESSAGE = "The value of {field} was not found in the document."
RULES_NOT_A_LIST = "Rules must be a list of objects."
RULE_INVALID = "Rule {index}: {problem}."
TEMPLATE_HAS_NO_SCHEMA = "This template has no JSON schema, so it cannot be used for extraction."
EXTRACTION_PROMPT = "Extract the fields from this document."
MAX_PAGES = MODEL_PAGES_PER_FILE  # what the model sees of a PDF (checked at upload)
_NUMBER_NOISE = re.compile(r"[,\s¥￥$€£元]")
_MISSING = object()


# --- rules ----------------------------------------------------------------------------------------


def rules_validate(rules: Any) -> list[str]:
    """Problems with a template's rules (empty when they are usable); for the template editor."""
    if not isinstance(rules, list):
        return [RULES_NOT_A_LIST]
    problems = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            problems.append(RULE_INVALID.format(index=index, problem="not an object"))
            continue
        if not isinstance(rule.get("field"), str) or not rule["field"]:
            problems.append(RULE_INVALID.format(index=index, problem="'field' must be a path such as total_amount"))
        if rule.get("op") not in OPERATORS:
            problems.append(RULE_INVALID.format(index=index, problem=f"'op' must be one of {', '.join(OPERATORS)}"))
        outcome = rule.get("outcome", GROUNDED_OUTCOME if rule.get("op") == "grounded" else None)
        if not isinstance(outcome, str) or not outcome:
            problems.append(RULE_INVALID.format(index=index, problem="'outcome' must name what follows"))
        if rule.get("op") in ("matches", "not_matches"):
            try:
                re.compile(str(rule.get("value", "")))
            except re.error as exc:
                problems.append(RULE_INVALID.format(index=index, problem=f"bad regular expression ({exc})"))
        if rule.get("op") == "in" and not isinstance(rule.get("value"), list):
            problems.append(RULE_INVALID.format(index=index, problem="'in' needs a list value"))
    return problems


def _resolve(value: Any, path: str) -> Any:
    """The value at a dotted path; ``[*]`` fans out over a list (giving a list)."""
    current: Any = value
    for part in path.split("."):
        fan_out = part.endswith("[*]")
        name = part[:-3] if fan_out else part
        if name:
            if not isinstance(current, dict) or name not in current:
                return _MISSING
            current = current[name]
        if fan_out:
            if not isinstance(current, list):
                return _MISSING
            rest = path.split(part, 1)[1].lstrip(".")
            if not rest:
                return current
            values = [_resolve(item, rest) for item in current]
            return [v for v in values if v is not _MISSING]
    return current


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(_NUMBER_NOISE.sub("", value))
        except InvalidOperation:
            return None
    return None


def _holds(op: str, actual: Any, expected: Any) -> bool:
    if op in ("gt", "gte", "lt", "lte") or (op in ("eq", "ne") and _number(expected) is not None):
        left, right = _number(actual), _number(expected)
        if left is None or right is None:
            return op == "ne"
        return {
            "gt": left > right,
            "gte": left >= right,
            "lt": left < right,
            "lte": left <= right,
            "eq": left == right,
            "ne": left != right,
        }[op]
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op in ("matches", "not_matches"):
        matched = isinstance(actual, str | int) and re.fullmatch(str(expected), str(actual)) is not None
        return matched if op == "matches" else not matched
    if op == "contains":
        return expected in actual if isinstance(actual, list | str) else False
    if op == "in":
        return isinstance(expected, list) and actual in expected
    return False


def _grounded(grounding: dict | None, field: str) -> bool:
    """Whether every value at the rule's path (``[*]``: every element's) was found in the document:
    ``grounding`` maps leaf paths (``total_amount``, ``anomalies[0].type``) to where they were found
    or ``{"ungrounded": true}``."""
    pattern = re.compile(re.escape(field).replace(r"\[\*\]", r"\[\d+\]") + r"(?:$|[.\[])")
    entries = [entry for path, entry in (grounding or {}).items() if pattern.match(path)]
    return bool(entries) and all(isinstance(entry, dict) and not entry.get("ungrounded") for entry in entries)


def rules_evaluate(rules: list[dict], value: Any, *, grounding: dict | None = None) -> list[dict]:
    """One outcome record per rule: ``triggered`` says whether its outcome is raised. ``grounding``:
    the result's grounding (``extraction_ground``), for ``grounded`` rules (none: nothing is grounded)."""
    outcomes = []
    for index, rule in enumerate(rules or []):
        field, op, expected = rule.get("field", ""), rule.get("op"), rule.get("value")
        actual = _resolve(value, field)
        missing = actual is _MISSING or actual in (None, "", [])
        if op == "missing":
            triggered = missing
        elif op == "grounded":
            triggered = missing or not _grounded(grounding, field)
        elif missing:
            triggered = False
        else:
            triggered = _holds(op, actual, expected)
        outcomes.append(
            {
                "rule": index,
                "field": field,
                "op": op,
                "value": expected,
                "actual": None if actual is _MISSING else actual,
                "missing": missing,
                "triggered": bool(triggered),
                "outcome": rule.get("outcome", GROUNDED_OUTCOME if op == "grounded" else ""),
                "message": rule.get("message")
                or (gettext(GROUNDED_MESSAGE).format(field=field) if op == "grounded" else ""),
            }
        )
    return outcomes


# --- built-in templates ---------------------------------------------------------------------------

# 统一社会信用代码 (18 characters; the first two from a restricted alphabet).
TAX_ID_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"

VAT_INVOICE_SCHEMA = {
    "type": "object",
    "properties": {
        "invoice_type": {"type": "string", "description": "发票类型, e.g. 增值税专用发票 / 增值税普通发票 / 电子发票"},
        "invoice_code": {"type": "string", "description": "发票代码"},
        "invoice_number": {"type": "string", "description": "发票号码"},
        "invoice_date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "开票日期 YYYY-MM-DD"},
        "seller_name": {"type": "string", "description": "销售方名称"},
        "seller_tax_id": {"type": "string", "description": "销售方纳税人识别号"},
        "buyer_name": {"type": "string", "description": "购买方名称"},
        "buyer_tax_id": {"type": "string", "description": "购买方纳税人识别号"},
        "amount_excluding_tax": {"type": "number", "description": "金额 (不含税)"},
        "tax_rate": {"type": "string", "description": "税率, e.g. 13%"},
        "tax_amount": {"type": "number", "description": "税额"},
        "total_amount": {"type": "number", "description": "价税合计"},
    },
    "required": [
        "invoice_type",
        "invoice_number",
        "invoice_date",
        "seller_name",
        "buyer_name",
        "seller_tax_id",
        "amount_excluding_tax",
        "tax_amount",
        "total_amount",
    ],
}
VAT_INVOICE_RULES = [
    {
        "field": "total_amount",
        "op": "gt",
        "value": 10000,
        "outcome": "second_approver",
        "message": "价税合计超过 10000 元, 需要第二审批人 (above 10 000 yuan: a second approver signs)",
    },
    {
        "field": "seller_tax_id",
        "op": "not_matches",
        "value": TAX_ID_PATTERN,
        "outcome": "invalid_tax_id",
        "message": "销售方纳税人识别号格式不正确 (the seller's tax id is not a valid 18-character code)",
    },
    {"field": "buyer_tax_id", "op": "not_matches", "value": TAX_ID_PATTERN, "outcome": "invalid_tax_id"},
]

ANOMALY_TYPES = ["oil_leak", "rust", "loose", "broken", "crack", "overheating", "abnormal_noise", "other"]
INSPECTION_SCHEMA = {
    "type": "object",
    "properties": {
        "equipment_id": {"type": "string", "description": "设备编号"},
        "inspection_date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "inspector": {"type": "string"},
        "anomalies": {
            "type": "array",
            "description": "异常: 漏油 oil_leak, 锈蚀 rust, 松动 loose, 破损 broken, …",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ANOMALY_TYPES},
                    "location": {"type": "string"},
                    "severity": {"type": "string", "enum": ["low", "medium", "high"]},
                },
                "required": ["type", "severity"],
            },
        },
        "meter_readings": {
            "type": "array",
            "description": "仪表读数",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "value": {"type": "number"}, "unit": {"type": "string"}},
                "required": ["name", "value"],
            },
        },
        "recommendation": {"type": "string", "description": "处理建议"},
    },
    "required": ["equipment_id", "anomalies", "meter_readings", "recommendation"],
}
INSPECTION_RULES = [
    {
        "field": "anomalies[*].severity",
        "op": "contains",
        "value": "high",
        "outcome": "urgent_repair",
        "message": "存在严重异常, 需立即检修 (a high-severity anomaly: repair now)",
    },
    {"field": "anomalies[*].type", "op": "contains", "value": "oil_leak", "outcome": "environmental_check"},
]

BUILTIN_TEMPLATES = {
    "vat-invoice": {
        "name": "增值税发票 VAT invoice",
        "instruction": "You read Chinese VAT invoices (增值税发票). Extract the invoice type, code and number, "
        "the date, seller and buyer with their tax ids, the amount before tax, the tax rate and tax, and the total.",
        "json_schema": VAT_INVOICE_SCHEMA,
        "rules": VAT_INVOICE_RULES,
    },
    "equipment-inspection": {
        "name": "设备巡检报告 Equipment inspection report",
        "instruction": "You read equipment inspection reports (设备巡检报告). Extract the equipment id, every anomaly "
        "(oil leak, rust, loose or broken parts, …) with its severity, every meter reading, and the recommendation.",
        "json_schema": INSPECTION_SCHEMA,
        "rules": INSPECTION_RULES,
    },
}


@transaction.atomic
def templates_builtin_ensure(*, department: Department) -> int:
    """Create the built-in templates the department lacks; returns how many were created.
    Existing ones (possibly edited or deactivated by the department's administrator) stay."""
    created = 0
    with department_scope(department):
        existing = set(TaskTemplate.objects.filter(slug__in=list(BUILTIN_TEMPLATES)).values_list("slug", flat=True))
        for slug, spec in BUILTIN_TEMPLATES.items():
            if slug in existing:
                continue
            template = TaskTemplate(department=department, slug=slug, is_builtin=True, **spec)
            template.full_clean(validate_constraints=False)  # the unique slug: decided by the insert
            try:
                with transaction.atomic():
                    template.save()
                    audit_record(
                        event_type=EventType.TASK_TEMPLATE_CHANGE,
                        actor="system",
                        department=department,
                        obj=template,
                        details={"action": "create", "builtin": True, "after": {"name": template.name}},
                    )
            except IntegrityError:
                continue  # a request beside this one created it first
            created += 1
    return created


# --- running an extraction ------------------------------------------------------------------------


def _template_query(template: TaskTemplate) -> str:
    """What the template looks for, as a search query: its name, instruction, and every field's
    name and description."""
    words = [template.name, template.instruction]

    def walk(schema: Any, name: str = "") -> None:
        if not isinstance(schema, dict):
            return
        if name:
            words.append(name.replace("_", " "))
        if isinstance(schema.get("description"), str):
            words.append(schema["description"])
        for key, child in (schema.get("properties") or {}).items():
            walk(child, str(key))
        walk(schema.get("items"))

    walk(template.json_schema)
    return " ".join(words)


def extraction_ground(value: Any, *, schema: dict | None, document: DocumentText | None, pages=()) -> dict:
    """Where each leaf of the result is written: ``{path: {"page", "box", "source", "width",
    "height"}}``, or ``{path: {"ungrounded": true}}`` when it is nowhere in the document's text (or
    the file has no text layer yet). Coordinates only: the text found is not kept."""
    document = document or DocumentText()
    grounding = {}
    for path, found in ground_fields(document, value, schema=schema, pages=pages).items():
        if found is None:
            grounding[path] = {"ungrounded": True}
            continue
        page = document.page(found.page)
        grounding[path] = {
            "page": found.page,
            "box": list(found.box),
            "source": found.source,
            "width": page.width,
            "height": page.height,
        }
    return grounding


def extraction_messages(template: TaskTemplate, images: list) -> list[Message]:
    system = f"{template.instruction}\n\n{instruction_for(template.json_schema)}"
    return [Message("system", system), Message("user", EXTRACTION_PROMPT, images=tuple(images))]


def extraction_run(
    *,
    department: Department,
    template: TaskTemplate,
    asset: Asset,
    engine=None,
    api_key=None,
    batch=None,
    request_id: str | None = None,
    acting_user=None,
    model: str | None = None,
    action=None,
    where: dict | None = None,
) -> Extraction:
    """Run the template on the asset, store the result with its rule outcomes, audit it: the
    model call as ``inference.call`` (channel ``extraction``, or ``batch`` for a batch's file) and
    the result as ``inference.extraction``, in the transaction that stores it.

    Raises EngineBusy / ModelUnavailable / InvalidRequest from ``submit`` (nothing stored: the
    caller may retry); a generation that fails is stored as ``failed``. Before the model: the
    file's decoding cost is checked against the request's image budget from its stored size
    (``ImageBudgetExceeded``), then it is decoded (``AssetUnreadable`` for a damaged page, now
    marked unusable; ``DecodeBusy`` when no decode slot frees up).

    Without ``engine``, the model is chosen here: the loaded one named ``model`` (``None``: the
    department's default), if the department may use it, asked as ``action`` (default
    ``Action.API_EXTRACT``; the portal passes its own) by ``api_key`` or ``acting_user``, with
    ``where`` (path, method) in the refusal's record. Refusals are recorded and raised before
    anything is read: ``ModelNotFound``, ``VersionNotApproved``, ``ModelNotEnabled`` (both
    ``RefusedForbidden``), ``ModelNotLoaded`` / ``ModelUnavailable`` (503).
    """
    if not template.json_schema:
        raise SchemaInvalid(TEMPLATE_HAS_NO_SCHEMA)
    schema_check(template.json_schema)
    if engine is None:
        from accounts.permissions import Action
        from inference.registry.services import model_engine_for

        engine = model_engine_for(
            subject=api_key or acting_user,
            department=department,
            requested=model,
            action=action or Action.API_EXTRACT,
            **(where or {}),
        )
    started = time.perf_counter()
    # A PDF with a text layer: the pages whose text best matches the template's fields (BM25),
    # wherever they are; without one, the first pages as before.
    budget = ImageBudget()
    with department_scope(department):  # the text layer is the department's, like the file
        choice = pages_choose(asset, _template_query(template), limit=budget.images_left, per_file=MAX_PAGES)
        document = document_text(asset)
    budget.take(pages_cost(asset, choice))
    images = pages_images(asset, choice)
    pages = list(choice.pages)
    messages = extraction_messages(template, images)
    info = engine.info()
    call = ModelCall(
        channel=Channel.BATCH if batch is not None else Channel.EXTRACTION,
        model=info.name,
        model_sha256=info.manifest_sha256,
        prompt=prompt_of(messages, [(), (asset.sha256,) if images else ()]),
        preview=EXTRACTION_PROMPT,
        params={
            "max_new_tokens": min(settings.EXTRACTION_MAX_NEW_TOKENS, engine.limits.max_new_tokens_cap),
            "temperature": 0.0,
        },
        response_format="json_schema",
        asset_ids=(str(asset.pk),),
    )
    submitted = 0

    def generate(conversation: list[Message]):
        nonlocal submitted
        submitted += 1
        return engine.submit(conversation, department=department.slug, request_id=request_id, **call.params).result()

    extraction = Extraction(
        department=department,
        **Extraction.source_fields(template, asset),
        batch=batch,
        api_key=api_key,
        # acting_user: the person who asked in the portal (the owner of the result for reviews).
        requested_by=acting_user,
        created_by_name=getattr(api_key, "audit_name", "") or getattr(acting_user, "username", "") or "system",
        model_sha256=info.manifest_sha256 or None,  # the model version that answered
    )
    failure: GenerationFailed | None = None
    outcome = None
    try:
        outcome = structured_generate(
            messages, generate=generate, schema=template.json_schema, attempts=settings.STRUCTURED_OUTPUT_ATTEMPTS
        )
    except EngineBusy:
        raise
    except GenerationFailed as exc:
        failure = exc
        extraction.status = ExtractionStatus.FAILED
        extraction.problems = [f"{exc.code}: {exc}"]
    else:
        extraction.attempts = outcome.attempts
        extraction.raw_answer = outcome.text[:20000]
        extraction.problems = outcome.problems
        extraction.usage = {
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
        }
        if outcome.valid:
            extraction.status = ExtractionStatus.VALID
            extraction.result = outcome.value
            grounding = extraction_ground(outcome.value, schema=template.json_schema, document=document, pages=pages)
            extraction.usage["grounding"] = grounding
            extraction.rule_outcomes = rules_evaluate(template.rules, outcome.value, grounding=grounding)
            extraction.flags = sorted({o["outcome"] for o in extraction.rule_outcomes if o["triggered"]})
        else:
            extraction.status = ExtractionStatus.INVALID
    extraction.usage["latency"] = round(time.perf_counter() - started, 4)
    extraction.usage["pages"] = pages  # the pages the model was shown
    first = outcome.results[0].usage if outcome is not None and outcome.results else None
    result = ModelCallResult(
        outcome=Outcome.SUCCESS if extraction.status == ExtractionStatus.VALID else Outcome.FAILURE,
        latency_ms=milliseconds(extraction.usage["latency"]),
        finish_reason="error" if failure is not None else outcome.finish_reason,
        prompt_tokens=outcome.prompt_tokens if outcome is not None else None,
        completion_tokens=outcome.completion_tokens if outcome is not None else None,
        time_to_first_token_ms=milliseconds(first.time_to_first_token) if first is not None else None,
        attempts=submitted,
        # The answer never matched the schema: the code /v1 answers for the same case.
        error=error_code(failure) if failure is not None else ("" if outcome.valid else "response_format_unsatisfied"),
    )
    with transaction.atomic(), department_scope(department):
        extraction.full_clean()
        extraction.save()
        model_call_record(call, result, actor=api_key, department=department, obj=extraction)
        audit_record(
            event_type=EventType.EXTRACTION,
            outcome=Outcome.SUCCESS if extraction.status == ExtractionStatus.VALID else Outcome.FAILURE,
            actor=api_key,
            department=department,
            obj=extraction,
            details={
                "template": template.slug,
                "asset": str(asset.pk),
                "asset_sha256": asset.sha256,
                "status": extraction.status,
                "attempts": extraction.attempts,
                "flags": extraction.flags,
                "batch": str(batch.pk) if batch is not None else None,
            },
        )
    return extraction


# --- reviewers' corrections and the template's rules (the portal) -------------------------------

CORRECTION_FIELD_UNKNOWN = "No field '{field}' in this result or its template."


def extraction_owner_id(extraction: Extraction) -> int | None:
    """Who asked for the result in the portal (directly, or by starting its batch); None for an
    API key's result, which only the department administrator may correct."""
    if extraction.requested_by_id is not None:
        return extraction.requested_by_id
    batch = extraction.batch
    return batch.requested_by_id if batch is not None else None


def extraction_correctable_paths(extraction: Extraction) -> list[str]:
    """The fields a reviewer may correct: the template's top-level properties, its required ones
    first. Never a key the model invented: a correction's field is stored and audited in the
    clear, and the model's own keys are content read from the file."""
    template = extraction.template
    schema = template.json_schema if template is not None and isinstance(template.json_schema, dict) else {}
    properties = [name for name in (schema.get("properties") or {}) if isinstance(name, str)]
    # The required fields in their listed order first: a stored schema's properties may come back
    # reordered (PostgreSQL's jsonb keeps no key order), its required list does not.
    required = [name for name in schema.get("required") or [] if name in properties]
    return list(dict.fromkeys([*required, *properties]))


def extraction_field_paths(extraction: Extraction) -> list[str]:
    """The fields a result page and an export show: the correctable ones, then any other top-level
    key of the result (a template edited since, or a key the schema left open), shown only."""
    paths = extraction_correctable_paths(extraction)
    if isinstance(extraction.result, dict):
        paths += [name for name in extraction.result if name not in paths]
    return paths


def extraction_corrections_latest(extraction: Extraction) -> dict:
    """Field path → its latest correction (the one that counts)."""
    from inference.extraction.models import ExtractionCorrection

    with department_scope(extraction.department_id):
        corrections = list(ExtractionCorrection.objects.filter(extraction=extraction).order_by("created_at"))
    return {correction.field_path: correction for correction in corrections}


def extraction_correct(*, extraction: Extraction, field_path: str, value: Any, note: str = "", acting_user: Any):
    """Store a reviewer's correction of one field; the result itself stays as the model gave it.
    Department administrators correct any result of the department, members the results they
    asked for (``Action.EXTRACTION_REVIEW``); audited as ``extraction.correct`` (no values)."""
    from django.core.exceptions import ValidationError

    from accounts.permissions import Action, authorize
    from inference.extraction.models import ExtractionCorrection

    department = extraction.department
    authorize(
        acting_user,
        Action.EXTRACTION_REVIEW,
        department=department,
        owner_id=extraction_owner_id(extraction),
        obj=extraction,
    )
    if field_path not in extraction_correctable_paths(extraction):
        raise ValidationError({"field_path": CORRECTION_FIELD_UNKNOWN.format(field=field_path)})
    with transaction.atomic(durable=True), department_scope(department):
        correction = ExtractionCorrection(
            department=department,
            extraction=extraction,
            field_path=field_path,
            value=value,
            note=note,
            corrected_by=acting_user,
            corrected_by_name=acting_user.get_username(),
        )
        correction.full_clean()
        correction.save()
        audit_record(
            event_type=EventType.EXTRACTION_CORRECT,
            actor=acting_user,
            department=department,
            obj=extraction,
            details={
                "field": field_path,
                "correction": str(correction.pk),
                "template": extraction.template_slug,
                "asset": extraction.asset_ref,
                "has_note": bool(note),
            },
        )
    return correction


def task_template_rules_set(*, template: TaskTemplate, rules: list, acting_user: Any) -> TaskTemplate:
    """Replace a template's extraction rules (the department administrator's template editor),
    refused with each problem of ``rules_validate``; audited as ``task_template.change``."""
    from django.core.exceptions import ValidationError

    from accounts.permissions import Action, authorize

    department = template.department
    authorize(acting_user, Action.TASK_TEMPLATE_MANAGE, department=department, obj=template)
    problems = rules_validate(rules)
    if problems:
        raise ValidationError({"rules": problems})
    with transaction.atomic(durable=True), department_scope(department):
        before = list(template.rules or [])
        if before == rules:
            return template
        template.rules = rules
        template_saved(
            template,
            acting_user=acting_user,
            details={"action": "rules", "before": {"rules": len(before)}, "after": {"rules": len(rules)}},
            update_fields=["rules", "updated_at"],
        )
    return template


__all__ = [
    "InferenceError",
    "extraction_correct",
    "extraction_correctable_paths",
    "extraction_run",
    "rules_evaluate",
    "rules_validate",
    "task_template_rules_set",
    "templates_builtin_ensure",
]
