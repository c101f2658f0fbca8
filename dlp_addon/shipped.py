"""Where the data shipped inside the package lives.

``patterns/`` (the detectors, the default policy, their JSON Schemas, keyword lists) and the
HAProxy template ``dlp-workers`` renders are package data, so a wheel, an editable install
and a checkout all read the same files, found through ``importlib.resources``. They must be
plain files, as every pip install leaves them: the policy loader watches their modification
times and resolves a policy's relative paths (``detectors``, ``words_file``) against them.
An admin's own policy elsewhere (``--set dlp_policy=/etc/dlp/policy.yaml``) resolves its
relative paths against its own directory and still falls back to the shipped detectors.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from dlp_addon.errors import DlpError


def _plain(name: str) -> Path:
    where = files("dlp_addon") / name
    if not isinstance(where, Path):  # a zipped package: no mtimes, no relative paths
        raise DlpError(f"dlp_addon is not installed as plain files; cannot use {where}")
    return where


PATTERNS_DIR = _plain("patterns")
HAPROXY_TEMPLATE = _plain("haproxy.cfg")
