"""A real browser through the real proxy: Debian's Chromium, driven by Playwright.

The browser is Debian's ``/usr/bin/chromium`` (``scripts/setup`` installs it); Playwright never
downloads one. It trusts the proxy's CA the way a managed desktop does: the CA is added to the
NSS database under a throwaway ``$HOME`` (``certutil``), nothing else is trusted and no
certificate error is ignored. Chromium sends loopback traffic past a proxy unless told otherwise,
so ``--proxy-bypass-list=<-loopback>``.

Screenshots are test artifacts in ``test-artifacts/browser/``. With ``DLP_UPDATE_SCREENSHOTS=1``
(``scripts/screenshots``) the ones the README shows are also written to ``docs/img/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser.shop import ShopApp
from tests.e2e.conftest import StartProxy
from tests.e2e.harness import REPO, Proxy, TlsFiles, Upstream

CHROMIUM = Path(os.environ.get("DLP_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts" / "browser"
DOCS_IMG = REPO / "docs" / "img"
VIEWPORT = {"width": 1000, "height": 620}
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=zh-CN",
    "--proxy-bypass-list=<-loopback>",
]


@pytest.fixture(scope="module")
def shop(tls_files: TlsFiles) -> Iterator[Upstream]:
    """The shop's customer-service chat on https://127.0.0.1:PORT/shop/."""
    server = Upstream(tls_files, ShopApp)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shop_proxy(start_proxy: StartProxy) -> Proxy:
    """dlp-proxy with the shipped policy; the shop (127.0.0.1) is its one destination."""
    return start_proxy()


def _trust_store(home: Path, ca: Path) -> None:
    """An NSS database in ``home`` that trusts ``ca`` for web sites, as Chromium reads it."""
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.fail("certutil is missing (Debian's libnss3-tools): run scripts/setup")
    db = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    subprocess.run([certutil, "-d", db, "-N", "--empty-password"], check=True)
    subprocess.run(
        [certutil, "-d", db, "-A", "-t", "C,,", "-n", "dlp-proxy CA", "-i", str(ca)], check=True
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, shop_proxy: Proxy) -> Iterator[Any]:
    """One headless Chromium for the module, using ``shop_proxy`` and trusting its CA."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (Debian's chromium): run scripts/setup")
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("browser-home")
    _trust_store(home, shop_proxy.ca_path)
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--proxy-server={shop_proxy.url}"],
            env={**os.environ, "HOME": str(home)},
        )
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies, no cache) and a page in it."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def screenshot(page: Any, name: str, *, docs: bool = False, full_page: bool = False) -> Path:
    """Save what the page shows as ``test-artifacts/browser/NAME.png``; with ``docs`` and
    ``DLP_UPDATE_SCREENSHOTS=1`` also as ``docs/img/NAME.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs and os.environ.get("DLP_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)
    return path
