"""Position-debiased pairwise aggregation: a judge that flips with the presentation order abstains.

LLM judges prefer a position (often the first answer shown). The remedy is to ask each judge twice,
once per presentation order, and keep the verdict only if it survives the swap.

**Naming convention.** The two askings of judge ``<j>`` appear in one ballot as the votes of judges
``<j>`` (original order) and ``<j>@swap`` (swapped order). Labels are candidate ids, so both
votes name the candidate preferred, whatever position it was shown in. For each such pair:

* both valid and equal: one vote for that candidate, cast as judge ``<j>``;
* both valid and different (the choice followed the position): an abstention of ``<j>``
  (``kind="recusal"``, reason "position flip"), not a vote;
* one valid: that vote, cast as ``<j>``; none valid: an abstention of ``<j>``.

Judges without an ``@swap`` twin pass through unchanged. The rewritten ballot goes to the ``base``
strategy (default: majority vote); the decision lists the flipped and merged judges in its
diagnostics. For learning bases, :meth:`PositionDebiased.fit` rewrites the ballots, then fits.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> def v(j, lab):
    ...     return Vote(judge=j, request_id="q", candidate_id="*", label=lab)
    >>> b = Ballot(request_id="q", subject="*", labels=("x", "y"), votes=(
    ...     v("gpt", "x"), v("gpt@swap", "y"), v("claude", "y"), v("claude@swap", "y")))
    >>> d = PositionDebiased().aggregate(b)
    >>> d.label, d.diagnostics["flipped"], d.diagnostics["merged"]
    ('y', ['gpt'], ['claude'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from consensus.errors import ConfigError
from consensus.types import Ballot, Decision, Vote
from strategies._matrix import SWAP_SUFFIX, base_judge
from strategies.base import Strategy, learns


def debias(ballot: Ballot) -> tuple[Ballot, list[str], list[str]]:
    """Rewrite ``ballot`` by the naming convention; returns (ballot, flipped, merged judges)."""
    by_base: dict[str, list[Vote]] = {}
    for vote in ballot.votes:
        by_base.setdefault(base_judge(vote.judge), []).append(vote)
    out: list[Vote] = []
    flipped: list[str] = []
    merged: list[str] = []
    for j in sorted(by_base):
        votes = by_base[j]
        if not any(v.judge.endswith(SWAP_SUFFIX) for v in votes):
            out.extend(votes)
            continue
        labels = {v.label for v in votes if v.label is not None and v.label in ballot.labels}
        first = next((v for v in votes if not v.judge.endswith(SWAP_SUFFIX)), votes[0])
        if len(labels) == 1:
            merged.append(j)
            label = next(iter(labels))
            src = next(v for v in votes if v.label == label)
            out.append(src.model_copy(update={"judge": j}))
            continue
        if len(labels) > 1:
            flipped.append(j)
            reason = "position flip: " + ", ".join(
                f"{v.judge} chose {v.label}" for v in sorted(votes, key=lambda v: v.judge))
        else:
            reason = "no valid vote in either presentation order"
        out.append(Vote.abstain(judge=j, request_id=first.request_id,
                                candidate_id=first.candidate_id, kind="recusal", reason=reason,
                                judge_version=first.judge_version))
    rewritten = ballot.model_copy(update={"votes": tuple(out), "panel_size": len(by_base)})
    return rewritten, flipped, merged


@dataclass(frozen=True)
class PositionDebiased:
    """Drop position-driven votes, then aggregate with ``base``.

    Attributes:
        base: The strategy applied to the debiased ballot: a registered name (e.g.
            ``"majority"``, ``"dawid_skene"``), a ``{"name": ..., ...}`` spec, or an instance.
    """

    # Any, not a union with the Strategy protocol: the registry validates fields with pydantic
    base: Any = "majority"
    name: str = "position_debiased"

    _inner: Strategy = field(init=False, repr=False, compare=False)
    """The base strategy built from ``base`` (derived state, set in ``__post_init__``)."""

    def __post_init__(self) -> None:
        if isinstance(self.base, (str, Mapping)):
            from strategies.registry import build_strategy, spec_names  # it imports strategies

            if "debate" in spec_names(self.base):
                raise ConfigError("a debate cannot be the base of position_debiased (its rounds "
                                  "need the panel): make position_debiased the debate's final",
                                  field="strategy.base")
            try:
                inner: Strategy = build_strategy(self.base)
            except ConfigError as exc:  # name the field under ``base``
                where = (exc.field or "strategy").replace("strategy", "strategy.base", 1)
                raise ConfigError(exc.message, source=exc.source, field=where) from None
        elif hasattr(self.base, "aggregate"):
            inner = self.base
        else:
            raise ValueError(f"base must be a strategy name, spec or instance, got {self.base!r}")
        object.__setattr__(self, "_inner", inner)  # frozen: derived state set once here

    @property
    def learns(self) -> bool:
        """As the base strategy."""
        return learns(self._inner)

    def fit(self, ballots: Sequence[Ballot]) -> Self:
        """Debias ``ballots`` and fit the base strategy on them (when it learns)."""
        if learns(self._inner):
            inner = self._inner.fit([debias(b)[0] for b in ballots])
            object.__setattr__(self, "_inner", inner)
            # the base's learned attributes, so that experiments report them
            object.__setattr__(self, "base_", {k: v for k, v in vars(inner).items()
                                               if k.endswith("_") and not k.startswith("_")})
        return self

    def aggregate(self, ballot: Ballot) -> Decision:
        rewritten, flipped, merged = debias(ballot)
        d = self._inner.aggregate(rewritten)
        diagnostics = {**d.diagnostics, "base": self._inner.name, "flipped": flipped,
                       "merged": merged}
        reason = d.reason + (f"; {len(flipped)} judge(s) flipped with the order and abstained"
                             if flipped else "")
        return d.model_copy(update={"strategy": self.name, "diagnostics": diagnostics,
                                    "reason": reason})
