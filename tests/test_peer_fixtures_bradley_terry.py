"""Bradley–Terry / Luce strengths against crowd-kit's and choix's test fixtures, ported as data
(numbers only, no code).

Sources:

* Toloka/crowd-kit, Apache-2.0, commit 35f06615e6dc (2025-01-14),
  ``tests/aggregation/test_bt_aggregation.py``: ``data_abc`` / ``result_iter_10``
  (``test_bradley_terry_step_by_step``), ``data_equal`` / ``result_equal``
  (``test_bradley_terry_equal``), ``data_empty`` (``test_bradley_terry_empty``); tolerance
  atol 0.005, crowd-kit's own.
* lucasmaystre/choix, MIT, commit 7494ad31fde2 (2025-08-11), ``tests/data/testcase-*.json``
  (``pairwise-1``, ``pairwise-2``, ``top1-1``, ``top1-2``, ``rankings-1``, ``rankings-2``: their
  ``ml_est``) as used by ``tests/test_mm.py``; tolerance ``np.allclose(atol=1e-4, rtol=1e-5)``,
  choix's own (its ``rankings-2`` estimate is itself about 3e-5 from the exact optimum).

Matched conventions: the plain maximum-likelihood model, ``prior=0`` (both peers have no prior),
fitted across ballots (``pooled=True``; one ballot per comparison, its labels the offered
candidates, one vote for the winner). crowd-kit reports strengths summing to 1: ours are rescaled
to that sum. choix reports log-strengths centred at 0: ours have geometric mean 1, the same
normalisation. Iterations: crowd-kit's ``n_iter`` counts MM updates from equal strengths, as ours
does with ``tol=0``. choix's top-1 data ``(winner, losers)`` is a Luce choice among
``{winner} + losers``; its rankings are Plackett–Luce, i.e. successive choices of the best
remaining candidate, which is how they are written as ballots here.

Different by design, not ported: crowd-kit's ``n_iter=0`` (the uniform start; our ``n_iter`` is
>= 1) and ``NoisyBradleyTerry`` (no equivalent); choix's ``initial_params`` variants (we always
start from equal strengths), its L2-regularised estimates in ``test_opt.py`` (our ``prior`` is a
different regulariser: virtual wins and losses against a reference of strength 1) and
``test_mm_diverges`` (ours returns after ``n_iter`` and reports ``n_iter_``; it does not raise).
With ``tol > 0`` crowd-kit stops after its second iteration whatever the data (its previous
scores alias the current ones, so the change it measures is 0): only its ``tol=0`` fixture is a
step-by-step one, and its ``tol=1e-5`` case is the symmetric one whose answer does not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from consensus.types import PAIRWISE_SUBJECT, Ballot, Vote
from strategies.bradley_terry import BradleyTerry, rank

# crowd-kit: (task, left, right, label), all from worker w1
DATA_ABC = [("t1", "a", "b", "a"), ("t2", "b", "c", "b"), ("t3", "c", "a", "a")]
DATA_EQUAL = [("t1", "a", "b", "a"), ("t2", "b", "c", "b"), ("t3", "c", "a", "c")]
RESULT_ITER_10 = {"a": 0.934, "b": 0.065, "c": 0.0}
RESULT_EQUAL = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}

# choix: (name, n_items, kind, data, ml_est)
CHOIX = [
    ("pairwise-1", 3, "pairwise", [[0, 1], [1, 2], [2, 0]], [0.0, 0.0, 0.0]),
    ("pairwise-2", 3, "pairwise", [[0, 1], [0, 1], [1, 2], [2, 0]],
     [0.419617624, -0.419617624, 0.0]),
    ("top1-1", 3, "top1", [[0, [1, 2]], [1, [0, 2]], [2, [0, 1]]], [0.0, 0.0, 0.0]),
    ("top1-2", 3, "top1", [[0, [1]], [1, [2]], [2, [0, 1]]],
     [0.16040395, -0.32080789, 0.16040394]),
    ("rankings-1", 3, "rankings", [[0, 1, 2], [1, 2, 0], [2, 0, 1]], [0.0, 0.0, 0.0]),
    ("rankings-2", 4, "rankings", [[0, 1, 2], [3, 2, 0], [1, 3]],
     [-0.44328117, 0.69506219, -0.67061442, 0.4188334]),
]


def _choice(task: str, offered: Sequence[str], winner: str) -> Ballot:
    """A pairwise (or multi-way) ballot: ``offered`` candidates, one judge choosing ``winner``."""
    return Ballot(request_id=task, subject=PAIRWISE_SUBJECT, labels=tuple(offered),
                  votes=(Vote(judge="w1", request_id=task, candidate_id=PAIRWISE_SUBJECT,
                              label=winner),))


def _crowd_kit_ballots(rows: Sequence[tuple[str, str, str, str]]) -> list[Ballot]:
    return [_choice(t, (left, right), winner) for t, left, right, winner in rows]


def _sum_one(strengths: dict[str, float]) -> dict[str, float]:
    total = sum(strengths.values())
    return {k: v / total for k, v in strengths.items()}


def _choix_ballots(kind: str, data: list[Any]) -> list[Ballot]:
    def item(i: int) -> str:
        return f"i{i}"

    if kind == "pairwise":  # (winner, loser)
        return [_choice(f"c{n}", (item(w), item(lo)), item(w)) for n, (w, lo) in enumerate(data)]
    if kind == "top1":  # (winner, [losers])
        return [_choice(f"c{n}", (item(w), *map(item, losers)), item(w))
                for n, (w, losers) in enumerate(data)]
    # rankings, best first: the best of what remains is chosen at each step
    return [_choice(f"c{n}.{k}", tuple(map(item, ranking[k:])), item(ranking[k]))
            for n, ranking in enumerate(data) for k in range(len(ranking) - 1)]


# --- crowd-kit ----------------------------------------------------------------------------------


def test_crowd_kit_step_by_step_ten_iterations() -> None:
    """``result_iter_10``: a beats b and c, b beats c; after 10 MM updates from equal strengths,
    (0.934, 0.065, 0.0) summing to 1. The plain ML fit has no finite optimum here (a is never
    beaten, c never wins), so only the trajectory can be compared: same start, same count."""
    bt = BradleyTerry(pooled=True, prior=0.0, n_iter=10, tol=0.0).fit(
        _crowd_kit_ballots(DATA_ABC))
    assert bt.n_iter_ == 10
    assert bt.strengths_ is not None
    assert _sum_one(bt.strengths_) == pytest.approx(RESULT_ITER_10, abs=0.005)
    assert [c for c, _ in bt.ranking()] == ["a", "b", "c"]


def test_crowd_kit_step_by_step_through_rank() -> None:
    """The same fixture through :func:`strategies.bradley_terry.rank` (winner, loser) pairs."""
    pairs = [(w, right if w == left else left) for _, left, right, w in DATA_ABC]
    got = dict(rank(pairs, prior=0.0, n_iter=10, tol=0.0))
    assert _sum_one(got) == pytest.approx(RESULT_ITER_10, abs=0.005)


@pytest.mark.parametrize("prior", [0.0, 1.0])
@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0.0), (100500, 1e-5)])
def test_crowd_kit_cycle_is_uniform(n_iter: int, tol: float, prior: float) -> None:
    """``result_equal``: a > b > c > a, one win each: 1/3 each (with our default prior too, by
    symmetry)."""
    bt = BradleyTerry(pooled=True, prior=prior, n_iter=n_iter, tol=tol).fit(
        _crowd_kit_ballots(DATA_EQUAL))
    assert bt.strengths_ is not None
    assert _sum_one(bt.strengths_) == pytest.approx(RESULT_EQUAL, abs=0.005)


def test_crowd_kit_empty_input() -> None:
    """``test_bradley_terry_empty``: no comparisons, no scores."""
    bt = BradleyTerry(pooled=True, n_iter=1).fit([])
    assert bt.strengths_ == {}
    assert bt.ranking() == []
    assert rank([]) == []


def test_zero_iterations_are_refused_by_design() -> None:
    """crowd-kit's ``n_iter=0`` returns the uniform start; our ``n_iter`` is >= 1."""
    with pytest.raises(ValidationError):
        BradleyTerry(n_iter=0)


# --- choix --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_items", "kind", "data", "ml_est"),
                         [c[1:] for c in CHOIX], ids=[c[0] for c in CHOIX])
def test_choix_maximum_likelihood_estimates(n_items: int, kind: str, data: list[Any],
                                            ml_est: list[float]) -> None:
    bt = BradleyTerry(pooled=True, prior=0.0).fit(_choix_ballots(kind, data))
    assert bt.strengths_ is not None
    got = [np.log(bt.strengths_[f"i{i}"]) for i in range(n_items)]
    assert np.allclose(got, ml_est, atol=1e-4, rtol=1e-5), (got, ml_est)
    assert bt.n_iter_ < bt.n_iter  # converged within tol, not stopped by the iteration cap
