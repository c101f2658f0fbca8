"""Prometheus metrics on their own registry, served on an explicit address.

Label values come from bounded sets only: destination and rule names from the policy (or
``other``), channels, detector ids, actions, stages, unscannable kinds. Never a user, a URL,
a host outside the policy or a matched value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    make_wsgi_app,
)

from dlp_addon import __version__
from dlp_addon.about import commit
from dlp_addon.decide.policy import Policy
from dlp_addon.detect.engine import engine_for

logger = logging.getLogger(__name__)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds are not news


_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """Every metric the proxy exports."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total
        self.requests = Counter(
            "dlp_requests_inspected_total",
            "HTTP requests to allowed destinations that were inspected",
            ["destination", "channel"],
            registry=r,
        )
        self.ws_messages = Counter(
            "dlp_websocket_messages_inspected_total",
            "WebSocket messages from clients that were inspected",
            ["destination"],
            registry=r,
        )
        self.bytes = Counter(
            "dlp_inspected_bytes_total",
            "Bytes of request bodies and messages inspected (as sent)",
            ["channel"],
            registry=r,
        )
        self.findings = Counter(
            "dlp_findings_total",
            "Distinct identifiers found, by detector",
            ["detector"],
            registry=r,
        )
        self.decisions = Counter(
            "dlp_decisions_total",
            "Decisions other than a plain allow: block, log, would_block "
            "(monitor mode), refuse (host not allowed)",
            ["action", "rule", "destination"],
            registry=r,
        )
        self.tls_client_failures = Counter(
            "dlp_tls_client_failures_total",
            "Clients that refused the proxy's certificate (apps that pin theirs, or a desktop "
            "without the CA), by allowed destination ('other' for the rest)",
            ["destination"],
            registry=r,
        )
        self.unscannable = Counter(
            "dlp_unscannable_total",
            "Content that could not be inspected, by kind",
            ["reason"],
            registry=r,
        )
        self.audit_failures = Counter(
            "dlp_audit_write_failures_total",
            "Audit events that could not be written (the decision was still enforced)",
            registry=r,
        )
        self.errors = Counter(
            "dlp_inspection_errors_total",
            "Inspections that failed (and so were given the error action)",
            ["stage"],
            registry=r,
        )
        self.latency = Histogram(
            "dlp_inspection_seconds",
            "Time spent inspecting one request or message",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "dlp_inspections_in_flight", "Requests and messages being inspected now", registry=r
        )
        self.reloads = Counter(
            "dlp_policy_reloads_total",
            "Policy reloads, by result: success, or failure (the last good policy stays)",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self.policy_info = Gauge(
            "dlp_policy_info", "The policy in force (value 1)", ["version", "mode"], registry=r
        )
        self.budget_trips = Counter(
            "dlp_budget_trips_total",
            "Messages that took a user or group past a cumulative budget, by budget and action "
            "(block, log, would_block in monitor mode)",
            ["budget", "action"],
            registry=r,
        )
        self.budget_store_errors = Counter(
            "dlp_budget_store_errors_total",
            "Budget store calls that failed or timed out (the policy's on_budget_error applied)",
            ["backend"],
            registry=r,
        )
        self.budget_store_seconds = Histogram(
            "dlp_budget_store_seconds",
            "Time one message's budget check took in the store",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        build = Gauge(
            "dlp_build_info",
            "Version of the proxy and the commit it was built from (value 1)",
            ["version", "commit"],
            registry=r,
        )
        build.labels(__version__, commit()).set(1)
        self.engine_info = Gauge(
            "dlp_scan_engine_info",
            "The scan engine inspecting (value 1): hyperscan+c (compiled), hyperscan+python "
            "(the C pass missing) or python",
            ["engine"],
            registry=r,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def set_policy(self, policy: Policy) -> None:
        """Publish the policy version and pre-create the series rules will move."""
        self.policy_info.clear()
        self.policy_info.labels(policy.version, policy.mode).set(1)
        self.engine_info.clear()
        self.engine_info.labels(engine_for(policy).name).set(1)
        names = [d.name for d in policy.destinations]
        for rule in policy.rules:
            action = rule.action if policy.enforcing or rule.action != "block" else "would_block"
            for dest in sorted(rule.destinations or names):
                self.decisions.labels(action, rule.name, dest)
        for det in policy.detectors.detectors:
            self.findings.labels(det.id)
        for stage in (
            *("extract", "detect", "decide", "timeout", "addon", "streamed"),
            *("overload", "worker"),  # the inspection workers: all busy, or one died
        ):
            self.errors.labels(stage)
        for reason in (
            *("encrypted", "zip_bomb", "too_large", "corrupt", "opaque", "multipart"),
            *("ocr_timeout", "ocr_too_large", "ocr_unavailable"),  # pictures (extract/ocr.py)
        ):
            self.unscannable.labels(reason)
        self.decisions.labels("refuse", "egress-allowlist", "other")
        for channel in ("http", "upload", "websocket"):
            self.latency.labels(channel)
            self.bytes.labels(channel)
        for budget in policy.budgets:
            enforced = policy.enforcing or budget.action != "block"
            self.budget_trips.labels(budget.name, budget.action if enforced else "would_block")
        for dest in (*names, "other"):
            self.tls_client_failures.labels(dest)
        for dest in names:
            self.ws_messages.labels(dest)
            for channel in ("http", "upload"):
                self.requests.labels(dest, channel)

    def serve(self, host: str, port: int, not_ready: Callable[[], str | None]) -> None:
        """Serve ``/metrics``, ``/healthz`` (the process answers) and ``/readyz`` (a policy is
        loaded and the proxy can inspect: ``not_ready`` says why not, or ``None``) on
        ``host:port`` in a daemon thread."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            if path == "/readyz":
                why = not_ready()
                start_response(
                    "503 Service Unavailable" if why else "200 OK",
                    [("Content-Type", "text/plain")],
                )
                return [f"not ready: {why}\n".encode() if why else b"ready\n"]
            if path in ("/metrics", "/"):
                result: Iterable[bytes] = metrics_app(environ, start_response)
                return result
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]

        server = make_server(host, port, app, _ThreadingServer, _QuietHandler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        logger.info("metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
