"""structlog set-up shared by every process: JSON lines in containers, readable lines
on a terminal, and secret redaction of everything the event carries before it is
rendered and written."""

import logging
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

from ledger import fastjson
from ledger.redaction import Redactor


def configure_logging(redactor: Redactor, *, level: int = logging.INFO) -> None:
    def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        return redactor.value(event)

    renderer = (
        # Plain tracebacks: the rich formatter would print local variables, secrets included.
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer(serializer=fastjson.dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            redact,
            # After redaction: neither can hold a secret, and a timestamp's colons would
            # only send it through the patterns for nothing.
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
