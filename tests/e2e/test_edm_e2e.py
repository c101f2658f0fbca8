"""End to end: exact data match of the insurer's own customers, through the real ``dlp-proxy``.

The admin indexes a generated customer table of 100,000 rows with ``dlp-policy edm index`` (a
real process) and points the policy's ``edm:`` section at the index. Ten customers sent as name
and policy number only (no ID, no mobile: nothing a generic detector sees) are stopped, in a
chat message (inline) and in an uploaded file (in an inspection worker process, which maps the
same index); the same names with made-up policy numbers pass, and so does a customer's own
single record. The index holds none of the table's values; re-indexing reloads the proxy;
rows the indexer cannot read are reported by line number.
"""

from __future__ import annotations

import csv
import json
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ahocorasick
import httpx
import pytest

from tests import synth
from tests.e2e.harness import Proxy, TlsFiles, Upstream, make_test_policy, sample_value, scrub
from tests.synth import POLICY_FORMAT, TABLE_HEADER, customer_table

pytestmark = pytest.mark.e2e

ROWS = 100_000
RULE = "edm-customers"
COLUMNS = "policy=保单号,name=姓名,id=身份证号,mobile=手机,address=地址,plate=车牌"
TABLE = list(customer_table(ROWS + 100, seed=2026))  # the last 100: customers added later
LATER = TABLE[ROWS:]
rng = random.Random(7)
TEN = rng.sample(TABLE[:ROWS], 10)


def write_table(path: Path, rows: list[tuple[str, ...]], bad: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TABLE_HEADER)
        w.writerows(rows)
    return path


