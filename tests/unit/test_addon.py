"""The mitmproxy edge at unit level (taddons/tflow): options, allow-list, fail closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import connection, exceptions, tls
from mitmproxy.proxy import context, server_hooks
from mitmproxy.test import taddons, tflow, tutils

from dlp_addon import decision, pipeline
from dlp_addon.addon import DlpAddon

POLICY = """\
version: 1
destinations:
  - {name: shop, hosts: [shop.example]}
rules:
  - name: ids
    action: block
    when: [{detector: cn_resident_id, min_distinct: 1}]
"""
ID = "11010519491231002X"


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY, encoding="utf-8")
    return p


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _flow(host: str, body: bytes) -> Any:
    req = tutils.treq(
        host=host, port=443, scheme=b"https", method=b"POST", path=b"/chat", content=body
    )
    req.headers["host"] = host
    return tflow.tflow(req=req)


@contextlib.contextmanager
def addon_in(policy_file: Path, tmp_path: Path, *others: Any) -> Iterator[tuple[DlpAddon, Any]]:
    """The addon in a test master (with ``others`` before it), configured with ``policy_file``.
    Must be entered inside a running event loop."""
    a = DlpAddon()
    with taddons.context(*others, a) as tctx:
        tctx.configure(
            a,
            dlp_policy=str(policy_file),
            dlp_metrics_port=0,
            dlp_audit_log=str(tmp_path / "audit.jsonl"),
        )
        yield a, tctx


def test_invalid_policy_is_an_options_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("action: block", "action: explode"), encoding="utf-8")

    async def go() -> None:
        a = DlpAddon()
        with taddons.context(a) as tctx, pytest.raises(exceptions.OptionsError) as e:
            tctx.configure(a, dlp_policy=str(bad))
        assert f"{bad}:6: rules.0.action" in str(e.value)

    run(go())


def test_stream_large_bodies_is_refused(policy_file: Path, tmp_path: Path) -> None:
    async def go() -> None:
        from mitmproxy.addons import proxyserver

        with (
            addon_in(policy_file, tmp_path, proxyserver.Proxyserver()) as (a, tctx),
            pytest.raises(exceptions.OptionsError),
        ):
            tctx.configure(a, stream_large_bodies="1m")

    run(go())


def test_flow_log_is_silenced(policy_file: Path, tmp_path: Path) -> None:
    async def go() -> None:
        from mitmproxy.addons import dumper

        with addon_in(policy_file, tmp_path, dumper.Dumper()) as (a, tctx):
            tctx.configure(a, flow_detail=2)
            assert tctx.options.flow_detail == 0
            tctx.configure(a, dlp_raw_flow_log=True, flow_detail=2)
            assert tctx.options.flow_detail == 2

    run(go())


def test_unlisted_host_and_domain_fronting_are_refused(policy_file: Path, tmp_path: Path) -> None:
    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, _tctx):
            f = _flow("evil.example", b"hi")
            a.egress.requestheaders(f)
            assert f.response is not None and f.response.status_code == 403
            fronted = _flow("shop.example", b"hi")
            fronted.request.headers["host"] = "evil.example"
            a.egress.requestheaders(fronted)
            assert fronted.response is not None and fronted.response.status_code == 403
            ok = _flow("shop.example", b"hi")
            a.egress.requestheaders(ok)
            await a.inspector.request(ok)
            assert ok.response is None

    run(go())


def test_refused_connect_opens_a_tunnel_to_the_proxy_alone(
    policy_file: Path, tmp_path: Path
) -> None:
    """CONNECT to an unlisted host: 200 from the proxy, no server TLS first, no server
    connection, and the requests inside get the refusal page under the CONNECT's incident."""

    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, _tctx):

            def refusals() -> float:
                return float(
                    a.metrics.decisions.labels("refuse", "egress-allowlist", "other")._value.get()
                )

            connect = tflow.tflow(req=tutils.treq(method=b"CONNECT", host="evil.example"))
            connect.request.path = ""
            a.egress.http_connect(connect)
            assert connect.response is not None and connect.response.status_code == 200
            assert refusals() == 1

            hello = tls.ClientHelloData(
                context.Context(connect.client_conn, _tctx.options),
                client_hello=None,  # type: ignore[arg-type]
            )
            hello.establish_server_tls_first = True
            a.egress.tls_clienthello(hello)
            assert hello.establish_server_tls_first is False

            server = connection.Server(address=("evil.example", 443))
            a.egress.server_connect(
                server_hooks.ServerConnectionHookData(server, connect.client_conn)
            )
            assert server.error == "not on the DLP allow-list"
            allowed = connection.Server(address=("shop.example", 443))
            a.egress.server_connect(
                server_hooks.ServerConnectionHookData(allowed, connect.client_conn)
            )
            assert allowed.error is None

            inner = _flow("evil.example", b"")
            inner.client_conn = connect.client_conn
            a.egress.requestheaders(inner)
            assert inner.response is not None and inner.response.status_code == 403
            incident = inner.response.headers["X-DLP-Incident"]
            assert incident.encode() in inner.response.content
            assert refusals() == 1

            a.egress.client_disconnected(connect.client_conn)
            assert not a.egress._refused_tunnels

    run(go())


def test_inspection_crash_fails_closed_without_leaking(
    policy_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(*_: Any, **__: Any) -> Any:
        raise ValueError(f"invalid literal {ID}")

    monkeypatch.setattr(pipeline, "extract_http", explode)

    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, _tctx):
            f = _flow("shop.example", b"harmless")
            a.egress.requestheaders(f)
            with caplog.at_level(logging.DEBUG):
                await a.inspector.request(f)
            assert f.response is not None and f.response.status_code == 403
            assert b"inspection-error" in f.response.content
            assert a.metrics.errors.labels("extract")._value.get() == 1

    run(go())
    assert "ValueError" in caplog.text and ID not in caplog.text


def test_addon_crash_outside_the_pipeline_fails_closed(
    policy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(decision, "inspect_message", explode)

    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, _tctx):
            f = _flow("shop.example", b"harmless")
            a.egress.requestheaders(f)
            await a.inspector.request(f)
            assert f.response is not None and f.response.status_code == 403

    run(go())


def test_large_body_inspected_off_loop_with_deadline(policy_file: Path, tmp_path: Path) -> None:
    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, tctx):
            tctx.configure(a, dlp_inline_max_bytes=10)
            f = _flow("shop.example", (f"客户 {ID} ".encode()) * 1000)
            a.egress.requestheaders(f)
            await a.inspector.request(f)
            assert f.response is not None and f.response.status_code == 403
            assert f.response.headers["X-DLP-Incident"].startswith("DLP-")

    run(go())


def test_unlisted_hosts_are_inspected_when_not_refused(tmp_path: Path) -> None:
    open_policy = tmp_path / "open.yaml"
    open_policy.write_text(POLICY + "egress: {refuse_unlisted: false}\n", encoding="utf-8")

    async def go() -> None:
        with addon_in(open_policy, tmp_path) as (a, _tctx):
            clean = _flow("elsewhere.example", b"hello")
            a.egress.requestheaders(clean)
            await a.inspector.request(clean)
            assert clean.response is None
            leak = _flow("elsewhere.example", f"客户 {ID}".encode())
            a.egress.requestheaders(leak)
            await a.inspector.request(leak)
            assert leak.response is not None and leak.response.status_code == 403
            assert a.metrics.decisions.labels("block", "ids", "other")._value.get() == 1

    run(go())
