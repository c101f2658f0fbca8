"""The mitmproxy edge: small addons, each with its own options and one job.

=================  ==========================================================================
``reporting``      metrics, the audit log, recent incidents (``dlp_audit_log``)
``policy_holder``  the policy in force: load, engine check, reload on change or SIGHUP
``budgets``        the budget store's options and life (``dlp_budget_*``)
``services``       metrics server and readiness, inspection processes, admin API, body limits
``egress``         the allow-list at every step a host is named; raw TCP/UDP killed
``inspector``      ``request`` and ``websocket_message`` through one path to the verdict
``flow_input``     a flow turned into the core's input (not an addon)
=================  ==========================================================================

:class:`DlpAddon` wires them together; mitmproxy loads an addon's ``addons`` with it, in that
order (configure: the audit log before the policy that writes to it).
"""

from __future__ import annotations

from dlp_addon.act.audit import AuditLog
from dlp_addon.act.metrics import Metrics
from dlp_addon.decide.policy import Policy
from dlp_addon.decision import Decider
from dlp_addon.edge.budgets import BudgetStoreService
from dlp_addon.edge.egress import Egress
from dlp_addon.edge.inspector import Inspector
from dlp_addon.edge.policy_holder import PolicyHolder
from dlp_addon.edge.reporting import Reporting
from dlp_addon.edge.services import Services
from dlp_addon.proxy_protocol import ProxyProtocol


class DlpAddon:
    """Refuse hosts off the allow-list; inspect requests and client WebSocket messages to the
    allowed ones; block or log by policy; audit and count every decision. Has no hooks of its
    own: its parts (``addons``) do the work."""

    def __init__(self) -> None:
        self.reporting = Reporting()
        self.policy_holder = PolicyHolder(self.reporting)
        self.budgets = BudgetStoreService(self.policy_holder, self.reporting)
        self.decider = Decider(lambda: self.budgets.keeper)
        self.services = Services(self.policy_holder, self.reporting, self.budgets, self.decider)
        self.egress = Egress(self.policy_holder, self.reporting)
        self.inspector = Inspector(self.policy_holder, self.reporting, self.egress, self.decider)
        # The client's real address (PROXY protocol) comes first.
        self.addons = [
            ProxyProtocol(),
            self.reporting,
            self.policy_holder,
            self.budgets,
            self.services,
            self.egress,
            self.inspector,
        ]

    @property
    def policy(self) -> Policy | None:
        return self.policy_holder.policy

    @property
    def metrics(self) -> Metrics:
        return self.reporting.metrics

    @property
    def audit(self) -> AuditLog:
        return self.reporting.audit

    def ensure_policy(self) -> None:
        """Load the configured policy if no option change has done so yet."""
        self.policy_holder.ensure_policy()
