"""Domain language of consensus: frozen pydantic models every other module speaks.

A :class:`Request` carries a prompt and one or more :class:`Candidate` responses. Judges return
:class:`Vote` values (a label, or an abstention with its reason). The votes about one *subject*
(one candidate for ``verdict`` tasks, the whole candidate set for ``pairwise`` tasks) form a
:class:`Ballot`; a strategy turns a ballot into a :class:`Decision`. The coordinator turns the
decisions of one request into an :class:`Outcome` (the intervention taken and the delivered
output). A run over a scenario ends with a :class:`RunSummary`.

Labels are plain strings so that one strategy code path serves every task: ``verdict`` ballots use
``("accept", "reject")``; ``pairwise`` ballots use the candidate ids.

Example:
    >>> c = Candidate(id="a", text="Paris.")
    >>> r = Request(id="q1", prompt="Capital of France?", candidates=(c,))
    >>> v = Vote(judge="rules", request_id="q1", candidate_id="a", label="accept", confidence=0.9)
    >>> Ballot.for_subject(r, "a", (v,)).valid_votes[0].label
    'accept'
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from consensus.redact import redact

ACCEPT = "accept"
REJECT = "reject"
VERDICT_LABELS: tuple[str, str] = (ACCEPT, REJECT)
RECUSED = "recused:"
"""Start of the reason of a recusal the coordinator made without calling the judge (its model
family or model generated the candidate)."""
PAIRWISE_SUBJECT = "*"
"""Ballot subject used for pairwise tasks (the judge compares all candidates at once)."""

TaskKind = Literal["verdict", "pairwise"]
AbstainKind = Literal["timeout", "provider_error", "unparseable", "recusal", "no_record", "error"]
Action = Literal["accept", "block", "revise", "regenerate", "flag", "escalate"]
Severity = Literal["low", "medium", "high", "critical"]
RunStatus = Literal["running", "complete", "interrupted"]
ParsePath = Literal["strict", "fallback", "unparseable"]
"""How an LLM judge's reply was read: by the strict verdict schema, by the tolerant fallback, or
not at all (the vote is then an abstention of kind ``unparseable``)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Candidate(_Frozen):
    """One candidate response to a prompt.

    Example:
        >>> Candidate(id="a", text="I can't help with that.", is_refusal=True).is_refusal
        True
    """

    id: str = Field(min_length=1, description="Identifier, unique within its request.")
    text: str = Field(description="The response text (treated as data, never as instructions).")
    is_refusal: bool | None = Field(
        default=None, description="Whether the response is a refusal, where known (metrics)."
    )
    generator: str | None = Field(
        default=None, description="The model that wrote the text (a litellm string, e.g. "
        "openai/gpt-4o-mini), where known: judges of its family recuse themselves (policy "
        "`recusal`); `metadata.model` is read when this is unset.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form provenance.")

    def author(self) -> str | None:
        """The model that wrote the text: ``generator``, else ``metadata.model`` (None when
        neither names one)."""
        made_by = self.generator or self.metadata.get("model")
        return made_by if isinstance(made_by, str) and made_by.strip() else None


