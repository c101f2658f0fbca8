"""End-to-end harness: a recording upstream, an off-list listener and the real proxy process.

Everything binds to loopback on ports the kernel picks. The upstream (hypercorn, ASGI) speaks
plain HTTP and HTTPS (ALPN h2 and http/1.1) and WebSocket on both, and records what reaches it, so
a test can prove that a blocked payload never left the proxy and that an allowed one arrived byte
for byte. The proxy is started exactly as an operator would start it (``dlp-proxy`` with
``--set`` options), so these tests see what a user sees. ``DLP_PROXY_BIN`` points them at
another ``dlp-proxy`` executable (default: the one next to the running interpreter).

Nothing here prints a raw identifier: proxy output shown on a failed start goes through
:func:`scrub` first.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as _dt
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED_POLICY = REPO / "dlp_addon" / "patterns" / "policy.yaml"
TEST_DESTINATION = "test-shop"
UPSTREAM_HOST = "127.0.0.1"
OFFLIST_HOST = "127.0.0.2"
HEALTH_PATH = "/__health"
PROXY_START_TIMEOUT = 30.0
PROXY_STOP_TIMEOUT = 10.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# --- privacy helpers ----------------------------------------------------------------------------

_LONG_DIGITS = re.compile(r"[0-9]{7,}[0-9Xx]?")


def _mask_run(run: str) -> str:
    if len(run) == 18:
        return run[:6] + "*" * 8 + run[-4:]
    if len(run) == 11:
        return run[:3] + "****" + run[-4:]
    return run[:2] + "*" * (len(run) - 4) + run[-2:]


def scrub(text: str) -> str:
    """Every run of 7 or more digits masked (IDs as ``110105********123X``, mobiles as
    ``138****8000``): for anything that may end up in a failure message."""
    return _LONG_DIGITS.sub(lambda m: _mask_run(m.group()), text)


def wait_for[T](
    probe: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.05
) -> T | None:
    """Call ``probe`` until it returns something other than ``None`` or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


# --- throwaway PKI ------------------------------------------------------------------------------


class TlsFiles(NamedTuple):
    ca_cert: Path
    cert: Path
    key: Path


