"""The Strategy protocol and helpers shared by strategies.

A strategy is pure: ``aggregate(ballot) -> Decision``; hyper-parameters live on the instance;
randomness only through an injected seed; ties are broken by a declared rule recorded in the
decision. No I/O, no Ray, no logging. Learning strategies also expose
``fit(ballots) -> Self`` and learned attributes ending in ``_``.

Example:
    >>> from strategies.majority import Majority
    >>> from consensus.types import Ballot, Vote
    >>> vs = tuple(Vote(judge=j, request_id="q", candidate_id="a", label=l)
    ...            for j, l in [("x", "accept"), ("y", "accept"), ("z", "reject")])
    >>> Majority().aggregate(Ballot(request_id="q", subject="a",
    ...                             labels=("accept", "reject"), votes=vs)).label
    'accept'
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, Self, TypeGuard, runtime_checkable

from consensus.types import REJECT, Ballot, Decision, DecisionAgreement

TieRule = Literal["reject", "no_consensus", "first", "random"]
"""How a tie between top labels is broken.

* ``reject``: the conservative choice; ``reject`` if it is among the tied labels, else no consensus.
* ``no_consensus``: leave the ballot undecided (the policy then fails closed).
* ``first``: the tied label that comes first in the ballot's label order.
* ``random``: uniformly among the tied labels, with the strategy's seed and the ballot's ids.
"""


@runtime_checkable
class Strategy(Protocol):
    """What every strategy implements."""

    @property
    def name(self) -> str:
        """The strategy's name (read-only: strategies are frozen dataclasses)."""
        ...

    def aggregate(self, ballot: Ballot) -> Decision:
        """Turn a ballot into a decision."""
        ...


@runtime_checkable
class LearningStrategy(Strategy, Protocol):
    """A strategy that learns from a batch of ballots (and their gold, where present)."""

    def fit(self, ballots: Sequence[Ballot]) -> Self:
        """Learn parameters from ``ballots``; gold labels are read from ``ballot.gold``."""
        ...


def learns(strategy: Strategy) -> TypeGuard[LearningStrategy]:
    """Whether ``strategy`` learns from a batch of ballots: its ``learns`` attribute when it has
    one (a strategy whose ``fit`` is sometimes a no-op says so), else whether it has ``fit``."""
    flag = getattr(strategy, "learns", None)
    if isinstance(flag, bool):
        return flag
    return callable(getattr(strategy, "fit", None))


def fit_strategy(strategy: Strategy, ballots: Sequence[Ballot]) -> Strategy:
    """Fit a learning strategy on ``ballots`` (others are returned as they are).

    BLAS runs single-threaded during the fit: the learners' linear algebra is many small
    dense problems, where BLAS threads cost more in hand-offs than they gain (3.5x slower on
    two shared cores for ``calibrated`` on RTE).
    """
    if not learns(strategy):
        return strategy
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return strategy.fit(ballots)


def agreement_of(ballot: Ballot) -> DecisionAgreement:
    """Vote shares, margin, normalised entropy and unanimity of one ballot."""
    counts = ballot.counts()
    n_valid = sum(counts.values())
    n_votes = len(ballot.votes)
    if n_valid == 0:
        shares = dict.fromkeys(counts, 0.0)
        return DecisionAgreement(
            n_votes=n_votes, n_valid=0, n_abstained=n_votes, shares=shares,
            margin=0.0, entropy=0.0, unanimous=False,
        )
    shares = {k: c / n_valid for k, c in counts.items()}
    ordered = sorted(shares.values(), reverse=True)
    margin = ordered[0] - (ordered[1] if len(ordered) > 1 else 0.0)
    ent = sum(p * math.log(1.0 / p) for p in shares.values() if p > 0)  # 0.0, never -0.0
    k = len(shares)
    entropy = ent / math.log(k) if k > 1 else 0.0
    return DecisionAgreement(
        n_votes=n_votes,
        n_valid=n_valid,
        n_abstained=n_votes - n_valid,
        shares=shares,
        margin=margin,
        entropy=entropy,
        unanimous=sum(1 for c in counts.values() if c > 0) == 1,
    )


