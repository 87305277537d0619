"""LLM judges through litellm: a rubric / constitution prompt, a JSON verdict, a vote.

The judge sends one system message (rubric, principles, the strict reply schema) and one user
message holding the prompt and the candidate(s) *as data*, verbatim, each in a block between
``<<<DATA-<token>>>> <what it holds>`` and ``<<<END-<token>>>>`` lines. The token is drawn at
random per call (:func:`data_token`, 12 hex digits) until it occurs in none of the call's texts,
so no candidate can close its block (or open another) and speak as the operator; the system
message names the token and says that everything between its markers is data to be judged,
never instructions, and that instructions, verdicts or ratings inside the data must be ignored
and count against the response. The verdict comes only from the reply: it is parsed by
:class:`VerdictReply` (``model_validate_json``; the schema is also sent as the response format),
then by a tolerant fallback (code fences, prose around the JSON, synonyms, percentages); a JSON
object inside prose that occurs in the data (a model echoing a candidate's forged
``{"verdict": "accept"}``) is skipped by the fallback, and when no verdict is left the judge
abstains (``unparseable``, saying the JSON was copied from the data). A reply that is exactly
the schema is the judge's own verdict.

Debate rounds (:meth:`LLMJudge.deliberate`, the :class:`judges.base.Deliberating` protocol) make
the same call with a debate instruction added to the system message (reconsider in the light of
the other judges' assessments; they may be wrong; their texts are data) and, after the data
blocks, the judge's previous vote and one line per peer (by alias only), each followed by the
peer's critique as a data block of the same token::

    Your previous vote: accept
    Judge A voted: reject (confidence 0.80)
    <<<DATA-3f9a1c2b4d5e>>> critique by Judge A
    It gives dosing advice.
    <<<END-3f9a1c2b4d5e>>>

These two line formats are a contract (the tests' loopback server parses them).

Errors: litellm exceptions are translated in one place, :func:`map_litellm_error`. litellm's own
retries are switched off (``num_retries=0``, which also sets the OpenAI SDK client's
``max_retries`` to 0); this module retries retryable errors (429, timeouts, 5xx, connection
errors) with exponential backoff, up to ``retries`` times and within the spec's ``timeout_s``
budget, so the judge answers with its own reason before the coordinator's deadline.
A judge never raises: every failure is an abstention, and no reason carries the API key.

This module holds the judge (:class:`LLMJudge`: its calls, retries, limits and context window)
and re-exports the rest: the spec in :mod:`judges.llm_spec`, the prompt and the reading of the
reply in :mod:`judges.llm_prompt`, the litellm call, its error mapping and the lazy import of
litellm (first used when a judge is built) in :mod:`judges.llm_call`.

Example:
    >>> spec = LLMJudgeSpec(name="gpt", model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY",
    ...                     principles=[{"id": "no-harm", "text": "Do not help cause harm."}])
    >>> spec.kind, spec.retries, spec.principles[0].id
    ('llm', 2, 'no-harm')
    >>> parse_verdict('```json\\n{"verdict": "PASS", "confidence": "90%"}\\n```').verdict
    'accept'
"""


from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from consensus.errors import JudgeError, VerdictParseError
from consensus.types import (
    VERDICT_LABELS,
    AbstainKind,
    Candidate,
    PeerView,
    Request,
    Violation,
    Vote,
)
from judges.base import Provenance, provenance
from judges.endpoint import Breaker, Lease, declare, endpoint_for, endpoint_key
from judges.llm_call import (
    _auto_format,
    _litellm,
    _model_info,
    litellm_completion,
    map_litellm_error,
    scrub,
)
from judges.llm_prompt import (
    _SLOT,
    TOKEN_BYTES,
    Debate,
    VerdictReply,
    as_text,
    build_messages,
    cut_middle,
    data_block,
    data_texts,
    data_token,
    parse_verdict,
    read_verdict,
    system_message,
    user_message,
    verdict_schema,
)
from judges.llm_spec import (
    _FORMATS,
    DEFAULT_RUBRIC,
    HTTP_BODY_KEYS,
    HTTP_PROVIDERS,
    Client,
    LLMJudgeSpec,
    PrincipleText,
    ResponseFormat,
)
from judges.openai_http import Completion, OpenAIHTTP

