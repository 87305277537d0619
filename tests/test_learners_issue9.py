"""Issue 9: learners reach their fixed point, never decide from NaN, and weigh scarce gold.

Fast (no Ray): small numpy panels only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from consensus.types import Ballot, Vote
from strategies._combiners import Linear
from strategies._matrix import decide_from_scores, set_learned
from strategies.base import agreement_of
from strategies.bradley_terry import _choices, fit_strengths
from strategies.calibrated import Calibrated
from strategies.dawid_skene import DawidSkene, OneCoin, dawid_skene_em
from strategies.log_odds import LogOdds

VERDICT = ("accept", "reject")


def ballot(votes: dict[str, str], rid: str = "q", gold: str | None = None) -> Ballot:
    return Ballot(request_id=rid, subject="s", labels=VERDICT, gold=gold, votes=tuple(
        Vote(judge=j, request_id=rid, candidate_id="s", label=lab) for j, lab in votes.items()))


def sparse_weak_panel(seed: int = 0, n: int = 399, n_j: int = 40, per: int = 4) -> tuple[
        np.ndarray, np.ndarray]:
    """Weak judges (accuracy 0.45-0.75), four votes per item: EM needs hundreds of iterations."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    acc = rng.uniform(0.45, 0.75, n_j)
    codes = np.full((n, n_j), -1)
    for i in range(n):
        js = rng.choice(n_j, per, replace=False)
        codes[i, js] = np.where(rng.random(per) < acc[js], truth[i], 1 - truth[i])
    return codes, truth


# --- 1. the stopping rule reaches the fixed point ----------------------------------------------


def test_default_stopping_rule_reaches_the_converged_labels() -> None:
    codes, _ = sparse_weak_panel()
    converged = dawid_skene_em(codes, 2, n_iter=100_000, tol=1e-12)
    r = dawid_skene_em(codes, 2)  # the defaults
    assert r.converged and r.n_iter > 100  # a panel that needs hundreds of iterations
    assert (r.posteriors.argmax(1) == converged.posteriors.argmax(1)).all()
    # the likelihood alone flattened long before: 25 iterations left many labels to change
    early = dawid_skene_em(codes, 2, n_iter=25)
    assert (early.posteriors.argmax(1) != converged.posteriors.argmax(1)).sum() > 5


def test_tol_zero_runs_every_iteration() -> None:
    codes, _ = sparse_weak_panel(n=100)
    r = dawid_skene_em(codes, 2, n_iter=7, tol=0.0)
    assert r.n_iter == 7 and not r.converged


# --- 2. NaN or empty support never reaches a label ---------------------------------------------


def assert_undecided(d: object, words: str = "non-finite") -> None:
    assert d.label is None
    assert words in d.reason


@pytest.mark.parametrize("make", [DawidSkene, OneCoin])
def test_dawid_skene_with_nan_parameters_leaves_the_ballot_undecided(make: type) -> None:
    data = [ballot({"x": "accept", "y": "accept"}, f"q{i}") for i in range(3)]
    ds = make().fit(data)
    set_learned(ds, confusions_=np.full_like(ds.confusions_, np.nan))
    assert_undecided(ds.aggregate(data[0]))


def test_log_odds_with_nan_competence_leaves_the_ballot_undecided() -> None:
    lo = LogOdds().fit([ballot({"x": "accept"}, gold="accept")])
    set_learned(lo, log_prior_=np.array([np.nan, 0.0]))
    assert_undecided(lo.aggregate(ballot({"x": "accept"})))


def test_calibrated_with_nan_model_leaves_the_ballot_undecided() -> None:
    data = [ballot({"x": lab, "y": lab}, f"q{i}", gold=lab)
            for i, lab in enumerate(["accept", "reject"] * 4)]
    cal = Calibrated().fit(data)
    set_learned(cal, model_=Linear(np.full((4, 2), np.nan), np.zeros(2)))
    assert_undecided(cal.aggregate(data[0]))


def test_scores_that_rule_out_every_label_or_none_leave_the_ballot_undecided() -> None:
    b = ballot({"x": "accept"})
    kw = {"strategy": "t", "tie_rule": "reject", "seed": 0, "diagnostics": {}}
    assert_undecided(decide_from_scores(b, np.array([-np.inf, -np.inf]), **kw))
    assert_undecided(decide_from_scores(b, np.array([np.inf, 0.0]), **kw))
    assert_undecided(decide_from_scores(b, np.array([np.nan, 0.0]), **kw))
    assert_undecided(decide_from_scores(b, np.zeros(0), **kw), "empty support")


def test_bradley_terry_with_nan_strengths_leaves_the_ballot_undecided() -> None:
    from strategies.bradley_terry import BradleyTerry

    b = Ballot(request_id="q", subject="*", labels=("1", "2"), votes=(
        Vote(judge="x", request_id="q", candidate_id="*", label="1"),))
    bt = BradleyTerry(pooled=True).fit([b])
    set_learned(bt, strengths_={"1": math.nan, "2": 1.0})
    assert_undecided(bt.aggregate(b))


