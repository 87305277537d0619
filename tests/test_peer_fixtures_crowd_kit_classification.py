"""One-coin Dawid–Skene, Dawid–Skene with gold, majority vote and gold majority vote against
crowd-kit's own test fixtures, ported as data (numbers and toy datasets only, no code).

Source: Toloka/crowd-kit, Apache-2.0, commit 35f06615e6dc (2025-01-14):

* ``tests/conftest.py``: the toy YSDA dataset (``toy_answers_df``, ``toy_ground_truth_df``,
  ``toy_gold_df``), the "simple" dataset (``simple_answers_df``, ``simple_ground_truth``,
  ``simple_gold_df``) and ``data_with_bool_labels``;
* ``tests/aggregation/test_ds_aggregation.py``: ``test_aggregate_hds_on_toy_ysda``,
  ``test_aggregate_hds_on_simple``, ``test_hds_on_bool_labels`` (``OneCoinDawidSkene``),
  ``test_aggregate_ds_gold_on_toy_ysda``, ``test_ds_gold_probas_correction_with_iters``;
* ``tests/aggregation/data_mv.py``, ``data_gold_mv.py`` with ``test_classification_aggregation.py``
  (``MajorityVote``, ``GoldMajorityVote``: labels, probas, skills) and
  ``test_majority_vote.py::test_gold_mv_multiple_gt``.

Matched conventions:

* Labels: ``yes`` / ``no`` are our ``accept`` / ``reject``, ``True`` / ``False`` likewise; the
  simple dataset keeps its names (ballot labels in crowd-kit's sorted column order). Its ids are
  shortened: a worker is the first 4 hex digits of its 32-digit id, a task the last 3 characters
  of ``1231239876--5fac0d234ffb2f3b00893...``.
* Tie rule: crowd-kit's ``idxmax`` over sorted columns picks the first label in sorted order. On
  the toy data that is ``no`` (``no`` < ``yes``), which our default ``reject`` rule also picks;
  on the simple data it is ``tie_rule="first"`` over the sorted labels.
* One-coin EM: both start from the vote shares and count one M-step + one E-step as an
  iteration, so ``n_iter`` means the same; our ``smoothing`` (0.01 default) adds a Beta
  pseudo-count where crowd-kit clips at 1e-10, so both 0.01 and 1e-10 are tried. Different by
  design: our stopping rule is the change of the mean log-likelihood per item, crowd-kit's the
  gain of the ELBO per answer; these fixtures are labels, which both rules reach.
* Gold majority vote: crowd-kit's ``skills_`` (raw accuracy on gold tasks) is our
  ``consensus.stats.judge_summaries(...)["accuracy"]``, and its weighted vote is our
  ``Weighted(weights=skills)`` (``probas_`` = the normalised supports). Our learned gold strategy,
  ``LogOdds(source="gold")``, smooths that accuracy to ``(right + 1) / (n + K)`` and weighs by log
  odds, by design; without its class prior (``prior=False``) it reaches crowd-kit's labels.

Different by design, not ported: ``n_iter=0`` (our ``n_iter`` is >= 1: one EM iteration at
least); crowd-kit's missing-column ``KeyError`` cases (our input is typed ballots); several gold
labels for one task (``Ballot.gold`` is a single label: only the aggregation part of
``test_gold_mv_multiple_gt`` is ported, with crowd-kit's skills as weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import pytest
from pydantic import ValidationError

from consensus.stats import judge_summaries
from consensus.types import Ballot, Vote
from strategies.base import TieRule
from strategies.dawid_skene import DawidSkene, OneCoin
from strategies.log_odds import LogOdds
from strategies.majority import Majority
from strategies.weighted import Weighted

Row = tuple[str, str, str]  # (worker, task, label), crowd-kit's column order in conftest.py
YN = {"yes": "accept", "no": "reject"}

# conftest.py ``toy_answers_df``, ``toy_ground_truth_df``, ``toy_gold_df``
TOY: list[Row] = [
    ("w1", "t1", "no"), ("w1", "t2", "yes"), ("w1", "t3", "yes"), ("w1", "t4", "yes"),
    ("w1", "t5", "yes"),
    ("w2", "t1", "yes"), ("w2", "t2", "yes"), ("w2", "t3", "no"), ("w2", "t4", "yes"),
    ("w2", "t5", "no"),
    ("w3", "t2", "yes"), ("w3", "t3", "no"), ("w3", "t4", "yes"), ("w3", "t5", "no"),
    ("w4", "t1", "yes"), ("w4", "t2", "no"), ("w4", "t3", "yes"), ("w4", "t4", "yes"),
    ("w4", "t5", "no"),
    ("w5", "t1", "no"), ("w5", "t2", "no"), ("w5", "t3", "no"), ("w5", "t4", "yes"),
    ("w5", "t5", "no"),
]
TOY_TRUTH = {"t1": "yes", "t2": "yes", "t3": "no", "t4": "yes", "t5": "no"}
TOY_GOLD = {"t1": "yes", "t2": "yes"}

# conftest.py ``simple_answers_df`` (good workers bde3, b17c, a452, 0f65; fraudster 0c3e always
# answers parrot; careless e563), ``simple_ground_truth``, ``simple_gold_df``
SIMPLE: list[Row] = [
    ("bde3", "eec", "goose"), ("bde3", "efb", "parrot"), ("bde3", "f03", "goose"),
    ("bde3", "f05", "goose"), ("bde3", "f02", "parrot"), ("bde3", "f08", "parrot"),
    ("b17c", "efb", "parrot"), ("b17c", "ee8", "chicken"), ("b17c", "f07", "parrot"),
    ("b17c", "efd", "chicken"), ("b17c", "ee4", "chicken"), ("b17c", "f03", "goose"),
    ("a452", "ee8", "chicken"), ("a452", "eec", "goose"), ("a452", "f05", "goose"),
    ("a452", "f02", "parrot"), ("a452", "f08", "parrot"),
    ("0f65", "eec", "goose"), ("0f65", "ee8", "chicken"), ("0f65", "f03", "goose"),
    ("0f65", "ee4", "chicken"),
    ("0c3e", "eec", "parrot"), ("0c3e", "efb", "parrot"), ("0c3e", "f07", "parrot"),
    ("0c3e", "efd", "parrot"), ("0c3e", "ee4", "parrot"), ("0c3e", "f05", "parrot"),
    ("e563", "efb", "parrot"), ("e563", "ee8", "goose"), ("e563", "f02", "parrot"),
    ("e563", "f08", "parrot"), ("e563", "f07", "parrot"), ("e563", "efd", "goose"),
]
SIMPLE_TRUTH = {"eec": "goose", "f03": "goose", "f05": "goose", "efb": "parrot",
                "f02": "parrot", "f08": "parrot", "f07": "parrot", "ee8": "chicken",
                "efd": "chicken", "ee4": "chicken"}
SIMPLE_GOLD = {"eec": "goose", "efb": "parrot", "ee8": "chicken"}
SIMPLE_LABELS = ("chicken", "goose", "parrot")

# conftest.py ``data_with_bool_labels`` / ``bool_labels_ground_truth``
BOOL: list[Row] = [("w1", "t1", "True"), ("w1", "t2", "True"), ("w2", "t1", "True"),
                   ("w2", "t2", "True"), ("w3", "t1", "False"), ("w3", "t2", "False")]
BOOL_TRUTH = {"t1": "True", "t2": "True"}
TF = {"True": "accept", "False": "reject"}

DATASETS: dict[str, tuple[list[Row], dict[str, str], tuple[str, ...], Mapping[str, str]]] = {
    "toy": (TOY, TOY_TRUTH, ("accept", "reject"), YN),
    "simple": (SIMPLE, SIMPLE_TRUTH, SIMPLE_LABELS, {lab: lab for lab in SIMPLE_LABELS}),
    "bool": (BOOL, BOOL_TRUTH, ("accept", "reject"), TF),
}
# the tie rule that matches crowd-kit's first-in-sorted-order on each dataset (see docstring)
TIE: dict[str, TieRule] = {"toy": "reject", "simple": "first", "bool": "reject"}


def approx(expected: object) -> object:
    """crowd-kit's tolerance: pandas ``assert_*_equal(rtol=1e-5)`` (atol stays pandas' 1e-8)."""
    return pytest.approx(expected, rel=1e-5, abs=1e-8)


def _ballots(rows: Sequence[Row], labels: tuple[str, ...], name: Mapping[str, str],
             gold: Mapping[str, str] | None = None) -> list[Ballot]:
    """One ballot per task, in sorted task order (crowd-kit's sorted index)."""
    gold = gold or {}
    return [Ballot(request_id=t, subject="a", labels=labels,
                   gold=name[gold[t]] if t in gold else None,
                   votes=tuple(Vote(judge=w, request_id=t, candidate_id="a", label=name[lab])
                               for w, tt, lab in rows if tt == t))
            for t in sorted({t for _, t, _ in rows})]


def _dataset(key: str, gold: Mapping[str, str] | None = None) -> tuple[list[Ballot], list[str]]:
    rows, truth, labels, name = DATASETS[key]
    ballots = _ballots(rows, labels, name, gold)
    return ballots, [name[truth[b.request_id]] for b in ballots]


# --- one-coin Dawid–Skene -----------------------------------------------------------------------

ONE_COIN: dict[str, Callable[..., DawidSkene]] = {
    "OneCoin": OneCoin,
    "DawidSkene(variant='one_coin')": lambda **kw: DawidSkene(variant="one_coin", **kw),
}


@pytest.mark.parametrize("make", ONE_COIN.values(), ids=ONE_COIN.keys())
@pytest.mark.parametrize("smoothing", [0.01, 1e-10])
@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0.0), (100500, 1e-5)])
@pytest.mark.parametrize("key", ["toy", "simple"])
def test_one_coin_finds_crowd_kits_ground_truth(
    key: str, n_iter: int, tol: float, smoothing: float, make: Callable[..., DawidSkene],
) -> None:
    """``test_aggregate_hds_on_toy_ysda`` / ``test_aggregate_hds_on_simple``."""
    ballots, truth = _dataset(key)
    ds = make(n_iter=n_iter, tol=tol, smoothing=smoothing, tie_rule=TIE[key]).fit(ballots)
    assert [ds.aggregate(b).label for b in ballots] == truth
    assert ds.posteriors_ is not None
    assert [b.labels[k] for b, k in zip(ballots, ds.posteriors_.argmax(axis=1))] == truth


