"""End to end: the runbook's drain, as docs/operations.md writes it, against a real HAProxy in
front of two real workers (``dlp-workers 2``).

The commands are taken from the runbook itself (only the socket path, the one of this run,
and the worker number are put in), so a runbook naming a backend or server that does not exist
fails here. A drained worker gets no new connection but finishes the one it holds; it stays out
across a restart until it is made ready again.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import REPO, TlsFiles, Upstream, wait_for
from tests.e2e.test_workers_e2e import CHAT, Fleet, _ready

pytestmark = pytest.mark.e2e

RUNBOOK = REPO / "docs" / "operations.md"
RUNBOOK_SOCKET = "/run/haproxy/admin.sock"


def runbook_command(marker: str) -> str:
    """The runbook's one shell command containing ``marker`` (in backticks)."""
    found = [
        c
        for c in re.findall(r"`([^`\n]*socat stdio [^`\n]*)`", RUNBOOK.read_text("utf-8"))
        if marker in c and RUNBOOK_SOCKET in c
    ]
    assert len(found) == 1, f"docs/operations.md: one command with {marker!r}, found {found}"
    return found[0]


def stat(fleet: Fleet, server: str) -> tuple[int, str]:
    """The runbook's check: the server's current connections and its state (``DRAIN``,
    ``UP``; HAProxy may add check progress such as ``1/2``)."""
    count, state = run_as_documented("show stat", fleet, server).split(maxsplit=1)
    return int(count), state.split()[0]


def run_as_documented(marker: str, fleet: Fleet, server: str) -> str:
    command = runbook_command(marker).replace(RUNBOOK_SOCKET, fleet.state["haproxy_socket"])
    command = command.replace("wN", server)
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    if "set server" in command:  # HAProxy answers a change with nothing, an error with a line
        assert not result.stdout.strip(), f"{command}: {result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("drain"), tls_files)
    yield f
    f.stop()


def keepalive_client(fleet: Fleet) -> httpx.Client:
    """One connection through HAProxy that stays open (a desktop's browser or chat)."""
    return httpx.Client(
        proxy=f"http://127.0.0.1:{fleet.port}",
        verify=ssl.create_default_context(cafile=fleet.confdir / "mitmproxy-ca-cert.pem"),
        trust_env=False,
        timeout=15,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )


def counts(fleet: Fleet) -> list[float]:
    return [fleet.inspected(w) for w in fleet.state["workers"]]


def new_connections(fleet: Fleet, upstream: Upstream, path: str, n: int) -> list[int]:
    with fleet.client() as client:  # one connection per request
        return [
            client.post(upstream.url("https", f"{path}{i}"), content=CHAT).status_code
            for i in range(n)
        ]


def test_a_drained_worker_finishes_its_connection_and_gets_no_new_one(
    fleet: Fleet, upstream: Upstream
) -> None:
    socket_path = Path(fleet.state["haproxy_socket"])
    assert socket_path.is_socket() and socket_path.stat().st_mode & 0o777 == 0o600

    with keepalive_client(fleet) as desktop:
        before = counts(fleet)
        first = desktop.post(upstream.url("https", "/drain/held0"), content=CHAT)
        assert first.status_code == 200
        after = counts(fleet)
        held = next(i for i in (0, 1) if after[i] > before[i])  # the worker holding it
        other = 1 - held
        name = fleet.state["workers"][held]["name"]

        run_as_documented("state drain", fleet, name)
        assert stat(fleet, name) == (1, "DRAIN")  # drained, its one connection still open

        base = counts(fleet)
        statuses = new_connections(fleet, upstream, "/drain/new", 6)
        assert statuses == [200] * 6
        moved = counts(fleet)
        assert moved[held] == base[held], "a new connection went to the drained worker"
        assert moved[other] - base[other] == 6

        # The connection it held still works there, inspected by it.
        again = desktop.post(upstream.url("https", "/drain/held1"), content=CHAT)
        assert again.status_code == 200
        assert counts(fleet)[held] == moved[held] + 1

    gone = wait_for(
        lambda: True if stat(fleet, name)[0] == 0 else None,
        timeout=10,
        interval=0.2,
    )
    assert gone, "the drained worker's connection count never reached 0"


def test_a_restarted_worker_stays_out_until_made_ready(fleet: Fleet, upstream: Upstream) -> None:
    workers: list[dict[str, Any]] = fleet.state["workers"]
    drained = workers[1]
    run_as_documented("state drain", fleet, drained["name"])
    # The upgrade step: the worker restarts (the launcher starts it again, as systemd would).
    os.kill(drained["pid"], signal.SIGTERM)
    restarted = wait_for(
        lambda: True if f"{drained['name']} exited" in fleet.output.read_text() else None,
        timeout=15,
    )
    assert restarted, "the launcher did not restart the worker"
    assert wait_for(lambda: _ready(drained["metrics_port"]), timeout=60, interval=0.3)
    # HAProxy's next check (every 2 s) sees it up again: its state is DRAIN, not UP.
    back = wait_for(
        lambda: True if stat(fleet, drained["name"])[1] != "DOWN" else None,
        timeout=15,
        interval=0.2,
    )
    assert back, "HAProxy never saw the restarted worker"
    assert stat(fleet, drained["name"]) == (0, "DRAIN")
    base = fleet.inspected(drained)
    assert new_connections(fleet, upstream, "/drain/restarted", 4) == [200] * 4
    assert fleet.inspected(drained) == base, "a drained worker got connections after a restart"

    run_as_documented("state ready", fleet, drained["name"])
    assert stat(fleet, drained["name"])[1] == "UP"
    assert new_connections(fleet, upstream, "/drain/ready", 8) == [200] * 8
    assert fleet.inspected(drained) > base, "the worker made ready got no new connection"
