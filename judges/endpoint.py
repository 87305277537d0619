"""Per-endpoint limits and health for LLM judges: slots, a rate limit, a circuit breaker.

An *endpoint* is where a judge's calls go: its ``api_base`` (a local llama.cpp, Ollama or vLLM
server, a proxy), or the provider's hosted API. Every judge of one host process that calls the
same endpoint shares one :class:`Endpoint` (:func:`endpoint_for`), so five judges on one
single-slot local server queue for its one slot instead of timing out against each other. The
default placement puts every LLM judge of a panel on one host actor, so the limits hold for the
whole panel; judges placed on different hosts (``host:``) each get their own.

An endpoint gives three things:

* **slots**: at most ``max_in_flight`` calls at once; the others wait for a slot (at most the
  judge's ``queue_timeout_s``), and the wait does not eat into the judge's call budget;
* **a rate limit**: a token bucket of ``requests_per_minute`` (:class:`aiolimiter.AsyncLimiter`);
* **a circuit breaker** per model of the endpoint (a proxy or a multi-model server can fail one
  model and serve the others): after ``failures`` consecutive health failures (connection refused or
  reset, HTTP 5xx, a timeout), the endpoint is *open*: calls abstain at once with the reason
  ``endpoint unhealthy`` for ``cooldown_s`` (doubling on each re-open, up to
  :data:`MAX_COOLDOWN_S`); then one probe call goes through (*half-open*) and its success closes
  the breaker. A down server thus costs a few refused connections, not one per call.

Example:
    >>> b = Breaker(failures=2, cooldown_s=5.0)
    >>> b.failure("connection refused", now=0.0); b.failure("connection refused", now=0.1)
    >>> b.check(now=1.0)
    'endpoint unhealthy: 2 consecutive failures, last: connection refused; next try in 4.1s'
    >>> b.admit("probe", now=5.2) is None, b.check(now=5.3) is None  # one probe at a time
    (True, False)
    >>> b.success(); b.check(now=5.3) is None
    True
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
import weakref
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiolimiter import AsyncLimiter

MAX_COOLDOWN_S = 60.0
"""The longest an open breaker waits before it lets a probe through."""
LOCAL_MAX_IN_FLIGHT = 1
"""Default calls in flight to a local ``api_base`` (loopback or private address, ``.local``,
a single-label host name such as ``ollama``): llama.cpp's and Ollama's servers serve one
request per slot, and a request queued inside the server times out unseen."""


@functools.lru_cache(maxsize=256)
def is_local(api_base: str | None) -> bool:
    """True for an ``api_base`` on this machine or a private network.

    Example:
        >>> [is_local(u) for u in ("http://127.0.0.1:8080/v1", "http://ollama:11434/v1",
        ...                        "http://10.0.0.5/v1", "https://api.openai.com/v1", None)]
        [True, True, True, False, False]
    """
    if not api_base:
        return False
    host = (urlsplit(api_base if "//" in api_base else f"//{api_base}").hostname or "").lower()
    if host in ("localhost", "") or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host  # a single-label name: a container or a LAN host
    return ip.is_loopback or ip.is_private or ip.is_link_local


@dataclass
class Breaker:
    """Consecutive-failure circuit breaker (see the module docstring); time is passed in so
    that it is testable without sleeping. :meth:`check` only looks; :meth:`admit` also claims
    the probe of a half-open breaker, which :meth:`success`, :meth:`failure` or
    :meth:`release_probe` (a probe that made no call: cancelled, no slot) gives back."""

    failures: int = 3
    cooldown_s: float = 5.0
    count: int = 0
    last: str = ""
    opened_at: float | None = None
    current_cooldown_s: float = 0.0
    probe: object | None = None  # the token of the call that is the probe, while it runs

    @property
    def probing(self) -> bool:
        return self.probe is not None

    def check(self, now: float | None = None) -> str | None:
        """None when a call may go ahead now (closed, or half-open with the probe free); else
        the reason to abstain at once. Changes nothing."""
        if self.opened_at is None:
            return None
        now = time.monotonic() if now is None else now
        wait = self.opened_at + self.current_cooldown_s - now
        if wait <= 0 and self.probe is None:
            return None
        return (f"endpoint unhealthy: {self.count} consecutive failures, last: {self.last}; "
                f"next try in {max(wait, 0.0):.1f}s")

    def admit(self, token: object, now: float | None = None) -> str | None:
        """:meth:`check`, claiming the probe for ``token`` when the breaker is half-open."""
        reason = self.check(now)
        if reason is None and self.opened_at is not None:
            self.probe = token  # half-open: this call is the probe
        return reason

    def release_probe(self, token: object) -> None:
        """Give back a probe that ended without a verdict on the endpoint."""
        if self.probe is token:
            self.probe = None

    def success(self) -> None:
        self.count, self.opened_at, self.probe, self.current_cooldown_s = 0, None, None, 0.0

    def failure(self, reason: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.count += 1
        self.last = reason[:160]
        probing = self.probe is not None
        if probing or (self.opened_at is None and self.count >= self.failures):
            self.current_cooldown_s = (min(self.current_cooldown_s * 2, MAX_COOLDOWN_S)
                                       if probing else self.cooldown_s)
            self.opened_at, self.probe = now, None


@dataclass
class Endpoint:
    """The shared state of one endpoint in one process and event loop (see the module
    docstring). Its limits are fixed when it is first used (:func:`declare`)."""

    key: str
    max_in_flight: int | None = None
    requests_per_minute: float | None = None
    failures: int = 3
    cooldown_s: float = 5.0
    breakers: dict[str, Breaker] = field(default_factory=dict)
    slots: asyncio.Semaphore | None = None
    limiter: AsyncLimiter | None = None
    in_flight: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        if self.max_in_flight:
            self.slots = asyncio.Semaphore(self.max_in_flight)
        if self.requests_per_minute:
            self.limiter = AsyncLimiter(self.requests_per_minute, 60.0)

    def breaker(self, model: str) -> Breaker:
        """The circuit breaker of ``model`` on this endpoint."""
        b = self.breakers.get(model)
        if b is None:
            b = self.breakers[model] = Breaker(failures=self.failures, cooldown_s=self.cooldown_s)
        return b

    async def acquire(self, deadline: float, breaker: Breaker | None = None) -> Lease | str:
        """Wait for a slot and the rate limit until ``deadline`` (``time.perf_counter()``): a
        :class:`Lease` to release when the call is over, or the reason why not (the caller
        abstains with it). An open ``breaker`` refuses at once, before and after the wait; a
        half-open one makes this call its probe (the lease gives the probe back if the call
        ends without a verdict). A refusal or a cancellation keeps neither slot nor probe."""
        token = object()
        reason = breaker.admit(token) if breaker else None
        if reason is not None:
            return reason
        slots = self.slots
        taken = leased = False
        try:
            if slots is not None:
                try:
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        await slots.acquire()
                    taken = True
                except TimeoutError:
                    return (f"no free slot on {self.key} within the judge's queue_timeout_s "
                            f"(max_in_flight {self.max_in_flight}; raise it if the server has "
                            "more slots, or lower the scenario's concurrency)")
            if self.limiter is not None:
                try:
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        await self.limiter.acquire()
                except TimeoutError:
                    return (f"rate limit of {self.key} ({self.requests_per_minute:g} requests "
                            "per minute) left no room in time")
            # The breaker may have opened while this call waited (unless this call is its probe).
            if breaker is not None and breaker.probe is not token:
                reason = breaker.check()
                if reason is not None:
                    return reason
            self.in_flight += 1
            self.calls += 1
            leased = True
            return Lease(self, slots if taken else None, breaker, token)
        finally:
            if not leased:
                if taken and slots is not None:
                    slots.release()
                if breaker is not None:
                    breaker.release_probe(token)


def _loop_time(deadline: float) -> float:
    """A ``time.perf_counter()`` deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.perf_counter())


