"""structlog set-up shared by every process: JSON lines in containers, readable lines
on a terminal, and secret redaction of everything the event carries before it is
rendered and written."""

import logging
import sys
import time

import structlog
from structlog.typing import EventDict, WrappedLogger

from ledger import fastjson
from ledger.redaction import Redactor


class _Timestamp:
    """`timestamp`: UTC in ISO 8601 with microseconds, as structlog's TimeStamper writes
    it, for a fifth of its CPU (a worker logs two lines per run): the date and time of
    day are formatted once a second."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")  # one attribute: threads may log too

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        now = time.time()
        second, formatted = self._second
        if int(now) != second:
            second = int(now)
            formatted = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, formatted)
        event["timestamp"] = f"{formatted}.{int((now - second) * 1_000_000):06d}Z"
        return event


def configure_logging(redactor: Redactor, *, level: int = logging.INFO) -> None:
    def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        return redactor.value(event)

    if sys.stderr.isatty():
        # Plain tracebacks: the rich formatter would print local variables, secrets included.
        renderer: structlog.typing.Processor = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback
        )
        output: structlog.typing.WrappedLogger = structlog.PrintLoggerFactory(sys.stderr)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=fastjson.dumps)
        output = structlog.BytesLoggerFactory(sys.stderr.buffer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            redact,
            # After redaction: neither can hold a secret, and a timestamp's colons would
            # only send it through the patterns for nothing.
            structlog.processors.add_log_level,
            _Timestamp(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=output,
        cache_logger_on_first_use=True,
    )
