"""Detection: text parts -> validated findings.

``normalize`` folds the disguises people use (full-width digits, zero-width characters, odd
dashes); ``validators`` holds the checksum and date checks a detector can name; ``definitions``
loads detectors from ``patterns/detectors.yaml`` (package data: ``dlp_addon.shipped``);
``scanner`` runs them all in one pass.
"""

from dlp_addon.detect.definitions import Detector, load_detectors
from dlp_addon.detect.scanner import Finding, Scanner, ScanTimeout

__all__ = ["Detector", "Finding", "ScanTimeout", "Scanner", "load_detectors"]
