"""Log-odds weighted majority: the optimal vote for independent judges of known competence.

If judge ``j`` is right with probability ``p_j`` and, when wrong, picks any of the other ``K - 1``
labels evenly, independently of the other judges, the posterior of label ``k`` is
``softmax_k(log prior_k + sum_j w_j [vote_j = k])`` with ``w_j = log(p_j (K - 1) / (1 - p_j))``
(Nitzan & Paroush, 1982; for ``K = 2``, ``w = log(p / (1 - p))``). A judge better than chance gets
a positive weight, a chance-level judge none, a judge worse than chance a negative one (its vote
is evidence against its label). With equal competences above chance and no prior this is
majority vote.

Competences come from the constructor, or are learned by :meth:`LogOdds.fit`:

* ``source="gold"``: each judge's accuracy on the ballots with gold, smoothed towards chance
  (``(right + 1) / (voted + K)`` for ``K`` label positions: a judge without gold votes sits at
  ``1/K``, weight 0); when no ballot carries gold, from one-coin Dawid–Skene;
* ``source="dawid_skene"``: one-coin Dawid–Skene on all ballots (gold, if any, clamped).

The prior log-odds (``prior=True``) come from the gold label frequencies (Laplace-smoothed) or
Dawid–Skene's class priors, over label positions (see ``strategies._matrix``).

Example:
    >>> from consensus.types import Ballot, Vote
    >>> vs = (Vote(judge="expert", request_id="q", candidate_id="a", label="reject"),
    ...       Vote(judge="n1", request_id="q", candidate_id="a", label="accept"),
    ...       Vote(judge="n2", request_id="q", candidate_id="a", label="accept"))
    >>> b = Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=vs)
    >>> LogOdds(competences={"expert": 0.95, "n1": 0.6, "n2": 0.6}).aggregate(b).label
    'reject'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np

from consensus.types import Ballot, Decision
from strategies._matrix import (
    FloatArray,
    ballot_codes,
    decide_from_scores,
    gold_accuracy,
    majority_fallback,
    set_learned,
    vote_matrix,
)
from strategies._params import NonNegativeFloat, PositiveInt, Probability, check_params
from strategies.base import TieRule
from strategies.dawid_skene import DawidSkene

Source = Literal["gold", "dawid_skene"]


def log_odds_weight(p: float, n_labels: int, eps: float = 1e-3) -> float:
    """``log(p (K - 1) / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``.

    Example:
        >>> round(log_odds_weight(0.75, 2), 4), log_odds_weight(0.5, 2)
        (1.0986, 0.0)
    """
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p * (n_labels - 1) / (1.0 - p))


@dataclass(frozen=True)
class LogOdds:
    """Weighted majority with log-odds weights from judge competences.

    Attributes:
        competences: Judge -> probability of a correct vote, in [0, 1]; None: learn them in
            :meth:`fit`.
        source: Where :meth:`fit` gets competences: ``gold`` (falls back to Dawid–Skene when no
            ballot has gold) or ``dawid_skene`` (one-coin).
        prior: Add the prior log-odds of each label position.
        n_iter: EM iterations for the Dawid–Skene source.
        tol: EM tolerance for the Dawid–Skene source.
        tie_rule: How a tie is broken.
        seed: Seed for the ``random`` tie rule.
        from_reviews: Take the judges' competences from the human reviews in the store (the
            coordinator reads them before each decision; see :mod:`consensus.competence`): they
            replace ``competences`` (a given one is that judge's prior mean). A run without a store
            refuses it.

    Learned (after :meth:`fit`; given competences work without it; otherwise ``aggregate`` falls
    back to majority vote and says so):
        competences_: Judge -> competence used.
        weights_: Judge -> log-odds weight for the fitted label count.
        log_prior_: Prior log-probability per label position (zeros without ``prior``).
        source_: ``given``, ``gold`` or ``dawid_skene`` (with why, when it fell back).
    """

    competences: Mapping[str, Probability] | None = None
    source: Source = "gold"
    prior: bool = True
    n_iter: PositiveInt = 1000
    tol: NonNegativeFloat = 1e-6
    tie_rule: TieRule = "reject"
    seed: int = 0
    name: str = "log_odds"
    from_reviews: bool = False

    competences_: dict[str, float] | None = field(init=False, repr=False, compare=False)
    weights_: dict[str, float] = field(init=False, repr=False, compare=False)
    log_prior_: FloatArray | None = field(init=False, repr=False, compare=False)
    source_: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_params(self)
        if self.competences is None:
            set_learned(self, competences_=None, weights_={}, log_prior_=None, source_=None)
            return
        comp = dict(self.competences)
        set_learned(self, competences_=comp, log_prior_=np.zeros(2), source_="given",
                    weights_={j: log_odds_weight(p, 2) for j, p in comp.items()})

    def fit(self, ballots: Sequence[Ballot]) -> Self:
        """Learn competences (unless given) and the prior from ``ballots``."""
        m = vote_matrix(ballots)
        k = max(m.n_labels, 2)
        gold_rows = m.gold >= 0
        y = m.gold[gold_rows]
        source: str = "given" if self.competences is not None else self.source
        comp: dict[str, float]
        log_prior = np.zeros(k)
        if self.competences is not None:
            comp = dict(self.competences)
            if self.prior and y.size:
                log_prior = np.log((np.bincount(y, minlength=k) + 1.0) / (y.size + k))
        elif self.source == "gold" and y.size:
            codes = m.codes[gold_rows]
            acc, _ = gold_accuracy(codes, y, k)
            comp = {j: float(a) for j, a in zip(m.judges, acc)}
            log_prior = np.log((np.bincount(y, minlength=k) + 1.0) / (y.size + k))
        else:
            ds = DawidSkene(n_iter=self.n_iter, tol=self.tol, variant="one_coin").fit_matrix(m)
            comp = dict(ds.skills_ or {})  # set by fit_matrix
            if ds.priors_ is not None and len(ds.priors_) == k:
                log_prior = np.log(np.maximum(ds.priors_, 1e-12))
            source = "dawid_skene" if self.source == "dawid_skene" else "dawid_skene (no gold)"
        set_learned(
            self, competences_=comp, source_=source,
            log_prior_=log_prior if self.prior else np.zeros(k),
            weights_={j: log_odds_weight(p, k) for j, p in comp.items()},
        )
        return self

    def aggregate(self, ballot: Ballot) -> Decision:
        """Softmax of prior log-odds plus the weights of the judges voting for each label."""
        if self.competences_ is None:
            return majority_fallback(ballot, strategy=self.name, tie_rule=self.tie_rule,
                                     seed=self.seed, why="not fitted and no competences given")
        k = len(ballot.labels)
        if self.source_ != "given" and self.log_prior_ is not None and k > len(self.log_prior_):
            # competences measured on fewer labels do not transfer (chance is lower here)
            return majority_fallback(
                ballot, strategy=self.name, tie_rule=self.tie_rule, seed=self.seed,
                why=f"ballot has {k} labels, fitted on {len(self.log_prior_)}")
        votes = ballot_codes(ballot)
        unknown = sorted(j for j in votes if j not in self.competences_)
        diagnostics: dict[str, Any] = {"ignored_judges": unknown, "source": self.source_}
        known = {j: c for j, c in votes.items() if j in self.competences_}
        if not known:
            return majority_fallback(ballot, strategy=self.name, tie_rule=self.tie_rule,
                                     seed=self.seed, why="no vote from a judge of known "
                                     "competence", diagnostics=diagnostics)
        scores: FloatArray = np.zeros(k)
        if self.prior and self.log_prior_ is not None and len(self.log_prior_) >= k:
            scores += self.log_prior_[:k]
        for j, c in known.items():
            scores[c] += log_odds_weight(self.competences_[j], k)
        diagnostics["log_odds"] = {lab: float(s) for lab, s in zip(ballot.labels, scores)}
        return decide_from_scores(ballot, scores, strategy=self.name, tie_rule=self.tie_rule,
                                  seed=self.seed, diagnostics=diagnostics)
