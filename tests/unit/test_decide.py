"""Decisions: distinct counting, block over log, monitor mode, fail closed on unreadable."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace

import pytest

from dlp_addon.decide import decide, error_verdict, load_policy
from dlp_addon.decide.policy import Policy
from dlp_addon.detect.engine import engine_for
from dlp_addon.detect.validators import gb11643_check_char

POLICY = load_policy()


def ids(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 50))
        first17 = f"310104{born:%Y%m%d}{rng.randrange(1000):03d}"
        out.append(first17 + gb11643_check_char(first17))
    return out


def verdict_for(text: str, policy: Policy = POLICY, channel: str = "http"):  # type: ignore[no-untyped-def]
    findings = engine_for(policy).scanner.scan(text, "body")
    return decide(policy, findings, destination="jd", channel=channel)


def test_four_ids_are_logged_five_are_blocked() -> None:
    v = verdict_for(" ".join(ids(4)))
    assert (v.action, v.rule) == ("log", "resident-id-seen")
    v = verdict_for(" ".join(ids(5)))
    assert (v.action, v.rule, v.enforced, v.blocks) == ("block", "bulk-resident-id", True, True)
    assert v.counts == {"cn_resident_id": 5}


def test_the_same_id_repeated_counts_once() -> None:
    one = ids(1)[0]
    v = verdict_for(f"{one} {one} {one[:6]} {one[6:14]} {one[14:]} " * 10)
    assert v.counts == {"cn_resident_id": 1} and v.action == "log"


def test_three_people_with_id_and_mobile_are_records() -> None:
    text = "\n".join(f"{i} 1380013800{k}" for k, i in enumerate(ids(3)))
    v = verdict_for(text)
    assert v.rule == "customer-records" and v.blocks


def test_masked_samples_only() -> None:
    people = ids(6)
    v = verdict_for(" ".join(people))
    shown = repr(v)
    assert not any(p in shown for p in people)
    assert all(s.count("*") == 8 for s in v.samples["cn_resident_id"])


def test_monitor_mode_decides_but_does_not_enforce() -> None:
    monitor = replace(POLICY, mode="monitor")
    v = verdict_for(" ".join(ids(5)), monitor)
    assert v.action == "block" and not v.enforced and not v.blocks


def test_ordinary_chat_is_allowed() -> None:
    v = verdict_for("亲，订单号 2024112812345678901 什么时候发货？快递单号 SF1234567890123，谢谢")
    assert v.action == "allow" and v.counts == {}


@pytest.mark.parametrize("on_unscannable", ["block", "log"])
def test_unscannable_takes_the_policy_action(on_unscannable: str) -> None:
    policy = replace(POLICY, on_unscannable=on_unscannable)
    v = decide(policy, [], destination="jd", channel="upload", unscannable=["zip"])
    assert (v.action, v.rule, v.reason) == (
        on_unscannable,
        "unscannable-content",
        "unscannable:zip",
    )


def test_errors_fail_closed_by_default() -> None:
    v = error_verdict(POLICY, "detect")
    assert v.blocks and v.reason == "error:detect"


def test_rules_scoped_to_destinations_and_channels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\n"
        "destinations: [{name: a, hosts: [a.example]}, {name: b, hosts: [b.example]}]\n"
        "rules:\n"
        "  - name: ws-only\n    action: block\n    channels: [websocket]\n    destinations: [a]\n"
        "    when: [{detector: cn_resident_id, min_distinct: 1}]\n",
        encoding="utf-8",
    )
    policy = load_policy(p)
    f = engine_for(policy).scanner.scan(ids(1)[0], "ws")
    assert decide(policy, f, destination="a", channel="websocket").blocks
    assert decide(policy, f, destination="a", channel="http").action == "allow"
    assert decide(policy, f, destination="b", channel="websocket").action == "allow"
