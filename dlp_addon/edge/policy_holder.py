"""Holds the policy in force: loads it, checks the scan engine, reloads it on change.

A reload builds the new policy completely before one assignment swaps it in: a request being
inspected keeps the policy it started with, and an invalid file leaves the last good policy in
force. Changes are noticed by polling the files (``dlp_reload_interval``) and on SIGHUP, which
also reopens the audit log after logrotate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from dlp_addon import __version__
from dlp_addon.about import commit, engines
from dlp_addon.decide.policy import DEFAULT_POLICY, Policy, load_policy
from dlp_addon.detect.engine import engine_for
from dlp_addon.edge.reporting import Reporting
from dlp_addon.edge.secret_file import read_secret
from dlp_addon.errors import PolicyError

logger = logging.getLogger(__name__)

ENGINES = ["compiled", "python"]  # dlp_engine's values

Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(files: tuple[Path, ...]) -> Fingerprint:
    """What the watcher compares: each file's name, inode, size and modification time. The
    inode tells a swapped symlink (a Kubernetes ConfigMap update) from an unchanged file."""
    out = []
    for path in files:
        try:
            st = path.stat()
            out.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(path), -1, -1, -1))
    return tuple(out)


@dataclass(frozen=True)
class PolicySettings:
    path: str = str(DEFAULT_POLICY)
    engine: str = "compiled"
    hmac_key_file: str = ""
    reload_interval: float = 1.0

    def hmac_key(self) -> bytes | None:
        """The admin's key: from ``dlp_hmac_key_file`` (read each time: a reload sees a new
        key), else ``$DLP_HMAC_KEY``."""
        if self.hmac_key_file:
            too_short = "dlp_hmac_key_file holds fewer than 16 bytes"
            return read_secret(self.hmac_key_file, "dlp_hmac_key_file", too_short)
        env = os.environ.get("DLP_HMAC_KEY", "")
        return env.encode() if env else None

    @property
    def scanner_engine(self) -> str:
        """The Scanner's ``engine`` for ``dlp_engine``: "compiled" takes the best there is."""
        return "python" if self.engine == "python" else "auto"


