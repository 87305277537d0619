"""A lean chat-completions call for OpenAI-compatible endpoints, on aiohttp.

llama.cpp's server, Ollama's ``/v1``, vLLM, LM Studio, proxies and OpenAI itself speak the same
``POST {api_base}/chat/completions``. For those an LLM judge needs one HTTP request and one JSON
decode, not litellm's machinery around it (cost calculation, logging payloads, callbacks), which
cost ~2 ms of CPU per call against ~0.1 ms for the request itself
(``benchmarks/llm_call.py``). litellm stays the path for every other provider.

Semantics are litellm's, tested side by side on the loopback server (``tests/test_llm_http.py``):

* errors become a :class:`~consensus.errors.JudgeError`: ``timeout`` for a timeout;
  ``provider_error`` otherwise, retryable for 408/409/425/429, 5xx and connection errors, not
  for other 4xx (bad request, auth, not found, context window);
* usage gives the tokens; the cost is litellm's price for the model times the tokens, looked up
  once per model (None when the model has no price, as litellm says);
* the error text never carries the key (the caller scrubs it, as for litellm).

One :class:`aiohttp.ClientSession` serves every judge of a process on one event loop; its
connection pool keeps the connections alive between calls.

Example (needs a server)::

    call = OpenAIHTTP("http://127.0.0.1:8080/v1", "smollm2")
    done = await call.complete({"messages": [...], "max_tokens": 150}, api_key=None, timeout=20)
    done.text, done.total_tokens
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic_core import from_json, to_json

from consensus.errors import JudgeError

OPENAI_BASE = "https://api.openai.com/v1"
_JSON = {"Content-Type": "application/json"}
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""4xx statuses a retry may fix (timeouts, conflicts, too early, rate limits)."""


@dataclass(frozen=True)
class Completion:
    """What a judge needs from a reply, whichever path produced it."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None


_SESSIONS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, AsyncGenerator[None, None]]] = (
    weakref.WeakKeyDictionary())


_PARKING: set[asyncio.Task[None]] = set()


def session() -> aiohttp.ClientSession:
    """This event loop's shared session (created on first use, closed with the loop)."""
    loop = asyncio.get_running_loop()
    held = _SESSIONS.get(loop)
    if held is None or held[0].closed:
        # limit=0: the endpoint's own slots bound the calls in flight (judges/endpoint.py)
        # No aiohttp timeouts: each call is bounded by asyncio.timeout in complete(), and
        # aiohttp's own timers cost three event-loop timers per request.
        s = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None,
                                          sock_connect=None))
        closer = _close_at_shutdown(s)
        task = loop.create_task(_park(closer))
        _PARKING.add(task)  # a task nobody holds may be collected before it runs
        task.add_done_callback(_PARKING.discard)
        _SESSIONS[loop] = held = (s, closer)
    return held[0]


async def _park(gen: AsyncGenerator[None, None]) -> None:
    await anext(gen)


async def _close_at_shutdown(s: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Parked on its first ``yield`` for the loop's lifetime; ``asyncio.run`` closes the
    loop's async generators before the loop (``shutdown_asyncgens``), which closes the
    session, so no "Unclosed client session" noise is left for interpreter exit."""
    try:
        yield
    finally:
        await s.close()
        _SESSIONS.pop(asyncio.get_running_loop(), None)  # the session held the loop


class OpenAIHTTP:
    """``POST {api_base}/chat/completions`` for one model (see the module docstring).

    Args:
        api_base: The endpoint (``.../v1``); OpenAI's when None.
        model: The model name the server expects (without litellm's provider prefix).
        prices: (input, output) USD per token, or None when the model has no price.
    """

    def __init__(self, api_base: str | None, model: str,
                 prices: tuple[float, float] | None = None):
        self.url = (api_base or OPENAI_BASE).rstrip("/") + "/chat/completions"
        self.model = model
        self.prices = prices

    async def complete(self, body: dict[str, Any], api_key: str | None,
                       timeout: float) -> Completion:
        """One call. Raises :class:`JudgeError` (never anything else)."""
        headers = {"Authorization": f"Bearer {api_key}", **_JSON} if api_key else _JSON
        payload = to_json({**body, "model": self.model})  # pydantic-core: 5x json.dumps
        try:
            async with asyncio.timeout(timeout):
                async with session().post(self.url, data=payload, headers=headers) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            raise JudgeError(f"Timeout: no reply from {self.url} within {timeout:.3g}s",
                             kind="timeout", unhealthy=True) from None
        except aiohttp.ClientError as exc:
            raise JudgeError(f"APIConnectionError: {type(exc).__name__}: {exc}"[:300],
                             unhealthy=True) from None
        except OSError as exc:  # a socket error aiohttp did not wrap
            raise JudgeError(f"APIConnectionError: {type(exc).__name__}: {exc}"[:300],
                             unhealthy=True) from None
        except Exception as exc:  # noqa: BLE001 - e.g. aiohttp refusing the URL: a config error
            raise JudgeError(f"{type(exc).__name__}: {exc}"[:300], retryable=False) from None
        if status >= 400:
            raise _status_error(status, raw, retry_after)
        try:
            data = from_json(raw)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise JudgeError(f"APIError: {self.url} sent a reply that is not a chat "
                             f"completion: {raw[:120]!r}", retryable=True,
                             unhealthy=True) from None
        usage = data.get("usage") or {}
        p, c = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        total = _int(usage.get("total_tokens"))
        if total is None and p is not None and c is not None:
            total = p + c
        cost = None
        if self.prices is not None and p is not None and c is not None:
            cost = p * self.prices[0] + c * self.prices[1]
        return Completion(text=text if isinstance(text, str) else json.dumps(text),
                          finish_reason=choice.get("finish_reason"), prompt_tokens=p,
                          completion_tokens=c, total_tokens=total, cost_usd=cost)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


_NAMES = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
          404: "NotFoundError", 408: "Timeout", 422: "UnprocessableEntityError",
          429: "RateLimitError"}


def _status_error(status: int, raw: bytes, retry_after: str | None) -> JudgeError:
    """An HTTP error status as litellm would classify it."""
    message, code = raw.decode("utf-8", "replace")[:300], ""
    try:
        err = from_json(raw).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = str(err.get("code") or err.get("type") or "")
        elif isinstance(err, str):
            message = err
    except (ValueError, AttributeError):
        pass
    if "context_length" in code or "maximum context length" in message.lower():
        name = "ContextWindowExceededError"
    else:
        name = _NAMES.get(status, "InternalServerError" if status >= 500 else "APIError")
    retryable = status in RETRYABLE_STATUS or status >= 500
    after = None
    if retry_after:
        try:
            after = max(0.0, float(retry_after))
        except ValueError:
            after = None
    text = f"{name}: HTTP {status}" + (f" {code}" if code else "") + f": {message}"
    return JudgeError(text[:300], retryable=retryable,
                      kind="timeout" if status == 408 else "provider_error",
                      unhealthy=status >= 500 or status == 408, status=status,
                      retry_after_s=after)
