"""Logging through structlog: key-value on a terminal, JSON lines otherwise; no secrets.

Configured once, at the edge (CLI or service start), never at import. Every line carries the
context bound with ``structlog.contextvars`` (``run_id``, ``request_id``). A redaction processor
masks values under secret-looking keys and secret-looking substrings (API keys, bearer tokens) in
every string value, with :func:`consensus.redact.redact`.

Example:
    >>> redact_secrets(None, "info", {"event": "x", "api_key": "sk-abc", "msg": "Bearer abc.def"})
    {'event': 'x', 'api_key': '***', 'msg': 'Bearer ***'}
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

from consensus.errors import ConfigError
from consensus.redact import SECRET_KEYS, redact

LEVELS = ("debug", "info", "warning", "error")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: ("***" if SECRET_KEYS.search(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: mask secrets by key and by value."""
    return {k: ("***" if SECRET_KEYS.search(k) else _scrub(v)) for k, v in event.items()}


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write, not the stream it was
    when logging was configured (a redirected or replaced stderr, e.g. a test's capture that
    has since been closed, must not make a later log line raise)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog for this process (JSON when stderr is not a terminal)."""
    if level.lower() not in LEVELS:
        raise ConfigError(f"unknown log level {level!r}; valid levels: {', '.join(LEVELS)}",
                          field="--log-level")
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: Any = (structlog.processors.JSONRenderer() if use_json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
