"""Exact data match: the index holds no raw value, rows are found by any primary field with a
corroborating one nearby, counted by row; the policy's edm: section is checked with its lines;
bad export rows are reported by line number; a worker maps the index the proxy opened."""

from __future__ import annotations

import csv
import pickle
import random
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlp_addon.decide.budget import charges
from dlp_addon.decide.policy import Policy, load_policy
from dlp_addon.detect.scanner import Scanner
from dlp_addon.edm.build import build_index
from dlp_addon.edm.fields import Keys
from dlp_addon.edm.index import EdmError, EdmIndex, Field
from dlp_addon.edm.source import Source
from dlp_addon.errors import PolicyError
from dlp_addon.pipeline import inspect_http, inspect_ws
from dlp_addon.policy_cli import _as_request as as_request
from dlp_addon.policy_cli import main
from tests import synth
from tests.synth import POLICY_FORMAT, TABLE_HEADER, customer_table

KEY = b"unit-test-edm-key-0123456789abcdef"
ROWS = 3000
COLUMNS = "policy=保单号,name=姓名,id=身份证号,mobile=手机,address=地址,plate=车牌"
KINDS = ("policy", "name", "id", "mobile", "address", "plate")

POLICY = """\
version: 1
destinations:
  - name: shop
    hosts: [shop.example]
edm:
  index: customers.edm
  proximity: 60
rules:
  - name: customers
    action: block
    when:
      - {edm_records: 5}
"""


def _write_csv(path: Path, rows: list[tuple[str, ...]], extra: list[list[str]] = ()) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TABLE_HEADER)
        w.writerows(rows)
        w.writerows(extra)
    return path


@pytest.fixture(scope="module")
def table() -> list[tuple[str, ...]]:
    return list(customer_table(ROWS, seed=11))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, table: list[tuple[str, ...]]) -> Path:
    """A directory with customers.csv, the key, customers.edm and policy.yaml."""
    d = tmp_path_factory.mktemp("edm")
    _write_csv(d / "customers.csv", table)
    (d / "key").write_bytes(KEY)
    assert _index(d / "customers.csv", d / "customers.edm", d / "key") == 0
    (d / "policy.yaml").write_text(POLICY, encoding="utf-8")
    return d


def _index(export: Path, out: Path, key: Path, *extra: str) -> int:
    args = ["edm", "index", str(export), "--columns", COLUMNS, "--policy-format", POLICY_FORMAT]
    return main([*args, "--key-file", str(key), "--out", str(out), "--jobs", "1", *extra])


@pytest.fixture(scope="module")
def policy(built: Path) -> Policy:
    return load_policy(built / "policy.yaml", hmac_key=KEY)


def _ws(policy: Policy, text: str) -> tuple[str, int]:
    ins = inspect_ws(policy, text.encode(), True, "shop")
    assert ins.error_stage is None
    return ins.verdict.action, ins.verdict.edm_records


def test_ten_rows_as_name_and_policy_number_are_blocked(
    policy: Policy, table: list[tuple[str, ...]]
) -> None:
    text = "\n".join(f"{r[1]} {r[0]}" for r in table[100:110])
    assert _ws(policy, text) == ("block", 10)


def test_same_names_with_random_policy_numbers_are_not(
    policy: Policy, table: list[tuple[str, ...]]
) -> None:
    rng = random.Random(5)
    text = "\n".join(f"{r[1]} {synth.policy_number(rng)}" for r in table[100:110])
    assert _ws(policy, text) == ("allow", 0)


def test_policy_numbers_without_their_names_are_not_records(
    policy: Policy, table: list[tuple[str, ...]]
) -> None:
    others = table[200:210]
    text = "\n".join(f"{o[1]} {r[0]}" for r, o in zip(table[100:110], others, strict=True))
    assert _ws(policy, text) == ("allow", 0)


def test_one_customer_own_record_passes(policy: Policy, table: list[tuple[str, ...]]) -> None:
    r = table[42]
    assert _ws(policy, f"您好，我是{r[1]}，保单号 {r[0]}，想查一下理赔进度") == ("allow", 1)


def test_any_primary_with_any_corroborating_field(
    policy: Policy, table: list[tuple[str, ...]]
) -> None:
    rows = table[300:306]
    lines = [
        f"{rows[0][2]} {rows[0][4]}",  # ID + address
        # a mobile written 3-4-4, and a plate
        f"{rows[1][3][:3]} {rows[1][3][3:7]} {rows[1][3][7:]}，{rows[1][5]}",
        f"{rows[2][1]}：{rows[2][3]}",  # mobile + name
        f"{rows[3][0]} / {rows[3][2]}",  # two primaries of the same row
        "".join(chr(ord(c) + 0xFEE0) for c in rows[4][0]) + f" {rows[4][1]}",  # full-width
        f"{rows[5][0].lower()}，{rows[5][1]}",  # lower case
    ]
    assert _ws(policy, "\n".join(lines))[1] == 6


