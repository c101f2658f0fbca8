"""Decision: findings + policy + context -> verdict.

``policy`` loads and checks the admin's policy file; ``hosts`` matches hosts against the
allow-list; ``verdict`` turns what a request carried into block, log or allow.
"""

from dlp_addon.decide.policy import Destination, Policy, Rule, load_policy
from dlp_addon.decide.verdict import Verdict, decide, error_verdict

__all__ = ["Destination", "Policy", "Rule", "Verdict", "decide", "error_verdict", "load_policy"]
