"""Heavy inspection in inspection processes: off the proxy's event loop and off its GIL.

Not to be confused with ``workers.py`` (``dlp-workers``): those are whole proxy processes behind
HAProxy; these are helpers of one proxy process. The options keep their first names
(``dlp_inspect_workers``, ``dlp_inspect_queue``); "worker" below means an inspection process.

mitmproxy runs every hook of every connection on one asyncio loop. Reading a 100,000-row
workbook takes seconds of CPU; in a thread it still holds the GIL most of the time and every
other user's chat waits. Bodies above ``dlp_inline_max_bytes`` are therefore inspected here:

- a fixed number of worker processes (started from a fork server, at a lower CPU priority
  than the proxy, so the event loop wins a contended core);
- a bounded queue: when every worker is busy and ``queue`` requests already wait, the next one
  is refused at once (stage ``overload``) instead of piling up bodies in memory;
- a deadline per request: the policy's ``timeout_seconds`` covers the wait for a worker and the
  inspection, plus the OCR time (``inspection.ocr.timeout_seconds``) when pictures are read;
  a worker that overruns it by :data:`GRACE_SECONDS` is killed and replaced;
- a worker that dies (a native crash) is replaced and its request fails closed (stage
  ``worker``).

Workers receive the policy the request started with, as it is: plain data (detectors as
data, the key, settings). Each builds its engine from it (``detect/engine.py``) as soon as it
arrives, the way the proxy built its own, with the same key, so keyed hashes match the
proxy's. A worker gets a policy once and keeps it until a reload hands it a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.detect.engine import engine_for
from dlp_addon.extract import ocr
from dlp_addon.pipeline import Inspection, Message, channel_of, failed, inspect_message

logger = logging.getLogger(__name__)

GRACE_SECONDS = 1.0
WORKER_NICE = 10
_PRELOAD = ["dlp_addon.pipeline"]


CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_dirs(base: Path, relative: str) -> list[Path]:
    """``base`` joined with this process's cgroup path and each of its ancestors: a limit set
    on any of them applies. Inside a cgroup namespace the path is ``/`` (or not visible under
    ``base``) and only ``base`` itself is read."""
    parts = [p for p in relative.split("/") if p]
    dirs = [base.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]
    return [d for d in dirs if d.is_dir()] + [base]


def _quota(quota: str | None, period: str | None) -> float | None:
    """``quota / period`` in CPUs; None for no limit (``max``, ``-1``) or an unreadable file."""
    try:
        q, p = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(
    root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP
) -> tuple[float, str] | None:
    """The CPU quota of this process's cgroup in CPUs and the file it was read from (cgroup v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; the smallest along the
    path), or None when there is none. A container limited to 2 CPUs on a 64-core node sees
    64 cores in ``os.cpu_count()``: the quota is what it may really use."""
    own = [ln.split(":", 2) for ln in (_read(self_cgroup) or "").splitlines() if ln.count(":") >= 2]
    found: list[tuple[float, str]] = []
    if (root / "cgroup.controllers").is_file():  # v2: one hierarchy
        path = next((f[2] for f in own if f[0] == "0" and not f[1]), "/")
        for d in _own_dirs(root, path):
            quota, _, period = (_read(d / "cpu.max") or "max").partition(" ")
            if (cpus := _quota(quota.replace("max", "-1"), period)) is not None:
                found.append((cpus, str(d / "cpu.max")))
    else:  # v1: the cpu controller's own hierarchy
        path = next((f[2] for f in own if "cpu" in f[1].split(",")), "/")
        base = next((root / n for n in ("cpu", "cpu,cpuacct") if (root / n).is_dir()), None)
        for d in _own_dirs(base, path) if base else []:
            cpus = _quota(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))
            if cpus is not None:
                found.append((cpus, str(d / "cpu.cfs_quota_us")))
    return min(found) if found else None


def available_cpus(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> tuple[float, str]:
    """CPUs this process may use, the smallest of the cores it may run on
    (``sched_getaffinity``: taskset, cpusets) and its cgroup's CPU quota; and why."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
        why = f"{int(cpus)} CPUs in this process's affinity"
    except (AttributeError, OSError):  # not on Linux
        cpus, why = float(os.cpu_count() or 2), f"{os.cpu_count() or 2} cores"
    limit = cgroup_cpu_limit(root, self_cgroup)
    if limit is not None and limit[0] < cpus:
        cpus, why = limit[0], f"cgroup CPU limit {limit[0]:g} ({limit[1]})"
    return cpus, why


