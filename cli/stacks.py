"""`kill -USR1 <pid>`: what a stuck process is waiting on, written to its log.

Two views, because a process can be stuck two ways. If the event loop still turns, each
of its tasks is logged with the frames it is suspended in (`tasks_dumped`): the await
that never returns. If a call blocks the loop itself, no task can run, so the threads'
Python stacks are written by the interpreter's fault handler to stderr, from the signal
handler, whatever the loop is doing.
"""

import asyncio
import faulthandler
import signal
import sys
from typing import Any

import structlog

log = structlog.get_logger("workbench")


def _awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The chain of awaits a task is suspended in, outermost first. (Task.get_stack shows
    only the outermost coroutine: a suspended coroutine's frame has no caller.)"""
    frames = []
    awaitable: Any = task.get_coro()
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            frames.append(type(awaitable).__qualname__)  # a future, or a C-level awaitable
            break
        frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return frames


def _dump_tasks() -> None:
    tasks = [{"task": t.get_name(), "awaiting": _awaiting(t)} for t in asyncio.all_tasks()]
    log.warning("tasks_dumped", tasks=tasks)


def dump_stacks_on_sigusr1(loop: asyncio.AbstractEventLoop) -> None:
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    # Chained after the loop's handler, so both run: threads now, tasks when the loop turns.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=True)
