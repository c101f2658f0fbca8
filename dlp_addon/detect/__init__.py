"""Detection: text parts -> validated findings.

``normalize`` folds the disguises people use (full-width digits, zero-width characters, odd
dashes); ``definitions`` loads detectors (``kinds``: numeric, regex or words) from
``patterns/detectors.yaml`` (package data: ``dlp_addon.shipped``); ``validators`` holds the
checks a detector can name (``checksums`` their arithmetic, ``validator_table`` which have C
twins); ``scanner`` runs them all: the keyword pass (``keywords``), the C pass (``native``, or
its Python twin ``candidates`` and ``plan``), the regexes (``regexes``), then ``assemble``.
"""

from dlp_addon.detect.definitions import Detector, load_detectors
from dlp_addon.detect.scanner import Finding, Scanner, ScanTimeout

__all__ = ["Detector", "Finding", "ScanTimeout", "Scanner", "load_detectors"]