class Request(_Frozen):
    """A prompt with its candidate responses, and gold labels where known.

    Example:
        >>> r = Request(id="q", prompt="hi", candidates=(Candidate(id="a", text="hello"),),
        ...             gold={"a": "accept"}, prompt_safe=True)
        >>> r.subjects()
        ('a',)
    """

    id: str = Field(min_length=1, description="Request identifier, unique within a run.")
    prompt: str = Field(description="The user prompt the candidates answer.")
    candidates: tuple[Candidate, ...] = Field(min_length=1, description="Candidate responses.")
    task: TaskKind = Field(
        default="verdict",
        description="verdict: accept/reject each candidate; pairwise: choose the better one.",
    )
    gold: dict[str, str] | None = Field(
        default=None,
        description="Gold label per subject: candidate id -> accept/reject, or '*' -> winner id.",
    )
    prompt_safe: bool | None = Field(
        default=None, description="Whether the prompt is safe to answer (over-refusal metric)."
    )
    category: str | None = Field(default=None, description="Free category for breakdowns.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form provenance.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        ids = [c.id for c in self.candidates]
        if len(set(ids)) != len(ids):
            raise ValueError(f"candidate ids must be unique within a request, got {ids}")
        if self.task == "pairwise" and len(self.candidates) < 2:
            raise ValueError("a pairwise request needs at least two candidates")
        if self.gold:
            labels = self.labels()
            for subject, label in self.gold.items():
                if subject not in self.subjects():
                    raise ValueError(f"gold names unknown subject {subject!r}")
                if label not in labels:
                    raise ValueError(f"gold label {label!r} not in {labels}")
        return self

    def labels(self) -> tuple[str, ...]:
        """The label space of this request's ballots."""
        if self.task == "pairwise":
            return tuple(c.id for c in self.candidates)
        return VERDICT_LABELS

    def subjects(self) -> tuple[str, ...]:
        """Ballot subjects: each candidate id (verdict) or ``'*'`` (pairwise)."""
        if self.task == "pairwise":
            return (PAIRWISE_SUBJECT,)
        return tuple(c.id for c in self.candidates)

    def candidate(self, candidate_id: str) -> Candidate:
        """The candidate with this id (KeyError if absent)."""
        for c in self.candidates:
            if c.id == candidate_id:
                return c
        raise KeyError(candidate_id)


class Violation(_Frozen):
    """A principle a judge found violated, with the matched span where there is one.

    Example:
        >>> Violation(principle="no-pii", detail="email", span=(4, 19)).principle
        'no-pii'
    """

    principle: str = Field(description="Id of the violated principle.")
    detail: str = Field(default="", description="What was found (check kind, matched text).")
    span: tuple[int, int] | None = Field(default=None, description="[start, end) in the text.")
    severity: Severity | None = Field(default=None, description="Severity of the principle.")
    intervention: Action | None = Field(default=None, description="Principle's intervention.")

    @field_validator("detail")
    @classmethod
    def _no_secrets(cls, v: str) -> str:
        # A detail may quote the matched text, and a candidate may hold a key.
        return redact(v) if v else v


class Vote(_Frozen):
    """One judge's vote on one subject, or its abstention with the reason.

    Example:
        >>> Vote.abstain(judge="gpt", request_id="q", candidate_id="a",
        ...              kind="timeout", reason="no reply within 5s").abstained
        True
    """

    judge: str = Field(description="Name of the judge in its panel.")
    judge_version: str = Field(default="", description="Hash of the judge's configuration.")
    request_id: str = Field(description="Request the vote is about.")
    candidate_id: str = Field(description="Candidate id (verdict) or '*' (pairwise).")
    label: str | None = Field(default=None, description="The vote; None when abstaining.")
    confidence: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Judge's confidence in its label, in [0, 1]."
    )
    critique: str = Field(default="", description="Free-text reasoning or critique.")
    violations: tuple[Violation, ...] = Field(default=(), description="Violated principles.")
    abstain_kind: AbstainKind | None = Field(default=None, description="Why it abstained.")
    abstain_reason: str | None = Field(default=None, description="Human-readable reason.")
    latency_s: float = Field(default=0.0, ge=0.0, description="Wall time of the judge call.")
    cost_usd: float | None = Field(default=None, description="Provider cost, when known.")
    tokens: int | None = Field(default=None, description="Total tokens, when known.")
    parse: ParsePath | None = Field(
        default=None, description="How the reply was read (LLM judges): strict (the verdict "
        "schema), fallback (the tolerant reader) or unparseable; None for judges without a "
        "reply to parse, and for calls that got no reply.")

    @field_validator("critique", "abstain_reason")
    @classmethod
    def _no_secrets(cls, v: str | None) -> str | None:
        # A judge's text may quote a provider's error, which may echo a key (even partly).
        return redact(v) if v else v

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.label is None) == (self.abstain_kind is None):
            raise ValueError("a vote has either a label or an abstain_kind, not both or neither")
        return self

    @classmethod
    def abstain(
        cls,
        *,
        judge: str,
        request_id: str,
        candidate_id: str,
        kind: AbstainKind,
        reason: str,
        **extra: Any,
    ) -> Vote:
        """An abstention: a value, never None and never an exception."""
        return cls(
            judge=judge,
            request_id=request_id,
            candidate_id=candidate_id,
            abstain_kind=kind,
            abstain_reason=reason,
            **extra,
        )

    @property
    def abstained(self) -> bool:
        """True when the judge gave no label."""
        return self.label is None

    @property
    def recused(self) -> bool:
        """A recusal the coordinator made without calling the judge (its model family or model
        wrote the candidate; reason starting with :data:`RECUSED`)."""
        return self.abstain_kind == "recusal" and (self.abstain_reason or "").startswith(RECUSED)

    def distribution(self, labels: tuple[str, ...]) -> dict[str, float]:
        """The vote as a probability over ``labels``: confidence on its label, rest spread evenly.

        A vote without confidence counts as certain. An abstention gives an empty dict.
        """
        if self.label is None:
            return {}
        conf = 1.0 if self.confidence is None else self.confidence
        k = len(labels)
        rest = (1.0 - conf) / (k - 1) if k > 1 else 0.0
        return {lab: (conf if lab == self.label else rest) for lab in labels}


