"""Inspection of large workbook and CSV uploads against reading the same file, in one run.

Two 100,000-row sheets of six columns: customers (姓名, 身份证号, 手机号码, 住址, 会员等级,
累计消费: every row a record) and a benign product catalogue (品名, 货号, 颜色, 单价, 库存,
条码: nothing personal), each written as xlsx (openpyxl write-only), xls (xlwt; BIFF8 holds
65,536 rows a sheet, so two sheets), ods and UTF-8 CSV; plus a ~50 MB CSV of the catalogue.
For each file, in this process: the floor, best of N (python-calamine's bare read, every
sheet ``to_python()``, for workbooks; ``csv.reader`` over the decoded text for CSV) and
``inspect_http`` of a multipart upload carrying it (shipped policy), best of N, then their
ratio (the aim: <= 1.5x). Workbooks are read by a reader process forked directly, as an
inspection worker's are (``sandbox.prefer_fork``); a reader that answered in full reads the
next workbook too, so the best of N is a warm reader's: the first inspection of each file,
by a new reader, is reported beside it. Runs alternate between floor and inspection so drift
on a shared machine hits both. Peak RSS of inspecting the customer xlsx
comes from a fresh child (VmHWM). Usage:

    .venv/bin/python bench/upload_inspection.py [--rows 100000] [--csv-mb 50] [--repeat 3]
        [--early-verdict on|off|both]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import io
import json
import multiprocessing
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

from python_calamine import CalamineWorkbook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlp_addon.decide.policy import Policy, load_policy
from dlp_addon.extract import sandbox
from dlp_addon.extract.message import HttpInput
from dlp_addon.pipeline import Inspection, inspect_http
from tests.synth import customer_records

BOUNDARY = "----dlpbenchUpl0adInspecti0n"
TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xls": "application/vnd.ms-excel",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "csv": "text/csv",
}
CUSTOMER_HEADER = ("姓名", "身份证号", "手机号码", "住址", "会员等级", "累计消费")
CATALOGUE_HEADER = ("品名", "货号", "颜色", "单价（元）", "库存", "条码")
_LEVELS = ("普通会员", "银卡", "金卡", "钻石卡")
_PRODUCTS = ("拉杆箱", "登机箱", "旅行背包", "收纳袋", "行李牌", "颈枕", "密码锁", "行李带")
_COLOURS = ("黑色", "白色", "藏青色", "玫瑰金", "灰色", "军绿色")
XLS_ROWS_PER_SHEET = 65_000

Row = Sequence[str | float | int]


# --- the files -----------------------------------------------------------------------------


def customers(n: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    rows: list[Row] = [CUSTOMER_HEADER]
    for r in customer_records(n, seed):
        spent = round(rng.uniform(0, 20000), 2)
        rows.append((r["name"], r["id"], r["mobile"], r["address"], rng.choice(_LEVELS), spent))
    return rows


def catalogue(n: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    rows: list[Row] = [CATALOGUE_HEADER]
    for i in range(n):
        rows.append(
            (
                f"{rng.choice(_PRODUCTS)} {rng.choice((20, 24, 26, 28))}寸",
                f"SKU-LX{2019 + i % 7}-{i:06d}",
                rng.choice(_COLOURS),
                rng.randrange(19, 1999) + rng.choice((0.0, 0.5, 0.9, 0.99)),
                rng.randrange(0, 500),
                f"69{rng.randrange(10**10, 10**11)}",  # 13 digits, as on a Chinese barcode
            )
        )
    return rows


def xlsx(rows: list[Row], sheet: str) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    for row in rows:
        ws.append(list(row))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def xls(rows: list[Row], sheet: str) -> bytes:
    import xlwt  # type: ignore[import-untyped]

    wb = xlwt.Workbook(encoding="utf-8")
    for k in range(0, len(rows), XLS_ROWS_PER_SHEET):
        ws = wb.add_sheet(f"{sheet}{k // XLS_ROWS_PER_SHEET + 1}")
        for r, row in enumerate(rows[k : k + XLS_ROWS_PER_SHEET]):
            for c, value in enumerate(row):
                ws.write(r, c, value)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _ods_cell(value: str | float | int) -> str:
    if isinstance(value, str):
        return (
            '<table:table-cell office:value-type="string">'
            f"<text:p>{value}</text:p></table:table-cell>"
        )
    return (
        f'<table:table-cell office:value-type="float" office:value="{value}">'
        f"<text:p>{value}</text:p></table:table-cell>"
    )


def ods(rows: list[Row], sheet: str) -> bytes:
    """An OpenDocument spreadsheet written directly (odfpy takes minutes for 100,000 rows)."""
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    )
    body = "".join(
        "<table:table-row>" + "".join(map(_ods_cell, row)) + "</table:table-row>" for row in rows
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="{sheet}">{body}'
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="'
        f'{TYPES["ods"]}"/><manifest:file-entry manifest:full-path="content.xml" '
        'manifest:media-type="text/xml"/></manifest:manifest>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mimetype", TYPES["ods"], compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def csv_file(rows: list[Row]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode()


def big_csv(megabytes: float, seed: int) -> bytes:
    """The catalogue, rows appended until the file holds ``megabytes`` MB."""
    rows = catalogue(100_000, seed)
    data = csv_file(rows)
    out = [data]
    size, k = len(data), 1
    while size < megabytes * 1e6:
        more = csv_file([(r[0], f"{r[1]}-{k}", *r[2:]) for r in rows[1:]])
        out.append(more)
        size += len(more)
        k += 1
    return b"".join(out)[: int(megabytes * 1e6)].rsplit(b"\r\n", 1)[0] + b"\r\n"


def multipart(data: bytes, kind: str) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="upload.{kind}"\r\n'
        f"Content-Type: {TYPES[kind]}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


# --- the steps measured --------------------------------------------------------------------


def calamine_read(data: bytes) -> int:
    wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
    return sum(len(wb.get_sheet_by_name(s).to_python()) for s in wb.sheet_names)


def csv_read(data: bytes) -> int:
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"))))


def inspect(body: bytes, policy: Policy) -> Inspection:
    req = HttpInput("POST", "/upload", HEADERS, body)
    return inspect_http(policy, req, "bench", deadline=time.monotonic() + 600)


def early(policy: Policy, on: bool) -> Policy:
    return dataclasses.replace(policy, early_verdict=on)


@dataclasses.dataclass
class Result:
    name: str
    size: int
    floor_name: str
    floor: float
    inspection: float
    first: float  # by a new reader
    verdict: Inspection


def measure(name: str, data: bytes, kind: str, policy: Policy, repeat: int) -> Result:
    floor_fn: Callable[[bytes], int] = csv_read if kind == "csv" else calamine_read
    body = multipart(data, kind)
    floor = best = float("inf")
    sandbox.shutdown()  # the first inspection starts a new reader
    t0 = time.perf_counter()
    ins: Inspection | None = inspect(body, policy)
    first = time.perf_counter() - t0
    for _ in range(repeat):  # alternate, so drift hits both
        t0 = time.perf_counter()
        floor_fn(data)
        floor = min(floor, time.perf_counter() - t0)
        t0 = time.perf_counter()
        ins = inspect(body, policy)
        best = min(best, time.perf_counter() - t0)
    assert ins is not None
    return Result(
        name,
        len(data),
        "csv module" if kind == "csv" else "calamine",
        floor,
        best,
        first,
        ins,
    )


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(path: Path, kind: str, on: bool) -> None:
    """Inspect the file once in this fresh process; print its peak RSS and RSS before."""
    sandbox.prefer_fork()
    policy = early(load_policy(), on)
    body = multipart(path.read_bytes(), kind)
    before = status_mb("VmRSS")
    inspect(body, policy)
    sandbox.shutdown()  # a reader that answered in full waits for the next workbook: stop it
    for reader_process in multiprocessing.active_children():  # killed, not waited for: reap it
        reader_process.join(10)
    reader = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the reader
    print(json.dumps({"before_mb": before, "peak_mb": status_mb("VmHWM"), "reader_mb": reader}))


def rss_of(path: Path, kind: str, on: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--kind", kind]
        + (["--early-verdict", "on"] if on else ["--early-verdict", "off"]),
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def verdict_of(ins: Inspection) -> str:
    v = ins.verdict
    what = f"{v.action} `{v.rule or '-'}`"
    if v.records:
        what += f", {v.records:,} records" + ("" if v.complete else " (at least)")
    return what


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--csv-mb", type=float, default=50.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--early-verdict", choices=("on", "off", "both"), default="both")
    ap.add_argument("--only", help="comma-separated file names to measure (e.g. customers.xlsx)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.kind, args.early_verdict == "on")
        return

    t0 = time.perf_counter()
    sheets = {
        "customers": customers(args.rows, args.seed),
        "catalogue": catalogue(args.rows, args.seed),
    }
    files: dict[str, tuple[bytes, str]] = {}
    writers = {"xlsx": xlsx, "xls": xls, "ods": ods}
    for what, rows in sheets.items():
        for kind, write in writers.items():
            files[f"{what}.{kind}"] = (write(rows, what), kind)
        files[f"{what}.csv"] = (csv_file(rows), "csv")
    files[f"catalogue-{args.csv_mb:g}MB.csv"] = (big_csv(args.csv_mb, args.seed), "csv")
    if args.only:
        files = {k: v for k, v in files.items() if k in args.only.split(",")}
    generated = time.perf_counter() - t0
    warm_rows = sheets["customers"][:21]
    del sheets  # the generated rows: not what an inspection worker holds when it forks a reader
    gc.collect()

    sandbox.prefer_fork()  # as an inspection worker (offload.py) reads workbooks
    base = load_policy()
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.early_verdict]
    warm = multipart(xlsx(warm_rows, "warm"), "xlsx")
    for on in modes:
        inspect(warm, early(base, on))  # start the fork server, warm the scanner
    print(f"command: .venv/bin/python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}\n")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, python-calamine {version('python-calamine')}; "
        f"{args.rows:,} rows x 6 columns a sheet; files generated in {generated:.0f} s "
        f"(not counted); best of {args.repeat}, floor and inspection alternating\n"
    )
    print(
        "| file | MB | early verdict | floor | floor s | inspection s | ratio | <= 1.5x "
        "| first, new reader s | verdict |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (data, kind) in files.items():
        for on in modes:
            r = measure(name, data, kind, early(base, on), args.repeat)
            ratio = r.inspection / r.floor
            print(
                f"| {name} | {r.size / 1e6:.1f} | {'on' if on else 'off'} | {r.floor_name} | "
                f"{r.floor:.2f} | {r.inspection:.2f} | {ratio:.2f}x | "
                f"{'yes' if ratio <= 1.5 else 'no'} | {r.first:.2f} | {verdict_of(r.verdict)} |",
                flush=True,
            )
    if "customers.xlsx" in files:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "customers.xlsx"
            path.write_bytes(files["customers.xlsx"][0])
            for on in modes:
                rss = rss_of(path, "xlsx", on)
                print(
                    f"\npeak RSS inspecting customers.xlsx ({path.stat().st_size / 1e6:.1f} MB), "
                    f"early verdict {'on' if on else 'off'}: {rss['peak_mb']:.0f} MB "
                    f"(RSS before {rss['before_mb']:.0f} MB; fresh process, VmHWM); the "
                    f"sandboxed reader's peak: {rss['reader_mb']:.0f} MB"
                )


if __name__ == "__main__":
    main()
