"""``dlp-policy``: check a policy before it goes live, and try it on real samples offline.

    dlp-policy check FILE...            exit 1 and ``file:line: message`` for every problem,
                                        every detector's own samples run through the scanner
    dlp-policy test FILE INPUT...       what the policy decides for each input, and why
    dlp-policy pac FILE --proxy H:P     a proxy auto-config file from the destinations
    dlp-policy budgets FILE             users nearest their cumulative budgets; --reset NAME
    dlp-policy edm index EXPORT ...     index the customer table for exact data match
    dlp-policy edm info INDEX           what an index holds (docs/edm.md)

An INPUT is any file (a workbook, a CSV, a text, a JSON body: read as an upload of that file)
or a saved HTTP request (request line, headers, blank line, body). Only masked values are
printed.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from dlp_addon import budget_cli
from dlp_addon.decide.policy import Policy, Rule, load_policy
from dlp_addon.decide.tally import Tally
from dlp_addon.detect.redact import redact
from dlp_addon.edm import cli as edm_cli
from dlp_addon.errors import PolicyError
from dlp_addon.extract import HttpInput
from dlp_addon.extract.message import Extraction
from dlp_addon.pac import PacError, render_pac
from dlp_addon.pipeline import Inspection, inspect_http

_REQUEST_LINE = re.compile(rb"^[A-Z]{3,7} \S+ HTTP/[12](?:\.[01])?\r?\n")
_BOUNDARY = "dlp-policy-test-boundary"


def _check(paths: Sequence[str], key: bytes | None = None) -> int:
    status = 0
    for name in paths:
        try:
            policy = load_policy(Path(name), hmac_key=key)
        except PolicyError as e:
            for problem in e.problems:
                print(problem)
            status = 1
            continue
        detectors = policy.detectors.detectors
        samples = sum(len(d.samples) for d in detectors)
        print(
            f"{name}: ok (version {policy.version}, {len(policy.destinations)} destinations, "
            f"{len(policy.rules)} rules, {len(detectors)} detectors, their {samples} samples "
            "as written)"
        )
    return status


def _as_request(path: Path) -> HttpInput:
    data = path.read_bytes()
    if _REQUEST_LINE.match(data):
        head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
        if b"\r\n\r\n" in data:  # keep a binary body byte for byte
            body = data.split(b"\r\n\r\n", 1)[1]
        lines = head.decode("latin-1").split("\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        path_part = re.sub(r"^https?://[^/]+", "", target) or "/"
        return HttpInput(method, path_part, headers, body)
    body = (
        (
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{_BOUNDARY}--\r\n".encode()
    )
    return HttpInput(
        "POST", "/upload", {"content-type": f"multipart/form-data; boundary={_BOUNDARY}"}, body
    )


def _explain(rule: Rule, tally: Tally) -> str:
    parts = []
    for cond in rule.when:
        if cond.edm_records:
            parts.append(f"customer records {tally.edm_records} >= {cond.edm_records}")
            continue
        if cond.detector is not None and cond.min_distinct:
            have = tally.distinct(cond.detector, cond.min_confidence)
            parts.append(f"{cond.detector} {have} >= {cond.min_distinct}")
            continue
        within = None
        if cond.attachment:
            files = tally.attachments(cond.attachment)
            parts.append(f"{cond.attachment} files {len(files)} >= 1")
            within = tuple(a.location for a in files) if files else None
            if not cond.min_records:
                continue
        have = tally.records(cond.legal_category, cond.min_confidence, within)
        what = f"records of {cond.legal_category}" if cond.legal_category else "records"
        parts.append(f"{what} {have} >= {cond.min_records}")
    return ", ".join(parts)


def _test(policy: Policy, inputs: Sequence[str], destination: str, show: int = 0) -> int:
    """Each input through the proxy's own pipeline (same limits and deadline), then why;
    with ``show``, the first lines of each part as the scanner read them, identifiers masked."""
    for name in inputs:
        print(f"== {name}")
        seen: list[Extraction] = []
        inspection = inspect_http(policy, _as_request(Path(name)), destination, seen=seen)
        verdict = inspection.verdict
        if inspection.error_stage is not None:
            print(f"  inspection failed at stage {inspection.error_stage} (fails closed)")
        elif not seen:
            print(f"  {verdict.reason}")
        else:
            _explain_all(policy, inspection, seen[0], destination)
            if show:
                _show(inspection, seen[0], show)
        if not verdict.complete:
            why = "the deadline" if verdict.reason == "findings:partial" else "early_verdict"
            print(f"  counts are lower bounds: the scan stopped before the end ({why})")
        enforced = "" if verdict.enforced else " (monitor mode: not enforced)"
        print(
            f"  verdict: {verdict.action}{' by ' + verdict.rule if verdict.rule else ''}{enforced}"
        )
    return 0


def _show(inspection: Inspection, extraction: Extraction, lines: int) -> None:
    """The text of each part holding findings, with every identifier found masked in place."""
    for location, text in extraction.parts:
        found = [f for f in inspection.findings if f.location == location]
        if not found:
            continue
        head = redact(text, found).split("\n")
        print(f"  text of {location} ({len(found)} findings), identifiers masked:")
        for line in head[:lines]:
            print(f"    | {line}")
        if len(head) > lines:
            print(f"    | ... {len(head) - lines} more lines")


def _explain_all(
    policy: Policy, inspection: Inspection, extraction: Extraction, destination: str
) -> None:
    tally = Tally(inspection.findings, policy.detectors, extraction.attachments)
    tally.edm_records = inspection.verdict.edm_records
    for f in tally.files():
        print(
            f"  file: {f['kind']} ({f['sheets']} sheets, {f['rows']} rows, "
            f"{f['columns']} columns, {f['records']} records)"
        )
    if extraction.unscannable:
        print(f"  unscannable: {', '.join(extraction.unscannable)}")
    samples = tally.samples("low")
    for det, n in sorted(tally.counts("low").items()):
        print(
            f"  found {det}: {n} distinct ({tally.distinct(det)} medium or more), e.g. "
            f"{', '.join(samples.get(det, []))}"
        )
    print(f"  records: {tally.records()}")
    if policy.edm is not None:
        print(f"  customer records (exact data match): {tally.edm_records}")
    for rule in policy.rules:
        if not rule.applies_to(destination, inspection.channel):
            print(f"  rule {rule.name} ({rule.action}): not for {destination}/{inspection.channel}")
            continue
        holds = "HOLDS" if rule.holds(tally) else "no"
        print(f"  rule {rule.name} ({rule.action}): {holds}: {_explain(rule, tally)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlp-policy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check policy files; exit 1 on any problem")
    check.add_argument("files", nargs="+")
    test = sub.add_parser("test", help="run the pipeline offline on sample inputs")
    for p in (check, test):
        p.add_argument(
            "--key-file", help="the proxy's dlp_hmac_key_file (needed for an edm: section)"
        )
    test.add_argument("policy")
    test.add_argument("inputs", nargs="+")
    test.add_argument("--destination", help="destination name (default: the first)")
    test.add_argument(
        "--show",
        type=int,
        default=0,
        metavar="LINES",
        help="print the first LINES lines of each part with findings, identifiers masked",
    )
    pac = sub.add_parser("pac", help="write a proxy auto-config file for the clients")
    pac.add_argument("policy")
    pac.add_argument(
        "--proxy",
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="the proxy (or balancer) clients use; repeat for fallbacks, in order",
    )
    pac.add_argument(
        "--direct",
        action="append",
        default=[],
        metavar="GLOB|CIDR",
        help="intranet hosts (corp.example, *.corp.example) or IPv4 networks "
        "reached without the proxy; repeatable",
    )
    pac.add_argument(
        "--plain-direct",
        action="store_true",
        help="dotless host names (intranet short names) go DIRECT too",
    )
    pac.add_argument(
        "--unlisted",
        choices=["proxy", "direct"],
        default="proxy",
        help="every other host: to the proxy (default), or DIRECT when the "
        "policy does not refuse unlisted hosts",
    )
    pac.add_argument("-o", "--output", help="write here instead of standard output")
    budget_cli.add_arguments(sub)
    edm_cli.add_arguments(sub)
    args = parser.parse_args(argv)
    if args.command == "edm":
        return edm_cli.run(args)
    key = edm_cli.read_key(args.key_file) if getattr(args, "key_file", None) else None
    if args.command == "check":
        return _check(args.files, key)
    try:
        policy = load_policy(Path(args.policy), hmac_key=key)
    except PolicyError as e:
        print("\n".join(e.problems))
        return 1
    if args.command == "pac":
        return _pac(policy, args)
    if args.command == "budgets":
        return budget_cli.run(policy, args)
    destination = args.destination or policy.destinations[0].name
    return _test(policy, args.inputs, destination, args.show)


def _pac(policy: Policy, args: argparse.Namespace) -> int:
    try:
        text = render_pac(
            policy,
            args.proxy,
            direct=args.direct,
            plain_direct=args.plain_direct,
            unlisted=args.unlisted,
        )
    except PacError as e:
        print(f"dlp-policy pac: {e}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
