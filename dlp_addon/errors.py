"""The package's exception tree.

- ``DlpError``: base of everything the proxy raises on purpose.
  - ``PolicyError``: a policy or detector file is invalid; carries ``problems`` as
    ``file:line: message`` strings so an admin can fix them all in one pass.
  - ``ExtractError``: a body cannot be decoded or parsed (it is then unscannable).
    ``reason`` is a short, bounded label used in metrics and audit events.
    - ``OcrDeferred``: not a failure: a picture must be read, and this process (the proxy's
      event loop) leaves OCR to the inspection workers; the request is inspected again there.
      An ``ExtractError`` so that every layer that keeps a part's reason passes it up.
"""

from __future__ import annotations


class DlpError(Exception):
    """Base class for the proxy's own errors."""


class PolicyError(DlpError):
    """A policy or detector definition is invalid."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ExtractError(DlpError):
    """Content that cannot be read; ``reason`` is a bounded label (no content in it)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class OcrDeferred(ExtractError):
    """A picture to read met in the proxy's own process: inspect the request in a worker."""

    def __init__(self) -> None:
        super().__init__("ocr_deferred")