# --- 3. scarce gold ----------------------------------------------------------------------------


def test_gold_check_reports_what_it_compared() -> None:
    # most judges worse than chance: with enough gold the gold start wins on held-out gold
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 400)
    acc = np.array([0.2, 0.2, 0.25, 0.25, 0.3, 0.3, 0.85, 0.9])
    codes = np.where(rng.random((400, 8)) < acc, truth[:, None], 1 - truth[:, None])
    gold = np.full(400, -1)
    gold[:10] = truth[:10]
    r = dawid_skene_em(codes, 2, gold=gold)
    assert r.gold_check is not None and r.gold_check.chosen == "gold"
    assert r.gold_check.wins >= 5 and r.gold_check.p_gold_start >= 0.95
    assert (r.posteriors.argmax(1) == truth)[40:].mean() > 0.95
    assert dawid_skene_em(codes, 2).posteriors.argmax(1)[40:].tolist() != truth[40:].tolist()
    # two gold items cannot prove it (a sign test needs four wins without a loss)
    gold[2:] = -1
    r2 = dawid_skene_em(codes, 2, gold=gold)
    assert r2.gold_check is not None and r2.gold_check.chosen == "vote shares"
    ds = DawidSkene().fit([ballot({f"j{j}": VERDICT[c] for j, c in enumerate(row)}, f"q{i}",
                                  gold=VERDICT[truth[i]] if i < 10 else None)
                           for i, row in enumerate(codes)])
    assert ds.gold_check_ is not None and ds.gold_check_.n_gold > 0


# --- 5. small fixes ----------------------------------------------------------------------------


def test_bradley_terry_without_prior_keeps_a_never_winning_candidate_from_blowing_up() -> None:
    ch = _choices([("a", ("a", "b"), 1.0), ("a", ("a", "c"), 1.0), ("b", ("b", "c"), 1.0)])
    s, _ = fit_strengths(ch, prior=0.0)
    assert np.isfinite(s).all() and s.max() < 1e6  # was ~1e151 through the 1e-300 floor
    assert s[2] < s[1] < s[0]


def test_unanimous_entropy_is_positive_zero() -> None:
    e = agreement_of(ballot({"x": "accept", "y": "accept"})).entropy
    assert e == 0.0 and math.copysign(1.0, e) == 1.0


# --- the stack is scored as it would have been chosen without the scored items ------------------

def _noise_cv(seed: int, n_cands: int = 60) -> tuple[Any, list[tuple[str, int]]]:
    """A cross-validation over 40 gold items whose candidates predict by coin flips (their
    out-of-fold log-probabilities are injected): every one is right half the time in truth."""
    from strategies._combiners import Panel
    from strategies._matrix import vote_matrix
    from strategies.calibrated import _CrossValidation

    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 40)
    data = [ballot({f"j{j}": VERDICT[int(t) if rng.random() < 0.7 else 1 - int(t)]
                    for j in range(5)}, rid=f"q{i}", gold=VERDICT[int(t)])
            for i, t in enumerate(truth)]
    m = vote_matrix(data)
    panel = Panel(m, 2)
    rows = np.flatnonzero(m.gold >= 0)
    cv = _CrossValidation(panel, rows, m.gold[rows], 5, 3, seed)
    cands = [("noise", i) for i in range(n_cands)]
    for c in cands:
        p = rng.uniform(0.2, 0.8, len(cv.y_all))
        cv._oof[c] = np.log(np.stack([p, 1 - p], axis=1))
    return cv, cands


def test_selected_accuracy_does_not_flatter_the_best_of_many_coin_flips() -> None:
    plain, honest = [], []
    for seed in range(8):
        cv, cands = _noise_cv(seed)
        chosen, acc = cv.selected_accuracy(cands)
        idx = (np.arange(len(cv.y_all)), cv.y_all)
        assert chosen == min(cands, key=lambda c: float(-cv.oof(c)[idx].mean()))
        plain.append(float(cv.item_accuracy(chosen).mean()))
        honest.append(float(acc.mean()))
    # the minimum of 60 log-losses, scored on its own items, looks better than a coin
    assert np.mean(plain) > 0.56 and np.mean(plain) - np.mean(honest) > 0.05
    # chosen without the scored fold it is a coin again
    assert abs(np.mean(honest) - 0.5) < 0.05


def test_selected_accuracy_of_one_candidate_is_its_item_accuracy() -> None:
    cv, cands = _noise_cv(0, n_cands=1)
    chosen, acc = cv.selected_accuracy(cands)
    assert chosen == cands[0]
    np.testing.assert_allclose(acc, cv.item_accuracy(cands[0]), rtol=0, atol=1e-12)
