"""The Python client of the consensus HTTP service (``consensus serve``), sync and async.

:class:`Client` and :class:`AsyncClient` have the same methods: :meth:`~Client.decide` (``POST
/v1/consensus``), :meth:`~Client.panels`, :meth:`~Client.health`, :meth:`~Client.ready` and
:meth:`~Client.metrics`. A decision comes back as a :class:`ConsensusResult`; a refusal as a
:class:`ConsensusAPIError` subclass chosen by the HTTP status.

Retries and idempotency: every decide request carries an id (the caller's, else a new UUID4
hex made once per call), and the service treats a request id as an idempotency key: a repeated
id returns the decision recorded for it (``replayed``), never decided or recorded twice. So a
request whose answer was lost (a connection reset, a timeout, a 500/502/503/504 from a proxy)
is sent again with the SAME id, up to ``retries`` more times, after an exponential backoff
with jitter (``backoff_s * 2**n``, times a random factor in [0.5, 1], from a
:class:`random.Random` per client, seeded by ``seed``). A 4xx is the caller's to fix and is
never retried. The bearer token is sent in a header only; it is never part of an error
message or a repr.

Example:
    >>> with Client("http://127.0.0.1:8000", token="...") as c:  # doctest: +SKIP
    ...     r = c.decide("Say hi", ["Hello! How can I help?"])
    ...     r.decision, r.output
    ('pass', 'Hello! How can I help?')
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field

from consensus import __version__
from consensus.service.schemas import WITHHELD
from consensus.types import TaskKind

RETRY_STATUSES = frozenset({500, 502, 503, 504})
"""Answers that may come from a proxy or a replica in trouble, not from the request."""
MAX_BACKOFF_S = 30.0

Candidates = Sequence[str | Mapping[str, Any]]


class ConsensusResult(BaseModel):
    """The decision document of ``POST /v1/consensus`` (unknown fields are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(description="The request id (the idempotency key).")
    # str, not the service's Literal: a newer service's decision must still parse here
    decision: str = Field(description="pass, flag, block, ... (schemas.Decision).")
    action: str = Field(default="", description="The intervention the policy took.")
    accepted_candidate: str | None = Field(default=None, description="Delivered candidate id.")
    output: str | None = Field(default=None, description="The text delivered to the user.")
    reason: str = Field(default="", description="Why this decision.")
    principle: str | None = Field(default=None, description="The violated principle, if any.")
    severity: str | None = Field(default=None, description="That principle's severity.")
    panel: str = Field(default="", description="The panel that decided.")
    policy: str = Field(default="", description="The policy applied.")
    strategy: str = Field(default="", description="The aggregation strategy.")
    constitution_version: str | None = Field(default=None, description="Constitution stamp.")
    decisions: list[dict[str, Any]] = Field(default_factory=list, description="Per subject.")
    votes: list[dict[str, Any]] = Field(default_factory=list, description="Every judge's vote.")
    drafts: list[dict[str, Any]] = Field(default_factory=list, description="Rewrites tried.")
    latency_ms: float = Field(default=0.0, description="The service's decision time.")
    cost_usd: float | None = Field(default=None, description="Known judge costs.")
    committed: bool = Field(default=False, description="Recorded in the store before the reply.")
    replayed: bool = Field(default=False, description="The recorded answer to a repeated id.")

    @property
    def passed(self) -> bool:
        """Whether a candidate was delivered as written (``pass`` or ``flag``)."""
        return self.decision in ("pass", "flag")

    @property
    def withheld(self) -> bool:
        """Whether the candidates' text was not delivered as it was (block, rewrite, ...)."""
        return self.decision in WITHHELD


class ConsensusAPIError(Exception):
    """The service refused a request, or could not be reached.

    Attributes:
        status: The HTTP status (None when no answer came).
        message: The service's message (or the start of the body it sent).
        type: The error type of the body (``invalid_request_error``, ...).
        code: The error code (``invalid_field``, ``invalid_token``, ...).
        param: The request field at fault, when one is.
    """

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None,
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.status, self.type, self.code, self.param = (message, status, type,
                                                                       code, param)

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{self.message} ({where}{f', {self.code}' if self.code else ''})"


class BadRequestError(ConsensusAPIError):
    """400, 413 or 422: the request is malformed, too large or names a bad option."""


class AuthenticationError(ConsensusAPIError):
    """401: no token, or not a valid one."""


class PermissionDeniedError(ConsensusAPIError):
    """403: the token may not choose that panel or policy."""


class NotFoundError(ConsensusAPIError):
    """404: an unknown panel, policy or route."""


class ServerError(ConsensusAPIError):
    """5xx: the service failed (after the retries, for 500/502/503/504)."""


class ConnectionFailed(ConsensusAPIError):
    """No answer (connection refused or reset, timeout) after the retries."""


_BY_STATUS: dict[int, type[ConsensusAPIError]] = {
    400: BadRequestError, 413: BadRequestError, 422: BadRequestError,
    401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError}


class _Core:
    """What both clients share: settings, request bodies, backoff, error parsing."""

    def __init__(self, base_url: str, token: str | None, retries: int, backoff_s: float,
                 seed: int | None):
        if retries < 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff_s = retries, backoff_s
        self._token = token
        self._rng = random.Random(seed)  # jitter, not a secret

    def __repr__(self) -> str:
        auth = ", token=***" if self._token else ""
        return f"{type(self).__name__}(base_url={self.base_url!r}{auth})"

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"consensus-client/{__version__}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    @staticmethod
    def _body(prompt: str, candidates: Candidates, id: str | None, task: TaskKind,
              options: dict[str, Any]) -> dict[str, Any]:
        body = {"id": id or uuid.uuid4().hex, "prompt": prompt, "task": task,
                "candidates": [c if isinstance(c, str) else dict(c) for c in candidates]}
        body.update({k: v for k, v in options.items() if v is not None})
        return body

    def _delay(self, attempt: int) -> float:
        return min(MAX_BACKOFF_S, self.backoff_s * 2 ** attempt) * (0.5 + self._rng.random() / 2)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _retryable(self, attempt: int, resp: httpx.Response | None = None,
                   exc: Exception | None = None) -> bool:
        if attempt >= self.retries:
            return False
        if resp is not None:
            return resp.status_code in RETRY_STATUSES
        return not isinstance(exc, httpx.UnsupportedProtocol)  # a bad scheme will not mend

    def _failed(self, path: str, exc: Exception, attempts: int) -> ConnectionFailed:
        return ConnectionFailed(self._scrub(
            f"no answer from {self.base_url}{path} after {attempts} attempt(s): "
            f"{type(exc).__name__}: {exc}"[:500]))

    def _checked(self, resp: httpx.Response) -> httpx.Response:
        if resp.is_success:
            return resp
        status = resp.status_code
        fields: dict[str, Any] = {}
        try:
            err = resp.json().get("error")
            if isinstance(err, dict) and err.get("message"):
                fields = err
        except (ValueError, AttributeError):
            pass
        message = str(fields.get("message") or resp.text[:300] or resp.reason_phrase)
        kind = _BY_STATUS.get(status, ServerError if status >= 500 else ConsensusAPIError)
        opt = {k: (str(fields[k]) if fields.get(k) is not None else None)
               for k in ("type", "code", "param")}
        raise kind(self._scrub(message), status=status, **opt)

    @staticmethod
    def _result(resp: httpx.Response) -> ConsensusResult:
        try:
            return ConsensusResult.model_validate(resp.json())
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ConsensusAPIError(f"not a decision document: {resp.text[:300]!r}",
                                    status=resp.status_code) from exc


class Client(_Core):
    """A synchronous client of the service.

    Args:
        base_url: The service's address, e.g. ``http://127.0.0.1:8000``.
        token: The bearer token (when the service has tokens).
        timeout: Seconds per attempt (connect, read, write each).
        retries: Retries after the first attempt, on no answer or 500/502/503/504.
        backoff_s: The first retry's delay before jitter; each next one doubles.
        transport: An httpx transport (e.g. ``httpx.MockTransport`` in tests).
        seed: Seed of the jitter (None: from the OS).

    Example:
        >>> with Client("http://127.0.0.1:8000", token="...") as c:  # doctest: +SKIP
        ...     c.decide("Tell me about cats", ["You are a worthless idiot."]).withheld
        True
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5,
                 transport: httpx.BaseTransport | None = None, seed: int | None = None):
        super().__init__(base_url, token, retries, backoff_s, seed)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers(),
                                  timeout=timeout, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                if not self._retryable(attempt, exc=exc):
                    raise self._failed(path, exc, attempt + 1) from exc
            else:
                if not self._retryable(attempt, resp):
                    return self._checked(resp)
            time.sleep(self._delay(attempt))
            attempt += 1

    def decide(self, prompt: str, candidates: Candidates, *, id: str | None = None,
               task: TaskKind = "verdict", panel: str | None = None,
               strategy: str | None = None, policy: str | None = None,
               metadata: Mapping[str, Any] | None = None) -> ConsensusResult:
        """Decide candidates with a panel (``POST /v1/consensus``).

        Args:
            prompt: The user prompt the candidates answer.
            candidates: Texts, or dicts ``{id?, text, generator?, metadata?}``.
            id: The request id (idempotency key); default a new UUID4 hex.
            task: ``verdict`` or ``pairwise``.
            panel: The panel (default: the service's).
            strategy: A strategy name (default: the panel's).
            policy: A policy name (default: the panel's).
            metadata: Request metadata (e.g. a factuality reference).

        Raises:
            ConsensusAPIError: A subclass by status; ConnectionFailed without an answer.
        """
        body = self._body(prompt, candidates, id, task, {
            "panel": panel, "strategy": strategy, "policy": policy,
            "metadata": dict(metadata) if metadata is not None else None})
        return self._result(self._request("POST", "/v1/consensus", body))

    def panels(self) -> dict[str, Any]:
        """The panels and policies this token may choose (``GET /v1/panels``)."""
        return self._request("GET", "/v1/panels").json()

    def health(self) -> bool:
        """Whether the service answers ``/healthz`` (one attempt, no exception)."""
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def ready(self) -> dict[str, Any]:
        """The panels' judges and the store (``GET /readyz``)."""
        return self._request("GET", "/readyz").json()

    def metrics(self) -> str:
        """The Prometheus exposition text (``GET /metrics``)."""
        return self._request("GET", "/metrics").text


class AsyncClient(_Core):
    """The asynchronous twin of :class:`Client` (same arguments, awaitable methods).

    Example:
        >>> async with AsyncClient("http://127.0.0.1:8000", token="...") as c:  # doctest: +SKIP
        ...     (await c.decide("Say hi", ["Hello!"])).passed
        True
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5,
                 transport: httpx.AsyncBaseTransport | None = None, seed: int | None = None):
        super().__init__(base_url, token, retries, backoff_s, seed)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers(),
                                       timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = await self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                if not self._retryable(attempt, exc=exc):
                    raise self._failed(path, exc, attempt + 1) from exc
            else:
                if not self._retryable(attempt, resp):
                    return self._checked(resp)
            await asyncio.sleep(self._delay(attempt))
            attempt += 1

    async def decide(self, prompt: str, candidates: Candidates, *, id: str | None = None,
                     task: TaskKind = "verdict", panel: str | None = None,
                     strategy: str | None = None, policy: str | None = None,
                     metadata: Mapping[str, Any] | None = None) -> ConsensusResult:
        """Decide candidates with a panel (see :meth:`Client.decide`)."""
        body = self._body(prompt, candidates, id, task, {
            "panel": panel, "strategy": strategy, "policy": policy,
            "metadata": dict(metadata) if metadata is not None else None})
        return self._result(await self._request("POST", "/v1/consensus", body))

    async def panels(self) -> dict[str, Any]:
        """The panels and policies this token may choose (``GET /v1/panels``)."""
        return (await self._request("GET", "/v1/panels")).json()

    async def health(self) -> bool:
        """Whether the service answers ``/healthz`` (one attempt, no exception)."""
        try:
            return (await self._http.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    async def ready(self) -> dict[str, Any]:
        """The panels' judges and the store (``GET /readyz``)."""
        return (await self._request("GET", "/readyz")).json()

    async def metrics(self) -> str:
        """The Prometheus exposition text (``GET /metrics``)."""
        return (await self._request("GET", "/metrics")).text
