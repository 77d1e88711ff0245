"""structlog: JSON lines in production, readable lines on a terminal.

Every line carries `service`, and whatever the request or consumer bound in context:
`correlation_id`, `client_id`, `office`.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging", "bind", "clear"]


def configure_logging(service: str, *, fmt: str = "auto", level: str = "info") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer = (structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                              exception_formatter=structlog.dev.plain_traceback)
                if fmt == "console" else structlog.processors.JSONRenderer())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(),
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper()) if isinstance(level, str) else level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # libraries that log through the standard library (uvicorn, asyncpg) go the same way
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer, foreign_pre_chain=shared))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def bind(**values: object) -> None:
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)
