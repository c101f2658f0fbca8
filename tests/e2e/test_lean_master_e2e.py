"""dlp-proxy runs only the mitmproxy addons it needs: what it kept still works end to end, and
what it dropped is refused at start rather than silently ignored."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import (
    ArgsProxy,
    Proxy,
    Upstream,
    make_test_policy,
    make_tls_files,
    proxy_executable,
)

pytestmark = pytest.mark.e2e

Launch = Callable[..., ArgsProxy]
CHAT = "亲，今天能发货吗？".encode()


def test_proxy_authentication_is_required_when_configured(
    launch_proxy: Launch, upstream: Upstream
) -> None:
    proxy = launch_proxy("--proxyauth", "alice:correct-horse")
    url = upstream.url("http", "/auth/chat")
    with httpx.Client(proxy=proxy.url, trust_env=False, timeout=15) as client:
        assert client.post(url, content=CHAT).status_code == 407
    user = f"http://alice:correct-horse@{proxy.host}:{proxy.port}"
    with httpx.Client(proxy=user, trust_env=False, timeout=15) as client:
        assert client.post(url, content=CHAT).status_code == 200
    assert upstream.recorder.requests("/auth/chat")


def test_block_list_and_onboarding_still_work(launch_proxy: Launch, upstream: Upstream) -> None:
    proxy = launch_proxy("--set", "block_list=/~u forbidden/418")
    with proxy.client() as client:
        blocked = client.get(upstream.url("https", "/forbidden/x"))
        cert = client.get("http://mitm.it/cert/pem")
    assert blocked.status_code == 418
    assert not upstream.recorder.requests("/forbidden/")
    assert cert.status_code == 200 and b"BEGIN CERTIFICATE" in cert.content


def test_upstream_certificates_are_verified(upstream: Upstream, tmp_path: Path) -> None:
    other_ca = make_tls_files(tmp_path / "other").ca_cert  # does not sign the upstream's cert
    proxy = Proxy(tmp_path / "proxy", make_test_policy(), other_ca)
    proxy.start()
    try:
        with proxy.client() as client:
            response = client.post(upstream.url("https", "/untrusted/chat"), content=CHAT)
    finally:
        proxy.stop()
    assert response.status_code == 502
    assert not upstream.recorder.requests("/untrusted/")


def test_raw_flow_log_prints_flows_only_when_asked(
    launch_proxy: Launch, upstream: Upstream
) -> None:
    quiet = launch_proxy()
    loud = launch_proxy("--set", "dlp_raw_flow_log=true", "--set", "flow_detail=1")
    for proxy, path in ((quiet, "/quietflow"), (loud, "/loudflow")):
        with proxy.client() as client:
            assert client.post(upstream.url("http", path), content=CHAT).status_code == 200
    assert "/quietflow" not in quiet.output()
    assert "/loudflow" in loud.output()


@pytest.mark.parametrize(
    "args",
    [["--set", "anticache=true"], ["--set", "save_stream_file=/tmp/flows"], ["~u chat"]],
)
def test_options_of_dropped_addons_are_refused(args: list[str], tmp_path: Path) -> None:
    cmd = [
        str(proxy_executable()), "--listen-host", "127.0.0.1", "-p", "0",
        "--set", f"confdir={tmp_path}", "--set", "dlp_metrics_port=0", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert "not supported" in done.stderr or "unknown option" in done.stderr, done.stderr[-500:]