def default_workers(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> tuple[int, str]:
    """Half the CPUs this process may use, at least one: the other half is for the proxy's
    event loop. Sized from the cgroup limit, not the host's cores: 32 workers of ~90 MB each in
    a pod with 2 CPUs and 3 GiB would be killed for memory and fight for CPU. With the reason,
    for the start-up log."""
    cpus, why = available_cpus(root, self_cgroup)
    return max(1, int(cpus // 2)), f"half of {why}, at least 1"


def pool_size(option: int, root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int:
    """The number of inspection workers for ``dlp_inspect_workers`` (0: sized here), logged
    with the reason, once at start."""
    if option > 0:
        logger.info("inspection workers: %d (dlp_inspect_workers)", option)
        return option
    n, why = default_workers(root, self_cgroup)
    logger.info("inspection workers: %d (%s; set dlp_inspect_workers to change)", n, why)
    return n


def _serve(conn: multiprocessing.connection.Connection, nice: int) -> None:
    """A worker's life: take a policy or a job, answer each job with an Inspection."""
    from dlp_addon.extract import sandbox

    sandbox.prefer_fork()  # this process runs no other thread
    ocr.preload()  # the OCR engine found and its model warm before the first picture
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the proxy decides when workers stop
    with contextlib.suppress(OSError):
        os.nice(nice)
    policies: dict[int, Policy] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "policy":
            _, generation, policy = msg
            engine_for(policy)  # built now, not by the first request
            policies = {generation: policy}
            continue
        _, generation, args = msg
        policy = policies[generation]
        if msg[0] == "warm":  # the policy is built: ready for the first real request
            conn.send(None)
            continue
        message, destination, deadline, who = args
        result = inspect_message(policy, message, destination, deadline, who)
        if time.monotonic() > deadline + ocr.allowance(policy.limits):  # answered without it
            conn.send(None)
            continue
        if result.verdict.blocks:  # budgets only count what passes: the findings stay here
            result = dataclasses.replace(result, findings=())
        conn.send(result)


class _InspectionProcess:
    """One worker process and the pipe to it. Used by one request at a time."""

    def __init__(self, context: Any) -> None:
        self.conn, child = context.Pipe()
        # Not a daemon: a worker starts its own sandboxed children for workbooks.
        self.process = context.Process(
            target=_serve, args=(child, WORKER_NICE), name="dlp-inspect", daemon=False
        )
        self.process.start()
        child.close()
        self.generation = -1

    def call(self, policy_msg: tuple[Any, ...], job: tuple[Any, ...], seconds: float) -> Any:
        """Send the job (and the policy first if the worker lacks it); wait at most
        ``seconds`` for the answer. Blocking: run it in a thread."""
        if self.generation != policy_msg[1]:
            self.conn.send(policy_msg)
            self.generation = policy_msg[1]
        self.conn.send(job)
        if not self.conn.poll(max(seconds, 0.0)):
            raise TimeoutError
        return self.conn.recv()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(2)
        self.conn.close()


class InspectionPool:
    """``workers`` inspection processes behind a queue of at most ``queue`` waiting requests."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.queue = queue
        self._context: Any = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        self._idle: asyncio.Queue[_InspectionProcess] = asyncio.Queue()
        self._all: set[_InspectionProcess] = set()
        self._lock = threading.Lock()
        self._waiting = 0
        self._closed = False
        self._policy: Policy | None = None
        self._policy_msg: tuple[Any, ...] = ()
        self._generation = 0
        self._spawning: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        """At least one worker is up (the proxy's /readyz waits for it)."""
        return bool(self._all)

    @property
    def waiting(self) -> int:
        """Requests waiting for a free worker now."""
        return self._waiting

    def start(self, policy: Policy) -> None:
        """Start the workers in the background, each given ``policy``; requests queue until
        the first is up."""
        self._message_for(policy)
        self._spawning = asyncio.get_running_loop().create_task(self._spawn(self.workers))

    async def _spawn(self, n: int) -> None:
        for _ in range(n):
            worker = await asyncio.to_thread(self._new_worker)
            while worker is None and not self._closed:
                await asyncio.sleep(1.0)
                worker = await asyncio.to_thread(self._new_worker)
            if worker is not None:
                self._idle.put_nowait(worker)

    def _new_worker(self) -> _InspectionProcess | None:
        with self._lock:
            if self._closed:
                return None
            worker = _InspectionProcess(self._context)
        msg = self._policy_msg
        try:
            worker.call(msg, ("warm", msg[1], ()), 60.0)
        except (TimeoutError, EOFError, OSError):
            logger.error("an inspection worker failed to start")
            worker.kill()
            return None
        with self._lock:
            if self._closed:
                worker.kill()
                return None
            self._all.add(worker)
            return worker

    def _retire(self, worker: _InspectionProcess) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def close(self) -> None:
        """Stop every worker (the proxy is shutting down)."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for task in [self._spawning, *self._tasks]:
            if task is not None:
                task.cancel()
        for worker in workers:
            worker.kill()

    def _message_for(self, policy: Policy) -> tuple[Any, ...]:
        if policy is not self._policy:
            self._generation += 1
            self._policy, self._policy_msg = policy, ("policy", self._generation, policy)
        return self._policy_msg

    async def inspect(
        self, policy: Policy, message: Message, destination: str, deadline: float, who: Requester
    ) -> Inspection:
        """Inspect ``message`` in a worker by ``deadline``; any failure fails closed."""
        args = (message, destination, deadline, who)
        return await self._run(policy, args, deadline, channel_of(message))

    async def _run(
        self, policy: Policy, args: tuple[Any, ...], deadline: float, channel: str
    ) -> Inspection:
        started = time.monotonic()
        if self._closed:
            return failed(policy, "worker", channel)
        if self._waiting >= self.queue and self._idle.empty():
            return failed(policy, "overload", channel)
        self._waiting += 1
        try:
            worker = await asyncio.wait_for(self._idle.get(), deadline - time.monotonic())
        except TimeoutError:
            return failed(policy, "timeout", channel, time.monotonic() - started)
        finally:
            self._waiting -= 1
        msg = self._message_for(policy)
        loop = asyncio.get_running_loop()
        until = deadline + ocr.allowance(policy.limits)  # pictures: OCR has time of its own
        seconds = until - time.monotonic() + GRACE_SECONDS
        call = loop.run_in_executor(None, worker.call, msg, ("inspect", msg[1], args), seconds)
        # The worker goes back (or is replaced) when its call ends, even if this request is
        # cancelled meanwhile: never two requests on one pipe.
        call.add_done_callback(lambda f: self._release(worker, f))
        try:
            # The answer goes out at the deadline; a worker still busy then has the grace
            # period to finish before it is killed (the worker stays taken until then).
            result: Inspection | None = await asyncio.wait_for(
                asyncio.shield(call), until - time.monotonic()
            )
        except TimeoutError:
            return failed(policy, "timeout", channel, time.monotonic() - started)
        except (EOFError, OSError):
            return failed(policy, "worker", channel, time.monotonic() - started)
        if result is None:  # the worker finished just past the deadline
            return failed(policy, "timeout", channel, time.monotonic() - started)
        return result

    def _release(self, worker: _InspectionProcess, call: asyncio.Future[Any]) -> None:
        if self._closed:  # shutting down: close() has stopped every worker
            if not call.cancelled():
                call.exception()  # a call cut short by the shutdown: expected, not an error
            return
        if not call.cancelled() and call.exception() is None:
            self._idle.put_nowait(worker)
            return
        if not call.cancelled() and isinstance(call.exception(), TimeoutError):
            logger.error(
                "an inspection worker overran its deadline by %.0f s: replaced", GRACE_SECONDS
            )
        else:
            logger.error("an inspection worker died: replaced")
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._replace(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self, worker: _InspectionProcess) -> None:
        await asyncio.to_thread(self._retire, worker)
        await self._spawn(1)