class PeerView(_Frozen):
    """What a judge sees of one peer in a debate round: an alias, never the peer's name, model
    or family (``Judge A``, ``Judge B``, ... in an order shuffled per judge and round).

    Example:
        >>> PeerView(alias="Judge A", label="reject", critique="gives dosing advice").alias
        'Judge A'
    """

    alias: str = Field(description="Judge A, Judge B, ...: the peer's place in this judge's "
                       "shuffled view of this round.")
    label: str | None = Field(default=None, description="The peer's current vote (None: it "
                              "abstained).")
    confidence: float | None = Field(default=None, ge=0.0, le=1.0,
                                     description="The peer's stated confidence, if any.")
    critique: str = Field(default="", description="The peer's critique, self-identifying text "
                          "masked (empty when the debate shares votes only).")


class Ballot(_Frozen):
    """The votes of a panel about one subject of one request.

    Example:
        >>> b = Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=())
        >>> b.valid_votes
        ()
    """

    request_id: str = Field(description="Request the ballot is about.")
    subject: str = Field(description="Candidate id (verdict) or '*' (pairwise).")
    labels: tuple[str, ...] = Field(min_length=2, description="The label space.")
    votes: tuple[Vote, ...] = Field(description="Every judge's vote, abstentions included.")
    panel_size: int | None = Field(default=None, description="Judges asked (for the quorum).")
    gold: str | None = Field(default=None, description="Gold label of the subject, if known.")

    @classmethod
    def for_subject(cls, request: Request, subject: str, votes: tuple[Vote, ...]) -> Ballot:
        """Build the ballot of ``subject`` in ``request`` from the votes about it."""
        return cls(
            request_id=request.id,
            subject=subject,
            labels=request.labels(),
            votes=votes,
            panel_size=len(votes),
            gold=(request.gold or {}).get(subject),
        )

    @property
    def valid_votes(self) -> tuple[Vote, ...]:
        """Votes with a label that belongs to the label space."""
        return tuple(v for v in self.votes if v.label is not None and v.label in self.labels)

    def counts(self) -> dict[str, int]:
        """Number of valid votes per label (every label present, zero included)."""
        out = dict.fromkeys(self.labels, 0)
        for v in self.votes:  # valid_votes, without building the tuple
            if v.label is not None and v.label in out:
                out[v.label] += 1
        return out


class DecisionAgreement(_Frozen):
    """Agreement among the votes of one ballot.

    Example:
        >>> DecisionAgreement(n_votes=3, n_valid=3, n_abstained=0,
        ...     shares={"accept": 1.0, "reject": 0.0}, margin=1.0, entropy=0.0,
        ...     unanimous=True).unanimous
        True
    """

    n_votes: int = Field(description="Votes cast, abstentions included.")
    n_valid: int = Field(description="Votes with a label.")
    n_abstained: int = Field(description="Abstentions.")
    shares: dict[str, float] = Field(description="Share of valid votes per label.")
    margin: float = Field(description="Top share minus second share (0 when no valid vote).")
    entropy: float = Field(description="Entropy of the shares, normalised to [0, 1].")
    unanimous: bool = Field(description="All valid votes (at least one) agree.")


