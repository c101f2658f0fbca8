"""Fixtures for the end-to-end tests: the real ``dlp-proxy`` between real clients and a real
upstream, all on loopback. See :mod:`tests.e2e.harness` for the pieces."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import pytest

from tests.e2e.harness import (
    ArgsProxy,
    ConnectionCounter,
    Proxy,
    ProxyStartError,
    TlsFiles,
    Upstream,
    make_test_policy,
    make_tls_files,
    scrub,
)

StartProxy = Callable[..., Proxy]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test that starts the real proxy process (select: -m e2e)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Mask long digit runs in failure reports of these tests.

    pytest's long tracebacks print every frame's arguments and the operands of a failed assert;
    when the proxy misbehaves those can hold the synthetic identifiers a test sent. The tests
    avoid that where they can; this is the net under them.
    """
    report = yield
    if report.failed and report.longrepr is not None:
        report.longrepr = scrub(str(report.longrepr))
    report.sections = [(title, scrub(content)) for title, content in report.sections]
    return report


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA (``ca_cert``) and the upstream's certificate and key, as PEM files."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def upstream(tls_files: TlsFiles) -> Iterator[Upstream]:
    """The recording upstream on 127.0.0.1: ``upstream.url("https", "/p")``, ``.recorder``."""
    server = Upstream(tls_files)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def offlist_host() -> Iterator[ConnectionCounter]:
    """A listener on 127.0.0.2 (not on the allow-list); ``.accepted`` must stay 0."""
    counter = ConnectionCounter()
    counter.start()
    yield counter
    counter.stop()


@pytest.fixture(scope="module")
def start_proxy(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, tls_files: TlsFiles
) -> Iterator[StartProxy]:
    """Start a proxy with the test policy changed by ``overrides`` (top-level keys) and ``edit``.

    ``start_proxy(mode="monitor")`` -> a running :class:`Proxy`. Every proxy started is stopped at
    the end of the module; then the raw values a test registered in ``proxy.sent_values`` must
    not appear in its audit log or output.
    """
    started: list[Proxy] = []

    def start(
        overrides: Mapping[str, Any] | None = None,
        *,
        edit: Callable[[dict[str, Any]], None] | None = None,
        **top_level: Any,
    ) -> Proxy:
        policy = make_test_policy({**(overrides or {}), **top_level}, edit)
        proxy = Proxy(tmp_path_factory.mktemp("proxy"), policy, tls_files.ca_cert)
        try:
            proxy.start()
        except ProxyStartError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(proxy)
        return proxy

    yield start

    problems: list[str] = []
    for proxy in started:
        status = proxy.stop()
        leaks = proxy.leaks(proxy.sent_values, metrics=False)
        if leaks:
            problems.append(f"{proxy.workdir.name}: raw identifiers leaked: {leaks}")
        if status not in (0, -15, None):
            problems.append(f"{proxy.workdir.name}: exit status {status}\n{proxy.stderr_tail()}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def proxy(start_proxy: StartProxy) -> Proxy:
    """The proxy with the shipped policy, destinations replaced by test-shop (127.0.0.1)."""
    return start_proxy()


@pytest.fixture(scope="module")
def launch_proxy(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, tls_files: TlsFiles
) -> Iterator[Callable[..., ArgsProxy]]:
    """``launch_proxy("--proxyauth", "u:p", mode="monitor")``: a running proxy with extra
    command-line arguments and the test policy changed by top-level keys; stopped at the end
    of the module."""
    started: list[ArgsProxy] = []

    def start(*extra: str, **policy_top: Any) -> ArgsProxy:
        proxy = ArgsProxy(
            tmp_path_factory.mktemp("proxy"),
            make_test_policy(policy_top),
            tls_files.ca_cert,
            extra=list(extra),
        )
        try:
            proxy.start()
        except ProxyStartError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