@pytest.mark.parametrize("make", ONE_COIN.values(), ids=ONE_COIN.keys())
@pytest.mark.parametrize("smoothing", [0.01, 1e-10])
def test_one_coin_on_bool_labels(smoothing: float, make: Callable[..., DawidSkene]) -> None:
    """``test_hds_on_bool_labels``: two workers say True, one False, on both tasks."""
    ballots, truth = _dataset("bool")
    ds = make(n_iter=20, tol=1e-5, smoothing=smoothing).fit(ballots)
    assert [ds.aggregate(b).label for b in ballots] == truth


# --- Dawid–Skene with gold (crowd-kit's ``DawidSkene.fit(data, true_labels)``) ------------------


@pytest.mark.parametrize("smoothing", [0.01, 1e-10])
@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0.0), (100500, 1e-5)])
def test_dawid_skene_with_gold_finds_ground_truth(n_iter: int, tol: float,
                                                  smoothing: float) -> None:
    """``test_aggregate_ds_gold_on_toy_ysda``."""
    ballots, truth = _dataset("toy", TOY_GOLD)
    ds = DawidSkene(n_iter=n_iter, tol=tol, smoothing=smoothing).fit(ballots)
    assert [ds.aggregate(b).label for b in ballots] == truth


@pytest.mark.parametrize("n_iter", [1, 2])
def test_dawid_skene_gold_posteriors_are_clamped(n_iter: int) -> None:
    """``test_ds_gold_probas_correction_with_iters`` (its ``n_iter=0`` is refused here, by
    design): gold tasks have posterior 1.0 on their gold label (atol 1e-8), rows sum to 1."""
    ballots, _ = _dataset("toy", TOY_GOLD)
    post = DawidSkene(n_iter=n_iter, tol=0.0).fit(ballots).posteriors_
    assert post is not None
    for b, row in zip(ballots, post, strict=True):
        if b.gold is not None:
            assert row[b.labels.index(b.gold)] == pytest.approx(1.0, abs=1e-8), b.request_id
    assert np.allclose(post.sum(axis=1), 1.0, atol=1e-8)


