"""Majority vote: the label with the most valid votes wins; ties follow a declared rule.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> vs = tuple(Vote(judge=j, request_id="q", candidate_id="a", label=l)
    ...            for j, l in [("x", "accept"), ("y", "reject")])
    >>> d = Majority(tie_rule="reject").aggregate(
    ...     Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=vs))
    >>> (d.label, d.tie, d.tie_rule)
    ('reject', True, 'reject')
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.types import Ballot, Decision
from strategies.base import TieRule, decide_by_support


@dataclass(frozen=True)
class Majority:
    """Plurality of valid votes (abstentions ignored).

    Attributes:
        tie_rule: How a tie is broken (default ``reject``: fail closed).
        seed: Seed for the ``random`` tie rule.
    """

    tie_rule: TieRule = "reject"
    seed: int = 0
    name: str = "majority"

    def aggregate(self, ballot: Ballot) -> Decision:
        counts = ballot.counts()
        return decide_by_support(
            ballot, {k: float(v) for k, v in counts.items()},
            strategy=self.name, tie_rule=self.tie_rule, seed=self.seed,
        )
