"""Checking a tenant's audit chain: whether it holds, and if not, the first record where
it breaks and why.

Records are read in sequence order, a chunk at a time, all in one read-only snapshot (so
appends made meanwhile are neither half seen nor reported as breaks). Each record must
carry the next number (`sequence_gap`: a record is missing, or records were reordered),
link to the hash of the record before it (`broken_link`: one was slipped in or swapped),
and hold the hash its own fields give (`hash_mismatch`: it was changed). At the end the
chain must reach the tenant's chain head: a chain that stops short of the head has lost
its newest records (`sequence_gap` at the first missing number), one that runs past it or
ends on another hash was written around `record_audit` (`head_mismatch`).
"""

from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict

from ledger.sql import query

GENESIS_HASH = "0" * 64
# Records hashed per statement: large enough that a round trip is noise, small enough
# that one statement stays well under any statement timeout.
VERIFY_CHUNK = 50_000

BreakReason = Literal["sequence_gap", "broken_link", "hash_mismatch", "head_mismatch"]

_MEANINGS: dict[BreakReason, str] = {
    "sequence_gap": "the record with this number is missing, or out of its place",
    "broken_link": "prev_hash is not the hash of the record before",
    "hash_mismatch": "the record's fields no longer give its hash: it was changed",
    "head_mismatch": "the chain does not end where its head says: written around the ledger",
}


class ChainBreak(BaseModel):
    """Where a chain first breaks: the record's number, why, and what was expected and
    found there (sequence numbers for a gap, hashes otherwise)."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    reason: BreakReason
    message: str
    expected: str | None
    found: str | None


class ChainVerification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intact: bool
    # Records found sound, in order, before the break (all of them when intact).
    records_checked: int
    # The tenant's chain head: how many records were appended, and the last one's hash.
    head_seq: int
    head_hash: str | None
    first_break: ChainBreak | None


def _broken(reason: BreakReason, seq: int, expected: str | None, found: str | None) -> ChainBreak:
    return ChainBreak(
        seq=seq, reason=reason, message=_MEANINGS[reason], expected=expected, found=found
    )


async def verify_chain(
    connection: asyncpg.Connection, tenant_id: str, *, chunk: int = VERIFY_CHUNK
) -> ChainVerification:
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        head = await connection.fetchrow(query("get_audit_chain_head"), tenant_id)
        head_seq, head_hash = (head["seq"], head["head_hash"]) if head else (0, None)
        last_seq, last_hash, checked = 0, GENESIS_HASH, 0
        while True:
            row = await connection.fetchrow(
                query("verify_audit_chunk"), tenant_id, last_seq, last_hash, chunk
            )
            if row["break_seq"] is not None:
                found = _broken(row["reason"], row["break_seq"], row["expected"], row["found"])
                return _result(checked + row["read_before_break"], head_seq, head_hash, found)
            checked += row["read"]
            if row["read"] < chunk:
                break
            last_seq, last_hash = row["last_seq"], row["last_hash"]
        if row["read"]:
            last_seq, last_hash = row["last_seq"], row["last_hash"]
    return _result(
        checked, head_seq, head_hash, _tail_break(last_seq, last_hash, head_seq, head_hash)
    )


def _tail_break(
    last_seq: int, last_hash: str, head_seq: int, head_hash: str | None
) -> ChainBreak | None:
    if last_seq < head_seq:
        return _broken("sequence_gap", last_seq + 1, str(last_seq + 1), None)
    if last_seq > head_seq:
        return _broken("head_mismatch", head_seq + 1, None, str(last_seq))
    if head_hash is not None and last_hash != head_hash:
        return _broken("head_mismatch", last_seq, head_hash, last_hash)
    return None


def _result(
    checked: int, head_seq: int, head_hash: str | None, first_break: ChainBreak | None
) -> ChainVerification:
    return ChainVerification(
        intact=first_break is None,
        records_checked=checked,
        head_seq=head_seq,
        head_hash=head_hash,
        first_break=first_break,
    )
