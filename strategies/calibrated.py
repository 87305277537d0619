"""Calibrated: learn from a few gold-labelled ballots how to combine judges with correlated errors.

Unsupervised aggregation (majority, Dawid–Skene) assumes judges err independently; when a group of
judges shares a failure mode (one model under several prompts, a shared blind spot, an adversarial
distractor) it confidently follows the group. A few gold labels show which votes carry
information; the unlabelled ballots show how the judges move together. ``Calibrated`` combines
three models and lets **cross-validation on the gold it has** set their weights:

* ``logistic``: L2-regularised logistic regression on the gold (numpy Newton / dual solver, see
  :func:`strategies._matrix.fit_logistic`) over one-hot ``(judge, voted position)`` features (a
  missing vote is all zeros). A judge's ``<j>`` and ``<j>@swap`` columns are averaged, so a vote
  that flips with the presentation order cancels out (the convention of
  ``strategies.position_debiased``). ``C`` is chosen from ``c_grid`` by out-of-fold log-loss.
* ``dawid_skene(init=logistic)``: EM over *all* ballots (gold clamped) started from the
  logistic posteriors: independent judges, confusion matrices sharpened by the unlabelled data.
* ``grouped(init=logistic)``: the same with correlated groups found in the data
  (:func:`strategies.dawid_skene.find_groups`): a group shares a latent answer its members copy
  with learned probabilities, so a herd counts for what it is worth.

The decision is a weighted geometric pool of the three (each temperature-scaled); the weights, on
a simplex grid, minimise the out-of-fold log-loss over repeated stratified folds (pure members
are corners of the grid, so this also chooses between them). Simple challengers (``majority``,
``best_judge`` on the gold, ``log_odds`` from gold accuracies, plain ``dawid_skene``, logistic on
unpaired votes or on the top principal directions of all ballots) replace the pool only when
their out-of-fold accuracy is higher by more than ``switch_z`` standard errors: on a few dozen
gold items most accuracy differences are noise (measured on LLMBar: choosing the best-looking of
many methods per split lost up to 3 pp against this pool). Probabilities are the pool's softmax.

Labels are ballot positions (``strategies._matrix``), so for pairwise ballots the features read
"judge ``j`` voted for the candidate in position ``k``". With fewer than ``min_gold`` gold ballots
(or a single gold class), ``fit`` falls back to Dawid–Skene and says so in ``method_``.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> def ballot(i, gold, labels):
    ...     return Ballot(request_id=f"q{i}", subject="a", labels=("accept", "reject"), gold=gold,
    ...                   votes=tuple(Vote(judge=j, request_id=f"q{i}", candidate_id="a", label=l)
    ...                               for j, l in zip(("good", "copy1", "copy2"), labels)))
    >>> rows = [("accept", "reject", "reject"), ("reject", "accept", "accept")] * 10
    >>> data = [ballot(i, r[0], r) for i, r in enumerate(rows)]
    >>> c = Calibrated(seed=0).fit(data)
    >>> c.aggregate(data[0]).label, c.weights_["good"] > 0
    ('accept', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, Self

import numpy as np
from scipy import optimize
from scipy.special import log_softmax, softmax

from consensus.types import Ballot, Decision
from strategies._matrix import (
    FloatArray,
    IntArray,
    VoteMatrix,
    base_judge,
    decide_from_scores,
    encode,
    fit_logistic,
    majority_fallback,
    one_hot,
    set_learned,
    vote_matrix,
)
from strategies.base import TieRule
from strategies.dawid_skene import dawid_skene_em, find_groups, grouped_em


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
        return sum(a * log_softmax(m.log_scores(codes), axis=1)
                   for a, m in zip(self.weights, self.members))


Candidate = tuple[Any, ...]
"""``("logistic", view, C)``, ``("majority",)``, ``("best_judge",)``, ``("log_odds",)``,
``("dawid_skene",)``, ``("dawid_skene", init)``, ``("grouped", init)`` or
``("ensemble", members, weights)``; ``init`` is the candidate whose posteriors start EM."""


class _Panel:
    """The fitted ballots in every feature view a candidate needs."""

    def __init__(self, m: VoteMatrix, svd_rank: int):
        self.codes = m.codes
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


def _laplace_accuracy(codes: IntArray, y: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per-judge (Laplace-smoothed accuracy on the gold rows, number of gold votes)."""
    right = (codes == y[:, None]).sum(axis=0)
    n = (codes >= 0).sum(axis=0)
    return (right + 1.0) / (n + 2.0), n


