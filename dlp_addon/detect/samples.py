"""Every detector's own samples, run through the real scanner when a policy is loaded.

A detector that misses a ``samples.match`` example or finds a ``samples.no_match`` one does
not do what its author wrote down: it is a broken detector, and the policy holding it is
refused like one with a bad regex. The problem names the sample's ``file:line`` and never
echoes the sample itself (it may be a real-looking identifier); a finding in a ``no_match``
sample is shown masked.
"""

from __future__ import annotations

import time

from dlp_addon.detect.scanner import Scanner

# An admin's regex already passed the backtracking probes; this bounds a pathological sample.
_SAMPLE_SECONDS = 1.0


def sample_problems(scanner: Scanner) -> list[str]:
    """``file:line: message`` for each sample its detector gets wrong, in detector order."""
    problems = []
    for det in scanner.detectors:
        for sample in det.samples:
            deadline = time.monotonic() + _SAMPLE_SECONDS
            try:
                findings = scanner.scan(sample.text, "sample", deadline)
            except TimeoutError:  # ScanTimeout too
                problems.append(
                    f"{sample.at}: {sample.where}: '{det.id}' took over "
                    f"{_SAMPLE_SECONDS:g} s on this sample"
                )
                continue
            found = [f.masked for f in findings if f.detector == det.id]
            if sample.match and not found:
                problems.append(
                    f"{sample.at}: {sample.where}: '{det.id}' does not find this sample "
                    "it must match"
                )
            elif not sample.match and found:
                problems.append(
                    f"{sample.at}: {sample.where}: '{det.id}' finds {', '.join(found)} in this "
                    "sample it must not match"
                )
    return problems
