"""A message's verdict once its cumulative budgets are known (the store has answered, or failed).

Kept apart from ``budget.py`` because it builds verdicts, and ``verdict.py`` needs the policy,
which needs ``budget.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from dlp_addon.decide.budget import RULE_BUDGET_ERROR, Outcome, outcome_summary, trip_description
from dlp_addon.decide.policy import Policy
from dlp_addon.decide.verdict import ALLOW, BLOCK, LOG, Verdict

_STRENGTH = {ALLOW: 0, LOG: 1, BLOCK: 2}


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