def break_tie(
    tied: Sequence[str], labels: Sequence[str], rule: TieRule, seed: int, key: str
) -> str | None:
    """Apply a declared tie rule; None means no consensus.

    ``key`` (request and subject ids) makes ``random`` reproducible per ballot and independent of
    the order in which ballots are aggregated.
    """
    tied_in_order = [lab for lab in labels if lab in tied]
    if rule == "reject":
        return REJECT if REJECT in tied_in_order else None
    if rule == "no_consensus":
        return None
    if rule == "first":
        return tied_in_order[0]
    rng = random.Random(f"{seed}:{key}")
    return rng.choice(tied_in_order)


def decide_by_support(
    ballot: Ballot,
    support: Mapping[str, float],
    *,
    strategy: str,
    tie_rule: TieRule,
    seed: int = 0,
    min_valid: int = 1,
    diagnostics: dict[str, Any] | None = None,
    reason: str = "",
) -> Decision:
    """Decide the label with the largest support, breaking ties by ``tie_rule``.

    ``probabilities`` are the normalised supports; ``probability`` that of the decided label.
    Used by majority, weighted and mean-score strategies.

    Support that cannot be normalised into probabilities gives no consensus (the policy then
    fails closed), never an exception or an arbitrary label: an empty support, a NaN or infinite
    value ("non-finite support", e.g. a learner whose parameters went NaN), a negative value,
    or a total of zero (every valid vote carries weight 0).
    """
    agreement = agreement_of(ballot)
    if agreement.n_valid < min_valid:
        return no_consensus(
            ballot,
            strategy=strategy,
            reason=f"quorum missed: {agreement.n_valid} valid vote(s), {min_valid} required",
            quorum_met=False,
            agreement=agreement,
        )
    problem = _support_problem(support)
    if problem:
        return no_consensus(
            ballot, strategy=strategy, reason=problem, agreement=agreement,
            diagnostics={**(diagnostics or {}), "support": dict(support)},
        )
    total = sum(support.values())
    probs = {k: v / total for k, v in support.items()}
    top = max(support.values())
    tied = [lab for lab, s in support.items() if math.isclose(s, top, rel_tol=1e-12, abs_tol=1e-12)]
    tie = len(tied) > 1
    label = tied[0] if not tie else break_tie(
        tied, ballot.labels, tie_rule, seed, f"{ballot.request_id}/{ballot.subject}"
    )
    if not reason:
        reason = (
            f"tie between {', '.join(tied)} broken by rule '{tie_rule}'"
            if tie
            else f"{tied[0]} has the largest support ({probs[tied[0]]:.2f})"
        )
    return Decision(
        request_id=ballot.request_id,
        subject=ballot.subject,
        label=label,
        probability=probs[label] if label is not None else None,
        probabilities=probs,
        strategy=strategy,
        reason=reason,
        tie=tie,
        tie_rule=tie_rule if tie else None,
        diagnostics=diagnostics or {},
        agreement=agreement,
    )


def _support_problem(support: Mapping[str, float]) -> str:
    """Why ``support`` cannot be normalised into probabilities ("" when it can)."""
    if not support:
        return "empty support: no label has any; no decision"

    def listed() -> str:  # only when there is a problem to name
        return ", ".join(f"{lab}={s!r}" for lab, s in support.items())

    if not all(math.isfinite(s) for s in support.values()):
        return f"non-finite support ({listed()}); no decision"
    if any(s < 0 for s in support.values()):
        return f"negative support ({listed()}); no decision"
    total = sum(support.values())
    if not math.isfinite(total):
        return f"non-finite support: the total of ({listed()}) overflows; no decision"
    if total <= 0:
        return "zero support: every valid vote carries weight 0; no decision"
    return ""


def without_votes(ballot: Ballot, strategy: str) -> Decision | None:
    """The no-consensus decision of a ballot without any valid vote, else None."""
    if ballot.valid_votes:
        return None
    return no_consensus(ballot, strategy=strategy, reason="no valid vote", quorum_met=False)


def no_consensus(
    ballot: Ballot,
    *,
    strategy: str,
    reason: str,
    quorum_met: bool = True,
    agreement: DecisionAgreement | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> Decision:
    """A decision with no label (the intervention policy decides what to do)."""
    return Decision(
        request_id=ballot.request_id,
        subject=ballot.subject,
        label=None,
        probability=None,
        strategy=strategy,
        reason=reason,
        quorum_met=quorum_met,
        diagnostics=diagnostics or {},
        agreement=agreement or agreement_of(ballot),
    )
