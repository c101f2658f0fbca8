"""Turn what one request or message carried into a verdict under a policy.

Counting (``tally``) is on distinct identifiers per detector and on distinct records. The
strongest action of the rules that hold wins (block over log); within one action the first rule
in the file names the decision. Unreadable content and inspection errors get the policy's
``on_unscannable`` / ``on_error`` action, block unless the admin said log. Cumulative budgets
then fold into the same verdict (:func:`with_budgets`, :func:`budget_error`) once the store
has answered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dlp_addon.decide.budget import RULE_BUDGET_ERROR, Outcome, outcome_summary, trip_description
from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.tally import Tally
from dlp_addon.detect.scanner import Finding
from dlp_addon.edm.match import NO_MATCH, EdmMatch
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
    # What could not be read (bounded kinds: ``encrypted``, ``too_large``...), for the metrics.
    unscannable: tuple[str, ...] = ()
    # Rules the requester is exempt from here and now, found once by :func:`decide`: the
    # cumulative budgets skip the same ones.
    exempt: frozenset[str] = frozenset()
    edm_records: int = 0  # rows of the customer table (exact data match)

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
    edm: EdmMatch = NO_MATCH,
) -> Verdict:
    """The verdict for one request or message bound for ``destination`` over ``channel``,
    sent by ``requester`` (for exemptions) at ``now`` (for exceptions that expire).
    ``logged``: content left unread that the policy lets through (a small picture OCR could
    not finish): a passing request is then logged, so the audit and metrics show it."""
    exempt = frozenset(
        policy.exempt_rules(requester or Requester(), destination, now or dt.datetime.now(dt.UTC))
        or ()
    )
    tally = Tally(findings, policy.detectors, attachments, edm)
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
                exempt=exempt,
                edm_records=edm.records,
            )
    if unreadable and (best is None or _STRENGTH[on_unreadable] > _STRENGTH[best.action]):
        best = Verdict(
            action=on_unreadable,
            enforced=policy.enforcing,
            rule=RULE_UNSCANNABLE,
            reason="unscannable:" + ",".join(unreadable),
            unscannable=tuple(unreadable),
            description_zh="内容无法检查（加密、压缩或无法识别的格式），按规定不予发送",
            description_en="The content could not be inspected (encrypted, compressed or "
            "unreadable), so it is not sent",
            counts=counts,
            samples=samples,
            records=records,
            files=files,
            exempt=exempt,
            edm_records=edm.records,
        )
    return best or Verdict(
        action=ALLOW,
        enforced=policy.enforcing,
        counts=counts,
        records=records,
        files=files,
        exempt=exempt,
        edm_records=edm.records,
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


def with_budgets(policy: Policy, verdict: Verdict, outcomes: Sequence[Outcome]) -> Verdict:
    """``verdict`` as the budgets leave it: the strongest tripped budget takes over when its
    action is at least as strong as the verdict's (a block over a log rule); a tripped budget
    that does not take over is still recorded in ``verdict.budget``."""
    by_name = {b.name: b for b in policy.budgets}
    tripped = [o for o in outcomes if o.tripped]
    if not tripped:
        return verdict
    # Blocking budgets first, then the one most over its limit.
    worst = max(
        tripped,
        key=lambda o: (
            _STRENGTH[by_name[o.charge.budget].action],
            o.after / max(1, o.charge.limit),
        ),
    )
    budget = by_name[worst.charge.budget]
    summary = outcome_summary(budget, worst)
    if _STRENGTH[budget.action] < _STRENGTH.get(verdict.action, 2):
        return dataclasses.replace(verdict, budget=summary)
    zh, en = trip_description(budget, worst)
    return dataclasses.replace(
        verdict,
        action=budget.action,
        enforced=policy.enforcing,
        rule=budget.name,
        reason="budget",
        description_zh=zh,
        description_en=en,
        budget=summary,
    )


def budget_error(policy: Policy, verdict: Verdict) -> Verdict:
    """The budget store could not be asked: the policy's ``on_budget_error`` (block by
    default: an unknown count is not a count under the limit)."""
    action = policy.on_budget_error
    if _STRENGTH[action] < _STRENGTH.get(verdict.action, 2):
        return verdict
    return dataclasses.replace(
        verdict,
        action=action,
        enforced=policy.enforcing,
        rule=RULE_BUDGET_ERROR,
        reason="error:budget",
        description_zh="暂时无法核对个人信息发送额度，为防止数据外泄，本次发送已被拦截",
        description_en="Your personal-data sending budget could not be checked right now; "
        "to prevent a leak the message was not sent",
    )
