"""A parser that crashes, aborts or eats memory costs a verdict, never the proxy."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator

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
    sheets = spreadsheet.read_in_reader(data, Budget(Limits()))
    assert sheets.text == spreadsheet.read(data, Budget(Limits())).text
    assert sheets.text.splitlines()[1] == "\t".join(cells)
    assert sheets.names == "表一"
    assert (sheets.sheets, sheets.rows, sheets.columns) == (1, 3, 3)


@given(st.text(st.characters() | st.characters(categories=["Cs"])))
@example("\ud83d\ude00 two lone surrogates, not one character")
def test_any_text_crosses_as_it_was(text: str) -> None:
    """Lone surrogates included (calamine gives none, but a text must never change)."""
    encoding, payload = spreadsheet._encoded(text)
    assert payload.decode(encoding, "surrogatepass") == text


# --- readers that read the next workbook too ------------------------------------------------


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Readers forked from this process (as an inspection worker's are), so that what the
    test sets (idle time, memory kept) is what they have; none left over from other tests."""
    sandbox.shutdown()
    monkeypatch.setattr(sandbox, "_context", multiprocessing.get_context("fork"))
    yield
    sandbox.shutdown()


def _pid() -> int:
    return os.getpid()


def _read_pid(data: bytes) -> tuple[int, str]:
    with spreadsheet.Workbook(data, Limits()) as book:
        book.shape(Budget(Limits()))
        text = "".join(book.pieces(Budget(Limits())))
    (pid,) = sandbox.idle()
    return pid, text


def test_a_reader_that_answered_reads_the_next_workbook_and_only_that(forked: None) -> None:
    """The second workbook goes to the same reader, and its text is its own, nothing of the
    first one's."""
    first = files.xlsx([["王伟", "110105199001011234"]] * 3000, sheet="客户")
    second = files.xlsx([["拉杆箱", 199.5], ["登机箱", 299.0]], sheet="商品")
    pid, text = _read_pid(first)
    assert pid != os.getpid() and text.count("王伟") == 3000
    again, text = _read_pid(second)
    assert again == pid
    assert text == "拉杆箱\t199.5\n登机箱\t299"
    assert sandbox.run(_pid) == pid


@pytest.mark.parametrize(
    "how", ["error", "crash", "deadline", "not wanted"], ids=lambda how: how.replace(" ", "-")
)
def test_a_reader_that_did_not_answer_in_full_is_never_used_again(forked: None, how: str) -> None:
    sandbox.run(_pid)
    (pid,) = sandbox.idle()
    if how == "error":
        with pytest.raises(ExtractError):
            spreadsheet.read_in_reader(b"PK\x03\x04 not a workbook", Budget(Limits()))
    elif how == "crash":
        with pytest.raises(ExtractError):
            sandbox.run(os.abort)
    elif how == "deadline":
        with pytest.raises(TimeoutError):
            sandbox.run(_sleep, deadline=time.monotonic() + 0.5)
    else:
        book = spreadsheet.Workbook(files.xlsx([["x"]] * 20_000), Limits())
        book.shape(Budget(Limits()))
        book.close()  # an early verdict: the rest is not wanted
    assert sandbox.idle() == []
    assert sandbox.run(_pid) != pid
    deadline = time.monotonic() + 5
    while pid in {p.pid for p in multiprocessing.active_children()}:
        assert time.monotonic() < deadline, "the reader is still running"
        time.sleep(0.05)


def test_a_reader_idle_too_long_is_replaced(forked: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "IDLE_SECONDS", 5.5)  # taken at most 0.5 s after its answer
    first = sandbox.run(_pid)
    assert sandbox.run(_pid) == first
    time.sleep(0.7)
    assert sandbox.run(_pid) != first


def test_a_reader_left_holding_much_memory_leaves(
    forked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "KEEP_BYTES", 1024 * 1024)
    data = files.xlsx([[f"SKU-{i:06d}", i / 4, "黑色"] for i in range(30_000)])
    with spreadsheet.Workbook(data, Limits()) as book:
        book.shape(Budget(Limits()))
        assert "".join(book.pieces(Budget(Limits()))).count("SKU-") == 30_000
    assert sandbox.idle() == []  # it said it would leave: not kept


def test_idle_readers_are_stopped_on_shutdown(forked: None) -> None:
    sandbox.run(_pid)
    (pid,) = sandbox.idle()
    sandbox.shutdown()
    assert sandbox.idle() == []
    assert pid not in {p.pid for p in multiprocessing.active_children()}


def test_a_system_without_memory_files_sends_the_bytes(
    forked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system-call filter that refuses memfd_create costs a copy, not the workbook."""

    def refused(*args: object) -> int:
        raise PermissionError("Operation not permitted")

    data = files.xlsx([["王伟", "13800138000"], ["李娜", 1.5]], sheet="表一")
    expected = spreadsheet.read(data, Budget(Limits())).text
    monkeypatch.setattr(os, "memfd_create", refused)
    assert spreadsheet.memory_file(data) is None
    assert spreadsheet.read_in_reader(data, Budget(Limits())).text == expected
