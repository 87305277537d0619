"""Shared machinery of the learning strategies: ballots as an integer code matrix.

A batch of ballots becomes an ``n_items x n_judges`` matrix of *position codes*: code ``k`` means
"voted for ``ballot.labels[k]``", ``-1`` (:data:`MISSING`) means no valid vote (abstention, a label
outside the ballot's label space, a judge absent from the ballot, or a judge that voted twice on
one ballot with different labels). Positions rather than label names are coded because pairwise
ballots carry per-request candidate ids: "voted for the first candidate" is what a judge's
parameters (confusions, position bias, weights) can be learned on across requests. For verdict
ballots, whose labels are always ``("accept", "reject")``, position and label coincide.

``consensus.stats.label_matrix`` codes the union of label *names* instead (agreement statistics
need names); strategies depend on ``consensus.types`` only, so the two stay separate.

Fitting is vectorised over the matrix (sparse one-hot products, ``bincount``); aggregating one ballot
encodes it against the judge index learned in ``fit``; votes of judges not seen in ``fit`` are
ignored and listed in the decision's diagnostics. :func:`fit_logistic` (L2 logistic regression,
numpy/scipy only) serves the calibrated strategy and the benchmarks.

Example:
    >>> from consensus.types import Ballot, Vote
    >>> vs = (Vote(judge="x", request_id="q", candidate_id="a", label="reject"),
    ...       Vote.abstain(judge="y", request_id="q", candidate_id="a", kind="timeout", reason="t"))
    >>> m = vote_matrix([Ballot(request_id="q", subject="a", labels=("accept", "reject"),
    ...                         votes=vs, gold="reject")])
    >>> m.judges, m.codes.tolist(), m.gold.tolist(), m.n_labels
    (('x',), [[1]], [1], 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, sparse
from scipy.special import log_softmax

from consensus.types import Ballot, Decision
from strategies.base import TieRule, decide_by_support
from strategies.majority import Majority

MISSING = -1
"""Code of a missing vote."""

SWAP_SUFFIX = "@swap"
"""Judge-name suffix of the same judge asked with the candidates in swapped presentation order."""

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class VoteMatrix:
    """Ballots as position codes, with a judge index and the gold positions.

    Attributes:
        judges: Column order (sorted judge names, so the matrix does not depend on vote order).
        n_labels: Largest label-space size among the ballots (``K``).
        codes: ``n_items x n_judges`` position codes, ``-1`` where missing.
        gold: Gold position per item, ``-1`` where unknown.
        n_options: Size of each ballot's label space (``<= n_labels``).
        labels: The common label tuple when every ballot has the same labels, else None.
    """

    judges: tuple[str, ...]
    n_labels: int
    codes: IntArray
    gold: IntArray
    n_options: IntArray
    labels: tuple[str, ...] | None

    @property
    def n_items(self) -> int:
        """Number of rows (ballots)."""
        return int(self.codes.shape[0])

    @property
    def judge_index(self) -> dict[str, int]:
        """Judge name -> column."""
        return {j: i for i, j in enumerate(self.judges)}

    def option_mask(self) -> NDArray[np.bool_]:
        """``n_items x n_labels``: True where position ``k`` exists in the item's ballot."""
        return np.arange(self.n_labels)[None, :] < self.n_options[:, None]

    def one_hot(self) -> sparse.csr_matrix:
        """Sparse ``n_items x (n_judges * n_labels)`` indicator, column ``j * K + k``."""
        return one_hot(self.codes, self.n_labels)

    def subset(self, rows: NDArray[Any]) -> VoteMatrix:
        """The matrix restricted to ``rows`` (same judges and label count)."""
        return VoteMatrix(
            judges=self.judges, n_labels=self.n_labels, codes=self.codes[rows],
            gold=self.gold[rows], n_options=self.n_options[rows], labels=self.labels,
        )


def base_judge(name: str) -> str:
    """The judge behind a presentation order: ``"gpt4@swap"`` -> ``"gpt4"``."""
    return name.removesuffix(SWAP_SUFFIX)


