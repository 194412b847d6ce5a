"""`workbench dispatcher` that dies between sending a batch and marking it dispatched.

The process is the real CLI entry point, so the real outbox, lanes and pool. The one
change: each lane the registry opens has its `send_batch` wrapped so that, once the
real send has returned (the hints are in the lane), the messages are written as JSON
to the file named by FAULTS_SENT and the process kills itself with SIGKILL, before
the outbox can run `mark_dispatched` and commit.

Usage: python dispatcher_dies_after_send.py
"""

import json
import os
import signal
from pathlib import Path
from typing import Any

from cli.main import main
from lanes.base import Lane, LaneMessage
from lanes.registry import LaneRegistry

_open_lane = LaneRegistry.get


def _get_lane_that_dies_after_send(registry: LaneRegistry, name: str) -> Lane:
    lane: Any = _open_lane(registry, name)
    if getattr(lane, "dies_after_send", False):
        return lane
    send = lane.send_batch

    async def send_then_die(messages: list[LaneMessage]) -> None:
        await send(messages)
        sent = [{"message_id": m.message_id, **m.properties()} for m in messages]
        Path(os.environ["FAULTS_SENT"]).write_text(json.dumps(sent))
        os.kill(os.getpid(), signal.SIGKILL)

    lane.send_batch = send_then_die
    lane.dies_after_send = True
    return lane


if __name__ == "__main__":
    LaneRegistry.get = _get_lane_that_dies_after_send  # type: ignore[method-assign]
    main(["dispatcher"])