def _key_usage(*, ca: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    validity = (now - _dt.timedelta(days=1), now + _dt.timedelta(days=30))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dlp-proxy e2e test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(UPSTREAM_HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(
        directory / "upstream-ca.pem", directory / "server.pem", directory / "server.key"
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# --- the recording upstream ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string, exactly as received
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in order
    body: bytes
    http_version: str  # "1.1" or "2"
    scheme: str  # "http" or "https"

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True)
class RecordedWsMessage:
    path: str
    data: str | bytes
    scheme: str  # "ws" or "wss"


@dataclass
class Recorder:
    """Thread-safe record of everything the upstream received."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _requests: list[RecordedRequest] = field(default_factory=list)
    _ws_messages: list[RecordedWsMessage] = field(default_factory=list)

    def add_request(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def add_ws_message(self, message: RecordedWsMessage) -> None:
        with self._lock:
            self._ws_messages.append(message)

    def requests(self, path_contains: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            found = list(self._requests)
        return [r for r in found if path_contains is None or path_contains in r.path]

    def ws_messages(self, path_contains: str | None = None) -> list[RecordedWsMessage]:
        with self._lock:
            found = list(self._ws_messages)
        return [m for m in found if path_contains is None or path_contains in m.path]

    def anything_contains(self, needles: Iterable[str]) -> list[str]:
        """The needles found in any recorded path, header, body or WebSocket message, masked."""
        with self._lock:
            haystack: list[bytes] = []
            for r in self._requests:
                haystack.append(r.path.encode("latin-1", "replace"))
                haystack.extend(v.encode("latin-1", "replace") for _, v in r.headers)
                haystack.append(r.body)
            for m in self._ws_messages:
                haystack.append(m.data.encode() if isinstance(m.data, str) else m.data)
        blob = b"\n".join(haystack)
        return sorted(scrub(n) for n in needles if n.encode() in blob)


OK_BODY = b'{"ok": true}'


def make_app(recorder: Recorder) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """ASGI app: record, answer HTTP with 200 ``{"ok": true}``, echo WebSocket messages."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        if scope["type"] == "http":
            chunks: list[bytes] = []
            while True:
                event = await receive()
                if event["type"] == "http.disconnect":
                    return
                chunks.append(event.get("body", b""))
                if not event.get("more_body", False):
                    break
            if scope["path"] != HEALTH_PATH:
                recorder.add_request(
                    RecordedRequest(
                        method=scope["method"],
                        path=path,
                        headers=tuple(
                            (k.decode("latin-1").lower(), v.decode("latin-1"))
                            for k, v in scope["headers"]
                        ),
                        body=b"".join(chunks),
                        http_version=scope["http_version"],
                        scheme=scope["scheme"],
                    )
                )
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(OK_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": OK_BODY})
        elif scope["type"] == "websocket":
            event = await receive()
            if event["type"] != "websocket.connect":
                return
            await send({"type": "websocket.accept"})
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    return
                if event["type"] != "websocket.receive":
                    continue
                text: str | None = event.get("text")
                if text is not None:
                    recorder.add_ws_message(RecordedWsMessage(path, text, scope["scheme"]))
                    await send({"type": "websocket.send", "text": "echo:" + text})
                else:
                    data: bytes = event.get("bytes") or b""
                    recorder.add_ws_message(RecordedWsMessage(path, data, scope["scheme"]))
                    await send({"type": "websocket.send", "bytes": b"echo:" + data})

    return app


def _listening_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for processes that must bind it themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Upstream:
    """Hypercorn in a background thread: plain HTTP and HTTPS (h2 + http/1.1), WebSocket on both."""

    def __init__(
        self,
        tls: TlsFiles,
        app: Callable[[Recorder], Callable[[Scope, Receive, Send], Awaitable[None]]] | None = None,
    ) -> None:
        self.tls = tls
        self.recorder = Recorder()
        self.app = (app or make_app)(self.recorder)  # another site: built on the recording app
        self.host = UPSTREAM_HOST
        self._plain = _listening_socket(self.host)
        self._secure = _listening_socket(self.host)
        self.http_port: int = self._plain.getsockname()[1]
        self.https_port: int = self._secure.getsockname()[1]
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def url(self, scheme: str, path: str = "/") -> str:
        """``http``/``ws`` go to the plain port, ``https``/``wss`` to the TLS port."""
        port = self.https_port if scheme in ("https", "wss") else self.http_port
        return f"{scheme}://{self.host}:{port}{path}"

    def start(self) -> None:
        from hypercorn.config import Config

        config = Config()
        # hypercorn adopts the already-listening sockets, so the ports are known before it runs.
        config.bind = [f"fd://{self._secure.detach()}"]
        config.insecure_bind = [f"fd://{self._plain.detach()}"]
        config.certfile = str(self.tls.cert)
        config.keyfile = str(self.tls.key)
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = None
        config.graceful_timeout = 1.0
        self._thread = threading.Thread(
            target=self._run, args=(config,), name="e2e-upstream", daemon=True
        )
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("upstream did not start")
        ok = wait_for(self._healthy, timeout=10)
        if not ok:
            raise RuntimeError(f"upstream is not answering: {self._error!r}")

    def _healthy(self) -> bool | None:
        try:
            with httpx.Client(trust_env=False, timeout=2) as client:
                plain = client.get(self.url("http", HEALTH_PATH))
            with httpx.Client(
                trust_env=False,
                timeout=2,
                verify=ssl.create_default_context(cafile=self.tls.ca_cert),
            ) as client:
                secure = client.get(self.url("https", HEALTH_PATH))
        except httpx.HTTPError:
            return None
        return True if plain.status_code == secure.status_code == 200 else None

    def _run(self, config: Any) -> None:
        from hypercorn.asyncio import serve

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._shutdown = asyncio.Event()
            self._started.set()
            await serve(self.app, config, shutdown_trigger=self._shutdown.wait)  # type: ignore[arg-type]

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by start() or stop()
            self._error = e
            self._started.set()

    def stop(self) -> None:
        if self._loop is not None and self._shutdown is not None:
            self._loop.call_soon_threadsafe(self._shutdown.set)
        if self._thread is not None:
            self._thread.join(10)


class ConnectionCounter:
    """A TCP listener that only counts the connections it accepts (an off-allow-list host)."""

    def __init__(self, host: str = OFFLIST_HOST) -> None:
        self.host = host
        self._sock = _listening_socket(host)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="e2e-offlist", daemon=True)

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._count

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._count += 1
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


# --- policy -------------------------------------------------------------------------------------

DEFAULT_POLICY: dict[str, Any] = {
    # Used only while the shipped policy does not exist yet; mirrors its documented structure.
    "version": 1,
    "mode": "enforce",
    "egress": {"refuse_unlisted": True},
    "contact": "IT security, ext. 8000",
    "inspection": {"on_error": "block", "on_unscannable": "block", "timeout_seconds": 5},
    "destinations": [{"name": "placeholder", "hosts": ["example.invalid"]}],
    "rules": [
        {
            "name": "bulk-resident-ids",
            "description": {"zh": "批量居民身份证号码", "en": "Bulk PRC resident ID numbers"},
            "action": "block",
            "when": [{"detector": "cn_resident_id", "min_distinct": 5}],
        },
        {
            "name": "bulk-mobiles",
            "description": {"zh": "批量手机号码", "en": "Bulk mobile numbers"},
            "action": "block",
            "when": [{"detector": "cn_mobile", "min_distinct": 10}],
        },
    ],
}


def load_shipped_policy() -> dict[str, Any]:
    if not SHIPPED_POLICY.exists():
        return copy.deepcopy(DEFAULT_POLICY)
    loaded = yaml.safe_load(SHIPPED_POLICY.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{SHIPPED_POLICY}: not a mapping")
    return loaded


def make_test_policy(
    overrides: Mapping[str, Any] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The shipped policy with one destination, ``test-shop`` = 127.0.0.1 and localhost.

    Rules scoped to shipped destinations are re-scoped to ``test-shop``; a relative ``detectors``
    path is made absolute (the policy file is written elsewhere). ``overrides`` replace top-level
    keys, then ``edit`` may change anything.
    """
    policy = load_shipped_policy()
    policy["destinations"] = [{"name": TEST_DESTINATION, "hosts": [UPSTREAM_HOST, "localhost"]}]
    for rule in policy.get("rules") or []:
        if "destinations" in rule:
            rule["destinations"] = [TEST_DESTINATION]
    detectors = policy.get("detectors")
    if isinstance(detectors, str) and not Path(detectors).is_absolute():
        policy["detectors"] = str((SHIPPED_POLICY.parent / detectors).resolve())
    policy.update(copy.deepcopy(dict(overrides or {})))
    if edit is not None:
        edit(policy)
    return policy


def write_policy(policy: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(policy), allow_unicode=True, sort_keys=False), "utf-8")
    return path


# --- Prometheus text ----------------------------------------------------------------------------


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of sample ``name`` whose labels include ``labels``; ``None`` if there is none.

    Several matching samples (labels the caller did not name) are summed, so a test does not
    break when a metric gains a label.
    """
    from prometheus_client.parser import text_string_to_metric_families

    wanted = dict(labels or {})
    total: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name:
                continue
            if all(sample.labels.get(k) == v for k, v in wanted.items()):
                total = (total or 0.0) + float(sample.value)
    return total


# --- the proxy process --------------------------------------------------------------------------


def proxy_executable() -> Path:
    """``$DLP_PROXY_BIN`` if set, else ``dlp-proxy`` next to the running interpreter."""
    override = os.environ.get("DLP_PROXY_BIN")
    return Path(override) if override else Path(sys.executable).parent / "dlp-proxy"


class ProxyStartError(RuntimeError):
    pass


class Proxy:
    """One ``dlp-proxy`` subprocess with its own confdir, policy, audit log and metrics port."""

    def __init__(self, workdir: Path, policy: Mapping[str, Any], upstream_ca: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.confdir = workdir / "conf"
        self.policy = dict(policy)
        self.policy_path = write_policy(policy, workdir / "policy.yaml")
        self.audit_path = workdir / "audit.jsonl"
        self.stdout_path = workdir / "proxy.stdout"
        self.stderr_path = workdir / "proxy.stderr"
        self.upstream_ca = upstream_ca
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.metrics_port = free_port(self.host)
        self.sent_values: set[str] = set()
        self.extra_args: list[str] = []  # more dlp-proxy arguments (e.g. --set proxyauth=...)
        self.env: dict[str, str] = {}  # more environment variables
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def ca_path(self) -> Path:
        """The CA the proxy signs its interception certificates with (created at startup)."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    @property
    def command(self) -> list[str]:
        return [
            str(proxy_executable()),
            "--listen-host", self.host,
            "-p", str(self.port),
            "--set", f"confdir={self.confdir}",
            "--set", f"dlp_policy={self.policy_path}",
            "--set", f"dlp_metrics_port={self.metrics_port}",
            "--set", f"dlp_audit_log={self.audit_path}",
            "--set", f"ssl_verify_upstream_trusted_ca={self.upstream_ca}",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = PROXY_START_TIMEOUT) -> None:
        exe = proxy_executable()
        if not exe.exists():
            raise ProxyStartError(f"{exe} does not exist (run scripts/setup)")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        # Appended, so a restarted proxy's output is still all there for the leak checks.
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                self.command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.workdir,
                env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ProxyStartError(
                    f"dlp-proxy exited with {self._proc.returncode} during startup:\n"
                    + self.stderr_tail()
                )
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise ProxyStartError(f"dlp-proxy not ready after {timeout:.0f} s:\n" + self.stderr_tail())

    def _ready(self) -> bool:
        if not self.ca_path.exists():
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
            return httpx.get(self.metrics_url, timeout=1, trust_env=False).status_code == 200
        except (OSError, httpx.HTTPError):
            return False

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(PROXY_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- what the proxy wrote --

    def stderr_tail(self, limit: int = 4000) -> str:
        return scrub(self.stderr_path.read_text("utf-8", "replace")[-limit:])

    def output(self) -> str:
        """Everything the proxy printed so far (stdout and stderr)."""
        return self.stdout_path.read_text("utf-8", "replace") + self.stderr_path.read_text(
            "utf-8", "replace"
        )

    def audit_text(self) -> str:
        return self.audit_path.read_text("utf-8") if self.audit_path.exists() else ""

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log, one dict per JSON line."""
        return [json.loads(line) for line in self.audit_text().splitlines() if line.strip()]

    def wait_audit(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Audit events matching ``predicate``, waiting up to ``timeout`` for the first one."""

        def probe() -> list[dict[str, Any]] | None:
            found = [e for e in self.audit_events() if predicate(e)]
            return found or None

        return wait_for(probe, timeout) or []

    def metrics(self) -> str:
        response = httpx.get(self.metrics_url, timeout=5, trust_env=False)
        response.raise_for_status()
        return response.text

    def metric(self, name: str, **labels: str) -> float:
        """Current value of a sample (0 when it does not exist yet)."""
        return sample_value(self.metrics(), name, labels) or 0.0

    def leaks(self, values: Iterable[str], *, metrics: bool = True) -> dict[str, list[str]]:
        """Where any of ``values`` appears raw: {"audit": [...], "output": [...], "metrics": [...]}.

        Found values are returned masked, so the result can go into a failure message.
        """
        texts = {"audit": self.audit_text(), "output": self.output()}
        if metrics and self.running:
            texts["metrics"] = self.metrics()
        found = {
            where: sorted(scrub(v) for v in values if v in text) for where, text in texts.items()
        }
        return {where: hits for where, hits in found.items() if hits}

    # -- clients --

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the proxy's CA only."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def client(self, *, http2: bool = False, timeout: float = 15.0) -> httpx.Client:
        return httpx.Client(
            proxy=self.url, verify=self.ssl_context(), http2=http2, trust_env=False, timeout=timeout
        )


class ArgsProxy(Proxy):
    """dlp-proxy with extra command-line arguments (mitmproxy options, flags)."""

    def __init__(self, *args: Any, extra: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra = extra

    @property
    def command(self) -> list[str]:
        return [*super().command, *self.extra]

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid


@dataclass(frozen=True)
class Reply:
    """The client's view of an answer; the body stays out of the repr (it may echo data)."""

    status: int
    headers: httpx.Headers
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class Sent:
    """What was sent (exactly the bytes on the wire) and what came back."""

    reply: Reply
    body: bytes = field(repr=False)
