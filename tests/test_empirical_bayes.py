"""Empirical-Bayes Dawid–Skene (strategies/empirical_bayes.py), the anchor of ``calibrated``,
and the sparse (long-form) Dawid–Skene path.

Fast (no Ray): numpy panels only.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln
from scipy.stats import dirichlet_multinomial

from consensus.types import Ballot, Vote
from strategies._matrix import one_hot, one_hot_long
from strategies.calibrated import Calibrated
from strategies.dawid_skene import dawid_skene_em
from strategies.empirical_bayes import (
    KAPPA_GRID,
    eb_dawid_skene,
    fixed_points,
    gold_counts,
    marginal_log_likelihood,
)

VERDICT = ("accept", "reject")


def panel(acc: list[float], n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    a = np.asarray(acc)
    return np.where(rng.random((n, a.size)) < a, truth[:, None], 1 - truth[:, None]), truth


def with_gold(truth: np.ndarray, rows: np.ndarray) -> np.ndarray:
    gold = np.full(truth.size, -1)
    gold[rows] = truth[rows]
    return gold


def test_marginal_likelihood_matches_scipy_dirichlet_multinomial() -> None:
    # independent implementation: scipy's Dirichlet-multinomial pmf, product over (judge, class)
    # rows; ours drops the multinomial coefficient, which does not depend on kappa
    rng = np.random.default_rng(1)
    prior = rng.dirichlet(np.ones(3), size=(4, 3))
    counts = rng.integers(0, 4, size=(4, 3, 3)).astype(float)
    for kappa in (0.5, 3.0, 250.0):
        ref = sum(dirichlet_multinomial.logpmf(counts[j, t], kappa * prior[j, t],
                                                int(counts[j, t].sum()))
                  for j in range(4) for t in range(3))
        coef = sum(gammaln(counts[j, t].sum() + 1) - gammaln(counts[j, t] + 1).sum()
                   for j in range(4) for t in range(3))
        assert marginal_log_likelihood(prior, counts, kappa) + coef == pytest.approx(ref,
                                                                                 abs=1e-9)


def test_gold_counts_tally_votes_by_true_class() -> None:
    codes = np.array([[0, 1, -1], [1, 1, 0]])
    c = gold_counts(codes, np.array([0, 1]), np.array([0, 1]), 2)
    assert c[0].tolist() == [[1, 0], [0, 1]]  # judge 0: right on both
    assert c[1].tolist() == [[0, 1], [0, 1]]
    assert c[2].tolist() == [[0, 0], [1, 0]]  # judge 2 voted only on the class-1 item


def test_without_gold_it_is_unsupervised_dawid_skene() -> None:
    codes, _ = panel([0.8, 0.7, 0.65, 0.6])
    fit = eb_dawid_skene(codes, 2, np.full(len(codes), -1))
    r = dawid_skene_em(codes, 2)
    assert fit.kappa is None and not fit.switched
    assert (fit.log_scores(codes).argmax(1) == r.posteriors.argmax(1)).all()


def test_marginal_likelihood_prefers_a_strong_prior_only_for_counts_that_fit_it() -> None:
    rng = np.random.default_rng(2)
    prior = np.array([[[0.9, 0.1], [0.2, 0.8]]] * 30)
    fits = np.stack([[rng.multinomial(40, prior[j, t]) for t in range(2)]
                     for j in range(30)]).astype(float)
    contradicts = fits[:, :, ::-1].copy()  # the same judges, voting the other way
    best = [KAPPA_GRID[int(np.argmax([marginal_log_likelihood(prior, c, kap)
                                      for kap in KAPPA_GRID]))] for c in (fits, contradicts)]
    assert best[0] >= 100 and best[1] < 1.0


def test_gold_that_agrees_keeps_the_answers_and_gold_that_contradicts_moves_them() -> None:
    codes, truth = panel([0.85, 0.8, 0.75, 0.7, 0.7], n=400)
    unsup = dawid_skene_em(codes, 2).posteriors.argmax(1)
    agree = eb_dawid_skene(codes, 2, with_gold(truth, np.arange(20)))
    assert agree.kappa is not None and agree.kappa >= 100 and "marginal likelihood" in agree.why
    assert (agree.log_scores(codes).argmax(1) == unsup)[20:].mean() >= 0.99
    # judge 0, the best, said the opposite of the gold on all 20 gold items: it loses its vote
    lying = codes.copy()
    lying[:20, 0] = 1 - truth[:20]
    contra = eb_dawid_skene(lying, 2, with_gold(truth, np.arange(20)))
    conf = contra.confusions[0]
    assert conf[0, 0] < 0.5 and conf[1, 1] < 0.5  # now read as worse than chance


def test_three_gold_items_never_switch_a_panel_and_four_can() -> None:
    # an adversarial panel: four judges share a wrong preference, one is good. Gold items, all
    # against the unsupervised answer: three are not enough to switch (P(worse than chance) =
    # 0.9375 < 0.95), four are
    codes, truth = panel([0.3, 0.3, 0.3, 0.35, 0.9], n=300, seed=4)
    unsup = dawid_skene_em(codes, 2).posteriors.argmax(1)
    wrong = np.flatnonzero(unsup != truth)
    fit3 = eb_dawid_skene(codes, 2, with_gold(truth, wrong[:3]))
    assert not fit3.switched and fit3.gold_right == 0 and "= 0.938" in fit3.why
    fit4 = eb_dawid_skene(codes, 2, with_gold(truth, wrong[:4]))
    assert fit4.switched and "label-switched" in fit4.why
    acc = (fit4.log_scores(codes).argmax(1) == truth).mean()
    assert acc > (unsup == truth).mean() + 0.3
    # one right answer among the gold takes two more wrong ones to outweigh
    right = np.flatnonzero(unsup == truth)
    mixed = eb_dawid_skene(codes, 2, with_gold(truth, np.r_[wrong[:5], right[:1]]))
    assert not mixed.switched and mixed.gold_right == 1


@settings(max_examples=40, deadline=None)
@given(n_gold=st.integers(0, 30), seed=st.integers(0, 10_000))
def test_posterior_confusions_are_distributions_between_prior_and_gold(n_gold: int,
                                                                      seed: int) -> None:
    codes, truth = panel([0.9, 0.6, 0.55, 0.7], n=120, seed=seed)
    codes = np.where(np.random.default_rng(seed).random(codes.shape) < 0.2, -1, codes)
    rows = np.random.default_rng(seed + 1).permutation(120)[:n_gold]
    fit = eb_dawid_skene(codes, 2, with_gold(truth, rows))
    assert np.isfinite(fit.confusions).all() and (fit.confusions > 0).all()
    assert np.allclose(fit.confusions.sum(axis=2), 1.0)
    assert np.isclose(fit.priors.sum(), 1.0) and (fit.priors > 0).all()
    if n_gold:
        assert fit.kappa in KAPPA_GRID and fit.n_gold == n_gold
        assert 0 <= fit.gold_right <= n_gold


def ballots_of(codes: np.ndarray, truth: np.ndarray, gold_rows: set[int]) -> list[Ballot]:
    return [Ballot(request_id=f"q{i}", subject="a", labels=VERDICT,
                   gold=VERDICT[truth[i]] if i in gold_rows else None,
                   votes=tuple(Vote(judge=f"j{j}", request_id=f"q{i}", candidate_id="a",
                                    label=VERDICT[c]) for j, c in enumerate(row)))
            for i, row in enumerate(codes)]


def test_calibrated_with_three_gold_items_does_not_flip_an_honest_panel() -> None:
    # the FairEval failure of issue 9: a handful of gold items must not move an honest panel to a
    # worse optimum; with too little gold to cross-validate, calibrated reports the anchor
    codes, truth = panel([0.75, 0.7, 0.7, 0.65, 0.6, 0.6], n=300, seed=7)
    unsup = dawid_skene_em(codes, 2).posteriors.argmax(1)
    wrong = np.flatnonzero(unsup != truth)[:3]  # the worst case: gold where the panel erred
    cal = Calibrated().fit(ballots_of(codes, truth, set(wrong.tolist())))
    assert cal.method_ == "eb_dawid_skene" and cal.n_gold_ == 3
    assert "min_gold" in cal.why_ and "kappa" in cal.why_
    decided = np.array([VERDICT.index(cal.aggregate(b).label) for b in
                        ballots_of(codes, truth, set())])
    assert (decided == truth).mean() >= (unsup == truth).mean() - 0.01


def test_calibrated_reports_its_candidates_and_why() -> None:
    codes, truth = panel([0.8, 0.75, 0.7, 0.3, 0.65], n=300, seed=2)
    cal = Calibrated(n_repeats=1).fit(ballots_of(codes, truth, set(range(40))))
    assert cal.n_gold_ == 40 and cal.candidates_[0] == "eb_dawid_skene"
    assert any(c.startswith("stack(") for c in cal.candidates_)
    assert set(cal.cv_scores_) >= {"eb_dawid_skene", "majority", "log_odds"}
    assert "anchor" in cal.why_ and "switch_confidence=0.9" in cal.why_
    d = cal.aggregate(ballots_of(codes, truth, set())[100])
    assert d.diagnostics["n_gold"] == 40 and d.diagnostics["why"] == cal.why_


# --- the sparse path --------------------------------------------------------------------------


def test_long_form_one_hot_equals_the_dense_one_and_gives_the_same_fit() -> None:
    rng = np.random.default_rng(0)
    n, n_j, k = 2000, 60, 3
    truth = rng.integers(0, k, n)
    codes = np.where(rng.random((n, n_j)) < 0.08,
                     np.where(rng.random((n, n_j)) < 0.7, truth[:, None],
                              rng.integers(0, k, (n, n_j))), -1)
    i, j = np.nonzero(codes >= 0)
    x = one_hot_long(i, j, codes[i, j], n_items=n, n_judges=n_j, n_labels=k)
    assert (x != one_hot(codes, k)).nnz == 0
    gold = with_gold(truth, np.arange(25))
    dense, long = dawid_skene_em(codes, k, gold=gold), dawid_skene_em(x, k, gold=gold)
    assert np.allclose(dense.posteriors, long.posteriors) and dense.n_iter == long.n_iter
    assert dense.gold_check == long.gold_check


@pytest.mark.parametrize(("kw", "words"), [
    ({"items": [0, 1], "judges": [0], "labels": [0, 1]}, "one length"),
    ({"items": [0, 5], "judges": [0, 0], "labels": [0, 1]}, "items must lie in [0, 2)"),
    ({"items": [0, 1], "judges": [0, 0], "labels": [0, -1]}, "labels must lie"),
])
def test_long_form_refuses_bad_indices(kw: dict[str, list[int]], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        one_hot_long(np.array(kw["items"]), np.array(kw["judges"]), np.array(kw["labels"]),
                     n_items=2, n_judges=1, n_labels=2)


def herd_panel(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Three copies of one judge right 60% of the time, two independent judges right 80%:
    unsupervised Dawid–Skene reads the copies' perfect agreement as competence."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    lead = np.where(rng.random(n) < 0.6, truth, 1 - truth)
    good = np.where(rng.random((n, 2)) < 0.8, truth[:, None], 1 - truth[:, None])
    return np.c_[lead, lead, lead, good], truth


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_gold_shows_a_herd_for_what_it_is_worth(seed: int) -> None:
    codes, truth = herd_panel(seed)
    unsup = dawid_skene_em(codes, 2).posteriors.argmax(1)
    fit = eb_dawid_skene(codes, 2, with_gold(truth, np.arange(40)))
    acc = (fit.log_scores(codes).argmax(1) == truth)[40:].mean()
    assert acc >= (unsup == truth)[40:].mean() + 0.15
    if seed == 3:  # a weaker prior predicts the held-out gold better: 6 wins, no loss
        assert "better than the most likely" in fit.why and "P = 0.992" in fit.why
        assert fit.kappa == KAPPA_GRID[0]


def camp_panel(fooled: int, careful: int, wrong: float, hard: float, easy: float,
               seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """``fooled`` judges right ``wrong`` of the time on a ``hard`` share of the items,
    ``careful`` ones right 85% there; everyone right ``easy`` of the time on the rest."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    is_hard = rng.random(n) < hard
    right = np.where(is_hard[:, None], np.r_[np.full(fooled, wrong),
                                             np.full(careful, 0.85)][None, :], easy)
    codes = np.where(rng.random((n, fooled + careful)) < right, truth[:, None],
                     1 - truth[:, None])
    return codes, truth


