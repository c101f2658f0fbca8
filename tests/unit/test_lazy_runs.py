"""A long text's encoded runs (base64, hex, base32 inside a big CSV or sheet) are decoded after
the text itself is scanned: what they hide is still read and blocked, and an upload that the
early verdict has blocked already is answered without decoding them."""

from __future__ import annotations

import base64
import dataclasses
import zlib

from dlp_addon.decide import load_policy
from dlp_addon.decide.policy import Policy
from dlp_addon.extract import HttpInput, extract_http
from dlp_addon.extract.collector import LONG_TEXT
from dlp_addon.extract.limits import MiB
from dlp_addon.pipeline import inspect_http
from tests.lazy_extraction import texts, whole
from tests.synth import customer_records, records_chat_text

CATALOGUE = "\n".join(
    f"拉杆箱 {20 + i % 9}寸,SKU-LX{i:06d},黑色,{199 + i % 700}.00" for i in range(4000)
)
CUSTOMERS = customer_records(60, seed=5)
HIDDEN = base64.b64encode(records_chat_text(CUSTOMERS).encode()).decode()
HEXED = records_chat_text(CUSTOMERS[:8]).encode().hex()


def _req(text: str) -> HttpInput:
    return HttpInput("POST", "/upload", {"content-type": "text/csv"}, text.encode())


def test_lazy_extraction_reads_what_the_eager_one_reads() -> None:
    # A long text hiding base64 text, hex text, and base64 of a long text hiding its own runs.
    inner = CATALOGUE + "\n" + HEXED + "\n"
    assert len(inner) >= LONG_TEXT
    samples = [
        CATALOGUE + "\n" + HIDDEN + "\n" + HEXED,
        CATALOGUE + "\n" + base64.b64encode(inner.encode()).decode(),
        "short " + HIDDEN,
    ]
    for text in samples:
        eager = extract_http(_req(text))
        lazy = extract_http(_req(text), lazy=True)
        assert eager.rest is None
        if len(text) >= LONG_TEXT:
            assert lazy.rest is not None and len(lazy.parts) < len(eager.parts)
        done = whole(lazy)
        assert texts(done) == texts(eager)
        assert done.unscannable == eager.unscannable
        assert done.attachments == eager.attachments


def test_customers_hidden_in_a_long_csv_are_still_blocked() -> None:
    req = _req(CATALOGUE + "\n" + HIDDEN + "\n")
    verdict = inspect_http(load_policy(), req, "taobao-tmall").verdict
    assert verdict.blocks and verdict.rule == "bulk-resident-id"
    assert verdict.counts["cn_resident_id"] == len(CUSTOMERS)


def _bomb_policy(early: bool) -> Policy:
    policy = load_policy()
    limits = dataclasses.replace(policy.limits, max_decoded_bytes=8 * MiB)
    return dataclasses.replace(policy, limits=limits, early_verdict=early)


def test_an_early_verdict_leaves_the_runs_undecoded() -> None:
    # After a table of customers, zlib data that inflates past the limit: decoded, it makes the
    # upload unscannable; with the early verdict the table has decided before it is reached.
    bomb = base64.b64encode(zlib.compress(b"\0" * (9 * MiB))).decode()
    req = _req(records_chat_text(customer_records(3000, seed=9)) + "\n" + bomb + "\n")
    full = inspect_http(_bomb_policy(False), req, "taobao-tmall").verdict
    assert full.blocks and full.unscannable == ("too_large",)
    early = inspect_http(_bomb_policy(True), req, "taobao-tmall").verdict
    assert early.blocks and early.rule == "bulk-resident-id" and not early.complete
    assert early.unscannable == ()


def test_a_bomb_in_a_long_benign_text_is_still_unscannable() -> None:
    bomb = base64.b64encode(zlib.compress(b"\0" * (9 * MiB))).decode()
    req = _req(CATALOGUE + "\n" + bomb + "\n")
    verdict = inspect_http(_bomb_policy(True), req, "taobao-tmall").verdict
    assert verdict.blocks and verdict.unscannable == ("too_large",)
