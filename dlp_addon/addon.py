"""The mitmproxy edge: hooks only. Parsing, detection and decisions live in the core.

Load with ``dlp-proxy`` (mitmdump with this addon) or ``mitmdump -s dlp_addon/addon.py``.
Every hook that inspects catches its own failures and turns them into the policy's error action:
mitmproxy itself would log an addon's exception and let the flow through (fail open).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from mitmproxy import connection, ctx, exceptions, http, tcp, tls, udp, websocket
from mitmproxy.proxy import server_hooks

from dlp_addon import __version__
from dlp_addon.about import commit, engines
from dlp_addon.act import logfilter
from dlp_addon.act.audit import AuditLog, decision_event, new_incident_id
from dlp_addon.act.metrics import Metrics
from dlp_addon.act.pages import block_body, detector_names, wants_json, ws_notice
from dlp_addon.admin import AdminServer
from dlp_addon.decide.changes import summarize
from dlp_addon.decide.policy import DEFAULT_POLICY, Policy, Requester, load_policy
from dlp_addon.decide.verdict import (
    ALLOW,
    BLOCK,
    Verdict,
    decide,
    error_verdict,
    unlisted_verdict,
)
from dlp_addon.errors import OcrDeferred, PolicyError
from dlp_addon.extract import ocr
from dlp_addon.extract.message import HttpInput
from dlp_addon.offload import InspectionPool, pool_size
from dlp_addon.pipeline import Inspection, inspect_http, inspect_ws
from dlp_addon.proxy_protocol import ProxyProtocol
from dlp_addon.state import open_store
from dlp_addon.state.keeper import BudgetKeeper

logger = logging.getLogger(__name__)

_DEST_KEY = "dlp_destination"
ENGINES = ["compiled", "python"]  # dlp_engine's values
DEFAULT_BODY_SIZE_LIMIT = "64m"  # above the policy's default max_body_bytes (50 MiB)
OTHER = "other"


_PLAIN_REFUSAL = b"Blocked: this site is not on the allow-list (data-loss prevention).\n"


def _block_response(
    flow: http.HTTPFlow, verdict: Verdict, incident: str, policy: Policy
) -> http.Response:
    """The 403 a blocked request gets: the block page, or a plain one if rendering fails."""
    headers = {"X-DLP-Incident": incident, "Cache-Control": "no-store"}
    try:
        body, ctype = block_body(
            verdict,
            incident,
            policy.contact,
            as_json=wants_json(_headers(flow.request.headers)),
            names=detector_names(policy),
        )
    except Exception as e:
        logger.error("block page failed, plain block sent: %s", type(e).__name__)
        body = f"Blocked by data-loss prevention. Incident {incident}\n".encode()
        ctype = "text/plain; charset=utf-8"
    return http.Response.make(403, body, {"Content-Type": ctype, **headers})


def _why(e: Exception) -> str:
    """An error in words that carry no request data (an OSError's reason, else its type)."""
    return e.strerror or type(e).__name__ if isinstance(e, OSError) else type(e).__name__


def _headers(h: http.Headers) -> dict[str, str]:
    """Every header, repeated ones joined; HTTP/2 sends each cookie as a field of its own,
    joined with ``; `` as in HTTP/1 so each stays one cookie for the extractor."""
    out: dict[str, str] = {}
    for name, value in h.fields:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        sep = "; " if key == "cookie" else ", "
        out[key] = f"{out[key]}{sep}{val}" if key in out else val
    return out


def _host_only(authority: str) -> str:
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _channel(req: HttpInput) -> str:
    multipart = req.headers.get("content-type", "").startswith("multipart/form-data")
    return "upload" if multipart else "http"


def _user(flow: http.HTTPFlow) -> str | None:
    """The user name from mitmproxy's proxy authentication, if it ran."""
    auth = flow.metadata.get("proxyauth")
    return str(auth[0]) if isinstance(auth, tuple | list) and auth else None


def _client(flow: http.HTTPFlow) -> str | None:
    return str(flow.client_conn.peername[0]) if flow.client_conn.peername else None


def _requester(policy: Policy, flow: http.HTTPFlow) -> Requester:
    """Who sent ``flow``: the proxy login, else the policy's address map, else the address."""
    return policy.requester(_user(flow), flow.request.path, _client(flow))


def _fingerprint(files: tuple[Path, ...]) -> tuple[tuple[str, int, int, int], ...]:
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


class DlpAddon:
    """Refuse hosts off the allow-list; inspect requests and client WebSocket messages to the
    allowed ones; block or log by policy; audit and count every decision."""

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.metrics = Metrics()
        self.audit = AuditLog("dlp-audit.jsonl")
        self._fingerprint: tuple[tuple[str, int, int, int], ...] = ()
        self._watcher: asyncio.Task[None] | None = None
        self._admin: AdminServer | None = None
        self._admin_token: bytes | None = None
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        # mitmproxy loads an addon's ``addons`` with it: the client's real address comes first.
        self.addons = [ProxyProtocol()]
        self._keeper: BudgetKeeper | None = None
        self._redis_password: str | None = None
        self._pruner: asyncio.Task[None] | None = None
        # Client connections whose CONNECT named a host off the allow-list -> incident id.
        self._refused_tunnels: dict[str, str] = {}
        self._pool: InspectionPool | None = None
        self._hup_task: asyncio.Task[tuple[bool, list[str]]] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        logfilter.install()
        loader.add_option(
            "dlp_policy",
            str,
            str(DEFAULT_POLICY),
            "Policy file (YAML). The proxy refuses to start if it is invalid.",
        )
        loader.add_option(
            "dlp_engine",
            str,
            "compiled",
            "Scan engine. 'compiled': hyperscan and the C pass; without them a policy in "
            "mode: enforce is refused (monitor mode starts with a warning). 'python': the "
            "pure-Python engine, several times slower, for a host that cannot build the C pass.",
            choices=ENGINES,
        )
        loader.add_option(
            "dlp_metrics_host",
            str,
            "127.0.0.1",
            "Address the Prometheus /metrics endpoint binds to.",
        )
        loader.add_option(
            "dlp_metrics_port",
            int,
            9464,
            "Port of the Prometheus /metrics endpoint; 0 turns it off.",
        )
        loader.add_option(
            "dlp_audit_log",
            str,
            "dlp-audit.jsonl",
            "Audit log, one JSON line per decision that is not a plain allow; "
            "'-' writes to stderr.",
        )
        loader.add_option(
            "dlp_hmac_key_file",
            str,
            "",
            "File holding the key for the keyed hashes that stand for identifiers in audit "
            "events (and, later, budgets). Else $DLP_HMAC_KEY; else a random key per process.",
        )
        loader.add_option(
            "dlp_inline_max_bytes",
            int,
            65536,
            "Bodies and WebSocket messages up to this size are inspected on the event loop; "
            "larger ones in the inspection worker processes under the policy's timeout.",
        )
        loader.add_option(
            "dlp_inspect_workers",
            int,
            0,
            "Inspection worker processes for large bodies; 0 = half the CPUs the process may use "
            "(its cgroup CPU limit or affinity, whichever is smaller), at least 1; "
            "-1 = none, a thread of the proxy (its GIL then slows everyone). Read at start.",
        )
        loader.add_option(
            "dlp_inspect_queue",
            int,
            16,
            "Large requests that may wait for a busy inspection worker; the next one is "
            "refused at once (inspection error 'overload', fail closed).",
        )
        loader.add_option(
            "dlp_ws_max_message_bytes",
            int,
            4 * 1024 * 1024,
            "Largest WebSocket message inspected; a larger one is unscannable (too_large) and "
            "handled by the policy's on_unscannable (dropped, with a notice, by default).",
        )
        loader.add_option(
            "dlp_reload_interval",
            float,
            1.0,
            "Seconds between checks of the policy file and the files it includes; a change "
            "reloads the policy (so does SIGHUP). 0 turns the check off.",
        )
        loader.add_option(
            "dlp_admin_port", int, 0, "Port of the policy admin API; 0 (the default) is off."
        )
        loader.add_option(
            "dlp_admin_host", str, "127.0.0.1", "Address the policy admin API binds to."
        )
        loader.add_option(
            "dlp_admin_token_file",
            str,
            "",
            "File holding the admin API's bearer token (required when the API is on).",
        )
        loader.add_option(
            "dlp_budget_db",
            str,
            "dlp-budgets.sqlite",
            "SQLite file (WAL mode) keeping the policy's cumulative budgets across restarts; "
            "used when dlp_budget_redis is empty.",
        )
        loader.add_option(
            "dlp_budget_redis",
            str,
            "",
            "Redis URL (redis://host:port/db) for budgets shared by several proxy instances; "
            "needs the same dlp_hmac_key_file or $DLP_HMAC_KEY on every instance.",
        )
        loader.add_option(
            "dlp_budget_redis_password_file",
            str,
            "",
            "File holding the password of dlp_budget_redis (Redis requirepass or ACL user), "
            "so it stays off the command line and out of the URL.",
        )
        loader.add_option(
            "dlp_raw_flow_log",
            bool,
            False,
            "Let mitmproxy print each flow (flow_detail > 0). Off by default: "
            "those lines carry full URLs with query values.",
        )

    def configure(self, updated: set[str]) -> None:
        if "dlp_audit_log" in updated:  # first: loading a policy writes to the audit log
            self.audit.close()
            self.audit = AuditLog(ctx.options.dlp_audit_log)
        if {"dlp_policy", "dlp_hmac_key_file", "dlp_engine"} & updated:
            self.policy = self._load_policy(ctx.options.dlp_policy)
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            raise exceptions.OptionsError(
                "stream_large_bodies must stay unset with the DLP addon: a streamed request "
                "reaches the server before it can be inspected or blocked"
            )
        if {"flow_detail", "dlp_raw_flow_log"} & updated:
            self._quiet_flow_log()
        if {"dlp_admin_port", "dlp_admin_token_file"} & updated and ctx.options.dlp_admin_port:
            self._admin_token = self._read_admin_token()
        budget_options = {"dlp_budget_db", "dlp_budget_redis", "dlp_budget_redis_password_file"}
        if (budget_options | {"dlp_hmac_key_file"}) & updated:
            if ctx.options.dlp_budget_redis and self._hmac_key() is None:
                raise exceptions.OptionsError(
                    "dlp_budget_redis needs dlp_hmac_key_file or $DLP_HMAC_KEY: instances "
                    "sharing budgets must hash identifiers with the same key"
                )
            self._redis_password = self._read_redis_password()
            if self._keeper is not None:
                self._keeper.close()
            self._keeper = None
        if "dlp_metrics_port" in updated and not 0 <= ctx.options.dlp_metrics_port <= 65535:
            raise exceptions.OptionsError("dlp_metrics_port must be 0 (off) or a TCP port")

    @staticmethod
    def _quiet_flow_log() -> None:
        """mitmdump prints every URL with its query values: off unless the admin insists."""
        if "flow_detail" not in ctx.options:  # dlp-proxy loads no flow printer
            return
        if ctx.options.flow_detail > 0 and not ctx.options.dlp_raw_flow_log:
            ctx.options.update(flow_detail=0)

    def ensure_policy(self) -> None:
        """Load the configured policy if no option change has done so yet."""
        if self.policy is None:
            self.policy = self._load_policy(ctx.options.dlp_policy)

    @staticmethod
    def _read_admin_token() -> bytes:
        path = ctx.options.dlp_admin_token_file
        if not path:
            raise exceptions.OptionsError("dlp_admin_port needs dlp_admin_token_file")
        try:
            token = Path(path).read_bytes().strip()
        except OSError as e:
            raise exceptions.OptionsError(f"cannot read dlp_admin_token_file: {e.strerror}") from e
        if len(token) < 16:
            raise exceptions.OptionsError("the admin token must be at least 16 characters")
        return token

    def _start_admin(self) -> None:
        policy = self.policy
        assert policy is not None
        self._admin = AdminServer(
            host=ctx.options.dlp_admin_host,
            port=ctx.options.dlp_admin_port,
            token=self._admin_token or self._read_admin_token(),
            policy_path=policy.source,
            current=lambda: self.policy,
            reload=self.reload,
            audit=lambda: self.audit,
            incidents=lambda n: list(self._recent)[-n:],
        )
        self._admin.start()

    @staticmethod
    def _hmac_key() -> bytes | None:
        """The admin's key: from ``dlp_hmac_key_file``, else ``$DLP_HMAC_KEY``."""
        if ctx.options.dlp_hmac_key_file:
            try:
                key = Path(ctx.options.dlp_hmac_key_file).read_bytes().strip()
            except OSError as e:
                raise exceptions.OptionsError(f"cannot read dlp_hmac_key_file: {e.strerror}") from e
            if len(key) < 16:
                raise exceptions.OptionsError("dlp_hmac_key_file holds fewer than 16 bytes")
            return key
        env = os.environ.get("DLP_HMAC_KEY", "")
        return env.encode() if env else None

    @staticmethod
    def _read_redis_password() -> str | None:
        path = ctx.options.dlp_budget_redis_password_file
        if not path:
            return None
        try:
            password = Path(path).read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise exceptions.OptionsError(
                f"cannot read dlp_budget_redis_password_file: {why}"
            ) from e
        if not password:
            raise exceptions.OptionsError("dlp_budget_redis_password_file is empty")
        return password

    def _new_keeper(self) -> BudgetKeeper:
        url, db = ctx.options.dlp_budget_redis, ctx.options.dlp_budget_db
        password = self._redis_password
        backend = "redis" if url else "sqlite"
        return BudgetKeeper(
            lambda: open_store(url, db, password),
            backend,
            on_store_error=self.metrics.budget_store_errors.labels(backend).inc,
            on_store_time=self.metrics.budget_store_seconds.labels(backend).observe,
        )

    @property
    def budgets(self) -> BudgetKeeper:
        if self._keeper is None:
            self._keeper = self._new_keeper()
        return self._keeper

    async def _prune(self) -> None:
        """Hourly: drop identifiers that have left every budget window."""
        while True:
            if self.policy is not None:
                await self.budgets.prune(self.policy)
            await asyncio.sleep(3600)

    def _start_budgets(self) -> None:
        if self.policy is None or not self.policy.budgets:
            return
        if self._hmac_key() is None:
            logger.warning(
                "budgets without dlp_hmac_key_file or $DLP_HMAC_KEY: identifiers hash with a "
                "per-process key, so the same ID sent again after a restart counts again"
            )
        self.budgets.open()
        self._pruner = asyncio.get_running_loop().create_task(self._prune())

    def _load_policy(self, path: str) -> Policy:
        try:
            policy = load_policy(Path(path), hmac_key=self._hmac_key(), engine=self._engine())
        except PolicyError as e:
            raise exceptions.OptionsError(
                f"invalid policy {path}:\n" + "\n".join(e.problems)
            ) from e
        self._check_engine(policy)
        self._installed(policy, "start")
        return policy

    @staticmethod
    def _engine() -> str:
        """The Scanner's ``engine`` for ``dlp_engine``: "compiled" takes the best there is."""
        return "python" if ctx.options.dlp_engine == "python" else "auto"

    @staticmethod
    def _check_engine(policy: Policy) -> None:
        """Enforcing on the slow engine only when the admin chose it: without the C pass a
        proxy keeps working but inspects several times slower (timeouts, then fail-closed
        blocks under load), which must not happen silently after a broken install."""
        running = policy.scanner.engine
        if ctx.options.dlp_engine != "compiled" or running == "hyperscan+c":
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
        """Publish a new policy: metrics, the log, and the audit trail with what changed."""
        previous = self.policy
        self.metrics.set_policy(policy)
        self._fingerprint = _fingerprint(policy.files)
        logger.info(
            "policy %s loaded (%s): version %s, mode %s, %d destinations, %d rules, scan engine %s",
            policy.source,
            trigger,
            policy.version,
            policy.mode,
            len(policy.destinations),
            len(policy.rules),
            policy.scanner.engine,
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
            logger.warning("cannot write audit log %s: %s", self.audit.path, _why(e))

    def reload(self, trigger: str) -> tuple[bool, list[str]]:
        """Build the policy anew from its file; swap it in only if it is valid. The swap is
        one assignment: a request already being inspected keeps the policy it started with."""
        current = self.policy
        path = current.source if current else Path(ctx.options.dlp_policy)
        try:
            policy = load_policy(path, hmac_key=self._hmac_key(), engine=self._engine())
            self._check_engine(policy)
        except PolicyError as e:
            self.metrics.reloads.labels("failure").inc()
            self._fingerprint = _fingerprint(current.files if current else (path,))
            logger.error(
                "policy reload (%s) failed, the last good policy stays in force:\n%s",
                trigger,
                "\n".join(e.problems),
            )
            return False, e.problems
        except exceptions.OptionsError as e:
            self.metrics.reloads.labels("failure").inc()
            logger.error("policy reload (%s) failed: %s", trigger, e)
            return False, [str(e)]
        self._installed(policy, trigger)
        self.policy = policy
        self.metrics.reloads.labels("success").inc()
        return True, []

    async def _watch(self) -> None:
        """Reload when the policy file or a file it includes changes."""
        while True:
            await asyncio.sleep(ctx.options.dlp_reload_interval)
            policy = self.policy
            if policy is None:
                continue
            seen = await asyncio.to_thread(_fingerprint, policy.files)
            if seen != self._fingerprint:
                await asyncio.to_thread(self.reload, "file change")

    def _hangup(self) -> None:
        """SIGHUP, the Unix way to say "files changed": reopen the audit log (logrotate renamed
        it), then reload the policy. The reopen comes first and on the loop, so the reload's
        ``policy_loaded`` event opens the new file."""
        self.audit.reopen()
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
                self.policy.scanner.engine,
                found.hyperscan or "missing",
                "built" if found.c_pass else "missing",
            )
        self._quiet_flow_log()
        if not ctx.options.body_size_limit:  # unbounded bodies are unbounded memory
            ctx.options.update(body_size_limit=DEFAULT_BODY_SIZE_LIMIT)
        if self._pool is None and ctx.options.dlp_inspect_workers >= 0 and self.policy:
            self._pool = InspectionPool(
                pool_size(ctx.options.dlp_inspect_workers),
                max(ctx.options.dlp_inspect_queue, 0),
            )
            self._pool.start(self.policy)
            ocr.defer_to_workers()  # pictures are read there, never on this event loop
        loop = asyncio.get_running_loop()
        if ctx.options.dlp_reload_interval > 0:
            self._watcher = loop.create_task(self._watch())
        try:
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests), or Windows
            logger.debug("no SIGHUP handler")
        if ctx.options.dlp_metrics_port:
            self.metrics.serve(
                ctx.options.dlp_metrics_host,
                ctx.options.dlp_metrics_port,
                not_ready=self._not_ready,
            )
        if ctx.options.dlp_admin_port:
            self._start_admin()
        self._start_budgets()

    def _not_ready(self) -> str | None:
        """Why this worker should get no traffic, or ``None`` (``/readyz``, from the metrics
        thread). A budget store it cannot use counts: every message with an identifier would
        get the policy's ``on_budget_error``, and a balancer does better to pick another."""
        policy = self.policy
        if policy is None:
            return "no policy loaded"
        if self._pool is not None and not self._pool.ready:
            return "no inspection worker yet"
        if policy.budgets:
            return self.budgets.problem()
        return None

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._pruner is not None:
            self._pruner.cancel()
        if self._keeper is not None:
            self._keeper.close()
        if self._admin is not None:
            self._admin.stop()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.metrics.stop()
        self.audit.close()

    # -- egress allow-list -----------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        policy = self.policy
        if (
            policy is not None
            and policy.refuse_unlisted
            and policy.destination_for(flow.request.host) is None
        ):
            self._accept_refused_tunnel(flow, policy)
            return
        self._check_destination(flow, [flow.request.host])

    def _accept_refused_tunnel(self, flow: http.HTTPFlow, policy: Policy) -> None:
        """Answer a CONNECT to a host off the allow-list with 200 without contacting the host.

        A browser cannot show a 403 to a CONNECT (it shows its own connection error), so the
        tunnel is opened to the proxy alone: TLS is completed with the proxy's CA, and every
        request in it is answered with the refusal page under this one incident id.
        ``tls_clienthello`` and ``server_connect`` make sure the host is never contacted;
        non-HTTP traffic in the tunnel is still killed by ``tcp_start``.
        """
        incident = self._count_refusal(flow, policy)
        self._refused_tunnels[flow.client_conn.id] = incident
        now = time.time()
        flow.response = http.Response(
            flow.request.data.http_version,
            200,
            b"Connection established",
            http.Headers(),
            b"",
            None,
            now,
            now,
        )

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if data.context.client.id in self._refused_tunnels:
            data.establish_server_tls_first = False  # there is no server to ask

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """A client that rejects the proxy's certificate: an app pinning its own, or a desktop
        without the CA. Counted by allowed destination, so the admin sees which platform's app
        fails closed (the host itself stays out of the label: it is the client's to choose)."""
        policy = self.policy
        server = data.context.server.address
        host = data.conn.sni or (server[0] if server else None)  # no SNI for an IP address
        dest = policy.destination_for(host) if policy is not None and host else None
        self.metrics.tls_client_failures.labels(dest or OTHER).inc()

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Never open a connection to a host off the allow-list, whatever asked for it.

        Regular proxy mode only: there the server address is the host the client named, which
        the hooks above already checked. Through an upstream proxy, or in transparent mode
        (addresses, not names), the address is not one the allow-list speaks of."""
        server = data.server
        if server.error or server.via is not None or server.address is None:
            return
        if data.client.proxy_mode.type_name != "regular":
            return
        policy = self.policy
        host = str(server.address[0])
        if policy is None or (policy.refuse_unlisted and policy.destination_for(host) is None):
            server.error = "not on the DLP allow-list"

    def client_disconnected(self, client: connection.Client) -> None:
        self._refused_tunnels.pop(client.id, None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if (
            "onboarding" in ctx.options
            and ctx.options.onboarding
            and flow.request.scheme == "http"
            and flow.request.pretty_host == ctx.options.onboarding_host
        ):
            return  # http://mitm.it, served by mitmproxy itself: the CA for employees
        hosts = [flow.request.host]
        if flow.request.host_header:
            hosts.append(_host_only(flow.request.host_header))
        self._check_destination(flow, hosts)

    def _check_destination(self, flow: http.HTTPFlow, hosts: list[str]) -> None:
        """Record the destination; refuse the flow when any host it names is not allowed."""
        policy = self.policy
        if policy is None:
            self._refuse(flow, None)
            return
        names = [policy.destination_for(h) for h in hosts]
        if all(names):
            flow.metadata[_DEST_KEY] = names[0]
        elif policy.refuse_unlisted:
            self._refuse(flow, policy)
        else:
            flow.metadata[_DEST_KEY] = OTHER

    def _refuse(self, flow: http.HTTPFlow, policy: Policy | None) -> None:
        if policy is None:  # no policy loaded: nothing is allowed
            flow.response = http.Response.make(503, b"DLP policy not loaded\n")
            return
        # Refused before anything else, so no error below can leave the request unanswered
        # (mitmproxy would then forward it to the host the policy does not allow).
        flow.response = http.Response.make(403, _PLAIN_REFUSAL, {"Content-Type": "text/plain"})
        try:
            self._refusal_page(flow, policy)
        except Exception as e:
            logger.error("refusal page failed, plain refusal sent: %s", type(e).__name__)

    def _refusal_page(self, flow: http.HTTPFlow, policy: Policy) -> None:
        verdict = unlisted_verdict()
        incident = self._refused_tunnels.get(flow.client_conn.id) or self._count_refusal(
            flow, policy
        )
        body, ctype = block_body(
            verdict,
            incident,
            policy.contact,
            as_json=wants_json(_headers(flow.request.headers)),
            refused=True,
        )
        flow.response = http.Response.make(
            403,
            body,
            {
                "Content-Type": ctype,
                "X-DLP-Incident": incident,
                "X-DLP-Refused": "not-allowed",
                "Cache-Control": "no-store",
            },
        )

    def _count_refusal(self, flow: http.HTTPFlow, policy: Policy) -> str:
        """Count and audit one refusal; its incident id."""
        verdict = unlisted_verdict()
        incident = new_incident_id()
        self.metrics.decisions.labels(verdict.action, verdict.rule or "", OTHER).inc()
        self._audit(flow, verdict, incident, OTHER, "http", policy, _requester(policy, flow))
        return incident

    # -- inspection ------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        policy = self.policy
        destination = flow.metadata.get(_DEST_KEY)
        if policy is None or destination is None:
            self._refuse(flow, policy)
            return
        who = Requester()
        try:
            who = _requester(policy, flow)
            with self.metrics.in_flight.track_inprogress():
                inspection = await self._inspect_request(flow, policy, destination, who)
                inspection = await self.budgets.apply(policy, inspection, who, destination)
        except Exception as e:  # last resort: fail closed, never let mitmproxy pass it on
            logger.error("request inspection crashed: %s", type(e).__name__)
            inspection = Inspection(error_verdict(policy, "addon"), "http", 0, "addon", 0.0)
        self._record(inspection, destination, len(flow.request.raw_content or b""))
        verdict = inspection.verdict
        if verdict.action == ALLOW:
            return
        incident = new_incident_id()
        # The block first: nothing that follows (the audit, its log line) can undo it.
        if verdict.blocks:
            flow.response = _block_response(flow, verdict, incident, policy)
        self._audit(flow, verdict, incident, destination, inspection.channel, policy, who)

    async def _inspect_request(
        self, flow: http.HTTPFlow, policy: Policy, destination: str, who: Requester
    ) -> Inspection:
        raw = flow.request.raw_content
        if raw is None:  # streamed: the body already left, nothing to inspect
            return Inspection(error_verdict(policy, "streamed"), "http", 0, "streamed", 0.0)
        req = HttpInput(
            method=flow.request.method,
            path=flow.request.path,
            headers=_headers(flow.request.headers),
            body=raw,
        )
        deadline = time.monotonic() + policy.timeout_seconds
        if len(raw) <= ctx.options.dlp_inline_max_bytes:
            with contextlib.suppress(OcrDeferred):  # a picture to read: in a worker
                return inspect_http(policy, req, destination, deadline, who)
        if self._pool is not None:
            return await self._pool.inspect_http(
                policy, req, destination, deadline, who, _channel(req)
            )
        try:  # no worker processes (the addon was not started as a proxy): a thread
            return await asyncio.wait_for(
                asyncio.to_thread(inspect_http, policy, req, destination, deadline, who),
                timeout=policy.timeout_seconds + ocr.allowance(policy.limits),
            )
        except TimeoutError:
            return Inspection(
                error_verdict(policy, "timeout"),
                _channel(req),
                0,
                "timeout",
                policy.timeout_seconds,
            )

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        if not flow.live or flow.websocket is None:
            return
        messages = flow.websocket.messages
        message = messages[-1]
        # mitmproxy keeps every message for the life of the connection; keep only this one.
        del messages[:-1]
        if not message.from_client or message.injected:
            return
        policy = self.policy
        destination = flow.metadata.get(_DEST_KEY)
        if policy is None or destination is None:
            message.drop()
            return
        who = Requester()
        try:
            who = _requester(policy, flow)
            with self.metrics.in_flight.track_inprogress():
                inspection = await self._inspect_ws(policy, message, destination, who)
                inspection = await self.budgets.apply(policy, inspection, who, destination)
        except Exception as e:
            logger.error("websocket inspection crashed: %s", type(e).__name__)
            inspection = Inspection(error_verdict(policy, "addon"), "websocket", 0, "addon", 0.0)
        self._record(inspection, destination, len(message.content))
        verdict = inspection.verdict
        if verdict.action == ALLOW:
            return
        incident = new_incident_id()
        if verdict.blocks:  # dropped first: nothing that follows can let it through
            message.drop()
            try:
                notice = ws_notice(verdict, incident, policy.contact, detector_names(policy))
                ctx.master.commands.call("inject.websocket", flow, True, notice.encode(), True)
            except Exception as e:  # the user misses the notice; the message stays dropped
                logger.error("cannot send the block notice: %s", type(e).__name__)
        self._audit(flow, verdict, incident, destination, "websocket", policy, who)

    async def _inspect_ws(
        self,
        policy: Policy,
        message: websocket.WebSocketMessage,
        destination: str,
        who: Requester,
    ) -> Inspection:
        content = message.content
        if len(content) > ctx.options.dlp_ws_max_message_bytes:
            verdict = decide(
                policy,
                (),
                destination=destination,
                channel="websocket",
                unscannable=["too_large"],
                requester=who,
            )
            return Inspection(verdict, "websocket", 0, None, 0.0)
        deadline = time.monotonic() + policy.timeout_seconds
        if len(content) <= ctx.options.dlp_inline_max_bytes or self._pool is None:
            with contextlib.suppress(OcrDeferred):  # a picture to read: in a worker
                return inspect_ws(policy, content, message.is_text, destination, deadline, who)
        assert self._pool is not None  # OCR is deferred only when there are workers
        return await self._pool.inspect_ws(
            policy, content, message.is_text, destination, deadline, who
        )

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """Raw TCP through the proxy cannot be inspected: it never reaches a platform."""
        self.metrics.unscannable.labels("raw_tcp").inc()
        flow.kill()

    def udp_start(self, flow: udp.UDPFlow) -> None:
        self.metrics.unscannable.labels("raw_udp").inc()
        flow.kill()

    # -- acting ----------------------------------------------------------------------------

    def _record(self, ins: Inspection, destination: str, size: int) -> None:
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
        if v.reason.startswith("unscannable:"):
            for kind in v.reason.removeprefix("unscannable:").split(","):
                m.unscannable.labels(kind).inc()
        if v.action != ALLOW:
            action = v.action if v.enforced or v.action != BLOCK else "would_block"
            m.decisions.labels(action, v.rule or "", destination).inc()
        if v.budget is not None and v.budget.get("tripped"):
            b_action = str(v.budget["action"])
            if b_action == BLOCK and not v.enforced:
                b_action = "would_block"
            m.budget_trips.labels(str(v.budget["name"]), b_action).inc()

    def _audit(
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
                client=_client(flow) or "",
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
            self._recent.append(event)
            self.audit.write(event)
        except Exception as e:
            self.metrics.audit_failures.inc()
            logger.error("cannot write audit event %s: %s", incident, _why(e))
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


addons = [DlpAddon()]
