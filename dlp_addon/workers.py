"""``dlp-workers N``: N dlp-proxy processes on one host behind HAProxy, started as one.

One mitmproxy process uses one core for its event loop. To use more, several independent
workers listen on loopback ports and HAProxy (TCP mode) spreads client connections over them,
checking each worker's ``/readyz``. Each worker has its own metrics port and audit log
(``dlp-audit.jsonl`` -> ``dlp-audit.w1.jsonl``, ...); they share the policy file (each watches
it and reloads) and the CA directory (the first worker creates it before the others start).
A worker that exits is started again; SIGTERM or Ctrl-C stops HAProxy, then every worker.
``<run-dir>/workers.json`` lists the processes and ports; ``<run-dir>/haproxy.sock`` is
HAProxy's runtime API (drain a worker: docs/operations.md). See docs/workers.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlp_addon.shipped import HAPROXY_TEMPLATE

READY_TIMEOUT = 60.0


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Worker:
    index: int
    port: int
    metrics_port: int
    audit_log: str
    log: Path
    extra: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"w{self.index}"

    def command(self, exe: str, args: list[str]) -> list[str]:
        return [
            exe, "--listen-host", "127.0.0.1", "-p", str(self.port),
            "--set", f"dlp_metrics_port={self.metrics_port}",
            "--set", "dlp_metrics_host=127.0.0.1",
            "--set", f"dlp_audit_log={self.audit_log}",
            *args, *self.extra,
        ]  # fmt: skip

    def start(self, exe: str, args: list[str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(exe, args), stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False


def _per_worker(path: str, index: int) -> str:
    if path == "-":
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}.w{index}{p.suffix or '.jsonl'}"))


def render(
    template: str,
    bind: str,
    workers: list[Worker],
    nbthread: int,
    proxy_protocol: bool = True,
    stats_socket: str = "/run/haproxy/admin.sock",
) -> str:
    """The HAProxy configuration: backend ``dlp_workers``, one server ``wN`` per worker, the
    runtime API on ``stats_socket`` (the names docs/operations.md drains)."""
    send = " send-proxy-v2" if proxy_protocol else ""
    servers = "\n".join(
        f"    server {w.name} 127.0.0.1:{w.port} check port {w.metrics_port}{send}" for w in workers
    )
    return string.Template(template).substitute(
        bind=bind, servers=servers, nbthread=nbthread, stats_socket=stats_socket
    )


def _wait_ready(workers: list[Worker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for w in workers:
        while not w.ready():
            assert w.process is not None
            if w.process.poll() is not None:
                raise SystemExit(f"dlp-workers: worker {w.name} exited; see {w.log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"dlp-workers: worker {w.name} not ready; see {w.log}")
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="dlp-workers",
        description="N dlp-proxy workers behind HAProxy. Arguments after -- go to every worker.",
    )
    ap.add_argument("workers", type=int, help="number of dlp-proxy processes")
    ap.add_argument("--listen-host", default="127.0.0.1", help="HAProxy's address")
    ap.add_argument("-p", "--listen-port", type=int, default=8080, help="HAProxy's port")
    ap.add_argument(
        "--worker-port", type=int, default=18081,
        help="first worker's port on 127.0.0.1 (the others follow); 0: free ports",
    )  # fmt: skip
    ap.add_argument(
        "--metrics-port", type=int, default=9464,
        help="first worker's metrics port (the others follow); 0: free ports",
    )  # fmt: skip
    ap.add_argument("--audit-log", default="dlp-audit.jsonl", help="becomes NAME.wN.jsonl")
    ap.add_argument("--admin-port", type=int, default=0, help="policy admin API on worker 1")
    ap.add_argument("--run-dir", default="dlp-workers", help="HAProxy config, logs, state")
    ap.add_argument("--template", default=str(HAPROXY_TEMPLATE), help="HAProxy config template")
    ap.add_argument("--haproxy", default="haproxy", help="HAProxy executable")
    ap.add_argument("--nbthread", type=int, default=1, help="HAProxy threads")
    ap.add_argument(
        "--no-proxy-protocol", dest="proxy_protocol", action="store_false",
        help="HAProxy does not pass the client's address (workers then see 127.0.0.1)",
    )  # fmt: skip
    own, proxy_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    args = ap.parse_args(own)
    args.proxy_args = proxy_args
    if args.workers < 1:
        ap.error("at least one worker")
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dlp-workers``."""
    args = parse(sys.argv[1:] if argv is None else argv)
    haproxy = shutil.which(args.haproxy) or shutil.which(args.haproxy, path="/usr/sbin:/sbin")
    if haproxy is None:
        raise SystemExit("dlp-workers: haproxy not found (scripts/setup installs it)")
    exe = str(Path(sys.executable).parent / "dlp-proxy")
    if not any(a.startswith("dlp_inspect_workers=") for a in args.proxy_args):
        # Each worker's own default (half the cores) would oversubscribe the host N times.
        args.proxy_args = ["--set", "dlp_inspect_workers=1", *args.proxy_args]
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    workers = []
    for i in range(1, args.workers + 1):
        workers.append(
            Worker(
                index=i,
                port=args.worker_port + i - 1 if args.worker_port else _free_port("127.0.0.1"),
                metrics_port=(
                    args.metrics_port + i - 1 if args.metrics_port else _free_port("127.0.0.1")
                ),
                audit_log=_per_worker(args.audit_log, i),
                log=run_dir / f"worker-{i}.log",
                extra=["--set", f"dlp_admin_port={args.admin_port}"]
                if i == 1 and args.admin_port
                else [],
            )
        )
    config = run_dir / "haproxy.cfg"
    bind = f"{args.listen_host}:{args.listen_port}"
    template = Path(args.template).read_text()
    socket_path = (run_dir / "haproxy.sock").resolve()
    config.write_text(
        render(template, bind, workers, args.nbthread, args.proxy_protocol, str(socket_path))
    )
    if args.proxy_protocol:  # the desktop's address reaches identity and audit; only HAProxy may
        args.proxy_args = [
            "--set", "dlp_proxy_protocol=true",
            "--set", "dlp_proxy_protocol_from=127.0.0.1/32",
            *args.proxy_args,
        ]  # fmt: skip
    check = subprocess.run([haproxy, "-c", "-q", "-f", str(config)], capture_output=True)
    if check.returncode != 0:
        raise SystemExit(f"dlp-workers: invalid {config}:\n{check.stderr.decode(errors='replace')}")

    lb: subprocess.Popen[bytes] | None = None
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        # The first worker creates the CA in the shared confdir before the others read it.
        workers[0].start(exe, args.proxy_args)
        _wait_ready(workers[:1], READY_TIMEOUT)
        for w in workers[1:]:
            w.start(exe, args.proxy_args)
        _wait_ready(workers, READY_TIMEOUT)
        with (run_dir / "haproxy.log").open("ab") as out:
            lb = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=out, stderr=out)
        state = {
            "listen": bind,
            "haproxy_pid": lb.pid,
            "haproxy_socket": str(socket_path),
            "workers": [
                {
                    "name": w.name,
                    "pid": w.process.pid if w.process else None,
                    "port": w.port,
                    "metrics_port": w.metrics_port,
                    "audit_log": w.audit_log,
                }
                for w in workers
            ],
        }
        (run_dir / "workers.json").write_text(json.dumps(state, indent=2))
        print(f"dlp-workers: {len(workers)} workers behind HAProxy on {bind}", flush=True)
        while not stopping:
            time.sleep(0.5)
            if lb.poll() is not None:
                print(f"dlp-workers: haproxy exited ({lb.returncode})", file=sys.stderr)
                break
            for w in workers:
                if not stopping and w.process is not None and w.process.poll() is not None:
                    print(
                        f"dlp-workers: worker {w.name} exited ({w.process.returncode}); "
                        "starting it again",
                        file=sys.stderr,
                        flush=True,
                    )
                    w.start(exe, args.proxy_args)
    finally:
        _stop(lb)
        for w in workers:
            _stop(w.process)
    sys.exit(0 if stopping else 1)
