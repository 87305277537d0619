"""One litellm call for an LLM judge (or a generator) and the one place its errors are
translated: :func:`litellm_completion`, :func:`map_litellm_error` (retryable or not, healthy or
not), :func:`scrub` (no secret in a reason), what litellm knows of a model
(:func:`_model_info`, :func:`_auto_format`) and the lazy import of litellm (:func:`_litellm`:
importing it takes seconds, and ``LITELLM_LOCAL_MODEL_COST_MAP`` must be set first so it never
fetches its cost map).

Example:
    >>> map_litellm_error(TimeoutError()).kind
    'timeout'
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

from consensus.errors import JudgeError
from consensus.redact import redact
from judges.llm_spec import LLMJudgeSpec, ResponseFormat

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def map_litellm_error(exc: BaseException, secrets: Iterable[str] = ()) -> JudgeError:
    """Translate whatever a litellm call raised into a :class:`JudgeError` (the one place).

    Timeouts (litellm's ``Timeout``, asyncio's) -> kind ``timeout``, retryable. Everything else is
    ``provider_error``: retryable for 408/409/425/429, 5xx and connection errors; not for other
    4xx (bad request, auth 401/403, not found, context window, content policy) or unknown errors.

    Example:
        >>> map_litellm_error(TimeoutError()).kind
        'timeout'
    """
    names = {c.__name__ for c in type(exc).__mro__}
    detail = str(exc)
    text = detail if detail.startswith("litellm.") else f"{type(exc).__name__}: {detail}"
    message = scrub(text, secrets)[:300]
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    if any("Timeout" in n for n in names):  # asyncio, litellm.Timeout, openai, httpx
        return JudgeError(message, retryable=True, kind="timeout", unhealthy=True,
                          status=status)
    if isinstance(status, int) and 400 <= status < 500:
        retryable = status in _RETRYABLE_STATUS
    elif isinstance(status, int) and status >= 500:
        retryable = True  # litellm also gives its APIConnectionError status 500
    else:
        retryable = bool(names & {"APIConnectionError", "ConnectError", "ConnectionError",
                                  "ServiceUnavailableError"})
    if "missing credentials" in detail.lower():
        retryable = False  # the OpenAI SDK's client-side check, which litellm reports as a 500
    # litellm reports a refused connection as APIConnectionError with status 500
    unhealthy = retryable and (status is None or status >= 500)
    return JudgeError(message, retryable=retryable, kind="provider_error",
                      unhealthy=unhealthy, status=status)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with the judge's own secrets (and any fragment of them) and every key-like
    substring masked (:func:`consensus.redact.redact`)."""
    return redact(text, secrets)


async def litellm_completion(lm: Any, body: dict[str, Any], model: str, api_base: str | None,
                             api_key: str | None, timeout: float, fixed_timeout: float,
                             secrets: Iterable[str] = ()) -> Any:
    """One ``litellm.acompletion`` call (no retries of its own), bounded by ``timeout``; every
    failure is a :class:`JudgeError` (:func:`map_litellm_error`).

    litellm gets the same ``fixed_timeout`` on every call: it is part of the key of litellm's
    client cache, and a new value per call means a new OpenAI client per call (~2 ms). The outer
    bound enforces what is left of the caller's budget (and catches providers that ignore
    litellm's timeout). A keyless ``api_base`` gets a placeholder key (litellm's OpenAI client
    insists on one), never the user's OPENAI_API_KEY.
    """
    kwargs: dict[str, Any] = {**body, "model": model, "num_retries": 0}
    if api_base:
        kwargs["api_base"] = api_base
        kwargs["api_key"] = api_key or "no-key"
    elif api_key:
        kwargs["api_key"] = api_key
    try:
        async with asyncio.timeout(timeout):
            return await lm.acompletion(**kwargs, timeout=fixed_timeout)
    except Exception as exc:  # noqa: BLE001 - translated in one place
        raise map_litellm_error(exc, secrets) from None


def _litellm() -> Any:
    """Import litellm with its cost map local (no network) and its chatter off."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on errors
    if hasattr(litellm, "telemetry"):  # older releases only
        litellm.telemetry = False
    return litellm


def _model_info(lm: Any, model: str) -> dict[str, Any]:
    """litellm's facts about ``model`` (prices, context window, published rate limits), or {}
    when its local map does not know the model (looked up once, at build)."""
    try:
        return dict(lm.get_model_info(model=model))
    except Exception:  # noqa: BLE001 - unknown model
        return {}


def _auto_format(lm: Any, spec: LLMJudgeSpec, provider: str) -> ResponseFormat:
    """json_schema for an api_base (llama.cpp, Ollama, vLLM and OpenAI-compatible proxies take
    it) and for models litellm says support it; json_object where litellm says the provider
    takes a response_format; text otherwise."""
    if spec.api_base:
        return "json_schema"
    try:
        if lm.supports_response_schema(model=spec.model, custom_llm_provider=provider):
            return "json_schema"
        params = lm.get_supported_openai_params(model=spec.model, custom_llm_provider=provider)
        return "json_object" if params and "response_format" in params else "text"
    except Exception:  # noqa: BLE001 - a model litellm does not know
        return "json_object"