class PolicyHolder:
    """``policy`` is the one in force (``None`` until loaded: then nothing is allowed)."""

    def __init__(self, reporting: Reporting) -> None:
        self.settings = PolicySettings()
        self.policy: Policy | None = None
        self._reporting = reporting
        self._fingerprint: Fingerprint = ()
        self._watcher: asyncio.Task[None] | None = None
        self._hup_task: asyncio.Task[tuple[bool, list[str]]] | None = None

    def load(self, loader: Any) -> None:
        loader.add_option(
            "dlp_policy",
            str,
            PolicySettings.path,
            "Policy file (YAML). The proxy refuses to start if it is invalid.",
        )
        loader.add_option(
            "dlp_engine",
            str,
            PolicySettings.engine,
            "Scan engine. 'compiled': hyperscan and the C pass; without them a policy in "
            "mode: enforce is refused (monitor mode starts with a warning). 'python': the "
            "pure-Python engine, several times slower, for a host that cannot build the C pass.",
            choices=ENGINES,
        )
        loader.add_option(
            "dlp_hmac_key_file",
            str,
            PolicySettings.hmac_key_file,
            "File holding the key for the keyed hashes that stand for identifiers in audit "
            "events (and, later, budgets). Else $DLP_HMAC_KEY; else a random key per process.",
        )
        loader.add_option(
            "dlp_reload_interval",
            float,
            PolicySettings.reload_interval,
            "Seconds between checks of the policy file and the files it includes; a change "
            "reloads the policy (so does SIGHUP). 0 turns the check off.",
        )

    def configure(self, updated: set[str]) -> None:
        mine = {"dlp_policy", "dlp_engine", "dlp_hmac_key_file", "dlp_reload_interval"}
        if mine & updated:
            self.settings = PolicySettings(
                path=ctx.options.dlp_policy,
                engine=ctx.options.dlp_engine,
                hmac_key_file=ctx.options.dlp_hmac_key_file,
                reload_interval=ctx.options.dlp_reload_interval,
            )
        if {"dlp_policy", "dlp_hmac_key_file", "dlp_engine"} & updated:
            self.policy = self._load(self.settings.path)

    def ensure_policy(self) -> None:
        """Load the configured policy if no option change has done so yet."""
        if self.policy is None:
            self.policy = self._load(self.settings.path)

    def _load(self, path: str) -> Policy:
        try:
            policy = self._build(Path(path))
        except PolicyError as e:
            raise exceptions.OptionsError(
                f"invalid policy {path}:\n" + "\n".join(e.problems)
            ) from e
        self._installed(policy, "start")
        return policy

    def _build(self, path: Path) -> Policy:
        s = self.settings
        policy = load_policy(path, hmac_key=s.hmac_key(), engine=s.scanner_engine)
        self._check_engine(policy)
        return policy

    def _check_engine(self, policy: Policy) -> None:
        """Enforcing on the slow engine only when the admin chose it: without the C pass a
        proxy keeps working but inspects several times slower (timeouts, then fail-closed
        blocks under load), which must not happen silently after a broken install."""
        running = engine_for(policy).name
        if self.settings.engine != "compiled" or running == "hyperscan+c":
            return
        why = "; ".join(engines().why) or f"the scanner runs {running}"
        if policy.enforcing:
            raise exceptions.OptionsError(
                f"mode: enforce needs the compiled scan engine, and this installation lacks "
                f"it ({why}). Build it (gcc and libssl-dev, then reinstall; see docs/deploy.md) "
                "or run the slow pure-Python engine on purpose with --set dlp_engine=python"
            )
        logger.warning(
            "scan engine %s, not the compiled one (%s): monitor mode goes on, several times "
            "slower; mode: enforce will refuse to start like this",
            running,
            why,
        )

    def _installed(self, policy: Policy, trigger: str) -> None:
        self._fingerprint = fingerprint(policy.files)
        self._reporting.policy_loaded(policy, self.policy, trigger)

    def reload(self, trigger: str) -> tuple[bool, list[str]]:
        """Build the policy anew from its file; swap it in only if it is valid. The swap is
        one assignment: a request already being inspected keeps the policy it started with."""
        current = self.policy
        path = current.source if current else Path(self.settings.path)
        reloads = self._reporting.metrics.reloads
        try:
            policy = self._build(path)
        except PolicyError as e:
            reloads.labels("failure").inc()
            self._fingerprint = fingerprint(current.files if current else (path,))
            logger.error(
                "policy reload (%s) failed, the last good policy stays in force:\n%s",
                trigger,
                "\n".join(e.problems),
            )
            return False, e.problems
        except exceptions.OptionsError as e:
            reloads.labels("failure").inc()
            logger.error("policy reload (%s) failed: %s", trigger, e)
            return False, [str(e)]
        self._installed(policy, trigger)
        self.policy = policy
        reloads.labels("success").inc()
        return True, []

    async def _watch(self) -> None:
        """Reload when the policy file or a file it includes changes."""
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            policy = self.policy
            if policy is None:
                continue
            seen = await asyncio.to_thread(fingerprint, policy.files)
            if seen != self._fingerprint:
                await asyncio.to_thread(self.reload, "file change")

    def _hangup(self) -> None:
        """SIGHUP, the Unix way to say "files changed": reopen the audit log (logrotate renamed
        it), then reload the policy. The reopen comes first and on the loop, so the reload's
        ``policy_loaded`` event opens the new file."""
        self._reporting.audit.reopen()
        loop = asyncio.get_running_loop()
        self._hup_task = loop.create_task(asyncio.to_thread(self.reload, "SIGHUP"))

    def running(self) -> None:
        self.ensure_policy()
        if self.policy is not None:
            found = engines()
            logger.info(
                "dlp-proxy %s, commit %s: scan engine %s (hyperscan %s, C pass %s)",
                __version__,
                commit(),
                engine_for(self.policy).name,
                found.hyperscan or "missing",
                "built" if found.c_pass else "missing",
            )
        loop = asyncio.get_running_loop()
        if self.settings.reload_interval > 0:
            self._watcher = loop.create_task(self._watch())
        try:
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests), or Windows
            logger.debug("no SIGHUP handler")

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
