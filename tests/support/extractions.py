"""A stored extraction result as the model would have left it (the demo model's random weights
never write valid JSON), for tests that read results rather than make them."""

from __future__ import annotations

from typing import Any

# A complete, valid VAT invoice as the model would answer it (every field of the built-in
# template), for tests of rules, results and grounding.
GOOD_INVOICE = {
    "invoice_type": "增值税专用发票",
    "invoice_number": "04419876",
    "invoice_date": "2025-03-14",
    "seller_name": "上海某某机械有限公司",
    "seller_tax_id": "91310115MA1H7GXX3B",
    "buyer_name": "某某制造股份有限公司",
    "buyer_tax_id": "91320500134785645K",
    "amount_excluding_tax": 11327.43,
    "tax_rate": "13%",
    "tax_amount": 1472.57,
    "total_amount": 12800.00,
}


def vat_invoice_result(
    *, department, asset, result: dict, requested_by=None, batch=None, usage: dict | None = None
) -> Any:
    """A valid result of the department's built-in VAT-invoice template for ``asset``, its rules
    evaluated as a run would have evaluated them."""
    from departments.tenancy import department_scope
    from inference.extraction.models import Extraction, ExtractionStatus
    from inference.extraction.services import rules_evaluate, templates_builtin_ensure
    from inference.models import TaskTemplate

    templates_builtin_ensure(department=department)
    with department_scope(department):
        template = TaskTemplate.objects.get(department=department, slug="vat-invoice")
        outcomes = rules_evaluate(template.rules, result)
        return Extraction.objects.create(
            department=department,
            **Extraction.source_fields(template, asset),
            batch=batch,
            status=ExtractionStatus.VALID,
            result=result,
            rule_outcomes=outcomes,
            flags=sorted({outcome["outcome"] for outcome in outcomes if outcome["triggered"]}),
            usage=usage or {},
            requested_by=requested_by,
            created_by_name=getattr(requested_by, "username", "system"),
        )
