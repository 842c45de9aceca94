"""Structured logs: one JSON object per line on stderr (stdout may belong to a protocol)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, **static: Any) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_json_logging(
    level: int = logging.INFO,
    *,
    log_file: str | None = None,
    stderr_level: int = logging.NOTSET,
    **static: Any,
) -> None:
    """Send every log record as JSON to stderr, or to ``log_file`` (appended) with only records
    at ``stderr_level`` or above also on stderr (idempotent)."""
    formatter = JsonFormatter(**static)
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handlers = [handler]
    if log_file is not None:
        handler.setLevel(stderr_level)
        to_file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        to_file.setFormatter(formatter)
        handlers.append(to_file)
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "awswrangler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
