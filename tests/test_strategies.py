"""Strategies: toy ballots with known answers, one table across all registered strategies,
hypothesis invariants."""

from __future__ import annotations

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
