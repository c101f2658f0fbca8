"""A long part (a big sheet's text) is scanned in chunks of whole lines with the deadline checked
before each; context and keywords across a chunk's edge still count; what was found before the
deadline may decide the block by itself."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dlp_addon import pipeline
from dlp_addon.decide import load_policy
from dlp_addon.decide.policy import Policy
from dlp_addon.detect import offsets, validators
from dlp_addon.detect import scanner as scanner_module
from dlp_addon.detect.engine import Engine, engine_for
from dlp_addon.detect.scanner import Scanner, ScanTimeout
from dlp_addon.extract import HttpInput
from dlp_addon.pipeline import inspect_http
from tests.synth import customer_records, records_chat_text

RECORDS = customer_records(3000, seed=4242)
TABLE = records_chat_text(RECORDS)


def test_chunked_scan_finds_what_one_pass_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy()
    whole = engine_for(policy).scanner.scan_all([("body", TABLE)])
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 5_000)
    assert len(list(offsets.chunks(TABLE))) > 20
    chunked = engine_for(policy).scanner.scan_all([("body", TABLE)])
    assert {(f.detector, f.key) for f in chunked} == {(f.detector, f.key) for f in whole}
    assert {f.record for f in chunked} == {f.record for f in whole}  # same lines, same records
    assert len({f.record for f in chunked if f.detector == "cn_resident_id"}) == len(RECORDS)


def _cards(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        body = "62" + "".join(rng.choice("0123456789") for _ in range(16))
        out += [body + d for d in "0123456789" if validators.luhn_card(body + d)][:1]
    return out


@pytest.mark.parametrize("where", ["word before the edge", "word after the edge"])
def test_context_across_a_chunk_edge_still_counts(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A context word in one chunk raises the cards in the next one, as in one pass (a long
    line ending in 银行卡号 followed by card numbers turned a bulk-records block into an allow
    before chunks had margins)."""
    scanner = engine_for(load_policy()).scanner
    filler = "这款行李箱还有货吗 " * 700  # one long line, longer than a chunk
    cards = "\n".join(_cards(10, seed=7))
    if where == "word before the edge":
        text = filler + " 银行卡号:\n" + cards + "\n"
    else:
        text = filler[:190] + "\n" + cards + "\n银行卡号 以上\n"  # card 1 ends the first chunk
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 200)
    assert len(list(offsets.chunks(text))) > 1
    whole = scanner.scan(text, "body")
    chunked = scanner.scan_all([("body", text)])
    assert sorted(chunked) == sorted(whole)
    assert sum(f.detector == "bank_card" and f.confidence == "medium" for f in chunked) == 10


def test_a_fully_scanned_input_is_not_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline is checked before each chunk: one that passes while the last chunk is
    scanned leaves a complete result, not a timeout; one that passed before a chunk stops
    there. (A clock that moves one tick per chunk scanned.)"""
    scanner = engine_for(load_policy()).scanner
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 5_000)
    now = [0.0]
    real_scan = scanner.scan

    def one_tick_per_chunk(*args: Any, **kwargs: Any) -> Any:
        now[0] += 1
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(scanner, "scan", one_tick_per_chunk)
    monkeypatch.setattr(scanner_module.time, "monotonic", lambda: now[0])
    chunks = len(list(offsets.chunks(TABLE)))
    found = scanner.scan_all([("body", TABLE)], deadline=chunks - 0.5)  # passes in the last
    assert now[0] == chunks
    assert len({f.key for f in found if f.detector == "cn_resident_id"}) == len(RECORDS)
    now[0] = 0.0
    with pytest.raises(ScanTimeout) as stopped:
        scanner.scan_all([("body", TABLE)], deadline=2.5)  # passed before the fourth chunk
    assert now[0] == 3
    assert 0 < len(stopped.value.partial) < len(found)


class _StopsHalfway(Scanner):
    """Scans the first half of every part for real, then reports the deadline passed."""

    def scan_all(self, parts: Any, deadline: float | None = None) -> Any:
        found = []
        for location, text in parts:
            lines = text.split("\n")
            found += self.scan("\n".join(lines[: len(lines) // 2]), location)
        raise ScanTimeout(found)


def _inspect(policy: Policy, text: str) -> Any:
    stopping = Engine(_StopsHalfway(policy.detectors, b"k" * 32))
    req = HttpInput("POST", "/chat", {"content-type": "text/plain"}, text.encode())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "engine_for", lambda _: stopping)
        return inspect_http(policy, req, "taobao-tmall")


def test_a_deadline_after_enough_findings_blocks_by_the_rule() -> None:
    inspection = _inspect(load_policy(), TABLE)
    verdict = inspection.verdict
    assert verdict.blocks and verdict.reason == "findings:partial"
    assert verdict.rule == "bulk-resident-id"
    assert 0 < verdict.counts["cn_resident_id"] < len(RECORDS)  # "at least", of what was read
    assert inspection.error_stage == "timeout"  # still counted as an inspection past its deadline


def test_a_deadline_before_anything_decisive_is_still_an_error_block() -> None:
    few = records_chat_text(RECORDS[:4])  # half of it holds 2 IDs: no rule blocks on that
    verdict = _inspect(load_policy(), few).verdict
    assert verdict.blocks and verdict.reason == "error:timeout"


def test_chunks_report_offsets_into_the_whole_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offsets of findings in later chunks, folded text (full-width, zero-width) included,
    point into the part as written, as in one pass."""
    scanner = engine_for(load_policy()).scanner
    lines = [f"{r['name']} {r['id']} {r['mobile']}" for r in RECORDS[:300]]
    lines[150] = lines[150].replace(RECORDS[150]["id"][:4], RECORDS[150]["id"][:4] + "\u200b")
    lines[260] = "电话 １３８００１３８０００ 身份证 " + RECORDS[260]["id"]
    text = "\n".join(lines)
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 1_000)
    assert len(list(offsets.chunks(text))) > 5
    chunked = scanner.scan_all([("body", text)])
    assert sorted(chunked) == sorted(scanner.scan(text, "body"))
    folded = [f for f in chunked if f.line in (150, 260) and f.detector != "cn_name"]
    assert {text[f.start : f.end] for f in folded} >= {
        RECORDS[150]["id"][:4] + "\u200b" + RECORDS[150]["id"][4:],
        "１３８００１３８０００",
    }


