"""Logs: plain text by default, one JSON object per line with DGM_LOG_JSON=1, for API and worker alike.

`log_context(job_id=..., learner=...)` binds fields to every line logged inside it (a contextvar, so it
follows the code path, not the logger): the worker wraps each training job in it, so each line a job
logs says which job and learner it belongs to.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_fields: ContextVar[dict[str, Any] | None] = ContextVar("dgm_log_fields", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` or from a filter.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (nested blocks add to the outer ones)."""
    token = _fields.set({**(_fields.get() or {}), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def context_fields() -> dict[str, Any]:
    return dict(_fields.get() or {})


class ContextFilter(logging.Filter):
    """Copies the bound context fields onto each record (explicit `extra=` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_fields.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, then any fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            out.update(zip(("client", "method", "path", "http_version", "status"), record.args, strict=True))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)  # a newline inside a message stays escaped: one line per record


def configure_logging(json_lines: bool, level: int | str = logging.INFO) -> None:
    """Route every logger (uvicorn, celery, ours) through one stderr handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
