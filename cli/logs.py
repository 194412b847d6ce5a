"""structlog set-up shared by every process: JSON lines in containers, readable lines
on a terminal, and secret redaction as the last step before anything is written."""

import logging
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

from ledger.redaction import Redactor


def configure_logging(redactor: Redactor, *, level: int = logging.INFO) -> None:
    def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        return redactor.value(event)

    renderer = (
        # Plain tracebacks: the rich formatter would print local variables, secrets included.
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
