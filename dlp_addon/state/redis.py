"""Budgets in Redis: several proxy instances sharing one count.

One sorted set per counter (``dlp:budget:<budget>|<scope>|<subject>``): members are keyed
hashes of identifiers, scores the unix time each was last sent; the key expires a little after
its window. ``admit`` is one Lua script, so it is atomic across instances: prune, count, decide,
and add only when no blocking budget trips. Redis Cluster is not supported (the keys of one
message need not share a slot); a single Redis or a Sentinel-managed primary is.

Every call has a short socket timeout: an unreachable Redis is a :class:`StoreError` within
seconds, never a hung proxy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis

from dlp_addon.decide.budget import Charge, Outcome, parse_counter
from dlp_addon.state.store import StoreError, Usage

PREFIX = "dlp:budget:"
_TIMEOUT = 2.0

# KEYS: one per charge. ARGV: now, then per charge: window, limit, blocking (0/1), n, n keys.
# Returns {committed (0/1), before_1, after_1, before_2, after_2, ...}.
_ADMIT = """
local now = tonumber(ARGV[1])
local i = 2
local out = {}
local plans = {}
local stop = false
for c = 1, #KEYS do
  local k = KEYS[c]
  local window = tonumber(ARGV[i])
  local limit = tonumber(ARGV[i + 1])
  local blocking = ARGV[i + 2] == '1'
  local n = tonumber(ARGV[i + 3])
  i = i + 4
  redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. tostring(now - window))
  local before = redis.call('ZCARD', k)
  local fresh = 0
  local members = {}
  for j = 0, n - 1 do
    local m = ARGV[i + j]
    members[#members + 1] = m
    if not redis.call('ZSCORE', k, m) then fresh = fresh + 1 end
  end
  i = i + n
  local after = before + fresh
  if blocking and fresh > 0 and after > limit then stop = true end
  plans[c] = {k, window, members}
  out[#out + 1] = before
  out[#out + 1] = after
end
if not stop then
  for c = 1, #plans do
    local k, window, members = plans[c][1], plans[c][2], plans[c][3]
    for s = 1, #members, 500 do
      local args = {}
      for j = s, math.min(s + 499, #members) do
        args[#args + 1] = now
        args[#args + 1] = members[j]
      end
      redis.call('ZADD', k, unpack(args))
    end
    redis.call('EXPIRE', k, math.ceil(window) + 60)
  end
end
table.insert(out, 1, stop and 0 or 1)
return out
"""


class RedisStore:
    backend = "redis"

    def __init__(self, url: str, password: str | None = None) -> None:
        """``password`` (read from a file by the caller) keeps the secret out of the URL, which
        sits on command lines; a password in the URL wins, as redis-py has it."""
        self.url = url
        try:
            self._r: Any = redis.Redis.from_url(
                url, password=password, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
            )
        except ValueError as e:
            raise StoreError(f"invalid Redis URL: {e}") from e
        self._admit = self._r.register_script(_ADMIT)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as e:
            # The message names the failure, not the URL (it may hold a password).
            raise StoreError(f"Redis {what}: {type(e).__name__}: {e}") from e

    def ping(self) -> None:
        self._call("ping", self._r.ping)

    def admit(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        if not charges:
            return []
        keys = [PREFIX + c.counter for c in charges]
        args: list[Any] = [repr(now)]
        for c in charges:
            args += [c.window, c.limit, 1 if c.blocking else 0, len(c.keys), *sorted(c.keys)]
        got = self._call("admit", self._admit, keys=keys, args=args)
        return [Outcome(c, int(got[1 + 2 * i]), int(got[2 + 2 * i])) for i, c in enumerate(charges)]

    def _counters(self) -> list[str]:
        found = self._call("scan", lambda: list(self._r.scan_iter(match=PREFIX + "*", count=500)))
        return [k.decode() if isinstance(k, bytes) else str(k) for k in found]

    def usage(self, windows: dict[str, int], now: float) -> list[Usage]:
        out = []
        for key in self._counters():
            budget, scope, subject = parse_counter(key.removeprefix(PREFIX))
            if budget not in windows:
                continue
            n = int(self._call("count", self._r.zcount, key, now - windows[budget], math.inf))
            if n:
                out.append(Usage(budget, scope, subject, n))
        return out

    def reset(self, subject: str) -> int:
        removed = 0
        for key in self._counters():
            if parse_counter(key.removeprefix(PREFIX))[2] == subject:
                removed += int(self._call("count", self._r.zcard, key))
                self._call("delete", self._r.delete, key)
        return removed

    def prune(self, windows: dict[str, int], now: float) -> int:
        removed = 0
        for key in self._counters():
            budget = parse_counter(key.removeprefix(PREFIX))[0]
            if budget in windows:
                removed += int(
                    self._call("prune", self._r.zremrangebyscore, key, -math.inf,
                               f"({now - windows[budget]}")
                )  # fmt: skip
        return removed

    def close(self) -> None:
        self._r.close()
