"""Group commit: items submitted while a flush runs go in together with the next one,
each caller hears its own result, and a caller cancelled while waiting does not
withdraw its item."""

import asyncio

import pytest

from ledger.group_commit import GroupCommit


async def test_items_submitted_during_a_flush_share_the_next_one() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()
        return [ValueError(item) if item == 3 else item * 10 for item in items]

    group = GroupCommit(flush)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(item)) for item in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    outcomes = await asyncio.gather(*rest, return_exceptions=True)
    assert batches == [[1], [2, 3, 4]]
    assert outcomes[0] == 20 and outcomes[2] == 40
    assert isinstance(outcomes[1], ValueError)


async def test_a_cancelled_caller_still_has_its_item_committed() -> None:
    committed: list[int] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int | BaseException]:
        await release.wait()
        committed.extend(items)
        return list(items)

    group = GroupCommit(flush)
    waiting = asyncio.create_task(group.submit(1))
    other = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    assert await other == 2
    assert committed == [1, 2]