def _split(text: str, rng: random.Random, n: int) -> list[str]:
    """``text`` cut at ``n`` random places (empty pieces too)."""
    cuts = sorted(rng.randrange(len(text) + 1) for _ in range(n))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize("seed", range(8))
def test_a_text_scanned_as_it_arrives_gives_what_the_whole_text_gives(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Cut anywhere, in few pieces or many: the same chunks, the same findings, the same text."""
    rng = random.Random(seed)
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", rng.choice([1_000, 5_000, 400_000]))
    monkeypatch.setattr(offsets, "_FIRST_CHUNK_CHARS", 300)
    scanner = engine_for(load_policy()).scanner
    lines = [f"{r['name']}\t{r['id']}\t{r['mobile']}\t{r['address']}" for r in RECORDS[:800]]
    lines[rng.randrange(800)] = "电话 １３８００１３８０００ 身份证 " + RECORDS[0]["id"]  # folded
    text = "\n".join(lines) + rng.choice(["", "\n", "\n银行卡号"])
    pieces = _split(text, rng, rng.choice([1, 5, 300]))
    assert list(offsets.chunks(offsets.Arriving(pieces))) == list(offsets.chunks(text))
    whole, found = scanner.scan_arriving("sheet", iter(pieces))
    assert whole == text
    assert found == scanner.scan_all([("sheet", text)])


def test_the_first_chunks_are_scanned_before_the_last_piece_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy scans what has come while the reader builds the rest (its time overlaps)."""
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 5_000)
    scanner = engine_for(load_policy()).scanner
    events: list[str] = []
    real_scan = scanner.scan

    def scan(*args: Any, **kwargs: Any) -> Any:
        events.append("scan")
        return real_scan(*args, **kwargs)

    def pieces() -> Any:
        for piece in _split(TABLE, random.Random(1), 40):
            events.append("piece")
            yield piece

    monkeypatch.setattr(scanner, "scan", scan)
    text, found = scanner.scan_arriving("sheet", pieces())
    assert text == TABLE and len({f.key for f in found}) >= len(RECORDS)
    assert events.index("scan") < len(events) - 1 - events[::-1].index("piece")
    assert events.count("scan") > 10


def test_a_text_that_stops_coming_in_time_is_a_timeout_with_what_was_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader past its deadline: the rows scanned before it still count (and may block by
    the rule, as for a scan past the deadline)."""
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 5_000)
    scanner = engine_for(load_policy()).scanner

    def pieces() -> Any:
        yield from _split(TABLE[: len(TABLE) // 2], random.Random(2), 10)
        raise TimeoutError

    with pytest.raises(ScanTimeout) as stopped:
        scanner.scan_arriving("sheet", pieces())
    ids = {f.key for f in stopped.value.partial if f.detector == "cn_resident_id"}
    assert len(RECORDS) // 4 < len(ids) < len(RECORDS)