def _fit_candidate(cand: Candidate, p: _Panel, rows: IntArray, y: IntArray) -> Model:
    """Fit one candidate on the gold ``rows`` (labels ``y``); unlabelled rows serve EM/SVD."""
    k = p.k
    n_j = p.codes.shape[1]
    vote_eye = np.tile(np.eye(k), (n_j, 1))  # counts of votes per position
    kind = cand[0]
    if kind == "ensemble":
        return Ensemble(tuple(_fit_candidate(c, p, rows, y) for c in cand[1]), cand[2])
    if kind == "majority":
        return Linear(vote_eye, np.zeros(k))
    if kind in ("best_judge", "log_odds"):
        acc, n = _laplace_accuracy(p.codes[rows], y)
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
    if kind == "grouped":
        t = p.clamped_posteriors(_fit_candidate(cand[1], p, rows, y), rows, y)
        return grouped_em(p.codes, k, find_groups(p.codes, k, t), t, gold=gold, n_iter=20)[0]
    if kind == "dawid_skene":
        init = None
        if len(cand) > 1:
            init = p.clamped_posteriors(_fit_candidate(cand[1], p, rows, y), rows, y)
        r = dawid_skene_em(p.codes, k, gold=gold, n_options=p.n_options, init=init)
        log_pi = np.log(np.maximum(r.confusions, 1e-300)).transpose(0, 2, 1).reshape(n_j * k, k)
        return Linear(log_pi, np.log(np.maximum(r.priors, 1e-300)))
    _, view, c = cand
    feats, back, offset = p.view(view)
    w, b = fit_logistic(feats[rows], np.eye(k)[y], c)
    return Linear(back @ w, b - offset @ w)


def _describe(cand: Candidate) -> str:
    if cand[0] == "logistic":
        return f"logistic({cand[1]}, C={cand[2]:g})"
    if cand[0] == "ensemble":
        share = np.asarray(cand[2]) / sum(cand[2])  # weights incl. temperatures, as shares
        return "stack(" + " + ".join(f"{w:.2f} {_describe(c)}" for c, w in zip(cand[1], share)
                                     if w > 0) + ")"
    if len(cand) > 1:
        return f"{cand[0]}(init={_describe(cand[1])})"
    return str(cand[0])


def _folds(y: IntArray, n_folds: int, rng: np.random.Generator) -> list[IntArray]:
    """Stratified folds over positions ``0..len(y)-1``."""
    fold_of = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold_of[idx] = (np.arange(idx.size) + rng.integers(n_folds)) % n_folds
    return [np.flatnonzero(fold_of == f) for f in range(n_folds)]


Challenger = Literal["majority", "best_judge", "log_odds", "dawid_skene", "logistic_votes",
                     "logistic_svd"]


class _CrossValidation:
    """Out-of-fold log-scores of candidates on the gold rows, repeated folds, cached."""

    def __init__(self, p: _Panel, rows: IntArray, y: IntArray, n_folds: int, n_repeats: int,
                 seed: int):
        self.p, self.rows, self.y, self.n_repeats = p, rows, y, n_repeats
        counts = np.bincount(y, minlength=p.k)
        n_folds = max(2, int(min(n_folds, counts[counts > 0].min())))
        rng = np.random.default_rng(seed)
        self.splits = [(r, f) for r in range(n_repeats) for f in _folds(y, n_folds, rng)]
        self.y_all = np.tile(y, n_repeats)
        self._oof: dict[Candidate, FloatArray] = {}
        self._temp: dict[Candidate, float] = {}

    def oof(self, c: Candidate) -> FloatArray:
        """Out-of-fold log-probabilities, repeats stacked: ``(n_repeats * n_gold) x K``."""
        if c not in self._oof:
            if c[0] == "ensemble":
                z = sum(a * self.oof(m) for a, m in zip(c[2], c[1]))
            else:
                z = np.zeros((self.n_repeats, len(self.rows), self.p.k))
                for rep, fold in self.splits:
                    train = np.setdiff1d(np.arange(len(self.rows)), fold)
                    model = _fit_candidate(c, self.p, self.rows[train], self.y[train])
                    z[rep, fold] = self.p.scores(model, self.rows[fold])
            self._oof[c] = log_softmax(np.reshape(z, (-1, self.p.k)), axis=1)
        return self._oof[c]

    def temperature(self, c: Candidate) -> float:
        """Scale ``a`` minimising the out-of-fold log-loss of ``softmax(a * z)``."""
        if c not in self._temp:
            z, idx = self.oof(c), (np.arange(len(self.y_all)), self.y_all)

            def nll(log_a: float) -> float:
                return float(-log_softmax(np.exp(log_a) * z, axis=1)[idx].mean())

            r = optimize.minimize_scalar(nll, bounds=(-7.0, 5.0), method="bounded")
            self._temp[c] = float(np.exp(r.x))
        return self._temp[c]

    def item_loss(self, c: Candidate) -> FloatArray:
        """Per gold item, averaged over repeats: log-loss after temperature scaling."""
        z = log_softmax(self.temperature(c) * self.oof(c), axis=1)
        loss = -z[np.arange(len(self.y_all)), self.y_all]
        return loss.reshape(self.n_repeats, -1).mean(axis=0)

    def item_accuracy(self, c: Candidate) -> FloatArray:
        """Per gold item, averaged over repeats (a tie between top labels earns its share)."""
        z = self.oof(c)
        top = np.isclose(z, z.max(axis=1, keepdims=True), rtol=0, atol=1e-9)
        acc = top[np.arange(len(self.y_all)), self.y_all] / top.sum(axis=1)
        return acc.reshape(self.n_repeats, -1).mean(axis=0)