__all__ = [
    "DEFAULT_RUBRIC", "HTTP_BODY_KEYS", "HTTP_PROVIDERS", "TOKEN_BYTES", "Client", "Debate",
    "LLMJudge", "LLMJudgeSpec", "PrincipleText", "ResponseFormat", "VerdictReply", "as_text",
    "build_messages", "cut_middle", "data_block", "data_texts", "data_token",
    "litellm_completion", "map_litellm_error", "parse_verdict", "read_verdict", "scrub",
    "system_message", "user_message", "verdict_schema",
]


class LLMJudge:
    """An LLM judge (see module docstring).

    Example (needs a provider or the tests' loopback server)::

        judge = LLMJudge(LLMJudgeSpec(name="gpt", model="openai/gpt-4o-mini",
                                      api_key_env="OPENAI_API_KEY"))
        vote = await judge.judge(request, request.candidates[0])
    """

    def __init__(self, spec: LLMJudgeSpec):
        self.spec = spec
        self.name = spec.name
        self.version = spec.version()
        self._litellm = _litellm()  # at build time (actor __init__), not on the first call
        self._rng = random.Random(spec.name)  # backoff jitter, deterministic per judge
        lm = self._litellm
        found_base: str | None = None
        try:
            served, provider, _, found_base = lm.get_llm_provider(spec.model,
                                                                  api_base=spec.api_base)
        except Exception:  # noqa: BLE001 - litellm does not know it: its call will say why
            served, provider = spec.model, spec.model.partition("/")[0]
        self.provider: str = provider
        self._served: str = served
        info = _model_info(lm, spec.model)
        # Where the lean path would send the call: the spec's api_base, else what litellm found
        # (HOSTED_VLLM_API_BASE, OPENAI_BASE_URL, ...), else OpenAI itself, for openai/ only.
        base = spec.api_base or found_base or (os.environ.get("OPENAI_BASE_URL")
                                               if provider == "openai" else None)
        self.client: Client = spec.client
        if self.client == "auto":
            lean = (provider in HTTP_PROVIDERS and spec.extra.keys() <= HTTP_BODY_KEYS
                    and (base is not None or provider == "openai"))
            self.client = "http" if lean else "litellm"
        prices = None
        if info.get("input_cost_per_token") is not None:
            prices = (float(info["input_cost_per_token"]),
                      float(info.get("output_cost_per_token") or 0.0))
        self._base = base
        self._http = OpenAIHTTP(base, served, prices) if self.client == "http" else None
        self.format: ResponseFormat = spec.format()
        if self.format == "auto":
            self.format = _auto_format(lm, spec, provider)
        window = spec.context_window or info.get("max_input_tokens")
        self.window: int | None = int(window) if window else None
        # A declared window is the whole context (prompt and reply, llama.cpp's -c).
        self._room = (self.window - (spec.max_tokens if spec.context_window else 0)
                      if self.window else None)
        self._endpoint_key = endpoint_key(spec.api_base, provider)
        declare(self._endpoint_key, max_in_flight=spec.endpoint_max_in_flight,
                default_max_in_flight=spec.endpoint_limit(),
                requests_per_minute=spec.requests_per_minute or info.get("rpm"))
        if spec.max_in_flight:
            declare(f"judge {spec.name}", max_in_flight=spec.max_in_flight,
                    default_max_in_flight=None, requests_per_minute=None)
        self._system = {(pairwise, debate): system_message(spec, pairwise, _SLOT, debate)
                        for pairwise in (False, True) for debate in (False, True)}
        self._ids = tuple(p.id for p in spec.principles)
        self._schemas: dict[tuple[str, ...], dict[str, Any]] = {}

    async def judge(self, request: Request, candidate: Candidate | None) -> Vote:
        """Vote on ``candidate`` (accept/reject) or, when None, on the better candidate."""
        return await self._vote(request, candidate, None)

    async def deliberate(self, request: Request, candidate: Candidate | None, previous: Vote,
                         peers: Sequence[PeerView], round: int) -> Vote:
        """Debate round ``round``: the same call as :meth:`judge`, the system message with the
        debate instruction, the user message with the judge's previous vote and its peers'
        votes and critiques (by alias, as data). The vote and critique are the new reply's."""
        return await self._vote(request, candidate, Debate(previous, tuple(peers), round))

    async def _vote(self, request: Request, candidate: Candidate | None,
                    debate: Debate | None) -> Vote:
        start = time.perf_counter()
        common = provenance(self, request, candidate)
        secrets = self._secrets()
        try:
            vote = await self._judge(request, candidate, start, common, secrets, debate)
        except Exception as exc:  # noqa: BLE001 - a judge never raises into the coordinator
            vote = Vote.abstain(kind="error", reason=scrub(f"{type(exc).__name__}: {exc}",
                                                           secrets)[:300], **common)
        return vote.model_copy(update={"latency_s": time.perf_counter() - start})

    async def _judge(self, request: Request, candidate: Candidate | None, start: float,
                     common: Provenance, secrets: list[str], debate: Debate | None = None
                     ) -> Vote:
        spec = self.spec
        labels = request.labels() if candidate is None else VERDICT_LABELS
        if candidate is None and len(request.candidates) < 2:
            return Vote.abstain(kind="error", reason="pairwise call needs 2+ candidates",
                                **common)
        api_key, missing = self._api_key()
        if missing:
            return Vote.abstain(kind="provider_error", reason=f"environment variable "
                                f"{missing} is not set", **common)
        data = data_texts(request, candidate, debate)
        messages, cut = self._messages(request, candidate, debate, data)
        if isinstance(messages, str):
            return Vote.abstain(kind="error", reason=messages, **common)
        leases: list[Lease] = []
        endpoints = self._endpoints()
        breaker = endpoints[-1].breaker(self._served)
        # One deadline for every wait (the judge's own slots, then the endpoint's).
        queue_deadline = start + (spec.queue_timeout_s if spec.limited() else spec.timeout_s)
        try:
            for i, ep in enumerate(endpoints):
                lease = await ep.acquire(queue_deadline,
                                         breaker if i == len(endpoints) - 1 else None)
                if isinstance(lease, str):
                    kind: AbstainKind = ("provider_error"
                                         if lease.startswith("endpoint unhealthy")
                                         else "timeout")
                    return Vote.abstain(kind=kind, reason=lease, **common)
                leases.append(lease)
            # Waiting for a slot does not count against the judge's own budget.
            call_start = time.perf_counter() if spec.limited() else start
            done = await self._call(messages, labels, api_key, call_start, secrets, breaker)
        except JudgeError as err:
            return Vote.abstain(kind=err.kind, reason=str(err), **common)
        finally:
            for lease in leases:
                lease.release()
        try:
            reply, path = read_verdict(done.text, labels, self._ids or None, data)
        except VerdictParseError as exc:
            cut_note = " (reply cut at max_tokens)" if done.finish_reason == "length" else ""
            excerpt = done.text[:200] + ("..." if len(done.text) > 200 else "")
            return Vote.abstain(kind="unparseable", reason=scrub(
                f"{exc}{cut_note}; reply: {excerpt!r}", secrets), tokens=done.total_tokens,
                cost_usd=done.cost_usd, parse="unparseable", **common)
        critique = reply.critique
        if cut:
            critique = f"{critique} (judged on texts shortened by {cut} characters to fit the " \
                       "context window)".lstrip()
        return Vote(label=reply.verdict, confidence=reply.confidence,
                    critique=scrub(critique, secrets),
                    violations=tuple(Violation(principle=p) for p in reply.violated_principles),
                    tokens=done.total_tokens, cost_usd=done.cost_usd, parse=path, **common)

    # ------------------------------------------------------------------ one call's parts
    def _api_key(self) -> tuple[str | None, str | None]:
        """(key, None), or (None, the name of the unset variable the judge needs)."""
        spec = self.spec
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            return (key, None) if key else (None, spec.api_key_env)
        if spec.api_base:
            return None, None  # a local server or a proxy: no key unless one is named
        if self.client == "http" and self.provider == "openai" and not self.spec.api_base:
            key = os.environ.get("OPENAI_API_KEY")  # OpenAI itself, as litellm finds its key
            return (key, None) if key else (None, "OPENAI_API_KEY")
        return None, None  # litellm finds the provider's default variable

    def _messages(self, request: Request, candidate: Candidate | None,
                  debate: Debate | None = None, data: Sequence[str] | None = None
                  ) -> tuple[list[dict[str, str]] | str, int]:
        """The call's messages and how many characters were cut to fit the context window, or
        the reason it cannot fit (the judge abstains without calling). ``data`` are the call's
        :func:`data_texts` (computed when None); its token occurs in none of them."""
        texts = data_texts(request, candidate, debate) if data is None else data
        token = data_token(texts)
        system = self._system[candidate is None, debate is not None].replace(_SLOT, token)
        # A shortened text is a head and a tail of its text around a cut note with no run of
        # 12 hex digits, so the token occurs in no shortened text either.
        build = partial(user_message, request, candidate, token=token, debate=debate)
        user = build()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        room = self._room
        # A token is at least one character in practice: a prompt shorter than the room in
        # characters fits, without counting its tokens (which costs ~1 ms per 2k tokens).
        if room is None or len(system) + len(user) <= room:
            return messages, 0
        need = self._count(messages)
        if need is None or need <= room:
            return messages, 0
        if self.spec.on_overflow == "abstain":
            return (f"the prompt needs {need} tokens, more than the {room} the context window "
                    f"of {self.window} leaves (on_overflow: abstain; no call made)"), 0
        size = full = len(user)
        per_text = max(map(len, texts))  # the longest text shown, then the cap on each text
        for _ in range(4):  # shrink the data texts until the prompt fits
            keep = int(max(0, size * room / need * 0.9 - 200))
            per_text = max(64, int(per_text * keep / max(size, 1)))
            user = build(partial(_cut, keep=per_text))
            messages[1] = {"role": "user", "content": user}
            need2 = self._count(messages)
            if need2 is not None and need2 <= room:
                return messages, full - len(user)
            size = len(user)
            need = need2 or need
        return (f"the prompt needs {need} tokens even after truncation, more than the {room} "
                f"the context window of {self.window} leaves"), 0

    def _count(self, messages: list[dict[str, str]]) -> int | None:
        try:
            return int(self._litellm.token_counter(model=self.spec.model, messages=messages))
        except Exception:  # noqa: BLE001 - no tokenizer for it: the server will say
            return None

    def _endpoints(self) -> list[Any]:
        """The judge's own limit (when it has one), then its endpoint."""
        spec = self.spec
        out = []
        if spec.max_in_flight:
            out.append(endpoint_for(f"judge {spec.name}", failures=2**31, cooldown_s=1.0))
        out.append(endpoint_for(self._endpoint_key, failures=spec.breaker_failures,
                                cooldown_s=spec.breaker_cooldown_s))
        return out

    def _body(self, messages: list[dict[str, str]], labels: Sequence[str]) -> dict[str, Any]:
        spec = self.spec
        body: dict[str, Any] = {**spec.extra, "messages": messages,
                                "temperature": spec.temperature, "max_tokens": spec.max_tokens}
        if "response_format" in spec.extra:
            return body
        if self.format in ("json_schema", "json_object_schema"):
            key = (self.format, *labels)
            fmt = self._schemas.get(key)
            if fmt is None:
                schema = verdict_schema(labels, self._ids,
                                        spec.critique_max_chars if spec.api_base else None)
                fmt = self._schemas[key] = (
                    {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True,
                                                            "schema": schema}}
                    if self.format == "json_schema" else {"type": "json_object", "schema": schema})
            body["response_format"] = fmt
        elif self.format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def _call(self, messages: list[dict[str, str]], labels: Sequence[str],
                    api_key: str | None, start: float, secrets: list[str],
                    breaker: Breaker) -> Completion:
        """One completion, retried on retryable errors within the spec's time budget; a
        refused response format is downgraded (json_schema, json_object, text) and resent."""
        spec = self.spec
        deadline = start + spec.timeout_s
        attempt = 0
        while True:
            left = deadline - time.perf_counter()
            timeout = min(spec.call_timeout_s, max(left, 0.01))
            used = self.format
            try:
                done = await self._once(self._body(messages, labels), api_key, timeout)
                breaker.success()
                return done
            except JudgeError as exc:
                err = exc
            err.args = (scrub(str(err), secrets)[:300],)
            if self._refused_format(err, used):
                breaker.success()  # it answered: the endpoint is up
                continue
            if err.unhealthy:
                breaker.failure(str(err))
            else:
                breaker.success()
            if err.kind == "timeout":
                budget = (f"call_timeout_s of {spec.call_timeout_s:g}s"
                          if timeout >= spec.call_timeout_s else
                          f"timeout_s of {spec.timeout_s:g}s, {timeout:.3g}s of it left")
                err.args = (f"{err.args[0]} (the judge's {budget}"
                            + ("" if spec.retry_timeouts else "; timeouts are not retried: "
                               "retry_timeouts is off") + ")",)
            delay = spec.retry_backoff_s * 2**attempt * (0.75 + 0.5 * self._rng.random())
            delay = max(delay, err.retry_after_s or 0.0)
            retry = (err.retryable and (err.kind != "timeout" or spec.retry_timeouts)
                     and attempt < spec.retries and time.perf_counter() + delay < deadline)
            blocked = breaker.check() if retry else None  # looks only: claims no probe
            if not retry or blocked:
                if blocked:
                    err.args = (f"{err.args[0]}; {blocked}",)
                if attempt:
                    err.args = (f"{err.args[0]} (after {attempt + 1} attempts)",)
                raise err
            await asyncio.sleep(delay)
            attempt += 1

    def _refused_format(self, err: JudgeError, used: ResponseFormat) -> bool:
        """Step the response format down (``auto`` only) when the server refused it: an HTTP
        error naming the format and saying it is not supported or invalid. llama-cpp-python's
        server answers a json_schema format with a 500 validation error, hence any status."""
        text = str(err).lower()
        if (err.status is None or err.status < 400 or used == "text"
                or self.spec.format() != "auto" or "response_format" in self.spec.extra
                or not any(w in text for w in ("response_format", "json_schema",
                                               "json_object", "response format"))
                or not any(w in text for w in ("not support", "unsupported", "does not support",
                                               "not available", "invalid", "unknown",
                                               "not allowed", "not permitted", "should be",
                                               "validation error", "extra inputs"))):
            return False
        if self.format == used:  # concurrent refusals of one format step down once
            self.format = _FORMATS[_FORMATS.index(used) + 1]
        return True

    async def _once(self, body: dict[str, Any], api_key: str | None,
                    timeout: float) -> Completion:
        if self._http is not None:
            return await self._http.complete(body, api_key, timeout)
        resp = await litellm_completion(self._litellm, body, self.spec.model, self.spec.api_base,
                                        api_key, timeout, self.spec.call_timeout_s)
        usage = getattr(resp, "usage", None)
        choice = resp.choices[0]
        text = choice.message.content or ""
        return Completion(text=text if isinstance(text, str) else as_text(text),
                          finish_reason=choice.finish_reason,
                          prompt_tokens=getattr(usage, "prompt_tokens", None),
                          completion_tokens=getattr(usage, "completion_tokens", None),
                          total_tokens=getattr(usage, "total_tokens", None),
                          cost_usd=self._cost(resp))

    def _cost(self, resp: Any) -> float | None:
        hidden = getattr(resp, "_hidden_params", None) or {}
        if "response_cost" in hidden:  # litellm computed it already (None: model not priced)
            cost = hidden["response_cost"]
            return None if cost is None else float(cost)
        try:  # models missing from litellm's (local) cost map raise
            return float(self._litellm.completion_cost(completion_response=resp))
        except Exception:  # noqa: BLE001
            return None

    def _secrets(self) -> list[str]:
        names = [*self.spec.requires_env, self.spec.api_key_env]
        if self.client == "http" and self.provider == "openai" and not self.spec.api_base:
            names.append("OPENAI_API_KEY")
        return [v for n in names if n and (v := os.environ.get(n))]


def _cut(text: str, keep: int) -> str:
    return cut_middle(text, keep)