class Decision(_Frozen):
    """A strategy's decision about one ballot.

    ``label`` is None when the panel reached no consensus (quorum missed, all abstained, tie with
    the ``no_consensus`` rule); the intervention policy then decides (fail closed by default).

    Example:
        >>> Decision(request_id="q", subject="a", label="accept", probability=0.8,
        ...          strategy="majority").label
        'accept'
    """

    request_id: str = Field(description="Request the decision is about.")
    subject: str = Field(description="Candidate id (verdict) or '*' (pairwise).")
    label: str | None = Field(description="Decided label, or None for no consensus.")
    probability: float | None = Field(
        default=None, description="Probability of the decided label, in [0, 1]."
    )
    probabilities: dict[str, float] = Field(
        default_factory=dict, description="Probability per label, where the strategy has one."
    )
    strategy: str = Field(description="Name of the strategy that decided.")
    reason: str = Field(default="", description="Why, in a sentence (ties, quorum, veto).")
    tie: bool = Field(default=False, description="Whether a tie had to be broken.")
    tie_rule: str | None = Field(default=None, description="Rule used to break the tie.")
    quorum_met: bool = Field(default=True, description="Whether enough valid votes arrived.")
    diagnostics: dict[str, Any] = Field(default_factory=dict, description="Strategy details.")
    agreement: DecisionAgreement | None = Field(default=None, description="Vote agreement.")

    @property
    def no_consensus(self) -> bool:
        """True when no label was decided."""
        return self.label is None


DraftKind = Literal["revision", "regeneration"]


class DraftRecord(_Frozen):
    """A revision or regeneration made at run time, and how the panel judged it.

    Example:
        >>> DraftRecord(id="a~r1", kind="revision", round=1, parent="a", source="redaction",
        ...             text="Mail [email redacted].").accepted
        False
    """

    id: str = Field(description="Draft id (the candidate id it had on its own ballot).")
    kind: DraftKind = Field(description="revision (of a candidate or draft) or regeneration.")
    round: int = Field(ge=1, description="1 for the first draft of this outcome.")
    parent: str | None = Field(default=None, description="Candidate or draft it revises.")
    source: str = Field(description="redaction (offline), or generator:<model>.")
    text: str = Field(default="", description="The draft (empty when none could be made).")
    votes: tuple[Vote, ...] = Field(default=(), description="The panel's votes on the draft.")
    decision: Decision | None = Field(default=None, description="The panel's decision.")
    accepted: bool = Field(default=False, description="Whether the panel accepted it.")
    latency_s: float = Field(default=0.0, ge=0.0, description="Making and judging it.")
    cost_usd: float | None = Field(default=None, description="Generator cost, when known.")
    error: str | None = Field(default=None, description="Why no draft was made, if so.")


class Escalation(_Frozen):
    """A decision handed to a human: pending review, with a priority and a reason.

    Example:
        >>> Escalation(priority=3, reason="critical principle, split panel").status
        'pending'
    """

    priority: int = Field(ge=0, le=3, description="0 (low) to 3 (most urgent).")
    reason: str = Field(description="Why a human should look.")
    principles: tuple[str, ...] = Field(default=(), description="Principles involved.")
    status: Literal["pending", "claimed", "reviewed"] = Field(
        default="pending", description="Review status: pending, claimed by a reviewer, reviewed.")


StopReason = Literal["unanimity", "stable", "rounds", "single_round", "no_deliberating_judge"]
"""Why a debate ended: every ballot unanimous, no vote changed in the last round, the round
limit, ``rounds: 1``, or no judge of the panel deliberates (rules, classifier, replay only)."""


class DebateRound(_Frozen):
    """One round of a debate: the panel's votes after it, and what the round cost.

    Example:
        >>> DebateRound(round=1, votes=(), calls=5).changed
        0
    """

    round: int = Field(ge=1, description="1 is the ordinary independent poll.")
    votes: tuple[Vote, ...] = Field(description="Every judge's vote after this round.")
    changed: int = Field(default=0, ge=0, description="Votes whose label differs from the "
                         "previous round (0 in round 1).")
    calls: int = Field(default=0, ge=0, description="Judge calls made in this round (judges "
                       "that do not deliberate keep their votes at no call).")
    failed: int = Field(default=0, ge=0, description="Calls that failed (timeout, error, "
                        "unparseable); those judges keep their previous votes.")
    tokens: int | None = Field(default=None, description="Tokens of those calls, when known.")
    cost_usd: float = Field(default=0.0, ge=0.0, description="Known cost of those calls.")
    latency_s: float = Field(default=0.0, ge=0.0, description="Wall time of the round.")
    masked: int = Field(default=0, ge=0, description="Self-identifying mentions (judge names, "
                        "models, families) masked in the critiques shared in this round.")
    unanimous: dict[str, bool] = Field(default_factory=dict, description="Per subject: every "
                                       "valid vote agrees.")
    agreement: dict[str, DecisionAgreement] = Field(
        default_factory=dict, description="Per subject: vote shares, margin and entropy of "
        "this round's votes (Krippendorff's alpha and the effective number of judges need many "
        "ballots: they are per round over the run, in the summary's debate section).")
    labels: dict[str, str | None] = Field(default_factory=dict, description="Per subject: the "
                                          "final strategy's decision on this round's votes.")


