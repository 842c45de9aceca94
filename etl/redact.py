"""Credentials never reach a message or a log line: one helper for every place that shows text.

``redact`` hides the password of URLs and DSNs (``scheme://user:secret@host``), ``password=…``
style key/value pairs (libpq keyword DSNs, query strings, JSON), and AWS secret access keys,
whatever the surrounding text. ``RedactingFilter`` applies it to every record of a logger.

>>> redact("cannot connect to 'postgresql://u:s3cret@127.0.0.1:5432/db?sslmode=disable'")
"cannot connect to 'postgresql://u:***@127.0.0.1:5432/db?sslmode=disable'"
>>> redact("host=127.0.0.1 user=u password=s3cret dbname=db")
'host=127.0.0.1 user=u password=*** dbname=db'
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host (the password may hold anything but @ / and whitespace)
    (re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*:)[^@/\s'\"]+(?=@)"), r"\g<head>"),
    # password=…, pwd: …, "secret": "…", aws_secret_access_key = … (key/value, any quoting)
    (
        re.compile(
            r"(?P<head>(?:password|passwd|pwd|secret|secret_access_key|aws_secret_access_key|token)"
            r"""["']?\s*[=:]\s*["']?)[^\s&;,'"}]+""",
            re.IGNORECASE,
        ),
        r"\g<head>",
    ),
)


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced by ``***``."""
    for pattern, head in _PATTERNS:
        text = pattern.sub(head + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Redacts a record's final message (arguments included) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