@dataclass
class Lease:
    """One call's hold on an endpoint: its slot (the semaphore it was taken from) and, when the
    call is its breaker's probe, the probe."""

    endpoint: Endpoint
    slots: asyncio.Semaphore | None
    breaker: Breaker | None = None
    token: object | None = None
    released: bool = False

    def release(self) -> None:
        """Give the slot back, and the probe if the call left the breaker undecided."""
        if not self.released:
            self.released = True
            self.endpoint.in_flight -= 1
            if self.slots is not None:
                self.slots.release()
            if self.breaker is not None:
                self.breaker.release_probe(self.token)


_DECLARED: dict[str, tuple[int | None, int | None, float | None]] = {}
"""Per endpoint key: the smallest declared max_in_flight, the default one, the smallest
requests per minute (plain values, no event loop needed: judges declare when they are built)."""


def declare(key: str, *, max_in_flight: int | None, default_max_in_flight: int | None,
            requests_per_minute: float | None) -> None:
    """Record one judge's limits for ``key``; the endpoint, made on first use, takes the
    smallest declared ``max_in_flight`` (else the default) and the smallest rate."""
    d, dflt, rpm = _DECLARED.get(key, (None, None, None))
    if max_in_flight:
        d = max_in_flight if d is None else min(d, max_in_flight)
    if default_max_in_flight:
        dflt = default_max_in_flight if dflt is None else min(dflt, default_max_in_flight)
    if requests_per_minute:
        rpm = requests_per_minute if rpm is None else min(rpm, requests_per_minute)
    _DECLARED[key] = (d, dflt, rpm)


_ENDPOINTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Endpoint]] = (
    weakref.WeakKeyDictionary())


def endpoint_for(key: str, *, failures: int, cooldown_s: float) -> Endpoint:
    """The running event loop's :class:`Endpoint` for ``key``, made on first use with the
    limits the judges declared (:func:`declare`). asyncio primitives belong to one loop: a
    test's or a benchmark's second ``asyncio.run`` gets fresh ones."""
    loop = asyncio.get_running_loop()
    table = _ENDPOINTS.setdefault(loop, {})
    ep = table.get(key)
    if ep is None:
        declared, default, rpm = _DECLARED.get(key, (None, None, None))
        ep = table[key] = Endpoint(key, declared or default, rpm, failures, cooldown_s)
    return ep


def endpoint_key(api_base: str | None, provider: str) -> str:
    """What identifies an endpoint: its base URL without credentials, query or trailing
    slash, or ``provider:<name>`` for a hosted API.

    Example:
        >>> endpoint_key("http://user:pw@127.0.0.1:8080/v1/", "openai")
        'http://127.0.0.1:8080/v1'
        >>> endpoint_key(None, "anthropic")
        'provider:anthropic'
    """
    if not api_base:
        return f"provider:{provider}"
    parts = urlsplit(api_base)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"

