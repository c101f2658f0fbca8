"""A parser that crashes, aborts or eats memory costs a verdict, never the proxy."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dlp_addon.errors import ExtractError
from dlp_addon.extract import sandbox, spreadsheet
from dlp_addon.extract.limits import Budget, Limits
from tests import files


def _hog() -> bytes:
    return bytes(8 * 1024 * 1024 * 1024)  # far above the child's address-space cap


def _sleep() -> None:
    time.sleep(60)


def test_an_abort_in_the_parser_is_corrupt_content() -> None:
    with pytest.raises(ExtractError) as e:
        sandbox.run(os.abort)
    assert e.value.reason == "corrupt"


def test_running_out_of_memory_is_too_large() -> None:
    with pytest.raises(ExtractError) as e:
        sandbox.run(_hog)
    assert e.value.reason in ("too_large", "corrupt")


def test_the_deadline_kills_the_child() -> None:
    with pytest.raises(TimeoutError):
        sandbox.run(_sleep, deadline=time.monotonic() + 0.5)


def test_results_come_back() -> None:
    assert sandbox.run(sum, [1, 2, 3]) == 6


PAYLOAD = bytes(range(256)) * 20_000  # 5 MB: more than a pipe holds


def _bulk() -> sandbox.Bulk:
    return sandbox.Bulk({"rows": 3}, PAYLOAD)


def test_a_bulk_answer_comes_back_whole() -> None:
    answer = sandbox.run(_bulk)
    assert answer.value == {"rows": 3}
    assert answer.payload == PAYLOAD


def test_a_child_that_dies_in_the_middle_of_its_payload_is_corrupt_content() -> None:
    """A cut payload is not a shorter text: the workbook is unscannable."""
    with sandbox.Pending(_bulk, (), None) as pending:
        assert pending._parent.poll(30)  # the answer's frame is there; the payload is stuck
        pending._process.kill()
        pending._process.join(5)
        with pytest.raises(ExtractError) as e:
            pending.result()
    assert e.value.reason == "corrupt"


@pytest.mark.parametrize(
    "cells",
    [
        ["SKU-001", "12.5", "plain ASCII"],
        ["王伟", "13800138000", "北京市朝阳区"],
        ["café", "naïve", "Ünïcode"],
        ["表情 😀", "𠀋 outside the BMP", "mixed 王 é 😀"],
    ],
)
def test_a_workbook_text_comes_back_as_read(cells: list[str]) -> None:
    """ASCII, Chinese, Latin-1 and characters beyond the BMP cross from the child unchanged."""
    data = files.xlsx([["a", "b", "c"], cells, [1.5, 2.0, "x"]], sheet="表一")
    sheets = sandbox.read_workbook(data, Budget(Limits()))
    assert sheets.text == spreadsheet.read(data, Budget(Limits())).text
    assert sheets.text.splitlines()[1] == "\t".join(cells)
    assert sheets.names == "表一"
    assert (sheets.sheets, sheets.rows, sheets.columns) == (1, 3, 3)


@given(st.text(st.characters() | st.characters(categories=["Cs"])))
@example("\ud83d\ude00 two lone surrogates, not one character")
def test_any_text_crosses_as_it_was(text: str) -> None:
    """Lone surrogates included (calamine gives none, but a text must never change)."""
    encoding, payload = sandbox._encoded(text)
    assert payload.decode(encoding, "surrogatepass") == text