class Deliberation(_Frozen):
    """The record of a debate (``strategy: debate``) on one request.

    Example:
        >>> Deliberation(rounds=(), stop_reason="single_round").flipped
        {}
    """

    rounds: tuple[DebateRound, ...] = Field(description="Round 1 (the independent poll) first.")
    stop_reason: StopReason = Field(description="Why the debate ended.")
    flipped: dict[str, bool] = Field(default_factory=dict, description="Per subject: whether "
                                     "the final decision differs from round 1's.")

    @property
    def calls(self) -> int:
        """Judge calls over every round."""
        return sum(r.calls for r in self.rounds)


class Outcome(_Frozen):
    """What the coordinator did with one request: the action and the delivered output.

    Example:
        >>> Outcome(request_id="q", action="block", output="I can't help with that.",
        ...         reason="rejected by panel").delivered
        False
    """

    request_id: str = Field(description="Request id.")
    run_id: str = Field(default="", description="Run that decided it (empty outside a run).")
    action: Action = Field(description="Intervention taken.")
    accepted_candidate: str | None = Field(default=None, description="Delivered candidate id.")
    output: str | None = Field(default=None, description="Text delivered to the user.")
    reason: str = Field(default="", description="Why this action.")
    decisions: tuple[Decision, ...] = Field(default=(), description="One per ballot subject.")
    votes: tuple[Vote, ...] = Field(default=(), description="Every vote cast for this request.")
    latency_s: float = Field(default=0.0, description="Wall time of the decision.")
    cost_usd: float = Field(default=0.0, description="Sum of known judge costs.")
    chosen_action: Action | None = Field(
        default=None, description="What the policy chose, when the intervention ended "
        "otherwise (a revise with no accepted draft falls back to block).")
    principle: str | None = Field(default=None, description="The violated principle that "
                                  "chose the action, if one did.")
    severity: Severity | None = Field(default=None, description="That principle's severity.")
    drafts: tuple[DraftRecord, ...] = Field(default=(), description="Revisions and "
                                            "regenerations, in order.")
    delivered_draft: str | None = Field(default=None, description="Id of the delivered draft.")
    screening: tuple[Violation, ...] = Field(
        default=(), description="Input-scope violations found when the prompt was screened.")
    escalation: Escalation | None = Field(default=None, description="Pending human review.")
    constitution_version: str | None = Field(
        default=None, description="Hash of the constitution(s) in force for this decision.")
    deliberation: Deliberation | None = Field(
        default=None, description="The debate's rounds (strategy debate); ``votes`` are then "
        "the final round's.")

    @property
    def delivered(self) -> bool:
        """Whether a response reached the user: a candidate (accept or flag), or a revision or
        regeneration the panel accepted."""
        if self.delivered_draft is not None:
            return True
        return self.action in ("accept", "flag") and self.accepted_candidate is not None


class JudgeSummary(_Frozen):
    """Per-judge figures over a run.

    Example:
        >>> JudgeSummary(n_votes=10, abstention_rate=0.1, agreement_with_consensus=0.9,
        ...              accuracy=None).abstention_rate
        0.1
    """

    n_votes: int = Field(description="Votes asked of this judge.")
    abstention_rate: float = Field(description="Share of abstentions.")
    agreement_with_consensus: float | None = Field(description="Share equal to the decision.")
    accuracy: float | None = Field(description="Share equal to gold, over its valid votes.")
    mean_latency_s: float = Field(default=0.0, description="Mean wall time per call.")
    cost_usd: float = Field(default=0.0, description="Sum of known costs.")
    abstentions: dict[str, int] = Field(
        default_factory=dict, description="Abstentions per kind (timeout, provider_error, ...).")
    parse_paths: dict[str, int] = Field(
        default_factory=dict, description="Replies per parse path (strict, fallback, "
        "unparseable); empty for judges without replies to parse.")

    def failure_rate(self) -> float:
        """Share of calls that failed to vote: abstentions other than ``recusal`` (a recusal is
        a judge saying a subject is not its to judge, e.g. factuality without a reference)."""
        if not self.n_votes:
            return 0.0
        if not self.abstentions:
            return self.abstention_rate
        failed = sum(n for kind, n in self.abstentions.items() if kind != "recusal")
        return failed / self.n_votes


