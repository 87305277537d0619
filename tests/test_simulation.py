"""Simulated judges and the exact Bayes posterior: the model is what the judges do."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pytest

from consensus.errors import ConfigError
from consensus.scenario import SimulatedDataset, load_scenario
from consensus.types import Ballot
from judges.simulated import (
    BayesOracle,
    SimulatedJudge,
    SimulatedJudgeSpec,
    panel_posterior,
    resolve_correlations,
)
from tests.conftest import ROOT

LABELS = ("accept", "reject")


def votes_for(specs, requests):
    judges = [SimulatedJudge(s) for s in specs]

    async def all_votes():
        return [[await j.judge(r, r.candidates[0]) for j in judges] for r in requests]

    return asyncio.run(all_votes())


def test_empirical_accuracy_matches_the_spec():
    reqs = SimulatedDataset(n_items=4000, prior={"accept": 0.5, "reject": 0.5}, seed=3).generate()
    spec = SimulatedJudgeSpec(name="j", accuracy={"accept": 0.9, "reject": 0.6},
                              abstain_rate=0.2)
    votes = [v[0] for v in votes_for([spec], reqs)]
    assert np.mean([v.abstained for v in votes]) == pytest.approx(0.2, abs=0.02)
    for lab, acc in (("accept", 0.9), ("reject", 0.6)):
        got = [v.label == lab for v, r in zip(votes, reqs, strict=True)
               if not v.abstained and r.gold["a"] == lab]
        assert np.mean(got) == pytest.approx(acc, abs=0.03)


def test_copying_judge_agrees_with_its_leader_as_specified():
    reqs = SimulatedDataset(n_items=3000, seed=4).generate()
    specs = resolve_correlations([
        SimulatedJudgeSpec(name="lead", default_accuracy=0.6),
        SimulatedJudgeSpec(name="echo", default_accuracy=0.6, correlated_with="lead",
                           copy_prob=0.8, seed=1),
    ])
    rows = votes_for(specs, reqs)
    agree = np.mean([a.label == b.label for a, b in rows])
    # copy 0.8, else independent: P(agree) = 0.8 + 0.2 * (0.6^2 + 0.4^2)
    assert agree == pytest.approx(0.8 + 0.2 * 0.52, abs=0.02)


def test_bayes_posterior_is_calibrated_and_beats_majority():
    """If the likelihood were wrong, mean max-posterior would not match the empirical accuracy."""
    sc = load_scenario(ROOT / "scenarios" / "sim_correlated.yaml")
    specs = [s for s in sc.judges]
    rows = votes_for(specs, sc.requests)
    oracle = sc.oracle()
    assert isinstance(oracle, BayesOracle)
    hits, conf, maj = [], [], []
    for r, vs in zip(sc.requests, rows, strict=True):
        d = oracle.aggregate(Ballot.for_subject(r, "a", tuple(vs)))
        hits.append(d.label == r.gold["a"])
        conf.append(d.probability)
        c = Counter(v.label for v in vs if v.label)
        maj.append(("accept" if c["accept"] > c["reject"] else "reject") == r.gold["a"])
    assert np.mean(hits) == pytest.approx(np.mean(conf), abs=0.025)
    assert np.mean(hits) > np.mean(maj) + 0.1


def test_posterior_of_a_single_judge():
    s = {"a": SimulatedJudgeSpec(name="a", accuracy={"accept": 0.8, "reject": 0.6})}
    post = panel_posterior(s, {"a": "reject"}, LABELS, {"accept": 0.5, "reject": 0.5})
    # P(reject | y=reject) = 0.6, P(reject | y=accept) = 0.2
    assert post["reject"] == pytest.approx(0.6 / 0.8)
    ab = panel_posterior(s, {"a": None}, LABELS, {"accept": 0.7, "reject": 0.3})
    assert ab["accept"] == pytest.approx(0.7)  # abstentions carry no information here


def test_correlation_errors_are_config_errors(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: s\ndataset: {simulate: {n_items: 5}}\npanel:\n"
                 "  - {name: a, kind: simulated, correlated_with: b}\n"
                 "  - {name: b, kind: simulated, correlated_with: a}\n")
    with pytest.raises(ConfigError, match="correlation cycle"):
        load_scenario(p)
    p.write_text("name: s\ndataset: {simulate: {n_items: 5}}\npanel:\n"
                 "  - {name: a, kind: simulated, correlated_with: ghost}\n")
    with pytest.raises(ConfigError, match="ghost"):
        load_scenario(p)