def edm_index(export: Path, out: Path, key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlp_addon.policy_cli", "edm", "index", str(export),
         "--columns", COLUMNS, "--policy-format", POLICY_FORMAT, "--key-file", str(key),
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("edm")
    (d / "hmac.key").write_text(secrets.token_hex(32), encoding="utf-8")
    write_table(d / "customers.csv", TABLE[:ROWS])
    done = edm_index(d / "customers.csv", d / "customers.edm", d / "hmac.key")
    assert done.returncode == 0, scrub(done.stderr[-2000:])
    assert f"{ROWS:,} rows indexed" in done.stdout
    return d


def edm_policy(index: Path) -> dict[str, Any]:
    def edit(policy: dict[str, Any]) -> None:
        policy["edm"] = {"index": str(index), "proximity": 80}
        policy["rules"].insert(
            0,
            {
                "name": RULE,
                "action": "block",
                "description": {"zh": "本公司客户资料", "en": "Our customers' records"},
                "when": [{"edm_records": 5}],
            },
        )

    return make_test_policy(edit=edit)


@pytest.fixture(scope="module")
def proxy(workdir: Path, tls_files: TlsFiles) -> Iterator[Proxy]:
    p = Proxy(workdir / "proxy", edm_policy(workdir / "customers.edm"), tls_files.ca_cert)
    p.extra_args = [
        "--set", f"dlp_hmac_key_file={workdir / 'hmac.key'}",
        "--set", "dlp_inline_max_bytes=1024",  # uploads go to an inspection worker
        "--set", "dlp_inspect_workers=1",
    ]  # fmt: skip
    p.start()
    yield p
    p.stop()
    leaks = p.leaks([v for row in TABLE for v in row], metrics=False)
    assert not leaks, f"raw values in the proxy's output or audit: {leaks}"


def chat(proxy: Proxy, upstream: Upstream, text: str, marker: str) -> httpx.Response:
    with proxy.client() as client:
        return client.post(
            upstream.url("https", f"/chat/edm-{marker}"),
            content=json.dumps({"content": text}, ensure_ascii=False).encode(),
            headers={"content-type": "application/json", "accept": "application/json"},
        )


def upload(proxy: Proxy, upstream: Upstream, text: str, marker: str) -> httpx.Response:
    filler = "\n".join(f"商品{i}，数量{i % 7 + 1}，备注：尽快发货" for i in range(60))
    data = (f"{filler}\n{text}\n").encode()
    assert len(data) > 1024
    with proxy.client() as client:
        return client.post(
            upstream.url("https", f"/upload/edm-{marker}"),
            files={"file": ("客户.csv", data, "text/csv")},
        )


def names_and_policies(rows: list[tuple[str, ...]]) -> str:
    return "\n".join(f"{r[1]} {r[0]}" for r in rows)


def made_up(rows: list[tuple[str, ...]]) -> str:
    r = random.Random(99)
    return "\n".join(f"{row[1]} {synth.policy_number(r)}" for row in rows)


def arrived(upstream: Upstream, marker: str) -> int:
    return len(upstream.recorder.requests(f"/edm-{marker}"))


def test_ten_customers_by_name_and_policy_number_are_stopped(
    proxy: Proxy, upstream: Upstream
) -> None:
    text = names_and_policies(TEN)
    r = chat(proxy, upstream, text, "chat-ten")
    assert r.status_code == 403 and arrived(upstream, "chat-ten") == 0
    assert "本公司客户记录 10 条" in r.text or "records: 10" in r.text
    r = upload(proxy, upstream, text, "upload-ten")
    assert r.status_code == 403 and arrived(upstream, "upload-ten") == 0
    events = proxy.wait_audit(lambda e: e.get("rule") == RULE, timeout=10)
    assert len(events) == 2 and all(e["edm_records"] == 10 for e in events)
    assert {e["channel"] for e in events} == {"http", "upload"}


def test_the_same_names_with_made_up_policy_numbers_pass(proxy: Proxy, upstream: Upstream) -> None:
    text = made_up(TEN)
    assert chat(proxy, upstream, text, "chat-made-up").status_code == 200
    assert upload(proxy, upstream, text, "upload-made-up").status_code == 200
    got = upstream.recorder.requests("/edm-chat-made-up")
    assert len(got) == 1 and json.loads(got[0].body)["content"] == text


def test_a_customers_own_record_passes(proxy: Proxy, upstream: Upstream) -> None:
    me = TEN[0]
    text = f"你好，我是{me[1]}，保单号 {me[0]}，理赔到哪一步了？"
    assert chat(proxy, upstream, text, "own").status_code == 200
    assert arrived(upstream, "own") == 1


def test_the_index_holds_no_value_of_the_table(workdir: Path) -> None:
    data = (workdir / "customers.edm").read_bytes().decode("latin-1")
    sample = random.Random(3).sample(TABLE[:ROWS], 20_000)
    automaton = ahocorasick.Automaton()
    for row in sample:
        for value in row:
            raw = value.encode("utf-8").decode("latin-1")
            automaton.add_word(raw, len(raw))
    automaton.make_automaton()
    found = sum(1 for _ in automaton.iter(data))
    assert found == 0, f"{found} values of the table in the index"


def test_reindexing_reloads_the_proxy(proxy: Proxy, upstream: Upstream, workdir: Path) -> None:
    later = names_and_policies(LATER[:10])
    assert chat(proxy, upstream, later, "later-before").status_code == 200
    reloads = sample_value(proxy.metrics(), "dlp_policy_reloads_total", {"result": "success"})
    write_table(workdir / "customers.csv", TABLE[:1000] + LATER)  # the next export
    done = edm_index(workdir / "customers.csv", workdir / "customers.edm", workdir / "hmac.key")
    assert done.returncode == 0, scrub(done.stderr[-2000:])
    deadline = time.monotonic() + 20
    while (
        sample_value(proxy.metrics(), "dlp_policy_reloads_total", {"result": "success"}) == reloads
    ):
        assert time.monotonic() < deadline, "the new index was not loaded"
        time.sleep(0.2)
    assert chat(proxy, upstream, later, "later-after").status_code == 403
    assert upload(proxy, upstream, later, "later-upload").status_code == 403  # the worker too
    gone = [r for r in TEN if r not in TABLE[:1000]]
    assert chat(proxy, upstream, names_and_policies(gone[:6]), "gone").status_code == 200


def test_unreadable_rows_are_reported_by_line(workdir: Path, tmp_path: Path) -> None:
    rows = [list(r) for r in TABLE[:500]]
    bad_id = synth.bad_check_id(random.Random(2))
    rows[99][2] = bad_id  # line 101
    rows[199] = rows[199][:2]  # line 201
    write_table(tmp_path / "export.csv", [tuple(r) for r in rows])
    done = edm_index(tmp_path / "export.csv", tmp_path / "x.edm", workdir / "hmac.key")
    assert done.returncode == 0, scrub(done.stderr[-2000:])
    assert "rejected line 101: column '身份证号' is not a valid id" in done.stderr
    assert "rejected line 201: 2 columns, 6 expected" in done.stderr
    assert "498 rows indexed" in done.stdout and "2 rejected" in done.stdout
    assert bad_id not in done.stdout + done.stderr
    assert not any(v in done.stdout + done.stderr for r in rows for v in r if len(v) > 4)
