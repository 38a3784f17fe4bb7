"""The checks of the compliance report, one per control of shared/MLPS3.md.

Every line is computed from what the check looks at now: the database (rows and catalogue), the
settings the process runs with, the permission table, live probes (compliance/report_probes.py).
No line states a pass from a constant; what the platform cannot see is ``manual`` with what to
look at, and what would be vacuous is ``not applicable``. tests/compliance/test_report_honesty.py
runs the report in two opposite states and fails on any passing line that did not change.

Messages are English message ids (``_`` is gettext_noop: translated when the report is rendered).
"""

# Each module registers its controls on import; the report lists them in MLPS3.md's order
# (compliance.report.registered_checks), whatever the order of these imports.
from compliance.report_checks import (  # noqa: F401
    access,
    administrators,
    audit,
    backup,
    identity,
    integrity,
    intrusion,
    personal,
    residual,
)
from compliance.report_checks.audit import AU1_CATEGORIES  # noqa: F401
from compliance.report_checks.live import build_started  # noqa: F401
