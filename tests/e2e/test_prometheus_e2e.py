"""A real Prometheus scrapes a real dlp-proxy: the blocks the test causes come back by rule
from PromQL; and no label takes a value from traffic."""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Proxy, Upstream, free_port, make_test_policy
from tests.synth import customer_records, records_chat_text

pytestmark = pytest.mark.e2e

RECORDS = records_chat_text(customer_records(8, seed=61))


def _post(proxy: Proxy, url: str, text: str) -> int:
    with proxy.client() as client:
        return client.post(
            url,
            content=json.dumps({"m": text}, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        ).status_code


def test_prometheus_sees_the_blocks_by_rule(tmp_path: Path, upstream: Upstream) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: scripts/setup installs Debian's prometheus package"
    proxy = Proxy(tmp_path / "proxy", make_test_policy(), upstream.tls.ca_cert)
    proxy.start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: dlp-proxy\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{proxy.metrics_port}']}}]\n",
        encoding="utf-8",
    )
    log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(api + "/-/ready", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        for i in range(3):
            assert _post(proxy, upstream.url("https", f"/prom/block{i}"), RECORDS) == 403
        for i in range(2):
            assert _post(proxy, upstream.url("https", f"/prom/ok{i}"), "你好") == 200

        query = 'sum by (rule) (dlp_decisions_total{action="block"})'
        deadline = time.monotonic() + 30
        blocks: dict[str, float] = {}
        while blocks.get("bulk-resident-id") != 3:
            assert time.monotonic() < deadline, f"PromQL never showed the blocks: {blocks}"
            time.sleep(0.5)
            result = httpx.get(
                api + "/api/v1/query", params={"query": query}, trust_env=False
            ).json()["data"]["result"]
            blocks = {r["metric"]["rule"]: float(r["value"][1]) for r in result}
        assert {rule for rule, n in blocks.items() if n} == {"bulk-resident-id"}
        ready = httpx.get(f"http://127.0.0.1:{proxy.metrics_port}/readyz", trust_env=False)
        health = httpx.get(f"http://127.0.0.1:{proxy.metrics_port}/healthz", trust_env=False)
        assert ready.status_code == 200 and health.status_code == 200
    finally:
        prom.terminate()
        prom.wait(15)
        log.close()
        proxy.stop()


def _series(proxy: Proxy) -> set[str]:
    return {
        line.rsplit(" ", 1)[0]
        for line in proxy.metrics().splitlines()
        if line and not line.startswith("#")
    }


def test_no_label_takes_its_value_from_traffic(tmp_path: Path, upstream: Upstream) -> None:
    proxy = Proxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.start()
    rng = random.Random(7)

    def weird() -> str:
        return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(12))

    def batch() -> None:
        for _ in range(10):
            name = weird()
            # refused: a host off the allow-list
            with httpx.Client(proxy=proxy.url, trust_env=False) as client:
                client.get(f"http://{name}.example:{free_port()}/{weird()}?u={weird()}")
            # inspected: odd paths, queries, a user name, a blocked and an allowed body
            url = upstream.url("https", f"/{weird()}/{weird()}?{weird()}={weird()}")
            with proxy.client() as client:
                client.post(
                    url,
                    content=RECORDS.encode(),
                    headers={"Proxy-Authorization": f"Basic {weird()}", "X-User": weird()},
                )
                client.post(url, content=weird().encode())

    try:
        batch()
        first = _series(proxy)
        batch()
        second = _series(proxy)
        new = second - first
        assert not new, f"{len(new)} new series after the second batch, e.g. {sorted(new)[:3]}"
        assert len(second) < 400
    finally:
        proxy.stop()
