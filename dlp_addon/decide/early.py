"""The early verdict: stop scanning a long upload once a block rule holds beyond doubt.

Counts only grow as more of a text is read, and every rule is a floor on counts, so a block
rule that holds on what was scanned so far holds on the whole. With the policy's
``inspection.early_verdict`` on (the default) and the policy enforcing, the scan of a long part
(a big sheet, scanned a million characters at a time) stops at the first chunk after which a
rule blocks; the verdict says its counts are lower bounds (``complete`` false, the audit's
``counts_complete``). A rule that only logs, and monitor mode, never stop a scan: what passes
is counted in full. See docs/policy.md for what the admin gives up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.verdict import Verdict, decide
from dlp_addon.detect.checkpoint import HOOK
from dlp_addon.detect.scanner import Finding
from dlp_addon.extract.message import Attachment


class EarlyVerdict(Exception):
    """Raised from the scan when a block rule holds; carries the verdict and the findings."""

    def __init__(self, verdict: Verdict, findings: tuple[Finding, ...]) -> None:
        super().__init__("early verdict")
        self.verdict = verdict
        self.findings = findings


@contextmanager
def watching(
    policy: Policy,
    *,
    destination: str,
    channel: str,
    unscannable: Iterable[str] = (),
    attachments: Iterable[Attachment] = (),
    requester: Requester | None = None,
) -> Iterator[None]:
    """Within this block, the scanner's checkpoints raise :class:`EarlyVerdict` once the
    findings so far make ``policy`` block. The findings are decided on again only once they
    have doubled since the last look, so a text full of findings that never block costs at
    most twice one decision."""
    if not (policy.early_verdict and policy.enforcing):
        yield
        return
    unreadable, files = tuple(unscannable), tuple(attachments)
    looked = 0

    def hook(found: Sequence[Finding]) -> None:
        nonlocal looked
        if not found or len(found) < 2 * looked:
            return
        looked = len(found)
        verdict = decide(
            policy,
            found,
            destination=destination,
            channel=channel,
            unscannable=unreadable,
            attachments=files,
            requester=requester,
        )
        if verdict.blocks and verdict.reason == "findings":
            raise EarlyVerdict(dataclasses.replace(verdict, complete=False), tuple(found))

    token = HOOK.set(hook)
    try:
        yield
    finally:
        HOOK.reset(token)
