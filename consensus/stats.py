"""Agreement statistics of a panel: Fleiss' kappa, Krippendorff's alpha, Cohen's kappa, the
effective number of judges, per-judge figures and accuracy.

Everything works on a *label matrix*: one row per ballot (an item), one column per judge, integer
label codes, and ``-1`` where a judge gave no valid vote (it abstained, or was absent from the
ballot). :func:`label_matrix` builds it from ballots; the other functions are pure numpy on the
codes. Labels are nominal categories: ``accept``/``reject`` for verdict tasks, candidate ids for
pairwise tasks. A statistic that is undefined on its input (too few judges or items, or no
variation in the labels) is ``None``, never NaN.

Per-ballot agreement (shares, margin, entropy) is :func:`strategies.base.agreement_of`,
re-exported here.

Example:
    >>> import numpy as np
    >>> codes = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 1], [1, 1, -1]])
    >>> round(fleiss_kappa(codes, 2), 3)  # the last row is incomplete and left out
    0.55
    >>> round(krippendorff_alpha(codes, 2), 3)  # the last row counts
    0.667
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from consensus.types import Ballot, RunStats, finite_or_none
from strategies.base import agreement_of

__all__ = [  # agreement_of is re-exported: per-ballot agreement lives in strategies.base
    "MISSING", "JudgeStats", "LabelMatrix", "accuracy", "agreement_of", "cohen_kappa",
    "cohen_kappa_matrix", "effective_judges", "fleiss_kappa", "judge_summaries",
    "krippendorff_alpha", "label_matrix", "per_judge", "run_stats",
]  # fmt: skip

MISSING = -1
"""Code of a missing vote (abstention, or a judge absent from the ballot)."""

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
ItemKey = tuple[str, str]

# Chance agreement this close to 1 means every vote fell in one category: kappa is 0/0.
_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class LabelMatrix:
    """A panel's votes as integer codes: one row per ballot, one column per judge.

    Attributes:
        judges: Column order.
        labels: Code ``i`` stands for ``labels[i]``; the union of the ballots' label spaces,
            first seen first.
        items: ``(request_id, subject)`` of each row.
        codes: ``n_items x n_judges`` label codes, ``-1`` for a missing vote (read-only).

    Example:
        >>> from consensus.types import Ballot, Vote
        >>> v = Vote(judge="x", request_id="q", candidate_id="a", label="reject")
        >>> m = label_matrix([Ballot(request_id="q", subject="a", labels=("accept", "reject"),
        ...                          votes=(v,))])
        >>> m.codes.tolist(), m.labels, m.items
        ([[1]], ('accept', 'reject'), (('q', 'a'),))
    """

    judges: tuple[str, ...]
    labels: tuple[str, ...]
    items: tuple[ItemKey, ...]
    codes: IntArray

    @property
    def n_labels(self) -> int:
        """Number of label codes."""
        return len(self.labels)

    def encode(self, label: str | None) -> int:
        """Code of ``label``; ``-1`` for None or a label outside :attr:`labels`."""
        if label is None or label not in self.labels:
            return MISSING
        return self.labels.index(label)


class JudgeStats(TypedDict):
    """Per-judge figures; the keys are those of :class:`consensus.types.JudgeSummary`."""

    n_votes: int
    abstention_rate: float
    agreement_with_consensus: float | None
    accuracy: float | None


def label_matrix(ballots: Sequence[Ballot], judges: Sequence[str] | None = None) -> LabelMatrix:
    """Encode ballots as a label matrix, one row per ballot in order.

    A vote counts when it has a label in its ballot's label space (as ``Ballot.valid_votes``);
    an abstention, an out-of-space label or a judge absent from the ballot is ``-1``. ``judges``
    fixes the columns (votes of other judges are ignored); by default judges in order of first
    vote. Raises ValueError when a judge is listed twice or votes twice on one ballot.

    Example:
        >>> from consensus.types import Ballot, Vote
        >>> votes = (Vote(judge="x", request_id="q", candidate_id="a", label="accept"),
        ...          Vote.abstain(judge="y", request_id="q", candidate_id="a",
        ...                       kind="timeout", reason="slow"))
        >>> b = Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=votes)
        >>> label_matrix([b], judges=("x", "y", "z")).codes.tolist()
        [[0, -1, -1]]
    """
    label_index: dict[str, int] = {}
    for ballot in ballots:
        for label in ballot.labels:
            label_index.setdefault(label, len(label_index))
    if judges is None:
        judges = tuple(dict.fromkeys(v.judge for b in ballots for v in b.votes))
    columns = {judge: col for col, judge in enumerate(judges)}
    if len(columns) != len(judges):
        raise ValueError(f"judges must be unique, got {list(judges)}")
    codes = np.full((len(ballots), len(columns)), MISSING, dtype=np.int64)
    for row, ballot in enumerate(ballots):
        seen: set[str] = set()
        for vote in ballot.votes:
            if vote.judge in seen:
                raise ValueError(
                    f"judge {vote.judge!r} votes twice on {ballot.request_id}/{ballot.subject}"
                )
            seen.add(vote.judge)
            col = columns.get(vote.judge)
            if col is not None and vote.label is not None and vote.label in ballot.labels:
                codes[row, col] = label_index[vote.label]
    codes.setflags(write=False)
    return LabelMatrix(
        judges=tuple(judges),
        labels=tuple(label_index),
        items=tuple((b.request_id, b.subject) for b in ballots),
        codes=codes,
    )


def fleiss_kappa(codes: ArrayLike, n_labels: int) -> float | None:
    """Fleiss' kappa over the items every judge voted on.

    Fleiss' kappa assumes the same number of ratings per item, so items with any missing vote are
    left out (complete-case analysis); :func:`krippendorff_alpha` uses every vote instead. None
    when undefined: fewer than 2 judges, no complete item, or chance agreement 1 (every vote in
    one category: kappa is 0/0, and 1.0 would claim agreement beyond chance the data cannot show).

    Example:
        >>> round(fleiss_kappa([[0, 0], [1, 1], [0, 1]], n_labels=2), 3)
        0.333
    """
    arr = _as_codes(codes, n_labels)
    n_judges = arr.shape[1]
    complete = arr[(arr >= 0).all(axis=1)]
    if n_judges < 2 or complete.shape[0] == 0:
        return None
    counts = _counts(complete, n_labels)
    p_item = (counts * (counts - 1)).sum(axis=1) / (n_judges * (n_judges - 1))
    p_label = counts.sum(axis=0) / counts.sum()
    p_e = float(p_label @ p_label)
    if p_e >= 1.0 - _EPS:
        return None
    return float((p_item.mean() - p_e) / (1.0 - p_e))


def krippendorff_alpha(codes: ArrayLike, n_labels: int) -> float | None:
    """Krippendorff's alpha for nominal labels, with missing votes, via the coincidence matrix.

    Items with fewer than two votes are not pairable and drop out, as in Krippendorff (2011).
    None when undefined: no pairable item, or all pairable votes in one category.

    Example:
        >>> round(krippendorff_alpha([[0, 0, -1], [1, 1, 1], [0, 1, 1]], n_labels=2), 3)
        0.533
    """
    counts = _counts(_as_codes(codes, n_labels), n_labels)
    pairable = counts.sum(axis=1) >= 2
    counts = counts[pairable]
    if counts.shape[0] == 0:
        return None
    n_label = counts.sum(axis=0)  # n_c: pairable votes per label (row sums of coincidences)
    if np.count_nonzero(n_label) < 2:
        return None
    weighted = counts / (counts.sum(axis=1, keepdims=True) - 1.0)
    # o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1)
    coincidence = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    n = n_label.sum()
    observed = n - np.trace(coincidence)
    expected = n * n - n_label @ n_label
    return float(1.0 - (n - 1.0) * observed / expected)


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float | None:
    """Cohen's kappa of two judges over the items both voted on (codes, ``-1`` missing).

    None when undefined: no common item, or chance agreement 1.

    Example:
        >>> cohen_kappa([0, 0, 1, 1, -1], [0, 1, 1, 1, 0])
        0.5
    """
    x, y = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two 1-D code arrays of equal length, got {x.shape} and {y.shape}")
    both = (x >= 0) & (y >= 0)
    return _cohen(x[both], y[both])


def cohen_kappa_matrix(
    codes: ArrayLike, judges: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """Pairwise Cohen's kappa, each pair over the items both judges voted on.

    The diagonal is 1.0 by convention; an undefined pair (no common item, or chance agreement
    1) is None.

    Example:
        >>> cohen_kappa_matrix([[0, 0], [1, 1]], ["x", "y"])["x"]
        {'x': 1.0, 'y': 1.0}
    """
    arr = _as_codes(codes)
    if len(judges) != arr.shape[1]:
        raise ValueError(f"{len(judges)} judge names for {arr.shape[1]} columns")
    kappas = _kappa_pairs(arr)
    return {
        ja: {jb: finite_or_none(float(kappas[i, j])) for j, jb in enumerate(judges)}
        for i, ja in enumerate(judges)
    }


def effective_judges(codes: ArrayLike) -> float | None:
    """Effective number of independent judges: ``(sum λ)^2 / sum λ^2``.

    ``λ`` are the eigenvalues of the judges' dependence matrix ``R``: 1 on the diagonal and the
    pairwise Cohen's kappa (chance-corrected agreement, which is 0 for independent judges and
    plays the part of a correlation for nominal labels) elsewhere. ``R`` is symmetric with trace
    ``k`` for ``k`` judges, so this is computed exactly as ``k^2 / sum_ab R_ab^2``: 1 when all
    agree perfectly, ``k`` when all are independent; a negative kappa counts as dependence too.

    Only judges whose valid votes use at least two labels take part: a judge that always gives
    the same label carries no information about the items, and its kappa with an equally
    constant judge is 0/0. A kappa still undefined (no common item) counts as 0. None when no
    judge varies its labels.

    Example:
        >>> effective_judges([[0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1]])
        1.0
    """
    arr = _as_codes(codes)
    informative = [j for j in range(arr.shape[1]) if np.unique(arr[arr[:, j] >= 0, j]).size > 1]
    if not informative:
        return None
    dependence = np.nan_to_num(_kappa_pairs(arr[:, informative]), nan=0.0)
    # sum λ = trace R = k and sum λ^2 = ||R||_F^2: no eigensolver noise (identical judges give 1.0)
    return float(len(informative) ** 2 / np.sum(dependence**2))


def per_judge(
    codes: ArrayLike, judges: Sequence[str], decided: ArrayLike, gold: ArrayLike
) -> dict[str, JudgeStats]:
    """Abstention, agreement with the panel's decision, and accuracy of each judge.

    ``judges`` names the columns of ``codes``; ``decided`` and ``gold`` hold a label code per row
    (``-1``: undecided, no gold). Per judge: ``n_votes`` (rows, i.e. votes asked),
    ``abstention_rate`` (rows without a valid vote; 0.0 when there are no rows),
    ``agreement_with_consensus`` (over rows with both a vote and a decision) and ``accuracy``
    (over its valid votes on rows with gold); a share over an empty base is None.

    Example:
        >>> s = per_judge([[0], [1], [-1]], ["x"], decided=[0, 0, 1], gold=[0, -1, 1])
        >>> s["x"]["agreement_with_consensus"], s["x"]["accuracy"]
        (0.5, 1.0)
    """
    arr = _as_codes(codes)
    n_rows = arr.shape[0]
    if len(judges) != arr.shape[1]:
        raise ValueError(f"{len(judges)} judge names for {arr.shape[1]} columns")
    dec, gld = _as_rows(decided, n_rows, "decided"), _as_rows(gold, n_rows, "gold")
    out: dict[str, JudgeStats] = {}
    for col, judge in enumerate(judges):
        votes = arr[:, col]
        voted = votes >= 0
        with_decision, with_gold = voted & (dec >= 0), voted & (gld >= 0)
        out[judge] = JudgeStats(
            n_votes=n_rows,
            abstention_rate=float(1.0 - voted.mean()) if n_rows else 0.0,
            agreement_with_consensus=_share(votes[with_decision] == dec[with_decision]),
            accuracy=_share(votes[with_gold] == gld[with_gold]),
        )
    return out


def accuracy(decided: ArrayLike, gold: ArrayLike) -> float | None:
    """Share of rows with gold whose decision equals it; an undecided row (-1) counts as wrong.

    None when no row has gold.

    Example:
        >>> accuracy([0, 1, -1, 1], [0, 0, 1, -1])
        0.3333333333333333
    """
    dec = _as_rows(decided, -1, "decided")
    gld = _as_rows(gold, dec.shape[0], "gold")
    has_gold = gld >= 0
    return _share(dec[has_gold] == gld[has_gold])


def judge_summaries(
    ballots: Sequence[Ballot],
    decisions_by_item: Mapping[ItemKey, str | None],
    judges: Sequence[str] | None = None,
) -> dict[str, JudgeStats]:
    """:func:`per_judge` straight from ballots (gold from ``Ballot.gold``) and decided labels.

    An item missing from ``decisions_by_item`` counts as undecided.

    Example:
        >>> from consensus.types import Ballot, Vote
        >>> v = Vote(judge="x", request_id="q", candidate_id="a", label="accept")
        >>> b = Ballot(request_id="q", subject="a", labels=("accept", "reject"), votes=(v,),
        ...            gold="reject")
        >>> judge_summaries([b], {("q", "a"): "accept"})["x"]["accuracy"]
        0.0
    """
    matrix = label_matrix(ballots, judges)
    decided = np.array([matrix.encode(decisions_by_item.get(i)) for i in matrix.items], np.int64)
    gold = np.array([matrix.encode(b.gold) for b in ballots], dtype=np.int64)
    return per_judge(matrix.codes, matrix.judges, decided, gold)


def run_stats(
    ballots: Sequence[Ballot],
    decisions_by_item: Mapping[ItemKey, str | None] | None = None,
) -> RunStats:
    """Run-level agreement statistics of the panel over ``ballots`` (one item each).

    ``decisions_by_item`` is accepted so the runner can pass what it has, but no
    :class:`RunStats` field depends on decisions (per-judge figures: :func:`judge_summaries`).

    Example:
        >>> run_stats([]).n_items
        0
    """
    del decisions_by_item  # see the docstring: the agreement statistics ignore decisions
    matrix = label_matrix(ballots)
    return RunStats(
        n_items=len(ballots),
        fleiss_kappa=finite_or_none(fleiss_kappa(matrix.codes, matrix.n_labels)),
        krippendorff_alpha=finite_or_none(krippendorff_alpha(matrix.codes, matrix.n_labels)),
        cohen_kappa=cohen_kappa_matrix(matrix.codes, matrix.judges),
        effective_judges=finite_or_none(effective_judges(matrix.codes)),
    )


def _as_codes(codes: ArrayLike, n_labels: int | None = None) -> IntArray:
    """Validate a code matrix: 2-D integers in ``[-1, n_labels)``."""
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must be a 2-D items x judges array, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {arr.dtype}")
    low, high = int(arr.min()), int(arr.max())
    if low < MISSING or (n_labels is not None and high >= n_labels):
        raise ValueError(f"codes must lie in [-1, {n_labels}), got [{low}, {high}]")
    return arr.astype(np.int64, copy=False)


def _as_rows(values: ArrayLike, n_rows: int, name: str) -> IntArray:
    """Validate a per-row code vector of length ``n_rows`` (``-1`` for any length)."""
    arr = np.asarray(values, dtype=np.int64)
    if arr.ndim != 1 or (n_rows >= 0 and arr.shape[0] != n_rows):
        raise ValueError(f"{name} must be a 1-D array of {n_rows} codes, got shape {arr.shape}")
    return arr


def _counts(codes: IntArray, n_labels: int) -> FloatArray:
    """Valid votes per item and label (``n_items x n_labels``)."""
    counts = np.zeros((codes.shape[0], n_labels), dtype=np.float64)
    rows, cols = np.nonzero(codes >= 0)
    np.add.at(counts, (rows, codes[rows, cols]), 1.0)
    return counts


def _cohen(x: IntArray, y: IntArray) -> float | None:
    """Cohen's kappa of two complete code vectors."""
    if x.size == 0:
        return None
    n_labels = int(max(x.max(), y.max())) + 1
    p_x = np.bincount(x, minlength=n_labels) / x.size
    p_y = np.bincount(y, minlength=n_labels) / y.size
    p_e = float(p_x @ p_y)
    if p_e >= 1.0 - _EPS:
        return None
    return float((np.mean(x == y) - p_e) / (1.0 - p_e))


def _kappa_pairs(codes: IntArray) -> FloatArray:
    """Pairwise Cohen's kappa matrix, 1 on the diagonal, NaN where undefined."""
    n_judges = codes.shape[1]
    out = np.eye(n_judges)
    valid = codes >= 0
    for a in range(n_judges):
        for b in range(a + 1, n_judges):
            both = valid[:, a] & valid[:, b]
            kappa = _cohen(codes[both, a], codes[both, b])
            out[a, b] = out[b, a] = np.nan if kappa is None else kappa
    return out


def _share(hits: NDArray[np.bool_]) -> float | None:
    """Mean of a boolean array, None when empty."""
    return float(hits.mean()) if hits.size else None
