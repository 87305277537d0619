"""Dawid–Skene against crowd-kit's own test fixtures (Toloka/crowd-kit,
``tests/aggregation/test_ds_aggregation.py``, Apache-2.0), ported as data.

Matched conventions: crowd-kit's labels ``no`` / ``yes`` are our ``reject`` / ``accept``; both
start EM from the vote shares (crowd-kit's MajorityVote ``probas_``), and one iteration is one
M-step then one E-step in both, so our posteriors after ``n_iter`` iterations are its
``probas_``. Different by design: our ``smoothing`` (0.01) adds a pseudo-count where crowd-kit
adds none, and our priors are those of the last M-step where crowd-kit recomputes them from the
final posteriors; the tolerance is crowd-kit's own (0.005), and both smoothing values are tried.
"""

from __future__ import annotations

import numpy as np
import pytest

from consensus.types import Ballot, Vote
from strategies.dawid_skene import DawidSkene

LABEL = {"yes": "accept", "no": "reject"}
# crowd-kit's ``data`` fixture: (task, worker, label)
STEP_DATA = [
    ("t1", "w1", "no"), ("t1", "w2", "yes"), ("t1", "w4", "yes"), ("t1", "w5", "no"),
    ("t2", "w1", "yes"), ("t2", "w2", "yes"), ("t2", "w3", "yes"), ("t2", "w4", "no"),
    ("t2", "w5", "no"),
    ("t3", "w1", "yes"), ("t3", "w2", "no"), ("t3", "w3", "no"), ("t3", "w4", "yes"),
    ("t3", "w5", "no"),
    ("t4", "w1", "yes"), ("t4", "w2", "yes"), ("t4", "w3", "yes"), ("t4", "w4", "yes"),
    ("t4", "w5", "yes"),
    ("t5", "w1", "yes"), ("t5", "w2", "no"), ("t5", "w3", "no"), ("t5", "w4", "no"),
    ("t5", "w5", "no"),
]
# crowd-kit's ``probas_iter_1``: P(no), P(yes) per task after one iteration
PROBAS_ITER_1 = {"t1": (0.35, 0.65), "t2": (0.26, 0.74), "t3": (0.87, 0.13),
                 "t4": (0.00, 1.00), "t5": (0.95, 0.05)}


def _ballots(rows: list[tuple[str, str, str]]) -> list[Ballot]:
    tasks = list(dict.fromkeys(t for t, _, _ in rows))
    return [Ballot(request_id=t, subject="a", labels=("accept", "reject"),
                   votes=tuple(Vote(judge=w, request_id=t, candidate_id="a", label=LABEL[lab])
                               for tt, w, lab in rows if tt == t)) for t in tasks]


@pytest.mark.parametrize("smoothing", [0.01, 1e-10])
def test_one_iteration_matches_crowd_kits_step_by_step_fixture(smoothing: float) -> None:
    ds = DawidSkene(n_iter=1, tol=0.0, smoothing=smoothing).fit(_ballots(STEP_DATA))
    for (task, (p_no, p_yes)), post in zip(PROBAS_ITER_1.items(), ds.posteriors_, strict=True):
        assert post[1] == pytest.approx(p_no, abs=0.005), task  # position 1 is reject ("no")
        assert post[0] == pytest.approx(p_yes, abs=0.005), task


@pytest.mark.parametrize("overlap", [3, 300])
@pytest.mark.parametrize("smoothing", [0.01, 1e-10])
def test_overlap_fixture_keeps_the_minority_class(overlap: int, smoothing: float) -> None:
    """crowd-kit's ``test_dawid_skene_overlap``: every task gets 'no' from a third of the workers.
    Started from a hard majority, 'no' had no mass and never recovered (priors 0.003 / 0.997);
    from the vote shares the fixed point is crowd-kit's 1/3, 2/3."""
    rows = [(f"t{t}", f"w{p}", "yes" if (p - t) % 3 else "no")
            for p in range(overlap) for t in range(3)]
    ds = DawidSkene(n_iter=20, smoothing=smoothing).fit(_ballots(rows))
    assert np.allclose(ds.posteriors_, [[2 / 3, 1 / 3]] * 3, atol=0.005)
    assert np.allclose(ds.priors_, [2 / 3, 1 / 3], atol=0.005)