def ballot_codes(ballot: Ballot) -> dict[str, int]:
    """Judge -> position code of its valid vote on ``ballot``.

    A judge voting twice for the same label counts once; twice with different labels, not at all
    (so the result never depends on vote order).
    """
    pos = {lab: k for k, lab in enumerate(ballot.labels)}
    out: dict[str, int] = {}
    conflicted: set[str] = set()
    for v in ballot.votes:
        if v.label is None or v.label not in pos:
            continue
        k = pos[v.label]
        if v.judge in out and out[v.judge] != k:
            conflicted.add(v.judge)
        out[v.judge] = k
    for j in conflicted:
        del out[j]
    return out


def vote_matrix(ballots: Sequence[Ballot], judges: Sequence[str] | None = None) -> VoteMatrix:
    """Encode ``ballots`` as a :class:`VoteMatrix`.

    Args:
        ballots: The batch (a run's ballots; gold read from ``ballot.gold``).
        judges: Column order; default: every judge with a valid vote, sorted.
    """
    per_ballot = [ballot_codes(b) for b in ballots]
    if judges is None:
        judges = sorted({j for codes in per_ballot for j in codes})
    index = {j: i for i, j in enumerate(judges)}
    n, n_j = len(ballots), len(judges)
    codes = np.full((n, n_j), MISSING, dtype=np.int64)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[int] = []
    for i, bc in enumerate(per_ballot):
        for j, k in bc.items():
            c = index.get(j)
            if c is not None:
                rows.append(i)
                cols.append(c)
                vals.append(k)
    codes[rows, cols] = vals
    gold = np.array(
        [b.labels.index(b.gold) if b.gold in b.labels else MISSING for b in ballots],
        dtype=np.int64,
    )
    n_options = np.array([len(b.labels) for b in ballots], dtype=np.int64)
    label_sets = {b.labels for b in ballots}
    return VoteMatrix(
        judges=tuple(judges),
        n_labels=int(n_options.max()) if n else 0,
        codes=codes,
        gold=gold,
        n_options=n_options,
        labels=next(iter(label_sets)) if len(label_sets) == 1 else None,
    )


def one_hot(codes: IntArray, n_labels: int) -> sparse.csr_matrix:
    """Sparse indicator of ``codes``: row ``i`` has a 1 in column ``j * n_labels + codes[i, j]``.

    Raises:
        ValueError: A code is ``n_labels`` or more (scipy would build a corrupt matrix, and the
            process then aborts inside it).
    """
    n, n_j = codes.shape
    if codes.size and int(codes.max()) >= n_labels:
        raise ValueError(f"vote codes must be below n_labels={n_labels} (-1: no vote), got "
                         f"{int(codes.max())}")
    present = codes >= 0
    # int32 indices: scipy would otherwise scan and downcast int64 ones on every construction
    idx = np.int64 if n_j * n_labels >= 2**31 or present.sum() >= 2**31 else np.int32
    cols = (np.arange(n_j, dtype=idx)[None, :] * n_labels + codes.astype(idx))[present]
    indptr = np.zeros(n + 1, dtype=idx)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    data = np.ones(cols.size, dtype=np.float64)
    return sparse.csr_matrix((data, cols, indptr), shape=(n, n_j * n_labels))


def one_hot_long(items: IntArray, judges: IntArray, labels: IntArray, *, n_items: int,
                 n_judges: int, n_labels: int) -> sparse.csr_matrix:
    """The one-hot vote matrix of a panel in long form (one row per vote: item, judge, label
    position), as crowd-kit takes it: what :func:`one_hot` builds from dense codes, without the
    ``n_items x n_judges`` codes a sparse crowd panel cannot afford (200,000 items x 2,000 judges
    would be 3.2 GB of int64 for 1,000,000 votes). A judge's second vote on an item counts twice.

    Raises:
        ValueError: The three arrays differ in length, or an index is out of range.

    Example:
        >>> x = one_hot_long(np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1, 0, 1]),
        ...                  n_items=2, n_judges=2, n_labels=2)
        >>> x.toarray().astype(int).tolist()
        [[0, 1, 1, 0], [0, 0, 0, 1]]
    """
    items, judges, labels = (np.asarray(a, dtype=np.int64) for a in (items, judges, labels))
    if not items.shape == judges.shape == labels.shape or items.ndim != 1:
        raise ValueError("items, judges and labels must be 1-d arrays of one length, got "
                         f"{items.shape}, {judges.shape} and {labels.shape}")
    for name, a, top in (("items", items, n_items), ("judges", judges, n_judges),
                         ("labels", labels, n_labels)):
        if a.size and (a.min() < 0 or a.max() >= top):
            raise ValueError(f"{name} must lie in [0, {top}), got [{a.min()}, {a.max()}]")
    cols = judges * n_labels + labels
    x = sparse.csr_matrix((np.ones(items.size), (items, cols)),
                          shape=(n_items, n_judges * n_labels))
    x.sum_duplicates()
    return x