def test_zero_iterations_are_refused_by_design() -> None:
    """crowd-kit's ``n_iter=0`` returns the majority-vote start; ours needs one iteration."""
    with pytest.raises(ValidationError):
        OneCoin(n_iter=0)


# --- majority vote (``data_mv.py``) -------------------------------------------------------------

# ``toy_probas_result_mv`` P(yes), ``toy_skills_result_mv``
TOY_MV_P_YES = {"t1": 0.5, "t2": 0.6, "t3": 0.4, "t4": 1.0, "t5": 0.2}
TOY_MV_LABELS = {"t1": "no", "t2": "yes", "t3": "no", "t4": "yes", "t5": "no"}
TOY_MV_SKILLS = {"w1": 0.6, "w2": 0.8, "w3": 1.0, "w4": 0.4, "w5": 0.8}
# ``simple_probas_result_mv`` (chicken, goose, parrot), ``simple_skills_result_mv``
SIMPLE_MV_PROBAS = {
    "ee4": (2 / 3, 0.0, 1 / 3), "ee8": (3 / 4, 1 / 4, 0.0), "eec": (0.0, 3 / 4, 1 / 4),
    "efb": (0.0, 0.0, 1.0), "efd": (1 / 3, 1 / 3, 1 / 3), "f02": (0.0, 0.0, 1.0),
    "f03": (0.0, 1.0, 0.0), "f05": (0.0, 2 / 3, 1 / 3), "f07": (0.0, 0.0, 1.0),
    "f08": (0.0, 0.0, 1.0),
}
SIMPLE_MV_SKILLS = {"0c3e": 0.333333, "0f65": 1.0, "a452": 1.0, "b17c": 1.0, "bde3": 1.0,
                    "e563": 0.666667}


