"""The names a policy defines (destinations, groups, detectors it refused), for checking the
references its sections make to them, and the order its problems are reported in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlp_addon.sourcefile import SchemaCheck, SourceDoc, entries


@dataclass(frozen=True)
class Known:
    """Names a policy defines, for checking references to them. ``None``: the schema refused
    that section, so references to it cannot be checked (and are not reported)."""

    destinations: set[str] | None
    groups: set[str] | None
    detectors_unchecked: frozenset[str]  # defined, but refused: not reported as unknown

    def check(
        self,
        doc: SourceDoc,
        where: list[str | int],
        what: str,
        name: object,
        problems: list[str],
    ) -> None:
        """Report ``name`` at ``where`` when it is no known ``what`` (destination or group)."""
        names = self.destinations if what == "destination" else self.groups
        if names is not None and name not in names:
            problems.append(doc.at(where, f"unknown {what} '{name}'"))


def names_in(data: dict[str, Any], key: str, check: SchemaCheck) -> set[str] | None:
    """Every name listed under ``key`` (including entries refused for other reasons), or
    ``None`` when the list itself was refused."""
    if not check.whole([key]) or not isinstance(data.get(key, []), list):
        return None
    return {raw["name"] for _, raw in entries(data, key) if isinstance(raw.get("name"), str)}


def group_names(data: dict[str, Any], check: SchemaCheck) -> set[str] | None:
    groups = data.get("groups", {})
    return set(groups) if check.whole(["groups"]) and isinstance(groups, dict) else None


def in_file_order(doc: SourceDoc, problems: list[str]) -> list[str]:
    """The policy file's problems by line (schema and meaning interleaved, as an admin reads
    the file), then those of other files in the order found."""
    prefix = f"{doc.path}:"

    def line(problem: str) -> float:
        if not problem.startswith(prefix):
            return float("inf")
        number = problem[len(prefix) :].split(":", 1)[0]
        return int(number) if number.isdigit() else float("inf")

    return sorted(problems, key=line)
