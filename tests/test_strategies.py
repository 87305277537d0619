"""Strategies: toy ballots with known answers, one table across all registered strategies,
hypothesis invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.errors import ConfigError
from strategies.majority import Majority
from strategies.mean_score import MeanScore
from strategies.registry import DEFAULT_STRATEGIES, build_strategy, strategy_table
from strategies.threshold import Threshold
from strategies.veto import Veto
from strategies.weighted import Weighted
from tests.conftest import ballot

ALL = [name for name, _ in DEFAULT_STRATEGIES]


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_on_toy_ballots(name, unanimous, all_abstain):
    s = build_strategy(name)
    d = s.aggregate(unanimous)
    assert d.label == "accept" and d.strategy == name
    assert d.probability is not None and 0.5 <= d.probability <= 1.0
    assert sum(d.probabilities.values()) == pytest.approx(1.0)
    none = s.aggregate(all_abstain)
    assert none.label is None and none.no_consensus
    assert none.agreement is not None and none.agreement.n_abstained == 3


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_pairwise(name):
    b = ballot("2", "2", "2", space=("1", "2"), subject="*")
    assert build_strategy(name).aggregate(b).label == "2"


def test_majority_tie_rules(tie):
    assert Majority(tie_rule="reject").aggregate(tie).label == "reject"
    assert Majority(tie_rule="no_consensus").aggregate(tie).label is None
    assert Majority(tie_rule="first").aggregate(tie).label == "accept"
    d = Majority(tie_rule="reject").aggregate(tie)
    assert d.tie and d.tie_rule == "reject" and "tie" in d.reason
    # random: reproducible per seed and ballot, and both outcomes occur across ballots
    picks = {Majority(tie_rule="random", seed=7).aggregate(ballot("accept", "reject",
             request_id=f"q{i}")).label for i in range(40)}
    assert picks == {"accept", "reject"}
    again = [Majority(tie_rule="random", seed=7).aggregate(ballot("accept", "reject",
             request_id=f"q{i}")).label for i in range(40)]
    assert again == [Majority(tie_rule="random", seed=7).aggregate(ballot("accept", "reject",
                     request_id=f"q{i}")).label for i in range(40)]


def test_majority_pairwise_tie_with_reject_rule_is_no_consensus():
    b = ballot("1", "2", space=("1", "2"), subject="*")
    assert Majority(tie_rule="reject").aggregate(b).label is None


def test_weighted_overrides_majority(split):
    assert Weighted(weights={"j2": 3.0}).aggregate(split).label == "reject"
    assert Weighted(weights={"j2": 1.5}).aggregate(split).label == "accept"


def test_weighted_uses_confidence():
    from consensus.types import Ballot, Vote
    vs = (Vote(judge="a", request_id="q", candidate_id="c", label="accept", confidence=0.2),
          Vote(judge="b", request_id="q", candidate_id="c", label="reject", confidence=0.9))
    b = Ballot(request_id="q", subject="c", labels=("accept", "reject"), votes=vs)
    assert Weighted(use_confidence=True).aggregate(b).label == "reject"


def test_veto(split, unanimous):
    d = Veto().aggregate(split)
    assert d.label == "reject" and d.diagnostics["vetoed_by"] == ["j2"]
    assert Veto().aggregate(unanimous).label == "accept"
    # pairwise: unanimity required
    assert Veto().aggregate(ballot("1", "2", space=("1", "2"), subject="*")).label is None
    assert Veto().aggregate(ballot("1", "1", space=("1", "2"), subject="*")).label == "1"


def test_threshold_k_and_share(split):
    assert Threshold(label="accept", k=2, share=None).aggregate(split).label == "accept"
    assert Threshold(label="accept", k=3, share=None).aggregate(split).label == "reject"
    assert Threshold(label="accept", share=0.7).aggregate(split).label == "reject"
    assert Threshold(label="accept", share=0.6).aggregate(split).label == "accept"
    w = Threshold(label="reject", share=0.5, weights={"j2": 2.0}).aggregate(split)
    assert w.label == "reject"
    with pytest.raises(ConfigError):
        Threshold(k=0)
    # pairwise over three candidates, no target: the top label must clear the bar
    three = ballot("x", "x", "y", "z", space=("x", "y", "z"), subject="*")
    assert Threshold(label=None, share=0.5).aggregate(three).label == "x"
    assert Threshold(label=None, share=0.6).aggregate(three).label is None


def test_mean_score_uses_confidences():
    from consensus.types import Ballot, Vote
    vs = (Vote(judge="a", request_id="q", candidate_id="c", label="accept", confidence=0.6),
          Vote(judge="b", request_id="q", candidate_id="c", label="accept", confidence=0.6),
          Vote(judge="c", request_id="q", candidate_id="c", label="reject", confidence=1.0))
    b = Ballot(request_id="q", subject="c", labels=("accept", "reject"), votes=vs)
    d = MeanScore().aggregate(b)
    assert d.label == "reject" and d.probability == pytest.approx((0.4 + 0.4 + 1.0) / 3)
    assert Majority().aggregate(b).label == "accept"
    assert MeanScore(threshold=0.5).aggregate(b).label == "reject"
    assert MeanScore(threshold=0.3).aggregate(b).label == "accept"


def test_registry_errors():
    with pytest.raises(ConfigError, match="valid strategies: majority"):
        build_strategy("nope")
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_strategy({"name": "majority", "tie": "x"})
    with pytest.raises(ConfigError, match="registered twice"):
        strategy_table((("majority", "strategies.majority:Majority"),))


# --- hypothesis invariants --------------------------------------------------------------------

labels_st = st.lists(st.sampled_from(["accept", "reject", None]), min_size=1, max_size=9)
INVARIANT = ["majority", "weighted", "veto", "threshold", "mean_score"]


@settings(max_examples=150, deadline=None)
@given(labels=labels_st, name=st.sampled_from(INVARIANT), data=st.data())
def test_vote_order_does_not_matter(labels, name, data):
    s = build_strategy(name)
    perm = data.draw(st.permutations(list(range(len(labels)))))
    b = ballot(*labels)
    shuffled = b.model_copy(update={"votes": tuple(b.votes[i] for i in perm)})
    a, c = s.aggregate(b), s.aggregate(shuffled)
    assert (a.label, a.probability) == (c.label, c.probability)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 9), label=st.sampled_from(["accept", "reject"]),
       name=st.sampled_from(INVARIANT))
def test_unanimity_wins(n, label, name):
    assert build_strategy(name).aggregate(ballot(*[label] * n)).label == label


@settings(max_examples=150, deadline=None)
@given(labels=labels_st, name=st.sampled_from(INVARIANT))
def test_extra_abstention_changes_nothing(labels, name):
    s = build_strategy(name)
    a, b = s.aggregate(ballot(*labels)), s.aggregate(ballot(*labels, None))
    assert (a.label, a.probability) == (b.label, b.probability)


@settings(max_examples=150, deadline=None)
@given(labels=labels_st, w=st.floats(0.1, 10))
def test_equal_weights_equal_majority(labels, w):
    b = ballot(*labels)
    judges = [v.judge for v in b.votes]
    m, wd = Majority().aggregate(b), Weighted(weights=dict.fromkeys(judges, w)).aggregate(b)
    assert m.label == wd.label
    if m.probability is not None:
        assert m.probability == pytest.approx(wd.probability)


# --- numerical safety: unsafe parameters refused, unusable support fails closed ---------------

BAD_PARAMETERS = [
    ({"name": "dawid_skene", "smoothing": 0.0}, "strategy.smoothing"),
    ({"name": "one_coin", "smoothing": float("nan")}, "strategy.smoothing"),
    ({"name": "dawid_skene", "n_iter": 0}, "strategy.n_iter"),
    ({"name": "dawid_skene", "tol": -1e-6}, "strategy.tol"),
    ({"name": "dawid_skene", "tol": float("inf")}, "strategy.tol"),
    ({"name": "weighted", "weights": {"j0": -1.0}}, "strategy.weights.j0"),
    ({"name": "weighted", "weights": {"j0": float("nan")}}, "strategy.weights.j0"),
    ({"name": "weighted", "weights": {"j0": float("inf")}}, "strategy.weights.j0"),
    ({"name": "weighted", "default_weight": -0.5}, "strategy.default_weight"),
    ({"name": "weighted", "weights": {"j0": 0.0}, "default_weight": 0.0}, "strategy.weights"),
    ({"name": "threshold", "weights": {"j0": -2.0}}, "strategy.weights.j0"),
    ({"name": "threshold", "weights": {"j0": float("nan")}}, "strategy.weights.j0"),
    ({"name": "threshold", "weights": {"j0": float("-inf")}}, "strategy.weights.j0"),
    ({"name": "threshold", "share": 1.5}, "strategy.share"),
    ({"name": "threshold", "k": 0}, "strategy.k"),
    ({"name": "mean_score", "threshold": 1.5}, "strategy.threshold"),
    ({"name": "mean_score", "threshold": float("nan")}, "strategy.threshold"),
    ({"name": "log_odds", "competences": {"j0": 1.2}}, "strategy.competences.j0"),
    ({"name": "log_odds", "competences": {"j0": float("nan")}}, "strategy.competences.j0"),
    ({"name": "log_odds", "n_iter": 0}, "strategy.n_iter"),
    ({"name": "calibrated", "c_grid": [1.0, 0.0]}, "strategy.c_grid.1"),
    ({"name": "calibrated", "stack_step": 0.0}, "strategy.stack_step"),
    ({"name": "calibrated", "switch_confidence": float("nan")}, "strategy.switch_confidence"),
    ({"name": "calibrated", "switch_confidence": 0.5}, "strategy.switch_confidence"),
    ({"name": "calibrated", "c_grid": []}, "strategy.c_grid"),
    ({"name": "calibrated", "n_folds": 1}, "strategy.n_folds"),
    ({"name": "bradley_terry", "prior": -1.0}, "strategy.prior"),
    ({"name": "bradley_terry", "tol": float("nan")}, "strategy.tol"),
    ({"name": "position_debiased", "base": {"name": "weighted", "weights": {"j0": -1.0}}},
     "strategy.base.weights.j0"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_PARAMETERS)
def test_unsafe_parameters_are_refused_with_the_field_named(spec, field):
    with pytest.raises(ConfigError) as info:
        build_strategy(spec)
    assert info.value.field == field


def test_dawid_skene_without_smoothing_is_refused_at_construction():
    from pydantic import ValidationError

    from strategies.dawid_skene import DawidSkene, OneCoin, dawid_skene_em

    for cls in (DawidSkene, OneCoin):
        with pytest.raises(ValidationError, match="smoothing") as info:
            cls(smoothing=0.0)
        (err,) = info.value.errors()
        assert err["loc"] == ("smoothing",) and "greater than 0" in err["msg"]
    with pytest.raises(ValueError, match="smoothing"):
        dawid_skene_em(np.zeros((3, 2), dtype=np.int64), 2, smoothing=0.0)


def test_nan_parameters_give_no_consensus_instead_of_raising():
    # What smoothing=0 used to produce: every vote is accept, so no judge has an expected count
    # for reject, its confusion row is 0/0 and every posterior NaN.
    from strategies._matrix import set_learned, vote_matrix
    from strategies.dawid_skene import DawidSkene, _em

    ballots = [ballot("accept", "accept", request_id=f"q{i}") for i in range(4)]
    m = vote_matrix(ballots)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = _em(m.codes, 2, m.gold, m.n_options, None, None, 10, 1e-6, 0.0, "full")
    assert np.isnan(r.confusions).any()
    ds = DawidSkene().fit(ballots)
    set_learned(ds, confusions_=r.confusions, priors_=r.priors)
    with np.errstate(invalid="ignore"):
        d = ds.aggregate(ballot("accept", "reject"))
    assert d.no_consensus and "non-finite support" in d.reason


@pytest.mark.parametrize(("support", "why"), [
    ({"accept": float("nan"), "reject": float("nan")}, "non-finite support"),
    ({"accept": float("inf"), "reject": 1.0}, "non-finite support"),
    ({"accept": 1e308, "reject": 1e308}, "non-finite support"),
    ({}, "empty support"),
    ({"accept": -1.0, "reject": 2.0}, "negative support"),
    ({"accept": 0.0, "reject": 0.0}, "zero support"),
])
def test_decide_by_support_fails_closed_on_unusable_support(support, why, split):
    from strategies.base import decide_by_support

    for rule in ("reject", "first", "random", "no_consensus"):
        d = decide_by_support(split, support, strategy="t", tie_rule=rule)
        assert d.no_consensus and d.probability is None and why in d.reason


def test_weights_of_zero_on_every_voter_give_no_consensus(split):
    # tie_rule "first" would have picked accept from the all-zero tie
    silent = {"j0": 0.0, "j1": 0.0, "j2": 0.0}
    assert Weighted(weights=silent, tie_rule="first").aggregate(split).no_consensus
    # threshold on reject: 0 of 0 misses the bar, which used to deliver accept
    assert Threshold(label="reject", share=0.5, weights=silent).aggregate(split).no_consensus
    # muting some judges stays allowed
    assert Weighted(weights={"j2": 0.0}).aggregate(split).label == "accept"


JUDGE_NAMES = ("j0", "j1", "j2", "j3", "j0@swap", "j1@swap")
SPACES = (("accept", "reject"), ("1", "2"), ("x", "y", "z"))


@st.composite
def random_ballots(draw, space, request_id="q", gold=False):
    """A ballot over ``space`` with random labels, abstentions, off-space labels, confidences."""
    from consensus.types import Ballot, Vote

    judges = draw(st.lists(st.sampled_from(JUDGE_NAMES), max_size=6))
    subject = "a" if space[0] == "accept" else "*"
    votes = []
    for j in judges:
        label = draw(st.sampled_from((*space, None, "off-space")))
        if label is None:
            votes.append(Vote.abstain(judge=j, request_id=request_id, candidate_id=subject,
                                      kind="timeout", reason="slow"))
        else:
            conf = draw(st.none() | st.floats(0.0, 1.0))
            votes.append(Vote(judge=j, request_id=request_id, candidate_id=subject, label=label,
                              confidence=conf))
    return Ballot(request_id=request_id, subject=subject, labels=space, votes=tuple(votes),
                  gold=draw(st.sampled_from((None, *space))) if gold else None)


@settings(max_examples=120, deadline=None)
@given(name=st.sampled_from(ALL), data=st.data())
def test_every_strategy_decides_random_ballots_with_a_valid_probability(name, data):
    import math

    from strategies.base import fit_strategy

    space = data.draw(st.sampled_from(SPACES))
    s = build_strategy(name)
    if data.draw(st.booleans()):  # fitted on a random batch (learners), or not
        batch = data.draw(st.lists(random_ballots(space, gold=True), max_size=12))
        batch = [b.model_copy(update={"request_id": f"q{i}"}) for i, b in enumerate(batch)]
        s = fit_strategy(s, batch)
    d = s.aggregate(data.draw(random_ballots(space)))
    if d.probability is not None:
        assert math.isfinite(d.probability) and 0.0 <= d.probability <= 1.0
    assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in d.probabilities.values())
    if d.label is None:
        assert d.probability is None