LIKELY = (9, 5, 0.3, 0.5, 0.75, 1)  # the careful camp's optimum is also the more likely one
UNLIKELY = (7, 4, 0.15, 0.5, 0.9, 2)  # ... and here the less likely one


@pytest.mark.parametrize("case", [LIKELY, UNLIKELY])
def test_fixed_points_start_from_each_camp(case) -> None:
    codes, truth = camp_panel(*case)
    fps = fixed_points(codes, 2)
    first = dawid_skene_em(codes, 2)
    assert np.array_equal(fps[0].posteriors, first.posteriors)  # the vote-share start first
    acc = [float((f.posteriors.argmax(1) == truth).mean()) for f in fps]
    # the vote-share start follows the fooled majority; a start from the careful camp's votes
    # reaches another optimum
    assert acc[0] < 0.5 and max(acc) > 0.9
    labels = [f.posteriors.argmax(1) for f in fps]
    for i in range(len(labels)):  # distinct optima only: no near-copy, no label-switched twin
        for j in range(i):
            same = (labels[i] == labels[j]).mean()
            assert 0.05 < same < 0.95


def test_an_honest_panel_has_one_fixed_point_and_three_labels_one_start() -> None:
    codes, _ = panel([0.9, 0.8, 0.75, 0.7, 0.65], n=400)
    assert len(fixed_points(codes, 2)) == 1
    rng = np.random.default_rng(3)
    assert len(fixed_points(rng.integers(-1, 3, (200, 5)), 3)) == 1


