"""The models ``strategies.calibrated`` chooses among, and how each is fitted on gold.

A *candidate* is a hashable description of a model (``("logistic", view, C)``,
``("dawid_skene", init)``, ``("ensemble", members, weights)``, ...); :func:`fit_candidate` fits
it on the gold rows of a :class:`Panel` (the unlabelled rows serve EM and the SVD views), and
:func:`describe` names it for ``Calibrated.method_``. Every fitted model maps vote codes to
unnormalised log-probabilities of label positions.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np
from scipy.special import log_softmax, softmax

from strategies._matrix import (
    FloatArray,
    IntArray,
    VoteMatrix,
    base_judge,
    fit_logistic,
    gold_accuracy,
    one_hot,
)
from strategies.dawid_skene import EMResult, dawid_skene_em
from strategies.empirical_bayes import eb_dawid_skene, fixed_points
from strategies.grouped_em import (
    MAX_SHORT_BALLOTS,
    GroupSearch,
    anchored_grouped,
    find_groups,
    grouped_em,
    search_groups,
)


class Model(Protocol):
    """A fitted combiner: unnormalised log-probabilities of label positions from vote codes."""

    def log_scores(self, codes: IntArray) -> FloatArray: ...


class Linear(NamedTuple):
    """Logits = ``one_hot(codes) @ coef + intercept`` (coef: ``(n_judges * K) x K``)."""

    coef: FloatArray
    intercept: FloatArray

    def log_scores(self, codes: IntArray) -> FloatArray:
        k = self.intercept.shape[0]
        return np.asarray(one_hot(np.atleast_2d(codes), k) @ self.coef) + self.intercept


class Ensemble(NamedTuple):
    """Weighted sum of the members' log-probabilities (a geometric pool; weights include each
    member's temperature)."""

    members: tuple[Model, ...]
    weights: tuple[float, ...]

    def log_scores(self, codes: IntArray) -> FloatArray:
        parts = [a * log_softmax(m.log_scores(codes), axis=1)
                 for a, m in zip(self.weights, self.members)]
        return np.sum(parts, axis=0)


Candidate = tuple[Any, ...]
"""``("logistic", view, C)``, ``("majority",)``, ``("best_judge",)``, ``("log_odds",)``,
``("dawid_skene",)``, ``("dawid_skene", init)``, ``("grouped", init)``, ``("eb_dawid_skene",)``
(:mod:`strategies.empirical_bayes`), ``("grouped_anchor",)`` (the groups found without gold,
:func:`strategies.grouped_em.anchored_grouped`) or
``("ensemble", members, weights)``; ``init`` is the candidate whose posteriors start EM."""


class Panel:
    """The fitted ballots in every feature view a candidate needs."""

    def __init__(self, m: VoteMatrix, svd_rank: int):
        self.codes = m.codes
        self.judges = m.judges
        self.k = k = max(m.n_labels, 2)
        self.n_options = m.n_options
        n_j = len(m.judges)
        self.x = one_hot(m.codes, k).toarray()
        # paired view: the presentation orders of one judge averaged (a position flip cancels)
        bases = sorted({base_judge(j) for j in m.judges})
        group = np.array([bases.index(base_judge(j)) for j in m.judges])
        size = np.bincount(group, minlength=len(bases))
        pair = np.zeros((n_j * k, len(bases) * k))
        for j, g in enumerate(group):
            pair[j * k:(j + 1) * k, g * k:(g + 1) * k] = np.eye(k) / size[g]
        self.maps = {"votes": np.eye(n_j * k), "paired": pair}
        self.has_pairs = len(bases) < n_j
        self._svd: dict[str, tuple[FloatArray, FloatArray]] = {}
        self.svd_rank = svd_rank
        self._fixed_points: tuple[EMResult, ...] | None = None
        self._search: GroupSearch | None = None

    @property
    def unsupervised(self) -> EMResult:
        """Dawid–Skene on every fitted ballot with the gold hidden (computed once: it does not
        depend on the gold, so every fold of a cross-validation shares it)."""
        return self.fixed_points[0]

    @property
    def fixed_points(self) -> tuple[EMResult, ...]:
        """Distinct fixed points of unsupervised Dawid–Skene from several starts, the
        vote-share start first (:func:`strategies.empirical_bayes.fixed_points`; computed once:
        they do not depend on the gold)."""
        if self._fixed_points is None:
            self._fixed_points = fixed_points(self.codes, self.k, n_options=self.n_options)
        return self._fixed_points

    @property
    def group_search(self) -> GroupSearch:
        """Correlated groups found in every fitted ballot with the gold hidden
        (:func:`strategies.grouped_em.search_groups`; cached per codes). Not tried when more
        than :data:`~strategies.grouped_em.MAX_SHORT_BALLOTS` of the items have fewer label
        positions than the panel (the grouped model has no per-item label count)."""
        if self._search is None:
            short = float((np.asarray(self.n_options) < self.k).mean())
            if short > MAX_SHORT_BALLOTS:
                self._search = GroupSearch(
                    (), None, None, float("nan"), float("nan"), 0,
                    f"no search for groups: {short:.0%} of the items offer fewer than "
                    f"{self.k} labels (at most {MAX_SHORT_BALLOTS:.0%})")
            else:
                self._search = search_groups(self.codes, self.k)
        return self._search

    def view(self, name: str) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(features of all items, map back to one-hot coefficients, feature offset).

        ``svd<r>:<base>``: the top ``r`` principal directions of view ``base`` over all fitted
        ballots, gold or not (transductive: unlabelled ballots shape the features).
        """
        if name.startswith("svd"):
            r_s, base = name[3:].split(":")
            if base not in self._svd:
                xb = self.x @ self.maps[base]
                mu = xb.mean(axis=0)
                _, _, vt = np.linalg.svd(xb - mu, full_matrices=False)
                self._svd[base] = (mu, vt[: self.svd_rank].T)
            mu, basis = self._svd[base]
            back = self.maps[base] @ basis[:, : int(r_s)]
            return self.x @ back, back, mu @ basis[:, : int(r_s)]
        back = self.maps[name]
        return self.x @ back, back, np.zeros(back.shape[1])

    def scores(self, model: Model, rows: IntArray | slice = slice(None)) -> FloatArray:
        """``model``'s log-scores on the given rows (linear models use the dense one-hot)."""
        if isinstance(model, Linear):
            return self.x[rows] @ model.coef + model.intercept
        return model.log_scores(self.codes[rows])

    def clamped_posteriors(self, model: Model, rows: IntArray, y: IntArray) -> FloatArray:
        t = softmax(self.scores(model), axis=1)
        t[rows] = np.eye(self.k)[y]
        return t


