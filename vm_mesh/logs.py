"""Structured JSON logging: one object per line on stdout, which journald keeps as is."""

import json
import logging
import sys
import time
import traceback
from typing import Any, TextIO

# Attributes every LogRecord has; anything else passed via `extra=` becomes a field.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# Characters a line keeps of a text field: a client chooses some (a 32 kB Host header names a
# service, a detail quotes it), and a proxy keeps 2,000 lines in its ring.
MAX_FIELD_CHARS = 1024
TRUNCATED = "…"  # marks a field cut to MAX_FIELD_CHARS


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured form of a log record: ts, level, logger, msg, plus its extra fields;
    a text field longer than `MAX_FIELD_CHARS` is cut there and marked `TRUNCATED`."""
    fields: dict[str, Any] = {
        "ts": round(record.created, 3),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": _bounded(record.getMessage()),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRS and not key.startswith("_"):
            fields[key] = _bounded(value)
    if record.exc_info and record.exc_info[1] is not None:
        fields["error"] = _bounded(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
    return fields


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + TRUNCATED
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (non-JSON values are rendered with str); one that
    carries an exception has its `traceback` too (in the journal, not in `/v1/logs`)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        if record.exc_info and record.exc_info[1] is not None:
            fields["traceback"] = "".join(traceback.format_exception(record.exc_info[1]))
        return json.dumps(fields, default=str, separators=(",", ":"))


# Libraries that log each request they make at INFO: their warnings still show.
QUIET_LIBRARIES = ("httpx", "httpcore")


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send vmesh's logs as JSON lines to `stream` (stdout by default)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in QUIET_LIBRARIES:  # a line per span export would be noise
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    logging.Formatter.converter = time.gmtime