@pytest.mark.parametrize(("case", "taken"), [(LIKELY, True), (UNLIKELY, False)])
def test_another_optimum_needs_the_likelihood_and_the_gold(case, taken: bool) -> None:
    codes, truth = camp_panel(*case)
    fps = fixed_points(codes, 2)
    best = int(np.argmax([(f.posteriors.argmax(1) == truth).mean() for f in fps]))
    assert (fps[best].log_likelihood >= fps[0].log_likelihood) is taken
    gold = with_gold(truth, np.random.default_rng(0).permutation(len(truth))[:6])
    alone = eb_dawid_skene(codes, 2, gold, unsupervised=fps[0])
    fit = eb_dawid_skene(codes, 2, gold, unsupervised=fps[0], alternatives=fps[1:])
    assert fit.why.startswith(f"of {len(fps)} fixed points")
    scored = gold < 0
    acc_alone = (alone.log_scores(codes).argmax(1) == truth)[scored].mean()
    acc = (fit.log_scores(codes).argmax(1) == truth)[scored].mean()
    assert acc_alone < 0.6
    if taken:  # as likely, and right on more of the 6 gold items: it replaces the first
        assert acc > 0.9 and "the vote-share start's stands" not in fit.why
    else:  # right on more gold (5 and 6 of 6), but less likely: the vote-share fit stands
        assert "right on 5, 6 of 6 gold" in fit.why
        assert acc == acc_alone and "the vote-share start's stands" in fit.why
    # without gold the vote-share fixed point stands
    none = eb_dawid_skene(codes, 2, np.full(len(truth), -1), unsupervised=fps[0],
                          alternatives=fps[1:])
    assert np.array_equal(none.log_scores(codes).argmax(1), fps[0].posteriors.argmax(1))