def test_counted_by_row_not_by_mention(policy: Policy, table: list[tuple[str, ...]]) -> None:
    r = table[7]
    text = f"{r[1]} {r[0]}\n{r[1]} {r[2]}\n{r[1]} {r[0]}"  # one customer, three times
    assert _ws(policy, text)[1] == 1


def test_corroboration_only_within_the_proximity(
    policy: Policy, table: list[tuple[str, ...]]
) -> None:
    r = table[9]
    assert _ws(policy, f"{r[1]}{'。' * 70}{r[0]}")[1] == 0
    assert _ws(policy, f"{r[1]}{'。' * 30}{r[0]}")[1] == 1


def test_upload_of_rows_is_blocked(
    policy: Policy, table: list[tuple[str, ...]], tmp_path: Path
) -> None:
    upload = tmp_path / "rows.csv"
    upload.write_text("\n".join(f"{r[0]},{r[1]}" for r in table[500:520]), encoding="utf-8")
    ins = inspect_http(policy, as_request(upload), "shop")  # as dlp-policy test uploads it
    assert ins.verdict.action == "block" and ins.verdict.edm_records == 20


def _raw_values(rows: list[tuple[str, ...]]) -> Iterator[bytes]:
    for row in rows:
        for value in row:
            for form in (value, value.upper(), value.lower()):
                yield form.encode("utf-8")
                yield form.encode("gb18030")
                yield form.encode("utf-16-le")


def test_index_holds_no_raw_value(built: Path, table: list[tuple[str, ...]]) -> None:
    data = (built / "customers.edm").read_bytes()
    leaked = [v for v in _raw_values(table) if len(v) >= 4 and v in data]
    assert not leaked, f"{len(leaked)} raw values in the index"


