"""Experiments and threshold tuning on hand-built votes (no Ray needed: strategies are pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.experiments import Contender, Polled, compare, mcnemar_exact
from consensus.tuning import accept_probabilities, recommend, sweep
from consensus.types import Ballot, Candidate, Decision, Request, Vote
from strategies.majority import Majority
from strategies.mean_score import MeanScore
from strategies.veto import Veto


def polled(n: int = 200, seed: int = 0, accs=(0.9, 0.7, 0.6)) -> Polled:
    rng = np.random.default_rng(seed)
    reqs, votes = [], {}
    for i in range(n):
        gold = "reject" if rng.random() < 0.4 else "accept"
        r = Request(id=f"r{i}", prompt="p", candidates=(Candidate(
            id="a", text="t", is_refusal=bool(rng.random() < 0.1)),),
            gold={"a": gold}, prompt_safe=gold == "accept")
        reqs.append(r)
        vs = []
        for j, acc in enumerate(accs):
            right = rng.random() < acc
            lab = gold if right else ("accept" if gold == "reject" else "reject")
            vs.append(Vote(judge=f"j{j}", request_id=r.id, candidate_id="a", label=lab,
                           confidence=float(np.clip(acc + rng.normal(0, 0.05), 0.5, 1))))
        votes[r.id] = tuple(vs)
    return Polled("toy", tuple(reqs), votes, dict.fromkeys(votes, 0.01), len(accs),
                  tuple(f"j{j}" for j in range(len(accs))))


def test_brier_is_twice_sklearn_binary_score_and_undecided_is_uniform():
    from sklearn.metrics import brier_score_loss

    p = polled(150)
    (res,) = compare([Contender("mean", p, MeanScore())])
    decided = {r.id: MeanScore().aggregate(Ballot.for_subject(r, "a", p.votes[r.id]))
               for r in p.requests}
    y = [r.gold["a"] == "reject" for r in p.requests]
    p_reject = [decided[r.id].probabilities["reject"] for r in p.requests]
    assert res.brier == pytest.approx(2 * brier_score_loss(y, p_reject))
    # a ballot nobody voted on: no consensus, scored as 1/2 each -> (1/2)^2 + (1/2)^2
    silent = Polled("s", p.requests[:1], {p.requests[0].id: ()}, {p.requests[0].id: 0.0}, 3, ())
    (res,) = compare([Contender("maj", silent, Majority())])
    assert res.brier == pytest.approx(0.5)


def test_mcnemar_matches_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.random(60) < 0.7, rng.random(60) < 0.6
        table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
        assert mcnemar_exact(a, b) == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_compare_is_paired_and_figures_are_consistent():
    p = polled()
    res = compare([Contender("majority", p, Majority()), Contender("veto", p, Veto()),
                   Contender("majority2", p, Majority())])
    maj, veto, same = res
    assert maj.n_scored == 200 and maj.accuracy is not None
    lo, hi = maj.accuracy_ci
    assert lo <= maj.accuracy <= hi and hi - lo < 0.2
    assert same.mcnemar_p == 1.0 and same.accuracy == maj.accuracy
    assert veto.block_recall >= maj.block_recall  # veto blocks at least as much
    assert 0 <= maj.brier <= 2 and 0 <= maj.ece <= 1
    row = maj.row()
    assert row["accuracy"] == maj.accuracy and row["false_block_rate"] is not None


@dataclass
class SpyLearner:
    """A learning strategy that records which ballots carried gold when it was fitted."""

    name: str = "spy"
    seen: list[set[str]] = field(default_factory=list)

    def fit(self, ballots):
        self.seen.append({b.request_id for b in ballots if b.gold is not None})
        return self

    def aggregate(self, ballot: Ballot) -> Decision:
        return Majority(name=self.name).aggregate(ballot)


def test_learners_never_see_the_gold_of_what_they_are_scored_on():
    p = polled(100)
    spy = SpyLearner()
    (res,) = compare([Contender("spy", p, spy)], gold_fraction=0.2, splits=5)
    assert len(spy.seen) == 5 and all(len(s) == 20 for s in spy.seen)
    # every scored prediction came from a split in which that request's gold was hidden
    first_held = {}
    for k, seen in enumerate(spy.seen):
        for r in p.requests:
            if r.id not in seen:
                first_held.setdefault(r.id, k)
    assert {rid for rid, _ in res.correct} == set(first_held)
    assert res.split_accuracy_mean is not None and res.split_accuracy_sd is not None


@dataclass
class Alternating:
    """A learner that is right-minded after odd-numbered fits and contrary after even ones."""

    name: str = "alternating"
    fits: int = 0

    def fit(self, ballots):
        self.fits += 1
        return self

    def aggregate(self, ballot: Ballot) -> Decision:
        d = Majority(name=self.name).aggregate(ballot)
        if self.fits % 2 == 1:
            return d
        flip = {"accept": "reject", "reject": "accept"}
        return d.model_copy(update={"label": flip.get(d.label, d.label)})


def held_accuracy(p: Polled, seen: set[str], label_of) -> float:
    hits = [label_of(r) == r.gold["a"] for r in p.requests if r.id not in seen]
    return float(np.mean(hits))


def test_split_accuracies_come_from_each_split_own_fit():
    p = polled(120)
    spy, alt = SpyLearner(), Alternating()
    _, res = compare([Contender("spy", p, spy), Contender("alt", p, alt)], splits=4)
    maj = {r.id: Majority().aggregate(ballot_of(p, r)).label for r in p.requests}
    flip = {"accept": "reject", "reject": "accept"}
    want = [held_accuracy(p, seen, lambda r, k=k: maj[r.id] if k % 2 == 0 else flip[maj[r.id]])
            for k, seen in enumerate(spy.seen)]
    assert res.split_accuracy_mean == pytest.approx(np.mean(want))
    assert res.split_accuracy_sd == pytest.approx(np.std(want)) and res.split_accuracy_sd > 0.1


def test_non_learners_are_decided_once_and_scored_on_every_split_held_set():
    p = polled(120)
    spy = SpyLearner()
    _, res = compare([Contender("spy", p, spy), Contender("maj", p, Majority())], splits=4)
    maj = {r.id: Majority().aggregate(ballot_of(p, r)).label for r in p.requests}
    want = [held_accuracy(p, seen, lambda r: maj[r.id]) for seen in spy.seen]
    assert res.n_scored == 120  # a non-learner is scored on every request
    assert res.split_accuracy_mean == pytest.approx(np.mean(want))


def test_by_category_cuts_a_polled_scenario():
    from dataclasses import replace

    from consensus.experiments import by_category

    p = polled(30)
    reqs = tuple(r.model_copy(update={"category": "odd" if i % 2 else None})
                 for i, r in enumerate(p.requests))
    parts = by_category(replace(p, requests=reqs))
    assert list(parts) == ["-", "odd"]
    assert [len(x.requests) for x in parts.values()] == [15, 15]
    assert all(set(x.votes) == {r.id for r in x.requests} for x in parts.values())


def test_a_run_fits_learners_without_gold():
    import asyncio

    from consensus.coordinator import Coordinator

    p = polled(40)

    class Recorded:
        size = 3

        async def poll(self, request):
            return p.votes[request.id]

    spy = SpyLearner()
    outcomes = asyncio.run(Coordinator(Recorded(), spy).run(p.requests))
    assert spy.seen == [set()] and len(outcomes) == 40


def ballot_of(p: Polled, r: Request) -> Ballot:
    return Ballot.for_subject(r, "a", p.votes[r.id])


def test_sweep_trades_harm_for_false_blocks():
    p = polled(300)
    probs = accept_probabilities(p, MeanScore())
    points = sweep(p, probs)
    harm = [x.harm_rate for x in points]
    fb = [x.false_block_rate for x in points]
    assert harm == sorted(harm, reverse=True) and fb == sorted(fb)
    assert points[0].harm_rate == 1.0 and points[0].false_block_rate == 0.0  # t = 0: accept all
    best = recommend(points, max_harm=0.1)
    assert best is not None and best.harm_rate <= 0.1
    assert all(x.false_block_rate >= best.false_block_rate for x in points
               if x.harm_rate <= 0.1)
    other = recommend(points, max_false_block=0.05)
    assert other.false_block_rate <= 0.05
    with pytest.raises(ValueError):
        recommend(points)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans(), st.booleans()), min_size=1,
                max_size=30), st.floats(0, 1))
def test_sweep_matches_a_direct_count(items, t):
    """harm / false-block at one threshold, counted directly from (p, gold_reject, safe)."""
    reqs, votes, probs = [], {}, {}
    for i, (pa, bad, safe) in enumerate(items):
        r = Request(id=f"r{i}", prompt="p", candidates=(Candidate(id="a", text="t"),),
                    gold={"a": "reject" if bad else "accept"}, prompt_safe=safe)
        reqs.append(r)
        votes[r.id] = ()
        probs[(r.id, "a")] = pa
    p = Polled("h", tuple(reqs), votes, {}, 1, ())
    (pt,) = sweep(p, probs, thresholds=[t])
    bad = [pa >= t for pa, b, _ in items if b]
    good = [pa < t for pa, b, _ in items if not b]
    assert pt.harm_rate == (np.mean(bad) if bad else None)
    assert pt.false_block_rate == (np.mean(good) if good else None)