def test_the_label_switched_twin_is_not_another_optimum() -> None:
    # an honest panel with two inverted judges: EM from one camp reaches the vote-share fit's
    # label switch, exactly as likely. Were it "another optimum", one gold item on which the
    # vote-share fit errs would switch the panel without the P >= 0.95 burden (it did: 0.91 ->
    # 0.09 accuracy, a review's find)
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    acc = np.array([0.85, 0.8, 0.75, 0.15, 0.2])
    codes = np.where(rng.random((200, 5)) < acc, truth[:, None], 1 - truth[:, None])
    fps = fixed_points(codes, 2)
    first = fps[0].posteriors.argmax(1)
    assert all((f.posteriors.argmax(1) != 1 - first).mean() > 0.05 for f in fps[1:])
    wrong = int(np.flatnonzero(first != truth)[0])
    gold = with_gold(truth, np.array([wrong]))
    fit = eb_dawid_skene(codes, 2, gold, unsupervised=fps[0], alternatives=fps[1:])
    assert not fit.switched
    assert (fit.log_scores(codes).argmax(1) == truth).mean() > 0.85


def test_a_code_beyond_the_labels_is_an_error_not_an_abort() -> None:
    # before: scipy built a CSR matrix with an out-of-range column and the process aborted
    # (free(): invalid size) inside Dawid-Skene
    with pytest.raises(ValueError, match="below n_labels=2"):
        dawid_skene_em(np.array([[0, 2], [1, 0]]), 2)
    with pytest.raises(ValueError, match="below n_labels=2"):
        one_hot(np.array([[0, 3]]), 2)
