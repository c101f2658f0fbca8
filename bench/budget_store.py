"""Cost of the budget check per message, against inspecting that same message, in one run.

Messages: 3 customer records (name, ID number, mobile, address), all different, as in a drip.
Baseline: the pipeline's inspection of the message (extract, detect, decide), the work every
message already costs. Measured: ``BudgetStore.admit`` for the message's identifiers against
the shipped budgets (three counters), for SQLite (WAL, a file in a temporary directory) and for
a local Redis started here when ``redis-server`` is installed. Reported as ratios. Usage:

    .venv/bin/python bench/budget_store.py [--messages 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlp_addon.decide.budget import charges
from dlp_addon.decide.policy import DEFAULT_POLICY, load_policy
from dlp_addon.pipeline import inspect_ws
from dlp_addon.state import BudgetStore
from dlp_addon.state.redis import RedisStore
from dlp_addon.state.sqlite import SqliteStore
from tests.synth import customer_records, records_chat_text


def _percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return statistics.median(samples) * 1e6, q[98] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    policy = load_policy(DEFAULT_POLICY, hmac_key=b"bench-key-" * 4)
    records = customer_records(3 * args.messages, seed=5)
    texts = [records_chat_text(records[i : i + 3]) for i in range(0, len(records), 3)]

    inspect_times, inspections = [], []
    for text in texts:
        t = time.perf_counter()
        inspections.append(inspect_ws(policy, text.encode(), True, "taobao-tmall"))
        inspect_times.append(time.perf_counter() - t)
    todo = [
        charges(policy.budgets, policy.detectors, ins.findings, user=f"user{i % 50}",
                groups=frozenset(), destination="taobao-tmall", enforcing=True)
        for i, ins in enumerate(inspections)
    ]  # fmt: skip
    base_med, base_p99 = _percentiles(inspect_times)
    print(f"{args.messages} messages of 3 records; shipped budgets ({len(policy.budgets)})")
    print(f"inspection (baseline): median {base_med:.0f} us, p99 {base_p99:.0f} us")

    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, BudgetStore]] = [("sqlite", SqliteStore(f"{tmp}/b.sqlite"))]
        server = None
        try:
            from tests.redis_server import RedisServer

            server = RedisServer(Path(tmp) / "redis")
            server.start()
            stores.append(("redis", RedisStore(server.url)))
        except RuntimeError as e:
            print(f"redis: skipped ({e})")
        try:
            for name, store in stores:
                times = []
                now = time.time()
                for i, c in enumerate(todo):
                    t = time.perf_counter()
                    store.admit(c, now + i)
                    times.append(time.perf_counter() - t)
                med, p99 = _percentiles(times)
                print(
                    f"{name} admit: median {med:.0f} us ({med / base_med:.2f}x inspection), "
                    f"p99 {p99:.0f} us ({p99 / base_p99:.2f}x)"
                )
                store.close()
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
