"""Benchmark: the audit feed against the size of the audit trail, and verify throughput.

`GET /api/dashboard/audit` pages (filtered by actor, by category and level, by ticket, by
full-text query; the first page; a page deep in the trail) are read through the ledger
(`Ledger.audit_feed`, the route's whole work but the JSON) against a trail of 10,000
audit records and one of 1,000,000, alternating between the two so load from anything
else lands on both alike. Then `verify` checks the large tenant's whole chain: records/s.

The trails are real chains: each record's hash is computed here over the canonical form
`audit_record_hash` documents (plain ASCII values, so Python's JSON text is Postgres's
jsonb text) and loaded with COPY, indexes built afterwards from their own definitions;
the verify at the end recomputes every hash in Postgres, so a loader that hashed wrongly
fails the bench.

Target: p99 at 1M <= 1.2 x p99 at 10k for every filtered page. Run alone:
`python -m bench.audit`; `WORKBENCH_BENCH_AUDIT_LARGE=100000` for a smaller large trail.
"""

import asyncio
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench._services import quiet_logs
from bench.common import fresh_database, machine, migrated_pool, percentiles, server, write_result
from ledger.actor import Actor
from ledger.audit_feed import FeedFilters
from ledger.audit_verify import GENESIS_HASH, verify_chain
from ledger.database import close_pool
from ledger.policy import load_policy
from ledger.repository import Ledger
from ledger.sql import query

NAME = "audit"
SMALL = 10_000
LARGE = int(os.environ.get("WORKBENCH_BENCH_AUDIT_LARGE", "1000000"))
TARGET_RATIO = 1.2
SAMPLES = int(os.environ.get("WORKBENCH_BENCH_AUDIT_SAMPLES", "600"))
WARMUP = 40
PAGE = 50
CHUNK = 50_000
TENANT = "bench-main"
# The queried tenant holds 40% of the records; the others share the rest.
TENANT_WEIGHTS = {TENANT: 40, "bench-acme": 25, "bench-globex": 20, "bench-initech": 15}
ACTORS = [f"operator-{n}" for n in range(40)]
ACTIONS = [
    "approved",
    "rejected",
    "cancelled",
    "retry_requested",
    "note_added",
    "status_changed",
    "change_requested",
    "change_approved",
    "spawn_refused",
]
CATEGORIES = ["approval", "task", "ticket", "change", "spawn"]
LEVELS = ["info"] * 90 + ["warning"] * 8 + ["error"] * 2
WORDS = [
    "rotate",
    "replica",
    "firewall",
    "mailbox",
    "vpn",
    "phishing",
    "certificate",
    "backup",
    "restore",
    "quota",
    "ldap",
    "dns",
]
HISTORY = timedelta(days=365)
KINDS = {
    "first_page": FeedFilters(source="audit"),
    "actor": FeedFilters(source="audit", actor="operator-7"),
    "category_and_level": FeedFilters(source="audit", category="change", level="warning"),
    "ticket": FeedFilters(source="audit", ticket_id="T-7"),
    "full_text": FeedFilters(source="audit", q="firewall"),
    "deep_cursor": FeedFilters(source="audit"),
}
_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
WHERE i.indrelid = 'audit_records'::regclass AND NOT i.indisprimary
"""
_COLUMNS = [
    "tenant_id",
    "seq",
    "created_at",
    "actor",
    "action",
    "target_type",
    "target_id",
    "category",
    "level",
    "ticket_id",
    "agent_id",
    "detail",
    "prev_hash",
    "hash",
]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def record_hash(row: tuple[Any, ...]) -> str:
    """`audit_record_hash` of a row of plain ASCII values (see migration 0012)."""
    tenant, seq, created_at, *fields, detail, prev_hash = row
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    canonical = json.dumps(["audit.v1", tenant, seq, prev_hash, micros, *fields, detail])
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Chain:
    """One tenant's chain as it is generated: where it has got to."""

    seq: int = 0
    hash: str = GENESIS_HASH
    prev_hash: str = GENESIS_HASH
    at: datetime = field(default_factory=lambda: datetime.now(UTC) - HISTORY)


