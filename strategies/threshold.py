"""Threshold: the target label wins iff at least ``k`` valid votes (or a weighted share of at
least ``share``) support it.

For binary ballots the other label wins otherwise. For larger label spaces (pairwise over more
candidates) the other labels compete by plurality; with no target, the top label must itself
clear the bar, else there is no consensus.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> vs = tuple(Vote(judge=j, request_id="q", candidate_id="a", label=l)
    ...            for j, l in [("x", "accept"), ("y", "accept"), ("z", "reject")])
    >>> b = Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=vs)
    >>> Threshold(label="accept", k=3).aggregate(b).label
    'reject'
    >>> Threshold(label="accept", share=0.6).aggregate(b).label
    'accept'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.errors import ConfigError
from consensus.types import ACCEPT, Ballot, Decision
from strategies._params import PositiveInt, Share, Weights, check_params
from strategies.base import agreement_of, no_consensus, without_votes


@dataclass(frozen=True)
class Threshold:
    """k-of-n or weighted-share rule for one target label.

    Attributes:
        label: Target label (default ``accept``); ``None`` means "whichever label is on top".
        k: Minimum number of valid votes for the target (exclusive with ``share``).
        share: Minimum weighted share of valid votes for the target, in (0, 1].
        weights: Judge weights for ``share`` (default 1 each; finite and >= 0). A ballot whose
            valid votes all carry weight 0 has no consensus.
    """

    label: str | None = ACCEPT
    k: PositiveInt | None = None
    share: Share | None = 0.5
    weights: Weights = field(default_factory=dict)
    name: str = "threshold"

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError(f"threshold k must be >= 1, got {self.k}", field="strategy.k")
        if self.k is None and (self.share is None or not 0 < self.share <= 1):
            raise ConfigError(f"threshold share must be in (0, 1], got {self.share}",
                              field="strategy.share")
        check_params(self)

    def aggregate(self, ballot: Ballot) -> Decision:
        empty = without_votes(ballot, self.name)
        if empty is not None:
            return empty
        agreement = agreement_of(ballot)
        valid = ballot.valid_votes
        support = dict.fromkeys(ballot.labels, 0.0)
        for v in valid:
            w = self.weights.get(v.judge, 1.0) if self.k is None else 1.0
            support[v.label] += w  # type: ignore[index]  # a valid vote has a label
        total = sum(support.values())
        if total <= 0:  # share mode, every voter weighted 0: no evidence for any label
            return no_consensus(ballot, strategy=self.name, agreement=agreement,
                                reason="zero support: every valid vote carries weight 0")
        probs = {lab: s / total for lab, s in support.items()}
        target = (self.label if self.label in ballot.labels
                  else max(support, key=support.__getitem__))
        bar = f"{self.k} vote(s)" if self.k is not None else f"share {self.share:.2f}"
        met = (support[target] >= self.k) if self.k is not None else (
            probs[target] >= self.share - 1e-12)  # type: ignore[operator]  # set when k is None
        if met:
            label, reason = target, f"{target} reached {bar}"
        elif len(ballot.labels) == 2 and self.label in ballot.labels:
            label = next(lab for lab in ballot.labels if lab != target)
            reason = f"{target} missed {bar}"
        else:
            others = {lab: s for lab, s in support.items() if lab != target}
            top = max(others.values())
            winners = [lab for lab, s in others.items() if s == top]
            if self.label in ballot.labels and len(winners) == 1 and top > 0:
                label, reason = winners[0], f"{target} missed {bar}; {winners[0]} leads the rest"
            else:
                return no_consensus(ballot, strategy=self.name, agreement=agreement,
                                    reason=f"no label reached {bar}")
        return Decision(
            request_id=ballot.request_id, subject=ballot.subject, label=label,
            probability=probs[label], probabilities=probs, strategy=self.name, reason=reason,
            diagnostics={"support": support, "target": target}, agreement=agreement,
        )