def test_index_size_and_info(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = EdmIndex(built / "customers.edm")
    assert index.header.rows == ROWS and index.header.entries == 3 * ROWS
    key = str(built / "key")
    assert main(["edm", "info", str(built / "customers.edm"), "--key-file", key]) == 0
    out = capsys.readouterr().out
    assert f"rows: {ROWS:,}" in out and "this key" in out


def test_malformed_rows_are_reported_by_line_and_skipped(
    tmp_path: Path, table: list[tuple[str, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [list(r) for r in table[:300]]
    bad_id = synth.bad_check_id(random.Random(1))
    rows[9][2] = bad_id  # line 11 (the header is line 1)
    rows[19] = rows[19][:3]  # line 21: three columns
    rows[29][0], rows[29][2], rows[29][3] = "", "", ""  # line 31: no primary value
    rows[39][3] = "12345"  # line 41: not a mobile
    _write_csv(tmp_path / "c.csv", [tuple(r) for r in rows])
    (tmp_path / "key").write_bytes(KEY)
    out = tmp_path / "c.edm"
    assert _index(tmp_path / "c.csv", out, tmp_path / "key", "--max-rejected", "5") == 0
    err = capsys.readouterr().err
    assert "rejected line 11: column '身份证号' is not a valid id" in err
    assert "rejected line 21: 3 columns, 6 expected" in err
    assert "rejected line 31: no primary value" in err
    assert "rejected line 41: column '手机' is not a valid mobile" in err
    assert bad_id not in err and "12345" not in err
    assert EdmIndex(tmp_path / "c.edm").header.rejected == 4
    assert main(["edm", "info", str(out)]) == 0
    assert "rows: 296 (4 rejected when built)" in capsys.readouterr().out


def test_too_many_rejected_rows_keep_the_old_index(
    built: Path, tmp_path: Path, table: list[tuple[str, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "c.edm"
    _write_csv(tmp_path / "c.csv", table[:100])
    assert _index(tmp_path / "c.csv", good, built / "key") == 0
    before = good.read_bytes()
    wrong = [(r[1], r[0], *r[2:]) for r in table[:100]]  # policy and name columns swapped
    _write_csv(tmp_path / "c.csv", wrong)
    assert _index(tmp_path / "c.csv", good, built / "key") == 1
    assert "the index was not replaced" in capsys.readouterr().err
    assert good.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_workers_build_the_same_table(built: Path, tmp_path: Path) -> None:
    source = Source(built / "customers.csv")
    columns = [(i, Field(h, k)) for i, (h, k) in enumerate(zip(source.header, KINDS, strict=True))]
    build_index(source.rows(), columns, ["policy", "id", "mobile"], Keys(KEY),
                tmp_path / "two.edm", policy_format=POLICY_FORMAT, jobs=2)  # fmt: skip
    one, two = (built / "customers.edm").read_bytes(), (tmp_path / "two.edm").read_bytes()
    assert one[4096:] == two[4096:]  # everything but the header's build id and time


def test_workbook_export(tmp_path: Path, table: list[tuple[str, ...]]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(TABLE_HEADER)
    for r in table[:50]:
        sheet.append([r[0], r[1], r[2], int(r[3]), r[4], r[5]])  # a mobile stored as a number
    book.save(tmp_path / "c.xlsx")
    (tmp_path / "key").write_bytes(KEY)
    assert _index(tmp_path / "c.xlsx", tmp_path / "c.edm", tmp_path / "key") == 0
    assert EdmIndex(tmp_path / "c.edm").header.rows == 50


def _problems(directory: Path, text: str, key: bytes = KEY) -> list[str]:
    path = directory / "p.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(PolicyError) as e:
        load_policy(path, hmac_key=key)
    return e.value.problems


def test_policy_problems_name_their_lines(built: Path) -> None:
    fields = "  primary: [plate]\n  corroborating: [plate, email]\n"
    bad = POLICY.replace("  proximity: 60\n", fields)
    problems = _problems(built, bad)
    assert any(":7:" in p and "must be one of policy, id, mobile" in p for p in problems)
    assert any(":8:" in p and "edm.corroborating.1" in p for p in problems), problems
    fields = "  corroborating: [name, plate]\n  min_corroborating: 3\n"
    problems = _problems(built, POLICY.replace("  proximity: 60\n", fields))
    assert (
        len(problems) == 1 and ":8:" in problems[0] and "more than the corroborating" in problems[0]
    )
    other_key = _problems(built, POLICY, key=b"another-key-0123456789abcdefghij")
    assert len(other_key) == 1 and ":6:" in other_key[0] and "another HMAC key" in other_key[0]
    missing = _problems(built, POLICY.replace("customers.edm", "nowhere.edm"))
    assert len(missing) == 1 and ":6:" in missing[0] and "cannot open" in missing[0]
    no_section = POLICY.replace("edm:\n  index: customers.edm\n  proximity: 60\n", "")
    problems = _problems(built, no_section)
    assert any(":9:" in p and "edm_records needs an edm: section" in p for p in problems)


def test_a_worker_maps_the_index_the_policy_was_loaded_with(
    built: Path, tmp_path: Path, table: list[tuple[str, ...]]
) -> None:
    d = tmp_path / "w"
    d.mkdir()
    for name in ("customers.csv", "key", "policy.yaml"):
        (d / name).write_bytes((built / name).read_bytes())
    assert _index(d / "customers.csv", d / "customers.edm", d / "key") == 0
    policy = load_policy(d / "policy.yaml", hmac_key=KEY)
    assert d / "customers.edm" in policy.files  # a new index reloads the policy
    text = "\n".join(f"{r[1]} {r[0]}" for r in table[:10])
    _write_csv(d / "customers.csv", table[1000:1100])  # a re-index: other customers
    assert _index(d / "customers.csv", d / "customers.edm", d / "key") == 0
    copy = _as_in_a_worker(policy)
    assert _ws(copy, text) == ("block", 10)  # still the index it was loaded with
    assert _ws(load_policy(d / "policy.yaml", hmac_key=KEY), text) == ("allow", 0)


def test_a_worker_without_the_index_fails_closed(
    built: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlp_addon.edm.index as index_module

    state = pickle.dumps(policy)
    monkeypatch.setattr(index_module, "EdmIndex", _unopenable)
    copy = pickle.loads(state)
    ins = inspect_ws(copy, "张三 PA00000000000007".encode(), True, "shop")
    assert ins.error_stage == "detect" and ins.verdict.blocks


def _as_in_a_worker(policy: Policy) -> Policy:
    """The policy as an inspection worker receives it (dlp_addon/inspect_pool.py): pickled as
    it is; the worker builds its engine from it."""
    return pickle.loads(pickle.dumps(policy))


def _unopenable(*args: object, **kwargs: object) -> EdmIndex:
    raise EdmError("gone")


def test_budgets_count_records_the_same_after_a_reindex(
    built: Path, policy: Policy, table: list[tuple[str, ...]], tmp_path: Path
) -> None:
    from dlp_addon.decide.budget import CumulativeBudget

    text = "\n".join(f"{r[1]} {r[0]}" for r in table[:3])
    ins = inspect_ws(policy, text.encode(), True, "shop")
    budget = CumulativeBudget("customers", "block", 100, 86400, counts="edm_records")
    todo = charges([budget], policy.detectors, ins.findings, user="u", groups=frozenset(),
                   destination="shop", enforcing=True, edm_keys=ins.edm_keys)  # fmt: skip
    assert len(todo) == 1 and len(todo[0].keys) == 3
    assert all(k.startswith("edm:") and len(k) == 28 for k in todo[0].keys)
    d = tmp_path / "again"
    d.mkdir()
    (d / "policy.yaml").write_bytes((built / "policy.yaml").read_bytes())
    _write_csv(d / "customers.csv", table[::-1])  # the next export, in another order
    assert _index(d / "customers.csv", d / "customers.edm", built / "key") == 0
    again = inspect_ws(load_policy(d / "policy.yaml", hmac_key=KEY), text.encode(), True, "shop")
    assert set(again.edm_keys) == set(ins.edm_keys)


def test_budget_of_records_is_checked(built: Path) -> None:
    text = POLICY + textwrap.dedent("""\
        budgets:
          - name: customer-rows
            window: 24h
            limit: 100
            counts: edm_records
          - name: wrong
            window: 24h
            threshold: serious
            legal_category: other
            counts: edm_records
        """)
    problems = _problems(built, text)
    assert len(problems) == 1 and "edm_records counts rows" in problems[0]


def test_the_shipped_example_works(built: Path, table: list[tuple[str, ...]]) -> None:
    """The commented edm: example in the shipped policy, uncommented, with our index."""
    import yaml

    from dlp_addon.decide.policy import DEFAULT_POLICY

    lines = DEFAULT_POLICY.read_text(encoding="utf-8").splitlines()
    block = []
    for line in lines[lines.index("# edm:") :]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    gap = block.index("")
    edm = yaml.safe_load("\n".join(block[:gap]))["edm"]
    rule = yaml.safe_load("\n".join(line[2:] for line in block[gap + 1 :]))[0]
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["detectors"] = str(DEFAULT_POLICY.parent / "detectors.yaml")
    policy["edm"] = {**edm, "index": str(built / "customers.edm")}
    policy["rules"].insert(0, rule)
    path = built / "shipped-with-edm.yaml"
    path.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    loaded = load_policy(path, hmac_key=KEY)
    ins = inspect_ws(loaded, names_and_policies(table[:5]).encode(), True, "taobao-tmall")
    assert ins.verdict.rule == rule["name"] and ins.verdict.edm_records == 5


def names_and_policies(rows: list[tuple[str, ...]]) -> str:
    return "\n".join(f"{r[1]} {r[0]}" for r in rows)


@pytest.mark.parametrize("key", [b"k" * 16, b"x" * 64, b"y" * 100])
def test_ids_and_mobiles_are_hashed_as_the_scanner_hashes_them(key: bytes) -> None:
    """The index looks up the scanner's own finding keys: the two must agree for every key
    length (HMAC hashes a key longer than a block first)."""
    from dlp_addon.detect.definitions import load_detectors
    from dlp_addon.shipped import PATTERNS_DIR

    scanner = Scanner(load_detectors(PATTERNS_DIR / "detectors.yaml"), key)
    rid, mob = synth.resident_id(random.Random(1)), synth.mobile(random.Random(2))
    findings = scanner.scan(f"{rid} {mob}", "t")
    by_detector = {f.detector: int(f.key[:16], 16) for f in findings}
    keys = Keys(key)
    assert by_detector["cn_resident_id"] == keys.scanner_key("id", rid)
    assert by_detector["cn_mobile"] == keys.scanner_key("mobile", mob)


def test_records_with_an_attachment_condition(
    built: Path, table: list[tuple[str, ...]], tmp_path: Path
) -> None:
    """``{edm_records: N, attachment: any}``: only when a file is carried."""
    text = POLICY.replace("{edm_records: 5}", "{edm_records: 5, attachment: any}")
    (built / "attached.yaml").write_text(text, encoding="utf-8")
    policy = load_policy(built / "attached.yaml", hmac_key=KEY)
    rows = names_and_policies(table[600:610])
    assert _ws(policy, rows) == ("allow", 10)  # a chat message carries no file
    upload = tmp_path / "rows.csv"
    upload.write_text(rows, encoding="utf-8")
    assert inspect_http(policy, as_request(upload), "shop").verdict.action == "block"
