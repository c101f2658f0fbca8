"""What changed between two policies, in the words an auditor uses: rules, budgets,
destinations, detectors, exemptions, the address map and mode. Goes into the audit record of
every policy load."""

from __future__ import annotations

from typing import Any

from dlp_addon.decide.policy import Policy


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    out = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }
    return {k: v for k, v in out.items() if v}


def summarize(old: Policy | None, new: Policy) -> dict[str, Any]:
    """A compact change summary of ``new`` against ``old`` (everything is new when ``old`` is
    ``None``)."""
    if old is None:
        return {"first_load": True, "rules": len(new.rules), "destinations": len(new.destinations)}
    out: dict[str, Any] = {}
    parts: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "rules": ({r.name: r for r in old.rules}, {r.name: r for r in new.rules}),
        "budgets": ({b.name: b for b in old.budgets}, {b.name: b for b in new.budgets}),
        "destinations": (
            {d.name: d.hosts for d in old.destinations},
            {d.name: d.hosts for d in new.destinations},
        ),
        "detectors": (
            {
                d.id: (d.kind, d.words, d.confidence, d.samples_match)
                for d in old.detectors.detectors
            },
            {
                d.id: (d.kind, d.words, d.confidence, d.samples_match)
                for d in new.detectors.detectors
            },
        ),
    }
    for name, (before, after) in parts.items():
        diff = _diff(before, after)
        if diff:
            out[name] = diff
    if old.exemptions != new.exemptions:
        out["exemptions"] = {"before": len(old.exemptions), "after": len(new.exemptions)}
    if old.networks != new.networks:
        out["networks"] = {"before": len(old.networks), "after": len(new.networks)}
    for key in (
        "mode",
        "refuse_unlisted",
        "on_error",
        "on_unscannable",
        "on_budget_error",
        "timeout_seconds",
    ):
        if getattr(old, key) != getattr(new, key):
            out[key] = {"before": getattr(old, key), "after": getattr(new, key)}
    if old.limits != new.limits:
        out["limits"] = "changed"
    return out
