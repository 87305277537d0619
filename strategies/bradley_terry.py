"""Bradley–Terry (Luce choice) strengths from pairwise wins, for rankings over many candidates.

Each candidate ``i`` has a strength ``s_i > 0``; a judge choosing among a set ``S`` picks ``i``
with probability ``s_i / sum_{j in S} s_j`` (Luce's choice axiom; for ``|S| = 2`` this is
Bradley–Terry: ``P(i beats j) = s_i / (s_i + s_j)``). Strengths are fitted by the MM algorithm of
Hunter (2004), vectorised over choice sets with a sparse incidence matrix. ``prior`` adds, for
every candidate, that many virtual wins and as many virtual losses against a reference of
strength 1: a Bayesian prior that keeps strengths finite for an unbeaten (or never-winning)
candidate and makes the fit defined on a disconnected comparison graph. Strengths are reported
normalised to a geometric mean of 1.

A vote on a pairwise ballot is a choice of one candidate id among ``ballot.labels``. By default
each ballot is fitted on its own votes: the Luce probabilities of its candidates (with more than
two candidates, a ranking by strength). With ``pooled=True``, :meth:`BradleyTerry.fit` learns
strengths of candidate *ids* across ballots, for ids that name the same entity across requests
(models or systems in an arena); ``aggregate`` then picks the strongest of the ballot's
candidates. Pooling is off by default because most label spaces do not name entities across
requests (``accept``/``reject``, or answer positions ``1``/``2``): pooled, it would pick the
label most often chosen over the whole run. Unfitted, or for a ballot with an id the fit never
saw, a pooled ``aggregate`` also fits the ballot's own votes alone (and says so).

Example:
    >>> rank([("gpt", "llama"), ("gpt", "mistral"), ("mistral", "llama"), ("gpt", "llama")])[0][0]
    'gpt'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Self

import numpy as np
from scipy import sparse

from consensus.types import Ballot, Decision
from strategies._matrix import FloatArray, IntArray, ballot_codes, set_learned
from strategies._params import NonNegativeFloat, PositiveInt, check_params
from strategies.base import TieRule, decide_by_support


class Choices(NamedTuple):
    """Choice data: ``sets[t]`` offered, ``winners[t]`` chosen, ``weights[t]`` times."""

    items: tuple[str, ...]
    sets: sparse.csr_matrix
    winners: IntArray
    weights: FloatArray


def _choices(rows: Iterable[tuple[str, Sequence[str], float]]) -> Choices:
    """Build :class:`Choices` from ``(winner, offered set, weight)`` rows; rows with the same
    winner and set are merged (their weights add: the likelihood is the same)."""
    merged: dict[tuple[str, tuple[str, ...]], float] = {}
    for w, s, x in rows:
        key = (w, tuple(sorted(set(s))))
        merged[key] = merged.get(key, 0.0) + float(x)
    rows = [(w, s, x) for (w, s), x in merged.items()]
    items = sorted({i for w, s, _ in rows for i in (w, *s)})
    index = {i: n for n, i in enumerate(items)}
    ind_rows, ind_cols = [], []
    for t, (_, offered, _) in enumerate(rows):
        for i in set(offered):
            ind_rows.append(t)
            ind_cols.append(index[i])
    sets: sparse.csr_matrix = sparse.csr_matrix((np.ones(len(ind_rows)), (ind_rows, ind_cols)),
                                                shape=(len(rows), len(items)))
    winners = np.array([index[w] for w, _, _ in rows], dtype=np.int64)
    weights = np.array([float(x) for _, _, x in rows])
    return Choices(tuple(items), sets, winners, weights)


def fit_strengths(
    c: Choices, *, prior: float = 1.0, n_iter: int = 1000, tol: float = 1e-8,
) -> tuple[FloatArray, int]:
    """MM iterations for Luce strengths; returns (strengths with geometric mean 1, iterations).

    ``s_i <- (W_i + prior) / (sum_t w_t [i in S_t] / sum_{j in S_t} s_j + 2 prior / (s_i + 1))``.
    """
    n = len(c.items)
    if n == 0:
        return np.zeros(0), 0
    wins = np.bincount(c.winners, weights=c.weights, minlength=n) + prior
    s = np.ones(n)
    it = 0
    sets_t = c.sets.T.tocsr()  # once, not per iteration
    for it in range(1, n_iter + 1):
        denom = sets_t @ (c.weights / np.maximum(c.sets @ s, 1e-300))
        new = wins / np.maximum(denom + 2.0 * prior / (s + 1.0), 1e-300)
        if prior == 0:
            new /= _geometric_mean(new)
        done = np.abs(np.log(np.maximum(new, 1e-300)) - np.log(np.maximum(s, 1e-300))).max() < tol
        s = new
        if done:
            break
    return s / _geometric_mean(s), it


def _geometric_mean(s: FloatArray) -> float:
    """Geometric mean of the positive strengths. A candidate that never wins has strength 0
    without a prior; through a 1e-300 floor it would drag the mean down and blow the others up
    (to about 1e151 with two candidates)."""
    pos = s[s > 0]
    return float(np.exp(np.log(pos).mean())) if pos.size else 1.0


def rank(
    comparisons: Iterable[tuple[str, str] | tuple[str, str, float]], *, prior: float = 1.0,
    n_iter: int = 1000, tol: float = 1e-8,
) -> list[tuple[str, float]]:
    """Rank candidates from pairwise ``(winner, loser[, weight])`` comparisons.

    Returns:
        ``(id, strength)`` pairs, strongest first (ties by id); strengths have geometric mean 1,
        and ``P(a beats b) = s_a / (s_a + s_b)``.

    Example:
        >>> [i for i, _ in rank([("b", "a"), ("b", "c"), ("a", "c")])]
        ['b', 'a', 'c']
    """
    rows = [(c[0], (c[0], c[1]), c[2] if len(c) > 2 else 1.0) for c in comparisons]
    ch = _choices(rows)
    s, _ = fit_strengths(ch, prior=prior, n_iter=n_iter, tol=tol)
    return sorted(zip(ch.items, (float(x) for x in s)), key=lambda t: (-t[1], t[0]))


def _ballot_choices(ballots: Sequence[Ballot]) -> Choices:
    rows = []
    for b in ballots:
        for k in ballot_codes(b).values():
            rows.append((b.labels[k], b.labels, 1.0))
    return _choices(rows)


@dataclass(frozen=True)
class BradleyTerry:
    """Strongest candidate under Bradley–Terry / Luce strengths.

    Attributes:
        n_iter: Maximum MM iterations (>= 1).
        tol: Stop when no log-strength changes by more than this (finite, >= 0).
        prior: Virtual wins and losses per candidate against a reference of strength 1
            (regularisation; 0 for the plain maximum-likelihood fit; finite, >= 0).
        pooled: Fit strengths of candidate ids across the run's ballots (see the module
            docstring); False: every ballot on its own votes, and :meth:`fit` learns nothing.
        tie_rule: How equal strengths are broken.
        seed: Seed for the ``random`` tie rule.

    Learned (after :meth:`fit`):
        strengths_: Candidate id -> strength (geometric mean 1).
        n_iter_: MM iterations run.
    """

    n_iter: PositiveInt = 1000
    tol: NonNegativeFloat = 1e-8
    prior: NonNegativeFloat = 1.0
    pooled: bool = False
    tie_rule: TieRule = "reject"
    seed: int = 0
    name: str = "bradley_terry"

    strengths_: dict[str, float] | None = field(init=False, repr=False, compare=False)
    n_iter_: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_params(self)
        set_learned(self, strengths_=None, n_iter_=0)

    @property
    def learns(self) -> bool:
        """Only a pooled fit learns anything."""
        return self.pooled

    def fit(self, ballots: Sequence[Ballot]) -> Self:
        """Fit strengths of candidate ids from every valid vote in ``ballots`` (pooled only)."""
        if not self.pooled:
            return self
        ch = _ballot_choices(ballots)
        s, it = fit_strengths(ch, prior=self.prior, n_iter=self.n_iter, tol=self.tol)
        set_learned(self, strengths_=dict(zip(ch.items, (float(x) for x in s))), n_iter_=it)
        return self

    def ranking(self) -> list[tuple[str, float]]:
        """Fitted ``(id, strength)`` pairs, strongest first."""
        return sorted((self.strengths_ or {}).items(), key=lambda t: (-t[1], t[0]))

    def aggregate(self, ballot: Ballot) -> Decision:
        """The ballot's candidate with the largest strength; Luce probabilities among them."""
        diagnostics: dict[str, Any] = {}
        strengths = self.strengths_
        if strengths is None or any(lab not in strengths for lab in ballot.labels):
            diagnostics["fitted_on"] = "this ballot's votes" + (
                "" if not self.pooled else " (not fitted)" if strengths is None
                else " (candidate unseen in fit)")
            ch = _ballot_choices([ballot])
            s, _ = fit_strengths(ch, prior=self.prior, n_iter=self.n_iter, tol=self.tol)
            strengths = dict(zip(ch.items, (float(x) for x in s)))
        else:
            diagnostics["fitted_on"] = "fit"
        support = {lab: strengths.get(lab, 1.0) for lab in ballot.labels}
        diagnostics["strengths"] = dict(support)
        return decide_by_support(ballot, support, strategy=self.name, tie_rule=self.tie_rule,
                                 seed=self.seed, diagnostics=diagnostics)
