"""Turn what one request or message carried into a verdict under a policy.

Counting (``tally``) is on distinct identifiers per detector and on distinct records. The
strongest action of the rules that hold wins (block over log); within one action the first rule
in the file names the decision. Unreadable content and inspection errors get the policy's
``on_unscannable`` / ``on_error`` action, block unless the admin said log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.tally import Tally
from dlp_addon.detect.scanner import Finding
from dlp_addon.extract.message import Attachment

ALLOW, LOG, BLOCK, REFUSE = "allow", "log", "block", "refuse"
_STRENGTH = {ALLOW: 0, LOG: 1, BLOCK: 2, REFUSE: 2}

RULE_UNSCANNABLE = "unscannable-content"
RULE_ERROR = "inspection-error"
RULE_UNLISTED = "egress-allowlist"


@dataclass(frozen=True)
class Verdict:
    """What happens to one request or message, and every fact the audit and the user see.

    ``counts`` and ``samples`` hold distinct counts and masked values only: a verdict may be
    logged, audited and shown, so nothing raw is in it.
    """

    action: str
    enforced: bool
    rule: str | None = None
    reason: str = "clean"
    description_zh: str = ""
    description_en: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    records: int = 0
    # Each file carried: kind, sheets, rows, columns and the records of personal data in it.
    files: tuple[dict[str, object], ...] = ()
    # The cumulative budget this message was counted against, when one tripped (numbers only).
    budget: dict[str, object] | None = None
    # False when the scan stopped before the end (an early verdict, or the deadline): the
    # counts and records are then lower bounds.
    complete: bool = True

    @property
    def blocks(self) -> bool:
        """True when the request must not reach the platform."""
        return self.action in (BLOCK, REFUSE) and self.enforced


def decide(
    policy: Policy,
    findings: Iterable[Finding],
    *,
    destination: str,
    channel: str,
    unscannable: Iterable[str] = (),
    attachments: Iterable[Attachment] = (),
    requester: Requester | None = None,
    now: dt.datetime | None = None,
    logged: Iterable[str] = (),
) -> Verdict:
    """The verdict for one request or message bound for ``destination`` over ``channel``,
    sent by ``requester`` (for exemptions) at ``now`` (for exceptions that expire).
    ``logged``: content left unread that the policy lets through (a small picture OCR could
    not finish): a passing request is then logged, so the audit and metrics show it."""
    exempt = policy.exempt_rules(
        requester or Requester(), destination, now or dt.datetime.now(dt.UTC)
    )
    tally = Tally(findings, policy.detectors, attachments)
    counts, samples, records = tally.counts(), tally.samples(), tally.records()
    files = tally.files()
    unreadable = sorted(set(unscannable))
    if not unreadable and (logged := sorted(set(logged))):
        unreadable, on_unreadable = logged, LOG
    else:
        on_unreadable = policy.on_unscannable
    best: Verdict | None = None
    for rule in policy.rules:
        if exempt and rule.name in exempt:
            continue
        if not rule.applies_to(destination, channel) or not rule.holds(tally):
            continue
        if best is None or _STRENGTH[rule.action] > _STRENGTH[best.action]:
            best = Verdict(
                action=rule.action,
                enforced=policy.enforcing,
                rule=rule.name,
                reason="findings",
                description_zh=rule.description_zh,
                description_en=rule.description_en,
                counts=counts,
                samples=samples,
                records=records,
                files=files,
            )
    if unreadable and (best is None or _STRENGTH[on_unreadable] > _STRENGTH[best.action]):
        best = Verdict(
            action=on_unreadable,
            enforced=policy.enforcing,
            rule=RULE_UNSCANNABLE,
            reason="unscannable:" + ",".join(unreadable),
            description_zh="内容无法检查（加密、压缩或无法识别的格式），按规定不予发送",
            description_en="The content could not be inspected (encrypted, compressed or "
            "unreadable), so it is not sent",
            counts=counts,
            samples=samples,
            records=records,
            files=files,
        )
    return best or Verdict(
        action=ALLOW, enforced=policy.enforcing, counts=counts, records=records, files=files
    )


def error_verdict(policy: Policy, stage: str) -> Verdict:
    """Fail closed: inspection failed at ``stage`` (``extract``, ``detect``, ``timeout``...)."""
    return Verdict(
        action=policy.on_error,
        enforced=policy.enforcing,
        rule=RULE_ERROR,
        reason="error:" + stage,
        description_zh="检查过程出错，为防止数据外泄，本次发送已被拦截",
        description_en="Inspection failed; to prevent a leak the message was not sent",
    )


def unlisted_verdict() -> Verdict:
    """The host is not on the allow-list: refused whatever the mode."""
    return Verdict(
        action=REFUSE,
        enforced=True,
        rule=RULE_UNLISTED,
        reason="unlisted",
        description_zh="该网站不在公司允许访问的范围内",
        description_en="This site is not on the company's list of allowed sites",
    )
