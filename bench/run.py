"""`make bench`: every benchmark in turn, each in a process of its own (so one's
imports, trace processors and event loop never colour the next), then a markdown
summary beside the JSON results in bench/results/."""

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

from bench.common import RESULTS

BENCHMARKS = [
    "queue_core",
    "pipeline",
    "ledger_size",
    "memory",
    "streams",
    "conversations",
    "runtime",
    "audit",
    "steering",
]
# Each finishes in a few minutes; past this something is stuck.
TIMEOUT_SECONDS = 420


def main(names: list[str]) -> int:
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            outcome = subprocess.run(
                [sys.executable, "-m", f"bench.{name}"], timeout=TIMEOUT_SECONDS, check=False
            )
        except subprocess.TimeoutExpired:
            failed.append(f"{name}: timed out after {TIMEOUT_SECONDS} s")
            continue
        if outcome.returncode != 0:
            failed.append(f"{name}: exit code {outcome.returncode}")
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    summary = write_summary()
    print(f"\nsummary: {summary}")
    for failure in failed:
        print(f"FAILED {failure}")
    return 1 if failed else 0


def write_summary() -> str:
    lines = [f"# Benchmark results ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", ""]
    machine_written = False
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        machine = result.get("machine")
        if machine and not machine_written:
            lines += [
                f"Machine: {machine['cores']} cores ({machine['cpu']}), Python "
                f"{machine['python']}, PostgreSQL {machine['postgres']}.",
                "",
            ]
            machine_written = True
        lines += [f"## {name}", ""]
        lines += [f"- {line}" for line in result.get("summary", [])]
        lines.append("")
    path = RESULTS / "summary.md"
    path.write_text("\n".join(lines))
    return str(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or BENCHMARKS))