def _simplex(n: int, step: float) -> list[FloatArray]:
    """Weight vectors on the ``n``-simplex with the given step, the even split first."""
    m = round(1 / step)
    grid = [np.array(w, dtype=np.float64) / m for w in np.ndindex(*(m + 1,) * n) if sum(w) == m]
    even = np.full(n, 1.0 / n)
    return sorted(grid, key=lambda w: float(np.abs(w - even).sum()))


def _lone_vote_weights(model: Model, n_judges: int, k: int) -> FloatArray:
    """Per judge: log-odds a lone vote adds to the position it votes for (mean over positions)."""
    codes = np.full((n_judges * k + 1, n_judges), -1, dtype=np.int64)
    codes[np.arange(n_judges * k), np.repeat(np.arange(n_judges), k)] = np.tile(np.arange(k),
                                                                                n_judges)
    s = log_softmax(model.log_scores(codes), axis=1)
    effect = (s[:-1] - s[-1]).reshape(n_judges, k, k)  # [judge, voted position, class]
    own = np.einsum("jll->jl", effect)
    return (own - (effect.sum(axis=2) - own) / (k - 1)).mean(axis=1)


@dataclass(frozen=True)
class Calibrated:
    """Combine judges as a few gold labels say; strengths and weights chosen by cross-validation.

    Attributes:
        c_grid: Inverse L2 strengths of the logistic model (chosen by out-of-fold log-loss).
        stack_step: Grid step of the stacking weights over the three base models.
        challengers: Simple methods that replace the stack when cross-validation says so.
        switch_z: A challenger replaces the stack only if its out-of-fold accuracy gain exceeds
            ``switch_z`` standard errors of the per-item gain (on a few dozen gold items,
            accuracy differences are mostly noise; chasing noise loses more than it wins).
        svd_ranks: Ranks of the ``logistic_svd`` challengers.
        n_folds: Cross-validation folds (fewer when a gold class has fewer members).
        n_repeats: Repetitions of the fold split.
        min_gold: With fewer gold ballots (or one gold class), fall back to Dawid–Skene.
        tie_rule: How a tie in the final probabilities is broken.
        seed: Seed of the fold splits.

    Learned (after :meth:`fit`; before it ``aggregate`` falls back to majority vote):
        method_: The chosen model, e.g. ``"stack(0.5 logistic(paired, C=1) + 0.5 grouped(...))"``.
        model_: The fitted model (``log_scores(codes)``); ``c_``: the chosen ``C``.
        cv_scores_: Method -> ``{"accuracy", "log_loss"}`` out of fold.
        weights_: Judge -> log-odds a lone vote of the judge adds to the position it votes for
            (averaged over positions): negative for a judge worth contradicting.
        judges_, n_gold_, n_labels_.
    """

    c_grid: tuple[float, ...] = (0.3, 1.0, 3.0)
    stack_step: float = 0.1
    challengers: tuple[Challenger, ...] = ("majority", "best_judge", "log_odds", "dawid_skene",
                                           "logistic_votes", "logistic_svd")
    switch_z: float = 3.0
    svd_ranks: tuple[int, ...] = (2, 4)
    n_folds: int = 5
    n_repeats: int = 3
    min_gold: int = 4
    tie_rule: TieRule = "reject"
    seed: int = 0
    name: str = "calibrated"

    def __post_init__(self) -> None:
        if self.n_folds < 2 or self.n_repeats < 1 or self.min_gold < 2 or not self.c_grid:
            raise ValueError("need n_folds >= 2, n_repeats >= 1, min_gold >= 2 and a C")
        if not 0 < self.stack_step <= 1:
            raise ValueError("stack_step must lie in (0, 1]")
        set_learned(self, method_=None, model_=None, c_=None, cv_scores_={}, weights_={},
                    judges_=None, n_gold_=0, n_labels_=0)

    def fit(self, ballots: Sequence[Ballot]) -> Self:
        """Fit on a run's ballots; gold is read from ``ballot.gold`` (the rest is unlabelled)."""
        return self.fit_matrix(vote_matrix(ballots))

    def fit_matrix(self, m: VoteMatrix) -> Self:
        """Fit on an encoded :class:`~strategies._matrix.VoteMatrix`."""
        k = max(m.n_labels, 2)
        rows = np.flatnonzero(m.gold >= 0)
        y = m.gold[rows]
        if not m.judges:
            return self._store(m, Linear(np.zeros((0, k)), np.zeros(k)), "none (no votes)", {},
                               len(rows), None)
        panel = _Panel(m, max(self.svd_ranks, default=0))
        if len(rows) < self.min_gold or np.unique(y).size < 2:
            model = _fit_candidate(("dawid_skene",), panel, rows, y)
            return self._store(m, model, f"dawid_skene (fallback: {len(rows)} gold)", {},
                               len(rows), None)
        cv = _CrossValidation(panel, rows, y, self.n_folds, self.n_repeats, self.seed)
        lr = min((("logistic", "paired", c) for c in self.c_grid),
                 key=lambda c: float(cv.item_loss(c).mean()))
        # the stack: supervised weights (lr), and EM over all ballots started from them, with
        # independent judges (dawid_skene) or correlated groups (grouped); weights by log-loss
        members = (lr, ("dawid_skene", lr), ("grouped", lr))
        temps = np.array([cv.temperature(c) for c in members])
        stacks = [("ensemble", members, tuple(float(x) for x in w * temps))
                  for w in _simplex(len(members), self.stack_step)]
        losses = [float(-cv.oof(c)[np.arange(len(cv.y_all)), cv.y_all].mean()) for c in stacks]
        stack = stacks[int(np.argmin(losses))]  # the first minimum: the most even weights
        rivals = self._rivals(panel)
        acc = {c: cv.item_accuracy(c) for c in (stack, *members, *rivals)}
        best, best_gain = stack, 0.0
        for c in rivals:
            diff = acc[c] - acc[stack]
            gain = float(diff.mean())
            se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
            if gain > max(self.switch_z * se, best_gain):
                best, best_gain = c, gain
        if best[0] == "ensemble":  # refit the members that carry weight
            keep = [(c, a) for c, a in zip(best[1], best[2]) if a > 0]
            best = ("ensemble", tuple(c for c, _ in keep), tuple(a for _, a in keep))
            model: Model = _fit_candidate(best, panel, rows, y)
        else:
            model = Ensemble((_fit_candidate(best, panel, rows, y),), (cv.temperature(best),))
        scores = {_describe(c): {"accuracy": float(a.mean()),
                                 "log_loss": float(cv.item_loss(c).mean())}
                  for c, a in acc.items()}
        return self._store(m, model, _describe(best), scores, len(rows), lr[2])

    def _rivals(self, panel: _Panel) -> list[Candidate]:
        out: list[Candidate] = []
        for name in self.challengers:
            if name == "logistic_votes":
                out += [("logistic", "votes", c) for c in self.c_grid] if panel.has_pairs else []
            elif name == "logistic_svd":
                out += [("logistic", f"svd{r}:paired", 1.0) for r in self.svd_ranks]
            else:
                out.append((name,))
        return out

    def _store(self, m: VoteMatrix, model: Model, method: str,
               cv: dict[str, dict[str, float]], n_gold: int, c: float | None) -> Self:
        k = max(m.n_labels, 2)
        weights = _lone_vote_weights(model, len(m.judges), k) if m.judges else []
        set_learned(self, method_=method, model_=model, c_=c, cv_scores_=cv,
                    judges_=m.judges, n_gold_=n_gold, n_labels_=k,
                    weights_={j: float(v) for j, v in zip(m.judges, weights)})
        return self

    def aggregate(self, ballot: Ballot) -> Decision:
        """Probabilities of the learned model over the ballot's known judges' votes."""
        if self.model_ is None:
            return majority_fallback(ballot, strategy=self.name, tie_rule=self.tie_rule,
                                     seed=self.seed, why="not fitted")
        row, unknown = encode(ballot, {j: i for i, j in enumerate(self.judges_)})
        diagnostics: dict[str, Any] = {"method": self.method_, "ignored_judges": list(unknown)}
        if len(ballot.labels) > self.n_labels_ or not (row >= 0).any():
            why = ("no vote from a fitted judge" if len(ballot.labels) <= self.n_labels_
                   else f"ballot has {len(ballot.labels)} labels, fitted on {self.n_labels_}")
            return majority_fallback(ballot, strategy=self.name, tie_rule=self.tie_rule,
                                     seed=self.seed, why=why, diagnostics=diagnostics)
        z = self.model_.log_scores(row[None, :])[0]
        return decide_from_scores(ballot, z, strategy=self.name, tie_rule=self.tie_rule,
                                  seed=self.seed, diagnostics=diagnostics)