def encode(ballot: Ballot, judge_index: Mapping[str, int]) -> tuple[IntArray, tuple[str, ...]]:
    """One ballot as a row of codes over a learned judge index.

    Returns:
        The ``n_judges`` codes and the (sorted) judges with a valid vote that the index does not
        know; their votes are ignored.
    """
    row = np.full(len(judge_index), MISSING, dtype=np.int64)
    unknown = []
    for j, k in ballot_codes(ballot).items():
        c = judge_index.get(j)
        if c is None:
            unknown.append(j)
        else:
            row[c] = k
    return row, tuple(sorted(unknown))


def set_learned(obj: object, **attrs: Any) -> None:
    """Store learned attributes on a frozen strategy instance.

    Hyper-parameters stay frozen dataclass fields; learned state (names ending in ``_``) is set
    only by ``fit``, which is why this goes around the dataclass' ``__setattr__``.
    """
    for k, v in attrs.items():
        object.__setattr__(obj, k, v)


def majority_fallback(
    ballot: Ballot, *, strategy: str, tie_rule: TieRule, seed: int, why: str,
    diagnostics: dict[str, Any] | None = None,
) -> Decision:
    """Majority vote over the ballot, labelled as this strategy's fallback with the reason."""
    d = Majority(tie_rule=tie_rule, seed=seed).aggregate(ballot)
    diag = {"fallback": "majority", "fallback_reason": why, **(diagnostics or {})}
    return d.model_copy(update={
        "strategy": strategy,
        "reason": f"{why}; majority vote: {d.reason}",
        "diagnostics": diag,
    })


def decide_from_scores(
    ballot: Ballot,
    log_scores: FloatArray,
    *,
    strategy: str,
    tie_rule: TieRule,
    seed: int,
    diagnostics: dict[str, Any],
) -> Decision:
    """Decide from unnormalised log-probabilities over the ballot's label positions.

    ``probabilities`` are the softmax of ``log_scores`` (one per label of the ballot).
    """
    z = np.asarray(log_scores, dtype=np.float64)[: len(ballot.labels)]
    if z.size == 0 or not np.isfinite(z.max()):
        # NaN parameters, every label impossible (-inf) or an infinite score: pass the raw
        # scores on, and decide_by_support makes the ballot undecided with the reason
        support = {lab: float(z[k]) for k, lab in enumerate(ballot.labels[: z.size])}
    else:
        p = np.exp(z - z.max())
        p /= p.sum()
        support = {lab: float(p[k]) for k, lab in enumerate(ballot.labels)}
    return decide_by_support(
        ballot, support, strategy=strategy, tie_rule=tie_rule, seed=seed,
        diagnostics=diagnostics,
    )


def gold_accuracy(codes: IntArray, y: IntArray, k: int) -> tuple[FloatArray, IntArray]:
    """Per judge: accuracy on the gold rows smoothed towards chance, ``(right + 1) / (n + K)``
    (a judge without gold votes sits at ``1/K``: no evidence either way), and ``n``, its
    number of gold votes.

    Example:
        >>> acc, n = gold_accuracy(np.array([[0, -1], [1, -1]]), np.array([0, 1]), 3)
        >>> acc.round(3).tolist(), n.tolist()
        ([0.6, 0.333], [2, 0])
    """
    right = (codes == y[:, None]).sum(axis=0)
    n = (codes >= 0).sum(axis=0)
    return (right + 1.0) / (n + k), n