def generate(total: int, rng: random.Random, chains: dict[str, Chain]) -> list[tuple[Any, ...]]:
    tenants, weights = list(TENANT_WEIGHTS), list(TENANT_WEIGHTS.values())
    step = HISTORY / total
    rows = []
    for tenant in rng.choices(tenants, weights, k=total):
        chain = chains.setdefault(tenant, Chain())
        chain.seq += 1
        chain.at += step * len(TENANT_WEIGHTS) * rng.random()
        ticket = f"T-{rng.randrange(20)}" if rng.random() < 0.3 else None
        agent = f"agent-{rng.randrange(500)}" if rng.random() < 0.2 else None
        # Keys in jsonb's order: shorter first.
        detail = {"n": chain.seq, "reason": f"{rng.choice(WORDS)} {rng.choice(WORDS)}"}
        fields = (
            tenant,
            chain.seq,
            chain.at,
            rng.choice(ACTORS),
            rng.choice(ACTIONS),
            "task",
            f"task-{rng.randrange(10**9)}",
            rng.choice(CATEGORIES),
            rng.choice(LEVELS),
            ticket,
            agent,
            detail,
        )
        digest = record_hash((*fields, chain.hash))
        rows.append((*fields, chain.hash, digest))
        chain.prev_hash, chain.hash = chain.hash, digest
    return rows


async def load(url: str, total: int) -> dict[str, Any]:
    began = time.perf_counter()
    rng, chains = random.Random(total), {}
    connection = await asyncpg.connect(url)
    try:
        # COPY sends binary rows: jsonb's binary form is a version byte, then the text.
        await connection.set_type_codec(
            "jsonb",
            encoder=lambda value: b"\x01" + json.dumps(value).encode(),
            decoder=lambda data: json.loads(data[1:]),
            schema="pg_catalog",
            format="binary",
        )
        await connection.execute("SET synchronous_commit = off")
        await connection.execute("SET maintenance_work_mem = '512MB'")
        indexes = await connection.fetch(_INDEXES)
        for index in indexes:
            await connection.execute(f"DROP INDEX {index['name']}")
        for start in range(0, total, CHUNK):
            rows = generate(min(CHUNK, total - start), rng, chains)
            await connection.copy_records_to_table("audit_records", columns=_COLUMNS, records=rows)
        copied = time.perf_counter()
        for index in indexes:
            await connection.execute(index["definition"])
        await connection.executemany(
            "INSERT INTO audit_chain_heads (tenant_id, seq, head_hash, prev_hash, appended_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            [(t, c.seq, c.hash, c.prev_hash, c.at) for t, c in chains.items()],
        )
        await connection.execute("VACUUM (ANALYZE) audit_records")
    finally:
        await connection.close()
    return {
        "records": total,
        "tenant_records": chains[TENANT].seq,
        "copy_seconds": round(copied - began, 1),
        "total_seconds": round(time.perf_counter() - began, 1),
    }


@dataclass
class Trail:
    size: int
    url: str
    ledger: Ledger
    samples: dict[str, list[float]] = field(default_factory=dict)
    deep_cursor: str | None = None


async def _page(trail: Trail, kind: str) -> float:
    cursor = trail.deep_cursor if kind == "deep_cursor" else None
    actor = Actor("bench", TENANT, "operator")
    began = time.perf_counter()
    page = await trail.ledger.audit_feed(actor, KINDS[kind], limit=PAGE, cursor=cursor)
    elapsed = time.perf_counter() - began
    assert page.entries, kind
    return elapsed


