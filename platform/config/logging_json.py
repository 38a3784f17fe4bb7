"""Structured JSON log lines carrying the request id of the audit context.

Log records hold what happened, never secrets or prompt contents: callers pass ids and counts.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from compliance.context import current_request_context

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = current_request_context()
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if context is not None:
            line["request_id"] = context.request_id
        extra = {key: value for key, value in vars(record).items() if key not in _STANDARD}
        if extra:
            line["extra"] = {
                key: value if isinstance(value, (int, float, bool)) else str(value) for key, value in extra.items()
            }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
