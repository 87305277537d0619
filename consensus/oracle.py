"""The Bayes-optimal aggregation of a simulated panel: the ceiling of every strategy.

It lives here, below both judges and strategies: it needs the simulation model
(:func:`judges.simulated.panel_posterior`) and a strategy's way of deciding
(:func:`strategies.base.decide_by_support`), and judges must not depend on strategies.

Example:
    >>> from judges.simulated import SimulatedJudgeSpec
    >>> from consensus.types import Ballot, Vote
    >>> oracle = BayesOracle({"a": SimulatedJudgeSpec(name="a", default_accuracy=0.9)},
    ...                      {"accept": 0.5, "reject": 0.5})
    >>> b = Ballot(request_id="q", subject="x", labels=("accept", "reject"),
    ...            votes=(Vote(judge="a", request_id="q", candidate_id="x", label="reject"),))
    >>> oracle.aggregate(b).label
    'reject'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consensus.types import Ballot, Decision
from judges.simulated import SimulatedJudgeSpec, panel_posterior
from strategies.base import decide_by_support


@dataclass(frozen=True)
class BayesOracle:
    """The Bayes-optimal strategy for a simulated panel, from the true simulation parameters.

    Not a registered strategy: it needs the parameters a real panel never reveals.
    ``consensus compare`` adds it to simulated scenarios as the ceiling.
    """

    specs: Mapping[str, SimulatedJudgeSpec]
    prior: Mapping[str, float]
    name: str = "bayes_optimal"
    extra: dict[str, float] = field(default_factory=dict)

    def aggregate(self, ballot: Ballot) -> Decision:
        votes = {v.judge: v.label for v in ballot.votes}
        post = panel_posterior(self.specs, votes, ballot.labels, self.prior)
        return decide_by_support(ballot, post, strategy=self.name, tie_rule="first",
                                 min_valid=0, diagnostics={"posterior": post})
