"""Acting on a verdict: the audit trail, metrics, and what the blocked user sees."""
