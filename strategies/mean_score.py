"""Mean score: average each judge's probability over labels, then take the most probable label.

Score judges (classifiers, LLMs with a confidence) express a probability; a vote with label ``l``
and confidence ``c`` counts as ``c`` on ``l`` and ``(1 - c) / (K - 1)`` on each other label. For
binary ballots a ``threshold`` on the target label's mean probability can replace the argmax.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> vs = (Vote(judge="x", request_id="q", candidate_id="a", label="accept", confidence=0.55),
    ...       Vote(judge="y", request_id="q", candidate_id="a", label="accept", confidence=0.6),
    ...       Vote(judge="z", request_id="q", candidate_id="a", label="reject", confidence=0.99))
    >>> b = Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=vs)
    >>> d = MeanScore().aggregate(b)
    >>> (d.label, round(d.probability, 3))
    ('reject', 0.613)
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.types import ACCEPT, Ballot, Decision
from strategies._params import Share, check_params
from strategies.base import TieRule, decide_by_support


@dataclass(frozen=True)
class MeanScore:
    """Mean of the judges' label probabilities.

    Attributes:
        threshold: If set (binary ballots), ``label`` wins iff its mean probability >= threshold;
            in (0, 1] (0 would let ``label`` win whatever the votes).
        label: Target label for ``threshold`` (default ``accept``).
        tie_rule: How an exact tie is broken.
        seed: Seed for the ``random`` tie rule.
    """

    threshold: Share | None = None
    label: str = ACCEPT
    tie_rule: TieRule = "reject"
    seed: int = 0
    name: str = "mean_score"

    def __post_init__(self) -> None:
        check_params(self)

    def aggregate(self, ballot: Ballot) -> Decision:
        valid = ballot.valid_votes
        support = dict.fromkeys(ballot.labels, 0.0)
        for v in valid:
            for lab, p in v.distribution(ballot.labels).items():
                support[lab] += p / len(valid)
        diagnostics = {"mean_probability": dict(support)}
        if self.threshold is not None and self.label in ballot.labels and len(ballot.labels) == 2 \
                and valid:
            other = next(lab for lab in ballot.labels if lab != self.label)
            won = support[self.label] >= self.threshold
            # Shift support so the thresholded label is the argmax without changing probabilities.
            winner = self.label if won else other
            reason = (f"mean P({self.label}) = {support[self.label]:.2f} "
                      f"{'>=' if won else '<'} {self.threshold}")
            d = decide_by_support(ballot, support, strategy=self.name, tie_rule=self.tie_rule,
                                  seed=self.seed, diagnostics=diagnostics, reason=reason)
            if d.no_consensus:  # support unusable: the threshold must not turn it into a label
                return d
            return d.model_copy(update={"label": winner, "probability": support[winner],
                                        "tie": False, "tie_rule": None})
        return decide_by_support(ballot, support, strategy=self.name, tie_rule=self.tie_rule,
                                 seed=self.seed, diagnostics=diagnostics)
