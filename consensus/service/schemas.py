"""The HTTP API's bodies: what ``/v1/consensus``, ``/v1/chat/completions`` and the review
routes (``/v1/reviews``) take and give.

Request bodies are strict where they are ours (``extra="forbid"``: a misspelt field is a 400, not
silently ignored) and open where they are OpenAI's (a chat completion request may carry any of
the parameters the upstream takes; they are forwarded). The response of ``/v1/consensus`` is
built from the :class:`~consensus.types.Outcome` by :func:`consensus_body`; the proxy's chat
completion carries the same document in its ``consensus`` field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consensus.types import Outcome, TaskKind

Decision = Literal["pass", "flag", "block", "revise", "regenerate", "escalate", "no_consensus",
                   "input_blocked"]
"""What a client is told happened, one word (also the ``X-Consensus-Decision`` header)."""

WITHHELD: frozenset[str] = frozenset({"block", "escalate", "no_consensus", "input_blocked",
                                      "revise", "regenerate"})
"""Decisions where the upstream's text was not delivered as it was (``content_filter``)."""


class CandidateIn(BaseModel):
    """A candidate response."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=200,
                           description="Unique within the request (default c1, c2, ...).")
    text: str = Field(description="The response text.")
    generator: str | None = Field(default=None, description="Model that wrote it (recusal).")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConsensusRequest(BaseModel):
    """``POST /v1/consensus``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^/\x00]+$",
                           description="Request id (idempotency key: a repeated id returns "
                                       "the recorded decision). Default: a new UUID.")
    prompt: str = Field(description="The user prompt the candidates answer.")
    candidates: list[CandidateIn | str] = Field(min_length=1)
    task: TaskKind = "verdict"
    panel: str | None = Field(default=None, description="Panel name (default: the service's).")
    strategy: str | None = Field(default=None, description="Strategy name (the panel's own "
                                 "by default).")
    policy: str | None = Field(default=None, description="Policy name ('default': the panel's).")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConsensusOptions(BaseModel):
    """The ``consensus`` field a chat completion request may carry (our extension)."""

    model_config = ConfigDict(extra="forbid")

    panel: str | None = None
    policy: str | None = None
    strategy: str | None = None
    id: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^/\x00]+$")


class ChatMessage(BaseModel):
    """One message of a chat (OpenAI's shape; content parts are joined as text)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(str(p.get("text", "")) for p in self.content
                         if isinstance(p, dict) and p.get("type", "text") == "text")


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions`` (the parameters we do not read are forwarded)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)
    consensus: ConsensusOptions | None = None

    def prompt(self) -> str:
        """What the panel reads as the prompt: the last user message, after the earlier turns
        (role-tagged, so a judge sees the context the answer replies to)."""
        lines = [f"[{m.role}] {m.text()}" for m in self.messages[:-1]]
        last = self.messages[-1]
        return "\n".join([*lines, last.text()]) if lines else last.text()

    def forwarded(self) -> dict[str, Any]:
        """The parameters sent upstream besides the messages."""
        extra = dict(self.model_extra or {})
        for ours in ("stream_options",):  # the upstream call itself never streams
            extra.pop(ours, None)
        return extra

    def include_usage(self) -> bool:
        opts = (self.model_extra or {}).get("stream_options")
        return isinstance(opts, dict) and bool(opts.get("include_usage"))


_ID = r"^[^/\x00]+$"


class ReviewerIn(BaseModel):
    """What every review body may carry: ``reviewer``, taken only from a service without
    tokens (with tokens, the reviewer is the token's name)."""

    model_config = ConfigDict(extra="forbid")

    reviewer: str | None = Field(default=None, min_length=1, max_length=200,
                                 description="Who reviews, on a service without tokens "
                                 "(default 'local'); with tokens it must be the token's name.")


class ClaimRequest(ReviewerIn):
    """``POST /v1/reviews/claim``: the named item, or the most urgent pending one."""

    run_id: str | None = Field(default=None, min_length=1, max_length=200, pattern=_ID)
    request_id: str | None = Field(default=None, min_length=1, max_length=200, pattern=_ID)


class ReviewRequest(ReviewerIn):
    """``POST /v1/reviews/{run_id}/{request_id}``: the verdict on a claimed item."""

    verdict: Literal["accept", "reject", "prefer", "revise"]
    chosen: str | None = Field(default=None, min_length=1, max_length=200,
                               description="The candidate accepted, rejected, preferred or "
                                           "revised (default: the delivered or only one).")
    revision: str | None = Field(default=None, description="The edited text (revise).")
    note: str = Field(default="", max_length=10_000)


class ReleaseRequest(ReviewerIn):
    """``POST /v1/reviews/{run_id}/{request_id}/release`` and ``POST /v1/reviews/undo``."""


def decision_of(outcome: Outcome) -> Decision:
    """The one-word decision of an outcome (pass, block, no_consensus, ...)."""
    if outcome.screening and outcome.action == "block":
        return "input_blocked"
    if outcome.action in ("block", "escalate") and any(
            not d.quorum_met for d in outcome.decisions):
        return "no_consensus"
    if outcome.action == "accept":
        return "pass"
    return outcome.action


def consensus_body(outcome: Outcome, *, panel: str, policy: str, strategy: str,
                   committed: bool, replayed: bool = False,
                   critiques: bool = True) -> dict[str, Any]:
    """The document a client gets for a decision (``/v1/consensus`` and the proxy's field).

    ``critiques=False`` leaves the judges' critiques and abstention reasons out (the proxy, when
    it withheld the answer: a critique may quote the text that was withheld)."""
    decided = {d.subject: d.label for d in outcome.decisions}
    return {
        "id": outcome.request_id,
        "decision": decision_of(outcome),
        "action": outcome.action,
        "accepted_candidate": outcome.accepted_candidate,
        "output": outcome.output,
        "reason": outcome.reason,
        "principle": outcome.principle,
        "severity": outcome.severity,
        "panel": panel,
        "policy": policy,
        "strategy": strategy,
        "constitution_version": outcome.constitution_version,
        "decisions": [d.model_dump(mode="json", exclude={"diagnostics"}) for d in
                      outcome.decisions],
        "votes": [{
            "judge": v.judge, "candidate_id": v.candidate_id, "label": v.label,
            "confidence": v.confidence, "critique": v.critique if critiques else None,
            "violations": [x.principle for x in v.violations],
            "abstained": v.label is None, "abstain_kind": v.abstain_kind,
            "abstain_reason": v.abstain_reason if critiques else None,
            "agrees_with_decision": (None if v.label is None or decided.get(v.candidate_id)
                                     is None else v.label == decided[v.candidate_id]),
            "latency_ms": round(v.latency_s * 1000, 3),
        } for v in outcome.votes],
        "drafts": [{"id": d.id, "kind": d.kind, "source": d.source, "accepted": d.accepted,
                    "error": d.error} for d in outcome.drafts],
        "latency_ms": round(outcome.latency_s * 1000, 3),
        "cost_usd": outcome.cost_usd,
        "run_id": outcome.run_id,
        "committed": committed,
        "replayed": replayed,
    }