def _skills(ballots: list[Ballot], decided: list[str | None],
            field: Literal["agreement_with_consensus", "accuracy"]) -> dict[str, float]:
    summaries = judge_summaries(ballots, {(b.request_id, b.subject): lab
                                          for b, lab in zip(ballots, decided, strict=True)})
    out = {j: s[field] for j, s in summaries.items()}
    assert None not in out.values(), out  # every fixture judge has a base for the share
    return {j: float(v) for j, v in out.items() if v is not None}


def test_majority_vote_toy() -> None:
    """Labels (t1 is a 2-2 tie: crowd-kit's sorted-first ``no`` is our ``reject`` rule),
    probas (the vote shares) and skills (agreement with the majority label)."""
    ballots, _ = _dataset("toy")
    decisions = [Majority().aggregate(b) for b in ballots]
    assert [d.label for d in decisions] == [YN[TOY_MV_LABELS[b.request_id]] for b in ballots]
    assert [d.tie for d in decisions] == [True, False, False, False, False]
    for b, d in zip(ballots, decisions, strict=True):
        assert d.probabilities["accept"] == approx(TOY_MV_P_YES[b.request_id])
    skills = _skills(ballots, [d.label for d in decisions], "agreement_with_consensus")
    assert skills == approx(TOY_MV_SKILLS)


def test_majority_vote_simple() -> None:
    """efd is a three-way tie: crowd-kit picks the sorted-first ``chicken``, as ``first`` does.
    crowd-kit prints the skills to 6 decimals: compared at 1e-6."""
    ballots, truth = _dataset("simple")
    decisions = [Majority(tie_rule="first").aggregate(b) for b in ballots]
    assert [d.label for d in decisions] == truth  # crowd-kit's ``simple_labels_result_mv``
    for b, d in zip(ballots, decisions, strict=True):
        got = tuple(d.probabilities[lab] for lab in SIMPLE_LABELS)
        assert got == approx(SIMPLE_MV_PROBAS[b.request_id]), b.request_id
    skills = _skills(ballots, [d.label for d in decisions], "agreement_with_consensus")
    assert skills == pytest.approx(SIMPLE_MV_SKILLS, abs=1e-6)


# --- gold majority vote (``data_gold_mv.py``) ---------------------------------------------------

TOY_GOLD_SKILLS = {"w1": 0.5, "w2": 1.0, "w3": 1.0, "w4": 0.5, "w5": 0.0}
TOY_GOLD_P_YES = {"t1": 0.75, "t2": 0.833333, "t3": 0.333333, "t4": 1.0, "t5": 0.166667}
SIMPLE_GOLD_SKILLS = {"0c3e": 0.5, "0f65": 1.0, "a452": 1.0, "b17c": 1.0, "bde3": 1.0,
                      "e563": 0.5}
