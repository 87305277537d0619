"""Simulated judges and the exact Bayes posterior: the model is what the judges do."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pytest

from consensus.datasets import SimulatedDataset
from consensus.errors import ConfigError
from consensus.oracle import BayesOracle
from consensus.scenario import load_scenario
from consensus.types import Ballot
from judges.simulated import (
    SimulatedJudge,
    SimulatedJudgeSpec,
    panel_posterior,
    resolve_correlations,
)
from judges.simulated_offline import bayes_posteriors, reseed, simulate_ballots, simulate_codes
from tests.conftest import ROOT

LABELS = ("accept", "reject")


def votes_for(specs, requests):
    judges = [SimulatedJudge(s) for s in specs]

    async def all_votes():
        return [[await j.judge(r, None if r.task == "pairwise" else r.candidates[0])
                 for j in judges] for r in requests]

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


# --- in process, without Ray: the same votes ---------------------------------------------------


SMALL = ("name: small\ndataset: {simulate: {n_items: 40, prior: PRIOR, seed: 5}}\npanel:\n"
         "  - {name: lead, kind: simulated, default_accuracy: 0.6, abstain_rate: 0.2, seed: 1}\n"
         "  - {name: echo, kind: simulated, correlated_with: lead, copy_prob: 0.7, seed: 2}\n"
         "  - {name: adv, kind: simulated, default_accuracy: 0.3, bias_label: LABEL, seed: 3}\n")


def small_scenario(tmp_path, prior: str, label: str):
    p = tmp_path / f"small_{label}.yaml"
    p.write_text(SMALL.replace("PRIOR", prior).replace("LABEL", label))
    return load_scenario(p)


SMALL_PRIORS = (("{accept: 0.6, reject: 0.4}", "reject"),
                ("{x: 0.5, y: 0.3, z: 0.2}", "x"))


@pytest.mark.parametrize(("prior", "label"), SMALL_PRIORS)
def test_offline_ballots_are_the_judges_votes(tmp_path, prior, label):
    sc = small_scenario(tmp_path, prior, label)
    ballots = simulate_ballots(sc.judges, sc.requests)
    rows = votes_for(sc.judges, sc.requests)  # SimulatedJudge.judge, one call at a time
    assert [b.votes for b in ballots] == [tuple(vs) for vs in rows]
    assert [b.gold for b in ballots] == [next(iter(r.gold.values())) for r in sc.requests]
    truth, codes = simulate_codes(sc.judges, sc.requests)
    labels = sc.requests[0].labels()
    assert [labels[t] for t in truth] == [b.gold for b in ballots]
    assert [[labels[c] if c >= 0 else None for c in row] for row in codes] == [
        [v.label for v in b.votes] for b in ballots]


@pytest.mark.ray
@pytest.mark.parametrize(("prior", "label"), SMALL_PRIORS)
def test_offline_ballots_equal_the_ray_run(ray_session, tmp_path, prior, label):
    from consensus.coordinator import ballots_of
    from consensus.runner import poll_scenario

    sc = small_scenario(tmp_path, prior, label)
    polled = poll_scenario(sc)
    on_ray = [b for r in polled.requests for b in ballots_of(r, polled.votes[r.id])]

    def without_latency(bs):
        return [b.model_copy(update={"votes": tuple(v.model_copy(update={"latency_s": 0.0})
                                                    for v in b.votes)}) for b in bs]

    assert without_latency(on_ray) == simulate_ballots(sc.judges, sc.requests)


def test_reseeding_draws_a_fresh_panel_with_the_same_parameters():
    specs = [SimulatedJudgeSpec(name="lead", default_accuracy=0.7, seed=1),
             SimulatedJudgeSpec(name="echo", correlated_with="lead", copy_prob=0.9, seed=2)]
    reqs = SimulatedDataset(n_items=2000, seed=1).generate()
    _, before = simulate_codes(specs, reqs)
    truth, after = simulate_codes(reseed(specs, 1), reqs)
    assert (before != after).any(axis=1).mean() > 0.3
    assert (after[:, 0] == truth).mean() == pytest.approx(0.7, abs=0.03)
    # the echo still replays its (reseeded) leader
    assert (after[:, 0] == after[:, 1]).mean() == pytest.approx(0.9 + 0.1 * 0.58, abs=0.02)


def test_three_label_dataset_is_pairwise_over_the_labels():
    reqs = SimulatedDataset(n_items=3000, prior={"x": 0.5, "y": 0.3, "z": 0.2}, seed=2).generate()
    assert {r.task for r in reqs} == {"pairwise"} and reqs[0].labels() == ("x", "y", "z")
    gold = Counter(r.gold["*"] for r in reqs)
    assert gold["z"] / 3000 == pytest.approx(0.2, abs=0.02)
    with pytest.raises(ValueError, match="two or more"):
        SimulatedDataset(n_items=3, prior={"x": 1.0})


def test_bayes_posterior_matches_monte_carlo_frequencies():
    """Three labels, an abstaining judge, an adversary, echoes with per-label accuracy copying a
    lenient leader: the posterior of each frequent vote pattern equals the empirical frequency of
    the gold labels among the items showing it."""
    labels, prior = ("x", "y", "z"), {"x": 0.5, "y": 0.3, "z": 0.2}
    specs = resolve_correlations([
        SimulatedJudgeSpec(name="a", default_accuracy=0.75, abstain_rate=0.2, seed=1),
        SimulatedJudgeSpec(name="adv", default_accuracy=0.2, seed=2),
        SimulatedJudgeSpec(name="lead", accuracy={"x": 0.9, "y": 0.5}, default_accuracy=0.4,
                           bias_label="x", seed=3),
        *(SimulatedJudgeSpec(name=f"echo{i}", accuracy={"x": 0.8, "y": 0.6, "z": 0.5},
                             correlated_with="lead", copy_prob=c, seed=4 + i)
          for i, c in enumerate((0.9, 0.6)))])
    n = 40_000
    truth, codes = simulate_codes(specs, SimulatedDataset(n_items=n, prior=prior,
                                                          seed=1).generate())
    assert abs((codes[:, 0] < 0).mean() - 0.2) < 0.01
    assert abs((codes[:, 1] == truth).mean() - 0.2) < 0.01  # adversarial: right 20% of the time
    post = bayes_posteriors(specs, prior, codes, labels)
    key = (codes + 1) @ (4 ** np.arange(codes.shape[1]))
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    for p in np.argsort(-counts)[:10]:
        rows = inverse == p
        empirical = np.bincount(truth[rows], minlength=3) / rows.sum()
        assert np.abs(empirical - post[rows][0]).max() < 4 / np.sqrt(rows.sum())
    # the posterior beats every single judge
    hits = post.argmax(1) == truth
    assert hits.mean() > max((codes[:, j] == truth).mean() for j in range(codes.shape[1]))
