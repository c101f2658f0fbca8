"""Exact data match at scale: build, size, load, memory per process, lookup and match latency.

A customer table of ``--rows`` generated rows (policy number, name, resident ID, mobile,
address, plate: ``tests.synth.customer_table``) is written as CSV, then indexed by the real
command (``dlp-policy edm index``, policy number, ID and mobile as primary fields, ``--jobs``
processes). Measured, in one run:

- build: wall time, rows/s, CPU of the builder and its workers, the builder's peak RSS;
- the index: bytes, bytes per row;
- load: opening the index in a fresh process (page cache warm from the build; a cold disk
  adds its read of the pages a lookup touches, not of the file);
- lookups (``EdmIndex.rows_of``): p50/p99 of present and absent keys, one at a time;
- a 10-row chat message (name + policy number): the EDM match against the scanner's own scan
  of the message (the baseline every message already costs);
- memory: RSS, PSS and shared pages of two worker-like processes that map the index and do
  200,000 lookups each, against a process that does not map it.

The machine's load average is printed before and after: the build's rate depends on it.

    .venv/bin/python bench/edm.py --rows 10000000 [--jobs 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlp_addon.detect.definitions import load_detectors
from dlp_addon.detect.scanner import Scanner
from dlp_addon.edm.fields import Keys, primary_hash
from dlp_addon.edm.index import EdmIndex
from dlp_addon.edm.match import Matcher, Settings
from dlp_addon.shipped import PATTERNS_DIR
from tests.synth import POLICY_FORMAT, TABLE_HEADER, customer_table

KEY = b"bench-edm-key-0123456789abcdef0123"
COLUMNS = "policy=保单号,name=姓名,id=身份证号,mobile=手机,address=地址,plate=车牌"
SAMPLE = 20_000  # rows kept (in this process only) to make present keys and messages


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def _generate(path: Path, rows: int) -> list[tuple[str, ...]]:
    every = max(1, rows // SAMPLE)
    kept: list[tuple[str, ...]] = []
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TABLE_HEADER)
        for i, row in enumerate(customer_table(rows, seed=1)):
            w.writerow(row)
            if i % every == 0:
                kept.append(row)
    return kept


def _us(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {statistics.median(samples) * 1e6:.1f} us, p99 {q[98] * 1e6:.1f} us"


def _smaps() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        out[name] = int(value.split()[0])
    return out


def _worker(path: str, lookups: int, queue: multiprocessing.Queue[dict[str, int]]) -> None:
    if path:
        index = EdmIndex(Path(path))
        rng = random.Random(os.getpid())
        for _ in range(lookups):
            index.rows_of(rng.getrandbits(64))
    queue.put(_smaps())


def _memory(path: Path) -> None:
    ctx = multiprocessing.get_context("forkserver")
    queue: multiprocessing.Queue[dict[str, int]] = ctx.Queue()
    for label, target in (("without the index", ""), ("with the index", str(path))):
        procs = [ctx.Process(target=_worker, args=(target, 200_000, queue)) for _ in range(2)]
        for p in procs:
            p.start()
        got = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        for m in got:
            print(
                f"  process {label}: RSS {m['Rss'] / 1024:.1f} MiB, PSS {m['Pss'] / 1024:.1f} "
                f"MiB, shared {(m['Shared_Clean'] + m['Shared_Dirty']) / 1024:.1f} MiB"
            )


def _index(
    work: Path, export: Path, jobs: int, out: str = "c.edm"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlp_addon.policy_cli", "edm", "index", str(export),
         "--columns", COLUMNS, "--policy-format", POLICY_FORMAT, "--key-file",
         str(work / "key"), "--out", str(work / out), "--jobs", str(jobs)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", help="where the CSV and the index go (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        (work / "key").write_bytes(KEY)
        print(f"EDM bench: {args.rows:,} rows, {args.jobs} jobs; {_load()}")
        t = time.monotonic()
        kept = _generate(work / "c.csv", args.rows)
        csv_bytes = (work / "c.csv").stat().st_size
        print(f"generated CSV: {csv_bytes / 2**20:,.0f} MiB in {time.monotonic() - t:.0f} s")

        t = time.monotonic()
        done = _index(work, work / "c.csv", args.jobs)
        wall = time.monotonic() - t
        print(done.stdout.strip())
        print(f"build: {wall:.0f} s wall, {args.rows / wall:,.0f} rows/s; {_load()}")
        # CPU per row, in one process (pool workers' CPU is not a child's for getrusage).
        n = min(args.rows, 200_000)
        head = work / "head.csv"
        with (work / "c.csv").open("rb") as src, head.open("wb") as dst:
            for _, line in zip(range(n + 1), src, strict=False):
                dst.write(line)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        _index(work, head, 1, out="head.edm")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(
            f"build CPU, one process (--jobs 1), {n:,} rows: {cpu / n * 1e6:.1f} us/row "
            f"(imports included), peak RSS {after.ru_maxrss / 1024:.0f} MiB"
        )
        size = (work / "c.edm").stat().st_size
        print(f"index: {size:,} bytes ({size / 2**20:,.0f} MiB), {size / args.rows:.1f} B/row")

        load = subprocess.run(
            [sys.executable, "-c",
             "import sys, time; from pathlib import Path; "
             "from dlp_addon.edm.index import EdmIndex; t = time.perf_counter(); "
             "i = EdmIndex(Path(sys.argv[1])); i.rows_of(12345); "
             "print(f'{(time.perf_counter() - t) * 1e3:.2f}')",
             str(work / "c.edm")],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
        )  # fmt: skip
        print(f"load (a fresh process opens the index, first lookup): {load.stdout.strip()} ms")

        index = EdmIndex(work / "c.edm")
        policy_hash = primary_hash(Keys(KEY), "policy")
        present = [policy_hash(r[0]) for r in kept]
        rng = random.Random(4)
        absent = [rng.getrandbits(64) for _ in range(len(present))]
        for label, keys in (("present", present), ("absent", absent)):
            times = []
            for k in keys:
                t0 = time.perf_counter()
                index.rows_of(k)
                times.append(time.perf_counter() - t0)
            print(f"lookup ({label} keys, {len(keys):,}): {_us(times)}")

        detectors = load_detectors(PATTERNS_DIR / "detectors.yaml")
        scanner = Scanner(detectors, KEY)
        matcher = Matcher(
            Settings(frozenset({"policy", "id", "mobile"}), frozenset(TABLE_KINDS), 100, 1),
            index.header,
            index,
            KEY,
            work / "c.edm",
        )
        scans, matches, records = [], [], []
        for _ in range(2000):
            rows = rng.sample(kept, 10)
            text = "\n".join(f"{r[1]} {r[0]}" for r in rows)
            t0 = time.perf_counter()
            findings = scanner.scan(text, "m")
            t1 = time.perf_counter()
            got = matcher.match([("m", text)], findings)
            t2 = time.perf_counter()
            scans.append(t1 - t0)
            matches.append(t2 - t1)
            records.append(got.records)
        assert set(records) == {10}, set(records)
        print(f"10-row message, scanner (baseline): {_us(scans)}")
        print(f"10-row message, EDM match (10 records found each): {_us(matches)}")
        _memory(work / "c.edm")
        print(f"done; {_load()}")


TABLE_KINDS = ("policy", "name", "id", "mobile", "address", "plate")

if __name__ == "__main__":
    main()
