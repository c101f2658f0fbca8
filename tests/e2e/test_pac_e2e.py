"""The PAC file from ``dlp-policy pac`` routes a browser to the running proxy: the allowed
platform's request goes through it and arrives; a host off the allow-list is sent to the same
proxy, which refuses it with its page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dukpy
import httpx
import pytest

from tests.e2e.harness import OFFLIST_HOST, ConnectionCounter, Proxy, Upstream

pytestmark = pytest.mark.e2e


def test_pac_routes_through_the_running_proxy(
    proxy: Proxy, upstream: Upstream, offlist_host: ConnectionCounter, tmp_path: Path
) -> None:
    pac_file = tmp_path / "proxy.pac"
    subprocess.run(
        [str(Path(sys.executable).parent / "dlp-policy"), "pac", str(proxy.policy_path),
         "--proxy", f"{proxy.host}:{proxy.port}", "-o", str(pac_file)],
        check=True,
    )  # fmt: skip
    pac = pac_file.read_text("utf-8")

    def route(url: str) -> str:
        host = httpx.URL(url).host
        return str(
            dukpy.evaljs([pac, "FindProxyForURL(dukpy.url, dukpy.host)"], url=url, host=host)
        )

    allowed = upstream.url("https", "/pac/allowed")
    offlist = f"http://{OFFLIST_HOST}:{offlist_host.port}/pac/offlist"
    for url in (allowed, offlist):
        directive = route(url)
        assert directive == f"PROXY {proxy.host}:{proxy.port}", url
    _kind, address = route(allowed).split(" ", 1)
    with httpx.Client(
        proxy=f"http://{address}", verify=proxy.ssl_context(), trust_env=False, timeout=15
    ) as client:
        assert client.get(allowed).status_code == 200
        refused = client.get(offlist)
    assert upstream.recorder.requests("/pac/allowed")
    assert refused.status_code == 403 and refused.headers.get("X-DLP-Refused") == "not-allowed"
    assert offlist_host.accepted == 0
