"""The guardrail proxy: ``/v1/chat/completions`` screened, forwarded, judged, intervened.

1. The prompt is screened on input (the policy's ``screen_input``): a blocked prompt is answered
   with the policy's refusal and never reaches the upstream (zero calls, zero tokens billed).
2. The request goes to the upstream model (the service's ``upstream:``; through litellm, or the
   lean HTTP call for OpenAI-compatible servers) with the client's parameters.
3. The panel judges the answer as the request's only candidate, and the policy acts on it as
   ``consensus run`` does (block, revise, regenerate, flag, escalate), drafts included.
4. The answer is a chat completion the official ``openai`` client parses, whatever the outcome:
   the delivered text, ``finish_reason`` ``content_filter`` where the upstream's text was
   withheld or changed (else the upstream's own), the upstream's real ``usage``, and the
   decision in a ``consensus`` field and in the ``X-Consensus-Decision`` / ``X-Consensus-Id``
   headers. A block, a panel outage (``no_consensus``) and a pass are three different decisions.

An upstream that fails or is too slow is a 502 / 504 error (``upstream_error``), never content.

Streaming (``stream: true``) is judged first, streamed after: the whole answer is decided before
the first byte is sent (a withheld answer never reaches the client, not even in part), then the
delivered text goes out as ``chat.completion.chunk`` events, the last one with the
``finish_reason`` and the ``consensus`` field (and ``usage`` when ``stream_options.include_usage``
asks), and the stream always ends with ``data: [DONE]``. The client waits for the panel as it
would without streaming; what it gains is an unchanged streaming code path.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from consensus.errors import JudgeError
from consensus.service.runtime import ApiError, Choice, Runtime
from consensus.service.schemas import WITHHELD, ChatRequest, consensus_body, decision_of
from consensus.types import Candidate, Outcome, Request

ANSWER_ID = "answer"
"""The candidate id of the upstream's answer on the panel's ballot."""


def _messages(req: ChatRequest) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in req.messages]


async def chat_completion(rt: Runtime, req: ChatRequest, principal: str | None,
                          request_id: str | None) -> tuple[dict[str, Any], Outcome, str]:
    """The completion body, the outcome and the one-word decision for ``req``."""
    opts = req.consensus
    choice = rt.choose(principal, opts.panel if opts else None,
                       opts.strategy if opts else None, opts.policy if opts else None)
    rid = (opts.id if opts and opts.id else None) or request_id or uuid.uuid4().hex
    if opts and opts.id or request_id:
        recorded = await rt.stored(choice, rid)
        if recorded is not None:  # a retry: the recorded answer, no second upstream call
            return _completion(req, recorded, choice, None, replayed=True), recorded, \
                decision_of(recorded)
    prompt = req.prompt()
    probe = Request(id=rid, prompt=prompt, candidates=(Candidate(id=ANSWER_ID, text=""),),
                    metadata={"source": "chat/completions"})
    blocked = await rt.screen(choice, probe)
    if blocked is not None:
        outcome, replayed = await rt.decide(choice, probe, blocked)
        return _completion(req, outcome, choice, None, replayed=replayed), outcome, \
            decision_of(outcome)
    if rt.upstream is None:
        raise ApiError(503, "this service has no upstream model (set upstream: in the "
                            "service file, or generator: in the panel's scenario)",
                       kind="server_error", code="no_upstream")
    started = time.perf_counter()
    try:
        reply = await rt.upstream.chat(_messages(req), req.forwarded(),
                                       timeout_s=rt.config.limits.request_timeout_s)
    except JudgeError as exc:
        rt.emit([("inc", "upstream_errors_total", {"kind": exc.kind}, 1.0)])
        status = 504 if exc.kind == "timeout" else 502
        raise ApiError(status, f"the upstream model failed: {exc}"[:500], kind="upstream_error",
                       code=exc.kind) from None
    upstream_s = time.perf_counter() - started
    rt.emit([("inc", "upstream_tokens_total", {"panel": choice.panel, "kind": k}, float(n))
             for k, n in (("prompt", reply.prompt_tokens), ("completion",
                                                            reply.completion_tokens)) if n])
    request = Request(id=rid, prompt=prompt, candidates=(Candidate(
        id=ANSWER_ID, text=reply.text, generator=rt.upstream.spec.model),),
        metadata={"source": "chat/completions", "upstream_latency_s": upstream_s})
    outcome, replayed = await rt.decide(choice, request)
    usage = {"prompt_tokens": reply.prompt_tokens or 0,
             "completion_tokens": reply.completion_tokens or 0,
             "total_tokens": reply.total_tokens or ((reply.prompt_tokens or 0)
                                                    + (reply.completion_tokens or 0))}
    body = _completion(req, outcome, choice, (reply.finish_reason, usage), replayed=replayed)
    body["consensus"]["upstream_latency_ms"] = round(upstream_s * 1000, 3)
    return body, outcome, decision_of(outcome)


def _completion(req: ChatRequest, outcome: Outcome, choice: Choice,
                upstream: tuple[str | None, dict[str, int]] | None, *,
                replayed: bool) -> dict[str, Any]:
    decision = decision_of(outcome)
    finish, usage = upstream if upstream is not None else (None, None)
    withheld = decision in WITHHELD
    return {
        "id": f"chatcmpl-{outcome.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": outcome.output or ""},
            "finish_reason": "content_filter" if withheld else (finish or "stop"),
            "logprobs": None,
        }],
        "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        # a withheld answer must not come back quoted in a judge's critique
        "consensus": consensus_body(outcome, panel=choice.panel, policy=choice.policy,
                                    strategy=choice.strategy, committed=True,
                                    replayed=replayed, critiques=not withheld),
    }


CHUNK_CHARS = 256
"""Characters of delivered text per streamed chunk."""


def stream_events(body: dict[str, Any], *, include_usage: bool) -> Iterator[bytes]:
    """The server-sent events of a decided completion ``body`` (see the module docstring)."""
    choice = body["choices"][0]
    text = choice["message"]["content"] or ""
    head = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
            "model": body["model"]}

    def event(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                      "logprobs": None}], **more}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    yield event({"role": "assistant", "content": ""})
    for i in range(0, len(text), CHUNK_CHARS):
        yield event({"content": text[i:i + CHUNK_CHARS]})
    yield event({}, choice["finish_reason"], consensus=body["consensus"])
    if include_usage:
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': body['usage']})}\n\n".encode()
    yield b"data: [DONE]\n\n"
