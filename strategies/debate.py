"""Debate: judges see their peers' anonymised votes and critiques, vote again, and the last
round is aggregated by another strategy.

YAML: ``strategy: debate`` or ``strategy: {name: debate, rounds: 3, final: majority, stop:
unanimity, share: critiques}``. Round 1 is the ordinary independent poll; in each later round
every judge that deliberates (LLM and simulated judges) sees, for the same subject, the other
judges' votes (and critiques, with ``share: critiques``) under aliases (Judge A, Judge B, ... in
an order shuffled per judge and round), and may keep or change its vote. Rules, classifier and
replay judges keep their votes; their critiques are shared. The debate stops early by ``stop``:

* ``unanimity``: every ballot of the request is unanimous (checked after round 1 too);
* ``stable``: no vote changed in the last round;
* ``none``: always ``rounds`` rounds.

Running the rounds needs the panel, so the coordinator does it (:mod:`consensus.deliberation`);
this class holds the settings and aggregates the final round with ``final``, any registered
strategy (learners included: a learning ``final`` is fitted on the final rounds' ballots).
``rounds: 1`` decides exactly as ``final`` does.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> d = Debate(rounds=2, final="majority")
    >>> vs = tuple(Vote(judge=j, request_id="q", candidate_id="a", label=lab)
    ...            for j, lab in [("x", "reject"), ("y", "reject"), ("z", "accept")])
    >>> dec = d.aggregate(Ballot(request_id="q", subject="a", labels=("accept", "reject"),
    ...                          votes=vs))
    >>> dec.label, dec.strategy
    ('reject', 'debate')
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

from pydantic import Field

from consensus.errors import ConfigError
from consensus.types import Ballot, Decision
from strategies.base import Strategy, fit_strategy, learns

StopRule = Literal["unanimity", "stable", "none"]
ShareRule = Literal["critiques", "votes"]


@dataclass(frozen=True)
class Debate:
    """Judges see their peers' anonymised votes and critiques and vote again; `final` decides.

    The coordinator runs the rounds (:mod:`consensus.deliberation`); see the module docstring.
    """

    rounds: Annotated[int, Field(ge=1, le=10)] = 3
    final: str | Mapping[str, Any] = "majority"
    stop: StopRule = "unanimity"
    share: ShareRule = "critiques"
    seed: int = 0
    """Seed of the peers' shuffles (per judge, subject and round)."""
    name: str = "debate"
    final_: Strategy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from strategies.registry import build_strategy, spec_names  # the registry imports this

        if not 1 <= self.rounds <= 10:
            raise ConfigError(f"rounds must lie in [1, 10], got {self.rounds}",
                              field="strategy.rounds")
        spec = {"name": self.final} if isinstance(self.final, str) else dict(self.final)
        if "debate" in spec_names(spec):
            raise ConfigError("a debate's final strategy cannot be another debate",
                              field="strategy.final")
        try:
            object.__setattr__(self, "final_", build_strategy(spec))
        except ConfigError as exc:  # name the field inside the debate
            inner = (exc.field or "strategy").removeprefix("strategy")
            raise ConfigError(exc.message, field=f"strategy.final{inner}") from None

    @property
    def learns(self) -> bool:
        """Whether the final strategy learns (it is then fitted on the final rounds)."""
        return learns(self.final_)

    def fit(self, ballots: Sequence[Ballot]) -> Self:
        """Fit the final strategy on the final rounds' ballots."""
        new = copy.copy(self)
        object.__setattr__(new, "final_", fit_strategy(self.final_, ballots))
        return new

    def aggregate(self, ballot: Ballot) -> Decision:
        """The final strategy's decision on the (final-round) ballot."""
        d = self.final_.aggregate(ballot)
        return d.model_copy(update={
            "strategy": self.name,
            "diagnostics": {**d.diagnostics, "final": self.final_.name},
        })
