"""Weighted vote: each judge's valid vote counts with its weight (from YAML); ties by rule.

Weights can also scale with the judge's stated confidence (``use_confidence``).

Example:
    >>> from consensus.types import Ballot, Vote
    >>> vs = (Vote(judge="gpt", request_id="q", candidate_id="a", label="reject"),
    ...       Vote(judge="r1", request_id="q", candidate_id="a", label="accept"),
    ...       Vote(judge="r2", request_id="q", candidate_id="a", label="accept"))
    >>> b = Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=vs)
    >>> Weighted(weights={"gpt": 3.0}).aggregate(b).label
    'reject'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.types import Ballot, Decision
from strategies._params import NonNegativeFloat, Weights, check_params, param_error
from strategies.base import TieRule, decide_by_support


@dataclass(frozen=True)
class Weighted:
    """Sum of judge weights per label.

    Weights are finite and >= 0 (a negative weight would count a vote against its label). A
    ballot whose valid votes all carry weight 0 has no consensus; weights that give every judge
    weight 0 are refused.

    Attributes:
        weights: Weight per judge name; judges not listed get ``default_weight``.
        default_weight: Weight of an unlisted judge.
        use_confidence: Multiply each weight by the vote's confidence (1 when absent).
        tie_rule: How a tie is broken (default ``reject``).
        seed: Seed for the ``random`` tie rule.
        from_reviews: Take the judges' competences from the human reviews in the store (the
            coordinator reads them before each decision; see :mod:`consensus.competence`): each
            weight is scaled by the judge's learned log-odds weight, 0 at or below chance. A run
            without a store refuses it.
    """

    weights: Weights = field(default_factory=dict)
    default_weight: NonNegativeFloat = 1.0
    use_confidence: bool = False
    tie_rule: TieRule = "reject"
    seed: int = 0
    name: str = "weighted"
    from_reviews: bool = False

    def __post_init__(self) -> None:
        check_params(self)
        if self.default_weight == 0 and not any(self.weights.values()):
            raise param_error(self, "weights", dict(self.weights),
                              "every judge has weight 0 (default_weight is 0 too): no vote "
                              "could count")

    def aggregate(self, ballot: Ballot) -> Decision:
        support = dict.fromkeys(ballot.labels, 0.0)
        for v in ballot.valid_votes:
            w = self.weights.get(v.judge, self.default_weight)
            if self.use_confidence and v.confidence is not None:
                w *= v.confidence
            support[v.label] += w  # type: ignore[index]  # a valid vote has a label
        return decide_by_support(
            ballot, support, strategy=self.name, tie_rule=self.tie_rule, seed=self.seed,
            diagnostics={"support": support},
        )