SIMPLE_GOLD_PROBAS: dict[str, tuple[float, ...]] = {
    "ee4": (0.8, 0.0, 0.2), "ee8": (0.857143, 0.142857, 0.0), "eec": (0.0, 0.857143, 0.142857),
    "efb": (0.0, 0.0, 1.0), "efd": (0.5, 0.25, 0.25), "f02": (0.0, 0.0, 1.0),
    "f03": (0.0, 1.0, 0.0), "f05": (0.0, 0.8, 0.2), "f07": (0.0, 0.0, 1.0),
    "f08": (0.0, 0.0, 1.0),
}
GOLD_CASES: dict[str, tuple[dict[str, str], dict[str, float], dict[str, tuple[float, ...]]]] = {
    "toy": (TOY_GOLD, TOY_GOLD_SKILLS,
            {t: (p, 1.0 - p) for t, p in TOY_GOLD_P_YES.items()}),  # (accept, reject) order
    "simple": (SIMPLE_GOLD, SIMPLE_GOLD_SKILLS, SIMPLE_GOLD_PROBAS),
}


@pytest.mark.parametrize("key", ["toy", "simple"])
def test_gold_majority_vote(key: str) -> None:
    """Skills = accuracy on the gold tasks; labels and probas = the skill-weighted vote. The
    fixtures print 6 decimals, so probas are compared at 1e-6."""
    gold, want_skills, want_probas = GOLD_CASES[key]
    ballots, truth = _dataset(key, gold)
    skills = _skills(ballots, [None] * len(ballots), "accuracy")
    assert skills == approx(want_skills)
    weighted = Weighted(weights=skills, tie_rule=TIE[key])
    decisions = [weighted.aggregate(b) for b in ballots]
    assert [d.label for d in decisions] == truth  # ``*_labels_result_gold`` is the ground truth
    for b, d in zip(ballots, decisions, strict=True):
        got = tuple(d.probabilities[lab] for lab in b.labels)
        assert got == pytest.approx(want_probas[b.request_id], abs=1e-6), b.request_id


@pytest.mark.parametrize("key", ["toy", "simple"])
def test_log_odds_from_gold_smooths_the_same_counts(key: str) -> None:
    """``LogOdds(source="gold")`` competences are crowd-kit's skills, Laplace-smoothed: with
    ``n`` gold votes, ``(skill * n + 1) / (n + K)``. Without the class prior it also reaches
    crowd-kit's labels. (With the prior, on the toy data the two gold tasks, both ``yes``, give
    a 3:1 prior for accept that outweighs the smoothed competences on t3 and t5: our design, a
    different model from gold majority vote.)"""
    gold, want_skills, _ = GOLD_CASES[key]
    rows, _, labels, _ = DATASETS[key]
    ballots, truth = _dataset(key, gold)
    n_gold = {w: sum(1 for ww, t, _ in rows if ww == w and t in gold) for w in want_skills}
    k = len(labels)
    lo = LogOdds(source="gold", prior=False, tie_rule=TIE[key]).fit(ballots)
    assert lo.source_ == "gold"
    assert lo.competences_ == approx(
        {w: (s * n_gold[w] + 1.0) / (n_gold[w] + k) for w, s in want_skills.items()})
    assert [lo.aggregate(b).label for b in ballots] == truth


def test_gold_majority_vote_with_several_gold_labels_aggregation() -> None:
    """``test_gold_mv_multiple_gt``: t1 has two gold labels, which ``Ballot.gold`` cannot hold,
    so crowd-kit's skills (w1 0.5, w2 1.0, w3 0.0) are given; the weighted vote must give its
    ``multiple_gt_aggregated``."""
    rows = [("w1", "t1", "l1"), ("w1", "t2", "l1"), ("w1", "t3", "l1"), ("w2", "t1", "l2"),
            ("w2", "t2", "l1"), ("w2", "t3", "l2"), ("w3", "t1", "l3"), ("w3", "t3", "l3")]
    labels = ("l1", "l2", "l3")
    ballots = _ballots(rows, labels, {lab: lab for lab in labels})
    weighted = Weighted(weights={"w1": 0.5, "w2": 1.0, "w3": 0.0})
    assert [weighted.aggregate(b).label for b in ballots] == ["l2", "l1", "l2"]


def test_gold_majority_vote_on_empty_input() -> None:
    """``test_gold_mv_empty``: nothing in, nothing out (and no exception)."""
    assert judge_summaries([], {}) == {}
    assert LogOdds(source="gold").fit([]).competences_ == {}