def fit_candidate(cand: Candidate, p: Panel, rows: IntArray, y: IntArray) -> Model:
    """Fit one candidate on the gold ``rows`` (labels ``y``); unlabelled rows serve EM/SVD."""
    k = p.k
    n_j = p.codes.shape[1]
    vote_eye = np.tile(np.eye(k), (n_j, 1))  # counts of votes per position
    kind = cand[0]
    if kind == "ensemble":
        return Ensemble(tuple(fit_candidate(c, p, rows, y) for c in cand[1]), cand[2])
    if kind == "majority":
        return Linear(vote_eye, np.zeros(k))
    if kind in ("best_judge", "log_odds"):
        acc, n = gold_accuracy(p.codes[rows], y, k)
        if kind == "best_judge":
            best = int(np.lexsort((-n, -acc))[0])
            w = np.full(n_j, 1.0 / (n_j + 1))  # the others only break its abstentions
            w[best] = 1.0
            return Linear(vote_eye * np.repeat(w, k)[:, None], np.zeros(k))
        w = np.log(acc * (k - 1) / (1.0 - acc))
        prior = np.log((np.bincount(y, minlength=k) + 1.0) / (len(y) + k))
        return Linear(vote_eye * np.repeat(w, k)[:, None], prior)
    gold = np.full(p.codes.shape[0], -1)
    gold[rows] = y
    if kind == "eb_dawid_skene":
        return eb_dawid_skene(p.codes, k, gold, n_options=p.n_options,
                              unsupervised=p.unsupervised, alternatives=p.fixed_points[1:])
    if kind == "grouped_anchor":
        return anchored_grouped(p.codes, k, gold, p.group_search, names=p.judges)
    if kind == "grouped":
        t = p.clamped_posteriors(fit_candidate(cand[1], p, rows, y), rows, y)
        return grouped_em(p.codes, k, find_groups(p.codes, k, t), t, gold=gold, n_iter=20)[0]
    if kind == "dawid_skene":
        init = None
        if len(cand) > 1:
            init = p.clamped_posteriors(fit_candidate(cand[1], p, rows, y), rows, y)
        r = dawid_skene_em(p.codes, k, gold=gold, n_options=p.n_options, init=init)
        log_pi = np.log(np.maximum(r.confusions, 1e-300)).transpose(0, 2, 1).reshape(n_j * k, k)
        return Linear(log_pi, np.log(np.maximum(r.priors, 1e-300)))
    _, view, c = cand
    feats, back, offset = p.view(view)
    w, b = fit_logistic(feats[rows], np.eye(k)[y], c)
    return Linear(back @ w, b - offset @ w)


def describe(cand: Candidate) -> str:
    if cand[0] == "logistic":
        return f"logistic({cand[1]}, C={cand[2]:g})"
    if cand[0] == "ensemble":
        share = np.asarray(cand[2]) / sum(cand[2])  # weights incl. temperatures, as shares
        return "stack(" + " + ".join(f"{w:.2f} {describe(c)}" for c, w in zip(cand[1], share)
                                     if w > 0) + ")"
    if len(cand) > 1:
        return f"{cand[0]}(init={describe(cand[1])})"
    return str(cand[0])
