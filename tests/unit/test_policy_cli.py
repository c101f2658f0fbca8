"""``dlp-policy check`` names every class of mistake with its line; ``dlp-policy test`` explains
decisions with masked values; exceptions lapse by themselves."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dlp_addon.decide import decide, load_policy
from dlp_addon.decide.policy import Requester
from dlp_addon.policy_cli import main
from tests import files as F
from tests.synth import customer_records, records_chat_text

BASE = """\
version: 1
destinations:
  - name: shop
    hosts: [shop.example]
custom_detectors:
  - id: employee_no
    name: {zh: 工号, en: employee number}
    regex: 'EMP[0-9]{6}'
    validator: none
    mask: [3, 2]
    samples: {match: [EMP123456], no_match: [EMP12]}
rules:
  - name: ids
    action: block
    when:
      - {detector: cn_resident_id, min_distinct: 5}
"""

BROKEN = {
    "unknown key": (
        BASE.replace("    action: block", "    action: block\n    treshold: 3"),
        15,
        "unknown key 'treshold'",
    ),
    "bad glob": (BASE.replace("[shop.example]", "['shop.*.example']"), 4, "not a valid host glob"),
    "unknown detector": (
        BASE.replace("detector: cn_resident_id", "detector: cn_id"),
        16,
        "unknown detector 'cn_id'",
    ),
    "unknown validator": (
        BASE.replace("validator: none", "validator: crc32"),
        9,
        "unknown validator 'crc32'",
    ),
    "invalid regex": (BASE.replace("'EMP[0-9]{6}'", "'EMP[0-9'"), 8, "invalid regex"),
    "catastrophic regex": (BASE.replace("'EMP[0-9]{6}'", "'(EMP[0-9]+)+X'"), 8, "catastrophically"),
    "threshold out of range": (
        BASE.replace("min_distinct: 5", "min_distinct: 0"),
        16,
        "less than the minimum",
    ),
    "unreadable keyword list": (
        BASE.replace("    regex: 'EMP[0-9]{6}'\n", "    words_file: missing.txt\n"),
        8,
        "cannot read keyword list",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_reports_each_class_with_its_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, line, message = BROKEN[case]
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert any(row.startswith(f"{path}:{line}: ") and message in row for row in out.splitlines()), (
        out
    )


def test_check_accepts_the_shipped_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "dlp_addon/patterns/policy.yaml"]) == 0
    assert ": ok (version " in capsys.readouterr().out


def test_test_explains_a_workbook_with_masked_values_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = F.customer_rows(12, seed=5)
    book = tmp_path / "客户.xlsx"
    book.write_bytes(F.xlsx(rows))
    request = tmp_path / "chat.http"
    request.write_bytes(
        b"POST https://im.jd.com/send HTTP/1.1\r\nHost: im.jd.com\r\n"
        b'Content-Type: application/json\r\n\r\n{"m": "hello"}'
    )
    assert main(["test", "dlp_addon/patterns/policy.yaml", str(book), str(request)]) == 0
    out = capsys.readouterr().out
    assert "file: xlsx (1 sheets, 13 rows, 4 columns, 12 records)" in out
    assert "rule bulk-resident-id (block): HOLDS: cn_resident_id 12 >= 5" in out
    assert "verdict: block by bulk-resident-id" in out
    assert "verdict: allow" in out
    assert not any(str(r[1]) in out or str(r[2]) in out for r in rows[1:])


def test_test_shows_the_text_it_read_with_identifiers_masked_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = customer_records(6, seed=8)
    sample = tmp_path / "paste.txt"
    sample.write_text(records_chat_text(records), encoding="utf-8")
    assert main(["test", "dlp_addon/patterns/policy.yaml", str(sample), "--show", "4"]) == 0
    out = capsys.readouterr().out
    shown = [line for line in out.splitlines() if line.startswith("    | ")]
    assert len(shown) == 5  # four lines of the pasted text, then how many more
    assert shown[-1].startswith("    | ... ")
    for r in records:
        assert r["id"] not in out and r["mobile"] not in out
    first = records[0]
    assert f"{first['id'][:6]}********{first['id'][-4:]}" in shown[0] + shown[1]


def test_an_expired_exception_no_longer_exempts(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        BASE
        + "groups: {claims: [wang.wu]}\n"
        + "exemptions:\n"
        + "  - reason: 'ticket SEC-42: claims team sends case files to the insurer portal'\n"
        + "    groups: [claims]\n"
        + "    rules: [ids]\n"
        + "    expires: '2026-12-01T00:00:00+08:00'\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    findings = policy.scanner.scan(records_chat_text(customer_records(6, seed=8)), "body")
    claims = policy.requester("wang.wu", "/send")
    other = policy.requester("li.si", "/send")
    before = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)  # 23:00 in Beijing
    after = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)  # midnight in Beijing: lapsed

    def verdict(who: Requester, now: dt.datetime) -> str:
        return decide(
            policy, findings, destination="shop", channel="http", requester=who, now=now
        ).action

    assert verdict(claims, before) == "allow"
    assert verdict(other, before) == "block"
    assert verdict(claims, after) == "block"


def test_path_exemptions(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        BASE
        + "exemptions:\n  - reason: order export API, reviewed\n    paths: ['/api/export/*']\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    findings = policy.scanner.scan(records_chat_text(customer_records(6, seed=9)), "body")
    assert (
        decide(
            policy,
            findings,
            destination="shop",
            channel="http",
            requester=policy.requester(None, "/api/export/7?x=1"),
        ).action
        == "allow"
    )
    assert (
        decide(
            policy,
            findings,
            destination="shop",
            channel="http",
            requester=policy.requester(None, "/chat/send"),
        ).action
        == "block"
    )
