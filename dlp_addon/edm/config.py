"""The policy's ``edm:`` section, checked against the index it names (``file:line`` problems).

The index is opened when the policy loads, so a policy whose index is missing, damaged, built
with another key or without the fields the section names is refused whole, like any other
invalid policy (a reload keeps the last good one). The index file is one of the policy's
files: re-indexing replaces it, and the proxy reloads the policy with the new index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlp_addon.edm.fields import Keys
from dlp_addon.edm.index import EdmError, EdmIndex
from dlp_addon.edm.match import Matcher, Settings
from dlp_addon.sourcefile import SchemaCheck, SourceDoc, entries

DEFAULT_PROXIMITY = 100


def load_edm(
    doc: SourceDoc,
    data: dict[str, Any],
    check: SchemaCheck,
    hmac_key: bytes,
    problems: list[str],
) -> Matcher | None:
    """The section as a :class:`Matcher`, or ``None`` (no section, or problems reported)."""
    section = data.get("edm")
    if section is None:
        _uses_without_section(doc, data, problems)
        return None
    if not check.usable(["edm"]):
        return None
    path = Path(section["index"])
    if not path.is_absolute():
        path = doc.path.parent / path
    try:
        index = EdmIndex(path)
    except EdmError as e:
        problems.append(doc.at(["edm", "index"], str(e)))
        return None
    header = index.header
    if header.key_check != Keys(hmac_key).check:
        problems.append(
            doc.at(
                ["edm", "index"],
                f"{path} was built with another HMAC key: index it with the key in "
                "dlp_hmac_key_file (dlp-policy edm index --key-file)",
            )
        )
        return None
    have = {f.kind for f in header.fields}
    bad = len(problems)
    primary = section.get("primary", list(header.primary))
    for j, kind in enumerate(primary):
        if kind not in header.primary:
            problems.append(
                doc.at(
                    ["edm", "primary", j],
                    f"'{kind}' is not a primary field of {path.name} "
                    f"(its primary fields: {', '.join(header.primary)})",
                )
            )
    corroborating = section.get("corroborating", sorted(have))
    for j, kind in enumerate(corroborating):
        if kind not in have:
            problems.append(
                doc.at(
                    ["edm", "corroborating", j],
                    f"{path.name} has no '{kind}' field (it has: {', '.join(sorted(have))})",
                )
            )
    least = section.get("min_corroborating", 1)
    if least > len(set(corroborating)):
        problems.append(
            doc.at(["edm", "min_corroborating"], "more than the corroborating fields listed")
        )
    if len(problems) > bad:
        return None
    settings = Settings(
        primary=frozenset(primary),
        corroborating=frozenset(corroborating),
        proximity=section.get("proximity", DEFAULT_PROXIMITY),
        min_corroborating=least,
    )
    return Matcher(settings, header, index, hmac_key, path)


def _uses_without_section(doc: SourceDoc, data: dict[str, Any], problems: list[str]) -> None:
    """Rules and budgets that count EDM records need the section."""
    for i, rule in entries(data, "rules"):
        for j, cond in entries(rule, "when"):
            if "edm_records" in cond:
                where: list[str | int] = ["rules", i, "when", j, "edm_records"]
                problems.append(doc.at(where, "edm_records needs an edm: section"))
    for i, budget in entries(data, "budgets"):
        if budget.get("counts") == "edm_records":
            problems.append(doc.at(["budgets", i, "counts"], "needs an edm: section"))
