"""What runs beside the hooks: the metrics server and readiness, the inspection processes, the
admin API; and the mitmproxy options the DLP needs set a certain way (bodies buffered and
bounded, no per-flow log lines with query values).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions

from dlp_addon.admin import AdminServer
from dlp_addon.decision import Decider
from dlp_addon.edge.budgets import BudgetStoreService
from dlp_addon.edge.policy_holder import PolicyHolder
from dlp_addon.edge.reporting import Reporting
from dlp_addon.edge.secret_file import read_secret
from dlp_addon.extract import ocr
from dlp_addon.inspect_pool import InspectionPool, pool_size

logger = logging.getLogger(__name__)

DEFAULT_BODY_SIZE_LIMIT = "64m"  # above the policy's default max_body_bytes (50 MiB)

OPTIONS = {
    "dlp_metrics_host",
    "dlp_metrics_port",
    "dlp_inspect_workers",
    "dlp_inspect_queue",
    "dlp_admin_port",
    "dlp_admin_host",
    "dlp_admin_token_file",
    "dlp_raw_flow_log",
}


@dataclass(frozen=True)
class ServiceSettings:
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    inspect_workers: int = 0  # inspection processes; -1: none (a thread)
    inspect_queue: int = 16
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    admin_token_file: str = ""
    raw_flow_log: bool = False

    def admin_token(self) -> bytes:
        if not self.admin_token_file:
            raise exceptions.OptionsError("dlp_admin_port needs dlp_admin_token_file")
        too_short = "the admin token must be at least 16 characters"
        return read_secret(self.admin_token_file, "dlp_admin_token_file", too_short)


class Services:
    """Starts and stops what the proxy runs besides its hooks."""

    def __init__(
        self,
        holder: PolicyHolder,
        reporting: Reporting,
        budgets: BudgetStoreService,
        decider: Decider,
    ) -> None:
        self.settings = ServiceSettings()
        self._holder = holder
        self._reporting = reporting
        self._budgets = budgets
        self._decider = decider
        self._admin: AdminServer | None = None
        self._admin_token: bytes | None = None

    def load(self, loader: Any) -> None:
        d = ServiceSettings
        add = loader.add_option
        add(
            "dlp_metrics_host",
            str,
            d.metrics_host,
            "Address the Prometheus /metrics endpoint binds to.",
        )
        add(
            "dlp_metrics_port",
            int,
            d.metrics_port,
            "Port of the Prometheus /metrics endpoint; 0 turns it off.",
        )
        add(
            "dlp_inspect_workers",
            int,
            d.inspect_workers,
            "Inspection worker processes for large bodies; 0 = half the CPUs the process may use "
            "(its cgroup CPU limit or affinity, whichever is smaller), at least 1; "
            "-1 = none, a thread of the proxy (its GIL then slows everyone). Read at start.",
        )
        add(
            "dlp_inspect_queue",
            int,
            d.inspect_queue,
            "Large requests that may wait for a busy inspection worker; the next one is "
            "refused at once (inspection error 'overload', fail closed).",
        )
        add(
            "dlp_admin_port",
            int,
            d.admin_port,
            "Port of the policy admin API; 0 (the default) is off.",
        )
        add("dlp_admin_host", str, d.admin_host, "Address the policy admin API binds to.")
        add(
            "dlp_admin_token_file",
            str,
            d.admin_token_file,
            "File holding the admin API's bearer token (required when the API is on).",
        )
        add(
            "dlp_raw_flow_log",
            bool,
            d.raw_flow_log,
            "Let mitmproxy print each flow (flow_detail > 0). Off by default: "
            "those lines carry full URLs with query values.",
        )

    def configure(self, updated: set[str]) -> None:
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            raise exceptions.OptionsError(
                "stream_large_bodies must stay unset with the DLP addon: a streamed request "
                "reaches the server before it can be inspected or blocked"
            )
        if OPTIONS & updated:
            o = ctx.options
            if not 0 <= o.dlp_metrics_port <= 65535:
                raise exceptions.OptionsError("dlp_metrics_port must be 0 (off) or a TCP port")
            self.settings = ServiceSettings(
                metrics_host=o.dlp_metrics_host,
                metrics_port=o.dlp_metrics_port,
                inspect_workers=o.dlp_inspect_workers,
                inspect_queue=o.dlp_inspect_queue,
                admin_host=o.dlp_admin_host,
                admin_port=o.dlp_admin_port,
                admin_token_file=o.dlp_admin_token_file,
                raw_flow_log=o.dlp_raw_flow_log,
            )
        if {"dlp_admin_port", "dlp_admin_token_file"} & updated and self.settings.admin_port:
            self._admin_token = self.settings.admin_token()
        if {"flow_detail", "dlp_raw_flow_log"} & updated:
            self._quiet_flow_log()

    def _quiet_flow_log(self) -> None:
        """mitmdump prints every URL with its query values: off unless the admin insists."""
        if "flow_detail" not in ctx.options:  # dlp-proxy loads no flow printer
            return
        if ctx.options.flow_detail > 0 and not self.settings.raw_flow_log:
            ctx.options.update(flow_detail=0)

    def running(self) -> None:
        self._quiet_flow_log()
        if not ctx.options.body_size_limit:  # unbounded bodies are unbounded memory
            ctx.options.update(body_size_limit=DEFAULT_BODY_SIZE_LIMIT)
        s, policy = self.settings, self._holder.policy
        if self._decider.pool is None and s.inspect_workers >= 0 and policy:
            pool = InspectionPool(pool_size(s.inspect_workers), max(s.inspect_queue, 0))
            pool.start(policy)
            ocr.defer_to_workers()  # pictures are read there, never on this event loop
            self._decider.pool = pool
        if s.metrics_port:
            self._reporting.metrics.serve(s.metrics_host, s.metrics_port, not_ready=self._not_ready)
        if s.admin_port and policy is not None:
            self._admin = AdminServer(
                host=s.admin_host,
                port=s.admin_port,
                token=self._admin_token or s.admin_token(),
                policy_path=policy.source,
                current=lambda: self._holder.policy,
                reload=self._holder.reload,
                audit=lambda: self._reporting.audit,
                incidents=lambda n: list(self._reporting.recent)[-n:],
            )
            self._admin.start()

    def _not_ready(self) -> str | None:
        """Why this proxy should get no traffic, or ``None`` (``/readyz``, from the metrics
        thread). A budget store it cannot use counts: every message with an identifier would
        get the policy's ``on_budget_error``, and a balancer does better to pick another."""
        if self._holder.policy is None:
            return "no policy loaded"
        pool = self._decider.pool
        if pool is not None and not pool.ready:
            return "no inspection worker yet"
        return self._budgets.problem()

    def done(self) -> None:
        if self._admin is not None:
            self._admin.stop()
        if self._decider.pool is not None:
            self._decider.pool.close()
            self._decider.pool = None
        self._reporting.metrics.stop()
