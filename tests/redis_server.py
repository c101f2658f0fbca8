"""A real, throwaway ``redis-server`` on 127.0.0.1 for the budget tests (no persistence).

scripts/setup installs Debian's redis-server; a machine without it fails these tests loudly
rather than skipping them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.e2e.harness import free_port


class RedisServer:
    """``password``: the server requires it (``requirepass``, in a config file rather than on
    its command line); ``url`` still carries none, as the proxy is given it from a file.
    ``config``: more lines for that file; with an ``aclfile``, that file sets the password and
    ``password`` is only what the test's clients use."""

    def __init__(
        self, workdir: Path, password: str | None = None, config: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (run scripts/setup)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        conf = self.workdir / "redis.conf"
        acl = any(line.startswith("aclfile ") for line in self.config)  # it sets the password
        lines = [f"requirepass {self.password}"] if self.password and not acl else []
        conf.write_text("\n".join([*lines, *self.config, ""]), "utf-8")
        conf.chmod(0o600)
        self._proc = subprocess.Popen(
            [exe, str(conf), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = self.client(timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer within 10 s")

    def client(self, timeout: float = 2) -> redis.Redis:
        return redis.Redis.from_url(self.url, password=self.password, socket_timeout=timeout)

    def dump(self) -> bytes:
        """Every key and every member and score, as one blob to grep."""
        r = self.client()
        out = []
        for key in r.scan_iter(count=500):
            out.append(key)
            if r.type(key) == b"zset":
                out.extend(
                    m + b" " + str(s).encode() for m, s in r.zrange(key, 0, -1, withscores=True)
                )
        return b"\n".join(out)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
