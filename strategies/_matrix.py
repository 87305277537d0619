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
ignored and listed in the decision's diagnostics.

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
from scipy import sparse

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
    return name[: -len(SWAP_SUFFIX)] if name.endswith(SWAP_SUFFIX) else name


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
    """Sparse indicator of ``codes``: row ``i`` has a 1 in column ``j * n_labels + codes[i, j]``."""
    n, n_j = codes.shape
    present = codes >= 0
    # int32 indices: scipy would otherwise scan and downcast int64 ones on every construction
    idx = np.int64 if n_j * n_labels >= 2**31 or present.sum() >= 2**31 else np.int32
    cols = (np.arange(n_j, dtype=idx)[None, :] * n_labels + codes.astype(idx))[present]
    indptr = np.zeros(n + 1, dtype=idx)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    data = np.ones(cols.size, dtype=np.float64)
    return sparse.csr_matrix((data, cols, indptr), shape=(n, n_j * n_labels))


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
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    support = {lab: float(p[k]) for k, lab in enumerate(ballot.labels)}
    return decide_by_support(
        ballot, support, strategy=strategy, tie_rule=tie_rule, seed=seed,
        diagnostics=diagnostics,
    )
