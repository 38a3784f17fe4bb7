"""Keep ordinary refusals out of the console's tracebacks.

Django logs every 403 and 404 on ``django.request`` with the exception attached, so each
refusal printed a full traceback. A refusal is a decision, not a failure (it is already recorded
in the audit trail as ``access.denied``): the one-line warning stays, the traceback goes.
Anything else keeps its traceback.
"""

from __future__ import annotations

import logging


class RefusalTracebackFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        if exception is not None and _ordinary_refusal(exception):
            record.exc_info = None
            record.exc_text = None
        return True


def _ordinary_refusal(exception: BaseException) -> bool:
    # Imported here: logging is configured before the apps are loaded.
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    return isinstance(exception, (PermissionDenied, Http404))
