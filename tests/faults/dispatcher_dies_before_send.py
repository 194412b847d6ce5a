"""`workbench dispatcher` that dies after committing a batch as dispatched and before
sending its hints.

The process is the real CLI entry point, so the real outbox, lanes and pool. The one
change: each lane the registry opens has its `send_batch` wrapped so that, when the
outbox hands it a batch (marked dispatched and committed by then), the messages are
written as JSON to the file named by FAULTS_UNSENT and the process kills itself with
SIGKILL before the real send.

Usage: python dispatcher_dies_before_send.py
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


def _get_lane_that_dies_before_send(registry: LaneRegistry, name: str) -> Lane:
    lane: Any = _open_lane(registry, name)
    if getattr(lane, "dies_before_send", False):
        return lane

    async def die_before_send(messages: list[LaneMessage]) -> None:
        unsent = [{"message_id": m.message_id, **m.properties()} for m in messages]
        Path(os.environ["FAULTS_UNSENT"]).write_text(json.dumps(unsent))
        os.kill(os.getpid(), signal.SIGKILL)

    lane.send_batch = die_before_send
    lane.dies_before_send = True
    return lane


if __name__ == "__main__":
    LaneRegistry.get = _get_lane_that_dies_before_send  # type: ignore[method-assign]
    main(["dispatcher"])
