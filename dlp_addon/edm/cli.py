"""``dlp-policy edm``: index a customer export, and say what an index holds.

    dlp-policy edm index EXPORT --columns KIND=HEADER,... --key-file KEY --out FILE
    dlp-policy edm info FILE [--key-file KEY]

Only counts, line numbers and column headers are printed; never a value.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dlp_addon.edm.build import BuildReport, EdmRefused, build_index
from dlp_addon.edm.fields import KINDS, PRIMARY_KINDS, Keys
from dlp_addon.edm.index import EdmError, EdmIndex, Field
from dlp_addon.edm.source import Source

MIN_KEY_BYTES = 16
REJECTS_SHOWN = 50


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edm = sub.add_parser("edm", help="exact data match: index the customer table")
    what = edm.add_subparsers(dest="edm_command", required=True)
    index = what.add_parser("index", help="index a customer export (CSV or workbook)")
    index.add_argument("export", help="CSV file, or xlsx/xls/ods workbook")
    index.add_argument(
        "--columns",
        required=True,
        metavar="KIND=HEADER,...",
        help=f"which column holds which field; kinds: {', '.join(KINDS)}. "
        "HEADER is the column's header (or its number, from 1)",
    )
    index.add_argument(
        "--primary",
        metavar="KIND,...",
        help="fields looked up directly (default: every column of kind "
        f"{', '.join(PRIMARY_KINDS)})",
    )
    index.add_argument("--policy-format", help="regular expression of a whole policy number")
    index.add_argument("--key-file", required=True, help="the proxy's dlp_hmac_key_file")
    index.add_argument("--out", required=True, help="index file (replaced atomically)")
    index.add_argument("--encoding", default="utf-8-sig", help="CSV encoding (e.g. gb18030)")
    index.add_argument("--sheet", help="workbook sheet (default: the first)")
    index.add_argument(
        "--max-rejected",
        type=float,
        default=1.0,
        metavar="PERCENT",
        help="refuse to replace the index when more rows than this are rejected (default 1)",
    )
    index.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes hashing rows (default: one per core)",
    )
    info = what.add_parser("info", help="what an index holds (counts, fields; no values)")
    info.add_argument("file")
    info.add_argument("--key-file", help="also say whether the index was built with this key")


def read_key(path: str) -> bytes:
    """The deployment's key, read as the proxy reads ``dlp_hmac_key_file``."""
    key = Path(path).read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise EdmError(f"{path} holds fewer than {MIN_KEY_BYTES} bytes")
    return key


def run(args: argparse.Namespace) -> int:
    try:
        if args.edm_command == "info":
            return _info(args)
        return _index(args)
    except (EdmError, OSError) as e:
        print(f"dlp-policy edm: {e}", file=sys.stderr)
        return 1


def _columns(spec: str, header: list[str]) -> list[tuple[int, Field]]:
    out: list[tuple[int, Field]] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, sep, name = item.partition("=")
        kind, name = kind.strip(), name.strip()
        if not sep or kind not in KINDS:
            raise EdmError(f"--columns: '{item}' is not KIND=HEADER (kinds: {', '.join(KINDS)})")
        if name in header:
            out.append((header.index(name), Field(name, kind)))
        elif name.isdigit() and 1 <= int(name) <= len(header):
            out.append((int(name) - 1, Field(header[int(name) - 1], kind)))
        else:
            raise EdmError(f"--columns: no column '{name}' (columns: {', '.join(header)})")
    return out


def _index(args: argparse.Namespace) -> int:
    key = read_key(args.key_file)
    source = Source(Path(args.export), encoding=args.encoding, sheet=args.sheet)
    columns = _columns(args.columns, source.header)
    kinds = [f.kind for _, f in columns]
    primary = (
        [k.strip() for k in args.primary.split(",") if k.strip()]
        if args.primary
        else [k for k in kinds if k in PRIMARY_KINDS]
    )
    started = time.monotonic()

    def progress(read: int, rejected: int) -> None:
        rate = read / max(time.monotonic() - started, 1e-9)
        print(f"  {read:,} rows read, {rejected:,} rejected ({rate:,.0f} rows/s)", file=sys.stderr)

    out = Path(args.out)
    try:
        report = build_index(
            source.rows(),
            columns,
            primary,
            Keys(key),
            out,
            policy_format=args.policy_format,
            progress=progress,
            accept=lambda r: _too_many(r, args.max_rejected),
            jobs=args.jobs,
        )
    except EdmRefused as e:
        _print_rejects(e.report)
        raise
    _print_rejects(report)
    per_row = report.bytes / max(report.rows, 1)
    print(
        f"{out}: {report.rows:,} rows indexed ({report.entries:,} primary values), "
        f"{report.rejected:,} rejected, {report.bytes:,} bytes ({per_row:.0f} per row), "
        f"{report.seconds:.1f} s ({report.rows / max(report.seconds, 1e-9):,.0f} rows/s)"
    )
    return 0


def _too_many(report: BuildReport, percent: float) -> str | None:
    read = report.rows + report.rejected
    if report.rows == 0:
        return "no row could be indexed"
    if report.rejected * 100 > percent * read:
        return (
            f"{report.rejected:,} of {read:,} rows rejected, more than {percent:g}% "
            "(wrong --columns? raise --max-rejected to accept)"
        )
    return None


def _print_rejects(report: BuildReport) -> None:
    for line, why in report.rejects[:REJECTS_SHOWN]:
        print(f"  rejected line {line}: {why}", file=sys.stderr)
    if report.rejected > REJECTS_SHOWN:
        print(f"  ... {report.rejected - REJECTS_SHOWN:,} more rejected rows", file=sys.stderr)


def _info(args: argparse.Namespace) -> int:
    index = EdmIndex(Path(args.file))
    h = index.header
    size = os.path.getsize(args.file)
    print(f"{args.file}: EDM index, built {h.created} (build {h.build_id})")
    print(f"  rows: {h.rows - h.rejected:,} ({h.rejected:,} rejected when built)")
    print(f"  primary values: {h.entries:,}")
    print(f"  size: {size:,} bytes ({size / max(h.rows, 1):.0f} per row)")
    print(f"  fields: {', '.join(f'{f.kind} ({f.name})' for f in h.fields)}")
    print(f"  primary: {', '.join(h.primary)}")
    if h.policy_format:
        print(f"  policy number format: {h.policy_format}")
    if args.key_file:
        same = h.key_check == Keys(read_key(args.key_file)).check
        print(f"  key: {'this key' if same else 'ANOTHER key: the proxy will refuse it'}")
        return 0 if same else 1
    return 0
