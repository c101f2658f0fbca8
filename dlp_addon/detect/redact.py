"""Mask identifiers in place: the text as written, each finding's span replaced by its masked
value (``客户 110105********002X``), everything else left as it was.

Spans come from the scanner in characters of the text as given, before folding, so a number
written with full-width digits, spaces or zero-width characters is replaced whole.
"""

from __future__ import annotations

from collections.abc import Iterable

from dlp_addon.detect.findings import Finding


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with every finding that has a span masked. Where spans overlap (a name at the
    start of an address), the one that starts first is shown masked and the rest of the
    other is starred: nothing of either is left as written."""
    spans = sorted(
        ((f.start, f.end, f.masked) for f in findings if 0 <= f.start < f.end <= len(text)),
        key=lambda s: (s[0], -s[1]),
    )
    out: list[str] = []
    done = 0
    for start, end, masked in spans:
        if start < done:  # overlaps one already masked: star what reaches beyond it
            if end > done:
                out.append("*" * (end - done))
                done = end
            continue
        out += [text[done:start], masked]
        done = end
    out.append(text[done:])
    return "".join(out)