async def measure(trails: list[Trail]) -> None:
    for trail in trails:
        trail.samples = {kind: [] for kind in KINDS}
        # A page three quarters of the way down the tenant's trail.
        middle = await trail.ledger.pool.fetchval(
            "SELECT created_at FROM audit_records WHERE tenant_id = $1"
            " ORDER BY created_at LIMIT 1 OFFSET $2",
            TENANT,
            (trail.size * TENANT_WEIGHTS[TENANT] // 100) // 4,
        )
        trail.deep_cursor = f"{(middle - _EPOCH) // timedelta(microseconds=1)}.audit.1"
    for n in range(WARMUP + SAMPLES):
        for kind in KINDS:
            for trail in trails if n % 2 == 0 else trails[::-1]:
                elapsed = await _page(trail, kind)
                if n >= WARMUP:
                    trail.samples[kind].append(elapsed)


async def plans(trail: Trail) -> dict[str, str]:
    """How Postgres reads each kind's page at this size (planned for its arguments, as
    the feed's transaction asks): the nodes, their index, the rows they returned."""
    found = {}
    async with trail.ledger.pool.acquire() as connection, connection.transaction():
        await connection.execute(query("plan_feed_for_its_filters"))
        for kind, filters in KINDS.items():
            before = None
            if kind == "deep_cursor" and trail.deep_cursor:
                micros = int(trail.deep_cursor.split(".")[0])
                before = _EPOCH + timedelta(microseconds=micros)
            rows = await connection.fetch(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + query("audit_feed_records"),
                TENANT,
                before,
                *filters.matched(),
                PAGE,
            )
            plan = json.loads(rows[0][0])[0]
            nodes = []
            node = plan["Plan"]
            while node:
                label = node["Node Type"] + (
                    f" on {node['Index Name']}" if "Index Name" in node else ""
                )
                nodes.append(f"{label} ({node.get('Actual Rows', 0):.0f} rows)")
                node = (node.get("Plans") or [None])[0]
            found[kind] = " > ".join(nodes) + f"; {plan['Execution Time']:.2f} ms"
    return found


async def main() -> dict[str, Any]:
    began = time.perf_counter()
    quiet_logs()
    policy = load_policy()
    trails, loads = [], {}
    for size in (SMALL, LARGE):
        url = fresh_database(f"bench_audit_{size}")
        pool = await migrated_pool(url, max_size=2)
        loads[str(size)] = await load(url, size)
        trails.append(Trail(size, url, Ledger(pool, policy)))
    try:
        await measure(trails)
        large = trails[-1]
        async with large.ledger.pool.acquire() as connection:
            started = time.perf_counter()
            verified = await verify_chain(connection, TENANT)
            verify_seconds = time.perf_counter() - started
        if not verified.intact:
            raise RuntimeError(f"the loaded chain does not verify: {verified.first_break}")
        query_plans = {str(trail.size): await plans(trail) for trail in trails}
        result_machine = await machine(large.url)
    finally:
        for trail in trails:
            await close_pool(trail.ledger.pool)
    small, large = trails
    kinds = {}
    for kind in KINDS:
        at_small, at_large = percentiles(small.samples[kind]), percentiles(large.samples[kind])
        ratio = round(at_large["p99"] / at_small["p99"], 2)
        kinds[kind] = {
            str(small.size): at_small,
            str(large.size): at_large,
            "p99_ratio": ratio,
            "p50_ratio": round(at_large["p50"] / at_small["p50"], 2),
            "met": ratio <= TARGET_RATIO,
        }
    rate = round(verified.records_checked / verify_seconds)
    summary = [
        f"{small.size:,} vs {large.size:,} audit records ({TENANT}: "
        f"{loads[str(small.size)]['tenant_records']:,} vs "
        f"{loads[str(large.size)]['tenant_records']:,}); {SAMPLES} sequential pages of "
        f"{PAGE} per kind and size, after {WARMUP} warm-up",
        *(
            f"{kind}: p99 {r[str(small.size)]['p99']} -> {r[str(large.size)]['p99']} ms "
            f"({r['p99_ratio']}x, {'met' if r['met'] else 'NOT met'}; p50 {r['p50_ratio']}x)"
            for kind, r in kinds.items()
        ),
        f"verify: {verified.records_checked:,} records in {verify_seconds:.2f} s, "
        f"{rate:,} records/s (chain intact)",
    ]
    for size in (SMALL, LARGE):
        server().psql(f"DROP DATABASE IF EXISTS bench_audit_{size} WITH (FORCE);")
    return {
        "name": NAME,
        "target": f"feed page p99 at {large.size:,} records <= {TARGET_RATIO}x p99 at "
        f"{small.size:,}, for every filter",
        "met": all(r["met"] for r in kinds.values()),
        "summary": summary,
        "kinds": kinds,
        "latency_unit": "ms",
        "verify": {
            "records": verified.records_checked,
            "seconds": round(verify_seconds, 3),
            "records_per_second": rate,
        },
        "loads": loads,
        "query_plans": query_plans,
        "machine": result_machine,
        "seconds": round(time.perf_counter() - began, 1),
    }


if __name__ == "__main__":
    outcome = asyncio.run(main())
    path = write_result(NAME, outcome)
    print("\n".join(outcome["summary"]))
    print(f"written to {path}", file=sys.stderr)