def fit_logistic(
    x: FloatArray, y: FloatArray, c: float, *, max_iter: int = 100, tol: float = 1e-8,
) -> tuple[FloatArray, FloatArray]:
    """Multinomial logistic regression with an L2 penalty ``||W||^2 / (2 C)`` (intercept free).

    With fewer rows than features (a few gold ballots, many judges) it is solved in the dual:
    ``W = x.T @ A``, an ``n x K`` problem over the Gram matrix (the representer theorem), exact
    for an L2 penalty. Small problems use Newton's method with a backtracking line search (a
    handful of tiny dense solves; scipy's L-BFGS spends far longer in BLAS thread hand-offs at
    this size); large ones use L-BFGS.

    Args:
        x: ``n x F`` features.
        y: ``n x K`` target distributions (one-hot for hard labels).
        c: Inverse regularisation strength.

    Returns:
        ``(W, b)``: ``F x K`` weights and ``K`` intercepts.

    Example:
        >>> w, b = fit_logistic(np.array([[1.0], [-1.0]]), np.eye(2), 10.0)
        >>> bool(w[0, 0] > w[0, 1])
        True
    """
    n, f = x.shape
    k = y.shape[1]
    dual = n < f
    phi = x @ x.T if dual else x  # design of the weight block
    reg = phi if dual else np.eye(f)  # penalty metric: tr(A' G A) (dual) or ||W||^2 (primal)
    m = phi.shape[1]
    design = np.hstack([phi, np.ones((n, 1))])
    metric = np.zeros((m + 1, m + 1))
    metric[:m, :m] = reg / c

    if k == 2:
        # binary: the symmetric two-class penalty equals a binary one with C doubled
        wb, bb = _newton_binary(design, y[:, 1], metric / 2.0, max_iter, tol)
        half = np.append(wb, bb) / 2.0
        theta = np.stack([-half, half], axis=1)
    else:
        def fun(t: FloatArray) -> tuple[float, FloatArray]:
            th = t.reshape(m + 1, k)
            lp = log_softmax(design @ th, axis=1)
            val = float(-(y * lp).sum() + 0.5 * (th * (metric @ th)).sum())
            return val, (design.T @ (np.exp(lp) - y) + metric @ th).ravel()

        r = optimize.minimize(fun, np.zeros((m + 1) * k), jac=True, method="L-BFGS-B",
                              options={"maxiter": 10 * max_iter, "gtol": tol, "ftol": 1e-14})
        theta = r.x.reshape(m + 1, k)
    w, b = theta[:m], theta[m]
    return (x.T @ w if dual else w), b


def _newton_binary(
    design: FloatArray, y: FloatArray, metric: FloatArray, max_iter: int, tol: float,
) -> tuple[FloatArray, float]:
    """Binary logistic regression by Newton's method: ``min CE + theta' metric theta / 2``.

    Returns the weights (all but the last design column) and the intercept (the last).
    """
    theta = np.zeros(design.shape[1])
    ridge = 1e-9 * np.eye(design.shape[1])

    def value(th: FloatArray) -> tuple[float, FloatArray]:
        z = design @ th
        # -[y log s(z) + (1-y) log s(-z)] = logaddexp(0, z) - y z
        return float((np.logaddexp(0.0, z) - y * z).sum() + 0.5 * th @ metric @ th), z

    val, z = value(theta)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        grad = design.T @ (p - y) + metric @ theta
        if np.abs(grad).max() < tol:
            break
        hess = (design.T * (p * (1.0 - p))) @ design + metric + ridge
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            new_val, new_z = value(theta - t * step)
            if new_val <= val - 1e-4 * t * grad @ step or t < 1e-8:
                break
            t *= 0.5
        theta = theta - t * step
        done = val - new_val < tol * max(1.0, abs(val))
        val, z = new_val, new_z
        if done:
            break
    return theta[:-1], float(theta[-1])
