"""What the proxy tells about its decisions: metrics, the audit log, the recent incidents.

Owns ``dlp_audit_log`` and the :class:`Metrics` registry. Its writers never raise: they run
after a decision is enforced, and a failed audit must not undo a block (it is counted and
logged instead).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, http

from dlp_addon.act import logfilter
from dlp_addon.act.audit import AuditLog, decision_event, new_incident_id
from dlp_addon.act.metrics import Metrics
from dlp_addon.decide.changes import summarize
from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.verdict import ALLOW, BLOCK, Verdict, unlisted_verdict
from dlp_addon.detect.engine import engine_for
from dlp_addon.edge.flow_input import client, requester
from dlp_addon.pipeline import Inspection

logger = logging.getLogger(__name__)

OTHER = "other"  # the destination label of a host off the allow-list


def why(e: Exception) -> str:
    """An error in words that carry no request data (an OSError's reason, else its type)."""
    return e.strerror or type(e).__name__ if isinstance(e, OSError) else type(e).__name__


@dataclass(frozen=True)
class ReportingSettings:
    audit_log: str = "dlp-audit.jsonl"


class Reporting:
    """Counts and audits every decision; keeps the last 1,000 incidents for the admin API."""

    def __init__(self) -> None:
        self.settings = ReportingSettings()
        self.metrics = Metrics()
        self.audit = AuditLog(self.settings.audit_log)
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)

    def load(self, loader: Any) -> None:
        logfilter.install()
        loader.add_option(
            "dlp_audit_log",
            str,
            ReportingSettings.audit_log,
            "Audit log, one JSON line per decision that is not a plain allow; "
            "'-' writes to stderr.",
        )

    def configure(self, updated: set[str]) -> None:
        if "dlp_audit_log" in updated:
            self.settings = ReportingSettings(audit_log=ctx.options.dlp_audit_log)
            self.audit.close()
            self.audit = AuditLog(self.settings.audit_log)

    def done(self) -> None:
        self.audit.close()

    def record(self, ins: Inspection, destination: str, size: int) -> None:
        """Metrics of one inspection; never raises (the decision is enforced after it)."""
        try:
            self._count(ins, destination, size)
        except Exception as e:
            logger.error("metrics update failed: %s", type(e).__name__)

    def _count(self, ins: Inspection, destination: str, size: int) -> None:
        m = self.metrics
        v = ins.verdict
        if ins.channel == "websocket":
            m.ws_messages.labels(destination).inc()
        else:
            m.requests.labels(destination, ins.channel).inc()
        m.bytes.labels(ins.channel).inc(size)
        m.latency.labels(ins.channel).observe(ins.seconds)
        for detector, n in v.counts.items():
            m.findings.labels(detector).inc(n)
        if ins.error_stage:
            m.errors.labels(ins.error_stage).inc()
        for kind in v.unscannable:
            m.unscannable.labels(kind).inc()
        if v.action != ALLOW:
            action = v.action if v.enforced or v.action != BLOCK else "would_block"
            m.decisions.labels(action, v.rule or "", destination).inc()
        if v.budget is not None and v.budget.get("tripped"):
            b_action = str(v.budget["action"])
            if b_action == BLOCK and not v.enforced:
                b_action = "would_block"
            m.budget_trips.labels(str(v.budget["name"]), b_action).inc()

    def count_refusal(self, flow: http.HTTPFlow, policy: Policy) -> str:
        """Count and audit one refusal by the allow-list; its incident id."""
        verdict = unlisted_verdict()
        incident = new_incident_id()
        self.metrics.decisions.labels(verdict.action, verdict.rule or "", OTHER).inc()
        who = requester(policy, flow)
        self.decision(flow, verdict, incident, OTHER, "http", policy, who)
        return incident

    def decision(
        self,
        flow: http.HTTPFlow,
        verdict: Verdict,
        incident: str,
        destination: str,
        channel: str,
        policy: Policy,
        who: Requester,
    ) -> None:
        """Write the audit event and its log line; never raises (the decision is enforced
        already), counts and logs a failure instead."""
        try:
            event = decision_event(
                verdict,
                incident_id=incident,
                client=client(flow) or "",
                destination=destination,
                host=flow.request.host,
                method=flow.request.method,
                path=flow.request.path,
                channel=channel,
                policy_version=policy.version,
                user=who.user,
                groups=who.groups,
                identity=who.source,
            )
            self.recent.append(event)
            self.audit.write(event)
        except Exception as e:
            self.metrics.audit_failures.inc()
            logger.error("cannot write audit event %s: %s", incident, why(e))
        logger.warning(
            "%s%s rule=%s destination=%s channel=%s incident=%s counts=%s",
            verdict.action,
            "" if verdict.enforced else " (monitor: not enforced)",
            verdict.rule,
            destination,
            channel,
            incident,
            verdict.counts,
        )

    def policy_loaded(self, policy: Policy, previous: Policy | None, trigger: str) -> None:
        """Publish a new policy: metrics, the log, and the audit trail with what changed."""
        self.metrics.set_policy(policy)
        logger.info(
            "policy %s loaded (%s): version %s, mode %s, %d destinations, %d rules, scan engine %s",
            policy.source,
            trigger,
            policy.version,
            policy.mode,
            len(policy.destinations),
            len(policy.rules),
            engine_for(policy).name,
        )
        event = {
            "event": "policy_loaded",
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "trigger": trigger,
            "path": str(policy.source),
            "policy_version": policy.version,
            "previous_version": previous.version if previous else None,
            "changes": summarize(previous, policy),
        }
        try:
            self.audit.write(event)
        except Exception as e:  # a warning, not an error: mitmproxy exits on errors at start
            self.metrics.audit_failures.inc()
            logger.warning("cannot write audit log %s: %s", self.audit.path, why(e))
