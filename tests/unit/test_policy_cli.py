"""``dlp-policy check`` names every class of mistake with its line; ``dlp-policy test`` explains
decisions with masked values; exceptions lapse by themselves."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from dlp_addon.decide import decide, load_policy
from dlp_addon.decide.policy import Requester
from dlp_addon.detect.definitions import PATTERNS_DIR
from dlp_addon.detect.engine import engine_for
from dlp_addon.errors import PolicyError
from dlp_addon.policy_cli import main
from dlp_addon.state.sqlite import SqliteStore
from tests import files as F
from tests import synth
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
    findings = engine_for(policy).scanner.scan(
        records_chat_text(customer_records(6, seed=8)), "body"
    )
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
    findings = engine_for(policy).scanner.scan(
        records_chat_text(customer_records(6, seed=9)), "body"
    )
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


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[Path, int, str]:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["check", str(path)])
    return path, code, capsys.readouterr().out


def test_check_reports_every_problem_in_one_run_in_file_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    employee_rule = "min_distinct: 5}\n      - {detector: employee_no, min_distinct: 0}"
    text = (
        BASE.replace("validator: none", "validator: crc32")
        .replace("    action: block", "    action: block\n    treshold: 3")
        .replace("min_distinct: 5}", employee_rule)
        + "  - name: badges\n    action: log\n    when: [{detector: badge_no, min_distinct: 1}]\n"
        + "  - name: typo\n    action: log\n    when: [{detector: cn_id, min_distinct: 1}]\n"
    ).replace(
        "rules:\n",
        "  - id: badge_no\n    name: {zh: 工牌, en: badge}\n    regex: 'B[0-9'\n"
        "    samples: {match: [B1234], no_match: [B1]}\nrules:\n",
    )
    path, code, out = _check(tmp_path, text, capsys)
    assert code == 1
    # Schema errors (an unknown key, a number out of range) no longer hide the rest; the rules
    # naming a detector that was refused are not reported again as naming an unknown one.
    expected = [
        "9: unknown validator 'crc32' (known: ",
        "14: invalid regex: unterminated character set",
        "19: rules.0: unknown key 'treshold'",
        "22: rules.0.when.1.min_distinct: 0 is less than the minimum of 1",
        "28: unknown detector 'cn_id' (known: ",
    ]
    problems = out.splitlines()
    assert len(problems) == len(expected), out
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(f"{path}:{start}"), out


def test_check_runs_a_custom_detectors_own_samples_and_names_each_failing_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE.replace(
        "    samples: {match: [EMP123456], no_match: [EMP12]}\n",
        "    samples:\n"
        "      match:\n"
        "        - 工号 EMP123456\n"
        "        - 工号 EMP12345\n"  # line 14: five digits, the regex wants six
        "      no_match:\n"
        "        - EMP12\n"
        "        - EMP654321\n",  # line 17: it does find this one
    )
    path, code, out = _check(tmp_path, text, capsys)
    assert code == 1, out
    assert out.splitlines() == [
        f"{path}:14: custom_detectors.0.samples.match.1: 'employee_no' does not find this "
        "sample it must match",
        f"{path}:17: custom_detectors.0.samples.no_match.1: 'employee_no' finds EMP****21 in "
        "this sample it must not match",
    ]
    assert "654321" not in out  # the sample itself is not echoed, only its masked finding
    # The proxy (start, reload, admin API: all load_policy) refuses it the same way.
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    assert len(e.value.problems) == 2


def test_check_runs_the_detector_files_samples_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(PATTERNS_DIR / "keywords", tmp_path / "keywords")
    shipped = (PATTERNS_DIR / "detectors.yaml").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(shipped) if line.strip() == "- id: cn_mobile")
    at = next(i for i in range(start, len(shipped)) if shipped[i].strip() == "no_match:")
    number = synth.mobile(random.Random(3))
    shipped.insert(at + 1, f"        - '{number}'")  # a valid mobile its no_match says it skips
    (tmp_path / "detectors.yaml").write_text("\n".join(shipped) + "\n", encoding="utf-8")
    _, code, out = _check(tmp_path, BASE + "detectors: detectors.yaml\n", capsys)
    assert code == 1, out
    problems = out.splitlines()
    assert len(problems) == 1, out
    assert problems[0].startswith(f"{tmp_path / 'detectors.yaml'}:{at + 2}: detectors.")
    assert f".samples.no_match.0: 'cn_mobile' finds {synth.mask_mobile(number)} in" in out
    assert number not in out


def test_a_detector_files_schema_error_does_not_hide_its_other_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(PATTERNS_DIR / "keywords", tmp_path / "keywords")
    shipped = (PATTERNS_DIR / "detectors.yaml").read_text(encoding="utf-8").splitlines()
    first = shipped.index("    validator: gb11643")
    second = shipped.index("    validator: cn_mobile")
    shipped[first] = "    validator: gb11643\n    confidence: certain"  # schema: not an enum value
    shipped[second] = "    validator: cn_mobil"  # meaning: no such validator
    (tmp_path / "detectors.yaml").write_text("\n".join(shipped) + "\n", encoding="utf-8")
    path, code, out = _check(tmp_path, BASE + "detectors: detectors.yaml\n", capsys)
    assert code == 1, out
    detectors = tmp_path / "detectors.yaml"
    line = len(BASE.splitlines()) + 1
    assert out.splitlines()[0] == f"{path}:{line}: detector file 'detectors.yaml' is invalid"
    assert f"{detectors}:{first + 2}: detectors.0.confidence: must be one of low, medium" in out
    assert f"{detectors}:{second + 2}: unknown validator 'cn_mobil'" in out


def test_check_counts_the_samples_it_ran(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "dlp_addon/patterns/policy.yaml"]) == 0
    out = capsys.readouterr().out
    policy = load_policy()
    n = sum(len(d.samples) for d in policy.detectors.detectors)
    assert f"{len(policy.detectors.detectors)} detectors, their {n} samples as written)" in out


MISSING, NOT_SQLITE, OTHER_SQLITE = "missing", "text file", "another SQLite database"


@pytest.mark.parametrize("case", [MISSING, NOT_SQLITE, OTHER_SQLITE])
def test_budgets_refuses_a_db_that_is_not_the_proxys(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "budgets.sqlite"
    if case == NOT_SQLITE:
        db.write_text("proxy log, not a database\n" * 50, encoding="utf-8")
    elif case == OTHER_SQLITE:
        with contextlib.closing(sqlite3.connect(db)) as other:
            other.execute("CREATE TABLE t (x)")
    assert main(["budgets", "dlp_addon/patterns/policy.yaml", "--db", str(db)]) == 1
    out, err = capsys.readouterr()
    assert "no counts" not in out
    reason = "no budget database at" if case == MISSING else "is not a budget database"
    assert err.startswith("dlp-policy budgets: ") and reason in err and str(db) in err, err
    assert db.exists() == (case != MISSING)  # nothing created in its place


def test_budgets_reads_the_database_the_proxy_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "budgets.sqlite"
    SqliteStore(str(db)).close()  # what the proxy does on its first start with budgets
    assert main(["budgets", "dlp_addon/patterns/policy.yaml", "--db", str(db)]) == 0
    assert capsys.readouterr().out == "no counts in any budget window\n"