class RunStats(_Frozen):
    """Run-level agreement statistics over a panel.

    Example:
        >>> RunStats(n_items=0).fleiss_kappa is None
        True
    """

    n_items: int = Field(description="Ballots considered.")
    fleiss_kappa: float | None = Field(default=None, description="Fleiss' kappa.")
    krippendorff_alpha: float | None = Field(default=None, description="Nominal alpha.")
    cohen_kappa: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="Pairwise Cohen's kappa matrix (judge -> judge)."
    )
    effective_judges: float | None = Field(
        default=None, description="Effective number of independent judges (eigenvalue ratio)."
    )


class RunSummary(_Frozen):
    """Summary of a run over a scenario; ``summary.json`` is its JSON form.

    Example:
        >>> RunSummary(scenario="s", strategy="majority", n_requests=0).accuracy is None
        True
    """

    scenario: str = Field(description="Scenario name.")
    strategy: str = Field(description="Strategy name.")
    run_id: str = Field(default="", description="Run identifier.")
    status: RunStatus = Field(
        default="complete",
        description="complete; running (written when the run starts: a run killed before its "
                    "end leaves this); interrupted (stopped early: the figures cover only the "
                    "requests decided, n_requests of them).")
    n_requests: int = Field(description="Requests decided.")
    n_ballots: int = Field(default=0, description="Ballots decided.")
    accuracy: float | None = Field(default=None, description="Decisions equal to gold.")
    panel_accuracy: float | None = Field(default=None, description="Same as accuracy (alias).")
    intervention_rate: float | None = Field(default=None, description="Share not accepted.")
    over_refusal_rate: float | None = Field(
        default=None, description="Safe prompts whose delivered candidate is a refusal / safe prompts."
    )
    false_block_rate: float | None = Field(
        default=None,
        description="Requests with an acceptable candidate that delivered nothing / such requests.",
    )
    safety_score: float | None = Field(
        default=None, description="Harmful candidates (gold reject) not delivered / all harmful."
    )
    no_consensus_rate: float | None = Field(default=None, description="Ballots undecided.")
    actions: dict[str, int] = Field(default_factory=dict, description="Count per action.")
    fleiss_kappa: float | None = Field(default=None, description="Fleiss' kappa.")
    krippendorff_alpha: float | None = Field(default=None, description="Nominal alpha.")
    cohen_kappa: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    effective_judges: float | None = Field(default=None)
    per_judge: dict[str, JudgeSummary] = Field(default_factory=dict)
    latency_p50_s: float | None = Field(default=None, description="Median decision latency.")
    latency_p99_s: float | None = Field(default=None, description="p99 decision latency.")
    cost_usd: float = Field(default=0.0, description="Sum of known judge costs.")
    wall_time_s: float = Field(default=0.0, description="Run wall time.")
    fitted_on: str | None = Field(
        default=None, description="The labelled scenario a learning strategy was fitted on, "
                                  "with its gold count and the method chosen (None: not fitted "
                                  "beforehand).")
    by_category: dict[str, dict[str, float | int | None]] = Field(
        default_factory=dict, description="n, accuracy, intervention_rate per request category."
    )
    disabled_judges: dict[str, str] = Field(
        default_factory=dict, description="Judges listed but not run, with the reason."
    )
    parse_paths: dict[str, int] = Field(
        default_factory=dict, description="LLM replies per parse path over the run (strict, "
        "fallback, unparseable).")
    warnings: list[str] = Field(
        default_factory=list, description="What a reader must not miss, e.g. a judge that "
        "abstained on most of its calls.")
    debate: dict[str, Any] = Field(
        default_factory=dict, description="Debate convergence per round (agreement, effective "
        "judges, accuracy, changed votes and flips, calls, cost), stop reasons, decisions "
        "flipped from round 1 (consensus.metrics; empty without strategy debate).")
    recused: dict[str, int] = Field(
        default_factory=dict, description="Votes recused per judge because its model family "
        "(or model) generated the candidate.")
    interventions: dict[str, Any] = Field(
        default_factory=dict, description="Action mix per principle and severity; revise and "
        "regenerate: chosen, drafts, delivered, success_rate, rounds (consensus.metrics).")


def finite_or_none(x: float | None) -> float | None:
    """Map NaN/inf to None so JSON stays valid."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)
