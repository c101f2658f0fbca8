"""The whole sans-proxy pipeline for one request or message: extract -> detect -> decide.

Used by the mitmproxy addon and by offline tools alike. Each stage's failure becomes the
policy's error verdict, naming the stage; nothing here raises for bad input. Exception messages
are not kept: they can quote the content (``int('110105...')``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dlp_addon.decide import early
from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.verdict import Verdict, decide, error_verdict
from dlp_addon.detect.checkpoint import checkpoint
from dlp_addon.detect.engine import engine_for
from dlp_addon.detect.scanner import Finding, ScanTimeout
from dlp_addon.edm.match import NO_MATCH
from dlp_addon.errors import ExtractError, OcrDeferred
from dlp_addon.extract.message import Extraction, HttpInput, extract_http, extract_ws

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WsInput:
    """One WebSocket message from the client, as the core needs it."""

    content: bytes
    is_text: bool


Message = HttpInput | WsInput


def size_of(message: Message) -> int:
    """The bytes ``message`` carries: what chooses where it is inspected."""
    return len(message.body if isinstance(message, HttpInput) else message.content)


def channel_of(message: Message) -> str:
    """The channel before extraction: ``websocket``, ``upload`` (a multipart form) or ``http``."""
    if isinstance(message, WsInput):
        return "websocket"
    multipart = message.headers.get("content-type", "").startswith("multipart/form-data")
    return "upload" if multipart else "http"


@dataclass(frozen=True)
class Inspection:
    """A verdict plus what it took: for metrics, never for the user."""

    verdict: Verdict
    channel: str
    text_chars: int
    error_stage: str | None
    seconds: float
    # What was found (keyed hashes, masked values): what cumulative budgets count.
    findings: tuple[Finding, ...] = ()
    # Keyed hashes of the customer-table records found (exact data match), for budgets.
    edm_keys: tuple[str, ...] = ()


def failed(policy: Policy, stage: str, channel: str, seconds: float = 0.0) -> Inspection:
    """The fail-closed answer for a message that could not be inspected at all."""
    return Inspection(error_verdict(policy, stage), channel, 0, stage, seconds)


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


def _run(
    policy: Policy,
    destination: str,
    default_channel: str,
    extract: Callable[[], Extraction],
    deadline: float,
    requester: Requester | None = None,
    seen: list[Extraction] | None = None,
) -> Inspection:
    started = time.monotonic()
    stage = "extract"
    channel = default_channel
    extraction: Extraction | None = None
    try:
        extraction = extract()
        if seen is not None:
            seen.append(extraction)
        if default_channel == "http" and extraction.files:
            channel = "upload"
        stage = "detect"
        until = deadline + extraction.ocr_seconds  # OCR's time is its own, on top of the rest
        with early.watching(
            policy,
            destination=destination,
            channel=channel,
            unscannable=extraction.unscannable,
            attachments=extraction.attachments,
            requester=requester,
        ):
            scanner = engine_for(policy).scanner
            findings = scanner.scan_all(extraction.parts, until)
            arrived: list[Finding] = []  # of the texts scanned as they came

            def ahead(location: str, pieces: Iterable[str]) -> str:
                text, found = scanner.scan_arriving(location, pieces, until)
                arrived.extend(found)
                scanned.add(location)
                return text

            while extraction.rest is not None:  # what a lazy extraction left for later
                # A block rule may hold already: then the rest is never read.
                checkpoint(_sure(findings, extraction, scanner.window))
                scanned = {location for location, _ in extraction.parts}
                extraction = extraction.rest(ahead)
                until = deadline + extraction.ocr_seconds  # pictures read in the rest
                if seen is not None:
                    seen[-1] = extraction
                kept = {location for location, _ in extraction.parts}  # previews are gone
                findings = [f for f in findings if f.location in kept] + arrived
                arrived = []
                new = [part for part in extraction.parts if part[0] not in scanned]
                findings += scanner.scan_all(new, until)
        edm = policy.edm.match(extraction.parts, findings, until) if policy.edm else NO_MATCH
        stage = "decide"
        verdict = decide(
            policy,
            findings,
            destination=destination,
            channel=channel,
            unscannable=extraction.unscannable,
            attachments=extraction.attachments,
            requester=requester,
            logged=extraction.logged,
            edm=edm,
        )
        return Inspection(
            verdict,
            channel,
            extraction.bytes_of_text,
            None,
            time.monotonic() - started,
            tuple(findings),
            edm.keys,
        )
    except OcrDeferred:
        raise  # the caller inspects the request again in a worker process
    except early.EarlyVerdict as e:  # a block rule held before the end: the rest left unread
        return Inspection(
            e.verdict,
            channel,
            extraction.bytes_of_text if extraction else 0,
            None,
            time.monotonic() - started,
        )
    except ExtractError as e:
        verdict = decide(
            policy,
            (),
            destination=destination,
            channel=channel,
            unscannable=[e.reason],
            requester=requester,
        )
        return Inspection(verdict, channel, 0, None, time.monotonic() - started)
    except ScanTimeout as e:
        # What was scanned before the deadline may already decide the block: then the incident
        # names the rule and the counts found so far ("at least"), not just a timeout.
        verdict = decide(
            policy,
            e.partial,
            destination=destination,
            channel=channel,
            attachments=extraction.attachments if extraction else (),
            requester=requester,
        )
        if not (verdict.blocks and verdict.reason == "findings"):
            # The partial findings may still be charged to budgets: with the same exemptions.
            verdict = dataclasses.replace(error_verdict(policy, "timeout"), exempt=verdict.exempt)
        else:
            verdict = dataclasses.replace(verdict, reason="findings:partial", complete=False)
        return Inspection(
            verdict, channel, 0, "timeout", time.monotonic() - started, tuple(e.partial)
        )
    except TimeoutError:
        return Inspection(
            error_verdict(policy, "timeout"), channel, 0, "timeout", time.monotonic() - started
        )
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as e:  # fail closed on anything else (a native panic too), say where
        logger.error("inspection failed at stage %s: %s at %s", stage, type(e).__name__, _where(e))
        return Inspection(
            error_verdict(policy, stage), channel, 0, stage, time.monotonic() - started
        )
    finally:
        if extraction is not None and extraction.discard is not None:
            extraction.discard()  # a workbook reader whose rest was not wanted is stopped


def _lazy(policy: Policy) -> bool:
    """Whether to leave what a long upload hides for after its text is scanned: only worth it
    when the scan may end early (the early verdict)."""
    return policy.early_verdict and policy.enforcing


def _sure(findings: list[Finding], extraction: Extraction, margin: int) -> list[Finding]:
    """``findings`` less those within ``margin`` characters of a preview's end: what follows
    in the whole text (a context word) could still change them."""
    if not extraction.previews:
        return findings
    ends = {loc: len(text) - margin for loc, text in extraction.parts if loc in extraction.previews}
    return [f for f in findings if f.location not in ends or f.end <= ends[f.location]]


def inspect_http(
    policy: Policy,
    req: HttpInput,
    destination: str,
    deadline: float | None = None,
    requester: Requester | None = None,
    seen: list[Extraction] | None = None,
) -> Inspection:
    """Inspect one HTTP request bound for ``destination``, sent by ``requester``. An offline
    tool that explains the verdict passes ``seen`` to get what was extracted."""
    if deadline is None:
        deadline = time.monotonic() + policy.timeout_seconds
    return _run(
        policy,
        destination,
        "http",
        lambda: extract_http(req, policy.limits, deadline, lazy=_lazy(policy)),
        deadline,
        requester or policy.requester(None, req.path),
        seen,
    )


def inspect_ws(
    policy: Policy,
    content: bytes,
    is_text: bool,
    destination: str,
    deadline: float | None = None,
    requester: Requester | None = None,
) -> Inspection:
    """Inspect one WebSocket message from the client."""
    if deadline is None:
        deadline = time.monotonic() + policy.timeout_seconds
    return _run(
        policy,
        destination,
        "websocket",
        lambda: extract_ws(content, is_text, policy.limits, deadline, lazy=_lazy(policy)),
        deadline,
        requester,
    )


def inspect_message(
    policy: Policy,
    message: Message,
    destination: str,
    deadline: float | None = None,
    requester: Requester | None = None,
) -> Inspection:
    """Inspect an HTTP request or a WebSocket message: the one entry the proxy uses."""
    if isinstance(message, WsInput):
        return inspect_ws(
            policy, message.content, message.is_text, destination, deadline, requester
        )
    return inspect_http(policy, message, destination, deadline, requester)
