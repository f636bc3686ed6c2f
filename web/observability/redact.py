"""uvicorn's text access line carries the raw path and query: the bearer parts of
public links (``/t/<token>``, ``/d/<token>``, ``/api/v1/public/.../<token>/...``,
``?download_token=``) are replaced by ``…`` before the line is written."""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    (re.compile(r"(/(?:t|d)/)[^/?\s\"]+"), r"\1…"),
    (re.compile(r"(/api/v1/public/(?:transfers|deposits)/)[^/?\s\"]+"), r"\1…"),
    (re.compile(r"(download_token=)[^&\s\"]+"), r"\1…"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactLinks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactLinks) for f in logger.filters):
        logger.addFilter(RedactLinks())
