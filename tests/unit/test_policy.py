"""Policy loading: the shipped policy is valid; every mistake is reported with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dlp_addon.decide.policy import DEFAULT_POLICY, load_policy
from dlp_addon.detect.engine import engine_for
from dlp_addon.errors import PolicyError

GOOD = """\
version: 1
destinations:
  - name: shop
    hosts: [shop.example, "*.shop.example"]
rules:
  - name: ids
    action: block
    when:
      - {detector: cn_resident_id, min_distinct: 5}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PolicyError) as e:
        load_policy(_write(tmp_path, text))
    return e.value.problems


def test_shipped_policy_is_valid_and_lists_the_big_platforms() -> None:
    policy = load_policy(DEFAULT_POLICY)
    assert policy.mode == "enforce" and policy.refuse_unlisted
    for host in (
        "www.taobao.com",
        "item.jd.com",
        "mobile.yangkeduo.com",
        "detail.1688.com",
        "detail.tmall.com",
    ):
        assert policy.destination_for(host) is not None, host
    assert policy.destination_for("example.com") is None
    assert policy.destination_for("taobao.com.evil.example") is None
    assert policy.destination_for("eviltaobao.com") is None


def test_defaults_and_version(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, GOOD))
    assert policy.on_error == "block" and policy.on_unscannable == "block"
    assert policy.timeout_seconds == 5
    assert len(policy.version) == 12
    changed = load_policy(_write(tmp_path, GOOD.replace("min_distinct: 5", "min_distinct: 6")))
    assert changed.version != policy.version


def test_host_globs(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, GOOD))
    assert policy.destination_for("shop.example") == "shop"
    assert policy.destination_for("a.b.shop.example") == "shop"
    assert policy.destination_for("SHOP.EXAMPLE.") == "shop"
    assert policy.destination_for("notshop.example") is None


def test_unknown_key_is_reported_with_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("    action: block\n", "    action: block\n    treshold: 3\n")
    problems = _problems(tmp_path, text)
    assert problems == [f"{tmp_path / 'policy.yaml'}:8: rules.0: unknown key 'treshold'"]


def test_unknown_detector_bad_glob_and_bad_action(tmp_path: Path) -> None:
    text = (
        GOOD.replace("cn_resident_id", "cn_resident_ids")
        .replace("shop.example,", "shop..example,")
        .replace("action: block", "action: drop")
    )
    problems = _problems(tmp_path, text)
    assert any(":7: rules.0.action: must be one of block, log" in p for p in problems)
    # Schema errors are reported first; fix them and the semantic ones show.
    problems = _problems(tmp_path, text.replace("action: drop", "action: block"))
    assert any(":4: " in p and "'shop..example' is not a valid host glob" in p for p in problems)
    assert any(":9: " in p and "unknown detector 'cn_resident_ids'" in p for p in problems)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, GOOD + "  - name: [unclosed\n")
    assert len(problems) == 1 and ":11: YAML syntax error" in problems[0]


def test_wrong_type_and_missing_key(tmp_path: Path) -> None:
    problems = _problems(tmp_path, GOOD.replace("name: shop", "name: 1688"))
    assert any(":3: destinations.0.name: must be of type string" in p for p in problems)
    problems = _problems(tmp_path, "version: 1\ndestinations: []\n")
    assert any("'rules' is required" in p for p in problems)


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "!!python/object/apply:os.system ['true']\n")
    assert "YAML" in problems[0]


def test_duplicate_names_and_hosts(tmp_path: Path) -> None:
    text = (
        GOOD
        + "  - name: ids\n    action: log\n    when: [{detector: cn_mobile, min_distinct: 1}]\n"
    )
    assert any("duplicate rule name 'ids'" in p for p in _problems(tmp_path, text))
    text = GOOD.replace("rules:", "  - name: other\n    hosts: [shop.example]\nrules:")
    assert any("already listed under 'shop'" in p for p in _problems(tmp_path, text))


def test_missing_file() -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(Path("/nonexistent/policy.yaml"))
    assert "cannot read file" in e.value.problems[0]


CUSTOM = (
    GOOD
    + """\
custom_detectors:
  - id: employee_no
    name: {zh: 工号, en: employee number}
    regex: 'EMP[0-9]{6}'
    validator: none
    mask: [3, 2]
    samples: {match: [EMP123456], no_match: [EMP12]}
"""
)


def test_custom_detector_is_usable_in_rules(tmp_path: Path) -> None:
    text = CUSTOM.replace(
        "detector: cn_resident_id, min_distinct: 5", "detector: employee_no, min_distinct: 2"
    )
    policy = load_policy(_write(tmp_path, text))
    found = engine_for(policy).scanner.scan("EMP123456 EMP654321", "t")
    assert sorted(f.masked for f in found) == ["EMP****21", "EMP****56"]


def test_catastrophic_custom_regex_is_refused(tmp_path: Path) -> None:
    problems = _problems(tmp_path, CUSTOM.replace("'EMP[0-9]{6}'", "'(a+)+b'"))
    assert problems == [
        f"{tmp_path / 'policy.yaml'}:13: regex has a nested quantifier such as (a+)+, "
        "which can backtrack catastrophically"
    ]


def test_custom_detector_mistakes_are_reported(tmp_path: Path) -> None:
    text = CUSTOM.replace("validator: none", "validator: crc32").replace(
        "    samples:", "    words_file: missing.txt\n    samples:"
    )
    problems = _problems(tmp_path, text)
    assert any("unknown validator 'crc32'" in p for p in problems)


def test_legal_thresholds_resolve_to_record_counts(tmp_path: Path) -> None:
    text = GOOD.replace(
        "      - {detector: cn_resident_id, min_distinct: 5}",
        "      - {legal_category: sensitive_50, threshold: insider_serious}",
    )
    policy = load_policy(_write(tmp_path, text))
    assert policy.rules[0].when[0].min_records == 25
    bad = GOOD.replace(
        "      - {detector: cn_resident_id, min_distinct: 5}",
        "      - {threshold: serious}",
    )
    assert any("threshold needs a legal_category" in p for p in _problems(tmp_path, bad))
